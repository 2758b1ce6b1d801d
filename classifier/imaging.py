"""Render FITS cutouts and image files to 8-bit RGB, the way Galaxy Zoo DECaLS subjects are made.

Galaxy Zoo DECaLS showed volunteers grz images made with Dustin Lang's ``dr2_style_rgb`` (written for the
Legacy Survey viewer, used by Willett for GZ DECaLS DR1/2 and by Walmsley et al. 2022, MNRAS 509, 3966, for
DR5; the parameters below are those of the GZ DECaLS image downloader). This module reimplements that stretch:

1. band -> channel: ``z`` -> red, ``r`` -> green, ``g`` -> blue (:data:`DECALS_SCALES`);
2. each band, in nanomaggies per pixel, is divided by its scale: g 0.008, r 0.014, z 0.019, so that a
   galaxy of the colours of a typical early type comes out grey-white;
3. ``asinh`` of the result (``arcsinh`` softening 1, the SDSS-style non-linearity of Lupton et al. 1999,
   AJ 118, 1406), then a linear map of ``[asinh(-0.5), asinh(300)]`` onto ``[0, 1]``;
4. "desaturation": pixels where one channel dominates (noise in the sky) are pulled toward their mean
   grey, so the sky does not look like coloured confetti;
5. clip to ``[0, 1]`` and scale to uint8.

Bands other than DECaLS grz, or data not in nanomaggies, get :func:`auto_scales`: each band is divided by
a multiple of its own robust sky noise chosen so that the sky noise sits where DECaLS puts it (about 0.3 of
the scale), and then goes through the same asinh. A single-band image is rendered grey the same way.
:func:`lupton_rgb` offers Lupton et al. (2004, PASP 116, 133) colour-preserving asinh, via astropy.

Orientation: FITS stores the first row at the *bottom* (pixel (1, 1) is the lower-left corner), image files
store it at the top. :func:`fits_to_rgb` flips rows so that, shown as an image, north is up as in every
survey viewer and as in GZ's PNGs (checked against the GZ DECaLS PNG of the same galaxy in the tests).

Everything returns ``uint8`` arrays of shape ``(H, W, 3)``. Pure numpy/astropy/Pillow: no Django, no torch.
"""
from __future__ import annotations

import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "DECALS_SCALES",
    "DECALS_MINMAX",
    "DECALS_ARCSINH",
    "FitsCube",
    "asinh_rgb",
    "auto_scales",
    "grey_rgb",
    "lupton_rgb",
    "read_fits",
    "fits_to_rgb",
    "load_image_any",
    "robust_sigma",
]

#: band -> (RGB channel, scale in nanomaggies per pixel) of the GZ DECaLS DR5 images (Walmsley et al. 2022).
DECALS_SCALES: dict[str, tuple[int, float]] = {"g": (2, 0.008), "r": (1, 0.014), "z": (0, 0.019)}
#: The values, after division by the scale, that become black and white (before the asinh is applied to them).
DECALS_MINMAX: tuple[float, float] = (-0.5, 300.0)
#: Softening of the asinh: ``asinh(DECALS_ARCSINH * x)``.
DECALS_ARCSINH: float = 1.0
#: Where sky noise sits after division by the scale in DECaLS (sigma_g/0.008 ~ 0.29, sigma_r/0.014 ~ 0.26,
#: measured on the DR5 cube of the tests); :func:`auto_scales` puts other data's noise at the same level.
AUTO_NOISE_LEVEL = 0.3

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz", ".fz")


def robust_sigma(x: np.ndarray) -> float:
    """Gaussian-equivalent standard deviation from the median absolute deviation, ignoring NaNs.

    Returns 0.0 for an empty or constant array.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0.0
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def _clean(cube: np.ndarray) -> np.ndarray:
    """Float32 copy with NaN/inf replaced by each band's median (blank sky for background-subtracted data)."""
    out = np.array(cube, dtype=np.float32, copy=True)
    for band in out:
        bad = ~np.isfinite(band)
        if bad.any():
            good = band[~bad]
            band[bad] = np.median(good) if good.size else 0.0
    return out


def auto_scales(cube: np.ndarray, bands: Sequence[str] | None = None) -> dict[str, tuple[int, float]]:
    """Per-band scales that put each band's sky noise where DECaLS has it.

    cube : float array of shape (n_bands, H, W), 1 <= n_bands <= 3, in any linear unit.
    bands : names for the bands, in order of increasing wavelength; default ``"0"``, ``"1"``, ...

    Returns ``{band: (channel, scale)}``: bands are assigned blue, green, red in order (two bands get blue
    and red), and ``scale = robust_sigma(band) / AUTO_NOISE_LEVEL``. A band with no noise (a model
    image) falls back to a scale of 1/300 of its 99.9th percentile, so that its peak maps near white.
    """
    n = cube.shape[0]
    names = list(bands) if bands is not None else [str(i) for i in range(n)]
    channels = {1: [1], 2: [2, 0], 3: [2, 1, 0]}[n]
    out = {}
    for name, chan, band in zip(names, channels, cube):
        sigma = robust_sigma(band)
        if sigma > 0:
            scale = sigma / AUTO_NOISE_LEVEL
        else:
            top = float(np.nanpercentile(np.abs(band), 99.9)) if band.size else 0.0
            scale = top / 300.0 if top > 0 else 1.0
        out[name] = (chan, scale)
    return out


def _desaturate(rgb: np.ndarray) -> np.ndarray:
    """Pull pixels dominated by one channel toward grey (Lang's dr2_style_rgb ``desaturate=True``).

    rgb : float array of shape (3, H, W) after the stretch. A pixel keeps its own colour with weight
    ``w = sin(pi/2 * (1 - min(max_channel / (2.5 * mean), 1)))``, which is 0 once one channel is 2.5 times
    the mean of the three; the result is ``rgb * w + mean * (1 - w) + mean * (1 - w)**2 * rgb``, the
    formula of dr2_style_rgb.
    """
    mean = rgb.mean(axis=0)
    mean = np.where(mean == 0.0, 1.0, mean)
    rel = np.minimum((rgb / mean).max(axis=0) / 2.5, 1.0)
    w = np.sin((1.0 - rel) * np.pi / 2.0)
    return rgb * w + mean * (1 - w) + mean * (1 - w) ** 2 * rgb


def asinh_rgb(
    cube: np.ndarray,
    *,
    bands: Sequence[str] = "grz",
    scales: Mapping[str, tuple[int, float]] | None = None,
    minmax: tuple[float, float] = DECALS_MINMAX,
    arcsinh: float = DECALS_ARCSINH,
    desaturate: bool = True,
) -> np.ndarray:
    """The GZ DECaLS asinh stretch of a multi-band cube (see the module docstring for each step).

    cube : float array of shape (n_bands, H, W), rows in *display* order (row 0 at the top), in
        nanomaggies per pixel when the DECaLS scales are used. NaN/inf count as blank sky.
    bands : one name per band, e.g. ``"grz"``.
    scales : ``{band: (channel, scale)}``; default :data:`DECALS_SCALES` when every band is in it,
        else :func:`auto_scales`. Channels not fed by any band stay black.

    Returns uint8 array of shape (H, W, 3).
    """
    cube = _clean(np.asarray(cube))
    if cube.ndim != 3:
        raise ValueError(f"cube must have shape (n_bands, H, W), got {cube.shape}")
    bands = list(bands)
    if len(bands) != cube.shape[0]:
        raise ValueError(f"{cube.shape[0]} bands in the cube but {len(bands)} band names ({''.join(bands)!r})")
    if scales is None:
        scales = DECALS_SCALES if all(b in DECALS_SCALES for b in bands) else auto_scales(cube, bands)
    h, w = cube.shape[1:]
    rgb = np.zeros((3, h, w), np.float32)
    for band, img in zip(bands, cube):
        chan, scale = scales[band]
        rgb[chan] = img / scale
    lo, hi = np.arcsinh(np.array(minmax, dtype=np.float32) * arcsinh)
    rgb = (np.arcsinh(rgb * arcsinh) - lo) / (hi - lo)
    if desaturate and len(bands) > 1:
        rgb = _desaturate(rgb)
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(1, 2, 0).copy()


def grey_rgb(image: np.ndarray, *, scale: float | None = None, minmax: tuple[float, float] = DECALS_MINMAX,
             arcsinh: float = DECALS_ARCSINH) -> np.ndarray:
    """A single-band image through the same asinh, as grey.

    image : float array of shape (H, W), row 0 at the top. ``scale`` defaults to the noise-based
    :func:`auto_scales` value. Returns uint8 array of shape (H, W, 3) with three equal channels.
    """
    image = _clean(np.asarray(image)[None])
    if scale is None:
        scale = auto_scales(image)["0"][1]
    one = asinh_rgb(image, bands=["x"], scales={"x": (0, scale)}, minmax=minmax, arcsinh=arcsinh,
                    desaturate=False)[..., 0]
    return np.repeat(one[..., None], 3, axis=2)


def lupton_rgb(cube: np.ndarray, *, bands: Sequence[str] = "grz", Q: float = 8.0,
               stretch: float | None = None) -> np.ndarray:
    """Lupton et al. (2004) colour-preserving asinh via :func:`astropy.visualization.make_lupton_rgb`.

    cube : float array of shape (3, H, W), bands in order of increasing wavelength (blue, green, red).
    Each band is first divided by its :func:`auto_scales` scale; ``stretch`` (the linear range of the
    asinh) defaults to 30 such units, i.e. about 100 sky sigmas. Returns uint8 array of shape (H, W, 3).
    """
    from astropy.visualization import make_lupton_rgb

    cube = _clean(np.asarray(cube))
    if cube.shape[0] != 3:
        raise ValueError(f"Lupton RGB needs 3 bands, got {cube.shape[0]}")
    sc = auto_scales(cube, list(bands))
    b, g, r = (cube[i] / sc[band][1] for i, band in enumerate(bands))
    return make_lupton_rgb(r, g, b, minimum=0.0, stretch=stretch if stretch is not None else 30.0, Q=Q)


# ---------------------------------------------------------------------------------------------- FITS
@dataclass
class FitsCube:
    """Image data read from a FITS file.

    data : float32 array of shape (n_bands, H, W), rows in FITS order (row 0 at the bottom).
    bands : the band names from the header (``BANDS`` or ``BAND0``, ``BAND1``, ...), or None.
    header : the header of the HDU the data came from, as a dict.
    """

    data: np.ndarray
    bands: str | None = None
    header: dict = field(default_factory=dict)


def _bands_from_header(header, n: int) -> str | None:
    if "BANDS" in header and len(str(header["BANDS"]).strip()) == n:
        return str(header["BANDS"]).strip()
    names = [str(header.get(f"BAND{i}", "")).strip() for i in range(n)]
    if all(len(x) == 1 for x in names):
        return "".join(names)
    if n == 1 and len(str(header.get("FILTER", "")).strip()) == 1:
        return str(header["FILTER"]).strip()
    return None


def _as_band_cube(data: np.ndarray) -> np.ndarray:
    """(H, W) -> (1, H, W); (H, W, C<=4) -> (C, H, W); (C, H, W) kept. Larger cubes keep their first axis."""
    data = np.asarray(data)
    if data.ndim == 2:
        return data[None]
    if data.ndim == 3:
        if data.shape[-1] <= 4 < data.shape[0]:
            return np.moveaxis(data, -1, 0)
        return data
    if data.ndim > 3:  # degenerate leading axes, e.g. (1, 3, H, W)
        squeezed = np.squeeze(data)
        if squeezed.ndim <= 3:
            return _as_band_cube(squeezed)
    raise ValueError(f"cannot read an image from data of shape {data.shape}")


def read_fits(path: str | Path) -> FitsCube:
    """Read the first HDU holding image data (plain or tile-compressed) as a band cube.

    Accepts (H, W), (n_bands, H, W) and (H, W, n_bands) layouts (the FITS convention is the first).
    Raises ValueError when the file holds no image.
    """
    from astropy.io import fits

    with fits.open(path, memmap=False) as hdul:
        for hdu in hdul:
            if getattr(hdu, "is_image", False) and hdu.data is not None and np.asarray(hdu.data).ndim >= 2:
                cube = _as_band_cube(np.asarray(hdu.data, dtype=np.float32))
                header = dict(hdu.header)
                return FitsCube(data=cube, bands=_bands_from_header(hdu.header, cube.shape[0]), header=header)
    raise ValueError(f"{path}: no image data in any HDU")


def _pick_three(cube: np.ndarray, bands: str | None) -> tuple[np.ndarray, str | None]:
    """More than three bands: keep g, r, z when present, else the first three."""
    if cube.shape[0] <= 3:
        return cube, bands
    if bands and all(b in bands for b in "grz"):
        idx = [bands.index(b) for b in "grz"]
        return cube[idx], "grz"
    return cube[:3], bands[:3] if bands else None


def fits_to_rgb(source: str | Path | np.ndarray | FitsCube, *, bands: str | None = None,
                method: str = "decals", flip: bool | None = None) -> np.ndarray:
    """Render a FITS file (or a cube already read) to an RGB image.

    source : a path, a :class:`FitsCube`, or an array of shape (H, W), (n_bands, H, W) or (H, W, n_bands).
        Arrays are taken in FITS row order (row 0 at the bottom) like the file they came from.
    bands : band names in cube order, overriding the header; a cube of three bands with no names in the
        header is taken as DECaLS ``grz`` only if its sky noise looks like nanomaggies, else it is auto-scaled
        blue-green-red in order.
    method : ``"decals"`` (:func:`asinh_rgb`, the GZ DECaLS stretch) or ``"lupton"`` (:func:`lupton_rgb`).
    flip : flip rows so north is up; default True (FITS order), pass False for arrays already in display order.

    Returns uint8 array of shape (H, W, 3). One band gives grey, two bands blue/red with their mean as green.
    """
    if isinstance(source, FitsCube):
        cube, header_bands = source.data, source.bands
    elif isinstance(source, (str, Path)):
        fc = read_fits(source)
        cube, header_bands = fc.data, fc.bands
    else:
        cube, header_bands = _as_band_cube(np.asarray(source, dtype=np.float32)), None
    names = bands or header_bands
    cube, names = _pick_three(_clean(cube), names)
    if flip is None or flip:
        cube = cube[:, ::-1, :]
    n = cube.shape[0]
    if n == 1:
        scale = None
        if names and names in DECALS_SCALES:
            scale = DECALS_SCALES[names][1]
        return grey_rgb(cube[0], scale=scale)
    if n == 2:
        cube = np.stack([cube[0], 0.5 * (cube[0] + cube[1]), cube[1]])
        names = None
    if method == "lupton":
        return lupton_rgb(cube, bands=names or "bgr")
    if method != "decals":
        raise ValueError(f"unknown method {method!r}; known: 'decals', 'lupton'")
    if names is None and n == 3 and _looks_like_nanomaggies(cube):
        names = "grz"
    if names is None or not all(b in DECALS_SCALES for b in names):
        names = names if names and len(set(names)) == 3 else "bgr"
        return asinh_rgb(cube, bands=names, scales=auto_scales(cube, names))
    return asinh_rgb(cube, bands=names)


def _looks_like_nanomaggies(cube: np.ndarray) -> bool:
    """Sky noise between 1e-4 and 0.1 in every band: the range of calibrated Legacy Survey cutouts."""
    sig = [robust_sigma(b) for b in cube]
    return all(1e-4 < s < 0.1 for s in sig)


# ------------------------------------------------------------------------------------- any image file
def _is_fits(path: Path, head: bytes) -> bool:
    name = path.name.lower()
    return head.startswith(b"SIMPLE  =") or any(name.endswith(s) for s in FITS_SUFFIXES)


def load_image_any(path: str | Path) -> np.ndarray:
    """Read a PNG, JPEG (or anything Pillow reads) or FITS file as an RGB image.

    FITS goes through :func:`fits_to_rgb` (DECaLS stretch, north up). Pillow images are converted to RGB:
    palette and grey images are expanded, alpha is dropped, EXIF rotation is applied, and 16-bit or float
    images are linearly rescaled from their 0.5th-99.5th percentiles to 0-255.

    Returns uint8 array of shape (H, W, 3). Raises ValueError for a file neither reader understands.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:2] == b"\x1f\x8b":  # gzip: look inside for a FITS header
        with gzip.open(path, "rb") as fh:
            head = fh.read(16)
    if _is_fits(path, head):
        return fits_to_rgb(path)
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = np.percentile(arr, [0.5, 99.5])
                grey = np.clip((arr - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
                out = (grey * 255 + 0.5).astype(np.uint8)
                return np.repeat(out[..., None], 3, axis=2)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image Pillow or astropy can read") from None


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 (H, W, 3) or (H, W) image (a convenience for writers of subject files)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
