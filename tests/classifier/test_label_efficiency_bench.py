"""The label-efficiency benchmark's own arithmetic: the metric it reports and the survey population it draws."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from classifier.train import evaluate
from tests.conftest import needs_realdata

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from classifier_common import fraction_rmse, gz2_kind_mix  # noqa: E402
from classifier_label_efficiency import labels_to_reach  # noqa: E402


def test_fraction_rmse_is_what_training_reports(decals_tree):
    """The benchmark's RMSE on predicted fractions equals classifier.train.evaluate's on the same model."""
    import classifier as C

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (12, 32, 32, 3), dtype=np.uint8)
    votes = rng.integers(0, 6, (12, len(decals_tree.columns))).astype(np.float32)
    votes[:4, decals_tree.question_slices["bar"]] = np.nan          # questions nobody answered
    model = C.create_model("test_convnext_tree", tree=decals_tree).eval()
    idx = np.arange(12)
    with torch.no_grad():
        conc = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    fractions = model.layout.fractions(conc).numpy()
    assert fraction_rmse(fractions, votes, decals_tree) == pytest.approx(
        evaluate(model, images, votes, idx)["val_fraction_rmse"], rel=1e-5)


def test_labels_to_reach_interpolates_either_way():
    curve = [(100, 0.70), (200, 0.80), (300, 0.90)]
    assert labels_to_reach(curve, 0.85) == pytest.approx(250)
    assert labels_to_reach(curve, 0.70) == 100
    assert labels_to_reach(curve, 0.95) == float("inf")
    rmse = [(100, 0.30), (200, 0.20), (300, 0.10)]
    assert labels_to_reach(rmse, 0.15, higher_is_better=False) == pytest.approx(250)


def test_labels_to_reach_counts_only_a_curve_that_stays_there():
    """A noisy curve that touches the target and falls back reaches it at its last crossing, or never."""
    noisy = [(40, 0.67), (88, 0.70), (136, 0.65), (184, 0.66), (232, 0.69)]
    assert labels_to_reach(noisy, 0.69) == 232
    assert labels_to_reach(noisy[:-1], 0.69) == float("inf")
    dip = [(100, 0.70), (200, 0.90), (300, 0.80), (400, 0.95)]
    assert labels_to_reach(dip, 0.85) == pytest.approx(300 + 100 / 3)


@needs_realdata
def test_survey_mix_comes_from_real_gz2_votes():
    mix = gz2_kind_mix()
    assert sum(mix.values()) == pytest.approx(1.0)
    assert set(mix) <= {"elliptical", "edge_on", "disk", "spiral", "clumpy", "merger", "artifact"}
    # Galaxy Zoo 2's magnitude-limited Stripe 82 sample is mostly smooth, then spirals (Willett et al. 2013)
    assert 0.6 < mix["elliptical"] < 0.85
    assert max((k for k in mix if k != "elliptical"), key=mix.get) == "spiral"


def test_strategy_names_and_the_measure_each_is_judged_on():
    from classifier_label_efficiency import measure_of, parse_strategy

    assert parse_strategy("bald") == ("bald", "", False)
    assert parse_strategy("bald:bar+diverse") == ("bald", "bar", True)
    assert measure_of("bald:has-spiral-arms") == "has-spiral-arms" and measure_of("random") == "tree"
    with pytest.raises(ValueError):
        parse_strategy("bald+fast")


def test_a_question_strategy_is_compared_with_random_on_that_question():
    """One random curve is the baseline of every strategy, each on the strategy's own measure."""
    from classifier_label_efficiency import summarise

    def curve(tree, bar):
        return [{"labels": n, "tree": [t, 0.3 - t / 10], "bar": [b, 0.3 - b / 10]}
                for n, t, b in zip((100, 200, 300, 400), tree, bar)]
    curves = {"random": [curve((0.6, 0.7, 0.8, 0.9), (0.4, 0.45, 0.5, 0.55))],
              "bald:bar": [curve((0.6, 0.65, 0.7, 0.75), (0.4, 0.55, 0.6, 0.65))]}
    rows, summary, final = summarise(curves, ["random", "bald:bar"])
    assert rows[1] == {"labels": 200, "random tree acc": 0.7, "random bar acc": 0.45, "bald:bar acc": 0.55}
    bald = summary[1]
    assert bald["measure"] == "bar" and bald["labels to random's final accuracy"] == pytest.approx(200)
    assert bald["saving (accuracy)"] == "50 %"
    assert bald["saving, whole tree (accuracy)"] == "never reached"    # 0.75 at 400 labels, random's 0.9
    assert "saving, whole tree (accuracy)" not in summary[0]
    assert {r["measure"]: r["bald:bar"] for r in final} == {"tree": 0.75, "bar": 0.65}
