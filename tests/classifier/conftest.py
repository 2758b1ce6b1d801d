"""Shared fixtures for the classifier tests: small trees and tiny labelled image sets, all on CPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from aggregation.tree import DecisionTree

torch.set_num_threads(min(2, torch.get_num_threads()))

SHORT_TREE = {"questions": [
    {"name": "smooth-or-featured", "answers": ["smooth", "featured-or-disk", "artifact"]},
    {"name": "has-spiral-arms", "answers": ["yes", "no"]},
]}


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def short_tree() -> DecisionTree:
    return DecisionTree.from_dict(SHORT_TREE)


@pytest.fixture
def decals_tree() -> DecisionTree:
    return DecisionTree.builtin("gz_decals")


def blob_images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n images (n, size, size, 3) uint8 of a centred Gaussian blob whose brightness is random, and that
    brightness in [0, 1]: a learnable signal for tiny training runs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = np.exp(-(xx ** 2 + yy ** 2) / (2 * (size / 6) ** 2))
    level = rng.uniform(0, 1, n)
    noise = rng.normal(0, 0.03, (n, size, size, 1))
    img = np.clip(level[:, None, None, None] * blob[None, :, :, None] + noise, 0, 1)
    return (np.repeat(img, 3, axis=-1) * 255).astype(np.uint8), level


def blob_votes(level: np.ndarray, tree: DecisionTree, n_votes: int = 20, seed: int = 0) -> np.ndarray:
    """Vote counts (n, A) for ``SHORT_TREE``-shaped trees: bright blobs are voted "featured" and "spiral"."""
    rng = np.random.default_rng(seed)
    n = len(level)
    votes = np.zeros((n, len(tree.columns)), np.float32)
    for qname, probs in (("smooth-or-featured", lambda p: np.stack([1 - p, p * 0.95, 0.05 * np.ones_like(p)], 1)),
                         ("has-spiral-arms", lambda p: np.stack([p, 1 - p], 1))):
        sl = tree.question_slices[qname]
        p = probs(np.clip(level, 0.02, 0.98))
        p = p / p.sum(1, keepdims=True)
        votes[:, sl] = np.stack([rng.multinomial(n_votes, pi) for pi in p])
    return votes


@pytest.fixture
def tiny_data(short_tree):
    from classifier.data import GalaxyData

    images, level = blob_images(96, 32)
    votes = blob_votes(level, short_tree)
    return GalaxyData(ids=[f"g{i:03d}" for i in range(len(images))], images=images, votes=votes, tree=short_tree,
                      snapshot_id="snap-test")
