"""Augmentations that respect the physics of galaxy images, applied to whole batches on the device.

A galaxy has no preferred orientation on the sky and no handedness that the labels depend on, so a
rotation by any angle and a mirror flip leave every Galaxy Zoo answer unchanged (Dieleman, Willett &
Dambre 2015, MNRAS 450, 1441, Sec. 4.1). A small change of scale is nearly label-preserving too. Colour is
not: "smooth" vs "featured" and the bulge questions depend on surface brightness, so brightness and
contrast are jittered only mildly.

Everything here runs on (B, C, H, W) float tensors on the training device, one ``grid_sample`` per batch,
so augmentation costs the data workers nothing and never starves a GPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """rotate : any angle in [0, 2 pi); flip : mirror half of the images; scale : log-uniform zoom range
    (1.0 = none; 1.1 shows 10 % less sky); brightness : additive, +- this much of the [0, 1] range;
    contrast : multiplicative about each image's mean, in [1 - c, 1 + c]."""

    rotate: bool = True
    flip: bool = True
    scale: tuple[float, float] = (1.0, 1.1)
    brightness: float = 0.03
    contrast: float = 0.05


def _uniform(n: int, lo: float, hi: float, generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)


def affine_warp(x: torch.Tensor, angle: torch.Tensor, flip: torch.Tensor, zoom: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``x`` (B, C, H, W; square) by ``angle`` (B,) radians about its centre, after
    mirroring it where ``flip`` (B,) is -1, magnified by ``zoom`` (B,); one bilinear ``grid_sample``.

    Pixels that come from outside the frame are reflected back in, so rotated corners hold sky-like pixels
    rather than black wedges.
    """
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    zero = torch.zeros_like(cos)
    # affine_grid maps output to input coordinates: input = R(angle) diag(flip, 1) output / zoom
    mat = torch.stack([torch.stack([cos * flip, -sin, zero], -1),
                       torch.stack([sin * flip, cos, zero], -1)], 1)
    grid = F.affine_grid(mat.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def augment_batch(x: torch.Tensor, config: AugmentConfig = AugmentConfig(),
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly rotated, flipped, zoomed and jittered copies of ``x`` (B, C, H, W) in [0, 1].

    ``generator`` (on ``x.device``) makes the draw reproducible.
    """
    b, device = x.shape[0], x.device
    gen = generator
    lo, hi = config.scale
    if config.rotate or config.flip or lo != 1.0 or hi != 1.0:
        angle = _uniform(b, 0.0, 2 * math.pi, gen, device) if config.rotate else torch.zeros(b, device=device)
        flip = ((torch.rand(b, generator=gen, device=device) < 0.5).float() * 2 - 1 if config.flip
                else torch.ones(b, device=device))
        zoom = torch.exp(_uniform(b, math.log(lo), math.log(hi), gen, device))
        x = affine_warp(x, angle, flip, zoom)
    if config.contrast or config.brightness:
        c = _uniform(b, 1 - config.contrast, 1 + config.contrast, gen, device).view(b, 1, 1, 1).to(x.dtype)
        d = _uniform(b, -config.brightness, config.brightness, gen, device).view(b, 1, 1, 1).to(x.dtype)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * c + mean + d).clamp_(0.0, 1.0)
    return x


def dihedral_views(x: torch.Tensor) -> torch.Tensor:
    """The 8 exact rotations-by-90-degrees and mirror images of ``x``: (B, C, H, W) -> (8, B, C, H, W).

    No interpolation is involved, so averaging a model over these views (Dieleman et al. 2015's viewpoint
    averaging, restricted to the dihedral group D4) makes its output exactly invariant to them.
    """
    views = []
    for flipped in (x, x.flip(-1)):
        for k in range(4):
            views.append(torch.rot90(flipped, k, dims=(-2, -1)))
    return torch.stack(views)
