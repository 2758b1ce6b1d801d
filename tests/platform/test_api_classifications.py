"""The volunteer API end to end through HTTP: next subjects, submitting (every validation error), idempotent
retries, the aggregation hook, CSRF, tokens, throttles, workflows, history and the schema."""
from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from zooplatform.celery import app as celery_app
from zooplatform.classify import queue
from zooplatform.classify.models import Classification, ClumpBox, ServedSubject, Volunteer
from zooplatform.workflows.models import WorkflowVersion

from .factories import GoldStandardFactory, SubjectFactory
from .test_classify_selector import assert_handed_to_aggregator, clean_classify_state

pytestmark = pytest.mark.django_db

PATH = [
    {"question": "smooth-or-featured", "answer": "featured-or-disk"},
    {"question": "disk-edge-on", "answer": "no"},
    {"question": "bar", "answer": "weak"},
    {"question": "has-spiral-arms", "answer": "yes"},
    {"question": "spiral-winding", "answer": "medium"},
    {"question": "spiral-arm-count", "answer": "2"},
    {"question": "bulge-size", "answer": "small"},
    {"question": "merging", "answer": "none"},
]


@pytest.fixture(autouse=True)
def _clean():
    clean_classify_state()
    yield
    clean_classify_state()


@pytest.fixture
def send_task():
    with mock.patch.object(celery_app, "send_task") as patched:
        yield patched


@pytest.fixture
def client():
    return APIClient()


@pytest.fixture
def subjects():
    return [SubjectFactory() for _ in range(4)]


def next_subjects(client, n=1, **params):
    response = client.get("/api/subjects/next/", {"n": n, **params})
    assert response.status_code == 200, response.content
    return response.json()


def payload(served, **overrides):
    subject = served
    body = {
        "subject": subject["id"], "workflow_version": subject["workflow_version"], "key": str(uuid.uuid4()),
        "answers": PATH, "boxes": [{"x": 10, "y": 5.5, "width": 12, "height": 8}],
        "started_at": "2026-11-23T10:00:00Z", "finished_at": "2026-11-23T10:00:20Z",
    }
    body.update(overrides)
    return body


def post(client, body):
    return client.post("/api/classifications/", body, format="json")


# ------------------------------------------------------------------------------------------- next
def test_next_returns_the_documented_shape_and_creates_an_anonymous_volunteer(client, subjects):
    got = next_subjects(client, n=3)
    assert len(got) == 3
    for s in got:
        assert {"id", "image_url", "width", "height", "workflow_version"} <= set(s)
        assert s["image_url"].startswith("http://testserver/media/subjects/")
        assert (s["width"], s["height"]) == (64, 48)
        assert "truth" not in s
    version = WorkflowVersion.objects.get(pk=got[0]["workflow_version"])
    assert version.workflow.slug == "gz-decals"
    volunteer = Volunteer.objects.get()
    assert volunteer.user is None and volunteer.session_key == client.session.session_key
    assert ServedSubject.objects.filter(volunteer=volunteer).count() == 3


@pytest.mark.parametrize("n", [0, -1, 21, "x"])
def test_next_rejects_bad_n(client, subjects, n):
    response = client.get("/api/subjects/next/", {"n": n})
    assert response.status_code == 400 and "n" in response.json()


def test_next_unknown_project(client, subjects):
    response = client.get("/api/subjects/next/", {"project": "no-such-project"})
    assert response.status_code == 400 and "project" in response.json()


def test_image_url_is_the_stored_image(client, subjects):
    from django.conf import settings
    from django.core.files.storage import default_storage

    got = next_subjects(client)
    name = got[0]["image_url"].removeprefix("http://testserver" + settings.MEDIA_URL)
    with default_storage.open(name) as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------------- submit
def test_submit_stores_one_classification_with_boxes_and_enqueues_aggregation(
        client, subjects, send_task, django_capture_on_commit_callbacks):
    subject = next_subjects(client)[0]
    body = payload(subject)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(client, body)
    assert response.status_code == 201, response.content
    cid = response.json()["id"]
    c = Classification.objects.get()
    assert c.pk == cid and c.subject_id == subject["id"] and c.key == body["key"]
    assert c.answers == PATH and not c.no_clumps and c.aggregated_at is None
    assert [b.as_dict() for b in c.boxes.all()] == [{"x": 10.0, "y": 5.5, "width": 12.0, "height": 8.0}]
    assert c.volunteer.session_key == client.session.session_key
    assert len(callbacks) >= 1
    assert_handed_to_aggregator(send_task, cid)
    r = queue.client()
    if r is not None:  # the same round trip told the selector
        assert r.zscore(queue.seen_key(c.volunteer_id), subject["id"]) == queue.CLASSIFIED


def test_only_the_submission_that_finds_the_aggregation_list_empty_sends_the_drain(
        client, subjects, send_task, django_capture_on_commit_callbacks):
    r = queue.client()
    if r is None:
        pytest.skip("the aggregation list lives in Redis (REDIS_URL)")
    ids = []
    for subject in next_subjects(client, n=3):
        with django_capture_on_commit_callbacks(execute=True):
            ids.append(post(client, payload(subject)).json()["id"])
    assert queue.pending_count(r) == 3
    send_task.assert_called_once_with("learning.aggregation_drain", queue="default")
    assert queue.pending_pop(r, 2) == ids[:2] and queue.pending_pop(r, 2) == ids[2:]


def test_retry_with_the_same_key_returns_the_same_id_and_stores_nothing(
        client, subjects, send_task, django_capture_on_commit_callbacks):
    subject = next_subjects(client)[0]
    body = payload(subject)
    with django_capture_on_commit_callbacks(execute=True):
        first = post(client, body)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        again = post(client, body)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again["Idempotent-Replayed"] == "true"
    assert Classification.objects.count() == 1 and ClumpBox.objects.count() == 1
    assert send_task.call_count == 1 and callbacks == []


def test_broker_down_does_not_fail_the_submission(client, subjects, django_capture_on_commit_callbacks):
    subject = next_subjects(client)[0]
    with mock.patch.object(celery_app, "send_task", side_effect=ConnectionError("broker down")):
        with django_capture_on_commit_callbacks(execute=True):
            response = post(client, payload(subject))
    assert response.status_code == 201
    assert Classification.objects.filter(aggregated_at__isnull=True).count() == 1


def test_redis_down_after_commit_does_not_fail_the_submission(client, subjects, send_task,
                                                              django_capture_on_commit_callbacks):
    r = queue.client()
    if r is None:
        pytest.skip("needs REDIS_URL")
    subject = next_subjects(client)[0]
    with mock.patch.object(queue, "submitted", side_effect=queue.RedisError("down")):
        with django_capture_on_commit_callbacks(execute=True):
            response = post(client, payload(subject))
    assert response.status_code == 201
    assert Classification.objects.filter(aggregated_at__isnull=True).count() == 1
    send_task.assert_not_called()  # the catch-up aggregates it


def test_no_clumps_is_an_explicit_answer(client, subjects, send_task):
    subject = next_subjects(client)[0]
    response = post(client, payload(subject, boxes=[], no_clumps=True))
    assert response.status_code == 201
    assert Classification.objects.get().no_clumps is True and ClumpBox.objects.count() == 0


def test_submit_path_is_a_handful_of_queries(client, subjects, send_task):
    subject = next_subjects(client)[0]
    body = payload(subject, boxes=[{"x": 1, "y": 1, "width": 5, "height": 5}] * 3)
    post(client, payload(next_subjects(client)[0]))  # warm the tree cache
    with CaptureQueriesContext(connection) as captured:
        assert post(client, body).status_code == 201
    # session, key lookup, served row, then insert classification and boxes (+ savepoint/transaction)
    statements = [q["sql"] for q in captured if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN"))]
    assert len(statements) <= 6, statements


def test_gold_subject_returns_expert_feedback(client, send_task):
    gold = GoldStandardFactory(feedback="barred spiral", answers=PATH[:3] + [
        {"question": "has-spiral-arms", "answer": "no"}, {"question": "bulge-size", "answer": "small"},
        {"question": "merging", "answer": "none"}])
    subject = next_subjects(client)[0]
    assert subject["id"] == gold.subject_id
    response = post(client, payload(subject))
    fb = response.json()["feedback"]
    assert fb["text"] == "barred spiral"
    assert (fb["questions_compared"], fb["questions_agreed"]) == (6, 5)


# ------------------------------------------------------------------------------------------- 400s
def bad(client, body, field):
    before = (Classification.objects.count(), ClumpBox.objects.count())
    response = post(client, body)
    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors, errors
    assert isinstance(errors[field], (list, dict)) and errors[field]
    assert (Classification.objects.count(), ClumpBox.objects.count()) == before  # nothing partial
    return errors[field]


@pytest.mark.parametrize("missing", ["subject", "workflow_version", "key", "answers"])
def test_missing_fields(client, subjects, missing):
    body = payload(next_subjects(client)[0])
    del body[missing]
    bad(client, body, missing)


@pytest.mark.parametrize("field,value", [
    ("subject", "abc"), ("workflow_version", None), ("key", ""), ("answers", "smooth"),
    ("boxes", [{"x": "left", "y": 1, "width": 2, "height": 2}]), ("boxes", [{"x": 1, "y": 1}]),
    ("no_clumps", "perhaps"), ("started_at", "yesterday"), ("answers", [{"question": "bar"}]),
    ("answers", [{"question": "bar", "answer": 7}]), ("answers", ["bar"]), ("answers", [{"question": "q" * 101, "answer": "a"}]),
    ("answers", [{"question": "bar", "answer": "strong"}] * 101), ("boxes", "none"),
    ("boxes", [{"x": True, "y": 1, "width": 2, "height": 2}]), ("boxes", [[1, 1, 2, 2]]),
])
def test_malformed_fields(client, subjects, field, value):
    bad(client, payload(next_subjects(client)[0], **{field: value}), field)


@pytest.mark.parametrize("key", ["short", "has spaces in it", "x" * 65, "semi;colon;key"])
def test_key_format(client, subjects, key):
    bad(client, payload(next_subjects(client)[0], key=key), "key")


def test_key_reused_for_another_subject(client, subjects, send_task):
    a, b = next_subjects(client, n=2)
    body = payload(a)
    assert post(client, body).status_code == 201
    reason = bad(client, payload(b, key=body["key"]), "key")
    assert "already used" in reason[0]


def test_subject_not_served(client, subjects):
    next_subjects(client)
    other = max(s.pk for s in subjects) + 1000
    reason = bad(client, payload({"id": other, "workflow_version": WorkflowVersion.objects.first().pk}), "subject")
    assert "not served" in reason[0]


def test_subject_served_to_someone_else(client, subjects):
    first, second = next_subjects(APIClient(), n=2)  # another browser
    assert next_subjects(client)[0]["id"] == first["id"]
    bad(client, payload(second), "subject")


def test_wrong_workflow_version(client, subjects):
    subject = next_subjects(client)[0]
    gz2 = WorkflowVersion.objects.get(workflow__slug="gz2")
    reason = bad(client, payload(subject, workflow_version=gz2.pk), "workflow_version")
    assert str(subject["workflow_version"]) in reason[0]


@pytest.mark.parametrize("answers,needle", [
    ([], "no answers"),
    ([{"question": "bar", "answer": "strong"}], "expected question 'smooth-or-featured'"),
    ([{"question": "smooth-or-featured", "answer": "blobby"}], "has no answer 'blobby'"),
    (PATH[:4], "answers end before the tree does"),
    (PATH + [{"question": "merging", "answer": "none"}], "the tree had ended"),
    ([PATH[0], {"question": "how-rounded", "answer": "round"}] + PATH[2:], "expected question 'disk-edge-on'"),
])
def test_answers_must_walk_the_tree(client, subjects, answers, needle):
    reason = bad(client, payload(next_subjects(client)[0], answers=answers), "answers")
    assert needle in reason[0], reason


@pytest.mark.parametrize("box,needle", [
    ({"x": 60, "y": 1, "width": 10, "height": 5}, "outside the 64x48 image"),
    ({"x": 1, "y": 40, "width": 5, "height": 10}, "outside the 64x48 image"),
    ({"x": -1, "y": 1, "width": 5, "height": 5}, "outside"),
    ({"x": 1, "y": 1, "width": 0, "height": 5}, "positive width and height"),
    ({"x": 1, "y": 1, "width": 5, "height": -2}, "positive width and height"),
    ({"x": 1, "y": 1, "width": 1, "height": 1}, "smallest box is 2 pixels"),
])
def test_boxes_inside_the_image_with_positive_size(client, subjects, box, needle):
    reason = bad(client, payload(next_subjects(client)[0], boxes=[box]), "boxes")
    assert needle in reason[0], reason


def test_too_many_boxes(client, subjects):
    boxes = [{"x": 1, "y": 1, "width": 3, "height": 3}] * 31
    assert "at most 30" in bad(client, payload(next_subjects(client)[0], boxes=boxes), "boxes")[0]


def test_non_finite_box_is_rejected(client, subjects):
    body = ('{"subject": %d, "workflow_version": %d, "key": "%s", "answers": %s, '
            '"boxes": [{"x": NaN, "y": 1, "width": 3, "height": 3}]}')
    import json

    s = next_subjects(client)[0]
    response = client.post("/api/classifications/", body % (s["id"], s["workflow_version"], uuid.uuid4(), json.dumps(PATH)),
                           content_type="application/json")
    assert response.status_code == 400 and "NaN" in response.json()["detail"]  # strict JSON parsing
    assert Classification.objects.count() == 0


def test_no_clumps_with_boxes(client, subjects):
    bad(client, payload(next_subjects(client)[0], no_clumps=True), "no_clumps")


def test_finished_before_started(client, subjects):
    body = payload(next_subjects(client)[0], started_at="2026-11-23T10:00:20Z", finished_at="2026-11-23T10:00:00Z")
    bad(client, body, "finished_at")


def test_boxes_rejected_when_the_workflow_has_no_clump_task(client, subjects):
    subject = next_subjects(client)[0]
    version = WorkflowVersion.objects.get(pk=subject["workflow_version"])
    version.box_task = {**version.box_task, "enabled": False}
    version.save(update_fields=["box_task"])
    bad(client, payload(subject), "boxes")


def test_same_subject_twice_under_another_key(client, subjects, send_task):
    subject = next_subjects(client)[0]
    assert post(client, payload(subject)).status_code == 201
    assert "already classified" in bad(client, payload(subject), "subject")[0]


# ------------------------------------------------------------------------------------------- auth
def test_csrf_is_required_for_anonymous_session_writes(subjects):
    client = APIClient(enforce_csrf_checks=True)
    subject = next_subjects(client)[0]
    response = post(client, payload(subject))
    assert response.status_code == 403
    client.get("/classify/")  # the page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    response = client.post("/api/classifications/", payload(subject), format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201


def test_token_auth_for_scripts(subjects, send_task):
    user = get_user_model().objects.create_user("script", password="pw-for-tests-1")
    token = Token.objects.create(user=user)
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    subject = next_subjects(client)[0]
    assert post(client, payload(subject)).status_code == 201
    assert Classification.objects.get().volunteer.user == user
    assert "sessionid" not in client.cookies


def test_token_endpoint(subjects):
    get_user_model().objects.create_user("script", password="pw-for-tests-1")
    response = APIClient().post("/api/auth/token/", {"username": "script", "password": "pw-for-tests-1"})
    assert response.status_code == 200 and len(response.json()["token"]) == 40


def test_throttled_per_volunteer(client, subjects, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"volunteer": "3/min", "ip": "1000/min"}}
    # The first request has no volunteer yet (the IP throttle covers it); it creates one, who then gets 3.
    codes = [client.get("/api/subjects/next/").status_code for _ in range(6)]
    assert codes == [200, 200, 200, 200, 429, 429]
    assert APIClient().get("/api/subjects/next/").status_code == 200  # another volunteer


def test_throttled_per_ip(subjects, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"volunteer": "1000/min", "ip": "2/min"}}
    codes = [APIClient().get("/api/subjects/next/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]


# ------------------------------------------------------------------------------------------- reads
def test_workflow_tree_is_the_stored_shape(client, subjects):
    version = WorkflowVersion.objects.get(workflow__slug="gz-decals")
    body = client.get(f"/api/workflows/{version.pk}/").json()
    box_task = body.pop("box_task")
    assert body == version.tree
    assert box_task == version.box_task and box_task["enabled"] is True
    assert body["first"] == "smooth-or-featured"
    assert set(body["questions"][0]) == {"name", "text", "answers"}
    assert set(body["questions"][0]["answers"][0]) == {"name", "text", "next"}
    assert client.get("/api/workflows/999999/").status_code == 404


def test_subject_detail(client, subjects):
    s = subjects[0]
    body = client.get(f"/api/subjects/{s.pk}/").json()
    assert body["id"] == s.pk and body["external_id"] == s.external_id and "truth" not in body
    assert body["workflow_version"] == WorkflowVersion.objects.get(workflow__slug="gz-decals").pk
    assert client.get("/api/subjects/999999/").status_code == 400


def test_history_and_me(client, subjects, send_task):
    assert client.get("/api/classifications/").json()["count"] == 0
    for s in next_subjects(client, n=2):
        post(client, payload(s))
    history = client.get("/api/classifications/").json()
    assert history["count"] == 2
    item = history["results"][0]
    assert item["answers"] == PATH and item["boxes"] == [{"x": 10.0, "y": 5.5, "width": 12.0, "height": 8.0}]
    assert item["subject"]["image_url"].startswith("http://testserver/media/")
    me = client.get("/api/me/").json()
    assert me["classifications"] == 2 and me["boxes"] == 2 and me["username"] is None


def test_schema_and_docs(client):
    schema = client.get("/api/schema/", {"format": "json"})
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    for path in ("/api/subjects/next/", "/api/classifications/", "/api/workflows/{id}/", "/api/subjects/{id}/"):
        assert path in paths
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"apidocs.js" in docs.content and b"cdn" not in docs.content.lower()
