"""Writes for workflows: versions are immutable, so changing a tree adds a version."""
from __future__ import annotations

from django.db import transaction

from aggregation.tree import DecisionTree

from .models import Workflow, WorkflowVersion, default_box_task

# The workflows every new project starts with: the GZ DECaLS tree is the active one (with the clump
# task); the GZ2 tree ships for projects that want to compare with Galaxy Zoo 2.
BUILTIN_WORKFLOWS = (
    {"slug": "gz-decals", "name": "Galaxy Zoo DECaLS", "tree": "gz_decals", "active": True},
    {"slug": "gz2", "name": "Galaxy Zoo 2", "tree": "gz2", "active": False},
)


@transaction.atomic
def workflow_version_create(*, workflow: Workflow, tree: dict, box_task: dict | None = None) -> WorkflowVersion:
    """Add a version to ``workflow`` unless its latest version already has this tree and box task.

    Returns the (new or unchanged) latest version. Raises ``django.core.exceptions.ValidationError``
    for an invalid tree.
    """
    box_task = default_box_task() if box_task is None else box_task
    latest = workflow.versions.select_for_update().order_by("-version").first()
    if latest is not None and latest.tree == tree and latest.box_task == box_task:
        return latest
    version = WorkflowVersion(
        workflow=workflow, version=(latest.version + 1) if latest else 1, tree=tree, box_task=box_task
    )
    version.full_clean()
    version.save()
    return version


@transaction.atomic
def workflows_ensure_builtin(*, project) -> list[Workflow]:
    """Create the built-in workflows of ``project`` if missing (idempotent)."""
    workflows = []
    for spec in BUILTIN_WORKFLOWS:
        workflow, created = Workflow.objects.get_or_create(
            project=project, slug=spec["slug"], defaults={"name": spec["name"], "active": spec["active"]}
        )
        if created or not workflow.versions.exists():
            workflow_version_create(workflow=workflow, tree=DecisionTree.builtin(spec["tree"]).to_dict())
        workflows.append(workflow)
    return workflows
