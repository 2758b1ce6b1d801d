"""Dawid–Skene: EM against a loop-by-loop reference of DS 1979 eqs. 2.3-2.5, and its relation to SWAP."""
from __future__ import annotations

import numpy as np
import pytest

from aggregation import DawidSkene, MajorityVote, Swap, VolunteerState

from .conftest import simulate_votes


def reference_em(votes, gold, K, p0, n0, alpha, n_iter):
    """Direct transcription of DS 1979 sec. 2 with pseudo-counts, loops only (slow, obviously right)."""
    subjects = sorted(set(votes[:, 0].tolist()) | set(gold))
    users = sorted(set(votes[:, 1].tolist()))
    si = {s: i for i, s in enumerate(subjects)}
    ui = {u: i for i, u in enumerate(users)}
    S, U = len(subjects), len(users)
    beta = np.full((K, K), n0 * (1 - p0) / (K - 1))
    np.fill_diagonal(beta, n0 * p0)
    T = np.zeros((S, K))
    for s, _, a in votes:
        T[si[s], a] += 1
    T = (T + 0.5) / (T.sum(axis=1, keepdims=True) + 0.5 * K)
    for s, lab in gold.items():
        T[si[s]] = np.eye(K)[lab]

    def m_step(T):
        C = np.zeros((U, K, K))
        for s, u, a in votes:
            for k in range(K):
                C[ui[u], k, a] += T[si[s], k]                        # eq. 2.3 numerator
        theta = (beta + C) / (beta.sum(axis=1)[None, :, None] + C.sum(axis=2, keepdims=True))
        pi = (alpha + T.sum(axis=0)) / (K * alpha + S)               # eq. 2.4
        return theta, pi, C

    for _ in range(n_iter):
        theta, pi, _ = m_step(T)
        logT = np.tile(np.log(pi), (S, 1))
        for s, u, a in votes:
            for k in range(K):
                logT[si[s], k] += np.log(theta[ui[u], k, a])          # eq. 2.5
        T = np.exp(logT - logT.max(axis=1, keepdims=True))
        T /= T.sum(axis=1, keepdims=True)
        for s, lab in gold.items():
            T[si[s]] = np.eye(K)[lab]
    theta, pi, C = m_step(T)
    return subjects, T, theta, pi, C


@pytest.mark.parametrize("K", [2, 3])
def test_em_matches_reference_transcription(K, rng):
    votes, truth = simulate_votes(rng, 25, 6, 150, n_classes=K)
    gold = {int(1000 + 7 * i): int(truth[i]) for i in (0, 3, 8)}
    n_iter = 7
    agg = DawidSkene(n_classes=K, initial_skill=0.6, pseudo_votes=3.0, max_iter=n_iter, tol=0.0).fit(votes, gold=gold)
    subjects, T, theta, pi, C = reference_em(votes, gold, K, 0.6, 3.0, 1.0, n_iter)
    assert agg.subject_ids_.tolist() == subjects
    np.testing.assert_allclose(agg.class_prior_, pi, rtol=1e-10)
    np.testing.assert_allclose(agg.skill_, theta, rtol=1e-10)
    np.testing.assert_allclose(agg.result_.volunteer_counts, C, rtol=1e-10, atol=1e-12)
    # the reported posterior is one more E-step with the final parameters; gold rows are clamped
    logb = np.tile(np.log(pi), (len(subjects), 1))
    si = {s: i for i, s in enumerate(subjects)}
    ui = {u: i for i, u in enumerate(sorted(set(votes[:, 1].tolist())))}
    for s, u, a in votes:
        logb[si[s]] += np.log(theta[ui[u], :, a])
    post = np.exp(logb - logb.max(axis=1, keepdims=True))
    post /= post.sum(axis=1, keepdims=True)
    for s, lab in gold.items():
        post[si[s]] = np.eye(K)[lab]
    np.testing.assert_allclose(agg.posterior_, post, rtol=1e-9, atol=1e-12)


def test_em_beats_majority_with_random_clickers_and_contrarians(rng):
    K, S, U = 3, 400, 60
    truth = rng.integers(0, K, S)
    kind = rng.choice(3, U, p=[0.6, 0.25, 0.15])          # good, random clicker, contrarian
    s = rng.integers(0, S, 4000)
    u = rng.integers(0, U, 4000)
    good = rng.random(4000) < 0.85
    a = np.where(kind[u] == 0, np.where(good, truth[s], (truth[s] + 1) % K),
                 np.where(kind[u] == 1, rng.integers(0, K, 4000), (truth[s] + 1) % K))
    votes = np.column_stack([s, u, a])
    ds = DawidSkene(n_classes=K).fit(votes)
    mv = MajorityVote(n_classes=K).fit(votes)
    acc_ds = (ds.posterior_.argmax(axis=1) == truth[ds.subject_ids_]).mean()
    acc_mv = (mv.posterior_.argmax(axis=1) == truth[mv.subject_ids_]).mean()
    assert acc_ds > acc_mv + 0.05 and acc_ds > 0.9
    # contrarians are recognised: their diagonal is low
    diag = ds.skill_[:, np.arange(K), np.arange(K)].mean(axis=1)
    assert diag[kind[ds.volunteer_ids_] == 2].mean() < 0.3 < 0.7 < diag[kind[ds.volunteer_ids_] == 0].mean()


def test_semi_supervised_gold_is_clamped(rng):
    votes, truth = simulate_votes(rng, 50, 8, 300, n_classes=2)
    gold = {1000: 1 - int(truth[0])}          # a gold label that contradicts the votes stays as given
    ds = DawidSkene(n_classes=2).fit(votes, gold=gold)
    assert ds.posterior_[ds.result_.index(1000)].tolist() == [float(gold[1000] == 0), float(gold[1000] == 1)]
    assert ds.result_.reason[ds.result_.index(1000)] == ""


def test_binary_dawid_skene_online_is_swap_without_cap():
    """For K = 2 and p0 = 0.5 the Dirichlet update is SWAP's PL/PD update (Marshall+2016 eq. 4)."""
    rng = np.random.default_rng(3)
    votes, truth = simulate_votes(rng, 40, 10, 500, n_classes=2)
    gold = {int(1000 + 7 * i): int(truth[i]) for i in range(0, 40, 3)}
    ds = DawidSkene(n_classes=2, initial_skill=0.5, pseudo_votes=2.0, class_prior=[0.7, 0.3], consensus=None)
    sw = Swap(prior=0.3, skill_cap=1 - 1e-12, floor=1e-300, detect=1 - 1e-15, reject=1e-290)
    a, b = ds.replay(votes, gold=gold), sw.replay(votes, gold=gold)
    np.testing.assert_allclose(a.posterior, b.posterior, rtol=1e-9)


def test_em_state_continues_online(rng):
    votes, truth = simulate_votes(rng, 80, 10, 900, n_classes=3)
    ds = DawidSkene(n_classes=3).fit(votes[:600])
    state = ds.state_
    # a subject's belief after fit is the last E-step: adding no votes leaves the posterior unchanged
    i = 5
    sid = int(ds.subject_ids_[i])
    np.testing.assert_allclose(ds.posterior(state.subjects[sid]), ds.posterior_[i], rtol=1e-9)
    ds.update(state, votes[600:])
    vol = state.volunteers[int(votes[600, 1])]
    assert isinstance(vol, VolunteerState) and np.asarray(vol.counts).sum() > 0


def test_em_fit_retires_on_confident_evidence_alone_only_when_allowed(rng):
    """In the batch (EM) fit, a subject whose machine evidence decides it on its own retires with fewer
    than min_votes votes when ``evidence_retires``; the rest keep the min_votes guard."""
    votes, truth = simulate_votes(rng, 60, 10, 400, n_classes=3)
    few = np.array([s for s in np.unique(votes[:, 0]) if (votes[:, 0] == s).sum() < 5])
    strong = {int(s): np.where(np.arange(3) == 0, 0.0, -9.0).tolist() for s in few}      # "answer 0", surely
    unseen = {5000: [0.0, -9.0, -9.0], 5001: [0.0, -1.0, -1.0]}                          # no votes at all
    evidence = {**strong, **unseen}
    on = DawidSkene(n_classes=3, min_votes=5, evidence_retires=True).fit(votes, evidence=evidence)
    off = DawidSkene(n_classes=3, min_votes=5).fit(votes, evidence=evidence)
    r_on, r_off = on.result_, off.result_
    assert r_on.reason[r_on.index(5000)] == "consensus" and r_on.label[r_on.index(5000)] == 0
    assert r_on.reason[r_on.index(5001)] == "" and r_off.reason[r_off.index(5000)] == ""
    for result in (r_on, r_off):                         # nothing else retires before 5 votes
        low = result.n_votes < 5
        decided = result.reason != ""
        machine = np.isin(result.subject_ids, [5000, *few.tolist()])
        assert not (low & decided & ~machine).any()
    assert not (r_off.n_votes < 5)[r_off.reason != ""].any()
    assert len(few) and (r_on.reason[np.isin(r_on.subject_ids, few)] != "").any()
