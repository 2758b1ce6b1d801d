"""Projects, subject sets and subjects (galaxies), their gold standard and their retirement."""
from __future__ import annotations

import random

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q


class Project(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.name


class SubjectSet(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="subject_sets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="subjectset_unique_name")]

    def __str__(self):
        return self.name


def subject_image_path(instance: "Subject", filename: str) -> str:
    suffix = filename.rsplit(".", 1)[-1].lower() if "." in filename else "png"
    safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in instance.external_id)
    return f"subjects/{instance.project_id}/{safe}.{suffix}"


def subject_fits_path(instance: "Subject", filename: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in instance.external_id)
    return f"subjects/{instance.project_id}/fits/{safe}.fits"


def _shuffle_key() -> float:
    return random.random()


class Subject(models.Model):
    """A galaxy shown to volunteers.

    ``priority`` is set by the learning loop (acquisition scores, aggregator uncertainty); the
    selector serves active subjects by descending priority, ties broken by ``shuffle``, a random key
    drawn once so that ties break randomly without ``ORDER BY random()`` over the table.
    ``difficulty`` is set by the aggregator once a galaxy has had enough votes and is still undecided;
    the selector gives skilled volunteers a share of their galaxies from the hardest first.
    """

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="subjects")
    subject_set = models.ForeignKey(SubjectSet, on_delete=models.PROTECT, related_name="subjects")
    external_id = models.CharField(max_length=128, help_text="Survey name of the galaxy, e.g. J000411.19+020924.0")
    image = models.ImageField(upload_to=subject_image_path, width_field="width", height_field="height")
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    fits = models.FileField(upload_to=subject_fits_path, blank=True)
    ra = models.FloatField(null=True, blank=True)
    dec = models.FloatField(null=True, blank=True)
    survey = models.CharField(max_length=64, blank=True, help_text="e.g. DECaLS DR5, HUDF, synthetic")
    survey_ids = models.JSONField(default=dict, blank=True, help_text="Identifiers in other catalogues")
    metadata = models.JSONField(default=dict, blank=True, help_text="Shown to volunteers on request")
    truth = models.JSONField(
        null=True, blank=True,
        help_text="Known true answers and clump boxes (synthetic galaxies); never shown to volunteers",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.ACTIVE)
    priority = models.FloatField(default=0.0)
    difficulty = models.FloatField(
        default=0.0, db_default=0.0, help_text="How unsettled the aggregator's posterior still is after enough votes (0-1); the "
                               "hardest galaxies go preferentially to skilled volunteers")
    shuffle = models.FloatField(default=_shuffle_key, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "external_id"], name="subject_unique_external_id"),
            models.CheckConstraint(condition=Q(ra__isnull=True) | Q(ra__gte=0, ra__lt=360), name="subject_ra_range"),
            models.CheckConstraint(condition=Q(dec__isnull=True) | Q(dec__gte=-90, dec__lte=90), name="subject_dec_range"),
            models.CheckConstraint(condition=Q(state__in=["active", "retired"]), name="subject_state_valid"),
        ]
        indexes = [
            # The selector's walk: active subjects of a project by priority, then the random tie-break.
            models.Index(
                fields=["project", "-priority", "shuffle"], name="subject_queue_idx", condition=Q(state="active")
            ),
            # Hard galaxies for skilled volunteers (the index path; Redis keeps the top of it).
            models.Index(fields=["project", "-difficulty", "shuffle"], name="subject_hard_idx",
                         condition=Q(state="active", difficulty__gt=0)),
            models.Index(fields=["subject_set"], name="subject_set_idx"),
        ]

    def __str__(self):
        return self.external_id

    @property
    def is_retired(self) -> bool:
        return self.state == self.State.RETIRED


class Retirement(models.Model):
    """Why and when a subject left the queue. One row per subject: a subject retires at most once."""

    class Reason(models.TextChoices):
        DETECTED = "detected", "Posterior above the detection threshold"
        REJECTED = "rejected", "Posterior below the rejection threshold"
        CONSENSUS = "consensus", "Every reached question decided"
        VOTE_CAP = "vote_cap", "Vote cap reached"
        MACHINE = "machine", "Decided with the machine classifier's vote"
        EXPERT_QUEUE = "expert_queue", "Undecided: waiting for an expert"
        EXPERT = "expert", "Decided by an expert"
        MANUAL = "manual", "Retired by a scientist"

    subject = models.OneToOneField(Subject, on_delete=models.CASCADE, related_name="retirement", primary_key=True)
    reason = models.CharField(max_length=16, choices=Reason.choices)
    retired_at = models.DateTimeField(auto_now_add=True)
    n_classifications = models.PositiveIntegerField(default=0)
    label = models.JSONField(default=dict, blank=True, help_text="Consensus answers at retirement")

    def __str__(self):
        return f"{self.subject} ({self.reason})"


def validate_boxes(boxes) -> None:
    """Boxes are ``[{"x", "y", "width", "height"}]`` in image pixels with positive size."""
    if not isinstance(boxes, list):
        raise ValidationError({"boxes": "a list of {x, y, width, height} objects"})
    for i, box in enumerate(boxes):
        try:
            x, y, w, h = (float(box[k]) for k in ("x", "y", "width", "height"))
        except (KeyError, TypeError, ValueError):
            raise ValidationError({"boxes": f"boxes[{i}] needs numeric x, y, width and height"}) from None
        if w <= 0 or h <= 0 or x < 0 or y < 0:
            raise ValidationError({"boxes": f"boxes[{i}] must have x, y >= 0 and positive width and height"})


class GoldStandard(models.Model):
    """Expert answers (a path through the tree) and clump boxes for a subject, used to learn volunteer
    skill and to give volunteers feedback ("experts said: barred spiral")."""

    subject = models.OneToOneField(Subject, on_delete=models.CASCADE, related_name="gold")
    answers = models.JSONField(default=list, help_text='[{"question": ..., "answer": ...}, ...] along the tree')
    boxes = models.JSONField(default=list, blank=True, help_text="Clump boxes in image pixels")
    feedback = models.CharField(max_length=200, blank=True, help_text='Shown after classifying, e.g. "barred spiral"')
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    def clean(self):
        if not isinstance(self.answers, list) or not self.answers:
            raise ValidationError({"answers": "a non-empty list of {question, answer} objects"})
        validate_boxes(self.boxes)

    def answer_for(self, question: str) -> str | None:
        for step in self.answers:
            if step.get("question") == question:
                return step.get("answer")
        return None

    def __str__(self):
        return f"gold: {self.subject}"
