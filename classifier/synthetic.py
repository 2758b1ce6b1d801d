"""Synthetic galaxies with known truth, drawn with GalSim, for demos, benchmarks and the simulator.

Every galaxy comes with the answers a perfect volunteer would give (a valid path through the GZ DECaLS
DR5 tree), the boxes of its visible star-forming clumps (what Galaxy Zoo: Clump Scout volunteers mark),
and every parameter used to draw it. Galaxy ``i`` depends only on ``(seed, i)``, so any subset can be
regenerated, and generation parallelises.

How a galaxy is drawn
---------------------
All lengths are in image pixels; an image is ``size`` pixels square and the galaxy sits at its centre
(within half a pixel). Components are GalSim profiles convolved with a Moffat PSF (beta = 3.5, the shape
the Legacy Surveys fit to DECam images), each drawn once as a "luminance" layer and coloured by a g:r:z
flux ratio (with the DECaLS scales, 0.57:1:1.36 renders grey):

==============  ===============================================================  ==================
component       profile                                                          g : r : z
==============  ===============================================================  ==================
bulge,          ``galsim.Sersic`` (n on a 0.5 grid, so GalSim tabulates each n   0.45 : 1 : 1.70
elliptical      once per process); a boxy bulge is a generalised ellipse         (yellow-white)
                ``(|x|^4 + |y|^4)^(1/4)`` with an exponential profile
disk            ``galsim.Exponential`` projected by the inclination              0.80 : 1 : 1.05
                (clumpy galaxies: a younger, bluer disk)                         (0.95 : 1 : 0.90)
edge-on disk    ``galsim.InclinedExponential``, i = 84-90 deg, h_z/h_r 0.10-0.20  0.80 : 1 : 1.05
spiral arms     a logarithmic-spiral modulation of the same exponential disk     1.00 : 1 : 0.85
                (below), projected like the disk, convolved with the PSF image
bar             ``galsim.Sersic`` n = 0.5 in the disk plane, then projected      0.50 : 1 : 1.55
clumps          ``galsim.Gaussian`` knots placed one by one, sigma half the PSF's 1.20 : 1 : 0.70
tidal features  chains of ``galsim.Gaussian`` along curved arcs, and a bridge    0.80 : 1 : 1.10
stars           the PSF (bright artifact stars add spikes and a wide halo)       random
==============  ===============================================================  ==================

Spiral arms: ``m`` arms of pitch angle ``psi`` are the disk light modulated as
``A(r, phi) = ((1 + cos theta) / 2) ** 4`` with ``theta = m (phi - phi0 - ln(r / r0) / tan psi)``, a
logarithmic spiral (Binney & Tremaine 2008, sec. 6.1.3), tapered inside the bulge or the end of the bar,
made mildly flocculent (+-25 % by a random field smoothed by the PSF), and holding 45-65 % of the disk
light (55-70 % behind a large bulge; spiral bulges are compact, n 1.5-3). The pattern is computed on the
pixel grid of the projected disk, then convolved with the PSF image that GalSim draws. The logarithmic-
spiral Fourier spectrum of the deprojected image (Puerari & Dottori 1992) therefore peaks at ``m`` and at
the drawn pitch angle; the tests measure both.

Sizes (half-light radius as a fraction of the image): ellipticals 0.06-0.10, disks 0.07-0.11, spirals and
clumpy disks 0.08-0.12, edge-on disks 0.075-0.11, so that the galaxy fills the middle third of the image
as in GZ's images. Brightness: the mean stretch luminance inside the half-light radius is drawn
log-uniformly from ``config.surface_brightness``.

Bands are g, r, z in nanomaggies per pixel with the sky noise of DECaLS DR5 (measured on the real cube
``example_b.fits``: 0.0023, 0.0036, 0.0113, times a per-galaxy depth factor), and the RGB image is made
with :func:`classifier.imaging.asinh_rgb`, the GZ DECaLS stretch, so synthetic and real subjects look
alike. The same surface brightness per pixel is used at every image size: a 256 px galaxy is a 128 px one
with twice the pixels across, not a brighter one. Unrelated stars and small background galaxies are
scattered outside the galaxy's centre (Poisson means in the config).

The truth, and the thresholds that make it consistent with the drawing
----------------------------------------------------------------------
* ``how-rounded`` from the projected axis ratio q of the elliptical (before the PSF): round q > 0.75,
  in-between 0.45 < q <= 0.75, cigar-shaped q <= 0.45. q is drawn from [0.82, 1], [0.5, 0.7],
  [0.15, 0.35], away from the thresholds, because the PSF makes small galaxies look rounder.
* ``disk-edge-on`` yes: inclination 84-90 deg; no: the disk's projected axis ratio is >= 0.45 (>= 0.55
  for spirals, whose arms must survive projection).
* ``edge-on-bulge``: rounded (Sersic n 2-4, q 0.75-0.95, B/T 0.15-0.35), boxy (the c = 4 generalised
  ellipse, q 0.6-0.8, B/T 0.15-0.30), none (no bulge).
* ``bar``: strong (the bar holds 12-20 % of the disk light, semi-length 1.0-1.5 disk half-light radii,
  axis ratio 0.2-0.3), weak (4-7 %, 0.6-0.9 half-light radii, axis ratio 0.35-0.45), no. A disk with no
  arms and no strong bar is seen inclined (q <= 0.8), so that it shows as a disk.
* ``spiral-winding`` from the pitch angle: tight 8-12 deg, medium 16-22 deg, loose 28-38 deg. Spirals of
  4 or more arms are medium or loose (tight ones would be unresolved at 128 px); those of 5-6 arms are at
  least 19 deg open and large (half-light radius 0.10-0.12 of the image).
* ``spiral-arm-count``: the m drawn; ``more-than-4`` is m = 5 or 6. ``cant-tell`` is never the truth (the
  simulated volunteers use it).
* ``bulge-size`` from the bulge-to-total light ratio: none 0, small 0.05-0.12, moderate 0.18-0.30,
  large 0.38-0.52, dominant 0.62-0.75 (dominant only in spirals).
* ``merging``: merger (a companion 0.16-0.26 of the image away with 0.3-1 times the light, and no fainter
  than the config's faintest surface brightness, tidal tails from both and a faint bridge), major
  disturbance (a long one-sided tidal tail with 12-20 % of the light), minor disturbance (a short faint
  plume, 3-6 %), none.
* ``smooth-or-featured`` artifact: a bright saturated star with diffraction spikes, a satellite trail in
  one band, or a block of missing data across a faint galaxy; the path ends there as in the tree.

Clumps and their boxes
----------------------
Clumpy galaxies get ``n`` visible clumps with ``n`` drawn from the Clump Scout distribution of consensus
boxes per galaxy (:data:`CLUMP_SCOUT`), and one box side per galaxy (all Clump Scout boxes of a galaxy have
the same size) drawn from the fitted log-normal of box side / 400 px, conditioned on ``n``, times the
image size. The box side also sets the seeing: ``psf_fwhm = side / 2.2`` (floored at
``config.min_psf_fwhm``), so a box spans about one FWHM of an unresolved clump on either side of its
centre; the side is drawn for every galaxy, clumpy or not, so the seeing does not give the class away.
Clumps sit at disk-plane radii drawn from the fitted Gamma distribution of clump distance from the galaxy
centre (in units of the image; median 0.13), kept between max(one box side, 0.04 of the image) and 2.2
disk half-light radii so that they lie on the disk and off the bulge, at random angles (on an arm crest in
spirals), at least max(1.5 box sides, a side + 3 px, 3 PSF FWHM) apart, with their box inside the image.
After projection the median distance is about 0.11 of the image.

A clump is *visible*, and gets a box, when its PSF-convolved peak in the stretch-normalised luminance
``L = g/0.008 + r/0.014 + z/0.019`` is at least ``visibility_sigma`` (5) times the noise of L *and*
``visibility_contrast`` (0.5) times the galaxy light under it. Visible clumps are drawn 2-5 times above that
threshold, then brightened in steps of 1.5 until, in the noiseless luminance, the brightest pixel of the box
outshines the one-pixel ring around the box by 4 sigma (near a bright centre a clump could otherwise be a
shoulder rather than a knot). "Faint" clumps (Poisson, mean ``faint_clumps_mean``) are drawn at 0.1-0.4 of
the threshold and get no box, as a volunteer would not mark them. Boxes are ``[x, y, w, h]`` in pixels with
x, y the top-left corner, where pixel (row i, column j) covers ``[j, j + 1) x [i, i + 1)`` (the
torchvision/COCO convention); boxes are inside the image by construction.

The statistics were measured on ``imageGroups_train.csv`` of the Clump Scout Faster R-CNN repository
(see :func:`fit_clump_scout_stats`, which recomputes them; the tests check the shipped numbers against it).
The generator always uses the shipped constants, never a fresh fit, so that a galaxy is the same on every
machine whether or not ``shared/realdata`` is present.

No Django and no torch: numpy, scipy, GalSim and Pillow only.
"""
from __future__ import annotations

import csv
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Sequence

import galsim
import numpy as np
from scipy.signal import fftconvolve

from aggregation.tree import DecisionTree
from classifier.imaging import DECALS_SCALES, asinh_rgb

__all__ = [
    "KINDS",
    "BANDS",
    "SKY_SIGMA",
    "CLUMP_SCOUT",
    "ClumpScoutStats",
    "SyntheticConfig",
    "SyntheticGalaxy",
    "clump_scout_csv",
    "fit_clump_scout_stats",
    "clump_scout_stats",
    "sample_clump_layout",
    "galaxy_kind",
    "make_galaxy",
    "make_galaxies",
    "simulate_votes",
    "write_dataset",
]

BANDS = "grz"
#: Stretch scales of the bands (nanomaggies): L = sum(band / scale) is what the asinh stretch sees.
_SCALE = np.array([DECALS_SCALES[b][1] for b in BANDS], dtype=np.float64)
#: Sky noise per pixel in g, r, z (nanomaggies), the median absolute deviation of the DECaLS DR5 cube
#: example_b.fits (galaxy-zoo-bayesian-cnn test data) times 1.4826.
SKY_SIGMA = np.array([0.0023, 0.0036, 0.0113], dtype=np.float64)

KINDS = ("elliptical", "edge_on", "disk", "spiral", "clumpy", "merger", "artifact")

#: Default class mix: roughly balanced over the tree's main branches, more spirals because their
#: sub-questions (winding, arm count) have the most answers to learn.
DEFAULT_KIND_WEIGHTS: dict[str, float] = {
    "elliptical": 0.17, "edge_on": 0.14, "disk": 0.13, "spiral": 0.24,
    "clumpy": 0.14, "merger": 0.10, "artifact": 0.08,
}

_GSP = galsim.GSParams(folding_threshold=1e-2, maxk_threshold=2e-3)
_SERSIC_GRID = np.arange(0.5, 6.01, 0.5)  # GalSim tabulates each Sersic n once per process
_MOFFAT_BETA = 3.5
BOX_PER_FWHM = 2.2  # clump box side in units of the PSF FWHM


def _colour(g: float, r: float, z: float) -> np.ndarray:
    """Band fluxes per unit of stretch luminance L = sum(band / scale): shape (3,)."""
    c = np.array([g, r, z], dtype=np.float64)
    return c / np.sum(c / _SCALE)


# Old stars are red, young ones blue. With the DECaLS scales a g:r:z of 0.57:1:1.36 comes out grey, so
# bulges (0.45:1:1.7) look yellow-white as in GZ DECaLS images, disks a little blue, clumps clearly blue.
COLOURS = {
    "bulge": _colour(0.45, 1.0, 1.70),
    "disk": _colour(0.80, 1.0, 1.05),
    "young_disk": _colour(0.95, 1.0, 0.90),
    "arms": _colour(1.00, 1.0, 0.85),
    "bar": _colour(0.50, 1.0, 1.55),
    "clump": _colour(1.20, 1.0, 0.70),
    "tail": _colour(0.80, 1.0, 1.10),
}


# =============================================================================== Clump Scout statistics
@dataclass(frozen=True)
class ClumpScoutStats:
    """What the Clump Scout consensus boxes say about clumps, in units of the 400 px subject image.

    count_pmf : P(n boxes = 1, 2, ..., 9) over galaxies with at least one box.
    size_mu0, size_slope, size_sigma : ``log(side / 400) ~ Normal(size_mu0 + size_slope * min(n, 6),
        size_sigma)`` -- every box of a galaxy has the same side, and galaxies with more clumps have
        smaller boxes (Spearman rho = -0.27 between n and side).
    size_log_mean, size_log_std : the marginal log-normal of side / 400 over galaxies.
    radius_shape, radius_scale : Gamma distribution of a clump centre's distance from the galaxy centre
        / 400 (the centre is the mean clump position, (100.0, 102.8) in the file's frame).
    odd_fraction : fraction of boxes labelled "clumpy, odd".
    n_galaxies, n_boxes : the sample the numbers come from.
    """

    count_pmf: tuple[float, ...]
    size_mu0: float
    size_slope: float
    size_sigma: float
    size_log_mean: float
    size_log_std: float
    radius_shape: float
    radius_scale: float
    odd_fraction: float
    n_galaxies: int
    n_boxes: int

    @property
    def mean_count(self) -> float:
        return float(np.dot(np.arange(1, len(self.count_pmf) + 1), self.count_pmf))

    @property
    def median_size(self) -> float:
        """Median box side / 400 px (about 0.043, i.e. 17 px of the 400 px image)."""
        return float(np.exp(self.size_log_mean))


#: Measured on imageGroups_train.csv (32,270 boxes on 13,969 galaxies; Adams et al. 2022, MNRAS 511,
#: 4480, consensus of the Galaxy Zoo: Clump Scout volunteers) by :func:`fit_clump_scout_stats`: box
#: counts per galaxy tallied and normalised; box side = x2 - x1 (= y2 - y1: the boxes are squares) in the
#: file's pixels, which are pixels of the 400 px subject image (the notebook that wrote the file maps
#: normalised coordinates with a factor 400 and an offset, and the bulge marks it removed left a hole
#: 0.02 * 400 = 8 px wide at the centre); log-side regressed on min(n, 6) by least squares; clump
#: distances fitted with scipy.stats.gamma (location 0). The valid split (13,894 boxes on 5,987
#: galaxies) gives the same numbers to within 0.006 (pmf) and 0.005 (log side).
CLUMP_SCOUT = ClumpScoutStats(
    count_pmf=(0.25936, 0.41699, 0.17933, 0.08190, 0.03529, 0.01811, 0.00644, 0.00222, 0.00036),
    size_mu0=-2.97711,
    size_slope=-0.07571,
    size_sigma=0.32115,
    size_log_mean=-3.15111,
    size_log_std=0.33366,
    radius_shape=5.6207,
    radius_scale=0.024579,
    odd_fraction=0.27710,
    n_galaxies=13969,
    n_boxes=32270,
)


def _realdata_dir() -> Path:
    env = os.environ.get("REALDATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "realdata"


def clump_scout_csv(split: str = "train") -> Path:
    """Where the Clump Scout box file of ``split`` ("train" or "valid") is: ``$REALDATA_DIR`` or
    ``<repo>/../shared/realdata``. The file may not exist."""
    return (_realdata_dir() / "Faster-R-CNN-for-Galaxy-Zoo-Clump-Scout" / "Faster-RCNN - Pytorch"
            / f"imageGroups_{split}.csv")


def fit_clump_scout_stats(path: str | Path) -> ClumpScoutStats:
    """Fit :class:`ClumpScoutStats` to a Clump Scout box file (columns local_ids, label, x1, x2, y1, y2)."""
    import pandas as pd
    from scipy import stats

    d = pd.read_csv(path)
    d = d.assign(side=(d["x2"] - d["x1"]) / 400.0, cx=(d["x1"] + d["x2"]) / 2, cy=(d["y1"] + d["y2"]) / 2)
    per = d.groupby("local_ids").agg(n=("side", "size"), side=("side", "mean"))
    counts = per["n"].value_counts().sort_index()
    n_max = max(9, int(counts.index.max()))
    pmf = np.array([counts.get(k, 0) for k in range(1, n_max + 1)], dtype=float)
    pmf /= pmf.sum()
    log_side = np.log(per["side"].to_numpy())
    slope, mu0 = np.polyfit(np.minimum(per["n"].to_numpy(), 6), log_side, 1)
    resid = log_side - (mu0 + slope * np.minimum(per["n"].to_numpy(), 6))
    r = np.hypot(d["cx"] - d["cx"].mean(), d["cy"] - d["cy"].mean()).to_numpy() / 400.0
    shape, _, scale = stats.gamma.fit(r, floc=0)
    return ClumpScoutStats(
        count_pmf=tuple(float(p) for p in pmf), size_mu0=float(mu0), size_slope=float(slope),
        size_sigma=float(resid.std()), size_log_mean=float(log_side.mean()),
        size_log_std=float(log_side.std()), radius_shape=float(shape), radius_scale=float(scale),
        odd_fraction=float((d["label"] == 2).mean()), n_galaxies=int(len(per)), n_boxes=int(len(d)),
    )


@lru_cache(maxsize=1)
def clump_scout_stats() -> ClumpScoutStats:
    """The statistics fitted afresh from ``shared/realdata`` when the file is there (cached), else
    :data:`CLUMP_SCOUT`. For inspection; generation always uses :data:`CLUMP_SCOUT`."""
    path = clump_scout_csv("train")
    return fit_clump_scout_stats(path) if path.exists() else CLUMP_SCOUT


def sample_clump_layout(rng: np.random.Generator, size: int,
                        stats: ClumpScoutStats = CLUMP_SCOUT) -> tuple[int, float]:
    """Draw the number of visible clumps and the box side (pixels) of one clumpy galaxy.

    Returns ``(n, side)``: n from ``stats.count_pmf``, ``side = size * exp(Normal(mu0 + slope*min(n,6),
    sigma))``, clipped to [0.012, 0.12] of the image (the 0.05th-99.95th percentiles).
    """
    pmf = np.asarray(stats.count_pmf, dtype=float)
    n = int(rng.choice(np.arange(1, len(pmf) + 1), p=pmf / pmf.sum()))
    log_side = rng.normal(stats.size_mu0 + stats.size_slope * min(n, 6), stats.size_sigma)
    return n, float(size * np.clip(np.exp(log_side), 0.012, 0.12))


# ====================================================================================== configuration
@dataclass(frozen=True)
class SyntheticConfig:
    """What a synthetic sample looks like. Every field has a default that makes a balanced training set.

    kind_weights : relative frequency of each of :data:`KINDS` (missing kinds never occur).
    surface_brightness : range (log-uniform) of the mean stretch luminance per pixel inside the half-light
        radius. 10-30 gives a disk of half-light radius 10 px (in a 128 px image) r = 17.7-18.9 mag
        (22.5 - 2.5 log10 of its flux in nanomaggies), with DECaLS's noise per pixel: the faint end of GZ
        DECaLS (r < 17.77), like the real cube example_b.fits (r = 17.6 in its pixels above 3 sigma).
    depth : range of the factor on :data:`SKY_SIGMA` (deeper or shallower than DECaLS).
    min_psf_fwhm : floor of the PSF FWHM in pixels (the FWHM otherwise follows the box side).
    clump_probability : chance that a galaxy of each kind has clumps (``clumpy`` always does).
    faint_clumps_mean : Poisson mean of extra clumps drawn below visibility (no box) in a clumpy galaxy.
    visibility_sigma, visibility_contrast : the visibility rule for a clump box (module docstring).
    disturbance_probability : chances of (major, minor) disturbance for non-merger galaxies.
    field_stars_mean, background_galaxies_mean : Poisson means of unrelated stars and faint galaxies.
    """

    kind_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_KIND_WEIGHTS))
    surface_brightness: tuple[float, float] = (10.0, 30.0)
    depth: tuple[float, float] = (0.8, 1.5)
    min_psf_fwhm: float = 1.3
    clump_probability: Mapping[str, float] = field(
        default_factory=lambda: {"spiral": 0.2, "disk": 0.05, "merger": 0.1, "clumpy": 1.0})
    faint_clumps_mean: float = 1.0
    visibility_sigma: float = 5.0
    visibility_contrast: float = 0.5
    disturbance_probability: tuple[float, float] = (0.07, 0.10)
    field_stars_mean: float = 0.4
    background_galaxies_mean: float = 1.5

    def __post_init__(self):
        unknown = set(self.kind_weights) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown kinds {sorted(unknown)}; known kinds: {', '.join(KINDS)}")
        if not any(w > 0 for w in self.kind_weights.values()):
            raise ValueError("kind_weights gives no kind a positive weight")


@dataclass
class SyntheticGalaxy:
    """One synthetic galaxy.

    id : ``"syn-<seed>-<index>"``, unique within a seed.
    image : uint8 array of shape (size, size, 3), the GZ DECaLS stretch of the g, r, z bands.
    answers : the true path through the GZ DECaLS tree, ``((question, answer), ...)``.
    boxes : float32 array of shape (n_visible_clumps, 4), ``[x, y, w, h]`` (top-left corner, pixels).
    params : everything drawn (kind, geometry, fluxes, PSF, noise, clumps...), JSON-serialisable.
    bands : float32 array of shape (3, size, size), the g, r, z images in nanomaggies (noise included).
    """

    id: str
    image: np.ndarray
    answers: tuple[tuple[str, str], ...]
    boxes: np.ndarray
    params: dict
    bands: np.ndarray | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return self.params["kind"]

    def answer(self, question: str) -> str | None:
        """The true answer to ``question``, or None when the true path does not reach it."""
        return dict(self.answers).get(question)


@lru_cache(maxsize=1)
def _tree() -> DecisionTree:
    return DecisionTree.builtin("gz_decals")


# =========================================================================================== drawing
def _rot(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s], [s, c]])


def _disk_jacobian(pa: float, q: float, phi: float = 0.0, a: float = 1.0, b: float = 1.0) -> np.ndarray:
    """Map from a unit profile to an ellipse (a, b) at angle phi in a disk plane, seen at axis ratio q
    (cos of the inclination) with major axis at position angle pa: ``R(pa) diag(1, q) R(phi) diag(a, b)``."""
    return _rot(pa) @ np.diag([1.0, q]) @ _rot(phi) @ np.diag([a, b])


def _transformed(profile: galsim.GSObject, jac: np.ndarray, flux: float) -> galsim.GSObject:
    return profile.transform(jac[0, 0], jac[0, 1], jac[1, 0], jac[1, 1]).withFlux(flux)


def _sersic(n: float) -> galsim.GSObject:
    n = float(_SERSIC_GRID[np.argmin(np.abs(_SERSIC_GRID - n))])
    return galsim.Sersic(n=n, half_light_radius=1.0, gsparams=_GSP)


class _Canvas:
    """Luminance layers of one image, each PSF-convolved, and their colours.

    Positions are array coordinates (x = column, y = row, pixel centres on integers); GalSim draws with
    its origin on the array centre ((size - 1) / 2, (size - 1) / 2), and its y axis along the rows.
    """

    def __init__(self, size: int, psf_fwhm: float):
        self.size = size
        self.c = (size - 1) / 2.0
        self.psf = galsim.Moffat(beta=_MOFFAT_BETA, fwhm=psf_fwhm, gsparams=_GSP)
        k = min(size - (1 - size % 2), 2 * int(math.ceil(4 * psf_fwhm)) + 1)
        img = self.psf.drawImage(nx=k, ny=k, scale=1.0).array.astype(np.float64)
        self.psf_image = img / img.sum()
        self.layers: list[tuple[str, np.ndarray, np.ndarray]] = []
        yy, xx = np.mgrid[0:size, 0:size]
        self.xx, self.yy = xx.astype(np.float64), yy.astype(np.float64)

    def draw(self, profile: galsim.GSObject) -> np.ndarray:
        """A GalSim profile (already placed: shifted so its origin is the array centre) through the PSF."""
        return galsim.Convolve(profile, self.psf, gsparams=_GSP).drawImage(
            nx=self.size, ny=self.size, scale=1.0).array.astype(np.float64)

    def add(self, name: str, profile: galsim.GSObject, colour: np.ndarray) -> np.ndarray:
        """Draw a placed GalSim profile as a new layer."""
        img = self.draw(profile)
        self.layers.append((name, img, colour))
        return img

    def add_pattern(self, name: str, pattern: np.ndarray, flux: float, colour: np.ndarray) -> np.ndarray:
        """A surface-brightness pattern sampled on the pixel grid, scaled to ``flux`` and PSF-convolved."""
        total = pattern.sum()
        if total <= 0 or flux <= 0:
            return np.zeros((self.size, self.size))
        img = fftconvolve(pattern * (flux / total), self.psf_image, mode="same")
        self.layers.append((name, img, colour))
        return img

    def shift(self, profile: galsim.GSObject, x: float, y: float) -> galsim.GSObject:
        return profile.shift(x - self.c, y - self.c)

    def luminance(self, exclude: Sequence[str] = ()) -> np.ndarray:
        out = np.zeros((self.size, self.size))
        for name, img, _ in self.layers:
            if name not in exclude:
                out += img
        return out

    def bands(self) -> np.ndarray:
        out = np.zeros((3, self.size, self.size))
        for _, img, col in self.layers:
            out += col[:, None, None] * img[None]
        return out


class _Builder:
    """Draws one galaxy: holds the random stream, the canvas, the answers and the parameters."""

    def __init__(self, rng: np.random.Generator, size: int, cfg: SyntheticConfig, kind: str):
        self.rng, self.size, self.cfg, self.kind = rng, size, cfg, kind
        self.params: dict = {"kind": kind, "size": size}
        # Seeing and the clump box side come together (module docstring): drawn for every galaxy so that
        # the PSF does not give the class away.
        n_clumps, side = sample_clump_layout(rng, size)
        self.n_clumps, self.box_side = n_clumps, side
        self.psf_fwhm = max(cfg.min_psf_fwhm, side / BOX_PER_FWHM)
        self.depth = float(rng.uniform(*cfg.depth))
        self.sigma = SKY_SIGMA * self.depth
        self.sigma_l = float(np.sqrt(np.sum((self.sigma / _SCALE) ** 2)))  # noise of L
        self.canvas = _Canvas(size, self.psf_fwhm)
        jitter = rng.uniform(-0.5, 0.5, size=2)
        self.cx, self.cy = self.canvas.c + jitter[0], self.canvas.c + jitter[1]
        self.params.update(psf_fwhm=self.psf_fwhm, psf_beta=_MOFFAT_BETA, depth=self.depth,
                           sky_sigma=[float(s) for s in self.sigma], centre=[self.cx, self.cy])
        self.clumps: list[dict] = []
        self.answers: list[tuple[str, str]] = []

    # ----------------------------------------------------------------------------- small helpers
    def u(self, lo: float, hi: float) -> float:
        return float(self.rng.uniform(lo, hi))

    def pick(self, options: Sequence, p: Sequence[float] | None = None):
        i = int(self.rng.choice(len(options), p=None if p is None else np.asarray(p) / np.sum(p)))
        return options[i]

    def total_flux(self, hlr: float) -> float:
        """Luminance of a galaxy of half-light radius ``hlr`` at a surface brightness from the config."""
        lo, hi = self.cfg.surface_brightness
        mu = math.exp(self.u(math.log(lo), math.log(hi)))
        return 2.0 * math.pi * hlr ** 2 * mu

    def disk_plane_xy(self, r: float, phi: float, pa: float, q: float, x0: float, y0: float):
        """Array position of disk-plane polar point (r, phi)."""
        x, y = _disk_jacobian(pa, q) @ np.array([r * math.cos(phi), r * math.sin(phi)])
        return x0 + x, y0 + y

    def disk_plane_coords(self, pa: float, q: float, x0: float, y0: float):
        """Disk-plane radius and angle of every pixel: arrays of shape (size, size)."""
        dx, dy = self.canvas.xx - x0, self.canvas.yy - y0
        c, s = math.cos(pa), math.sin(pa)
        u = c * dx + s * dy
        v = (-s * dx + c * dy) / q
        return np.hypot(u, v), np.arctan2(v, u)

    # ------------------------------------------------------------------------------- components
    def bulge(self, flux: float, hlr: float, n: float, q: float, pa: float, x0: float, y0: float,
              name: str = "bulge", colour: str = "bulge") -> dict:
        prof = _transformed(_sersic(n), _rot(pa) @ np.diag([hlr, hlr * q]), flux)
        self.canvas.add(name, self.canvas.shift(prof, x0, y0), COLOURS[colour])
        return {"flux": flux, "hlr": hlr, "n": float(_SERSIC_GRID[np.argmin(np.abs(_SERSIC_GRID - n))]),
                "q": q, "pa": pa}

    def boxy_bulge(self, flux: float, a: float, q: float, pa: float, x0: float, y0: float) -> dict:
        """Generalised ellipse ``(|x/a|^c + |y/(q a)|^c)^(1/c)`` with c = 4 (boxy isophotes; Athanassoula
        et al. 1990 use c > 2 for boxy), exponential in that radius."""
        dx, dy = self.canvas.xx - x0, self.canvas.yy - y0
        c, s = math.cos(pa), math.sin(pa)
        u, v = (c * dx + s * dy) / a, (-s * dx + c * dy) / (q * a)
        rr = (np.abs(u) ** 4 + np.abs(v) ** 4) ** 0.25
        self.canvas.add_pattern("bulge", np.exp(-1.678 * rr), flux, COLOURS["bulge"])
        return {"flux": flux, "a": a, "q": q, "pa": pa, "c": 4.0}

    def disk(self, flux: float, h: float, q: float, pa: float, x0: float, y0: float,
             name: str = "disk", colour: str = "disk") -> dict:
        prof = _transformed(galsim.Exponential(scale_radius=1.0, gsparams=_GSP), _disk_jacobian(pa, q, 0, h, h),
                            flux)
        self.canvas.add(name, self.canvas.shift(prof, x0, y0), COLOURS[colour])
        return {"flux": flux, "scale_radius": h, "hlr": 1.678 * h, "q": q, "pa": pa}

    def bar(self, strength: str, disk_flux: float, h: float, q: float, pa: float, x0: float, y0: float) -> dict:
        hlr = 1.678 * h
        if strength == "strong":
            frac, length, qb = self.u(0.12, 0.20), self.u(1.0, 1.5) * hlr, self.u(0.2, 0.3)
        else:
            frac, length, qb = self.u(0.04, 0.07), self.u(0.6, 0.9) * hlr, self.u(0.35, 0.45)
        phi = self.u(0, math.pi)
        # A Gaussian (Sersic n = 0.5) bar: the visible semi-length is about 1.7 half-light radii.
        jac = _disk_jacobian(pa, q, phi, length / 1.7, qb * length / 1.7)
        prof = _transformed(_sersic(0.5), jac, frac * disk_flux)
        self.canvas.add("bar", self.canvas.shift(prof, x0, y0), COLOURS["bar"])
        return {"strength": strength, "flux": frac * disk_flux, "fraction": frac, "semi_length": length,
                "axis_ratio": qb, "angle_in_disk": phi}

    def arms(self, m: int, pitch_deg: float, flux: float, h: float, q: float, pa: float, x0: float, y0: float,
             r_in: float) -> dict:
        r, phi = self.disk_plane_coords(pa, q, x0, y0)
        phi0 = self.u(0, 2 * math.pi)
        hand = self.pick([-1.0, 1.0])
        r0 = max(r_in, 1.0)
        theta = m * (phi - phi0 - hand * np.log(np.maximum(r, 0.3) / r0) / math.tan(math.radians(pitch_deg)))
        modulation = ((1.0 + np.cos(theta)) / 2.0) ** 4
        taper = 1.0 - np.exp(-((r / r_in) ** 3))
        # Flocculence: a smooth random field (scale ~ the PSF) so arms break into patches as real ones do;
        # kept mild (+-25 %) so no patch becomes a clump-like peak.
        noise = fftconvolve(self.rng.normal(size=r.shape), self.canvas.psf_image, mode="same")
        noise /= noise.std() + 1e-12
        floc = np.clip(1.0 + 0.25 * noise, 0.3, None)
        pattern = np.exp(-r / h) * taper * modulation * floc
        self.canvas.add_pattern("arms", pattern, flux, COLOURS["arms"])
        return {"m": m, "pitch_deg": pitch_deg, "flux": flux, "phase": phi0, "handedness": hand, "r_in": r_in}

    def knots_profile(self, positions: Sequence[tuple[float, float]], fluxes: Sequence[float],
                      sigma: float) -> galsim.GSObject:
        parts = [self.canvas.shift(galsim.Gaussian(sigma=sigma, flux=f, gsparams=_GSP), x, y)
                 for (x, y), f in zip(positions, fluxes)]
        return galsim.Sum(parts) if len(parts) > 1 else parts[0]

    def knots(self, name: str, positions: Sequence[tuple[float, float]], fluxes: Sequence[float], sigma: float,
              colour: str = "clump") -> None:
        if positions:
            self.canvas.add(name, self.knots_profile(positions, fluxes, sigma), COLOURS[colour])

    def arc(self, name: str, x0: float, y0: float, start_r: float, angle: float, length: float, bend: float,
            flux: float, width: float, colour: str = "tail") -> dict:
        """A tidal tail: Gaussians along a curve leaving (x0, y0), widening and fading outward."""
        k = 24
        t = np.linspace(0.0, 1.0, k)
        rad = start_r + t * length
        ang = angle + bend * t
        xs, ys = x0 + rad * np.cos(ang), y0 + rad * np.sin(ang)
        w = np.exp(-2.0 * t)
        sig = width * (0.6 + 0.8 * t)
        parts = [self.canvas.shift(galsim.Gaussian(sigma=s, flux=flux * wi / w.sum(), gsparams=_GSP), x, y)
                 for x, y, s, wi in zip(xs, ys, sig, w)]
        self.canvas.add(name, galsim.Sum(parts), COLOURS[colour])
        return {"start_r": start_r, "angle": angle, "length": length, "bend": bend, "flux": flux}

    def star(self, x: float, y: float, flux: float, colour: np.ndarray, spikes: bool = False) -> None:
        prof = galsim.DeltaFunction(flux=flux, gsparams=_GSP)
        if spikes:
            spike_len = 0.35 * self.size
            ang = self.u(0, math.pi / 2)
            for a in (ang, ang + math.pi / 2):
                jac = _rot(a) @ np.diag([spike_len / 2.0, 0.35])
                prof = prof + _transformed(galsim.Gaussian(sigma=1.0, gsparams=_GSP), jac, 0.04 * flux)
            prof = prof + galsim.Moffat(beta=2.0, fwhm=4 * self.psf_fwhm, flux=0.15 * flux, gsparams=_GSP)
        self.canvas.add("star", self.canvas.shift(prof, x, y), colour)

    # --------------------------------------------------------------------------------- galaxies
    def elliptical(self, x0: float, y0: float, scale: float = 1.0) -> list[tuple[str, str]]:
        shape = self.pick(["round", "in-between", "cigar-shaped"])
        q = {"round": (0.82, 1.0), "in-between": (0.5, 0.7), "cigar-shaped": (0.15, 0.35)}[shape]
        q = self.u(*q)
        hlr = self.u(0.06, 0.10) * self.size * scale
        n = self.u(2.5, 5.0)
        pa = self.u(0, math.pi)
        flux = self.total_flux(hlr * math.sqrt(q))
        self.params["elliptical"] = self.bulge(flux, hlr, n, q, pa, x0, y0, name="elliptical")
        self.params["galaxy_hlr"] = hlr
        return [("smooth-or-featured", "smooth"), ("how-rounded", shape)]

    def edge_on(self, x0: float, y0: float, scale: float = 1.0) -> list[tuple[str, str]]:
        bulge_kind = self.pick(["rounded", "boxy", "none"])
        hlr = self.u(0.075, 0.11) * self.size * scale
        h = hlr / 1.678
        pa = self.u(0, math.pi)
        incl = self.u(84.0, 90.0)
        hz = self.u(0.10, 0.20) * h
        total = self.total_flux(hlr) * 0.6
        bt = {"rounded": self.u(0.15, 0.35), "boxy": self.u(0.15, 0.30), "none": 0.0}[bulge_kind]
        prof = galsim.InclinedExponential(incl * galsim.degrees, scale_radius=h, scale_height=hz,
                                          flux=(1 - bt) * total, gsparams=_GSP).rotate(pa * galsim.radians)
        self.canvas.add("disk", self.canvas.shift(prof, x0, y0), COLOURS["disk"])
        self.params["disk"] = {"flux": (1 - bt) * total, "scale_radius": h, "hlr": hlr, "inclination_deg": incl,
                               "scale_height": hz, "pa": pa, "q": math.cos(math.radians(incl))}
        if bulge_kind == "rounded":
            self.params["bulge"] = self.bulge(bt * total, self.u(0.18, 0.3) * hlr, self.u(2.0, 4.0),
                                              self.u(0.75, 0.95), pa, x0, y0)
        elif bulge_kind == "boxy":
            self.params["bulge"] = self.boxy_bulge(bt * total, self.u(0.22, 0.32) * hlr, self.u(0.6, 0.8), pa,
                                                   x0, y0)
        self.params["bulge_to_total"] = bt
        self.params["galaxy_hlr"] = hlr
        return [("smooth-or-featured", "featured-or-disk"), ("disk-edge-on", "yes"), ("edge-on-bulge", bulge_kind)]

    def face_on(self, x0: float, y0: float, *, spiral: bool, clumpy: bool = False,
                scale: float = 1.0) -> list[tuple[str, str]]:
        """Disk (lenticular-like), spiral or clumpy galaxy seen at a projected axis ratio >= 0.45."""
        if clumpy:
            bar, bulge_size = "no", self.pick(["none", "small"])
        else:
            bar = self.pick(["strong", "weak", "no"])
            sizes = ["none", "small", "moderate", "large", "dominant"] if spiral else ["none", "small", "moderate",
                                                                                      "large"]
            bulge_size = self.pick(sizes)
        bt = {"none": 0.0, "small": self.u(0.05, 0.12), "moderate": self.u(0.18, 0.30),
              "large": self.u(0.38, 0.52), "dominant": self.u(0.62, 0.75)}[bulge_size]
        if spiral:
            count = self.pick(["1", "2", "3", "4", "more-than-4"])
            m = int(count) if count != "more-than-4" else int(self.pick([5, 6]))
            # Neighbouring arms are 2 pi r tan(psi) / m apart: for tight spirals with 4 or more arms that is
            # under two PSF widths at 128 px, so such a spiral would not show what its truth says. For the
            # same reason galaxies with 5 or 6 arms are large and at least 19 deg open.
            winding = self.pick(["tight", "medium", "loose"] if m <= 3 else ["medium", "loose"])
            pitch = {"tight": self.u(8, 12), "medium": self.u(19 if m >= 5 else 16, 22),
                     "loose": self.u(28, 38)}[winding]
        hlr_range = (0.10, 0.12) if spiral and m >= 5 else (0.08, 0.12) if (spiral or clumpy) else (0.07, 0.11)
        hlr = self.u(*hlr_range) * self.size * scale
        h = hlr / 1.678
        # A featureless disk shows itself by its flattening: without arms or a bar it is seen inclined.
        q_lo, q_hi = (0.45, 1.0) if (spiral or clumpy or bar == "strong") else (0.45, 0.8)
        if spiral:
            q_lo = 0.55  # arms must survive projection to be countable
        q = self.u(q_lo, q_hi)
        pa = self.u(0, math.pi)
        total = self.total_flux(hlr)
        disk_flux = (1 - bt) * total
        if spiral:
            # A spiral's bulge is compact (pseudo-bulge-like, n <= 3), or a big one would hide the arms.
            bulge_hlr, bulge_n = self.u(0.12, 0.20) * hlr * (1.0 + 0.5 * bt), self.u(1.5, 3.0)
        else:
            bulge_hlr, bulge_n = self.u(0.15, 0.25) * hlr * (1.0 + 0.8 * bt), self.u(1.5, 4.0)
        if bt > 0:
            self.params["bulge"] = self.bulge(bt * total, bulge_hlr, bulge_n, self.u(0.8, 1.0),
                                              self.u(0, math.pi), x0, y0)
        answers = [("smooth-or-featured", "featured-or-disk"), ("disk-edge-on", "no"), ("bar", bar)]
        smooth_disk = disk_flux
        r_in = max(bulge_hlr * 1.5 if bt > 0 else 0.3 * hlr, 2.0)
        if bar != "no":
            self.params["bar"] = self.bar(bar, disk_flux, h, q, pa, x0, y0)
            smooth_disk -= self.params["bar"]["flux"]
            r_in = max(r_in, 0.7 * self.params["bar"]["semi_length"])
        if spiral:
            # Behind a large bulge the arms need more of the disk light to stay visible.
            frac = self.u(0.55, 0.70) if bt > 0.35 else self.u(0.45, 0.65)
            self.params["arms"] = self.arms(m, pitch, frac * disk_flux, h, q, pa, x0, y0, r_in)
            smooth_disk -= frac * disk_flux
            answers += [("has-spiral-arms", "yes"), ("spiral-winding", winding), ("spiral-arm-count", count)]
        else:
            answers += [("has-spiral-arms", "no")]
        if clumpy:
            # Irregular: a quarter of the disk light in an offset component makes the disk lopsided.
            off_frac = self.u(0.15, 0.3)
            ang, dist = self.u(0, 2 * math.pi), self.u(0.3, 0.6) * hlr
            ox, oy = x0 + dist * math.cos(ang), y0 + dist * math.sin(ang)
            self.params["lopsided"] = self.disk(off_frac * smooth_disk, 0.7 * h, q, pa, ox, oy, name="disk",
                                                colour="young_disk")
            smooth_disk *= 1 - off_frac
        self.params["disk"] = self.disk(smooth_disk, h, q, pa, x0, y0, colour="young_disk" if clumpy else "disk")
        self.params["disk"]["total_flux"] = disk_flux
        self.params["bulge_to_total"] = bt
        self.params["galaxy_hlr"] = hlr
        answers.append(("bulge-size", bulge_size))
        return answers

    # -------------------------------------------------------------------------------- clumps
    def place_clumps(self, n_visible: int, n_faint: int, on_arms: bool) -> None:
        """Clumps in the disk of the main galaxy (module docstring). Must run after the galaxy is drawn."""
        disk = self.params["disk"]
        pa, q = disk["pa"], disk["q"]
        side = self.box_side
        sigma_psf = self.psf_fwhm / 2.3548
        sigma_k = 0.5 * sigma_psf  # clumps are barely resolved: their size is mostly the PSF's
        stats = CLUMP_SCOUT
        positions: list[tuple[float, float]] = []
        min_sep = max(1.5 * side, side + 3.0, 3.0 * self.psf_fwhm)
        arms = self.params.get("arms")
        tries = 0
        while len(positions) < n_visible + n_faint and tries < 400:
            tries += 1
            r = float(self.rng.gamma(stats.radius_shape, stats.radius_scale)) * self.size
            # Clump Scout removed marks on the bulge, and a clump belongs on the disk: distances are drawn
            # from the Clump Scout distribution, kept within [max(one box side, 0.04 of the image), 2.2 disk
            # half-light radii] (0.04 is the 1st percentile of the Clump Scout distances).
            if r > 2.2 * disk["hlr"] or r < max(side, 0.04 * self.size):
                continue
            if on_arms and arms:
                k = int(self.rng.integers(arms["m"]))
                r0 = max(arms["r_in"], 1.0)
                phi = (arms["phase"] + 2 * math.pi * k / arms["m"]
                       + arms["handedness"] * math.log(r / r0) / math.tan(math.radians(arms["pitch_deg"])))
            else:
                phi = self.u(0, 2 * math.pi)
            x, y = self.disk_plane_xy(r, phi, pa, q, self.cx, self.cy)
            half = side / 2
            if not (half <= x + 0.5 <= self.size - half and half <= y + 0.5 <= self.size - half):
                continue
            # Far enough apart that two boxes and the pixel ring around each do not overlap, and two clumps
            # are not blended by the PSF.
            if any(math.hypot(x - px, y - py) < min_sep for px, py in positions):
                continue
            positions.append((x, y))
        smooth = self.canvas.luminance()
        # Every clump is the same PSF-convolved Gaussian: each is drawn once, at unit flux, on a small stamp
        # at its sub-pixel position, and scaled afterwards (no redraw when a clump is brightened below).
        unit = galsim.Convolve(galsim.Gaussian(sigma=sigma_k, gsparams=_GSP), self.canvas.psf, gsparams=_GSP)
        k = max(7, 2 * int(math.ceil(3 * self.psf_fwhm)) + 1)  # +-3 FWHM: all but <1 % of a Moffat's light
        peak_unit = float(unit.drawImage(nx=k, ny=k, scale=1.0).array.max())
        stamps = [self._stamp(unit, x, y, k) for x, y in positions]
        fluxes = []
        for i, (x, y) in enumerate(positions):
            under = float(smooth[int(round(y)), int(round(x))])
            threshold = max(self.cfg.visibility_sigma * self.sigma_l, self.cfg.visibility_contrast * under)
            is_visible = i < n_visible
            factor = self.u(2.0, 5.0) if is_visible else self.u(0.1, 0.4)
            fluxes.append(factor * threshold / peak_unit)
            self.clumps.append({"x": x, "y": y, "flux": fluxes[-1], "visible": is_visible,
                                "peak_over_threshold": factor, "background": under})
        self.params["n_clumps_wanted"] = n_visible
        if not positions:
            return
        # On the steep light profile near a galaxy's centre a clump can add a shoulder instead of a peak.
        # A volunteer marks what stands out as a knot, so in the noiseless luminance the brightest pixel of
        # every box must outshine the pixels just around the box by 4 sigma of the noise: brighten the
        # clumps that do not, 1.5 times at a time.
        margin = 4.0 * self.sigma_l
        for _ in range(8):
            layer = np.zeros((self.size, self.size))
            for (rows, cols, img), f in zip(stamps, fluxes):
                layer[rows, cols] += f * img
            model = smooth + layer
            weak = [i for i, c in enumerate(self.clumps) if c["visible"] and self._prominence(model, c) < margin]
            if not weak:
                break
            for i in weak:
                fluxes[i] *= 1.5
                self.clumps[i]["flux"] = fluxes[i]
                self.clumps[i]["peak_over_threshold"] *= 1.5
        self.canvas.layers.append(("clumps", layer, COLOURS["clump"]))
        self.params["clump_sigma"] = sigma_k
        self.params["box_side"] = side

    def _stamp(self, profile: galsim.GSObject, x: float, y: float, k: int) -> tuple[slice, slice, np.ndarray]:
        """``profile`` (through the PSF already) centred on array position (x, y), on a k x k stamp (k odd),
        clipped to the image: returns the rows and columns it covers and the stamp's pixels there."""
        ix, iy, h = int(round(x)), int(round(y)), k // 2
        img = profile.drawImage(nx=k, ny=k, scale=1.0, offset=(x - ix, y - iy)).array.astype(np.float64)
        r0, c0 = iy - h, ix - h
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1, cc1 = min(r0 + k, self.size), min(c0 + k, self.size)
        return slice(rr0, rr1), slice(cc0, cc1), img[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0]

    def _box(self, clump: dict) -> tuple[float, float, float, float]:
        side = self.box_side
        x0, y0 = clump["x"] + 0.5 - side / 2, clump["y"] + 0.5 - side / 2
        x1, y1 = min(x0 + side, self.size), min(y0 + side, self.size)
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        return x0, y0, x1 - x0, y1 - y0

    def _box_slices(self, clump: dict) -> tuple[slice, slice]:
        """Rows and columns of the pixels a clump's box overlaps."""
        x, y, w, h = self._box(clump)
        return (slice(int(math.floor(y)), int(math.ceil(y + h))), slice(int(math.floor(x)), int(math.ceil(x + w))))

    def _prominence(self, image: np.ndarray, clump: dict) -> float:
        """Brightest pixel in the clump's box minus the brightest pixel of the 1-pixel ring around it."""
        rows, cols = self._box_slices(clump)
        r0, r1 = max(rows.start - 1, 0), min(rows.stop + 1, self.size)
        c0, c1 = max(cols.start - 1, 0), min(cols.stop + 1, self.size)
        around = image[r0:r1, c0:c1].copy()
        inside = image[rows, cols].max()
        around[rows.start - r0:rows.stop - r0, cols.start - c0:cols.stop - c0] = -np.inf
        return float(inside - around.max())

    def boxes(self) -> np.ndarray:
        out = [self._box(c) for c in self.clumps if c["visible"]]
        return np.asarray(out, dtype=np.float32).reshape(-1, 4)

    # ----------------------------------------------------------------------------- extras
    def disturbance(self, level: str) -> None:
        hlr = self.params["galaxy_hlr"]
        flux = self._galaxy_flux()
        ang = self.u(0, 2 * math.pi)
        bend = self.pick([-1.0, 1.0]) * self.u(0.6, 1.4)
        if level == "major-disturbance":
            self.params["tail"] = self.arc("tail", self.cx, self.cy, 1.2 * hlr, ang, self.u(1.8, 3.0) * hlr, bend,
                                           self.u(0.12, 0.20) * flux, self.u(0.03, 0.045) * self.size)
        else:
            self.params["tail"] = self.arc("tail", self.cx, self.cy, 1.3 * hlr, ang, self.u(0.8, 1.3) * hlr,
                                           0.5 * bend, self.u(0.03, 0.06) * flux, self.u(0.03, 0.045) * self.size)

    def _galaxy_flux(self) -> float:
        return float(sum(img.sum() for name, img, _ in self.canvas.layers
                         if name in ("bulge", "disk", "arms", "bar", "elliptical")))

    def companion(self) -> None:
        hlr = self.params["galaxy_hlr"]
        main_flux = self._galaxy_flux()
        sep = self.u(0.16, 0.26) * self.size
        ang = self.u(0, 2 * math.pi)
        x1, y1 = self.cx + sep * math.cos(ang), self.cy + sep * math.sin(ang)
        c_hlr = hlr * self.u(0.5, 0.9)
        # 0.3-1 times the main galaxy's light, but never fainter than the faintest galaxy the config draws:
        # a merger whose companion cannot be seen is not one.
        floor = 2.0 * math.pi * c_hlr ** 2 * self.cfg.surface_brightness[0] / main_flux
        ratio = max(self.u(0.3, 1.0), floor)
        if self.rng.random() < 0.5:
            comp = self.bulge(ratio * main_flux, c_hlr, self.u(2.5, 4.5), self.u(0.6, 1.0), self.u(0, math.pi),
                              x1, y1, name="companion")
            comp["type"] = "elliptical"
        else:
            comp = self.disk(ratio * main_flux * 0.85, c_hlr / 1.678, self.u(0.45, 1.0), self.u(0, math.pi), x1, y1,
                             name="companion")
            self.bulge(ratio * main_flux * 0.15, 0.2 * c_hlr, 3.0, 0.9, 0.0, x1, y1, name="companion")
            comp["type"] = "disk"
        comp.update(x=x1, y=y1, flux_ratio=ratio)
        self.params["companion"] = comp
        # Tails leave each galaxy on the side away from the other and curve the same way (the tidal
        # response of a prograde encounter; Toomre & Toomre 1972); a faint bridge joins them.
        bend = self.pick([-1.0, 1.0]) * self.u(0.7, 1.3)
        width = self.u(0.025, 0.04) * self.size
        self.params["tails"] = [
            self.arc("tail", self.cx, self.cy, 1.1 * hlr, ang + math.pi, self.u(1.5, 2.5) * hlr, bend,
                     self.u(0.12, 0.22) * main_flux, width),
            self.arc("tail", x1, y1, 1.1 * c_hlr, ang, self.u(1.2, 2.2) * hlr, bend,
                     self.u(0.12, 0.22) * ratio * main_flux, width),
        ]
        n = 10
        t = np.linspace(0.2, 0.8, n)
        pos = [(self.cx + ti * (x1 - self.cx), self.cy + ti * (y1 - self.cy)) for ti in t]
        self.knots("tail", pos, [0.04 * main_flux / n] * n, width, colour="tail")

    def field_objects(self) -> None:
        """Unrelated stars and small background galaxies, kept out of the galaxy's centre."""
        n_stars = int(self.rng.poisson(self.cfg.field_stars_mean))
        n_gal = int(self.rng.poisson(self.cfg.background_galaxies_mean))
        placed = []
        for i in range(n_stars + n_gal):
            for _ in range(20):
                x, y = self.u(0.03, 0.97) * self.size, self.u(0.03, 0.97) * self.size
                if math.hypot(x - self.cx, y - self.cy) > 0.3 * self.size:
                    break
            else:
                continue
            if i < n_stars:
                # Stars of 18-21 mag-like brightness relative to the galaxy: peak 10-300 sigma of L.
                peak = math.exp(self.u(math.log(10), math.log(300))) * self.sigma_l
                flux = peak * 2 * math.pi * (self.psf_fwhm / 2.3548) ** 2
                col = _colour(self.u(0.4, 1.2), 1.0, self.u(0.8, 1.8))
                self.star(x, y, flux, col)
                placed.append({"type": "star", "x": x, "y": y, "flux": flux})
            else:
                # Distant galaxies are a few pixels across: an exponential profile (cheaper for GalSim than a
                # Sersic) is all that shows.
                hlr = self.u(0.008, 0.02) * self.size
                flux = self.total_flux(hlr) * self.u(0.05, 0.3)
                prof = _transformed(galsim.Exponential(half_light_radius=1.0, gsparams=_GSP),
                                    _rot(self.u(0, math.pi)) @ np.diag([hlr, hlr * self.u(0.4, 1.0)]), flux)
                self.canvas.add("background", self.canvas.shift(prof, x, y),
                                COLOURS[self.pick(["bulge", "disk", "clump"])])
                placed.append({"type": "galaxy", "x": x, "y": y, "flux": flux, "hlr": hlr})
        self.params["field_objects"] = placed

    def artifact(self) -> str:
        kind = self.pick(["star", "trail", "missing-data"], p=[0.5, 0.25, 0.25])
        if kind == "star":
            peak = math.exp(self.u(math.log(3e3), math.log(3e4))) * self.sigma_l
            flux = peak * 2 * math.pi * (self.psf_fwhm / 2.3548) ** 2
            x, y = self.cx + self.u(-2, 2), self.cy + self.u(-2, 2)
            self.star(x, y, flux, _colour(self.u(0.5, 1.1), 1.0, self.u(0.9, 1.5)), spikes=True)
            self.params["artifact"] = {"type": kind, "x": x, "y": y, "flux": flux}
        elif kind == "trail":
            ang = self.u(0, math.pi)
            off = self.u(-0.15, 0.15) * self.size
            dx, dy = self.canvas.xx - self.cx, self.canvas.yy - self.cy
            dist = -math.sin(ang) * dx + math.cos(ang) * dy - off
            width = self.u(0.4, 1.0)
            pattern = np.exp(-0.5 * (dist / width) ** 2)
            flux_per_px = self.u(30, 120) * self.sigma_l
            band = int(self.rng.integers(3))
            col = np.zeros(3)
            col[band] = _SCALE[band]  # one exposure, so one band: a coloured streak
            self.canvas.add_pattern("trail", pattern, flux_per_px * pattern.sum(), col)
            self.params["artifact"] = {"type": kind, "angle": ang, "offset": off, "band": BANDS[band]}
            self._faint_galaxy()
        else:
            # Missing data: a block of the image with no exposure (zero in every band, no noise) cutting
            # through a galaxy, like a CCD gap or an unfilled edge of a survey brick.
            edge = int(self.size * self.u(0.35, 0.65))
            axis = int(self.rng.integers(2))
            side = int(self.rng.integers(2))
            self.params["artifact"] = {"type": kind, "axis": axis, "edge": edge, "side": side}
            self._faint_galaxy(scale=2.0)
        return kind

    def _faint_galaxy(self, scale: float = 1.0) -> None:
        hlr = self.u(0.02, 0.04) * self.size * scale
        self.bulge(self.total_flux(hlr) * 0.3, hlr, 2.0, self.u(0.5, 1.0), self.u(0, math.pi), self.cx, self.cy,
                   name="background", colour="disk")

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        bands = self.canvas.bands()
        bands += self.sigma[:, None, None] * self.rng.standard_normal(bands.shape)
        art = self.params.get("artifact")
        if art and art["type"] == "missing-data":
            block = (slice(None), slice(art["edge"], None)) if art["side"] else (slice(None), slice(0, art["edge"]))
            if art["axis"] == 1:
                block = block[::-1]
            bands[(slice(None),) + block] = 0.0
        bands = bands.astype(np.float32)
        return bands, asinh_rgb(bands, bands=BANDS)


def _merging_answer(b: _Builder) -> str:
    major, minor = b.cfg.disturbance_probability
    u = b.rng.random()
    return "major-disturbance" if u < major else "minor-disturbance" if u < major + minor else "none"


def _draw_kind(rng: np.random.Generator, cfg: SyntheticConfig) -> str:
    names = [k for k in KINDS if cfg.kind_weights.get(k, 0) > 0]
    w = np.array([cfg.kind_weights[k] for k in names], dtype=float)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def galaxy_kind(index: int, *, seed: int = 0, config: SyntheticConfig | None = None) -> str:
    """The kind :func:`make_galaxy` draws for ``(seed, index)``, without drawing the galaxy (for
    stratified splits or for picking examples of one kind)."""
    return _draw_kind(np.random.default_rng([int(seed), int(index)]), config or SyntheticConfig())


def make_galaxy(index: int, *, seed: int = 0, size: int = 128, config: SyntheticConfig | None = None,
                kind: str | None = None, keep_bands: bool = False) -> SyntheticGalaxy:
    """Draw synthetic galaxy number ``index`` of the sample ``seed``.

    The result depends only on ``(seed, index, size, config, kind)``. ``kind`` forces one of :data:`KINDS`
    (otherwise drawn from ``config.kind_weights``); ``keep_bands`` keeps the float g, r, z images in
    ``.bands``. Returns a :class:`SyntheticGalaxy`; its ``answers`` pass ``DecisionTree.validate_path``.
    """
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    cfg = config or SyntheticConfig()
    if kind is not None and kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known kinds: {', '.join(KINDS)}")
    rng = np.random.default_rng([int(seed), int(index)])
    drawn = _draw_kind(rng, cfg)  # always drawn, so that forcing a kind leaves the rest of the stream alone
    kind = kind or drawn
    b = _Builder(rng, size, cfg, kind)

    if kind == "artifact":
        b.params["artifact_type"] = b.artifact()
        answers = [("smooth-or-featured", "artifact")]
    else:
        main = kind
        if kind == "merger":
            main = b.pick(["elliptical", "disk", "spiral"], p=[0.4, 0.3, 0.3])
            b.params["main_kind"] = main
        if main == "elliptical":
            answers = b.elliptical(b.cx, b.cy, scale=0.85 if kind == "merger" else 1.0)
        elif main == "edge_on":
            answers = b.edge_on(b.cx, b.cy)
        else:
            answers = b.face_on(b.cx, b.cy, spiral=main == "spiral", clumpy=main == "clumpy",
                                scale=0.8 if kind == "merger" else 1.0)
        if kind == "merger":
            b.companion()
            merging = "merger"
        else:
            merging = _merging_answer(b)
            if merging != "none":
                b.disturbance(merging)
        if "disk" in b.params and "q" in b.params["disk"] and main not in ("edge_on",):
            p_clumps = b.cfg.clump_probability.get(kind, 0.0)
            if main == "clumpy" or b.rng.random() < p_clumps:
                n_faint = int(b.rng.poisson(cfg.faint_clumps_mean))
                b.place_clumps(b.n_clumps, n_faint, on_arms=main == "spiral")
        answers.append(("merging", merging))
        b.field_objects()

    bands, image = b.render()
    answers = tuple(_tree().validate_path(answers))
    b.params["clumps"] = b.clumps
    b.params["answers"] = [list(a) for a in answers]
    return SyntheticGalaxy(id=f"syn-{seed}-{index:07d}", image=image, answers=answers, boxes=b.boxes(),
                           params=_jsonable(b.params), bands=bands if keep_bands else None)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if isinstance(obj, (np.integer, int)) and not isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


# ====================================================================================== many galaxies
def _make_one(args) -> SyntheticGalaxy:
    index, seed, size, config, kind = args
    return make_galaxy(index, seed=seed, size=size, config=config, kind=kind)


def _pool(workers: int | None, n: int) -> int:
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    # Process start-up (~0.5 s for GalSim's import) only pays for itself on a few dozen galaxies.
    return 1 if n < 32 else max(1, int(workers))


def make_galaxies(n: int, *, seed: int = 0, size: int = 128, config: SyntheticConfig | None = None,
                  workers: int | None = None, start: int = 0, kind: str | None = None) -> list[SyntheticGalaxy]:
    """Galaxies ``start, ..., start + n - 1`` of sample ``seed``, in index order (a list of
    :class:`SyntheticGalaxy`, as :func:`make_galaxy` makes them with these ``size``, ``config``, ``kind``).

    ``workers`` processes (default: the CPU count, at most 8; always 1 for fewer than 32 galaxies) share
    the work; the result is the same for any number of workers.
    """
    jobs = [(i, seed, size, config, kind) for i in range(start, start + n)]
    nproc = _pool(workers, n)
    if nproc == 1:
        return [_make_one(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=nproc) as ex:
        return list(ex.map(_make_one, jobs, chunksize=max(1, n // (4 * nproc))))


# ======================================================================================= volunteers
#: Base probability that a volunteer who reaches a question gives the true answer. Roughly the median
#: vote fraction of the winning answer in GZ DECaLS DR5 (Walmsley et al. 2022, fig. 5): high for the
#: first questions, low for bars, winding, arm count and bulge size. Scaled per galaxy by a "clarity"
#: factor in [0.85, 1.1] (capped at 0.97) so that vote fractions spread as real ones do.
VOLUNTEER_ACCURACY: dict[str, float] = {
    "smooth-or-featured": 0.85, "how-rounded": 0.75, "disk-edge-on": 0.9, "edge-on-bulge": 0.65,
    "bar": 0.65, "has-spiral-arms": 0.85, "spiral-winding": 0.6, "spiral-arm-count": 0.6,
    "bulge-size": 0.55, "merging": 0.8,
}
#: Questions whose answers are ordered in the tree: wrong answers fall on neighbours (weight 1/distance^2).
ORDINAL = {"how-rounded", "bar", "spiral-winding", "spiral-arm-count", "bulge-size", "merging"}
#: Answers at questions off the true path (reached by a wrong answer, so with no true answer): a fixed prior.
OFF_PATH_PRIOR: dict[str, dict[str, float]] = {
    "how-rounded": {"round": 0.3, "in-between": 0.5, "cigar-shaped": 0.2},
    "disk-edge-on": {"yes": 0.2, "no": 0.8},
    "edge-on-bulge": {"rounded": 0.5, "boxy": 0.2, "none": 0.3},
    "bar": {"strong": 0.05, "weak": 0.15, "no": 0.8},
    "has-spiral-arms": {"yes": 0.2, "no": 0.8},
    "spiral-winding": {"tight": 0.25, "medium": 0.5, "loose": 0.25},
    "spiral-arm-count": {"1": 0.1, "2": 0.3, "3": 0.1, "4": 0.05, "more-than-4": 0.05, "cant-tell": 0.4},
    "bulge-size": {"none": 0.05, "small": 0.3, "moderate": 0.4, "large": 0.2, "dominant": 0.05},
    "merging": {"merger": 0.03, "major-disturbance": 0.05, "minor-disturbance": 0.12, "none": 0.8},
}


def _answer_probs(tree: DecisionTree, question: str, truth: str | None, accuracy: float) -> np.ndarray:
    names = tree[question].answer_names
    k = len(names)
    if truth is None:
        prior = OFF_PATH_PRIOR.get(question, {})
        p = np.array([prior.get(a, 1.0) for a in names], dtype=float)
        return p / p.sum()
    t = names.index(truth)
    if question in ORDINAL:
        pos = np.arange(k, dtype=float)
        if question == "spiral-arm-count":  # cant-tell sits outside the order
            pos = np.array([0, 1, 2, 3, 4, np.nan])
        w = np.where(np.isnan(pos), np.nan, 1.0 / np.maximum(np.abs(pos - pos[t]), 1) ** 2)
        if question == "spiral-arm-count":
            w[5] = 0.8  # a sizeable share of doubters always says "can't tell"
        w[t] = 0.0
    elif question == "smooth-or-featured":
        w = np.array([1.0 if a != "artifact" else 0.1 for a in names])
        if truth == "artifact":
            w = np.ones(k)
        w[t] = 0.0
    else:
        w = np.ones(k)
        w[t] = 0.0
    w = np.nan_to_num(w)
    p = (1 - accuracy) * w / w.sum()
    p[t] = accuracy
    return p


def simulate_votes(answers: Sequence[tuple[str, str]], rng: np.random.Generator, *, n_volunteers: int = 40,
                   tree: DecisionTree | None = None) -> dict[str, int]:
    """Votes of ``n_volunteers`` simulated volunteers who each walk the tree.

    Each volunteer follows the ``next`` links of their own answers. At a question of the true path a
    volunteer gives the true answer with probability ``VOLUNTEER_ACCURACY[q] * clarity`` (clarity drawn once
    per galaxy in [0.85, 1.1], capped at 0.97), otherwise a neighbouring answer for ordered questions or any
    other answer -- whether or not they answered earlier questions right, since e.g. the bulge is seen
    whatever one thought of the arms. At a question off the true path (reached through a wrong answer) they
    answer from :data:`OFF_PATH_PRIOR`. Like real GZ counts, questions deeper in the tree get fewer votes.

    Returns ``{"<question>_<answer>": count}`` for every column of the tree.
    """
    tree = tree or _tree()
    truth = dict(answers)
    clarity = rng.uniform(0.85, 1.1)
    counts = {c: 0 for c in tree.columns}
    cache: dict[tuple[str, bool], np.ndarray] = {}
    for _ in range(n_volunteers):
        q: str | None = tree.first
        while q is not None:
            t = truth.get(q)
            key = (q, t is not None)
            if key not in cache:
                acc = min(0.97, VOLUNTEER_ACCURACY.get(q, 0.7) * clarity)
                cache[key] = _answer_probs(tree, q, t, acc)
            p = cache[key]
            names = tree[q].answer_names
            a = names[int(rng.choice(len(names), p=p))]
            counts[f"{q}_{a}"] += 1
            q = tree[q].answer(a).next
    return counts


# =========================================================================================== dataset
def _write_one(args) -> tuple[dict, list[list]]:
    index, seed, size, config, out_dir, n_volunteers = args
    from PIL import Image

    g = make_galaxy(index, seed=seed, size=size, config=config)
    rel = f"images/{g.id}.png"
    Image.fromarray(g.image).save(Path(out_dir) / rel)
    tree = _tree()
    votes = simulate_votes(g.answers, np.random.default_rng([int(seed), int(index), 1]), n_volunteers=n_volunteers,
                           tree=tree)
    truth = dict(g.answers)
    row = {"id_str": g.id, "file_loc": rel, "kind": g.kind, **votes,
           **{f"truth_{q.name}": truth.get(q.name, "") for q in tree.questions}, "n_boxes": len(g.boxes)}
    boxes = [[g.id, *(round(float(v), 3) for v in box)] for box in g.boxes]
    return row, boxes


def write_dataset(out_dir: str | Path, n: int, *, seed: int = 0, size: int = 128,
                  config: SyntheticConfig | None = None, workers: int | None = None,
                  n_volunteers: int = 40) -> Path:
    """Write ``n`` galaxies as PNGs with a Zoobot-style catalogue; returns the path of ``catalog.csv``.

    Files, all under ``out_dir``:

    * ``images/<id>.png`` -- the RGB images;
    * ``catalog.csv`` -- ``id_str``, ``file_loc`` (relative to ``out_dir``), ``kind``, one
      ``<question>_<answer>`` vote count per answer of the GZ DECaLS tree (:func:`simulate_votes`, seeded by
      (seed, index)), ``truth_<question>`` for every question (empty where the true path does not go),
      and ``n_boxes``;
    * ``boxes.csv`` -- ``id_str,x,y,width,height``, one row per visible clump.
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed, size, config, str(out), n_volunteers) for i in range(n)]
    nproc = _pool(workers, n)
    if nproc == 1:
        results = [_write_one(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=nproc) as ex:
            results = list(ex.map(_write_one, jobs, chunksize=max(1, n // (4 * nproc))))
    tree = _tree()
    columns = (["id_str", "file_loc", "kind", *tree.columns, *(f"truth_{q.name}" for q in tree.questions),
                "n_boxes"])
    catalog = out / "catalog.csv"
    with open(catalog, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for row, _ in results:
            w.writerow(row)
    with open(out / "boxes.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id_str", "x", "y", "width", "height"])
        for _, boxes in results:
            w.writerows(boxes)
    return catalog
