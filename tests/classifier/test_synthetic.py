"""Synthetic galaxies: the truth must be what is drawn, clumps must follow Clump Scout, output reproducible.

The measurements here are independent of the generator's code: they look at the g, r, z images (and the
uint8 picture) the way an astronomer would -- azimuthal Fourier modes of the deprojected light, second
moments, concentration -- and compare with the answers the generator claims.
"""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage, stats

from aggregation.tree import DecisionTree
from classifier.imaging import load_image_any
from classifier.morphometry import SCALES, log_spiral_spectrum, luminance, noise_of, polar, segment_axis_ratio
from classifier.synthetic import (
    CLUMP_SCOUT,
    KINDS,
    SyntheticConfig,
    clump_scout_csv,
    clump_scout_stats,
    fit_clump_scout_stats,
    galaxy_kind,
    make_galaxies,
    make_galaxy,
    sample_clump_layout,
    simulate_votes,
    write_dataset,
)
from tests.conftest import needs_realdata

TREE = DecisionTree.builtin("gz_decals")


@pytest.fixture(scope="module")
def zoo():
    """Ten galaxies of every kind, 96 px, with their bands."""
    return {k: [make_galaxy(i, seed=21, size=96, kind=k, keep_bands=True) for i in range(10)] for k in KINDS}


# ---------------------------------------------------------------------------------------- contract
def test_every_galaxy_is_a_valid_path_with_its_picture_and_parameters(zoo):
    first = {"elliptical": "smooth", "artifact": "artifact"}
    for kind, gals in zoo.items():
        for g in gals:
            assert TREE.validate_path(g.answers) == list(g.answers)
            shown = g.params.get("main_kind", kind)  # a merger's main galaxy has its own morphology
            assert g.answers[0] == ("smooth-or-featured", first.get(shown, "featured-or-disk"))
            assert g.kind == kind == g.params["kind"]
            assert g.image.shape == (96, 96, 3) and g.image.dtype == np.uint8
            assert g.bands.shape == (3, 96, 96) and g.bands.dtype == np.float32
            assert g.boxes.dtype == np.float32 and g.boxes.shape[1:] == (4,)
            assert g.id.startswith("syn-21-")
            json.dumps(g.params)  # plain JSON all the way down
            if kind == "edge_on":
                assert g.answer("disk-edge-on") == "yes" and g.answer("edge-on-bulge") is not None
            if kind in ("disk", "spiral", "clumpy"):
                assert g.answer("disk-edge-on") == "no"
                assert (g.answer("has-spiral-arms") == "yes") == (kind == "spiral")
            if kind == "merger":
                assert g.answer("merging") == "merger" and "companion" in g.params
            if kind == "clumpy":
                assert len(g.boxes) >= 1
            if kind in ("elliptical", "edge_on", "artifact"):
                assert len(g.boxes) == 0
    assert {g.answer("merging") for k in ("spiral", "disk", "elliptical") for g in zoo[k]} >= {"none"}


def test_reproducible_and_addressable_by_index():
    a, b = make_galaxy(7, seed=3, size=48), make_galaxy(7, seed=3, size=48)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.answers == b.answers and a.params == b.params
    np.testing.assert_array_equal(a.boxes, b.boxes)
    assert not np.array_equal(a.image, make_galaxy(7, seed=4, size=48).image)
    batch = make_galaxies(3, seed=3, size=48, start=6)
    assert [g.id for g in batch] == ["syn-3-0000006", "syn-3-0000007", "syn-3-0000008"]
    np.testing.assert_array_equal(batch[1].image, a.image)


def test_parallel_generation_equals_serial():
    serial = make_galaxies(32, seed=5, size=32, workers=1)
    parallel = make_galaxies(32, seed=5, size=32, workers=2)
    for s, p in zip(serial, parallel):
        assert s.id == p.id and s.answers == p.answers
        np.testing.assert_array_equal(s.image, p.image)
        np.testing.assert_array_equal(s.boxes, p.boxes)


def test_class_mix_is_configurable_and_balanced_by_default():
    cfg = SyntheticConfig()
    drawn = pd.Series([galaxy_kind(i, seed=1) for i in range(3000)]).value_counts(normalize=True)
    total = sum(cfg.kind_weights.values())
    for kind, w in cfg.kind_weights.items():
        assert drawn[kind] == pytest.approx(w / total, abs=0.025)
    assert galaxy_kind(5, seed=1) == make_galaxy(5, seed=1, size=32).kind
    only = SyntheticConfig(kind_weights={"edge_on": 1.0})
    assert {make_galaxy(i, size=32, config=only).kind for i in range(5)} == {"edge_on"}
    with pytest.raises(ValueError, match="known kinds"):
        SyntheticConfig(kind_weights={"blob": 1.0})
    with pytest.raises(ValueError, match="known kinds"):
        make_galaxy(0, kind="blob")


# ------------------------------------------------------------------------------ truth vs. picture
def test_how_rounded_follows_the_measured_shape():
    gals = [make_galaxy(i, seed=8, size=96, kind="elliptical", keep_bands=True) for i in range(36)]
    by = {}
    for g in gals:
        by.setdefault(g.answer("how-rounded"), []).append(segment_axis_ratio(g))
    assert set(by) == {"round", "in-between", "cigar-shaped"}
    assert min(by["round"]) > 0.75
    assert max(by["cigar-shaped"]) < 0.65
    assert np.median(by["cigar-shaped"]) < np.median(by["in-between"]) - 0.1
    assert np.median(by["in-between"]) < np.median(by["round"]) - 0.1
    rho = stats.spearmanr([g.params["elliptical"]["q"] for g in gals], [segment_axis_ratio(g) for g in gals])[0]
    assert rho > 0.85


def test_edge_on_disks_are_thin(zoo):
    q = [segment_axis_ratio(g) for g in zoo["edge_on"]]
    assert max(q) < 0.5 and np.median(q) < 0.3
    face = [segment_axis_ratio(g) for g in zoo["spiral"]]
    assert np.median(face) > 0.5


@pytest.fixture(scope="module")
def spirals():
    """30 spirals at 128 px, each with its log-spiral spectrum."""
    gals = [make_galaxy(i, seed=31, size=128, kind="spiral", keep_bands=True) for i in range(30)]
    return [(g, log_spiral_spectrum(g)) for g in gals]


def test_arm_count_is_the_m_fold_symmetry_of_the_image(spirals):
    right = []
    for g, spec in spirals:
        best = int(np.argmax([a for a, _ in spec])) + 1
        count = g.answer("spiral-arm-count")
        right.append(best == int(count) if count != "more-than-4" else best >= 5)
    assert {g.answer("spiral-arm-count") for g, _ in spirals} == {"1", "2", "3", "4", "more-than-4"}
    assert np.mean(right) >= 0.9, right


def test_winding_is_the_pitch_angle_of_the_arms(spirals):
    measured = [spec[g.params["arms"]["m"] - 1][1] for g, spec in spirals]
    truth = [g.answer("spiral-winding") for g, _ in spirals]
    med = {w: np.median([p for p, t in zip(measured, truth) if t == w]) for w in ("tight", "medium", "loose")}
    assert 8 < med["tight"] < 13 < med["medium"] < 25 < med["loose"] < 40, med
    rho = stats.spearmanr([g.params["arms"]["pitch_deg"] for g, _ in spirals], measured)[0]
    assert rho > 0.85


def test_bars_make_the_inner_disk_two_fold():
    amp = {}
    for i in range(90):
        g = make_galaxy(i, seed=41, size=96, kind="disk", keep_bands=True)
        if g.answer("bulge-size") not in ("none", "small"):  # a big round bulge deprojects into m = 2 too
            continue
        hlr = g.params["galaxy_hlr"]
        f = np.abs(np.fft.rfft(polar(luminance(g), g, np.linspace(0.5 * hlr, hlr, 8)), axis=1))
        amp.setdefault(g.answer("bar"), []).append(float((f[:, 2] / f[:, 0]).mean()))
    assert all(len(v) >= 8 for v in amp.values()), {k: len(v) for k, v in amp.items()}
    assert np.median(amp["strong"]) > 2 * np.median(amp["weak"])
    assert np.median(amp["weak"]) > np.median(amp["no"])
    assert stats.mannwhitneyu(amp["strong"], amp["no"], alternative="greater").pvalue < 1e-3


def test_bulge_size_is_the_light_concentration():
    order = ["none", "small", "moderate", "large", "dominant"]
    rank, conc = [], []
    for i in range(40):
        g = make_galaxy(i, seed=43, size=96, kind="disk", keep_bands=True)
        lum, hlr = luminance(g), g.params["galaxy_hlr"]
        cx, cy = g.params["centre"]
        yy, xx = np.mgrid[:96, :96]
        r = np.hypot(xx - cx, yy - cy)
        rank.append(order.index(g.answer("bulge-size")))
        conc.append(lum[r < 0.3 * hlr].sum() / lum[r < 2 * hlr].sum())
    assert stats.spearmanr(rank, conc)[0] > 0.8


def test_mergers_show_a_second_galaxy(zoo):
    for g in zoo["merger"]:
        c = g.params["companion"]
        lum = ndimage.gaussian_filter(luminance(g), 1.0)
        assert lum[int(round(c["y"])), int(round(c["x"]))] > 10 * noise_of(g)


def test_artifacts(zoo):
    types = set()
    for g in zoo["artifact"]:
        assert g.answers == (("smooth-or-featured", "artifact"),)
        art = g.params["artifact"]
        types.add(art["type"])
        if art["type"] == "star":  # saturated white core
            assert g.image[int(round(art["y"])), int(round(art["x"]))].min() > 240
        elif art["type"] == "trail":  # a streak in one band only
            b = "grz".index(art["band"])
            per_band = (g.bands / SCALES[:, None, None]).max(axis=(1, 2))
            assert per_band[b] > 5 * np.delete(per_band, b).max()
        else:  # missing data: a block with no noise at all
            assert (g.bands == 0).all(axis=0).mean() > 0.3
    assert types == {"star", "trail", "missing-data"}


# ------------------------------------------------------------------------------------------- clumps
def test_boxes_enclose_visible_clump_peaks(zoo):
    gals = zoo["clumpy"] + [make_galaxy(i, seed=22, size=96, kind="clumpy", keep_bands=True) for i in range(30)]
    n_boxes, inside = 0, 0
    for g in gals:
        side = g.params["box_side"]
        assert np.allclose(g.boxes[:, 2:], side, atol=1e-4)  # square, one size per galaxy (as Clump Scout)
        assert (g.boxes[:, :2] >= 0).all() and (g.boxes[:, :2] + g.boxes[:, 2:] <= 96 + 1e-4).all()
        lum = luminance(g)
        sig = noise_of(g)
        for x, y, w, h in g.boxes:
            n_boxes += 1
            r0, r1, c0, c1 = int(np.floor(y)), int(np.ceil(y + h)), int(np.floor(x)), int(np.ceil(x + w))
            around = lum[max(r0 - 1, 0):r1 + 1, max(c0 - 1, 0):c1 + 1]
            box = lum[r0:r1, c0:c1]
            # the brightest pixel around the box is in it, well above the sky
            inside += box.max() >= around.max() and box.max() > 5 * sig
        visible = [c for c in g.params["clumps"] if c["visible"]]
        assert len(visible) == len(g.boxes)
    assert n_boxes > 60 and inside / n_boxes >= 0.97


def test_clump_counts_and_sizes_follow_clump_scout():
    """1,000 clumpy galaxies: boxes per galaxy and box side / image as in the Clump Scout consensus."""
    # Only the clumps matter here: leave out field objects, tails and faint clumps to save time.
    cfg = SyntheticConfig(field_stars_mean=0.0, background_galaxies_mean=0.0, disturbance_probability=(0.0, 0.0),
                          faint_clumps_mean=0.0)
    gals = make_galaxies(1000, seed=13, size=64, kind="clumpy", config=cfg, workers=2)
    n = np.array([len(g.boxes) for g in gals])
    assert (n == np.array([g.params["n_clumps_wanted"] for g in gals])).mean() > 0.995
    pmf = np.bincount(n, minlength=10)[1:10] / len(n)
    ref = np.array(CLUMP_SCOUT.count_pmf)
    assert n.min() >= 1
    assert np.abs(pmf - ref).max() < 0.045, (pmf.round(3), ref)
    assert 0.5 * np.abs(pmf - ref).sum() < 0.06
    assert n.mean() == pytest.approx(CLUMP_SCOUT.mean_count, abs=0.12)
    log_side = np.log([g.params["box_side"] / 64 for g in gals])
    assert log_side.mean() == pytest.approx(CLUMP_SCOUT.size_log_mean, abs=0.04)
    assert log_side.std() == pytest.approx(CLUMP_SCOUT.size_log_std, abs=0.04)


def test_layout_sampler_matches_the_fit():
    rng = np.random.default_rng(0)
    draws = [sample_clump_layout(rng, 400) for _ in range(20000)]
    n = np.array([d[0] for d in draws])
    side = np.array([d[1] for d in draws]) / 400
    np.testing.assert_allclose(np.bincount(n, minlength=10)[1:10] / len(n), CLUMP_SCOUT.count_pmf, atol=0.01)
    assert np.log(side).mean() == pytest.approx(CLUMP_SCOUT.size_log_mean, abs=0.01)
    assert np.median(side) == pytest.approx(CLUMP_SCOUT.median_size, rel=0.03)
    # more clumps, smaller boxes (Clump Scout: Spearman rho = -0.27)
    assert stats.spearmanr(n, side)[0] < -0.15


@needs_realdata
def test_shipped_clump_scout_constants_are_the_fit_to_the_real_boxes():
    fit = fit_clump_scout_stats(clump_scout_csv("train"))
    assert fit.n_galaxies == CLUMP_SCOUT.n_galaxies == 13969
    assert fit.n_boxes == CLUMP_SCOUT.n_boxes == 32270
    np.testing.assert_allclose(fit.count_pmf, CLUMP_SCOUT.count_pmf, atol=1e-5)
    for name in ("size_mu0", "size_slope", "size_sigma", "size_log_mean", "size_log_std", "odd_fraction"):
        assert getattr(fit, name) == pytest.approx(getattr(CLUMP_SCOUT, name), abs=1e-5), name
    assert fit.radius_shape == pytest.approx(CLUMP_SCOUT.radius_shape, rel=1e-3)
    assert fit.radius_scale == pytest.approx(CLUMP_SCOUT.radius_scale, rel=1e-3)
    assert clump_scout_stats() == fit
    valid = fit_clump_scout_stats(clump_scout_csv("valid"))  # the held-out split agrees
    np.testing.assert_allclose(valid.count_pmf, CLUMP_SCOUT.count_pmf, atol=0.01)
    assert valid.size_log_mean == pytest.approx(CLUMP_SCOUT.size_log_mean, abs=0.01)


# ------------------------------------------------------------------------------ volunteers, files
def test_simulated_votes_walk_the_tree_and_favour_the_truth(zoo):
    plural_right = {}
    for kind, gals in zoo.items():
        for g in gals:
            rng = np.random.default_rng(1)
            v = simulate_votes(g.answers, rng, n_volunteers=40)
            assert set(v) == set(TREE.columns) and all(c >= 0 for c in v.values())
            assert sum(v[f"smooth-or-featured_{a}"] for a in TREE["smooth-or-featured"].answer_names) == 40
            # each question gets exactly the votes of the answers that lead to it
            for q in TREE:
                reached = sum(v[f"{p}_{a}"] for p, a in TREE.parents[q.name]) if TREE.parents[q.name] else 40
                assert sum(v[f"{q.name}_{a}"] for a in q.answer_names) == reached
            assert v == simulate_votes(g.answers, np.random.default_rng(1), n_volunteers=40)
            for q, a in g.answers:
                counts = {x: v[f"{q}_{x}"] for x in TREE[q].answer_names}
                plural_right.setdefault(q, []).append(max(counts, key=counts.get) == a)
    assert np.mean(plural_right["smooth-or-featured"]) >= 0.95
    assert np.mean(plural_right["disk-edge-on"]) >= 0.9
    assert np.mean([x for v in plural_right.values() for x in v]) >= 0.8


def test_write_dataset(tmp_path):
    catalog = write_dataset(tmp_path / "ds", 8, seed=2, size=48)
    assert catalog == tmp_path / "ds" / "catalog.csv"
    cat = pd.read_csv(catalog, dtype=str, keep_default_na=False)
    assert list(cat.columns[:3]) == ["id_str", "file_loc", "kind"]
    assert set(TREE.columns) <= set(cat.columns)
    assert {f"truth_{q.name}" for q in TREE} <= set(cat.columns)
    assert len(cat) == 8
    boxes = pd.read_csv(tmp_path / "ds" / "boxes.csv")
    assert list(boxes.columns) == ["id_str", "x", "y", "width", "height"]
    assert len(boxes) == cat["n_boxes"].astype(int).sum()
    for _, row in cat.iterrows():
        g = make_galaxy(int(row["id_str"].split("-")[-1]), seed=2, size=48)
        assert row["id_str"] == g.id and row["kind"] == g.kind
        img = load_image_any(tmp_path / "ds" / row["file_loc"])
        np.testing.assert_array_equal(img, g.image)
        assert {q: a for q, a in g.answers} == {q.name: row[f"truth_{q.name}"] for q in TREE
                                                  if row[f"truth_{q.name}"]}
        assert sum(int(row[f"smooth-or-featured_{a}"]) for a in ("smooth", "featured-or-disk", "artifact")) == 40
        np.testing.assert_allclose(boxes[boxes.id_str == g.id][["x", "y", "width", "height"]].to_numpy(float),
                                   g.boxes, atol=1e-3)


def test_library_imports_without_django_or_torch():
    code = ("import sys; import classifier.synthetic, classifier.hudf, classifier.imaging; "
            "bad = [m for m in ('django', 'torch', 'torchvision', 'timm') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
