"""The contract every vote aggregator in :data:`aggregation.AGGREGATORS` follows.

An aggregator turns a question's votes ``(subject_id, user_id, answer)`` into a posterior over the
question's K answers for every subject, and decides when a subject can retire. It works in two ways
that give the same numbers on the same ordered votes (tested for every registered aggregator):

online
    ``observe(subject, volunteer, answer)`` updates one :class:`~aggregation.state.SubjectState` and
    one :class:`~aggregation.state.VolunteerState` in O(1); ``update(state, votes)`` loops it over an
    :class:`~aggregation.state.AggregatorState`. This is what the platform calls per classification.
batch
    ``replay(votes, gold, evidence, volunteers)`` computes, vectorised, exactly what
    ``update(AggregatorState(volunteers=volunteers), votes)`` would, after gold and evidence are set
    (evidence is added before any vote). ``fit(votes, gold, evidence)`` is the periodic re-aggregation;
    for aggregators without a separate batch estimator it *is* a replay from scratch.

Parameters go in ``__init__`` only; ``fit`` returns ``self`` and sets ``result_`` (a
:class:`~aggregation.state.Result`), ``state_`` (its :class:`~aggregation.state.AggregatorState`),
``subject_ids_`` (S,) and ``posterior_`` (S, K), plus model-specific learned attributes.

Order of operations for one vote (as in Space Warps' ``SWAP.py``): the subject is updated with the
volunteer's skill *as it is before this vote*, then retirement is checked, then, if the subject is
gold, the volunteer learns from it. Votes on a retired subject are counted in ``n_votes`` but change
nothing else (the platform would not have shown it).
"""
from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import numpy as np

from ._arrays import Groups
from ._inputs import as_evidence, as_gold, as_votes
from .retirement import (ACTIVE, CODE_NAMES, CODES, EXPERT_QUEUE, VOTE_CAP, budget_codes, budget_reason,
                         check_budget_params)
from .state import AggregatorState, Result, SubjectState, VolunteerState


class VoteAggregator:
    """Base class; see the module docstring for the contract. Subclasses implement the ``_`` hooks."""

    name: ClassVar[str] = ""
    #: whether beliefs are log posteriors (SWAP, Dawid-Skene) or vote counts (majority, vote_fraction)
    log_beliefs: ClassVar[bool] = True
    #: whether non-volunteer evidence (the machine) can be added
    accepts_evidence: ClassVar[bool] = True
    #: whether volunteers learn from gold subjects
    learns_from_gold: ClassVar[bool] = True

    n_classes: int
    min_votes: int
    #: whether evidence (the machine) that decides a subject on its own may retire it before
    #: ``min_votes`` human votes (aggregators that accept evidence take it as a parameter)
    evidence_retires: bool = False
    vote_cap: int | None
    expert_after: int | None

    # ------------------------------------------------------------------ parameters
    def _check_common(self) -> None:
        if int(self.n_classes) < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        check_budget_params(self.min_votes, self.vote_cap, self.expert_after)

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self) -> dict:
        """Constructor parameters (scikit-learn convention)."""
        return {p: getattr(self, p) for p in self._param_names()}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def n_symbols(self) -> int:
        """Number of answers a volunteer can give (the columns of a confusion matrix)."""
        return self.n_classes

    def to_dict(self) -> dict:
        """Parameters and learned global attributes as JSON-ready data (not per-subject state)."""
        return {"name": self.name, "params": _jsonable(self.get_params()), "learned": _jsonable(self._learned())}

    def _learned(self) -> dict:
        return {}

    def _set_learned(self, learned: dict) -> None:
        pass

    # ------------------------------------------------------------------ per-entity online path
    def new_subject(self, gold: int = -1) -> SubjectState:
        """A subject nobody has voted on yet (its belief is the prior)."""
        raise NotImplementedError

    def new_volunteer(self) -> VolunteerState:
        return VolunteerState.zeros(self.n_classes, self.n_symbols)

    def confusion(self, volunteer: VolunteerState) -> np.ndarray | None:
        """The volunteer's confusion matrix as used for their next vote, (K, K), rows the true answer and
        columns the given one; None for aggregators that learn no per-volunteer skill."""
        return None

    def posterior(self, subject: SubjectState) -> np.ndarray:
        """Posterior over the K answers, shape (K,)."""
        return self._posterior(self._belief_row(subject)[None, :])[0]

    def observe(self, subject: SubjectState, volunteer: VolunteerState, answer: int) -> str:
        """Fold one vote into ``subject`` and ``volunteer`` (both updated in place). O(1).

        Returns the subject's retirement reason after the vote ("" while active).
        """
        subject.n_votes += 1
        if subject.reason:
            return subject.reason
        a = int(answer)
        if not 0 <= a < self.n_classes:
            raise ValueError(f"answer {a} is not in 0..{self.n_classes - 1}")
        self._observe_vote(subject, volunteer, a)
        self._maybe_retire(subject)
        if subject.gold >= 0 and self.learns_from_gold:
            volunteer.counts[subject.gold][a] += 1.0
        return subject.reason

    def add_evidence(self, subject: SubjectState, log_likelihood) -> str:
        """Add a non-volunteer term log P(data | true answer), shape (K,), e.g. the machine's vote.

        The subject may retire at once (the GZX human+machine result: confident, well-calibrated
        predictions retire galaxies). Returns the retirement reason.
        """
        if not self.accepts_evidence:
            raise TypeError(f"{self.name} does not accept evidence (it aggregates vote counts only)")
        ll = [float(x) for x in log_likelihood]
        if len(ll) != self.n_classes or not all(math.isfinite(x) for x in ll):
            raise ValueError(f"evidence must be {self.n_classes} finite log-likelihoods")
        if subject.reason:
            return subject.reason
        if not subject.evidence:
            subject.evidence = [0.0] * self.n_classes
        for k in range(self.n_classes):
            subject.evidence[k] += ll[k]
        self._add_evidence(subject, ll)
        self._maybe_retire(subject)
        return subject.reason

    def _maybe_retire(self, subject: SubjectState) -> None:
        if subject.gold >= 0 or subject.reason:
            return
        n = subject.n_counted
        allowed = n >= self.min_votes or (self.evidence_retires and self._evidence_decides(subject))
        reason, label = self._decide_one(subject) if allowed else (ACTIVE, -1)
        if not reason:
            reason = budget_reason(n, self.vote_cap, self.expert_after)
            if reason == VOTE_CAP:
                label = int(np.argmax(self.posterior(subject)))
            elif reason == EXPERT_QUEUE:
                label = -1
        if reason:
            subject.reason, subject.label, subject.retired_at_vote = reason, int(label), n

    def _evidence_decides(self, subject: SubjectState) -> bool:
        """Whether the subject's evidence alone, on a subject nobody has voted on, crosses a threshold."""
        if not subject.evidence:
            return False
        probe = self.new_subject()
        self._add_evidence(probe, list(subject.evidence))
        return bool(self._decide_one(probe)[0])

    # ------------------------------------------------------------------ collections
    def init_state(self) -> AggregatorState:
        return AggregatorState(n_classes=self.n_classes)

    def set_gold(self, state: AggregatorState, gold: Any) -> AggregatorState:
        """Mark subjects as gold standard (creating them if needed). Gold subjects never retire."""
        ids, labels = as_gold(gold, self.n_classes)
        for sid, lab in zip(ids.tolist(), labels.tolist()):
            subj = state.subjects.get(sid)
            if subj is None:
                state.subjects[sid] = self.new_subject(gold=lab)
            else:
                subj.gold = lab
        return state

    def update(self, state: AggregatorState, votes: Any, gold: Any = None) -> AggregatorState:
        """Online update: fold ``votes`` (time-ordered, see :func:`as_votes`) into ``state`` in place.

        O(1) per vote. Returns ``state``.
        """
        if state.n_classes != self.n_classes:
            raise ValueError(f"state has {state.n_classes} classes, aggregator {self.n_classes}")
        if gold is not None:
            self.set_gold(state, gold)
        subjects, volunteers = state.subjects, state.volunteers
        rows = votes.tolist() if isinstance(votes, np.ndarray) else votes
        if hasattr(rows, "itertuples"):
            rows = rows[["subject_id", "user_id", "answer"]].itertuples(index=False, name=None)
        observe = self.observe
        for sid, uid, a in rows:
            subj = subjects.get(sid)
            if subj is None:
                subj = subjects[sid] = self.new_subject()
            vol = volunteers.get(uid)
            if vol is None:
                vol = volunteers[uid] = self.new_volunteer()
            observe(subj, vol, a)
        return state

    def update_evidence(self, state: AggregatorState, evidence: Any) -> AggregatorState:
        """Online: add evidence ``{subject_id: (K,) log-likelihood}`` (or ``(ids, (n, K))``) to ``state``."""
        ids, ll = as_evidence(evidence, self.n_classes)
        for sid, row in zip(ids.tolist(), ll):
            subj = state.subjects.get(sid)
            if subj is None:
                subj = state.subjects[sid] = self.new_subject()
            self.add_evidence(subj, row)
        return state

    # ------------------------------------------------------------------ batch
    def replay(self, votes: Any, gold: Any = None, evidence: Any = None,
               volunteers: dict[int, VolunteerState] | None = None) -> Result:
        """Vectorised equivalent of the online path, from fresh subjects.

        Equals ``update(state, votes)`` where ``state`` starts with copies of ``volunteers``, the
        ``gold`` subjects set and ``evidence`` added (in that order) before the first vote.

        votes : int array of shape (n_votes, 3) [subject_id, user_id, answer], time-ordered.
        gold : {subject_id: label} or int array (n_gold, 2).
        evidence : {subject_id: (K,) log-likelihood} or (ids (n,), (n, K)).
        volunteers : {user_id: VolunteerState} skills to start from (e.g. ``state_.volunteers`` of a fit).
        """
        K = self.n_classes
        s_raw, u_raw, a = as_votes(votes, K)
        g_ids, g_lab = as_gold(gold, K)
        e_ids, e_ll = as_evidence(evidence, K)
        if len(e_ids) and not self.accepts_evidence:
            raise TypeError(f"{self.name} does not accept evidence")
        # One stable sort per id column gives dense codes and the grouping at once (time order is kept
        # inside each group, which is what the sequential semantics need).
        groups = Groups.from_ids(s_raw, g_ids, e_ids)
        subject_ids, s = groups.ids, groups.row_codes
        gs, es = groups.codes_of(g_ids), groups.codes_of(e_ids)
        vol_in = volunteers or {}
        vid = np.fromiter(vol_in.keys(), dtype=np.int64, count=len(vol_in))
        ugroups = Groups.from_ids(u_raw, vid)
        user_ids, u, vu = ugroups.ids, ugroups.row_codes, ugroups.codes_of(vid)
        S, U, L = len(subject_ids), len(user_ids), self.n_symbols
        gold_of = np.full(S, -1, dtype=np.int64)
        gold_of[gs] = g_lab
        evid = np.zeros((S, K))
        np.add.at(evid, es, e_ll)
        base = np.zeros((U, K, L))
        if len(vid):
            base[vu] = np.asarray([v.counts for v in vol_in.values()], dtype=np.float64).reshape(len(vid), K, L)

        u_sorted, a_sorted = u[groups.order], a[groups.order]
        init = self._initial_beliefs(evid)                                   # (S, K)
        belief = self._belief_trajectory(groups, u_sorted, a_sorted, gold_of, base, init, (s, ugroups, a))   # (n, K)

        # Threshold decisions after each vote (respecting min_votes) and before any vote (evidence).
        n_sorted = groups.position
        thr_code, thr_label = self._decide(belief, n_sorted)
        thr_code = np.where(n_sorted >= self.min_votes, thr_code, 0).astype(np.int8)
        thr0_code, thr0_label = self._decide(init, np.zeros(S, dtype=np.int64))
        if self.min_votes > 0 and not self.evidence_retires:
            thr0_code = np.zeros(S, dtype=np.int8)
        bud_code = budget_codes(n_sorted, self.vote_cap, self.expert_after)
        code = np.where(thr_code > 0, thr_code, bud_code).astype(np.int8)
        is_gold = gold_of >= 0
        code[is_gold[groups.codes]] = 0
        thr0_code = np.where(is_gold, 0, thr0_code)

        first = groups.first(code > 0)                       # first retiring sorted row, or -1
        at_start = thr0_code > 0
        first[at_start] = -1
        last = groups.last()
        final_row = np.where(first >= 0, first, last)        # row whose belief is final (-1: none)
        has_row = (final_row >= 0) & ~at_start
        final_belief = init.copy()
        final_belief[has_row] = belief[final_row[has_row]]
        posterior = self._posterior(final_belief)

        reason_code = np.zeros(S, dtype=np.int8)
        label = np.full(S, -1, dtype=np.int64)
        retired_at = np.full(S, -1, dtype=np.int64)
        reason_code[at_start] = thr0_code[at_start]
        label[at_start] = thr0_label[at_start]
        retired_at[at_start] = 0
        r = first >= 0
        reason_code[r] = code[first[r]]
        label[r] = np.where(thr_code[first[r]] > 0, thr_label[first[r]], -1)
        retired_at[r] = n_sorted[first[r]]
        capped = reason_code == CODES[VOTE_CAP]
        label[capped] = np.argmax(posterior[capped], axis=1)

        # Votes counted: up to and including the retiring vote.
        cut = np.where(at_start, 0, np.where(r, retired_at, groups.lengths))
        kept = n_sorted <= cut[groups.codes]
        counts = np.bincount(groups.codes[kept] * K + a_sorted[kept], minlength=S * K).reshape(S, K)

        vol_counts = base.copy()
        if self.learns_from_gold:
            gv = gold_of[groups.codes] >= 0      # gold subjects never retire, so all their votes count
            np.add.at(vol_counts, (u_sorted[gv], gold_of[groups.codes[gv]], a_sorted[gv]), 1.0)

        return Result(subject_ids=subject_ids, posterior=posterior, counts=counts.astype(np.int64),
                      n_votes=groups.lengths.copy(), retired_at_vote=retired_at,
                      reason=CODE_NAMES[reason_code], label=label, gold=gold_of,
                      volunteer_ids=user_ids, volunteer_counts=vol_counts,
                      log_belief=final_belief if self.log_beliefs else None,
                      evidence=evid if len(e_ids) else None)

    def fit(self, votes: Any, gold: Any = None, evidence: Any = None) -> "VoteAggregator":
        """Batch aggregation from scratch; returns ``self`` with ``result_``, ``state_``, ``posterior_``."""
        self._set_result(self.replay(votes, gold=gold, evidence=evidence))
        return self

    def _set_result(self, result: Result) -> None:
        self.result_ = result
        self.subject_ids_ = result.subject_ids
        self.posterior_ = result.posterior
        self._state_cache = None

    @property
    def state_(self) -> AggregatorState:
        """The fitted result as an online state (built on first access: one object per subject)."""
        if getattr(self, "_state_cache", None) is None:
            if not hasattr(self, "result_"):
                raise AttributeError("state_ exists after fit()")
            self._state_cache = self.result_.to_state()
        return self._state_cache

    # ------------------------------------------------------------------ hooks
    def _belief_row(self, subject: SubjectState) -> np.ndarray:
        if self.log_beliefs:
            return np.asarray(subject.log_belief, dtype=np.float64)
        return np.asarray(subject.counts, dtype=np.float64)

    def _initial_beliefs(self, evidence: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _belief_trajectory(self, groups: Groups, u_sorted, a_sorted, gold_of, base, init, time_order) -> np.ndarray:
        """Beliefs after each vote, rows sorted by subject (``groups``), shape (n, K).

        ``u_sorted``/``a_sorted``: volunteer codes and answers in that order; ``time_order``: subject
        codes, the volunteer :class:`Groups` and answers, in the original time order; ``gold_of`` (S,); ``base``
        (U, K, L) starting volunteer counts; ``init`` (S, K) beliefs before any vote.
        """
        raise NotImplementedError

    def _decide(self, belief: np.ndarray, n_counted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _decide_one(self, subject: SubjectState) -> tuple[str, int]:
        raise NotImplementedError

    def _posterior(self, belief: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _observe_vote(self, subject: SubjectState, volunteer: VolunteerState, answer: int) -> None:
        raise NotImplementedError

    def _add_evidence(self, subject: SubjectState, ll: list[float]) -> None:
        for k in range(self.n_classes):
            subject.log_belief[k] += ll[k]


def softmax_rows(log_belief: np.ndarray) -> np.ndarray:
    """Normalise rows of log beliefs, shape (m, K) -> (m, K)."""
    z = log_belief - log_belief.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return p


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


class CountingAggregator(VoteAggregator):
    """Beliefs that are plain vote counts per answer (majority vote, vote fractions): no skill enters."""

    def _initial_beliefs(self, evidence: np.ndarray) -> np.ndarray:
        return np.zeros((len(evidence), self.n_classes))

    def _belief_trajectory(self, groups: Groups, u_sorted, a_sorted, gold_of, base, init, time_order) -> np.ndarray:
        onehot = np.zeros((len(a_sorted), self.n_classes))
        onehot[np.arange(len(a_sorted)), a_sorted] = 1.0
        return groups.cumsum(onehot)
