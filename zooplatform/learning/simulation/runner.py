"""The simulation loop: simulated volunteers on the real platform, against two baselines, in one run.

Arms
----
``platform``
    A throwaway project (slug ``sim-<seed>-platform-<token>``) with the galaxies, the project's learning
    settings as configured (BALD acquisition, machine on) and the clump task off (simulated volunteers draw
    no boxes). Volunteers arrive in sessions (:class:`~.population.VolunteerPopulation`); each asks the REAL
    selector (``subjects_serve``, its gold schedule and "never the same galaxy twice") for a few galaxies
    at a time, and answers each through the REAL ``classification_submit``, whose aggregation task runs at
    once (:func:`tasks_inline`: Celery's tasks executed in this process instead of by a worker), so
    ``classification_aggregate`` updates posteriors and skills and retires subjects, online. A round is a
    fixed budget of human classifications; after each round the REAL ``retrain_run`` trains a candidate
    (``LearningSettings.train_preset`` / ``train_overrides``), promotes it if it beats the promoted model on
    the fixed validation set, and then scores (``score_run``): acquisition-rank priorities, and the machine's
    evidence, which can retire subjects (reason "machine").
``random_priority``
    The same loop, the same volunteers and sessions, in its own project, with ``acquisition="random"``:
    the model is still trained and still adds machine evidence, only the priorities it sets are random.
    So the difference between the two arms is active learning alone (the cleanest ablation).
``fixed40``
    Galaxy Zoo 2: every galaxy gets exactly ``fixed_votes`` (40) classifications from the same population
    (distinct volunteers, drawn by activity, when there are at least 40), labelled by majority vote per
    question along the tree (``aggregation.TreeAggregator`` with ``"majority"``, then the same
    ``consensus_path`` the platform labels with). No selector, no model: it needs no database. Per round,
    the budget-matched best case (galaxies completed one after another, in a random order) is reported.

Gold-standard galaxies (one in eight) never retire and are left out of every metric; the platform's
classifications of them are counted as human votes spent (they are what trains the volunteers' skills).

Metrics (per arm, per round and final; :func:`arm_metrics`)
-----------------------------------------------------------
``votes_per_retired``   every human classification so far (gold included) / galaxies retired so far
``votes_per_retired_no_gold``  the same without the classifications of gold galaxies
``votes_on_retired_per_retired``  classifications of retired galaxies only / galaxies retired
``retired_fraction``    retired / non-gold galaxies
``accuracy``            retired galaxies whose label (``Retirement.label["answers"]``) has the true answer to
                        the first question; ``path_accuracy``: the whole path is the true path;
                        ``per_question``: agreement on each question both paths visit
``model_accuracy``      the promoted model's most probable first answer (MC-dropout mean) vs the truth, over
                        all galaxies; ``model_accuracy_val`` over the fixed validation galaxies only (never
                        trained on); null where no model runs
``speedup_vs_fixed40``  fixed40's votes per retired / this arm's
"""
from __future__ import annotations

import logging
import random
import secrets
import time
import uuid
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from collections.abc import Callable

import numpy as np
import pandas as pd

from aggregation import TreeAggregator

from .population import PopulationConfig, VolunteerPopulation, VotePool
from .sources import GalaxySet, galaxies_load

logger = logging.getLogger(__name__)

ARMS = ("platform", "random_priority", "fixed40")
PLATFORM_ARMS = ("platform", "random_priority")
ACQUISITION = {"platform": "bald", "random_priority": "random"}

#: Training for the simulation on a CPU: the "tiny" preset with timm's 0.4 M-parameter ``test_resnet``
#: (batch norm, no layer scale), which the classifier's benchmarks found to learn from a few hundred
#: images from scratch where the preset's ``test_convnext`` only learns the commonest answer, at 64 px,
#: 20 epochs (about 20 s on one CPU thread for 250 galaxies). Override with ``--train-overrides``.
DEFAULT_TRAIN_OVERRIDES = {"model": "test_resnet_tree", "image_size": 64, "epochs": 20, "batch_size": 32,
                           "patience": 8, "lr": 2e-3}


@dataclass(frozen=True)
class SimulationConfig:
    """One simulation run.

    subjects, volunteers : galaxies and population size. rounds : retraining rounds; votes_per_round :
    human classifications per round (default 3 * subjects: with the default settings the platform retires
    about nine galaxies in ten within the 18 votes per galaxy of six rounds). serve_batch : galaxies a volunteer's client
    asks the selector for at a time. settings : ``LearningSettings`` fields for the simulated projects
    (e.g. ``{"min_votes": 1}``); train_preset / train_overrides : its training fields. keep : leave the
    projects (and their volunteers) in the database for inspection. torch_threads : CPU threads for
    training and scoring in this process (None: torch's default). 1 by default: the loop is one sequential
    process, and on a CPU shared with other work one thread trained ten times faster than two
    oversubscribed threads waiting for each other (0.7 s against 8 s for the same tiny fit).
    """

    source: str = "synthetic"
    subjects: int = 300
    volunteers: int = 100
    rounds: int = 6
    votes_per_round: int | None = None
    seed: int = 0
    image_size: int = 64
    arms: tuple[str, ...] = ARMS
    fixed_votes: int = 40
    serve_batch: int = 5
    train_preset: str = "tiny"
    train_overrides: dict = field(default_factory=lambda: dict(DEFAULT_TRAIN_OVERRIDES))
    settings: dict = field(default_factory=dict)
    population: PopulationConfig = field(default_factory=PopulationConfig)
    keep: bool = False
    torch_threads: int | None = 1

    def __post_init__(self):
        unknown = set(self.arms) - set(ARMS)
        if unknown:
            raise ValueError(f"unknown arms {sorted(unknown)}; known arms: {', '.join(ARMS)}")
        if self.subjects < 2 or self.volunteers < 1 or self.rounds < 1:
            raise ValueError("a simulation needs at least 2 subjects, 1 volunteer and 1 round")

    @property
    def budget_per_round(self) -> int:
        return int(self.votes_per_round or 3 * self.subjects)

    def describe(self) -> dict:
        out = asdict(self)
        out["arms"] = list(self.arms)
        out["votes_per_round"] = self.budget_per_round
        return out


# ------------------------------------------------------------------------------------------- tasks
@contextmanager
def tasks_inline(timings: dict[str, float] | None = None):
    """Run every task the platform sends (``app.send_task``: aggregation after a submission, scoring
    after a promotion, queue refreshes) at once, in this process, with the task's own code
    (``Task.apply``, Celery's eager execution; ``CELERY_TASK_ALWAYS_EAGER`` does not cover
    ``send_task``). Nothing reaches the broker, and submissions skip the Redis aggregation list
    (:func:`~zooplatform.classify.services.aggregation_direct`), so no worker of a running platform sees
    the simulation's tasks. Exceptions propagate. ``timings`` collects seconds per task name."""
    from zooplatform.celery import app
    from zooplatform.classify.services import aggregation_direct

    timings = timings if timings is not None else {}
    app.loader.import_default_modules()  # the tasks modules, as a worker imports them at start

    def send_task(name, args=None, kwargs=None, **options):
        start = time.perf_counter()
        try:
            return app.tasks[name].apply(args=list(args or ()), kwargs=dict(kwargs or {}), throw=True)
        finally:
            timings[name] = timings.get(name, 0.0) + time.perf_counter() - start

    shadowed = "send_task" in vars(app)
    previous = vars(app).get("send_task")
    app.send_task = send_task
    trace = logging.getLogger("celery.app.trace")  # one "Task ... succeeded" line per vote otherwise
    level = trace.level
    trace.setLevel(max(level, logging.WARNING))
    try:
        with aggregation_direct():
            yield timings
    finally:
        trace.setLevel(level)
        if shadowed:
            app.send_task = previous
        else:
            del app.send_task


# ------------------------------------------------------------------------------------------- answers
class Answerer:
    """A volunteer's answer to a galaxy: the population's tree walk (synthetic), or the next real vote
    (realvotes)."""

    def __init__(self, galaxies: GalaxySet, population: VolunteerPopulation, seed: int):
        self.galaxies = galaxies
        self.population = population
        self.tree = galaxies.tree
        self.pool = VotePool(galaxies.vote_counts, seed=seed) if galaxies.vote_counts is not None else None
        if self.pool is not None:
            self.answers_ = self.tree[self.tree.first].answer_names

    def reset(self) -> Answerer:
        if self.pool is not None:
            self.pool.reset()
        return self

    def __call__(self, volunteer: int, galaxy: int, visit: int = 0) -> list[tuple[str, str]]:
        if self.pool is not None:
            return [(self.tree.first, self.answers_[self.pool.draw(galaxy)])]
        return self.population.answer(self.tree, volunteer, galaxy, self.galaxies.truth[galaxy], visit)


# ------------------------------------------------------------------------------------------- results
@dataclass
class ArmRun:
    """One arm's rows (one per round), final metrics and bookkeeping."""

    name: str
    rounds: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    project_slug: str | None = None
    project_id: int | None = None
    timings: dict = field(default_factory=lambda: defaultdict(float))
    checks: dict = field(default_factory=dict)


def _path_metrics(labels: list[list[tuple[str, str]]], truths: list[tuple[tuple[str, str], ...]], first: str) -> dict:
    """Accuracy of labelled paths against the true paths: first question, whole path, per question."""
    if not labels:
        return {"accuracy": None, "path_accuracy": None, "per_question": {}}
    first_ok = [dict(lab).get(first) == dict(tru).get(first) for lab, tru in zip(labels, truths)]
    path_ok = [tuple(lab) == tuple(tru) for lab, tru in zip(labels, truths)]
    agree: dict[str, list[bool]] = defaultdict(list)
    for lab, tru in zip(labels, truths):
        lab_d, tru_d = dict(lab), dict(tru)
        for q in lab_d.keys() & tru_d.keys():
            agree[q].append(lab_d[q] == tru_d[q])
    return {"accuracy": float(np.mean(first_ok)), "path_accuracy": float(np.mean(path_ok)),
            "per_question": {q: {"accuracy": round(float(np.mean(v)), 4), "n": len(v)} for q, v in agree.items()}}


def _ratio(a: float, b: float) -> float | None:
    return float(a) / float(b) if b else None


# ------------------------------------------------------------------------------------------- fixed40
def fixed_arm_run(*, galaxies: GalaxySet, population: VolunteerPopulation, answerer: Answerer,
                  config: SimulationConfig) -> ArmRun:
    """Galaxy Zoo 2: ``fixed_votes`` classifications for every non-gold galaxy, majority vote along the
    tree. See the module docstring."""
    from zooplatform.learning.services.aggregate import consensus_path

    start = time.perf_counter()
    arm = ArmRun("fixed40")
    tree = galaxies.tree
    k = config.fixed_votes
    rng = np.random.default_rng([int(config.seed), 909])
    evaluate = np.flatnonzero(~galaxies.gold)
    distinct = population.n >= k
    answerer.reset()
    rows = []
    per_galaxy = Counter()
    for g in evaluate.tolist():
        # Distinct voters, drawn by activity; with fewer volunteers than votes, everyone once and then
        # repeat visits (each an independent answer).
        who = rng.choice(population.n, size=min(k, population.n), replace=False, p=population.activity_).tolist()
        if not distinct:
            who += rng.choice(population.n, size=k - population.n, p=population.activity_).tolist()
        visits = Counter()
        for v in who:
            for q, a in answerer(int(v), g, visits[v]):
                rows.append((g, int(v), q, a))
            visits[v] += 1
            per_galaxy[g] += 1
    votes = pd.DataFrame(rows, columns=["subject_id", "user_id", "question", "answer"])
    fit = TreeAggregator(tree, method="majority", vote_cap=k).fit(votes)
    index = {int(s): i for i, s in enumerate(fit.subject_ids_.tolist())}
    labels = {}
    for g in evaluate.tolist():
        i = index[g]
        post = {q.name: {a.name: float(fit.posterior_[q.name][i, j]) for j, a in enumerate(q.answers)}
                for q in tree.questions}
        labels[g] = [(step["question"], step["answer"]) for step in consensus_path(tree, post)]
    arm.timings["fixed40_total"] = time.perf_counter() - start

    order = rng.permutation(evaluate)
    n_eval = len(evaluate)
    spent = 0
    for r in range(1, config.rounds + 1):
        spent = min(spent + config.budget_per_round, k * n_eval)
        done = order[: spent // k].tolist()
        arm.rounds.append(_fixed_row(r, spent, done, labels, galaxies, n_eval, tree.first))
    arm.final = _fixed_row(None, k * n_eval, evaluate.tolist(), labels, galaxies, n_eval, tree.first)
    arm.final["model_accuracy"] = None
    arm.checks = {"votes_per_galaxy_min": int(min(per_galaxy.values())), "votes_per_galaxy_max": int(max(per_galaxy.values())),
                  "distinct_volunteers_per_galaxy": distinct,
                  "note": ("every galaxy's voters are distinct volunteers" if distinct else
                           f"only {population.n} volunteers for {k} votes per galaxy: voters repeat")}
    if answerer.pool is not None:
        arm.checks["pool_exhausted_draws"] = answerer.pool.exhausted_
    return arm


def _fixed_row(r, spent, done, labels, galaxies, n_eval, first) -> dict:
    metrics = _path_metrics([labels[g] for g in done], [galaxies.truth[g] for g in done], first)
    return {"round": r, "human_votes": int(spent), "gold_votes": 0, "retired": len(done),
            "retired_fraction": len(done) / n_eval, "votes_per_retired": _ratio(spent, len(done)),
            "votes_per_retired_no_gold": _ratio(spent, len(done)),
            "votes_on_retired_per_retired": 40.0 if done else None, "retired_by_reason": {"vote_cap": len(done)},
            **metrics, "model_accuracy": None, "model_accuracy_val": None}


# ------------------------------------------------------------------------------------------- platform arms
@dataclass
class _ArmDb:
    project_id: int
    slug: str
    workflow_version_id: int
    galaxy_of: dict[int, int]        # subject pk -> galaxy index
    volunteer_ids: list[int]         # population index -> Volunteer pk
    gold_pks: set[int]


def arm_project_create(*, arm: str, galaxies: GalaxySet, config: SimulationConfig, token: str) -> _ArmDb:
    """The arm's throwaway project: workflow (the galaxies' tree, no clump task), learning settings,
    subjects (with the same random tie-break order in every arm) and volunteers."""
    from zooplatform.classify.services import volunteer_get_or_create
    from zooplatform.galaxies.models import Subject
    from zooplatform.galaxies.services import project_bootstrap, subjects_create_from_arrays
    from zooplatform.learning.models import LearningSettings
    from zooplatform.workflows.models import default_box_task
    from zooplatform.workflows.selectors import workflow_active_for_project
    from zooplatform.workflows.services import workflow_version_create

    slug = f"sim-{config.seed}-{arm.replace('_', '-')}-{token}"
    project = project_bootstrap(slug=slug, name=f"Simulation {arm} (seed {config.seed}, {token})")
    version = workflow_version_create(workflow=workflow_active_for_project(project=project),
                                      tree=galaxies.tree.to_dict(), box_task={**default_box_task(), "enabled": False})
    learning = {
        "acquisition": ACQUISITION[arm], "detector_enabled": False, "machine_enabled": galaxies.has_images,
        "train_preset": config.train_preset, "train_overrides": dict(config.train_overrides),
        # Retraining happens once per round, from the simulator; a beat of a running platform sharing this
        # database never finds these projects due.
        "retrain_after_retirements": 10 ** 9, "retrain_interval_hours": 1e9,
        **config.settings,
    }
    LearningSettings.objects.update_or_create(project=project, defaults=learning)
    subjects_create_from_arrays(project=project, subject_set_name="simulation", subjects=galaxies.subjects)
    by_external = {s.external_id: i for i, s in enumerate(galaxies.subjects)}
    rows = list(Subject.objects.filter(project=project).only("pk", "external_id"))
    galaxy_of = {s.pk: by_external[s.external_id] for s in rows}
    shuffle = np.random.default_rng([int(config.seed), 808]).random(len(galaxies))
    for s in rows:
        s.shuffle = float(shuffle[galaxy_of[s.pk]])
    Subject.objects.bulk_update(rows, ["shuffle"], batch_size=2000)
    volunteers = [volunteer_get_or_create(session_key=f"sim-{token}-{arm}-{i}").pk for i in range(config.volunteers)]
    # New rows can have no queue or seen set; any such key is a leftover of reused ids (test databases).
    redis_forget(project_ids=[project.pk], volunteer_ids=volunteers)
    gold = {pk for pk, g in galaxy_of.items() if galaxies.gold[g]}
    return _ArmDb(project.pk, slug, version.pk, galaxy_of, volunteers, gold)


def arm_metrics(*, db: _ArmDb, galaxies: GalaxySet, round_: int | None, model_cache: dict) -> dict:
    """The metrics of the module docstring, read from the arm's project."""
    from django.db.models import F

    from zooplatform.classify.models import Classification
    from zooplatform.galaxies.models import Retirement

    cls = Classification.objects.filter(subject__project_id=db.project_id)
    n_votes = cls.count()
    n_gold_votes = cls.filter(subject_id__in=db.gold_pks).count()
    retirements = list(Retirement.objects.filter(subject__project_id=db.project_id)
                       .values_list("subject_id", "reason", "label"))
    retired_ids = [sid for sid, _, _ in retirements]
    on_retired = cls.filter(subject_id__in=retired_ids).count()
    after = cls.filter(subject__retirement__isnull=False, created_at__gt=F("subject__retirement__retired_at")).count()
    labels = [[(s["question"], s["answer"]) for s in (label or {}).get("answers", [])] for _, _, label in retirements]
    truths = [galaxies.truth[db.galaxy_of[sid]] for sid in retired_ids]
    n_eval = int((~galaxies.gold).sum())
    by_reason = Counter(reason for _, reason, _ in retirements)
    machine = [i for i, (_, reason, _) in enumerate(retirements) if reason == Retirement.Reason.MACHINE]
    human = sorted(set(range(len(retirements))) - set(machine))
    row = {"round": round_, "human_votes": n_votes, "gold_votes": n_gold_votes, "retired": len(retirements),
           "retired_fraction": len(retirements) / n_eval, "votes_per_retired": _ratio(n_votes, len(retirements)),
           "votes_per_retired_no_gold": _ratio(n_votes - n_gold_votes, len(retirements)),
           "votes_on_retired_per_retired": _ratio(on_retired, len(retirements)),
           "votes_after_retirement": after, "retired_by_reason": dict(by_reason),
           **_path_metrics(labels, truths, galaxies.tree.first),
           "accuracy_machine_retired": _path_metrics([labels[i] for i in machine], [truths[i] for i in machine],
                                                     galaxies.tree.first)["accuracy"],
           "accuracy_human_retired": _path_metrics([labels[i] for i in human], [truths[i] for i in human],
                                                   galaxies.tree.first)["accuracy"]}
    row.update(model_metrics(db=db, galaxies=galaxies, cache=model_cache))
    return row


def model_metrics(*, db: _ArmDb, galaxies: GalaxySet, cache: dict) -> dict:
    """The promoted morphology model's first-question accuracy over every galaxy and over the fixed
    validation galaxies (MC-dropout mean with the project's ``mc_samples``); cached per model version."""
    from zooplatform.galaxies.models import Subject
    from zooplatform.learning.models import ModelVersion
    from zooplatform.learning.services import learning_settings_get
    from zooplatform.learning.services.training import in_validation, subject_image_path

    empty = {"model_accuracy": None, "model_accuracy_val": None, "model_version": None}
    version = ModelVersion.objects.filter(project_id=db.project_id, kind=ModelVersion.Kind.MORPHOLOGY,
                                          promoted=True).first()
    if version is None or not version.checkpoint or not galaxies.has_images:
        return empty
    if version.pk not in cache:
        import classifier

        checkpoint = classifier.Checkpoint.load(version.checkpoint.path)
        subjects = list(Subject.objects.filter(project_id=db.project_id).only("pk", "image").order_by("pk"))
        scores = classifier.score(checkpoint, [subject_image_path(s) for s in subjects], [str(s.pk) for s in subjects],
                                  n_samples=learning_settings_get(project_id=db.project_id).mc_samples,
                                  acquisition=None, embeddings=False, anomaly=False)
        tree = galaxies.tree
        cols = scores.columns[tree.question_slices[tree.first]]
        predicted = [cols[j].split("_", 1)[1] for j in scores.fractions[:, tree.question_slices[tree.first]].argmax(1)]
        truth = [dict(galaxies.truth[db.galaxy_of[s.pk]])[tree.first] for s in subjects]
        ok = np.array([p == t for p, t in zip(predicted, truth)])
        val = np.array([in_validation(s.pk) for s in subjects])
        cache[version.pk] = {"model_accuracy": float(ok.mean()),
                             "model_accuracy_val": float(ok[val].mean()) if val.any() else None,
                             "model_version": version.pk,
                             "model_metrics": {k: version.metrics.get(k) for k in ("val_loss", "n_train", "n_val")}}
    return cache[version.pk]


def platform_arm_run(*, arm: str, galaxies: GalaxySet, population: VolunteerPopulation, answerer: Answerer,
                     config: SimulationConfig, token: str, created: list, on_round: Callable[[str, dict], None]) -> ArmRun:
    """One platform arm (``platform`` or ``random_priority``), see the module docstring. ``created``
    receives the arm's database handle as soon as it exists (for the cleanup)."""
    from zooplatform.classify.selectors import serving_context_get
    from zooplatform.classify.services import classification_submit, subjects_serve
    from zooplatform.galaxies.models import Subject
    from zooplatform.learning.services.cycle import retrain_run, sweep_run

    run = ArmRun(arm)
    t0 = time.perf_counter()
    db = arm_project_create(arm=arm, galaxies=galaxies, config=config, token=token)
    created.append(db)
    run.project_slug, run.project_id = db.slug, db.project_id
    run.timings["setup"] += time.perf_counter() - t0
    context = serving_context_get(project_slug=db.slug)
    serve_rng = random.Random(config.seed)
    sessions = population.sessions()
    answerer.reset()
    served_pairs: set[tuple[int, int]] = set()
    reserved = 0
    model_cache: dict = {}
    spent = 0
    budget = config.budget_per_round
    open_subjects = Subject.objects.filter(project_id=db.project_id, state=Subject.State.ACTIVE, gold__isnull=True)
    finished = False
    starved = 0
    with tasks_inline(run.timings):
        for r in range(1, config.rounds + 1):
            target = spent + budget
            while spent < target and not finished:
                session = next(sessions)
                volunteer_id = db.volunteer_ids[session.volunteer]
                done = 0
                while done < session.length and spent < target:
                    t = time.perf_counter()
                    served = subjects_serve(volunteer_id=volunteer_id, context=context, rng=serve_rng,
                                            n=min(config.serve_batch, session.length - done, target - spent))
                    run.timings["serve"] += time.perf_counter() - t
                    if not served:
                        break
                    for subject in served:
                        pair = (volunteer_id, subject.pk)
                        reserved += pair in served_pairs
                        served_pairs.add(pair)
                        g = db.galaxy_of[subject.pk]
                        path = answerer(session.volunteer, g)
                        t = time.perf_counter()
                        classification_submit(volunteer_id=volunteer_id, subject_id=subject.pk,
                                              workflow_version_id=context.workflow_version_id, key=uuid.uuid4().hex,
                                              answers=[{"question": q, "answer": a} for q, a in path])
                        run.timings["submit_and_aggregate"] += time.perf_counter() - t
                        spent += 1
                        done += 1
                starved = 0 if done else starved + 1
                # Nothing left to retire, or no volunteer can be served anything new: the arm is over.
                if not open_subjects.exists() or starved >= 3 * population.n:
                    finished = True
            # The periodic batch re-aggregation (hourly in production, by beat): EM over every vote,
            # skills and class priors re-learned, the machine recalibrated on the human decisions.
            t = time.perf_counter()
            sweep_run(project_id=db.project_id)
            run.timings["sweep"] += time.perf_counter() - t
            if galaxies.has_images:
                t = time.perf_counter()
                before = dict(run.timings)
                outcome = retrain_run(project_id=db.project_id, kind="morphology", reason=f"simulation round {r}")
                elapsed = time.perf_counter() - t
                scored = run.timings.get("learning.score", 0.0) - before.get("learning.score", 0.0)
                run.timings["retrain"] += elapsed - scored
                run.timings["score"] += scored
                retrain = {"promoted": outcome.get("promoted"), "skipped": outcome.get("skipped"),
                           "model_version": outcome.get("model_version"),
                           "rejected_because": (outcome.get("metrics") or {}).get("rejected_because")}
            else:
                retrain = {"skipped": "no images: nothing to train on"}
            t = time.perf_counter()
            row = arm_metrics(db=db, galaxies=galaxies, round_=r, model_cache=model_cache)
            run.timings["metrics"] += time.perf_counter() - t
            row["retrain"] = retrain
            row["elapsed_s"] = round(time.perf_counter() - t0, 1)
            run.rounds.append(row)
            on_round(arm, row)
            if finished:
                break
    run.final = {k: v for k, v in run.rounds[-1].items() if k not in ("retrain",)}
    run.checks = {"served_twice_to_same_volunteer": reserved, "classifications": spent,
                  "stopped_early": finished, "rounds_run": len(run.rounds)}
    if answerer.pool is not None:
        run.checks["pool_exhausted_draws"] = answerer.pool.exhausted_
    return run


# ------------------------------------------------------------------------------------------- cleanup
def simulation_cleanup(*, project_ids: list[int], volunteer_ids: list[int]) -> dict:
    """Delete the simulation's projects, their subjects, classifications, models and files, its
    volunteers and their Redis keys. Touches nothing else."""
    from django.core.files.storage import default_storage

    from zooplatform.classify.models import Classification, Volunteer
    from zooplatform.galaxies.models import Project, Subject
    from zooplatform.learning.models import ModelVersion

    files = [f for f in Subject.objects.filter(project_id__in=project_ids).values_list("image", flat=True) if f]
    files += [f for f in ModelVersion.objects.filter(project_id__in=project_ids).values_list("checkpoint", flat=True) if f]
    deleted = {"classifications": Classification.objects.filter(subject__project_id__in=project_ids).delete()[1]
               .get("classify.Classification", 0)}
    deleted["volunteers"] = Volunteer.objects.filter(pk__in=volunteer_ids).delete()[1].get("classify.Volunteer", 0)
    deleted["subjects"] = Subject.objects.filter(project_id__in=project_ids).delete()[1].get("galaxies.Subject", 0)
    deleted["projects"] = Project.objects.filter(pk__in=project_ids).delete()[1].get("galaxies.Project", 0)
    for name in files:
        try:
            default_storage.delete(name)
        except OSError:
            logger.warning("could not delete %s", name, exc_info=True)
    redis_forget(project_ids=project_ids, volunteer_ids=volunteer_ids)
    deleted["files"] = len(files)
    return deleted


def redis_forget(*, project_ids: list[int], volunteer_ids: list[int]) -> None:
    """Drop the selector's Redis keys of these projects (queue, gold, freshness) and volunteers (seen sets)."""
    from zooplatform.classify import queue

    r = queue.client()
    if r is None:
        return
    keys = [k for p in project_ids for k in (queue.queue_key(p), queue.gold_key(p), queue.fresh_key(p))]
    keys += [queue.seen_key(v) for v in volunteer_ids]
    for start in range(0, len(keys), 1000):
        r.delete(*keys[start:start + 1000])


# ------------------------------------------------------------------------------------------- the run
def config_check(config: SimulationConfig) -> None:
    """Fail before anything runs on learning settings or training fields the platform does not have."""
    from classifier.train import TrainConfig
    from zooplatform.learning.models import LearningSettings

    known = {f.name for f in LearningSettings._meta.concrete_fields} - {"id", "project", "updated_at"}
    unknown = sorted(set(config.settings) - known)
    if unknown:
        raise ValueError(f"unknown learning settings {unknown}; known: {', '.join(sorted(known))}")
    TrainConfig.preset(config.train_preset, **config.train_overrides)  # raises on an unknown preset or field


def simulation_run(config: SimulationConfig, *, on_round: Callable[[str, dict], None] | None = None,
                   on_message: Callable[[str], None] | None = None) -> dict:
    """Run every arm of ``config`` and return the report: ``{"platform": {...}, "random_priority": {...},
    "fixed40": {...}, "rounds": {...}, "config": ..., ...}`` (arms not run are absent). See the module
    docstring. The throwaway projects are deleted at the end (also after an error) unless ``config.keep``.
    """
    config_check(config)
    on_round = on_round or (lambda arm, row: None)
    say = on_message or (lambda text: None)
    started = time.perf_counter()
    t = time.perf_counter()
    galaxies = galaxies_load(config.source, config.subjects, seed=config.seed, size=config.image_size)
    population = VolunteerPopulation(config.volunteers, seed=config.seed, config=config.population)
    answerer = Answerer(galaxies, population, config.seed)
    say(f"{len(galaxies)} galaxies ({int(galaxies.gold.sum())} gold) from {config.source} in "
        f"{time.perf_counter() - t:.1f} s; {population.n} volunteers {population.describe()['counts']}")
    token = secrets.token_hex(3)
    created: list[_ArmDb] = []
    arms: dict[str, ArmRun] = {}
    threads = None
    if config.torch_threads:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(config.torch_threads)
    try:
        if "fixed40" in config.arms:
            arms["fixed40"] = fixed_arm_run(galaxies=galaxies, population=population, answerer=answerer, config=config)
            for row in arms["fixed40"].rounds:
                on_round("fixed40", row)
        for arm in PLATFORM_ARMS:
            if arm in config.arms:
                say(f"arm {arm}: {config.rounds} rounds of {config.budget_per_round} classifications")
                arms[arm] = platform_arm_run(arm=arm, galaxies=galaxies, population=population, answerer=answerer,
                                             config=config, token=token, created=created, on_round=on_round)
    finally:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        if created and not config.keep:
            deleted = simulation_cleanup(project_ids=[d.project_id for d in created],
                                         volunteer_ids=[v for d in created for v in d.volunteer_ids])
            say(f"removed the simulation projects: {deleted}")
    return simulation_report(config=config, galaxies=galaxies, population=population, arms=arms,
                             wall_s=time.perf_counter() - started, kept=[d.slug for d in created] if config.keep else [])


def simulation_report(*, config: SimulationConfig, galaxies: GalaxySet, population: VolunteerPopulation,
                      arms: dict[str, ArmRun], wall_s: float, kept: list[str]) -> dict:
    base = arms["fixed40"].final["votes_per_retired"] if "fixed40" in arms else float(config.fixed_votes)
    report: dict = {}
    for name, arm in arms.items():
        final = dict(arm.final)
        vpr = final.get("votes_per_retired")
        final["speedup_vs_fixed40"] = base / vpr if vpr else None
        final["checks"] = arm.checks
        final["timings_s"] = {k: round(v, 2) for k, v in arm.timings.items()}
        if arm.project_slug:
            final["project"] = arm.project_slug
            final["project_id"] = arm.project_id
        for row in arm.rounds:
            v = row.get("votes_per_retired")
            row["speedup_vs_fixed40"] = base / v if v else None
        report[name] = final
    target = config.fixed_votes / 10
    report["rounds"] = {name: arm.rounds for name, arm in arms.items()}
    report["config"] = config.describe()
    report["population"] = population.describe()
    first = [dict(t)[galaxies.tree.first] for t in galaxies.truth]
    report["galaxies"] = {"source": galaxies.source, "n": len(galaxies), "gold": int(galaxies.gold.sum()),
                          "has_images": galaxies.has_images, "first_answers": dict(Counter(first)),
                          "majority_answer_share": max(Counter(first).values()) / len(first),
                          "evaluated": int((~galaxies.gold).sum()), "note": galaxies.note,
                          "tree_questions": [q.name for q in galaxies.tree.questions]}
    if "platform" in report:
        p = report["platform"]
        report["target"] = {"votes_per_retired_at_most": target, "accuracy_at_least": 0.95,
                            "met": bool(p["votes_per_retired"] is not None and p["votes_per_retired"] <= target
                                        and (p["accuracy"] or 0) >= 0.95)}
    report["timings_note"] = ("seconds per part of an arm: submit_and_aggregate includes the aggregation task run "
                              "inline (learning.classification_aggregate); retrain excludes the scoring it triggers "
                              "(score, the learning.score task); metrics is this report's own measuring")
    report["wall_s"] = round(wall_s, 1)
    report["kept_projects"] = kept
    return report


def config_with(config: SimulationConfig, **changes) -> SimulationConfig:
    return replace(config, **changes)
