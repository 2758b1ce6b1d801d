"""Real galaxies from the Hubble eXtreme Deep Field that scikit-image ships: detection, cuts, centring."""
import re

import numpy as np
import pytest

from classifier import hudf
from classifier.hudf import hudf_cutouts, hudf_field, hudf_sources


@pytest.fixture(scope="module")
def native():
    return hudf_cutouts(out_size=None)


def test_finds_a_realistic_number_of_galaxies(native):
    # The XDF composite holds thousands of specks; galaxies big enough to look at number in the hundreds.
    assert 60 <= len(native) <= 400
    assert len({c.id for c in native}) == len(native)
    assert all(re.fullmatch(r"HUDF-\d{4}", c.id) for c in native)
    assert [c.id for c in native] == [f"HUDF-{i:04d}" for i in range(len(native))]


def test_sorted_by_brightness_with_shape_parameters(native):
    flux = np.array([c.flux for c in native])
    assert np.all(np.diff(flux) <= 0) and flux.min() > 0
    for c in native:
        s = c.source
        assert s.a >= 2.5 and 0 < s.b <= s.a and -np.pi / 2 <= s.theta <= np.pi / 2
        assert s.npix >= 80 and s.kron_radius > 0
        assert 0 <= s.x < 1000 and 0 <= s.y < 872


def test_cutouts_are_centred_on_their_source(native):
    field = hudf_field()
    offsets = []
    for c in native:
        img = c.image
        side = img.shape[0]
        assert img.shape == (side, side, 3) and img.dtype == np.uint8
        assert side >= 48 and side % 2 == 1 and c.box[2] == side and c.scale == 1.0
        x0, y0, _ = c.box
        m = side // 2
        assert (x0 + m, y0 + m) == (int(round(c.x)), int(round(c.y)))
        # pixel (m, m) of the cutout is the field pixel under the source
        if 0 <= x0 and 0 <= y0 and x0 + side <= field.shape[1] and y0 + side <= field.shape[0]:
            np.testing.assert_array_equal(img, field[y0:y0 + side, x0:x0 + side])
        lum = img.astype(float).mean(axis=2)
        sky = np.median(lum)
        assert lum[m, m] - sky > 40, c.id  # a galaxy, not sky, at the centre
        yy, xx = np.mgrid[:side, :side]
        w = np.where(np.hypot(xx - m, yy - m) <= max(3.0, c.source.a), np.clip(lum - sky, 0, None), 0)
        offsets.append(np.hypot((w * xx).sum() / w.sum() - m, (w * yy).sum() / w.sum() - m))
    offsets = np.array(offsets)
    assert offsets.max() < 2.5 and np.percentile(offsets, 90) < 0.75


def test_resized_cutouts_and_max_sources():
    few = hudf_cutouts(max_sources=12, out_size=96)
    assert len(few) == 12
    assert all(c.image.shape == (96, 96, 3) and c.image.dtype == np.uint8 for c in few)
    assert all(c.scale == pytest.approx(96 / c.box[2]) for c in few)
    # ids do not depend on how many are asked for
    assert [c.id for c in few] == [c.id for c in hudf_cutouts(out_size=None)[:12]]


def test_stars_edges_and_specks_are_rejected(native):
    pos = np.array([[c.x, c.y] for c in native])
    # The two foreground stars with diffraction spikes (white-clipped cores) are not galaxies.
    for star in [(754, 578), (253, 166)]:
        assert np.hypot(*(pos - star).T).min() > 5
    for c in native:  # the whole 2.5 Kron-radius ellipse lies in the field
        s = c.source
        r_a, r_b = hudf.KRON_FACTOR * s.kron_radius * s.a, hudf.KRON_FACTOR * s.kron_radius * s.b
        ext_x = np.hypot(r_a * np.cos(s.theta), r_b * np.sin(s.theta))
        ext_y = np.hypot(r_a * np.sin(s.theta), r_b * np.cos(s.theta))
        assert ext_x <= s.x <= 999 - ext_x and ext_y <= s.y <= 871 - ext_y
    loose = hudf_sources(min_npix=25, min_a=1.0)
    assert len(loose) > 2 * len(native)  # the cuts are what keeps the specks out


def test_deterministic():
    first = hudf_cutouts(max_sources=5, out_size=64)
    hudf._detect.cache_clear()
    again = hudf_cutouts(max_sources=5, out_size=64)
    assert [c.source for c in first] == [c.source for c in again]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.image, b.image)
