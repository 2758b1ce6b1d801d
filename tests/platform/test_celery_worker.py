"""The learning loop through a real Celery worker process.

The worker is a separate ``celery -A zooplatform worker`` process on the broker the settings name:
Redis in the PostgreSQL + Redis pass, kombu's filesystem transport in the SQLite pass. It shares the
test database (a file for SQLite, see settings) and media folder. Classifications go in through the
HTTP API, and the test watches posteriors, retirements, models and priorities change in the database.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from zooplatform.celery import app as celery_app
from zooplatform.classify.models import Classification
from zooplatform.galaxies.models import Retirement, Subject
from zooplatform.learning.models import Job, LearningSettings, ModelVersion, Prediction, SubjectPosterior
from zooplatform.learning.services.cycle import retrain_run

from ..conftest import REPO
from .factories import FEATURED, SMOOTH, ClassificationFactory, ProjectFactory, SubjectFactory, labelled_subject, path
from .test_classify_selector import clean_classify_state

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def database_url() -> str:
    d = connection.settings_dict
    if d["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{d['NAME']}"
    auth = d["USER"] + (f":{d['PASSWORD']}" if d.get("PASSWORD") else "")
    return f"postgres://{auth}@{d['HOST'] or '127.0.0.1'}:{d['PORT'] or 5432}/{d['NAME']}"


class Worker:
    """A Celery worker process; its output is kept for the failure message."""

    def __init__(self, *, queues: str, name: str, media_root: Path, extra_env: dict | None = None):
        env = dict(os.environ, DATABASE_URL=database_url(), ZOO_ENV="test", MEDIA_ROOT=str(media_root),
                   TORCH_DEVICE="cpu", PYTHONUNBUFFERED="1", OMP_NUM_THREADS="2", **(extra_env or {}))
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "zooplatform", "worker", "-Q", queues, "-n", f"{name}@%h",
             "--pool", "solo", "-l", "INFO", "--without-heartbeat", "--without-gossip", "--without-mingle"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def log(self) -> str:
        return "".join(self.lines[-80:])

    def wait_ready(self, timeout: float = 120.0) -> "Worker":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(" ready." in line for line in self.lines):
                return self
            if self.proc.poll() is not None:
                raise AssertionError(f"the worker exited with {self.proc.returncode}:\n{self.log}")
            time.sleep(0.2)
        raise AssertionError(f"the worker was not ready after {timeout} s:\n{self.log}")

    def stop(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def wait_for(condition, *, timeout: float, what: str, worker: Worker):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; worker log:\n{worker.log}")


@pytest.fixture(scope="module")
def media_root(tmp_path_factory):
    return tmp_path_factory.mktemp("worker-media")


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker, media_root):
    celery_app.control.purge() if not settings.CELERY_BROKER_URL.startswith("filesystem") else None
    w = Worker(queues="default,gpu", name="test-default", media_root=media_root).wait_ready()
    yield w
    w.stop()


@pytest.fixture(autouse=True)
def _shared_media(settings, media_root):
    settings.MEDIA_ROOT = media_root
    clean_classify_state()
    yield
    clean_classify_state()


def classify_through_api(client: APIClient, answers_for) -> list[int]:
    served = client.get("/api/subjects/next/", {"n": 10})
    assert served.status_code == 200, served.content
    ids = []
    for s in served.json():
        now = timezone.now().isoformat()
        r = client.post("/api/classifications/", {
            "subject": s["id"], "workflow_version": s["workflow_version"], "key": uuid.uuid4().hex,
            "answers": answers_for(s["id"]), "boxes": [], "started_at": now, "finished_at": now}, format="json")
        assert r.status_code == 201, r.content
        ids.append(r.json()["id"])
    return ids


def test_classifications_through_the_api_are_aggregated_and_retire_subjects(worker):
    project = ProjectFactory()
    LearningSettings.objects.create(project=project, min_votes=3, vote_cap=None)
    subjects = [SubjectFactory(subject_set__project=project) for _ in range(4)]
    featured = {subjects[0].pk, subjects[1].pk}
    ids = []
    for _ in range(6):  # six volunteers, each classifies every galaxy still served to them
        ids += classify_through_api(APIClient(), lambda sid: path(FEATURED if sid in featured else SMOOTH))
    # Galaxies retire while later volunteers arrive (3 to 4 votes decide them), so fewer than 24.
    assert 4 * 3 <= len(ids) <= 24
    wait_for(lambda: not Classification.objects.filter(pk__in=ids, aggregated_at=None).exists(),
             timeout=90, what="the worker to aggregate 24 classifications", worker=worker)
    for s in subjects:
        probs = SubjectPosterior.objects.get(subject=s, question="smooth-or-featured").probabilities
        winner = "featured-or-disk" if s.pk in featured else "smooth"
        assert probs[winner] > 0.9, (s.pk, probs)
    retired = Retirement.objects.filter(subject__in=subjects)
    assert retired.count() == 4 and set(retired.values_list("reason", flat=True)) == {"consensus"}
    # Retired galaxies are no longer served.
    assert APIClient().get("/api/subjects/next/", {"n": 10}).json() == []


def test_missed_updates_are_caught_up_by_the_periodic_task(worker):
    project = ProjectFactory()
    subject = SubjectFactory(subject_set__project=project)
    # Stored without ever being enqueued, as if the broker had been down when they were submitted.
    missed = [ClassificationFactory(subject=subject, answers=path(SMOOTH)) for _ in range(3)]
    Classification.objects.filter(pk__in=[c.pk for c in missed]).update(
        created_at=timezone.now() - timezone.timedelta(minutes=5))
    celery_app.send_task("learning.aggregation_catch_up")  # what beat sends every minute
    wait_for(lambda: not Classification.objects.filter(pk__in=[c.pk for c in missed], aggregated_at=None).exists(),
             timeout=60, what="the catch-up task", worker=worker)
    assert SubjectPosterior.objects.get(subject=subject, question="smooth-or-featured").n_votes == 3


def _labelled_project(n_labelled=80, n_unlabelled=12):
    project = ProjectFactory()
    LearningSettings.objects.create(project=project, train_preset="tiny",
                                    train_overrides={"epochs": 12, "batch_size": 8, "lr": 1e-3},
                                    min_training_subjects=20, min_votes=1, detector_enabled=False)
    labels = [SMOOTH if i % 2 else FEATURED for i in range(n_labelled)]
    subjects = [labelled_subject(project, pairs, seed=i) for i, pairs in enumerate(labels)]
    subjects += [SubjectFactory(subject_set__project=project) for _ in range(n_unlabelled)]
    for s, pairs in zip(subjects, labels):
        ClassificationFactory(subject=s, answers=path(pairs))
    Classification.objects.update(aggregated_at=timezone.now())
    return project, subjects


def test_retraining_on_the_gpu_queue_promotes_scores_and_reprioritises(worker):
    project, subjects = _labelled_project()
    before = dict(Subject.objects.filter(project=project).values_list("pk", "priority"))
    celery_app.send_task("learning.retrain", args=[project.pk, "morphology", "test"])
    wait_for(lambda: Job.objects.filter(project=project, kind="score", status="succeeded").exists(),
             timeout=240, what="retraining and then scoring", worker=worker)
    version = ModelVersion.objects.get(project=project, kind="morphology")
    assert version.promoted and Path(version.checkpoint.path).is_file()
    assert Prediction.objects.filter(model_version=version).count() == len(subjects)
    after = dict(Subject.objects.filter(project=project).values_list("pk", "priority"))
    assert after != before and max(after.values()) == 1.0
    # The selector serves the highest-priority subject first, at once.
    served = APIClient().get("/api/subjects/next/", {"n": 3}).json()
    active = Subject.objects.filter(project=project, state="active").order_by("-priority")
    assert served[0]["id"] == active.first().pk
    retrain_job = Job.objects.get(project=project, kind="retrain_morphology")
    assert retrain_job.status == "succeeded" and retrain_job.progress == 1.0


def test_a_retraining_whose_worker_dies_is_taken_over_on_redelivery(worker, media_root):
    project, _ = _labelled_project()
    LearningSettings.objects.filter(project=project).update(train_overrides={"epochs": 40, "batch_size": 8})
    victim = Worker(queues="victim", name="victim", media_root=media_root).wait_ready()
    task_id = str(uuid.uuid4())
    try:
        celery_app.send_task("learning.retrain", args=[project.pk, "morphology", "test"], queue="victim",
                             task_id=task_id)
        wait_for(lambda: Job.objects.filter(project=project, status="running", progress__gt=0.1).exists(),
                 timeout=180, what="the victim worker to start training", worker=victim)
    finally:
        victim.stop(kill=True)  # SIGKILL mid-epoch: no cleanup runs
    dead = Job.objects.get(project=project)
    assert dead.status == "running"
    # Until then, a second retraining of the project is refused ...
    assert "busy" in retrain_run(project_id=project.pk)
    # ... but the broker's redelivery of the same task (acks_late) takes the dead job over at once.
    LearningSettings.objects.filter(project=project).update(train_overrides={"epochs": 12, "batch_size": 8, "lr": 1e-3})
    celery_app.send_task("learning.retrain", args=[project.pk, "morphology", "test"], task_id=task_id)
    wait_for(lambda: Job.objects.filter(project=project, kind="retrain_morphology", status="succeeded").exists(),
             timeout=240, what="the redelivered retraining", worker=worker)
    dead.refresh_from_db()
    assert dead.status == "failed" and "worker lost" in dead.message
    assert ModelVersion.objects.filter(project=project, promoted=True).count() == 1
    # The half-trained model of the dead worker is marked failed, never left "training".
    assert not ModelVersion.objects.filter(project=project, status="training").exists()
