"""The volunteer's pages: home, the classify page, their profile, and registering."""
from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.csrf import ensure_csrf_cookie

from zooplatform.core.exceptions import ApplicationError
from zooplatform.galaxies.models import Project, Subject

from .identity import request_volunteer_id
from .models import Classification, Volunteer
from .selectors import classifications_for_volunteer, serving_context_get, volunteer_stats


def home(request):
    project = Project.objects.order_by("id").first()
    stats = {
        "active": Subject.objects.filter(state=Subject.State.ACTIVE).count(),
        "retired": Subject.objects.filter(state=Subject.State.RETIRED).count(),
        "classifications": Classification.objects.count(),
        "volunteers": Volunteer.objects.count(),
    }
    return render(request, "classify/home.html", {"project": project, "stats": stats})


@ensure_csrf_cookie
def classify(request, project_slug: str | None = None):
    try:
        context = serving_context_get(project_slug=project_slug)
    except ApplicationError as exc:
        raise Http404(exc.message) from None
    project = Project.objects.get(pk=context.project_id)
    return render(request, "classify/classify.html", {"project": project})


def profile(request):
    volunteer_id = request_volunteer_id(request, create=False)
    recent = list(classifications_for_volunteer(volunteer_id=volunteer_id)[:24])
    return render(request, "classify/profile.html", {
        "stats": volunteer_stats(volunteer_id=volunteer_id), "recent": recent, "volunteer_id": volunteer_id,
    })


def register(request):
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = ""
    if request.user.is_authenticated:
        return redirect(next_url or "profile")
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        # Logging in fires user_logged_in, which attaches this browser's anonymous volunteer (and
        # everything it classified) to the new account.
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect(next_url or reverse("profile"))
    return render(request, "registration/register.html", {"form": form, "next": next_url})
