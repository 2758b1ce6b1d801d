"""Browser tests: Playwright driving Debian's chromium against pytest-django's live server, with real
DECaLS galaxies imported from ../shared/realdata/zoobot (skipped only when ../shared is absent)."""
from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest

from tests.conftest import REPO, realdata_path

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"


@pytest.fixture(scope="package")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/ensure-chromium.sh (or apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; the test's own ORM calls are still
    # synchronous, so Django's guard against ORM calls from async code must stand aside while it runs.
    # Package scope: the loop and the flag end with the browser tests, so no later test (nor a
    # subprocess it starts, such as `check --deploy`, which rejects the flag) inherits them.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def site(settings, tmp_path, live_server):
    """The live server with its own media folder, clean selector state, and Celery's send recorded
    (the broker is another engineer's; here we only check that aggregation is enqueued)."""
    from tests.platform.test_classify_selector import clean_classify_state
    from zooplatform.celery import app as celery_app

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.ROOT_URLCONF = "tests.browser.urls"
    clean_classify_state()
    with mock.patch.object(celery_app, "send_task") as send_task:
        live_server.send_task = send_task
        yield live_server
    clean_classify_state()


@pytest.fixture
def real_galaxies(site):
    """A few real DECaLS ring galaxies, imported with the platform's own catalogue import."""
    from zooplatform.galaxies.services import catalogue_parse, project_bootstrap, subjects_import

    catalogue = realdata_path("zoobot", "data", "example_ring_catalog_basic.csv")
    rows, errors = catalogue_parse(catalogue.read_text(), images_dir=catalogue.parent.parent)
    assert not errors, errors[:3]
    project = project_bootstrap()
    subjects_import(project=project, subject_set_name="DECaLS rings", rows=rows[:5], survey="DECaLS DR5")
    return project
