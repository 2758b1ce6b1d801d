"""Celery tasks of the volunteer side: thin wrappers that own only the name and the queue."""
from celery import shared_task

from zooplatform.galaxies.models import Project

from .services import subject_queue_refresh


@shared_task(name="classify.subject_queue_refresh", ignore_result=True)
def subject_queue_refresh_task(project_id: int | None = None) -> int:
    """Rebuild the Redis queue of one project, or of every project (for a periodic beat entry)."""
    ids = [project_id] if project_id is not None else list(Project.objects.values_list("pk", flat=True))
    return sum(subject_queue_refresh(project=pk) for pk in ids)
