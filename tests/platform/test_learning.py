"""The learning loop's services: online aggregation, retirement, clumps, the sweep, retraining, scoring."""
import numpy as np
import pytest

from zooplatform.classify.models import Classification, ClumpBox
from zooplatform.galaxies.models import Retirement, Subject
from zooplatform.learning.models import (ClumpCluster, Job, LearningSettings, ModelVersion, Prediction,
                                         SubjectPosterior, VolunteerSkill)
from zooplatform.learning.services import (JobBusy, aggregation_catch_up, aggregation_drain, aggregation_sweep,
                                           classification_aggregate, job_start, learning_settings_get)
from zooplatform.learning.services.cycle import retrain_run, score_run

from .factories import (FEATURED, SMOOTH, ClassificationFactory, GoldStandardFactory, ProjectFactory,
                        SubjectFactory, VolunteerFactory, labelled_subject, path)

pytestmark = pytest.mark.django_db



def classify(subject, pairs, volunteer=None, boxes=()):
    c = ClassificationFactory(subject=subject, answers=path(pairs), **({"volunteer": volunteer} if volunteer else {}))
    for b in boxes:
        ClumpBox.objects.create(classification=c, **b)
    return c


def posterior(subject, question):
    return SubjectPosterior.objects.get(subject=subject, question=question).probabilities


def test_online_aggregation_moves_the_posterior_and_is_idempotent():
    subject = SubjectFactory()
    c = classify(subject, SMOOTH)
    first = classification_aggregate(classification_id=c.pk)
    assert not first.already
    p1 = posterior(subject, "smooth-or-featured")
    assert p1["smooth"] > p1["featured-or-disk"]
    assert classification_aggregate(classification_id=c.pk).already
    assert posterior(subject, "smooth-or-featured") == p1
    assert Classification.objects.get(pk=c.pk).aggregated_at is not None
    # every question of the tree has a row; the ones off the path are barely reached
    rows = {p.question: p for p in SubjectPosterior.objects.filter(subject=subject)}
    assert set(rows) >= {"smooth-or-featured", "how-rounded", "bar", "merging"}
    assert rows["how-rounded"].p_reached > rows["bar"].p_reached
    p_before = p1["smooth"]
    classification_aggregate(classification_id=classify(subject, SMOOTH).pk)
    assert posterior(subject, "smooth-or-featured")["smooth"] > p_before


def test_subject_retires_once_decided_and_label_is_the_consensus_path():
    project = ProjectFactory()
    LearningSettings.objects.create(project=project, min_votes=3, vote_cap=None)
    subject = SubjectFactory(subject_set__project=project)
    for _ in range(12):
        if Subject.objects.get(pk=subject.pk).state == Subject.State.RETIRED:
            break
        classification_aggregate(classification_id=classify(subject, SMOOTH).pk)
    subject.refresh_from_db()
    assert subject.state == Subject.State.RETIRED
    retirement = Retirement.objects.get(subject=subject)
    assert retirement.reason == Retirement.Reason.CONSENSUS
    assert 3 <= retirement.n_classifications < 12
    assert [s["answer"] for s in retirement.label["answers"]] == [a for _, a in SMOOTH]


def test_vote_cap_retires_an_undecided_subject():
    project = ProjectFactory()
    LearningSettings.objects.create(project=project, vote_cap=4, min_votes=3)
    subject = SubjectFactory(subject_set__project=project)
    for pairs in (SMOOTH, FEATURED, SMOOTH, FEATURED):
        classification_aggregate(classification_id=classify(subject, pairs).pk)
    assert Retirement.objects.get(subject=subject).reason == Retirement.Reason.VOTE_CAP


def test_gold_subject_teaches_skill_and_never_retires():
    gold = GoldStandardFactory(answers=path(SMOOTH))
    volunteer = VolunteerFactory()
    classification_aggregate(classification_id=classify(gold.subject, SMOOTH, volunteer).pk)
    skill = VolunteerSkill.objects.get(volunteer=volunteer, question="smooth-or-featured")
    assert skill.n_gold == 1
    counts = np.array(skill.confusion["counts"])
    assert counts[0, 0] == 1 and counts.sum() == 1   # truth smooth, said smooth
    for _ in range(15):
        classification_aggregate(classification_id=classify(gold.subject, SMOOTH).pk)
    assert Subject.objects.get(pk=gold.subject.pk).state == Subject.State.ACTIVE


def test_clump_boxes_cluster_into_consensus_with_probabilities():
    subject = SubjectFactory()
    near = [dict(x=10, y=10, width=8, height=8), dict(x=11, y=10, width=8, height=7), dict(x=10, y=11, width=7, height=8)]
    for b in near:
        classification_aggregate(classification_id=classify(subject, SMOOTH, boxes=[b, ] if b is not near[2] else
                                                            [b, dict(x=40, y=30, width=6, height=6)]).pk)
    for _ in range(2):  # two volunteers saw it and drew nothing
        classification_aggregate(classification_id=classify(subject, SMOOTH).pk)
    clumps = sorted(ClumpCluster.objects.filter(subject=subject), key=lambda c: -c.n_marks)
    assert [c.n_marks for c in clumps] == [3, 1]
    assert clumps[0].probability > 0.5 > clumps[1].probability
    assert abs(clumps[0].x - 10) <= 1 and abs(clumps[0].width - 8) <= 1
    assert VolunteerSkill.objects.filter(question="clumps").count() == 5


def test_catch_up_aggregates_what_the_online_path_missed():
    subject = SubjectFactory()
    missed = [classify(subject, SMOOTH) for _ in range(3)]
    assert aggregation_catch_up(older_than_seconds=0) == 3
    assert not Classification.objects.filter(pk__in=[c.pk for c in missed], aggregated_at=None).exists()
    assert posterior(subject, "smooth-or-featured")["smooth"] > 0.5
    assert aggregation_catch_up(older_than_seconds=0) == 0


@pytest.fixture
def pending():
    """The Redis aggregation list, empty before and after the test."""
    from zooplatform.classify import queue

    r = queue.client()
    if r is None:
        pytest.skip("the aggregation list lives in Redis (REDIS_URL)")
    r.delete(queue.PENDING_KEY)
    yield r
    r.delete(queue.PENDING_KEY)


def test_drain_aggregates_the_waiting_classifications(pending):
    from zooplatform.classify import queue

    subject = SubjectFactory()
    waiting = [classify(subject, SMOOTH) for _ in range(5)]
    queue.pending_push(pending, [c.pk for c in waiting] + [999_999_999])  # the last one no longer exists
    assert aggregation_drain(batch=2) == 5
    assert queue.pending_count(pending) == 0
    assert not Classification.objects.filter(pk__in=[c.pk for c in waiting], aggregated_at=None).exists()
    assert posterior(subject, "smooth-or-featured")["smooth"] > 0.5
    queue.pending_push(pending, [waiting[0].pk])
    assert aggregation_drain() == 0  # already aggregated: idempotent


def test_drain_puts_back_what_it_had_not_done_when_one_fails(pending, monkeypatch):
    from django.db import OperationalError

    from zooplatform.classify import queue
    from zooplatform.learning.services import aggregate

    subject = SubjectFactory()
    ids = [classify(subject, SMOOTH).pk for _ in range(4)]
    queue.pending_push(pending, ids)
    real = aggregate.classification_aggregate

    def flaky(*, classification_id):
        if classification_id == ids[2]:
            raise OperationalError("database went away")
        return real(classification_id=classification_id)

    monkeypatch.setattr(aggregate, "classification_aggregate", flaky)
    with pytest.raises(OperationalError):
        aggregation_drain()
    assert queue.pending_pop(pending, 10) == ids[2:]  # the failed one and the one after it, in order
    assert list(Classification.objects.filter(pk__in=ids, aggregated_at__isnull=False)
                .order_by("pk").values_list("pk", flat=True)) == ids[:2]


def test_catch_up_drains_the_list_first(pending):
    from zooplatform.classify import queue

    subject = SubjectFactory()
    ids = [classify(subject, SMOOTH).pk for _ in range(3)]
    queue.pending_push(pending, ids)
    # Too new for the database query (30 s), but on the list: the drain takes them now.
    assert aggregation_catch_up() == 3
    assert queue.pending_count(pending) == 0


def test_sweep_recomputes_in_batch_and_refolds_newer_votes():
    project = ProjectFactory()
    subjects = [SubjectFactory(subject_set__project=project) for _ in range(6)]
    for i, s in enumerate(subjects):
        for _ in range(2):
            c = classify(s, SMOOTH if i % 2 else FEATURED)
            classification_aggregate(classification_id=c.pk)
    online = {s.pk: posterior(s, "smooth-or-featured") for s in subjects}
    report = aggregation_sweep(project_id=project.pk)
    assert report.subjects == 6 and report.votes == 6 * (3 + 6) and report.classifications == 12
    for i, s in enumerate(subjects):
        batch = posterior(s, "smooth-or-featured")
        winner = "smooth" if i % 2 else "featured-or-disk"
        assert max(batch, key=batch.get) == winner == max(online[s.pk], key=online[s.pk].get)
    assert not Classification.objects.filter(aggregated_at=None).exists()


def test_one_retraining_at_a_time_and_stale_jobs_are_taken_over():
    project = ProjectFactory()
    first = job_start(project_id=project.pk, kind=Job.Kind.RETRAIN_MORPHOLOGY, exclusive_key=f"retrain:{project.pk}")
    with pytest.raises(JobBusy):
        job_start(project_id=project.pk, kind=Job.Kind.RETRAIN_DETECTOR, exclusive_key=f"retrain:{project.pk}")
    from django.utils import timezone

    Job.objects.filter(pk=first.pk).update(heartbeat_at=timezone.now() - timezone.timedelta(hours=2))
    second = job_start(project_id=project.pk, kind=Job.Kind.RETRAIN_DETECTOR, exclusive_key=f"retrain:{project.pk}")
    assert Job.objects.get(pk=first.pk).status == Job.Status.FAILED
    assert second.status == Job.Status.RUNNING


@pytest.mark.slow
def test_retrain_promotes_then_scoring_sets_priorities_and_predictions(settings):
    settings.TORCH_DEVICE = "cpu"
    project = ProjectFactory()
    learning = learning_settings_get(project_id=project.pk)
    LearningSettings.objects.filter(pk=learning.pk).update(
        train_preset="tiny", train_overrides={"epochs": 12, "batch_size": 8, "lr": 1e-3}, min_training_subjects=20,
        min_votes=1)
    labels = [SMOOTH if i % 2 else FEATURED for i in range(80)]
    subjects = [labelled_subject(project, pairs, seed=i) for i, pairs in enumerate(labels)]
    subjects += [SubjectFactory(subject_set__project=project) for _ in range(10)]
    for s, pairs in zip(subjects, labels):
        for _ in range(2):
            classify(s, pairs)
    result = retrain_run(project_id=project.pk, kind="morphology")
    assert "model_version" in result, result
    version = ModelVersion.objects.get(pk=result["model_version"])
    assert version.promoted and version.status == "ready" and version.checkpoint.name.endswith(".pt")
    assert version.label_snapshot["n_subjects"] == 80 and version.metrics["n_val"] >= 4
    assert Job.objects.get(kind="retrain_morphology").status == "succeeded"

    # Promotion queued the scoring job (its task is sent when the transaction commits).
    queued = Job.objects.get(project=project, kind="score", status="queued")
    scored = score_run(model_version_id=version.pk, job_id=queued.pk)
    assert scored["scored"] == 90 and scored["prioritised"] == 90
    assert Prediction.objects.filter(model_version=version).count() == 90
    pred = Prediction.objects.filter(model_version=version).first()
    assert abs(sum(v for k, v in pred.fractions.items() if k.startswith("smooth-or-featured_")) - 1) < 1e-3
    priorities = np.array(Subject.objects.filter(project=project).values_list("priority", flat=True))
    assert priorities.min() > 0 and priorities.max() == 1.0 and len(set(priorities.round(6))) > 45

    # A second model must beat the promoted one on the same validation galaxies to be promoted.
    again = retrain_run(project_id=project.pk, kind="morphology")
    candidate = ModelVersion.objects.get(pk=again["model_version"])
    assert "promoted_val_loss" in candidate.metrics
    assert candidate.promoted == (candidate.metrics["val_loss"] < candidate.metrics["promoted_val_loss"])
    assert ModelVersion.objects.filter(project=project, kind="morphology", promoted=True).count() == 1


@pytest.mark.slow
def test_a_model_no_better_than_the_constant_answer_is_not_promoted(settings):
    """Images that say nothing about the answers (the same blob for smooth and featured galaxies): the
    first model cannot beat the training galaxies' mean vote fractions, so it is kept but not promoted,
    and nothing is scored with it."""
    settings.TORCH_DEVICE = "cpu"
    project = ProjectFactory()
    LearningSettings.objects.create(project=project, train_preset="tiny", train_overrides={"epochs": 2, "batch_size": 8},
                                    min_training_subjects=20, min_votes=1)
    for i in range(80):
        classify(SubjectFactory(subject_set__project=project), SMOOTH if i % 2 else FEATURED)
    result = retrain_run(project_id=project.pk, kind="morphology")
    version = ModelVersion.objects.get(pk=result["model_version"])
    m = version.metrics
    assert m["val_fraction_rmse"] >= m["baseline_fraction_rmse"] > 0
    assert not version.promoted and version.status == "rejected" and "constant mean answer" in m["rejected_because"]
    assert not Job.objects.filter(project=project, kind="score").exists()
    assert not Prediction.objects.filter(model_version=version).exists()


ARTIFACT = [("smooth-or-featured", "artifact")]


@pytest.mark.parametrize("machine_retires", [True, False])
def test_a_calibrated_confident_model_retires_galaxies_nobody_classified(machine_retires):
    """GZX: the promoted model, calibrated on the humans' retirements, retires a galaxy on its own (reason
    "machine", no human vote) when its evidence alone decides it; min_votes still binds the humans, and
    with machine_retires off the evidence only moves the posterior."""
    from zooplatform.galaxies.services import subject_retire
    from zooplatform.learning.services import machine_evidence_apply

    project = ProjectFactory()
    LearningSettings.objects.create(project=project, min_votes=3, reach_threshold=1.0, machine_retires=machine_retires)
    version = ModelVersion.objects.create(project=project, kind="morphology", architecture="test", status="ready",
                                          promoted=True)
    answers = ("smooth", "featured-or-disk", "artifact")

    def predict(subject, answer):
        fractions = {f"smooth-or-featured_{a}": (0.96 if a == answer else 0.02) for a in answers}
        Prediction.objects.create(subject=subject, model_version=version, fractions=fractions)

    # The humans' decisions the machine is calibrated on: 40 galaxies per answer, all predicted right.
    for i in range(120):
        known = SubjectFactory(subject_set__project=project)
        pairs = (SMOOTH, FEATURED, ARTIFACT)[i % 3]
        subject_retire(subject=known, reason="consensus", n_classifications=5, label={"answers": path(pairs)})
        predict(known, pairs[0][1])
    unseen = [SubjectFactory(subject_set__project=project) for _ in range(4)]
    for i, subject in enumerate(unseen):
        predict(subject, answers[i % 2])
    voted = SubjectFactory(subject_set__project=project)               # one human vote, below min_votes
    classification_aggregate(classification_id=classify(voted, SMOOTH).pk)
    predict(voted, "smooth")

    retired = machine_evidence_apply(model_version=version)
    assert retired == ({"machine": 5} if machine_retires else {})
    for i, subject in enumerate([*unseen, voted]):
        subject.refresh_from_db()
        want = answers[i % 2] if subject in unseen else "smooth"
        p = posterior(subject, "smooth-or-featured")
        assert max(p, key=p.get) == want and p[want] > 0.99
        if machine_retires:
            r = Retirement.objects.get(subject=subject)
            assert subject.state == Subject.State.RETIRED and r.reason == "machine"
            assert r.n_classifications == (1 if subject == voted else 0)
            assert (r.label["answers"][0]["question"], r.label["answers"][0]["answer"]) == ("smooth-or-featured", want)
        else:
            assert subject.state == Subject.State.ACTIVE


def test_retrain_skips_without_enough_labels():
    project = ProjectFactory()
    result = retrain_run(project_id=project.pk, kind="morphology")
    assert "skipped" in result
    assert Job.objects.get(project=project).status == Job.Status.SKIPPED


def _promoted_model(tmp_path, **settings):
    """A project with these learning settings and a promoted, untrained test ConvNeXt (dropout 0.5) stored
    as a real checkpoint file: (project, its ModelVersion, its tree)."""
    import torch
    from django.core.files import File

    import classifier
    from zooplatform.workflows.selectors import workflow_version_current

    project = ProjectFactory()
    LearningSettings.objects.create(project=project, mc_samples=4, machine_enabled=False, **settings)
    tree = workflow_version_current(project=project).decision_tree
    torch.manual_seed(0)
    model = classifier.create_model("test_convnext_tree", tree=tree, dropout_rate=0.5)
    ckpt = classifier.Checkpoint(kind="morphology", model_name="test_convnext_tree", model_args=dict(model.model_args),
                                 state_dict={k: v.detach().clone() for k, v in model.state_dict().items()},
                                 config={"image_size": 32, "crop_fraction": 1.0})
    version = ModelVersion.objects.create(project=project, kind="morphology", architecture="test_convnext_tree",
                                          status="ready", promoted=True)
    with open(ckpt.save(tmp_path / "m.pt"), "rb") as fh:
        version.checkpoint.save("m.pt", File(fh))
    return project, version, tree


def test_acquisition_aimed_at_questions_scores_only_those(monkeypatch, tmp_path):
    """With ``acquisition_questions``, scoring ranks galaxies by what they would teach the model about those
    questions alone: each stored score is BALD restricted to them, from the same MC samples."""
    import torch

    import classifier

    project, version, tree = _promoted_model(tmp_path, acquisition="bald", acquisition_questions=["bar"])
    subjects = [SubjectFactory(subject_set__project=project) for _ in range(6)]
    acquisitions, chunks = [], []
    real = classifier.score_chunks

    def spy(*args, **kwargs):
        acquisitions.append(kwargs["acquisition"])
        for chunk in real(*args, **{**kwargs, "keep_samples": True}):
            chunks.append(chunk)
            yield chunk
    monkeypatch.setattr(classifier, "score_chunks", spy)
    from zooplatform.learning.services import scoring
    assert scoring.model_score(model_version_id=version.pk)["scored"] == 6
    acquisition = acquisitions[0]
    assert acquisition.questions == ("bar",)
    whole_tree = classifier.create_acquisition("bald")
    stored = dict(Prediction.objects.filter(model_version=version).values_list("subject_id", "acquisition"))
    for chunk in chunks:
        samples = torch.from_numpy(chunk.concentrations)
        aimed = acquisition(samples, tree).numpy()
        assert [stored[int(i)] for i in chunk.ids] == pytest.approx(aimed.tolist(), rel=1e-5)
        assert not np.allclose(aimed, whole_tree(samples, tree).numpy())
    assert {s.pk for s in subjects} <= set(stored)


def test_a_pool_relative_acquisition_ranks_every_active_subject_against_all_the_others(monkeypatch, tmp_path):
    """bald-balanced gives every question its share of the pool's most informative galaxies, so its scores
    depend on the whole pool: scored in chunks of 5 from one loader, the parts of all 12 active subjects
    are combined once (not chunk by chunk), retired calibration subjects are left out, and the priorities
    follow."""
    import classifier.scoring
    from classifier.acquisition import BalancedBALD
    from zooplatform.galaxies.services import subject_retire
    from zooplatform.learning.services import scoring

    project, version, tree = _promoted_model(tmp_path, acquisition="bald-balanced")
    active = [SubjectFactory(subject_set__project=project) for _ in range(12)]
    for _ in range(3):
        subject_retire(subject=SubjectFactory(subject_set__project=project), reason="consensus", n_classifications=5,
                       label={"answers": path(SMOOTH)})

    calls = []
    real_combine = BalancedBALD.combine

    def combine(self, parts):
        calls.append(parts.shape)
        return real_combine(self, parts)

    monkeypatch.setattr(BalancedBALD, "combine", combine)
    loaders = []
    real_batches = classifier.scoring.image_batches
    monkeypatch.setattr(classifier.scoring, "image_batches", lambda *a, **k: loaders.append(a) or real_batches(*a, **k))
    monkeypatch.setattr(scoring, "BATCH", 5)
    monkeypatch.setattr(scoring, "SCORE_BATCH", 5)
    written = []
    real_bulk_create = Prediction.objects.bulk_create
    monkeypatch.setattr(Prediction.objects, "bulk_create", lambda rows, **k: written.append(len(rows))
                        or real_bulk_create(rows, **k))
    result = scoring.model_score(model_version_id=version.pk)
    assert result["scored"] == 15 and result["prioritised"] == 12
    # one loader for all 15, written in chunks of 5 as they come; the 12 active ones combined once
    assert len(loaders) == 1 and len(loaders[0][0]) == 15 and written == [5, 5, 5]
    assert calls == [(12, 2 * len(tree.questions))]
    acq = dict(Prediction.objects.filter(model_version=version).values_list("subject_id", "acquisition"))
    on_active = np.array([acq[s.pk] for s in active])
    assert sorted(on_active[on_active > 0]) == pytest.approx((np.arange(12) + 1)[12 - (on_active > 0).sum():] / 12)
    assert [a for pk, a in acq.items() if pk not in {s.pk for s in active}] == [None] * 3
    priority = dict(Subject.objects.filter(pk__in=[s.pk for s in active]).values_list("pk", "priority"))
    assert np.argmax([priority[s.pk] for s in active]) == np.argmax(on_active)
