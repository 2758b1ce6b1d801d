"""Demo subjects from the library generators: HUDF cutouts and synthetic GalSim galaxies with truth.

The generators live in ``classifier.hudf`` and ``classifier.synthetic`` (plain numpy/GalSim, no
Django); this module only turns their output into :class:`~zooplatform.galaxies.services.NewSubject`.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from .services import NewSubject

SYNTHETIC_SIZE = 256  # pixels; the classify page shows images large, so draw them at GZ-like scale
GOLD_EVERY = 8        # one synthetic galaxy in eight becomes a gold-standard subject


def describe_answers(answers: Iterable[Sequence[str]], n_clumps: int = 0) -> str:
    """A short expert description of a true path, for gold-standard feedback ("barred spiral, 2 arms")."""
    a = {q: ans for q, ans in answers}
    if a.get("smooth-or-featured") == "artifact":
        return "a star or image artifact, not a galaxy"
    if a.get("smooth-or-featured") == "smooth":
        text = {"round": "a smooth, round galaxy", "in-between": "a smooth, elongated galaxy",
                "cigar-shaped": "a smooth, cigar-shaped galaxy"}[a["how-rounded"]]
    elif a.get("disk-edge-on") == "yes":
        bulge = {"rounded": "with a rounded bulge", "boxy": "with a boxy bulge", "none": "with no bulge"}
        text = f"an edge-on disk {bulge[a['edge-on-bulge']]}"
    else:
        bar = {"strong": "strongly barred ", "weak": "weakly barred ", "no": ""}[a["bar"]]
        if a.get("has-spiral-arms") == "yes":
            arms = a["spiral-arm-count"]
            count = "" if arms == "cant-tell" else f", {arms.replace('more-than-4', 'more than 4')} arm{'s' if arms != '1' else ''}"
            text = f"a {bar}spiral, {a['spiral-winding']}ly wound{count}".replace("mediumly", "moderately")
        else:
            text = f"a {bar}disk galaxy without spiral arms"
    if n_clumps:
        text += f", {n_clumps} clump{'s' if n_clumps != 1 else ''}"
    merging = a.get("merging", "none")
    if merging != "none":
        text += {"merger": ", merging", "major-disturbance": ", strongly disturbed",
                 "minor-disturbance": ", slightly disturbed"}[merging]
    return text


def synthetic_subjects(n: int, *, seed: int = 0, start: int = 0, size: int = SYNTHETIC_SIZE) -> list[NewSubject]:
    from classifier.synthetic import make_galaxies

    subjects = []
    for index, galaxy in enumerate(make_galaxies(n, seed=seed, size=size, start=start), start=start):
        boxes = [{"x": float(x), "y": float(y), "width": float(w), "height": float(h)} for x, y, w, h in galaxy.boxes]
        answers = [{"question": q, "answer": ans} for q, ans in galaxy.answers]
        gold = None
        if index % GOLD_EVERY == 0:
            gold = {"answers": answers, "boxes": boxes, "feedback": describe_answers(galaxy.answers, len(boxes))}
        subjects.append(NewSubject(
            external_id=galaxy.id, image=galaxy.image, survey="synthetic (GalSim)",
            metadata={"kind": "synthetic galaxy", "seed": seed, "index": index, "size_px": size},
            truth={"kind": galaxy.kind, "answers": answers, "boxes": boxes}, gold=gold,
        ))
    return subjects


def hudf_subjects(n: int) -> list[NewSubject]:
    from classifier.hudf import hudf_cutouts

    subjects = []
    for cutout in hudf_cutouts(max_sources=n, out_size=256):
        s = cutout.source
        subjects.append(NewSubject(
            external_id=cutout.id, image=cutout.image, survey="HUDF",
            metadata={"field": "Hubble eXtreme Deep Field (scikit-image)", "field_x": round(s.x, 1),
                      "field_y": round(s.y, 1), "semi_major_px": round(s.a, 2), "axis_ratio": round(s.b / s.a, 3),
                      "cutout_side_px": cutout.box[2]},
        ))
    return subjects
