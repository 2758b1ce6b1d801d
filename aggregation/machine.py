"""The machine as one more classifier: model predictions enter as an agent with its own confusion matrix.

Galaxy Zoo Express (Beck et al. 2018, sec. 3.3-4) lets a machine classifier retire galaxies once it
has proven itself on subjects whose answer is known. Here the model's predicted vote fractions for a
question, shape (K,), are discretised into a *symbol*: the predicted answer and a confidence bin::

    symbol = argmax(f) * n_bins + bin(max(f)),   bin over [1/K, 1] in n_bins equal steps

and the machine has a K x (K * n_bins) confusion matrix P(symbol | true answer), estimated like a
volunteer's (Dirichlet pseudo-counts plus counts) from subjects with a known answer: gold subjects and
subjects that humans retired. Its log-likelihood column ``log P(symbol | k)`` is added to a subject's
belief as evidence (``aggregator.add_evidence`` / ``replay(..., evidence=...)``).

Why a histogram rather than trusting the fractions: it *calibrates* the model on the platform's own
labels. A confident, accurate model gets columns that separate the classes and can retire subjects; a
miscalibrated one (confident but wrong, or uninformative) gets flat or inverted columns and is
discounted automatically. The prior is flat over symbols, so an untrained machine adds exactly 0.
"""
from __future__ import annotations

import numpy as np

from .state import Result


class MachineAgent:
    """Confusion matrix over discretised model predictions.

    n_classes : K. n_bins : confidence bins per predicted answer. pseudo_votes : weight of the flat
    prior per true answer (spread over the K * n_bins symbols).

    After ``fit``: ``counts_`` (K, L) labelled predictions per (true answer, symbol), ``confusion_``
    (K, L) = P(symbol | true answer), ``n_fit_`` subjects used.
    """

    def __init__(self, n_classes: int = 2, n_bins: int = 5, pseudo_votes: float = 2.0):
        if n_classes < 2 or n_bins < 1 or pseudo_votes <= 0:
            raise ValueError("need n_classes >= 2, n_bins >= 1, pseudo_votes > 0")
        self.n_classes = n_classes
        self.n_bins = n_bins
        self.pseudo_votes = pseudo_votes
        self._set_counts(np.zeros((n_classes, n_classes * n_bins)))

    @property
    def n_symbols(self) -> int:
        return self.n_classes * self.n_bins

    def _set_counts(self, counts: np.ndarray) -> None:
        self.counts_ = counts
        prior = self.pseudo_votes / self.n_symbols
        self.confusion_ = (counts + prior) / (counts.sum(axis=1, keepdims=True) + self.pseudo_votes)
        self.n_fit_ = int(counts.sum())

    def symbols(self, fractions) -> np.ndarray:
        """Predicted vote fractions, shape (n, K) (rows need not sum to 1) -> symbols, shape (n,)."""
        f = np.atleast_2d(np.asarray(fractions, dtype=np.float64))
        if f.shape[1] != self.n_classes:
            raise ValueError(f"fractions must have {self.n_classes} columns, got {f.shape[1]}")
        if not np.all(np.isfinite(f)) or np.any(f < 0):
            raise ValueError("fractions must be finite and >= 0")
        tot = f.sum(axis=1, keepdims=True)
        f = np.where(tot > 0, f / np.where(tot > 0, tot, 1.0), 1.0 / self.n_classes)
        arg = np.argmax(f, axis=1)
        conf = f[np.arange(len(f)), arg]
        lo = 1.0 / self.n_classes
        # the tiny offset keeps bin edges such as 0.7 -> bin 2 of 5 from falling back by rounding
        b = np.floor((conf - lo) / (1.0 - lo) * self.n_bins + 1e-9).astype(np.int64)
        return arg * self.n_bins + np.clip(b, 0, self.n_bins - 1)

    def fit(self, fractions, labels) -> "MachineAgent":
        """Estimate the confusion matrix from predictions on subjects with known answers. Returns self.

        fractions : (n, K) predictions; labels : (n,) known answers (gold, or human-retired labels).
        """
        sym = self.symbols(fractions)
        lab = np.asarray(labels, dtype=np.int64)
        if lab.shape != sym.shape or (len(lab) and (lab.min() < 0 or lab.max() >= self.n_classes)):
            raise ValueError(f"labels must be {len(sym)} answers in 0..{self.n_classes - 1}")
        counts = np.bincount(lab * self.n_symbols + sym, minlength=self.n_classes * self.n_symbols)
        self._set_counts(counts.reshape(self.n_classes, self.n_symbols).astype(np.float64))
        return self

    def log_likelihood(self, fractions) -> np.ndarray:
        """log P(machine's symbol | true answer k), shape (n, K): the evidence to add to each subject."""
        return np.log(self.confusion_[:, self.symbols(fractions)]).T

    def evidence(self, subject_ids, fractions) -> tuple[np.ndarray, np.ndarray]:
        """``(subject_ids, log_likelihood)``, ready for ``replay(evidence=...)`` or ``update_evidence``."""
        return np.asarray(subject_ids, dtype=np.int64), self.log_likelihood(fractions)

    def to_dict(self) -> dict:
        return {"n_classes": self.n_classes, "n_bins": self.n_bins, "pseudo_votes": self.pseudo_votes,
                "counts": self.counts_.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "MachineAgent":
        m = cls(n_classes=int(d["n_classes"]), n_bins=int(d["n_bins"]), pseudo_votes=float(d["pseudo_votes"]))
        m._set_counts(np.asarray(d["counts"], dtype=np.float64))
        return m


def training_labels(result: Result, human_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Subjects whose answer is known, for :meth:`MachineAgent.fit`: ``(subject_ids, labels)``.

    Gold subjects with their gold label, plus retired subjects with a label. With ``human_only``, a
    retired subject counts only if at least one human voted and the humans' own posterior (the belief
    without the evidence term) picks the same answer, so the machine is never trained on its own calls.
    """
    labels = np.where(result.gold >= 0, result.gold, result.label)
    keep = labels >= 0
    if human_only:
        decided = (result.gold < 0) & keep
        human_ok = result.retired_at_vote >= 1
        if result.evidence is not None and result.log_belief is not None:
            human = np.argmax(result.log_belief - result.evidence, axis=1)
            human_ok &= human == labels
        keep &= ~decided | human_ok
    return result.subject_ids[keep], labels[keep]
