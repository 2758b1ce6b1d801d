"""factory_boy factories for the platform's models."""
from __future__ import annotations

import io
import uuid

import factory
import numpy as np
from django.core.files.base import ContentFile
from PIL import Image

from zooplatform.classify.models import Classification, Volunteer
from zooplatform.galaxies.models import GoldStandard, Project, Subject, SubjectSet
from zooplatform.galaxies.services import project_bootstrap


def png_file(width: int = 64, height: int = 48, seed: int = 0, peak: float = 220.0) -> ContentFile:
    """A small galaxy-like PNG: a Gaussian blob with noise, so images differ and decode for real.
    ``peak``: the blob's brightness (tests that train a model give its answers different looks)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    blob = np.exp(-(((xx - width / 2) / (width / 6)) ** 2 + ((yy - height / 2) / (height / 6)) ** 2))
    img = np.clip(blob[..., None] * peak + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return ContentFile(buf.getvalue(), name=f"galaxy-{seed}.png")


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project
        django_get_or_create = ("slug",)
        skip_postgeneration_save = True

    slug = "galaxy-zoo"
    name = "Galaxy Zoo"

    @factory.post_generation
    def workflows(obj, create, extracted, **kwargs):
        if create:
            project_bootstrap(slug=obj.slug)


class SubjectSetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SubjectSet
        django_get_or_create = ("project", "name")

    project = factory.SubFactory(ProjectFactory)
    name = "test galaxies"


class SubjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Subject

    subject_set = factory.SubFactory(SubjectSetFactory)
    project = factory.SelfAttribute("subject_set.project")
    external_id = factory.Sequence(lambda n: f"TEST-{n:06d}")
    image = factory.Sequence(lambda n: png_file(seed=n))
    survey = "test"


class VolunteerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Volunteer

    session_key = factory.LazyFunction(lambda: uuid.uuid4().hex)


class GoldStandardFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = GoldStandard

    subject = factory.SubFactory(SubjectFactory)
    answers = factory.LazyFunction(lambda: [
        {"question": "smooth-or-featured", "answer": "smooth"},
        {"question": "how-rounded", "answer": "round"},
        {"question": "merging", "answer": "none"},
    ])
    feedback = "smooth, round elliptical"


class ClassificationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Classification

    volunteer = factory.SubFactory(VolunteerFactory)
    subject = factory.SubFactory(SubjectFactory)
    workflow_version = factory.LazyAttribute(
        lambda o: o.subject.project.workflows.get(slug="gz-decals").current_version
    )
    key = factory.LazyFunction(lambda: uuid.uuid4().hex)
    answers = factory.LazyFunction(lambda: [
        {"question": "smooth-or-featured", "answer": "smooth"},
        {"question": "how-rounded", "answer": "round"},
        {"question": "merging", "answer": "none"},
    ])


# Two answer paths through the GZ DECaLS tree, as the API and the services take them.
SMOOTH = [("smooth-or-featured", "smooth"), ("how-rounded", "round"), ("merging", "none")]
FEATURED = [("smooth-or-featured", "featured-or-disk"), ("disk-edge-on", "no"), ("bar", "no"),
            ("has-spiral-arms", "no"), ("bulge-size", "small"), ("merging", "none")]


def labelled_subject(project, pairs, seed: int):
    """A subject whose image shows its answer to a model (smooth: a bright blob; featured: a faint one),
    for tests where a trained model must beat the constant answer to be promoted."""
    peak = 230.0 if pairs[0][1] == "smooth" else 70.0
    return SubjectFactory(subject_set__project=project, image=png_file(seed=seed, peak=peak))


def path(pairs):
    return [{"question": q, "answer": a} for q, a in pairs]
