"""Aggregation along a decision tree: one vote aggregator per question, reach probabilities from the tree.

Votes are ``(subject_id, user_id, question, answer)`` with the tree's names. Each question has its own
aggregator (Dawid–Skene by default), so every volunteer has a confusion matrix *per question*, and a
question's posterior only counts the volunteers who reached it (only they answered it).

The probability that a volunteer reaches a question follows the tree (as in
:meth:`aggregation.tree.DecisionTree.reach_probability`, vectorised over subjects)::

    reach(first) = 1
    reach(q) = sum over answers (p, a) whose ``next`` is q of  reach(p) * P(a | p)

with ``P(a | p)`` the aggregated posterior of question p. Posteriors are conditional on reaching the
question, the Galaxy Zoo convention for vote fractions.

A subject retires as a whole when every question it reaches with probability >= ``reach_threshold`` has
been decided by its aggregator ("consensus"; SWAP's "detected"/"rejected" count as decided), or when
the number of classifications (votes on the first question) reaches ``vote_cap`` / ``expert_after``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ._inputs import require_columns
from .base import VoteAggregator
from .retirement import ACTIVE, CONSENSUS, DETECTED, REJECTED, budget_reason
from .state import AggregatorState, Result, SubjectState, VolunteerState
from .tree import DecisionTree, TreeError

DECIDED = {CONSENSUS, DETECTED, REJECTED}
TREE_VOTE_COLUMNS = ("subject_id", "user_id", "question", "answer")


def _registry():
    from . import AGGREGATORS  # late import: the package registers aggregators after importing us
    return AGGREGATORS


@dataclass
class TreeState:
    """Online state of a whole tree: one :class:`AggregatorState` per question name."""

    questions: dict[str, AggregatorState] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {q: s.to_dict() for q, s in self.questions.items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> "TreeState":
        return cls(questions={q: AggregatorState.from_dict(s) for q, s in d.items()})


class TreeAggregator:
    """Aggregate a whole decision tree.

    tree : a :class:`DecisionTree`, a builtin name ("gz_decals", "gz2") or a path to a tree JSON.
    method : aggregator name for every question, or {question: name} (missing questions use
        "dawid_skene").
    params : constructor parameters for every question's aggregator (not ``n_classes``).
    question_params : {question: parameters} that override ``params`` for that question.
    reach_threshold : questions reached with at least this probability must be decided for the subject
        to retire with "consensus".
    vote_cap, expert_after : budget rules on the number of classifications (first-question votes).

    After ``fit``: ``aggregators_`` {question: fitted aggregator}, ``subject_ids_`` (S,),
    ``posterior_`` {question: (S, K_q)}, ``n_votes_`` {question: (S,)}, ``reach_`` (S, Q) in tree
    question order, ``reason_`` (S,) subject-level retirement reason.
    """

    def __init__(self, tree: DecisionTree | str = "gz_decals", method: str | Mapping[str, str] = "dawid_skene",
                 params: Mapping | None = None, question_params: Mapping[str, Mapping] | None = None,
                 reach_threshold: float = 0.5,
                 vote_cap: int | None = None, expert_after: int | None = None):
        self.tree = tree
        self.method = method
        self.params = params
        self.question_params = question_params
        self.reach_threshold = reach_threshold
        self.vote_cap = vote_cap
        self.expert_after = expert_after
        self.tree_ = _as_tree(tree)
        unknown = set(question_params or {}) - {q.name for q in self.tree_.questions}
        if unknown:
            raise TreeError(f"question_params for unknown questions: {', '.join(sorted(unknown))}")
        self.aggregators = {q.name: self._make(q.name, len(q.answers)) for q in self.tree_.questions}
        self._answer_index = {q.name: {a.name: i for i, a in enumerate(q.answers)} for q in self.tree_.questions}
        self._question_index = {q.name: i for i, q in enumerate(self.tree_.questions)}

    def _make(self, question: str, n_classes: int) -> VoteAggregator:
        method = self.method.get(question, "dawid_skene") if isinstance(self.method, Mapping) else self.method
        params = {**(self.params or {}), **((self.question_params or {}).get(question, {}))}
        cls = _registry()[method]
        if method == "swap":
            if n_classes != 2:
                raise ValueError(f"question {question!r} has {n_classes} answers; swap needs exactly 2")
            return cls(**params)
        return cls(n_classes=n_classes, **params)

    def answer_index(self, question: str, answer: str) -> int:
        """Index of ``answer`` within ``question`` (what the per-question aggregators take)."""
        try:
            return self._answer_index[question][str(answer)]
        except KeyError:
            raise TreeError(f"unknown question/answer {question!r}/{answer!r}") from None

    def to_dict(self) -> dict:
        """Parameters, the tree and every question's learned global attributes, JSON-ready."""
        return {"tree": self.tree_.to_dict(), "method": self.method if isinstance(self.method, str) else dict(self.method),
                "params": dict(self.params or {}), "question_params": {q: dict(p) for q, p in (self.question_params or {}).items()},
                "reach_threshold": self.reach_threshold, "vote_cap": self.vote_cap, "expert_after": self.expert_after,
                "learned": {q: agg.to_dict()["learned"] for q, agg in self.aggregators.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "TreeAggregator":
        agg = cls(DecisionTree.from_dict(d["tree"]), method=d.get("method", "dawid_skene"), params=d.get("params"),
                  question_params=d.get("question_params"), reach_threshold=d.get("reach_threshold", 0.5),
                  vote_cap=d.get("vote_cap"), expert_after=d.get("expert_after"))
        return agg.load_learned(d.get("learned", {}))

    def load_learned(self, learned: Mapping[str, dict]) -> "TreeAggregator":
        """Set each question's learned global attributes (e.g. Dawid-Skene's class prior) as
        ``to_dict()["learned"]`` gives them; questions this tree lacks are ignored. Returns self."""
        for q, attrs in learned.items():
            if q in self.aggregators:
                self.aggregators[q]._set_learned(attrs)
        return self

    # ------------------------------------------------------------------ encoding
    def encode(self, votes: Any) -> dict[str, np.ndarray]:
        """Tree votes -> {question: int array (n_q, 3) [subject_id, user_id, answer index]}, time order kept.

        ``votes``: DataFrame with ``subject_id, user_id, question, answer`` or rows of 4-tuples.
        Unknown question or answer names raise ValueError naming the row.
        """
        df = votes if isinstance(votes, pd.DataFrame) else pd.DataFrame(list(votes), columns=list(TREE_VOTE_COLUMNS))
        require_columns(df, TREE_VOTE_COLUMNS, "tree votes")
        out = {}
        qcol = df["question"].astype(str).to_numpy()
        acol = df["answer"].astype(str).to_numpy()
        known_q = np.isin(qcol, list(self._answer_index))
        if not known_q.all():
            i = int(np.flatnonzero(~known_q)[0])
            raise ValueError(f"vote {i}: unknown question {qcol[i]!r} (questions: {', '.join(self._answer_index)})")
        sid = df["subject_id"].to_numpy(np.int64)
        uid = df["user_id"].to_numpy(np.int64)
        for q, answers in self._answer_index.items():
            rows = np.flatnonzero(qcol == q)
            codes = pd.Series(acol[rows]).map(answers)
            if codes.isna().any():
                i = int(rows[np.flatnonzero(codes.isna().to_numpy())[0]])
                raise ValueError(f"vote {i}: question {q!r} has no answer {acol[i]!r} (answers: {', '.join(answers)})")
            out[q] = np.column_stack([sid[rows], uid[rows], codes.to_numpy(np.int64)])
        return out

    def encode_gold(self, gold: Any) -> dict[str, dict[int, int]]:
        """Gold rows ``subject_id, question, answer`` (names) -> {question: {subject_id: answer index}}."""
        out: dict[str, dict[int, int]] = {q: {} for q in self._answer_index}
        if gold is None:
            return out
        df = gold if isinstance(gold, pd.DataFrame) else pd.DataFrame(list(gold), columns=["subject_id", "question", "answer"])
        for i, (s, q, a) in enumerate(df[["subject_id", "question", "answer"]].itertuples(index=False, name=None)):
            if q not in self._answer_index:
                raise ValueError(f"gold row {i}: unknown question {q!r}")
            if str(a) not in self._answer_index[q]:
                raise ValueError(f"gold row {i}: question {q!r} has no answer {a!r}")
            out[q][int(s)] = self._answer_index[q][str(a)]
        return out

    # ------------------------------------------------------------------ batch
    def fit(self, votes: Any, gold: Any = None, evidence: Mapping[str, Any] | None = None) -> "TreeAggregator":
        """Fit every question's aggregator on its votes. ``evidence``: {question: evidence} (the machine)."""
        per_q = self.encode(votes)
        gold_q = self.encode_gold(gold)
        evidence = evidence or {}
        results: dict[str, Result] = {}
        for q, agg in self.aggregators.items():
            ev = evidence.get(q)
            agg.fit(per_q[q], gold=gold_q[q] or None, evidence=ev)
            results[q] = agg.result_
        self.aggregators_ = self.aggregators
        all_ids = np.unique(np.concatenate([r.subject_ids for r in results.values()] + [np.zeros(0, np.int64)]))
        self.subject_ids_ = all_ids
        S = len(all_ids)
        self.posterior_, self.n_votes_, self.question_reason_ = {}, {}, {}
        for q, r in results.items():
            agg = self.aggregators[q]
            post = np.tile(agg.posterior(agg.new_subject()), (S, 1))
            nv = np.zeros(S, dtype=np.int64)
            reason = np.full(S, ACTIVE, dtype=object)
            idx = np.searchsorted(all_ids, r.subject_ids)
            post[idx], nv[idx], reason[idx] = r.posterior, r.n_votes, r.reason
            self.posterior_[q], self.n_votes_[q], self.question_reason_[q] = post, nv, reason
        self.reach_ = self.reach(self.posterior_)
        self.reason_ = self._subject_reasons(self.reach_, self.question_reason_, self.n_votes_)
        return self

    def reach(self, posterior: Mapping[str, np.ndarray]) -> np.ndarray:
        """Reach probabilities, shape (S, Q) in tree order, from {question: (S, K_q)} posteriors."""
        S = len(next(iter(posterior.values()))) if posterior else 0
        Q = len(self.tree_)
        if not self.tree_.linked:
            return np.ones((S, Q))
        out = np.zeros((S, Q))
        out[:, self._question_index[self.tree_.first]] = 1.0
        for name in self.tree_.topological_order:
            qi = self._question_index[name]
            for j, a in enumerate(self.tree_[name].answers):
                if a.next is not None:
                    out[:, self._question_index[a.next]] += out[:, qi] * posterior[name][:, j]
        return out

    def difficulty(self, posterior: Mapping[str, np.ndarray], reach: np.ndarray) -> np.ndarray:
        """How unsettled each subject still is, (S,) in [0, 1]: the reach-weighted mean of its questions'
        posterior entropies, each divided by log K (0: every question it reaches is certain; 1: every one
        is a coin toss). Measured after enough votes, it marks the galaxies volunteers disagree on, the
        ones worth a skilled volunteer's time. ``posterior`` and ``reach`` as from :meth:`reach`."""
        S = reach.shape[0]
        num, den = np.zeros(S), np.zeros(S)
        for name, qi in self._question_index.items():
            p = np.clip(np.asarray(posterior[name], dtype=np.float64), 1e-12, 1.0)
            k = p.shape[1]
            if k < 2:
                continue
            h = -(p * np.log(p)).sum(axis=1) / np.log(k)
            num += reach[:, qi] * h
            den += reach[:, qi]
        return np.clip(np.divide(num, den, out=np.zeros(S), where=den > 0), 0.0, 1.0)

    def volunteer_accuracy(self, question: str, volunteer: VolunteerState) -> float | None:
        """The volunteer's chance of answering ``question`` correctly, averaged over its true answers
        (the mean of the confusion matrix's diagonal: 1 for a perfect volunteer, 1/K for one who
        guesses), as the question's aggregator would weigh their next vote; None for aggregators
        that learn no skill."""
        confusion = self.aggregators[question].confusion(volunteer)
        return None if confusion is None else float(np.mean(np.diag(confusion)))

    def _subject_reasons(self, reach: np.ndarray, reasons: Mapping[str, np.ndarray], n_votes) -> np.ndarray:
        S = reach.shape[0]
        decided = np.ones(S, dtype=bool)
        for q, qi in self._question_index.items():
            needed = reach[:, qi] >= self.reach_threshold
            decided &= ~needed | np.isin(reasons[q], list(DECIDED))
        first = self.tree_.first or self.tree_.questions[0].name
        n_class = n_votes[first]
        out = np.full(S, ACTIVE, dtype=object)
        out[decided] = CONSENSUS
        for i in np.flatnonzero(~decided):
            out[i] = budget_reason(int(n_class[i]), self.vote_cap, self.expert_after)
        return out

    def to_frame(self) -> pd.DataFrame:
        """Long format, one row per subject and answer (subjects by id, answers in tree order):
        ``subject_id, question, answer, probability, n_votes`` (votes on that question)."""
        cols = [(q.name, a.name, j) for q in self.tree_.questions for j, a in enumerate(q.answers)]
        S, C = len(self.subject_ids_), len(cols)
        prob = np.column_stack([self.posterior_[q][:, j] for q, _, j in cols]) if S else np.zeros((0, C))
        nv = np.column_stack([self.n_votes_[q] for q, _, _ in cols]) if S else np.zeros((0, C), np.int64)
        return pd.DataFrame({"subject_id": np.repeat(self.subject_ids_, C),
                             "question": np.tile(np.array([c[0] for c in cols], dtype=object), S),
                             "answer": np.tile(np.array([c[1] for c in cols], dtype=object), S),
                             "probability": prob.reshape(-1), "n_votes": nv.reshape(-1)})

    # ------------------------------------------------------------------ online
    def init_state(self) -> TreeState:
        return TreeState(questions={q: agg.init_state() for q, agg in self.aggregators.items()})

    def state_from_fit(self) -> TreeState:
        """The fitted per-question states, to continue online after a batch re-aggregation."""
        return TreeState(questions={q: agg.state_ for q, agg in self.aggregators_.items()})

    def update(self, state: TreeState, votes: Any) -> TreeState:
        """Online: fold tree votes (time order) into ``state`` in place; O(1) per vote. Returns ``state``."""
        for q, arr in self.encode(votes).items():
            if len(arr):
                self.aggregators[q].update(state.questions.setdefault(q, self.aggregators[q].init_state()), arr)
        return state

    def observe_classification(self, subject: dict[str, SubjectState], volunteer: dict[str, VolunteerState],
                               answers) -> dict:
        """Fold one classification (its path of ``(question, answer)`` names) into one subject's and one
        volunteer's per-question states (created when missing; updated in place). Returns
        :meth:`summary` of the subject."""
        for q, a in answers:
            if q not in self._answer_index:
                raise TreeError(f"unknown question {q!r}")
            if str(a) not in self._answer_index[q]:
                raise TreeError(f"question {q!r} has no answer {a!r}")
            agg = self.aggregators[q]
            s = subject.setdefault(q, agg.new_subject())
            v = volunteer.setdefault(q, agg.new_volunteer())
            agg.observe(s, v, self._answer_index[q][str(a)])
        return self.summary(subject)

    def summary(self, subject: Mapping[str, SubjectState]) -> dict:
        """One subject: {"posterior": {q: {answer: p}}, "reach": {q: p}, "n_votes": {q: n},
        "difficulty": :meth:`difficulty`, "reason": subject-level retirement reason ("" while active)}."""
        post, nv, reasons = {}, {}, {}
        for q in self.tree_.questions:
            agg = self.aggregators[q.name]
            st = subject.get(q.name) or agg.new_subject()
            post[q.name] = agg.posterior(st)[None, :]
            nv[q.name] = np.array([st.n_votes])
            reasons[q.name] = np.array([st.reason], dtype=object)
        reach = self.reach(post)
        reason = self._subject_reasons(reach, reasons, nv)[0]
        return {"posterior": {q.name: {a.name: float(post[q.name][0, j]) for j, a in enumerate(q.answers)}
                              for q in self.tree_.questions},
                "reach": {q.name: float(reach[0, i]) for i, q in enumerate(self.tree_.questions)},
                "n_votes": {q: int(v[0]) for q, v in nv.items()},
                "difficulty": float(self.difficulty(post, reach)[0]),
                "reason": str(reason)}


def _as_tree(tree) -> DecisionTree:
    if isinstance(tree, DecisionTree):
        return tree
    if isinstance(tree, str) and not tree.endswith(".json"):
        return DecisionTree.builtin(tree)
    return DecisionTree.from_file(tree)

