"""Dawid–Skene aggregation for multi-answer questions: a confusion matrix per volunteer, Dirichlet priors.

Reference: Dawid & Skene 1979, Appl. Statist. 28, 20 ("Maximum likelihood estimation of observer
error-rates using the EM algorithm"), sec. 2.

Model
-----
A subject's true answer is k with prior probability pi_k. Volunteer u answers l with probability
theta_u[k, l] when the truth is k. With Dirichlet pseudo-counts ``beta[k, l]`` (``pseudo_votes`` N0 per
row, ``initial_skill`` p0 of it on the diagonal and the rest spread evenly)::

    theta_u[k, l] = (beta[k, l] + c_u[k, l]) / (N0 + sum_l' c_u[k, l'])

where ``c_u`` is the evidence in :class:`~aggregation.state.VolunteerState` (whole gold votes online,
expected counts after EM). For K = 2 and p0 = 0.5 this is exactly SWAP's PL/PD update.

Online (``observe``): ``log_belief[k] += log theta_u[k, answer]`` (DS eq. 2.5 one factor at a time);
volunteers learn only from gold subjects, as in SWAP. A subject retires with reason "consensus" when
its largest posterior reaches ``consensus``.

Batch (``fit``): EM when gold is scarce (Dawid & Skene 1979, eqs. 2.3-2.5), semi-supervised by clamping
gold subjects' class probabilities to their labels at every E-step:

* M-step (eq. 2.3, 2.4 with pseudo-counts, i.e. MAP under Dirichlet(beta + 1) and Dirichlet(alpha + 1))::

      c_u[k, l] = sum_{votes v by u with answer l} T[s_v, k]
      pi_k = (alpha + sum_i T[i, k]) / (K alpha + S)

* E-step (eq. 2.5)::

      log T[i, k] = log pi_k + e[i, k] + sum_{votes v on i} log theta_{u_v}[k, a_v]     (then normalised)

  where ``e`` is optional evidence (the machine agent).

EM starts from the vote fractions (DS sec. 3) and stops when no T moves by more than ``tol``. After
``fit``, the volunteers' ``c_u`` are the expected counts and each subject's ``log_belief`` is the last
E-step's, so online updates continue from the batch answer. In ``fit`` all votes count and a subject is
marked retired if its final posterior passes the rule (``retired_at_vote`` = its vote count).

``replay`` is the vectorised online path (skills from gold votes made before each vote, counted with a
stable sort by volunteer and an exclusive cumulative sum; per-subject cumulative sums of log theta).
"""
from __future__ import annotations

import math

import numpy as np

from ._arrays import Groups, exclusive_cumsum_by, factorize
from ._inputs import as_evidence, as_gold, as_votes
from .base import VoteAggregator, softmax_rows
from .retirement import ACTIVE, CODE_NAMES, CODES, CONSENSUS, VOTE_CAP, budget_codes
from .state import Result, SubjectState, VolunteerState


class DawidSkene(VoteAggregator):
    """Dawid–Skene with Dirichlet priors; EM in ``fit``, per-vote Bayes in ``observe``/``replay``.

    n_classes : K, the number of answers.
    initial_skill : p0, the prior P(answer k | truth k); the rest of the row is spread evenly.
    pseudo_votes : N0, the weight of that prior row in votes.
    class_prior : fixed prior over the K answers, shape (K,), or None to learn it in ``fit`` (uniform
        until then).
    alpha : Dirichlet pseudo-count for the class prior in ``fit``.
    consensus : posterior needed for retirement with reason "consensus" (None: never).
    max_iter, tol : EM stopping rule.
    min_votes, vote_cap, expert_after, evidence_retires : budget rules, see :mod:`aggregation.retirement`.

    After ``fit``: ``class_prior_`` (K,), ``volunteer_ids_`` (V,), ``skill_`` (V, K, K) confusion
    matrices (rows: truth, columns: answer), ``n_iter_``, ``log_likelihood_``.
    """

    name = "dawid_skene"

    def __init__(self, n_classes: int = 2, initial_skill: float = 0.7, pseudo_votes: float = 2.0,
                 class_prior=None, alpha: float = 1.0, consensus: float | None = 0.99,
                 max_iter: int = 100, tol: float = 1e-6, min_votes: int = 0,
                 vote_cap: int | None = None, expert_after: int | None = None,
                 evidence_retires: bool = False):
        self.n_classes = n_classes
        self.initial_skill = initial_skill
        self.pseudo_votes = pseudo_votes
        self.class_prior = class_prior
        self.alpha = alpha
        self.consensus = consensus
        self.max_iter = max_iter
        self.tol = tol
        self.min_votes = min_votes
        self.vote_cap = vote_cap
        self.expert_after = expert_after
        self.evidence_retires = bool(evidence_retires)
        self._check()

    def _check(self) -> None:
        self._check_common()
        K = int(self.n_classes)
        if not 0.0 < self.initial_skill < 1.0:
            raise ValueError(f"initial_skill must be in (0, 1), got {self.initial_skill}")
        if self.pseudo_votes <= 0:
            raise ValueError("pseudo_votes must be > 0 (the Dirichlet prior keeps theta away from 0)")
        if self.consensus is not None and not 0.5 <= self.consensus < 1.0:
            raise ValueError(f"consensus must be in [0.5, 1) or None, got {self.consensus}")
        off = self.pseudo_votes * (1.0 - self.initial_skill) / (K - 1)
        beta = np.full((K, K), off)
        np.fill_diagonal(beta, self.pseudo_votes * self.initial_skill)
        self._beta = beta
        self._beta_list = beta.tolist()
        self._beta_rowsum = beta.sum(axis=1).tolist()
        if self.class_prior is None:
            prior = np.full(K, 1.0 / K)
        else:
            prior = np.asarray(self.class_prior, dtype=np.float64)
            if prior.shape != (K,) or np.any(prior <= 0):
                raise ValueError(f"class_prior must be {K} positive numbers")
            prior = prior / prior.sum()
        self._set_class_prior(prior)
        self._log_consensus = math.log(self.consensus) if self.consensus is not None else None

    def _set_class_prior(self, prior: np.ndarray) -> None:
        self._log_prior = np.log(prior)
        self._log_prior_list = self._log_prior.tolist()

    def _learned(self) -> dict:
        return {"class_prior": np.exp(self._log_prior).tolist()}

    def _set_learned(self, learned: dict) -> None:
        if "class_prior" in learned:
            self._set_class_prior(np.asarray(learned["class_prior"], dtype=np.float64))
            self.class_prior_ = np.exp(self._log_prior)

    def confusion(self, volunteer: VolunteerState) -> np.ndarray:
        """theta for one volunteer, shape (K, K) (rows: truth, columns: answer)."""
        c = np.asarray(volunteer.counts, dtype=np.float64)
        return (self._beta + c) / (self._beta.sum(axis=1, keepdims=True) + c.sum(axis=1, keepdims=True))

    # ------------------------------------------------------------------ online hooks
    def new_subject(self, gold: int = -1) -> SubjectState:
        return SubjectState(counts=[0] * self.n_classes, log_belief=list(self._log_prior_list), gold=gold)

    def _observe_vote(self, subject: SubjectState, volunteer: VolunteerState, answer: int) -> None:
        beta, rs, lb = self._beta_list, self._beta_rowsum, subject.log_belief
        for k, row in enumerate(volunteer.counts):
            lb[k] += math.log((beta[k][answer] + row[answer]) / (rs[k] + sum(row)))
        subject.counts[answer] += 1

    def _decide_one(self, subject: SubjectState) -> tuple[str, int]:
        if self._log_consensus is None:
            return ACTIVE, -1
        lb = subject.log_belief
        m = max(lb)
        lse = m + math.log(sum(math.exp(x - m) for x in lb))
        if m - lse >= self._log_consensus:
            return CONSENSUS, lb.index(m)
        return ACTIVE, -1

    def posterior(self, subject: SubjectState) -> np.ndarray:
        return softmax_rows(np.asarray(subject.log_belief, dtype=np.float64)[None, :])[0]

    # ------------------------------------------------------------------ batch hooks
    def _initial_beliefs(self, evidence: np.ndarray) -> np.ndarray:
        return self._log_prior[None, :] + evidence

    def _belief_trajectory(self, groups: Groups, u_sorted, a_sorted, gold_of, base, init, time_order) -> np.ndarray:
        n, K = len(u_sorted), self.n_classes
        s_t, ugroups, a_t = time_order
        u_t = ugroups.row_codes
        truth = gold_of[s_t]
        g = truth >= 0
        row_before = np.zeros((n, K))
        cell_before = np.zeros((n, K))
        if g.any():
            # Gold evidence each volunteer had before each vote, counted in time order: per truth row,
            # and in this vote's answer column.
            cols = [(truth == k).astype(np.float64) for k in range(K)]
            row_before = np.column_stack(exclusive_cumsum_by(ugroups, cols))[groups.order]
            cell_before = np.column_stack(exclusive_cumsum_by(Groups(u_t * K + a_t, ugroups.n_groups * K), cols))[groups.order]
        b_cell = base[u_sorted, :, a_sorted] if n else np.zeros((0, K))          # (n, K)
        b_row = base.sum(axis=2)[u_sorted] if n else np.zeros((0, K))            # (n, K)
        num = self._beta[:, a_sorted].T + (b_cell + cell_before)
        den = np.asarray(self._beta_rowsum)[None, :] + (b_row + row_before)
        ll = np.log(num / den)
        first = groups.starts[groups.lengths > 0]
        ll[first] = init[groups.codes[first]] + ll[first]
        return groups.cumsum(ll)

    def _decide(self, belief: np.ndarray, n_counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        code = np.zeros(len(belief), dtype=np.int8)
        label = np.full(len(belief), -1, dtype=np.int64)
        if self._log_consensus is None or len(belief) == 0:
            return code, label
        m = belief.max(axis=1)
        lse = m + np.log(np.exp(belief - m[:, None]).sum(axis=1))
        ok = (m - lse) >= self._log_consensus
        code[ok] = CODES[CONSENSUS]
        label[ok] = np.argmax(belief[ok], axis=1)
        return code, label

    def _posterior(self, belief: np.ndarray) -> np.ndarray:
        return softmax_rows(belief)

    # ------------------------------------------------------------------ EM
    def fit(self, votes, gold=None, evidence=None) -> "DawidSkene":
        """EM over all votes (unsupervised, or semi-supervised with gold clamped). Returns ``self``."""
        K = self.n_classes
        s_raw, u_raw, a = as_votes(votes, K)
        g_ids, g_lab = as_gold(gold, K)
        e_ids, e_ll = as_evidence(evidence, K)
        subject_ids, (s, gs, es) = factorize(s_raw, g_ids, e_ids)
        user_ids, (u,) = factorize(u_raw)
        S, U = len(subject_ids), len(user_ids)
        gold_of = np.full(S, -1, dtype=np.int64)
        gold_of[gs] = g_lab
        is_gold = gold_of >= 0
        evid = np.zeros((S, K))
        np.add.at(evid, es, e_ll)
        ua = u * K + a
        counts = np.bincount(s * K + a, minlength=S * K).reshape(S, K).astype(np.float64)

        # DS sec. 3: start from the vote fractions (a little smoothing keeps subjects without votes uniform).
        T = (counts + 0.5) / (counts.sum(axis=1, keepdims=True) + 0.5 * K)
        T[is_gold] = np.eye(K)[gold_of[is_gold]]
        learn_prior = self.class_prior is None
        log_prior = self._log_prior.copy()
        loglik_prev, n_iter = 0.0, 0
        C = np.zeros((U, K, K))
        for n_iter in range(1, self.max_iter + 1):
            # M-step (DS eqs. 2.3, 2.4) with Dirichlet pseudo-counts.
            for k in range(K):
                C[:, k, :] = np.bincount(ua, weights=T[s, k], minlength=U * K).reshape(U, K)
            log_theta = np.log((self._beta[None] + C) / (self._beta.sum(axis=1)[None, :, None] + C.sum(axis=2, keepdims=True)))
            if learn_prior:
                pk = (self.alpha + T.sum(axis=0)) / (K * self.alpha + S)
                log_prior = np.log(pk)
            # E-step (DS eq. 2.5).
            lt = log_theta.transpose(1, 0, 2).reshape(K, U * K)       # lt[k, u*K + l]
            logT = np.empty((S, K))
            for k in range(K):
                logT[:, k] = np.bincount(s, weights=lt[k][ua], minlength=S)
            logT += log_prior[None, :] + evid
            m = logT.max(axis=1, keepdims=True)
            lse = m[:, 0] + np.log(np.exp(logT - m).sum(axis=1))
            T_new = np.exp(logT - lse[:, None])
            T_new[is_gold] = np.eye(K)[gold_of[is_gold]]
            loglik_prev = float(lse[~is_gold].sum())
            delta = float(np.abs(T_new - T).max()) if S else 0.0
            T = T_new
            if delta < self.tol:
                break
        # Final M-step so skills and beliefs are consistent with the returned T.
        for k in range(K):
            C[:, k, :] = np.bincount(ua, weights=T[s, k], minlength=U * K).reshape(U, K)
        if learn_prior:
            log_prior = np.log((self.alpha + T.sum(axis=0)) / (K * self.alpha + S))
        self._set_class_prior(np.exp(log_prior))
        log_theta = np.log((self._beta[None] + C) / (self._beta.sum(axis=1)[None, :, None] + C.sum(axis=2, keepdims=True)))
        lt = log_theta.transpose(1, 0, 2).reshape(K, U * K)
        logb = np.empty((S, K))
        for k in range(K):
            logb[:, k] = np.bincount(s, weights=lt[k][ua], minlength=S)
        logb += log_prior[None, :] + evid
        posterior = softmax_rows(logb) if S else np.zeros((0, K))
        posterior[is_gold] = np.eye(K)[gold_of[is_gold]]

        n_votes = counts.sum(axis=1).astype(np.int64)
        code, label = self._decide(logb, n_votes)
        allowed = n_votes >= self.min_votes
        if self.evidence_retires and len(e_ids):
            alone, _ = self._decide(log_prior[None, :] + evid, np.zeros(S, dtype=np.int64))
            allowed |= alone > 0
        code = np.where(allowed, code, 0).astype(np.int8)
        bud = budget_codes(n_votes, self.vote_cap, self.expert_after)
        code = np.where(code > 0, code, bud).astype(np.int8)
        code[is_gold] = 0
        label = np.where(code == CODES[CONSENSUS], label, -1)
        label[code == CODES[VOTE_CAP]] = np.argmax(posterior[code == CODES[VOTE_CAP]], axis=1)
        retired_at = np.where(code > 0, n_votes, -1)
        self._set_result(Result(subject_ids=subject_ids, posterior=posterior, counts=counts.astype(np.int64),
                                n_votes=n_votes, retired_at_vote=retired_at, reason=CODE_NAMES[code],
                                label=label, gold=gold_of, volunteer_ids=user_ids, volunteer_counts=C.copy(),
                                log_belief=logb, evidence=evid if len(e_ids) else None))
        self.class_prior_ = np.exp(log_prior)
        self.volunteer_ids_ = user_ids
        self.skill_ = np.exp(log_theta)
        self.n_iter_ = n_iter
        self.log_likelihood_ = loglik_prev
        return self
