"""Benchmark 2: human effort on real Galaxy Zoo votes (no machine).

Each galaxy's real votes (DECaLS: ~40 per galaxy, GZ2 Stripe 82: ~20) are replayed in a random order
through the aggregator, which stops asking once it retires the galaxy. Reported against the all-votes
majority: votes used per retired galaxy, the fraction retired, agreement, and the budget ratio
(all votes / votes used, counting every galaxy: a galaxy that never retires uses all its votes).

Honest set-up
-------------
* The files hold vote *counts*, not who voted, so per-volunteer skills cannot be learned: every vote
  comes from one anonymous "crowd" agent. SWAP/Dawid-Skene learn that agent's confusion matrix from
  gold = the all-votes majority of a random 20% *training* split of galaxies; the vote-fraction
  model learns its population prior from the same training split. Everything is evaluated on the
  other 80%, which nothing was fitted on.
* Nothing is tuned on the evaluation split. SWAP runs with the GZX defaults (prior 0.3, detection 0.99,
  rejection 0.004, initial skills 0.5). The vote-fraction model uses confidence 0.95 chosen a priori
  (it is the agreement target) and the vote budget (40 for DECaLS; the training split's median for
  GZ2). ``--tune`` adds a SWAP variant whose thresholds are chosen on the *training* split only.
* Agreement excludes galaxies whose all-votes count is an exact tie (no majority to agree with).

Run: ``.venv/bin/python benchmarks/aggregation_real_votes.py [--seeds 3]``.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from aggregation_common import REALDATA, Timer, save, table

from aggregation import DawidSkene, MajorityVote, Swap, VoteFraction  # noqa: E402


def load_decals() -> tuple[str, np.ndarray, list[str]]:
    d = pd.read_csv(REALDATA / "galaxy-zoo-bayesian-cnn/zoobot/tests/test_examples/panoptes.csv")
    cols = ["smooth-or-featured_smooth", "smooth-or-featured_featured-or-disk", "smooth-or-featured_artifact"]
    return "GZ DECaLS (4,000 galaxies)", d[cols].to_numpy(np.int64), ["smooth", "featured", "artifact"]


def load_gz2() -> tuple[str, np.ndarray, list[str]]:
    t = pd.read_csv(REALDATA / "galaxyzoo2/tables/table5.csv.gz")
    cols = ["t01_smooth_or_features_a01_smooth_count", "t01_smooth_or_features_a02_features_or_disk_count",
            "t01_smooth_or_features_a03_star_or_artifact_count"]
    return "GZ2 Stripe 82 (19,761 galaxies)", t[cols].to_numpy(np.int64), ["smooth", "featured", "artifact"]


def expand(counts: np.ndarray, galaxies: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Votes (n, 3) [galaxy, crowd, answer] of ``galaxies``, in one random global order (so each
    galaxy's votes come in a random order)."""
    c = counts[galaxies]
    K = c.shape[1]
    gal = np.repeat(np.repeat(galaxies, K), c.reshape(-1))
    ans = np.repeat(np.tile(np.arange(K), len(galaxies)), c.reshape(-1))
    perm = rng.permutation(len(gal))
    return np.column_stack([gal[perm], np.zeros(len(gal), np.int64), ans[perm]])


def majority_label(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Plurality answer and whether it is unique (ties have no majority to agree with)."""
    top = counts.max(axis=1, keepdims=True)
    return counts.argmax(axis=1), (counts == top).sum(axis=1) == 1


def evaluate(result, counts_test: np.ndarray, truth: np.ndarray, unique: np.ndarray) -> dict:
    total = counts_test.sum(axis=1)
    retired = result.retired & (result.label >= 0)
    used = np.where(result.retired, result.retired_at_vote, total)      # unretired galaxies use every vote
    label_all = np.where(retired, result.label, result.posterior.argmax(axis=1))
    ok = unique
    return {
        "retired": float(retired.mean()),
        "votes/retired": float(result.retired_at_vote[retired].mean()) if retired.any() else float("nan"),
        "agree(retired)": float((result.label == truth)[retired & ok].mean()) if (retired & ok).any() else float("nan"),
        "votes/galaxy": float(used.mean()),
        "all votes/galaxy": float(total.mean()),
        "x fewer": float(total.sum() / used.sum()),
        "agree(all)": float((label_all == truth)[ok].mean()),
    }


def run_dataset(name: str, counts: np.ndarray, seed: int, tune: bool) -> list[dict]:
    rng = np.random.default_rng(seed)
    n = len(counts)
    idx = rng.permutation(n)
    train, test = np.sort(idx[: n // 5]), np.sort(idx[n // 5:])
    plural, unique = majority_label(counts)
    featured = (2 * counts[:, 1] > counts.sum(axis=1)).astype(np.int64)    # binary: featured vs not
    bin_counts = np.column_stack([counts[:, 0] + counts[:, 2], counts[:, 1]])
    bin_unique = 2 * counts[:, 1] != counts.sum(axis=1)
    budget = int(np.median(counts[train].sum(axis=1)))
    rows = []

    def add(task, method, result, cts, truth, uniq, seconds, params=""):
        row = {"dataset": name, "task": task, "method": method, "params": params, "seed": seed,
               **evaluate(result, cts[test], truth[test], uniq[test]), "seconds": seconds}
        rows.append(row)

    # ---------------- binary: featured vs not (SWAP's home ground)
    gold_bin = {int(g): int(featured[g]) for g in train}
    train_votes = expand(bin_counts, train, rng)
    test_votes = expand(bin_counts, test, rng)
    swap_votes = np.concatenate([train_votes, test_votes])          # gold first: the crowd agent trains
    with Timer() as t:
        r = Swap().replay(swap_votes, gold=gold_bin)
    add("featured?", "SWAP (GZX defaults)", _subset(r, test), bin_counts, featured, bin_unique, t.wall)
    if tune:
        best = tune_swap(bin_counts, featured, bin_unique, train, rng)
        with Timer() as t:
            r = Swap(**best).replay(swap_votes, gold=gold_bin)
        add("featured?", "SWAP, thresholds tuned on train", _subset(r, test), bin_counts, featured, bin_unique, t.wall,
            params=f"detect={best['detect']}, reject={best['reject']}")
    vf = VoteFraction(n_classes=2, budget=budget, confidence=0.95, vote_cap=budget).fit_prior(bin_counts[train])
    with Timer() as t:
        r = vf.replay(test_votes)
    add("featured?", "vote_fraction (c=0.95)", _subset(r, test), bin_counts, featured, bin_unique, t.wall,
        params=f"budget={budget}")
    res_vf = rows[-1]
    if tune:
        conf = tune_confidence(bin_counts, featured, bin_unique, train, budget, rng)
        with Timer() as t:
            r = VoteFraction(n_classes=2, budget=budget, confidence=conf, vote_cap=budget).fit_prior(bin_counts[train]).replay(test_votes)
        add("featured?", "vote_fraction, c tuned on train", _subset(r, test), bin_counts, featured, bin_unique, t.wall,
            params=f"c={conf}, budget={budget}")
    k = max(1, int(round(res_vf["votes/galaxy"])))
    with Timer() as t:
        r = MajorityVote(n_classes=2, vote_cap=k).replay(test_votes)
    add("featured?", "majority of first k votes (k = vote_fraction's votes/galaxy)", _subset(r, test), bin_counts,
        featured, bin_unique, t.wall, params=f"k={k}")

    # ---------------- three answers: plurality of smooth / featured / artifact
    gold3 = {int(g): int(plural[g]) for g in train}
    train3, test3 = expand(counts, train, rng), expand(counts, test, rng)
    with Timer() as t:
        r = DawidSkene(n_classes=3, consensus=0.99).replay(np.concatenate([train3, test3]), gold=gold3)
    add("smooth/featured/artifact", "Dawid-Skene online (consensus 0.99)", _subset(r, test), counts, plural, unique, t.wall)
    vf3 = VoteFraction(n_classes=3, budget=budget, confidence=0.95, vote_cap=budget).fit_prior(counts[train])
    with Timer() as t:
        r = vf3.replay(test3)
    add("smooth/featured/artifact", "vote_fraction (c=0.95)", _subset(r, test), counts, plural, unique, t.wall,
        params=f"budget={budget}")
    k3 = max(1, int(round(rows[-1]["votes/galaxy"])))
    with Timer() as t:
        r = MajorityVote(n_classes=3, vote_cap=k3).replay(test3)
    add("smooth/featured/artifact", "majority of first k votes (k = vote_fraction's votes/galaxy)", _subset(r, test),
        counts, plural, unique, t.wall, params=f"k={k3}")
    return rows


def _subset(result, galaxies: np.ndarray):
    """Rows of ``result`` for ``galaxies`` (ids are galaxy indices), in that order."""
    from dataclasses import replace
    pos = np.searchsorted(result.subject_ids, galaxies)
    if not np.array_equal(result.subject_ids[pos], galaxies):
        raise AssertionError("a test galaxy is missing from the result")
    take = lambda a: None if a is None else a[pos]  # noqa: E731
    return replace(result, subject_ids=galaxies, posterior=result.posterior[pos], counts=result.counts[pos],
                   n_votes=result.n_votes[pos], retired_at_vote=result.retired_at_vote[pos], reason=result.reason[pos],
                   label=result.label[pos], gold=result.gold[pos], log_belief=take(result.log_belief),
                   evidence=take(result.evidence))


def tune_swap(bin_counts, featured, bin_unique, train, rng) -> dict:
    """Pick SWAP thresholds on the training split only: inner 50/50 split of the training galaxies,
    skills learned on one half, the cheapest setting with >= 95% agreement on the other half."""
    inner = rng.permutation(train)
    a, b = np.sort(inner[: len(inner) // 2]), np.sort(inner[len(inner) // 2:])
    votes = np.concatenate([expand(bin_counts, a, rng), expand(bin_counts, b, rng)])
    gold = {int(g): int(featured[g]) for g in a}
    best, best_used = {}, np.inf
    for detect in (0.9, 0.95, 0.99, 0.999, 0.9999):
        for reject in (0.05, 0.01, 0.004, 0.001, 0.0001):
            r = _subset(Swap(detect=detect, reject=reject).replay(votes, gold=gold), b)
            ev = evaluate(r, bin_counts[b], featured[b], bin_unique[b])
            if ev["agree(all)"] >= 0.95 and ev["votes/galaxy"] < best_used:
                best, best_used = {"detect": detect, "reject": reject}, ev["votes/galaxy"]
    return best or {"detect": 0.9999, "reject": 0.0001}


def tune_confidence(bin_counts, featured, bin_unique, train, budget, rng) -> float:
    """The vote-fraction confidence chosen on the training split only (inner 50/50 split: prior fitted
    on one half, the cheapest confidence with >= 95% agreement on the other)."""
    inner = rng.permutation(train)
    a, b = np.sort(inner[: len(inner) // 2]), np.sort(inner[len(inner) // 2:])
    votes = expand(bin_counts, b, rng)
    best, best_used = 0.99, np.inf
    for conf in (0.75, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99):
        agg = VoteFraction(n_classes=2, budget=budget, confidence=conf, vote_cap=budget).fit_prior(bin_counts[a])
        ev = evaluate(_subset(agg.replay(votes), b), bin_counts[b], featured[b], bin_unique[b])
        if ev["agree(all)"] >= 0.95 and ev["votes/galaxy"] < best_used:
            best, best_used = conf, ev["votes/galaxy"]
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="random splits and vote orders to average over")
    ap.add_argument("--no-tune", action="store_true", help="skip the SWAP variant tuned on the training split")
    args = ap.parse_args()
    if not REALDATA.is_dir():
        raise SystemExit(f"real data folder {REALDATA} is absent")
    all_rows = []
    for loader in (load_decals, load_gz2):
        name, counts, _ = loader()
        for seed in range(args.seeds):
            all_rows += run_dataset(name, counts, seed, tune=not args.no_tune)
    df = pd.DataFrame(all_rows)
    keys = ["dataset", "task", "method"]
    metrics = ["retired", "votes/retired", "agree(retired)", "votes/galaxy", "all votes/galaxy", "x fewer", "agree(all)"]
    mean = df.groupby(keys, sort=False)[metrics].mean().reset_index()
    sd = df.groupby(keys, sort=False)[["x fewer", "agree(all)"]].std().reset_index()
    mean["x fewer sd"] = sd["x fewer"]
    mean["agree(all) sd"] = sd["agree(all)"]
    print(f"Benchmark 2: real votes replayed in random order ({args.seeds} splits/orders; mean, sd over seeds)\n")
    params = df.groupby(keys, sort=False)["params"].agg(lambda v: "; ".join(dict.fromkeys(v))).reset_index()
    mean["params (per seed)"] = params["params"]
    print(table(mean.to_dict("records"), keys + metrics + ["x fewer sd", "agree(all) sd"]))
    print()
    print(table(mean.to_dict("records"), keys + ["params (per seed)"]))
    print("\nx fewer = all votes / votes used (unretired galaxies use all their votes);"
          " agree = label vs all-votes majority, ties excluded.")
    path = save("aggregation_real_votes", {"seeds": args.seeds, "rows": all_rows, "mean": mean.to_dict("records")})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
