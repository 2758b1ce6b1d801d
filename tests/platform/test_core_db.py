"""``zooplatform.core.db``: the plain-SQL statements of the hot paths write and read what the ORM would; on
PostgreSQL they are prepared once per connection, and the per-request health check asks the socket first."""
from __future__ import annotations

import time
from datetime import timedelta

import psycopg
import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from zooplatform.classify.models import Classification, ClumpBox, ServedSubject
from zooplatform.core import db
from zooplatform.galaxies.models import Subject

from .factories import ClassificationFactory, SubjectFactory, VolunteerFactory

pytestmark = pytest.mark.django_db

ANSWERS = [{"question": "smooth-or-featured", "answer": "artifact"}]


def test_insert_returns_the_pk_and_stores_what_the_orm_would():
    subject, volunteer = SubjectFactory(), VolunteerFactory()
    version = subject.project.workflows.get(slug="gz-decals").current_version
    started = timezone.now() - timedelta(seconds=20)
    fields = dict(volunteer=volunteer, subject=subject, workflow_version=version, answers=ANSWERS,
                  no_clumps=True, started_at=started, finished_at=started + timedelta(seconds=9),
                  client={"screen": [390, 844], "ua": "é ünïcode"})
    ours = Classification(key="k-plain-sql-1", **fields)
    before = timezone.now()
    db.insert([ours], returning_pk=True)
    assert ours.pk is not None and not ours._state.adding
    orm = Classification.objects.create(key="k-orm-000001", **{**fields, "subject": SubjectFactory(subject_set=subject.subject_set)})
    stored, reference = Classification.objects.get(pk=ours.pk), Classification.objects.get(pk=orm.pk)
    for name in ("answers", "no_clumps", "started_at", "finished_at", "client", "aggregated_at", "workflow_version_id"):
        assert getattr(stored, name) == getattr(reference, name), name
    assert before <= stored.created_at <= timezone.now() and stored.created_at == ours.created_at  # auto_now_add

    db.insert([ClumpBox(classification_id=ours.pk, x=1.5, y=2, width=3, height=4),
               ClumpBox(classification_id=ours.pk, x=0, y=0, width=1, height=1)])
    assert sorted(b.as_dict()["x"] for b in stored.boxes.all()) == [0.0, 1.5]


def test_insert_raises_integrity_errors_and_rolls_back_with_the_transaction():
    c = ClassificationFactory()
    again = Classification(volunteer_id=c.volunteer_id, subject_id=SubjectFactory().pk,
                           workflow_version_id=c.workflow_version_id, key=c.key, answers=ANSWERS)
    with pytest.raises(IntegrityError), transaction.atomic():
        db.insert([ClumpBox(classification_id=c.pk, x=0, y=0, width=2, height=2)])
        db.insert([again], returning_pk=True)  # same (volunteer, key)
    assert Classification.objects.count() == 1 and ClumpBox.objects.count() == 0


def test_upsert_updates_the_conflicting_row():
    c = ClassificationFactory()
    t0 = timezone.now()
    other = SubjectFactory()
    rows = [ServedSubject(volunteer_id=c.volunteer_id, subject_id=s.pk, workflow_version_id=c.workflow_version_id,
                          served_at=t0) for s in (c.subject, other)]
    db.insert(rows, unique_fields=["volunteer", "subject"], update_fields=["served_at", "workflow_version"])
    later = t0 + timedelta(hours=1)
    db.insert([ServedSubject(volunteer_id=c.volunteer_id, subject_id=other.pk, workflow_version_id=c.workflow_version_id,
                             served_at=later)],
              unique_fields=["volunteer", "subject"], update_fields=["served_at", "workflow_version"])
    served = dict(ServedSubject.objects.values_list("subject_id", "served_at"))
    assert served == {c.subject_id: t0, other.pk: later}


@pytest.mark.django_db(transaction=True)  # autocommit, as in production: the statement is its own transaction
def test_insert_with_children_is_all_or_nothing():
    c = ClassificationFactory()
    parent = Classification(volunteer_id=c.volunteer_id, subject_id=SubjectFactory().pk,
                            workflow_version_id=c.workflow_version_id, key="k-children-1", answers=ANSWERS)
    boxes = [ClumpBox(x=1, y=2, width=3, height=4), ClumpBox(x=5.5, y=6, width=7, height=8.25)]
    db.insert_with_children(parent, boxes, fk="classification")
    assert parent.pk and all(b.classification_id == parent.pk for b in boxes)
    assert sorted((b.x, b.height) for b in Classification.objects.get(pk=parent.pk).boxes.all()) == [(1, 4), (5.5, 8.25)]
    # A box that breaks a check constraint: neither the classification nor any box is stored.
    again = Classification(volunteer_id=c.volunteer_id, subject_id=SubjectFactory().pk,
                           workflow_version_id=c.workflow_version_id, key="k-children-2", answers=ANSWERS)
    with pytest.raises(IntegrityError):
        db.insert_with_children(again, [ClumpBox(x=1, y=1, width=2, height=2), ClumpBox(x=1, y=1, width=0, height=2)],
                                fk="classification")
    assert not Classification.objects.filter(key="k-children-2").exists()
    assert ClumpBox.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_row_that_may_be_lost_is_still_written():
    c = ClassificationFactory()
    db.insert([ServedSubject(volunteer_id=c.volunteer_id, subject_id=c.subject_id, workflow_version_id=c.workflow_version_id,
                             served_at=timezone.now())], durable=False)
    assert ServedSubject.objects.filter(volunteer_id=c.volunteer_id, subject_id=c.subject_id).exists()


@pytest.mark.django_db(transaction=True)
def test_a_row_that_may_be_lost_still_gets_its_pk():
    c = ClassificationFactory()
    row = ServedSubject(volunteer_id=c.volunteer_id, subject_id=SubjectFactory().pk,
                        workflow_version_id=c.workflow_version_id, served_at=timezone.now())
    db.insert([row], returning_pk=True, durable=False)  # the SET's empty result comes before the id
    assert ServedSubject.objects.get(pk=row.pk).subject_id == row.subject_id


# ------------------------------------------------------------------------------ prepared statements (PostgreSQL)
needs_postgres = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's prepared statements")


@needs_postgres
def test_hot_statements_are_prepared_once_per_connection():
    c = ClassificationFactory()
    for key in ("k-prepared-1", "k-prepared-2"):
        parent = Classification(volunteer_id=c.volunteer_id, subject_id=SubjectFactory().pk,
                                workflow_version_id=c.workflow_version_id, key=key, answers=ANSWERS)
        db.insert_with_children(parent, [ClumpBox(x=1, y=1, width=2, height=2)], fk="classification")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
                       ["WITH p AS (INSERT INTO%"])
        assert len(cursor.fetchall()) == 1  # the second insert reused the first one's statement
    assert Classification.objects.get(key="k-prepared-2").boxes.get().as_dict() == {"x": 1, "y": 1, "width": 2, "height": 2}


@needs_postgres
def test_prepared_statements_are_logged_with_their_parameters():
    with CaptureQueriesContext(connection) as captured, db.prepared_cursor() as cursor:
        cursor.execute("SELECT %s::int8 + %s", [2, 40])
        assert cursor.fetchone() == (42,)
    assert captured[0]["sql"] == "SELECT 2::int8 + 40"


def test_models_from_rows_builds_what_the_orm_reads():
    subject = SubjectFactory(metadata={"band": "r"})
    columns = ", ".join(connection.ops.quote_name(f.column) for f in Subject._meta.concrete_fields)
    with db.prepared_cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {Subject._meta.db_table} WHERE id = %s", [subject.pk])
        (ours,) = db.models_from_rows(Subject, cursor.fetchall())
    reference = Subject.objects.get(pk=subject.pk)
    for field in Subject._meta.concrete_fields:
        assert getattr(ours, field.attname) == getattr(reference, field.attname), field.name
    assert not ours._state.adding and ours.image.url == reference.image.url


# ------------------------------------------------------------------------------ the health check (PostgreSQL)
@needs_postgres
@pytest.mark.django_db(transaction=True)  # autocommit, as in production: an idle connection between requests
def test_health_check_of_a_quiet_connection_asks_the_socket_not_the_server(monkeypatch):
    connection.ensure_connection()
    monkeypatch.setattr(connection, "is_usable", lambda: pytest.fail("sent SELECT 1"))
    connection.health_check_done = False
    connection.close_if_health_check_failed()
    assert connection.health_check_done and connection.connection is not None


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_health_check_replaces_a_connection_the_server_closed():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    with psycopg.connect(**connection.get_connection_params()) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    for _ in range(100):  # the termination notice reaches the socket
        if not connection._idle_and_quiet():
            break
        time.sleep(0.01)
    connection.health_check_done = False  # a new request
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid
