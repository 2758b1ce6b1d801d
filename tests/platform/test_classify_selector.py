"""The next-subject selector: both paths (the Redis queue and the database index) obey the same rules."""
from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from zooplatform.classify import queue
from zooplatform.classify.models import ServedSubject
from zooplatform.classify.selectors import (
    gold_rate,
    gold_slots,
    serving_context_get,
    subjects_next_for_volunteer,
)
from zooplatform.classify.services import subject_queue_refresh, subjects_serve
from zooplatform.galaxies.models import Subject
from zooplatform.galaxies.services import subject_retire

from .factories import ClassificationFactory, GoldStandardFactory, SubjectFactory, VolunteerFactory

pytestmark = pytest.mark.django_db


def clean_classify_state():
    """Fresh per-process caches and no Redis keys of ours left from an earlier test (ids get reused)."""
    from django.core.cache import cache

    from zooplatform.classify.selectors import caches_clear

    caches_clear()
    url = getattr(settings, "REDIS_URL", None)
    if url:
        r = queue._client_for(url)
        for pattern in (f"{queue.PREFIX}*", "*throttle:*"):
            keys = list(r.scan_iter(pattern, count=1000))
            if keys:
                r.delete(*keys)
    else:
        cache.clear()  # the local-memory cache of this process only


def assert_handed_to_aggregator(send_task, classification_id: int) -> None:
    """The classification reached the aggregator's way in: with Redis, the aggregation list (and one drain
    task for it, sent by the submission that found the list empty); without, its own task."""
    r = queue.client()
    if r is None:
        send_task.assert_called_once_with("learning.classification_aggregate", args=[classification_id],
                                          queue="default")
    else:
        assert queue.pending_pop(r, 10) == [classification_id]
        send_task.assert_called_once_with("learning.aggregation_drain", queue="default")


@pytest.fixture(autouse=True)
def _clean():
    clean_classify_state()
    yield
    clean_classify_state()


@pytest.fixture(params=["index", "redis"])
def backend(request, monkeypatch):
    """Run a test on the database index path and, where Redis is configured, on the Redis queue path."""
    if request.param == "index":
        monkeypatch.setattr(queue, "client", lambda: None)
    elif not getattr(settings, "REDIS_URL", None):
        pytest.skip("REDIS_URL is not set: the Redis queue path runs in the PostgreSQL + Redis pass")
    return request.param


def make_subjects(n, **kwargs):
    return [SubjectFactory(**kwargs) for _ in range(n)]


def serve(volunteer, n, **kwargs):
    context = serving_context_get()
    return subjects_serve(volunteer_id=volunteer.pk, context=context, n=n, **kwargs)


def test_gold_schedule_tapers_with_experience():
    assert [gold_rate(n) for n in (0, 19, 20, 39, 40, 59, 60, 500)] == [0.4, 0.4, 0.3, 0.3, 0.2, 0.2, 0.1, 0.1]
    rng = random.Random(7)
    draws = [gold_slots(n_seen=0, n=1, rng=rng) for _ in range(4000)]
    assert 0.37 < sum(draws) / len(draws) < 0.43
    draws = [gold_slots(n_seen=100, n=1, rng=rng) for _ in range(4000)]
    assert 0.08 < sum(draws) / len(draws) < 0.12


def test_highest_priority_first_ties_by_shuffle(backend):
    subjects = make_subjects(8)
    for i, s in enumerate(subjects):
        s.priority = 5.0 if i < 3 else 1.0
        s.save(update_fields=["priority"])
    subject_queue_refresh(project=subjects[0].project)
    volunteer = VolunteerFactory()
    got = serve(volunteer, 8)
    expected = sorted(subjects, key=lambda s: (-s.priority, s.shuffle))
    assert [s.pk for s in got] == [s.pk for s in expected]


def test_never_classified_never_retired_never_twice(backend):
    subjects = make_subjects(6)
    volunteer = VolunteerFactory()
    ClassificationFactory(volunteer=volunteer, subject=subjects[0])
    subject_retire(subject=subjects[1], reason="manual")
    first = serve(volunteer, 2)
    second = serve(volunteer, 5)
    served = [s.pk for s in first + second]
    assert len(served) == len(set(served)) == 4
    assert subjects[0].pk not in served and subjects[1].pk not in served
    assert serve(volunteer, 3) == []  # everything left was served in the last two hours
    assert ServedSubject.objects.filter(volunteer=volunteer).count() == 4


def test_retired_after_the_queue_was_built_is_not_served(backend):
    subjects = make_subjects(4)
    subject_queue_refresh(project=subjects[0].project)
    for s in subjects[:3]:
        subject_retire(subject=s, reason="consensus")
    assert [s.pk for s in serve(VolunteerFactory(), 4)] == [subjects[3].pk]


def test_classified_without_redis_hearing_of_it_is_not_served(backend):
    subjects = make_subjects(3)
    volunteer = VolunteerFactory()
    (first,) = serve(volunteer, 1)  # loads the volunteer's seen set
    for subject in subjects:
        if subject.pk != first.pk:  # written behind the selector's back
            ClassificationFactory(volunteer=volunteer, subject=subject)
    assert serve(volunteer, 3) == []


def test_abandoned_subjects_come_back_after_the_served_ttl(backend):
    subjects = make_subjects(2)
    volunteer = VolunteerFactory()
    assert len(serve(volunteer, 2)) == 2
    later = timezone.now() + timedelta(seconds=queue.SERVED_TTL + 60)
    if backend == "redis":
        # Redis compares against the wall clock: age the served times instead of moving the clock.
        r = queue.client()
        r.zadd(queue.seen_key(volunteer.pk), {s.pk: 1000.0 for s in subjects})
        ServedSubject.objects.filter(volunteer=volunteer).update(served_at=timezone.now() - timedelta(hours=3))
        later = None
    again = serve(volunteer, 2, now=later)
    assert {s.pk for s in again} == {s.pk for s in subjects}


def test_priority_change_is_seen_after_queue_refresh(backend):
    subjects = make_subjects(5)
    project = subjects[0].project
    subject_queue_refresh(project=project)
    Subject.objects.filter(pk=subjects[4].pk).update(priority=100.0)  # the learning loop, in bulk
    subject_queue_refresh(project=project)
    assert serve(VolunteerFactory(), 1)[0].pk == subjects[4].pk


def test_a_long_history_does_not_lengthen_the_walk():
    """The Redis walk starts where the volunteer's last one stopped: the members a pick looks at (one
    ZSCORE against the seen set each, counted by Redis itself) do not grow with what the volunteer has
    already seen at the top of the queue, and the picks stay in priority order."""
    if not getattr(settings, "REDIS_URL", None):
        pytest.skip("REDIS_URL is not set: the Redis queue path runs in the PostgreSQL + Redis pass")
    subjects = make_subjects(60)
    subject_queue_refresh(project=subjects[0].project)
    r = queue.client()

    def zscore_calls() -> int:
        return int(r.info("commandstats").get("cmdstat_zscore", {}).get("calls", 0))

    volunteer = VolunteerFactory()
    served, looked_at = [], []
    for _ in range(10):
        before = zscore_calls()
        got = serve(volunteer, 5)
        looked_at.append(zscore_calls() - before)
        for subject in got:
            ClassificationFactory(volunteer=volunteer, subject=subject)
        served += got
    expected = sorted(subjects, key=lambda s: (-s.priority, s.shuffle))[:50]
    assert [s.pk for s in served] == [s.pk for s in expected]
    # Each pick looks at the 5 it picks, where a walk from the top would look at 5, 10, ..., 50.
    assert max(looked_at) <= 5, looked_at


def test_a_new_build_of_the_queue_walks_from_the_top_again():
    """The cursor belongs to one build of the queue: after a rebuild with new priorities, the volunteer's
    next pick starts from the new top (and before the rebuild it goes on past the cursor)."""
    if not getattr(settings, "REDIS_URL", None):
        pytest.skip("REDIS_URL is not set: the Redis queue path runs in the PostgreSQL + Redis pass")
    subjects = make_subjects(10)
    project = subjects[0].project
    subject_queue_refresh(project=project)
    order = sorted(subjects, key=lambda s: (-s.priority, s.shuffle))
    volunteer = VolunteerFactory()
    assert [s.pk for s in serve(volunteer, 3)] == [s.pk for s in order[:3]]
    Subject.objects.filter(pk=order[-1].pk).update(priority=100.0)
    assert [s.pk for s in serve(volunteer, 1)] == [order[3].pk]   # same build: on from the cursor
    queue.client().set(queue.fresh_key(project.pk), 0.0)          # make sure the new build's stamp differs
    subject_queue_refresh(project=project)
    assert [s.pk for s in serve(volunteer, 1)] == [order[-1].pk]


def test_gold_subjects_mixed_in_by_the_schedule(backend):
    normal = make_subjects(30)
    gold = [GoldStandardFactory(subject=SubjectFactory()).subject for _ in range(12)]
    subject_queue_refresh(project=normal[0].project)
    volunteer = VolunteerFactory()
    n_gold = gold_slots(n_seen=0, n=10, rng=random.Random(3))
    got = serve(volunteer, 10, rng=random.Random(3))
    assert len(got) == 10
    assert sum(s.pk in {g.pk for g in gold} for s in got) == n_gold > 0


def test_gold_share_for_new_volunteers_is_about_forty_percent(backend):
    make_subjects(25)
    gold_ids = {GoldStandardFactory(subject=SubjectFactory()).subject_id for _ in range(25)}
    rng = random.Random(11)
    shown = gold = 0
    for _ in range(12):
        got = serve(VolunteerFactory(), 5, rng=rng)
        shown += len(got)
        gold += sum(s.pk in gold_ids for s in got)
    assert shown == 60
    assert 0.2 < gold / shown < 0.6


def test_redis_down_falls_back_to_the_index(monkeypatch):
    make_subjects(3)
    down = queue._client_for("redis://127.0.0.1:1/0")
    monkeypatch.setattr(queue, "client", lambda: down)
    got = serve(VolunteerFactory(), 2)
    assert len(got) == 2


def test_index_path_walks_the_queue_index_without_scanning():
    """The index path is one bounded query; on PostgreSQL its plan uses the partial queue index."""
    make_subjects(5)
    volunteer = VolunteerFactory()
    context = serving_context_get()
    qs = subjects_next_for_volunteer(volunteer_id=volunteer.pk, project_id=context.project_id, limit=3)
    with CaptureQueriesContext(connection) as captured:
        assert len(list(qs)) == 3
    assert len(captured) == 1
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")  # a 5-row table would otherwise be read whole
            sql, params = qs.query.sql_with_params()
            cursor.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "subject_queue_idx" in plan, plan


def test_serving_costs_a_few_queries(backend):
    make_subjects(6)
    volunteer = VolunteerFactory()
    serve(volunteer, 1)  # warm: the Redis queue and the volunteer's seen set
    context = serving_context_get()
    with CaptureQueriesContext(connection) as captured:
        got = subjects_serve(volunteer_id=volunteer.pk, context=context, n=3)
    assert len(got) == 3
    statements = [q["sql"] for q in captured if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "SET LOCAL"))]
    assert len(statements) <= 5, statements


def test_gold_fills_in_when_nothing_else_is_left(backend):
    normal = make_subjects(2)
    gold = {GoldStandardFactory(subject=SubjectFactory()).subject_id for _ in range(3)}
    subject_queue_refresh(project=normal[0].project)
    got = serve(VolunteerFactory(), 5, rng=random.Random(0))
    assert {s.pk for s in got} == {s.pk for s in normal} | gold


def test_queue_refresh_task_rebuilds_every_project(backend):
    from zooplatform.classify.tasks import subject_queue_refresh_task

    make_subjects(3)
    expected = 3 if backend == "redis" else 0  # without Redis there is no queue: the index is always current
    assert subject_queue_refresh_task() == expected
    assert subject_queue_refresh_task.name == "classify.subject_queue_refresh"


def test_stale_queue_is_rebuilt_by_a_worker_and_a_missing_one_at_once(backend):
    from unittest import mock

    from zooplatform.celery import app as celery_app

    if backend != "redis":
        pytest.skip("the index path has no queue to rebuild")
    subjects = make_subjects(3)
    project = subjects[0].project
    r = queue.client()
    with mock.patch.object(celery_app, "send_task") as send_task:
        serve(VolunteerFactory(), 1)  # no queue yet: built inline
        assert r.exists(queue.queue_key(project.pk)) and not send_task.called
        r.set(queue.fresh_key(project.pk), 1.0)  # built long ago
        assert len(serve(VolunteerFactory(), 1)) == 1  # served from the stale queue meanwhile
        send_task.assert_called_once_with("classify.subject_queue_refresh", args=[project.pk], queue="default")
        serve(VolunteerFactory(), 1)
        assert send_task.call_count == 1  # one rebuild at a time


def test_new_gold_standard_is_served_at_once_despite_the_cache(backend):
    make_subjects(2)
    volunteer = VolunteerFactory()
    serve(volunteer, 1)  # fills the per-process gold cache (empty)
    gold = GoldStandardFactory(subject=SubjectFactory()).subject_id
    subject_queue_refresh(project=Subject.objects.get(pk=gold).project)
    got = serve(VolunteerFactory(), 3, rng=random.Random(0))
    assert gold in {s.pk for s in got}
