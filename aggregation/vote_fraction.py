"""Vote-fraction consensus: stop asking once the full-budget answer of the crowd is settled.

Galaxy Zoo publishes vote *fractions*, not a latent "true" class: a galaxy that 55% of volunteers call
featured is a real, reproducible 55%. This aggregator models each answer's vote fraction p_j of a
subject with a population prior learned from past subjects, and retires a subject when the answer that
the whole vote budget would give is settled:

    P(final count_j > budget / 2 | k_j of n votes so far) >= confidence        -> "consensus", label j

Model
-----
* Prior: for each answer j, a discrete distribution w_j over a grid of p values, fitted to the vote
  counts of past subjects by nonparametric maximum likelihood (the Kiefer–Wolfowitz NPMLE, solved by
  EM on the mixing weights: Laird 1978, JASA 73, 805; Koenker & Mizera 2014, JASA 109, 674), with
  ``prior_weight`` pseudo-subjects spread uniformly so that an unfitted aggregator has a flat prior.
* Votes: k_j ~ Binomial(n, p_j). Keeping only (k_j, n) for answer j is exact for the question "does j
  get a majority", and lets the posterior be tabulated: w_j(g | k, n) ∝ w_j(g) p_g^k (1 - p_g)^(n - k).
* Prediction: the remaining budget - n votes are Binomial(budget - n, p), so
  P(final majority) = sum_g w_j(g | k, n) * P(Binomial(budget - n, p_g) > budget/2 - k).
  Requiring a strict *majority* is conservative for K > 2 (a plurality may win with less).

The posterior reported is the posterior mean fraction E[p_j | k_j, n], normalised over answers. The
decision table depends only on (n, k_j), so online and batch share one precomputed table of shape
(K, budget + 1, budget + 1). After ``budget`` votes the outcome is known: a strict majority retires
with "consensus"; otherwise the budget rules (``vote_cap``, ``expert_after``) apply.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.stats import binom

from ._arrays import factorize
from ._inputs import as_votes
from .base import CountingAggregator
from .retirement import ACTIVE, CODES, CONSENSUS
from .state import SubjectState, VolunteerState


@lru_cache(maxsize=16)
def _majority_tail(budget: int, grid_size: int) -> np.ndarray:
    """P(Binomial(budget - n, p_g) > budget/2 - k), shape (budget+1, budget+1, G) over (n, k, g): the
    remaining votes must bring at least floor(budget/2 - k) + 1 more for the answer. Depends only on
    the budget and the grid, so it is shared by every aggregator with the same two."""
    grid = (np.arange(grid_size) + 0.5) / grid_size
    n = np.arange(budget + 1)[:, None]
    k = np.arange(budget + 1)[None, :]
    need = np.floor(budget / 2 - k) + 1
    out = binom.sf(need[..., None] - 1, (budget - n)[..., None], grid[None, None, :])
    out.setflags(write=False)
    return out


class VoteFraction(CountingAggregator):
    """Empirical-Bayes vote-fraction model with a full-budget majority retirement rule.

    n_classes : K. budget : votes a subject gets without early retirement (GZ DECaLS: 40).
    confidence : P(final majority) needed to retire. grid_size : points of the p grid.
    prior_weight : uniform pseudo-subjects added to the NPMLE. max_iter : NPMLE EM iterations.
    min_votes, vote_cap, expert_after : budget rules.

    After ``fit``: ``grid_`` (G,), ``prior_`` (K, G) mixing weights per answer.
    """

    name = "vote_fraction"
    log_beliefs = False
    accepts_evidence = False
    learns_from_gold = False

    def __init__(self, n_classes: int = 2, budget: int = 40, confidence: float = 0.95, grid_size: int = 201,
                 prior_weight: float = 1.0, max_iter: int = 500, min_votes: int = 0,
                 vote_cap: int | None = None, expert_after: int | None = None):
        self.n_classes = n_classes
        self.budget = budget
        self.confidence = confidence
        self.grid_size = grid_size
        self.prior_weight = prior_weight
        self.max_iter = max_iter
        self.min_votes = min_votes
        self.vote_cap = vote_cap
        self.expert_after = expert_after
        self._check_common()
        if budget < 1:
            raise ValueError("budget must be >= 1")
        if not 0.5 < confidence < 1.0:
            raise ValueError(f"confidence must be in (0.5, 1), got {confidence}")
        if grid_size < 3:
            raise ValueError("grid_size must be >= 3")
        # Cell midpoints keep log p finite at the ends.
        self._grid = (np.arange(grid_size) + 0.5) / grid_size
        self._set_prior(np.full((n_classes, grid_size), 1.0 / grid_size))

    # ------------------------------------------------------------------ prior and tables
    def _set_prior(self, prior: np.ndarray) -> None:
        self._prior = prior
        N, G = self.budget, len(self._grid)
        n = np.arange(N + 1)[:, None]
        k = np.arange(N + 1)[None, :]
        valid = k <= n
        lp, l1p = np.log(self._grid), np.log1p(-self._grid)
        # log w(g | k, n) up to a constant, shape (K, N+1, N+1, G)
        logw = np.log(prior)[:, None, None, :] + k[..., None] * lp + (n - k)[..., None] * l1p
        logw -= logw.max(axis=-1, keepdims=True)
        w = np.exp(logw)
        w /= w.sum(axis=-1, keepdims=True)
        tail = _majority_tail(N, G)                          # (N+1, N+1, G)
        p_major = (w * tail[None]).sum(axis=-1)
        p_major[:, ~valid] = 0.0
        self._p_major = p_major                              # (K, N+1, N+1)
        self._p_major_list = p_major.tolist()
        mean = (w * self._grid).sum(axis=-1)
        mean[:, ~valid] = 0.0
        self._mean = mean

    def _learned(self) -> dict:
        return {"prior": self._prior.tolist()}

    def _set_learned(self, learned: dict) -> None:
        if "prior" in learned:
            self._set_prior(np.asarray(learned["prior"], dtype=np.float64))
            self.prior_ = self._prior
            self.grid_ = self._grid

    def fit_prior(self, counts: np.ndarray) -> "VoteFraction":
        """Fit the population prior to complete vote counts of past subjects, shape (S, K). Returns self."""
        counts = np.asarray(counts, dtype=np.int64)
        if counts.ndim != 2 or counts.shape[1] != self.n_classes:
            raise ValueError(f"counts must have shape (n_subjects, {self.n_classes})")
        n = counts.sum(axis=1)
        lp, l1p = np.log(self._grid), np.log1p(-self._grid)
        G = len(self._grid)
        prior = np.empty((self.n_classes, G))
        for j in range(self.n_classes):
            pairs = np.stack([counts[n > 0, j], n[n > 0]], axis=1)
            if len(pairs) == 0:
                prior[j] = 1.0 / G
                continue
            uniq, mult = np.unique(pairs, axis=0, return_counts=True)
            # Binomial likelihood of each distinct (k, n) at each grid point (the binomial coefficient
            # is the same for all grid points and cancels).
            loglik = uniq[:, :1] * lp + (uniq[:, 1:] - uniq[:, :1]) * l1p
            loglik -= loglik.max(axis=1, keepdims=True)
            lik = np.exp(loglik)
            w = np.full(G, 1.0 / G)
            total = mult.sum() + self.prior_weight
            for _ in range(self.max_iter):
                post = lik * w
                post /= post.sum(axis=1, keepdims=True)
                w_new = ((mult[:, None] * post).sum(axis=0) + self.prior_weight / G) / total
                if np.abs(w_new - w).max() < 1e-10:
                    w = w_new
                    break
                w = w_new
            prior[j] = w
        self._set_prior(prior)
        self.prior_ = prior
        self.grid_ = self._grid
        return self

    def majority_probability(self, counts) -> np.ndarray:
        """P(answer j has a strict majority of the full budget | counts so far), counts shape (m, K) -> (m, K)."""
        c = np.atleast_2d(np.asarray(counts, dtype=np.int64))
        n = c.sum(axis=1)
        out = np.empty(c.shape, dtype=np.float64)
        inside = n <= self.budget
        if inside.any():
            nn = n[inside]
            for j in range(self.n_classes):
                out[inside, j] = self._p_major[j, nn, c[inside, j]]
        # Past the budget the outcome is decided: the current strict majority (if any).
        out[~inside] = (2 * c[~inside] > n[~inside, None]).astype(np.float64)
        return out

    # ------------------------------------------------------------------ online hooks
    def new_subject(self, gold: int = -1) -> SubjectState:
        return SubjectState(counts=[0] * self.n_classes, gold=gold)

    def _observe_vote(self, subject: SubjectState, volunteer: VolunteerState, answer: int) -> None:
        subject.counts[answer] += 1

    def _decide_one(self, subject: SubjectState) -> tuple[str, int]:
        c = subject.counts
        n = sum(c)
        if n <= self.budget:
            pm = self._p_major_list
            best, arg = -1.0, -1
            for j, kj in enumerate(c):
                v = pm[j][n][kj]
                if v > best:
                    best, arg = v, j
        else:
            arg = int(np.argmax(c))
            best = 1.0 if 2 * c[arg] > n else 0.0
        if best >= self.confidence:
            return CONSENSUS, arg
        return ACTIVE, -1

    def posterior(self, subject: SubjectState) -> np.ndarray:
        return self._posterior(np.asarray(subject.counts, dtype=np.float64)[None, :])[0]

    # ------------------------------------------------------------------ batch hooks
    def _decide(self, belief: np.ndarray, n_counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        code = np.zeros(len(belief), dtype=np.int8)
        label = np.full(len(belief), -1, dtype=np.int64)
        if len(belief) == 0:
            return code, label
        pm = self.majority_probability(np.rint(belief).astype(np.int64))
        best = pm.max(axis=1)
        ok = best >= self.confidence
        code[ok] = CODES[CONSENSUS]
        label[ok] = np.argmax(pm[ok], axis=1)
        return code, label

    def _posterior(self, belief: np.ndarray) -> np.ndarray:
        c = np.rint(belief).astype(np.int64)
        n = c.sum(axis=1)
        out = np.empty(c.shape, dtype=np.float64)
        inside = n <= self.budget
        for j in range(self.n_classes):
            out[inside, j] = self._mean[j, n[inside], c[inside, j]]       # tabulated E[p_j | k_j, n]
        rest = np.flatnonzero(~inside)
        if len(rest):
            lp, l1p = np.log(self._grid), np.log1p(-self._grid)
            for chunk in np.array_split(rest, max(1, len(rest) // 4096)):   # bounded memory: (chunk, G)
                for j in range(self.n_classes):
                    logw = np.log(self._prior[j])[None, :] + c[chunk, j:j + 1] * lp + (n[chunk] - c[chunk, j])[:, None] * l1p
                    logw -= logw.max(axis=1, keepdims=True)
                    w = np.exp(logw)
                    out[chunk, j] = (w * self._grid).sum(axis=1) / w.sum(axis=1)
        return out / out.sum(axis=1, keepdims=True)

    # ------------------------------------------------------------------ batch
    def fit(self, votes, gold=None, evidence=None) -> "VoteFraction":
        """Fit the prior to the counts of all subjects in ``votes``, then replay them. Returns self.

        To learn the prior on past subjects and replay new ones, call ``fit_prior(counts)`` then
        ``replay(votes)`` instead.
        """
        s_raw, _, a = as_votes(votes, self.n_classes)
        _, (s,) = factorize(s_raw)
        S = int(s.max()) + 1 if len(s) else 0
        counts = np.bincount(s * self.n_classes + a, minlength=S * self.n_classes).reshape(S, self.n_classes)
        self.fit_prior(counts)
        return super().fit(votes, gold=gold, evidence=evidence)

