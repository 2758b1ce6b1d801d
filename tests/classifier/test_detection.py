"""The clump detector: a training step for every registered detector, boxes in image coordinates,
exact box augmentation, completeness and purity, checkpoints."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from classifier.detection import (DetectionData, DetectorConfig, box_iou, completeness_purity, create_detector,
                                  dihedral_boxes, fit_detector, list_detectors, predict_boxes)


def squares(n: int, size: int, per_image: int = 3, seed: int = 0):
    """Images with bright squares on a dark sky, and the squares' boxes (xyxy)."""
    rng = np.random.default_rng(seed)
    imgs = np.full((n, size, size, 3), 10, np.uint8)
    boxes = []
    for i in range(n):
        b = []
        for _ in range(per_image):
            w = int(rng.integers(5, 9))
            x, y = rng.integers(2, size - w - 2, 2)
            imgs[i, y:y + w, x:x + w] = 250
            b.append([x, y, x + w, y + w])
        boxes.append(np.asarray(b, np.float32))
    return imgs, boxes


@pytest.mark.parametrize("name", list_detectors())
def test_every_detector_trains_a_step(name):
    torch.manual_seed(0)
    model = create_detector(name, image_size=64).train()
    imgs, boxes = squares(2, 64)
    xs = [torch.from_numpy(im).permute(2, 0, 1).float() / 255 for im in imgs]
    targets = [{"boxes": torch.from_numpy(b), "labels": torch.ones(len(b), dtype=torch.int64)} for b in boxes]
    losses = model(xs, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    opt.zero_grad()
    total.backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_boxes_come_back_in_image_coordinates():
    """The network works at 64 px; a 96 x 128 image must get boxes in its own 96 x 128 pixels."""
    torch.manual_seed(0)
    model = create_detector("test_convnext_frcnn", image_size=64)
    img = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    det = predict_boxes(model, [img], score_threshold=0.0, device="cpu")[0]
    assert len(det["boxes"]) > 0
    b = det["boxes"]
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= 128).all() and (b[:, 3] <= 96).all()
    assert b[:, 2].max() > 64 or b[:, 3].max() > 64          # not the network's 64 px frame
    assert np.all(np.diff(det["scores"]) <= 0)


@pytest.mark.parametrize("k", range(4))
@pytest.mark.parametrize("flip", [False, True])
def test_dihedral_box_transform_is_exact(k, flip):
    img = torch.zeros(1, 20, 30)
    box = torch.tensor([[3.0, 5.0, 10.0, 8.0]])                 # x1, y1, x2, y2 on a 30 wide, 20 high image
    img[0, 5:8, 3:10] = 1
    out, b = dihedral_boxes(img, box, k, flip)
    ys, xs = torch.nonzero(out[0], as_tuple=True)
    assert b[0].tolist() == [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


def test_completeness_and_purity_golden():
    truth = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([[5, 5, 15, 15]])]
    preds = [{"boxes": np.array([[1, 1, 10, 10], [0, 0, 9, 10], [50, 50, 60, 60]]), "scores": np.array([0.9, 0.8, 0.7])},
             {"boxes": np.array([[5, 5, 15, 15]]), "scores": np.array([0.3])}]
    m = completeness_purity(preds, truth)
    # image 1: one of two truths found (the second detection of it is a duplicate), 1 of 3 detections real;
    # image 2: found
    assert (m["n_true"], m["n_pred"], m["n_matched"]) == (3, 4, 2)
    assert m["completeness"] == pytest.approx(2 / 3) and m["purity"] == pytest.approx(0.5)
    m = completeness_purity(preds, truth, score_threshold=0.5)
    assert (m["n_pred"], m["n_matched"]) == (3, 1)
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10]]))[0, 0] == pytest.approx(1 / 3)


def test_fit_predict_and_checkpoint_round_trip(tmp_path):
    imgs, boxes = squares(16, 64)
    data = DetectionData(ids=[str(i) for i in range(16)], images=imgs, boxes=boxes, snapshot_id="boxes-1")
    ckpt = fit_detector(DetectorConfig.preset("tiny", device="cpu", progress=False, epochs=2), data, out_dir=tmp_path)
    assert ckpt.path == tmp_path / "detector.pt"
    for key in ("val_completeness", "val_purity", "val_f1", "score_threshold"):
        assert key in ckpt.metrics
    from classifier.checkpoint import Checkpoint
    loaded = Checkpoint.load(ckpt.path)
    assert loaded.kind == "detector" and loaded.label_snapshot == "boxes-1"
    a = predict_boxes(ckpt, imgs[:3], device="cpu", score_threshold=0.0)
    b = predict_boxes(ckpt.path, imgs[:3], device="cpu", score_threshold=0.0)
    for da, db in zip(a, b):
        np.testing.assert_allclose(da["boxes"], db["boxes"], atol=1e-4)
    # the validated threshold is the default
    c = predict_boxes(ckpt.path, imgs[:3], device="cpu")
    assert all((d["scores"] >= ckpt.metrics["score_threshold"]).all() for d in c)
    assert isinstance(create_detector("test_convnext_frcnn", checkpoint_path=ckpt.path), torch.nn.Module)


@pytest.mark.slow
def test_detector_learns_bright_squares():
    imgs, boxes = squares(48, 64, seed=1)
    data = DetectionData(ids=[str(i) for i in range(48)], images=imgs, boxes=boxes)
    ckpt = fit_detector(DetectorConfig.preset("tiny", device="cpu", progress=False, epochs=6, patience=6), data)
    test_imgs, test_boxes = squares(8, 64, seed=2)
    m = completeness_purity(predict_boxes(ckpt, test_imgs, device="cpu"), test_boxes)
    assert m["completeness"] > 0.7 and m["purity"] > 0.6, m


def test_detection_data_from_csv(tmp_path):
    from PIL import Image
    imgs, boxes = squares(3, 32)
    rows = []
    for i, im in enumerate(imgs):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
        rows += [{"id_str": str(i), "x1": b[0], "y1": b[1], "x2": b[2], "y2": b[3]} for b in boxes[i]]
    pd.DataFrame({"id_str": ["0", "1", "2"], "file_loc": ["0.png", "1.png", "2.png"]}).to_csv(tmp_path / "cat.csv", index=False)
    pd.DataFrame(rows[:-3]).to_csv(tmp_path / "boxes.csv", index=False)          # image 2 has no clumps
    data = DetectionData.from_csv(tmp_path / "cat.csv", tmp_path / "boxes.csv", tmp_path)
    assert [len(b) for b in data.boxes] == [3, 3, 0]
    np.testing.assert_array_equal(data.boxes[0], boxes[0])
    assert data.image_list()[1].shape == (32, 32, 3)
    xywh = pd.DataFrame([{"id_str": r["id_str"], "x": r["x1"], "y": r["y1"], "width": r["x2"] - r["x1"],
                          "height": r["y2"] - r["y1"]} for r in rows])
    xywh.to_csv(tmp_path / "synthetic_boxes.csv", index=False)
    same = DetectionData.from_csv(tmp_path / "cat.csv", tmp_path / "synthetic_boxes.csv", tmp_path)
    np.testing.assert_array_equal(same.boxes[2], boxes[2])
    with pytest.raises(KeyError, match="known detectors"):
        create_detector("yolo")
