"""Measurements of a rendered synthetic galaxy (:class:`classifier.synthetic.Galaxy`) that check its
stored truth against its pixels: light as the DECaLS stretch sees it, deprojected polar samples, the
axis ratio of the central segment and the logarithmic-spiral spectrum. Used by the synthetic-galaxy tests
and by ``benchmarks/synthetic_truth.py`` on larger samples."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

SCALES = np.array([0.008, 0.014, 0.019])  # the DECaLS stretch scales of g, r, z


def luminance(g) -> np.ndarray:
    """What the stretch sees: sum of band / scale, shape (H, W)."""
    return (g.bands / SCALES[:, None, None]).sum(axis=0).astype(np.float64)


def noise_of(g) -> float:
    """The sky noise of :func:`luminance` (the bands' sky sigmas through the same scales)."""
    return float(np.sqrt(np.sum((np.array(g.params["sky_sigma"]) / SCALES) ** 2)))


def polar(image, g, radii, n_theta=128):
    """The image sampled on circles of the *disk plane* (deprojected with the drawn centre, PA and q):
    shape (len(radii), n_theta)."""
    d = g.params["disk"]
    cx, cy = g.params["centre"]
    th = np.linspace(0, 2 * np.pi, n_theta, endpoint=False)
    r, t = np.meshgrid(radii, th, indexing="ij")
    u, v = r * np.cos(t), r * np.sin(t) * d["q"]
    c, s = np.cos(d["pa"]), np.sin(d["pa"])
    return ndimage.map_coordinates(image, [cy + s * u + c * v, cx + c * u - s * v], order=1)


def segment_axis_ratio(g, nsig=5.0) -> float:
    """Axis ratio from the light-weighted second moments of the connected region above nsig sigma that
    holds the centre (so neighbours do not count)."""
    lum = luminance(g)
    lab, _ = ndimage.label(lum > nsig * noise_of(g))
    cx, cy = g.params["centre"]
    mask = lab == lab[int(round(cy)), int(round(cx))]
    yy, xx = np.nonzero(mask)
    cov = np.cov(np.vstack([xx, yy]), aweights=lum[mask])
    lo, hi = np.linalg.eigvalsh(cov)
    return float(np.sqrt(lo / hi))


def log_spiral_spectrum(g, m_max=6, n_u=48, n_theta=128, n_pitch=241):
    """Strongest logarithmic-spiral component of each arm multiplicity m (Puerari & Dottori 1992, A&AS
    93, 469): A(m, p) = |sum I(u, theta) exp(-i (m theta + p u))| / sum I over the deprojected disk, with
    u = ln r and I the light per (du, dtheta), maximised over the winding p (``n_pitch`` samples) for pitch
    angles 5-50 deg (|p| = m / tan pitch). Excluding open "spirals" (p ~ 0) leaves out the m = 2 of bars
    and of deprojected round bulges. Returns (amplitude, pitch in degrees) for m = 1..m_max."""
    lum, hlr = luminance(g), g.params["galaxy_hlr"]
    u = np.linspace(np.log(max(1.3 * g.params["arms"]["r_in"], 0.6 * hlr)), np.log(2.5 * hlr), n_u)
    img = polar(lum, g, np.exp(u), n_theta) * np.exp(2 * u)[:, None]
    theta = np.linspace(0, 2 * np.pi, n_theta, endpoint=False)
    out = []
    for m in range(1, m_max + 1):
        p = np.linspace(-m / np.tan(np.radians(5)), m / np.tan(np.radians(5)), n_pitch)
        p = p[np.abs(p) >= m / np.tan(np.radians(50))]
        c_m = img @ np.exp(-1j * m * theta)
        amp = np.abs(np.exp(-1j * np.outer(p, u)) @ c_m) / img.sum()
        k = int(np.argmax(amp))
        out.append((float(amp[k]), float(np.degrees(np.arctan(m / abs(p[k]))))))
    return out
