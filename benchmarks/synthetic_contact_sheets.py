"""Contact sheets for looking at the synthetic galaxies (and the XDF cutouts) with one's own eyes.

    .venv/bin/python benchmarks/synthetic_contact_sheets.py [--size 128] [--seed 1] [--out benchmarks/results]

Writes, under ``--out``:

* ``synthetic_<kind>.png`` -- 36 galaxies of each kind, 6 x 6, each labelled with its true answers after
  the first question (green) and its clump boxes (yellow, drawn one pixel outside the box);
* ``synthetic_clumps_zoom.png`` -- 8 clumpy galaxies at twice the size, each shown bare and with boxes,
  to check that every box holds a knot one can see;
* ``synthetic_mix.png`` -- 64 galaxies of the default mix, unlabelled, as a classifier would see them;
* ``hudf_cutouts.png`` -- the 64 brightest XDF cutouts.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from classifier.hudf import hudf_cutouts
from classifier.synthetic import KINDS, make_galaxies


def _tile(images: list[np.ndarray], cols: int) -> Image.Image:
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * w, rows * h))
    for k, img in enumerate(images):
        sheet.paste(Image.fromarray(img), ((k % cols) * w, (k // cols) * h))
    return sheet


def _annotated(g, zoom: int = 1, label: bool = True) -> np.ndarray:
    size = g.image.shape[0] * zoom
    im = Image.fromarray(g.image).resize((size, size), Image.NEAREST)
    d = ImageDraw.Draw(im)
    for x, y, w, h in g.boxes * zoom:
        d.rectangle([x - 1, y - 1, x + w, y + h], outline=(255, 255, 0))
    if label:
        d.text((2, 1), "/".join(a for _, a in g.answers[1:]), fill=(0, 255, 0))
    return np.asarray(im)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    for kind in KINDS:
        gals = make_galaxies(36, seed=args.seed, size=args.size, kind=kind)
        path = args.out / f"synthetic_{kind}.png"
        _tile([_annotated(g) for g in gals], 6).save(path)
        print(path)

    clumpy = make_galaxies(8, seed=args.seed + 1, size=args.size, kind="clumpy")
    bare = [np.asarray(Image.fromarray(g.image).resize((2 * args.size,) * 2, Image.NEAREST)) for g in clumpy]
    boxed = [_annotated(g, 2) for g in clumpy]
    _tile([x for pair in zip(bare, boxed) for x in pair], 4).save(args.out / "synthetic_clumps_zoom.png")
    print(args.out / "synthetic_clumps_zoom.png")

    mix = make_galaxies(64, seed=args.seed + 2, size=args.size)
    _tile([g.image for g in mix], 8).save(args.out / "synthetic_mix.png")
    print(args.out / "synthetic_mix.png")

    cut = hudf_cutouts(max_sources=64, out_size=args.size)
    _tile([c.image for c in cut], 8).save(args.out / "hudf_cutouts.png")
    print(args.out / "hudf_cutouts.png")


if __name__ == "__main__":
    main()
