"""The tuned path (channels_last, torch.compile, bf16 autocast) runs the same maths as eager float32.

These run on CPU, where all three also work, so the code that a GPU worker runs is exercised here; the
GPU-only checks are in test_gpu.py.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from classifier.devices import Speed, resolve_device, to_device_images, usable_cores
from classifier.models import create_model
from classifier.scoring import score
from classifier.train import TrainConfig, fit


def test_usable_cores_follow_the_affinity_mask_and_a_container_cpu_quota(monkeypatch, tmp_path):
    import os

    import classifier.devices as devices
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    cpu_max = tmp_path / "cpu.max"
    monkeypatch.setattr(devices, "CGROUP_CPU_MAX", cpu_max)
    assert usable_cores() == 16                                   # no cgroup file: the mask alone
    cpu_max.write_text("max 100000\n")
    assert usable_cores() == 16                                   # no quota
    cpu_max.write_text("250000 100000\n")
    assert usable_cores() == 3                                    # --cpus 2.5: 3 cores' worth of processes
    cpu_max.write_text("5000000 100000\n")
    assert usable_cores() == 16                                   # a quota above the mask


def test_device_from_environment(monkeypatch):
    monkeypatch.setenv("TORCH_DEVICE", "cpu")
    assert resolve_device() == torch.device("cpu")
    monkeypatch.setenv("TORCH_DEVICE", "auto")
    assert resolve_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            resolve_device("cuda")


def test_speed_defaults_are_off_on_cpu():
    assert Speed.resolve(torch.device("cpu")) == Speed(amp=False, channels_last=False, compile=False)
    assert Speed.resolve(torch.device("cpu"), amp=True, channels_last=True, compile=True) == Speed(True, True, True)


def test_uint8_transfer_and_channels_last_layout():
    x = torch.randint(0, 256, (2, 8, 8, 3), dtype=torch.uint8)
    a = to_device_images(x, torch.device("cpu"), channels_last=False)
    b = to_device_images(x, torch.device("cpu"), channels_last=True)
    assert torch.equal(a, b) and a.shape == (2, 3, 8, 8) and a.max() <= 1
    assert b.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("name", ["test_convnext_tree", "resnet18_tree"])
def test_channels_last_matches_eager(name, short_tree):
    torch.manual_seed(0)
    model = create_model(name, tree=short_tree).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        model.to(memory_format=torch.channels_last)
        out = model(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, ref, atol=1e-4)


def test_bf16_autocast_is_close_to_float32(short_tree):
    torch.manual_seed(0)
    model = create_model("test_convnext_tree", tree=short_tree).eval()
    x = torch.rand(4, 3, 32, 32)
    speed = Speed(amp=True, channels_last=False, compile=False)
    with torch.no_grad():
        ref = model(x)
        with speed.autocast(torch.device("cpu")):
            out = model(x)
    assert out.dtype == torch.bfloat16
    # concentrations live in (1, 101): bf16 keeps ~3 significant digits
    assert torch.allclose(out.float(), ref, rtol=0.05, atol=0.5)


@pytest.mark.slow
def test_compiled_training_matches_eager(tiny_data):
    """fit() with torch.compile + channels_last follows the eager trajectory (dropout off: inductor draws
    dropout masks from its own generator, so with dropout the runs differ by their masks only)."""
    kw = dict(device="cpu", progress=False, epochs=2, dropout_rate=0.0)
    eager = fit(TrainConfig.preset("tiny", **kw), tiny_data)
    tuned = fit(TrainConfig.preset("tiny", compile=True, channels_last=True, **kw), tiny_data)
    assert tuned.metrics["speed"] == {"amp": False, "channels_last": True, "compile": True}
    for a, b in zip(eager.metrics["history"], tuned.metrics["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-4)
    # and the weights come back unwrapped from the compiled module, loadable into a plain model
    assert not any(k.startswith("_orig_mod") for k in tuned.state_dict)


@pytest.mark.slow
def test_compiled_scoring_matches_eager(short_tree):
    torch.manual_seed(0)
    model = create_model("test_convnext_tree", tree=short_tree).eval()
    images = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)
    kw = dict(n_samples=1, image_size=32, device="cpu", acquisition=None, anomaly=False, batch_size=6)
    eager = score(model, images, **kw)
    tuned = score(model, images, compile=True, channels_last=True, **kw)
    np.testing.assert_allclose(tuned.embeddings, eager.embeddings, atol=1e-4)


def test_configure_threads_honours_the_environment(monkeypatch):
    from classifier.devices import configure_threads
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("TORCH_NUM_THREADS", "1")
        assert configure_threads() == 1 and torch.get_num_threads() == 1
        monkeypatch.delenv("TORCH_NUM_THREADS")
        assert configure_threads() == 1            # unset: torch's setting is left alone
        assert configure_threads(2) == 2
    finally:
        torch.set_num_threads(before)
