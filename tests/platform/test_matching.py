"""Hard galaxies for skilled volunteers: the aggregator measures both, the selector matches them."""
from __future__ import annotations

import random

import pytest
from django.urls import reverse

from zooplatform.classify import queue
from zooplatform.classify import services as classify_services
from zooplatform.classify.models import Volunteer
from zooplatform.classify.selectors import caches_clear, hard_slots, serving_context_get
from zooplatform.classify.services import subject_queue_refresh, subjects_serve
from zooplatform.galaxies.models import Subject
from zooplatform.learning.models import LearningSettings
from zooplatform.learning.services import aggregation_sweep, classification_aggregate

from .factories import (FEATURED, SMOOTH, ClassificationFactory, GoldStandardFactory, ProjectFactory, SubjectFactory,
                        VolunteerFactory, path)
from .test_classify_selector import _clean, backend  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def matching(project, **values):
    LearningSettings.objects.update_or_create(project=project, defaults=values)
    caches_clear()  # the serving context caches the settings for a few seconds


def classify(subject, pairs, volunteer=None):
    c = ClassificationFactory(subject=subject, answers=path(pairs), **({"volunteer": volunteer} if volunteer else {}))
    classification_aggregate(classification_id=c.pk)
    return c


@pytest.fixture
def board(monkeypatch):
    """Eight galaxies: five easy ones at high priority, three hard ones (difficulty 0.9, 0.6, 0.3) at low
    priority; no gold slots, so what a volunteer gets depends on matching alone."""
    monkeypatch.setattr(classify_services, "gold_slots", lambda **kwargs: 0)
    project = ProjectFactory()
    easy = [SubjectFactory(subject_set__project=project, priority=1.0) for _ in range(5)]
    hard = [SubjectFactory(subject_set__project=project, priority=0.1, difficulty=d) for d in (0.3, 0.9, 0.6)]
    matching(project, hard_share=1.0, skilled_accuracy=0.8, skilled_min_gold=10)
    subject_queue_refresh(project=project)
    return project, easy, sorted(hard, key=lambda s: -s.difficulty)


def serve(volunteer, n):
    return [s.pk for s in subjects_serve(volunteer_id=volunteer.pk, context=serving_context_get(), n=n)]


def test_skilled_volunteers_get_the_hardest_galaxies_first(board, backend):
    project, easy, hard = board
    skilled = VolunteerFactory(accuracy=0.9, n_gold=12)
    assert serve(skilled, 4) == [s.pk for s in hard] + [sorted(easy, key=lambda s: s.shuffle)[0].pk]
    assert set(serve(skilled, 4)) <= {s.pk for s in easy}  # the hard ones are seen now: back to priority


@pytest.mark.parametrize("accuracy, n_gold", [(0.6, 50), (0.95, 3), (None, 0)])
def test_others_get_galaxies_by_priority(board, backend, accuracy, n_gold):
    project, easy, hard = board
    volunteer = VolunteerFactory(accuracy=accuracy, n_gold=n_gold)
    assert set(serve(volunteer, 5)) == {s.pk for s in easy}


def test_a_share_of_zero_turns_matching_off(board, backend):
    project, easy, hard = board
    matching(project, hard_share=0.0)
    assert set(serve(VolunteerFactory(accuracy=1.0, n_gold=100), 5)) == {s.pk for s in easy}


def test_hard_slots_follow_the_share():
    rng = random.Random(3)
    draws = [hard_slots(n=1, share=0.3, rng=rng) for _ in range(4000)]
    assert 0.27 < sum(draws) / len(draws) < 0.33
    assert hard_slots(n=5, share=1.0) == 5 and hard_slots(n=5, share=0.0) == 0


def test_the_selector_reads_a_missing_skill_from_the_database_once(board, backend):
    if backend != "redis":
        pytest.skip("the skill copy lives in Redis")
    project, easy, hard = board
    volunteer = VolunteerFactory(accuracy=0.9, n_gold=12)
    r = queue.client()
    assert r.get(queue.skill_key(volunteer.pk)) is None
    assert serve(volunteer, 1) == [hard[0].pk]
    assert queue.queue_state(r, project_id=project.pk, volunteer_id=volunteer.pk)[3] == (0.9, 12)
    Volunteer.objects.filter(pk=volunteer.pk).update(accuracy=0.5)   # not through the aggregator: not heard of
    assert serve(volunteer, 1) == [hard[1].pk]


# ------------------------------------------------------------------------------------------- measuring
def test_a_galaxy_still_undecided_after_enough_votes_becomes_hard():
    project = ProjectFactory()
    matching(project, hard_after_votes=4, min_votes=3, vote_cap=None)
    split, clear = (SubjectFactory(subject_set__project=project) for _ in range(2))
    for pairs in (SMOOTH, FEATURED, SMOOTH):
        classify(split, pairs)
    assert Subject.objects.get(pk=split.pk).difficulty == 0.0   # three votes: too early to call it hard
    classify(split, FEATURED)
    hard = Subject.objects.get(pk=split.pk).difficulty
    assert 0.2 < hard <= 1.0
    subject_queue_refresh(project=project)
    r = queue.client()
    if r is not None:
        assert [int(i) for i in r.zrange(queue.hard_key(project.pk), 0, -1)] == [split.pk]
    for _ in range(4):  # the crowd settles it: less hard, or retired and not hard at all
        classify(split, SMOOTH)
    assert Subject.objects.get(pk=split.pk).difficulty < hard
    for _ in range(12):
        if Subject.objects.get(pk=clear.pk).state == Subject.State.RETIRED:
            break
        classify(clear, SMOOTH)
    assert Subject.objects.get(pk=clear.pk).state == Subject.State.RETIRED
    assert Subject.objects.get(pk=clear.pk).difficulty == 0.0


def test_gold_galaxies_teach_the_volunteers_accuracy_and_the_selector_hears_of_it(django_capture_on_commit_callbacks):
    project = ProjectFactory()
    good, poor = VolunteerFactory(), VolunteerFactory()
    for i in range(6):
        truth = SMOOTH if i % 2 else FEATURED
        gold = GoldStandardFactory(subject__subject_set__project=project, answers=path(truth))
        with django_capture_on_commit_callbacks(execute=True):
            classify(gold.subject, truth, good)
            classify(gold.subject, FEATURED if truth is SMOOTH else SMOOTH, poor)
    good.refresh_from_db()
    poor.refresh_from_db()
    assert good.n_gold == poor.n_gold == 6
    assert good.accuracy > 0.75 > 0.5 > poor.accuracy
    r = queue.client()
    if r is not None:
        assert queue.queue_state(r, project_id=project.pk, volunteer_id=good.pk)[3] == (good.accuracy, 6)


def test_the_sweep_recomputes_difficulty_and_accuracy(django_capture_on_commit_callbacks):
    project = ProjectFactory()
    matching(project, hard_after_votes=4, min_votes=3, vote_cap=None)
    split = SubjectFactory(subject_set__project=project)
    gold = GoldStandardFactory(subject__subject_set__project=project, answers=path(SMOOTH))
    volunteer = VolunteerFactory()
    for pairs in (SMOOTH, FEATURED, SMOOTH, FEATURED):
        ClassificationFactory(subject=split, answers=path(pairs))
    ClassificationFactory(subject=gold.subject, answers=path(SMOOTH), volunteer=volunteer)
    Subject.objects.filter(pk=gold.subject.pk).update(difficulty=0.5)  # stale: one vote is too few now
    r = queue.client()
    if r is not None:
        queue.skill_store(r, skills={volunteer.pk: (0.1, 1)})
    with django_capture_on_commit_callbacks(execute=True):
        aggregation_sweep(project_id=project.pk)
    assert Subject.objects.get(pk=split.pk).difficulty > 0.0
    assert Subject.objects.get(pk=gold.subject.pk).difficulty == 0.0
    volunteer.refresh_from_db()
    assert volunteer.accuracy > 0.7
    if r is not None:
        assert r.get(queue.skill_key(volunteer.pk)) is None  # dropped: the selector reads the new one


def test_the_learning_page_shows_matching_now(client, django_user_model):
    project = ProjectFactory()
    SubjectFactory(subject_set__project=project, difficulty=0.5)
    for accuracy, n_gold in ((0.9, 20), (0.9, 2), (0.5, 40)):
        ClassificationFactory(volunteer=VolunteerFactory(accuracy=accuracy, n_gold=n_gold),
                              subject__subject_set__project=project)
    client.force_login(django_user_model.objects.create_user("sci", is_staff=True))
    page = " ".join(client.get(reverse("dashboard:learning", kwargs={"slug": project.slug})).content.decode().split())
    assert "1 hard galaxies waiting; 1 of 3 volunteers with a skill estimate are skilled" in page
