"""Benchmark 1: throughput of online and batch updates, votes per second, at 1e5 to 1e7 votes.

Synthetic yes/no (K = 2) and three-answer (K = 3) votes: subjects = votes / 10, volunteers = votes /
100, 5% of subjects gold (so SWAP and the online Dawid–Skene learn skills while replaying).

* online: ``aggregator.update(state, votes)``, one Python-level O(1) update per vote (what the platform
  does per classification), from an empty state.
* batch replay: ``aggregator.replay(votes, gold)``, vectorised, the same numbers as online.
* Dawid–Skene EM: ``DawidSkene.fit`` (full re-aggregation), iterations to tol 1e-6 (capped at 100).

The machine is shared (2 cores, other jobs), so wall and CPU seconds are both reported. Online at
1e7 takes about a minute per aggregator; ``--quick`` stops online at 1e6 and EM at 1e6.

Run: ``.venv/bin/python benchmarks/aggregation_throughput.py [--quick]``.
"""
from __future__ import annotations

import argparse
import gc

import numpy as np

from aggregation_common import Timer, save, table

from aggregation import create_aggregator  # noqa: E402


def make_votes(n: int, K: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    S, U = max(n // 10, 1), max(n // 100, 1)
    truth = rng.integers(0, K, S)
    acc = rng.uniform(0.55, 0.95, U)
    s = rng.integers(0, S, n)
    u = rng.integers(0, U, n)
    wrong = (truth[s] + rng.integers(1, K, n)) % K
    a = np.where(rng.random(n) < acc[u], truth[s], wrong)
    gold = {int(i): int(truth[i]) for i in range(0, S, 20)}
    return np.column_stack([s, u, a]), gold


def build(name: str, K: int):
    return create_aggregator(name) if name == "swap" else create_aggregator(name, n_classes=K)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="online and EM only up to 1e6 votes")
    ap.add_argument("--sizes", default="1e5,1e6,1e7")
    args = ap.parse_args()
    sizes = [int(float(x)) for x in args.sizes.split(",")]
    online_max = 10 ** 6 if args.quick else 10 ** 7
    rows = []
    for n in sizes:
        for name, K in (("swap", 2), ("dawid_skene", 2), ("dawid_skene", 3), ("vote_fraction", 2), ("majority", 2)):
            votes, gold = make_votes(n, K)
            agg = build(name, K)
            with Timer() as t:
                agg.replay(votes, gold=gold)
            rows.append({"votes": n, "aggregator": f"{name} (K={K})", "mode": "batch replay", "wall s": t.wall,
                         "cpu s": t.cpu, "votes/s": n / t.wall})
            print(rows[-1], flush=True)
            gc.collect()
            if n <= online_max and name in ("swap", "dawid_skene"):
                with Timer() as t:
                    agg.update(agg.init_state(), votes, gold=gold)
                rows.append({"votes": n, "aggregator": f"{name} (K={K})", "mode": "online update", "wall s": t.wall,
                             "cpu s": t.cpu, "votes/s": n / t.wall})
                print(rows[-1], flush=True)
                gc.collect()
            if name == "dawid_skene" and n <= online_max:
                with Timer() as t:
                    ds = agg.fit(votes)
                rows.append({"votes": n, "aggregator": f"{name} (K={K})", "mode": f"EM fit ({ds.n_iter_} iter)",
                             "wall s": t.wall, "cpu s": t.cpu, "votes/s": n / t.wall})
                print(rows[-1], flush=True)
            del votes, agg
            gc.collect()
    print("\nBenchmark 1: throughput (synthetic votes; subjects = n/10, volunteers = n/100, 5% gold)\n")
    print(table(rows, ["votes", "aggregator", "mode", "wall s", "cpu s", "votes/s"]))
    path = save("aggregation_throughput", {"rows": rows})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
