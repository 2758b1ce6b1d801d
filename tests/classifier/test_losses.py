"""The Dirichlet-multinomial loss against independent computations (scipy's log-gamma, zoobot's code)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gammaln

from classifier.losses import TreeLoss, dirichlet_multinomial_log_prob, tree_neg_log_prob
from classifier.questions import QuestionLayout


def scipy_dm_log_prob(alpha: np.ndarray, k: np.ndarray) -> float:
    """log DM(k | alpha) written out from the definition, float64:
    p(k) = N! Gamma(A) / Gamma(N + A) * prod_i Gamma(k_i + a_i) / (k_i! Gamma(a_i))."""
    n, a = k.sum(), alpha.sum()
    return float(gammaln(n + 1) + gammaln(a) - gammaln(n + a)
                 + np.sum(gammaln(k + alpha) - gammaln(k + 1) - gammaln(alpha)))


def random_case(rng, tree, batch=16, missing=0.3):
    alpha = rng.uniform(1.0, 101.0, (batch, len(tree.columns)))
    votes = rng.integers(0, 45, (batch, len(tree.columns))).astype(float)
    for q, sl in tree.question_slices.items():   # some questions nobody answered
        drop = rng.random(batch) < missing
        votes[drop, sl] = 0
    return alpha, votes


def test_tree_loss_matches_scipy_to_1e6(decals_tree):
    rng = np.random.default_rng(0)
    alpha, votes = random_case(rng, decals_tree, batch=64)
    got = tree_neg_log_prob(torch.tensor(alpha), torch.tensor(votes), QuestionLayout(decals_tree)).numpy()
    for b in range(len(alpha)):
        for qi, sl in enumerate(decals_tree.question_slices.values()):
            want = 0.0 if votes[b, sl].sum() == 0 else -scipy_dm_log_prob(alpha[b, sl], votes[b, sl])
            assert abs(got[b, qi] - want) < 1e-6
    # float32, as used in training, agrees to float32 precision
    got32 = tree_neg_log_prob(torch.tensor(alpha, dtype=torch.float32), torch.tensor(votes, dtype=torch.float32),
                              QuestionLayout(decals_tree)).numpy()
    np.testing.assert_allclose(got32, got, rtol=2e-5, atol=2e-4)


@settings(max_examples=60, deadline=None)
@given(k=st.lists(st.integers(0, 60), min_size=2, max_size=6),
       seed=st.integers(0, 2 ** 16))
def test_single_question_log_prob_matches_scipy(k, seed):
    alpha = np.random.default_rng(seed).uniform(1.0, 101.0, len(k))
    k = np.asarray(k, dtype=float)
    got = float(dirichlet_multinomial_log_prob(torch.tensor(alpha), torch.tensor(k)))
    assert abs(got - scipy_dm_log_prob(alpha, k)) < 1e-6


def test_matches_zoobot_implementation(decals_tree):
    losses = pytest.importorskip("zoobot.pytorch.training.losses")
    rng = np.random.default_rng(1)
    alpha, votes = random_case(rng, decals_tree, batch=32, missing=0.0)
    ours = tree_neg_log_prob(torch.tensor(alpha), torch.tensor(votes), QuestionLayout(decals_tree))
    # zoobot casts the counts to int, and torch.lgamma of an int tensor uses the default float dtype:
    # make that float64 so both sides are exact to 1e-6
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        for qi, sl in enumerate(decals_tree.question_slices.values()):
            theirs = losses.get_dirichlet_neg_log_prob(torch.tensor(alpha[:, sl]), torch.tensor(votes[:, sl]))
            assert torch.allclose(ours[:, qi], theirs, atol=1e-6, rtol=0)
    finally:
        torch.set_default_dtype(default)


def test_probabilities_sum_to_one_over_all_outcomes():
    from classifier.acquisition import vote_outcomes
    alpha = torch.tensor([2.5, 7.0, 1.3], dtype=torch.float64)
    outcomes = torch.tensor(vote_outcomes(3, 12), dtype=torch.float64)
    p = dirichlet_multinomial_log_prob(alpha.expand(len(outcomes), 3), outcomes).exp()
    assert abs(float(p.sum()) - 1.0) < 1e-10


def test_unanswered_questions_are_masked(short_tree):
    loss = TreeLoss(short_tree)
    alpha = torch.full((2, 5), 3.0, requires_grad=True)
    votes = torch.tensor([[3.0, 5.0, 0.0, 0.0, 0.0],                      # spiral question unanswered
                          [1.0, 2.0, 1.0, float("nan"), float("nan")]])  # NaN = not asked
    per_q = loss.per_question(alpha, votes)
    assert per_q[0, 1] == 0 and per_q[1, 1] == 0
    assert (per_q[:, 0] > 0).all()
    per_q.sum().backward()
    assert torch.all(alpha.grad[:, 3:] == 0)                 # no gradient from unanswered questions
    assert torch.all(alpha.grad[:, :3] != 0)
    assert torch.allclose(loss(alpha, votes), per_q.sum(1))


def test_loss_is_smallest_near_the_observed_fractions():
    votes = torch.tensor([[30.0, 10.0]])
    from aggregation.tree import DecisionTree
    tree = DecisionTree.from_dict({"questions": [{"name": "q", "answers": ["a", "b"]}]})
    loss = TreeLoss(tree)
    total = 40.0
    fracs = torch.linspace(0.05, 0.95, 91)
    alphas = torch.stack([fracs * total, (1 - fracs) * total], 1)
    vals = loss(alphas, votes.expand(91, 2))
    assert abs(float(fracs[vals.argmin()]) - 0.75) < 0.02
