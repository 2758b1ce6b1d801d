"""Catalogues, image decoding and pseudo-counts; a smoke run on real DECaLS galaxies when they are present."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from classifier.data import (GalaxyData, as_uint8_images, fractions_to_counts, load_image, load_images,
                             read_catalog)
from tests.conftest import REALDATA, needs_realdata

REAL = REALDATA / "zoobot"


def test_fractions_to_counts_sum_exactly():
    f = np.array([[0.333, 0.333, 0.334], [0.9, 0.1, 0.0], [np.nan, np.nan, np.nan]])
    c = fractions_to_counts(f, 40)
    assert c[0].sum() == 40 and c[1].tolist() == [36, 4, 0]
    assert np.isnan(c[2]).all()


def test_load_image_crop_and_resize(tmp_path):
    img = np.zeros((100, 100, 3), np.uint8)
    img[25:75, 25:75] = 200
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img[..., 0]).save(tmp_path / "grey.png")
    full = load_image(tmp_path / "a.png", 20)
    crop = load_image(tmp_path / "a.png", 20, crop_fraction=0.5)
    assert full.shape == crop.shape == (20, 20, 3)
    assert crop.mean() > 190 and 40 < full.mean() < 60
    assert load_image(tmp_path / "grey.png", 20).shape == (20, 20, 3)


def test_load_images_cache(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), i * 50, np.uint8)).save(tmp_path / f"{i}.png")
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    a = load_images(paths, 8, cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    b = load_images(paths, 8, cache_dir=tmp_path / "cache")
    assert isinstance(b, np.memmap) and np.array_equal(a, b)


def test_as_uint8_images():
    x = np.random.default_rng(0).random((2, 10, 10))
    out = as_uint8_images(x, 5)
    assert out.shape == (2, 5, 5, 3) and out.dtype == np.uint8


def test_catalog_checks(tmp_path, short_tree):
    df = pd.DataFrame({"id_str": ["a", "a"], "file_loc": ["x", "y"]})
    with pytest.raises(ValueError, match="repeats"):
        read_catalog(df)
    with pytest.raises(ValueError, match="smooth-or-featured_smooth"):
        read_catalog(pd.DataFrame({"id_str": ["a"], "file_loc": ["x"]}), short_tree)


@needs_realdata
def test_real_decals_galaxies_train_a_tiny_model():
    from aggregation.tree import DecisionTree
    from classifier.train import TrainConfig, fit

    cat = pd.read_csv(REAL / "data" / "example_ring_catalog_basic.csv").iloc[:48]
    tree = DecisionTree.from_dict({"questions": [{"name": "ring", "answers": ["yes", "no"]},
                                                 {"name": "disk-edge-on", "answers": ["yes", "no"]}]})
    edge = cat["disk-edge-on_no_fraction"].to_numpy()
    votes = np.concatenate([np.stack([cat["ring"], 1 - cat["ring"]], 1),
                            fractions_to_counts(np.stack([1 - edge, edge], 1), 40)], 1)
    data = GalaxyData(ids=cat["id_str"], images=[str(REAL / f) for f in cat["file_loc"]], votes=votes, tree=tree)
    img = data.image_array(32)
    assert img.shape == (48, 32, 32, 3) and img.std() > 5
    ckpt = fit(TrainConfig.preset("tiny", device="cpu", progress=False, epochs=1), data)
    assert np.isfinite(ckpt.metrics["val_loss"])
    # the JPEG copies are faithful to the original PNGs that were kept
    png = sorted((REAL / "data" / "example_images" / "basic").glob("*.png"))[0]
    a = load_image(png, 64).astype(float)
    b = load_image(png.with_suffix(".jpg"), 64).astype(float)
    assert np.abs(a - b).mean() < 3
