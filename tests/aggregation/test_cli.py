"""The command line: exact formats, golden output, and errors that name the file, line and reason."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aggregation.cli import main
from aggregation.tree import TREES_DIR

from .conftest import realdata

ROOT = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_swap_golden(tmp_path):
    votes = write(tmp_path / "votes.csv", "subject_id,user_id,answer\n10,1,1\n11,1,1\n20,1,1\n12,2,1\n20,2,0\n"
                                          "30,1,1\n30,1,1\n30,1,1\n")
    gold = write(tmp_path / "gold.csv", "subject_id,label\n10,1\n11,1\n12,0\n")
    out = tmp_path / "out.csv"
    assert main(["swap", "--votes", str(votes), "--gold", str(gold), "--out", str(out), "--detect", "0.9"]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "subject_id,posterior,n_votes,retired,retired_at_vote,label"
    df = pd.read_csv(out, keep_default_na=False)
    row = df.set_index("subject_id")
    # subject 20: user 1 (PL 0.75, PD 0.5) says yes, user 2 (PL 0.5, PD 1/3) says no
    p = 0.75 * 0.3 / (0.75 * 0.3 + 0.5 * 0.7)
    p = 0.5 * p / (0.5 * p + (1 / 3) * (1 - p))
    assert float(row.loc[20, "posterior"]) == pytest.approx(p, rel=1e-9)
    assert row.loc[20, "retired"] == 0 and row.loc[20, "retired_at_vote"] == "" and row.loc[20, "label"] == ""
    # subject 30: three yes votes from user 1 (PL 0.75, PD 0.5): odds 3/7 * 1.5^k -> 0.9 needs k >= 7: never
    assert row.loc[30, "n_votes"] == 3 and row.loc[30, "retired"] == 0
    assert row.loc[10, "label"] == "1" and row.loc[12, "label"] == "0"          # gold subjects carry their label


def test_swap_retirement_columns(tmp_path):
    rows = ["subject_id,user_id,answer"] + [f"{g},{u},1" for u in range(1, 4) for g in (1, 2, 3, 4)]
    rows += [f"{g},{u},0" for u in range(1, 4) for g in (5, 6)]
    rows += [f"9,{u},1" for u in range(1, 4)] * 3
    votes = write(tmp_path / "v.csv", "\n".join(rows) + "\n")
    gold = write(tmp_path / "g.csv", "subject_id,label\n1,1\n2,1\n3,1\n4,1\n5,0\n6,0\n")
    out = tmp_path / "o.csv"
    assert main(["swap", "--votes", str(votes), "--gold", str(gold), "--out", str(out)]) == 0
    df = pd.read_csv(out, keep_default_na=False, dtype=str).set_index("subject_id")
    assert df.loc["9", "retired"] == "1" and df.loc["9", "label"] == "1" and df.loc["9", "n_votes"] == "9"
    assert 1 <= int(df.loc["9", "retired_at_vote"]) < 9


@pytest.mark.parametrize("text, line, reason", [
    ("subject_id,user_id\n1,2\n", 1, "missing column 'answer'"),
    ("subject_id,user_id,answer\n1,2,1\n1,x,0\n", 3, "'x' is not a number"),
    ("subject_id,user_id,answer\n1,2,1\n1,2,2\n", 3, "'2' is not 0 or 1"),
    ("subject_id,user_id,answer\n1,2,1\n1.5,2,1\n", 3, "not an integer"),
    ("subject_id,user_id,answer\n1,2,1\n,2,1\n", 3, "is empty"),
])
def test_swap_malformed_input(tmp_path, capsys, text, line, reason):
    votes = write(tmp_path / "votes.csv", text)
    assert main(["swap", "--votes", str(votes), "--out", str(tmp_path / "o.csv")]) == 2
    err = capsys.readouterr().err
    assert f"votes.csv, line {line}:" in err and reason in err


def test_tree_output_and_errors(tmp_path, capsys):
    votes = write(tmp_path / "votes.csv", "subject_id,user_id,question,answer\n"
                  "1,7,smooth-or-featured,smooth\n1,7,how-rounded,round\n1,7,merging,none\n"
                  "1,8,smooth-or-featured,smooth\n2,8,smooth-or-featured,artifact\n")
    out = tmp_path / "out.csv"
    tree = TREES_DIR / "gz_decals.json"
    assert main(["tree", "--votes", str(votes), "--workflow", str(tree), "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["subject_id", "question", "answer", "probability", "n_votes"]
    n_cols = sum(1 for _ in pd.read_json(tree)["questions"] for _ in _["answers"])
    assert len(df) == 2 * n_cols
    one = df[(df.subject_id == 1) & (df.question == "smooth-or-featured")].set_index("answer")
    assert one.loc["smooth", "probability"] > 0.5 and one.loc["smooth", "n_votes"] == 2
    bad = write(tmp_path / "bad.csv", "subject_id,user_id,question,answer\n1,7,smooth-or-featured,round\n")
    assert main(["tree", "--votes", str(bad), "--workflow", str(tree), "--out", str(out)]) == 2
    assert "bad.csv, line 2: question 'smooth-or-featured' has no answer 'round'" in capsys.readouterr().err


def test_boxes_output_and_errors(tmp_path, capsys):
    marks = write(tmp_path / "marks.csv", "subject_id,user_id,x,y,width,height\n"
                  "1,1,10,10,16,16\n1,2,11,10,16,16\n1,3,10,11,16,16\n1,4,200,200,16,16\n")
    seen = write(tmp_path / "seen.csv", "subject_id,user_id\n1,1\n1,2\n1,3\n1,4\n1,5\n2,5\n")
    out = tmp_path / "out.csv"
    assert main(["boxes", "--marks", str(marks), "--seen", str(seen), "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert list(df.columns) == ["subject_id", "x", "y", "width", "height", "probability", "n_marks", "spread"]
    assert df["n_marks"].tolist() == [3, 1] and df["probability"].iloc[0] > 0.5 > df["probability"].iloc[1]
    neg = write(tmp_path / "neg.csv", "subject_id,user_id,x,y,width,height\n1,1,10,10,16,16\n1,1,10,10,-3,16\n")
    assert main(["boxes", "--marks", str(neg), "--seen", str(seen), "--out", str(out)]) == 2
    assert "neg.csv, line 3: column 'width': negative size '-3'" in capsys.readouterr().err


def test_module_entry_point_runs(tmp_path):
    votes = write(tmp_path / "v.csv", "subject_id,user_id,answer\n1,1,1\n")
    res = subprocess.run([sys.executable, "-m", "aggregation", "swap", "--votes", str(votes), "--out",
                          str(tmp_path / "o.csv")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o.csv").read_text().startswith("subject_id,posterior")



def test_missing_file_is_reported(tmp_path, capsys):
    assert main(["swap", "--votes", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "nope.csv: no such file" in capsys.readouterr().err


def test_real_steller_watch_votes_reproduce_the_published_counts():
    folder = realdata("Data-digging", "scripts_ProjectExamples", "stellerWatch")
    ext = pd.read_csv(folder / "presence-or-absence-classifications-beta-extract.csv")
    agg = pd.read_csv(folder / "presence-or-absence-classifications-beta-aggregate.csv").rename(
        columns={"# subject_ids": "subject_id"})
    ext = ext[ext["val"].isin(["Yes!", "No."])]
    users = pd.factorize(ext["user_name"])[0]              # anonymous volunteers have no user_id
    votes = np.column_stack([ext["subject_ids"].to_numpy(), users, (ext["val"] == "Yes!").to_numpy(int)])
    from aggregation import DawidSkene, MajorityVote
    mv = MajorityVote().fit(votes)
    ref = agg.set_index("subject_id").loc[mv.subject_ids_]
    np.testing.assert_array_equal(mv.result_.counts[:, 1], ref["frac_yes"].to_numpy())   # the script's counts
    np.testing.assert_array_equal(mv.result_.counts[:, 0], ref["frac_no"].to_numpy())
    # The script's published call is "Yes!" as soon as anyone saw an animal (presence-or-absence);
    # the Bayesian aggregate is a different question, so compare it with the vote majority instead.
    published = (ref["aggregate_result"] == "Yes!").to_numpy()
    np.testing.assert_array_equal(published, ref["frac_yes"].to_numpy() > 0)
    ds = DawidSkene().fit(votes)
    majority = mv.result_.counts[:, 1] > mv.result_.counts[:, 0]
    assert ((ds.posterior_[:, 1] > 0.5) == majority).mean() >= 0.97
