"""The data model's constraints hold in the database itself, not only in Python."""
import pytest
from django.db import IntegrityError, transaction

from zooplatform.classify.models import ClumpBox, Volunteer
from zooplatform.galaxies.models import Retirement, Subject
from zooplatform.galaxies.services import project_bootstrap, subject_retire
from zooplatform.learning.models import ModelVersion
from zooplatform.workflows.models import Workflow

from .factories import ClassificationFactory, ProjectFactory, SubjectFactory, VolunteerFactory

pytestmark = pytest.mark.django_db


def test_bootstrap_creates_builtin_workflows_once():
    project = project_bootstrap()
    project_bootstrap()
    workflows = {w.slug: w for w in Workflow.objects.filter(project=project)}
    assert set(workflows) == {"gz-decals", "gz2"}
    assert workflows["gz-decals"].active and not workflows["gz2"].active
    assert workflows["gz-decals"].versions.count() == 1
    tree = workflows["gz-decals"].current_version.tree
    assert tree["first"] == "smooth-or-featured"
    assert tree["questions"][0]["answers"][1] == {"name": "featured-or-disk", "text": "Features or disk", "next": "disk-edge-on"}


def test_subject_external_id_unique_per_project():
    subject = SubjectFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        SubjectFactory(subject_set=subject.subject_set, external_id=subject.external_id)


def test_subject_dimensions_recorded():
    subject = SubjectFactory()
    subject.refresh_from_db()
    assert (subject.width, subject.height) == (64, 48)


def test_classification_key_unique_per_volunteer_and_subject_once():
    c = ClassificationFactory()
    other_subject = SubjectFactory(subject_set=c.subject.subject_set)
    with pytest.raises(IntegrityError), transaction.atomic():
        ClassificationFactory(volunteer=c.volunteer, subject=other_subject, key=c.key)
    with pytest.raises(IntegrityError), transaction.atomic():
        ClassificationFactory(volunteer=c.volunteer, subject=c.subject)
    # Another volunteer may use the same client key.
    ClassificationFactory(subject=c.subject, key=c.key)


@pytest.mark.parametrize("box", [dict(x=1, y=1, width=0, height=3), dict(x=1, y=1, width=3, height=-1),
                                 dict(x=-1, y=1, width=3, height=3)])
def test_box_sizes_checked_by_database(box):
    c = ClassificationFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        ClumpBox.objects.create(classification=c, **box)


def test_volunteer_needs_an_identity():
    with pytest.raises(IntegrityError), transaction.atomic():
        Volunteer.objects.create()
    VolunteerFactory()


def test_subject_retires_at_most_once():
    subject = SubjectFactory()
    first = subject_retire(subject=subject, reason="consensus", n_classifications=5)
    assert first is not None and subject.state == Subject.State.RETIRED
    assert subject_retire(subject=Subject.objects.get(pk=subject.pk), reason="vote_cap") is None
    with pytest.raises(IntegrityError), transaction.atomic():
        Retirement.objects.create(subject=subject, reason="manual")
    assert Retirement.objects.get(subject=subject).reason == "consensus"


def test_one_promoted_model_per_kind():
    project = ProjectFactory()
    ModelVersion.objects.create(project=project, kind="morphology", architecture="a", status="ready", promoted=True)
    ModelVersion.objects.create(project=project, kind="detector", architecture="b", status="ready", promoted=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(project=project, kind="morphology", architecture="c", status="ready", promoted=True)
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.create(project=project, kind="morphology", architecture="d", status="training", promoted=True)
