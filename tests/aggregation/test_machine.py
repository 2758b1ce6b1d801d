"""The machine agent: calibrated predictions retire subjects, miscalibrated ones are discounted."""
from __future__ import annotations

import numpy as np
import pytest

from aggregation import DawidSkene, MachineAgent, Swap, training_labels


def test_symbols_bin_the_predicted_answer_and_confidence():
    m = MachineAgent(n_classes=2, n_bins=5)
    sym = m.symbols([[0.5, 0.5], [0.05, 0.95], [0.7, 0.3], [1.0, 0.0], [0.0, 0.0]])
    # [tie -> answer 0, bin 0], [answer 1, conf 0.95 -> bin 4], [answer 0, conf 0.7 -> bin 2], [0, bin 4], [no info]
    assert sym.tolist() == [0, 9, 2, 4, 0]
    with pytest.raises(ValueError):
        m.symbols([[0.5, -0.1]])


def test_untrained_machine_adds_nothing():
    m = MachineAgent(n_classes=3)
    np.testing.assert_allclose(np.ptp(m.log_likelihood([[0.9, 0.05, 0.05]]), axis=1), 0.0)


def test_confusion_matrix_by_hand():
    m = MachineAgent(n_classes=2, n_bins=1, pseudo_votes=2.0).fit([[0.2, 0.8]] * 3 + [[0.9, 0.1]], [1, 1, 1, 1])
    # symbols: answer1 x3, answer0 x1 -> row 1 counts [1, 3]; prior 1 per symbol
    np.testing.assert_allclose(m.confusion_[1], [(1 + 1) / 6, (3 + 1) / 6])
    np.testing.assert_allclose(m.confusion_[0], [0.5, 0.5])


def _simulate_machine(rng, truth, quality):
    """quality 'good': confident and right 90%; 'inverted': confident and wrong; 'noise': random."""
    n = len(truth)
    if quality == "good":
        right = rng.random(n) < 0.9
        p1 = np.where(right == (truth == 1), rng.uniform(0.85, 1.0, n), rng.uniform(0.0, 0.15, n))
    elif quality == "inverted":
        p1 = np.where(truth == 1, rng.uniform(0.0, 0.1, n), rng.uniform(0.9, 1.0, n))
    else:
        p1 = rng.uniform(0, 1, n)
    return np.column_stack([1 - p1, p1])


@pytest.mark.parametrize("quality", ["good", "inverted", "noise"])
def test_machine_evidence_helps_or_is_discounted(quality, rng):
    truth = rng.integers(0, 2, 2000)
    pred = _simulate_machine(rng, truth, quality)
    m = MachineAgent(n_classes=2).fit(pred[:500], truth[:500])
    ll = m.log_likelihood(pred[500:])
    llr = ll[:, 1] - ll[:, 0]
    acc = ((llr > 0) == (truth[500:] == 1)).mean()
    if quality == "noise":
        assert np.abs(llr).max() < 0.8          # close to 0: discounted
    else:
        assert acc > 0.85                       # an inverted model is just as useful once calibrated


def test_machine_retires_subjects_without_humans_in_swap(rng):
    truth = rng.integers(0, 2, 600)
    pred = _simulate_machine(rng, truth, "good")
    m = MachineAgent(n_classes=2, pseudo_votes=2.0).fit(pred[:300], truth[:300])
    ids, ll = m.evidence(np.arange(300, 600), pred[300:])
    res = Swap(prior=0.3, detect=0.9, reject=0.05).replay(np.zeros((0, 3), dtype=np.int64), evidence=(ids, ll))
    retired = res.retired
    assert retired.mean() > 0.3 and (res.retired_at_vote[retired] == 0).all()
    assert (res.label[retired] == truth[300:][retired]).mean() > 0.9


def test_training_labels_exclude_machine_only_decisions(rng):
    truth = rng.integers(0, 2, 200)
    pred = _simulate_machine(rng, truth, "good")
    m = MachineAgent(n_classes=2).fit(pred[:100], truth[:100])
    votes = np.column_stack([np.repeat(np.arange(100, 200), 5), np.tile(np.arange(5), 100),
                             np.repeat(truth[100:], 5)])
    gold = {int(i): int(truth[i]) for i in range(100, 110)}
    res = DawidSkene(n_classes=2).replay(votes, gold=gold, evidence=m.evidence(np.arange(100, 200), pred[100:]))
    ids, labels = training_labels(res)
    assert set(range(100, 110)) <= set(ids.tolist())
    ok = np.isin(res.subject_ids, ids)
    assert (res.retired_at_vote[ok & (res.gold < 0)] >= 1).all()
    np.testing.assert_array_equal(labels, truth[ids])
