"""Property tests: monotonicity of the Bayesian updates (hypothesis)."""
from __future__ import annotations

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aggregation import DawidSkene, Swap, VolunteerState

counts = st.floats(0, 50, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(c00=counts, c01=counts, c10=counts, c11=counts, prior=st.floats(0.01, 0.99),
       history=st.lists(st.integers(0, 1), max_size=8), answer=st.integers(0, 1))
def test_swap_vote_from_skilled_volunteer_moves_posterior_towards_its_answer(c00, c01, c10, c11, prior, history, answer):
    agg = Swap(prior=prior, floor=min(1e-8, prior / 2), detect=0.999999, reject=1e-7)
    vol = VolunteerState(counts=[[c00, c01], [c10, c11]])
    pl, pd = agg.skills(vol)
    assume(pl + pd > 1.0)            # skilled: P("yes"|yes) > P("yes"|no)
    other = VolunteerState(counts=[[3.0, 1.0], [2.0, 2.0]])
    subj = agg.new_subject()
    for a in history:
        agg.observe(subj, other, a)
    assume(not subj.reason)
    before = agg.posterior(subj)[1]
    agg.observe(subj, vol, answer)
    after = agg.posterior(subj)[1]
    if answer == 1:
        assert after >= before - 1e-15      # a "yes" never lowers P(yes)
    else:
        assert after <= before + 1e-15 or after == agg.floor


@settings(max_examples=150, deadline=None)
@given(K=st.integers(2, 4), data=st.data())
def test_dawid_skene_vote_never_lowers_its_answer_when_the_volunteer_is_informative(K, data):
    agg = DawidSkene(n_classes=K, consensus=None)
    c = np.array(data.draw(st.lists(st.lists(counts, min_size=K, max_size=K), min_size=K, max_size=K)))
    vol = VolunteerState(counts=c.tolist())
    answer = data.draw(st.integers(0, K - 1))
    theta = agg.confusion(vol)
    # informative for this answer: saying `answer` is likeliest when the truth is `answer`
    assume(np.all(theta[answer, answer] >= theta[:, answer]))
    subj = agg.new_subject()
    subj.log_belief = data.draw(st.lists(st.floats(-10, 10), min_size=K, max_size=K))
    before = agg.posterior(subj)[answer]
    agg.observe(subj, vol, answer)
    assert agg.posterior(subj)[answer] >= before - 1e-12


@settings(max_examples=100, deadline=None)
@given(votes=st.lists(st.integers(0, 1), min_size=1, max_size=30))
def test_swap_posterior_stays_in_unit_interval_and_above_floor(votes):
    agg = Swap(detect=1 - 1e-12, reject=1e-12)
    vol = VolunteerState(counts=[[500.0, 0.0], [0.0, 500.0]])
    subj = agg.new_subject()
    for a in votes:
        agg.observe(subj, vol, a)
        p = agg.posterior(subj)[1]
        assert agg.floor * (1 - 1e-9) <= p <= 1.0
