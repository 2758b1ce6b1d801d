from django.contrib import admin

from .models import Workflow, WorkflowVersion


class WorkflowVersionInline(admin.TabularInline):
    model = WorkflowVersion
    extra = 0
    fields = ("version", "created_at")
    readonly_fields = ("version", "created_at")
    show_change_link = True


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin):
    list_display = ("name", "project", "slug", "active")
    list_filter = ("project", "active")
    inlines = [WorkflowVersionInline]


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin):
    list_display = ("workflow", "version", "created_at")
    list_filter = ("workflow",)
