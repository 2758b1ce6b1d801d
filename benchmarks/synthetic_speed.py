"""How fast synthetic galaxies are made, per image size and number of worker processes.

    .venv/bin/python benchmarks/synthetic_speed.py [--n 200] [--sizes 64 128 256] [--workers 1 2]

Prints a table of milliseconds per image and images per second (wall clock), and for one worker the CPU
time per image, which other load on the machine does not inflate. Each size is warmed up first (GalSim
tabulates each Sersic index once per process) and timed on galaxies of the default class mix. The
``write`` rows add PNG encoding, the simulated votes and the CSVs of
:func:`classifier.synthetic.write_dataset`.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from classifier.synthetic import make_galaxies, make_galaxy, write_dataset


def _time(fn) -> tuple[float, float]:
    """Wall-clock and this process's CPU seconds of ``fn()`` (CPU time is what the machine's other work
    cannot inflate; it does not count worker processes)."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="galaxies per measurement")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}; n = {args.n} galaxies per row")
    print(f"{'size':>5} {'what':>10} {'workers':>7} {'ms/image':>9} {'images/s':>9} {'CPU ms/image':>13}")

    def row(size, what, w, wall, cpu):
        cpu_col = f"{1e3 * cpu / args.n:>13.2f}" if w == 1 else f"{'-':>13}"
        print(f"{size:>5} {what:>10} {w:>7} {1e3 * wall / args.n:>9.2f} {args.n / wall:>9.1f} {cpu_col}")

    for size in args.sizes:
        for i in range(30):  # warm-up: every Sersic index of the grid, in this process
            make_galaxy(10_000_000 + i, seed=args.seed, size=size)
        for w in args.workers:
            row(size, "generate", w, *_time(lambda: make_galaxies(args.n, seed=args.seed, size=size, workers=w)))
        for w in args.workers:
            with tempfile.TemporaryDirectory() as tmp:
                row(size, "write", w, *_time(lambda: write_dataset(tmp, args.n, seed=args.seed, size=size,
                                                                   workers=w)))


if __name__ == "__main__":
    main()
