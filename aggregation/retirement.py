"""Retirement reasons and the budget rules every aggregator shares.

A subject stops being shown to volunteers ("retires") for one of these reasons:

``detected`` / ``rejected``
    SWAP: the posterior P(yes) crossed the detection threshold upwards or the rejection threshold
    downwards (Marshall et al. 2016, sec. 4.2).
``consensus``
    A multi-answer aggregator is confident enough about one answer (its own threshold).
``vote_cap``
    The subject reached the vote cap while undecided; its label is the current most probable answer.
``expert_queue``
    The subject reached ``expert_after`` votes while undecided and goes to the expert queue; no label.

``min_votes`` forbids the threshold reasons before that many counted votes (a guard against one
over-confident vote retiring a subject). With ``evidence_retires`` (aggregators that accept evidence),
evidence that decides a subject on its own (a calibrated machine classifier, as in Galaxy Zoo Express)
may retire it before that many human votes, with no human vote at all; the decision is still taken on
everything known, the votes included. Gold-standard (training) subjects never retire: they keep
teaching volunteers their skills, as in Space Warps.
"""
from __future__ import annotations

import numpy as np

ACTIVE = ""
DETECTED = "detected"
REJECTED = "rejected"
CONSENSUS = "consensus"
VOTE_CAP = "vote_cap"
EXPERT_QUEUE = "expert_queue"
REASONS = (DETECTED, REJECTED, CONSENSUS, VOTE_CAP, EXPERT_QUEUE)

# Integer codes used inside the vectorised batch paths; 0 means "no decision at this vote".
CODES = {ACTIVE: 0, DETECTED: 1, REJECTED: 2, CONSENSUS: 3, VOTE_CAP: 4, EXPERT_QUEUE: 5}
CODE_NAMES = np.array([ACTIVE, DETECTED, REJECTED, CONSENSUS, VOTE_CAP, EXPERT_QUEUE], dtype=object)


def check_budget_params(min_votes: int, vote_cap: int | None, expert_after: int | None) -> None:
    if min_votes < 0:
        raise ValueError(f"min_votes must be >= 0, got {min_votes}")
    for name, value in (("vote_cap", vote_cap), ("expert_after", expert_after)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be None or >= 1, got {value}")


def budget_reason(n_counted: int, vote_cap: int | None, expert_after: int | None) -> str:
    """The budget reason for an undecided subject with ``n_counted`` votes, or "".

    Whichever limit comes first wins; when both are reached at once the expert queue wins, because
    a subject that is still undecided at its cap is exactly what experts are for.
    """
    if expert_after is not None and n_counted >= expert_after:
        return EXPERT_QUEUE
    if vote_cap is not None and n_counted >= vote_cap:
        return VOTE_CAP
    return ACTIVE


def budget_codes(n_counted: np.ndarray, vote_cap: int | None, expert_after: int | None) -> np.ndarray:
    """Vectorised :func:`budget_reason`: integer codes (see :data:`CODES`) of shape ``n_counted.shape``."""
    out = np.zeros(n_counted.shape, dtype=np.int8)
    if vote_cap is not None:
        out[n_counted >= vote_cap] = CODES[VOTE_CAP]
    if expert_after is not None:
        out[n_counted >= expert_after] = CODES[EXPERT_QUEUE]
    return out
