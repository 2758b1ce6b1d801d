"""Does the truth match the pixels, and do the clumps match Clump Scout? Measured on larger samples than
the tests use.

    .venv/bin/python benchmarks/synthetic_truth.py [--n 1000] [--size 128] [--workers 2]

Prints:

* the Clump Scout statistics fitted afresh from ``shared/realdata`` (when present) next to the shipped
  constants;
* for ``--n`` clumpy galaxies: the distribution of boxes per galaxy, of box side / image and of clump
  distance / image, against Clump Scout;
* for spirals: how often the strongest logarithmic-spiral Fourier mode of the deprojected image (Puerari &
  Dottori 1992) is the true arm count, and the measured pitch angle per winding class;
* for ellipticals and edge-on disks: the measured axis ratio per class.
"""
from __future__ import annotations

import argparse

import numpy as np
from scipy import stats

from classifier.morphometry import log_spiral_spectrum, segment_axis_ratio
from classifier.synthetic import CLUMP_SCOUT, clump_scout_csv, fit_clump_scout_stats, make_galaxies, make_galaxy

def clump_scout(n: int, size: int, workers: int) -> None:
    path = clump_scout_csv("train")
    if path.exists():
        fit = fit_clump_scout_stats(path)
        print("Clump Scout fit from", path)
        for name in ("count_pmf", "size_mu0", "size_slope", "size_sigma", "size_log_mean", "size_log_std",
                     "radius_shape", "radius_scale", "odd_fraction", "n_galaxies", "n_boxes"):
            a, b = getattr(fit, name), getattr(CLUMP_SCOUT, name)
            fmt = (lambda v: "(" + ", ".join(f"{x:.4f}" for x in v) + ")") if name == "count_pmf" else (
                lambda v: f"{v:.4f}" if isinstance(v, float) else str(v))
            print(f"  {name:14s} fitted {fmt(a):>60s}   shipped {fmt(b)}")
    gals = make_galaxies(n, seed=101, size=size, kind="clumpy", workers=workers)
    counts = np.array([len(g.boxes) for g in gals])
    pmf = np.bincount(counts, minlength=10)[1:10] / n
    print(f"\n{n} clumpy galaxies at {size} px: boxes per galaxy")
    print("  n          " + " ".join(f"{k:>6d}" for k in range(1, 10)))
    print("  synthetic  " + " ".join(f"{p:6.3f}" for p in pmf))
    print("  ClumpScout " + " ".join(f"{p:6.3f}" for p in CLUMP_SCOUT.count_pmf))
    print(f"  mean {counts.mean():.3f} (Clump Scout {CLUMP_SCOUT.mean_count:.3f}); total variation "
          f"{0.5 * np.abs(pmf - np.array(CLUMP_SCOUT.count_pmf)).sum():.3f}")
    side = np.array([g.params["box_side"] / size for g in gals])
    print(f"  box side / image: median {np.median(side):.4f} (Clump Scout {CLUMP_SCOUT.median_size:.4f}), "
          f"log mean {np.log(side).mean():.3f} +- {np.log(side).std():.3f} "
          f"(Clump Scout {CLUMP_SCOUT.size_log_mean:.3f} +- {CLUMP_SCOUT.size_log_std:.3f})")
    r = np.concatenate([[np.hypot(c["x"] - g.params["centre"][0], c["y"] - g.params["centre"][1]) / size
                         for c in g.params["clumps"] if c["visible"]] for g in gals])
    cs = stats.gamma(CLUMP_SCOUT.radius_shape, scale=CLUMP_SCOUT.radius_scale)
    print(f"  clump distance / image: median {np.median(r):.3f}, 10-90% {np.percentile(r, 10):.3f}-"
          f"{np.percentile(r, 90):.3f} (Clump Scout {cs.median():.3f}, {cs.ppf(0.1):.3f}-{cs.ppf(0.9):.3f})")


def spirals(n: int, size: int) -> None:
    right, pitch, by_count = [], {}, {}
    for i in range(n):
        g = make_galaxy(i, seed=102, size=size, kind="spiral", keep_bands=True)
        spec = log_spiral_spectrum(g, n_pitch=801)
        best = int(np.argmax([a for a, _ in spec])) + 1
        count = g.answer("spiral-arm-count")
        ok = best == int(count) if count != "more-than-4" else best >= 5
        right.append(ok)
        by_count.setdefault(count, []).append(ok)
        pitch.setdefault(g.answer("spiral-winding"), []).append(spec[g.params["arms"]["m"] - 1][1])
    print(f"\n{n} spirals at {size} px: strongest log-spiral mode = true arm count in {np.mean(right):.1%}")
    for c in ("1", "2", "3", "4", "more-than-4"):
        print(f"  {c:>11s}: {np.mean(by_count.get(c, [np.nan])):.1%} of {len(by_count.get(c, []))}")
    for w in ("tight", "medium", "loose"):
        p = pitch.get(w, [np.nan])
        print(f"  {w:>6s}: measured pitch median {np.median(p):5.1f} deg (10-90% {np.percentile(p, 10):.1f}-"
              f"{np.percentile(p, 90):.1f})")


def shapes(n: int, size: int) -> None:
    print(f"\naxis ratio measured from second moments at {size} px (ellipticals, then edge-on disks)")
    by = {}
    for i in range(n):
        g = make_galaxy(i, seed=103, size=size, kind="elliptical", keep_bands=True)
        by.setdefault(g.answer("how-rounded"), []).append(segment_axis_ratio(g))
        g = make_galaxy(i, seed=103, size=size, kind="edge_on", keep_bands=True)
        by.setdefault("edge-on", []).append(segment_axis_ratio(g))
    for k in ("round", "in-between", "cigar-shaped", "edge-on"):
        v = by[k]
        print(f"  {k:>12s}: median {np.median(v):.2f}, range {min(v):.2f}-{max(v):.2f} ({len(v)})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    clump_scout(args.n, args.size, args.workers)
    spirals(max(50, args.n // 5), args.size)
    shapes(max(30, args.n // 10), args.size)


if __name__ == "__main__":
    main()
