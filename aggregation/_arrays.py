"""Vectorised group operations shared by the batch (``replay``/``fit``) code paths.

Every batch function sorts the vote table once by subject (stable, so time order survives within a
subject) and then works on contiguous groups. These helpers keep that bookkeeping in one place.
"""
from __future__ import annotations

import numpy as np
import pandas as pd


def factorize(*id_arrays: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Dense codes for the union of several id arrays.

    Returns ``(uniques, codes)`` where ``uniques`` is sorted and ``codes[i]`` has the shape of
    ``id_arrays[i]`` with ``uniques[codes[i]] == id_arrays[i]``.
    """
    sizes = [len(a) for a in id_arrays]
    allids = np.concatenate([np.asarray(a, dtype=np.int64) for a in id_arrays]) if id_arrays else np.zeros(0, np.int64)
    codes, uniques = pd.factorize(allids, sort=True)
    uniques = np.asarray(uniques, dtype=np.int64)
    out, start = [], 0
    for n in sizes:
        out.append(codes[start:start + n].astype(np.int64, copy=False))
        start += n
    return uniques, out


def stable_argsort(ids: np.ndarray, return_sorted: bool = False):
    """``np.argsort(ids, kind="stable")`` for integer ids, several times faster on large arrays.

    Sorting the unique keys ``(id - min) * n + row`` with ``np.sort`` (SIMD quicksort) and reading the
    row back from each key is stable by construction; the sorted ids come for free
    (``return_sorted``). Falls back to NumPy's stable argsort when the keys would not fit in 63 bits.
    """
    ids = np.asarray(ids)
    n = len(ids)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return (empty, empty) if return_sorted else empty
    lo, hi = int(ids.min()), int(ids.max())
    if (hi - lo + 1) * n >= 2 ** 62:
        order = np.argsort(ids, kind="stable")
        return (order, ids[order].astype(np.int64)) if return_sorted else order
    key = (ids.astype(np.int64) - lo) * n
    key += np.arange(n, dtype=np.int64)
    key.sort()
    order = key % n
    if not return_sorted:
        return order
    key //= n
    key += lo
    return order, key


class Groups:
    """Rows sorted by a group code (stable, so time order survives inside a group).

    ``order`` sorts the original rows; ``codes`` are the sorted group codes; ``starts``/``lengths`` have
    one entry per group code in ``range(n_groups)`` (length 0 for groups without rows);
    ``position`` is the 1-based rank of each sorted row inside its group; ``ids`` (when built with
    :meth:`from_ids`) the sorted unique ids and ``row_codes`` each original row's code.
    """

    def __init__(self, codes: np.ndarray, n_groups: int, order: np.ndarray | None = None,
                 codes_sorted: np.ndarray | None = None):
        codes = np.asarray(codes, dtype=np.int64)
        self.n_groups = int(n_groups)
        if order is None:
            self.order, self.codes = stable_argsort(codes, return_sorted=True)
        else:
            self.order = order
            self.codes = codes[order] if codes_sorted is None else codes_sorted
        self.row_codes = codes
        self.lengths = np.bincount(codes, minlength=n_groups).astype(np.int64)
        self.starts = np.zeros(n_groups, dtype=np.int64)
        np.cumsum(self.lengths[:-1], out=self.starts[1:])
        self.position = np.arange(1, len(codes) + 1, dtype=np.int64) - self.starts[self.codes]
        self.ids: np.ndarray | None = None

    @classmethod
    def from_ids(cls, ids: np.ndarray, *extra_ids: np.ndarray) -> "Groups":
        """Group rows by raw integer ids with one stable sort (no hashing); groups are the sorted union
        of ``ids`` and ``extra_ids`` (ids that exist without rows, e.g. gold subjects without votes)."""
        ids = np.asarray(ids, dtype=np.int64)
        order, sid = stable_argsort(ids, return_sorted=True)
        start = np.ones(len(sid), dtype=bool)
        start[1:] = sid[1:] != sid[:-1]
        run_ids = sid[start]
        extra = [np.asarray(e, dtype=np.int64) for e in extra_ids if len(e)]
        uniques = np.unique(np.concatenate([run_ids, *extra])) if extra else run_ids
        run_code = np.searchsorted(uniques, run_ids)
        codes_sorted = run_code[np.cumsum(start) - 1] if len(sid) else np.zeros(0, np.int64)
        codes = np.empty(len(ids), dtype=np.int64)
        codes[order] = codes_sorted
        g = cls(codes, len(uniques), order=order, codes_sorted=codes_sorted)
        g.ids = uniques
        return g

    def codes_of(self, ids: np.ndarray) -> np.ndarray:
        """Codes of ids that are known groups (built with :meth:`from_ids`)."""
        return np.searchsorted(self.ids, np.asarray(ids, dtype=np.int64))

    def cumsum(self, values_sorted: np.ndarray) -> np.ndarray:
        """Inclusive cumulative sum within each group (exact per group: no cross-group rounding)."""
        if values_sorted.ndim == 1:
            return pd.Series(values_sorted).groupby(self.codes, sort=False).cumsum().to_numpy()
        frame = pd.DataFrame(values_sorted)
        return frame.groupby(self.codes, sort=False).cumsum().to_numpy()

    def cummin(self, values_sorted: np.ndarray) -> np.ndarray:
        return pd.Series(values_sorted).groupby(self.codes, sort=False).cummin().to_numpy()

    def first(self, mask_sorted: np.ndarray) -> np.ndarray:
        """Index (into the sorted rows) of the first True row of each group, or -1."""
        out = np.full(self.n_groups, -1, dtype=np.int64)
        hits = np.flatnonzero(mask_sorted)
        if len(hits):
            g = self.codes[hits]
            keep = np.ones(len(hits), dtype=bool)
            keep[1:] = g[1:] != g[:-1]
            out[g[keep]] = hits[keep]
        return out

    def last(self) -> np.ndarray:
        """Index of the last sorted row of each group, or -1 for empty groups."""
        return np.where(self.lengths > 0, self.starts + self.lengths - 1, -1)


def exclusive_cumsum_by(groups: Groups, columns: list[np.ndarray]) -> list[np.ndarray]:
    """For rows in time order: per column, the sum over *earlier* rows of the same group.

    Used for "gold votes this volunteer made before this vote". ``groups`` is a stable grouping of the
    time-ordered rows, so time order holds inside each group; integer columns give exact counts (pack
    several small counters into one int64 to save passes). Each column has shape (n,); so does each
    result.
    """
    order = groups.order
    seg_first = groups.starts[groups.codes]             # first sorted row of each sorted row's group
    out = []
    for col in columns:
        c = col[order]
        cs = np.cumsum(c)
        cs -= c                                        # exclusive, across groups
        cs -= cs[seg_first]                            # ... restarted at each group
        res = np.empty_like(cs)
        res[order] = cs
        out.append(res)
    return out
