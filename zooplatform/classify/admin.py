from django.contrib import admin

from .models import Classification, ClumpBox, ServedSubject, Volunteer


@admin.register(Volunteer)
class VolunteerAdmin(admin.ModelAdmin):
    list_display = ("__str__", "user", "created_at", "last_active_at", "accuracy", "n_gold")
    search_fields = ("user__username",)
    raw_id_fields = ("user",)
    readonly_fields = ("accuracy", "n_gold")  # the aggregator's estimate, rewritten after every vote


class ClumpBoxInline(admin.TabularInline):
    model = ClumpBox
    extra = 0


@admin.register(Classification)
class ClassificationAdmin(admin.ModelAdmin):
    list_display = ("id", "subject", "volunteer", "workflow_version", "created_at", "aggregated_at")
    list_filter = ("workflow_version",)
    raw_id_fields = ("subject", "volunteer")
    readonly_fields = ("created_at",)
    inlines = [ClumpBoxInline]


@admin.register(ClumpBox)
class ClumpBoxAdmin(admin.ModelAdmin):
    list_display = ("classification", "x", "y", "width", "height")
    raw_id_fields = ("classification",)


@admin.register(ServedSubject)
class ServedSubjectAdmin(admin.ModelAdmin):
    list_display = ("volunteer", "subject", "workflow_version", "served_at")
    raw_id_fields = ("volunteer", "subject", "workflow_version")
    date_hierarchy = "served_at"
