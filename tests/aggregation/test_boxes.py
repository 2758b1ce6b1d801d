"""Clump boxes: IoU, clustering, consensus and skill-weighted probabilities."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregation.boxes import BoxAggregator, cluster_boxes, consensus, iou_matrix


def test_iou_golden_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10], [2, 2, 5, 5]])
    np.testing.assert_allclose(iou_matrix(a, b)[0], [50 / 150, 0.0, 1.0, 25 / 100])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)


def test_consensus_is_the_corner_median_and_spread_the_mean_iou_distance():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 10, 10], [100, 0, 10, 10]])
    box, spread = consensus(boxes)
    np.testing.assert_allclose(box, [2, 0, 10, 10])
    ious = iou_matrix(boxes, box[None])[:, 0]
    assert spread == pytest.approx(np.mean(1 - ious)) and ious[1] == 1.0


def test_clusters_separate_clumps_and_never_hold_two_boxes_of_one_volunteer():
    boxes = np.array([[10, 10, 16, 16], [11, 10, 16, 16], [10, 11, 16, 16],
                      [200, 200, 16, 16], [201, 201, 16, 16], [12, 12, 16, 16]])
    users = np.array([1, 2, 3, 1, 2, 1])     # user 1 drew twice on the first clump
    lab = cluster_boxes(boxes, users)
    assert lab[0] == lab[1] == lab[2] and lab[3] == lab[4] and lab[0] != lab[3]
    for c in np.unique(lab):
        assert len(set(users[lab == c].tolist())) == (lab == c).sum()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_consensus_boxes_do_not_depend_on_mark_order(data):
    n = data.draw(st.integers(1, 12))
    centres = np.array(data.draw(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=n, max_size=n)),
                       dtype=float) * 60
    jitter = np.array(data.draw(st.lists(st.floats(-1.5, 1.5), min_size=2 * n, max_size=2 * n))).reshape(n, 2)
    boxes = np.column_stack([centres + jitter, np.full((n, 2), 16.0)])
    users = np.arange(n)
    perm = np.array(data.draw(st.permutations(list(range(n)))))

    def clusters(b, u):
        lab = cluster_boxes(b, u)
        return sorted(tuple(np.round(consensus(b[lab == c])[0], 9)) for c in range(lab.max() + 1))

    assert clusters(boxes, users) == clusters(boxes[perm], users[perm])


def test_probability_by_hand_with_prior_skills():
    agg = BoxAggregator()
    marks = np.array([[1, 10, 10, 16, 16], [2, 11, 10, 16, 16], [3, 10, 11, 16, 16], [4, 300, 300, 16, 16]])
    out = agg.aggregate_subject(agg.init_state(), 7, marks, seen_users=[1, 2, 3, 4, 5], learn=False)
    # Prior skills: s = 1 - miss is the mode of Beta(4, 2) = 3/4; spurious boxes 0.5 / 5 per subject and,
    # with no candidate geometry yet, kappa = 0.01, so f = 0.001; P(real) = 1/2; visibility weights
    # uniform over the grid.
    s, f, vis = 0.75, 0.1 * 0.01, [0.2, 0.4, 0.6, 0.8, 1.0]

    def real(drew, missed):
        return sum(0.2 * (s * v) ** drew * (1 - s * v) ** missed / (1 - (1 - s * v) ** (drew + missed)) for v in vis)

    def not_real(drew, missed):
        # one of the drawers is the seed; the others coincide with probability f each
        return (1 / drew) * drew * f ** (drew - 1) * (1 - f) ** missed

    expected = [real(3, 2) / (real(3, 2) + not_real(3, 2)), real(1, 4) / (real(1, 4) + not_real(1, 4))]
    np.testing.assert_allclose(out["probability"], expected, rtol=1e-10)
    assert out["n_marks"].tolist() == [3, 1] and list(out.columns) == [
        "subject_id", "x", "y", "width", "height", "probability", "n_marks", "spread"]
    assert agg.skills(None) == pytest.approx((0.25, 0.1, 0.001))


def test_overlap_from_geometry_by_hand():
    agg = BoxAggregator(iou_threshold=0.2)
    boxes = np.array([[0, 0, 10, 10], [30, 0, 10, 10], [0, 40, 10, 10], [30, 40, 10, 10]], dtype=float)
    # centres (5,5), (35,5), (5,45), (35,45): var x = 225, var y = 400, no covariance; window per box
    # (2 (1 - sqrt(0.4 / 1.2)))^2 * 100
    window = (2 * (1 - (0.4 / 1.2) ** 0.5)) ** 2 * 100
    expected = window / (4 * np.pi * (225 * 400) ** 0.5)
    assert agg.overlap_from(agg._geometry(boxes)) == pytest.approx(expected)
    assert BoxAggregator(overlap=0.05).overlap_from(agg._geometry(boxes)) == 0.05


def simulate(rng, n_subjects=150, n_users=40, careless_share=0.2):
    careless = rng.random(n_users) < careless_share
    miss = np.where(careless, 0.7, rng.uniform(0.1, 0.4, n_users))
    false_rate = np.where(careless, 1.5, 0.05)
    marks, seen, truth = [], [], {}
    for s in range(n_subjects):
        k = rng.integers(0, 4)
        tb = np.column_stack([rng.uniform(20, 360, k), rng.uniform(20, 360, k), np.full((k, 2), 16.0)])
        truth[s] = tb
        for u in rng.choice(n_users, 12, replace=False):
            seen.append((s, u))
            for b in tb:
                if rng.random() > miss[u]:
                    marks.append((s, u, *(b + np.r_[rng.normal(0, 1.0, 2), 0, 0])))
            for _ in range(rng.poisson(false_rate[u])):
                marks.append((s, u, rng.uniform(0, 380), rng.uniform(0, 380), 16.0, 16.0))
    return (pd.DataFrame(marks, columns=["subject_id", "user_id", "x", "y", "width", "height"]),
            pd.DataFrame(seen, columns=["subject_id", "user_id"]), truth, careless)


def test_em_learns_who_is_careless_and_finds_the_clumps(rng):
    marks, seen, truth, careless = simulate(rng)
    agg = BoxAggregator().fit(marks, seen)
    ids = agg.volunteer_ids_
    assert agg.spurious_rate_[careless[ids]].mean() > 3 * agg.spurious_rate_[~careless[ids]].mean()
    assert agg.miss_rate_[careless[ids]].mean() > agg.miss_rate_[~careless[ids]].mean()
    found = agg.clusters_[agg.clusters_["probability"] > 0.5]
    n_true = sum(len(v) for v in truth.values())
    hits = 0
    for s, tb in truth.items():
        pred = found[found["subject_id"] == s][["x", "y", "width", "height"]].to_numpy()
        if len(tb) and len(pred):
            hits += int((iou_matrix(tb, pred).max(axis=1) > 0.5).sum())
    assert hits / n_true > 0.9 and len(found) < 1.15 * n_true
    assert len(agg.labels_) == len(marks) and agg.labels_.max() == len(agg.clusters_) - 1


def test_online_from_batch_state_matches_batch_and_learning_replaces_contributions(rng):
    marks, seen, _, _ = simulate(rng, n_subjects=60)
    agg = BoxAggregator().fit(marks, seen)
    state = agg.state_
    for s in (0, 5, 17):
        m = marks[marks["subject_id"] == s]
        out = agg.aggregate_subject(state, s, m, seen[seen["subject_id"] == s]["user_id"], learn=False)
        ref = agg.clusters_[agg.clusters_["subject_id"] == s]
        np.testing.assert_allclose(out[["x", "y", "width", "height"]], ref[["x", "y", "width", "height"]])
        np.testing.assert_allclose(out["probability"], ref["probability"], atol=1e-3)
    # learning twice on the same subject replaces, never double counts
    fresh = agg.init_state()
    m = marks[marks["subject_id"] == 0]
    w = seen[seen["subject_id"] == 0]["user_id"]
    agg.aggregate_subject(fresh, 0, m, w)
    out = agg.aggregate_subject(fresh, 0, m, w)
    n_clusters = len(out)
    assert n_clusters > 0 and fresh.prior[1] == n_clusters
    G = len(agg.visibility)
    for v in fresh.volunteers.values():
        # each witness saw the subject once and had one chance per cluster on real clumps
        assert v.spurious[1] == 1.0
        assert sum(v.detect) == pytest.approx(float(out["probability"].sum()))
    assert len(fresh.contributions[0]) == w.nunique() and G == 5


def test_negative_sizes_are_rejected():
    with pytest.raises(ValueError, match="width and height"):
        BoxAggregator().fit(pd.DataFrame({"subject_id": [1], "user_id": [1], "x": [0.0], "y": [0.0],
                                          "width": [-1.0], "height": [3.0]}))


def test_rows_written_by_the_earlier_box_model_are_read_and_relearned():
    """States stored before the visibility/seed model ("miss"/"false_mark", 4-long contributions,
    2-long priors) must not break online aggregation: they count as nothing and are re-learned."""
    from aggregation.boxes import BoxState, BoxVolunteerState
    agg = BoxAggregator()
    old = BoxState.from_dict({"volunteers": {"1": {"miss": [1.0, 3.0], "false_mark": [0.0, 2.0]}},
                              "contributions": {"7": {"1": [0.1, 0.2, 0.3, 0.4]}}, "prior": [2.0, 3.0],
                              "subject_prior": {"7": [1.0, 1.0]}})
    assert old.volunteers[1] == BoxVolunteerState()
    marks = np.array([[1, 10, 10, 16, 16], [2, 11, 10, 16, 16]])
    out = agg.aggregate_subject(old, 7, marks, seen_users=[1, 2, 3])
    assert len(out) == 1 and 0 <= out["probability"].iloc[0] <= 1
    assert len(old.prior) == 9 + len(agg.visibility) and old.volunteers[1].spurious[1] == 1.0
