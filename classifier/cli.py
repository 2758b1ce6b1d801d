"""Command line: ``python -m classifier {train, score, detect train, detect predict, models}``.

File formats are fixed because other tools read them:

* CAT.csv: ``id_str``, ``file_loc`` (relative to ``--images``) and, for training, one ``<question>_<answer>``
  raw vote-count column per answer of the tree.
* TREE.json: ``{"questions": [{"name": ..., "answers": [...]}, ...]}``; answers are names or objects with
  ``name`` and ``next`` (the workflow's tree JSON).
* SCORES.csv: ``id_str``, one ``<question>_<answer>_fraction`` column per answer (mean over MC samples),
  ``acquisition``.
* BOXES.csv: ``id_str, x1, y1, x2, y2[, label]`` in image pixels (predictions add ``score``).

Each command prints one JSON line to stdout describing what it wrote (paths and headline metrics).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _print(obj) -> None:
    print(json.dumps(obj, default=str))


def _train(args) -> int:
    from .data import GalaxyData
    from .questions import as_tree
    from .train import TrainConfig, fit

    overrides = {k: v for k, v in {
        "device": args.device, "epochs": args.epochs, "batch_size": args.batch_size,
        "image_size": args.image_size, "model": args.model, "seed": args.seed, "num_workers": args.workers,
        "init_checkpoint": args.init_checkpoint, "max_steps": args.max_steps}.items() if v is not None}
    config = TrainConfig.preset(args.config, progress=not args.quiet, **overrides)
    val_ids = None
    if args.val_ids:
        val_ids = [line.strip() for line in Path(args.val_ids).read_text().splitlines() if line.strip()]
    data = GalaxyData.from_catalog(args.catalog, args.images, as_tree(args.questions), val_ids=val_ids,
                                   snapshot_id=args.snapshot_id or "")
    ckpt = fit(config, data, out_dir=args.out, resume=not args.no_resume)
    _print({"checkpoint": str(ckpt.path), "val_loss": ckpt.metrics.get("val_loss"),
            "val_fraction_rmse": ckpt.metrics.get("val_fraction_rmse"), "best_epoch": ckpt.metrics.get("best_epoch"),
            "n_train": ckpt.metrics.get("n_train"), "n_val": ckpt.metrics.get("n_val")})
    return 0


def _score(args) -> int:
    import numpy as np

    from .checkpoint import atomic_write_bytes
    from .data import read_catalog, resolve_paths
    from .scoring import score

    df = read_catalog(args.catalog, require_votes=False)
    paths = resolve_paths(df["file_loc"].tolist(), args.images)
    acquisition = None if args.acquisition == "none" else args.acquisition
    result = score(args.checkpoint, paths, df["id_str"].tolist(), n_samples=args.samples, acquisition=acquisition,
                   tta=args.tta, batch_size=args.batch_size, device=args.device, num_workers=args.workers,
                   anomaly=args.embeddings is not None, embeddings=args.embeddings is not None,
                   progress=not args.quiet)
    result.write_csv(args.out)
    out = {"scores": str(args.out), "n": len(result.ids), "acquisition": result.acquisition_name}
    if args.embeddings:
        atomic_write_bytes(args.embeddings, lambda f: np.savez(f, ids=result.ids, embeddings=result.embeddings,
                                                               anomaly=result.anomaly))
        out["embeddings"] = str(args.embeddings)
    _print(out)
    return 0


def _detect_train(args) -> int:
    from .detection import DetectionData, DetectorConfig, fit_detector

    overrides = {k: v for k, v in {"device": args.device, "epochs": args.epochs, "model": args.model,
                                   "image_size": args.image_size, "num_classes": args.num_classes,
                                   "seed": args.seed}.items() if v is not None}
    config = DetectorConfig.preset(args.config, progress=not args.quiet, **overrides)
    data = DetectionData.from_csv(args.catalog, args.boxes, args.images, snapshot_id=args.snapshot_id or "")
    ckpt = fit_detector(config, data, out_dir=args.out)
    m = ckpt.metrics
    _print({"checkpoint": str(ckpt.path), "val_completeness": m.get("val_completeness"),
            "val_purity": m.get("val_purity"), "val_f1": m.get("val_f1"), "score_threshold": m.get("score_threshold")})
    return 0


def _detect_predict(args) -> int:
    from .data import read_catalog, resolve_paths
    from .detection import predict_boxes, write_boxes_csv

    df = read_catalog(args.catalog, require_votes=False)
    paths = resolve_paths(df["file_loc"].tolist(), args.images)
    dets = predict_boxes(args.checkpoint, paths, score_threshold=args.threshold, device=args.device)
    write_boxes_csv(args.out, df["id_str"].tolist(), dets)
    _print({"boxes": str(args.out), "n_images": len(dets), "n_boxes": int(sum(len(d["boxes"]) for d in dets))})
    return 0


def _models(args) -> int:
    from .acquisition import list_acquisitions
    from .detection import list_detectors
    from .models import list_models
    _print({"models": list_models(), "detectors": list_detectors(), "acquisitions": list_acquisitions()})
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m classifier", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train the morphology model on vote counts")
    t.add_argument("--catalog", required=True, help="CAT.csv: id_str, file_loc, <question>_<answer> counts")
    t.add_argument("--images", required=True, help="folder that file_loc is relative to")
    t.add_argument("--questions", required=True, help="TREE.json (or a built-in tree: gz_decals, gz2)")
    t.add_argument("--out", required=True, help="output folder for best.pt, last.pt and metrics JSON")
    t.add_argument("--config", default="small", choices=["tiny", "small", "base"])
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None, help="default: $TORCH_DEVICE or auto")
    t.add_argument("--model", default=None, help="registered model name (overrides the config's)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--max-steps", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--image-size", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--workers", type=int, default=None, help="data loader worker processes")
    t.add_argument("--init-checkpoint", default=None, help="start from a checkpoint the platform trained")
    t.add_argument("--val-ids", default=None, help="text file of validation id_str values, one a line")
    t.add_argument("--snapshot-id", default=None, help="label snapshot id to record in the checkpoint")
    t.add_argument("--no-resume", action="store_true", help="start afresh even if --out holds last.pt")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=_train)

    s = sub.add_parser("score", help="predict vote fractions and acquisition scores with MC dropout")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--catalog", required=True, help="CAT.csv: id_str, file_loc")
    s.add_argument("--images", required=True)
    s.add_argument("--out", required=True, help="SCORES.csv")
    s.add_argument("--acquisition", default="bald",
                   help="bald, bald-balanced (every question its share of the top), entropy, margin, random or none")
    s.add_argument("--samples", type=int, default=5, help="MC-dropout samples per galaxy")
    s.add_argument("--tta", action="store_true", help="average over the 8 dihedral views")
    s.add_argument("--batch-size", type=int, default=256)
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    s.add_argument("--workers", type=int, default=None,
                   help="image-decoding worker processes (default: up to 8 on CUDA, 0 on CPU)")
    s.add_argument("--embeddings", default=None, help="also write ids, embeddings and anomaly scores (.npz)")
    s.add_argument("--quiet", action="store_true")
    s.set_defaults(func=_score)

    d = sub.add_parser("detect", help="clump detector")
    dsub = d.add_subparsers(dest="detect_command", required=True)
    dt = dsub.add_parser("train", help="train on boxes")
    dt.add_argument("--catalog", required=True, help="CAT.csv: id_str, file_loc")
    dt.add_argument("--boxes", required=True, help="BOXES.csv: id_str, x1, y1, x2, y2[, label]")
    dt.add_argument("--images", required=True)
    dt.add_argument("--out", required=True, help="output folder for detector.pt and its metrics JSON")
    dt.add_argument("--config", default="small", choices=["tiny", "small", "base"])
    dt.add_argument("--model", default=None)
    dt.add_argument("--epochs", type=int, default=None)
    dt.add_argument("--image-size", type=int, default=None)
    dt.add_argument("--num-classes", type=int, default=None, help="including background")
    dt.add_argument("--seed", type=int, default=None)
    dt.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    dt.add_argument("--snapshot-id", default=None)
    dt.add_argument("--quiet", action="store_true")
    dt.set_defaults(func=_detect_train)
    dp = dsub.add_parser("predict", help="detect clumps")
    dp.add_argument("--checkpoint", required=True)
    dp.add_argument("--catalog", required=True)
    dp.add_argument("--images", required=True)
    dp.add_argument("--out", required=True, help="BOXES.csv with id_str, x1, y1, x2, y2, score, label")
    dp.add_argument("--threshold", type=float, default=None, help="default: the validated threshold")
    dp.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None)
    dp.set_defaults(func=_detect_predict)

    m = sub.add_parser("models", help="list registered models, detectors and acquisition functions")
    m.set_defaults(func=_models)
    return p


def main(argv: list[str] | None = None) -> int:
    from .devices import configure_threads

    args = build_parser().parse_args(argv)
    configure_threads()          # $TORCH_NUM_THREADS, for workers that share a machine
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
