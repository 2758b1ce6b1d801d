"""Majority vote: the baseline every Bayesian aggregator is measured against.

The posterior is the smoothed vote fraction ``(n_k + s) / (n + K s)`` (Laplace's rule of succession for
s = 1), so it is defined before the first vote and never exactly 0 or 1. Every volunteer counts the
same; nothing is learned from gold. Galaxy Zoo's classic retirement is a fixed vote count
(``vote_cap``); ``consensus`` optionally retires a subject early once the smoothed fraction of the
leading answer reaches it.
"""
from __future__ import annotations

import numpy as np

from .base import CountingAggregator
from .retirement import ACTIVE, CODES, CONSENSUS
from .state import SubjectState, VolunteerState


class MajorityVote(CountingAggregator):
    """Smoothed vote fractions.

    n_classes : K. smoothing : pseudo-votes per answer (s). consensus : smoothed fraction of the leading
    answer that retires a subject (None: never). min_votes, vote_cap, expert_after : budget rules.
    """

    name = "majority"
    log_beliefs = False
    accepts_evidence = False
    learns_from_gold = False

    def __init__(self, n_classes: int = 2, smoothing: float = 1.0, consensus: float | None = None,
                 min_votes: int = 0, vote_cap: int | None = None, expert_after: int | None = None):
        self.n_classes = n_classes
        self.smoothing = smoothing
        self.consensus = consensus
        self.min_votes = min_votes
        self.vote_cap = vote_cap
        self.expert_after = expert_after
        self._check_common()
        if smoothing <= 0:
            raise ValueError("smoothing must be > 0")
        if consensus is not None and not 0.5 <= consensus <= 1.0:
            raise ValueError(f"consensus must be in [0.5, 1] or None, got {consensus}")

    def new_subject(self, gold: int = -1) -> SubjectState:
        return SubjectState(counts=[0] * self.n_classes, gold=gold)

    def _observe_vote(self, subject: SubjectState, volunteer: VolunteerState, answer: int) -> None:
        subject.counts[answer] += 1

    def _decide_one(self, subject: SubjectState) -> tuple[str, int]:
        if self.consensus is None:
            return ACTIVE, -1
        c = subject.counts
        m = max(c)
        if (m + self.smoothing) / (sum(c) + self.n_classes * self.smoothing) >= self.consensus:
            return CONSENSUS, c.index(m)
        return ACTIVE, -1

    def _decide(self, belief: np.ndarray, n_counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        code = np.zeros(len(belief), dtype=np.int8)
        label = np.full(len(belief), -1, dtype=np.int64)
        if self.consensus is None or len(belief) == 0:
            return code, label
        m = belief.max(axis=1)
        ok = (m + self.smoothing) / (belief.sum(axis=1) + self.n_classes * self.smoothing) >= self.consensus
        code[ok] = CODES[CONSENSUS]
        label[ok] = np.argmax(belief[ok], axis=1)
        return code, label

    def _posterior(self, belief: np.ndarray) -> np.ndarray:
        return (belief + self.smoothing) / (belief.sum(axis=1, keepdims=True) + self.n_classes * self.smoothing)
