"""Self-describing checkpoints, written atomically.

A checkpoint file holds everything needed to rebuild and judge the model without the code that trained
it: the registered model name and its constructor arguments (for a morphology model, the whole decision
tree), the training config, the metrics, the step, which label snapshot it learnt from, and the library
versions. ``save`` writes to a temporary file in the same folder, flushes it to disk, then renames it over
the target (``os.replace`` is atomic on POSIX), so a job killed mid-write leaves the previous file intact.
The metrics are also written as JSON beside the checkpoint (``<name>.metrics.json``) for the platform and
for people.

Files are read with ``torch.load(weights_only=True)``: only tensors and plain Python containers, no pickled
code, so loading a checkpoint cannot run anything.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1
KINDS = ("morphology", "detector")


def atomic_write_bytes(path: str | Path, write) -> Path:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, fsync, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, lambda f: f.write(text.encode()))


def _versions() -> dict[str, str]:
    import timm
    import torchvision
    return {"torch": str(torch.__version__), "torchvision": str(torchvision.__version__), "timm": str(timm.__version__)}


@dataclass
class Checkpoint:
    """A trained model and its provenance.

    kind : ``"morphology"`` (built by :func:`classifier.create_model`) or ``"detector"``
        (:func:`classifier.create_detector`).
    model_name, model_args : registry name and keyword arguments; ``build()`` calls the factory with them.
    state_dict : the weights (CPU tensors).
    config : the training config as a dict (``dataclasses.asdict`` of the frozen config).
    metrics : scalars and small lists; for morphology models ``val_loss`` is the promotion metric.
    label_snapshot : the id of the label snapshot the model was trained on (platform-defined string).
    train_state : optimizer, scheduler and RNG states for resuming; present only in ``last.pt`` files.
    """

    kind: str
    model_name: str
    model_args: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    step: int = 0
    epoch: int = 0
    label_snapshot: str = ""
    train_state: dict[str, Any] | None = None
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    versions: dict[str, str] = field(default_factory=_versions)
    format_version: int = FORMAT_VERSION
    path: Path | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown checkpoint kind {self.kind!r}; known kinds: {', '.join(KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        # not dataclasses.asdict: that deep-copies every tensor
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"}

    def save(self, path: str | Path) -> Path:
        """Write atomically to ``path`` and the metrics to ``<path stem>.metrics.json``; returns ``path``."""
        path = Path(path)
        payload = self.to_dict()
        atomic_write_bytes(path, lambda f: torch.save(payload, f))
        atomic_write_text(metrics_path(path), json.dumps(self.summary(), indent=2, default=str) + "\n")
        self.path = path
        return path

    def summary(self) -> dict[str, Any]:
        """Everything but the tensors: what the metrics JSON beside the checkpoint holds."""
        return {"kind": self.kind, "model_name": self.model_name, "metrics": self.metrics, "step": self.step,
                "epoch": self.epoch, "label_snapshot": self.label_snapshot, "config": self.config,
                "created_at": self.created_at, "versions": self.versions,
                "model_args": {k: v for k, v in self.model_args.items() if k != "tree"}}

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> "Checkpoint":
        path = Path(path)
        payload = torch.load(path, map_location=map_location, weights_only=True)
        if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{path} is not a classifier checkpoint (format {FORMAT_VERSION})")
        ckpt = cls(**payload)
        ckpt.path = path
        return ckpt

    def build(self) -> torch.nn.Module:
        """The model with these weights, on CPU, in eval mode."""
        if self.kind == "morphology":
            from .models import create_model
            args = {k: v for k, v in self.model_args.items() if k != "backbone"}
            model = create_model(self.model_name, **args)
        else:
            from .detection import create_detector
            model = create_detector(self.model_name, **self.model_args)
        model.load_state_dict(self.state_dict)
        return model.eval()


def metrics_path(checkpoint_path: str | Path) -> Path:
    p = Path(checkpoint_path)
    return p.with_name(p.stem + ".metrics.json")


def state_dict_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the weights of ``model`` (unwrapping ``torch.compile``)."""
    model = getattr(model, "_orig_mod", model)
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
