"""Aggregation in the platform: the ``aggregation`` library wired to the database.

Online, per classification (:func:`classification_aggregate`): the subject's per-question
:class:`~aggregation.state.SubjectState` rows and the volunteer's per-question
:class:`~aggregation.state.VolunteerState` rows are loaded, the classification is folded in with
``TreeAggregator.observe_classification`` (O(1) per answer), the clump boxes of the subject are
re-clustered with the witnesses' detection skills (``BoxAggregator.aggregate_subject``, incremental
EM), and the subject retires when the tree's rule says so. It runs under the subject's row lock, so two
classifications of one galaxy are folded one after the other, never over each other.

Batch (:func:`aggregation_sweep`): everything recomputed from the vote table with the vectorised
``fit`` (EM for Dawid-Skene, skills re-learned from gold), the machine fitted on gold and
human-retired subjects and added as evidence, clumps re-clustered with EM over all subjects. The sweep
writes the new states, and marks every classification newer than its snapshot as not yet aggregated,
so that the catch-up (:func:`aggregation_catch_up`) folds them in on top of the batch state: no vote is
counted twice or lost.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from django.db import transaction
from django.utils import timezone

from aggregation import AGGREGATORS, MachineAgent, SubjectState, VolunteerState, training_labels
from aggregation.boxes import BoxAggregator, BoxState, BoxVolunteerState
from aggregation.questions import TreeAggregator
from aggregation.tree import DecisionTree
from zooplatform.classify import queue
from zooplatform.classify.models import Classification, ClumpBox, Volunteer
from zooplatform.galaxies.models import GoldStandard, Project, Retirement, Subject
from zooplatform.galaxies.services import subject_retire
from zooplatform.learning.models import (AggregationState, ClumpCluster, LearningSettings, MachineSkill, ModelVersion,
                                         Prediction, SubjectPosterior, VolunteerSkill)
from zooplatform.workflows.models import WorkflowVersion

logger = logging.getLogger(__name__)

BOX_QUESTION = "clumps"  # the VolunteerSkill / SubjectPosterior row that holds box-drawing state

# Subject-level reasons of the aggregation library -> the platform's retirement reasons.
REASON_MAP = {"consensus": Retirement.Reason.CONSENSUS, "detected": Retirement.Reason.CONSENSUS,
              "rejected": Retirement.Reason.CONSENSUS, "vote_cap": Retirement.Reason.VOTE_CAP,
              "expert_queue": Retirement.Reason.EXPERT_QUEUE}


# ------------------------------------------------------------------------------------------- configuration
def learning_settings_get(*, project_id: int) -> LearningSettings:
    settings, _ = LearningSettings.objects.get_or_create(project_id=project_id)
    return settings


def tree_aggregator_build(*, settings: LearningSettings, tree: DecisionTree) -> TreeAggregator:
    """The project's aggregator for ``tree``: SWAP (or the configured binary method) on yes/no
    questions, Dawid-Skene (or the configured method) on the others, the budget rules of ``settings``."""
    method, question_params = {}, {}
    for q in tree.questions:
        binary = len(q.answers) == 2
        method[q.name] = settings.binary_aggregator if binary else settings.multi_aggregator
        params = dict(settings.binary_params if binary else settings.multi_params)
        params.setdefault("min_votes", settings.min_votes)
        if AGGREGATORS[method[q.name]].accepts_evidence:
            # Evidence a disabled machine left in subjects' states must not retire them either.
            params["evidence_retires"] = settings.machine_enabled and settings.machine_retires
        question_params[q.name] = params
    return TreeAggregator(tree, method=method, question_params=question_params,
                          reach_threshold=settings.reach_threshold, vote_cap=settings.vote_cap,
                          expert_after=settings.expert_after)


@lru_cache(maxsize=64)
def _cached_aggregator(workflow_version_id: int, settings_stamp: str, learned_stamp: str) -> TreeAggregator:
    settings = LearningSettings.objects.get(pk=int(settings_stamp.split("@")[0]))
    tree = WorkflowVersion.objects.get(pk=workflow_version_id).decision_tree
    agg = tree_aggregator_build(settings=settings, tree=tree)
    state = AggregationState.objects.filter(project_id=settings.project_id).only("learned").first()
    return agg.load_learned((state.learned if state else None) or {})


def _aggregator(settings: LearningSettings, workflow_version_id: int) -> TreeAggregator:
    """The project's aggregator with what the last sweep learned (e.g. Dawid-Skene's class priors:
    without them a new subject starts from a flat prior and a rare answer such as "artifact" keeps
    far more probability than the population gives it). Keyed on the settings' update time and the
    last sweep, so a scientist's change or a new sweep takes effect on the next vote."""
    swept = AggregationState.objects.filter(project_id=settings.project_id).values_list("swept_at", flat=True).first()
    return _cached_aggregator(workflow_version_id, f"{settings.pk}@{settings.updated_at.isoformat()}",
                              swept.isoformat() if swept else "")


def box_aggregator_build() -> BoxAggregator:
    return BoxAggregator()


def consensus_path(tree: DecisionTree, posterior: dict[str, dict[str, float]]) -> list[dict]:
    """The most probable path through the tree: at each question, the answer with the highest posterior."""
    path, q = [], tree.first
    while q is not None:
        probs = posterior.get(q, {})
        answer = max(tree[q].answers, key=lambda a: probs.get(a.name, 0.0))
        path.append({"question": q, "answer": answer.name, "probability": round(float(probs.get(answer.name, 0.0)), 4)})
        q = answer.next
    return path


# ------------------------------------------------------------------------------------------- online
@dataclass
class AggregateOutcome:
    classification_id: int
    subject_id: int
    already: bool = False
    retired: str = ""
    posterior: dict = field(default_factory=dict)


def _gold_states(agg: TreeAggregator, gold: GoldStandard | None) -> dict[str, SubjectState]:
    if gold is None:
        return {}
    states = {}
    for step in gold.answers:
        q, a = step.get("question"), step.get("answer")
        if q in agg.aggregators and a in agg._answer_index[q]:
            states[q] = agg.aggregators[q].new_subject(gold=agg._answer_index[q][a])
    return states


def _write_posteriors(subject: Subject, summary: dict, states: dict[str, SubjectState], decided: set[str]) -> None:
    rows = [SubjectPosterior(subject=subject, question=q, probabilities=probs, n_votes=summary["n_votes"].get(q, 0),
                             p_reached=min(1.0, max(0.0, summary["reach"][q])),
                             state=states[q].to_dict() if q in states else {}, decided=q in decided)
            for q, probs in summary["posterior"].items()]
    SubjectPosterior.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["subject", "question"],
        update_fields=["probabilities", "n_votes", "p_reached", "state", "decided", "updated_at"])


def _write_skills(volunteer_id: int, states: dict[str, VolunteerState], n_votes: dict[str, int] | None = None,
                  n_gold: dict[str, int] | None = None) -> None:
    rows = [VolunteerSkill(volunteer_id=volunteer_id, question=q, confusion=s.to_dict(),
                           n_votes=(n_votes or {}).get(q, 0), n_gold=(n_gold or {}).get(q, 0))
            for q, s in states.items()]
    VolunteerSkill.objects.bulk_create(rows, update_conflicts=True, unique_fields=["volunteer", "question"],
                                       update_fields=["confusion", "n_votes", "n_gold", "updated_at"])


def _volunteer_skill_write(skills: dict[int, tuple[float | None, int]]) -> None:
    """Store volunteers' (accuracy on the first question, gold galaxies behind it) on their rows and, once
    committed, in the selector's Redis copy."""
    for volunteer_id, (accuracy, n_gold) in skills.items():
        Volunteer.objects.filter(pk=volunteer_id).update(accuracy=accuracy, n_gold=n_gold)

    def publish():
        r = queue.client()
        if r is not None:
            try:
                queue.skill_store(r, skills=skills)
            except queue.RedisError:  # the copy expires; until then the selector uses the old skill
                logger.warning("could not publish the skill of %d volunteers to Redis", len(skills), exc_info=True)
    transaction.on_commit(publish)


def classification_aggregate(*, classification_id: int) -> AggregateOutcome:
    """Fold one committed classification into its subject's posteriors, its volunteer's skills and the
    subject's clumps, and retire the subject if it is decided. Idempotent: a classification already
    aggregated changes nothing."""
    with transaction.atomic():
        c = (Classification.objects.select_related("volunteer").only(
            "id", "subject_id", "volunteer_id", "workflow_version_id", "answers", "aggregated_at")
             .get(pk=classification_id))
        # The subject's row lock serialises every update of this galaxy (and of its posterior rows).
        subject = Subject.objects.select_for_update().get(pk=c.subject_id)
        if Classification.objects.filter(pk=c.pk, aggregated_at__isnull=False).exists():
            return AggregateOutcome(c.pk, subject.pk, already=True)
        settings = learning_settings_get(project_id=subject.project_id)
        agg = _aggregator(settings, c.workflow_version_id)
        tree = agg.tree_
        pairs = [(a["question"], a["answer"]) for a in c.answers]
        gold = GoldStandard.objects.filter(subject=subject).first()

        states = _gold_states(agg, gold)
        for p in SubjectPosterior.objects.filter(subject=subject).exclude(question=BOX_QUESTION):
            if p.state and p.question in agg.aggregators:
                states[p.question] = SubjectState.from_dict(p.state)
        skill_rows = {s.question: s for s in VolunteerSkill.objects.select_for_update()
                      .filter(volunteer_id=c.volunteer_id, question__in=[q for q, _ in pairs])}
        skills = {q: VolunteerState.from_dict(s.confusion) for q, s in skill_rows.items() if s.confusion}
        summary = agg.observe_classification(states, skills, pairs)

        decided = {q for q, s in states.items() if s.reason}
        _write_posteriors(subject, summary, states, decided)
        n_gold = {q: (skill_rows[q].n_gold if q in skill_rows else 0) + int(states[q].gold >= 0) for q, _ in pairs}
        _write_skills(c.volunteer_id, {q: skills[q] for q, _ in pairs},
                      n_votes={q: (skill_rows[q].n_votes if q in skill_rows else 0) + 1 for q, _ in pairs},
                      n_gold=n_gold)
        box_task = WorkflowVersion.objects.only("box_task").get(pk=c.workflow_version_id).box_task or {}
        if box_task.get("enabled", True):
            subject_clumps_aggregate(subject=subject)
        Classification.objects.filter(pk=c.pk).update(aggregated_at=timezone.now())

        first = tree.first or tree.questions[0].name
        reason = summary["reason"]
        difficulty = (summary["difficulty"] if not reason and summary["n_votes"].get(first, 0) >= settings.hard_after_votes
                      else 0.0)
        if difficulty != subject.difficulty:
            Subject.objects.filter(pk=subject.pk).update(difficulty=difficulty)
        if first in n_gold:
            _volunteer_skill_write({c.volunteer_id: (agg.volunteer_accuracy(first, skills[first]), n_gold[first])})

        outcome = AggregateOutcome(c.pk, subject.pk, posterior=summary["posterior"])
        if reason and gold is None and subject.state == Subject.State.ACTIVE:
            retirement = subject_retire(
                subject=subject, reason=REASON_MAP[reason],
                n_classifications=int(summary["n_votes"].get(tree.first, 0)),
                label={"answers": consensus_path(tree, summary["posterior"]), "aggregator_reason": reason})
            outcome.retired = retirement.reason if retirement else ""
        return outcome


def subject_clumps_aggregate(*, subject: Subject) -> list[ClumpCluster]:
    """Re-cluster one subject's boxes with its witnesses' skills (incremental EM) and store its clumps.

    Call with the subject's row locked. Witnesses are every volunteer who classified the subject: one
    who drew nothing where others drew a clump is evidence against it. A subject nobody has drawn on
    (most galaxies) changes nothing and costs one query.
    """
    own = SubjectPosterior.objects.filter(subject=subject, question=BOX_QUESTION).first()
    marks = np.array(list(ClumpBox.objects.filter(classification__subject=subject).values_list(
        "classification__volunteer_id", "x", "y", "width", "height")), dtype=np.float64).reshape(-1, 5)
    if not len(marks) and (own is None or not own.state.get("contributions")):
        return []
    witnesses = sorted(set(Classification.objects.filter(subject=subject).values_list("volunteer_id", flat=True)))
    aggregator = box_aggregator_build()
    glob, _ = AggregationState.objects.get_or_create(project_id=subject.project_id)
    # Locked in volunteer order, like every other writer of these rows, so two subjects never deadlock.
    skill_rows = {s.volunteer_id: s for s in VolunteerSkill.objects.select_for_update()
                  .filter(volunteer_id__in=witnesses, question=BOX_QUESTION).order_by("volunteer_id")}
    old_prior = list(own.state.get("subject_prior") or []) if own else []
    state = BoxState(
        volunteers={v: BoxVolunteerState.from_dict(s.confusion) for v, s in skill_rows.items() if s.confusion},
        contributions={subject.pk: {int(u): c for u, c in (own.state.get("contributions") or {}).items()}} if own else {},
        subject_prior={subject.pk: old_prior} if old_prior else {},
        prior=list(glob.box_prior or []),
    )
    clusters = aggregator.aggregate_subject(state, subject.pk, marks, seen_users=witnesses, learn=True)

    VolunteerSkill.objects.bulk_create(
        [VolunteerSkill(volunteer_id=v, question=BOX_QUESTION, confusion=state.volunteers[v].to_dict(),
                        n_votes=(skill_rows[v].n_votes if v in skill_rows else 0))
         for v in witnesses if v in state.volunteers],
        update_conflicts=True, unique_fields=["volunteer", "question"], update_fields=["confusion", "updated_at"])
    new_prior = list(state.subject_prior.get(subject.pk, []))
    SubjectPosterior.objects.update_or_create(
        subject=subject, question=BOX_QUESTION,
        defaults={"state": {"contributions": {str(u): c for u, c in state.contributions.get(subject.pk, {}).items()},
                            "subject_prior": new_prior},
                  "n_votes": len(witnesses), "probabilities": {}, "p_reached": 1.0})
    clumps = clumps_replace(subject_id=subject.pk, clusters=clusters)
    _box_prior_add(glob.pk, old_prior, new_prior)
    return clumps


def _box_prior_add(state_id: int, old: list[float], new: list[float]) -> None:
    """Add one subject's change of its population terms to the project's sums. Locks the row only
    from here to the end of the caller's transaction (this is its last write)."""
    glob = AggregationState.objects.select_for_update().get(pk=state_id)
    n = max(len(glob.box_prior or []), len(old), len(new))
    total = np.zeros(n)
    for vec, sign in ((glob.box_prior or [], 1.0), (new, 1.0), (old, -1.0)):
        total[:len(vec)] += sign * np.asarray(vec, dtype=np.float64)
    AggregationState.objects.filter(pk=state_id).update(box_prior=total.tolist())


def clumps_replace(*, subject_id: int, clusters: pd.DataFrame) -> list[ClumpCluster]:
    ClumpCluster.objects.filter(subject_id=subject_id).delete()
    rows = [ClumpCluster(subject_id=subject_id, x=float(r.x), y=float(r.y), width=float(r.width),
                         height=float(r.height), probability=float(np.clip(r.probability, 0.0, 1.0)),
                         n_marks=int(r.n_marks), spread=float(r.spread))
            for r in clusters.itertuples() if r.width > 0 and r.height > 0]
    return ClumpCluster.objects.bulk_create(rows)


def aggregation_drain(*, budget_seconds: float = 40.0, batch: int = 100) -> int:
    """Aggregate the classifications waiting on the Redis list (``classify.queue.PENDING_KEY``), oldest
    first, until it is empty or ``budget_seconds`` are spent; then, if any are left, send a fresh drain
    task for them. Returns how many were aggregated.

    Each classification is its own transaction (:func:`classification_aggregate`, idempotent). If one
    fails, the ids not yet done go back on the list before the error propagates (the task retries); if
    even that fails, the catch-up finds them by ``aggregated_at IS NULL``."""
    from zooplatform.classify import queue

    r = queue.client()
    if r is None:
        return 0
    deadline = time.monotonic() + budget_seconds
    done = 0
    while time.monotonic() < deadline:
        ids = queue.pending_pop(r, batch)
        if not ids:
            return done
        for i, cid in enumerate(ids):
            try:
                done += not classification_aggregate(classification_id=cid).already
            except Classification.DoesNotExist:
                logger.warning("classification %s on the aggregation list no longer exists", cid)
            except BaseException:
                queue.pending_push(r, ids[i:])
                raise
    if queue.pending_count(r):
        from zooplatform.celery import app as celery_app
        from zooplatform.classify.services import AGGREGATE_DRAIN_TASK

        celery_app.send_task(AGGREGATE_DRAIN_TASK, queue="default")
    return done


def aggregation_catch_up(*, project_id: int | None = None, older_than_seconds: float = 30.0, limit: int = 5000) -> int:
    """Aggregate classifications whose online update never ran (broker down, worker killed).

    Only classifications committed at least ``older_than_seconds`` ago are taken, so the normal
    online path has had its chance first. The aggregation list is drained first (an id left on it
    whose drain task was lost would otherwise hold back every later drain). Returns how many were
    aggregated.
    """
    done = aggregation_drain() if project_id is None else 0
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    qs = Classification.objects.filter(aggregated_at__isnull=True, created_at__lte=cutoff)
    if project_id is not None:
        qs = qs.filter(subject__project_id=project_id)
    for cid in qs.order_by("id").values_list("id", flat=True)[:limit]:
        if not classification_aggregate(classification_id=cid).already:
            done += 1
    return done


# ------------------------------------------------------------------------------------------- batch
@dataclass
class VoteTable:
    """Every classification of a project as flat arrays, in submission order."""

    votes: pd.DataFrame            # subject_id, user_id, question, answer
    classifications: pd.DataFrame  # id, subject_id, volunteer_id
    upto: int                      # highest classification id included
    dropped: int                   # answers whose question/answer the current tree does not have


def vote_table_load(*, project_id: int, tree: DecisionTree) -> VoteTable:
    columns = set(tree.columns)
    rows, cls, dropped = [], [], 0
    qs = (Classification.objects.filter(subject__project_id=project_id).order_by("id")
          .values_list("id", "subject_id", "volunteer_id", "answers"))
    for cid, sid, vid, answers in qs.iterator(chunk_size=20000):
        cls.append((cid, sid, vid))
        for a in answers:
            q, ans = a.get("question"), a.get("answer")
            if f"{q}_{ans}" in columns:
                rows.append((sid, vid, q, ans))
            else:
                dropped += 1
    votes = pd.DataFrame(rows, columns=["subject_id", "user_id", "question", "answer"])
    classifications = pd.DataFrame(cls, columns=["id", "subject_id", "volunteer_id"])
    return VoteTable(votes, classifications, int(classifications["id"].max()) if len(cls) else 0, dropped)


def _gold_table(project_id: int, agg: TreeAggregator) -> pd.DataFrame:
    rows = []
    for sid, answers in GoldStandard.objects.filter(subject__project_id=project_id).values_list("subject_id", "answers"):
        for step in answers:
            q, a = step.get("question"), step.get("answer")
            if q in agg.aggregators and a in agg._answer_index[q]:
                rows.append((sid, q, a))
    return pd.DataFrame(rows, columns=["subject_id", "question", "answer"])


def machine_evidence(*, project_id: int, agg: TreeAggregator, human_fit: TreeAggregator, model: ModelVersion | None,
                     store: bool = True) -> dict:
    """Fit the machine agent per question on gold and human-retired subjects and return its evidence
    ``{question: (subject_ids, log_likelihood)}`` for every subject the promoted model scored."""
    if model is None:
        return {}
    preds = list(Prediction.objects.filter(model_version=model).values_list("subject_id", "fractions"))
    if not preds:
        return {}
    ids = np.array([p[0] for p in preds], dtype=np.int64)
    evidence = {}
    for q in agg.tree_.questions:
        cols = [f"{q.name}_{a.name}" for a in q.answers]
        fr = np.array([[p[1].get(c, 0.0) for c in cols] for p in preds], dtype=np.float64)
        result = human_fit.aggregators_[q.name].result_
        known_ids, labels = training_labels(result, human_only=True)
        machine = MachineAgent(n_classes=len(q.answers))
        pos = {s: i for i, s in enumerate(ids.tolist())}
        pick = [(pos[s], lab) for s, lab in zip(known_ids.tolist(), labels.tolist()) if s in pos]
        if pick:
            machine.fit(fr[[i for i, _ in pick]], np.array([lab for _, lab in pick]))
        if store:
            MachineSkill.objects.update_or_create(model_version=model, question=q.name,
                                                  defaults={"confusion": machine.to_dict(), "n_subjects": len(pick)})
        evidence[q.name] = machine.evidence(ids, fr)
    return evidence


@dataclass
class SweepReport:
    subjects: int = 0
    classifications: int = 0
    votes: int = 0
    retired: dict = field(default_factory=dict)
    clumps: int = 0
    machine: bool = False
    dropped_answers: int = 0

    def as_dict(self) -> dict:
        return self.__dict__.copy()


def aggregation_sweep(*, project_id: int, progress=None) -> SweepReport:
    """Re-aggregate a whole project from its vote table (batch, vectorised), see the module docstring."""
    progress = progress or (lambda fraction, message: None)
    project = Project.objects.get(pk=project_id)
    settings = learning_settings_get(project_id=project_id)
    from zooplatform.workflows.selectors import workflow_version_current

    version = workflow_version_current(project=project)
    tree = version.decision_tree
    table = vote_table_load(project_id=project_id, tree=tree)
    progress(0.2, f"{len(table.votes)} votes loaded")
    report = SweepReport(classifications=len(table.classifications), votes=len(table.votes),
                         dropped_answers=table.dropped)
    if table.upto == 0:
        return report

    agg = tree_aggregator_build(settings=settings, tree=tree)
    gold = _gold_table(project_id, agg)
    human = tree_aggregator_build(settings=settings, tree=tree).fit(table.votes, gold=gold)
    model = ModelVersion.objects.filter(project_id=project_id, kind=ModelVersion.Kind.MORPHOLOGY, promoted=True).first()
    evidence = machine_evidence(project_id=project_id, agg=agg, human_fit=human, model=model) if settings.machine_enabled else {}
    report.machine = bool(evidence)
    fitted = tree_aggregator_build(settings=settings, tree=tree).fit(table.votes, gold=gold, evidence=evidence) \
        if evidence else human
    progress(0.6, "posteriors fitted")

    box_fit = None
    marks = pd.DataFrame(list(ClumpBox.objects.filter(classification__subject__project_id=project_id)
                              .values_list("classification__subject_id", "classification__volunteer_id",
                                           "x", "y", "width", "height")),
                         columns=["subject_id", "user_id", "x", "y", "width", "height"])
    if len(marks):
        seen = table.classifications.rename(columns={"volunteer_id": "user_id"})[["subject_id", "user_id"]]
        box_fit = box_aggregator_build().fit(marks, seen)

    gold_ids = set(gold["subject_id"].tolist())
    with transaction.atomic():
        human_reasons = dict(zip(human.subject_ids_.tolist(), human.reason_.tolist())) if evidence else None
        report.subjects = _sweep_write(project_id, fitted, box_fit, report, gold_ids, human_reasons)
        # Anything submitted after the snapshot is folded in again, on top of the batch state.
        Classification.objects.filter(subject__project_id=project_id, id__gt=table.upto).update(aggregated_at=None)
        Classification.objects.filter(subject__project_id=project_id, id__lte=table.upto,
                                      aggregated_at__isnull=True).update(aggregated_at=timezone.now())
        AggregationState.objects.update_or_create(project_id=project_id, defaults={
            "swept_at": timezone.now(), "swept_upto": table.upto,
            "learned": {q: learned for q, learned in fitted.to_dict()["learned"].items() if learned},
            **({"box_prior": list(box_fit.state_.prior)} if box_fit is not None else {})})
    progress(0.95, "states written")
    transaction.on_commit(lambda: aggregation_catch_up(project_id=project_id, older_than_seconds=0))
    return report


def _sweep_write(project_id: int, fitted: TreeAggregator, box_fit, report: SweepReport, gold_ids: set,
                 human_reasons: dict | None) -> int:
    """Write a batch fit: posteriors, skills, clumps, and retirements (reason "machine" where only the
    machine's evidence decided the subject)."""
    tree = fitted.tree_
    ids = fitted.subject_ids_
    qnames = [q.name for q in tree.questions]
    states = {q: fitted.aggregators_[q].state_ for q in qnames}
    posterior_rows = []
    for i, sid in enumerate(ids.tolist()):
        for qi, q in enumerate(qnames):
            st = states[q].subjects.get(sid)
            probs = {a.name: float(fitted.posterior_[q][i, j]) for j, a in enumerate(tree[q].answers)}
            posterior_rows.append(SubjectPosterior(
                subject_id=sid, question=q, probabilities=probs, n_votes=int(fitted.n_votes_[q][i]),
                p_reached=float(np.clip(fitted.reach_[i, qi], 0, 1)), state=st.to_dict() if st else {},
                decided=bool(st and st.reason)))
    for start in range(0, len(posterior_rows), 5000):
        SubjectPosterior.objects.bulk_create(
            posterior_rows[start:start + 5000], update_conflicts=True, unique_fields=["subject", "question"],
            update_fields=["probabilities", "n_votes", "p_reached", "state", "decided", "updated_at"])

    skill_rows = []
    for q in qnames:
        for vid, vs in states[q].volunteers.items():
            skill_rows.append(VolunteerSkill(volunteer_id=vid, question=q, confusion=vs.to_dict(),
                                             n_votes=int(np.sum(vs.counts))))
    for start in range(0, len(skill_rows), 5000):
        VolunteerSkill.objects.bulk_create(skill_rows[start:start + 5000], update_conflicts=True,
                                           unique_fields=["volunteer", "question"],
                                           update_fields=["confusion", "n_votes", "updated_at"])

    settings = learning_settings_get(project_id=project_id)
    first = tree.first or qnames[0]
    accuracy = {vid: fitted.volunteer_accuracy(first, vs) for vid, vs in states[first].volunteers.items()}
    Volunteer.objects.bulk_update([Volunteer(pk=vid, accuracy=acc) for vid, acc in accuracy.items()], ["accuracy"],
                                  batch_size=2000)
    if accuracy:
        transaction.on_commit(lambda: queue.skill_forget(volunteer_ids=list(accuracy)))
    difficulty = fitted.difficulty(fitted.posterior_, fitted.reach_)
    difficulty[(fitted.n_votes_[first] < settings.hard_after_votes) | (fitted.reason_ != "")] = 0.0
    Subject.objects.filter(project_id=project_id, difficulty__gt=0).update(difficulty=0.0)
    Subject.objects.bulk_update([Subject(pk=sid, difficulty=float(d)) for sid, d in zip(ids.tolist(), difficulty)
                                 if d > 0], ["difficulty"], batch_size=2000)

    if box_fit is not None:
        bstate = box_fit.state_
        VolunteerSkill.objects.bulk_create(
            [VolunteerSkill(volunteer_id=v, question=BOX_QUESTION, confusion=s.to_dict()) for v, s in bstate.volunteers.items()],
            update_conflicts=True, unique_fields=["volunteer", "question"], update_fields=["confusion", "updated_at"])
        ClumpCluster.objects.filter(subject__project_id=project_id).delete()
        clusters = box_fit.clusters_
        report.clumps = len(clusters)
        for sid, group in clusters.groupby("subject_id"):
            clumps_replace(subject_id=int(sid), clusters=group)
        SubjectPosterior.objects.bulk_create(
            [SubjectPosterior(subject_id=s, question=BOX_QUESTION, p_reached=1.0, probabilities={},
                              state={"contributions": {str(u): c for u, c in contrib.items()},
                                     "subject_prior": list(bstate.subject_prior.get(s, []))})
             for s, contrib in bstate.contributions.items()],
            update_conflicts=True, unique_fields=["subject", "question"], update_fields=["state", "updated_at"])

    active = set(Subject.objects.filter(project_id=project_id, state=Subject.State.ACTIVE, pk__in=ids.tolist())
                 .values_list("pk", flat=True))
    first = tree.first
    for i, sid in enumerate(ids.tolist()):
        reason = fitted.reason_[i]
        if not reason or sid not in active or sid in gold_ids:
            continue
        post = {q: {a.name: float(fitted.posterior_[q][i, j]) for j, a in enumerate(tree[q].answers)} for q in qnames}
        by_machine = human_reasons is not None and not human_reasons.get(sid) and reason == "consensus"
        platform_reason = Retirement.Reason.MACHINE if by_machine else REASON_MAP[reason]
        r = subject_retire(subject=Subject(pk=sid), reason=platform_reason,
                           n_classifications=int(fitted.n_votes_[first][i]),
                           label={"answers": consensus_path(tree, post), "aggregator_reason": reason})
        if r is not None:
            report.retired[r.reason] = report.retired.get(r.reason, 0) + 1
    return len(ids)


