"""manage.py import_subjects CATALOG.csv --images DIR

Every row is validated first (id, image readable, coordinates in range); any bad row stops the
import with each bad row's line number and reason, and nothing is written. A valid catalogue is
imported in one transaction. Importing the same catalogue again changes nothing.

FITS cutouts are rendered to RGB with ``classifier.imaging``'s stretch (asinh, Lupton et al. 2004;
see that module for the band order and scales) and kept beside the rendered PNG.
"""
from pathlib import Path

from django.core.management.base import CommandError

from zooplatform.core.management.base import DataCommand

from zooplatform.galaxies.models import Project
from zooplatform.galaxies.services import DEFAULT_PROJECT_SLUG, catalogue_parse, project_bootstrap, subjects_import


class Command(DataCommand):
    help = "Import galaxies from a CSV catalogue (id_str, file_loc, optional ra, dec and metadata columns)."

    def add_arguments(self, parser):
        parser.add_argument("catalog", type=Path, help="CSV with an id column (id_str) and an image column (file_loc)")
        parser.add_argument("--images", type=Path, required=True, help="folder that image paths are relative to")
        parser.add_argument("--project", default=DEFAULT_PROJECT_SLUG, help="project slug (created with the built-in workflows if missing)")
        parser.add_argument("--subject-set", default=None, help="subject set name (default: the catalogue's file name)")
        parser.add_argument("--survey", default="", help='survey name stored with each subject, e.g. "DECaLS DR5"')
        parser.add_argument("--id-column", default=None, help="id column (default: first of id_str, external_id, subject_id, id, iauname)")
        parser.add_argument("--image-column", default=None, help="image column (default: first of file_loc, image, png_loc, jpg_loc, fits_loc, filename)")

    def handle(self, *args, catalog: Path, images: Path, project: str, subject_set, survey, id_column, image_column, **options):
        catalog, images = Path(catalog), Path(images)
        if not catalog.is_file():
            raise CommandError(f"{catalog}: no such file")
        if not images.is_dir():
            raise CommandError(f"--images {images}: no such folder")
        try:
            text = catalog.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise CommandError(f"{catalog}: not UTF-8 text ({exc})") from None
        rows, errors = catalogue_parse(text, images_dir=images, id_column=id_column, image_column=image_column)
        if errors:
            shown = "\n".join(f"  {catalog}: {e}" for e in errors[:200])
            more = f"\n  ... and {len(errors) - 200} more" if len(errors) > 200 else ""
            raise CommandError(f"{len(errors)} bad row(s); nothing was imported:\n{shown}{more}")
        if not rows:
            raise CommandError(f"{catalog}: no rows to import")
        project_obj = Project.objects.filter(slug=project).first() or project_bootstrap(slug=project)
        report = subjects_import(
            project=project_obj, subject_set_name=subject_set or catalog.stem, rows=rows, survey=survey
        )
        self.stdout.write(self.style.SUCCESS(f"{catalog.name}: {report}"))
