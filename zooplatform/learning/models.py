"""The learning loop's state: trained models and their predictions, and the aggregator's posteriors
per subject and question, skills per volunteer, and consensus clumps."""
from __future__ import annotations

from django.db import models
from django.db.models import Q


class ModelVersion(models.Model):
    """A trained model: morphology classifier or clump detector.

    ``label_snapshot`` says which labels it was trained on (a hash of the training table, the
    highest classification id counted, counts), so any model can be traced back to its data.
    At most one model per project and kind is promoted; promotion swaps it atomically.
    """

    class Kind(models.TextChoices):
        MORPHOLOGY = "morphology", "Morphology classifier"
        DETECTOR = "detector", "Clump detector"

    class Status(models.TextChoices):
        TRAINING = "training", "Training"
        READY = "ready", "Ready"
        REJECTED = "rejected", "Did not beat the promoted model"
        FAILED = "failed", "Failed"

    project = models.ForeignKey("galaxies.Project", on_delete=models.CASCADE, related_name="model_versions")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    architecture = models.CharField(max_length=64)
    checkpoint = models.FileField(upload_to="checkpoints/", blank=True)
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    label_snapshot = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.TRAINING)
    promoted = models.BooleanField(default=False)
    promoted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "kind"], condition=Q(promoted=True), name="modelversion_one_promoted"
            ),
            models.CheckConstraint(
                condition=Q(promoted=False) | Q(status="ready"), name="modelversion_promoted_is_ready"
            ),
        ]
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.kind} #{self.pk} ({self.architecture})"


class Prediction(models.Model):
    """One model's view of one subject: predicted vote fractions per ``<question>_<answer>`` (mean over
    MC-dropout passes), the acquisition score, an anomaly score and the embedding for similarity."""

    subject = models.ForeignKey("galaxies.Subject", on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="predictions")
    fractions = models.JSONField(default=dict)
    acquisition = models.FloatField(null=True, blank=True)
    anomaly = models.FloatField(null=True, blank=True)
    embedding = models.BinaryField(null=True, blank=True, help_text="float16 vector")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subject", "model_version"], name="prediction_unique"),
        ]
        indexes = [models.Index(fields=["model_version", "-acquisition"], name="prediction_acq_idx")]


class SubjectPosterior(models.Model):
    """The aggregator's belief about one question of one subject.

    ``probabilities`` maps answer name to posterior probability; ``p_reached`` is the probability that
    a volunteer reaches this question given the answers above it in the tree; ``state`` holds whatever
    the aggregator needs for its O(1) online update (e.g. log-likelihood sums).
    """

    subject = models.ForeignKey("galaxies.Subject", on_delete=models.CASCADE, related_name="posteriors")
    question = models.CharField(max_length=100)
    probabilities = models.JSONField(default=dict)
    n_votes = models.PositiveIntegerField(default=0)
    p_reached = models.FloatField(default=1.0)
    state = models.JSONField(default=dict, blank=True)
    decided = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subject", "question"], name="posterior_unique"),
            models.CheckConstraint(condition=Q(p_reached__gte=0) & Q(p_reached__lte=1), name="posterior_p_reached"),
        ]


class VolunteerSkill(models.Model):
    """A volunteer's confusion matrix for one question (``confusion[true][given]`` pseudo-counts,
    Dirichlet prior included), learned from gold-standard and retired subjects. The question
    ``clumps`` holds box-drawing skill (miss and false-mark Beta parameters)."""

    volunteer = models.ForeignKey("classify.Volunteer", on_delete=models.CASCADE, related_name="skills")
    question = models.CharField(max_length=100)
    confusion = models.JSONField(default=dict)
    n_gold = models.PositiveIntegerField(default=0)
    n_votes = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["volunteer", "question"], name="skill_unique")]


class MachineSkill(models.Model):
    """The model treated as one more classifier: its confusion matrix per question, estimated on gold
    and retired subjects, so a miscalibrated model is discounted."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="skills")
    question = models.CharField(max_length=100)
    confusion = models.JSONField(default=dict)
    n_subjects = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "question"], name="machineskill_unique")]


class ClumpCluster(models.Model):
    """A consensus clump on a subject: the cluster of volunteers' boxes, its consensus box (pixels),
    spread, the number of marks and the probability that the clump is real."""

    subject = models.ForeignKey("galaxies.Subject", on_delete=models.CASCADE, related_name="clumps")
    x = models.FloatField()
    y = models.FloatField()
    width = models.FloatField()
    height = models.FloatField()
    probability = models.FloatField()
    n_marks = models.PositiveIntegerField()
    spread = models.FloatField(default=0.0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(width__gt=0) & Q(height__gt=0), name="clumpcluster_positive_size"),
            models.CheckConstraint(
                condition=Q(probability__gte=0) & Q(probability__lte=1), name="clumpcluster_probability"
            ),
        ]


class Job(models.Model):
    """A long-running piece of the learning loop (sweep, retraining, scoring), with progress the
    dashboard shows.

    ``exclusive_key`` makes the database itself refuse a second active job of the same kind of work:
    at most one queued-or-running job per key (e.g. ``retrain:<project>``, so never two retrainings at
    once, whatever the number of workers and machines). A job whose worker died stops heartbeating
    (``heartbeat_at``); the next job of that key finds it stale and takes over.
    """

    class Kind(models.TextChoices):
        SWEEP = "sweep", "Batch re-aggregation"
        RETRAIN_MORPHOLOGY = "retrain_morphology", "Retrain the morphology model"
        RETRAIN_DETECTOR = "retrain_detector", "Retrain the clump detector"
        SCORE = "score", "Score unretired galaxies"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        SKIPPED = "skipped", "Skipped"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey("galaxies.Project", on_delete=models.CASCADE, related_name="jobs")
    kind = models.CharField(max_length=32, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    exclusive_key = models.CharField(max_length=100, null=True, blank=True)
    progress = models.FloatField(default=0.0)
    message = models.CharField(max_length=500, blank=True)
    task_id = models.CharField(max_length=64, blank=True)
    result = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["exclusive_key"], condition=Q(status__in=["queued", "running"]), name="job_one_active_per_key"
            ),
            models.CheckConstraint(condition=Q(progress__gte=0) & Q(progress__lte=1), name="job_progress_range"),
        ]
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.get_kind_display()} #{self.pk} ({self.status})"


def _default_swap_params() -> dict:
    # SWAP on the tree's yes/no questions (edge-on disk, spiral arms). GZX's prior 0.3 and rejection
    # 0.004 were tuned for its one rare class (featured galaxies, Beck et al. 2018); here neither answer
    # is rare, so the prior is flat and the thresholds symmetric. GZX starts volunteers at skill 0.5,
    # which makes an untrained volunteer's vote carry no information at all until gold subjects have
    # trained them; the platform starts them at 0.7, Dawid-Skene's initial skill for the other
    # questions, and lets gold move them from there.
    return {"prior": 0.5, "detect": 0.99, "reject": 0.01, "initial_pl": 0.7, "initial_pd": 0.7}


def _default_dawid_skene_params() -> dict:
    return {}


class LearningSettings(models.Model):
    """How a project's learning loop runs; scientists steer it from the dashboard.

    Aggregation: SWAP for yes/no questions and Dawid-Skene for the others (GZX style); a galaxy
    retires when every question it reaches with probability >= ``reach_threshold`` is decided, or at
    ``vote_cap`` classifications, or goes to the expert queue at ``expert_after``; no threshold decision
    before ``min_votes`` human votes, except that with ``machine_retires`` the promoted model's calibrated
    evidence may retire a galaxy it decides on its own (GZX's machine retirements). Training: the
    classifier preset and architecture, retraining after ``retrain_after_retirements`` new retirements
    (and at least every ``retrain_interval_hours``); scoring with ``mc_samples`` MC-dropout passes and
    the ``acquisition`` function (aimed at ``acquisition_questions`` when given), whose scores become
    subject priorities. Matching: galaxies still undecided after ``hard_after_votes`` classifications
    are hard; a volunteer whose estimated accuracy reaches ``skilled_accuracy`` on at least
    ``skilled_min_gold`` gold galaxies gets ``hard_share`` of their galaxies from the hardest first.
    """

    project = models.OneToOneField("galaxies.Project", on_delete=models.CASCADE, related_name="learning_settings")
    binary_aggregator = models.CharField(max_length=32, default="swap")
    binary_params = models.JSONField(default=_default_swap_params, blank=True)
    multi_aggregator = models.CharField(max_length=32, default="dawid_skene")
    multi_params = models.JSONField(default=_default_dawid_skene_params, blank=True)
    reach_threshold = models.FloatField(default=0.5)
    min_votes = models.PositiveIntegerField(default=3)
    vote_cap = models.PositiveIntegerField(null=True, blank=True, default=40)
    expert_after = models.PositiveIntegerField(null=True, blank=True, default=None)
    machine_enabled = models.BooleanField(default=True, help_text="Treat the promoted model as one more classifier")
    machine_retires = models.BooleanField(
        default=True, help_text="The model's evidence may retire a galaxy on its own, before min_votes human votes "
                                "(Galaxy Zoo Express); otherwise it only adds to the volunteers' votes")
    train_preset = models.CharField(max_length=16, default="small")
    train_overrides = models.JSONField(default=dict, blank=True, help_text="TrainConfig fields, e.g. {\"epochs\": 20}")
    detector_enabled = models.BooleanField(default=True)
    detector_overrides = models.JSONField(default=dict, blank=True, help_text="DetectorConfig fields")
    retrain_after_retirements = models.PositiveIntegerField(default=50)
    retrain_interval_hours = models.FloatField(default=24.0)
    min_training_subjects = models.PositiveIntegerField(default=40)
    acquisition = models.CharField(max_length=32, default="bald")
    acquisition_questions = models.JSONField(
        default=list, blank=True,
        help_text="Question names to aim the acquisition at, as Walmsley et al. (2020) aimed BALD at 'smooth' and "
                  "'bar' (empty: the whole tree, reach-weighted)")
    mc_samples = models.PositiveIntegerField(default=5)
    hard_after_votes = models.PositiveIntegerField(
        default=5, help_text="A galaxy still undecided after this many classifications counts as hard")
    hard_share = models.FloatField(
        default=0.5, help_text="Share of a skilled volunteer's galaxies (gold aside) taken from the hardest "
                               "first; 0 turns matching off")
    skilled_accuracy = models.FloatField(
        default=0.8, help_text="A volunteer is skilled from this estimated accuracy on the first question ...")
    skilled_min_gold = models.PositiveIntegerField(default=10, help_text="... measured on at least this many gold galaxies")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "learning settings"
        constraints = [
            models.CheckConstraint(condition=Q(reach_threshold__gt=0) & Q(reach_threshold__lte=1),
                                   name="learning_reach_threshold_range"),
            models.CheckConstraint(condition=Q(mc_samples__gte=1), name="learning_mc_samples_positive"),
            models.CheckConstraint(condition=Q(hard_share__gte=0) & Q(hard_share__lte=1), name="learning_hard_share_range"),
            models.CheckConstraint(condition=Q(skilled_accuracy__gte=0) & Q(skilled_accuracy__lte=1),
                                   name="learning_skilled_accuracy_range"),
        ]

    def __str__(self):
        return f"learning settings of {self.project}"


class AggregationState(models.Model):
    """What the aggregator learned for a whole project, beside the per-subject and per-volunteer rows:
    the clump population terms (``BoxState.prior``: sums over subjects of each subject's terms)
    and when the last batch re-aggregation ran. One row per project.

    Per-subject updates add their change (a delta) to ``box_prior`` at the very end of their
    transaction, under a row lock held only for that last statement, so they do not serialise
    the whole aggregation of every classification on this one row."""

    project = models.OneToOneField("galaxies.Project", on_delete=models.CASCADE, related_name="aggregation_state")
    box_prior = models.JSONField(default=list, blank=True)
    learned = models.JSONField(
        default=dict, blank=True,
        help_text="Per question, what the last sweep's aggregators learned for the whole population "
                  "(e.g. Dawid-Skene class priors); the online path starts new subjects from it")
    swept_at = models.DateTimeField(null=True, blank=True)
    swept_upto = models.BigIntegerField(default=0, help_text="Highest classification id counted by the last sweep")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"aggregation state of {self.project}"
