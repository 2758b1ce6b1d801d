"""Galaxies with known truth for the simulator: synthetic GalSim galaxies, or real vote counts.

``synthetic``: ``zooplatform.galaxies.demo.synthetic_subjects`` (``classifier.synthetic`` galaxies, images
of ``size`` pixels, true paths through the GZ DECaLS tree, one galaxy in eight a gold-standard subject).

``realvotes``: the 4,000 GZ DECaLS galaxies of ``galaxy-zoo-bayesian-cnn/.../panoptes.csv`` in
``../shared/realdata`` (read in place, never copied), with their real integer smooth / featured / artifact
counts (about 40 each). The truth is the all-votes majority (galaxies with a tie for the most votes are
left out); volunteers' answers are draws without replacement from the galaxy's real votes
(:class:`~.population.VotePool`). The tree is the single question smooth-or-featured. The file has no
images, so every subject shows the same blank placeholder and no model is trained: ``model_accuracy``
is null for this source.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aggregation.tree import DecisionTree
from zooplatform.galaxies.demo import GOLD_EVERY
from zooplatform.galaxies.services import NewSubject

SOURCES = ("synthetic", "realvotes")
PANOPTES_CSV = Path("galaxy-zoo-bayesian-cnn") / "zoobot" / "tests" / "test_examples" / "panoptes.csv"
SMOOTH_OR_FEATURED = ("smooth", "featured-or-disk", "artifact")
PLACEHOLDER_SIZE = 16


def realdata_dir() -> Path:
    """``$REALDATA_DIR``, else ``<repo>/../shared/realdata``."""
    env = os.environ.get("REALDATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[4] / "shared" / "realdata"


def single_question_tree() -> DecisionTree:
    """The GZ DECaLS first question alone, every answer ending the tree (``next: null``)."""
    first = DecisionTree.builtin("gz_decals")["smooth-or-featured"]
    return DecisionTree.from_dict({
        "name": "smooth-or-featured only", "first": first.name,
        "questions": [{"name": first.name, "text": first.text,
                       "answers": [{"name": a.name, "text": a.text, "next": None} for a in first.answers]}]})


@dataclass
class GalaxySet:
    """What a simulation runs on.

    subjects : one NewSubject per galaxy (truth in ``truth["answers"]``; gold ones carry ``gold``).
    truth : per galaxy, its true path as ``(question, answer)`` pairs.
    gold : bool (n,), gold-standard galaxies (never retire; left out of every metric).
    tree : the workflow's tree.
    has_images : whether a model can learn from the images.
    vote_counts : int (n, K) real votes on the single question (``realvotes``), else None.
    """

    source: str
    subjects: list[NewSubject]
    truth: list[tuple[tuple[str, str], ...]]
    gold: np.ndarray
    tree: DecisionTree
    has_images: bool
    vote_counts: np.ndarray | None = None
    note: str = ""

    def __len__(self) -> int:
        return len(self.subjects)


def synthetic_galaxies(n: int, *, seed: int = 0, size: int = 64) -> GalaxySet:
    from zooplatform.galaxies.demo import synthetic_subjects

    subjects = synthetic_subjects(n, seed=seed, size=size)
    truth = [tuple((a["question"], a["answer"]) for a in s.truth["answers"]) for s in subjects]
    gold = np.array([s.gold is not None for s in subjects])
    return GalaxySet("synthetic", subjects, truth, gold, DecisionTree.builtin("gz_decals"), has_images=True,
                     note=f"classifier.synthetic galaxies, seed {seed}, {size} px; every {GOLD_EVERY}th is gold")


def realvote_galaxies(n: int, *, seed: int = 0, path: Path | None = None) -> GalaxySet:
    """``n`` galaxies of panoptes.csv drawn with ``seed`` (ties for the most votes left out)."""
    import pandas as pd

    path = path or realdata_dir() / PANOPTES_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: set REALDATA_DIR to the shared realdata folder")
    table = pd.read_csv(path)
    counts = table[[f"smooth-or-featured_{a}" for a in SMOOTH_OR_FEATURED]].to_numpy().astype(np.int64)
    top = np.sort(counts, axis=1)
    usable = np.flatnonzero(top[:, -1] > top[:, -2])
    if n > len(usable):
        raise ValueError(f"{path.name} has {len(usable)} galaxies without a tie; asked for {n}")
    pick = np.sort(np.random.default_rng([int(seed), 707]).choice(usable, size=n, replace=False))
    tree = single_question_tree()
    placeholder = np.full((PLACEHOLDER_SIZE, PLACEHOLDER_SIZE, 3), 96, dtype=np.uint8)
    subjects, truth = [], []
    for index, row in enumerate(pick.tolist()):
        answer = SMOOTH_OR_FEATURED[int(np.argmax(counts[row]))]
        path_ = (("smooth-or-featured", answer),)
        answers = [{"question": q, "answer": a} for q, a in path_]
        gold = {"answers": answers, "feedback": f"{answer} (majority of {int(counts[row].sum())} GZ DECaLS votes)"} \
            if index % GOLD_EVERY == 0 else None
        subjects.append(NewSubject(
            external_id=f"gzd-{int(table['subject_id'].iloc[row])}", image=placeholder, survey="GZ DECaLS votes",
            metadata={"kind": "real votes, no image", "panoptes_row": int(row)},
            truth={"kind": answer, "answers": answers, "votes": counts[row].tolist()}, gold=gold))
        truth.append(path_)
    gold_mask = np.array([s.gold is not None for s in subjects])
    note = (f"{path.name}: {n} of {len(usable)} galaxies without a tied majority (seed {seed}); truth = majority "
            f"of all their real votes; no images, so no model (model_accuracy null)")
    return GalaxySet("realvotes", subjects, truth, gold_mask, tree, has_images=False, vote_counts=counts[pick],
                     note=note)


def galaxies_load(source: str, n: int, *, seed: int = 0, size: int = 64) -> GalaxySet:
    if source == "synthetic":
        return synthetic_galaxies(n, seed=seed, size=size)
    if source == "realvotes":
        return realvote_galaxies(n, seed=seed)
    raise ValueError(f"unknown source {source!r}; known sources: {', '.join(SOURCES)}")
