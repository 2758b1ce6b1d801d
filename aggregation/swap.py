"""SWAP: the Space Warps Analysis Pipeline for yes/no questions, as used by Galaxy Zoo Express.

References: Marshall et al. 2016, MNRAS 455, 1171 ("Space Warps I", sec. 4); Beck et al. 2018, MNRAS
476, 5516 ("Galaxy Zoo Express"); the SWAP code, github.com/drphilmarshall/SpaceWarps
(``analysis/swap/agent.py``, ``subject.py``, ``config.py``).

Model
-----
Each volunteer ("agent") has a two-number confusion matrix (Marshall+2016 eq. 1)::

    PL = P("yes" | yes)      PD = P("no" | no)

For one vote C on a subject with current probability p = P(yes), Bayes' rule gives (Marshall+2016
eqs. 2-3; ``subject.py: was_described``)::

    P(yes | "yes") = PL p / (PL p + (1 - PD)(1 - p))
    P(yes | "no")  = (1 - PL) p / ((1 - PL) p + PD (1 - p))

i.e. the log-odds gain ``log(PL / (1 - PD))`` for "yes" and ``log((1 - PL) / PD)`` for "no". After each
update p is floored at ``floor`` (SWAP ``pmin = 2e-8``), so a subject can always recover.

Skills are learned from gold-standard (training) subjects only (Marshall+2016 eq. 4; ``agent.py:
heard``)::

    PL = (PL0 * N0 + #("yes" on yes-gold)) / (N0 + #(yes-gold seen)),   capped at ``skill_cap``

and the same for PD with no-gold. ``N0`` (``pseudo_votes``) is the weight of the initial value in
pseudo-votes; SWAP uses ``N0 = 1 / PL0`` (2 at the GZX default 0.5). Here the skill is kept as integer
counts and the cap is applied when the skill is *used*; SWAP stores the capped value and keeps
averaging into it, which differs only after a volunteer has exceeded the cap and never by more than
the cap's own rounding. Skills are also bounded below by ``1 - skill_cap`` (SWAP relies on the
pseudo-votes for that), so that with ``pseudo_votes=0`` a contrarian gets a finite, strongly negative
weight instead of log(0).

The known pathology (one correct gold vote makes a volunteer "perfect", whose next vote retires a
subject) is guarded three ways: the pseudo-votes (one correct vote moves PL from 0.5 to 2/3, not 1),
the cap (a single vote can move the log-odds by at most log(0.99/0.01) = 4.6), and optionally
``min_training`` (SWAP's ``a_few_at_the_start``: votes of volunteers with fewer gold votes do not move
posteriors) and ``min_votes`` (no threshold retirement before that many votes).

A subject retires when p >= ``detect`` ("detected") or p <= ``reject`` ("rejected"); GZX defaults:
prior 0.3, detection 0.99, rejection 0.004, initial skills 0.5. Gold subjects never retire.

Online and batch
----------------
``observe`` does the update above per vote. ``replay`` computes the same thing vectorised: the gold
votes each volunteer made before each vote are counted with one stable sort by volunteer and an
exclusive cumulative sum (:func:`aggregation._arrays.exclusive_cumsum_by`), giving every vote's PL, PD and log-odds gain; then
per subject the floored running sum ``x_t = max(x_{t-1} + d_t, f)`` is the Lindley recursion, solved in
closed form as ``x_t = S_t - min(0, min_{j<=t}(S_j - f))`` with ``S`` the plain cumulative sum, so one
grouped cumsum and one grouped cummin do it. Retirement is the first vote that crosses a threshold.
"""
from __future__ import annotations

import math

import numpy as np

from ._arrays import Groups, exclusive_cumsum_by
from .base import VoteAggregator
from .retirement import ACTIVE, CODES, DETECTED, REJECTED
from .state import SubjectState, VolunteerState


def logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


class Swap(VoteAggregator):
    """SWAP for one yes/no question (answer 1 = yes, 0 = no). Parameters as in the module docstring.

    prior : P(yes) before any vote.
    detect, reject : retirement thresholds on P(yes).
    initial_pl, initial_pd : PL0 = P("yes"|yes), PD0 = P("no"|no) of a volunteer without gold votes.
    pseudo_votes : N0, the weight of PL0/PD0 in votes.
    skill_cap : upper bound of PL and PD (lower bound 1 - skill_cap).
    floor : lower bound of P(yes) after each update.
    min_training : gold votes a volunteer needs before their votes count.
    min_votes, vote_cap, expert_after, evidence_retires : budget rules, see :mod:`aggregation.retirement`.

    After ``fit``: ``skill_`` (V, 2) with columns [PD, PL] per volunteer in ``volunteer_ids_`` (the
    diagonal of the confusion matrix, indexed by true class), plus the base-class attributes.
    """

    name = "swap"
    n_classes = 2

    def __init__(self, prior: float = 0.3, detect: float = 0.99, reject: float = 0.004,
                 initial_pl: float = 0.5, initial_pd: float = 0.5, pseudo_votes: float = 2.0,
                 skill_cap: float = 0.99, floor: float = 2e-8, min_training: int = 0,
                 min_votes: int = 0, vote_cap: int | None = None, expert_after: int | None = None,
                 evidence_retires: bool = False):
        self.prior = prior
        self.detect = detect
        self.reject = reject
        self.initial_pl = initial_pl
        self.initial_pd = initial_pd
        self.pseudo_votes = pseudo_votes
        self.skill_cap = skill_cap
        self.floor = floor
        self.min_training = min_training
        self.min_votes = min_votes
        self.vote_cap = vote_cap
        self.expert_after = expert_after
        self.evidence_retires = bool(evidence_retires)
        self._check()

    def _check(self) -> None:
        self._check_common()
        if not 0.0 < self.floor < self.prior < 1.0:
            raise ValueError(f"need 0 < floor < prior < 1, got floor={self.floor}, prior={self.prior}")
        if not 0.0 < self.reject < self.detect < 1.0:
            raise ValueError(f"need 0 < reject < detect < 1, got reject={self.reject}, detect={self.detect}")
        if not 0.5 < self.skill_cap < 1.0:
            raise ValueError(f"skill_cap must be in (0.5, 1), got {self.skill_cap}")
        for nm in ("initial_pl", "initial_pd"):
            v = getattr(self, nm)
            if not 0.0 < v < 1.0:
                raise ValueError(f"{nm} must be in (0, 1), got {v}")
        if self.pseudo_votes < 0:
            raise ValueError(f"pseudo_votes must be >= 0, got {self.pseudo_votes}")
        # Thresholds in log-odds, shared by the online and batch paths so both compare the same numbers.
        self._lo_floor = logit(self.floor)
        self._lo_prior = logit(self.prior)
        self._lo_detect = logit(self.detect)
        self._lo_reject = logit(self.reject)

    # ------------------------------------------------------------------ skills
    def skills(self, volunteer: VolunteerState) -> tuple[float, float]:
        """(PL, PD) of a volunteer as used for their next vote."""
        c = volunteer.counts
        n0, cap = self.pseudo_votes, self.skill_cap
        pl = (self.initial_pl * n0 + c[1][1]) / (n0 + c[1][0] + c[1][1]) if n0 + c[1][0] + c[1][1] > 0 else self.initial_pl
        pd = (self.initial_pd * n0 + c[0][0]) / (n0 + c[0][0] + c[0][1]) if n0 + c[0][0] + c[0][1] > 0 else self.initial_pd
        lo_cap = 1.0 - cap
        return min(max(pl, lo_cap), cap), min(max(pd, lo_cap), cap)

    def confusion(self, volunteer: VolunteerState) -> np.ndarray:
        """(2, 2) rows the true answer: [[PD, 1 - PD], [1 - PL, PL]]."""
        pl, pd = self.skills(volunteer)
        return np.array([[pd, 1.0 - pd], [1.0 - pl, pl]])

    def _skills_vec(self, cL, nL, cD, nD) -> tuple[np.ndarray, np.ndarray]:
        n0, cap = self.pseudo_votes, self.skill_cap
        with np.errstate(invalid="ignore", divide="ignore"):
            pl = np.where(n0 + nL > 0, (self.initial_pl * n0 + cL) / (n0 + nL), self.initial_pl)
            pd = np.where(n0 + nD > 0, (self.initial_pd * n0 + cD) / (n0 + nD), self.initial_pd)
        return np.clip(pl, 1.0 - cap, cap), np.clip(pd, 1.0 - cap, cap)

    # ------------------------------------------------------------------ online hooks
    def new_subject(self, gold: int = -1) -> SubjectState:
        return SubjectState(counts=[0, 0], log_belief=[0.0, max(self._lo_prior, self._lo_floor)], gold=gold)

    def _observe_vote(self, subject: SubjectState, volunteer: VolunteerState, answer: int) -> None:
        c = volunteer.counts
        if c[1][0] + c[1][1] + c[0][0] + c[0][1] < self.min_training:
            d = 0.0
        else:
            pl, pd = self.skills(volunteer)
            d = (math.log(pl) - math.log(1.0 - pd)) if answer == 1 else (math.log(1.0 - pl) - math.log(pd))
        lo = subject.log_belief[1] + d
        subject.log_belief[1] = lo if lo > self._lo_floor else self._lo_floor
        subject.counts[answer] += 1

    def _add_evidence(self, subject: SubjectState, ll: list[float]) -> None:
        lo = subject.log_belief[1] - subject.log_belief[0] + (ll[1] - ll[0])
        subject.log_belief[0] = 0.0
        subject.log_belief[1] = max(lo, self._lo_floor)

    def _decide_one(self, subject: SubjectState) -> tuple[str, int]:
        lo = subject.log_belief[1] - subject.log_belief[0]
        if lo >= self._lo_detect:
            return DETECTED, 1
        if lo <= self._lo_reject:
            return REJECTED, 0
        return ACTIVE, -1

    # ------------------------------------------------------------------ batch hooks
    def _initial_beliefs(self, evidence: np.ndarray) -> np.ndarray:
        lo = np.maximum(self._lo_prior + (evidence[:, 1] - evidence[:, 0]), self._lo_floor)
        return np.column_stack([np.zeros(len(lo)), lo])

    def _belief_trajectory(self, groups: Groups, u_sorted, a_sorted, gold_of, base, init, time_order) -> np.ndarray:
        n = len(u_sorted)
        s_t, ugroups, a_t = time_order
        truth = gold_of[s_t]
        gold_votes = truth >= 0
        if gold_votes.any():
            # Gold votes each volunteer made strictly before each vote, counted in time order. Two
            # counters share one int64 (seen in the low 32 bits, correct in the high 32) to halve passes.
            yes, no = truth == 1, truth == 0
            c1 = yes.astype(np.int64) | ((yes & (a_t == 1)).astype(np.int64) << 32)
            c0 = no.astype(np.int64) | ((no & (a_t == 0)).astype(np.int64) << 32)
            b1, b0 = (b[groups.order] for b in exclusive_cumsum_by(ugroups, [c1, c0]))
            low = np.int64(0xFFFFFFFF)
            nL, cL = (b1 & low).astype(np.float64), (b1 >> 32).astype(np.float64)
            nD, cD = (b0 & low).astype(np.float64), (b0 >> 32).astype(np.float64)
        else:
            nL = cL = nD = cD = np.zeros(n)
        if base.any():
            b = base[u_sorted]
            nL = nL + (b[:, 1, 0] + b[:, 1, 1])
            cL = cL + b[:, 1, 1]
            nD = nD + (b[:, 0, 0] + b[:, 0, 1])
            cD = cD + b[:, 0, 0]
        pl, pd = self._skills_vec(cL, nL, cD, nD)
        d = np.where(a_sorted == 1, np.log(pl) - np.log(1.0 - pd), np.log(1.0 - pl) - np.log(pd))
        if self.min_training > 0:
            d = np.where(nL + nD < self.min_training, 0.0, d)
        # Fold the starting log-odds into each subject's first vote so that, while the floor does not
        # bind, the running sum is the same sequence of additions as the online path.
        first = groups.starts[groups.lengths > 0]
        d[first] = init[groups.codes[first], 1] + d[first]
        s = groups.cumsum(d)
        m = np.minimum(groups.cummin(s - self._lo_floor), 0.0)
        lo = s - m
        return np.column_stack([np.zeros(n), lo])

    def _decide(self, belief: np.ndarray, n_counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lo = belief[:, 1] - belief[:, 0]
        code = np.zeros(len(lo), dtype=np.int8)
        label = np.full(len(lo), -1, dtype=np.int64)
        det = lo >= self._lo_detect
        rej = ~det & (lo <= self._lo_reject)
        code[det], label[det] = CODES[DETECTED], 1
        code[rej], label[rej] = CODES[REJECTED], 0
        return code, label

    def _posterior(self, belief: np.ndarray) -> np.ndarray:
        lo = belief[:, 1] - belief[:, 0]
        p = 1.0 / (1.0 + np.exp(-lo))
        return np.column_stack([1.0 - p, p])

    def posterior(self, subject: SubjectState) -> np.ndarray:
        lo = subject.log_belief[1] - subject.log_belief[0]
        p = 1.0 / (1.0 + math.exp(-lo)) if lo > -700 else 0.0
        return np.array([1.0 - p, p])

    # ------------------------------------------------------------------ batch
    def fit(self, votes, gold=None, evidence=None) -> "Swap":
        """Replay all votes in order, learning skills from gold. Sets ``skill_`` (V, 2) = [PD, PL]."""
        super().fit(votes, gold=gold, evidence=evidence)
        c = self.result_.volunteer_counts
        pl, pd = self._skills_vec(c[:, 1, 1], c[:, 1, 0] + c[:, 1, 1], c[:, 0, 0], c[:, 0, 0] + c[:, 0, 1])
        self.volunteer_ids_ = self.result_.volunteer_ids
        self.skill_ = np.column_stack([pd, pl])
        return self
