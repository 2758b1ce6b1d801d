"""Benchmark 4b: the image pipeline that feeds scoring, on real DECaLS cutouts.

    .venv/bin/python benchmarks/classifier_input_pipeline.py [--quick] [--n 2048] [--workers 1 2]

The GPU target of the classifier (a million galaxies, 5 MC-dropout passes, under ten minutes on one H100:
1,667 galaxies a second) is set by the host CPU before the GPU: a ConvNeXt-nano forward pass at 224 px is
4.9 GFLOPs (``torch.utils.flop_counter``), 8 TFLOP/s for 1,667 galaxies a second, under 1 % of an H100's
dense bf16 peak (about 990 TFLOP/s), while every image has to be read, decoded and resized on the CPU
first. This benchmark measures that part on this machine, with the 470 real 424 px GZ DECaLS cutouts of
``../shared/realdata/zoobot`` (JPEG quality 90) and its 4 original PNGs:

1. per core: ``classifier.data.load_image`` (decode, centre crop, resize) in one process, beside the
   full-size decode alone (the rest is the crop and resize; below 212 px a JPEG is decoded at a reduced
   DCT scale instead, so there is no split), at 64, 128 and 224 px, and the cores that 1,667 galaxies a
   second need;
2. the loader that :func:`classifier.score` and :func:`classifier.score_chunks` read from
   (``image_batches`` over paths, uint8 batches, no model), with 1 to ``--workers`` decoding processes,
   the median of ``--repeats`` alternated passes:

   * ``one loader``: every galaxy through one loader, as ``score_chunks`` does for the platform;
   * ``loader per chunk``: a new loader for every chunk of 512, batches of 256, as the platform's scoring
     did before ``score_chunks`` (``score`` called chunk by chunk). Its workers start again for every chunk,
     and a chunk of 2 batches keeps at most 2 of them busy, however many there are.

Every file is read once before timing, so reads come from the page cache; a catalogue on a network disk
adds its reads. On a machine with few cores the per-chunk loader's cap on busy workers does not bind (2
workers, 2 batches a chunk): the gap there is the cost of starting the workers again and draining the
pipeline at every chunk; with more workers than batches a chunk, the cap adds to it. Everything runs on
the CPU: no GPU is needed, and none was used.

Measured on 2026-12-06 (2 CPUs, ``--n 2048``, 3 runs): one core 312-395 JPEGs/s and 130-153 PNGs/s at 224
px (4.2-5.3 and 11-13 cores for 1,667/s); with 2 workers, one loader 669/s and a loader per chunk 623/s
(medians of 5; single passes gave 1.50x and 0.98x: the machine is shared and noisy).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from classifier.data import decodes_reduced, image_batches, load_image
from classifier.devices import usable_cores
from classifier_common import machine, real_images, repeated, save, table

TARGET = 1e6 / 600            # galaxies per second for a million in ten minutes
CHUNK, BATCH = 512, 256       # the platform's chunk and batch before score_chunks


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
    from PIL import Image
    rows = []
    for fmt, paths in (("JPEG", jpgs), ("PNG", pngs * max(1, len(jpgs) // (4 * len(pngs))))):
        with Image.open(paths[0]) as im:
            width, height = im.size
        decode = per_image_seconds(decode_only, paths, repeats)
        for size in sizes:
            total = per_image_seconds(lambda p: load_image(p, size), paths, repeats)
            reduced = fmt == "JPEG" and decodes_reduced(width, height, size)   # no full-size decode
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
    ap.add_argument("--repeats", type=int, default=3, help="timed passes; the medians are reported")
    ap.add_argument("--quick", action="store_true", help="fewer images and sizes")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    workers = args.workers or list(range(1, usable_cores() + 1))
    n = 600 if args.quick else args.n
    sizes = sorted({args.size} | (set() if args.quick else {64, 128, 224}))
    jpgs, pngs = real_images()
    print(f"# {machine()}; {len(jpgs)} real DECaLS JPEGs, {len(pngs)} PNGs (424 px); target {TARGET:.0f} galaxies/s")

    print("\n## 1. one core: decode, centre crop and resize (classifier.data.load_image)")
    core = per_core_rows(jpgs, pngs, sizes, 1 if args.quick else args.repeats)
    print(table(core, list(core[0]), floatfmt=".2f"))

    print(f"\n## 2. the scoring loader, {args.size} px JPEGs, {n} galaxies, batches of {BATCH}")
    paths = repeated(jpgs, n)
    rows = []
    for w in workers:
        ones, per_chunks = [], []
        for _ in range(args.repeats):           # alternated, so that a noisy neighbour hits both alike
            ones.append(loader_rate(paths, args.size, w, None))
            per_chunks.append(loader_rate(paths, args.size, w, CHUNK))
        one, per_chunk = statistics.median(ones), statistics.median(per_chunks)
        rows.append({"workers": w, "one loader /s": one, f"loader per chunk of {CHUNK} /s": per_chunk,
                     "ratio": one / per_chunk, "busy workers per chunk, at most": min(w, CHUNK // BATCH)})
        print(f"  {w} workers: {one:.0f} vs {per_chunk:.0f} galaxies/s", flush=True)
    print(table(rows, list(rows[0]), floatfmt=".2f"))
    one_core = next(r for r in core if r["format"] == "JPEG" and r["px"] == args.size)
    w, rate = rows[-1]["workers"], rows[-1]["one loader /s"]
    print(f"\n# one loader with {w} workers: {rate / (w * one_core['images/s per core']):.2f} of {w} x the one-core "
          f"rate; a loader per chunk of {CHUNK} keeps at most {CHUNK // BATCH} workers busy.")
    name = "classifier_input_pipeline" + ("_quick" if args.quick else "")
    print(f"\nwritten {save(name, {'per_core': core, 'loader': rows, 'n': n, 'size': args.size})}")


if __name__ == "__main__":
    main()
