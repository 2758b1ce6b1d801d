"""Catalogues, images and batches.

The catalogue follows the Zoobot convention: ``id_str``, ``file_loc`` (relative to an images folder) and
one ``<question>_<answer>`` column of raw vote counts per answer of the tree. Images are decoded once into
a uint8 array (n, size, size, 3), optionally cached on disk as ``.npy`` (memory-mapped on later runs), and
batches travel as uint8: a quarter of the bytes of float32 through workers, pinned memory and the bus.
Conversion to float, augmentation and normalisation happen on the training device.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler, SubsetRandomSampler

from .questions import as_tree

ImageInput = np.ndarray | Sequence[str | os.PathLike]
FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz", ".fz")


# ---------------------------------------------------------------------------------------------- images
def load_image(path: str | os.PathLike, size: int, crop_fraction: float = 1.0) -> np.ndarray:
    """One image file -> uint8 (size, size, 3): centre crop of ``crop_fraction`` of each side, then resize.

    JPEGs are decoded at a reduced DCT scale when that is still at least ``size`` (PIL ``draft``), which is
    several times faster for 424 px DECaLS cutouts going to 64-224 px. Greyscale becomes three channels.
    FITS cubes are rendered with the GZ DECaLS asinh stretch of :mod:`classifier.imaging`.
    """
    from PIL import Image

    if str(path).lower().endswith(FITS_SUFFIXES):
        from .imaging import load_image_any  # DECaLS-style asinh rendering of FITS cubes
        return _crop_resize(Image.fromarray(load_image_any(path)), size, crop_fraction)
    with Image.open(path) as im:
        if im.format == "JPEG" and decodes_reduced(*im.size, size, crop_fraction):
            want = _wanted_side(size, crop_fraction)
            im.draft("RGB", (want, want))
        return _crop_resize(im.convert("RGB"), size, crop_fraction)


def _wanted_side(size: int, crop_fraction: float) -> int:
    """The side the whole image needs so that its centre crop still has ``size`` pixels."""
    return int(np.ceil(size / max(crop_fraction, 1e-6)))


def decodes_reduced(width: int, height: int, size: int, crop_fraction: float = 1.0) -> bool:
    """Whether :func:`load_image` decodes a JPEG of ``width`` x ``height`` at a reduced DCT scale (at least
    half scale still covers ``size`` after the crop)."""
    return min(width, height) > 2 * _wanted_side(size, crop_fraction)


def load_native(path: str | os.PathLike) -> np.ndarray:
    """One image file at its own size -> uint8 (H, W, 3) (FITS rendered as in :func:`load_image`)."""
    from PIL import Image

    if str(path).lower().endswith(FITS_SUFFIXES):
        from .imaging import load_image_any
        return load_image_any(path)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _crop_resize(im, size: int, crop_fraction: float) -> np.ndarray:
    from PIL import Image

    w, h = im.size
    if crop_fraction < 1.0:
        cw, ch = round(w * crop_fraction), round(h * crop_fraction)
        left, top = (w - cw) // 2, (h - ch) // 2
        im = im.crop((left, top, left + cw, top + ch))
    if im.size != (size, size):
        im = im.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(im, dtype=np.uint8)


def load_images(paths: Sequence[str | os.PathLike], size: int, *, crop_fraction: float = 1.0,
                cache_dir: str | os.PathLike | None = None, threads: int | None = None,
                progress: bool = False) -> np.ndarray:
    """Decode ``paths`` into uint8 (n, size, size, 3), in parallel threads (PIL releases the GIL).

    With ``cache_dir`` the array is saved as ``<cache_dir>/<hash>.npy`` keyed by the paths, their sizes and
    modification times, ``size`` and ``crop_fraction``, and later calls memory-map it instead of decoding.
    """
    paths = [str(p) for p in paths]
    cache = None
    if cache_dir is not None:
        h = hashlib.sha1(f"{size}|{crop_fraction}".encode())
        for p in paths:
            st = os.stat(p)
            h.update(f"|{p}|{st.st_size}|{st.st_mtime_ns}".encode())
        cache = Path(cache_dir) / f"images-{size}-{h.hexdigest()[:16]}.npy"
        if cache.exists():
            return np.load(cache, mmap_mode="r")
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = load_image(paths[i], size, crop_fraction)

    with ThreadPoolExecutor(max_workers=threads or min(8, os.cpu_count() or 1)) as pool:
        it = pool.map(one, range(len(paths)))
        if progress:
            from tqdm.auto import tqdm
            it = tqdm(it, total=len(paths), desc="decode images", unit="img")
        for _ in it:
            pass
    if cache is not None:
        from .checkpoint import atomic_write_bytes
        atomic_write_bytes(cache, lambda f: np.save(f, out))
    return out


def as_uint8_images(images: np.ndarray, size: int | None = None) -> np.ndarray:
    """Normalise an in-memory image array to uint8 (n, size, size, 3).

    Accepts (n, H, W), (n, H, W, 1|3) uint8, or float in [0, 1]. Resizes with antialiasing when ``size``
    differs from the array's.
    """
    x = np.asarray(images)
    if x.dtype != np.uint8:
        x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"images must have shape (n, H, W[, C]); got {x.shape}")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if x.shape[-1] != 3:
        raise ValueError(f"images need 1 or 3 channels; got {x.shape[-1]}")
    if size is not None and x.shape[1:3] != (size, size):
        t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float()
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        x = t.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return x


def is_array(images: ImageInput) -> bool:
    return isinstance(images, np.ndarray) or torch.is_tensor(images)


# ---------------------------------------------------------------------------------------------- catalogue
def read_catalog(catalog: str | os.PathLike | pd.DataFrame, tree=None, *, require_votes: bool = True) -> pd.DataFrame:
    """Read and check a Zoobot-convention catalogue.

    Needs ``id_str`` and ``file_loc``; when ``tree`` is given and ``require_votes``, also every
    ``<question>_<answer>`` column of the tree. Errors name the missing columns.
    """
    df = catalog.copy() if isinstance(catalog, pd.DataFrame) else pd.read_csv(catalog, dtype={"id_str": str})
    missing = [c for c in ("id_str", "file_loc") if c not in df.columns]
    if tree is not None and require_votes:
        missing += [c for c in as_tree(tree).columns if c not in df.columns]
    if missing:
        raise ValueError(f"catalogue lacks column(s): {', '.join(missing)}")
    df["id_str"] = df["id_str"].astype(str)
    if df["id_str"].duplicated().any():
        dup = df.loc[df["id_str"].duplicated(), "id_str"].iloc[:5].tolist()
        raise ValueError(f"catalogue repeats id_str values, e.g. {dup}")
    return df


def fractions_to_counts(fractions: np.ndarray, n_votes: int = 40) -> np.ndarray:
    """Pseudo vote counts for a catalogue that has only vote fractions: (n, K) fractions of one question
    -> (n, K) counts, ``fraction * n_votes`` rounded so that each row sums to exactly ``n_votes``
    (largest-remainder rounding). NaN rows (question not asked) stay NaN.

    GZ DECaLS collected about 40 votes per galaxy for its first question, hence the default. The
    Dirichlet-multinomial likelihood is sharper the more votes it is told a fraction rests on, so pass the
    real number when it is known.
    """
    f = np.asarray(fractions, dtype=np.float64)
    out = np.full(f.shape, np.nan)
    ok = ~np.isnan(f).any(1)
    f = f[ok] / np.maximum(f[ok].sum(1, keepdims=True), 1e-12)
    raw = f * n_votes
    base = np.floor(raw)
    short = (n_votes - base.sum(1)).astype(int)
    order = np.argsort(-(raw - base), axis=1, kind="stable")
    for i, k in enumerate(short):
        base[i, order[i, :k]] += 1
    out[ok] = base
    return out.astype(np.float32)


def resolve_paths(file_locs: Sequence[str], images_dir: str | os.PathLike | None) -> list[str]:
    base = Path(images_dir) if images_dir is not None else None
    paths = [str(base / f) if base is not None else str(f) for f in file_locs]
    absent = [p for p in paths if not os.path.exists(p)]
    if absent:
        raise FileNotFoundError(f"{len(absent)} image(s) not found, e.g. {absent[:3]}")
    return paths


@dataclass
class GalaxyData:
    """Labelled galaxies for :func:`classifier.fit`.

    ids : str array (n,)
    images : uint8 array (n, H, W[, 3]) or n image paths
    votes : float array (n, A), raw vote counts in the order of ``tree.columns``; NaN = question not asked
    tree : the decision tree (DecisionTree, built-in name, path or dict)
    val_ids : ids of a fixed validation set (the platform passes the same set to every candidate model so
        that their ``val_loss`` values compare); when None, ``fit`` draws ``config.val_fraction`` by seed
    snapshot_id : which label snapshot these votes are; recorded in the checkpoint
    """

    ids: np.ndarray
    images: ImageInput
    votes: np.ndarray
    tree: object = "gz_decals"
    val_ids: Sequence[str] | None = None
    snapshot_id: str = ""
    _decoded: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self.tree = as_tree(self.tree)
        self.ids = np.asarray(self.ids).astype(str)
        self.votes = np.asarray(self.votes, dtype=np.float32)
        n, a = len(self.ids), len(self.tree.columns)
        if self.votes.shape != (n, a):
            raise ValueError(f"votes must have shape (n={n}, A={a}) for the tree's columns; got {self.votes.shape}")
        if len(self.images) != n:
            raise ValueError(f"{len(self.images)} images for {n} ids")
        if np.nanmin(self.votes, initial=0.0) < 0:
            raise ValueError("vote counts must be >= 0")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_catalog(cls, catalog, images_dir=None, tree="gz_decals", **kwargs) -> "GalaxyData":
        """From a catalogue (path or DataFrame) with ``id_str``, ``file_loc`` and vote-count columns."""
        tree = as_tree(tree)
        df = read_catalog(catalog, tree)
        paths = resolve_paths(df["file_loc"].tolist(), images_dir)
        votes = df[list(tree.columns)].to_numpy(dtype=np.float32)
        return cls(ids=df["id_str"].to_numpy(), images=paths, votes=votes, tree=tree, **kwargs)

    def image_array(self, size: int, *, crop_fraction: float = 1.0, cache_dir=None, progress: bool = False) -> np.ndarray:
        """uint8 (n, size, size, 3), decoded once per (size, crop) and kept."""
        key = (size, crop_fraction)
        if key not in self._decoded:
            if is_array(self.images):
                self._decoded[key] = as_uint8_images(np.asarray(self.images), size)
            else:
                self._decoded[key] = load_images(self.images, size, crop_fraction=crop_fraction,
                                                 cache_dir=cache_dir, progress=progress)
        return self._decoded[key]

    def subset(self, index: np.ndarray) -> "GalaxyData":
        """The galaxies at ``index`` (decoded arrays are sliced, not decoded again)."""
        index = np.asarray(index)
        images = self.images[index] if is_array(self.images) else [self.images[i] for i in index]
        out = GalaxyData(ids=self.ids[index], images=images, votes=self.votes[index], tree=self.tree,
                         val_ids=self.val_ids, snapshot_id=self.snapshot_id)
        out._decoded = {k: v[index] for k, v in self._decoded.items()}
        return out


# ---------------------------------------------------------------------------------------------- batches
class ArrayBatches(Dataset):
    """Whole batches from a uint8 array: ``ds[[i, j, ...]]`` -> (uint8 (b, H, W, 3), votes (b, A) or None).

    Indexing by batch (a ``BatchSampler`` as the sampler, ``batch_size=None`` in the loader) makes one
    fancy-index copy per batch instead of b item copies and a collate.
    """

    def __init__(self, images: np.ndarray, votes: np.ndarray | None = None):
        self.images, self.votes = images, votes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        index = np.asarray(index)
        x = torch.from_numpy(np.ascontiguousarray(self.images[index]))
        y = None if self.votes is None else torch.from_numpy(np.ascontiguousarray(self.votes[index]))
        return x, y


class PathBatches(Dataset):
    """Whole batches decoded from files, for streaming catalogues too big to hold decoded."""

    def __init__(self, paths: Sequence[str], size: int, crop_fraction: float = 1.0):
        self.paths, self.size, self.crop_fraction = [str(p) for p in paths], size, crop_fraction

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        x = np.stack([load_image(self.paths[i], self.size, self.crop_fraction) for i in index])
        return torch.from_numpy(x), None


def batch_loader(dataset: Dataset, indices: np.ndarray | None, batch_size: int, *, shuffle: bool = False,
                 generator: torch.Generator | None = None, drop_last: bool = False, num_workers: int = 0,
                 pin_memory: bool = False) -> DataLoader:
    """A loader yielding whole batches of ``dataset`` (restricted to ``indices``; shuffled if asked).

    With ``shuffle`` the order comes from ``generator`` (seeded), and batches keep their index order.
    """
    idx = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    if shuffle:
        sampler = SubsetRandomSampler(idx.tolist(), generator=generator)
    else:
        sampler = _IndexSampler(idx)
    batches = BatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)
    return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=num_workers,
                      pin_memory=pin_memory, persistent_workers=False)


class _IndexSampler(SequentialSampler):
    def __init__(self, idx: np.ndarray):
        self.idx = idx

    def __iter__(self):
        return iter(self.idx.tolist())

    def __len__(self) -> int:
        return len(self.idx)


def image_batches(images: ImageInput, size: int, batch_size: int, *, crop_fraction: float = 1.0,
                  num_workers: int = 0, pin_memory: bool = False) -> DataLoader:
    """Batches of uint8 (b, size, size, 3) in input order, from an array or from image paths."""
    if is_array(images):
        ds: Dataset = ArrayBatches(as_uint8_images(np.asarray(images), size))
    else:
        ds = PathBatches(list(images), size, crop_fraction)
    return batch_loader(ds, None, batch_size, num_workers=num_workers, pin_memory=pin_memory)
