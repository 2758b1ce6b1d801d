"""The real-data CV benchmark's baseline with no CNN: rotation-invariant radial profiles and a logistic fit."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from classifier_realdata_cv import fit_logistic, radial_profiles  # noqa: E402


def _galaxy(size: int = 64, ring_radius: float | None = None) -> np.ndarray:
    """uint8 (size, size, 3): an exponential disk at the frame's centre, with a bright annulus if asked."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    r = np.hypot(yy, xx)
    img = 0.8 * np.exp(-r / (0.12 * size))
    if ring_radius is not None:
        img += 0.3 * np.exp(-0.5 * ((r - ring_radius) / 1.5) ** 2)
    return np.repeat(np.clip(img * 255, 0, 255).astype(np.uint8)[..., None], 3, -1)


def test_radial_profiles_do_not_depend_on_orientation():
    img = np.random.default_rng(0).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    views = [img, np.rot90(img, 1, (1, 2)), np.rot90(img, 3, (1, 2)), img[:, :, ::-1], img[:, ::-1]]
    feats = [radial_profiles(np.ascontiguousarray(v), n_bins=12) for v in views]
    assert feats[0].shape == (2, 3 * 12 + 11 + 10)
    for f in feats[1:]:
        np.testing.assert_allclose(f, feats[0], rtol=0, atol=1e-12)


def test_a_ring_is_a_rise_in_the_radial_profile():
    n_bins, size = 16, 64
    disk, ringed = radial_profiles(np.stack([_galaxy(size), _galaxy(size, ring_radius=16.0)]), n_bins=n_bins)
    slope = slice(3 * n_bins, 3 * n_bins + n_bins - 1)     # first differences of the mean log profile
    assert (disk[slope] <= 0).all()                        # a plain disk only gets fainter outwards
    rising = np.flatnonzero(ringed[slope] > 0)
    ring_bin = int(16.0 / (size / 2) * n_bins)             # the annulus the ring's radius falls in
    # difference i rises from annulus i into i + 1: the rise is on the ring's inner side and ends at it
    assert len(rising) and (ring_bin - 4 <= rising).all() and rising.max() + 1 in (ring_bin - 1, ring_bin)


def test_fit_logistic_recovers_the_model_that_drew_the_labels():
    rng = np.random.default_rng(1)
    x = rng.normal([2.0, -1.0, 0.0], [1.0, 3.0, 0.5], (20_000, 3))
    p_true = 1 / (1 + np.exp(-(0.5 + 1.5 * (x[:, 0] - 2.0) - 0.4 * x[:, 1])))
    y = (rng.random(len(x)) < p_true).astype(float)
    predict = fit_logistic(x, y, c=1e6)
    grid = rng.normal([2.0, -1.0, 0.0], [1.0, 3.0, 0.5], (1_000, 3))
    p_grid = 1 / (1 + np.exp(-(0.5 + 1.5 * (grid[:, 0] - 2.0) - 0.4 * grid[:, 1])))
    assert np.abs(predict(grid) - p_grid).max() < 0.03


def test_fit_logistic_shrinks_towards_the_base_rate_as_the_penalty_grows():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 5))
    y = (x[:, 0] + rng.normal(size=400) > 0.5).astype(float)
    p = fit_logistic(x, y, c=1e-8)(x)
    assert p == pytest.approx(np.full(len(x), y.mean()), abs=1e-4)
