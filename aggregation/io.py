"""CSV input and output for the command line (exact formats; other tools depend on them).

Inputs are read as text and checked column by column, so that a malformed file stops with the file,
the line (1 = header) and the reason: a missing column, an empty or non-numeric value, a non-integer
id, an answer outside 0/1, a negative box size, or an unknown question/answer name.

=========================  ============================================================
votes (swap)               ``subject_id,user_id,answer``  (answer 1 = yes, 0 = no), time order
gold (swap)                ``subject_id,label``  (1/0)
votes (tree)               ``subject_id,user_id,question,answer``  (the tree's names), time order
gold (tree)                ``subject_id,question,answer``
marks                      ``subject_id,user_id,x,y,width,height``  (pixels, x/y top-left)
seen                       ``subject_id,user_id``  (every volunteer who classified the subject)
out (swap)                 ``subject_id,posterior,n_votes,retired,retired_at_vote,label``
out (tree)                 ``subject_id,question,answer,probability,n_votes``
out (boxes)                ``subject_id,x,y,width,height,probability,n_marks,spread``
=========================  ============================================================
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .tree import DecisionTree

SWAP_OUT = ["subject_id", "posterior", "n_votes", "retired", "retired_at_vote", "label"]
TREE_OUT = ["subject_id", "question", "answer", "probability", "n_votes"]
BOXES_OUT = ["subject_id", "x", "y", "width", "height", "probability", "n_marks", "spread"]


class InputError(ValueError):
    """A malformed input file. ``str(err)`` reads ``PATH, line N: reason``."""

    def __init__(self, path: str | Path, line: int | None, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")


def read_table(path: str | Path, columns: Mapping[str, str]) -> pd.DataFrame:
    """Read ``path`` and check each required column; kinds: ``int``, ``binary`` (0/1), ``float``,
    ``size`` (float >= 0), ``str``. Returns the columns converted; extra columns are ignored."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "no such file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(path, 1, "the file is empty (no header)") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        line = _line_from_message(str(exc))
        raise InputError(path, line, f"cannot parse CSV ({str(exc).strip()})") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(path, 1, f"missing column {', '.join(repr(c) for c in missing)} "
                                  f"(header has: {', '.join(df.columns)})")
    out = {}
    for col, kind in columns.items():
        raw = df[col].astype(str).str.strip()
        empty = (raw == "").to_numpy()
        if empty.any():
            i = int(np.flatnonzero(empty)[0])
            raise InputError(path, i + 2, f"column {col!r} is empty")
        if kind == "str":
            out[col] = raw.to_numpy(dtype=object)
            continue
        num = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(num)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(path, i + 2, f"column {col!r}: {raw.iloc[i]!r} is not a number")
        if kind in ("int", "binary"):
            frac = num != np.round(num)
            if frac.any():
                i = int(np.flatnonzero(frac)[0])
                raise InputError(path, i + 2, f"column {col!r}: {raw.iloc[i]!r} is not an integer")
            if np.abs(num).max(initial=0) >= 2 ** 53:
                i = int(np.argmax(np.abs(num)))
                raise InputError(path, i + 2, f"column {col!r}: {raw.iloc[i]!r} is too large for an id")
            vals = np.round(num).astype(np.int64)
            if kind == "binary":
                nb = (vals != 0) & (vals != 1)
                if nb.any():
                    i = int(np.flatnonzero(nb)[0])
                    raise InputError(path, i + 2, f"column {col!r}: {raw.iloc[i]!r} is not 0 or 1")
            out[col] = vals
        elif kind in ("float", "size"):
            if kind == "size" and (num < 0).any():
                i = int(np.flatnonzero(num < 0)[0])
                raise InputError(path, i + 2, f"column {col!r}: negative size {raw.iloc[i]!r}")
            out[col] = num
        else:  # pragma: no cover - programming error
            raise ValueError(f"unknown column kind {kind!r}")
    return pd.DataFrame(out)


def _line_from_message(msg: str) -> int | None:
    import re
    m = re.search(r"line (\d+)", msg)
    return int(m.group(1)) if m else None


def read_swap_votes(path) -> np.ndarray:
    """int array (n_votes, 3): subject_id, user_id, answer (0/1)."""
    df = read_table(path, {"subject_id": "int", "user_id": "int", "answer": "binary"})
    return df[["subject_id", "user_id", "answer"]].to_numpy(np.int64)


def read_swap_gold(path) -> dict[int, int]:
    df = read_table(path, {"subject_id": "int", "label": "binary"})
    dup = df["subject_id"].duplicated().to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise InputError(path, i + 2, f"subject {int(df['subject_id'].iloc[i])} appears twice")
    return dict(zip(df["subject_id"].tolist(), df["label"].tolist()))


def read_tree_votes(path, tree: DecisionTree) -> pd.DataFrame:
    df = read_table(path, {"subject_id": "int", "user_id": "int", "question": "str", "answer": "str"})
    _check_names(path, df, tree)
    return df


def read_tree_gold(path, tree: DecisionTree) -> pd.DataFrame:
    df = read_table(path, {"subject_id": "int", "question": "str", "answer": "str"})
    _check_names(path, df, tree)
    dup = df.duplicated(["subject_id", "question"]).to_numpy()
    if dup.any():
        i = int(np.flatnonzero(dup)[0])
        raise InputError(path, i + 2, f"subject {int(df['subject_id'].iloc[i])} has two gold answers for "
                                      f"{df['question'].iloc[i]!r}")
    return df


def _check_names(path, df: pd.DataFrame, tree: DecisionTree) -> None:
    q = df["question"].to_numpy(dtype=object)
    known = np.isin(q, [x.name for x in tree.questions])
    if not known.all():
        i = int(np.flatnonzero(~known)[0])
        raise InputError(path, i + 2, f"unknown question {q[i]!r} (questions: {', '.join(x.name for x in tree.questions)})")
    col = (df["question"] + "_" + df["answer"]).to_numpy(dtype=object)
    ok = np.isin(col, list(tree.columns))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        answers = ", ".join(tree[q[i]].answer_names)
        raise InputError(path, i + 2, f"question {q[i]!r} has no answer {df['answer'].iloc[i]!r} (answers: {answers})")


def read_marks(path) -> pd.DataFrame:
    return read_table(path, {"subject_id": "int", "user_id": "int", "x": "float", "y": "float",
                             "width": "size", "height": "size"})


def read_seen(path) -> pd.DataFrame:
    return read_table(path, {"subject_id": "int", "user_id": "int"})


def write_csv(df: pd.DataFrame, path, columns) -> None:
    df[list(columns)].to_csv(path, index=False, float_format="%.10g")
