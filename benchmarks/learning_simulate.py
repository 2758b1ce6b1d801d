"""Benchmark: the whole platform loop with simulated volunteers, against fixed 40 votes (GZ2) and random
priorities, on synthetic galaxies with known truth and on replayed real GZ DECaLS votes.

    .venv/bin/python benchmarks/learning_simulate.py [--quick] [--sources synthetic realvotes]
        [--subjects N] [--volunteers M] [--rounds R] [--votes-per-round V] [--seed S]
        [--learning-settings JSON] [--label NAME] [--database-url URL]

Each source runs ``zooplatform.learning.simulation.simulation_run`` (what ``manage.py simulate`` runs) in a
scratch database: a fresh SQLite file in a temporary folder by default, or ``--database-url`` (a
PostgreSQL database you created for it; never the ``test`` one). Results go to
``benchmarks/results/learning_simulate[_quick][_LABEL]_<source>.json`` with a summary plot beside them
(``..._summary.png``: votes per retired galaxy, retired fraction, accuracy and model accuracy per round).

Settings: full = 1,000 synthetic galaxies (64 px) and 300 volunteers, 8 rounds of 600 classifications
(human effort scarce against the galaxies, as on a survey: the model trained on the first retirements
has unretired galaxies left to decide, which is where GZX's machine saved its votes; with 3 votes per
galaxy per round the volunteers retire nearly everything before a model exists);
2,000 real-vote galaxies and 300 volunteers, 6 rounds of 4,000 (no training: no images); an arm stops
early once every galaxy is retired. ``--quick``: 300 galaxies / 100 volunteers, 6 rounds of 900 (the
``manage.py simulate`` defaults).
Target (the issue): 10x fewer human votes per retired galaxy than fixed 40 at >= 95 % accuracy; GZX
(Beck et al. 2018) was 8x faster than GZ2 with humans plus a machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"

FULL = {"synthetic": {"subjects": 1000, "volunteers": 300, "rounds": 8, "votes_per_round": 600},
        "realvotes": {"subjects": 2000, "volunteers": 300, "rounds": 6, "votes_per_round": 4000}}
QUICK = {"synthetic": {"subjects": 300, "volunteers": 100, "rounds": 6, "votes_per_round": None},
         "realvotes": {"subjects": 300, "volunteers": 100, "rounds": 6, "votes_per_round": None}}


def django_setup(database_url: str | None) -> None:
    os.environ.setdefault("ZOO_VAR_DIR", tempfile.mkdtemp(prefix="zoo-simulate-"))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "zooplatform.settings")
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def machine() -> str:
    import torch

    return (f"{os.uname().machine}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sources", nargs="+", default=["synthetic", "realvotes"], choices=["synthetic", "realvotes"])
    for name in ("subjects", "volunteers", "rounds", "votes-per-round"):
        parser.add_argument(f"--{name}", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learning-settings", default="{}", help="JSON LearningSettings fields")
    parser.add_argument("--train-overrides", default=None, help="JSON TrainConfig fields")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="CPU threads for training (1: no oversubscription on a shared CPU; 0: torch's default)")
    parser.add_argument("--label", default="", help="suffix of the result files (e.g. a settings variant)")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    django_setup(args.database_url)

    from zooplatform.learning.simulation import SimulationConfig, simulation_run
    from zooplatform.learning.simulation.report import final_table, json_write, per_question_table, plots_write, round_line

    RESULTS.mkdir(parents=True, exist_ok=True)
    for source in args.sources:
        sizes = dict((QUICK if args.quick else FULL)[source])
        for key in sizes:
            if getattr(args, key) is not None:
                sizes[key] = getattr(args, key)
        extra = {"train_overrides": json.loads(args.train_overrides)} if args.train_overrides else {}
        config = SimulationConfig(source=source, seed=args.seed, settings=json.loads(args.learning_settings),
                                  torch_threads=args.torch_threads or None, **sizes, **extra)
        name = "learning_simulate" + ("_quick" if args.quick else "") + (f"_{args.label}" if args.label else "")
        name += f"_{source}"
        print(f"== {source}: {config.describe()}", flush=True)
        start = time.perf_counter()
        report = simulation_run(config, on_round=lambda arm, row: print(round_line(arm, row), flush=True),
                                on_message=lambda m: print(m, flush=True))
        report["machine"] = machine()
        report["database"] = os.environ.get("DATABASE_URL", "sqlite (scratch)").split("@")[-1]
        out = json_write(report, RESULTS / f"{name}.json")
        plots_write(report, RESULTS, prefix=name, summary_only=True)
        print(final_table(report))
        print(per_question_table(report))
        print(f"{out} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
