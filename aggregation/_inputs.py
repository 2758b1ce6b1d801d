"""Coerce the accepted input shapes to plain int64/float64 arrays, with messages a person can act on."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

VOTE_COLUMNS = ("subject_id", "user_id", "answer")


def require_columns(df: pd.DataFrame, columns, what: str) -> None:
    """ValueError naming every column of ``columns`` that ``df`` lacks (``what``: "votes", "marks", ...)."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} need columns {', '.join(columns)}; missing {', '.join(missing)}")


def as_votes(votes: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``votes`` -> (subject, user, answer) int64 arrays of shape (n_votes,).

    Accepts an int array of shape (n_votes, 3) with columns ``subject_id, user_id, answer``, a DataFrame
    with those columns, or any iterable of 3-tuples. Rows are in time order.
    """
    if isinstance(votes, pd.DataFrame):
        require_columns(votes, VOTE_COLUMNS, "votes")
        arr = votes[list(VOTE_COLUMNS)].to_numpy()
    else:
        arr = np.asarray(votes if not isinstance(votes, (list, tuple)) or len(votes) else np.zeros((0, 3)))
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"votes must have shape (n_votes, 3) [subject_id, user_id, answer], got {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError("votes must be integers (subject_id, user_id, answer)")
    elif arr.dtype.kind not in "iu":
        if len(arr):
            raise ValueError(f"votes must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    s, u, a = arr[:, 0].copy(), arr[:, 1].copy(), arr[:, 2].copy()
    if len(a) and (a.min() < 0 or a.max() >= n_classes):
        bad = int(np.flatnonzero((a < 0) | (a >= n_classes))[0])
        raise ValueError(f"vote {bad}: answer {a[bad]} is not in 0..{n_classes - 1}")
    return s, u, a


def as_gold(gold: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``gold`` -> (subject_ids, labels) int64 arrays. Accepts None, {subject_id: label}, an int array
    of shape (n_gold, 2), or a DataFrame with ``subject_id, label``."""
    if gold is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if isinstance(gold, Mapping):
        ids = np.fromiter((int(k) for k in gold.keys()), dtype=np.int64, count=len(gold))
        labels = np.fromiter((int(v) for v in gold.values()), dtype=np.int64, count=len(gold))
    elif isinstance(gold, pd.DataFrame):
        ids = gold["subject_id"].to_numpy(np.int64)
        labels = gold["label"].to_numpy(np.int64)
    else:
        arr = np.asarray(gold, dtype=np.int64).reshape(-1, 2)
        ids, labels = arr[:, 0].copy(), arr[:, 1].copy()
    if len(labels) and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"gold labels must be in 0..{n_classes - 1}")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("a subject appears twice in the gold standard")
    return ids, labels


def as_evidence(evidence: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``evidence`` -> (subject_ids (n,), log_likelihood (n, K)). Accepts None, {subject_id: (K,)}, or a
    pair ``(subject_ids, log_likelihood)``."""
    if evidence is None or (isinstance(evidence, Mapping) and not evidence):
        return np.zeros(0, np.int64), np.zeros((0, n_classes))
    if isinstance(evidence, Mapping):
        ids = np.fromiter((int(k) for k in evidence.keys()), dtype=np.int64, count=len(evidence))
        ll = np.asarray([np.asarray(v, dtype=np.float64) for v in evidence.values()]).reshape(len(ids), -1)
    else:
        ids, ll = evidence
        ids = np.asarray(ids, dtype=np.int64)
        ll = np.asarray(ll, dtype=np.float64).reshape(len(ids), -1)
    if ll.shape[1] != n_classes:
        raise ValueError(f"evidence must have {n_classes} log-likelihoods per subject, got {ll.shape[1]}")
    if not np.all(np.isfinite(ll)):
        raise ValueError("evidence log-likelihoods must be finite")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("a subject appears twice in the evidence")
    return ids, ll
