"""Scoring: the promoted model looks at the unretired galaxies, and what it sees steers the platform.

1. MC-dropout predictions of every active subject (plus gold and retired subjects, whose known answers
   calibrate the machine agent): vote fractions, the acquisition score (BALD by default), an anomaly
   score and the embedding for "more galaxies like this one". A pool-relative acquisition
   (``bald-balanced``, which gives every question its share of the most informative galaxies) is
   combined over all the active subjects once the last chunk is scored.
2. Priorities: the acquisition scores of active subjects, as percentile ranks in [0, 1], become
   ``Subject.priority``, and the selector's queue is refreshed, so volunteers see the most informative
   galaxies next. Subjects the model has not scored keep priority 0.5 (the middle).
3. The machine as a classifier: per question, a :class:`~aggregation.MachineAgent` is fitted on the
   predictions for gold and human-retired subjects, and its log-likelihood replaces any earlier machine
   evidence in each active subject's state. Confident, calibrated predictions can retire a galaxy
   (reason "machine"); a miscalibrated model is discounted by its own confusion matrix.
"""
from __future__ import annotations

import logging
from contextlib import closing

import numpy as np
from django.db import transaction

from aggregation import MachineAgent, SubjectState
from zooplatform.galaxies.models import GoldStandard, Retirement, Subject
from zooplatform.galaxies.services import subject_retire
from zooplatform.learning.models import MachineSkill, ModelVersion, Prediction, SubjectPosterior
from zooplatform.workflows.selectors import workflow_version_current

from .aggregate import REASON_MAP, _aggregator, consensus_path, learning_settings_get, _write_posteriors
from .training import json_safe, subject_image_path

logger = logging.getLogger(__name__)

UNSCORED_PRIORITY = 0.5
CALIBRATION_RETIRED = 5000  # most recent retired subjects scored for the machine's calibration
BATCH = 512          # subjects scored and written per chunk
SCORE_BATCH = 256    # galaxies per forward pass


def _subjects_to_score(project_id: int) -> tuple[list[Subject], int]:
    """The subjects to score, active ones first, and how many are active."""
    # Gold subjects never retire, so they are among the active ones.
    active = list(Subject.objects.filter(project_id=project_id, state=Subject.State.ACTIVE).only("pk", "image"))
    retired = list(Subject.objects.filter(project_id=project_id, state=Subject.State.RETIRED, gold__isnull=True,
                                          retirement__reason__in=[Retirement.Reason.CONSENSUS, Retirement.Reason.VOTE_CAP,
                                                                  Retirement.Reason.EXPERT])
                   .order_by("-retirement__retired_at").only("pk", "image")[:CALIBRATION_RETIRED])
    return active + retired, len(active)


def model_score(*, model_version_id: int, progress=None) -> dict:
    """Score the project's subjects with ``model_version_id`` (see the module docstring)."""
    import classifier

    progress = progress or (lambda fraction, message: None)
    version = ModelVersion.objects.select_related("project").get(pk=model_version_id)
    if version.kind != ModelVersion.Kind.MORPHOLOGY or not version.checkpoint:
        raise ValueError(f"{version} is not a trained morphology model")
    settings = learning_settings_get(project_id=version.project_id)
    checkpoint = classifier.Checkpoint.load(version.checkpoint.path)
    model = checkpoint.build()
    subjects, n_active = _subjects_to_score(version.project_id)
    n = len(subjects)
    acquisition = classifier.create_acquisition(settings.acquisition, questions=settings.acquisition_questions)
    pool_relative = acquisition.pool_relative
    pool_parts = []     # a pool-relative acquisition's parts of the active subjects, combined over all of them
    # One stream over every subject: its decoding workers start once, and each chunk is written as it comes.
    stream = classifier.score_chunks(
        model, [subject_image_path(s) for s in subjects], [str(s.pk) for s in subjects], chunk_size=BATCH,
        batch_size=SCORE_BATCH, n_samples=settings.mc_samples, acquisition=acquisition,
        image_size=checkpoint.config.get("image_size"), crop_fraction=checkpoint.config.get("crop_fraction", 1.0))
    start = 0
    with closing(stream):           # a failed write stops the loader's workers at once
        for scores in stream:
            chunk = subjects[start:start + len(scores.ids)]
            if pool_relative:
                pool_parts.append(scores.acquisition_parts[:max(0, n_active - start)])
            rows = [Prediction(
                subject_id=s.pk, model_version=version,
                fractions={c: round(float(v), 5) for c, v in zip(scores.columns, scores.fractions[i])},
                acquisition=None if pool_relative else float(scores.acquisition[i]),    # pool-relative: below
                embedding=scores.embeddings[i].astype(np.float16).tobytes() if scores.embeddings is not None else None)
                for i, s in enumerate(chunk)]
            Prediction.objects.bulk_create(rows, update_conflicts=True, unique_fields=["subject", "model_version"],
                                           update_fields=["fractions", "acquisition", "embedding"])
            start += len(chunk)
            progress(0.05 + 0.7 * min(1.0, start / max(n, 1)), f"scored {start} of {n}")

    if pool_relative and n_active:
        _pool_acquisition_write(version, subjects[:n_active], acquisition, np.concatenate(pool_parts))
    anomalies = _anomaly_scores(version)
    priorities = subject_priorities_update(model_version=version)
    progress(0.85, "priorities updated")
    retired = machine_evidence_apply(model_version=version) if settings.machine_enabled else {}
    return json_safe({"scored": n, "prioritised": priorities, "anomalies": anomalies, "machine_retired": retired})


def _pool_acquisition_write(version: ModelVersion, active: list[Subject], acquisition, parts: np.ndarray) -> None:
    """A pool-relative acquisition (``bald-balanced``) ranks each galaxy against the others: combine the
    parts of every active subject, scored chunk by chunk, into their acquisition scores."""
    combined = acquisition.combine(parts)
    pks = dict(Prediction.objects.filter(model_version=version).values_list("subject_id", "pk"))
    Prediction.objects.bulk_update([Prediction(pk=pks[s.pk], acquisition=float(a)) for s, a in zip(active, combined)],
                                   ["acquisition"], batch_size=2000)


def _anomaly_scores(version: ModelVersion) -> int:
    """kNN anomaly score of every scored subject, against all of them (Zoobot's anomaly tool)."""
    from classifier import knn_anomaly

    rows = list(Prediction.objects.filter(model_version=version).exclude(embedding=None).values_list("pk", "embedding"))
    if len(rows) < 3:
        return 0
    emb = np.stack([np.frombuffer(bytes(e), dtype=np.float16).astype(np.float32) for _, e in rows])
    scores = knn_anomaly(emb, k=min(10, len(rows) - 1))
    Prediction.objects.bulk_update([Prediction(pk=pk, anomaly=float(a)) for (pk, _), a in zip(rows, scores)],
                                   ["anomaly"], batch_size=2000)
    return len(rows)


def subject_priorities_update(*, model_version: ModelVersion) -> int:
    """Active subjects' priority = percentile rank of their acquisition score; then refresh the queue."""
    from zooplatform.classify.services import subject_queue_refresh

    pairs = list(Prediction.objects.filter(model_version=model_version, subject__state=Subject.State.ACTIVE)
                 .exclude(acquisition=None).values_list("subject_id", "acquisition"))
    if pairs:
        acq = np.array([a for _, a in pairs])
        ranks = (np.argsort(np.argsort(acq, kind="stable"), kind="stable") + 1) / len(acq)
        with transaction.atomic():
            Subject.objects.filter(project_id=model_version.project_id, state=Subject.State.ACTIVE)\
                .exclude(pk__in=[s for s, _ in pairs]).update(priority=UNSCORED_PRIORITY)
            Subject.objects.bulk_update([Subject(pk=s, priority=float(r)) for (s, _), r in zip(pairs, ranks)],
                                        ["priority"], batch_size=2000)
    subject_queue_refresh(project=model_version.project_id)
    return len(pairs)


def machine_evidence_apply(*, model_version: ModelVersion) -> dict:
    """Fit the machine agent on gold and human-retired subjects, then put its evidence into every active
    subject's per-question state (replacing the previous model's), retiring those it decides."""
    project_id = model_version.project_id
    settings = learning_settings_get(project_id=project_id)
    workflow_version = workflow_version_current(project=model_version.project)
    agg = _aggregator(settings, workflow_version.pk)
    tree = agg.tree_
    preds = dict(Prediction.objects.filter(model_version=model_version).values_list("subject_id", "fractions"))
    known: dict[str, dict[int, int]] = {q.name: {} for q in tree.questions}
    for sid, answers in GoldStandard.objects.filter(subject__project_id=project_id).values_list("subject_id", "answers"):
        for step in answers:
            if step.get("question") in known and step.get("answer") in agg._answer_index[step["question"]]:
                known[step["question"]][sid] = agg._answer_index[step["question"]][step["answer"]]
    # Human-retired subjects teach the machine only through the humans' own decision, never its own.
    for sid, label in Retirement.objects.filter(subject__project_id=project_id).exclude(
            reason__in=[Retirement.Reason.MACHINE, Retirement.Reason.EXPERT_QUEUE]).values_list("subject_id", "label"):
        for step in (label or {}).get("answers", []):
            q = step.get("question")
            if q in known and sid not in known[q] and step.get("answer") in agg._answer_index[q]:
                known[q][sid] = agg._answer_index[q][step["answer"]]

    agents: dict[str, MachineAgent] = {}
    for q in tree.questions:
        cols = [f"{q.name}_{a.name}" for a in q.answers]
        ids = [s for s in known[q.name] if s in preds]
        agent = MachineAgent(n_classes=len(q.answers))
        if ids:
            agent.fit(np.array([[preds[s].get(c, 0.0) for c in cols] for s in ids]),
                      np.array([known[q.name][s] for s in ids]))
        agents[q.name] = agent
        MachineSkill.objects.update_or_create(model_version=model_version, question=q.name,
                                              defaults={"confusion": agent.to_dict(), "n_subjects": len(ids)})

    retired: dict[str, int] = {}
    gold_ids = set(GoldStandard.objects.filter(subject__project_id=project_id).values_list("subject_id", flat=True))
    active_ids = list(Subject.objects.filter(project_id=project_id, state=Subject.State.ACTIVE, pk__in=list(preds))
                      .exclude(pk__in=gold_ids).values_list("pk", flat=True))
    for sid in active_ids:
        with transaction.atomic():
            subject = Subject.objects.select_for_update().get(pk=sid)
            if subject.state != Subject.State.ACTIVE:
                continue
            states = {p.question: SubjectState.from_dict(p.state) for p in SubjectPosterior.objects.filter(subject=subject)
                      if p.state and p.question in agg.aggregators}
            for q in tree.questions:
                a = agg.aggregators[q.name]
                st = states.setdefault(q.name, a.new_subject())
                if st.reason:
                    continue
                if st.evidence and st.log_belief:
                    # Take the previous model's evidence out before adding this one's.
                    st.log_belief = [b - e for b, e in zip(st.log_belief, st.evidence)]
                    st.evidence = []
                cols = [f"{q.name}_{ans.name}" for ans in q.answers]
                ll = agents[q.name].log_likelihood(np.array([[preds[sid].get(c, 0.0) for c in cols]]))[0]
                a.add_evidence(st, ll)
            summary = agg.summary(states)
            _write_posteriors(subject, summary, states, {q for q, s in states.items() if s.reason})
            if summary["reason"]:
                n_human = int(summary["n_votes"].get(tree.first, 0))
                reason = REASON_MAP[summary["reason"]]
                if reason in (Retirement.Reason.CONSENSUS,):
                    reason = Retirement.Reason.MACHINE  # decided now, by adding the machine's vote
                r = subject_retire(subject=subject, reason=reason, n_classifications=n_human,
                                   label={"answers": consensus_path(tree, summary["posterior"]),
                                          "aggregator_reason": summary["reason"], "model_version": model_version.pk})
                if r is not None:
                    retired[r.reason] = retired.get(r.reason, 0) + 1
    return retired


def detector_score(*, model_version_id: int, progress=None) -> dict:
    """The promoted clump detector's boxes for every active subject, stored as
    ``Prediction.fractions = {"boxes": [{x, y, width, height, score}, ...]}`` (image pixels, x/y the
    top-left corner, like volunteers' boxes), for the dashboard and for comparison with the crowd."""
    import classifier

    progress = progress or (lambda fraction, message: None)
    version = ModelVersion.objects.get(pk=model_version_id)
    if version.kind != ModelVersion.Kind.DETECTOR or not version.checkpoint:
        raise ValueError(f"{version} is not a trained clump detector")
    checkpoint = classifier.Checkpoint.load(version.checkpoint.path)
    detector = checkpoint.build()
    threshold = float(checkpoint.metrics.get("score_threshold", 0.5))
    subjects = list(Subject.objects.filter(project_id=version.project_id, state=Subject.State.ACTIVE).only("pk", "image"))
    n_boxes = 0
    for start in range(0, len(subjects), BATCH):
        chunk = subjects[start:start + BATCH]
        found = classifier.predict_boxes(detector, [subject_image_path(s) for s in chunk], score_threshold=threshold)
        rows = []
        for s, d in zip(chunk, found):
            boxes = [{"x": round(float(x1), 2), "y": round(float(y1), 2), "width": round(float(x2 - x1), 2),
                      "height": round(float(y2 - y1), 2), "score": round(float(sc), 4)}
                     for (x1, y1, x2, y2), sc in zip(d["boxes"], d["scores"]) if x2 > x1 and y2 > y1]
            n_boxes += len(boxes)
            rows.append(Prediction(subject_id=s.pk, model_version=version, fractions={"boxes": boxes}))
        Prediction.objects.bulk_create(rows, update_conflicts=True, unique_fields=["subject", "model_version"],
                                       update_fields=["fractions"])
        progress(0.05 + 0.9 * min(1.0, (start + len(chunk)) / max(len(subjects), 1)),
                 f"detected clumps in {start + len(chunk)} of {len(subjects)}")
    return {"scored": len(subjects), "boxes": n_boxes, "score_threshold": threshold}
