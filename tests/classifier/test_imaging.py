"""FITS/PNG rendering: the GZ DECaLS asinh stretch, cube layouts, NaNs, orientation, and any-file loading."""

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from classifier.imaging import (
    DECALS_MINMAX,
    DECALS_SCALES,
    asinh_rgb,
    auto_scales,
    fits_to_rgb,
    grey_rgb,
    load_image_any,
    lupton_rgb,
    read_fits,
    robust_sigma,
)
from tests.conftest import REALDATA, needs_realdata

EXAMPLES = REALDATA / "galaxy-zoo-bayesian-cnn" / "zoobot" / "tests" / "test_examples"

SKY_LEVEL = 255 * (0 - np.arcsinh(DECALS_MINMAX[0])) / (np.arcsinh(DECALS_MINMAX[1]) - np.arcsinh(DECALS_MINMAX[0]))


def _galaxy_cube(h=40, w=50, flux=(0.3, 0.6, 0.9), seed=0):
    """A grz cube in nanomaggies: a Gaussian blob of the given band peaks on DECaLS-like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    blob = np.exp(-((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / (2 * 4.0 ** 2))
    sigma = np.array([0.0023, 0.0036, 0.0113])
    return np.stack([f * blob + s * rng.standard_normal((h, w)) for f, s in zip(flux, sigma)]).astype(np.float32)


def test_blank_sky_is_the_documented_grey_level():
    out = asinh_rgb(np.zeros((3, 8, 9)), bands="grz")
    assert out.shape == (8, 9, 3) and out.dtype == np.uint8
    assert np.all(np.abs(out.astype(int) - SKY_LEVEL) <= 1)


@pytest.mark.parametrize("band, channel", [("g", 2), ("r", 1), ("z", 0)])
def test_decals_band_to_channel_mapping(band, channel):
    cube = np.zeros((3, 5, 5))
    cube["grz".index(band)] = 10.0  # one band only, far above its scale
    out = asinh_rgb(cube, bands="grz", desaturate=False)
    assert DECALS_SCALES[band][0] == channel
    assert out[2, 2, channel] > 200 and all(out[2, 2, c] < 30 for c in range(3) if c != channel)


def test_stretch_is_monotonic_and_saturates():
    levels = np.array([0.0, 0.01, 0.1, 1.0, 10.0])
    cube = np.broadcast_to(levels[None, None, :], (3, 1, 5)) * np.array([0.008, 0.014, 0.019])[:, None, None] / 0.014
    out = asinh_rgb(cube, bands="grz").astype(int)
    grey = out[0].sum(axis=1)
    assert np.all(np.diff(grey) > 0)
    assert asinh_rgb(np.full((3, 1, 1), 1e6), bands="grz").min() == 255


def test_nans_render_as_sky():
    cube = _galaxy_cube()
    cube[:, :5, :5] = np.nan
    cube[1, 10, 10] = np.inf
    out = asinh_rgb(cube, bands="grz")
    assert out.dtype == np.uint8
    sky = np.median(out[-10:, -10:].reshape(-1, 3), axis=0)
    assert np.all(np.abs(out[:5, :5].reshape(-1, 3).mean(axis=0) - sky) < 8)


def test_cube_layouts_give_the_same_picture():
    cube = _galaxy_cube()
    chw = fits_to_rgb(cube, bands="grz")
    hwc = fits_to_rgb(np.moveaxis(cube, 0, -1), bands="grz")
    np.testing.assert_array_equal(chw, hwc)
    assert chw.shape == (40, 50, 3)


def test_fits_rows_are_flipped_so_north_is_up():
    cube = np.zeros((3, 30, 30), np.float32)
    cube[:, 25, 7] = 1.0  # FITS row 25 = near the top of the sky picture
    out = fits_to_rgb(cube, bands="grz")
    row, col = np.unravel_index(out.sum(axis=2).argmax(), out.shape[:2])
    assert (row, col) == (30 - 1 - 25, 7)
    assert np.unravel_index(fits_to_rgb(cube, bands="grz", flip=False).sum(axis=2).argmax(), (30, 30)) == (25, 7)


def test_single_band_is_grey_and_two_bands_are_blue_red():
    img = _galaxy_cube()[1]
    out = fits_to_rgb(img)
    assert out.shape == (40, 50, 3)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    assert out[20, 25, 0] > out[0, 0, 0] + 100  # the blob is bright
    g = grey_rgb(img)
    assert g.shape == (40, 50, 3)
    rng = np.random.default_rng(3)
    blob = _galaxy_cube(flux=(0, 1, 0))[1] - _galaxy_cube(flux=(0, 0, 0))[1]
    noise = 0.0036 * rng.standard_normal((2, 40, 50))
    two = fits_to_rgb(np.stack([blob * 2, blob * 0.1]) + noise)  # same noise, bright in the first (bluer) band
    assert two[20, 25, 2] > two[20, 25, 0]


def test_auto_scales_put_any_unit_on_the_decals_noise_level():
    cube = _galaxy_cube() * 1000.0  # "counts" instead of nanomaggies
    sc = auto_scales(cube, "bgr")
    assert [sc[b][0] for b in "bgr"] == [2, 1, 0]
    for band, img in zip("bgr", cube):
        assert robust_sigma(img) / sc[band][1] == pytest.approx(0.3, rel=0.05)
    out = fits_to_rgb(cube)  # no band names, not nanomaggies: auto-scaled, still a sensible picture
    assert out[20, 25].mean() > 3 * np.median(out)


def test_lupton_alternative():
    out = lupton_rgb(_galaxy_cube())
    assert out.shape == (40, 50, 3) and out.dtype == np.uint8
    assert out[20, 25].sum() > out[0, 0].sum()
    assert fits_to_rgb(_galaxy_cube(), method="lupton").shape == (40, 50, 3)
    with pytest.raises(ValueError, match="unknown method"):
        fits_to_rgb(_galaxy_cube(), method="nope")


def test_read_fits_band_names_and_layouts(tmp_path):
    cube = _galaxy_cube()
    hdr = fits.Header()
    hdr["BANDS"] = "grz"
    path = tmp_path / "cube.fits"
    fits.PrimaryHDU(cube, header=hdr).writeto(path)
    fc = read_fits(path)
    assert fc.bands == "grz" and fc.data.shape == (3, 40, 50)
    # (H, W, 3) in an extension with no primary data, named per BAND<i>
    hdr = fits.Header()
    for i, b in enumerate("grz"):
        hdr[f"BAND{i}"] = b
    path2 = tmp_path / "hwc.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.moveaxis(cube, 0, -1), header=hdr)]).writeto(path2)
    fc2 = read_fits(path2)
    assert fc2.bands == "grz" and fc2.data.shape == (3, 40, 50)
    np.testing.assert_array_equal(fits_to_rgb(path), fits_to_rgb(path2))
    empty = tmp_path / "empty.fits"
    fits.PrimaryHDU().writeto(empty)
    with pytest.raises(ValueError, match="no image"):
        read_fits(empty)


def test_load_image_any_reads_every_kind(tmp_path):
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image_any(tmp_path / "a.png"), rgb)
    smooth = np.dstack([np.add.outer(np.arange(20) * 5, np.arange(30) * 3)] * 3).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    jpg = load_image_any(tmp_path / "a.jpg")
    assert jpg.shape == (20, 30, 3) and np.abs(jpg.astype(int) - smooth).mean() < 4
    Image.fromarray(rgb[..., 0]).save(tmp_path / "grey.png")
    grey = load_image_any(tmp_path / "grey.png")
    assert grey.shape == (20, 30, 3) and np.array_equal(grey[..., 0], rgb[..., 0])
    Image.fromarray(np.dstack([rgb, np.full((20, 30), 128, np.uint8)])).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image_any(tmp_path / "rgba.png"), rgb)
    Image.fromarray((np.arange(600).reshape(20, 30) * 100).astype(np.uint16)).save(tmp_path / "deep.png")
    deep = load_image_any(tmp_path / "deep.png")
    assert deep.dtype == np.uint8 and deep[0, 0, 0] == 0 and deep[-1, -1, 0] == 255
    fits.PrimaryHDU(_galaxy_cube()).writeto(tmp_path / "c.fits")
    f = load_image_any(tmp_path / "c.fits")
    assert f.shape == (40, 50, 3) and f.dtype == np.uint8
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError):
        load_image_any(tmp_path / "junk.png")


@needs_realdata
def test_real_decals_cube_renders_like_gz_decals_images():
    """example_b.fits (DECaLS DR5 grz) through the stretch: the galaxy is bright at the centre, north is up,
    and sky and galaxy levels match a GZ DECaLS PNG (example_b.png, another galaxy rendered the same way)."""
    path = EXAMPLES / "example_b.fits"
    fc = read_fits(path)
    assert fc.bands == "grz" and fc.data.shape == (3, 162, 162)
    out = load_image_any(path)
    assert out.shape == (162, 162, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, fits_to_rgb(path))

    lum = out.astype(float).mean(axis=2)
    centre, border = lum[71:91, 71:91].mean(), np.concatenate([lum[:15].ravel(), lum[-15:].ravel()]).mean()
    assert centre > 4 * border
    peak = np.unravel_index(np.argmax(lum), lum.shape)
    assert np.hypot(peak[0] - 80.5, peak[1] - 80.5) < 8

    # North up: the header's CD2_2 > 0 means declination grows with the FITS row, so after the flip the
    # FITS row 161 (north) is display row 0.
    assert fc.header["CD2_2"] > 0
    flipped = fits_to_rgb(fc.data, bands="grz")
    np.testing.assert_array_equal(flipped, out)
    np.testing.assert_array_equal(fits_to_rgb(fc.data[:, ::-1], bands="grz", flip=False), out)

    png = np.asarray(Image.open(EXAMPLES / "example_b.png").convert("RGB"), dtype=float)
    ours_sky = np.median(out.reshape(-1, 3), axis=0)
    png_sky = np.median(png.reshape(-1, 3), axis=0)
    assert np.all(np.abs(ours_sky - png_sky) < 8), (ours_sky, png_sky)
    # Both images: sky slightly red (z scale picks up red noise), galaxy cores near white, not clipped colour.
    png_lum = png.mean(axis=2)
    assert png_lum[190:234, 190:234].mean() > 4 * np.median(png_lum)
    assert 150 < lum.max() <= 255 and 150 < png_lum.max() <= 255
