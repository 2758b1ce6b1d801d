"""Augmentations: exact geometry, label-preserving symmetry, mild photometry, reproducibility."""
from __future__ import annotations

import math

import torch

from classifier.augment import AugmentConfig, affine_warp, augment_batch, dihedral_views


def test_quarter_turn_is_an_exact_rotation():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 16, 16)
    one = torch.ones(2)
    turned = affine_warp(x, torch.full((2,), math.pi / 2), one, one)
    assert any(torch.allclose(turned, torch.rot90(x, k, dims=(-2, -1)), atol=1e-5) for k in (1, 3))
    flipped = affine_warp(x, torch.zeros(2), -one, one)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-5)
    assert torch.allclose(affine_warp(x, torch.zeros(2), one, one), x, atol=1e-5)


def test_any_rotation_keeps_a_round_galaxy_round():
    """A circular blob is unchanged by rotation at any angle (up to interpolation): the label can't change."""
    yy, xx = torch.meshgrid(torch.arange(33.0), torch.arange(33.0), indexing="ij")
    blob = torch.exp(-((xx - 16) ** 2 + (yy - 16) ** 2) / (2 * 4.0 ** 2)).expand(1, 3, 33, 33)
    inside = ((xx - 16) ** 2 + (yy - 16) ** 2) < 15 ** 2     # corners come from reflected sky; ignore them
    for angle in (0.3, 1.1, 2.5, 4.0):
        out = affine_warp(blob, torch.tensor([angle]), torch.ones(1), torch.ones(1))
        assert (out - blob)[..., inside].abs().max() < 0.02   # bilinear error at the peak, ~1 %


def test_augment_batch_shapes_ranges_and_reproducibility():
    x = torch.rand(8, 3, 32, 32)
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(0))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(0))
    c = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(1))
    assert a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_photometric_jitter_is_mild():
    x = torch.full((64, 3, 8, 8), 0.5)
    cfg = AugmentConfig(rotate=False, flip=False, scale=(1.0, 1.0), brightness=0.03, contrast=0.05)
    out = augment_batch(x, cfg, torch.Generator().manual_seed(0))
    shift = (out - x).abs().amax(dim=(1, 2, 3))
    assert shift.max() <= 0.03 + 1e-6 and shift.max() > 0.005


def test_dihedral_views_are_the_eight_symmetries():
    x = torch.rand(2, 3, 8, 8)
    views = dihedral_views(x)
    assert views.shape == (8, 2, 3, 8, 8)
    assert len({v.flatten().numpy().tobytes() for v in views}) == 8
    # the set of views of a rotated image is the same set: averaging over them is exactly invariant
    rotated = dihedral_views(torch.rot90(x, 1, dims=(-2, -1)))
    assert torch.allclose(views.mean(0), rotated.mean(0), atol=1e-6)
