"""Real Galaxy Zoo data (skipped when ../shared/realdata is absent)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from aggregation import DecisionTree, Swap, VoteFraction
from aggregation.cli import main
from aggregation.tree import TREES_DIR

from .conftest import realdata


def _decals_counts():
    d = pd.read_csv(realdata("galaxy-zoo-bayesian-cnn", "zoobot", "tests", "test_examples", "panoptes.csv"))
    featured = d["smooth-or-featured_featured-or-disk"].to_numpy(np.int64)
    other = (d["smooth-or-featured_smooth"] + d["smooth-or-featured_artifact"]).to_numpy(np.int64)
    return np.column_stack([other, featured])


def _expand(counts, galaxies, rng):
    gal = np.repeat(np.repeat(galaxies, 2), counts[galaxies].reshape(-1))
    ans = np.repeat(np.tile([0, 1], len(galaxies)), counts[galaxies].reshape(-1))
    perm = rng.permutation(len(gal))
    return np.column_stack([gal[perm], np.zeros(len(gal), np.int64), ans[perm]])


def test_real_decals_votes_retire_early_and_agree_with_the_full_crowd():
    """A smaller version of benchmark 2: >= 4.5x fewer votes at >= 95% agreement on held-out galaxies."""
    counts = _decals_counts()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(counts))
    train, test = np.sort(idx[:800]), np.sort(idx[800:])
    majority = 2 * counts[:, 1] > counts.sum(axis=1)
    no_tie = 2 * counts[:, 1] != counts.sum(axis=1)
    test_votes = _expand(counts, test, rng)

    vf = VoteFraction(n_classes=2, budget=40, confidence=0.95, vote_cap=40).fit_prior(counts[train])
    r = vf.replay(test_votes)
    used = np.where(r.retired, r.retired_at_vote, r.n_votes)
    assert counts[test].sum() / used.sum() > 4.5
    assert (r.label == majority[test])[no_tie[test] & r.retired].mean() > 0.95

    gold = {int(g): int(majority[g]) for g in train}
    sw = Swap().replay(np.concatenate([_expand(counts, train, rng), test_votes]), gold=gold)
    pos = np.searchsorted(sw.subject_ids, test)
    ret = sw.retired[pos]
    assert ret.mean() > 0.95
    assert (sw.label[pos] == majority[test])[ret & no_tie[test]].mean() > 0.95
    assert sw.retired_at_vote[pos][ret].mean() < 10          # GZX: ~5x fewer than GZ2's 40-45


def test_real_panoptes_responses_through_the_tree_command_line(tmp_path):
    path = realdata("gz-panoptes-reduction", "data", "examples", "panoptes_flat.json")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    df = pd.DataFrame(rows)
    # Not-logged-in volunteers have no user_id; each anonymous classification counts as its own volunteer.
    uid = pd.to_numeric(df["user_id"], errors="coerce")
    anonymous = uid.isna()
    assert anonymous.any()
    df["user_id"] = uid.where(~anonymous, -pd.to_numeric(df["classification_id"])).astype(np.int64)
    df = df[["subject_id", "user_id", "question", "response"]].rename(columns={"response": "answer"})
    df.to_csv(tmp_path / "votes.csv", index=False)
    out = tmp_path / "out.csv"
    assert main(["tree", "--votes", str(tmp_path / "votes.csv"), "--workflow", str(TREES_DIR / "gz_decals.json"),
                 "--out", str(out)]) == 0
    res = pd.read_csv(out)
    n_subjects = df["subject_id"].nunique()
    assert len(res) == n_subjects * len(DecisionTree.builtin("gz_decals").columns)
    got = res.drop_duplicates(["subject_id", "question"]).set_index(["subject_id", "question"])["n_votes"]
    want = df.astype({"subject_id": np.int64}).groupby(["subject_id", "question"]).size()
    assert got[want.index].tolist() == want.tolist()
    np.testing.assert_allclose(res.groupby(["subject_id", "question"])["probability"].sum(), 1.0, rtol=1e-9)
