"""Retraining on the consolidated labels, and atomic promotion on a fixed validation set.

Labels are the volunteers' raw vote counts per ``<question>_<answer>`` (what the Dirichlet-multinomial
loss of Zoobot wants; questions a volunteer never reached stay 0 and are masked out by the loss) for
every subject with at least ``min_votes`` classifications; clump labels are the aggregator's consensus
clumps with probability >= 0.5. The validation set is fixed by a hash of each subject's id (one in
five), so it never changes under a subject and only grows; a candidate model is promoted only if it
beats the promoted model *on the same validation galaxies, evaluated now*.
"""
from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings as django_settings
from django.core.files import File
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from aggregation.tree import DecisionTree
from zooplatform.classify.models import Classification
from zooplatform.galaxies.models import Project, Retirement, Subject
from zooplatform.learning.models import ClumpCluster, ModelVersion
from zooplatform.workflows.selectors import workflow_version_current

from .aggregate import learning_settings_get

logger = logging.getLogger(__name__)

VALIDATION_MODULUS = 5    # one subject in five, by hash of its id, is in the fixed validation set
MIN_VALIDATION = 4


class NotEnoughLabels(Exception):
    pass


def json_safe(value):
    """Metrics as JSON the database accepts: NaN and infinities (not JSON; PostgreSQL refuses them) become None."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def in_validation(subject_id: int) -> bool:
    """Whether a subject belongs to the fixed validation set (stable: depends on its id alone)."""
    return int(hashlib.sha1(f"val:{subject_id}".encode()).hexdigest()[:8], 16) % VALIDATION_MODULUS == 0


def subject_image_path(subject: Subject) -> str:
    """A local path to the subject's image (downloaded to the media cache for non-local storage)."""
    try:
        return subject.image.path
    except NotImplementedError:
        cache = Path(django_settings.VAR_DIR) / "image-cache" / subject.image.name
        if not cache.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            with subject.image.open("rb") as src:
                cache.write_bytes(src.read())
        return str(cache)


@dataclass
class MorphologyLabels:
    subject_ids: np.ndarray      # (n,)
    paths: list[str]             # (n,)
    votes: np.ndarray            # (n, A) vote counts in tree.columns order
    tree: DecisionTree
    val_ids: list[str]           # subject ids (as str) of the fixed validation set
    snapshot: dict               # id (hash), n_subjects, max classification id, time

    def galaxy_data(self):
        from classifier import GalaxyData

        return GalaxyData(ids=self.subject_ids.astype(str), images=self.paths, votes=self.votes, tree=self.tree,
                          val_ids=self.val_ids, snapshot_id=self.snapshot["id"])


def morphology_labels(*, project_id: int, min_votes: int = 1) -> MorphologyLabels:
    """Vote counts of every subject with at least ``min_votes`` classifications, gold included."""
    project = Project.objects.get(pk=project_id)
    tree = workflow_version_current(project=project).decision_tree
    column = {c: i for i, c in enumerate(tree.columns)}
    eligible = set(Subject.objects.filter(project=project).annotate(n=Count("classifications"))
                   .filter(n__gte=max(1, min_votes)).values_list("pk", flat=True))
    counts: dict[int, np.ndarray] = {}
    max_id = 0
    qs = (Classification.objects.filter(subject_id__in=eligible).order_by("id")
          .values_list("id", "subject_id", "answers"))
    for cid, sid, answers in qs.iterator(chunk_size=20000):
        row = counts.setdefault(sid, np.zeros(len(column), dtype=np.float32))
        for a in answers:
            j = column.get(f"{a.get('question')}_{a.get('answer')}")
            if j is not None:
                row[j] += 1
        max_id = max(max_id, cid)
    ids = np.array(sorted(counts), dtype=np.int64)
    subjects = Subject.objects.in_bulk(ids.tolist())
    votes = np.stack([counts[i] for i in ids]) if len(ids) else np.zeros((0, len(column)), np.float32)
    digest = hashlib.sha1(ids.tobytes() + votes.tobytes()).hexdigest()[:16]
    return MorphologyLabels(
        subject_ids=ids, paths=[subject_image_path(subjects[i]) for i in ids.tolist()], votes=votes, tree=tree,
        val_ids=[str(i) for i in ids.tolist() if in_validation(i)],
        snapshot={"id": digest, "n_subjects": int(len(ids)), "n_votes": int(votes.sum()),
                  "max_classification_id": int(max_id), "created_at": timezone.now().isoformat()})


def _checkpoint_to_storage(version: ModelVersion, path: Path) -> None:
    with open(path, "rb") as fh:
        # Storage writes a new file under a fresh name, then the row points to it: a reader never sees
        # a half-written checkpoint (classifier's own save is atomic on local disk too).
        version.checkpoint.save(f"{version.project_id}/{version.kind}-{version.pk}.pt", File(fh), save=False)


def model_promote(*, version: ModelVersion) -> None:
    """Make ``version`` the promoted model of its kind, atomically (the database allows one)."""
    with transaction.atomic():
        list(ModelVersion.objects.select_for_update().filter(project_id=version.project_id, kind=version.kind))
        ModelVersion.objects.filter(project_id=version.project_id, kind=version.kind, promoted=True)\
            .exclude(pk=version.pk).update(promoted=False)
        ModelVersion.objects.filter(pk=version.pk).update(promoted=True, promoted_at=timezone.now(),
                                                          status=ModelVersion.Status.READY)
    version.refresh_from_db()


def _abandon_unfinished(project_id: int, kind: str) -> None:
    """Mark models left "training" by a worker that died as failed. Safe because this runs inside the
    project's one retraining job: no other training of the project can be under way."""
    ModelVersion.objects.filter(project_id=project_id, kind=kind, status=ModelVersion.Status.TRAINING)\
        .update(status=ModelVersion.Status.FAILED)


def _promoted(project_id: int, kind: str) -> ModelVersion | None:
    return ModelVersion.objects.filter(project_id=project_id, kind=kind, promoted=True).first()


def morphology_retrain(*, project_id: int, progress=None) -> ModelVersion:
    """Train a candidate morphology model on the current labels; promote it if it beats the promoted
    model on the fixed validation set. Raises :class:`NotEnoughLabels` when there is too little to learn."""
    import classifier
    from classifier.train import TrainConfig, constant_baseline_rmse, evaluate

    progress = progress or (lambda fraction, message: None)
    settings = learning_settings_get(project_id=project_id)
    labels = morphology_labels(project_id=project_id, min_votes=settings.min_votes)
    n_val = len(labels.val_ids)
    if len(labels.subject_ids) < settings.min_training_subjects or n_val < MIN_VALIDATION:
        raise NotEnoughLabels(f"{len(labels.subject_ids)} labelled subjects ({n_val} for validation); "
                              f"need {settings.min_training_subjects} and {MIN_VALIDATION}")
    current = _promoted(project_id, ModelVersion.Kind.MORPHOLOGY)
    overrides = dict(settings.train_overrides)
    overrides.setdefault("device", django_settings.TORCH_DEVICE)
    overrides["progress"] = False
    if current and current.checkpoint and overrides.get("model", None) in (None, current.architecture):
        overrides.setdefault("init_checkpoint", current.checkpoint.path)  # warm start: Zoobot fine-tunes too
    config = TrainConfig.preset(settings.train_preset, **overrides)
    _abandon_unfinished(project_id, ModelVersion.Kind.MORPHOLOGY)
    version = ModelVersion.objects.create(project_id=project_id, kind=ModelVersion.Kind.MORPHOLOGY,
                                          architecture=config.model, config=config.to_dict(),
                                          label_snapshot=labels.snapshot)
    data = labels.galaxy_data()
    epochs = max(1, config.epochs)

    def on_epoch(record: dict):
        progress(0.1 + 0.7 * min(1.0, (record.get("epoch", 0) + 1) / epochs),
                 f"epoch {record.get('epoch', 0) + 1}: val_loss {record.get('val_loss', float('nan')):.3f}")

    try:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = classifier.fit(config, data, out_dir=tmp, resume=False, callback=on_epoch)
            progress(0.85, "evaluating against the promoted model")
            images = data.image_array(config.image_size, crop_fraction=config.crop_fraction)
            val_idx = np.array([i for i, s in enumerate(data.ids) if s in set(labels.val_ids)])
            new_metrics = evaluate(checkpoint.build(), images, data.votes, val_idx)
            metrics = {**{k: v for k, v in checkpoint.metrics.items() if not isinstance(v, (list, dict))},
                       "val_loss": new_metrics["val_loss"], "val_fraction_rmse": new_metrics["val_fraction_rmse"],
                       "n_train": int(len(data) - len(val_idx)), "n_val": int(len(val_idx)),
                       "baseline_fraction_rmse": constant_baseline_rmse(
                           data.tree, data.votes, np.setdiff1d(np.arange(len(data)), val_idx), val_idx)}
            if current is not None and current.checkpoint:
                cur_ckpt = classifier.Checkpoint.load(current.checkpoint.path)
                cur_images = images if cur_ckpt.config.get("image_size") == config.image_size else \
                    data.image_array(cur_ckpt.config["image_size"], crop_fraction=cur_ckpt.config.get("crop_fraction", 1.0))
                cur = evaluate(cur_ckpt.build(), cur_images, data.votes, val_idx)
                metrics["promoted_val_loss"] = cur["val_loss"]
            _checkpoint_to_storage(version, Path(checkpoint.path))
    except BaseException:
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.FAILED)
        raise
    # Promoted only if it beats the promoted model on the fixed validation set and, like any model, the
    # constant answer (the training galaxies' mean vote fractions): a first model that collapsed onto
    # one answer must not set priorities and machine evidence.
    learned = metrics["val_fraction_rmse"] < metrics["baseline_fraction_rmse"]
    better = learned and (current is None or metrics["val_loss"] < metrics.get("promoted_val_loss", float("inf")))
    if not learned:
        metrics["rejected_because"] = (f"vote-fraction RMSE {metrics['val_fraction_rmse']:.4f} is no better than the "
                                       f"constant mean answer's {metrics['baseline_fraction_rmse']:.4f}")
    version.metrics = json_safe(metrics)
    version.status = ModelVersion.Status.READY if better else ModelVersion.Status.REJECTED
    version.save(update_fields=["metrics", "status", "checkpoint"])
    if better:
        model_promote(version=version)
    outcome = "promoted" if better else "kept the promoted model" if learned else \
        f"not promoted: {metrics['rejected_because']}"
    progress(0.95, f"val_loss {metrics['val_loss']:.3f} ({outcome})")
    return version


@dataclass
class ClumpLabels:
    subject_ids: np.ndarray
    paths: list[str]
    boxes: list[np.ndarray]   # xyxy per subject
    val_ids: list[str]
    snapshot: dict


def clump_labels(*, project_id: int, min_classifications: int = 3, min_probability: float = 0.5) -> ClumpLabels:
    """Consensus clumps of subjects that enough volunteers saw (retired subjects always count)."""
    seen = dict(Subject.objects.filter(project_id=project_id).annotate(n=Count("classifications"))
                .filter(n__gte=min_classifications).values_list("pk", "n"))
    retired = set(Retirement.objects.filter(subject__project_id=project_id).values_list("subject_id", flat=True))
    ids = sorted(set(seen) | (retired & set(Subject.objects.filter(project_id=project_id, classifications__isnull=False)
                                            .values_list("pk", flat=True))))
    boxes: dict[int, list] = {i: [] for i in ids}
    for sid, x, y, w, h in ClumpCluster.objects.filter(subject_id__in=ids, probability__gte=min_probability)\
            .values_list("subject_id", "x", "y", "width", "height"):
        boxes[sid].append((x, y, x + w, y + h))
    subjects = Subject.objects.in_bulk(ids)
    arr = [np.asarray(boxes[i], dtype=np.float32).reshape(-1, 4) for i in ids]
    digest = hashlib.sha1(np.array(ids, dtype=np.int64).tobytes()
                          + b"".join(a.tobytes() for a in arr)).hexdigest()[:16]
    return ClumpLabels(np.array(ids, dtype=np.int64), [subject_image_path(subjects[i]) for i in ids], arr,
                       [str(i) for i in ids if in_validation(i)],
                       {"id": digest, "n_subjects": len(ids), "n_boxes": int(sum(len(a) for a in arr)),
                        "max_classification_id": Classification.objects.filter(subject__project_id=project_id)
                        .order_by("-id").values_list("id", flat=True).first() or 0,
                        "created_at": timezone.now().isoformat()})


def detector_retrain(*, project_id: int, progress=None) -> ModelVersion:
    """Train a candidate clump detector; promote it if its validation F1 (completeness and purity at
    IoU 0.5) beats the promoted detector's on the same validation galaxies."""
    import classifier
    from classifier.detection import DetectorConfig, completeness_purity

    progress = progress or (lambda fraction, message: None)
    settings = learning_settings_get(project_id=project_id)
    labels = clump_labels(project_id=project_id)
    if len(labels.subject_ids) < settings.min_training_subjects or len(labels.val_ids) < MIN_VALIDATION:
        raise NotEnoughLabels(f"{len(labels.subject_ids)} subjects with clump consensus; "
                              f"need {settings.min_training_subjects}")
    overrides = dict(settings.detector_overrides)
    overrides.setdefault("device", django_settings.TORCH_DEVICE)
    overrides["progress"] = False
    preset = overrides.pop("preset", "small")
    config = DetectorConfig.preset(preset, **overrides)
    _abandon_unfinished(project_id, ModelVersion.Kind.DETECTOR)
    version = ModelVersion.objects.create(project_id=project_id, kind=ModelVersion.Kind.DETECTOR,
                                          architecture=config.model, config=config.to_dict(),
                                          label_snapshot=labels.snapshot)
    data = classifier.DetectionData(ids=labels.subject_ids.astype(str), images=labels.paths, boxes=labels.boxes,
                                    val_ids=labels.val_ids, snapshot_id=labels.snapshot["id"])
    current = _promoted(project_id, ModelVersion.Kind.DETECTOR)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = classifier.fit_detector(
                config, data, out_dir=tmp,
                callback=lambda r: progress(0.1 + 0.7 * min(1.0, (r.get("epoch", 0) + 1) / max(1, config.epochs)),
                                            f"epoch {r.get('epoch', 0) + 1}"))
            val_pos = [i for i, s in enumerate(data.ids) if s in set(labels.val_ids)]
            images = [data.image_list()[i] for i in val_pos]
            truths = [data.boxes[i] for i in val_pos]

            def f1(model) -> dict:
                pred = classifier.predict_boxes(model, images)
                cp = completeness_purity(pred, truths, iou_threshold=config.iou_threshold)
                return {k: cp[k] for k in ("completeness", "purity", "f1", "n_true", "n_pred", "n_matched")}

            metrics = {**f1(checkpoint), "n_val": len(val_pos), "n_train": len(data) - len(val_pos)}
            if current is not None and current.checkpoint:
                metrics["promoted_f1"] = f1(classifier.Checkpoint.load(current.checkpoint.path))["f1"]
            _checkpoint_to_storage(version, Path(checkpoint.path))
    except BaseException:
        ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.FAILED)
        raise
    better = current is None or metrics["f1"] > metrics.get("promoted_f1", -1.0)
    version.metrics = json_safe(metrics)
    version.status = ModelVersion.Status.READY if better else ModelVersion.Status.REJECTED
    version.save(update_fields=["metrics", "status", "checkpoint"])
    if better:
        model_promote(version=version)
    return version


def retrain_due(*, project_id: int, kind: str = ModelVersion.Kind.MORPHOLOGY) -> str:
    """Why a project's model of ``kind`` should be retrained now ("" if it should not): none yet and
    enough classified subjects, enough new retirements since the promoted model was trained, or a
    model older than the interval while new classifications came in."""
    settings = learning_settings_get(project_id=project_id)
    if kind == ModelVersion.Kind.DETECTOR and not settings.detector_enabled:
        return ""
    current = _promoted(project_id, kind)
    latest = ModelVersion.objects.filter(project_id=project_id, kind=kind).order_by("-created_at").first()
    since = (current or latest).created_at if (current or latest) else None
    if since is None:
        n = Subject.objects.filter(project_id=project_id, classifications__isnull=False).distinct().count()
        return f"no model yet, {n} subjects classified" if n >= settings.min_training_subjects else ""
    new = Retirement.objects.filter(subject__project_id=project_id, retired_at__gt=since).count()
    if new >= settings.retrain_after_retirements:
        return f"{new} new retirements"
    age_hours = (timezone.now() - since).total_seconds() / 3600
    upto = (current or latest).label_snapshot.get("max_classification_id", 0)
    newer = Classification.objects.filter(subject__project_id=project_id, id__gt=upto).exists()
    if age_hours >= settings.retrain_interval_hours and newer:
        return f"model is {age_hours:.0f} h old"
    return ""
