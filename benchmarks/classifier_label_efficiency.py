"""Benchmark 2: label efficiency of active learning, BALD vs random acquisition.

    .venv/bin/python benchmarks/classifier_label_efficiency.py [--quick] [--datasets synthetic ring]
        [--strategies random bald] [--seeds 0 1]

Protocol (the same for every strategy, seed by seed):

1. a labelled set of ``initial`` galaxies drawn at random from the pool (the same draw for every strategy);
2. train: warm-started from the previous round's checkpoint (from scratch in round 0), a fixed
   ``steps`` AdamW steps with the usual augmentation, no validation split (the labelled sets are too small
   for a stable one) -- the same compute for every strategy;
3. measure accuracy on a held-out test set that no strategy ever labels;
4. score the unlabelled pool with ``samples`` MC-dropout samples, let the strategy pick ``k`` galaxies,
   reveal their labels (the simulated or real votes), and go to 2 for ``rounds`` rounds.

Datasets:

* ``synthetic``: ``classifier.synthetic`` galaxies (64 px) with 40 simulated volunteers' votes on the full
  GZ DECaLS tree; BALD scores the whole tree (reach-weighted); accuracy is the share of (galaxy, question on
  its true path) pairs whose most-voted predicted answer is the known truth.
* ``ring``: the 470 real galaxies (``classifier_common``: ring label as one vote plus pseudo-counts);
  acquisition on the ring question only (``questions=["ring"]``, one vote, i.e. classic BALD on a binary
  label); accuracy of the ring prediction.

Reported: the accuracy curve (mean over seeds) per strategy, and the labels each strategy needed to reach
the random baseline's final accuracy (linear interpolation between rounds), with the saving in per cent.
Walmsley et al. (2020) found 35-60 % fewer labels with BALD; the target here is 50 %.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from classifier.acquisition import create_acquisition
from classifier.scoring import score
from classifier.train import TrainConfig, fit
from classifier_common import RESULTS, RING_TREE, machine, ring_data, save, synthetic_data, table, tree_accuracy

SETTINGS = {
    "synthetic": dict(pool=3000, test=1000, initial=100, k=100, rounds=10, steps=150, size=64),
    "ring": dict(pool=376, test=94, initial=40, k=24, rounds=8, steps=120, size=64),
}
QUICK = {
    "synthetic": dict(pool=600, test=300, initial=50, k=50, rounds=3, steps=40, size=64),
    "ring": dict(pool=376, test=94, initial=40, k=40, rounds=2, steps=40, size=64),
}


def base_config(size: int, steps: int, crop: float) -> TrainConfig:
    return TrainConfig(model="test_resnet_tree", image_size=size, crop_fraction=crop, batch_size=32, epochs=10_000,
                       max_steps=steps, lr=2e-3, weight_decay=0.05, warmup_fraction=0.05, val_fraction=0.0,
                       patience=10_000, dropout_rate=0.2, device="cpu", progress=False)


def load(dataset: str, s: dict, seed: int):
    """(data, images, pool indices, test indices, evaluate(fractions, idx) -> accuracy, acquisition kwargs, crop)."""
    if dataset == "synthetic":
        data, truths, _ = synthetic_data(s["pool"] + s["test"], seed=1000 + seed, size=s["size"])
        idx = np.random.default_rng(seed).permutation(len(data))
        test, pool = np.sort(idx[:s["test"]]), np.sort(idx[s["test"]:])

        def evaluate(fractions, where):
            return tree_accuracy(fractions, [truths[i] for i in where], data.tree)
        return data, data.image_array(s["size"]), pool, test, evaluate, {}, 1.0
    data, cat = ring_data()
    ring = cat["ring"].to_numpy()
    rng = np.random.default_rng(seed)
    test = np.sort(np.concatenate([rng.permutation(np.where(ring == c)[0])[:s["test"] // 2] for c in (0, 1)]))
    pool = np.setdiff1d(np.arange(len(data)), test)
    yes = list(RING_TREE.columns).index("ring_yes")

    def evaluate(fractions, where):
        return float(((fractions[:, yes] >= 0.5) == ring[where]).mean())
    return (data, data.image_array(s["size"], crop_fraction=0.75), pool, test, evaluate,
            {"questions": ["ring"], "total_votes": 1}, 0.75)


def run_strategy(strategy: str, data, images, pool, test, evaluate, acq_kwargs, s: dict, seed: int, crop: float,
                 samples: int, workdir: Path) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    labelled = list(rng.choice(pool, s["initial"], replace=False))
    name, _, option = strategy.partition("+")          # e.g. "bald+diverse": BALD, spread in embedding space
    diverse = option == "diverse"
    acq = create_acquisition(name, **({"seed": seed} if name == "random" else acq_kwargs))
    curve, previous = [], ""
    for r in range(s["rounds"] + 1):
        cfg = dataclasses.replace(base_config(s["size"], s["steps"], crop), seed=seed * 100 + r,
                                  init_checkpoint=previous)
        ckpt = fit(cfg, data.subset(np.asarray(labelled)), out_dir=workdir / f"{strategy}-{seed}-{r}", resume=False)
        previous = str(ckpt.path)
        torch.manual_seed(seed)
        t = score(ckpt, images[test], n_samples=samples, acquisition=None, anomaly=False, embeddings=False,
                  device="cpu", batch_size=256)
        acc = evaluate(t.fractions, test)
        curve.append((len(labelled), acc))
        print(f"    {strategy:>7} seed {seed} round {r}: {len(labelled):5d} labels, accuracy {acc:.4f}", flush=True)
        if r == s["rounds"]:
            break
        unlabelled = np.setdiff1d(pool, labelled)
        u = score(ckpt, images[unlabelled], [str(i) for i in unlabelled], n_samples=samples, acquisition=acq,
                  anomaly=False, embeddings=diverse, device="cpu", batch_size=256)
        labelled += [int(i) for i in u.select(s["k"], diverse=diverse)]
    return curve


def labels_to_reach(curve: list[tuple[float, float]], target: float) -> float:
    """Labels at which a curve first reaches ``target`` (linear interpolation); inf if it never does."""
    for (n0, a0), (n1, a1) in zip(curve, curve[1:]):
        if a0 >= target:
            return float(n0)
        if a1 >= target:
            return float(n0 + (n1 - n0) * (target - a0) / (a1 - a0))
    return float(curve[0][0]) if curve[0][1] >= target else float("inf")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["synthetic", "ring"], choices=list(SETTINGS))
    ap.add_argument("--strategies", nargs="+", default=["random", "bald"],
                    help="acquisition names, optionally with +diverse (e.g. bald+diverse)")
    ap.add_argument("--reuse", action="store_true",
                    help="take curves of (dataset, strategy, seed) with the same settings from the last results file "
                         "instead of recomputing them (runs are deterministic on CPU)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--samples", type=int, default=10, help="MC-dropout samples for acquisition")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {machine()}")
    out_name = "classifier_label_efficiency" + ("_quick" if args.quick else "")
    previous = {}
    if args.reuse and (RESULTS / f"{out_name}.json").exists():
        previous = json.loads((RESULTS / f"{out_name}.json").read_text())["results"]
    results = {}
    for dataset in args.datasets:
        s = (QUICK if args.quick else SETTINGS)[dataset]
        print(f"\n## {dataset}: {s}", flush=True)
        curves = {st: [] for st in args.strategies}
        t0 = time.perf_counter()
        old = previous.get(dataset, {})
        for si, seed in enumerate(args.seeds):
            todo = []
            for st in args.strategies:
                if old.get("settings") == s and old.get("seeds", [0])[si:si + 1] == [seed] and st in old.get("curves", {}):
                    curves[st].append([tuple(p) for p in old["curves"][st][si]])
                    print(f"    {st:>7} seed {seed}: reused from the previous results file", flush=True)
                else:
                    todo.append(st)
            if not todo:
                continue
            data, images, pool, test, evaluate, acq_kwargs, crop = load(dataset, s, seed)
            with tempfile.TemporaryDirectory() as tmp:
                for st in todo:
                    curves[st].append(run_strategy(st, data, images, pool, test, evaluate, acq_kwargs, s, seed, crop,
                                                   args.samples, Path(tmp)))
        mean = {st: [(c[0][i][0], float(np.mean([cv[i][1] for cv in c]))) for i in range(len(c[0]))]
                for st, c in curves.items()}
        target = mean["random"][-1][1] if "random" in mean else float("nan")
        n_random = mean["random"][-1][0] if "random" in mean else float("nan")
        rows = []
        for i in range(len(next(iter(mean.values())))):
            rows.append({"labels": mean[args.strategies[0]][i][0],
                         **{st: mean[st][i][1] for st in args.strategies}})
        print()
        print(table(rows, ["labels", *args.strategies], floatfmt=".4f"))
        summary = []
        for st in args.strategies:
            need = labels_to_reach(mean[st], target)
            summary.append({"strategy": st, "final accuracy": mean[st][-1][1], "labels to reach random's final":
                            need, "saving vs random": f"{100 * (1 - need / n_random):.0f} %"
                            if np.isfinite(need) else "never reached"})
        print()
        print(table(summary, ["strategy", "final accuracy", "labels to reach random's final", "saving vs random"],
                    floatfmt=".4f"))
        print(f"# {dataset}: {time.perf_counter() - t0:.0f} s")
        results[dataset] = {"settings": s, "seeds": args.seeds, "curves": curves, "mean": mean, "summary": summary,
                            "seconds": time.perf_counter() - t0}
        for key, value in old.get("curves", {}).items():       # keep other strategies' curves for later reuse
            if key not in curves and old.get("settings") == s and old.get("seeds") == args.seeds:
                results[dataset]["curves"][key] = value
    print(f"\nwritten {save(out_name, {'results': {**previous, **results}})}")


if __name__ == "__main__":
    main()
