"""fit(config, data) -> Checkpoint: learning, reproducibility, resumption, early stopping, checkpoints."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from classifier.checkpoint import Checkpoint, metrics_path
from classifier.data import GalaxyData
from classifier.train import TrainConfig, constant_baseline_rmse, evaluate, fit, split_indices


def tiny(**overrides) -> TrainConfig:
    return TrainConfig.preset("tiny", device="cpu", progress=False, **overrides)


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_tiny_run_lowers_the_loss(tiny_data):
    config = tiny(epochs=8, patience=8)
    torch.manual_seed(config.seed)
    from classifier.models import create_model
    untrained = create_model(config.model, tree=tiny_data.tree, dropout_rate=config.dropout_rate)
    _, val = split_indices(tiny_data, config.val_fraction, config.seed)
    images = tiny_data.image_array(config.image_size)
    before = evaluate(untrained, images, tiny_data.votes, val)["val_loss"]
    ckpt = fit(config, tiny_data)
    after = ckpt.metrics["val_loss"]
    history = ckpt.metrics["history"]
    assert after < 0.8 * before, (before, after)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert ckpt.metrics["val_fraction_rmse"] < 0.25


def test_checkpoint_round_trip_and_metrics_json(tmp_path, tiny_data):
    ckpt = fit(tiny(epochs=2), tiny_data, out_dir=tmp_path)
    assert ckpt.path == tmp_path / "best.pt" and ckpt.path.exists() and (tmp_path / "last.pt").exists()
    loaded = Checkpoint.load(ckpt.path)
    assert loaded.kind == "morphology" and loaded.model_name == "test_convnext_tree"
    assert loaded.label_snapshot == "snap-test"
    assert loaded.model_args["tree"] == tiny_data.tree.to_dict()
    assert TrainConfig.from_dict(loaded.config) == tiny(epochs=2)
    assert same_weights(loaded.state_dict, ckpt.state_dict)
    assert loaded.train_state is None and Checkpoint.load(tmp_path / "last.pt").train_state is not None
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(loaded.build()(x), ckpt.build()(x))
    summary = json.loads(metrics_path(ckpt.path).read_text())
    assert summary["metrics"]["val_loss"] == pytest.approx(ckpt.metrics["val_loss"])
    assert summary["label_snapshot"] == "snap-test"
    assert np.isfinite(ckpt.metrics["val_loss"]) and ckpt.metrics["val_ids_sha1"]


def test_checkpoint_write_is_atomic(tmp_path, tiny_data, monkeypatch):
    ckpt = fit(tiny(epochs=1), tiny_data)
    path = ckpt.save(tmp_path / "model.pt")
    before = path.read_bytes()

    def killed(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt("job killed")

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(path)
    assert path.read_bytes() == before                       # the old file is intact
    assert sorted(os.listdir(tmp_path)) == ["model.metrics.json", "model.pt"]   # no temp file left


def test_same_seed_same_weights_other_seed_other_weights(tiny_data):
    a = fit(tiny(epochs=1), tiny_data)
    b = fit(tiny(epochs=1), tiny_data)
    c = fit(tiny(epochs=1, seed=1), tiny_data)
    assert same_weights(a.state_dict, b.state_dict)
    assert not same_weights(a.state_dict, c.state_dict)


class Killed(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_result(tmp_path, tiny_data):
    config = tiny(epochs=3, patience=5)
    whole = fit(config, tiny_data)

    def kill_after_first_epoch(record):
        if record["epoch"] == 0:
            raise Killed

    with pytest.raises(Killed):
        fit(config, tiny_data, out_dir=tmp_path, callback=kill_after_first_epoch)
    assert Checkpoint.load(tmp_path / "last.pt").epoch == 1
    resumed = fit(config, tiny_data, out_dir=tmp_path)
    assert same_weights(resumed.state_dict, whole.state_dict)
    assert [r["epoch"] for r in resumed.metrics["history"]] == [0, 1, 2]
    with pytest.raises(ValueError, match="another config"):
        fit(tiny(epochs=3, lr=1e-2), tiny_data, out_dir=tmp_path)


def test_early_stopping_on_validation_loss(tiny_data):
    ckpt = fit(tiny(epochs=10, patience=2, lr=1e-12, augment=None), tiny_data)
    # with no learning the validation loss cannot improve after the first epoch
    assert ckpt.metrics["epochs_run"] <= 4
    assert ckpt.metrics["best_epoch"] <= 1


def test_fixed_validation_set(tiny_data):
    val_ids = list(tiny_data.ids[::4])
    data = GalaxyData(ids=tiny_data.ids, images=tiny_data.images, votes=tiny_data.votes, tree=tiny_data.tree,
                      val_ids=val_ids)
    a = fit(tiny(epochs=1), data)
    b = fit(tiny(epochs=1, seed=5), data)
    assert a.metrics["n_val"] == len(val_ids)
    assert a.metrics["val_ids_sha1"] == b.metrics["val_ids_sha1"]
    with pytest.raises(ValueError, match="validation id"):
        split_indices(GalaxyData(ids=tiny_data.ids, images=tiny_data.images, votes=tiny_data.votes,
                                 tree=tiny_data.tree, val_ids=["nope"]), 0.1, 0)


def test_galaxies_without_votes_are_not_trained_on(tiny_data):
    votes = tiny_data.votes.copy()
    votes[:10] = np.nan
    data = GalaxyData(ids=tiny_data.ids, images=tiny_data.images, votes=votes, tree=tiny_data.tree, val_ids=[])
    train, val = split_indices(data, 0.0, 0)
    assert len(val) == 0 and set(train) == set(range(10, len(votes)))


def test_fine_tune_from_a_platform_checkpoint(tmp_path, tiny_data, decals_tree):
    first = fit(tiny(epochs=1), tiny_data, out_dir=tmp_path / "a")
    again = fit(tiny(epochs=1, init_checkpoint=str(first.path), lr=1e-12, augment=None), tiny_data)
    # with a vanishing learning rate the fine-tuned model starts, and stays, where the first ended
    for k, v in first.state_dict.items():
        assert torch.allclose(v.float(), again.state_dict[k].float(), atol=1e-6), k


def test_votes_shape_is_checked(short_tree):
    with pytest.raises(ValueError, match="votes must have shape"):
        GalaxyData(ids=["a", "b"], images=np.zeros((2, 8, 8, 3), np.uint8), votes=np.zeros((2, 3)), tree=short_tree)


def test_unknown_preset_lists_known():
    with pytest.raises(KeyError, match="tiny, small, base"):
        TrainConfig.preset("huge")


def test_constant_baseline_is_the_rmse_of_the_training_mean_fractions():
    """The floor a candidate model must beat before promotion, by hand: only the first question answered."""
    from classifier.questions import as_tree

    tree = as_tree("gz_decals")
    first = tree.question_slices[tree.first]
    votes = np.full((4, len(tree.columns)), np.nan)
    votes[:, first] = [[8, 2, 0], [6, 4, 0], [0, 10, 0], [5, 0, 5]]
    train, val = np.array([0, 1]), np.array([2, 3])
    mean = np.array([0.7, 0.3, 0.0])                           # the two training galaxies' mean fractions
    observed = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    assert constant_baseline_rmse(tree, votes, train, val) == pytest.approx(np.sqrt(((observed - mean) ** 2).mean()))
    # A validation set that answered nothing measured has no RMSE.
    assert np.isnan(constant_baseline_rmse(tree, votes[:, :] * np.where(np.arange(4) < 2, 1, np.nan)[:, None],
                                           train, val))
