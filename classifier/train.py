"""Training the morphology model: ``fit(config, data) -> Checkpoint``, in the manner of nanoGPT's train.py.

One frozen config, one loop, small pure helpers. What happens, in order:

1. seed everything; split off the validation set (the caller's fixed ``val_ids``, else a seeded fraction);
2. decode the images once to uint8 at ``config.image_size``;
3. build the model (from scratch, or from a checkpoint the platform trained before) and the tuned path
   (bf16 autocast, channels_last, ``torch.compile``: on by default on CUDA, off on CPU);
4. AdamW with linear warm-up then cosine decay; each batch goes to the device as uint8 and is augmented
   there (rotations by any angle, flips, mild zoom and brightness; :mod:`classifier.augment`);
5. after each epoch: the validation loss (Dirichlet-multinomial NLL summed over questions, mean over
   galaxies, dropout off) decides early stopping; ``best.pt`` and the resumable ``last.pt`` are written
   atomically. A killed job started again with the same ``out_dir`` resumes from ``last.pt``.

The promotion metric is ``metrics["val_loss"]`` (lower is better). It compares two models only when both
were measured on the same validation galaxies and votes: ``metrics["val_ids_sha1"]`` identifies the set.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .augment import AugmentConfig, augment_batch
from .checkpoint import Checkpoint, state_dict_cpu
from .data import ArrayBatches, GalaxyData, batch_loader
from .devices import Speed, resolve_device, seed_everything, to_device_images
from .losses import TreeLoss
from .models import create_model
from .questions import as_tree


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run. Frozen: a run is described by exactly one of these.

    amp, channels_last, compile : None = on where it pays (CUDA), or force True/False.
    max_steps : stop after this many optimizer steps (0 = only ``epochs`` limits the run).
    patience : early stopping after this many epochs without a better validation loss.
    min_delta : a validation loss is better only if it is lower than the best so far by more than this
        fraction of it; differences in the last digits (with nothing learnt, the loss of a tiny model moved
        by 5e-7 of itself from epoch to epoch) must not reset the patience or replace the best weights.
    init_checkpoint : start from the weights of a morphology checkpoint (same backbone); its head is kept
        when the tree is the same, else re-initialised.
    """

    model: str = "convnext_nano_tree"
    image_size: int = 224
    crop_fraction: float = 1.0
    batch_size: int = 128
    epochs: int = 100
    max_steps: int = 0
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    dropout_rate: float = 0.2
    drop_path_rate: float = 0.0
    patience: int = 8
    min_delta: float = 1e-4
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    compile: bool | None = None
    num_workers: int = 0
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    init_checkpoint: str = ""
    progress: bool = True

    @classmethod
    def preset(cls, name: str, **overrides) -> "TrainConfig":
        """A named preset (``tiny``, ``small``, ``base``) with ``overrides`` applied."""
        if name not in PRESETS:
            raise KeyError(f"unknown config {name!r}; known configs: {', '.join(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        if isinstance(d.get("augment"), dict):
            aug = dict(d["augment"])
            aug["scale"] = tuple(aug.get("scale", (1.0, 1.0)))
            d["augment"] = AugmentConfig(**aug)
        return cls(**d)


PRESETS: dict[str, TrainConfig] = {
    # seconds on a laptop CPU: for tests and smoke runs
    "tiny": TrainConfig(model="test_convnext_tree", image_size=32, batch_size=16, epochs=3, lr=3e-3,
                        patience=3, warmup_fraction=0.0),
    # minutes on CPU, a quick GPU model
    "small": TrainConfig(model="convnext_atto_tree", image_size=128, batch_size=64, epochs=40, patience=6),
    # the production model: Zoobot-like resolution and schedule
    "base": TrainConfig(model="convnext_nano_tree", image_size=224, batch_size=128, epochs=100, patience=8),
}

# Fields that may change between a killed run and its resumption without changing the result.
_RESUME_FREE = {"progress", "num_workers", "device"}


def split_indices(data: GalaxyData, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: the fixed ``data.val_ids`` if given, else a seeded random fraction."""
    n = len(data)
    if data.val_ids is not None:
        pos = {s: i for i, s in enumerate(data.ids)}
        missing = [v for v in data.val_ids if v not in pos]
        if missing:
            raise ValueError(f"{len(missing)} validation id(s) are not in the data, e.g. {missing[:3]}")
        val = np.array(sorted(pos[v] for v in data.val_ids), dtype=int)
    else:
        n_val = int(round(n * val_fraction)) if val_fraction > 0 else 0
        val = np.sort(np.random.default_rng(seed).permutation(n)[:n_val]) if n_val else np.array([], dtype=int)
    train = np.setdiff1d(np.arange(n), val)
    labelled = np.nansum(data.votes[train], axis=1) > 0   # a galaxy with no votes teaches nothing
    return train[labelled], val


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases and normalisation scales (1-d tensors), as in nanoGPT and timm."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = int(total_steps * warmup_fraction)

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: np.ndarray, votes: np.ndarray, indices: np.ndarray, *,
             batch_size: int = 256, device: torch.device | None = None, speed: Speed | None = None) -> dict[str, Any]:
    """Validation metrics of ``model`` (dropout off) on ``images[indices]`` with ``votes[indices]``.

    Returns ``val_loss`` (mean over galaxies of the NLL summed over questions), ``val_loss_per_question``
    (mean over galaxies that answered it) and ``val_fraction_rmse`` (predicted vs observed vote fraction
    over every answer of every answered question).
    """
    device = device or next(model.parameters()).device
    speed = speed or Speed(False, False, False)
    base = getattr(model, "_orig_mod", model)
    loss_fn, layout = TreeLoss(base.tree), base.layout
    was_training = base.training
    model.eval()
    per_q, sq_err, n_sq = [], 0.0, 0
    for x, y in batch_loader(ArrayBatches(images, votes), indices, batch_size):
        x = to_device_images(x, device, speed.channels_last)
        y = y.to(device)
        with speed.autocast(device):
            conc = model(x)
        conc = conc.float()
        per_q.append(loss_fn.per_question(conc, y).cpu())
        counts = torch.nan_to_num(y, nan=0.0)
        n_q = layout.question_sums(counts)[:, layout.answer_question.to(device)]
        answered = n_q > 0
        observed = counts / n_q.clamp_min(1e-9)
        err = (layout.fractions(conc) - observed)[answered]
        sq_err += float((err ** 2).sum())
        n_sq += int(answered.sum())
    model.train(was_training)
    per_q = torch.cat(per_q) if per_q else torch.zeros(0, layout.n_questions)
    counts_all = np.nan_to_num(votes[indices])
    answered_q = layout.question_sums(torch.from_numpy(counts_all)) > 0
    per_question = {q.name: float(per_q[answered_q[:, i], i].mean()) if answered_q[:, i].any() else float("nan")
                    for i, q in enumerate(layout.tree.questions)}
    return {"val_loss": float(per_q.sum(1).mean()) if len(per_q) else float("nan"),
            "val_loss_per_question": per_question,
            "val_fraction_rmse": math.sqrt(sq_err / n_sq) if n_sq else float("nan")}


def constant_baseline_rmse(tree, votes: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray) -> float:
    """``val_fraction_rmse`` (as :func:`evaluate` measures it) of the constant predictor that answers every
    galaxy with the training galaxies' mean vote fractions: the floor a model must beat to have learned
    anything from the images (a collapsed model that predicts a rare answer everywhere does worse)."""
    tree = as_tree(tree)
    counts = np.nan_to_num(np.asarray(votes, dtype=np.float64))
    sq_err, n_sq = 0.0, 0
    for q in tree.questions:
        sl = tree.question_slices[q.name]
        c_train, c_val = counts[train_idx, sl], counts[val_idx, sl]
        n_train, n_val = c_train.sum(1), c_val.sum(1)
        if not (n_val > 0).any():
            continue
        answered = n_train > 0
        k = sl.stop - sl.start
        mean = (c_train[answered] / n_train[answered, None]).mean(0) if answered.any() else np.full(k, 1.0 / k)
        observed = c_val[n_val > 0] / n_val[n_val > 0, None]
        sq_err += float(((observed - mean) ** 2).sum())
        n_sq += observed.size
    return math.sqrt(sq_err / n_sq) if n_sq else float("nan")


def _ids_sha1(ids: np.ndarray) -> str:
    return hashlib.sha1("\n".join(sorted(map(str, ids))).encode()).hexdigest()


def fit(config: TrainConfig, data: GalaxyData, *, out_dir: str | Path | None = None, resume: bool = True,
        callback: Callable[[dict], None] | None = None) -> Checkpoint:
    """Train a morphology model on ``data`` and return the checkpoint with the best validation loss.

    out_dir : where ``best.pt``, ``last.pt`` and their ``.metrics.json`` go (None: keep in memory only).
    resume : continue from ``out_dir/last.pt`` when present (its config must match; device, progress and
        workers may differ).
    callback : called after every epoch with that epoch's record (epoch, step, train_loss, val_loss, ...);
        a Celery task can report progress from it.
    """
    from tqdm.auto import tqdm

    device = resolve_device(config.device)
    speed = Speed.resolve(device, config.amp, config.channels_last, config.compile)
    seed_everything(config.seed)
    t_start = time.perf_counter()

    images = data.image_array(config.image_size, crop_fraction=config.crop_fraction, progress=config.progress)
    votes = data.votes
    train_idx, val_idx = split_indices(data, config.val_fraction, config.seed)
    if len(train_idx) == 0:
        raise ValueError("no training galaxy has any vote")

    model = create_model(config.model, tree=data.tree, dropout_rate=config.dropout_rate,
                         drop_path_rate=config.drop_path_rate,
                         checkpoint_path=config.init_checkpoint or None).to(device)
    net = speed.prepare(model)
    loss_fn = TreeLoss(data.tree)
    # fused: one kernel for the whole update instead of ~10 per tensor (CUDA and CPU alike)
    opt = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr, fused=True)
    drop_last = len(train_idx) >= config.batch_size
    steps_per_epoch = len(train_idx) // config.batch_size if drop_last else 1
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(total_steps, config.warmup_fraction))
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator(device=device).manual_seed(config.seed + 1)

    out = Path(out_dir) if out_dir is not None else None
    state = {"epoch": 0, "step": 0, "best_val": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": []}
    best_state = None
    if out is not None and resume and (out / "last.pt").exists():
        last = Checkpoint.load(out / "last.pt")
        theirs = {k: v for k, v in last.config.items() if k not in _RESUME_FREE}
        ours = {k: v for k, v in json.loads(json.dumps(config.to_dict())).items() if k not in _RESUME_FREE}
        if json.loads(json.dumps(theirs)) != ours:
            raise ValueError(f"{out / 'last.pt'} was trained with another config; use another out_dir or resume=False")
        model.load_state_dict(last.state_dict)
        ts = last.train_state
        opt.load_state_dict(ts["optimizer"])
        sched.load_state_dict(ts["scheduler"])
        torch.set_rng_state(ts["rng_torch"])
        shuffle_gen.set_state(ts["rng_shuffle"])
        aug_gen.set_state(ts["rng_augment"])
        state = dict(ts["loop"])
        if (out / "best.pt").exists():
            best_state = Checkpoint.load(out / "best.pt").state_dict

    def checkpoint(weights, metrics, train_state=None) -> Checkpoint:
        return Checkpoint(kind="morphology", model_name=config.model, model_args=dict(model.model_args),
                          state_dict=weights, config=config.to_dict(), metrics=metrics, step=state["step"],
                          epoch=state["epoch"], label_snapshot=data.snapshot_id, train_state=train_state)

    common = {"n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
              "val_ids_sha1": _ids_sha1(data.ids[val_idx]), "columns": list(data.tree.columns),
              "device": str(device), "speed": dataclasses.asdict(speed)}
    n_seen, t_train = 0, 0.0
    epochs = tqdm(range(state["epoch"], config.epochs), desc="epochs", disable=not config.progress,
                  initial=state["epoch"], total=config.epochs)
    stopped = state["bad_epochs"] >= config.patience or (config.max_steps and state["step"] >= config.max_steps)
    for epoch in epochs:
        if stopped:
            break
        model.train()
        loader = batch_loader(ArrayBatches(images, votes), train_idx, config.batch_size, shuffle=True,
                              generator=shuffle_gen, drop_last=drop_last, num_workers=config.num_workers,
                              pin_memory=device.type == "cuda")
        t0, losses = time.perf_counter(), []
        for x, y in tqdm(loader, desc=f"epoch {epoch}", leave=False, disable=not config.progress):
            x = to_device_images(x, device, speed.channels_last)
            y = y.to(device, non_blocking=True)
            if config.augment is not None:
                x = augment_batch(x, config.augment, aug_gen)
            with speed.autocast(device):
                conc = net(x)
            loss = loss_fn(conc.float(), y).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            sched.step()
            state["step"] += 1
            n_seen += x.shape[0]
            losses.append(loss.detach())
            if config.max_steps and state["step"] >= config.max_steps:
                break
        t_train += time.perf_counter() - t0
        record = {"epoch": epoch, "step": state["step"], "lr": sched.get_last_lr()[0],
                  "train_loss": float(torch.stack(losses).mean()) if losses else float("nan")}
        if len(val_idx):
            val = evaluate(net, images, votes, val_idx, batch_size=config.batch_size, device=device, speed=speed)
            record["val_loss"] = val["val_loss"]
            best = state["best_val"]
            improved = not math.isfinite(best) or val["val_loss"] < best - config.min_delta * abs(best)
        else:
            val, improved = {}, True
        state["epoch"] = epoch + 1
        if improved:
            state.update(best_val=record.get("val_loss", math.inf), best_epoch=epoch, bad_epochs=0, best_metrics=val)
            best_state = state_dict_cpu(model)
        else:
            state["bad_epochs"] += 1
        state["history"] = state["history"] + [record]
        epochs.set_postfix(train=f"{record['train_loss']:.3f}", val=f"{record.get('val_loss', float('nan')):.3f}")
        stopped = state["bad_epochs"] >= config.patience or bool(config.max_steps and state["step"] >= config.max_steps)
        if out is not None:
            metrics = {**common, **state.get("best_metrics", {}), "best_epoch": state["best_epoch"],
                       "history": state["history"]}
            if improved:
                checkpoint(best_state, metrics).save(out / "best.pt")
            train_state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "rng_torch": torch.get_rng_state(), "rng_shuffle": shuffle_gen.get_state(),
                           "rng_augment": aug_gen.get_state(), "loop": state}
            checkpoint(state_dict_cpu(model), {**metrics, "last_epoch": epoch}, train_state).save(out / "last.pt")
        if callback is not None:
            callback(dict(record))

    metrics = {**common, **state.get("best_metrics", {}), "best_epoch": state["best_epoch"],
               "epochs_run": state["epoch"], "history": state["history"],
               "train_images_per_s": n_seen / t_train if t_train else float("nan"),
               "seconds": time.perf_counter() - t_start}
    if not len(val_idx):
        metrics["val_loss"] = float("nan")
    final = checkpoint(best_state if best_state is not None else state_dict_cpu(model), metrics)
    if out is not None:
        final.save(out / "best.pt")
    return final
