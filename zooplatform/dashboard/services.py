"""Writes the project scientists make from the dashboard: steer the learning loop (enqueue its jobs,
promote a model, change its settings), label the expert queue, reorder or retire a subject, and import
a catalogue with its images.

The learning loop's own services do the work (``zooplatform.learning.services``); these only validate a
scientist's request, record it, and hand the long work to the Celery workers.
"""
from __future__ import annotations

import csv
import io
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence

from django.db import transaction
from django.utils import timezone

from aggregation.tree import TreeError
from zooplatform.classify.models import Classification
from zooplatform.classify.services import subject_queue_refresh
from zooplatform.core.exceptions import ApplicationError
from zooplatform.galaxies.models import GoldStandard, Project, Retirement, Subject
from zooplatform.galaxies.services import IMAGE_COLUMNS, ImportReport, catalogue_parse, subject_retire, subjects_import
from zooplatform.learning.models import LearningSettings, ModelVersion, SubjectPosterior
from zooplatform.learning.services import learning_settings_get, model_promote
from zooplatform.learning.services.aggregate import BOX_QUESTION, consensus_path
from zooplatform.learning.services import cycle
from zooplatform.learning.services.jobs import JobBusy

from .selectors import model_promoted, project_tree


# ------------------------------------------------------------------------------------------- learning loop
LEARNING_ACTIONS = {
    "retrain_morphology": "Retrain morphology",
    "retrain_detector": "Retrain detector",
    "score": "Re-score with promoted model",
    "sweep": "Re-aggregate (sweep)",
}


def learning_action_enqueue(*, project: Project, action: str, user=None) -> str:
    """Enqueue one step of the learning loop for ``project``; returns what to tell the scientist.

    The step is recorded at once as a queued Job (shown under Jobs while it waits for a worker), and
    refused (``ApplicationError``) while a live job holds the same key: the database allows one active
    job per key, and both retrainings share one, so a project never trains two models at once.
    """
    if action not in LEARNING_ACTIONS:
        raise ApplicationError(f"unknown action {action!r}; known: {', '.join(LEARNING_ACTIONS)}", field="action")
    who = f"requested by {user.get_username()} on the dashboard" if user is not None else "requested on the dashboard"
    try:
        if action in ("retrain_morphology", "retrain_detector"):
            kind = ModelVersion.Kind.MORPHOLOGY if action == "retrain_morphology" else ModelVersion.Kind.DETECTOR
            cycle.retrain_enqueue(project_id=project.pk, kind=kind, reason=who)
        elif action == "score":
            model = model_promoted(project=project, kind=ModelVersion.Kind.MORPHOLOGY)
            if model is None or not model.checkpoint:
                raise ApplicationError("there is no promoted morphology model to score with yet; retrain first.",
                                       field="action")
            cycle.score_enqueue(model_version=model)
        else:
            cycle.sweep_enqueue(project_id=project.pk)
    except JobBusy as busy:
        job = busy.job
        raise ApplicationError(f"{job.get_kind_display()} #{job.pk} is already {job.status} "
                               f"({job.progress:.0%}{': ' + job.message if job.message else ''}); "
                               f"wait for it to finish.", field="action") from None
    return f"{LEARNING_ACTIONS[action]}: queued; its progress shows under Jobs."


def model_version_promote(*, version: ModelVersion) -> str:
    """Promote a ready, not yet promoted model (a rollback to an earlier model is a promotion too); the
    promoted model then re-scores the project, so priorities, machine evidence or clump boxes follow it."""
    version.refresh_from_db()
    if version.promoted:
        raise ApplicationError(f"model #{version.pk} is already promoted", field="model_version")
    if version.status != ModelVersion.Status.READY or not version.checkpoint:
        raise ApplicationError(f"model #{version.pk} is {version.get_status_display().lower()}; only a ready "
                               "model with a checkpoint can be promoted", field="model_version")
    model_promote(version=version)
    try:
        cycle.score_enqueue(model_version=version)
    except JobBusy:
        return f"Model #{version.pk} promoted; a scoring already under way will be followed by the next one."
    return f"Model #{version.pk} promoted; scoring the galaxies with it is queued."


#: The LearningSettings fields the dashboard edits (every steering knob; not the project or timestamps).
SETTINGS_FIELDS = (
    "binary_aggregator", "binary_params", "multi_aggregator", "multi_params", "reach_threshold", "min_votes",
    "vote_cap", "expert_after", "machine_enabled", "machine_retires", "train_preset", "train_overrides",
    "detector_enabled", "detector_overrides", "retrain_after_retirements", "retrain_interval_hours", "min_training_subjects",
    "acquisition", "acquisition_questions", "mc_samples", "hard_after_votes", "hard_share", "skilled_accuracy",
    "skilled_min_gold",
)


def learning_settings_update(*, project: Project, values: Mapping) -> LearningSettings:
    """Store new steering knobs (already validated by ``forms.LearningSettingsForm``; the model's own
    constraints are checked again here). The aggregator cache is keyed on ``updated_at``, so the next
    classification is aggregated with the new settings; the next sweep re-aggregates everything."""
    with transaction.atomic():
        settings = learning_settings_get(project_id=project.pk)
        settings = LearningSettings.objects.select_for_update().get(pk=settings.pk)
        unknown = set(values) - set(SETTINGS_FIELDS)
        if unknown:
            raise ApplicationError(f"unknown settings: {', '.join(sorted(unknown))}")
        for name, value in values.items():
            setattr(settings, name, value)
        settings.full_clean()
        settings.save()
    return settings


# ------------------------------------------------------------------------------------------- subjects
def subject_expert_label(*, subject: Subject, answers: Sequence[Mapping], user=None) -> Retirement:
    """An expert's answers for a subject waiting in the expert queue: they become its gold standard (so
    volunteers' skills learn from it), and its one Retirement row changes to reason ``expert`` with the
    expert's label. The row is updated, never duplicated: a subject retires once."""
    tree = project_tree(project=subject.project)
    try:
        pairs = tree.validate_path(list(answers))
    except TreeError as exc:
        raise ApplicationError(str(exc), field="answers") from None
    path = [{"question": q, "answer": a} for q, a in pairs]
    with transaction.atomic():
        retirement = Retirement.objects.select_for_update().filter(subject_id=subject.pk).first()
        if retirement is None or retirement.reason != Retirement.Reason.EXPERT_QUEUE:
            raise ApplicationError(f"{subject.external_id} is not waiting for an expert", field="subject")
        gold = GoldStandard.objects.filter(subject_id=subject.pk).first() or GoldStandard(subject_id=subject.pk)
        gold.answers = path
        gold.created_by = user if user is not None and user.is_authenticated else None
        gold.full_clean(exclude=["subject"])
        gold.save()
        retirement.label = {"answers": path, "expert": user.get_username() if user is not None else "",
                            "labelled_at": timezone.now().isoformat(), "queued_label": retirement.label or {}}
        retirement.reason = Retirement.Reason.EXPERT
        retirement.save(update_fields=["reason", "label"])
    return retirement


def subject_priority_set(*, subject: Subject, priority: float) -> Subject:
    """Set one subject's priority by hand and refresh the project's serving queue, so volunteers see the
    new order at once. The next scoring run sets priorities from the model again."""
    if subject.state != Subject.State.ACTIVE:
        raise ApplicationError(f"{subject.external_id} is retired; only active subjects are served", field="priority")
    Subject.objects.filter(pk=subject.pk).update(priority=priority)
    subject.priority = priority
    transaction.on_commit(lambda: subject_queue_refresh(project=subject.project_id))
    return subject


def subject_retire_manual(*, subject: Subject, user=None) -> Retirement:
    """Retire a subject by hand (reason ``manual``), labelled with the aggregator's current consensus."""
    tree = project_tree(project=subject.project)
    posterior = dict(SubjectPosterior.objects.filter(subject_id=subject.pk).exclude(question=BOX_QUESTION)
                     .values_list("question", "probabilities"))
    label = {"retired_by": user.get_username() if user is not None else ""}
    if posterior:
        label["answers"] = consensus_path(tree, posterior)
    retirement = subject_retire(subject=subject, reason=Retirement.Reason.MANUAL, label=label,
                                n_classifications=Classification.objects.filter(subject_id=subject.pk).count())
    if retirement is None:
        raise ApplicationError(f"{subject.external_id} has already retired", field="subject")
    transaction.on_commit(lambda: subject_queue_refresh(project=subject.project_id))
    return retirement


# ------------------------------------------------------------------------------------------- catalogue import
MAX_ZIP_MEMBERS = 200_000
MAX_UNZIPPED_BYTES = 20 * 2 ** 30   # 20 GiB: a large survey cut-out batch, but not a zip bomb


def _safe_member(name: str) -> bool:
    """A zip member name that stays inside the folder it is extracted to."""
    if not name or "\\" in name or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return False
    return ".." not in PurePosixPath(name).parts


def _extract_zip(upload, root: Path) -> list[str]:
    """Extract ``upload`` (a zip file) under ``root``; returns errors. Refuses the whole archive if any
    member would land outside ``root`` (``../``, absolute paths, symbolic links) and stops at
    ``MAX_UNZIPPED_BYTES`` actually written, whatever the headers claim."""
    try:
        archive = zipfile.ZipFile(upload)
    except (zipfile.BadZipFile, OSError) as exc:
        return [f"images: not a zip file ({exc})"]
    with archive:
        members = archive.infolist()
        if len(members) > MAX_ZIP_MEMBERS:
            return [f"images: {len(members)} files in the zip; at most {MAX_ZIP_MEMBERS} per upload"]
        unsafe = [m.filename for m in members
                  if not _safe_member(m.filename) or stat.S_ISLNK(m.external_attr >> 16)]
        if unsafe:
            return [f"images: zip member {name!r} would be extracted outside the upload's folder" for name in unsafe[:20]]
        written = 0
        for member in members:
            if member.is_dir():
                continue
            target = root / member.filename
            if not target.resolve().is_relative_to(root):
                return [f"images: zip member {member.filename!r} would be extracted outside the upload's folder"]
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with archive.open(member) as src, open(target, "wb") as dst:
                    while block := src.read(1 << 20):
                        written += len(block)
                        if written > MAX_UNZIPPED_BYTES:
                            return [f"images: the zip unpacks to more than {MAX_UNZIPPED_BYTES // 2 ** 30} GiB"]
                        dst.write(block)
            except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as exc:
                return [f"images: {member.filename!r} cannot be extracted ({exc})"]
    return []


def _escaping_rows(text: str, root: Path) -> list[str]:
    """Rows whose image path points outside the extracted zip, reported before any file is opened."""
    reader = csv.DictReader(io.StringIO(text))
    column = next((c for c in IMAGE_COLUMNS if c in (reader.fieldnames or [])), None)
    if column is None:
        return []  # catalogue_parse names the missing column
    errors = []
    for line, record in enumerate(reader, start=2):
        value = (record.get(column) or "").strip()
        if value and not (root / value).resolve().is_relative_to(root):
            errors.append(f"line {line}: {column} {value!r} points outside the uploaded zip")
    return errors


def catalogue_import(*, project: Project, catalogue, images, subject_set_name: str, survey: str = "") -> ImportReport:
    """Import an uploaded catalogue (CSV) whose image column names files inside an uploaded zip.

    Every row is validated first with ``galaxies.services.catalogue_parse`` (ids, images that open,
    coordinates); if any row is bad, nothing is imported and ``ApplicationError.errors["rows"]``
    lists every bad row as ``line N: reason`` (line 1 is the header). Otherwise ``subjects_import`` writes
    them all or nothing. Images are extracted to a temporary folder that is removed afterwards.
    """
    raw = catalogue.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApplicationError(f"the catalogue is not UTF-8 text ({exc.reason} at byte {exc.start})",
                               field="catalogue") from None
    tmp = Path(tempfile.mkdtemp(prefix="zoo-import-")).resolve()
    try:
        errors = _extract_zip(images, tmp)
        if errors:
            raise ApplicationError(errors[0], errors={"images": errors})
        errors = _escaping_rows(text, tmp)
        if not errors:
            rows, errors = catalogue_parse(text, images_dir=tmp)
        if errors:
            # The temporary folder means nothing to the scientist: name files as they are in the zip.
            errors = [e.replace(f"{tmp}/", "").replace(str(tmp), "the zip") for e in errors]
            raise ApplicationError(f"{len(errors)} problem(s) in the catalogue; nothing was imported",
                                   errors={"rows": errors})
        if not rows:
            raise ApplicationError("the catalogue has no rows", field="catalogue")
        report = subjects_import(project=project, subject_set_name=subject_set_name, rows=rows, survey=survey)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if report.created:
        subject_queue_refresh(project=project)
    return report
