"""Benchmark 1: the morphology model on 470 real GZ DECaLS galaxies, 5-fold cross-validation, on CPU.

    .venv/bin/python benchmarks/classifier_realdata_cv.py [--quick] [--models test_convnext_tree ...]
        [--pretrain-synthetic 4000]

For each model, each fold trains from scratch (no weights can be downloaded here) on the other four folds,
with early stopping on a validation split drawn from those training folds only (15 %, seeded); the test
fold is touched once, after training, to score. Folds are stratified by the ring label. Reported per model
(mean +- standard deviation over folds):

* ring accuracy (predicted ring fraction >= 0.5) and ROC AUC (ranking by the predicted ring fraction);
* vote-fraction RMSE over the three fraction columns, and the RMSE of predicting the training mean;
* the same after test-time averaging over the 8 dihedral views (``score(..., tta=True)``);
* a baseline with no CNN on the same folds: radial brightness profiles and logistic regression (ring only).

``--pretrain-synthetic N`` also runs every model fine-tuned from a checkpoint that first learnt the full GZ
DECaLS tree on N ``classifier.synthetic`` galaxies with simulated votes (trained once per model, before the
folds; the head is re-initialised for the ring tree, as when the platform fine-tunes a model onto a new
question), side by side with the same model from scratch: does what the model learns from synthetic galaxies
carry over to real ones? Nothing real is seen in pretraining, so the folds stay independent of it.

What it showed (2026-12-06, this project's 2-CPU machine; ``--models test_resnet_tree --pretrain-synthetic 4000
--threads 1`` and ``--models test_resnet_tree test_resnet_tree_128 --threads 1``, run at the same time, whose
from-scratch rows agree to the last digit): the ring label stays near 0.68 whatever was tried. Mean ± standard
deviation over the 5 folds:

| model                                   | accuracy      | ROC AUC       | fit s/fold |
|-----------------------------------------|---------------|---------------|------------|
| test_resnet_tree, 64 px, from scratch   | 0.679 ± 0.059 | 0.720 ± 0.037 |         44 |
| the same, pretrained on 4,000 synthetic | 0.674 ± 0.046 | 0.751 ± 0.031 |         35 |
| test_resnet_tree_128, from scratch      | 0.645 ± 0.077 | 0.748 ± 0.052 |        182 |

The differences are within the spread between folds (one fold gave 0.51-0.61 for every model). Pretraining
took 903 s and reached a validation loss of 35.4 on the synthetic tree; what it learnt there did not carry
over to rings, which the generator does not draw. So the ring set's label-efficiency curve is flat (see
``classifier_label_efficiency.py``) because the model's ceiling with all 376 labels is about 0.68, not
because of the resolution.

Nor, it seems, because of the CNN. The last row is a baseline that shares none of its machinery: each
galaxy's azimuthally averaged brightness profile (157 rotation-invariant numbers, :func:`radial_profiles`)
into a logistic regression (:func:`fit_logistic`). On the same folds it gets 0.681 ± 0.020 accuracy and
0.757 ± 0.034 AUC, the CNNs' figures. One-off probes on those folds (2026-12-06, 1 thread, scored with
test-time averaging; not kept as options), test_resnet_tree each time:

* the ring question alone, without the three 40-vote fraction questions whose loss outweighs the one-vote
  ring label: 0.647 / 0.743 (with them, in the same run: 0.694 / 0.743);
* a tighter centre crop (half the frame, so the galaxy fills more of the 64 px): 0.689 / 0.755;
* 150 epochs with no early stopping: 0.676 accuracy over the first 4 folds.

That two unrelated methods stop at the same place points to the labels and the 376 training galaxies (the
catalogue does not say how the ring label was made), not to the architecture, the loss or the resolution.

The tree and the pseudo-counts are described in ``classifier_common.py``. Predictions use 5 MC-dropout
samples (mean fraction). Results go to ``benchmarks/results/classifier_realdata_cv.json`` (or ``--out``).
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from classifier.scoring import score
from classifier.train import TrainConfig, fit
from classifier_common import (FRACTION_COLUMNS, RING_TREE, machine, ring_data, roc_auc, save, synthetic_data,
                               table)

CONFIGS = {
    # timm's 0.4 M-parameter test ResNet (batch norm): learns from a few hundred images in about a minute
    "test_resnet_tree": TrainConfig(model="test_resnet_tree", image_size=64, crop_fraction=0.75, batch_size=32,
                                    epochs=60, patience=12, lr=2e-3, weight_decay=0.05, val_fraction=0.15,
                                    dropout_rate=0.2, device="cpu", progress=False),
    # ResNet-18 (11 M parameters), one of the production backbones, at the same resolution
    "resnet18_tree": TrainConfig(model="resnet18_tree", image_size=64, crop_fraction=0.75, batch_size=32,
                                 epochs=40, patience=10, lr=1e-3, weight_decay=0.05, val_fraction=0.15,
                                 dropout_rate=0.2, device="cpu", progress=False),
    # timm's 0.2 M-parameter test ConvNeXt: on this set it stays at chance from scratch (layer scale starts
    # at 1e-6 and the data are few); kept for comparison, not run by default
    "test_convnext_tree": TrainConfig(model="test_convnext_tree", image_size=64, crop_fraction=0.75, batch_size=32,
                                      epochs=60, patience=12, lr=2e-3, weight_decay=0.05, val_fraction=0.15,
                                      dropout_rate=0.2, device="cpu", progress=False),
}
# the test ResNet at twice the resolution (a pixel is 2.5 of the 424 px cutout's, where 64 px gives 5): is a
# ring's faint outer structure lost at 64 px?
CONFIGS["test_resnet_tree_128"] = dataclasses.replace(CONFIGS["test_resnet_tree"], image_size=128)
DEFAULT_MODELS = ["test_resnet_tree", "resnet18_tree"]


def folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Stratified k folds of indices."""
    rng = np.random.default_rng(seed)
    out = [[] for _ in range(k)]
    for cls in np.unique(labels):
        idx = rng.permutation(np.where(labels == cls)[0])
        for i, j in enumerate(idx):
            out[i % k].append(j)
    return [np.sort(np.array(f)) for f in out]


def pretrain(cfg: TrainConfig, n: int, out_dir: Path, seed: int = 0) -> tuple[str, dict]:
    """Train ``cfg``'s model on ``n`` synthetic galaxies (the full GZ DECaLS tree, 40 simulated volunteers
    each, the generator's balanced mix, drawn at ``cfg.image_size`` with no crop) and return the best
    checkpoint's path and what the pretraining measured."""
    t0 = time.perf_counter()
    data, _, _ = synthetic_data(n, seed=10_000 + seed, size=cfg.image_size)
    ckpt = fit(dataclasses.replace(cfg, crop_fraction=1.0, seed=seed), data, out_dir=out_dir)
    info = {"galaxies": n, "seconds": time.perf_counter() - t0, "epochs": ckpt.metrics["epochs_run"],
            "val_loss": ckpt.metrics["val_loss"]}
    return str(ckpt.path), info


def evaluate_fold(fractions: np.ndarray, cat, test: np.ndarray, train: np.ndarray) -> dict:
    cols = list(RING_TREE.columns)
    ring_p = fractions[:, cols.index("ring_yes")]
    ring = cat["ring"].to_numpy()[test]
    pred = np.stack([fractions[:, cols.index(c)] for c in FRACTION_COLUMNS.values()], 1)
    true = cat[list(FRACTION_COLUMNS)].to_numpy()[test]
    base = cat[list(FRACTION_COLUMNS)].to_numpy()[train].mean(0)
    return {"accuracy": float(((ring_p >= 0.5) == ring).mean()), "auc": roc_auc(ring, ring_p),
            "rmse": float(np.sqrt(((pred - true) ** 2).mean())),
            "rmse_mean_baseline": float(np.sqrt(((base - true) ** 2).mean()))}


def radial_profiles(images: np.ndarray, n_bins: int = 32) -> np.ndarray:
    """Rotation-invariant features of ``images`` (n, s, s, 3) uint8, for a baseline with no CNN.

    A ring is a bump in a galaxy's azimuthally averaged brightness, and averaging over azimuth throws away
    the orientation, which carries no label (Dieleman et al. 2015). Per band, the log of the mean
    brightness in ``n_bins`` annuli of equal width out to the frame's inscribed circle (the corners are left
    out); then the first and second differences of the three bands' mean log profile, where a ring shows as
    a rise between two falls. Returns float (n, 3 n_bins + (n_bins - 1) + (n_bins - 2)).
    """
    s = images.shape[1]
    yy, xx = np.mgrid[:s, :s] - (s - 1) / 2          # centred on the frame's centre, so 90° turns map exactly
    annulus = np.minimum((np.hypot(yy, xx) / (s / 2) * n_bins).astype(int), n_bins).ravel()
    member = np.eye(n_bins + 1)[annulus][:, :n_bins]   # (s * s, n_bins) pixel-in-annulus; the corners in none
    x = images.reshape(len(images), s * s, 3).astype(np.float64) / 255.0
    # (n, n_bins, 3): each annulus's mean is one matrix product with the indicator, over its area
    log_profile = np.log(np.einsum("pk,npc->nkc", member, x) / member.sum(0)[None, :, None] + 1e-3)
    mean = log_profile.mean(-1)
    return np.concatenate([log_profile.transpose(0, 2, 1).reshape(len(images), -1),
                           np.diff(mean, 1, axis=1), np.diff(mean, 2, axis=1)], 1)


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float = 1.0):
    """L2-regularised logistic regression (standardised features, unpenalised intercept; the penalty is
    ``|w|^2 / 2c``, as scikit-learn's ``C``), fitted by L-BFGS. Returns ``predict(x) -> P(y = 1)``."""
    from scipy.optimize import minimize
    from scipy.special import expit

    mu, sd = x.mean(0), x.std(0) + 1e-12
    design = lambda v: np.c_[(v - mu) / sd, np.ones(len(v))]    # noqa: E731
    z = design(x)

    def loss(w):
        t = z @ w
        penalty = np.r_[w[:-1], 0.0]
        return (np.logaddexp(0, t).sum() - y @ t + penalty @ penalty / (2 * c),
                z.T @ (expit(t) - y) + penalty / c)
    w = minimize(loss, np.zeros(z.shape[1]), jac=True, method="L-BFGS-B").x
    return lambda v: expit(design(v) @ w)


def radial_baseline(data, cat, splits: list[np.ndarray], size: int = 128) -> tuple[dict, dict]:
    """The ring label from :func:`radial_profiles` of the whole frame at ``size`` px by
    :func:`fit_logistic` (``c`` fixed at 1, not tuned on the folds), on the CNNs' folds: does a method that
    shares none of the CNN's machinery find more in these labels? Returns (table row, per-fold results)."""
    x = radial_profiles(data.image_array(size, crop_fraction=1.0))
    ring = cat["ring"].to_numpy()
    acc, auc = [], []
    for test in splits:
        train = np.setdiff1d(np.arange(len(ring)), test)
        p = fit_logistic(x[train], ring[train].astype(float))(x[test])
        acc.append(float(((p >= 0.5) == ring[test]).mean()))
        auc.append(roc_auc(ring[test], p))
    print(f"  radial profile + logistic regression: acc {np.mean(acc):.3f} auc {np.mean(auc):.3f} "
          f"({x.shape[1]} features)", flush=True)
    row = {"model": "radial profile + logistic (no CNN)", "px": size,
           "accuracy": f"{np.mean(acc):.3f} ± {np.std(acc):.3f}", "auc": f"{np.mean(auc):.3f} ± {np.std(auc):.3f}"}
    return row, {"accuracy": acc, "auc": auc}


def cross_validate(label: str, cfg: TrainConfig, init: str, pretraining: dict | None, data, cat,
                   splits: list[np.ndarray], raw: dict, out_name: str) -> dict:
    """Train and score ``cfg`` (fine-tuned from ``init`` when given) on every fold, recording each fold in
    ``raw[label]`` (saved as it goes) and returning the table row of means and standard deviations."""
    images = data.image_array(cfg.image_size, crop_fraction=cfg.crop_fraction)
    per_fold = []
    for k, test in enumerate(splits):
        train = np.setdiff1d(np.arange(len(data)), test)
        t0 = time.perf_counter()
        ckpt = fit(dataclasses.replace(cfg, init_checkpoint=init), data.subset(train))
        t_fit = time.perf_counter() - t0
        result = {"fold": k, "fit_s": t_fit, "epochs": ckpt.metrics["epochs_run"],
                  "best_epoch": ckpt.metrics["best_epoch"], "inner_val_loss": ckpt.metrics["val_loss"]}
        for tta in (False, True):
            torch.manual_seed(k)
            s = score(ckpt, images[test], data.ids[test], n_samples=5, acquisition=None, tta=tta,
                      anomaly=False, embeddings=False, device="cpu", batch_size=128)
            m = evaluate_fold(s.fractions, cat, test, train)
            result.update({(f"{key}_tta" if tta else key): v for key, v in m.items()})
        per_fold.append(result)
        raw[label] = {"config": cfg.to_dict(), "pretraining": pretraining, "folds": per_fold}
        save(out_name, {"results": raw, "complete": False})      # partial results survive a killed run
        print(f"  {label} fold {k}: acc {result['accuracy']:.3f} auc {result['auc']:.3f} "
              f"rmse {result['rmse']:.3f} (mean-baseline {result['rmse_mean_baseline']:.3f}) | "
              f"tta acc {result['accuracy_tta']:.3f} auc {result['auc_tta']:.3f} rmse {result['rmse_tta']:.3f} | "
              f"{result['epochs']} epochs, {t_fit:.0f} s", flush=True)
    row = {"model": label, "px": cfg.image_size}
    for key in ("accuracy", "auc", "rmse", "rmse_mean_baseline", "accuracy_tta", "auc_tta", "rmse_tta"):
        v = np.array([f[key] for f in per_fold])
        row[key] = f"{v.mean():.3f} ± {v.std():.3f}"
    row["fit s/fold"] = f"{np.mean([f['fit_s'] for f in per_fold]):.0f}"
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, choices=list(CONFIGS))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 folds, 10 epochs, first model only")
    ap.add_argument("--pretrain-synthetic", type=int, default=0, metavar="N",
                    help="also run every model fine-tuned from one pretrained on N synthetic galaxies (full tree)")
    ap.add_argument("--out", default="", help="results file name in benchmarks/results, without .json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = args.models[:1] if args.quick else args.models
    data, cat = ring_data()
    print(f"# {machine()}")
    print(f"# {len(data)} real DECaLS galaxies, ring 1/0 = {int(cat['ring'].sum())}/{int((1 - cat['ring']).sum())}, "
          f"{args.folds}-fold CV (stratified, seed {args.seed})")
    splits = folds(cat["ring"].to_numpy(), args.folds, args.seed)
    if args.quick:
        splits = splits[:2]
    rows, raw = [], {}
    out_name = args.out or "classifier_realdata_cv" + ("_quick" if args.quick else "")
    baseline, raw["radial_baseline"] = radial_baseline(data, cat, splits)
    with tempfile.TemporaryDirectory() as tmp:
        runs = []                           # (label, config, checkpoint to fine-tune from or "", pretraining)
        for name in models:
            cfg = CONFIGS[name]
            if args.quick:
                cfg = dataclasses.replace(cfg, epochs=10)
            runs.append((name, cfg, "", None))
            if args.pretrain_synthetic:
                path, info = pretrain(cfg, args.pretrain_synthetic, Path(tmp) / name, args.seed)
                print(f"  {name}: pretrained on {info['galaxies']} synthetic galaxies in {info['seconds']:.0f} s "
                      f"({info['epochs']} epochs, validation loss {info['val_loss']:.3f})", flush=True)
                runs.append((f"{name}+synthetic", cfg, path, info))
        for label, cfg, init, pretraining in runs:
            rows.append(cross_validate(label, cfg, init, pretraining, data, cat, splits, raw, out_name))
    rows.append(baseline)
    print()
    print(table(rows, ["model", "px", "accuracy", "auc", "rmse", "rmse_mean_baseline", "accuracy_tta", "auc_tta",
                       "rmse_tta", "fit s/fold"]))
    print(f"\nwritten {save(out_name, {'results': raw, 'complete': True})}")


if __name__ == "__main__":
    main()
