from django.contrib import admin

from .models import AggregationState, ClumpCluster, Job, LearningSettings, MachineSkill, ModelVersion, Prediction, SubjectPosterior, VolunteerSkill


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "kind", "architecture", "status", "promoted", "created_at")
    list_filter = ("project", "kind", "status", "promoted")


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("subject", "model_version", "acquisition", "anomaly", "created_at")
    raw_id_fields = ("subject",)
    exclude = ("embedding",)


@admin.register(SubjectPosterior)
class SubjectPosteriorAdmin(admin.ModelAdmin):
    list_display = ("subject", "question", "n_votes", "p_reached", "decided", "updated_at")
    list_filter = ("question", "decided")
    raw_id_fields = ("subject",)


@admin.register(VolunteerSkill)
class VolunteerSkillAdmin(admin.ModelAdmin):
    list_display = ("volunteer", "question", "n_gold", "n_votes", "updated_at")
    list_filter = ("question",)
    raw_id_fields = ("volunteer",)


@admin.register(MachineSkill)
class MachineSkillAdmin(admin.ModelAdmin):
    list_display = ("model_version", "question", "n_subjects", "updated_at")


@admin.register(ClumpCluster)
class ClumpClusterAdmin(admin.ModelAdmin):
    list_display = ("subject", "x", "y", "width", "height", "probability", "n_marks")
    raw_id_fields = ("subject",)


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "kind", "status", "progress", "message", "created_at", "finished_at")
    list_filter = ("kind", "status")


@admin.register(LearningSettings)
class LearningSettingsAdmin(admin.ModelAdmin):
    list_display = ("project", "binary_aggregator", "multi_aggregator", "vote_cap", "train_preset", "acquisition")


@admin.register(AggregationState)
class AggregationStateAdmin(admin.ModelAdmin):
    list_display = ("project", "swept_at", "swept_upto", "updated_at")
