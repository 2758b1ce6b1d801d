"""Plain, JSON-ready state: one small object per subject and per volunteer, plus the batch result.

The platform stores a :class:`SubjectState` per (subject, question) and a :class:`VolunteerState` per
(volunteer, question) as JSON, loads the two that a classification touches, calls
``aggregator.observe(subject, volunteer, answer)`` (O(1)), and saves them back. Nothing here holds
numpy arrays, so ``json.dumps(state.to_dict())`` always works.

:class:`AggregatorState` is the same data for many subjects at once (dicts keyed by integer id), used by
``aggregator.update(state, votes)`` and produced by batch re-aggregation. :class:`Result` is the batch
output as arrays (one row per subject), convertible to an :class:`AggregatorState`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .retirement import ACTIVE


@dataclass
class SubjectState:
    """What the aggregator knows about one subject for one question.

    ``counts``: votes counted per answer (votes after retirement are not counted), shape (K,).
    ``log_belief``: log posterior over the K true answers up to an additive constant (SWAP and
    Dawid–Skene); empty for count-based aggregators (majority, vote_fraction).
    ``evidence``: sum of the non-volunteer log-likelihood terms added so far (the machine), shape (K,) or
    empty, kept apart so that a human-only posterior can be recovered.
    ``n_votes``: every vote received, including those after retirement.
    ``reason``: "" while active, else one of :data:`aggregation.retirement.REASONS`.
    ``retired_at_vote``: counted votes at retirement (0 when the machine alone retired it); meaningless
    while active. ``label``: the decided answer index, or -1. ``gold``: the known answer, or -1.
    """

    counts: list[int]
    log_belief: list[float] = field(default_factory=list)
    evidence: list[float] = field(default_factory=list)
    n_votes: int = 0
    reason: str = ACTIVE
    retired_at_vote: int = 0
    label: int = -1
    gold: int = -1

    @property
    def retired(self) -> bool:
        return self.reason != ACTIVE

    @property
    def n_counted(self) -> int:
        return int(sum(self.counts))

    def to_dict(self) -> dict:
        return {"counts": [int(c) for c in self.counts], "log_belief": [float(x) for x in self.log_belief],
                "evidence": [float(x) for x in self.evidence], "n_votes": int(self.n_votes),
                "reason": self.reason, "retired_at_vote": int(self.retired_at_vote),
                "label": int(self.label), "gold": int(self.gold)}

    @classmethod
    def from_dict(cls, d: dict) -> "SubjectState":
        return cls(counts=[int(c) for c in d["counts"]], log_belief=[float(x) for x in d.get("log_belief", [])],
                   evidence=[float(x) for x in d.get("evidence", [])], n_votes=int(d.get("n_votes", 0)),
                   reason=str(d.get("reason", ACTIVE)), retired_at_vote=int(d.get("retired_at_vote", 0)),
                   label=int(d.get("label", -1)), gold=int(d.get("gold", -1)))


@dataclass
class VolunteerState:
    """What the aggregator knows about one volunteer (or the machine) for one question.

    ``counts[k][l]``: evidence that the volunteer answers ``l`` when the truth is ``k``, shape (K, L):
    whole votes on gold subjects, or expected counts from an EM fit. The prior pseudo-counts are a
    parameter of the aggregator and are *not* included, so changing the prior never needs a migration.
    """

    counts: list[list[float]]

    @classmethod
    def zeros(cls, n_classes: int, n_symbols: int | None = None) -> "VolunteerState":
        return cls(counts=[[0.0] * (n_symbols or n_classes) for _ in range(n_classes)])

    def to_dict(self) -> dict:
        return {"counts": [[float(x) for x in row] for row in self.counts]}

    @classmethod
    def from_dict(cls, d: dict) -> "VolunteerState":
        return cls(counts=[[float(x) for x in row] for row in d["counts"]])


@dataclass
class AggregatorState:
    """Many subjects and volunteers of one question, keyed by integer id. Updated in place by ``update``."""

    n_classes: int
    subjects: dict[int, SubjectState] = field(default_factory=dict)
    volunteers: dict[int, VolunteerState] = field(default_factory=dict)

    def to_dict(self) -> dict:
        # JSON object keys are strings; ids go back to int in from_dict.
        return {"n_classes": self.n_classes,
                "subjects": {str(k): v.to_dict() for k, v in self.subjects.items()},
                "volunteers": {str(k): v.to_dict() for k, v in self.volunteers.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "AggregatorState":
        return cls(n_classes=int(d["n_classes"]),
                   subjects={int(k): SubjectState.from_dict(v) for k, v in d.get("subjects", {}).items()},
                   volunteers={int(k): VolunteerState.from_dict(v) for k, v in d.get("volunteers", {}).items()})


@dataclass
class Result:
    """Batch output, one row per subject (sorted by id) and one per volunteer.

    Shapes: ``subject_ids`` (S,), ``posterior`` (S, K), ``counts`` (S, K), ``log_belief`` (S, K) or
    None, ``evidence`` (S, K) or None, ``n_votes``/``retired_at_vote``/``label``/``gold`` (S,),
    ``reason`` (S,) of str ("" = active), ``volunteer_ids`` (V,), ``volunteer_counts`` (V, K, L).
    ``retired_at_vote`` is -1 for active subjects.
    """

    subject_ids: np.ndarray
    posterior: np.ndarray
    counts: np.ndarray
    n_votes: np.ndarray
    retired_at_vote: np.ndarray
    reason: np.ndarray
    label: np.ndarray
    gold: np.ndarray
    volunteer_ids: np.ndarray
    volunteer_counts: np.ndarray
    log_belief: np.ndarray | None = None
    evidence: np.ndarray | None = None

    @property
    def retired(self) -> np.ndarray:
        return self.reason != ACTIVE

    def index(self, subject_id: int) -> int:
        i = int(np.searchsorted(self.subject_ids, subject_id))
        if i >= len(self.subject_ids) or self.subject_ids[i] != subject_id:
            raise KeyError(f"subject {subject_id} is not in this result")
        return i

    def subject_state(self, i: int) -> SubjectState:
        """The :class:`SubjectState` of row ``i`` (what the online path would hold)."""
        return SubjectState(
            counts=[int(c) for c in self.counts[i]],
            log_belief=[] if self.log_belief is None else [float(x) for x in self.log_belief[i]],
            evidence=[] if self.evidence is None or not np.any(self.evidence[i]) else [float(x) for x in self.evidence[i]],
            n_votes=int(self.n_votes[i]), reason=str(self.reason[i]),
            retired_at_vote=max(int(self.retired_at_vote[i]), 0), label=int(self.label[i]), gold=int(self.gold[i]))

    def volunteer_state(self, j: int) -> VolunteerState:
        return VolunteerState(counts=[[float(x) for x in row] for row in self.volunteer_counts[j]])

    def to_state(self) -> AggregatorState:
        """All rows as an :class:`AggregatorState` (builds one small object per subject and volunteer)."""
        return AggregatorState(
            n_classes=int(self.posterior.shape[1]),
            subjects={int(s): self.subject_state(i) for i, s in enumerate(self.subject_ids)},
            volunteers={int(v): self.volunteer_state(j) for j, v in enumerate(self.volunteer_ids)})

    def to_frame(self) -> pd.DataFrame:
        """One row per subject: id, ``p0..p{K-1}``, ``n_votes``, ``n_counted``, ``reason``, ``retired_at_vote``, ``label``."""
        out = pd.DataFrame({"subject_id": self.subject_ids})
        for k in range(self.posterior.shape[1]):
            out[f"p{k}"] = self.posterior[:, k]
        out["n_votes"] = self.n_votes
        out["n_counted"] = self.counts.sum(axis=1)
        out["reason"] = self.reason
        out["retired_at_vote"] = self.retired_at_vote
        out["label"] = self.label
        return out
