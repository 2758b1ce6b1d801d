"""Reads for the project scientists' dashboard: what the project, its volunteers and its learning loop
are doing now, one subject in depth, galaxies like it, and the catalogue export.

Everything here reads rows other apps write (galaxies, classify, learning); nothing is cached, so a
page always shows the database as it is.
"""
from __future__ import annotations

import csv
import heapq
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterator

import numpy as np
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import TruncHour
from django.utils import timezone

from aggregation.tree import DecisionTree
from zooplatform.classify.models import Classification, ClumpBox, Volunteer
from zooplatform.core.exceptions import ApplicationError
from zooplatform.galaxies.models import GoldStandard, Project, Retirement, Subject
from zooplatform.learning.models import (AggregationState, ClumpCluster, Job, LearningSettings, ModelVersion,
                                         Prediction, SubjectPosterior)
from zooplatform.learning.services.aggregate import BOX_QUESTION
from zooplatform.workflows.selectors import workflow_version_current

#: Job rows shown on the overview and returned by the progress endpoint.
JOBS_SHOWN = 12
#: Retirement reasons as a dashboard names them (the model's labels are sentences, shown as tooltips).
REASON_SHORT = {
    Retirement.Reason.DETECTED: "Detected (SWAP)", Retirement.Reason.REJECTED: "Rejected (SWAP)",
    Retirement.Reason.CONSENSUS: "Consensus", Retirement.Reason.VOTE_CAP: "Vote cap",
    Retirement.Reason.MACHINE: "Machine-assisted", Retirement.Reason.EXPERT_QUEUE: "Expert queue",
    Retirement.Reason.EXPERT: "Expert label", Retirement.Reason.MANUAL: "Retired by hand",
}
#: The metrics worth a glance, per model kind, in the order shown.
KEY_METRICS = {
    ModelVersion.Kind.MORPHOLOGY: ("val_loss", "promoted_val_loss", "val_fraction_rmse", "baseline_fraction_rmse",
                                   "n_train", "n_val"),
    ModelVersion.Kind.DETECTOR: ("completeness", "purity", "f1", "promoted_f1", "n_train", "n_val"),
}


# ------------------------------------------------------------------------------------------- projects
def projects_list() -> list[Project]:
    return list(Project.objects.order_by("id"))


def project_get(*, slug: str) -> Project:
    project = Project.objects.filter(slug=slug).first()
    if project is None:
        raise ApplicationError(f"no project {slug!r}", field="project")
    return project


def project_tree(*, project: Project) -> DecisionTree:
    """The decision tree volunteers are answering now (the current version of the active workflow)."""
    return workflow_version_current(project=project).decision_tree


# ------------------------------------------------------------------------------------------- overview
@dataclass
class HourCount:
    start: datetime
    count: int


@dataclass
class Overview:
    project: Project
    n_subjects: int
    n_active: int
    n_retired: int
    retired_by_reason: list[tuple[str, str, str, int]]  # (reason, short name, label, count), every reason
    n_gold: int
    n_classifications: int
    n_classifications_24h: int
    per_hour: list[HourCount]                      # the last 24 hours, oldest first, the current hour last
    n_volunteers_24h: int
    votes_per_retired: float | None                # mean classifications of a retired subject
    n_expert_queue: int
    promoted: list[ModelVersion]
    jobs: list[Job]
    swept_at: datetime | None


def classifications_per_hour(*, project: Project, hours: int = 24, now: datetime | None = None) -> list[HourCount]:
    """Classifications of ``project`` per clock hour over the last ``hours`` hours (the current, partial
    hour included), zeros filled in; one grouped query on the ``created_at`` index."""
    now = now or timezone.now()
    current = now.replace(minute=0, second=0, microsecond=0)
    first = current - timedelta(hours=hours - 1)
    rows = (Classification.objects.filter(subject__project=project, created_at__gte=first)
            .annotate(hour=TruncHour("created_at")).values("hour").annotate(n=Count("id")).order_by("hour"))
    counts = {row["hour"]: row["n"] for row in rows}
    return [HourCount(first + timedelta(hours=i), counts.get(first + timedelta(hours=i), 0)) for i in range(hours)]


def jobs_recent(*, project: Project, limit: int = JOBS_SHOWN) -> list[Job]:
    """The project's latest jobs, active ones first (they are what a scientist is watching)."""
    active = list(Job.objects.filter(project=project, status__in=Job.ACTIVE).order_by("-created_at"))
    done = list(Job.objects.filter(project=project).exclude(status__in=Job.ACTIVE)
                .order_by("-created_at")[:max(0, limit - len(active))])
    return active + done


def models_promoted(*, project: Project) -> list[ModelVersion]:
    return list(ModelVersion.objects.filter(project=project, promoted=True).order_by("kind"))


def project_overview(*, project: Project, now: datetime | None = None) -> Overview:
    now = now or timezone.now()
    subjects = Subject.objects.filter(project=project)
    by_state = dict(subjects.values_list("state").annotate(n=Count("id")).order_by())
    reasons = dict(Retirement.objects.filter(subject__project=project).values_list("reason")
                   .annotate(n=Count("subject_id")).order_by())
    classifications = Classification.objects.filter(subject__project=project)
    since = now - timedelta(hours=24)
    recent = classifications.filter(created_at__gte=since)
    n_retired = by_state.get(Subject.State.RETIRED, 0)
    retired_votes = classifications.filter(subject__state=Subject.State.RETIRED).count()
    per_hour = classifications_per_hour(project=project, now=now)
    state = AggregationState.objects.filter(project=project).only("swept_at").first()
    return Overview(
        project=project,
        n_subjects=sum(by_state.values()),
        n_active=by_state.get(Subject.State.ACTIVE, 0),
        n_retired=n_retired,
        retired_by_reason=[(value, REASON_SHORT.get(value, value), label, reasons.get(value, 0))
                           for value, label in Retirement.Reason.choices],
        n_gold=GoldStandard.objects.filter(subject__project=project).count(),
        n_classifications=classifications.count(),
        n_classifications_24h=recent.count(),
        per_hour=per_hour,
        n_volunteers_24h=recent.values("volunteer_id").distinct().count(),
        votes_per_retired=(retired_votes / n_retired) if n_retired else None,
        n_expert_queue=reasons.get(Retirement.Reason.EXPERT_QUEUE, 0),
        promoted=models_promoted(project=project),
        jobs=jobs_recent(project=project),
        swept_at=state.swept_at if state else None,
    )


def key_metrics(version: ModelVersion) -> list[tuple[str, object]]:
    """(name, value) of the metrics worth a glance for this kind of model, those it has."""
    metrics = version.metrics or {}
    return [(name, metrics[name]) for name in KEY_METRICS.get(version.kind, ()) if name in metrics]


# ------------------------------------------------------------------------------------------- learning
@dataclass
class LearningView:
    project: Project
    versions: list[ModelVersion]
    promoted: dict[str, ModelVersion]
    active_jobs: list[Job]
    settings: LearningSettings | None


def learning_overview(*, project: Project, limit: int = 100) -> LearningView:
    versions = list(ModelVersion.objects.filter(project=project).order_by("-created_at")[:limit])
    return LearningView(
        project=project,
        versions=versions,
        promoted={v.kind: v for v in models_promoted(project=project)},
        active_jobs=list(Job.objects.filter(project=project, status__in=Job.ACTIVE).order_by("-created_at")),
        settings=LearningSettings.objects.filter(project=project).first(),
    )


def matching_overview(*, project: Project, settings: LearningSettings) -> dict:
    """The hard-galaxy matching now: active hard galaxies of the project (``difficulty`` > 0), volunteers
    who classified in it with a skill estimate, and how many of those are skilled under ``settings``."""
    rated = (Volunteer.objects.filter(accuracy__isnull=False)
             .filter(Exists(Classification.objects.filter(volunteer_id=OuterRef("pk"), subject__project=project))))
    return {
        "hard": Subject.objects.filter(project=project, state=Subject.State.ACTIVE, difficulty__gt=0).count(),
        "rated": rated.count(),
        "skilled": rated.filter(accuracy__gte=settings.skilled_accuracy, n_gold__gte=settings.skilled_min_gold).count(),
    }


def learning_settings_current(*, project: Project) -> LearningSettings:
    """The project's steering knobs: its saved row, or (unsaved) the platform defaults it would get.
    Reading never creates the row; saving the form does."""
    return LearningSettings.objects.filter(project=project).first() or LearningSettings(project=project)


def model_promoted(*, project: Project, kind: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, kind=kind, promoted=True).first()


# ------------------------------------------------------------------------------------------- subjects
@dataclass
class QueueRow:
    subject: Subject
    acquisition: float | None
    n_classifications: int
    gold: bool                      # gold subjects are served in the gold schedule's slots, not by rank


@dataclass
class SubjectsView:
    project: Project
    queue: list[QueueRow]
    n_active: int
    expert_queue: list[Subject]
    n_expert_queue: int
    retired: list[Subject]
    anomalous: list[Prediction]
    model: ModelVersion | None


def subjects_overview(*, project: Project, limit: int = 24) -> SubjectsView:
    """The queue volunteers are served from (highest priority first), the expert queue, the latest
    retirements with their consensus labels, and the galaxies the promoted model finds most unusual."""
    model = model_promoted(project=project, kind=ModelVersion.Kind.MORPHOLOGY)
    active = Subject.objects.filter(project=project, state=Subject.State.ACTIVE)
    # The selector's own order (subject_queue_idx): priority, then the random tie-break key.
    queue = list(active.order_by("-priority", "shuffle")[:limit])
    ids = [s.pk for s in queue]
    acquisition = {}
    if model is not None:
        acquisition = dict(Prediction.objects.filter(model_version=model, subject_id__in=ids)
                           .values_list("subject_id", "acquisition"))
    n_votes = dict(Classification.objects.filter(subject_id__in=ids).values("subject_id")
                   .annotate(n=Count("id")).values_list("subject_id", "n"))
    gold = set(GoldStandard.objects.filter(subject_id__in=ids).values_list("subject_id", flat=True))
    expert = Subject.objects.filter(project=project, retirement__reason=Retirement.Reason.EXPERT_QUEUE)
    anomalous = []
    if model is not None:
        anomalous = list(Prediction.objects.filter(model_version=model, anomaly__isnull=False)
                         .select_related("subject").order_by("-anomaly")[:limit])
    return SubjectsView(
        project=project,
        queue=[QueueRow(s, acquisition.get(s.pk), n_votes.get(s.pk, 0), s.pk in gold) for s in queue],
        n_active=active.count(),
        expert_queue=list(expert.select_related("retirement").order_by("retirement__retired_at")[:limit]),
        n_expert_queue=expert.count(),
        retired=list(Subject.objects.filter(project=project, state=Subject.State.RETIRED)
                     .select_related("retirement").order_by("-retirement__retired_at")[:limit]),
        anomalous=anomalous,
        model=model,
    )


@dataclass
class AnswerRow:
    name: str
    text: str
    probability: float | None       # the aggregator's posterior
    fraction: float | None          # the promoted model's predicted vote fraction
    votes: int                      # raw volunteer votes


@dataclass
class QuestionRow:
    name: str
    text: str
    answers: list[AnswerRow]
    p_reached: float | None
    n_votes: int
    decided: bool
    best: str | None                # the most probable answer, when there is a posterior


@dataclass
class SubjectDetail:
    subject: Subject
    tree: DecisionTree
    retirement: Retirement | None
    gold: GoldStandard | None
    questions: list[QuestionRow]
    classifications: list[Classification]
    marks: list[ClumpBox]
    clumps: list[ClumpCluster]
    model_boxes: list[dict]
    prediction: Prediction | None
    model: ModelVersion | None
    detector: ModelVersion | None
    similar: list[tuple[Subject, float]] = field(default_factory=list)


def _model_boxes(detector: ModelVersion | None, subject: Subject) -> list[dict]:
    """The promoted detector's boxes for ``subject``, read from its Prediction row's ``fractions["boxes"]``
    (``[{x, y, width, height, score}]`` in image pixels) when the learning loop has stored one."""
    if detector is None:
        return []
    row = Prediction.objects.filter(model_version=detector, subject=subject).only("fractions").first()
    boxes = (row.fractions or {}).get("boxes") if row else None
    out = []
    for b in boxes if isinstance(boxes, list) else []:
        try:
            out.append({k: float(b[k]) for k in ("x", "y", "width", "height")} | {"score": float(b.get("score", 1.0))})
        except (KeyError, TypeError, ValueError):
            continue
    return out


def subject_get(*, project: Project, pk: int) -> Subject:
    subject = Subject.objects.filter(project=project, pk=pk).select_related("retirement").first()
    if subject is None:
        raise ApplicationError(f"no subject {pk} in {project.slug}", field="subject")
    return subject


def subject_detail(*, project: Project, pk: int, similar_k: int = 12) -> SubjectDetail:
    subject = subject_get(project=project, pk=pk)
    tree = project_tree(project=project)
    model = model_promoted(project=project, kind=ModelVersion.Kind.MORPHOLOGY)
    detector = model_promoted(project=project, kind=ModelVersion.Kind.DETECTOR)
    prediction = Prediction.objects.filter(model_version=model, subject=subject).first() if model else None
    posteriors = {p.question: p for p in SubjectPosterior.objects.filter(subject=subject).exclude(question=BOX_QUESTION)}
    classifications = list(Classification.objects.filter(subject=subject).select_related("volunteer__user")
                           .annotate(n_boxes=Count("boxes")).order_by("created_at"))
    votes: dict[str, int] = {}
    for c in classifications:
        for step in c.answers:
            key = f"{step.get('question')}_{step.get('answer')}"
            votes[key] = votes.get(key, 0) + 1
    fractions = (prediction.fractions or {}) if prediction else {}
    questions = []
    for q in tree.questions:
        post = posteriors.get(q.name)
        probs = post.probabilities if post else {}
        questions.append(QuestionRow(
            name=q.name, text=q.text,
            answers=[AnswerRow(a.name, a.text, probs.get(a.name) if post else None, fractions.get(f"{q.name}_{a.name}"),
                               votes.get(f"{q.name}_{a.name}", 0)) for a in q.answers],
            p_reached=post.p_reached if post else None, n_votes=post.n_votes if post else 0,
            decided=post.decided if post else False,
            best=max(probs, key=probs.get) if probs else None))
    return SubjectDetail(
        subject=subject, tree=tree, retirement=getattr(subject, "retirement", None),
        gold=GoldStandard.objects.filter(subject=subject).first(), questions=questions,
        classifications=classifications,
        marks=list(ClumpBox.objects.filter(classification__subject=subject)),
        clumps=list(ClumpCluster.objects.filter(subject=subject).order_by("-probability")),
        model_boxes=_model_boxes(detector, subject), prediction=prediction, model=model, detector=detector,
        similar=subjects_similar(subject=subject, model=model, k=similar_k) if model and similar_k else [],
    )


def _matrix(embeddings: list[bytes]) -> np.ndarray:
    """float16 embedding blobs of one length -> float32 array of shape (n, D)."""
    matrix = np.frombuffer(b"".join(bytes(e) for e in embeddings), dtype=np.float16)
    return matrix.reshape(len(embeddings), -1).astype(np.float32)


def _cosine(embeddings: list[bytes], query: np.ndarray) -> np.ndarray:
    """Cosine similarity (n,) of each embedding blob to the unit vector ``query`` (D,)."""
    matrix = _matrix(embeddings)
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    return (matrix @ query) / np.maximum(norms, 1e-12)


def subjects_similar(*, subject: Subject, model: ModelVersion | None = None, k: int = 12,
                     chunk: int = 5000) -> list[tuple[Subject, float]]:
    """"More galaxies like this one": the ``k`` subjects whose embeddings under the promoted morphology
    model are nearest to ``subject``'s by cosine similarity, most similar first (Zoobot's similarity
    search, as ``classifier.similar`` does it, here in numpy so the web process never loads torch).

    Exact, brute force: every stored embedding of the model is streamed from the database in chunks of
    ``chunk`` rows, each chunk scored with one matrix product and folded into a running top-k, so memory
    stays O(chunk * D) and time O(n * D): for ~10^5 subjects (D = 640: 1.3 kB each, 128 MB read) a second
    or two, fine for a scientist's page. A project far beyond that wants an approximate nearest-neighbour
    index (FAISS, pgvector) maintained by the scoring job instead.
    """
    model = model or model_promoted(project=subject.project, kind=ModelVersion.Kind.MORPHOLOGY)
    if model is None:
        return []
    own = Prediction.objects.filter(model_version=model, subject=subject).values_list("embedding", flat=True).first()
    if not own:
        return []
    query = _matrix([own])[0]
    query /= max(float(np.linalg.norm(query)), 1e-12)
    best: list[tuple[float, int]] = []  # a min-heap of (similarity, subject id)
    rows = (Prediction.objects.filter(model_version=model).exclude(embedding=None).exclude(subject_id=subject.pk)
            .values_list("subject_id", "embedding"))
    batch_ids, batch_emb = [], []

    def fold():
        if not batch_ids:
            return
        sims = _cosine(batch_emb, query)
        top = np.argpartition(-sims, k - 1)[:k] if len(sims) > k else np.arange(len(sims))
        for i in top:
            item = (float(sims[i]), batch_ids[i])
            if len(best) < k:
                heapq.heappush(best, item)
            elif item > best[0]:
                heapq.heapreplace(best, item)
        batch_ids.clear()
        batch_emb.clear()

    for sid, emb in rows.iterator(chunk_size=chunk):
        batch_ids.append(sid)
        batch_emb.append(emb)
        if len(batch_ids) >= chunk:
            fold()
    fold()
    ranked = sorted(best, reverse=True)
    subjects = Subject.objects.in_bulk([sid for _, sid in ranked])
    return [(subjects[sid], sim) for sim, sid in ranked if sid in subjects]


# ------------------------------------------------------------------------------------------- export
class _Echo:
    """A file-like object whose ``write`` returns the line, so ``csv.writer`` can feed a generator."""

    def write(self, value: str) -> str:
        return value


def _fmt(value: float | None, digits: int = 6) -> str:
    return "" if value is None else f"{value:.{digits}g}"


def catalogue_export_rows(*, project: Project, chunk: int = 2000) -> Iterator[list]:
    """The project's catalogue, one list per row (the header first), read in chunks of ``chunk`` subjects
    by primary key, so that memory does not grow with the project.

    Columns: ``id_str`` (external id), ``subject_id``, ``ra``, ``dec``, ``survey``, ``state``,
    ``retirement_reason``, ``retired_at``, ``n_classifications``; then for every ``<question>_<answer>`` of
    the current tree the raw vote count (the Zoobot convention: a valid training catalogue for
    ``python -m classifier train --catalog FILE --images MEDIA_ROOT``), then every
    ``<question>_<answer>_posterior`` (the aggregator's probability; empty before any vote), ``file_loc``
    (the image, relative to ``MEDIA_ROOT``), and, when a morphology model is promoted, its
    ``<question>_<answer>_fraction`` predictions and ``acquisition`` (empty for subjects it has not scored).

    Raises ``ApplicationError`` at once (before any row) when the project has no tree to export by.
    """
    tree = project_tree(project=project)
    model = model_promoted(project=project, kind=ModelVersion.Kind.MORPHOLOGY)
    return _export_rows(project, tree, model, chunk)


def _export_rows(project: Project, tree: DecisionTree, model: ModelVersion | None, chunk: int) -> Iterator[list]:
    columns = list(tree.columns)
    index = {c: i for i, c in enumerate(columns)}
    header = ["id_str", "subject_id", "ra", "dec", "survey", "state", "retirement_reason", "retired_at",
              "n_classifications", *columns, *(f"{c}_posterior" for c in columns), "file_loc"]
    if model is not None:
        header += [*(f"{c}_fraction" for c in columns), "acquisition"]
    yield header
    last = 0
    while True:
        subjects = list(Subject.objects.filter(project=project, pk__gt=last).order_by("pk")
                        .select_related("retirement")
                        .only("pk", "external_id", "ra", "dec", "survey", "state", "image",
                              "retirement__reason", "retirement__retired_at")[:chunk])
        if not subjects:
            return
        lo, hi = subjects[0].pk, subjects[-1].pk
        # Range filters on the subject id (not IN lists): index range scans, no parameter limits.
        span = Q(subject_id__gte=lo, subject_id__lte=hi, subject__project=project)
        votes: dict[int, np.ndarray] = {}
        n_classifications: dict[int, int] = {}
        for sid, answers in Classification.objects.filter(span).values_list("subject_id", "answers").iterator():
            row = votes.get(sid)
            if row is None:
                row = votes[sid] = np.zeros(len(columns), dtype=np.int64)
            n_classifications[sid] = n_classifications.get(sid, 0) + 1
            for step in answers:
                j = index.get(f"{step.get('question')}_{step.get('answer')}")
                if j is not None:
                    row[j] += 1
        posteriors: dict[int, dict] = {}
        for sid, question, probs in (SubjectPosterior.objects.filter(span).exclude(question=BOX_QUESTION)
                                     .values_list("subject_id", "question", "probabilities")):
            posteriors.setdefault(sid, {})[question] = probs or {}
        predictions = {}
        if model is not None:
            predictions = {sid: (fr or {}, acq) for sid, fr, acq in Prediction.objects.filter(span, model_version=model)
                           .values_list("subject_id", "fractions", "acquisition")}
        zeros = np.zeros(len(columns), dtype=np.int64)
        for s in subjects:
            retirement = getattr(s, "retirement", None)
            counts = votes.get(s.pk, zeros)
            post = posteriors.get(s.pk, {})
            posterior_cells = []
            for q in tree.questions:
                probs = post.get(q.name)
                posterior_cells += [_fmt(probs.get(a.name)) if probs is not None else "" for a in q.answers]
            row = [s.external_id, s.pk, "" if s.ra is None else repr(s.ra), "" if s.dec is None else repr(s.dec),
                   s.survey, s.state, retirement.reason if retirement else "",
                   retirement.retired_at.isoformat() if retirement else "", n_classifications.get(s.pk, 0),
                   *counts.tolist(), *posterior_cells, s.image.name]
            if model is not None:
                fractions, acq = predictions.get(s.pk, ({}, None))
                row += [_fmt(fractions.get(c)) for c in columns] + [_fmt(acq)]
            yield row
        last = hi


def catalogue_export_lines(*, project: Project, chunk: int = 2000) -> Iterator[str]:
    """:func:`catalogue_export_rows` as CSV text, one line at a time (for a streamed download or a file);
    like it, raises ``ApplicationError`` before the first line if the project cannot be exported."""
    rows = catalogue_export_rows(project=project, chunk=chunk)
    writer = csv.writer(_Echo(), lineterminator="\n")
    return (writer.writerow(row) for row in rows)
