"""Aggregation along the decision tree."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aggregation import DecisionTree, SubjectState, TreeError, VolunteerState
from aggregation.questions import TreeAggregator


def simulate_tree_votes(tree: DecisionTree, rng, n_subjects=40, n_users=12, accuracy=0.85):
    """Each subject has a true answer per question; volunteers walk the tree answering right w.p. accuracy."""
    truth = {q.name: rng.integers(0, len(q.answers), n_subjects) for q in tree.questions}
    rows = []
    for s in range(n_subjects):
        for u in rng.permutation(n_users):
            q = tree.first
            while q is not None:
                answers = tree[q].answers
                j = truth[q][s] if rng.random() < accuracy else rng.integers(len(answers))
                rows.append((s + 100, int(u), q, answers[j].name))
                q = answers[j].next
    return pd.DataFrame(rows, columns=["subject_id", "user_id", "question", "answer"]), truth


@pytest.mark.parametrize("name", ["gz_decals", "gz2"])
def test_vectorised_reach_equals_the_tree_module(name, rng):
    tree = DecisionTree.builtin(name)
    agg = TreeAggregator(tree)
    post = {q.name: rng.dirichlet(np.ones(len(q.answers)), 20) for q in tree.questions}
    reach = agg.reach(post)
    for i in range(20):
        fractions = {f"{q.name}_{a.name}": post[q.name][i, j] for q in tree.questions for j, a in enumerate(q.answers)}
        expected = tree.reach_probability(fractions)
        np.testing.assert_allclose(reach[i], [expected[q.name] for q in tree.questions], rtol=1e-12)


def test_fit_recovers_answers_and_writes_the_long_table(rng):
    tree = DecisionTree.builtin("gz_decals")
    votes, truth = simulate_tree_votes(tree, rng)
    agg = TreeAggregator(tree).fit(votes)
    first = agg.posterior_["smooth-or-featured"]
    assert (first.argmax(axis=1) == truth["smooth-or-featured"]).mean() > 0.95
    frame = agg.to_frame()
    assert list(frame.columns) == ["subject_id", "question", "answer", "probability", "n_votes"]
    assert len(frame) == 40 * len(tree.columns)
    sums = frame.groupby(["subject_id", "question"])["probability"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, rtol=1e-9)
    # n_votes counts only volunteers who reached the question
    reached = votes.groupby(["subject_id", "question"]).size()
    got = frame.drop_duplicates(["subject_id", "question"]).set_index(["subject_id", "question"])["n_votes"]
    assert got[reached.index].tolist() == reached.tolist()
    assert (got.drop(reached.index) == 0).all()
    # artifact galaxies reach nothing else
    art = truth["smooth-or-featured"] == 2
    assert (agg.reach_[art, 1:] < 0.05).all()


def test_online_update_equals_per_question_replay(rng):
    tree = DecisionTree.builtin("gz2")
    votes, _ = simulate_tree_votes(tree, rng, n_subjects=15, n_users=8)
    agg = TreeAggregator(tree)
    state = agg.update(agg.init_state(), votes)
    for q, arr in agg.encode(votes).items():
        res = agg.aggregators[q].replay(arr)
        for i, sid in enumerate(res.subject_ids.tolist()):
            np.testing.assert_allclose(agg.aggregators[q].posterior(state.questions[q].subjects[sid]), res.posterior[i], rtol=1e-9)


def test_observe_classification_and_subject_retirement():
    tree = DecisionTree.builtin("gz_decals")
    agg = TreeAggregator(tree, params={"consensus": 0.9})
    subject: dict[str, SubjectState] = {}
    path = [("smooth-or-featured", "artifact")]
    summary = None
    for user in range(6):
        summary = agg.observe_classification(subject, {}, path)
    assert summary["posterior"]["smooth-or-featured"]["artifact"] > 0.9
    assert summary["reach"]["how-rounded"] < 0.1 and summary["reason"] == "consensus"
    assert summary["n_votes"]["smooth-or-featured"] == 6
    with pytest.raises(TreeError):
        agg.observe_classification(subject, {}, [("smooth-or-featured", "banana")])


def test_bad_names_and_methods():
    agg = TreeAggregator("gz_decals")
    with pytest.raises(ValueError, match="vote 1: unknown question 'nope'"):
        agg.encode([(1, 1, "smooth-or-featured", "smooth"), (1, 1, "nope", "x")])
    with pytest.raises(ValueError, match="has no answer 'round'"):
        agg.encode([(1, 1, "smooth-or-featured", "round")])
    with pytest.raises(ValueError, match="swap needs exactly 2"):
        TreeAggregator("gz_decals", method="swap")
    binary = TreeAggregator("gz_decals", method={"disk-edge-on": "swap", "has-spiral-arms": "swap"})
    assert binary.aggregators["disk-edge-on"].name == "swap"
    with pytest.raises(TreeError):
        TreeAggregator("gz_decals", question_params={"nope": {}})


def test_unlinked_tree_reaches_every_question():
    tree = DecisionTree.from_dict({"questions": [{"name": "a", "answers": ["x", "y"]},
                                                 {"name": "b", "answers": ["u", "v", "w"]}]})
    agg = TreeAggregator(tree).fit([(1, 1, "a", "x"), (1, 2, "b", "w"), (2, 1, "a", "y")])
    np.testing.assert_array_equal(agg.reach_, np.ones((2, 2)))


def test_tree_aggregator_survives_json(rng):
    import json
    tree = DecisionTree.builtin("gz_decals")
    votes, _ = simulate_tree_votes(tree, rng, n_subjects=20, n_users=6)
    agg = TreeAggregator(tree, params={"consensus": 0.95}, question_params={"bar": {"initial_skill": 0.6}}).fit(votes)
    again = TreeAggregator.from_dict(json.loads(json.dumps(agg.to_dict())))
    assert again.aggregators["bar"].initial_skill == 0.6 and again.aggregators["merging"].consensus == 0.95
    for q in ("smooth-or-featured", "bar"):
        np.testing.assert_allclose(again.aggregators[q].posterior(again.aggregators[q].new_subject()),
                                   agg.aggregators[q].posterior(agg.aggregators[q].new_subject()))
    assert agg.answer_index("bar", "weak") == 1
    with pytest.raises(TreeError):
        agg.answer_index("bar", "medium")


def test_difficulty_is_zero_when_settled_one_for_coin_tosses_and_follows_reach():
    tree = DecisionTree.from_dict({"first": "a", "questions": [
        {"name": "a", "answers": [{"name": "x", "next": "b"}, {"name": "y"}]},
        {"name": "b", "answers": ["u", "v", "w"]},
    ]})
    agg = TreeAggregator(tree)
    settled = {"a": np.array([[0.0, 1.0]]), "b": np.array([[1.0, 0.0, 0.0]])}
    coin = {"a": np.array([[0.5, 0.5]]), "b": np.full((1, 3), 1 / 3)}
    assert agg.difficulty(settled, agg.reach(settled))[0] == pytest.approx(0.0, abs=1e-9)
    assert agg.difficulty(coin, agg.reach(coin))[0] == pytest.approx(1.0)
    # b is a coin toss but never reached: only a counts
    unreached = {"a": np.array([[0.0, 1.0]]), "b": np.full((1, 3), 1 / 3)}
    assert agg.difficulty(unreached, agg.reach(unreached))[0] == pytest.approx(0.0, abs=1e-9)
    # a settled on x, so b is reached for sure and its coin toss counts half
    assert agg.difficulty({"a": np.array([[1.0, 0.0]]), "b": np.full((1, 3), 1 / 3)},
                          np.array([[1.0, 1.0]]))[0] == pytest.approx(0.5)


def test_volunteer_accuracy_is_the_mean_of_the_confusion_diagonal():
    tree = DecisionTree.from_dict({"questions": [{"name": "q", "answers": ["yes", "no"]},
                                                 {"name": "r", "answers": ["u", "v", "w"]}]})
    agg = TreeAggregator(tree, method={"q": "swap", "r": "dawid_skene"},
                         question_params={"q": {"initial_pl": 0.6, "initial_pd": 0.8}})
    fresh = agg.aggregators["q"].new_volunteer()
    assert agg.volunteer_accuracy("q", fresh) == pytest.approx(0.7)   # (PL + PD) / 2 before any gold
    assert agg.volunteer_accuracy("r", agg.aggregators["r"].new_volunteer()) == pytest.approx(0.7)  # DS's initial skill
    good, bad = VolunteerState(counts=[[0, 0], [0, 0]]), VolunteerState(counts=[[0, 0], [0, 0]])
    for truth in (0, 1) * 10:
        agg.aggregators["q"].observe(agg.aggregators["q"].new_subject(gold=truth), good, truth)
        agg.aggregators["q"].observe(agg.aggregators["q"].new_subject(gold=truth), bad, 1 - truth)
    assert agg.volunteer_accuracy("q", good) > 0.85 > 0.15 > agg.volunteer_accuracy("q", bad)
    confusion = agg.aggregators["q"].confusion(good)
    assert confusion.shape == (2, 2) and np.allclose(confusion.sum(axis=1), 1.0)
    assert TreeAggregator(tree, method="majority").volunteer_accuracy("r", VolunteerState.zeros(3)) is None
