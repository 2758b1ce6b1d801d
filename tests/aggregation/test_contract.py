"""Contract tests over every registered aggregator (scikit-learn ``test_common.py`` style)."""
from __future__ import annotations

import copy
import inspect
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregation import AGGREGATORS, AggregatorState, VolunteerState, aggregator_from_dict, create_aggregator
from aggregation.retirement import REASONS

from .conftest import simulate_votes

NAMES = sorted(AGGREGATORS)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make(name: str, n_classes: int = 2, **params):
    if name == "swap":
        return create_aggregator(name, **params)
    return create_aggregator(name, n_classes=n_classes, **params)


def classes_for(name: str) -> list[int]:
    return [2] if name == "swap" else [2, 3]


@st.composite
def vote_problems(draw, n_classes: int, with_evidence: bool):
    n_subjects = draw(st.integers(1, 6))
    n_users = draw(st.integers(1, 5))
    n_votes = draw(st.integers(0, 40))
    s = draw(st.lists(st.integers(0, n_subjects - 1), min_size=n_votes, max_size=n_votes))
    u = draw(st.lists(st.integers(0, n_users - 1), min_size=n_votes, max_size=n_votes))
    a = draw(st.lists(st.integers(0, n_classes - 1), min_size=n_votes, max_size=n_votes))
    votes = np.column_stack([np.array(s, dtype=np.int64) * 10 + 3, np.array(u, dtype=np.int64) + 100,
                             np.array(a, dtype=np.int64)]).reshape(-1, 3)
    gold_subjects = draw(st.sets(st.integers(0, n_subjects + 1), max_size=3))
    gold = {g * 10 + 3: draw(st.integers(0, n_classes - 1)) for g in gold_subjects}
    evidence = None
    if with_evidence and draw(st.booleans()):
        ev_subjects = draw(st.sets(st.integers(0, n_subjects - 1), max_size=3))
        evidence = {e * 10 + 3: [draw(st.floats(-4, 4)) for _ in range(n_classes)] for e in ev_subjects}
    volunteers = {}
    for uid in draw(st.sets(st.integers(0, n_users), max_size=2)):
        counts = [[float(draw(st.integers(0, 5))) for _ in range(n_classes)] for _ in range(n_classes)]
        volunteers[uid + 100] = VolunteerState(counts=counts)
    budgets = [{}, {"min_votes": 2}, {"vote_cap": 3}, {"expert_after": 2, "vote_cap": 4}]
    if with_evidence:
        budgets.append({"min_votes": 2, "evidence_retires": True})
    budget = draw(st.sampled_from(budgets))
    return votes, gold, evidence, volunteers, budget


def online(agg, votes, gold, evidence, volunteers) -> AggregatorState:
    state = agg.init_state()
    state.volunteers.update(copy.deepcopy(volunteers))
    agg.set_gold(state, gold)
    if evidence:
        agg.update_evidence(state, evidence)
    return agg.update(state, votes)


def assert_same(agg, state: AggregatorState, result):
    assert sorted(state.subjects) == result.subject_ids.tolist()
    for i, sid in enumerate(result.subject_ids.tolist()):
        subj = state.subjects[sid]
        np.testing.assert_allclose(agg.posterior(subj), result.posterior[i], rtol=1e-9, atol=1e-12)
        assert subj.reason == result.reason[i]
        assert subj.label == result.label[i]
        assert subj.counts == result.counts[i].tolist()
        assert subj.n_votes == result.n_votes[i]
        if subj.reason:
            assert subj.retired_at_vote == result.retired_at_vote[i]
        else:
            assert result.retired_at_vote[i] == -1
    for j, uid in enumerate(result.volunteer_ids.tolist()):
        np.testing.assert_allclose(state.volunteers[uid].counts, result.volunteer_counts[j], atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_online_and_batch_agree_on_the_same_ordered_votes(name):
    for K in classes_for(name):
        @FAST
        @given(problem=vote_problems(K, with_evidence=AGGREGATORS[name].accepts_evidence))
        def check(problem):
            votes, gold, evidence, volunteers, budget = problem
            agg = make(name, K, **budget)
            result = agg.replay(votes, gold=gold, evidence=evidence, volunteers=copy.deepcopy(volunteers))
            state = online(agg, votes, gold, evidence, volunteers)
            assert_same(agg, state, result)

        check()


@pytest.mark.parametrize("name", NAMES)
def test_online_and_batch_agree_on_a_larger_simulation(name, rng):
    K = 2 if name == "swap" else 3
    votes, truth = simulate_votes(rng, 300, 40, 6000, n_classes=K)
    gold = {int(1000 + 7 * i): int(truth[i]) for i in range(0, 300, 7)}
    agg = make(name, K, vote_cap=25)
    result = agg.replay(votes, gold=gold)
    assert_same(agg, online(agg, votes, gold, None, {}), result)
    assert result.retired.any()


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_posteriors_are_probabilities(name, data):
    K = 2 if name == "swap" else data.draw(st.integers(2, 4))
    votes, gold, evidence, volunteers, budget = data.draw(vote_problems(K, AGGREGATORS[name].accepts_evidence))
    agg = make(name, K, **budget)
    for post in (agg.replay(votes, gold=gold, evidence=evidence, volunteers=volunteers).posterior,
                 agg.fit(votes, gold=gold, evidence=evidence).posterior_):
        assert post.shape[1] == K
        assert np.all(np.isfinite(post)) and np.all(post >= 0) and np.all(post <= 1)
        np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_order_independence_when_nothing_is_learned_or_retired(name, rng):
    """With fixed skills, no gold and no retirement, the posterior is a product of per-vote
    likelihoods (or a count), so it cannot depend on vote order."""
    K = 2 if name == "swap" else 3
    votes, _ = simulate_votes(rng, 30, 10, 200, n_classes=K)
    users = np.unique(votes[:, 1])
    volunteers = {int(u): VolunteerState(counts=(np.eye(K) * rng.integers(0, 4) + rng.integers(0, 2, (K, K))).tolist())
                  for u in users}
    params = {"min_votes": 10 ** 6}
    if name == "swap":
        params["floor"] = 1e-300
    agg = make(name, K, **params)
    a = agg.replay(votes, volunteers=volunteers)
    b = agg.replay(votes[rng.permutation(len(votes))], volunteers=volunteers)
    np.testing.assert_allclose(a.posterior, b.posterior, rtol=1e-10)
    assert not a.retired.any()


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_sets_learned_attributes(name, rng):
    K = 2 if name == "swap" else 3
    votes, truth = simulate_votes(rng, 60, 12, 800, n_classes=K)
    gold = {int(1000 + 7 * i): int(truth[i]) for i in range(0, 60, 4)}   # SWAP learns only from gold
    agg = make(name, K)
    assert agg.fit(votes, gold=gold) is agg
    assert agg.posterior_.shape == (60, K) and agg.subject_ids_.shape == (60,)
    assert set(agg.result_.reason.tolist()) <= {""} | set(REASONS)
    assert isinstance(agg.state_, AggregatorState) and len(agg.state_.subjects) == 60
    # Parameters live in __init__ only and are returned unchanged.
    sig = inspect.signature(type(agg).__init__)
    assert set(agg.get_params()) == set(sig.parameters) - {"self"}
    assert (agg.posterior_.argmax(axis=1) == truth).mean() > 0.7


@pytest.mark.parametrize("name", NAMES)
def test_state_and_aggregator_survive_json(name, rng):
    K = 2 if name == "swap" else 3
    votes, truth = simulate_votes(rng, 40, 8, 400, n_classes=K)
    gold = {int(1000 + 7 * i): int(truth[i]) for i in range(0, 40, 5)}
    agg = make(name, K).fit(votes[:200], gold=gold)
    saved = json.loads(json.dumps(agg.to_dict()))
    state_json = json.loads(json.dumps(agg.state_.to_dict()))
    again = aggregator_from_dict(saved)
    s1 = agg.update(copy.deepcopy(agg.state_), votes[200:])
    s2 = again.update(AggregatorState.from_dict(state_json), votes[200:])
    assert s1.to_dict() == s2.to_dict()
    for sid, subj in s1.subjects.items():
        np.testing.assert_allclose(agg.posterior(subj), again.posterior(s2.subjects[sid]))


def test_update_returns_the_same_state_object(rng):
    agg = make("swap")
    state = agg.init_state()
    votes, _ = simulate_votes(rng, 5, 3, 20)
    assert agg.update(state, votes) is state
    assert agg.update(state, [tuple(v) for v in votes.tolist()]) is state


def test_unknown_name_lists_the_known_names():
    with pytest.raises(KeyError) as err:
        create_aggregator("nope")
    for name in NAMES:
        assert name in str(err.value)
    assert {"swap", "dawid_skene", "majority", "vote_fraction"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_rejects_bad_votes(name):
    agg = make(name)
    with pytest.raises(ValueError, match="answer"):
        agg.replay(np.array([[1, 1, 5]]))
    with pytest.raises(ValueError, match="shape"):
        agg.replay(np.array([[1, 1]]))
    with pytest.raises(ValueError, match="gold"):
        agg.replay(np.array([[1, 1, 0]]), gold={1: 7})


@pytest.mark.parametrize("name", [n for n in NAMES if not AGGREGATORS[n].accepts_evidence])
def test_count_aggregators_refuse_evidence(name):
    agg = make(name)
    with pytest.raises(TypeError):
        agg.add_evidence(agg.new_subject(), [0.0, 1.0])
