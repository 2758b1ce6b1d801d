"""Benchmark: what matching hard galaxies to skilled volunteers buys, as an ablation of the whole loop.

    .venv/bin/python benchmarks/learning_matching.py [--seeds 0 1 2] [--share 0.5] [--subjects 300]
        [--volunteers 100] [--learning-settings JSON]

For each seed, the platform arm of the simulator (``zooplatform.learning.simulation``: the real selector,
submission, aggregation, retraining and scoring, with simulated experts, average volunteers, random
clickers and contrarians walking the tree) runs twice on the same galaxies and the same population: once
with ``hard_share = 0`` (no matching) and once with ``hard_share = --share``. Everything else is the
same, including the settings given with ``--learning-settings`` (by default ``skilled_min_gold = 5``, so
that in a run of a few thousand classifications volunteers can be judged on enough gold galaxies). A
volunteer's answer to a galaxy is fixed by (seed, volunteer, galaxy), so the two runs differ only in who is
served what; the spread over seeds says how much of a difference is noise.

Reported per run and as the mean over seeds: human votes per retired galaxy (gold classifications
excluded), the accuracy of the retired labels on the first question and on the whole path (against the
known truth), and per question along the path. Results: ``benchmarks/results/learning_matching.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learning_simulate import RESULTS, django_setup, machine  # noqa: E402

METRICS = ("votes_per_retired_no_gold", "accuracy", "path_accuracy", "retired_fraction")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--share", type=float, default=0.5, help="hard_share of the matching arm")
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--volunteers", type=int, default=100)
    parser.add_argument("--learning-settings", default='{"skilled_min_gold": 5}',
                        help="JSON LearningSettings fields for both runs")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    django_setup(args.database_url)

    from zooplatform.learning.simulation import SimulationConfig, simulation_run

    common = json.loads(args.learning_settings)
    runs = []
    print(f"# {machine()}", flush=True)
    for seed in args.seeds:
        for share in (0.0, args.share):
            config = SimulationConfig(source="synthetic", seed=seed, subjects=args.subjects, volunteers=args.volunteers,
                                      arms=("platform",), settings={**common, "hard_share": share})
            t = time.perf_counter()
            arm = simulation_run(config)["platform"]
            row = {"seed": seed, "hard_share": share, **{m: arm[m] for m in METRICS},
                   "per_question": {q: v["accuracy"] for q, v in arm["per_question"].items()},
                   "seconds": time.perf_counter() - t}
            runs.append(row)
            print(f"seed {seed} hard_share {share}: votes/retired {row['votes_per_retired_no_gold']:.2f}, "
                  f"accuracy {row['accuracy']:.4f}, path accuracy {row['path_accuracy']:.4f} "
                  f"({row['seconds']:.0f} s)", flush=True)

    print("\n| seed | hard_share | votes per retired (no gold) | first-question accuracy | path accuracy |"
          "\n|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['seed']} | {r['hard_share']} | {r['votes_per_retired_no_gold']:.2f} | {r['accuracy']:.4f} | "
              f"{r['path_accuracy']:.4f} |")
    summary = {}
    for share in (0.0, args.share):
        rows = [r for r in runs if r["hard_share"] == share]
        summary[share] = {m: (float(np.mean([r[m] for r in rows])), float(np.std([r[m] for r in rows])))
                          for m in METRICS}
        s = summary[share]
        print(f"| mean ± sd | {share} | {s['votes_per_retired_no_gold'][0]:.2f} ± {s['votes_per_retired_no_gold'][1]:.2f}"
              f" | {s['accuracy'][0]:.4f} ± {s['accuracy'][1]:.4f} | {s['path_accuracy'][0]:.4f} ± "
              f"{s['path_accuracy'][1]:.4f} |")
    questions = sorted({q for r in runs for q in r["per_question"]})
    print("\n| question | " + " | ".join(f"hard_share {s}" for s in summary) + " |\n|---|" + "---|" * len(summary))
    for q in questions:
        cells = [np.mean([r["per_question"][q] for r in runs if r["hard_share"] == s and q in r["per_question"]])
                 for s in summary]
        print(f"| {q} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "learning_matching.json"
    out.write_text(json.dumps({"runs": runs, "summary": {str(k): v for k, v in summary.items()},
                               "settings": common, "share": args.share, "machine": machine()}, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
