"""The volunteer's pages, and keeping an anonymous volunteer's history when they register or log in."""
from __future__ import annotations

import re
import uuid
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from zooplatform.celery import app as celery_app
from zooplatform.classify.models import Classification, ServedSubject, Volunteer
from zooplatform.classify.services import volunteer_claim

from .factories import ClassificationFactory, SubjectFactory, VolunteerFactory
from .test_api_classifications import PATH
from .test_classify_selector import clean_classify_state

pytestmark = pytest.mark.django_db
PASSWORD = "a-long-test-password-9"


@pytest.fixture(autouse=True)
def _clean():
    clean_classify_state()
    with mock.patch.object(celery_app, "send_task"):
        yield
    clean_classify_state()


def classify_some(client, n):
    served = client.get("/api/subjects/next/", {"n": n}).json()
    for s in served:
        body = {"subject": s["id"], "workflow_version": s["workflow_version"], "key": str(uuid.uuid4()),
                "answers": PATH, "boxes": []}
        assert client.post("/api/classifications/", body, format="json").status_code == 201
    return served


def test_pages_render_with_local_assets_only(client):
    SubjectFactory()
    for url, needle in [("/", b"Start classifying"), ("/classify/", b'id="viewer"'), ("/profile/", b"Nothing yet"),
                        ("/accounts/login/", b"Log in"), ("/accounts/register/", b"Register"), ("/api/docs/", b"api-docs")]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert needle in response.content, url
        html = response.content.decode()
        assert 'href="/dashboard/"' in html
        for src in re.findall(r'(?:src|href)="([^"]+)"', html):
            assert not src.startswith(("http:", "https:", "//")), (url, src)  # no CDN, no external asset


def test_classify_page_sets_csrf_cookie_and_names_the_api(client):
    SubjectFactory()
    response = client.get("/classify/")
    assert "csrftoken" in response.cookies
    html = response.content.decode()
    assert 'data-next-url="/api/subjects/next/"' in html and 'data-submit-url="/api/classifications/"' in html
    assert client.get("/classify/no-such-project/").status_code == 404


def test_register_keeps_the_anonymous_history():
    SubjectFactory(), SubjectFactory(), SubjectFactory()
    client = APIClient()
    classify_some(client, 2)
    anonymous = Volunteer.objects.get()
    response = client.post("/accounts/register/", {"username": "vera", "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/profile/"
    anonymous.refresh_from_db()
    assert anonymous.user.username == "vera"  # the same row: the history stays
    assert Volunteer.objects.count() == 1
    classify_some(client, 1)
    assert Classification.objects.filter(volunteer=anonymous).count() == 3
    page = client.get("/profile/").content.decode()
    assert re.search(r'data-testid="profile-count">3<', page)


def test_login_merges_into_the_existing_volunteer():
    subjects = [SubjectFactory() for _ in range(4)]
    user = get_user_model().objects.create_user("otto", password=PASSWORD)
    mine = Volunteer.objects.create(user=user)
    ClassificationFactory(volunteer=mine, subject=subjects[0])
    subjects[0].priority = -1.0  # served last, so the anonymous volunteer's classifications never clash
    subjects[0].save(update_fields=["priority"])
    client = APIClient()
    served = classify_some(client, 2)
    anonymous = Volunteer.objects.get(user__isnull=True)
    # This browser also has a prefetched subject it has not classified yet.
    pending = client.get("/api/subjects/next/").json()[0]
    assert client.post("/accounts/login/", {"username": "otto", "password": PASSWORD}).status_code == 302
    assert Classification.objects.filter(volunteer=mine).count() == 3
    assert set(Classification.objects.filter(volunteer=mine).values_list("subject_id", flat=True)) == \
        {subjects[0].pk} | {s["id"] for s in served}
    assert ServedSubject.objects.filter(volunteer=mine, subject_id=pending["id"]).exists()
    # The prefetched subject can still be submitted after logging in, as the user's volunteer.
    body = {"subject": pending["id"], "workflow_version": pending["workflow_version"], "key": str(uuid.uuid4()),
            "answers": PATH}
    token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else ""
    response = client.post("/api/classifications/", body, format="json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201
    assert Classification.objects.get(pk=response.json()["id"]).volunteer == mine
    assert Classification.objects.filter(volunteer=anonymous).count() == 0


def test_merge_keeps_a_clashing_classification_on_the_anonymous_row():
    subject = SubjectFactory()
    user = get_user_model().objects.create_user("ada", password=PASSWORD)
    mine = Volunteer.objects.create(user=user)
    ClassificationFactory(volunteer=mine, subject=subject)
    anonymous = VolunteerFactory()
    ClassificationFactory(volunteer=anonymous, subject=subject)
    assert volunteer_claim(user=user, volunteer_id=anonymous.pk) == mine
    assert Classification.objects.filter(volunteer=anonymous).count() == 1  # never deleted
    assert Classification.objects.filter(volunteer=mine).count() == 1


def test_profile_shows_recent_galaxies(client):
    SubjectFactory(), SubjectFactory()
    api = APIClient()
    served = classify_some(api, 2)
    page = api.get("/profile/").content.decode()
    for s in served:
        assert s["image_url"].removeprefix("http://testserver") in page
    assert "classifying anonymously" in page


def test_logout_is_a_post(client):
    get_user_model().objects.create_user("lin", password=PASSWORD)
    client.login(username="lin", password=PASSWORD)
    assert "Log out" in client.get("/").content.decode()
    assert client.post("/accounts/logout/").status_code == 302
    assert "Log in" in client.get("/").content.decode()
