"""Vote-fraction consensus: golden Beta-binomial predictions and the NPMLE prior."""
from __future__ import annotations

import numpy as np
import pytest

from aggregation import MajorityVote, VoteFraction


def test_flat_prior_majority_probability_by_hand():
    # budget 4, two "yes" of two: p ~ Beta(3, 1); the final count beats 4/2 unless both remaining
    # votes are "no": 1 - E[(1-p)^2] = 1 - 3 B(3, 3) = 1 - 3 * (2! 2! / 5!) = 0.9
    agg = VoteFraction(n_classes=2, budget=4, grid_size=4001)
    pm = agg.majority_probability([[0, 2]])
    assert pm[0, 1] == pytest.approx(0.9, abs=1e-5)
    assert pm[0, 0] == pytest.approx(0.0, abs=1e-12)          # "no" can reach at most 2 of 4: not a majority
    # one "yes": p ~ Beta(2, 1); need >= 2 of the remaining 3 "yes" ->  E[3p^2(1-p) + p^3] = 3*2*B(4,2)... = 0.7
    assert agg.majority_probability([[0, 1]])[0, 1] == pytest.approx(0.7, abs=1e-5)


def test_outcome_is_fixed_once_the_budget_is_spent():
    agg = VoteFraction(n_classes=3, budget=5)
    np.testing.assert_array_equal(agg.majority_probability([[3, 1, 1], [2, 2, 1], [4, 1, 2]]),
                                  [[1, 0, 0], [0, 0, 0], [1, 0, 0]])
    s, v = agg.new_subject(), agg.new_volunteer()
    for a in (0, 1, 0, 1, 2):
        agg.observe(s, v, a)
    assert s.reason == ""          # no majority after the budget: only vote_cap / expert rules apply
    capped = VoteFraction(n_classes=3, budget=5, vote_cap=5)
    s = capped.new_subject()
    for a in (0, 1, 0, 1, 2):
        capped.observe(s, v, a)
    assert s.reason == "vote_cap"


def test_npmle_recovers_a_two_point_population(rng):
    p = np.where(rng.random(3000) < 0.4, 0.15, 0.85)
    yes = rng.binomial(40, p)
    agg = VoteFraction(n_classes=2).fit_prior(np.column_stack([40 - yes, yes]))
    w, g = agg.prior_[1], agg.grid_
    assert w[g < 0.5].sum() == pytest.approx(0.4, abs=0.03)
    assert abs((w * g)[g > 0.5].sum() / w[g > 0.5].sum() - 0.85) < 0.02


def test_learned_prior_retires_earlier_than_flat_at_the_same_agreement(rng):
    p = np.clip(rng.beta(0.4, 0.4, 2000), 0.01, 0.99)
    full = rng.binomial(1, p[:, None], (2000, 40))
    maj = full.sum(axis=1) > 20
    counts = np.column_stack([40 - full.sum(axis=1), full.sum(axis=1)])
    train, test = slice(0, 1000), slice(1000, 2000)
    s = np.repeat(np.arange(1000), 40)
    votes = np.column_stack([s, np.arange(len(s)), full[test].reshape(-1)])
    fitted = VoteFraction(n_classes=2, vote_cap=40).fit_prior(counts[train]).replay(votes)
    flat = VoteFraction(n_classes=2, vote_cap=40).replay(votes)
    for r in (fitted, flat):
        ties = full[test].sum(axis=1) == 20
        agree = (r.label == maj[test].astype(int))[~ties].mean()
        assert agree >= 0.95
    assert fitted.counts.sum() < flat.counts.sum()


def test_majority_vote_smoothing_and_consensus():
    agg = MajorityVote(n_classes=3, smoothing=1.0, consensus=0.7)
    s, v = agg.new_subject(), agg.new_volunteer()
    np.testing.assert_allclose(agg.posterior(s), [1 / 3] * 3)
    for a in (2, 2, 2):
        agg.observe(s, v, a)
    np.testing.assert_allclose(agg.posterior(s), [1 / 6, 1 / 6, 4 / 6])
    assert s.reason == ""
    agg.observe(s, v, 2)
    assert (s.reason, s.label, s.retired_at_vote) == ("consensus", 2, 4)     # 5/7 >= 0.7
