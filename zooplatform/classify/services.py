"""Writes for the volunteer experience: volunteers, serving subjects, submitting classifications.

Public entry points for other code:

- :func:`subjects_serve` hands a volunteer their next subjects and records them as served.
- :func:`subject_queue_refresh` rebuilds a project's Redis queue from the database; call it after
  changing ``Subject.priority`` in bulk (the learning loop) so volunteers see the new order at once.
- :func:`classification_submit` validates and stores one classification and enqueues its aggregation.
"""
from __future__ import annotations

import logging
import math
import random
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Mapping, Sequence

from django.db import IntegrityError, transaction
from django.utils import timezone

from aggregation.tree import TreeError
from zooplatform.core import db
from zooplatform.core.exceptions import ApplicationError
from zooplatform.galaxies.models import Project, Subject

from . import queue
from .models import Classification, ClumpBox, ServedSubject, Volunteer
from .selectors import (
    ServingContext,
    gold_next_for_volunteer,
    gold_slots,
    hard_slots,
    subjects_hard_for_volunteer,
    subjects_next_for_volunteer,
    subjects_servable,
    submit_lookup,
    volunteer_served_count,
    volunteer_skill_get,
    workflow_tree_get,
)

logger = logging.getLogger(__name__)

AGGREGATE_TASK = "learning.classification_aggregate"
AGGREGATE_DRAIN_TASK = "learning.aggregation_drain"
QUEUE_REFRESH_TASK = "classify.subject_queue_refresh"
MAX_SERVE = 20
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{8,64}$")
DEFAULT_MAX_BOXES = 30
_AGGREGATE_DIRECT: ContextVar[bool] = ContextVar("aggregate_direct", default=False)


# ------------------------------------------------------------------------------------------- volunteers
def volunteer_get_or_create(*, user=None, session_key: str | None = None) -> Volunteer:
    """The volunteer of a registered ``user``, or of an anonymous browser session ``session_key``."""
    if user is not None:
        volunteer, _ = Volunteer.objects.get_or_create(user=user)
        return volunteer
    if not session_key:
        raise ApplicationError("an anonymous volunteer needs a session")
    volunteer, _ = Volunteer.objects.get_or_create(session_key=session_key)
    return volunteer


@transaction.atomic
def volunteer_claim(*, user, volunteer_id: int | None) -> Volunteer:
    """The volunteer of ``user`` once they register or log in from a browser whose anonymous volunteer
    was ``volunteer_id``; their anonymous history is kept.

    - The user has no volunteer yet (a new registration): the anonymous volunteer becomes theirs, the
      same row, so every classification and served subject stays with it.
    - The user already has one (logging in again on a new browser): the anonymous volunteer's
      classifications and served subjects move to the user's volunteer, except those for subjects the
      user had already classified (a volunteer classifies a subject once); those stay on the anonymous
      row, which is never deleted (classifications are never lost).
    """
    anonymous = (Volunteer.objects.select_for_update().filter(pk=volunteer_id, user__isnull=True).first()
                 if volunteer_id else None)
    mine = Volunteer.objects.select_for_update().filter(user=user).first()
    if mine is None:
        if anonymous is None:
            return Volunteer.objects.create(user=user)
        anonymous.user = user
        anonymous.save(update_fields=["user"])
        return anonymous
    if anonymous is not None:
        _volunteer_merge(source=anonymous, target=mine)
    return mine


def _volunteer_merge(*, source: Volunteer, target: Volunteer) -> int:
    target_classified = Classification.objects.filter(volunteer=target)
    moved = (Classification.objects.filter(volunteer=source)
             .exclude(subject_id__in=target_classified.values("subject_id"))
             .exclude(key__in=target_classified.values("key"))
             .update(volunteer=target))
    (ServedSubject.objects.filter(volunteer=source)
     .exclude(subject_id__in=ServedSubject.objects.filter(volunteer=target).values("subject_id"))
     .update(volunteer=target))
    source_id, target_id = source.pk, target.pk
    transaction.on_commit(lambda: (queue.seen_forget(volunteer_id=source_id), queue.seen_forget(volunteer_id=target_id)))
    return moved


# ------------------------------------------------------------------------------------------- serving
def subject_queue_refresh(*, project: Project | int) -> int:
    """Rebuild ``project``'s precomputed queue in Redis from the database: its top ``queue.QUEUE_SIZE``
    active subjects by priority (ties by the random ``shuffle`` key) and, apart, its active
    gold-standard subjects (served only in the gold schedule's slots) and its ``queue.HARD_SIZE``
    hardest subjects (by ``difficulty``, for skilled volunteers). Returns the number of subjects queued
    (0 without Redis, where the selector always walks the index and so sees priority changes at once).

    Call it after changing priorities in bulk (``Subject.objects.filter(...).update(priority=...)``)
    and after importing or retiring many subjects. The selector has a queue older than
    ``queue.QUEUE_MAX_AGE`` seconds rebuilt by a worker (task ``classify.subject_queue_refresh``), and
    builds a missing one itself. Reads one index range; safe to call concurrently.
    """
    project_id = project.pk if isinstance(project, Project) else int(project)
    r = queue.client()
    if r is None:
        return 0
    active = Subject.objects.filter(project_id=project_id, state=Subject.State.ACTIVE)
    ranked = list(active.filter(gold__isnull=True).order_by("-priority", "shuffle")
                  .values_list("pk", flat=True)[:queue.QUEUE_SIZE])
    gold = list(active.filter(gold__isnull=False).order_by("shuffle").values_list("pk", flat=True)[:queue.QUEUE_SIZE])
    hard = list(active.filter(gold__isnull=True, difficulty__gt=0).order_by("-difficulty", "shuffle")
                .values_list("pk", flat=True)[:queue.HARD_SIZE])
    queue.queue_store(r, project_id=project_id, ranked_ids=ranked, gold_ids=gold, hard_ids=hard)
    return len(ranked)


def _interleave(normal: list[Subject], gold: list[Subject], rng: random.Random) -> list[Subject]:
    out = list(normal)
    for subject in gold:
        out.insert(rng.randint(0, len(out)), subject)
    return out


def _queue_rebuild(r, *, project_id: int, inline: bool) -> None:
    """Rebuild a missing queue now (one request pays for it), or have a worker rebuild a stale one while
    this request goes on with it. The lock makes it one rebuild per project at a time."""
    if not queue.queue_try_lock(r, project_id=project_id):
        return
    if not inline:
        from zooplatform.celery import app as celery_app

        try:
            celery_app.send_task(QUEUE_REFRESH_TASK, args=[project_id], queue="default")
            return  # the lock expires by itself; if no worker ran, the queue disappears and is rebuilt inline
        except Exception:
            logger.warning("could not enqueue a queue refresh for project %s; rebuilding inline", project_id,
                           exc_info=True)
    try:
        subject_queue_refresh(project=project_id)
    finally:
        queue.queue_unlock(r, project_id=project_id)


def _serve_from_redis(r, *, volunteer_id: int, context: ServingContext, n: int, rng: random.Random,
                      now: datetime) -> tuple[list[Subject], list[int], int]:
    """(subjects picked from the queue, ids to exclude from the index path, subjects seen before)."""
    age, loaded, n_seen, skill = queue.queue_state(r, project_id=context.project_id, volunteer_id=volunteer_id)
    if age is None or age > queue.QUEUE_MAX_AGE:
        _queue_rebuild(r, project_id=context.project_id, inline=age is None)
    if not loaded:
        # Only what still counts as seen: classified subjects, and subjects served within SERVED_TTL.
        cutoff = now - timedelta(seconds=queue.SERVED_TTL)
        served = list(ServedSubject.objects.filter(volunteer_id=volunteer_id, served_at__gte=cutoff)
                      .values_list("subject_id", "served_at"))
        classified = list(Classification.objects.filter(volunteer_id=volunteer_id).values_list("subject_id", flat=True))
        queue.seen_load(r, volunteer_id=volunteer_id, served=[(s, t.timestamp()) for s, t in served],
                        classified=classified)
        n_seen = volunteer_served_count(volunteer_id=volunteer_id)
    n_gold = gold_slots(n_seen=n_seen, n=n, rng=rng)
    n_hard = 0
    if context.hard_share > 0:
        if skill is None:
            skill = volunteer_skill_get(volunteer_id=volunteer_id)
            queue.skill_store(r, skills={volunteer_id: skill})
        if context.skilled(*skill):
            n_hard = hard_slots(n=n - n_gold, share=context.hard_share, rng=rng)
    ids, _ = queue.queue_pick(r, project_id=context.project_id, volunteer_id=volunteer_id, n_gold=n_gold,
                              n_hard=n_hard, n_total=n, gold_start=rng.randrange(1 << 30))
    if not ids:
        return [], [], n_seen
    servable = subjects_servable(ids=ids, volunteer_id=volunteer_id)
    dropped = [i for i in ids if i not in servable]
    if dropped:
        # Retired since the queue was built, or classified without Redis hearing of it: never again.
        retired = list(Subject.objects.filter(pk__in=dropped).exclude(state=Subject.State.ACTIVE)
                       .values_list("pk", flat=True))
        queue.queue_remove(r, project_id=context.project_id, subject_ids=retired)
        r.zadd(queue.seen_key(volunteer_id), {i: queue.CLASSIFIED for i in dropped})
    return [servable[i] for i in ids if i in servable], dropped, n_seen


def subjects_serve(*, volunteer_id: int, context: ServingContext, n: int, now: datetime | None = None,
                   rng: random.Random | None = None) -> list[Subject]:
    """Hand the volunteer up to ``n`` subjects to classify next and record them as served.

    Never a subject they classified, never a retired one, never one already served to them in the last
    ``queue.SERVED_TTL`` (their prefetched subjects); highest priority first with ties in random order;
    gold-standard subjects mixed in by :func:`selectors.gold_rate` (40% of the first 20 subjects a
    volunteer sees, then 30%, 20%, and 10% after 60), and served beyond that only when nothing else is
    left for the volunteer. A skilled volunteer (:meth:`selectors.ServingContext.skilled`) gets each
    remaining slot with probability ``hard_share`` from the hardest galaxies (highest ``difficulty``)
    they have not seen, and the rest by priority.

    With Redis, one atomic Lua call picks from the project's precomputed queue and marks the picks in
    the volunteer's seen set; the database then confirms them (still active, not classified) in one
    query. Without Redis, or when the queue runs dry for this volunteer, the database walks the
    ``subject_queue_idx`` index. Either way the served rows are upserted in one statement.
    """
    n = max(1, min(int(n), MAX_SERVE))
    now = now or timezone.now()
    rng = rng or random.Random()
    chosen: list[Subject] = []
    exclude: list[int] = []
    n_seen: int | None = None
    r = queue.client()
    if r is not None:
        try:
            chosen, exclude, n_seen = _serve_from_redis(r, volunteer_id=volunteer_id, context=context, n=n,
                                                        rng=rng, now=now)
        except queue.RedisError:
            logger.warning("Redis unavailable: serving volunteer %s from the database index", volunteer_id,
                           exc_info=True)
            r, chosen, exclude = None, [], []
    missing = n - len(chosen)
    if missing > 0:
        exclude = exclude + [s.pk for s in chosen]
        if n_seen is None:
            n_seen = volunteer_served_count(volunteer_id=volunteer_id)
        n_gold = gold_slots(n_seen=n_seen + len(chosen), n=missing, rng=rng) if r is None else 0
        gold = gold_next_for_volunteer(volunteer_id=volunteer_id, project_id=context.project_id, limit=n_gold,
                                       exclude=exclude, now=now, start=rng.random()) if n_gold else []
        normal = []
        if r is None and context.hard_share > 0 and context.skilled(*volunteer_skill_get(volunteer_id=volunteer_id)):
            n_hard = hard_slots(n=missing - len(gold), share=context.hard_share, rng=rng)
            normal = list(subjects_hard_for_volunteer(volunteer_id=volunteer_id, project_id=context.project_id,
                                                      limit=n_hard, exclude=exclude + [g.pk for g in gold],
                                                      now=now)) if n_hard else []
        normal += subjects_next_for_volunteer(volunteer_id=volunteer_id, project_id=context.project_id,
                                              limit=missing - len(gold) - len(normal),
                                              exclude=exclude + [s.pk for s in gold + normal], now=now)
        if len(gold) + len(normal) < missing:  # nothing else left for this volunteer: more gold, not nothing
            gold += gold_next_for_volunteer(volunteer_id=volunteer_id, project_id=context.project_id,
                                            limit=missing - len(gold) - len(normal),
                                            exclude=exclude + [g.pk for g in gold], now=now, start=rng.random())
        extra = _interleave(normal, gold, rng)
        if r is not None and extra:
            try:
                r.zadd(queue.seen_key(volunteer_id), {s.pk: now.timestamp() for s in extra})
            except queue.RedisError:
                logger.warning("could not record served subjects in Redis", exc_info=True)
        chosen += extra
    if chosen:
        _served_record(volunteer_id=volunteer_id, subjects=chosen, workflow_version_id=context.workflow_version_id,
                       now=now)
    return chosen


def _served_record(*, volunteer_id: int, subjects: list[Subject], workflow_version_id: int, now: datetime) -> None:
    """Upsert the served rows in one statement that does not wait for the WAL flush on PostgreSQL
    (``durable=False``): a database crash could forget the last fraction of a second of served rows (never
    a classification), and that fsync wait was the largest single cost of serving."""
    db.insert([ServedSubject(volunteer_id=volunteer_id, subject_id=s.pk, workflow_version_id=workflow_version_id,
                             served_at=now) for s in subjects],
              unique_fields=["volunteer", "subject"], update_fields=["served_at", "workflow_version"], durable=False)


# ------------------------------------------------------------------------------------------- submitting
@dataclass(frozen=True)
class SubmitResult:
    classification_id: int
    created: bool
    feedback: dict | None = None


def _gold_feedback(gold_answers, gold_text: str | None, pairs: list[tuple[str, str]]) -> dict | None:
    """What experts said about a gold-standard subject, and how many shared questions the volunteer
    answered as they did (Space Warps' training feedback)."""
    if gold_answers is None:
        return None
    expert = {step.get("question"): step.get("answer") for step in gold_answers if isinstance(step, Mapping)}
    shared = [(q, a) for q, a in pairs if q in expert]
    return {
        "text": gold_text or "",
        "questions_compared": len(shared),
        "questions_agreed": sum(expert[q] == a for q, a in shared),
        "expert_answers": [{"question": q, "answer": a} for q, a in expert.items()],
    }


def _validate_boxes(boxes: Sequence[Mapping], *, width: int, height: int, box_task: Mapping,
                    no_clumps: bool) -> list[tuple[float, float, float, float]]:
    if boxes and not box_task.get("enabled", True):
        raise ApplicationError("this workflow has no clump task, so boxes cannot be drawn", field="boxes")
    if boxes and no_clumps:
        raise ApplicationError("'no clumps' was chosen, but boxes were drawn", field="no_clumps")
    max_boxes = int(box_task.get("max_boxes", DEFAULT_MAX_BOXES))
    if len(boxes) > max_boxes:
        raise ApplicationError(f"{len(boxes)} boxes: at most {max_boxes} are allowed", field="boxes")
    min_size = float(box_task.get("min_size", 1) or 0)
    out = []
    eps = 1e-6
    for i, box in enumerate(boxes):
        try:
            x, y, w, h = (float(box[k]) for k in ("x", "y", "width", "height"))
        except (KeyError, TypeError, ValueError):
            raise ApplicationError(f"boxes[{i}] needs numeric x, y, width and height", field="boxes") from None
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            raise ApplicationError(f"boxes[{i}] has a value that is not a finite number", field="boxes")
        if w <= 0 or h <= 0:
            raise ApplicationError(f"boxes[{i}] must have a positive width and height", field="boxes")
        if w < min_size - eps or h < min_size - eps:
            raise ApplicationError(f"boxes[{i}] is {w:g}x{h:g} pixels; the smallest box is {min_size:g} pixels",
                                   field="boxes")
        if x < -eps or y < -eps or x + w > width + eps or y + h > height + eps:
            raise ApplicationError(
                f"boxes[{i}] ({x:g}, {y:g}, {w:g}x{h:g}) lies outside the {width}x{height} image", field="boxes")
        out.append((max(x, 0.0), max(y, 0.0), w, h))
    return out


def _existing(*, volunteer_id: int, key: str, subject_id: int) -> SubmitResult | None:
    row = Classification.objects.filter(volunteer_id=volunteer_id, key=key).values_list("pk", "subject_id").first()
    if row is None:
        return None
    if row[1] != subject_id:
        raise ApplicationError(f"key {key!r} was already used for subject {row[1]}", field="key")
    return SubmitResult(classification_id=row[0], created=False)


@contextmanager
def aggregation_direct():
    """Within this block, each submission sends its own aggregation task instead of going through the
    Redis list (the simulation runs tasks inline and must not leave its votes where a live worker drains)."""
    token = _AGGREGATE_DIRECT.set(True)
    try:
        yield
    finally:
        _AGGREGATE_DIRECT.reset(token)


def _after_commit(*, volunteer_id: int, subject_id: int, classification_id: int) -> None:
    """Hand the new classification to the aggregator and tell the selector it is classified. Must never
    fail the volunteer's submission: whatever is lost here, the catch-up finds by ``aggregated_at IS
    NULL`` and the selector's database check still holds.

    With Redis, one round trip appends the id to the aggregation list and marks the subject seen; only
    the submission that found the list empty sends the drain task (a Celery publish costs several times
    the rest of the submission). Without Redis, one aggregation task per classification."""
    from zooplatform.celery import app as celery_app

    r = None if _AGGREGATE_DIRECT.get() else queue.client()
    try:
        if r is not None:
            if queue.submitted(r, volunteer_id=volunteer_id, subject_id=subject_id,
                               classification_id=classification_id) > 1:
                return  # a drain task is on its way and takes this one too
            celery_app.send_task(AGGREGATE_DRAIN_TASK, queue="default")
        else:
            celery_app.send_task(AGGREGATE_TASK, args=[classification_id], queue="default")
    except Exception:
        logger.warning("could not enqueue aggregation of classification %s; the catch-up will", classification_id,
                       exc_info=True)


def classification_submit(
    *, volunteer_id: int, subject_id: int, workflow_version_id: int, key: str,
    answers: Sequence[Mapping], boxes: Sequence[Mapping] = (), no_clumps: bool = False,
    started_at: datetime | None = None, finished_at: datetime | None = None, client: Mapping | None = None,
) -> SubmitResult:
    """Store one classification, or return the one already stored under ``key`` (idempotent retries).

    Checks, each failing with :class:`ApplicationError` naming the field and the reason: the key is
    well formed and not used for another subject; the volunteer was served this subject, with this
    workflow version; ``answers`` walk that version's tree from its first question to an end;
    boxes are finite, at least the task's ``min_size``, inside the image, at most ``max_boxes``, and
    not drawn beside an explicit "no clumps"; ``started_at <= finished_at``; the volunteer has not
    classified this subject already. Then the classification and its boxes are written in one
    transaction, and aggregation is enqueued when it commits. Nothing partial is ever stored.
    """
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
        raise ApplicationError("8 to 64 letters, digits or -_.: (a client-made UUID)", field="key")
    # One query answers both "was this served?" and "is this a retry?" (the usual case of a retry: the
    # served row is there too, since only served subjects can be classified).
    served = submit_lookup(volunteer_id=volunteer_id, subject_id=subject_id, key=key)
    if served is None:
        found = _existing(volunteer_id=volunteer_id, key=key, subject_id=subject_id)
        if found is not None:
            return found
        raise ApplicationError(f"subject {subject_id} was not served to you: ask /api/subjects/next/ for subjects",
                               field="subject")
    existing_id, existing_subject, served_version, version_created, width, height, gold_answers, gold_text = served
    if existing_id is not None:
        if existing_subject != subject_id:
            raise ApplicationError(f"key {key!r} was already used for subject {existing_subject}", field="key")
        return SubmitResult(classification_id=existing_id, created=False)
    if served_version != workflow_version_id:
        raise ApplicationError(
            f"subject {subject_id} was served with workflow version {served_version}, not {workflow_version_id}",
            field="workflow_version")
    tree, box_task = workflow_tree_get(pk=served_version, created_at=version_created)
    try:
        pairs = tree.validate_path(answers)
    except TreeError as exc:
        raise ApplicationError(str(exc), field="answers") from None
    clean_boxes = _validate_boxes(boxes, width=width, height=height, box_task=box_task, no_clumps=no_clumps)
    if started_at is not None and finished_at is not None and finished_at < started_at:
        raise ApplicationError("finished_at is before started_at", field="finished_at")

    classification = Classification(
        volunteer_id=volunteer_id, subject_id=subject_id, workflow_version_id=workflow_version_id, key=key,
        answers=[{"question": q, "answer": a} for q, a in pairs], no_clumps=bool(no_clumps),
        started_at=started_at, finished_at=finished_at, client=dict(client or {}),
    )
    # The foreign keys were just read through the served row, and the database enforces the unique
    # and check constraints (handled below), so full_clean validates the field values only.
    classification.full_clean(exclude=["volunteer", "subject", "workflow_version"], validate_unique=False,
                              validate_constraints=False)
    try:
        # The classification and its boxes, all or nothing (one statement on PostgreSQL).
        db.insert_with_children(classification, [ClumpBox(x=x, y=y, width=w, height=h) for x, y, w, h in clean_boxes],
                                fk="classification")
    except IntegrityError:
        # A concurrent retry with the same key won the race (same answer), or this subject was already
        # classified under another key.
        found = _existing(volunteer_id=volunteer_id, key=key, subject_id=subject_id)
        if found is not None:
            return found
        if Classification.objects.filter(volunteer_id=volunteer_id, subject_id=subject_id).exists():
            raise ApplicationError(f"you have already classified subject {subject_id}", field="subject") from None
        raise
    classification_id = classification.pk
    transaction.on_commit(lambda: _after_commit(volunteer_id=volunteer_id, subject_id=subject_id,
                                                classification_id=classification_id))
    return SubmitResult(classification_id=classification_id, created=True,
                        feedback=_gold_feedback(gold_answers, gold_text, pairs))
