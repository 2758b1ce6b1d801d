"""Scoring galaxies with a trained model: MC-dropout vote fractions, acquisition scores, embeddings,
anomaly scores, and "more galaxies like this one".

``score`` streams images (an array, or paths decoded by loader workers) through the backbone once per
batch, runs the dropout head S times on the embedding (exact MC dropout for these models, see
:meth:`TreeModel.sample`), and computes the acquisition score on the device, so memory stays O(n A) and
the GPU does all the arithmetic. Dropout stays on at scoring time on purpose: the spread of the S samples
is the model's uncertainty (Gal & Ghahramani 2016; Walmsley et al. 2020).

Embeddings are the pooled backbone features, the representation that Walmsley et al. (2022, "Practical
galaxy morphology tools from deep supervised representation learning") showed to support similarity
search and anomaly finding; they are L2-normalised here so that cosine similarity is a dot product.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .acquisition import Acquisition, create_acquisition, select_top_k
from .augment import dihedral_views
from .checkpoint import Checkpoint, atomic_write_text
from .data import ImageInput, image_batches, is_array
from .devices import Speed, resolve_device, to_device_images, usable_cores
from .models import TreeModel


@dataclass
class Scores:
    """What :func:`score` returns, one row per galaxy, in input order (or one chunk of them, from
    :func:`score_chunks`).

    ids : str (n,)
    columns : the tree's answer columns (A,)
    fractions : float32 (n, A), predicted vote fraction per answer, mean over the MC samples
    acquisition : float32 (n,) or None; higher = more informative (``acquisition_name`` says which)
    acquisition_parts : float32 (n, P) or None; for a pool-relative acquisition (``bald-balanced``), the
        per-galaxy parts its score combines over the pool, so that a caller scoring a pool in chunks can
        combine them over the whole pool (:meth:`Acquisition.combine`)
    embeddings : float32 (n, D), L2-normalised pooled features (mean over views with ``tta``), or None
    anomaly : float32 (n,) or None; mean cosine distance to the k nearest reference embeddings
    concentrations : float32 (S, n, A) or None; the raw MC samples when ``keep_samples`` was asked
    """

    ids: np.ndarray
    columns: tuple[str, ...]
    fractions: np.ndarray
    acquisition: np.ndarray | None = None
    acquisition_name: str = ""
    acquisition_parts: np.ndarray | None = None
    embeddings: np.ndarray | None = None
    anomaly: np.ndarray | None = None
    concentrations: np.ndarray | None = None

    def to_frame(self) -> pd.DataFrame:
        """The SCORES.csv table: ``id_str``, ``<question>_<answer>_fraction`` per answer, ``acquisition``."""
        df = pd.DataFrame(self.fractions, columns=[f"{c}_fraction" for c in self.columns])
        df.insert(0, "id_str", self.ids)
        df["acquisition"] = self.acquisition if self.acquisition is not None else np.nan
        return df

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_frame` atomically (a reader never sees half a file)."""
        return atomic_write_text(path, self.to_frame().to_csv(index=False))

    def select(self, k: int, *, diverse: bool = True, pool_factor: int = 4, seed: int = 0) -> np.ndarray:
        """The k ids with the highest acquisition scores, spread out in embedding space if ``diverse``."""
        if self.acquisition is None:
            raise ValueError(f"these scores hold only the parts of the pool-relative {self.acquisition_name!r}: "
                             "combine them over the pool first" if self.acquisition_parts is not None
                             else "these scores were computed without an acquisition function")
        emb = self.embeddings if diverse else None
        return select_top_k(self.ids, self.acquisition, k, emb, pool_factor=pool_factor, seed=seed)


def _as_model(model) -> tuple[TreeModel, dict]:
    """A model and its training config from a model, a Checkpoint or a checkpoint path."""
    if isinstance(model, (str, os.PathLike)):
        model = Checkpoint.load(model)
    if isinstance(model, Checkpoint):
        if model.kind != "morphology":
            raise ValueError(f"a {model.kind} checkpoint cannot score morphology")
        return model.build(), dict(model.config)
    return model, {}


def default_workers(device: torch.device, images: ImageInput, batch_size: int) -> int:
    """Image-decoding processes for scoring: for paths on CUDA, every usable core but one (the main process
    feeds the GPU), at most 32 and at most one per batch; 0 for arrays or on the CPU, where the model needs
    the cores.

    Decoding is what limits scoring on a GPU. One core decodes and resizes 310-395 real 424 px DECaLS JPEGs
    or 130-150 PNGs a second to 224 px (``benchmarks/classifier_input_pipeline.py``), so a million galaxies
    in ten minutes (1,667 a second) needs about 5 cores for JPEGs and 12 for PNGs.
    """
    if device.type != "cuda" or is_array(images):
        return 0
    return max(1, min(32, usable_cores() - 1, math.ceil(len(images) / batch_size)))


class _Batch(NamedTuple):
    """One batch's results as numpy arrays; a field is None when it was not asked for."""

    fractions: np.ndarray                  # (b, A)
    acquisition: np.ndarray | None         # (b,), for an acquisition that scores each galaxy on its own
    parts: np.ndarray | None               # (b, P), for a pool-relative one
    embeddings: np.ndarray | None          # (b, D)
    concentrations: np.ndarray | None      # (S, b, A)


@dataclass
class _Stream:
    """One scoring pass set up: the model on its device, the acquisition function and the batch loader."""

    model: TreeModel
    features: Callable[[torch.Tensor], torch.Tensor]
    speed: Speed
    device: torch.device
    acquisition: Acquisition | None
    loader: Iterable
    ids: np.ndarray
    n_samples: int
    tta: bool
    keep_samples: bool
    embeddings: bool

    def batches(self) -> Iterator[_Batch]:
        """The results of every batch, in input order."""
        model, speed, device, acq, layout = self.model, self.speed, self.device, self.acquisition, self.model.layout
        pool_relative = acq is not None and acq.pool_relative
        for x, _ in self.loader:
            x = to_device_images(x, device, speed.channels_last)
            with speed.autocast(device):
                if self.tta:
                    views = dihedral_views(x)
                    feats = torch.stack([self.features(v.contiguous(memory_format=x_format(speed)))
                                         for v in views]).mean(0)
                else:
                    feats = self.features(x)
                conc = model.sample(feats, self.n_samples)
            conc, feats = conc.float(), feats.float()
            yield _Batch(layout.fractions(conc).mean(0).cpu().numpy(),
                         acq(conc, layout).cpu().numpy() if acq is not None and not pool_relative else None,
                         acq.parts(conc, layout).cpu().numpy() if pool_relative else None,
                         F.normalize(feats, dim=-1).cpu().numpy() if self.embeddings else None,
                         conc.cpu().numpy() if self.keep_samples else None)


def _stream(model, images: ImageInput, ids, *, n_samples=5, acquisition="bald", tta=False, batch_size=256,
            image_size=None, crop_fraction=None, device=None, amp=None, channels_last=None, compile=None,
            num_workers=None, keep_samples=False, embeddings=True, progress=False) -> _Stream:
    """Check the arguments and set up a pass (see :func:`score` for their meaning)."""
    model, config = _as_model(model)
    image_size = image_size or config.get("image_size")
    if image_size is None:
        raise ValueError("image_size is needed for a bare model (a checkpoint knows its own)")
    crop_fraction = crop_fraction if crop_fraction is not None else config.get("crop_fraction", 1.0)
    n = len(images)
    ids = np.asarray([str(i) for i in range(n)] if ids is None else ids).astype(str)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} ids for {n} images")
    device = resolve_device(device)
    speed = Speed.resolve(device, amp, channels_last, compile)
    if num_workers is None:
        num_workers = default_workers(device, images, batch_size)
    model = model.to(device).eval()
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    features = torch.compile(model.forward_features) if speed.compile else model.forward_features
    acq = create_acquisition(acquisition) if isinstance(acquisition, str) else acquisition
    loader = image_batches(images, image_size, batch_size, crop_fraction=crop_fraction, num_workers=num_workers,
                           pin_memory=device.type == "cuda" and not is_array(images))
    if progress:
        from tqdm.auto import tqdm
        loader = tqdm(loader, desc="score", unit="batch")
    return _Stream(model, features, speed, device, acq, loader, ids, n_samples, tta, keep_samples, embeddings)


@torch.no_grad()
def score(model, images: ImageInput, ids: Sequence[str] | None = None, *, n_samples: int = 5,
          acquisition: str | Acquisition | None = "bald", tta: bool = False, batch_size: int = 256,
          image_size: int | None = None, crop_fraction: float | None = None, device=None,
          amp: bool | None = None, channels_last: bool | None = None, compile: bool | None = None,
          num_workers: int | None = None, keep_samples: bool = False, embeddings: bool = True, anomaly: bool = True,
          anomaly_reference: np.ndarray | None = None, anomaly_k: int = 10, progress: bool = False) -> Scores:
    """Score galaxies with MC dropout.

    model : TreeModel, Checkpoint, or a checkpoint path (then ``image_size`` and ``crop_fraction`` come
        from its training config).
    images : uint8 array (n, H, W[, 3]) or n image paths (decoded by ``num_workers`` loader processes).
    ids : n subject ids (default ``0..n-1`` as strings).
    n_samples : S, MC-dropout samples per galaxy.
    acquisition : registry name, an :class:`Acquisition`, or None.
    tta : average the embedding over the 8 dihedral views (rotations by 90 degrees and flips; Dieleman et
        al. 2015's viewpoint averaging). Costs 8 backbone passes.
    num_workers : image-decoding processes for paths; None = :func:`default_workers` (every usable core but
        one on CUDA, where decoding is what starves the GPU; 0 on CPU, where the model needs the cores).
    anomaly_reference : embeddings (m, D) of typical galaxies (e.g. the training set); default: the scored
        galaxies themselves, each excluding itself.

    A caller that stores results as it goes (a catalogue too big for one set of arrays, or a database)
    uses :func:`score_chunks`, which streams the same results through one loader.
    """
    stream = _stream(model, images, ids, n_samples=n_samples, acquisition=acquisition, tta=tta,
                     batch_size=batch_size, image_size=image_size, crop_fraction=crop_fraction, device=device,
                     amp=amp, channels_last=channels_last, compile=compile, num_workers=num_workers,
                     keep_samples=keep_samples, embeddings=embeddings or anomaly, progress=progress)
    n, layout, acq = len(stream.ids), stream.model.layout, stream.acquisition
    fractions = np.empty((n, layout.n_answers), dtype=np.float32)
    acq_scores = np.empty(n, dtype=np.float32) if acq is not None else None
    emb_out = np.empty((n, stream.model.num_features), dtype=np.float32) if (embeddings or anomaly) else None
    samples = np.empty((n_samples, n, layout.n_answers), dtype=np.float32) if keep_samples else None
    parts = None             # (n, P) parts of a pool-relative acquisition, combined after the last batch
    lo = 0
    for batch in stream.batches():
        b = len(batch.fractions)
        fractions[lo:lo + b] = batch.fractions
        if batch.parts is not None:
            if parts is None:
                parts = np.empty((n, batch.parts.shape[1]), dtype=np.float32)
            parts[lo:lo + b] = batch.parts
        elif batch.acquisition is not None:
            acq_scores[lo:lo + b] = batch.acquisition
        if emb_out is not None:
            emb_out[lo:lo + b] = batch.embeddings
        if samples is not None:
            samples[:, lo:lo + b] = batch.concentrations
        lo += b

    if parts is not None:
        acq_scores = acq.combine(parts)
    anomaly_scores = knn_anomaly(emb_out, anomaly_reference, k=anomaly_k, device=stream.device) if anomaly else None
    return Scores(ids=stream.ids, columns=layout.columns, fractions=fractions, acquisition=acq_scores,
                  acquisition_name=acq.name if acq is not None else "", acquisition_parts=parts,
                  embeddings=emb_out if embeddings else None, anomaly=anomaly_scores, concentrations=samples)


def score_chunks(model, images: ImageInput, ids: Sequence[str] | None = None, *, chunk_size: int = 4096,
                 **kwargs) -> Iterator[Scores]:
    """:func:`score` as a stream: :class:`Scores` of consecutive chunks of the galaxies, in input order.

    ``kwargs`` are :func:`score`'s, but for the anomaly ones: chunks carry no anomaly scores, which compare
    every galaxy with the whole pool (:func:`knn_anomaly` on the gathered embeddings). Each chunk holds whole
    batches, at least ``chunk_size`` galaxies (the last may hold fewer). One loader serves every chunk, so
    its decoding workers start once and stay busy across chunk boundaries; calling :func:`score` chunk by
    chunk instead starts them again for every chunk, and a chunk of a few batches leaves most of them idle.
    For a pool-relative acquisition (``bald-balanced``) a chunk's ``acquisition`` is None and its
    ``acquisition_parts`` are to be combined over the pool (:meth:`Acquisition.combine`).

    The arguments are checked at once; the images are decoded and scored as the chunks are taken. Close the
    iterator (``contextlib.closing``) to stop its loader's workers early.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    return _chunks(_stream(model, images, ids, **kwargs), chunk_size)


@torch.no_grad()
def _chunks(stream: _Stream, chunk_size: int) -> Iterator[Scores]:
    acq = stream.acquisition
    held: list[_Batch] = []
    lo = count = 0

    def chunk() -> Scores:
        def joined(field: str, axis: int = 0):
            arrays = [getattr(b, field) for b in held]
            return None if arrays[0] is None else np.concatenate(arrays, axis=axis)
        return Scores(ids=stream.ids[lo:lo + count], columns=stream.model.layout.columns,
                      fractions=joined("fractions"), acquisition=joined("acquisition"),
                      acquisition_name=acq.name if acq is not None else "", acquisition_parts=joined("parts"),
                      embeddings=joined("embeddings"), concentrations=joined("concentrations", axis=1))

    for batch in stream.batches():
        held.append(batch)
        count += len(batch.fractions)
        if count >= chunk_size:
            yield chunk()
            lo, count, held = lo + count, 0, []
    if held:
        yield chunk()


def x_format(speed: Speed) -> torch.memory_format:
    return torch.channels_last if speed.channels_last else torch.contiguous_format


@torch.no_grad()
def knn_anomaly(embeddings: np.ndarray, reference: np.ndarray | None = None, *, k: int = 10, chunk: int = 4096,
                max_reference: int = 50_000, seed: int = 0, device=None) -> np.ndarray:
    """Anomaly score (n,): mean cosine distance from each embedding to its k nearest reference embeddings.

    A galaxy far from everything the model has seen is unusual in the model's own terms (the
    representation-space anomaly finding of Walmsley et al. 2022). ``reference`` None means the embeddings
    themselves, excluding each galaxy from its own neighbours. References above ``max_reference`` are
    subsampled (seeded), which keeps the cost O(n * max_reference) for million-galaxy catalogues.
    """
    device = resolve_device(device)
    q = F.normalize(torch.as_tensor(np.asarray(embeddings), dtype=torch.float32), dim=-1)
    self_ref = reference is None
    ref = q if self_ref else F.normalize(torch.as_tensor(np.asarray(reference), dtype=torch.float32), dim=-1)
    ref_index = np.arange(len(ref))
    if len(ref) > max_reference:
        ref_index = np.sort(np.random.default_rng(seed).choice(len(ref), max_reference, replace=False))
        ref = ref[torch.as_tensor(ref_index)]
    k_eff = min(k, len(ref) - (1 if self_ref else 0))
    if k_eff <= 0:
        return np.zeros(len(q), dtype=np.float32)
    ref_d = ref.to(device)
    out = np.empty(len(q), dtype=np.float32)
    pos = torch.full((len(q),), -1, dtype=torch.long)
    if self_ref:   # where each query sits in the (possibly subsampled) reference, to exclude itself
        pos[torch.as_tensor(ref_index)] = torch.arange(len(ref_index))
    for lo in range(0, len(q), chunk):
        sim = q[lo:lo + chunk].to(device) @ ref_d.T                        # (c, m)
        if self_ref:
            rows = torch.arange(sim.shape[0], device=device)
            p = pos[lo:lo + chunk].to(device)
            has = p >= 0
            sim[rows[has], p[has]] = -float("inf")
        top = sim.topk(k_eff, dim=1).values
        out[lo:lo + chunk] = (1.0 - top).mean(1).cpu().numpy()
    return out


@torch.no_grad()
def similar(query: np.ndarray, embeddings: np.ndarray, k: int = 10, *, exclude_self: bool = False,
            device=None) -> tuple[np.ndarray, np.ndarray]:
    """"More galaxies like this one": the k nearest embeddings by cosine similarity.

    query : (m, D) embeddings (e.g. ``scores.embeddings[[i]]``); embeddings : (n, D) to search.
    exclude_self : drop exact matches (similarity 1 to within 1e-6), for queries taken from ``embeddings``.
    Returns (indices int (m, k), similarities float (m, k)), most similar first.
    """
    device = resolve_device(device)
    q = F.normalize(torch.as_tensor(np.atleast_2d(query), dtype=torch.float32), dim=-1).to(device)
    e = F.normalize(torch.as_tensor(np.asarray(embeddings), dtype=torch.float32), dim=-1).to(device)
    sim = q @ e.T
    if exclude_self:
        sim = sim.masked_fill(sim > 1 - 1e-6, -float("inf"))
    top = sim.topk(min(k, e.shape[0]), dim=1)
    return top.indices.cpu().numpy(), top.values.cpu().numpy()
