"""Volunteers and their classifications: answers along the tree and clump boxes in image pixels."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class Volunteer(models.Model):
    """A registered user or an anonymous browser session. An anonymous volunteer who registers keeps
    the same row (``user`` is filled in), so their history follows them. ``accuracy`` and ``n_gold``
    summarise their skill for the selector (skilled volunteers get a share of the hardest galaxies);
    the aggregator keeps them up to date from the per-question ``learning.VolunteerSkill`` rows."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="volunteer"
    )
    session_key = models.CharField(max_length=64, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_active_at = models.DateTimeField(null=True, blank=True)
    accuracy = models.FloatField(
        null=True, blank=True, help_text="The aggregator's estimate of the chance this volunteer answers the tree's "
                                         "first question right (mean of their confusion matrix's diagonal)")
    n_gold = models.PositiveIntegerField(default=0, db_default=0, help_text="Gold-standard galaxies behind that estimate")

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False) | Q(session_key__isnull=False), name="volunteer_has_identity"
            ),
        ]

    def __str__(self):
        if self.user_id:
            return self.user.get_username()
        return f"anonymous-{self.pk}"

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None


class Classification(models.Model):
    """One volunteer's answers for one subject. Never deleted: volunteers and subjects are protected.

    ``key`` is the client's idempotency key: a retried submission with the same key is the same
    classification. ``answers`` is the path through the tree, ``[{"question": q, "answer": a}, ...]``.
    ``aggregated_at`` is set once the aggregator has counted it; the sweeper finds the rest.
    """

    volunteer = models.ForeignKey(Volunteer, on_delete=models.PROTECT, related_name="classifications")
    subject = models.ForeignKey("galaxies.Subject", on_delete=models.PROTECT, related_name="classifications")
    workflow_version = models.ForeignKey(
        "workflows.WorkflowVersion", on_delete=models.PROTECT, related_name="classifications"
    )
    key = models.CharField(max_length=64)
    answers = models.JSONField(default=list)
    no_clumps = models.BooleanField(
        default=False, help_text='The volunteer answered "no clumps" explicitly (rather than skipping the task)'
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    aggregated_at = models.DateTimeField(null=True, blank=True)
    client = models.JSONField(default=dict, blank=True, help_text="User agent, screen size")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["volunteer", "key"], name="classification_unique_key"),
            models.UniqueConstraint(fields=["volunteer", "subject"], name="classification_once_per_subject"),
            models.CheckConstraint(
                condition=Q(started_at__isnull=True) | Q(finished_at__isnull=True) | Q(finished_at__gte=F("started_at")),
                name="classification_time_order",
            ),
        ]
        indexes = [
            models.Index(fields=["subject", "created_at"], name="classification_subject_idx"),
            models.Index(fields=["created_at"], name="classification_unaggregated", condition=Q(aggregated_at__isnull=True)),
        ]

    def __str__(self):
        return f"classification {self.pk} of {self.subject_id} by {self.volunteer_id}"


class ClumpBox(models.Model):
    """A rectangle a volunteer drew around a clump, in the subject image's pixel coordinates
    (x, y the top-left corner), whatever the size of the volunteer's screen."""

    classification = models.ForeignKey(Classification, on_delete=models.CASCADE, related_name="boxes")
    x = models.FloatField()
    y = models.FloatField()
    width = models.FloatField()
    height = models.FloatField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(x__gte=0) & Q(y__gte=0), name="clumpbox_inside"),
            models.CheckConstraint(condition=Q(width__gt=0) & Q(height__gt=0), name="clumpbox_positive_size"),
        ]

    def as_dict(self) -> dict:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


class ServedSubject(models.Model):
    """A subject the selector handed to a volunteer, with the workflow version it was shown with.

    The submission checks it ("was this volunteer served this subject, with this tree?") with one
    lookup on the unique (volunteer, subject) index, and the selector's index path excludes recently
    served subjects with the same index, so a volunteer's prefetched galaxies are never handed out twice.
    A subject served but never classified may be served again after ``SERVED_TTL`` (a closed tab).
    """

    volunteer = models.ForeignKey(Volunteer, on_delete=models.CASCADE, related_name="served")
    subject = models.ForeignKey("galaxies.Subject", on_delete=models.CASCADE, related_name="+")
    workflow_version = models.ForeignKey("workflows.WorkflowVersion", on_delete=models.CASCADE, related_name="+")
    served_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["volunteer", "subject"], name="servedsubject_unique"),
        ]

    def __str__(self):
        return f"subject {self.subject_id} served to {self.volunteer_id}"
