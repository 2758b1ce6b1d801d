"""Clump boxes: cluster the boxes volunteers drew, then say how likely each cluster is a real clump.

References: Dickinson et al. 2022, MNRAS 517, 5882 ("Galaxy Zoo: Clump Scout", the BoxAggregator,
which builds on Branson, Van Horn & Perona 2017, CVPR, "Lean Crowdsourcing"); Zooniverse's
``panoptes_aggregation`` ``shape_reducer_dbscan`` with the IoU metric; "Modeling with the Crowd"
(2019) for the per-annotator miss / false-mark rates with conjugate priors.

Per subject (boxes ``x, y, width, height`` in pixels, x/y the top-left corner)
-------------------------------------------------------------------------------
1. Cluster with distance ``1 - IoU`` by agglomerative linkage (``average`` by default, SciPy), cut at
   ``1 - iou_threshold``. Two boxes drawn by the same volunteer get an effectively infinite distance,
   so a cluster holds at most one box per volunteer (a volunteer marks each clump once).
2. Consensus box: the per-corner median of the members (robust to one sloppy box); ``spread``: the
   mean ``1 - IoU`` between members and the consensus (0 = everybody drew the same box).
3. Probability that the clump is real. Every volunteer who *saw* the subject is a witness for every
   candidate cluster on it: those who drew a box in it vote for, those who drew nothing there
   against. Volunteer u misses a fully visible clump with rate mu_u (Beta prior); clumps differ in
   visibility v (a grid, weights learned), so u draws a real clump with probability q = v (1 - mu_u).
   A candidate that is *not* a clump exists because one volunteer drew a spurious box there (the
   "seed", any of the drawers); every other witness's box coincides with it with probability
   f_u = kappa * lambda_u, where lambda_u is u's spurious boxes per subject (Gamma prior) and kappa
   the chance that one spurious box lands on a given candidate. Both hypotheses are conditioned on
   the candidate existing::

       P(boxes | real)     = sum_v w_v prod_{u drew} q  prod_{u did not} (1 - q) / (1 - prod_{u saw} (1 - q))
       P(boxes | not real) = (1 / |D|) sum_{i in D} prod_{u in D, u != i} f_u  prod_{u did not} (1 - f_u)

   with D the drawers. Without the seed term a lone spurious box would count against its own drawer;
   without visibility, a faint clump that a third of the witnesses drew looks like noise.

Across subjects (batch ``fit``): EM over the candidates of all subjects, vectorised with ``bincount``
over (candidate, witness) pairs. E-step: the posterior over {real at each visibility, not real}. M-step
with the priors as pseudo-counts: P(real) and visibility weights from the posteriors; lambda_u =
expected boxes on non-clumps / subjects seen; 1 - mu_u by Newton's method on the concave expected
log-likelihood ``sum_v A_uv log(v s) + B_uv log(1 - v s)`` (A/B: expected boxes drawn / not drawn on
real clumps of visibility v). kappa is *not* fitted: it comes from the geometry of the candidates (the
merge window of a box over the spread of all candidates, :meth:`BoxAggregator.overlap_from`); fitted by
EM it absorbs real clumps that only two volunteers drew and settles on a wrong solution.

Online (``aggregate_subject``): the same E-step for one subject with the current skills, then an
incremental-EM step (Neal & Hinton 1998): that subject's previous sufficient statistics (all additive)
are replaced by its new ones, so re-aggregating a subject after each new classification costs
O(its boxes^2), not O(all data). Starting from a batch fit's ``state_`` with learning off, online gives
the batch's clusters and (to EM tolerance) probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import csr_matrix
from scipy.spatial.distance import squareform

from ._inputs import require_columns

MARK_COLUMNS = ("subject_id", "user_id", "x", "y", "width", "height")
OUT_COLUMNS = ("subject_id", "x", "y", "width", "height", "probability", "n_marks", "spread")
_SAME_USER = 1e6   # distance between two boxes of one volunteer: never merged


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (n, 4) with every box in ``b`` (m, 4), boxes as x, y, width, height -> (n, m)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def cluster_boxes(boxes: np.ndarray, users: np.ndarray, iou_threshold: float = 0.5,
                  method: str = "average") -> np.ndarray:
    """Cluster labels 0..C-1 for boxes (m, 4) drawn by ``users`` (m,) on one subject.

    Labels are numbered in order of each cluster's first box, so they do not depend on SciPy's
    internal numbering.
    """
    m = len(boxes)
    if m == 0:
        return np.zeros(0, dtype=np.int64)
    if m == 1:
        return np.zeros(1, dtype=np.int64)
    d = np.clip(1.0 - iou_matrix(boxes, boxes), 0.0, 1.0)     # rounding can push IoU a hair above 1
    users = np.asarray(users)
    same = users[:, None] == users[None, :]
    d[same] = _SAME_USER
    np.fill_diagonal(d, 0.0)
    z = linkage(squareform(d, checks=False), method=method)
    raw = fcluster(z, t=1.0 - iou_threshold, criterion="distance")
    _, first, inv = np.unique(raw, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inv]


def consensus(boxes: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-corner median box (4,) of ``boxes`` (m, 4) and the spread: mean 1 - IoU(member, consensus)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    x1, y1 = np.median(b[:, 0]), np.median(b[:, 1])
    x2, y2 = np.median(b[:, 0] + b[:, 2]), np.median(b[:, 1] + b[:, 3])
    box = np.array([x1, y1, x2 - x1, y2 - y1])
    spread = float(np.mean(1.0 - iou_matrix(b, box[None])[:, 0]))
    return box, spread


# ---------------------------------------------------------------------- state
@dataclass
class BoxVolunteerState:
    """Sufficient statistics of one volunteer's skill (prior pseudo-counts excluded).

    ``detect = [A_1..A_G, B_1..B_G]``: expected boxes drawn (A) and not drawn (B) on real clumps of each
    visibility level; ``spurious = [expected spurious boxes, subjects seen]``.
    """

    detect: list[float] = field(default_factory=list)
    spurious: list[float] = field(default_factory=lambda: [0.0, 0.0])

    def to_dict(self) -> dict:
        return {"detect": [float(x) for x in self.detect], "spurious": [float(x) for x in self.spurious]}

    @classmethod
    def from_dict(cls, d: Mapping) -> "BoxVolunteerState":
        # Rows written by an earlier model ("miss"/"false_mark") carry no usable statistics: they start
        # fresh and are re-learned at the next batch fit.
        return cls(detect=[float(x) for x in d.get("detect", [])],
                   spurious=[float(x) for x in d.get("spurious", [0.0, 0.0])])


@dataclass
class BoxState:
    """Online state: volunteers' skills, each subject's last contribution, and the population terms.

    ``prior = [expected real candidates, candidates, expected real at visibility 1..G, then the
    candidates' geometry (count, sums of x, y, x^2, y^2, xy and of merge-window areas)]``; ``contributions[subject_id][user_id]`` and
    ``subject_prior[subject_id]`` are what that subject added last time (subtracted when it is
    re-aggregated).
    """

    volunteers: dict[int, BoxVolunteerState] = field(default_factory=dict)
    contributions: dict[int, dict[int, list[float]]] = field(default_factory=dict)
    prior: list[float] = field(default_factory=list)
    subject_prior: dict[int, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"volunteers": {str(k): v.to_dict() for k, v in self.volunteers.items()},
                "contributions": {str(s): {str(u): [float(x) for x in c] for u, c in d.items()}
                                  for s, d in self.contributions.items()},
                "prior": [float(x) for x in self.prior],
                "subject_prior": {str(s): [float(x) for x in v] for s, v in self.subject_prior.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "BoxState":
        return cls(volunteers={int(k): BoxVolunteerState.from_dict(v) for k, v in d.get("volunteers", {}).items()},
                   contributions={int(s): {int(u): [float(x) for x in c] for u, c in v.items()}
                                  for s, v in d.get("contributions", {}).items()},
                   prior=[float(x) for x in d.get("prior", [])],
                   subject_prior={int(s): [float(x) for x in v] for s, v in d.get("subject_prior", {}).items()})


# ---------------------------------------------------------------------- aggregator
class BoxAggregator:
    """Cluster clump boxes and score them with volunteers' detection skills.

    iou_threshold : boxes (clusters, by ``method`` linkage) closer than this IoU are merged.
    method : SciPy linkage method ("average", "complete", "single").
    miss_prior : Beta(a, b) pseudo-counts of a volunteer's miss rate on a fully visible clump.
    spurious_prior : Gamma(a, b) pseudo-counts of a volunteer's spurious boxes per subject
        (a boxes over b subjects).
    overlap : kappa, the chance that one spurious box lands on a given candidate (volunteer u then
        coincides with a spurious candidate with f_u = kappa * lambda_u); None estimates it from the
        geometry of the candidates (see :meth:`overlap_from`).
    real_prior : Beta(a, b) pseudo-counts of the fraction of candidates that are real.
    visibility : grid of clump visibilities v (a real clump is drawn by u with probability
        v * (1 - miss_u)); their weights are learned.
    max_iter, tol : EM stopping rule in ``fit``.

    After ``fit``: ``clusters_`` (DataFrame with :data:`OUT_COLUMNS` plus ``cluster``), ``labels_``
    (n_marks,) cluster index of every mark, ``volunteer_ids_``, ``miss_rate_``, ``spurious_rate_``,
    ``false_mark_rate_`` (= kappa * spurious rate) (V,), ``overlap_`` (kappa), ``real_fraction_``,
    ``visibility_weights_`` (G,), ``state_`` (a :class:`BoxState`), ``n_iter_``.
    """

    def __init__(self, iou_threshold: float = 0.3, method: str = "average", miss_prior=(2.0, 4.0),
                 spurious_prior=(0.5, 5.0), overlap: float | None = None, real_prior=(1.0, 1.0),
                 visibility=(0.2, 0.4, 0.6, 0.8, 1.0), max_iter: int = 200, tol: float = 1e-4):
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        for nm, pr in (("miss_prior", miss_prior), ("spurious_prior", spurious_prior), ("real_prior", real_prior)):
            if len(pr) != 2 or min(pr) <= 0:
                raise ValueError(f"{nm} must be two positive pseudo-counts")
        if miss_prior[0] < 1 or miss_prior[1] < 1:
            raise ValueError("miss_prior pseudo-counts must be >= 1 (keeps the skill update concave)")
        vis = np.asarray(visibility, dtype=np.float64)
        if vis.ndim != 1 or len(vis) == 0 or np.any(vis <= 0) or np.any(vis > 1):
            raise ValueError("visibility must be values in (0, 1]")
        self.iou_threshold = iou_threshold
        self.method = method
        self.miss_prior = tuple(miss_prior)
        self.spurious_prior = tuple(spurious_prior)
        if overlap is not None and not 0.0 < overlap < 1.0:
            raise ValueError(f"overlap must be in (0, 1) or None, got {overlap}")
        self.overlap = overlap
        self.real_prior = tuple(real_prior)
        self.visibility = tuple(float(v) for v in vis)
        self.max_iter = max_iter
        self.tol = tol
        self._v = vis

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("iou_threshold", "method", "miss_prior", "spurious_prior",
                                              "overlap", "real_prior", "visibility", "max_iter", "tol")}

    # ------------------------------------------------------------------ model
    @property
    def _width(self) -> int:
        """Columns of the per-volunteer statistics: A_g, B_g, spurious boxes, subjects seen."""
        return 2 * len(self._v) + 2

    def _sensitivity(self, A: np.ndarray, B: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        """MAP of s = 1 - miss rate per volunteer from (V, G) stats, by Newton's method on
        sum_g A_g log(s v_g) + B_g log(1 - s v_g) + Beta prior (concave for prior counts >= 1)."""
        v = self._v[None, :]
        alpha, beta = self.miss_prior[1], self.miss_prior[0]      # Beta on s = 1 - miss
        a = A.sum(axis=1) + alpha - 1.0
        s = np.clip((A.sum(axis=1) + alpha) / (A.sum(axis=1) + (B * v).sum(axis=1) + alpha + beta), 1e-3, 1 - 1e-3) \
            if start is None else start                  # EM warm-starts from the previous iteration
        for _ in range(30):
            q = 1.0 - s[:, None] * v
            d1 = a / s - (B * v / q).sum(axis=1) - (beta - 1.0) / (1.0 - s)
            d2 = -a / s ** 2 - (B * v ** 2 / q ** 2).sum(axis=1) - (beta - 1.0) / (1.0 - s) ** 2
            s_new = np.clip(s - d1 / np.minimum(d2, -1e-12), 1e-4, 1 - 1e-4)
            if np.max(np.abs(s_new - s), initial=0.0) < 1e-10:
                s = s_new
                break
            s = s_new
        return s

    def _spurious(self, boxes, subjects):
        a, b = self.spurious_prior
        return (a + boxes) / (b + subjects)

    @property
    def _n_pop(self) -> int:
        """Length of the population statistics: [P(real) sum, candidates, P(real, g) sums (G), and the
        candidates' geometry: count, sum x, sum y, sum x^2, sum y^2, sum xy, sum window area]."""
        return 2 + len(self._v) + 7

    def _geometry(self, boxes: np.ndarray) -> np.ndarray:
        """Geometry statistics (7,) of candidate boxes (c, 4) for :meth:`overlap_from`."""
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        cx, cy = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
        # Offsets within which two boxes of this size reach IoU >= t: |d| <= (1 - sqrt(2t / (1 + t))) * size
        # per axis for equal boxes, so the window is (2 * that)^2 * w * h.
        t = self.iou_threshold
        win = (2.0 * (1.0 - math.sqrt(2.0 * t / (1.0 + t)))) ** 2 * b[:, 2] * b[:, 3]
        return np.array([len(b), cx.sum(), cy.sum(), (cx * cx).sum(), (cy * cy).sum(), (cx * cy).sum(), win.sum()])

    def overlap_from(self, geometry) -> float:
        """kappa from candidate geometry: the mean merge window over the density a spurious box has at
        a candidate, modelling spurious boxes as spread like all candidates (a 2-D Gaussian with their
        covariance Sigma, for which E[density at a point drawn from it] = 1 / (4 pi sqrt(det Sigma))).

        Fixed by geometry rather than fitted by EM: fitted, kappa absorbs the real clumps that only two
        volunteers drew and drifts to a self-consistent but wrong solution (benchmarks/aggregation_boxes.py).
        """
        if self.overlap is not None:
            return float(self.overlap)
        n, sx, sy, sxx, syy, sxy, win = (list(geometry) + [0.0] * 7)[:7]
        if n < 3:
            return 0.01
        mx, my = sx / n, sy / n
        vx, vy, cxy = sxx / n - mx * mx, syy / n - my * my, sxy / n - mx * my
        det = max(vx * vy - cxy * cxy, 1.0)
        return float(np.clip((win / n) / (4.0 * math.pi * math.sqrt(det)), 1e-6, 0.5))

    def _population(self, prior: list[float]) -> tuple[float, np.ndarray, float]:
        """P(real), visibility weights and kappa from the ``prior`` statistics (see :class:`BoxState`)."""
        G = len(self._v)
        p = np.zeros(self._n_pop)
        if prior:
            p[:min(len(prior), self._n_pop)] = list(prior)[:self._n_pop]
        a, b = self.real_prior
        pi = (a + p[0]) / (a + b + p[1])
        w = (1.0 + p[2:2 + G]) / (G + p[0])
        return float(pi), w / w.sum(), self.overlap_from(p[2 + G:])

    def _skills_from(self, stats: np.ndarray, kappa: float):
        G = len(self._v)
        s = self._sensitivity(stats[:, :G], stats[:, G:2 * G])
        lam = self._spurious(stats[:, 2 * G], stats[:, 2 * G + 1])
        return s, lam, np.clip(kappa * lam, 1e-9, 0.5)

    def skills(self, volunteer: BoxVolunteerState | None, state: BoxState | None = None) -> tuple[float, float, float]:
        """(miss rate on a fully visible clump, spurious boxes per subject, coincidence rate f)."""
        st = self._volunteer_stats([volunteer])
        kappa = self._population(state.prior if state else [])[2]
        s, lam, f = self._skills_from(st, kappa)
        return float(1.0 - s[0]), float(lam[0]), float(f[0])

    def _volunteer_stats(self, volunteers) -> np.ndarray:
        G = len(self._v)
        out = np.zeros((len(volunteers), self._width))
        for i, v in enumerate(volunteers):
            if v is not None:
                if len(v.detect) == 2 * G:
                    out[i, :2 * G] = v.detect
                if len(v.spurious) == 2:
                    out[i, 2 * G:] = v.spurious
        return out

    @staticmethod
    def _incidence(pc: np.ndarray, pu: np.ndarray, mk: np.ndarray, U: int, C: int) -> dict:
        """Sparse (volunteer x candidate) incidence of boxes drawn and of witnessed-but-not-drawn, so an
        EM iteration is a few sparse products instead of per-pair arrays."""
        drew = mk > 0
        if U * C <= 65536:              # one subject online: dense is cheaper than building sparse matrices
            Mk, Mu = np.zeros((U, C)), np.zeros((U, C))
            Mk[pu[drew], pc[drew]] = 1.0
            Mu[pu[~drew], pc[~drew]] = 1.0
            MkT, MuT = Mk.T.copy(), Mu.T.copy()
        else:
            Mk = csr_matrix((np.ones(int(drew.sum())), (pu[drew], pc[drew])), shape=(U, C))
            Mu = csr_matrix((np.ones(int((~drew).sum())), (pu[~drew], pc[~drew])), shape=(U, C))
            MkT, MuT = Mk.T.tocsr(), Mu.T.tocsr()
        return {"Mk": Mk, "Mu": Mu, "MkT": MkT, "MuT": MuT, "n_m": np.asarray(MkT.sum(axis=1)).ravel(), "C": C}

    def _e_step(self, inc: dict, s, f, pi, w):
        """Posterior P(real) (C,) and P(real, visibility g) (C, G) of every candidate cluster.

        Real: witness u draws a box with probability q = v_g s_u, conditioned on the candidate existing
        (at least one box). Not real: one box (the "seed", any of the drawers, equally likely) created
        the candidate; every other witness coincides with probability f_u.
        """
        MkT, MuT, n_m, C = inc["MkT"], inc["MuT"], inc["n_m"], inc["C"]
        G = len(self._v)
        logq0 = np.log1p(-np.clip(s[:, None] * self._v[None, :], 0.0, 1 - 1e-12))      # (U, G) log(1 - q)
        drawn = (MkT @ np.log(s))[:, None] + n_m[:, None] * np.log(self._v)[None, :]
        missed = MuT @ logq0
        none = np.minimum(MkT @ logq0 + missed, -1e-12)                               # log P(no box | real, g)
        logj = np.empty((C, G + 1))
        logj[:, :G] = math.log(pi) + np.log(w)[None, :] + drawn + missed - np.log(-np.expm1(none))
        ln = (MkT @ np.log(f) + np.log(np.maximum(MkT @ (1.0 / f), 1e-300)) - np.log(np.maximum(n_m, 1.0))
              + MuT @ np.log1p(-f))
        logj[:, G] = math.log(1.0 - pi) + ln
        m = logj.max(axis=1, keepdims=True)
        post = np.exp(logj - m)
        post /= post.sum(axis=1, keepdims=True)
        return 1.0 - post[:, G], post[:, :G]

    def _pair_stats(self, pc, pu, mk, p, r):
        """Per-pair statistics (n_pairs, 2G + 1): [A_g, B_g, boxes on non-clumps]."""
        G = len(self._v)
        out = np.empty((len(pc), 2 * G + 1))
        out[:, :G] = r[pc] * mk[:, None]
        out[:, G:2 * G] = r[pc] * (1.0 - mk)[:, None]
        out[:, 2 * G] = (1.0 - p[pc]) * mk                        # every box of u on a non-clump, seeds too
        return out

    # ------------------------------------------------------------------ batch
    def fit(self, marks: Any, seen: Any = None) -> "BoxAggregator":
        """Cluster every subject's marks and fit skills by EM.

        marks : DataFrame with ``subject_id, user_id, x, y, width, height`` (or an array (n, 6)).
        seen : DataFrame with ``subject_id, user_id``: everyone who classified the subject, with or
            without marks (markers are added automatically).
        """
        m = _as_marks(marks)
        sv = _as_seen(seen)
        clusters, labels = self._cluster_all(m)
        pairs = self._pairs(clusters, m, labels, sv)
        self._em(clusters, labels, pairs)
        return self

    def _cluster_all(self, m: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        order = np.lexsort((np.arange(len(m)), m["subject_id"].to_numpy()))
        sid = m["subject_id"].to_numpy()[order]
        uid = m["user_id"].to_numpy()[order]
        box = m[["x", "y", "width", "height"]].to_numpy(np.float64)[order]
        labels_sorted = np.empty(len(m), dtype=np.int64)
        starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if len(sid) else np.zeros(0, np.int64)
        ends = np.r_[starts[1:], len(sid)].astype(np.int64)
        offset = 0
        for a, b in zip(starts.tolist(), ends.tolist()):
            lab = cluster_boxes(box[a:b], uid[a:b], self.iou_threshold, self.method)
            labels_sorted[a:b] = lab + offset
            offset += int(lab.max()) + 1
        labels = np.empty(len(m), dtype=np.int64)
        labels[order] = labels_sorted
        clusters = _consensus_all(labels_sorted, sid, box, offset)
        return clusters, labels

    def _pairs(self, clusters: pd.DataFrame, m: pd.DataFrame, labels: np.ndarray, seen: pd.DataFrame) -> dict:
        """(cluster, witness) pairs: every volunteer who saw a cluster's subject, and whether they marked it."""
        witnesses = pd.concat([seen[["subject_id", "user_id"]], m[["subject_id", "user_id"]]]).drop_duplicates()
        user_ids, ucode = np.unique(witnesses["user_id"].to_numpy(np.int64), return_inverse=True)
        wsub = witnesses["subject_id"].to_numpy(np.int64)
        order = np.argsort(wsub, kind="stable")
        wsub, ucode = wsub[order], ucode[order]
        csub = clusters["subject_id"].to_numpy(np.int64)
        lo = np.searchsorted(wsub, csub, side="left")
        hi = np.searchsorted(wsub, csub, side="right")
        n_w = hi - lo
        pc = np.repeat(np.arange(len(csub)), n_w)
        # ragged arange: for each cluster, the indices lo..hi of its subject's witnesses
        idx = np.arange(n_w.sum()) - np.repeat(np.cumsum(n_w) - n_w, n_w) + np.repeat(lo, n_w)
        pu = ucode[idx]
        mu_code = np.searchsorted(user_ids, m["user_id"].to_numpy(np.int64))
        marked_keys = np.unique(labels * len(user_ids) + mu_code)
        marked = np.isin(pc * len(user_ids) + pu, marked_keys)
        n_seen = np.bincount(ucode, minlength=len(user_ids)).astype(np.float64)
        return {"cluster": pc, "user": pu, "marked": marked, "user_ids": user_ids, "n_seen": n_seen,
                "witness_subject": wsub, "witness_user": user_ids[ucode]}

    def _em(self, clusters: pd.DataFrame, labels: np.ndarray, pairs: dict) -> None:
        C, U, G = len(clusters), len(pairs["user_ids"]), len(self._v)
        pc, pu, mk = pairs["cluster"], pairs["user"], pairs["marked"].astype(np.float64)
        inc = self._incidence(pc, pu, mk, U, C)
        n_seen = pairs["n_seen"]
        n_w = np.bincount(pc, minlength=C).astype(np.float64)
        # Start from the share of witnesses who drew the candidate, spread evenly over visibilities.
        p = inc["n_m"] / np.maximum(n_w, 1.0)
        r = np.repeat(p[:, None] / G, G, axis=1)
        geometry = self._geometry(clusters[["x", "y", "width", "height"]].to_numpy(np.float64))
        n_iter, s = 0, None
        for n_iter in range(1, self.max_iter + 1):
            s, lam, f, pi, w, kappa = self._m_step(inc, p, r, n_seen, geometry, s)
            p_new, r = self._e_step(inc, s, f, pi, w)
            delta = float(np.abs(p_new - p).max()) if C else 0.0
            p = p_new
            if delta < self.tol:
                break
        s, lam, f, pi, w, kappa = self._m_step(inc, p, r, n_seen, geometry)
        out = clusters.copy()
        out.insert(5, "probability", p)
        out["cluster"] = np.arange(C)
        self.clusters_ = out[list(OUT_COLUMNS) + ["cluster"]]
        self.labels_ = labels
        self.volunteer_ids_ = pairs["user_ids"]
        self.miss_rate_ = 1.0 - s
        self.spurious_rate_ = lam
        self.false_mark_rate_ = f
        self.overlap_ = kappa
        self.real_fraction_ = float(pi)
        self.visibility_weights_ = w
        self.n_iter_ = n_iter
        self._fitted = (self._pair_stats(pc, pu, mk, p, r), clusters, pc, pairs["user_ids"][pu], p, r,
                        pairs["witness_subject"], pairs["witness_user"])
        self._state = None

    def _m_step(self, inc: dict, p, r, n_seen, geometry, s_start=None):
        A = inc["Mk"] @ r                               # expected boxes drawn on real clumps, (U, G)
        B = inc["Mu"] @ r                               # ... and not drawn
        s = self._sensitivity(np.asarray(A), np.asarray(B), s_start)
        lam = self._spurious(inc["Mk"] @ (1.0 - p), n_seen)
        pi, w, kappa = self._population([float(p.sum()), float(inc["C"]), *r.sum(axis=0).tolist(), *geometry.tolist()])
        return s, lam, np.clip(kappa * lam, 1e-9, 0.5), pi, w, kappa

    @property
    def state_(self) -> BoxState:
        """The fit as a :class:`BoxState` to continue online (built on first access)."""
        if getattr(self, "_state", None) is None:
            if not hasattr(self, "_fitted"):
                raise AttributeError("state_ exists after fit()")
            stats, clusters, pc, users, p, r, wsub, wuser = self._fitted
            csub = clusters["subject_id"].to_numpy(np.int64)
            G = len(self._v)
            # per (subject, volunteer): A_g, B_g, spurious boxes, subjects seen (1 per witnessed subject)
            cols = [f"c{j}" for j in range(2 * G + 1)]
            df = pd.DataFrame(stats, columns=cols)
            df["s"], df["u"] = csub[pc], users
            per = df.groupby(["s", "u"])[cols].sum()
            wit = pd.DataFrame({"s": wsub, "u": wuser}).drop_duplicates().set_index(["s", "u"])
            per = per.reindex(per.index.union(wit.index), fill_value=0.0)
            per["seen"] = 1.0
            state = BoxState()
            for row in per.groupby(level="u").sum().itertuples(name=None):
                vals = list(row[1:])
                state.volunteers[int(row[0])] = BoxVolunteerState(detect=vals[:2 * G], spurious=vals[2 * G:])
            for row in per.itertuples(name=None):
                state.contributions.setdefault(int(row[0][0]), {})[int(row[0][1])] = list(row[1:])
            # population terms per subject: P(real), 1, P(real, g) and the geometry of each candidate
            box = clusters[["x", "y", "width", "height"]].to_numpy(np.float64)
            geo = np.stack([self._geometry(b[None]) for b in box]) if len(box) else np.zeros((0, 7))
            pop = pd.DataFrame(np.column_stack([p, np.ones(len(p)), r, geo]))
            pop["s"] = csub
            pop = pop.groupby("s").sum()
            for row in pop.itertuples(name=None):
                state.subject_prior[int(row[0])] = list(row[1:])
            state.prior = pop.sum(axis=0).tolist()
            self._state = state
        return self._state

    # ------------------------------------------------------------------ online
    def init_state(self) -> BoxState:
        return BoxState()

    def aggregate_subject(self, state: BoxState, subject_id: int, marks: Any, seen_users=(),
                          learn: bool = True) -> pd.DataFrame:
        """Cluster and score one subject with the skills in ``state``; with ``learn``, replace this
        subject's contribution to the skills and population terms (in place).

        marks : (m, 5) [user_id, x, y, width, height] or a DataFrame with those columns.
        seen_users : ids of everyone who classified the subject (markers are added).
        Returns a DataFrame with :data:`OUT_COLUMNS` (one row per cluster).
        """
        arr = marks[["user_id", "x", "y", "width", "height"]].to_numpy(np.float64) \
            if isinstance(marks, pd.DataFrame) else np.asarray(marks, dtype=np.float64).reshape(-1, 5)
        _check_sizes(arr[:, 3:5])
        users = arr[:, 0].astype(np.int64)
        boxes = arr[:, 1:5]
        witnesses = np.unique(np.concatenate([np.asarray(list(seen_users), dtype=np.int64), users]))
        lab = cluster_boxes(boxes, users, self.iou_threshold, self.method)
        C, W, G = (int(lab.max()) + 1 if len(lab) else 0), len(witnesses), len(self._v)
        rows = []
        for c in range(C):
            cb, spread = consensus(boxes[lab == c])
            rows.append((int(subject_id), *cb.tolist(), 0.0, int((lab == c).sum()), spread))
        # E-step with the current skills and population terms, which still include this subject's
        # previous contribution (incremental EM, Neal & Hinton 1998); ``learn`` then swaps it.
        pi, w, kappa = self._population(state.prior)
        s, lam, f = self._skills_from(self._volunteer_stats([state.volunteers.get(u) for u in witnesses.tolist()]), kappa)
        pc = np.repeat(np.arange(C), W)
        pu = np.tile(np.arange(W), C)
        marked = np.zeros((C, W))
        if C:
            marked[lab, np.searchsorted(witnesses, users)] = 1.0
        mk = marked.reshape(-1)
        if C:
            p, r = self._e_step(self._incidence(pc, pu, mk, W, C), s, f, pi, w)
        else:
            p, r = np.zeros(0), np.zeros((0, G))
        if learn:
            st = self._pair_stats(pc, pu, mk, p, r) if C else np.zeros((0, 2 * G + 1))
            per_user = np.zeros((W, self._width))
            np.add.at(per_user[:, :2 * G + 1], pu, st)
            per_user[:, 2 * G + 1] = 1.0                     # this subject was seen once by each witness
            cand = np.array([r_[1:5] for r_ in rows], dtype=np.float64).reshape(-1, 4)
            pop = [float(p.sum()), float(C), *r.sum(axis=0).tolist(), *self._geometry(cand).tolist()]
            self._replace(state, int(subject_id), witnesses, per_user, pop)
        out = pd.DataFrame(rows, columns=list(OUT_COLUMNS))
        out["probability"] = p
        return out

    def _replace(self, state: BoxState, sid: int, witnesses, per_user: np.ndarray, pop: list[float]) -> None:
        G, width = len(self._v), self._width
        old = state.contributions.get(sid, {})
        new = {int(u): per_user[i].tolist() for i, u in enumerate(witnesses.tolist())}
        for u in set(old) | set(new):
            v = state.volunteers.setdefault(u, BoxVolunteerState())
            cur = self._volunteer_stats([v])[0]
            cur += _stats_vector(new.get(u), width) - _stats_vector(old.get(u), width)
            v.detect, v.spurious = cur[:2 * G].tolist(), cur[2 * G:].tolist()
        state.contributions[sid] = new
        n = self._n_pop
        prior = np.zeros(n)
        if state.prior:
            prior[:min(len(state.prior), n)] = state.prior[:n]
        prior += np.asarray(pop) - _stats_vector(state.subject_prior.get(sid), n)
        state.prior = prior.tolist()
        state.subject_prior[sid] = list(pop)


def _consensus_all(labels: np.ndarray, subjects: np.ndarray, boxes: np.ndarray, n_clusters: int) -> pd.DataFrame:
    """:func:`consensus` for every cluster at once: per-corner medians (grouped) and the mean 1 - IoU of
    members with their consensus. Columns ``subject_id, x, y, width, height, n_marks, spread``."""
    corners = pd.DataFrame({"c": labels, "x1": boxes[:, 0], "y1": boxes[:, 1],
                            "x2": boxes[:, 0] + boxes[:, 2], "y2": boxes[:, 1] + boxes[:, 3]})
    med = corners.groupby("c")[["x1", "y1", "x2", "y2"]].median().reindex(range(n_clusters)).to_numpy()
    cbox = np.column_stack([med[:, 0], med[:, 1], med[:, 2] - med[:, 0], med[:, 3] - med[:, 1]])
    mine = cbox[labels]
    iw = np.clip(np.minimum(boxes[:, 0] + boxes[:, 2], mine[:, 0] + mine[:, 2]) - np.maximum(boxes[:, 0], mine[:, 0]), 0, None)
    ih = np.clip(np.minimum(boxes[:, 1] + boxes[:, 3], mine[:, 1] + mine[:, 3]) - np.maximum(boxes[:, 1], mine[:, 1]), 0, None)
    inter = iw * ih
    union = boxes[:, 2] * boxes[:, 3] + mine[:, 2] * mine[:, 3] - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    n = np.bincount(labels, minlength=n_clusters)
    spread = np.bincount(labels, weights=1.0 - iou, minlength=n_clusters) / np.maximum(n, 1)
    subj = np.zeros(n_clusters, dtype=np.int64)
    subj[labels] = subjects
    return pd.DataFrame({"subject_id": subj, "x": cbox[:, 0], "y": cbox[:, 1], "width": cbox[:, 2],
                         "height": cbox[:, 3], "n_marks": n.astype(np.int64), "spread": spread})


def _stats_vector(values, width: int) -> np.ndarray:
    """A stored statistics list as an array of ``width``; a list of another length was written by an
    earlier model and counts as nothing (its subject's contribution is simply re-learned)."""
    if values is None or len(values) != width:
        return np.zeros(width)
    return np.asarray(values, dtype=np.float64)


def _check_sizes(wh: np.ndarray) -> None:
    if not np.all(np.isfinite(wh)) or np.any(wh < 0):
        raise ValueError("box width and height must be finite and >= 0")


def _as_marks(marks: Any) -> pd.DataFrame:
    if isinstance(marks, pd.DataFrame):
        require_columns(marks, MARK_COLUMNS, "marks")
        m = marks[list(MARK_COLUMNS)].copy()
    else:
        m = pd.DataFrame(np.asarray(marks, dtype=np.float64).reshape(-1, 6), columns=list(MARK_COLUMNS))
    m["subject_id"] = m["subject_id"].astype(np.int64)
    m["user_id"] = m["user_id"].astype(np.int64)
    _check_sizes(m[["width", "height"]].to_numpy(np.float64))
    return m.reset_index(drop=True)


def _as_seen(seen: Any) -> pd.DataFrame:
    if seen is None:
        return pd.DataFrame({"subject_id": np.zeros(0, np.int64), "user_id": np.zeros(0, np.int64)})
    if isinstance(seen, pd.DataFrame):
        return seen[["subject_id", "user_id"]].astype(np.int64)
    arr = np.asarray(seen, dtype=np.int64).reshape(-1, 2)
    return pd.DataFrame(arr, columns=["subject_id", "user_id"])
