"""Orchestration of the learning loop: each run is one Job (progress for the dashboard, one active
per key across every worker and machine), and the steps chain here, not in the tasks:
retrain -> (promoted?) score -> priorities and machine evidence."""
from __future__ import annotations

import logging


from zooplatform.galaxies.models import Project
from zooplatform.learning.models import Job, ModelVersion

from .aggregate import aggregation_sweep
from .jobs import JobBusy, job_enqueue, job_finish, job_progress, job_running
from .scoring import detector_score, model_score
from .training import NotEnoughLabels, detector_retrain, morphology_retrain, retrain_due

logger = logging.getLogger(__name__)

RETRAIN_KINDS = {ModelVersion.Kind.MORPHOLOGY: Job.Kind.RETRAIN_MORPHOLOGY,
                 ModelVersion.Kind.DETECTOR: Job.Kind.RETRAIN_DETECTOR}


def sweep_enqueue(*, project_id: int) -> Job:
    return job_enqueue(project_id=project_id, kind=Job.Kind.SWEEP, exclusive_key=f"sweep:{project_id}",
                       task="learning.aggregation_sweep", args=[project_id])


def retrain_enqueue(*, project_id: int, kind: str = ModelVersion.Kind.MORPHOLOGY, reason: str = "") -> Job:
    return job_enqueue(project_id=project_id, kind=RETRAIN_KINDS[kind], exclusive_key=f"retrain:{project_id}",
                       task="learning.retrain", args=[project_id, kind, reason])


def score_enqueue(*, model_version: ModelVersion) -> Job:
    return job_enqueue(project_id=model_version.project_id, kind=Job.Kind.SCORE,
                       exclusive_key=f"score:{model_version.project_id}:{model_version.kind}",
                       task="learning.score", args=[model_version.pk])


def sweep_run(*, project_id: int, task_id: str = "", job_id: int | None = None) -> dict:
    """Batch re-aggregation of one project as a job (one at a time per project)."""
    try:
        with job_running(project_id=project_id, kind=Job.Kind.SWEEP, exclusive_key=f"sweep:{project_id}",
                         task_id=task_id, job_id=job_id) as job:
            report = aggregation_sweep(project_id=project_id, progress=lambda f, m: job_progress(job, f, m))
            job.result = report.as_dict()
            return job.result
    except JobBusy as busy:
        return {"busy": busy.job.pk}


def retrain_run(*, project_id: int, kind: str = ModelVersion.Kind.MORPHOLOGY, reason: str = "",
                task_id: str = "", job_id: int | None = None) -> dict:
    """Retrain one model kind; never two retrainings of a project at once (one key for both kinds).
    A promoted model then scores the project at once."""
    train = morphology_retrain if kind == ModelVersion.Kind.MORPHOLOGY else detector_retrain
    try:
        with job_running(project_id=project_id, kind=RETRAIN_KINDS[kind], exclusive_key=f"retrain:{project_id}",
                         task_id=task_id, job_id=job_id) as job:
            job_progress(job, 0.02, reason or "retraining")
            try:
                version = train(project_id=project_id, progress=lambda f, m: job_progress(job, f, m))
            except NotEnoughLabels as exc:
                job_finish(job, status=Job.Status.SKIPPED, message=str(exc))
                return {"skipped": str(exc)}
            job.result = {"model_version": version.pk, "promoted": version.promoted, "metrics": version.metrics}
    except JobBusy as busy:
        return {"busy": busy.job.pk}
    if version.promoted:
        try:
            score_enqueue(model_version=version)
        except JobBusy:
            logger.info("model %s promoted while a scoring of the project runs; the next one will use it", version.pk)
    return job.result


def score_run(*, model_version_id: int, task_id: str = "", job_id: int | None = None) -> dict:
    """Score with a model (normally the one just promoted): the morphology model sets priorities and
    machine evidence, the detector stores its clump boxes. Skipped if it is no longer promoted."""
    version = ModelVersion.objects.get(pk=model_version_id)
    try:
        with job_running(project_id=version.project_id, kind=Job.Kind.SCORE,
                         exclusive_key=f"score:{version.project_id}:{version.kind}", task_id=task_id,
                         job_id=job_id) as job:
            if not version.promoted:
                job_finish(job, status=Job.Status.SKIPPED, message=f"model {version.pk} is no longer promoted")
                return {"skipped": job.message}
            run = model_score if version.kind == ModelVersion.Kind.MORPHOLOGY else detector_score
            job.result = run(model_version_id=version.pk, progress=lambda f, m: job_progress(job, f, m))
            return job.result
    except JobBusy as busy:
        return {"busy": busy.job.pk}


def retrain_if_due_all() -> dict:
    """For every project whose morphology model (or else clump detector) is due, enqueue its retraining.
    One at a time per project: a busy key means one is under way, and the next check comes soon."""
    started = {}
    for project_id in Project.objects.values_list("pk", flat=True):
        for kind in (ModelVersion.Kind.MORPHOLOGY, ModelVersion.Kind.DETECTOR):
            why = retrain_due(project_id=project_id, kind=kind)
            if why:
                try:
                    retrain_enqueue(project_id=project_id, kind=kind, reason=why)
                    started[project_id] = f"{kind}: {why}"
                except JobBusy:
                    pass
                break
    return started


def sweep_all() -> list[int]:
    started = []
    for project_id in Project.objects.values_list("pk", flat=True):
        try:
            sweep_enqueue(project_id=project_id)
            started.append(project_id)
        except JobBusy:
            pass
    return started
