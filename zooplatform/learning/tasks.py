"""Celery tasks of the learning loop: ids in, one service call, retries and limits here.

Queues: ``default`` for aggregation (milliseconds per classification), ``gpu`` for retraining and
scoring (a CPU worker consuming ``-Q gpu`` runs them on the CPU where no GPU worker exists). Every
task is idempotent, so ``acks_late`` redelivery after a worker dies does no harm.
"""
from __future__ import annotations

from celery import shared_task
from django.db import InterfaceError, OperationalError

from zooplatform.learning import services
from zooplatform.learning.services import cycle

RETRY = dict(autoretry_for=(OperationalError, InterfaceError, ConnectionError), retry_backoff=True,
             retry_backoff_max=300, retry_jitter=True, max_retries=8, acks_late=True)


@shared_task(name="learning.classification_aggregate", soft_time_limit=50, time_limit=60, **RETRY)
def classification_aggregate(classification_id: int) -> dict:
    outcome = services.classification_aggregate(classification_id=classification_id)
    return {"subject": outcome.subject_id, "already": outcome.already, "retired": outcome.retired}


@shared_task(name="learning.aggregation_drain", soft_time_limit=50, time_limit=60, **RETRY)
def aggregation_drain() -> int:
    return services.aggregation_drain()


@shared_task(name="learning.aggregation_catch_up", soft_time_limit=540, time_limit=600, **RETRY)
def aggregation_catch_up() -> int:
    return services.aggregation_catch_up()


@shared_task(bind=True, name="learning.aggregation_sweep", soft_time_limit=3300, time_limit=3600, **RETRY)
def aggregation_sweep(self, project_id: int, job_id: int | None = None) -> dict:
    return cycle.sweep_run(project_id=project_id, task_id=self.request.id or "", job_id=job_id)


@shared_task(name="learning.aggregation_sweep_all", soft_time_limit=50, time_limit=60, **RETRY)
def aggregation_sweep_all() -> list[int]:
    return cycle.sweep_all()


@shared_task(bind=True, name="learning.retrain", soft_time_limit=6 * 3600, time_limit=6 * 3600 + 300, **RETRY)
def retrain(self, project_id: int, kind: str = "morphology", reason: str = "", job_id: int | None = None) -> dict:
    return cycle.retrain_run(project_id=project_id, kind=kind, reason=reason, task_id=self.request.id or "",
                             job_id=job_id)


@shared_task(bind=True, name="learning.score", soft_time_limit=3 * 3600, time_limit=3 * 3600 + 300, **RETRY)
def score(self, model_version_id: int, job_id: int | None = None) -> dict:
    return cycle.score_run(model_version_id=model_version_id, task_id=self.request.id or "", job_id=job_id)


@shared_task(name="learning.retrain_if_due", soft_time_limit=50, time_limit=60, **RETRY)
def retrain_if_due() -> dict:
    return cycle.retrain_if_due_all()
