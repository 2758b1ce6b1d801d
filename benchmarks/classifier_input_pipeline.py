"""Benchmark 4b: the image pipeline that feeds scoring, on real DECaLS cutouts.

    .venv/bin/python benchmarks/classifier_input_pipeline.py [--quick] [--n 2048] [--workers 1 2]

The GPU target of the classifier (a million galaxies, 5 MC-dropout passes, under ten minutes on one H100:
1,667 galaxies a second) is set by the host CPU before the GPU: a ConvNeXt-nano forward pass at 224 px is
4.9 GFLOPs (``torch.utils.flop_counter``), 8 TFLOP/s for 1,667 galaxies a second, under 1 % of an H100's dense bf16 peak (about 990 TFLOP/s), while
every image has to be read, decoded and resized on the CPU first. This benchmark measures that part on this
machine, with the 470 real 424 px GZ DECaLS cutouts of ``../shared/realdata/zoobot`` (JPEG quality 90) and
its 4 original PNGs:

1. per core: ``classifier.data.load_image`` (decode, centre crop, resize) in one process, beside the
   full-size decode alone (the rest is the crop and resize; below 212 px a JPEG is decoded at a reduced
   DCT scale instead, so there is no split), at 64, 128 and 224 px, and the cores that 1,667 galaxies a
   second need;
2. the loader that :func:`classifier.score` and :func:`classifier.score_chunks` read from
   (``image_batches`` over paths, uint8 batches, no model), with 1 to ``--workers`` decoding processes:

   * ``one loader``: every galaxy through one loader, as ``score_chunks`` does for the platform;
   * ``loader per chunk``: a new loader for every chunk of 512, batches of 256, as the platform's scoring
     did before ``score_chunks`` (``score`` called chunk by chunk). Its workers start again for every chunk,
     and a chunk of 2 batches keeps at most 2 of them busy, however many there are.

Files are read from the page cache (the set is read once before timing); a catalogue on a network disk
adds its reads. Everything runs on the CPU: no GPU is needed, and none was used.

Measured here on 2026-12-06 (2 CPUs, ``--n 2048``): see the README's benchmark table.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import numpy as np
import torch

from classifier.data import image_batches, load_image
from classifier_common import REALDATA, machine, save, table

IMAGES = REALDATA / "zoobot" / "data" / "example_images" / "basic"
TARGET = 1e6 / 600            # galaxies per second for a million in ten minutes
CHUNK, BATCH = 512, 256       # the platform's chunk and batch before score_chunks


def real_images() -> tuple[list[str], list[str]]:
    jpgs = sorted(str(p) for p in IMAGES.glob("*.jpg"))
    pngs = sorted(str(p) for p in IMAGES.glob("*.png"))
    if not jpgs or not pngs:
        raise SystemExit(f"the real DECaLS cutouts are missing: expected JPEGs and PNGs in {IMAGES}")
    return jpgs, pngs


def per_image_seconds(fn, paths: list[str], repeats: int) -> float:
    """Median over ``repeats`` passes of the seconds per image of ``fn`` over ``paths``."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for p in paths:
            fn(p)
        times.append((time.perf_counter() - t) / len(paths))
    return statistics.median(times)


def decode_only(path: str) -> None:
    from PIL import Image
    with Image.open(path) as im:
        im.convert("RGB").load()


def per_core_rows(jpgs: list[str], pngs: list[str], sizes: list[int], repeats: int) -> list[dict]:
    rows = []
    for fmt, paths in (("JPEG", jpgs), ("PNG", pngs * max(1, len(jpgs) // (4 * len(pngs))))):
        for p in paths[:8]:
            load_image(p, 64)                       # file and page cache warm
        decode = per_image_seconds(decode_only, paths, repeats)
        for size in sizes:
            total = per_image_seconds(lambda p: load_image(p, size), paths, repeats)
            reduced = fmt == "JPEG" and 424 > 2 * size      # load_image decodes at a reduced DCT scale
            rows.append({"format": fmt, "px": size, "full-size decode ms": decode * 1e3,
                         "crop + resize ms": float("nan") if reduced else (total - decode) * 1e3,
                         "load_image ms": total * 1e3,
                         "images/s per core": 1 / total, "cores for 1,667/s": TARGET * total})
            print(f"  {fmt} {size} px: {total * 1e3:.2f} ms per image", flush=True)
    return rows


def loader_rate(paths: list[str], size: int, workers: int, chunk: int | None) -> float:
    """Galaxies a second out of ``image_batches``: one loader over ``paths``, or a new one per ``chunk``."""
    starts = [0] if chunk is None else range(0, len(paths), chunk)
    t = time.perf_counter()
    seen = 0
    for s in starts:
        part = paths if chunk is None else paths[s:s + chunk]
        for x, _ in image_batches(part, size, BATCH, num_workers=workers):
            seen += len(x)
    assert seen == len(paths)
    return len(paths) / (time.perf_counter() - t)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2048, help="galaxies through the loader (the 470 JPEGs repeated)")
    ap.add_argument("--size", type=int, default=224, help="loader image size")
    ap.add_argument("--workers", type=int, nargs="+", default=None,
                    help="decoding processes to measure (default: 1 to the usable cores)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer images and sizes")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    workers = args.workers or list(range(1, cores + 1))
    n = 600 if args.quick else args.n
    sizes = [224] if args.quick else [64, 128, 224]
    jpgs, pngs = real_images()
    print(f"# {machine()}; {len(jpgs)} real DECaLS JPEGs, {len(pngs)} PNGs (424 px); target {TARGET:.0f} galaxies/s")

    print("\n## 1. one core: decode, centre crop and resize (classifier.data.load_image)")
    core = per_core_rows(jpgs, pngs, sizes, 1 if args.quick else args.repeats)
    print(table(core, list(core[0]), floatfmt=".2f"))

    print(f"\n## 2. the scoring loader, {args.size} px JPEGs, {n} galaxies, batches of {BATCH}")
    paths = (jpgs * math.ceil(n / len(jpgs)))[:n]
    loader_rate(paths[:BATCH], args.size, 0, None)          # page cache warm
    rows = []
    for w in workers:
        one = loader_rate(paths, args.size, w, None)
        per_chunk = loader_rate(paths, args.size, w, CHUNK)
        rows.append({"workers": w, "one loader /s": one, f"loader per chunk of {CHUNK} /s": per_chunk,
                     "ratio": one / per_chunk, "busy workers per chunk, at most": min(w, CHUNK // BATCH)})
        print(f"  {w} workers: {one:.0f} vs {per_chunk:.0f} galaxies/s", flush=True)
    print(table(rows, list(rows[0]), floatfmt=".2f"))
    jpeg224 = next((r for r in core if r["format"] == "JPEG" and r["px"] == 224), None)
    if jpeg224 and rows:
        w = rows[-1]["workers"]
        print(f"\n# one loader with {w} workers: {rows[-1]['one loader /s'] / (w * jpeg224['images/s per core']):.2f} of "
              f"{w} x the one-core rate; a loader per chunk of {CHUNK} keeps at most {CHUNK // BATCH} workers busy.")
    print(f"\nwritten {save('classifier_input_pipeline' + ('_quick' if args.quick else ''), {'per_core': core, 'loader': rows, 'n': n, 'size': args.size})}")


if __name__ == "__main__":
    main()
