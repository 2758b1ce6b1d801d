"""SWAP golden cases computed by hand from Marshall et al. 2016 eqs. 1-4 and the SWAP code."""
from __future__ import annotations

import numpy as np
import pytest

from aggregation import Swap
from aggregation.state import VolunteerState


def bayes_yes(p, pl, pd):
    """Marshall+2016 eq. 2: P(yes | "yes")."""
    return pl * p / (pl * p + (1 - pd) * (1 - p))


def bayes_no(p, pl, pd):
    """Marshall+2016 eq. 3: P(yes | "no")."""
    return (1 - pl) * p / ((1 - pl) * p + pd * (1 - p))


def p_yes(agg, subject):
    return float(agg.posterior(subject)[1])


def test_untrained_volunteer_leaves_prior_unchanged():
    agg = Swap()
    subj, vol = agg.new_subject(), agg.new_volunteer()
    agg.observe(subj, vol, 1)
    assert p_yes(agg, subj) == pytest.approx(0.3, abs=1e-15)
    assert subj.counts == [0, 1] and subj.n_votes == 1 and subj.reason == ""


def test_skill_update_from_gold_matches_hand_computation():
    agg = Swap()
    vol = agg.new_volunteer()
    gold_yes = agg.new_subject(gold=1)
    gold_no = agg.new_subject(gold=0)
    agg.observe(gold_yes, vol, 1)   # correct on a yes-gold
    agg.observe(gold_yes, vol, 1)   # correct again
    agg.observe(gold_no, vol, 1)    # wrong on a no-gold
    # PL = (0.5*2 + 2) / (2 + 2) = 0.75 ; PD = (0.5*2 + 0) / (2 + 1) = 1/3
    pl, pd = agg.skills(vol)
    assert pl == pytest.approx(0.75) and pd == pytest.approx(1 / 3)
    subj = agg.new_subject()
    agg.observe(subj, vol, 1)
    assert p_yes(agg, subj) == pytest.approx(bayes_yes(0.3, 0.75, 1 / 3), rel=1e-12)
    agg.observe(subj, vol, 0)
    expected = bayes_no(bayes_yes(0.3, 0.75, 1 / 3), 0.75, 1 / 3)
    assert p_yes(agg, subj) == pytest.approx(expected, rel=1e-12)


def test_subject_uses_skill_before_the_gold_vote_itself():
    # SWAP.py: sample.member[ID].was_described(...) runs before bureau.member[Name].heard(...).
    agg = Swap()
    vol = agg.new_volunteer()
    g = agg.new_subject(gold=1)
    agg.observe(g, vol, 1)
    assert p_yes(agg, g) == pytest.approx(0.3)            # skills were still 0.5/0.5
    assert agg.skills(vol) == pytest.approx((2 / 3, 0.5))


def test_skill_cap_and_symmetric_lower_bound():
    agg = Swap()
    perfect = VolunteerState(counts=[[1000.0, 0.0], [0.0, 1000.0]])
    contrarian = VolunteerState(counts=[[0.0, 1000.0], [1000.0, 0.0]])
    assert agg.skills(perfect) == pytest.approx((0.99, 0.99))
    assert agg.skills(contrarian) == pytest.approx((0.01, 0.01))
    s = agg.new_subject()
    agg.observe(s, contrarian, 0)     # a contrarian's "no" is evidence for yes
    assert p_yes(agg, s) == pytest.approx(bayes_no(0.3, 0.01, 0.01))
    assert p_yes(agg, s) > 0.3


def test_posterior_floor():
    agg = Swap(reject=1e-12, detect=0.999999)   # rejection below the floor: never rejects
    vol = VolunteerState(counts=[[1000.0, 0.0], [0.0, 1000.0]])
    s = agg.new_subject()
    for _ in range(10):
        agg.observe(s, vol, 0)
    # ten "no" votes at PL=PD=0.99 would give ~1e-20; SWAP floors at pmin = 2e-8
    assert p_yes(agg, s) == pytest.approx(2e-8, rel=1e-9)
    agg.observe(s, vol, 1)
    assert p_yes(agg, s) == pytest.approx(bayes_yes(2e-8, 0.99, 0.99), rel=1e-9)


def test_detection_and_rejection_thresholds_gzx_defaults():
    agg = Swap()   # prior 0.3, detect 0.99, reject 0.004
    vol = VolunteerState(counts=[[18.0, 0.0], [0.0, 18.0]])   # PL = PD = (1 + 18) / 20 = 0.95
    p, s, n = 0.3, agg.new_subject(), 0
    while not s.reason:
        agg.observe(s, vol, 1)
        p, n = bayes_yes(p, 0.95, 0.95), n + 1
    # odds 3/7 * 19 = 8.14 (p = 0.891) after one "yes", 3/7 * 19^2 = 154.7 (p = 0.9936) after two
    assert (s.reason, s.label, s.retired_at_vote) == ("detected", 1, 2) and n == 2
    assert p_yes(agg, s) == pytest.approx(p) and p == pytest.approx(154.714 / 155.714, rel=1e-4)
    r = agg.new_subject()
    while not r.reason:
        agg.observe(r, vol, 0)
    # odds 3/7 / 19^k <= 0.004/0.996  ->  k = 2 gives 0.00119
    assert (r.reason, r.label, r.retired_at_vote) == ("rejected", 0, 2)


def test_votes_after_retirement_are_counted_but_ignored():
    agg = Swap()
    vol = VolunteerState(counts=[[18.0, 0.0], [0.0, 18.0]])
    s = agg.new_subject()
    for _ in range(3):
        agg.observe(s, vol, 0)
    frozen = p_yes(agg, s)
    assert s.reason == "rejected" and s.retired_at_vote == 2
    assert s.n_votes == 3 and s.counts == [2, 0] and p_yes(agg, s) == frozen


def test_gold_subjects_never_retire():
    agg = Swap()
    vol = VolunteerState(counts=[[18.0, 0.0], [0.0, 18.0]])
    g = agg.new_subject(gold=1)
    for _ in range(10):
        agg.observe(g, vol, 1)
    assert g.reason == "" and p_yes(agg, g) > 0.999


def test_one_gold_vote_does_not_retire_subjects_instantly():
    """The pathology: without pseudo-votes one correct gold vote makes PL = 1 and the next vote decides."""
    agg = Swap()   # defaults: 2 pseudo-votes, cap 0.99
    vol = agg.new_volunteer()
    agg.observe(agg.new_subject(gold=1), vol, 1)
    agg.observe(agg.new_subject(gold=0), vol, 0)
    s = agg.new_subject()
    agg.observe(s, vol, 1)
    assert s.reason == "" and p_yes(agg, s) == pytest.approx(bayes_yes(0.3, 2 / 3, 2 / 3))
    # Without the prior the same volunteer is "perfect" (capped at 0.99) and one more vote retires.
    naive = Swap(pseudo_votes=0.0)
    vol2 = naive.new_volunteer()
    naive.observe(naive.new_subject(gold=1), vol2, 1)
    naive.observe(naive.new_subject(gold=0), vol2, 0)
    assert naive.skills(vol2) == pytest.approx((0.99, 0.99))
    s2 = naive.new_subject()
    naive.observe(s2, vol2, 1)
    naive.observe(s2, vol2, 1)
    assert s2.reason == "detected" and s2.retired_at_vote == 2


def test_min_training_ignores_untrained_volunteers():
    agg = Swap(min_training=2)
    vol = VolunteerState(counts=[[0.0, 0.0], [0.0, 1.0]])    # one gold vote so far
    s = agg.new_subject()
    agg.observe(s, vol, 1)
    assert p_yes(agg, s) == pytest.approx(0.3) and s.n_votes == 1 and s.counts == [0, 1]
    vol.counts[0][0] = 1.0
    agg.observe(s, vol, 1)
    assert p_yes(agg, s) > 0.3


def test_budget_rules_min_votes_cap_and_expert_queue():
    vol = VolunteerState(counts=[[18.0, 0.0], [0.0, 18.0]])
    agg = Swap(min_votes=4)
    s = agg.new_subject()
    for _ in range(3):
        agg.observe(s, vol, 1)
    assert s.reason == ""                       # would be detected, but min_votes=4
    agg.observe(s, vol, 1)
    assert (s.reason, s.retired_at_vote) == ("detected", 4)

    capped = Swap(vote_cap=4)
    s = capped.new_subject()
    for a in (1, 0, 1, 0):
        capped.observe(s, vol, a)
    assert (s.reason, s.retired_at_vote, s.label) == ("vote_cap", 4, 0)   # P(yes) back at the prior 0.3

    expert = Swap(vote_cap=6, expert_after=4)
    s = expert.new_subject()
    for a in (1, 0, 1, 0):
        expert.observe(s, vol, a)
    assert (s.reason, s.retired_at_vote, s.label) == ("expert_queue", 4, -1)


def test_confident_evidence_may_retire_before_min_votes_only_when_allowed():
    """GZX: a calibrated machine that decides a galaxy on its own retires it with no human vote; weak
    evidence still needs min_votes human votes, and without ``evidence_retires`` nothing retires early."""
    strong, weak = [0.0, 6.0], [0.0, 2.0]                 # log-likelihoods of no, yes
    vol = VolunteerState(counts=[[18.0, 0.0], [0.0, 18.0]])
    for allowed in (True, False):
        agg = Swap(prior=0.5, detect=0.99, reject=0.01, min_votes=3, evidence_retires=allowed)
        s = agg.new_subject()
        agg.add_evidence(s, strong)
        assert s.reason == ("detected" if allowed else "") and s.retired_at_vote == 0
        w = agg.new_subject()
        agg.add_evidence(w, weak)
        agg.observe(w, vol, 1)
        assert w.reason == ""                             # evidence + 1 vote decides, but 1 < min_votes
        for _ in range(2):
            agg.observe(w, vol, 1)
        assert (w.reason, w.retired_at_vote) == ("detected", 3)
        # The batch path takes the same decisions.
        votes = np.array([[2, 7, 1], [2, 8, 1], [2, 9, 1]])
        result = agg.replay(votes, evidence={1: strong, 2: weak},
                            volunteers={u: VolunteerState(counts=[[18.0, 0.0], [0.0, 18.0]]) for u in (7, 8, 9)})
        assert result.reason.tolist() == (["detected", "detected"] if allowed else ["", "detected"])
        assert result.retired_at_vote.tolist() == ([0, 3] if allowed else [-1, 3])


def test_parameter_validation():
    with pytest.raises(ValueError, match="reject < detect"):
        Swap(detect=0.1, reject=0.2)
    with pytest.raises(ValueError, match="floor < prior"):
        Swap(prior=1e-9)
    with pytest.raises(ValueError, match="skill_cap"):
        Swap(skill_cap=1.0)
    with pytest.raises(ValueError, match="answer 2"):
        Swap().observe(Swap().new_subject(), Swap().new_volunteer(), 2)


def test_fit_matches_hand_replay_and_reports_skills():
    # user 1 sees two yes-gold (right, right) then one test subject; user 2 one no-gold (wrong).
    votes = np.array([[10, 1, 1], [11, 1, 1], [20, 1, 1], [12, 2, 1], [20, 2, 0]])
    gold = {10: 1, 11: 1, 12: 0}
    agg = Swap().fit(votes, gold=gold)
    i = agg.result_.index(20)
    pl1, pd1 = 0.75, 0.5
    pl2, pd2 = 0.5, 1 / 3
    expected = bayes_no(bayes_yes(0.3, pl1, pd1), pl2, pd2)
    assert agg.posterior_[i, 1] == pytest.approx(expected, rel=1e-12)
    skills = dict(zip(agg.volunteer_ids_.tolist(), agg.skill_.tolist()))
    assert skills[1] == pytest.approx([0.5, 0.75]) and skills[2] == pytest.approx([1 / 3, 0.5])
    # gold subject 10 got user 1's first vote with untrained skills: unchanged prior
    assert agg.posterior_[agg.result_.index(10), 1] == pytest.approx(0.3)
    assert agg.result_.reason.tolist() == ["", "", "", ""]
