"""classifier: Zoobot-style galaxy morphology models, a clump detector and active-learning acquisition.

A pure torch/timm library (no Django): it takes arrays and files and returns arrays, dataclasses and
checkpoints. The public API, imported lazily so that ``import classifier`` stays cheap (torch and timm
load on first use):

Morphology
    create_model(name, *, tree, checkpoint_path)  -> TreeModel           (registry: list_models())
    TrainConfig.preset("tiny"|"small"|"base", **overrides), GalaxyData(ids, images, votes, tree, val_ids)
    fit(config, data, *, out_dir, resume, callback) -> Checkpoint     (metrics["val_loss"]: lower is better)
    score(model|checkpoint|path, images, ids, *, n_samples, acquisition, tta) -> Scores
    score_chunks(..., chunk_size) -> Scores of consecutive chunks, through one loader
    similar(query, embeddings, k), knn_anomaly(embeddings, reference)
Acquisition
    create_acquisition("bald"|"bald-balanced"|"entropy"|"margin"|"random") -> fn;
    fn(concentrations, tree) -> (B,) scores;
    fn.select(ids, scores, k, embeddings) -> k ids
Clumps
    create_detector(name, ...), DetectorConfig, DetectionData, fit_detector(config, data) -> Checkpoint,
    predict_boxes(detector|checkpoint|path, images) -> [{"boxes", "scores", "labels"}], completeness_purity
Checkpoints
    Checkpoint.load(path) -> Checkpoint (.build() -> model, .metrics, .config, .label_snapshot)
Losses
    TreeLoss(tree), dirichlet_multinomial_log_prob
Devices
    resolve_device() (``$TORCH_DEVICE``: auto|cpu|cuda)
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "create_model": "models", "list_models": "models", "register_model": "models", "TreeModel": "models",
    "TrainConfig": "train", "fit": "train", "evaluate": "train",
    "GalaxyData": "data", "load_images": "data", "read_catalog": "data",
    "score": "scoring", "score_chunks": "scoring", "Scores": "scoring", "similar": "scoring", "knn_anomaly": "scoring",
    "create_acquisition": "acquisition", "list_acquisitions": "acquisition", "Acquisition": "acquisition",
    "select_top_k": "acquisition",
    "create_detector": "detection", "list_detectors": "detection", "DetectorConfig": "detection",
    "DetectionData": "detection", "fit_detector": "detection", "predict_boxes": "detection",
    "completeness_purity": "detection",
    "Checkpoint": "checkpoint",
    "TreeLoss": "losses", "dirichlet_multinomial_log_prob": "losses",
    "AugmentConfig": "augment",
    "resolve_device": "devices",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'classifier' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
