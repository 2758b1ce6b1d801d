"""Reads for workflows."""
from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist

from zooplatform.core.exceptions import ApplicationError

from .models import Workflow, WorkflowVersion


def workflow_active_for_project(*, project) -> Workflow:
    workflow = Workflow.objects.filter(project=project, active=True).order_by("id").first()
    if workflow is None:
        raise ApplicationError(f"project {project.slug!r} has no active workflow")
    return workflow


def workflow_version_current(*, project) -> WorkflowVersion:
    """The latest version of the project's active workflow: the one volunteers are served now."""
    version = workflow_active_for_project(project=project).current_version
    if version is None:
        raise ApplicationError(f"project {project.slug!r}: the active workflow has no version")
    return version


def workflow_version_get(*, pk: int) -> WorkflowVersion:
    try:
        return WorkflowVersion.objects.select_related("workflow").get(pk=pk)
    except (ObjectDoesNotExist, ValueError, TypeError):
        raise ApplicationError(f"no workflow version {pk!r}", field="workflow_version") from None
