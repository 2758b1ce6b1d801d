"""Shared pieces of the classifier benchmarks: the real ring set, synthetic galaxies, metrics, tables.

The real set is the 470 GZ DECaLS galaxies of Zoobot's ring example (``../shared/realdata/zoobot``;
Walmsley et al. 2022). It has a binary ``ring`` label and three vote FRACTIONS, not counts. To train the
Dirichlet-multinomial model on it, the benchmarks use this tree and these pseudo-counts (explicitly):

* ``ring``: answers ``yes``/``no``; the label counts as ONE vote (1, 0) or (0, 1): a binary label is a
  single expert vote, and the DM likelihood of one vote is the categorical likelihood alpha_yes / A;
* ``smooth-or-featured``: ``featured-or-disk`` vs ``smooth-or-artifact`` (smooth and artifact merged,
  since only the featured fraction is given); ``disk-edge-on``: ``no`` vs ``yes``; ``has-spiral-arms``:
  ``no`` vs ``yes``: each fraction times 40 (GZ DECaLS collected about 40 votes per galaxy), rounded so
  that each question's counts sum to 40 (:func:`classifier.data.fractions_to_counts`).

Fraction RMSE is reported on the three fraction columns, next to the RMSE of predicting the training
mean, because the sample was selected on those fractions (featured > 0.6, not edge-on > 0.75, no spiral
> 0.5), so their spread is small.
"""
from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from aggregation.tree import DecisionTree
from classifier.data import GalaxyData, fractions_to_counts

ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("REALDATA_DIR") or ROOT.parent / "shared" / "realdata")   # as in tests/ and classifier/
RING_DIR = REALDATA / "zoobot"
RING_IMAGES = RING_DIR / "data" / "example_images" / "basic"   # 470 JPEGs (424 px, quality 90), 4 original PNGs
RESULTS = ROOT / "benchmarks" / "results"

RING_TREE = DecisionTree.from_dict({"questions": [
    {"name": "ring", "answers": ["yes", "no"]},
    {"name": "smooth-or-featured", "answers": ["featured-or-disk", "smooth-or-artifact"]},
    {"name": "disk-edge-on", "answers": ["no", "yes"]},
    {"name": "has-spiral-arms", "answers": ["no", "yes"]},
]})
FRACTION_COLUMNS = {  # catalogue column -> (question, answer) whose predicted fraction it is
    "smooth-or-featured_featured-or-disk_fraction": "smooth-or-featured_featured-or-disk",
    "disk-edge-on_no_fraction": "disk-edge-on_no",
    "has-spiral-arms_no_fraction": "has-spiral-arms_no",
}


def ring_data(n_votes: int = 40) -> tuple[GalaxyData, pd.DataFrame]:
    """The 470 real galaxies as :class:`GalaxyData` on :data:`RING_TREE`, and the catalogue."""
    cat = pd.read_csv(RING_DIR / "data" / "example_ring_catalog_basic.csv")
    ring = cat["ring"].to_numpy(float)
    parts = [np.stack([ring, 1 - ring], 1)]
    for col in FRACTION_COLUMNS:
        f = cat[col].to_numpy(float)
        parts.append(fractions_to_counts(np.stack([f, 1 - f], 1), n_votes))
    votes = np.concatenate(parts, 1)
    paths = [str(RING_DIR / f) for f in cat["file_loc"]]
    return GalaxyData(ids=cat["id_str"].to_numpy(), images=paths, votes=votes, tree=RING_TREE,
                      snapshot_id="zoobot-ring-example"), cat


def real_images() -> tuple[list[str], list[str]]:
    """The real ring-set cutouts as paths (JPEGs, PNGs), each read once so that timing starts from the page
    cache."""
    jpgs = sorted(str(p) for p in RING_IMAGES.glob("*.jpg"))
    pngs = sorted(str(p) for p in RING_IMAGES.glob("*.png"))
    if not jpgs or not pngs:
        raise SystemExit(f"the real DECaLS cutouts are missing: expected JPEGs and PNGs in {RING_IMAGES}")
    for path in jpgs + pngs:
        with open(path, "rb") as f:
            f.read()
    return jpgs, pngs


def repeated(paths: list[str], n: int) -> list[str]:
    """``n`` paths: ``paths`` over and over."""
    return (paths * math.ceil(n / len(paths)))[:n]


def synthetic_data(n: int, *, seed: int = 0, size: int = 64, start: int = 0, n_volunteers: int = 40,
                   config=None, workers: int | None = None):
    """``n`` synthetic galaxies with simulated volunteer votes on the GZ DECaLS tree and their true answers.

    Returns (GalaxyData, truths: list of {question: answer}, galaxies).
    """
    from classifier.synthetic import make_galaxies, simulate_votes

    tree = DecisionTree.builtin("gz_decals")
    gals = make_galaxies(n, seed=seed, size=size, start=start, config=config, workers=workers)
    votes = np.zeros((n, len(tree.columns)), np.float32)
    for i, g in enumerate(gals):
        counts = simulate_votes(g.answers, np.random.default_rng([seed, start + i, 1]), n_volunteers=n_volunteers,
                                tree=tree)
        votes[i] = [counts[c] for c in tree.columns]
    data = GalaxyData(ids=[g.id for g in gals], images=np.stack([g.image for g in gals]), votes=votes, tree=tree,
                      snapshot_id=f"synthetic-{seed}-{start}-{n}")
    return data, [dict(g.answers) for g in gals], gals


def gz2_kind_mix(min_votes: int = 10) -> dict[str, float]:
    """The share of each synthetic kind in a real magnitude-limited survey: Galaxy Zoo 2's Stripe 82
    co-added sample (Willett et al. 2013, table 5; 19,761 galaxies), each galaxy given the kind its
    volunteers' majority votes describe.

    First question (smooth / features or disk / star or artifact) by majority; features-or-disk galaxies
    are ``edge_on`` when most said edge-on, else ``spiral`` or ``disk`` by the spiral question; a galaxy
    whose majority found something odd is a ``merger`` or ``clumpy`` (GZ2's "irregular") when that is its
    most-voted odd feature. Galaxies with fewer than ``min_votes`` on the first question are left out.
    """
    table = pd.read_csv(REALDATA / "galaxyzoo2" / "tables" / "table5.csv.gz")

    def count(prefix: str) -> np.ndarray:
        return table[next(c for c in table.columns if c.startswith(prefix) and c.endswith("_count"))].to_numpy(float)

    first = np.stack([count(f"t01_smooth_or_features_a0{i}") for i in (1, 2, 3)], 1)
    edge_on = count("t02_edgeon_a04") > count("t02_edgeon_a05")
    spiral = count("t04_spiral_a08") > count("t04_spiral_a09")
    odd = count("t06_odd_a14") > count("t06_odd_a15")
    odd_feature = np.stack([count(f"t08_odd_feature_a{i}") for i in ("19", "20", "21", "22", "23", "24", "38")],
                           1).argmax(1)
    top = first.argmax(1)
    kind = np.where(top == 2, "artifact", np.where(top == 0, "elliptical", np.where(
        edge_on, "edge_on", np.where(spiral, "spiral", "disk")))).astype(object)
    kind[odd & (odd_feature == 5)] = "merger"
    kind[odd & (odd_feature == 3)] = "clumpy"
    keep = first.sum(1) >= min_votes
    names, n = np.unique(kind[keep], return_counts=True)
    return {str(k): float(c / keep.sum()) for k, c in zip(names, n)}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the Mann-Whitney rank statistic (ties get average ranks)."""
    from scipy.stats import rankdata
    labels = np.asarray(labels).astype(bool)
    ranks = rankdata(scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def tree_accuracy(fractions: np.ndarray, truths: list[dict], tree: DecisionTree,
                  questions: list[str] | None = None) -> float:
    """Share of (galaxy, question on its true path) pairs where the most-voted predicted answer is the truth."""
    hits = total = 0
    for f, truth in zip(fractions, truths):
        for q, a in truth.items():
            if questions is not None and q not in questions:
                continue
            sl = tree.question_slices[q]
            total += 1
            hits += tree[q].answer_names[int(np.argmax(f[sl]))] == a
    return hits / max(total, 1)


def fraction_rmse(fractions: np.ndarray, votes: np.ndarray, tree: DecisionTree,
                  questions: list[str] | None = None) -> float:
    """RMSE of predicted vs observed vote fractions over every answer of every answered question
    (Walmsley et al. 2020's metric; :func:`classifier.train.evaluate` measures the same on a model)."""
    counts = np.nan_to_num(np.asarray(votes, dtype=np.float64))
    sq, n = 0.0, 0
    for q in tree.questions:
        if questions is not None and q.name not in questions:
            continue
        sl = tree.question_slices[q.name]
        total = counts[:, sl].sum(1)
        answered = total > 0
        observed = counts[answered, sl] / total[answered, None]
        sq += float(((np.asarray(fractions)[answered, sl] - observed) ** 2).sum())
        n += observed.size
    return float(np.sqrt(sq / n)) if n else float("nan")


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")


def table(rows: list[dict], columns: list[str], floatfmt: str = ".3f") -> str:
    """A Markdown table of ``rows`` (dicts) in ``columns`` order."""
    def fmt(v):
        if isinstance(v, float):
            return "nan" if np.isnan(v) else format(v, floatfmt)
        return str(v)
    out = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(out)


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path
