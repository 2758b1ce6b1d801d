"""Where tensors live and how fast paths are switched on: one place for device, precision and threads.

The environment variable ``TORCH_DEVICE`` (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``) picks the device
when a caller passes none; ``auto`` means CUDA when present. The tuned path (bf16 autocast, channels_last,
``torch.compile``) is a set of three switches, each ``None`` for "on where it pays" (CUDA) or an explicit
bool, so that tests can run the very same code on CPU and compare it with eager float32.
"""
from __future__ import annotations

import contextlib
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

ENV_DEVICE = "TORCH_DEVICE"
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")    # "<quota> <period>" or "max <period>" (cgroup v2)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``device`` if given, else ``$TORCH_DEVICE``, else ``auto``.

    ``auto`` resolves to ``cuda`` when ``torch.cuda.is_available()`` and to ``cpu`` otherwise. Asking for
    CUDA on a machine without it fails here, with a message, rather than deep inside a kernel.
    """
    if isinstance(device, torch.device):
        return device
    name = (device or os.environ.get(ENV_DEVICE) or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} was asked for (argument or ${ENV_DEVICE}) but CUDA is not available")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    return torch.device(name)


@dataclass(frozen=True)
class Speed:
    """The tuned-path switches, resolved for one device.

    ``amp``: bf16 autocast for matmuls and convolutions (weights and the loss stay float32).
    ``channels_last``: NHWC memory layout, which cuDNN and oneDNN convolutions prefer.
    ``compile``: ``torch.compile`` the model (inductor); pays off for long runs, costs a warm-up.
    """

    amp: bool
    channels_last: bool
    compile: bool

    @classmethod
    def resolve(cls, device: torch.device, amp: bool | None = None, channels_last: bool | None = None,
                compile: bool | None = None) -> "Speed":
        cuda = device.type == "cuda"
        bf16_ok = cuda and torch.cuda.is_bf16_supported()
        return cls(amp=bf16_ok if amp is None else bool(amp),
                   channels_last=cuda if channels_last is None else bool(channels_last),
                   compile=cuda if compile is None else bool(compile))

    def autocast(self, device: torch.device):
        """A bf16 autocast context when ``amp`` is on, else a no-op context."""
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """Apply channels_last to ``model`` in place and return it, compiled when asked."""
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        if self.compile:
            return torch.compile(model)
        return model


def to_device_images(batch: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
    """uint8 images (B, H, W, C) -> float32 (B, C, H, W) in [0, 1] on ``device``.

    The copy crosses the bus as uint8 (4x less than float) and asynchronously from pinned memory. The
    permute of an NHWC tensor is already channels_last in memory, so ``channels_last=True`` costs nothing.
    """
    x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def usable_cores() -> int:
    """The CPU cores this process may use: its affinity mask, narrowed by a cgroup CPU quota (a container's
    ``--cpus`` limit, ``/sys/fs/cgroup/cpu.max``) where one is set."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n``, else ``$TORCH_NUM_THREADS`` when set; otherwise keep torch's
    default (one per physical core). Returns the count in use.

    Workers that share a machine should each be given their share of the cores.
    """
    n = n or int(os.environ.get("TORCH_NUM_THREADS", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) so that a CPU run repeats bit for bit."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
