from django.contrib import admin

from .models import GoldStandard, Project, Retirement, Subject, SubjectSet


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "created_at")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(SubjectSet)
class SubjectSetAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "created_at")
    list_filter = ("project",)


@admin.register(Subject)
class SubjectAdmin(admin.ModelAdmin):
    list_display = ("external_id", "project", "subject_set", "survey", "state", "priority", "difficulty", "width", "height")
    list_filter = ("project", "state", "survey", "subject_set")
    search_fields = ("external_id",)
    readonly_fields = ("width", "height", "shuffle", "difficulty", "created_at")
    list_select_related = ("project", "subject_set")


@admin.register(Retirement)
class RetirementAdmin(admin.ModelAdmin):
    list_display = ("subject", "reason", "retired_at", "n_classifications")
    list_filter = ("reason",)
    raw_id_fields = ("subject",)


@admin.register(GoldStandard)
class GoldStandardAdmin(admin.ModelAdmin):
    list_display = ("subject", "feedback", "created_by", "created_at")
    raw_id_fields = ("subject",)
    search_fields = ("subject__external_id", "feedback")
