"""score(): MC-dropout fractions, acquisition, embeddings, anomaly, similarity, viewpoint averaging."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from classifier.models import create_model
from classifier.scoring import default_workers, knn_anomaly, score, score_chunks, similar

from .conftest import blob_images


@pytest.fixture(scope="module")
def model(request):
    torch.manual_seed(0)
    from aggregation.tree import DecisionTree
    from .conftest import SHORT_TREE
    return create_model("test_convnext_tree", tree=DecisionTree.from_dict(SHORT_TREE), dropout_rate=0.5).eval()


def png_paths(directory, images) -> list[str]:
    """``images`` written as PNG files in ``directory``, in order."""
    from PIL import Image
    paths = []
    for i, im in enumerate(images):
        paths.append(str(directory / f"{i}.png"))
        Image.fromarray(im).save(paths[-1])
    return paths


def test_score_outputs(model):
    images, _ = blob_images(10, 32)
    ids = [f"x{i}" for i in range(10)]
    torch.manual_seed(0)
    s = score(model, images, ids, n_samples=4, image_size=32, device="cpu", keep_samples=True)
    assert list(s.ids) == ids
    assert s.fractions.shape == (10, 5) and s.concentrations.shape == (4, 10, 5)
    # fractions are a distribution within each question
    assert np.allclose(s.fractions[:, :3].sum(1), 1, atol=1e-5) and np.allclose(s.fractions[:, 3:].sum(1), 1, atol=1e-5)
    assert s.acquisition.shape == (10,) and (s.acquisition >= 0).all() and s.acquisition_name == "bald"
    assert s.embeddings.shape == (10, model.num_features)
    assert np.allclose(np.linalg.norm(s.embeddings, axis=1), 1, atol=1e-5)
    assert s.anomaly.shape == (10,)
    assert s.concentrations.std(0).mean() > 0                # dropout is on while scoring
    top = s.select(3, diverse=False)
    assert list(top) == [ids[i] for i in np.argsort(-s.acquisition)[:3]]
    assert len(set(s.select(3))) == 3
    np.testing.assert_allclose(s.fractions, (s.concentrations / np.concatenate(
        [np.repeat(s.concentrations[..., :3].sum(-1, keepdims=True), 3, -1),
         np.repeat(s.concentrations[..., 3:].sum(-1, keepdims=True), 2, -1)], -1)).mean(0), rtol=1e-5)


def test_a_pool_relative_acquisition_is_combined_over_every_batch(model):
    """bald-balanced ranks each galaxy against the whole pool, not against its batch of 3."""
    from classifier.acquisition import create_acquisition

    images, _ = blob_images(10, 32)
    torch.manual_seed(0)
    s = score(model, images, n_samples=4, image_size=32, device="cpu", batch_size=3, keep_samples=True,
              acquisition="bald-balanced", anomaly=False)
    assert s.acquisition_name == "bald-balanced" and s.acquisition_parts.shape == (10, 4)
    whole = create_acquisition("bald-balanced")(torch.as_tensor(s.concentrations), model.layout).numpy()
    np.testing.assert_allclose(s.acquisition, whole, atol=1e-6)
    assert sorted(s.acquisition[s.acquisition > 0]) == pytest.approx(np.arange(1, 11)[-(s.acquisition > 0).sum():] / 10)


@pytest.mark.parametrize("acquisition", ["bald", "bald-balanced"])
def test_score_chunks_stream_the_same_scores_as_score(tmp_path, model, acquisition):
    """Chunks of whole batches (batch 3, chunk 4 -> 6, 6, 1 galaxies), in order, through one loader."""
    paths = png_paths(tmp_path, blob_images(13, 32)[0])
    ids = [f"g{i}" for i in range(13)]
    kw = dict(n_samples=3, image_size=32, device="cpu", acquisition=acquisition, batch_size=3, keep_samples=True)
    torch.manual_seed(0)
    whole = score(model, paths, ids, anomaly=False, **kw)
    torch.manual_seed(0)
    chunks = list(score_chunks(model, paths, ids, chunk_size=4, **kw))
    assert [len(c.ids) for c in chunks] == [6, 6, 1]
    assert [i for c in chunks for i in c.ids] == ids
    assert all(c.anomaly is None and c.acquisition_name == acquisition for c in chunks)
    for field in ("fractions", "embeddings"):
        np.testing.assert_array_equal(np.concatenate([getattr(c, field) for c in chunks]), getattr(whole, field))
    np.testing.assert_array_equal(np.concatenate([c.concentrations for c in chunks], axis=1), whole.concentrations)
    if acquisition == "bald-balanced":     # pool-relative: parts per chunk, combined over the pool by the caller
        assert all(c.acquisition is None for c in chunks)
        parts = np.concatenate([c.acquisition_parts for c in chunks])
        np.testing.assert_array_equal(parts, whole.acquisition_parts)
        from classifier.acquisition import create_acquisition
        np.testing.assert_array_equal(create_acquisition(acquisition).combine(parts), whole.acquisition)
    else:
        np.testing.assert_array_equal(np.concatenate([c.acquisition for c in chunks]), whole.acquisition)


def test_score_chunks_start_the_decoding_workers_once(tmp_path, model, monkeypatch):
    """Every chunk comes from the same loader: one loader for the whole pool, not one per chunk."""
    import classifier.scoring as scoring
    paths = png_paths(tmp_path, blob_images(8, 32)[0])
    made = []

    def counting(*args, **kwargs):
        made.append(kwargs["num_workers"])
        return image_batches(*args, **kwargs)

    image_batches = scoring.image_batches
    monkeypatch.setattr(scoring, "image_batches", counting)
    chunks = list(score_chunks(model, paths, chunk_size=2, batch_size=2, image_size=32, device="cpu",
                               num_workers=1, n_samples=2))
    assert len(chunks) == 4 and made == [1]


def test_scoring_uses_every_core_but_one_to_decode_files_for_a_gpu(monkeypatch):
    import classifier.scoring as scoring
    cuda, paths = torch.device("cuda"), [f"{i}.png" for i in range(10_000)]
    monkeypatch.setattr(scoring, "usable_cores", lambda: 16)
    assert default_workers(cuda, paths, 256) == 15
    assert default_workers(cuda, paths[:600], 256) == 3                      # no more workers than batches
    monkeypatch.setattr(scoring, "usable_cores", lambda: 64)
    assert default_workers(cuda, paths, 256) == 32
    monkeypatch.setattr(scoring, "usable_cores", lambda: 1)
    assert default_workers(cuda, paths, 256) == 1
    assert default_workers(cuda, np.zeros((1, 8, 8, 3), np.uint8), 256) == 0  # arrays: nothing to decode
    assert default_workers(torch.device("cpu"), paths, 256) == 0             # the model needs the cores


def test_score_chunks_checks_its_arguments_at_once(model):
    images, _ = blob_images(3, 32)
    with pytest.raises(ValueError, match="2 ids for 3 images"):
        score_chunks(model, images, ["a", "b"], image_size=32, device="cpu")
    with pytest.raises(ValueError, match="chunk_size"):
        score_chunks(model, images, image_size=32, device="cpu", chunk_size=0)


def test_scores_csv_has_the_fixed_columns(tmp_path, model):
    images, _ = blob_images(4, 32)
    s = score(model, images, ["a", "b", "c", "d"], image_size=32, device="cpu", acquisition="margin")
    s.write_csv(tmp_path / "scores.csv")
    df = pd.read_csv(tmp_path / "scores.csv")
    assert list(df.columns) == ["id_str"] + [f"{c}_fraction" for c in model.columns] + ["acquisition"]
    assert list(df["id_str"]) == ["a", "b", "c", "d"]


def test_score_from_paths_matches_score_from_array(tmp_path, model):
    images, _ = blob_images(5, 32)
    paths = png_paths(tmp_path, images)
    a = score(model, images, n_samples=2, image_size=32, device="cpu", acquisition=None, anomaly=False)
    b = score(model, paths, n_samples=2, image_size=32, device="cpu", acquisition=None, anomaly=False,
              batch_size=2)
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)


def test_viewpoint_averaging_is_invariant_to_rotation_and_flip(model):
    images, _ = blob_images(3, 32, seed=3)
    rng = np.random.default_rng(0)
    images = np.clip(images + rng.integers(0, 60, images.shape), 0, 255).astype(np.uint8)  # not symmetric
    turned = np.ascontiguousarray(np.rot90(images, 1, axes=(1, 2))[:, :, ::-1])
    kw = dict(n_samples=1, image_size=32, device="cpu", acquisition=None, anomaly=False, tta=True)
    a, b = score(model, images, **kw), score(model, turned, **kw)
    np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-5)
    plain = score(model, turned, **{**kw, "tta": False})
    assert not np.allclose(plain.embeddings, a.embeddings, atol=1e-3)


def test_anomaly_score_finds_the_odd_one_out():
    rng = np.random.default_rng(0)
    emb = rng.normal(0, 0.05, (50, 8)) + np.eye(8)[0]
    emb[17] = np.eye(8)[3]
    a = knn_anomaly(emb, k=5)
    assert a.argmax() == 17
    ref = knn_anomaly(emb[:5], reference=np.delete(emb, 17, axis=0), k=5)
    assert ref.shape == (5,)
    sub = knn_anomaly(emb, k=5, max_reference=20)       # subsampled reference still excludes self
    assert sub.shape == (50,) and sub.argmax() == 17


def test_similar_returns_the_nearest_by_cosine():
    emb = np.array([[1.0, 0, 0], [0.9, 0.1, 0], [0, 1.0, 0], [0.8, 0.0, 0.2]])
    idx, sim = similar(emb[[0]], emb, k=3)
    assert list(idx[0]) == [0, 1, 3] and sim[0, 0] == pytest.approx(1.0)
    idx, _ = similar(emb[[0]], emb, k=2, exclude_self=True)
    assert list(idx[0]) == [1, 3]


def test_checkpoint_scoring_uses_its_image_size(tmp_path, tiny_data):
    from classifier.train import TrainConfig, fit
    ckpt = fit(TrainConfig.preset("tiny", epochs=1, device="cpu", progress=False), tiny_data, out_dir=tmp_path)
    big = np.repeat(np.repeat(tiny_data.image_array(32)[:4], 2, axis=1), 2, axis=2)   # 64 px: resized to 32
    s = score(ckpt.path, big, device="cpu", n_samples=2)
    assert s.fractions.shape == (4, 5)
    with pytest.raises(ValueError, match="image_size"):
        score(ckpt.build(), big)
