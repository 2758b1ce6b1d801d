"""Shared fixtures and generators for the aggregation tests (no Django, no torch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import realdata_path


def simulate_votes(rng: np.random.Generator, n_subjects: int, n_users: int, n_votes: int, n_classes: int = 2,
                   accuracy=(0.55, 0.95)):
    """Random time-ordered votes from volunteers of heterogeneous accuracy. Returns (votes, truth)."""
    truth = rng.integers(0, n_classes, n_subjects)
    acc = rng.uniform(*accuracy, n_users)
    s = rng.integers(0, n_subjects, n_votes)
    u = rng.integers(0, n_users, n_votes)
    right = rng.random(n_votes) < acc[u]
    wrong = (truth[s] + rng.integers(1, n_classes, n_votes)) % n_classes
    a = np.where(right, truth[s], wrong)
    # ids far from 0..n so that nothing relies on ids being codes
    return np.column_stack([s * 7 + 1000, u * 3 + 50, a]).astype(np.int64), truth


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def realdata(*parts: str) -> Path:
    return realdata_path(*parts)
