"""The project scientists' dashboard: staff-only pages, the overview's numbers and live jobs, steering the
learning loop (enqueues, promotion, settings), the expert queue, manual subject actions, the subject
page's overlay and "more galaxies like this one"."""
from __future__ import annotations

import re
from datetime import timedelta
from unittest import mock

import numpy as np
import pytest
from django.utils import timezone

from zooplatform.celery import app as celery_app
from zooplatform.classify.models import Classification
from zooplatform.dashboard import selectors
from zooplatform.galaxies.models import GoldStandard, Retirement, Subject
from zooplatform.galaxies.services import subject_retire
from zooplatform.learning.models import ClumpCluster, Job, LearningSettings, ModelVersion, Prediction, SubjectPosterior
from zooplatform.learning.services import classification_aggregate, learning_settings_get

from .factories import (FEATURED, SMOOTH, ClassificationFactory, GoldStandardFactory, ProjectFactory,
                        SubjectFactory, VolunteerFactory, path)
from .test_classify_selector import clean_classify_state

pytestmark = pytest.mark.django_db



@pytest.fixture(autouse=True)
def send_task():
    clean_classify_state()
    with mock.patch.object(celery_app, "send_task") as sent:
        yield sent
    clean_classify_state()


@pytest.fixture
def project():
    return ProjectFactory()


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user(username="scientist", password="a-long-test-password-9", is_staff=True)
    client.force_login(user)
    return client


def url(project, name=""):
    return f"/dashboard/{project.slug}/{name}"


def subject(project, **kwargs):
    return SubjectFactory(subject_set__project=project, **kwargs)


def promoted_model(project, kind=ModelVersion.Kind.MORPHOLOGY, **kwargs):
    return ModelVersion.objects.create(project=project, kind=kind, architecture="test_convnext_tree", status="ready",
                                       promoted=True, promoted_at=timezone.now(), checkpoint="checkpoints/m.pt", **kwargs)


# ------------------------------------------------------------------------------------------- access
def test_pages_are_for_staff_only(client, django_user_model, project):
    s = subject(project)
    pages = ["", "learning/", "subjects/", f"subjects/{s.pk}/", f"subjects/{s.pk}/expert/", "catalogue/", "catalogue.csv"]
    for page in pages:
        response = client.get(url(project, page))
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/dashboard/"), page
    assert client.get(url(project, "jobs.json")).status_code == 403
    assert client.post(url(project, "learning/action/"), {"action": "sweep"}).status_code == 302

    volunteer = django_user_model.objects.create_user(username="volunteer", password="a-long-test-password-9")
    client.force_login(volunteer)
    for page in pages + ["jobs.json"]:
        assert client.get(url(project, page)).status_code == 403, page

    volunteer.is_staff = True
    volunteer.save()
    for page in pages + ["jobs.json"]:
        assert client.get(url(project, page)).status_code == 200, page
    # One project: the dashboard's root goes straight to it; an unknown project is a 404.
    assert client.get("/dashboard/")["Location"] == url(project)
    assert client.get("/dashboard/no-such-project/").status_code == 404


# ------------------------------------------------------------------------------------------- overview
def test_overview_counts_come_from_the_database(staff, project):
    active = [subject(project) for _ in range(3)]
    retired = [subject(project) for _ in range(4)]
    GoldStandardFactory(subject=active[0])
    volunteers = [VolunteerFactory() for _ in range(4)]
    # Votes: 2 + 3 + 1 + 0 on the retired galaxies (6 in all over 4), 2 on an active one.
    for s, n in zip(retired, (2, 3, 1, 0)):
        for v in volunteers[:n]:
            ClassificationFactory(subject=s, volunteer=v)
    for v in volunteers[:2]:
        ClassificationFactory(subject=active[1], volunteer=v)
    for s, reason in zip(retired, ("consensus", "consensus", "expert_queue", "manual")):
        subject_retire(subject=s, reason=reason)
    # Three classifications are old: outside the last 24 hours, and their volunteer is not "active".
    old = Classification.objects.filter(volunteer=volunteers[2])
    assert old.count() == 1
    old.update(created_at=timezone.now() - timedelta(hours=30))
    Classification.objects.filter(subject=retired[1], volunteer=volunteers[1]).update(
        created_at=timezone.now() - timedelta(hours=3, minutes=5))

    response = staff.get(url(project))
    assert response.status_code == 200
    o = response.context["o"]
    assert (o.n_active, o.n_retired, o.n_gold, o.n_expert_queue) == (3, 4, 1, 1)
    assert o.n_classifications == 8 and o.n_classifications_24h == 7
    assert o.n_volunteers_24h == 2  # volunteers 0 and 1; volunteer 2 voted only 30 hours ago, volunteer 3 never
    assert o.votes_per_retired == pytest.approx(6 / 4)
    assert dict((r, n) for r, _, _, n in o.retired_by_reason) == {
        "detected": 0, "rejected": 0, "consensus": 2, "vote_cap": 0, "machine": 0, "expert_queue": 1, "expert": 0,
        "manual": 1}
    # The hourly chart: 24 buckets ending with the current hour, holding every vote of the window.
    assert len(o.per_hour) == 24 and sum(h.count for h in o.per_hour) == 7
    assert o.per_hour[-1].start <= timezone.now() < o.per_hour[-1].start + timedelta(hours=1)
    three_hours_ago = [h for h in o.per_hour if h.start <= timezone.now() - timedelta(hours=3, minutes=5) < h.start + timedelta(hours=1)]
    assert three_hours_ago[0].count == 1
    html = response.content.decode()
    assert html.count('class="chart-rect"') == 24
    for testid, value in (("n-active", 3), ("n-retired", 4), ("n-gold", 1), ("n-classifications", 8),
                          ("n-classifications-24h", 7), ("n-volunteers-24h", 2), ("votes-per-retired", "1.5"),
                          ("n-expert-queue", 1)):
        assert re.search(rf'data-testid="{testid}">{value}<', html), testid


def test_promoted_models_and_jobs_with_live_progress(staff, project):
    model = promoted_model(project, metrics={"val_loss": 1.234567, "promoted_val_loss": 1.5, "n_train": 80})
    detector = promoted_model(project, kind=ModelVersion.Kind.DETECTOR,
                              metrics={"completeness": 0.8, "purity": 0.75, "f1": 0.774})
    job = Job.objects.create(project=project, kind=Job.Kind.RETRAIN_MORPHOLOGY, status=Job.Status.RUNNING,
                             exclusive_key=f"retrain:{project.pk}", progress=0.4, message="epoch 4: val_loss 1.3",
                             started_at=timezone.now(), heartbeat_at=timezone.now())
    Job.objects.create(project=project, kind=Job.Kind.SWEEP, status=Job.Status.SUCCEEDED, progress=1.0,
                       finished_at=timezone.now())
    html = staff.get(url(project)).content.decode()
    assert f"#{model.pk}" in html and f"#{detector.pk}" in html
    assert "1.235" in html and "0.774" in html  # key metrics, four significant figures
    assert f'data-job-id="{job.pk}" data-status="running"' in html
    assert 'aria-valuenow="40"' in html and "epoch 4: val_loss 1.3" in html

    data = staff.get(url(project, "jobs.json")).json()
    assert data["active"] is True
    first = data["jobs"][0]
    assert (first["id"], first["status"], first["progress"], first["kind"]) == (job.pk, "running", 0.4, "retrain_morphology")
    Job.objects.filter(pk=job.pk).update(progress=0.9, message="evaluating")
    first = staff.get(url(project, "jobs.json")).json()["jobs"][0]
    assert (first["progress"], first["message"]) == (0.9, "evaluating")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED, progress=1.0)
    assert staff.get(url(project, "jobs.json")).json()["active"] is False


# ------------------------------------------------------------------------------------------- steering
def test_learning_buttons_enqueue_the_tasks(staff, project, send_task, django_capture_on_commit_callbacks):
    def press(action):
        with django_capture_on_commit_callbacks(execute=True):
            response = staff.post(url(project, "learning/action/"), {"action": action}, follow=True)
        return [str(m) for m in response.context["messages"]]

    def finish_last_job():
        Job.objects.filter(status__in=Job.ACTIVE).update(status=Job.Status.SUCCEEDED, finished_at=timezone.now())

    assert "queued" in press("retrain_morphology")[0]
    queued = Job.objects.get(project=project, kind=Job.Kind.RETRAIN_MORPHOLOGY)
    assert queued.status == Job.Status.QUEUED  # shown under Jobs before any worker picks it up
    assert send_task.call_args == mock.call("learning.retrain", args=[project.pk, "morphology", mock.ANY],
                                            kwargs={"job_id": queued.pk})
    # Both retrainings share one key: the detector waits until the queued morphology job is done.
    assert "already queued" in press("retrain_detector")[0]
    finish_last_job()
    press("retrain_detector")
    assert send_task.call_args == mock.call("learning.retrain", args=[project.pk, "detector", mock.ANY],
                                            kwargs={"job_id": mock.ANY})
    press("sweep")
    assert send_task.call_args == mock.call("learning.aggregation_sweep", args=[project.pk], kwargs={"job_id": mock.ANY})
    assert send_task.call_count == 3

    # Re-scoring needs a promoted morphology model.
    assert "no promoted morphology model" in press("score")[0]
    assert send_task.call_count == 3
    model = promoted_model(project)
    press("score")
    assert send_task.call_args == mock.call("learning.score", args=[model.pk], kwargs={"job_id": mock.ANY})
    finish_last_job()

    # A live retraining holds the key both retrainings share: the scientist is told, nothing is queued.
    job = Job.objects.create(project=project, kind=Job.Kind.RETRAIN_DETECTOR, status=Job.Status.RUNNING,
                             exclusive_key=f"retrain:{project.pk}", progress=0.25, heartbeat_at=timezone.now())
    assert "already running" in press("retrain_morphology")[0]
    assert send_task.call_count == 4
    # A job that stopped heartbeating (its worker died) does not block: it is taken over.
    Job.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=3))
    assert "queued" in press("retrain_morphology")[0]
    assert send_task.call_count == 5
    assert Job.objects.get(pk=job.pk).status == Job.Status.FAILED
    assert "Unknown action" in press("drop_tables")[0]


def test_promote_a_ready_model_then_rescore(staff, project, send_task, django_capture_on_commit_callbacks):
    old = promoted_model(project)
    new = ModelVersion.objects.create(project=project, kind="morphology", architecture="a", status="ready",
                                      checkpoint="checkpoints/new.pt")
    rejected = ModelVersion.objects.create(project=project, kind="morphology", architecture="a", status="rejected",
                                           checkpoint="checkpoints/rej.pt",
                                           metrics={"val_fraction_rmse": 0.2274, "baseline_fraction_rmse": 0.1820})
    html = staff.get(url(project, "learning/")).content.decode()
    # A model no better than the constant answer shows both numbers beside its status.
    assert "<dt>baseline_fraction_rmse</dt><dd>0.182</dd>" in html and "<dd>0.2274</dd>" in html
    assert f"/models/{new.pk}/promote/" in html
    assert f"/models/{old.pk}/promote/" not in html and f"/models/{rejected.pk}/promote/" not in html

    with django_capture_on_commit_callbacks(execute=True):
        staff.post(url(project, f"models/{new.pk}/promote/"))
    old.refresh_from_db(), new.refresh_from_db()
    assert new.promoted and not old.promoted
    assert send_task.call_args == mock.call("learning.score", args=[new.pk], kwargs={"job_id": mock.ANY})

    response = staff.post(url(project, f"models/{rejected.pk}/promote/"), follow=True)
    assert "only a ready model" in str(list(response.context["messages"])[-1])
    assert not ModelVersion.objects.get(pk=rejected.pk).promoted
    assert ModelVersion.objects.filter(project=project, promoted=True).get() == new
    assert staff.post(url(project, "models/999999/promote/")).status_code == 404


def settings_post(project, **changes):
    current = learning_settings_get(project_id=project.pk)
    from zooplatform.dashboard.forms import LearningSettingsForm
    from zooplatform.dashboard.selectors import project_tree

    form = LearningSettingsForm(tree=project_tree(project=project), current=current)
    data = {}
    for name, field in form.fields.items():
        value = form.initial.get(name)
        data[name] = field.prepare_value(value)       # as the page shows it: JSON and question lists as text
    data.update(changes)
    return {k: ("" if v is None else v) for k, v in data.items() if v is not False}


def test_settings_form_saves_valid_knobs(staff, project):
    response = staff.post(url(project, "learning/"), settings_post(
        project, reach_threshold="0.6", vote_cap="30", expert_after="20", binary_params='{"prior": 0.4, "detect": 0.98}',
        multi_aggregator="vote_fraction", multi_params='{"budget": 30}', machine_enabled=False,
        hard_share="0.3", skilled_accuracy="0.85", skilled_min_gold="20", hard_after_votes="8"))
    assert response.status_code == 302
    s = LearningSettings.objects.get(project=project)
    assert (s.hard_share, s.skilled_accuracy, s.skilled_min_gold, s.hard_after_votes) == (0.3, 0.85, 20, 8)
    assert (s.reach_threshold, s.vote_cap, s.expert_after, s.machine_enabled) == (0.6, 30, 20, False)
    assert s.binary_params == {"prior": 0.4, "detect": 0.98}
    assert (s.multi_aggregator, s.multi_params) == ("vote_fraction", {"budget": 30})


def test_settings_form_aims_acquisition_at_questions(staff, project):
    response = staff.post(url(project, "learning/"), settings_post(
        project, acquisition_questions="bar,  has-spiral-arms bar"))
    assert response.status_code == 302
    assert LearningSettings.objects.get(project=project).acquisition_questions == ["bar", "has-spiral-arms"]
    page = staff.get(url(project, "learning/")).content.decode()
    assert 'value="bar, has-spiral-arms"' in page
    staff.post(url(project, "learning/"), settings_post(project, acquisition_questions=""))
    assert LearningSettings.objects.get(project=project).acquisition_questions == []


@pytest.mark.parametrize("changes, field, reason", [
    ({"binary_aggregator": "nope"}, "binary_aggregator", "known: dawid_skene, majority, swap, vote_fraction"),
    ({"binary_params": '{"prior": 0.5,}'}, "binary_params", "Not valid JSON"),
    ({"binary_params": "[1, 2]"}, "binary_params", "Must be a JSON object"),
    ({"binary_params": '{"priors": 0.5}'}, "binary_params", "swap has no parameter priors; it takes prior, detect"),
    ({"binary_params": '{"detect": 2}'}, "binary_params", "swap refuses these parameters"),
    ({"multi_aggregator": "swap"}, "multi_aggregator", "swap handles yes/no questions only"),
    ({"reach_threshold": "0"}, "reach_threshold", "Must be above 0"),
    ({"reach_threshold": "1.5"}, "reach_threshold", "less than or equal to 1"),
    ({"vote_cap": "10", "expert_after": "20"}, "expert_after", "none would reach the expert queue"),
    ({"mc_samples": "0"}, "mc_samples", "greater than or equal to 1"),
    ({"hard_share": "1.5"}, "hard_share", "less than or equal to 1"),
    ({"skilled_accuracy": "-0.1"}, "skilled_accuracy", "greater than or equal to 0"),
    ({"acquisition": "bold"}, "acquisition", "Unknown acquisition 'bold'; known: bald"),
    ({"acquisition_questions": "bar bars"}, "acquisition_questions",
     "Unknown question 'bars'; this project's questions: smooth-or-featured"),
    ({"acquisition": "random", "acquisition_questions": "bar"}, "acquisition_questions",
     "random acquisition looks at no question"),
])
def test_settings_form_refuses_with_a_field_error(staff, project, changes, field, reason):
    before = learning_settings_get(project_id=project.pk).updated_at
    response = staff.post(url(project, "learning/"), settings_post(project, **changes))
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert field in errors and reason in " ".join(errors[field]), errors
    assert reason.split("'")[0].replace('"', "&quot;") in response.content.decode()
    assert learning_settings_get(project_id=project.pk).updated_at == before


# ------------------------------------------------------------------------------------------- subjects
def test_expert_labels_the_expert_queue(staff, project):
    s = subject(project)
    for pairs in (SMOOTH, FEATURED):
        ClassificationFactory(subject=s, answers=path(pairs))
    subject_retire(subject=s, reason=Retirement.Reason.EXPERT_QUEUE, n_classifications=2,
                   label={"answers": [], "aggregator_reason": "expert_queue"})
    assert s in [x for x in staff.get(url(project, "subjects/")).context["s"].expert_queue]
    page = staff.get(url(project, f"subjects/{s.pk}/expert/"))
    assert page.status_code == 200 and 'data-first="smooth-or-featured"' in page.content.decode()

    # A walk that stops early names the question still to answer; nothing is written.
    response = staff.post(url(project, f"subjects/{s.pk}/expert/"), {"q:smooth-or-featured": "smooth"})
    assert response.status_code == 400
    assert "q:how-rounded" in response.context["form"].errors
    assert not GoldStandard.objects.filter(subject=s).exists()
    assert Retirement.objects.get(subject=s).reason == "expert_queue"

    # Answers off the walked path (bar: the smooth branch never asks it) are not part of the label.
    response = staff.post(url(project, f"subjects/{s.pk}/expert/"), {
        "q:smooth-or-featured": "smooth", "q:how-rounded": "cigar-shaped", "q:merging": "merger", "q:bar": "strong"})
    assert response.status_code == 302
    expected = path([("smooth-or-featured", "smooth"), ("how-rounded", "cigar-shaped"), ("merging", "merger")])
    gold = GoldStandard.objects.get(subject=s)
    assert gold.answers == expected and gold.created_by.username == "scientist"
    retirement = Retirement.objects.get(subject=s)
    assert retirement.reason == Retirement.Reason.EXPERT
    assert retirement.label["answers"] == expected and retirement.label["expert"] == "scientist"
    assert retirement.label["queued_label"]["aggregator_reason"] == "expert_queue"
    assert retirement.n_classifications == 2
    assert Retirement.objects.filter(subject=s).count() == 1
    assert Subject.objects.get(pk=s.pk).state == Subject.State.RETIRED
    # Once labelled it has left the queue; labelling again is refused.
    assert s not in staff.get(url(project, "subjects/")).context["s"].expert_queue
    again = staff.post(url(project, f"subjects/{s.pk}/expert/"), {
        "q:smooth-or-featured": "smooth", "q:how-rounded": "round", "q:merging": "none"})
    assert again.status_code == 400 and "not waiting for an expert" in again.content.decode()
    assert GoldStandard.objects.get(subject=s).answers == expected


def test_expert_label_service_validates_the_path_with_the_tree(project):
    from zooplatform.core.exceptions import ApplicationError
    from zooplatform.dashboard.services import subject_expert_label

    s = subject(project)
    subject_retire(subject=s, reason=Retirement.Reason.EXPERT_QUEUE)
    with pytest.raises(ApplicationError, match="expected question 'how-rounded', got 'bar'"):
        subject_expert_label(subject=s, answers=path([("smooth-or-featured", "smooth"), ("bar", "no")]))
    assert Retirement.objects.get(subject=s).reason == "expert_queue" and not GoldStandard.objects.filter(subject=s).exists()


def test_priority_and_manual_retirement(staff, project, django_capture_on_commit_callbacks):
    subjects = [subject(project) for _ in range(3)]
    GoldStandardFactory(subject=subjects[0])
    target = subjects[2]
    ClassificationFactory(subject=target, answers=path(SMOOTH))
    classification_aggregate(classification_id=Classification.objects.get(subject=target).pk)
    refreshing = mock.patch("zooplatform.dashboard.services.subject_queue_refresh")
    with refreshing as refresh, django_capture_on_commit_callbacks(execute=True):
        response = staff.post(url(project, f"subjects/{target.pk}/priority/"), {"priority": "7.5"})
    assert response.status_code == 302
    assert Subject.objects.get(pk=target.pk).priority == 7.5
    refresh.assert_called_once_with(project=project.pk)
    queue = staff.get(url(project, "subjects/")).context["s"].queue
    assert queue[0].subject == target and queue[0].n_classifications == 1
    assert {row.subject.pk: row.gold for row in queue} == {target.pk: False, subjects[0].pk: True, subjects[1].pk: False}
    bad = staff.post(url(project, f"subjects/{target.pk}/priority/"), {"priority": "nan"}, follow=True)
    assert "Priority:" in str(list(bad.context["messages"])[0])
    assert Subject.objects.get(pk=target.pk).priority == 7.5

    with refreshing as refresh, django_capture_on_commit_callbacks(execute=True):
        staff.post(url(project, f"subjects/{target.pk}/retire/"))
    refresh.assert_called_once_with(project=project.pk)
    retirement = Retirement.objects.get(subject=target)
    assert retirement.reason == Retirement.Reason.MANUAL and retirement.n_classifications == 1
    assert retirement.label["retired_by"] == "scientist"
    assert [step["answer"] for step in retirement.label["answers"]] == [a for _, a in SMOOTH]
    again = staff.post(url(project, f"subjects/{target.pk}/retire/"), follow=True)
    assert "already retired" in str(list(again.context["messages"])[-1])
    assert Retirement.objects.filter(subject=target).count() == 1
    refused = staff.post(url(project, f"subjects/{target.pk}/priority/"), {"priority": "1"}, follow=True)
    assert "only active subjects" in str(list(refused.context["messages"])[-1])


def embed(vector):
    return np.asarray(vector, dtype=np.float16).tobytes()


def test_subject_page_overlay_posteriors_and_similar_galaxies(staff, project):
    model = promoted_model(project)
    subjects = [subject(project) for _ in range(16)]
    query = subjects[0]
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(16, 8)).astype(np.float16)
    for i, (s, v) in enumerate(zip(subjects, vectors)):
        Prediction.objects.create(subject=s, model_version=model, embedding=embed(v), acquisition=i / 10,
                                  anomaly=float(i), fractions={"smooth-or-featured_smooth": 0.25})
    ClassificationFactory(subject=query, answers=path(SMOOTH))
    classification_aggregate(classification_id=Classification.objects.get(subject=query).pk)
    ClumpCluster.objects.all().delete()
    ClumpCluster.objects.create(subject=query, x=11.5, y=7, width=6, height=5, probability=0.9, n_marks=3)

    response = staff.get(url(project, f"subjects/{query.pk}/"))
    html = response.content.decode()
    d = response.context["d"]
    # The overlay is in the image's own pixel coordinates.
    assert f'viewBox="0 0 {query.width} {query.height}"' in html
    assert '<rect class="clump-box" data-clump x="11.5" y="7.0" width="6.0" height="5.0">' in html
    # Every question of the tree, with reach probability and posterior.
    rows = {q.name: q for q in d.questions}
    assert len(rows) == len(d.tree.questions)
    post = SubjectPosterior.objects.get(subject=query, question="smooth-or-featured")
    assert rows["smooth-or-featured"].p_reached == post.p_reached == 1.0
    assert {a.name: a.probability for a in rows["smooth-or-featured"].answers} == post.probabilities
    assert rows["smooth-or-featured"].answers[0].fraction == 0.25 and rows["smooth-or-featured"].answers[0].votes == 1
    assert d.prediction.acquisition == 0.0 and len(d.classifications) == 1

    # "More galaxies like this one": the 12 nearest by cosine similarity, checked against brute force.
    unit = vectors.astype(np.float32) / np.linalg.norm(vectors.astype(np.float32), axis=1, keepdims=True)
    sims = unit[1:] @ unit[0]
    expected = [subjects[1 + i].pk for i in np.argsort(-sims)[:12]]
    assert [s.pk for s, _ in d.similar] == expected
    assert [round(sim, 4) for _, sim in d.similar] == [round(float(x), 4) for x in np.sort(sims)[::-1][:12]]
    # The same answer when the embeddings are streamed in small chunks.
    assert [s.pk for s, _ in selectors.subjects_similar(subject=query, k=12, chunk=5)] == expected
    assert html.count('class="thumb"') >= 12

    # The most anomalous list: highest anomaly of the promoted model first.
    anomalous = staff.get(url(project, "subjects/")).context["s"].anomalous
    assert [p.subject_id for p in anomalous[:3]] == [subjects[15].pk, subjects[14].pk, subjects[13].pk]


def test_subject_page_without_any_model_or_votes(staff, project):
    s = subject(project)
    response = staff.get(url(project, f"subjects/{s.pk}/"))
    assert response.status_code == 200
    d = response.context["d"]
    assert d.similar == [] and d.prediction is None and d.clumps == []
    assert all(q.p_reached is None for q in d.questions)
    other = ProjectFactory(slug="other", name="Other")
    assert staff.get(f"/dashboard/{other.slug}/subjects/{s.pk}/").status_code == 404
