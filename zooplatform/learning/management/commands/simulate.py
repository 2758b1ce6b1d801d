"""manage.py simulate --source synthetic|realvotes --subjects N --volunteers M --json OUT.json

Runs the whole platform loop with simulated volunteers (the real selector, submission, aggregation,
retraining and scoring, in throwaway projects deleted at the end unless ``--keep``) against Galaxy Zoo
2's fixed 40 votes with majority vote and against random priorities, in the same run. Prints a table per
round and at the end, writes ``{"platform": {...}, "random_priority": {...}, "fixed40": {...}, ...}`` to
OUT.json and PNG plots beside it (or in ``--plots DIR``). See ``zooplatform.learning.simulation``.
"""
from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import CommandError

from zooplatform.core.management.base import DataCommand

from zooplatform.learning.simulation import ARMS, SOURCES, PopulationConfig, SimulationConfig, simulation_run
from zooplatform.learning.simulation.report import final_table, json_write, per_question_table, plots_write, round_line, table
from zooplatform.learning.simulation.runner import DEFAULT_TRAIN_OVERRIDES


def _json_object(text: str, option: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CommandError(f"{option}: a JSON object, e.g. '{{\"min_votes\": 1}}'")
    return value


class Command(DataCommand):
    help = "Simulate volunteers on the whole platform loop and compare with fixed 40 votes and random priorities."

    def add_arguments(self, parser):
        parser.add_argument("--source", choices=SOURCES, default="synthetic",
                            help="synthetic galaxies with known truth, or real GZ DECaLS vote counts replayed")
        parser.add_argument("--subjects", type=int, default=300)
        parser.add_argument("--volunteers", type=int, default=100)
        parser.add_argument("--rounds", type=int, default=6, help="retraining rounds")
        parser.add_argument("--votes-per-round", type=int, default=None,
                            help="human classifications per round (default: 3 x subjects; well under one per "
                                 "galaxy, e.g. 0.6 x subjects, is a survey's regime, where the model has unretired "
                                 "galaxies left to retire)")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--image-size", type=int, default=64, help="synthetic image side in pixels")
        parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
        parser.add_argument("--train-preset", default="tiny")
        parser.add_argument("--train-overrides", default=json.dumps(DEFAULT_TRAIN_OVERRIDES),
                            help="JSON TrainConfig fields for the simulated projects")
        parser.add_argument("--learning-settings", default="{}",
                            help='JSON LearningSettings fields for the simulated projects, e.g. \'{"min_votes": 1}\'')
        parser.add_argument("--population", default="{}",
                            help='JSON PopulationConfig fields, e.g. \'{"mix": {"expert": 0.2, "average": 0.8}}\'')
        parser.add_argument("--json", dest="json_path", required=True, help="write the report here")
        parser.add_argument("--plots", default=None, help="folder for the PNG plots (default: beside --json)")
        parser.add_argument("--keep", action="store_true", help="keep the simulated projects in the database")
        parser.add_argument("--torch-threads", type=int, default=1,
                            help="CPU threads for training and scoring (default 1: no oversubscription on a shared "
                                 "CPU; 0: torch's default)")

    def handle(self, *args, **o):
        population = _json_object(o["population"], "--population")
        if "average_skill" in population:
            population["average_skill"] = tuple(population["average_skill"])
        try:
            config = SimulationConfig(
                source=o["source"], subjects=o["subjects"], volunteers=o["volunteers"], rounds=o["rounds"],
                votes_per_round=o["votes_per_round"], seed=o["seed"], image_size=o["image_size"],
                arms=tuple(o["arms"]), train_preset=o["train_preset"],
                train_overrides=_json_object(o["train_overrides"], "--train-overrides"),
                settings=_json_object(o["learning_settings"], "--learning-settings"), population=PopulationConfig(**population),
                keep=o["keep"], torch_threads=o["torch_threads"] or None)
        except (TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        out = Path(o["json_path"])
        self.stdout.write(table([]).splitlines()[0])

        def on_round(arm: str, row: dict):
            self.stdout.write(round_line(arm, row))
            self.stdout.flush()

        try:
            report = simulation_run(config, on_round=on_round, on_message=lambda m: self.stderr.write(m))
        except (FileNotFoundError, KeyError, TypeError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        json_write(report, out)
        plots = plots_write(report, Path(o["plots"]) if o["plots"] else out.parent, prefix=out.stem)
        self.stdout.write("\nfinal\n" + final_table(report))
        self.stdout.write("\nper question (retired labels vs truth)\n" + per_question_table(report))
        if "target" in report:
            t = report["target"]
            self.stdout.write(f"\ntarget: <= {t['votes_per_retired_at_most']:g} human votes per retired galaxy at "
                              f">= {t['accuracy_at_least']:.0%} accuracy: {'met' if t['met'] else 'not met'}")
        self.stdout.write(f"wrote {out} and {len(plots)} plots in {plots[0].parent} ({report['wall_s']} s)")
