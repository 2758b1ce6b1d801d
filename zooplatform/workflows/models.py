"""Workflows: a project's versioned decision tree of questions plus the clump box-drawing task."""
from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from aggregation.tree import DecisionTree, TreeError


def validate_tree(value) -> None:
    try:
        DecisionTree.from_dict(value)
    except TreeError as exc:
        raise ValidationError(f"invalid decision tree: {exc}") from None


def default_box_task() -> dict:
    return {
        "enabled": True,
        "instruction": "Draw a box around each clump: a bright, compact knot of star formation, "
                       "brighter than the galaxy around it. Choose 'No clumps' if there are none.",
        "max_boxes": 30,
        "min_size": 2,
    }


class Workflow(models.Model):
    project = models.ForeignKey("galaxies.Project", on_delete=models.CASCADE, related_name="workflows")
    slug = models.SlugField()
    name = models.CharField(max_length=200)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "slug"], name="workflow_unique_slug")]

    def __str__(self):
        return self.name

    @property
    def current_version(self) -> "WorkflowVersion | None":
        return self.versions.order_by("-version").first()


class WorkflowVersion(models.Model):
    """An immutable version of a workflow: edit by adding a version, so every classification keeps
    the exact tree its volunteer saw.

    ``tree`` is the fixed JSON shape read by every tool (see ``aggregation/tree.py``);
    ``box_task`` configures the clump drawing step shown after the questions.
    """

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    tree = models.JSONField(validators=[validate_tree])
    box_task = models.JSONField(default=default_box_task, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workflow", "version"], name="workflowversion_unique"),
            models.CheckConstraint(condition=Q(version__gte=1), name="workflowversion_positive"),
        ]
        ordering = ["workflow", "version"]

    def __str__(self):
        return f"{self.workflow} v{self.version}"

    @property
    def decision_tree(self) -> DecisionTree:
        cached = getattr(self, "_decision_tree", None)
        if cached is None:
            cached = self._decision_tree = DecisionTree.from_dict(self.tree)
        return cached

    def clean(self):
        tree = DecisionTree.from_dict(self.tree) if isinstance(self.tree, dict) else None
        if tree is None or not tree.linked:
            raise ValidationError({"tree": "a workflow tree needs 'first' and next links"})
        if not isinstance(self.box_task, dict):
            raise ValidationError({"box_task": "an object"})
        max_boxes = self.box_task.get("max_boxes", 30)
        if not isinstance(max_boxes, int) or not 1 <= max_boxes <= 200:
            raise ValidationError({"box_task": "max_boxes must be an integer from 1 to 200"})
