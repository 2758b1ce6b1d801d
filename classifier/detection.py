"""The clump detector: torchvision's Faster R-CNN (Ren et al. 2015) on a timm backbone with an FPN
(Lin et al. 2017), trained on clump boxes: consensus boxes from the aggregator or synthetic truth.

Popp et al. (2024, "Galaxy Zoo: Clump Scout", MNRAS) trained Faster R-CNN on volunteer consensus boxes and
judged it by completeness (share of true clumps found) and purity (share of detections that are real) at
IoU >= 0.5; both reached about 0.8 with ~5,000 training images. :func:`completeness_purity` computes the
same two numbers; ``fit_detector`` picks the score threshold that maximises their harmonic mean on the
validation split (never on a test set) and stores it in the checkpoint.

Clumps are small (a few pixels in a 100-400 px cutout), so the FPN starts at stride 4 and the smallest
anchors are 8 px. Boxes are ``(x1, y1, x2, y2)`` in pixels of the image as given, x to the right along a
row, y down the rows; predictions come back in the same coordinates whatever the network's internal size.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .checkpoint import Checkpoint, atomic_write_text, state_dict_cpu
from .data import is_array, load_native, read_catalog, resolve_paths
from .devices import Speed, resolve_device, seed_everything

_DETECTORS: dict[str, dict[str, Any]] = {}


def register_detector(name: str, **defaults):
    _DETECTORS[name] = defaults


def list_detectors() -> list[str]:
    return sorted(_DETECTORS)


# Registered detectors: backbone and FPN levels (timm feature indices: a ResNet's index 0 is its stride-2 stem,
# which the ResNet detectors keep because clumps are only a few pixels wide; a ConvNeXt starts at stride 4).
# ``representation_size`` is the width of the two-layer box head (torchvision's default is 1024, sized for
# COCO's 80 classes; one or two clump classes need far less, and the head dominates CPU time otherwise).
# The FPN width matters most on a CPU: its 3x3 convolutions (and the RPN's) on the stride-4 level cost more
# than a small backbone, so the small detectors use 64 channels.
register_detector("convnext_atto_frcnn", backbone="convnext_atto", out_indices=(0, 1, 2, 3), fpn_channels=64,
                  representation_size=256)
register_detector("resnet18_frcnn", backbone="resnet18", out_indices=(0, 1, 2, 3, 4), fpn_channels=64,
                  representation_size=256)
register_detector("convnext_nano_frcnn", backbone="convnext_nano", out_indices=(0, 1, 2, 3), fpn_channels=128,
                  representation_size=512)
register_detector("test_convnext_frcnn", backbone="test_convnext", out_indices=(0, 1, 2, 3), fpn_channels=32,
                  representation_size=64)
register_detector("test_resnet_frcnn", backbone="test_resnet", out_indices=(0, 1, 2, 3, 4), fpn_channels=32,
                  representation_size=128)


class TimmFPN(nn.Module):
    """timm ``features_only`` backbone + torchvision FPN: images (B, 3, H, W) -> OrderedDict of maps with
    ``out_channels`` channels, one per level plus a max-pooled ``pool`` level."""

    def __init__(self, backbone: str, out_indices: Sequence[int], fpn_channels: int, in_chans: int = 3):
        super().__init__()
        import timm
        from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

        self.body = timm.create_model(backbone, pretrained=False, features_only=True,
                                      out_indices=tuple(out_indices), in_chans=in_chans)
        self.fpn = FeaturePyramidNetwork(self.body.feature_info.channels(), fpn_channels,
                                         extra_blocks=LastLevelMaxPool())
        self.out_channels = fpn_channels
        self.strides = self.body.feature_info.reduction()

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(self.body(x))))


def create_detector(name: str, *, num_classes: int = 2, image_size: int = 128,
                    anchor_sizes: Sequence[int] | None = None, aspect_ratios: Sequence[float] = (1.0,),
                    checkpoint_path: str | os.PathLike | None = None, **kwargs) -> nn.Module:
    """Build the registered detector ``name`` (a torchvision ``FasterRCNN``).

    num_classes : including background (2 = background + clump; 3 adds Clump Scout's "odd" clumps).
    image_size : the size the network sees (images are resized to it, boxes mapped back).
    anchor_sizes : one anchor size in pixels (network input) per FPN level; default 1.5 times the finest
        stride, doubling per level (3, 6, 12, ... px for the ResNets; 6, 12, 24, ... for the ConvNeXts).
    aspect_ratios : anchor height/width ratios; clump boxes are squares (Clump Scout draws square boxes),
        so one ratio suffices and makes the RPN three times cheaper than torchvision's (0.5, 1, 2).
    checkpoint_path : a detector checkpoint written by :func:`fit_detector`; its arguments win.
    kwargs : ``backbone``, ``out_indices``, ``fpn_channels``, ``representation_size`` overrides.
    """
    if name not in _DETECTORS:
        raise KeyError(f"unknown detector {name!r}; known detectors: {', '.join(list_detectors())}")
    if checkpoint_path is not None:
        ckpt = Checkpoint.load(checkpoint_path)
        if ckpt.kind != "detector":
            raise ValueError(f"{checkpoint_path} is a {ckpt.kind} checkpoint, not a detector")
        model = create_detector(ckpt.model_name, **ckpt.model_args)
        model.load_state_dict(ckpt.state_dict)
        return model

    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    spec = {**_DETECTORS[name], **kwargs}
    backbone = TimmFPN(spec["backbone"], spec["out_indices"], spec["fpn_channels"])
    n_levels = len(spec["out_indices"]) + 1                                   # + the "pool" level
    first = backbone.strides[0] * 1.5
    sizes = tuple(anchor_sizes) if anchor_sizes is not None else tuple(first * 2 ** i for i in range(n_levels))
    if len(sizes) != n_levels:
        raise ValueError(f"{name} has {n_levels} FPN levels; got {len(sizes)} anchor sizes")
    anchors = AnchorGenerator(sizes=tuple((s,) for s in sizes), aspect_ratios=(tuple(aspect_ratios),) * n_levels)
    roi_pool = MultiScaleRoIAlign(featmap_names=[str(i) for i in range(n_levels - 1)], output_size=7,
                                  sampling_ratio=2)
    rep = spec["representation_size"]
    box_head = TwoMLPHead(spec["fpn_channels"] * 7 * 7, rep)
    # A 5 px box overlaps no anchor by IoU 0.7 (torchvision's RPN positive threshold), so small objects get
    # 0.5. Clumps are few per image (Clump Scout: at most ~10 consensus boxes): 1000 -> 500 RPN proposals in
    # training, 500 -> 300 in inference, and 128 sampled proposals per image for the box head (torchvision's
    # COCO defaults are 2000/2000, 1000/1000 and 512) lose nothing here and cut the per-image cost several-fold.
    model = FasterRCNN(backbone, rpn_anchor_generator=anchors, box_roi_pool=roi_pool, box_head=box_head,
                       box_predictor=FastRCNNPredictor(rep, num_classes), box_batch_size_per_image=128,
                       rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=500, rpn_fg_iou_thresh=0.5,
                       rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=300,
                       min_size=image_size, max_size=image_size, image_mean=[0.0] * 3, image_std=[1.0] * 3,
                       box_score_thresh=0.01, box_detections_per_img=100)
    model.model_name = name
    model.model_args = {"num_classes": num_classes, "image_size": image_size, "anchor_sizes": list(sizes),
                        "aspect_ratios": list(aspect_ratios),
                        "backbone": spec["backbone"], "out_indices": list(spec["out_indices"]),
                        "fpn_channels": spec["fpn_channels"], "representation_size": rep}
    return model


# ---------------------------------------------------------------------------------------------- metrics
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (n, 4) and (m, 4), xyxy -> (n, m)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def match_count(pred: np.ndarray, scores: np.ndarray, true: np.ndarray, iou_threshold: float = 0.5) -> int:
    """Number of one-to-one matches at IoU >= threshold; detections claim truths greedily by score."""
    if len(pred) == 0 or len(true) == 0:
        return 0
    iou = box_iou(pred, true)
    taken = np.zeros(len(true), dtype=bool)
    matched = 0
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        cand = np.where(~taken & (iou[i] >= iou_threshold), iou[i], -1.0)
        j = int(cand.argmax())
        if cand[j] >= 0:
            taken[j] = True
            matched += 1
    return matched


def completeness_purity(predictions: Sequence[dict], truths: Sequence[np.ndarray], *, iou_threshold: float = 0.5,
                        score_threshold: float = 0.0) -> dict[str, float]:
    """Completeness (recall) and purity (precision) over a set of images, as in Popp et al. (2024).

    predictions : per image, ``{"boxes": (m, 4), "scores": (m,)}``; truths : per image, (t, 4) boxes.
    Only detections with score >= ``score_threshold`` count. Returns completeness, purity, f1, and the
    counts n_true, n_pred, n_matched.
    """
    n_true = n_pred = n_match = 0
    for p, t in zip(predictions, truths):
        keep = np.asarray(p["scores"]) >= score_threshold
        boxes, scores = np.asarray(p["boxes"]).reshape(-1, 4)[keep], np.asarray(p["scores"])[keep]
        t = np.asarray(t).reshape(-1, 4)
        n_true += len(t)
        n_pred += len(boxes)
        n_match += match_count(boxes, scores, t, iou_threshold)
    completeness = n_match / n_true if n_true else float("nan")
    purity = n_match / n_pred if n_pred else float("nan")
    f1 = 2 * completeness * purity / (completeness + purity) if n_match else 0.0
    return {"completeness": completeness, "purity": purity, "f1": f1, "n_true": n_true, "n_pred": n_pred,
            "n_matched": n_match}


def best_threshold(predictions, truths, *, iou_threshold: float = 0.5,
                   grid: Sequence[float] = tuple(np.round(np.arange(0.05, 0.96, 0.05), 2))) -> tuple[float, dict]:
    """The score threshold in ``grid`` with the highest F1 of completeness and purity, and its metrics."""
    best = (grid[0], {"f1": -1.0})
    for thr in grid:
        m = completeness_purity(predictions, truths, iou_threshold=iou_threshold, score_threshold=float(thr))
        if m["f1"] > best[1]["f1"]:
            best = (float(thr), m)
    return best


# ---------------------------------------------------------------------------------------------- data
@dataclass
class DetectionData:
    """Images with boxes.

    ids : str (n,)
    images : uint8 array (n, H, W, 3) or n image paths (any size; boxes are in each image's pixels)
    boxes : n float arrays (m_i, 4), xyxy pixels
    labels : n int arrays (m_i,) with classes 1..num_classes-1 (default: all 1)
    val_ids : a fixed validation set (else ``config.val_fraction`` is drawn by seed)
    """

    ids: np.ndarray
    images: np.ndarray | Sequence[str]
    boxes: list[np.ndarray]
    labels: list[np.ndarray] | None = None
    val_ids: Sequence[str] | None = None
    snapshot_id: str = ""
    _decoded: list | None = field(default=None, repr=False)

    def __post_init__(self):
        self.ids = np.asarray(self.ids).astype(str)
        self.boxes = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in self.boxes]
        if self.labels is None:
            self.labels = [np.ones(len(b), dtype=np.int64) for b in self.boxes]
        self.labels = [np.asarray(lab, dtype=np.int64).reshape(-1) for lab in self.labels]
        n = len(self.ids)
        if not (len(self.images) == len(self.boxes) == len(self.labels) == n):
            raise ValueError("ids, images, boxes and labels must have the same length")
        for b in self.boxes:
            if len(b) and (b[:, 2:] <= b[:, :2]).any():
                raise ValueError("boxes must be x1 < x2 and y1 < y2")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_csv(cls, catalog, boxes, images_dir=None, **kwargs) -> "DetectionData":
        """From a catalogue (``id_str``, ``file_loc``) and a box table (``id_str``, ``x1``, ``y1``, ``x2``,
        ``y2`` and optionally ``label``; Clump Scout's consensus export uses these names too), or with
        ``x``, ``y``, ``width``, ``height`` (top-left corner and size, as ``classifier.synthetic`` writes)."""
        cat = read_catalog(catalog, require_votes=False)
        bx = boxes.copy() if isinstance(boxes, pd.DataFrame) else pd.read_csv(boxes, dtype={"id_str": str})
        if not {"x1", "y1", "x2", "y2"} <= set(bx.columns) and {"x", "y", "width", "height"} <= set(bx.columns):
            # classifier.synthetic's boxes.csv: top-left corner and size
            bx = bx.assign(x1=bx["x"], y1=bx["y"], x2=bx["x"] + bx["width"], y2=bx["y"] + bx["height"])
        missing = [c for c in ("id_str", "x1", "y1", "x2", "y2") if c not in bx.columns]
        if missing:
            raise ValueError(f"box table lacks column(s): {', '.join(missing)} (or x, y, width, height)")
        bx["id_str"] = bx["id_str"].astype(str)
        groups = {k: g for k, g in bx.groupby("id_str")}
        box_list, label_list = [], []
        for i in cat["id_str"]:
            g = groups.get(i)
            if g is None:
                box_list.append(np.zeros((0, 4), np.float32))
                label_list.append(np.zeros(0, np.int64))
            else:
                box_list.append(g[["x1", "y1", "x2", "y2"]].to_numpy(np.float32))
                label_list.append(g["label"].to_numpy(np.int64) if "label" in g else np.ones(len(g), np.int64))
        paths = resolve_paths(cat["file_loc"].tolist(), images_dir)
        return cls(ids=cat["id_str"].to_numpy(), images=paths, boxes=box_list, labels=label_list, **kwargs)

    def image_list(self) -> list[np.ndarray]:
        """The images as uint8 (H, W, 3) arrays at their own size, decoded once."""
        if self._decoded is None:
            if is_array(self.images):
                self._decoded = list(np.asarray(self.images))
            else:
                self._decoded = [load_native(p) for p in self.images]
        return self._decoded


def _to_tensor(img: np.ndarray, device) -> torch.Tensor:
    img = np.ascontiguousarray(img)
    if not img.flags.writeable:  # e.g. a read-only memory map: torch refuses to wrap it without a copy
        img = img.copy()
    x = torch.from_numpy(img)
    if x.ndim == 2:
        x = x[..., None].expand(-1, -1, 3)
    return x.to(device, non_blocking=True).permute(2, 0, 1).float().div_(255.0)


def dihedral_boxes(img: torch.Tensor, boxes: torch.Tensor, k: int, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate an image (C, H, W) by k * 90 degrees (``torch.rot90``, k counter-clockwise turns as displayed)
    after an optional left-right flip, and its xyxy boxes (m, 4) with it, exactly."""
    b = boxes.clone()
    if flip:
        w = img.shape[-1]
        img = img.flip(-1)
        b = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], 1)
    for _ in range(k % 4):
        w = img.shape[-1]
        img = torch.rot90(img, 1, dims=(-2, -1))   # out[r, c] = in[c, W-1-r]: (x, y) -> (y, W - x)
        b = torch.stack([b[:, 1], w - b[:, 2], b[:, 3], w - b[:, 0]], 1)
    return img, b


# ---------------------------------------------------------------------------------------------- training
@dataclass(frozen=True)
class DetectorConfig:
    """Hyper-parameters of a detector run (frozen). ``image_size``: the network's input size."""

    model: str = "convnext_atto_frcnn"
    num_classes: int = 2
    image_size: int = 128
    batch_size: int = 8
    epochs: int = 30
    max_steps: int = 0
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.05
    grad_clip: float = 5.0
    patience: int = 6
    val_fraction: float = 0.15
    iou_threshold: float = 0.5
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    augment: bool = True
    progress: bool = True

    @classmethod
    def preset(cls, name: str, **overrides) -> "DetectorConfig":
        if name not in DETECTOR_PRESETS:
            raise KeyError(f"unknown config {name!r}; known configs: {', '.join(DETECTOR_PRESETS)}")
        return dataclasses.replace(DETECTOR_PRESETS[name], **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DETECTOR_PRESETS = {
    "tiny": DetectorConfig(model="test_convnext_frcnn", image_size=64, batch_size=4, epochs=2, patience=2, lr=3e-3),
    # ResNet: batch norm learns from scratch faster than ConvNeXt, and its stride-2 level resolves 5 px clumps
    "small": DetectorConfig(model="resnet18_frcnn", image_size=128, batch_size=8, epochs=30),
    "base": DetectorConfig(model="convnext_nano_frcnn", image_size=256, batch_size=16, epochs=60, patience=10),
}


def _split(data: DetectionData, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(data)
    if data.val_ids is not None:
        pos = {s: i for i, s in enumerate(data.ids)}
        val = np.array(sorted(pos[v] for v in data.val_ids), dtype=int)
    else:
        n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
        val = np.sort(np.random.default_rng(seed).permutation(n)[:n_val])
    return np.setdiff1d(np.arange(n), val), val


def fit_detector(config: DetectorConfig, data: DetectionData, *, out_dir: str | os.PathLike | None = None,
                 callback: Callable[[dict], None] | None = None) -> Checkpoint:
    """Train a clump detector; returns the checkpoint with the best validation F1.

    Augmentation: the 8 exact rotations by 90 degrees and flips (boxes stay exact; a rotation by an
    arbitrary angle would loosen axis-aligned boxes). After each epoch the validation images are scored,
    the F1-best score threshold is found, and early stopping watches that F1. The checkpoint's metrics hold
    ``val_completeness``, ``val_purity``, ``val_f1`` and ``score_threshold`` (used by ``predict_boxes``).
    """
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    speed = Speed.resolve(device, config.amp, False, False)
    seed_everything(config.seed)
    t_start = time.perf_counter()
    images = data.image_list()
    train_idx, val_idx = _split(data, config.val_fraction, config.seed)
    model = create_detector(config.model, num_classes=config.num_classes, image_size=config.image_size).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    steps_per_epoch = max(1, math.ceil(len(train_idx) / config.batch_size))
    total = config.epochs * steps_per_epoch
    if config.max_steps:
        total = min(total, config.max_steps)
    warmup = int(total * config.warmup_fraction)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * min(1.0, (s - warmup) / max(1, total - warmup)))))
    rng = np.random.default_rng(config.seed)
    step, best, best_state, bad, history = 0, {"val_f1": -1.0}, None, 0, []
    epochs = tqdm(range(config.epochs), desc="detector epochs", disable=not config.progress)
    for epoch in epochs:
        model.train()
        order = rng.permutation(train_idx)
        losses = []
        for lo in range(0, len(order), config.batch_size):
            xs, targets = [], []
            for i in order[lo:lo + config.batch_size]:
                img = _to_tensor(images[i], device)
                b = torch.as_tensor(data.boxes[i], device=device)
                if config.augment:
                    img, b = dihedral_boxes(img, b, int(rng.integers(4)), bool(rng.integers(2)))
                xs.append(img)
                targets.append({"boxes": b, "labels": torch.as_tensor(data.labels[i], device=device)})
            with speed.autocast(device):
                loss_dict = model(xs, targets)
            loss = sum(v.float() for v in loss_dict.values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            sched.step()
            step += 1
            losses.append(float(loss.detach()))
            if config.max_steps and step >= config.max_steps:
                break
        record = {"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)) if losses else float("nan")}
        improved = True
        if len(val_idx):
            preds = _predict(model, [images[i] for i in val_idx], device, speed, batch_size=config.batch_size)
            thr, m = best_threshold(preds, [data.boxes[i] for i in val_idx], iou_threshold=config.iou_threshold)
            record.update(val_f1=m["f1"], val_completeness=m["completeness"], val_purity=m["purity"],
                          score_threshold=thr)
            improved = m["f1"] > best["val_f1"]
        history.append(record)
        if improved:
            best, best_state, bad = dict(record), state_dict_cpu(model), 0
        else:
            bad += 1
        epochs.set_postfix(loss=f"{record['train_loss']:.3f}", f1=f"{record.get('val_f1', float('nan')):.3f}")
        if callback is not None:
            callback(dict(record))
        if bad >= config.patience or (config.max_steps and step >= config.max_steps):
            break
    metrics = {k: v for k, v in best.items() if k not in ("epoch", "step")}
    metrics.update(best_epoch=best.get("epoch", -1), history=history, n_train=int(len(train_idx)),
                   n_val=int(len(val_idx)), seconds=time.perf_counter() - t_start,
                   iou_threshold=config.iou_threshold)
    metrics.setdefault("score_threshold", 0.5)
    ckpt = Checkpoint(kind="detector", model_name=config.model, model_args=dict(model.model_args),
                      state_dict=best_state if best_state is not None else state_dict_cpu(model),
                      config=config.to_dict(), metrics=metrics, step=step, epoch=len(history),
                      label_snapshot=data.snapshot_id)
    if out_dir is not None:
        ckpt.save(Path(out_dir) / "detector.pt")
    return ckpt


@torch.no_grad()
def _predict(model, images: Sequence[np.ndarray], device, speed: Speed, batch_size: int = 8) -> list[dict]:
    was = model.training
    model.eval()
    out = []
    for lo in range(0, len(images), batch_size):
        xs = [_to_tensor(im, device) for im in images[lo:lo + batch_size]]
        with speed.autocast(device):
            dets = model(xs)
        for d in dets:
            out.append({"boxes": d["boxes"].float().cpu().numpy(), "scores": d["scores"].float().cpu().numpy(),
                        "labels": d["labels"].cpu().numpy()})
    model.train(was)
    return out


def predict_boxes(detector, images, *, score_threshold: float | None = None, batch_size: int = 8, device=None,
                  amp: bool | None = None) -> list[dict[str, np.ndarray]]:
    """Detect clumps. Returns, per image, ``boxes`` float32 (m, 4) xyxy in that image's pixels,
    ``scores`` (m,) and ``labels`` (m,), best first.

    detector : a detector model, Checkpoint, or checkpoint path.
    images : uint8 array (n, H, W, 3), a list of (H, W, 3) arrays, or image paths.
    score_threshold : keep detections scoring at least this (default: the checkpoint's validated threshold,
        or 0.5 for a bare model).
    """
    if isinstance(detector, (str, os.PathLike)):
        detector = Checkpoint.load(detector)
    if isinstance(detector, Checkpoint):
        if detector.kind != "detector":
            raise ValueError(f"a {detector.kind} checkpoint cannot detect clumps")
        default_thr = float(detector.metrics.get("score_threshold", 0.5))
        detector = detector.build()
    else:
        default_thr = 0.5
    thr = default_thr if score_threshold is None else score_threshold
    device = resolve_device(device)
    speed = Speed.resolve(device, amp, False, False)
    detector = detector.to(device)
    if is_array(images) or (len(images) and isinstance(images[0], np.ndarray)):
        imgs = list(images)
    else:
        imgs = [load_native(p) for p in images]
    out = []
    for d in _predict(detector, imgs, device, speed, batch_size):
        keep = d["scores"] >= thr
        out.append({k: v[keep] for k, v in d.items()})
    return out


def write_boxes_csv(path, ids: Sequence[str], detections: Sequence[dict]) -> Path:
    """Detections as a table ``id_str, x1, y1, x2, y2, score, label`` (one row per box), written atomically."""
    rows = [(i, *map(float, b), float(s), int(lab)) for i, d in zip(ids, detections)
            for b, s, lab in zip(d["boxes"], d["scores"], d["labels"])]
    df = pd.DataFrame(rows, columns=["id_str", "x1", "y1", "x2", "y2", "score", "label"])
    return atomic_write_text(path, df.to_csv(index=False))
