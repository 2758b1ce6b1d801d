"""The project scientists' dashboard: staff-only pages that show the project, its volunteers and its
learning loop, and the forms that steer it. Each view reads with one selector or writes with one
service; long work goes to the Celery workers, whose jobs report progress to ``jobs_json``."""
from __future__ import annotations

from functools import wraps

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from zooplatform.core.exceptions import ApplicationError
from zooplatform.learning.models import Job, ModelVersion

from . import selectors, services
from .forms import (CatalogueImportForm, ExpertLabelForm, LearningActionForm, LearningSettingsForm, PriorityForm)


# ------------------------------------------------------------------------------------------- access
def staff_required(view):
    """Staff only. Anonymous visitors go to the login page and come back; a logged-in volunteer without
    staff rights gets 403 (sending them to a login form they have already passed would only confuse)."""
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            if request.path.endswith(".json"):
                return JsonResponse({"detail": "log in as a project scientist"}, status=403)
            return redirect_to_login(request.get_full_path())
        if not request.user.is_staff:
            raise PermissionDenied("The dashboard is for project scientists (staff accounts).")
        return view(request, *args, **kwargs)
    return wrapper


def with_project(view):
    """Resolve the ``slug`` of the URL to the project (404 if there is none)."""
    @wraps(view)
    def wrapper(request, slug, *args, **kwargs):
        try:
            project = selectors.project_get(slug=slug)
        except ApplicationError as exc:
            raise Http404(exc.message) from None
        return view(request, project, *args, **kwargs)
    return staff_required(wrapper)


def _subject(project, pk):
    try:
        return selectors.subject_get(project=project, pk=pk)
    except ApplicationError as exc:
        raise Http404(exc.message) from None


# ------------------------------------------------------------------------------------------- overview
@staff_required
@require_GET
def index(request):
    projects = selectors.projects_list()
    if len(projects) == 1:
        return redirect("dashboard:overview", slug=projects[0].slug)
    return render(request, "dashboard/index.html", {"projects": projects})


CHART = {"width": 720, "height": 230, "left": 40, "right": 8, "top": 12, "bottom": 26}


def _nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 3, 4, 5, 6, 8 x 10^k that is at least ``value`` (a readable top for the y axis)."""
    magnitude = 1
    while True:
        for step in (1, 2, 3, 4, 5, 6, 8):
            if step * magnitude >= value:
                return step * magnitude
        magnitude *= 10


def hour_chart(per_hour: list[selectors.HourCount]) -> dict:
    """Geometry of the classifications-per-hour bar chart, drawn as inline SVG by the template."""
    c = CHART
    plot_w, plot_h = c["width"] - c["left"] - c["right"], c["height"] - c["top"] - c["bottom"]
    peak = max((h.count for h in per_hour), default=0)
    top = _nice_ceiling(max(peak, 1))
    slot = plot_w / max(len(per_hour), 1)
    bars = []
    for i, h in enumerate(per_hour):
        height = plot_h * h.count / top
        bars.append({"x": round(c["left"] + i * slot + slot * 0.12, 2), "width": round(slot * 0.76, 2),
                     "y": round(c["top"] + plot_h - height, 2), "height": round(height, 2), "count": h.count,
                     "start": h.start, "label": h.start.strftime("%H:00") if i % 6 == 0 or i == len(per_hour) - 1 else "",
                     "label_x": round(c["left"] + i * slot + slot / 2, 2)})
    ticks = [{"value": v, "y": round(c["top"] + plot_h - plot_h * v / top, 2)} for v in sorted({0, top // 2, top})]
    return {**c, "bars": bars, "ticks": ticks, "plot_right": c["width"] - c["right"], "baseline": c["top"] + plot_h,
            "plot_h": plot_h,
            "axis_y": c["height"] - 8, "total": sum(h.count for h in per_hour), "peak": peak}


@with_project
@require_GET
def overview(request, project):
    data = selectors.project_overview(project=project)
    return render(request, "dashboard/overview.html", {
        "project": project, "tab": "overview", "o": data, "chart": hour_chart(data.per_hour),
        "promoted": [(m, selectors.key_metrics(m)) for m in data.promoted], "actions": services.LEARNING_ACTIONS,
    })


def job_as_dict(job: Job) -> dict:
    def iso(value):
        return value.isoformat() if value else None

    return {"id": job.pk, "kind": job.kind, "kind_display": job.get_kind_display(), "status": job.status,
            "status_display": job.get_status_display(), "active": job.status in Job.ACTIVE,
            "progress": round(job.progress, 4), "message": job.message, "created_at": iso(job.created_at),
            "started_at": iso(job.started_at), "heartbeat_at": iso(job.heartbeat_at), "finished_at": iso(job.finished_at)}


@with_project
@require_GET
def jobs_json(request, project):
    jobs = selectors.jobs_recent(project=project)
    return JsonResponse({"jobs": [job_as_dict(j) for j in jobs], "active": any(j.status in Job.ACTIVE for j in jobs),
                         "now": timezone.now().isoformat()})


# ------------------------------------------------------------------------------------------- learning
@with_project
def learning(request, project):
    current = selectors.learning_settings_current(project=project)
    tree = selectors.project_tree(project=project)
    form = LearningSettingsForm(request.POST or None, tree=tree, current=current)
    if request.method == "POST":
        if form.is_valid():
            try:
                services.learning_settings_update(
                    project=project, values={k: form.cleaned_data[k] for k in services.SETTINGS_FIELDS})
            except ApplicationError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, "Learning settings saved: the next classification is aggregated with them, "
                                          "and the next sweep re-aggregates every galaxy.")
                return redirect("dashboard:learning", slug=project.slug)
        messages.error(request, "The settings were not saved: see the fields marked below.")
    data = selectors.learning_overview(project=project)
    return render(request, "dashboard/learning.html", {
        "project": project, "tab": "learning", "l": data, "form": form,
        "versions": [(v, selectors.key_metrics(v)) for v in data.versions],
        "actions": services.LEARNING_ACTIONS, "status": ModelVersion.Status,
        "matching": selectors.matching_overview(project=project, settings=current),
    }, status=400 if form.errors else 200)


@with_project
@require_POST
def learning_action(request, project):
    form = LearningActionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown action.")
    else:
        try:
            messages.success(request, services.learning_action_enqueue(
                project=project, action=form.cleaned_data["action"], user=request.user))
        except ApplicationError as exc:
            messages.error(request, exc.message)
    # Back to the page the button was on (the overview or the learning page), never elsewhere.
    back = request.POST.get("next", "")
    return redirect(back if back.startswith(f"/dashboard/{project.slug}/") and "//" not in back
                    else reverse("dashboard:learning", args=[project.slug]))


@with_project
@require_POST
def model_promote(request, project, pk):
    version = ModelVersion.objects.filter(project=project, pk=pk).first()
    if version is None:
        raise Http404(f"no model #{pk} in {project.slug}")
    try:
        messages.success(request, services.model_version_promote(version=version))
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("dashboard:learning", slug=project.slug)


# ------------------------------------------------------------------------------------------- subjects
@with_project
@require_GET
def subjects(request, project):
    return render(request, "dashboard/subjects.html", {
        "project": project, "tab": "subjects", "s": selectors.subjects_overview(project=project)})


@with_project
@require_GET
def subject_detail(request, project, pk):
    try:
        detail = selectors.subject_detail(project=project, pk=pk)
    except ApplicationError as exc:
        raise Http404(exc.message) from None
    return render(request, "dashboard/subject_detail.html", {
        "project": project, "tab": "subjects", "d": detail, "subject": detail.subject,
        "priority_form": PriorityForm(initial={"priority": detail.subject.priority}),
        # Overlay labels in image pixels, so they keep their size relative to the galaxy at any zoom.
        "label_size": round(max(detail.subject.width, detail.subject.height, 24) / 22, 1),
    })


@with_project
@require_POST
def subject_priority(request, project, pk):
    subject = _subject(project, pk)
    form = PriorityForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Priority: " + " ".join(form.errors.get("priority", ["invalid"])))
    else:
        try:
            services.subject_priority_set(subject=subject, priority=form.cleaned_data["priority"])
            messages.success(request, f"{subject.external_id}: priority {form.cleaned_data['priority']:g}; "
                                      "the serving queue is refreshed.")
        except ApplicationError as exc:
            messages.error(request, exc.message)
    return redirect("dashboard:subject", slug=project.slug, pk=subject.pk)


@with_project
@require_POST
def subject_retire(request, project, pk):
    subject = _subject(project, pk)
    try:
        services.subject_retire_manual(subject=subject, user=request.user)
        messages.success(request, f"{subject.external_id} retired by hand.")
    except ApplicationError as exc:
        messages.error(request, exc.message)
    return redirect("dashboard:subject", slug=project.slug, pk=subject.pk)


@with_project
def subject_expert(request, project, pk):
    try:
        detail = selectors.subject_detail(project=project, pk=pk, similar_k=0)
    except ApplicationError as exc:
        raise Http404(exc.message) from None
    subject = detail.subject
    form = ExpertLabelForm(request.POST or None, tree=detail.tree)
    if request.method == "POST" and form.is_valid():
        try:
            services.subject_expert_label(subject=subject, answers=form.cleaned_data["answers"], user=request.user)
        except ApplicationError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, f"{subject.external_id}: expert label recorded as its gold standard.")
            return redirect(reverse("dashboard:subjects", args=[project.slug]) + "#expert-queue")
    votes = {f"{q.name}_{a.name}": a.votes for q in detail.questions for a in q.answers}
    return render(request, "dashboard/expert.html", {
        "project": project, "tab": "subjects", "subject": subject, "form": form, "d": detail,
        "retirement": detail.retirement, "questions": form.questions(votes),
    }, status=400 if form.errors else 200)


# ------------------------------------------------------------------------------------------- catalogue
@with_project
def catalogue(request, project):
    form = CatalogueImportForm(request.POST or None, request.FILES or None,
                               initial={"subject_set": f"Imported {timezone.now():%Y-%m-%d}"})
    row_errors: list[str] = []
    if request.method == "POST" and form.is_valid():
        try:
            report = services.catalogue_import(
                project=project, catalogue=form.cleaned_data["catalogue"], images=form.cleaned_data["images"],
                subject_set_name=form.cleaned_data["subject_set"], survey=form.cleaned_data["survey"])
        except ApplicationError as exc:
            row_errors = exc.errors.get("rows", [])
            for fieldname, reasons in exc.errors.items():
                if fieldname != "rows":
                    for reason in reasons:
                        form.add_error(fieldname if fieldname in form.fields else None, reason)
        else:
            messages.success(request, f"Catalogue imported into “{form.cleaned_data['subject_set']}”: {report}.")
            return redirect("dashboard:catalogue", slug=project.slug)
    return render(request, "dashboard/catalogue.html", {
        "project": project, "tab": "catalogue", "form": form, "row_errors": row_errors,
    }, status=400 if form.errors or row_errors else 200)


@with_project
@require_GET
def catalogue_csv(request, project):
    try:
        lines = selectors.catalogue_export_lines(project=project)
    except ApplicationError as exc:
        messages.error(request, f"Cannot export: {exc.message}")
        return redirect("dashboard:catalogue", slug=project.slug)
    response = StreamingHttpResponse(lines, content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-catalogue-{timezone.now():%Y%m%d-%H%M}.csv"'
    response["Cache-Control"] = "no-store"
    return response
