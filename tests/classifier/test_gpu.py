"""CUDA paths: bf16 autocast, channels_last, torch.compile, pinned memory and loader workers.

Marked ``gpu``: they run wherever ``torch.cuda.is_available()`` (the device comes from ``TORCH_DEVICE``,
default auto) and are skipped elsewhere by conftest.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from classifier.checkpoint import Checkpoint
from classifier.devices import Speed, resolve_device
from classifier.scoring import score
from classifier.train import TrainConfig, fit

pytestmark = pytest.mark.gpu


def cuda_device() -> torch.device:
    device = resolve_device()
    return device if device.type == "cuda" else torch.device("cuda")


def test_defaults_switch_the_tuned_path_on():
    speed = Speed.resolve(cuda_device())
    assert speed.channels_last and speed.compile
    assert speed.amp == torch.cuda.is_bf16_supported()


def test_fit_on_gpu_with_the_tuned_path_learns_and_loads_on_cpu(tmp_path, tiny_data):
    device = cuda_device()
    ckpt = fit(TrainConfig.preset("tiny", device=str(device), epochs=6, patience=6, progress=False), tiny_data,
               out_dir=tmp_path)
    hist = ckpt.metrics["history"]
    assert ckpt.metrics["speed"]["compile"] and hist[-1]["train_loss"] < hist[0]["train_loss"]
    model = Checkpoint.load(ckpt.path).build()                      # weights come back as CPU tensors
    assert next(model.parameters()).device.type == "cpu"


def test_gpu_scoring_matches_cpu_eager(tiny_data):
    from classifier.models import create_model
    torch.manual_seed(0)
    model = create_model("test_convnext_tree", tree=tiny_data.tree, dropout_rate=0.0).eval()
    images = tiny_data.image_array(32)[:64]
    kw = dict(n_samples=2, image_size=32, acquisition="bald", anomaly=False, batch_size=32)
    cpu = score(model, images, device="cpu", **kw)
    gpu = score(model, images, device=str(cuda_device()), **kw)       # bf16 + channels_last + compile
    np.testing.assert_allclose(gpu.fractions, cpu.fractions, atol=0.03)
    assert np.corrcoef(gpu.acquisition, cpu.acquisition)[0, 1] > 0.9


def test_gpu_scoring_from_files_with_workers_and_pinned_memory(tmp_path, tiny_data):
    from PIL import Image
    from classifier.models import create_model
    paths = []
    for i, im in enumerate(tiny_data.image_array(32)[:16]):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    model = create_model("test_convnext_tree", tree=tiny_data.tree)
    s = score(model, paths, image_size=32, device=str(cuda_device()), num_workers=2, batch_size=4)
    assert s.fractions.shape == (16, 5) and np.isfinite(s.acquisition).all()


def test_detector_step_on_gpu():
    from classifier.detection import DetectionData, DetectorConfig, fit_detector, predict_boxes
    from .test_detection import squares
    imgs, boxes = squares(8, 64)
    data = DetectionData(ids=[str(i) for i in range(8)], images=imgs, boxes=boxes)
    ckpt = fit_detector(DetectorConfig.preset("tiny", device=str(cuda_device()), epochs=1, progress=False), data)
    out = predict_boxes(ckpt, imgs[:2], device=str(cuda_device()), score_threshold=0.0)
    assert all(d["boxes"].shape[1] == 4 for d in out)
