"""Benchmark 2: label efficiency of active learning, BALD vs random acquisition.

    .venv/bin/python benchmarks/classifier_label_efficiency.py [--quick] [--datasets synthetic ring]
        [--strategies random bald bald:bar] [--seeds 0 1] [--population balanced|survey]
        [--protocol converged|warm] [--jobs 2]

Protocol (the same for every strategy, seed by seed):

1. a labelled set of ``initial`` galaxies drawn at random from the pool (the same draw for every strategy);
2. train, with the usual augmentation and no validation split (the labelled sets are too small for a
   stable one):

   * ``converged`` (the default): from scratch every round, for ``epochs`` passes over the labelled set
     (at least ``steps`` AdamW steps), so that every round's model is trained about as far as its labels
     allow, whatever their number -- the usual protocol of active-learning studies, and the one
     Ash & Adams (2020) recommend over warm starts;
   * ``warm``: warm-started from the previous round's checkpoint, a fixed ``steps`` per round. Cheaper,
     but the later rounds' models are limited by compute, not labels: 1,100 random labels gave 0.815 after
     the warm rounds, 0.818 trained from scratch for the same 1,650 steps and 0.848 for 4,000 steps. With
     the labels' value hidden that way, BALD and random differed by 10-14 % of labels at most;

3. measure, on a held-out test set that no strategy ever labels, the accuracy and vote-fraction RMSE of
   the whole tree and of every question on its own;
4. score the unlabelled pool with ``samples`` MC-dropout samples, let the strategy pick ``k`` galaxies,
   reveal their labels (the simulated or real votes), and go to 2 for ``rounds`` rounds.

Strategies are ``NAME[:QUESTION][+diverse]``: an acquisition function (``random``, ``bald``,
``bald-balanced``, ``entropy``, ``margin``); with ``:QUESTION`` it scores that question alone (its
information times the chance that a volunteer reaches it), as Walmsley et al. (2020) ran BALD for "smooth"
and for "bar", and is judged on that question's accuracy; without, it scores the whole tree (reach-weighted;
``bald-balanced`` gives each question its share of the batch) and is judged on the whole tree;
``+diverse`` spreads each batch out in embedding space. The model always learns the whole tree from the
same labels, and one ``random`` curve per seed is the baseline of every strategy.

Datasets:

* ``synthetic``: ``classifier.synthetic`` galaxies (64 px) with 40 simulated volunteers' votes on the full
  GZ DECaLS tree. ``--population balanced`` is the generator's default mix (every branch of the tree about
  equally common); ``--population survey`` is the mix of a real magnitude-limited survey, measured from the
  real Galaxy Zoo 2 votes of the Stripe 82 sample (:func:`classifier_common.gz2_kind_mix`: 75 % smooth,
  14 % spiral, 3 % edge-on, 3 % mergers...). The whole tree's accuracy is the share of (galaxy, question on
  its true path) pairs whose most-voted predicted answer is the known truth; a question's accuracy is the
  same over the test galaxies whose true path reaches it.
* ``ring``: the 470 real galaxies (``classifier_common``: ring label as one vote plus pseudo-counts);
  acquisition on the ring question only (one vote, i.e. classic BALD on a binary label); accuracy of the
  ring prediction. The test set is 94 galaxies, so use several seeds.

Reported: the mean curves over seeds, and per strategy the labels from which it reaches the random
baseline's final accuracy and final RMSE on the strategy's own measure and stays there (linear interpolation
between rounds), with the saving in per cent; and every question's final accuracy under every strategy.
Walmsley et al. (2020) found 35-60 % fewer labels with BALD, depending on the question; the target here is
50 %.

What the measures can show (2026-12-06, 3-5 seeds, 900 labels, converged): BALD saves about half the labels
or more on a question it is aimed at, and at most a fifth on the whole tree, most when aimed at the first
question.

Aimed at one question (``--set rounds=8 epochs=50 test=2000``, 3 seeds): ``bald:has-spiral-arms`` on the
survey mix reached random's 900-label accuracy with 194 labels, 78 % fewer. Walmsley et al. (2020) aimed
BALD at "smooth" and at "bar", so the same here. ``bald:smooth-or-featured`` (survey mix, 1,673 s for 2
seeds of both curves beside a CI run, 565 s for the third): that question is 99 % right from 100 labels under every
strategy, so its accuracy shows nothing; its vote-fraction RMSE, their measure, reached random's 900-label
0.0873 with 431 labels, 52 % fewer, lower than random's at 23 of the 24 (seed, round) pairs from 200
labels. Seeds 3 and 4 added (``--seeds 0 1 2 3 4 --reuse``; 1,408 s for the new seeds, 2,084 s for seeds
0-2 run again): 54 % fewer over the 5 seeds (random's 0.0876 with 410 labels), lower at 37 of 40 pairs.
It also helped the whole tree, which the model learns from the same labels: 0.8427 vs random's 0.8283 at
900, random's value with 725 labels, 19 % fewer (ahead at 31 of 40 pairs, at 900 in every seed: bar,
bulge, spiral and merging gained, how-rounded lost 0.03). Whole-tree ``bald`` on the same 5 seeds (1,191 s
+ 1,418 s) saved 12 % (0.8352), behind random from 200 to 700 labels, and was behind the smooth-aimed
strategy's whole tree at 35 of 40 pairs and at 900 in every seed. ``bald:bar`` on the balanced mix (on the
survey mix random stays at chance on bar; 1,099 s + 630 s): random's 900-label bar accuracy (0.539) with
448 labels, 50 % fewer, ahead at 18 of the 24 pairs (one seed behind until 700 labels); but random's bar
curve rises only from 0.516 to 0.539 over 800 labels, so that figure is fragile, and on RMSE the saving is
8 %; the whole tree fell (0.789 vs 0.805: how-rounded and merging lost the labels bar took). Seeds 3 and 4
(1,544 s) confirm that: 49 % fewer on their mean curves (random 0.517 -> 0.533), yet ahead at only 9 of
16 pairs, seed 4 behind from 500 to 800 labels and ahead only at 900. ``bald:merging`` (survey mix, 2
seeds, 548 s) saved nothing: merging stayed at 0.80 against random's 0.81.

On the whole tree, BALD sends most labels to featured galaxies (in one model's top 100 of a survey pool: 90
spirals, no ellipticals, most for their uncertain smooth-or-featured vote fractions, already 99 % right),
gaining on bar, bulge and spiral questions and losing on how-rounded, while the whole-tree accuracy counts
every (galaxy, question) pair on the true path: on the survey mix, 70 % of them are smooth-or-featured,
how-rounded and merging.
``bald-balanced`` gives each question its share of the batch (another model's top 100: 20 ellipticals and 49
spirals, where BALD's held none and 81), yet on the survey mix it saved 14 % of the labels and BALD 8 % (3
seeds; 0.8392 and 0.8419 vs random's 0.8311 at 900), both losing on how-rounded (0.88 vs 0.96), with a seed's
curve moving by up to 0.035 from one round to the next. On the balanced mix, whole-tree BALD stays within 0.01
of random at every round, slightly behind until the last (0.8053 vs 0.8052 at 900 labels). Why how-rounded
resists: on the survey mix three random labels in four are ellipticals, so random is already aimed at it.
BALD aimed at how-rounded alone (2 seeds, ``--strategies random bald:how-rounded``, 2,710 s) led random by
0.20 at 200 labels (0.79 vs 0.59) and 0.04 at 500, but both end near 0.96, and it needed 782 labels for
random's 900-label 0.958: 13 % fewer (random's 300- and 500-label values: 39 % and 23 % fewer), while the
rest of the tree fell (whole tree 0.796 vs 0.831). Spreading ``bald-balanced``'s batches out in embedding
space did not help either (``bald-balanced+diverse``, the same 2 seeds, 1,062 s with random's curves reused:
0.8299 vs 0.8305 at 900, never reaching it; how-rounded 0.89 again). The ring set's
random curve is flat from 40 to 232 labels (0.62-0.69 on 94 test galaxies), so no strategy can show a saving
there: the model's ceiling with all 376 labels is about 0.68, and neither 128 px nor fine-tuning from a model
pretrained on synthetic galaxies raised it, and radial brightness profiles with a logistic regression, no
CNN at all, stop at the same 0.68 (``classifier_realdata_cv.py``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch

from classifier.acquisition import create_acquisition
from classifier.scoring import score
from classifier.train import TrainConfig, fit
from classifier_common import (RESULTS, RING_TREE, fraction_rmse, gz2_kind_mix, machine, ring_data, save,
                               synthetic_data, table, tree_accuracy)

SETTINGS = {
    "synthetic": dict(pool=3000, test=1000, initial=100, k=100, rounds=10, steps=150, epochs=100, size=64),
    "ring": dict(pool=376, test=94, initial=40, k=24, rounds=8, steps=120, epochs=100, size=64),
}
QUICK = {
    "synthetic": dict(pool=600, test=300, initial=50, k=50, rounds=3, steps=40, epochs=20, size=64),
    "ring": dict(pool=376, test=94, initial=40, k=40, rounds=2, steps=40, epochs=20, size=64),
}
BATCH = 32


def base_config(size: int, steps: int, crop: float) -> TrainConfig:
    return TrainConfig(model="test_resnet_tree", image_size=size, crop_fraction=crop, batch_size=BATCH, epochs=10_000,
                       max_steps=steps, lr=2e-3, weight_decay=0.05, warmup_fraction=0.05, val_fraction=0.0,
                       patience=10_000, dropout_rate=0.2, device="cpu", progress=False)


def population(name: str):
    """The synthetic kind mix: ``balanced`` (the generator's default) or ``survey`` (GZ2's, from real votes)."""
    from classifier.synthetic import SyntheticConfig
    return SyntheticConfig() if name == "balanced" else SyntheticConfig(kind_weights=gz2_kind_mix())


def load(dataset: str, s: dict, seed: int, mix: str = "balanced"):
    """(data, images, pool indices, test indices, evaluate(fractions, idx) -> {measure: (accuracy, rmse)},
    acquisition kwargs, crop). The measures are ``tree`` (the dataset's headline) and each question."""
    if dataset == "synthetic":
        data, truths, _ = synthetic_data(s["pool"] + s["test"], seed=1000 + seed, size=s["size"],
                                         config=population(mix))
        idx = np.random.default_rng(seed).permutation(len(data))
        test, pool = np.sort(idx[:s["test"]]), np.sort(idx[s["test"]:])
        reached = {q for i in test for q in truths[i]}

        def evaluate(fractions, where):
            t = [truths[i] for i in where]
            out = {"tree": (tree_accuracy(fractions, t, data.tree),
                            fraction_rmse(fractions, data.votes[where], data.tree))}
            for q in data.tree.questions:
                if q.name in reached:
                    out[q.name] = (tree_accuracy(fractions, t, data.tree, [q.name]),
                                   fraction_rmse(fractions, data.votes[where], data.tree, [q.name]))
            return out
        return data, data.image_array(s["size"]), pool, test, evaluate, {}, 1.0
    data, cat = ring_data()
    ring = cat["ring"].to_numpy()
    rng = np.random.default_rng(seed)
    test = np.sort(np.concatenate([rng.permutation(np.where(ring == c)[0])[:s["test"] // 2] for c in (0, 1)]))
    pool = np.setdiff1d(np.arange(len(data)), test)
    yes = list(RING_TREE.columns).index("ring_yes")

    def evaluate(fractions, where):
        m = (float(((fractions[:, yes] >= 0.5) == ring[where]).mean()),
             fraction_rmse(fractions, data.votes[where], data.tree, ["ring"]))
        return {"tree": m, "ring": m}
    return (data, data.image_array(s["size"], crop_fraction=0.75), pool, test, evaluate,
            {"questions": ["ring"], "total_votes": 1}, 0.75)


def parse_strategy(strategy: str) -> tuple[str, str, bool]:
    """``NAME[:QUESTION][+diverse]`` -> (acquisition name, question or "", diverse)."""
    head, _, option = strategy.partition("+")
    if option not in ("", "diverse"):
        raise ValueError(f"strategy {strategy!r}: the only option is +diverse")
    name, _, question = head.partition(":")
    return name, question, option == "diverse"


def measure_of(strategy: str) -> str:
    """The measure a strategy is judged on: its question, or the whole tree."""
    return parse_strategy(strategy)[1] or "tree"


def round_steps(s: dict, n_labelled: int, protocol: str) -> int:
    """Optimizer steps of one round: ``s["steps"]`` (warm), or ``s["epochs"]`` passes over the labelled set
    and at least ``s["steps"]`` (converged)."""
    return s["steps"] if protocol == "warm" else max(s["steps"], math.ceil(s["epochs"] * n_labelled / BATCH))


def run_strategy(strategy: str, data, images, pool, test, evaluate, acq_kwargs, s: dict, seed: int, crop: float,
                 samples: int, workdir: Path, protocol: str = "converged") -> list[dict]:
    """One strategy's curve: per round ``{"labels": n, measure: [accuracy, rmse], ...}``."""
    rng = np.random.default_rng(seed)
    labelled = list(rng.choice(pool, s["initial"], replace=False))
    name, question, diverse = parse_strategy(strategy)
    if question:
        acq_kwargs = {**acq_kwargs, "questions": [question]}
    if name == "random":
        acq_kwargs = {"seed": seed}
    elif name not in ("bald", "bald-balanced", "entropy"):   # only the vote-outcome functions count votes
        acq_kwargs = {k: v for k, v in acq_kwargs.items() if k != "total_votes"}
    acq = create_acquisition(name, **acq_kwargs)
    curve, previous = [], ""
    for r in range(s["rounds"] + 1):
        cfg = dataclasses.replace(base_config(s["size"], round_steps(s, len(labelled), protocol), crop),
                                  seed=seed * 100 + r, init_checkpoint=previous if protocol == "warm" else "")
        ckpt = fit(cfg, data.subset(np.asarray(labelled)), out_dir=workdir / f"{strategy}-{seed}-{r}", resume=False)
        previous = str(ckpt.path)
        torch.manual_seed(seed)
        t = score(ckpt, images[test], n_samples=samples, acquisition=None, anomaly=False, embeddings=False,
                  device="cpu", batch_size=256)
        point = {"labels": len(labelled), **{m: list(v) for m, v in evaluate(t.fractions, test).items()}}
        curve.append(point)
        acc, rmse = point[measure_of(strategy)]
        print(f"    {strategy:>7} seed {seed} round {r}: {len(labelled):5d} labels, {measure_of(strategy)} accuracy "
              f"{acc:.4f}, fraction RMSE {rmse:.4f}", flush=True)
        if r == s["rounds"]:
            break
        unlabelled = np.setdiff1d(pool, labelled)
        u = score(ckpt, images[unlabelled], [str(i) for i in unlabelled], n_samples=samples, acquisition=acq,
                  anomaly=False, embeddings=diverse, device="cpu", batch_size=256)
        labelled += [int(i) for i in u.select(s["k"], diverse=diverse)]
    return curve


_LOADED: dict = {}


def run_job(dataset: str, run: dict, strategy: str, seed: int, threads: int) -> list[dict]:
    """One (strategy, seed) curve, in this process or a worker process (which loads its own data)."""
    torch.set_num_threads(threads)
    s = run["settings"]
    key = (dataset, json.dumps(s, sort_keys=True), seed, run["population"])
    if key not in _LOADED:
        _LOADED.clear()
        _LOADED[key] = load(dataset, s, seed, run["population"])
    data, images, pool, test, evaluate, acq_kwargs, crop = _LOADED[key]
    if run["votes"]:
        acq_kwargs = {**acq_kwargs, "total_votes": run["votes"]}
    with tempfile.TemporaryDirectory() as tmp:
        return run_strategy(strategy, data, images, pool, test, evaluate, acq_kwargs, s, seed, crop,
                            run["samples"], Path(tmp), run["protocol"])


def labels_to_reach(curve: list[tuple[float, float]], target: float, higher_is_better: bool = True) -> float:
    """Labels from which a curve of (labels, value) reaches ``target`` and stays there (linear interpolation
    on the last crossing); inf if its last point falls short.

    A curve that touches the target once and falls back has not reached it: on the ring set's 94 test
    galaxies, BALD's mean curve touched random's final accuracy at 88 labels and ended 0.07 below it, which
    "first reaches" would have called 69 % fewer labels.
    """
    sign = 1.0 if higher_is_better else -1.0
    pts = [(n, sign * v) for n, v in curve]
    target = sign * target
    last_below = max((i for i, (_, v) in enumerate(pts) if v < target), default=None)
    if last_below is None:
        return float(pts[0][0])
    if last_below == len(pts) - 1:
        return float("inf")
    (n0, a0), (n1, a1) = pts[last_below], pts[last_below + 1]
    return float(n0 + (n1 - n0) * (target - a0) / (a1 - a0))


def mean_curve(curves: list[list[dict]], measure: str) -> np.ndarray:
    """(rounds + 1, 3): labels, accuracy and RMSE of ``measure``, each the mean over seeds."""
    return np.mean([[[p["labels"], *p[measure]] for p in c] for c in curves], axis=0)


def summarise(curves: dict[str, list], strategies: list[str]) -> tuple[list[dict], list[dict], list[dict]]:
    """Three tables: the mean curves (each strategy on its own measure, beside random on the same measure);
    per strategy, the labels needed to reach the random baseline's final accuracy and final fraction RMSE
    on that measure; and every measure's final accuracy under every strategy."""
    measures = list(dict.fromkeys(measure_of(st) for st in strategies))
    mean = {st: mean_curve(curves[st], measure_of(st)) for st in strategies}
    # random on every strategy's measure, and on the whole tree, where a question's strategy is also judged
    base = {m: mean_curve(curves["random"], m) for m in dict.fromkeys(["tree", *measures])} if "random" in curves else {}
    labels = mean[strategies[0]][:, 0]
    rows = []
    for i, n in enumerate(labels):
        row = {"labels": int(n)}
        for m in measures:
            if m in base:
                row[f"random {m} acc"] = base[m][i, 1]
            row.update({f"{st} acc": mean[st][i, 1] for st in strategies if measure_of(st) == m and st != "random"})
        rows.append(row)

    def saving(st_curve: np.ndarray, random_curve: np.ndarray, col: int, better: bool) -> tuple[float, str]:
        need = labels_to_reach(list(zip(st_curve[:, 0], st_curve[:, col])), random_curve[-1, col], better)
        return need, f"{100 * (1 - need / random_curve[-1, 0]):.0f} %" if np.isfinite(need) else "never reached"

    summary = []
    for st in strategies:
        m = measure_of(st)
        row = {"strategy": st, "measure": m, "final accuracy": mean[st][-1, 1], "final rmse": mean[st][-1, 2]}
        if m in base:
            for metric, col, better in (("accuracy", 1, True), ("rmse", 2, False)):
                row[f"labels to random's final {metric}"], row[f"saving ({metric})"] = saving(
                    mean[st], base[m], col, better)
        if m != "tree" and base:
            # what aiming at one question did for the whole tree, which the model learns from the same labels
            row["saving, whole tree (accuracy)"] = saving(mean_curve(curves[st], "tree"), base["tree"], 1, True)[1]
        summary.append(row)
    every = sorted({k for c in curves.values() for run in c for k in run[-1] if k != "labels"},
                   key=lambda k: (k != "tree", k))
    final = [{"measure": m, **{st: float(np.nanmean([c[-1].get(m, [np.nan])[0] for c in curves[st]]))
                               for st in strategies}} for m in every]
    return rows, summary, final


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["synthetic", "ring"], choices=list(SETTINGS))
    ap.add_argument("--strategies", nargs="+", default=["random", "bald"],
                    help="NAME[:QUESTION][+diverse]: an acquisition function, for one question of the tree or the "
                         "whole tree, optionally spread out in embedding space (e.g. bald:bar, bald+diverse)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--protocol", choices=["converged", "warm"], default="converged",
                    help="retrain from scratch for `epochs` passes each round, or warm-start for a fixed `steps`")
    ap.add_argument("--population", choices=["balanced", "survey"], default="balanced",
                    help="synthetic kind mix: the generator's balanced default, or a survey's (Galaxy Zoo 2's "
                         "Stripe 82 sample, from its real votes: three quarters smooth)")
    ap.add_argument("--votes", type=int, default=0,
                    help="volunteers N in BALD's vote-outcome predictive (default 40 synthetic, 1 ring); 1 = the "
                         "information about one volunteer's answer, i.e. classic BALD on the answer itself")
    ap.add_argument("--samples", type=int, default=10, help="MC-dropout samples for acquisition")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=INT",
                    help="override the dataset settings, e.g. --set pool=12000 test=3000")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per process")
    ap.add_argument("--jobs", type=int, default=1,
                    help="run the (strategy, seed) curves in this many processes at once (each with --threads)")
    ap.add_argument("--reuse", action="store_true",
                    help="take curves of (dataset, strategy, seed) run with the same options from the results file "
                         "instead of recomputing them, also those a stopped run had finished (runs repeat exactly "
                         "on one machine for a given --threads; another CPU gives slightly different curves)")
    ap.add_argument("--out", default="", help="results file name in benchmarks/results, without .json "
                                              "(default: classifier_label_efficiency[_quick])")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# {machine()}")
    out_name = args.out or "classifier_label_efficiency" + ("_quick" if args.quick else "")
    previous = {}
    if args.reuse and (RESULTS / f"{out_name}.json").exists():
        previous = json.loads((RESULTS / f"{out_name}.json").read_text())["results"]
    results = {}
    for dataset in args.datasets:
        s = dict((QUICK if args.quick else SETTINGS)[dataset])
        for kv in args.set:
            key, _, value = kv.partition("=")
            if key not in s or not value.isdigit():
                ap.error(f"--set {kv}: expected KEY=INT with KEY one of {', '.join(s)}")
            s[key] = int(value)
        # the ring set has one question to acquire for: strategies for another question skip it
        strategies = [st for st in args.strategies if dataset == "synthetic" or measure_of(st) in ("tree", "ring")]
        run = {"settings": s, "protocol": args.protocol, "population": args.population, "votes": args.votes,
               "samples": args.samples, "threads": args.threads}
        print(f"\n## {dataset}: {json.dumps(run)}", flush=True)
        t0 = time.perf_counter()
        old = previous.get(dataset, {})
        stored = old.get("curves_by_seed", {}) if old.get("run") == run else {}
        kept = {(st, seed): stored[st][str(seed)] for st in strategies for seed in args.seeds
                if str(seed) in stored.get(st, {})}
        jobs = [(st, seed) for seed in args.seeds for st in strategies if (st, seed) not in kept]
        for st, seed in kept:
            print(f"    {st:>7} seed {seed}: reused from the previous results file", flush=True)
        by_seed = {st: dict(v) for st, v in stored.items()}     # other strategies' and seeds' curves stay

        def keep(st: str, seed: int, curve) -> None:
            # each curve is written as soon as it is done, so that --reuse resumes a run that was stopped
            kept[st, seed] = curve
            by_seed.setdefault(st, {})[str(seed)] = curve
            partial = {"run": run, "curves_by_seed": by_seed, "complete": False}
            save(out_name, {"results": {**previous, **results, dataset: partial}})
        if args.jobs > 1 and len(jobs) > 1:
            with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
                futures = {ex.submit(run_job, dataset, run, st, seed, args.threads): (st, seed) for st, seed in jobs}
                for future in as_completed(futures):
                    keep(*futures[future], future.result())
        else:
            for st, seed in jobs:
                keep(st, seed, run_job(dataset, run, st, seed, args.threads))
        curves = {st: [kept[st, seed] for seed in args.seeds] for st in strategies}
        rows, summary, final = summarise(curves, strategies)
        for t in (rows, summary, final):
            print()
            print(table(t, list(dict.fromkeys(k for r in t for k in r)), floatfmt=".4f"))
        seconds = time.perf_counter() - t0
        print(f"# {dataset}: {seconds:.0f} s")
        results[dataset] = {"run": run, "seeds": args.seeds, "curves_by_seed": by_seed, "mean": rows,
                            "summary": summary, "final_by_measure": final, "seconds": seconds}
    print(f"\nwritten {save(out_name, {'results': {**previous, **results}})}")


if __name__ == "__main__":
    main()
