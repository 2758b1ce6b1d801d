"""The command line end to end, on files in the fixed formats (CAT.csv, TREE.json, SCORES.csv, BOXES.csv)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from classifier.cli import main

from .conftest import SHORT_TREE, blob_images, blob_votes


@pytest.fixture
def catalog(tmp_path, short_tree):
    images, level = blob_images(40, 32)
    votes = blob_votes(level, short_tree)
    (tmp_path / "img").mkdir()
    rows = []
    for i, im in enumerate(images):
        Image.fromarray(im).save(tmp_path / "img" / f"g{i}.png")
        rows.append({"id_str": f"g{i}", "file_loc": f"g{i}.png", **dict(zip(short_tree.columns, votes[i]))})
    pd.DataFrame(rows).to_csv(tmp_path / "cat.csv", index=False)
    return tmp_path


@pytest.mark.parametrize("form", ["short", "workflow"])
def test_train_then_score(catalog, capsys, form):
    tmp = catalog
    if form == "short":
        tree = SHORT_TREE
    else:   # the workflow's tree JSON: answers are objects with name and next
        tree = {"first": "smooth-or-featured", "questions": [
            {"name": "smooth-or-featured", "answers": [{"name": "smooth", "next": None},
                                                       {"name": "featured-or-disk", "next": "has-spiral-arms"},
                                                       {"name": "artifact", "next": None}]},
            {"name": "has-spiral-arms", "answers": [{"name": "yes", "next": None}, {"name": "no", "next": None}]}]}
    (tmp / "tree.json").write_text(json.dumps(tree))
    assert main(["train", "--catalog", str(tmp / "cat.csv"), "--images", str(tmp / "img"),
                 "--questions", str(tmp / "tree.json"), "--out", str(tmp / "run"), "--config", "tiny",
                 "--device", "cpu", "--epochs", "1", "--quiet", "--snapshot-id", "s1"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["checkpoint"].endswith("best.pt") and np.isfinite(out["val_loss"])
    assert (tmp / "run" / "best.metrics.json").exists()

    assert main(["score", "--checkpoint", out["checkpoint"], "--catalog", str(tmp / "cat.csv"),
                 "--images", str(tmp / "img"), "--out", str(tmp / "scores.csv"), "--samples", "3",
                 "--acquisition", "bald", "--device", "cpu", "--quiet", "--embeddings", str(tmp / "emb.npz")]) == 0
    df = pd.read_csv(tmp / "scores.csv")
    cols = ["smooth-or-featured_smooth", "smooth-or-featured_featured-or-disk", "smooth-or-featured_artifact",
            "has-spiral-arms_yes", "has-spiral-arms_no"]
    assert list(df.columns) == ["id_str"] + [c + "_fraction" for c in cols] + ["acquisition"]
    assert len(df) == 40 and df["acquisition"].notna().all()
    emb = np.load(tmp / "emb.npz")
    assert emb["embeddings"].shape[0] == 40 and emb["anomaly"].shape == (40,)


def test_train_reports_missing_columns(catalog):
    df = pd.read_csv(catalog / "cat.csv").drop(columns=["has-spiral-arms_no"])
    df.to_csv(catalog / "bad.csv", index=False)
    (catalog / "tree.json").write_text(json.dumps(SHORT_TREE))
    with pytest.raises(ValueError, match="has-spiral-arms_no"):
        main(["train", "--catalog", str(catalog / "bad.csv"), "--images", str(catalog / "img"),
              "--questions", str(catalog / "tree.json"), "--out", str(catalog / "run"), "--config", "tiny",
              "--device", "cpu", "--quiet"])


def test_detect_train_and_predict(tmp_path, capsys):
    from .test_detection import squares
    imgs, boxes = squares(12, 64)
    (tmp_path / "img").mkdir()
    rows = []
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(tmp_path / "img" / f"{i}.png")
        rows += [{"id_str": str(i), "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]} for b in boxes[i]]
    pd.DataFrame({"id_str": [str(i) for i in range(12)], "file_loc": [f"{i}.png" for i in range(12)]}).to_csv(
        tmp_path / "cat.csv", index=False)
    pd.DataFrame(rows).to_csv(tmp_path / "boxes.csv", index=False)
    assert main(["detect", "train", "--catalog", str(tmp_path / "cat.csv"), "--boxes", str(tmp_path / "boxes.csv"),
                 "--images", str(tmp_path / "img"), "--out", str(tmp_path / "det"), "--config", "tiny",
                 "--epochs", "1", "--device", "cpu", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["detect", "predict", "--checkpoint", out["checkpoint"], "--catalog", str(tmp_path / "cat.csv"),
                 "--images", str(tmp_path / "img"), "--out", str(tmp_path / "pred.csv"), "--threshold", "0.0",
                 "--device", "cpu"]) == 0
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns) == ["id_str", "x1", "y1", "x2", "y2", "score", "label"]
    assert len(pred) > 0 and pred["x2"].max() <= 64


def test_models_lists_registries(capsys):
    assert main(["models"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "convnext_nano_tree" in out["models"] and "bald" in out["acquisitions"]
