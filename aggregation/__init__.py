"""Bayesian aggregation of Galaxy Zoo votes and clump boxes, online and batch (GZX style).

Pure numpy/scipy/pandas: no Django, no torch. The platform calls it after every classification
(online, O(1) per vote) and periodically over the whole vote table (batch, vectorised). Subjects and
volunteers are integer ids; inside one question, answers are indices 0..K-1 in the tree's order
(:meth:`TreeAggregator.answer_index` maps names).

One question (votes)
--------------------
``AGGREGATORS[name](**params)`` (or :func:`create_aggregator`) builds an aggregator for one question:

======================  ===================================================================
``"swap"``              SWAP for yes/no questions (Marshall+2016, Beck+2018)  -> :class:`Swap`
``"dawid_skene"``       confusion matrix per volunteer, Dirichlet priors, EM   -> :class:`DawidSkene`
``"vote_fraction"``     empirical-Bayes vote fractions, full-budget consensus  -> :class:`VoteFraction`
``"majority"``          smoothed vote fractions (baseline)                     -> :class:`MajorityVote`
======================  ===================================================================

All share one surface (:mod:`aggregation.base`)::

    agg = AGGREGATORS["swap"](prior=0.3, detect=0.99, reject=0.004)
    # per classification: two small JSON-able objects, updated in place, O(1)
    subject = SubjectState.from_dict(row) if row else agg.new_subject(gold=-1)
    volunteer = VolunteerState.from_dict(vrow) if vrow else agg.new_volunteer()
    reason = agg.observe(subject, volunteer, answer)      # "" while active, else the retirement reason
    agg.posterior(subject)                                 # (K,) probabilities
    subject.to_dict(), volunteer.to_dict()                 # back to the database
    # periodic batch re-aggregation over the whole table (votes: int array (n, 3), time order)
    agg.fit(votes, gold={subject_id: label}, evidence=machine_evidence)
    agg.result_            # Result: arrays per subject (posterior, reason, label, ...) and per volunteer
    agg.state_             # AggregatorState: the same as per-entity states, to continue online
    agg.replay(votes, gold, evidence, volunteers)          # vectorised, == online on the same ordered votes
    agg.to_dict() / aggregator_from_dict(d)                # parameters + learned globals (class prior, ...)

Retirement reasons (:mod:`aggregation.retirement`): "detected", "rejected", "consensus", "vote_cap",
"expert_queue"; "" means active. Budget rules on every aggregator: ``min_votes``, ``vote_cap``,
``expert_after``. Gold subjects never retire.

The machine (:class:`MachineAgent`) turns model-predicted vote fractions (n, K) into evidence with its
own confusion matrix, fitted on gold and human-retired subjects (:func:`training_labels`)::

    machine = MachineAgent(n_classes=K).fit(fractions[known], labels[known])
    agg.add_evidence(subject, machine.log_likelihood(fractions_of_subject[None])[0])   # online
    agg.fit(votes, gold, evidence=machine.evidence(subject_ids, fractions))            # batch

Whole decision trees: :class:`TreeAggregator` runs one aggregator per question (Dawid–Skene by
default), follows the tree for reach probabilities, and retires a subject when every question it
probably reaches is decided::

    tree_agg = TreeAggregator("gz_decals")
    summary = tree_agg.observe_classification(subject_states, volunteer_states,
                                              [("smooth-or-featured", "smooth"), ("how-rounded", "round"), ...])
    tree_agg.fit(votes_frame).to_frame()     # subject_id, question, answer, probability, n_votes

Clump boxes: :class:`BoxAggregator` (``fit(marks, seen)`` in batch; ``aggregate_subject(state, id,
marks, seen_users)`` online). File formats and the command line: :mod:`aggregation.io`,
``python -m aggregation {swap,tree,boxes} --help``.
"""
from __future__ import annotations

from ._registry import Registry
from .base import VoteAggregator
from .boxes import BoxAggregator, BoxState, BoxVolunteerState, cluster_boxes, consensus, iou_matrix
from .dawid_skene import DawidSkene
from .machine import MachineAgent, training_labels
from .io import InputError
from .majority import MajorityVote
from .questions import TreeAggregator, TreeState
from .retirement import (ACTIVE, CONSENSUS, DETECTED, EXPERT_QUEUE, REASONS, REJECTED, VOTE_CAP)
from .state import AggregatorState, Result, SubjectState, VolunteerState
from .swap import Swap
from .tree import DecisionTree, TreeError
from .vote_fraction import VoteFraction

#: name -> aggregator class; ``AGGREGATORS["nope"]`` raises KeyError listing the known names.
AGGREGATORS = Registry("aggregator")
for _cls in (Swap, DawidSkene, VoteFraction, MajorityVote):
    AGGREGATORS.register(_cls)


def create_aggregator(name: str, **params) -> VoteAggregator:
    """``AGGREGATORS[name](**params)``; an unknown name fails with the list of known names."""
    return AGGREGATORS[name](**params)


def aggregator_from_dict(d: dict) -> VoteAggregator:
    """Rebuild an aggregator saved with ``agg.to_dict()`` (parameters and learned global attributes)."""
    agg = AGGREGATORS[d["name"]](**d.get("params", {}))
    agg._set_learned(d.get("learned", {}))
    return agg


__all__ = [
    "AGGREGATORS", "create_aggregator", "aggregator_from_dict", "VoteAggregator",
    "Swap", "DawidSkene", "VoteFraction", "MajorityVote", "MachineAgent", "training_labels",
    "SubjectState", "VolunteerState", "AggregatorState", "Result",
    "DecisionTree", "TreeError", "TreeAggregator", "TreeState",
    "BoxAggregator", "BoxState", "BoxVolunteerState", "cluster_boxes", "consensus", "iou_matrix",
    "InputError",
    "ACTIVE", "DETECTED", "REJECTED", "CONSENSUS", "VOTE_CAP", "EXPERT_QUEUE", "REASONS",
]
