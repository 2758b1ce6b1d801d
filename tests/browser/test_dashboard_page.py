"""A project scientist in chromium: logs in, watches a running job's progress bar move as the worker
reports progress (the page polls jobs.json), sees it finish, and labels a galaxy from the expert queue
with the form that walks the decision tree. Screenshots go to test-artifacts/screenshots/."""
from __future__ import annotations

import pytest
from django.utils import timezone

from zooplatform.galaxies.models import GoldStandard, Retirement
from zooplatform.galaxies.services import project_bootstrap, subject_retire
from zooplatform.learning.models import Job

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password-9"


@pytest.fixture
def scientist(django_user_model):
    return django_user_model.objects.create_user(username="scientist", password=PASSWORD, is_staff=True)


def log_in(browser, site, next_path):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(site.url + next_path)
    assert "/accounts/login/" in page.url  # staff only: anonymous visitors are sent to log in
    page.fill("#id_username", "scientist")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_path}")
    return ctx, page, errors


def test_running_job_progress_bar_updates_live(browser, site, scientist, screenshots):
    project = project_bootstrap()
    job = Job.objects.create(project=project, kind=Job.Kind.RETRAIN_MORPHOLOGY, status=Job.Status.RUNNING,
                             exclusive_key=f"retrain:{project.pk}", progress=0.2, message="epoch 1: val_loss 2.310",
                             started_at=timezone.now(), heartbeat_at=timezone.now())
    ctx, page, errors = log_in(browser, site, f"/dashboard/{project.slug}/")
    row = f'#jobs tr[data-job-id="{job.pk}"]'
    assert page.get_attribute(f"{row} .meter", "aria-valuenow") == "20"

    # The worker reports progress; the page polls and moves the bar without a reload.
    Job.objects.filter(pk=job.pk).update(progress=0.65, message="epoch 6: val_loss 1.874", heartbeat_at=timezone.now())
    page.wait_for_function(f"document.querySelector('{row} .meter').getAttribute('aria-valuenow') === '65'",
                           timeout=10_000)
    assert page.text_content(f"{row} .job-message") == "epoch 6: val_loss 1.874"
    assert page.text_content(f"{row} .meter-text") == "65%"
    page.wait_for_timeout(700)  # let the bar's width transition finish before the picture
    width = page.evaluate(f"document.querySelector('{row} .meter-bar').style.width")
    assert width == "65%"
    page.screenshot(path=str(screenshots / "dashboard-job-progress.png"), full_page=True)

    # It finishes: status and bar follow, and polling slows down to the idle rate.
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED, progress=1.0, finished_at=timezone.now(),
                                         message="val_loss 1.802 (promoted)")
    page.wait_for_function(f"document.querySelector('{row}').dataset.status === 'succeeded'", timeout=10_000)
    assert page.text_content(f"{row} .badge") == "Succeeded"
    assert page.text_content(f"{row} .meter-text") == "100%"
    assert errors == []
    ctx.close()


def test_expert_form_walks_the_tree(browser, site, scientist, screenshots, real_galaxies):
    subject = real_galaxies.subjects.order_by("id").first()
    subject_retire(subject=subject, reason=Retirement.Reason.EXPERT_QUEUE, n_classifications=12)
    ctx, page, errors = log_in(browser, site, f"/dashboard/{real_galaxies.slug}/subjects/{subject.pk}/expert/")
    visible = "Array.from(document.querySelectorAll('fieldset[data-question]')).filter(f => f.offsetParent)" \
              ".map(f => f.dataset.question)"
    assert page.evaluate(visible) == ["smooth-or-featured"]
    page.check('input[name="q:smooth-or-featured"][value="featured-or-disk"]')
    assert page.evaluate(visible) == ["smooth-or-featured", "disk-edge-on"]
    page.check('input[name="q:disk-edge-on"][value="yes"]')
    page.check('input[name="q:edge-on-bulge"][value="rounded"]')
    # Changing an answer higher up re-routes the walk: the edge-on branch disappears.
    page.check('input[name="q:smooth-or-featured"][value="smooth"]')
    assert page.evaluate(visible) == ["smooth-or-featured", "how-rounded"]
    page.check('input[name="q:how-rounded"][value="in-between"]')
    page.check('input[name="q:merging"][value="none"]')
    assert page.evaluate(visible) == ["smooth-or-featured", "how-rounded", "merging"]
    page.screenshot(path=str(screenshots / "dashboard-expert-form.png"), full_page=True)
    page.click("text=Save expert label")
    page.wait_for_url("**/subjects/#expert-queue")
    assert "expert label recorded" in page.text_content(".dash-messages")
    assert GoldStandard.objects.get(subject=subject).answers == [
        {"question": "smooth-or-featured", "answer": "smooth"}, {"question": "how-rounded", "answer": "in-between"},
        {"question": "merging", "answer": "none"}]
    assert Retirement.objects.get(subject=subject).reason == Retirement.Reason.EXPERT
    assert errors == []
    ctx.close()
