"""Services of the learning loop: aggregation (online and batch), retraining, scoring, jobs."""
from .aggregate import (aggregation_catch_up, aggregation_drain, aggregation_sweep, classification_aggregate,
                        learning_settings_get, tree_aggregator_build)
from .jobs import JobBusy, job_enqueue, job_finish, job_progress, job_running, job_start
from .scoring import detector_score, machine_evidence_apply, model_score, subject_priorities_update
from .training import NotEnoughLabels, detector_retrain, model_promote, morphology_labels, morphology_retrain, retrain_due

__all__ = [
    "aggregation_catch_up", "aggregation_drain", "aggregation_sweep", "classification_aggregate", "learning_settings_get",
    "tree_aggregator_build", "JobBusy", "job_enqueue", "job_finish", "job_progress", "job_running", "job_start",
    "detector_score", "machine_evidence_apply", "model_score", "subject_priorities_update", "NotEnoughLabels", "detector_retrain",
    "model_promote", "morphology_labels", "morphology_retrain", "retrain_due",
]
