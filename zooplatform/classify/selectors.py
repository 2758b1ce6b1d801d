"""Reads for the volunteer experience: what to show next, what a volunteer has done, the tree to ask."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

from django.db import connection
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from aggregation.tree import DecisionTree
from zooplatform.core import db
from zooplatform.core.exceptions import ApplicationError
from zooplatform.galaxies.models import GoldStandard, Project, Subject
from zooplatform.galaxies.services import DEFAULT_PROJECT_SLUG
from zooplatform.learning.models import LearningSettings
from zooplatform.workflows.models import WorkflowVersion

from .models import Classification, ClumpBox, ServedSubject, Volunteer
from .queue import SERVED_TTL

# Designator's gold-standard schedule (Zooniverse): the share of gold subjects falls with experience.
GOLD_SCHEDULE = ((20, 0.4), (40, 0.3), (60, 0.2))
GOLD_RATE_EXPERIENCED = 0.1


def gold_rate(n_seen: int) -> float:
    """Probability that the next subject shown to a volunteer who has seen ``n_seen`` subjects is a gold
    standard one: 40% for the first 20, then 30%, 20%, and 10% from the 61st on."""
    for upto, rate in GOLD_SCHEDULE:
        if n_seen < upto:
            return rate
    return GOLD_RATE_EXPERIENCED


def gold_slots(*, n_seen: int, n: int, rng: random.Random | None = None) -> int:
    """How many of the next ``n`` subjects should be gold, drawing each slot by :func:`gold_rate`."""
    rng = rng or random
    return sum(rng.random() < gold_rate(n_seen + i) for i in range(n))


@dataclass(frozen=True)
class ServingContext:
    """What serving a project needs: its id, the workflow version volunteers are shown now, and how hard
    galaxies are matched to skilled volunteers (``LearningSettings``; ``hard_share`` 0 turns it off)."""

    project_id: int
    project_slug: str
    workflow_version_id: int
    hard_share: float = 0.0
    skilled_accuracy: float = 1.0
    skilled_min_gold: int = 0

    def skilled(self, accuracy: float | None, n_gold: int) -> bool:
        """Whether a volunteer with this estimated accuracy, measured on ``n_gold`` gold galaxies, gets
        a share of the hardest galaxies."""
        return (self.hard_share > 0 and accuracy is not None and accuracy >= self.skilled_accuracy
                and n_gold >= self.skilled_min_gold)


def hard_slots(*, n: int, share: float, rng: random.Random | None = None) -> int:
    """How many of ``n`` slots a skilled volunteer gets from the hardest galaxies, each with probability
    ``share``."""
    rng = rng or random
    return sum(rng.random() < share for _ in range(n))


_context_cache: dict[str, tuple[float, ServingContext]] = {}
CONTEXT_CACHE_SECONDS = 10.0


def serving_context_get(*, project_slug: str | None = None) -> ServingContext:
    """The project (default ``galaxy-zoo``) and the latest version of its active workflow, in one query
    (the rule of ``workflows.selectors.workflow_version_current``: first active workflow by id, its
    highest version), cached per process for ``CONTEXT_CACHE_SECONDS``: a new workflow version reaches
    volunteers within seconds, and the next-subjects request saves a query."""
    slug = project_slug or DEFAULT_PROJECT_SLUG
    hit = _context_cache.get(slug)
    if hit is not None and time.monotonic() - hit[0] < CONTEXT_CACHE_SECONDS:
        return hit[1]
    context = _serving_context_load(slug)
    _context_cache[slug] = (time.monotonic(), context)
    return context


def _serving_context_load(slug: str) -> ServingContext:
    row = (WorkflowVersion.objects.filter(workflow__project__slug=slug, workflow__active=True)
           .order_by("workflow_id", "-version").values_list("workflow__project_id", "id").first())
    if row is None:
        if not Project.objects.filter(slug=slug).exists():
            raise ApplicationError(f"no project {slug!r}", field="project")
        raise ApplicationError(f"project {slug!r} has no active workflow with a version", field="project")
    matching = ("hard_share", "skilled_accuracy", "skilled_min_gold")
    values = (LearningSettings.objects.filter(project_id=row[0]).values(*matching).first()
              or {name: LearningSettings._meta.get_field(name).get_default() for name in matching})
    return ServingContext(project_id=row[0], project_slug=slug, workflow_version_id=row[1], **values)


def _unseen(qs: QuerySet, *, volunteer_id: int, now: datetime | None) -> QuerySet:
    """Subjects the volunteer has neither classified nor been served in the last ``SERVED_TTL``: two
    anti-joins, each one probe of a unique (volunteer, subject) index per candidate."""
    cutoff = (now or timezone.now()) - timedelta(seconds=SERVED_TTL)
    classified = Classification.objects.filter(volunteer_id=volunteer_id, subject_id=OuterRef("pk"))
    served = ServedSubject.objects.filter(volunteer_id=volunteer_id, subject_id=OuterRef("pk"), served_at__gte=cutoff)
    return qs.filter(~Exists(classified), ~Exists(served))


def subjects_next_for_volunteer(
    *, volunteer_id: int, project_id: int, limit: int, exclude: tuple[int, ...] | list[int] = (),
    now: datetime | None = None,
) -> QuerySet[Subject]:
    """The index path of the selector: the volunteer's next ``limit`` subjects, highest priority first,
    ties in the random ``shuffle`` order, never retired, never classified or recently served to them.
    Gold-standard subjects are left to :func:`gold_next_for_volunteer`, so they reach volunteers at the
    rate of the gold schedule and no faster.

    The database walks ``subject_queue_idx`` (project, -priority, shuffle WHERE active) from the top and
    stops after ``limit`` hits, so the cost grows with how many of the top subjects the volunteer has
    already seen, not with the size of the table.
    """
    qs = (Subject.objects.filter(project_id=project_id, state=Subject.State.ACTIVE)
          .filter(~Exists(GoldStandard.objects.filter(subject_id=OuterRef("pk")))))
    if exclude:
        qs = qs.exclude(pk__in=list(exclude))
    return _unseen(qs, volunteer_id=volunteer_id, now=now).order_by("-priority", "shuffle")[:limit]


def subjects_hard_for_volunteer(
    *, volunteer_id: int, project_id: int, limit: int, exclude: tuple[int, ...] | list[int] = (),
    now: datetime | None = None,
) -> QuerySet[Subject]:
    """The index path's hard galaxies for a skilled volunteer: the ``limit`` active, non-gold subjects
    with the highest ``difficulty`` they have not seen, walking ``subject_hard_idx``."""
    qs = (Subject.objects.filter(project_id=project_id, state=Subject.State.ACTIVE, difficulty__gt=0)
          .filter(~Exists(GoldStandard.objects.filter(subject_id=OuterRef("pk")))))
    if exclude:
        qs = qs.exclude(pk__in=list(exclude))
    return _unseen(qs, volunteer_id=volunteer_id, now=now).order_by("-difficulty", "shuffle")[:limit]


def volunteer_skill_get(*, volunteer_id: int) -> tuple[float | None, int]:
    """(estimated accuracy or None, gold galaxies behind it) of a volunteer, as the selector uses it."""
    row = Volunteer.objects.filter(pk=volunteer_id).values_list("accuracy", "n_gold").first()
    return row or (None, 0)


_gold_cache: dict[int, tuple[float, list[int]]] = {}
GOLD_CACHE_SECONDS = 60.0
GOLD_CHUNK = 50
GOLD_MAX_CHUNKS = 10


def gold_ids_for_project(*, project_id: int) -> list[int]:
    """The project's active gold-standard subject ids in ``shuffle`` order, cached per process for a minute
    (a gold set is small and rarely edited)."""
    hit = _gold_cache.get(project_id)
    if hit is not None and time.monotonic() - hit[0] < GOLD_CACHE_SECONDS:
        return hit[1]
    ids = list(Subject.objects.filter(project_id=project_id, state=Subject.State.ACTIVE, gold__isnull=False)
               .order_by("shuffle").values_list("pk", flat=True))
    _gold_cache[project_id] = (time.monotonic(), ids)
    return ids


def gold_next_for_volunteer(
    *, volunteer_id: int, project_id: int, limit: int, exclude: tuple[int, ...] | list[int] = (),
    now: datetime | None = None, start: float | None = None,
) -> list[Subject]:
    """Up to ``limit`` active gold-standard subjects unseen by the volunteer, walking the gold set from a
    random point (wrapping), so that different volunteers meet it in different orders. Each chunk of
    candidates is confirmed in one query; a volunteer who has seen nearly all of a large gold set gets
    none after ``GOLD_MAX_CHUNKS`` chunks rather than a long walk."""
    ids = gold_ids_for_project(project_id=project_id)
    if not ids or limit <= 0:
        return []
    start = random.random() if start is None else start
    offset = int(start * len(ids)) % len(ids)
    skip = set(exclude)
    rotated = [i for i in ids[offset:] + ids[:offset] if i not in skip]
    found: list[Subject] = []
    for n, first in enumerate(range(0, len(rotated), GOLD_CHUNK)):
        if n >= GOLD_MAX_CHUNKS:
            break
        chunk = rotated[first:first + GOLD_CHUNK]
        rows = {s.pk: s for s in _unseen(Subject.objects.filter(pk__in=chunk, state=Subject.State.ACTIVE),
                                          volunteer_id=volunteer_id, now=now)}
        found += [rows[i] for i in chunk if i in rows][:limit - len(found)]
        if len(found) >= limit:
            break
    return found


def caches_clear() -> None:
    """Forget the per-process caches (tests, whose databases reuse primary keys)."""
    _gold_cache.clear()
    _context_cache.clear()
    _tree.cache_clear()


def subjects_servable(*, ids: list[int], volunteer_id: int) -> dict[int, Subject]:
    """Of the subjects ``ids`` (picked from the Redis queue), those that may really be served: still
    active and not classified by the volunteer. The database, not Redis, has the last word."""
    if not ids:
        return {}
    with db.prepared_cursor() as cursor:
        cursor.execute(_servable_sql(connection.vendor, len(ids)), [*ids, Subject.State.ACTIVE.value, volunteer_id])
        return {s.pk: s for s in db.models_from_rows(Subject, cursor.fetchall())}


@lru_cache(maxsize=64)
def _servable_sql(vendor: str, n: int) -> str:
    """The SQL of :func:`subjects_servable` for ``n`` ids, built once: compiling the ORM's ``~Exists``
    subquery was the largest single cost of serving under load (benchmarks/volunteer_load.py)."""
    s, c = Subject._meta.db_table, Classification._meta.db_table
    columns = ", ".join(f"s.{connection.ops.quote_name(f.column)}" for f in Subject._meta.concrete_fields)
    marks = ", ".join(["%s"] * n)
    return (f"SELECT {columns} FROM {s} s WHERE s.id IN ({marks}) AND s.state = %s AND NOT EXISTS "
            f"(SELECT 1 FROM {c} k WHERE k.volunteer_id = %s AND k.subject_id = s.id)")


def subject_get(*, pk) -> Subject:
    try:
        return Subject.objects.get(pk=pk)
    except (Subject.DoesNotExist, ValueError, TypeError):
        raise ApplicationError(f"no subject {pk!r}", field="subject") from None


def subject_current_workflow_version_id(*, subject: Subject) -> int:
    return serving_context_get(project_slug=subject.project.slug).workflow_version_id


def volunteer_served_count(*, volunteer_id: int, upto: int = 61) -> int:
    """How many subjects the volunteer has been served, counted only up to ``upto`` (all the gold
    schedule needs), so the count stays an index range scan of bounded length."""
    return ServedSubject.objects.filter(volunteer_id=volunteer_id).values("pk")[:upto].count()


def classifications_for_volunteer(*, volunteer_id: int | None) -> QuerySet[Classification]:
    """The volunteer's history, newest first, with subjects and boxes loaded in two more queries."""
    if volunteer_id is None:
        return Classification.objects.none()
    return (Classification.objects.filter(volunteer_id=volunteer_id).select_related("subject")
            .prefetch_related("boxes").order_by("-created_at", "-id"))


def volunteer_stats(*, volunteer_id: int | None) -> dict:
    if volunteer_id is None:
        return {"classifications": 0, "boxes": 0, "gold_seen": 0}
    mine = Classification.objects.filter(volunteer_id=volunteer_id)
    return {
        "classifications": mine.count(),
        "boxes": ClumpBox.objects.filter(classification__volunteer_id=volunteer_id).count(),
        "gold_seen": mine.filter(subject__gold__isnull=False).count(),
    }


@lru_cache(maxsize=4)
def _submit_lookup_sql(vendor: str) -> str:
    """The SQL of :func:`submit_lookup`, built once per database vendor (whose quoting it uses)."""
    c, sv = Classification._meta.db_table, ServedSubject._meta.db_table
    s, g, wv = Subject._meta.db_table, GoldStandard._meta.db_table, WorkflowVersion._meta.db_table
    return (f"SELECT k.id, k.subject_id, sv.workflow_version_id, CAST(wv.created_at AS TEXT), s.width, s.height, g.answers, "
            f"g.feedback FROM {sv} sv JOIN {wv} wv ON wv.id = sv.workflow_version_id JOIN {s} s ON s.id = sv.subject_id "
            f"LEFT JOIN {g} g ON g.subject_id = sv.subject_id "
            f"LEFT JOIN {c} k ON k.volunteer_id = sv.volunteer_id AND k.{connection.ops.quote_name('key')} = %s "
            f"WHERE sv.volunteer_id = %s AND sv.subject_id = %s LIMIT 1")


def submit_lookup(*, volunteer_id: int, subject_id: int, key: str) -> tuple | None:
    """What a submission needs, in one query: ``(existing_id, existing_subject, served_version,
    version_created_at, width, height, gold_answers, gold_feedback)`` for a subject served to the
    volunteer (``existing_*``: the classification already stored under ``key``, or None), or None if it
    was never served. ``version_created_at`` is the database's text of it: it is only a cache key
    (:func:`workflow_tree_get`), so it is not parsed. Plain SQL: building this join with the ORM cost a
    fifth of the web server's CPU per submission under load (benchmarks/volunteer_load.py)."""
    with db.prepared_cursor() as cursor:
        cursor.execute(_submit_lookup_sql(connection.vendor), [key, volunteer_id, subject_id])
        row = cursor.fetchone()
    if row is None:
        return None
    existing_id, existing_subject, version_id, created_at, width, height, answers, feedback = row
    if answers is not None:
        answers = GoldStandard._meta.get_field("answers").from_db_value(answers, None, connection)
    return existing_id, existing_subject, version_id, created_at, width, height, answers, feedback


@lru_cache(maxsize=256)
def _tree(pk: int, created_at: str) -> tuple[DecisionTree, dict]:
    version = WorkflowVersion.objects.only("tree", "box_task").get(pk=pk)
    return version.decision_tree, dict(version.box_task or {})


def workflow_tree_get(*, pk: int, created_at: str) -> tuple[DecisionTree, dict]:
    """The parsed tree and box task of a workflow version. Versions are immutable, so they are cached
    per process; the key includes ``created_at`` (as the database's text) so a reused primary key (SQLite
    test databases) can never return another version's tree."""
    return _tree(pk, created_at)
