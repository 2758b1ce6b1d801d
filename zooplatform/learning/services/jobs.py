"""Jobs: progress the dashboard shows, and the database-enforced rule of one active job per key."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from zooplatform.learning.models import Job

def stale_after() -> timedelta:
    """A running job that has not reported progress for this long is taken to be dead (its worker was
    killed): the next job of the same key marks it failed and takes over. Longer than any gap between
    two progress reports (one training epoch)."""
    return timedelta(seconds=getattr(settings, "ZOO_JOB_STALE_SECONDS", 1800))


class JobBusy(Exception):
    """Another job with the same exclusive key is queued or running (and alive)."""

    def __init__(self, job: Job):
        super().__init__(f"{job} is already active")
        self.job = job


def _expire_stale(exclusive_key: str, task_id: str) -> None:
    cutoff = timezone.now() - stale_after()
    silent = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, created_at__lt=cutoff)
    # The same task id again means the broker redelivered this very task (acks_late) because the worker
    # running it died: its job cannot still be running, so it is taken over at once.
    if task_id:
        silent |= Q(task_id=task_id)
    Job.objects.filter(silent, exclusive_key=exclusive_key, status__in=Job.ACTIVE).update(
        status=Job.Status.FAILED, finished_at=timezone.now(),
        message="stopped reporting progress (worker lost); taken over")


def job_enqueue(*, project_id: int, kind: str, exclusive_key: str, task: str, args: list) -> Job:
    """Record a queued job and send its task after commit (the task gets ``job_id``), so the dashboard
    shows it while it waits for a worker. Raises :class:`JobBusy` if the key is held by a live job."""
    from zooplatform.celery import app

    _expire_stale(exclusive_key, "")
    try:
        with transaction.atomic():
            job = Job.objects.create(project_id=project_id, kind=kind, exclusive_key=exclusive_key,
                                     status=Job.Status.QUEUED, message="waiting for a worker")
    except IntegrityError:
        active = Job.objects.filter(exclusive_key=exclusive_key, status__in=Job.ACTIVE).first()
        if active is None:
            return job_enqueue(project_id=project_id, kind=kind, exclusive_key=exclusive_key, task=task, args=args)
        raise JobBusy(active) from None
    transaction.on_commit(lambda: app.send_task(task, args=list(args), kwargs={"job_id": job.pk}))
    return job


def _adopt(job_id: int, task_id: str) -> Job | None:
    """The queued job ``job_id``, now running under this task; None if it is gone (taken over as stale)."""
    now = timezone.now()
    if Job.objects.filter(pk=job_id, status=Job.Status.QUEUED).update(
            status=Job.Status.RUNNING, started_at=now, heartbeat_at=now, task_id=task_id or "", message=""):
        return Job.objects.get(pk=job_id)
    return None


def job_start(*, project_id: int, kind: str, exclusive_key: str | None = None, task_id: str = "",
              job_id: int | None = None) -> Job:
    """Start a job: adopt the queued job ``job_id`` (see :func:`job_enqueue`) or create a running one.
    Raises :class:`JobBusy` if ``exclusive_key`` is held by another live job."""
    if job_id is not None:
        adopted = _adopt(job_id, task_id)
        if adopted is not None:
            return adopted
    if exclusive_key:
        _expire_stale(exclusive_key, task_id)
    now = timezone.now()
    try:
        with transaction.atomic():
            return Job.objects.create(project_id=project_id, kind=kind, exclusive_key=exclusive_key,
                                      status=Job.Status.RUNNING, task_id=task_id or "", started_at=now,
                                      heartbeat_at=now)
    except IntegrityError:
        active = Job.objects.filter(exclusive_key=exclusive_key, status__in=Job.ACTIVE).first()
        if active is None:  # it finished between the insert and this read: try once more
            return job_start(project_id=project_id, kind=kind, exclusive_key=exclusive_key, task_id=task_id)
        raise JobBusy(active) from None


def job_progress(job: Job, progress: float, message: str = "") -> None:
    """Record progress (0..1) and a heartbeat; written outside any surrounding transaction's rows."""
    job.progress = min(max(float(progress), 0.0), 1.0)
    job.message = message[:500] or job.message
    job.heartbeat_at = timezone.now()
    Job.objects.filter(pk=job.pk).update(progress=job.progress, message=job.message, heartbeat_at=job.heartbeat_at)


def job_finish(job: Job, *, status: str = Job.Status.SUCCEEDED, result: dict | None = None, message: str = "") -> None:
    job.status = status
    job.finished_at = timezone.now()
    job.result = result or {}
    job.message = (message or job.message)[:500]
    if status == Job.Status.SUCCEEDED:
        job.progress = 1.0
    Job.objects.filter(pk=job.pk).update(status=job.status, finished_at=job.finished_at, result=job.result,
                                         message=job.message, progress=job.progress)


@contextmanager
def job_running(*, project_id: int, kind: str, exclusive_key: str | None = None, task_id: str = "",
                job_id: int | None = None):
    """``with job_running(...) as job:`` marks the job succeeded on exit, failed on an exception."""
    job = job_start(project_id=project_id, kind=kind, exclusive_key=exclusive_key, task_id=task_id, job_id=job_id)
    try:
        yield job
    except BaseException as exc:
        job_finish(job, status=Job.Status.FAILED, result=job.result, message=f"{type(exc).__name__}: {exc}")
        raise
    else:
        if job.status in Job.ACTIVE:
            job_finish(job, result=job.result)
