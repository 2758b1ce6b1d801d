"""Benchmark 3: simulated volunteers with heterogeneous skills on subjects with known truth.

Volunteers: 55% good (accuracy 0.80-0.95), 20% mediocre (0.60-0.75), 15% random clickers (answer
uniformly at random), 10% contrarians (pick a wrong answer 80% of the time). Activity is heavy-tailed
(Zipf, as on Zooniverse: a few volunteers do most classifications). 5% of subjects are gold (known
answer); votes arrive in one random stream, so a volunteer's early votes come before they have seen
much gold, as in Space Warps.

1. Accuracy at the same number of votes: every subject's first v votes (v = 3, 5, 7, 10, 15) go to
   majority vote, SWAP (skills learned from gold, no retirement), Dawid–Skene EM (unsupervised and
   semi-supervised with the gold clamped) and the online Dawid–Skene replay. Accuracy on the
   non-gold subjects against the truth.
2. Retirement: votes per retired subject and accuracy with SWAP's GZX thresholds and Dawid–Skene's
   consensus rule, against majority vote with a fixed vote count.
3. The machine (GZX human+machine): a model's predictions as one more agent, calibrated on the gold
   subjects only. A good model should cut human votes; a confident-but-random one must be
   discounted (no loss of accuracy).

SWAP's initial skills (0.5) make a volunteer who has seen no gold count for nothing; with 5% gold and
heavy-tailed activity most volunteers have seen little gold, which the "initial skills 0.7" rows show.

Run: ``.venv/bin/python benchmarks/aggregation_simulated.py [--seeds 3]``.
"""
from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from aggregation_common import Timer, save, table

from aggregation import DawidSkene, MachineAgent, MajorityVote, Swap  # noqa: E402


def simulate(rng: np.random.Generator, n_subjects: int, n_users: int, votes_per_subject: int, K: int,
             gold_share: float = 0.05):
    truth = rng.integers(0, K, n_subjects)
    kind = rng.choice(4, n_users, p=[0.55, 0.20, 0.15, 0.10])       # good, mediocre, random, contrarian
    acc = np.where(kind == 0, rng.uniform(0.80, 0.95, n_users), rng.uniform(0.60, 0.75, n_users))
    activity = 1.0 / np.arange(1, n_users + 1) ** 0.8
    activity = rng.permutation(activity / activity.sum())
    n = n_subjects * votes_per_subject
    s = np.repeat(np.arange(n_subjects), votes_per_subject)
    u = rng.choice(n_users, n, p=activity)
    r = rng.random(n)
    wrong = (truth[s] + rng.integers(1, K, n)) % K
    a = np.where(r < acc[u], truth[s], wrong)
    a = np.where(kind[u] == 2, rng.integers(0, K, n), a)
    a = np.where(kind[u] == 3, np.where(r < 0.8, wrong, truth[s]), a)
    order = rng.permutation(n)                                      # one random time order
    votes = np.column_stack([s[order], u[order], a[order]])
    gold_ids = rng.choice(n_subjects, int(gold_share * n_subjects), replace=False)
    return votes, truth, gold_ids, kind


def first_votes(votes: np.ndarray, v: int) -> np.ndarray:
    """Each subject's first ``v`` votes, time order kept."""
    s = votes[:, 0]
    order = np.argsort(s, kind="stable")
    ss = s[order]
    start = np.r_[0, np.flatnonzero(ss[1:] != ss[:-1]) + 1]
    pos = np.arange(len(ss)) - np.repeat(start, np.diff(np.r_[start, len(ss)]))
    keep = np.zeros(len(s), dtype=bool)
    keep[order[pos < v]] = True
    return votes[keep]


def accuracy(ids, posterior, truth, exclude) -> float:
    mask = ~np.isin(ids, exclude)
    return float((posterior.argmax(axis=1)[mask] == truth[ids[mask]]).mean())


def fixed_budget(rng, K: int, n_subjects: int, n_users: int) -> list[dict]:
    votes, truth, gold_ids, _ = simulate(rng, n_subjects, n_users, 15, K)
    gold = {int(g): int(truth[g]) for g in gold_ids}
    rows = []
    for v in (3, 5, 7, 10, 15):
        sub = first_votes(votes, v)
        methods = {
            "majority vote": lambda: MajorityVote(n_classes=K).fit(sub),
            "Dawid-Skene EM, unsupervised": lambda: DawidSkene(n_classes=K).fit(sub),
            "Dawid-Skene EM, gold clamped": lambda: DawidSkene(n_classes=K).fit(sub, gold=gold),
            "Dawid-Skene online (gold-trained)": lambda: _online_ds(K, sub, gold),
        }
        if K == 2:
            methods["SWAP (gold-trained, no retirement)"] = lambda: Swap(detect=1 - 1e-12, reject=1e-12).fit(sub, gold=gold)
            methods["SWAP, initial skills 0.7"] = lambda: Swap(detect=1 - 1e-12, reject=1e-12, initial_pl=0.7,
                                                             initial_pd=0.7).fit(sub, gold=gold)
        for name, make in methods.items():
            with Timer() as t:
                agg = make()
            ids, post = (agg.subject_ids_, agg.posterior_) if hasattr(agg, "subject_ids_") else agg
            rows.append({"K": K, "votes/subject": v, "method": name,
                         "accuracy": accuracy(ids, post, truth, gold_ids), "seconds": t.wall})
    return rows


def _online_ds(K, votes, gold):
    r = DawidSkene(n_classes=K, consensus=None).replay(votes, gold=gold)
    return r.subject_ids, r.posterior


def retirement(rng, n_subjects: int, n_users: int) -> list[dict]:
    votes, truth, gold_ids, _ = simulate(rng, n_subjects, n_users, 30, 2)
    gold = {int(g): int(truth[g]) for g in gold_ids}
    rows = []
    cases = {
        "SWAP (GZX defaults)": Swap(),
        "SWAP, initial skills 0.7": Swap(initial_pl=0.7, initial_pd=0.7),
        "Dawid-Skene online (consensus 0.99)": DawidSkene(n_classes=2, consensus=0.99),
    }
    for name, agg in cases.items():
        r = agg.replay(votes, gold=gold)
        rows.append(_retire_row(name, r, truth, gold_ids))
    for k in (5, 9, 15):
        r = MajorityVote(n_classes=2, vote_cap=k).replay(votes)
        rows.append(_retire_row(f"majority vote, fixed {k} votes", r, truth, gold_ids))
    return rows


def _retire_row(name, r, truth, gold_ids) -> dict:
    test = ~np.isin(r.subject_ids, gold_ids)
    ret = r.retired & test & (r.label >= 0)
    used = np.where(r.retired, r.retired_at_vote, r.n_votes)[test]
    label = np.where(ret, r.label, r.posterior.argmax(axis=1))
    return {"method": name, "retired": float(ret[test].mean()),
            "votes/retired": float(r.retired_at_vote[ret].mean()),
            "accuracy(retired)": float((r.label[ret] == truth[r.subject_ids[ret]]).mean()),
            "votes/subject": float(used.mean()),
            "accuracy(all)": float((label[test] == truth[r.subject_ids[test]]).mean())}


def machine(rng, n_subjects: int, n_users: int) -> list[dict]:
    votes, truth, gold_ids, _ = simulate(rng, n_subjects, n_users, 30, 2)
    gold = {int(g): int(truth[g]) for g in gold_ids}
    ids = np.arange(n_subjects)
    models = {
        "no machine": None,
        "excellent model (98% right, confident)": _predict(rng, truth, right=0.98),
        "good model (90% right, confident)": _predict(rng, truth, right=0.90),
        "weak model (70% right)": _predict(rng, truth, right=0.70, confident=False),
        "miscalibrated (confident, 50% right)": _predict(rng, truth, right=0.50),
        "inverted (confident, 10% right)": _predict(rng, truth, right=0.10),
    }
    rows = []
    for name, pred in models.items():
        evidence = None
        if pred is not None:
            m = MachineAgent(n_classes=2).fit(pred[gold_ids], truth[gold_ids])   # calibrated on gold only
            evidence = m.evidence(ids, pred)
        r = Swap().replay(votes, gold=gold, evidence=evidence)
        row = _retire_row(f"SWAP + {name}", r, truth, gold_ids)
        row["retired by machine alone"] = float((r.retired & (r.retired_at_vote == 0)).mean())
        rows.append(row)
    return rows


def _predict(rng, truth, right: float, confident: bool = True) -> np.ndarray:
    n = len(truth)
    ok = rng.random(n) < right
    said = np.where(ok, truth, 1 - truth)
    conf = rng.uniform(0.85, 1.0, n) if confident else rng.uniform(0.5, 0.8, n)
    p1 = np.where(said == 1, conf, 1 - conf)
    return np.column_stack([1 - p1, p1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--subjects", type=int, default=3000)
    ap.add_argument("--users", type=int, default=300)
    args = ap.parse_args()
    acc_rows, ret_rows, mac_rows = [], [], []
    for seed in range(args.seeds):
        rng = np.random.default_rng(100 + seed)
        for K in (2, 3):
            acc_rows += fixed_budget(rng, K, args.subjects, args.users)
        ret_rows += retirement(rng, args.subjects, args.users)
        mac_rows += machine(rng, args.subjects, args.users)
    acc = pd.DataFrame(acc_rows)
    wide = acc.groupby(["K", "votes/subject", "method"], sort=False)["accuracy"].mean().unstack("votes/subject")
    wide = wide.reset_index()
    wide.columns = [str(c) if not isinstance(c, int) else f"v={c}" for c in wide.columns]
    print(f"Benchmark 3a: accuracy on non-gold subjects with each subject's first v votes "
          f"({args.subjects} subjects, {args.users} volunteers, mean of {args.seeds} seeds)\n")
    print(table(wide.to_dict("records"), floatfmt="{:.3f}"))
    ret = pd.DataFrame(ret_rows).groupby("method", sort=False).mean().reset_index()
    print("\nBenchmark 3b: retirement (yes/no, 30 votes available per subject)\n")
    print(table(ret.to_dict("records"), floatfmt="{:.3f}"))
    mac = pd.DataFrame(mac_rows).groupby("method", sort=False).mean().reset_index()
    print("\nBenchmark 3c: the machine as an agent (calibrated on the 5% gold subjects only)\n")
    print(table(mac.to_dict("records"), floatfmt="{:.3f}"))
    path = save("aggregation_simulated", {"accuracy": acc_rows, "retirement": ret_rows, "machine": mac_rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
