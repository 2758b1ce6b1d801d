"""Acquisition functions: BALD's defining properties, an independent beta-binomial check, and the
registry contract (every function returns k distinct ids)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import betaln, gammaln

from aggregation.tree import DecisionTree
from classifier.acquisition import (create_acquisition, dm_mixture_information, list_acquisitions, vote_outcomes,
                                    votes_for_budget)

BINARY = DecisionTree.from_dict({"questions": [{"name": "ring", "answers": ["yes", "no"]}]})


def samples_around(alpha: torch.Tensor, spread: float, n_samples: int = 8, seed: int = 0) -> torch.Tensor:
    """MC samples (S, B, A) scattered multiplicatively around ``alpha`` (B, A) by ``spread`` in log space."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n_samples, *alpha.shape, generator=g, dtype=alpha.dtype)
    return (alpha.log() + spread * noise).exp().clamp(1.0, 101.0)


def test_vote_outcomes_enumerate_every_split():
    out = vote_outcomes(3, 5)
    assert out.shape == (math.comb(7, 2), 3)
    assert (out.sum(1) == 5).all() and (out >= 0).all()
    assert len({tuple(r) for r in out}) == len(out)


def test_votes_for_budget_is_the_largest_that_fits():
    for k in (2, 3, 4, 5, 6):
        n = votes_for_budget(k, 40, 4096)
        assert math.comb(n + k - 1, k - 1) <= 4096 or n == 1
        assert n == 40 or math.comb(n + k, k - 1) > 4096


@pytest.mark.parametrize("tree_name", ["short", "decals"])
def test_bald_is_zero_when_all_samples_agree(tree_name, short_tree, decals_tree):
    tree = short_tree if tree_name == "short" else decals_tree
    torch.manual_seed(0)
    one = 1 + 100 * torch.rand(1, 6, len(tree.columns))
    agree = one.expand(5, 6, len(tree.columns)).contiguous()
    assert torch.all(create_acquisition("bald")(agree, tree).abs() < 1e-5)
    assert torch.all(create_acquisition("bald-balanced")(agree, tree) == 0)


def test_bald_grows_with_disagreement(short_tree):
    alpha = torch.tensor([[20.0, 5.0, 2.0, 8.0, 8.0]], dtype=torch.float64)
    bald = create_acquisition("bald")
    values = [float(bald(samples_around(alpha, s), short_tree)) for s in (0.0, 0.1, 0.3, 0.6, 1.0)]
    assert values[0] < 1e-6
    assert all(b > a for a, b in zip(values, values[1:])), values


def test_bald_matches_beta_binomial_brute_force():
    """For a yes/no question the DM is the beta-binomial; compute BALD from scipy's betaln directly."""
    rng = np.random.default_rng(0)
    n_votes = 40
    conc = rng.uniform(1, 101, (6, 4, 2))                      # S=6 samples, B=4 galaxies
    k = np.arange(n_votes + 1)
    log_choose = gammaln(n_votes + 1) - gammaln(k + 1) - gammaln(n_votes - k + 1)
    want = []
    for b in range(conc.shape[1]):
        ps = np.stack([np.exp(log_choose + betaln(k + a, n_votes - k + c) - betaln(a, c)) for a, c in conc[:, b]])
        pbar = ps.mean(0)
        h = lambda p: -np.sum(p * np.log(p))
        want.append(h(pbar) - np.mean([h(p) for p in ps]))
    got = create_acquisition("bald", total_votes=n_votes)(torch.tensor(conc), BINARY).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    # float32 (what a GPU scores with) is close enough to rank galaxies
    got32 = create_acquisition("bald", total_votes=n_votes)(torch.tensor(conc, dtype=torch.float32), BINARY).numpy()
    np.testing.assert_allclose(got32, want, atol=2e-5)


def test_entropy_is_at_least_the_mutual_information():
    conc = samples_around(torch.full((5, 3), 10.0, dtype=torch.float64), 0.5)
    ent, mi = dm_mixture_information(conc, 12)
    assert torch.all(ent >= mi - 1e-9) and torch.all(mi >= 0)


def test_unreachable_questions_do_not_count(decals_tree):
    """A galaxy predicted surely smooth: disagreement about its spiral arms should not make it informative."""
    cols = decals_tree.columns
    torch.manual_seed(0)
    base = torch.full((1, len(cols)), 10.0)
    smooth = base.clone()
    smooth[0, cols.index("smooth-or-featured_smooth")] = 100.0
    smooth[0, cols.index("smooth-or-featured_featured-or-disk")] = 1.0
    smooth[0, cols.index("smooth-or-featured_artifact")] = 1.0
    s = samples_around(smooth, 0.0, n_samples=6).clone()
    sl = decals_tree.question_slices["spiral-arm-count"]
    s[:, :, sl] = samples_around(base[:, sl], 1.0, n_samples=6)   # wild disagreement, unreachable question
    flat = DecisionTree.from_dict({"questions": [{"name": q.name, "answers": list(q.answer_names)}
                                                 for q in decals_tree.questions]})   # no links: all reached
    unweighted = float(create_acquisition("bald", questions=["spiral-arm-count"])(s, flat))
    assert unweighted > 0.1
    assert float(create_acquisition("bald")(s, decals_tree)) < 0.05 * unweighted


def test_balanced_bald_gives_every_question_its_share_of_a_batch(short_tree):
    """Disagreement about smooth-or-featured (three answers, wide) outweighs any about spiral arms (two
    answers, narrow) in nats, so plain BALD's top 4 are all of the first kind; the balanced version takes
    the two most informative galaxies of each question (both questions are reached by every galaxy)."""
    alpha = torch.full((20, len(short_tree.columns)), 10.0, dtype=torch.float64)
    conc = samples_around(alpha, 0.0).clone()
    sf, sp = short_tree.question_slices["smooth-or-featured"], short_tree.question_slices["has-spiral-arms"]
    spreads = torch.linspace(0.5, 1.0, 10, dtype=torch.float64)
    for i in range(10):
        conc[:, i, sf] = samples_around(alpha[i:i + 1, sf], float(spreads[i]), seed=i)[:, 0]
        conc[:, 10 + i, sp] = samples_around(alpha[i:i + 1, sp], float(spreads[i]) / 5, seed=i)[:, 0]
    ids = np.arange(20)
    bald = create_acquisition("bald")
    assert set(bald.select(ids, bald(conc, short_tree), 4)) <= set(range(10))
    balanced = create_acquisition("bald-balanced")
    scores = balanced(conc, short_tree)
    assert scores.shape == (20,) and float(scores.min()) >= 0 and float(scores.max()) == 1
    chosen = set(balanced.select(ids, scores, 4))
    per_question = create_acquisition("bald", questions=["has-spiral-arms"])(conc, short_tree)
    best_spiral = set(np.argsort(-per_question.numpy())[:2])
    best_smooth = set(np.argsort(-bald(conc, short_tree).numpy())[:2])
    assert chosen == best_spiral | best_smooth and best_spiral <= set(range(10, 20))


def test_balanced_bald_shares_follow_how_often_a_question_is_answered():
    """Question 0 is answered by all 100 galaxies, question 1 by half of them: a batch of 30 holds about
    20 of question 0's most informative galaxies and 10 of question 1's, whatever the scale of each."""
    rng = np.random.default_rng(0)
    n = 100
    info, reach = np.zeros((n, 2)), np.zeros((n, 2))
    reach[:, 0], reach[50:, 1] = 1.0, 1.0
    info[:, 0], info[50:, 1] = rng.uniform(0, 10, n), rng.uniform(0, 0.01, 50)
    scores = create_acquisition("bald-balanced").combine(np.concatenate([info, reach], 1))
    top = set(np.argsort(-scores)[:30])
    assert set(np.argsort(-info[:, 0])[:18]) <= top and set(np.argsort(-info[:, 1])[:8]) <= top
    assert len(top & set(np.argsort(-info[:, 0])[:24])) <= 24 and len(top & set(range(50))) < 20
    assert create_acquisition("bald-balanced").combine(np.zeros((3, 4))).tolist() == [0, 0, 0]


def test_margin_prefers_close_calls():
    conc = torch.tensor([[[50.0, 50.0], [90.0, 10.0]]]).expand(3, 2, 2)
    s = create_acquisition("margin")(conc, BINARY)
    assert s[0] > s[1] and abs(float(s[0]) - 1.0) < 1e-6


@pytest.mark.parametrize("name", list_acquisitions())
@pytest.mark.parametrize("diverse", [False, True])
def test_every_acquisition_returns_k_distinct_ids(name, diverse, short_tree):
    torch.manual_seed(0)
    n, k = 40, 7
    conc = 1 + 100 * torch.rand(5, n, len(short_tree.columns))
    fn = create_acquisition(name)
    scores = fn(conc, short_tree)
    assert scores.shape == (n,) and torch.isfinite(scores).all()
    ids = np.array([f"s{i}" for i in range(n)])
    emb = torch.randn(n, 16) if diverse else None
    chosen = fn.select(ids, scores, k, emb)
    assert len(chosen) == k and len(set(chosen)) == k and set(chosen) <= set(ids)
    if not diverse and name != "random":
        top = ids[np.argsort(-scores.numpy())[:k]]
        assert list(chosen) == list(top)


def test_diverse_selection_spreads_over_clusters():
    """Twenty near-duplicates score highest; a diverse batch of 4 takes one of them, not four."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 10
    emb = np.concatenate([centres[0] + 0.01 * rng.normal(size=(20, 8))] +
                         [c + 0.01 * rng.normal(size=(3, 8)) for c in centres[1:]])
    scores = np.concatenate([np.linspace(1.0, 0.9, 20), np.linspace(0.8, 0.5, 9)])
    ids = np.array([f"s{i}" for i in range(len(emb))])
    fn = create_acquisition("random")
    plain = fn.select(ids, scores, 4)
    assert all(int(i[1:]) < 20 for i in plain)                       # four near-duplicates
    diverse = fn.select(ids, scores, 4, emb, pool_factor=8)
    groups = {0 if int(i[1:]) < 20 else 1 + (int(i[1:]) - 20) // 3 for i in diverse}
    assert groups == {0, 1, 2, 3}
    assert diverse[0] == "s0"                                          # best first


def test_unknown_acquisition_lists_known_names():
    with pytest.raises(KeyError) as exc:
        create_acquisition("nope")
    assert all(n in str(exc.value) for n in list_acquisitions())
