"""Real galaxies cut out of the Hubble eXtreme Deep Field image that scikit-image ships.

``skimage.data.hubble_deep_field()`` is the public colour composite of the Hubble eXtreme Deep Field
(Illingworth et al. 2013, ApJS 209, 6; NASA/ESA image heic1214a), 872 x 1000 x 3 uint8, already
stretched for display. It needs no download, so the platform's demo and the tests can show volunteers real
galaxies offline. This module finds the galaxies in it and cuts each out:

1. detection image: the mean of the three channels (a "white light" image: most XDF galaxies are
   faint in any one filter, and a sum gives every colour of galaxy the same chance);
2. background: ``sep.Background`` on a 64 px mesh with a 3 x 3 median filter, subtracted (the composite
   has a sky pedestal of about 12/255 and gradients);
3. extraction: ``sep.extract`` (Bertin & Arnouts 1996, SExtractor; Barbary 2016, JOSS 1, 58) at
   3 sigma of the global background rms, at least 25 connected pixels, after SExtractor's default
   3 x 3 pyramid filter, deblending with 32 thresholds and a contrast of 0.005, with cleaning;
4. Kron radius (``sep.kron_radius`` within 6 a) and the flux inside 2.5 Kron radii (Kron 1980);
5. rejection of
   * tiny sources: fewer than ``min_npix`` pixels or ``a < min_a`` (the thousands of faint specks of
     the XDF that would be a few pixels across even in a cutout),
   * edge sources: any part of the 2.5 Kron-radius ellipse outside the field, or sep's truncation flag,
   * saturated sources: at least ``max_white`` pixels clipped to white in all three channels, which in
     this composite marks the foreground stars (diffraction spikes) and the few clipped cores,
   * pieces: a source whose centre lies inside the 2.5 Kron-radius aperture of a brighter kept source
     (a deblended knot of a spiral, or a member of a group that the brighter cutout already shows);
6. a square cutout centred on the source's isophotal barycentre, of side ``max(min_size, 2 * extent)`` where
   ``extent = 2.5 * kron_radius * a`` (so the cutout holds the whole Kron aperture with sky around it),
   padded with the sky level where it leaves the field, then resized to ``out_size`` with a Lanczos filter.

Ids (``HUDF-0000``, ``HUDF-0001``, ...) number the kept sources by decreasing flux over the *whole* kept
list, so they are the same whatever ``max_sources`` is, and the same on every run (sep is deterministic).
Pure numpy/sep/scikit-image/Pillow: no Django, no torch.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["HudfCutout", "HudfSource", "hudf_field", "hudf_sources", "hudf_cutouts"]

#: Detection parameters (see the module docstring for why each).
BACK_MESH = 64
BACK_FILTER = 3
DETECT_THRESH = 3.0
DETECT_MINAREA = 25
DEBLEND_NTHRESH = 32
DEBLEND_CONT = 0.005
KRON_FACTOR = 2.5


@dataclass(frozen=True)
class HudfSource:
    """One kept detection in the XDF field.

    x, y : centroid in field pixels (x = column, y = row from the top, 0-based, pixel centres on integers).
    a, b, theta : semi-axes (pixels) and angle of the major axis (radians, from +x toward +y) of the
        isophotal second moments, as sep returns them.
    kron_radius : in units of a (the Kron ellipse has semi-axes kron_radius * a, kron_radius * b).
    flux : background-subtracted sum of the detection image (mean of the channels, 8-bit units) inside
        2.5 Kron radii.
    npix : isophotal area in pixels. peak : highest background-subtracted detection-image pixel.
    """

    id: str
    x: float
    y: float
    a: float
    b: float
    theta: float
    kron_radius: float
    flux: float
    npix: int
    peak: float


@dataclass(frozen=True)
class HudfCutout:
    """A galaxy cut out of the XDF.

    image : uint8 array of shape (out_size, out_size, 3) (or (side, side, 3) when not resized).
    source : the detection it is centred on.
    box : (x0, y0, side) of the cutout in field pixels; pixel (i, j) of the unresized cutout is field
        pixel (y0 + i, x0 + j). scale : output pixels per field pixel (``image.shape[0] / side``).
    """

    id: str
    image: np.ndarray
    source: HudfSource
    box: tuple[int, int, int]
    scale: float

    @property
    def x(self) -> float:
        return self.source.x

    @property
    def y(self) -> float:
        return self.source.y

    @property
    def flux(self) -> float:
        return self.source.flux


def hudf_field() -> np.ndarray:
    """The XDF colour composite, uint8 array of shape (872, 1000, 3) (shipped by scikit-image)."""
    from skimage import data

    return data.hubble_deep_field()


@lru_cache(maxsize=8)
def _detect(min_npix: int, min_a: float, max_white: int) -> tuple[HudfSource, ...]:
    import sep

    rgb = hudf_field()
    lum = np.ascontiguousarray(rgb.astype(np.float32).mean(axis=2))
    bkg = sep.Background(lum, bw=BACK_MESH, bh=BACK_MESH, fw=BACK_FILTER, fh=BACK_FILTER)
    sub = lum - bkg.back()
    objs, seg = sep.extract(sub, DETECT_THRESH, err=bkg.globalrms, minarea=DETECT_MINAREA,
                            deblend_nthresh=DEBLEND_NTHRESH, deblend_cont=DEBLEND_CONT,
                            clean=True, segmentation_map=True)
    x, y, a, b, theta = (objs[k].astype(np.float64) for k in ("x", "y", "a", "b", "theta"))
    # Pixels of *other* sources are masked (positive seg_id), so a neighbour's light neither inflates the
    # Kron radius nor the flux -- in the crowded XDF that matters for one source in three.
    seg_id = np.arange(1, len(objs) + 1, dtype=np.int32)
    kron, _ = sep.kron_radius(sub, x, y, a, b, theta, 6.0, seg_id=seg_id, segmap=seg)
    # A source whose moments are degenerate gets kron radius 0; fall back to the isophotal ellipse.
    kron = np.where(kron > 0, kron, 1.0)
    flux, _, _ = sep.sum_ellipse(sub, x, y, a, b, theta, KRON_FACTOR * kron, subpix=1,
                                 seg_id=seg_id, segmap=seg)

    white = rgb.min(axis=2) >= 245
    n_white = np.bincount(seg.ravel(), weights=white.ravel(), minlength=len(objs) + 1)[1:]
    h, w = lum.shape
    # Half-extents of the Kron ellipse along x and y (exact bounding box of a rotated ellipse).
    r_a, r_b = KRON_FACTOR * kron * a, KRON_FACTOR * kron * b
    ext_x = np.hypot(r_a * np.cos(theta), r_b * np.sin(theta))
    ext_y = np.hypot(r_a * np.sin(theta), r_b * np.cos(theta))
    inside = (x - ext_x >= 0) & (x + ext_x <= w - 1) & (y - ext_y >= 0) & (y + ext_y <= h - 1)
    truncated = (objs["flag"] & sep.OBJ_TRUNC) != 0
    keep = ((objs["npix"] >= min_npix) & (a >= min_a) & inside & ~truncated
            & (n_white < max_white) & (flux > 0))
    idx = np.flatnonzero(keep)
    idx = idx[np.argsort(-flux[idx], kind="stable")]
    # A source lying inside the Kron aperture of a brighter kept one is a piece or satellite of it (sep
    # deblends the XDF's interacting groups and knotty spirals into several sources): its cutout would
    # repeat the brighter galaxy off-centre, so only the brighter one is kept.
    kept: list[int] = []
    for i in idx:
        if all(np.hypot(x[i] - x[j], y[i] - y[j]) > KRON_FACTOR * kron[j] * a[j] for j in kept):
            kept.append(i)
    idx = np.array(kept, dtype=int)
    return tuple(
        HudfSource(id=f"HUDF-{rank:04d}", x=float(x[i]), y=float(y[i]), a=float(a[i]), b=float(b[i]),
                   theta=float(theta[i]), kron_radius=float(kron[i]), flux=float(flux[i]),
                   npix=int(objs["npix"][i]), peak=float(objs["peak"][i]))
        for rank, i in enumerate(idx)
    )


def hudf_sources(*, min_npix: int = 80, min_a: float = 2.5, max_white: int = 8) -> list[HudfSource]:
    """The kept XDF detections, brightest first (see the module docstring for the cuts).

    Returns a list of :class:`HudfSource` (about 170 with the defaults). Cached per set of arguments.
    """
    return list(_detect(int(min_npix), float(min_a), int(max_white)))


def _cut(field: np.ndarray, sky: np.ndarray, cx: int, cy: int, side: int) -> tuple[np.ndarray, int, int]:
    """Square of ``side`` pixels whose centre pixel is (cy, cx), padded with ``sky`` outside the field."""
    x0, y0 = cx - side // 2, cy - side // 2
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[:] = sky
    h, w = field.shape[:2]
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if fx1 > fx0 and fy1 > fy0:
        out[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0] = field[fy0:fy1, fx0:fx1]
    return out, x0, y0


def hudf_cutouts(*, max_sources: int | None = None, min_size: int = 48, out_size: int | None = 128,
                 min_npix: int = 80, min_a: float = 2.5, max_white: int = 8) -> list[HudfCutout]:
    """Cutouts of the brightest XDF galaxies, brightest first.

    max_sources : keep at most this many (the brightest); None keeps all.
    min_size : smallest cutout side in field pixels; the side is ``max(min_size, 2 * ceil(2.5 * kron * a))``
        rounded up to an odd number, so the source's pixel is the exact centre pixel.
    out_size : resize every cutout to (out_size, out_size) (Lanczos); None keeps the native side.
    min_npix, min_a, max_white : the rejection cuts of :func:`hudf_sources`.

    Returns a list of :class:`HudfCutout`; deterministic.
    """
    from PIL import Image

    sources = hudf_sources(min_npix=min_npix, min_a=min_a, max_white=max_white)
    if max_sources is not None:
        sources = sources[:max_sources]
    field = hudf_field()
    # The sky level of the composite, per channel, for padding: the median of the whole field is sky,
    # since sources cover a few per cent of it.
    sky = np.median(field.reshape(-1, 3), axis=0).astype(np.uint8)
    out = []
    for s in sources:
        side = max(int(min_size), 2 * int(np.ceil(KRON_FACTOR * s.kron_radius * s.a)))
        side += 1 - side % 2
        cx, cy = int(round(s.x)), int(round(s.y))
        img, x0, y0 = _cut(field, sky, cx, cy, side)
        scale = 1.0
        if out_size is not None and out_size != side:
            img = np.asarray(Image.fromarray(img).resize((out_size, out_size), Image.LANCZOS))
            scale = out_size / side
        out.append(HudfCutout(id=s.id, image=img, source=s, box=(x0, y0, side), scale=scale))
    return out
