"""manage.py make_demo_subjects [--hudf N] [--synthetic N]

Real galaxies cut out of the Hubble eXtreme Deep Field (scikit-image ships the image) and synthetic
GalSim galaxies with known truth (answers and clump boxes stored in ``Subject.truth``; one in eight
becomes a gold-standard subject with expert feedback). Needs no internet; running it again adds
nothing already there.
"""
from django.core.management.base import CommandError

from zooplatform.core.management.base import DataCommand

from zooplatform.galaxies.demo import hudf_subjects, synthetic_subjects
from zooplatform.galaxies.models import Project
from zooplatform.galaxies.services import DEFAULT_PROJECT_SLUG, project_bootstrap, subjects_create_from_arrays


class Command(DataCommand):
    help = "Make demo galaxies: HUDF cutouts and synthetic GalSim galaxies with known truth."

    def add_arguments(self, parser):
        parser.add_argument("--hudf", type=int, default=40, help="number of HUDF cutouts (brightest first)")
        parser.add_argument("--synthetic", type=int, default=200, help="number of synthetic galaxies")
        parser.add_argument("--seed", type=int, default=0, help="synthetic sample seed")
        parser.add_argument("--project", default=DEFAULT_PROJECT_SLUG)

    def handle(self, *args, hudf, synthetic, seed, project, **options):
        if hudf < 0 or synthetic < 0:
            raise CommandError("--hudf and --synthetic must be zero or more")
        project_obj = Project.objects.filter(slug=project).first() or project_bootstrap(slug=project)
        if hudf:
            report = subjects_create_from_arrays(project=project_obj, subject_set_name="Hubble XDF cutouts",
                                                 subjects=hudf_subjects(hudf))
            self.stdout.write(f"HUDF: {report}")
        if synthetic:
            report = subjects_create_from_arrays(project=project_obj, subject_set_name=f"Synthetic galaxies (seed {seed})",
                                                 subjects=synthetic_subjects(synthetic, seed=seed))
            self.stdout.write(f"synthetic: {report}")
