"""``python -m aggregation {swap,tree,boxes}``: batch aggregation from CSV files (formats: aggregation.io).

Exit status 0 on success, 2 on malformed input (the message names the file, the line and the reason).
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import numpy as np
import pandas as pd

from . import io
from .boxes import BoxAggregator
from .questions import TreeAggregator
from .swap import Swap
from .tree import DecisionTree, TreeError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m aggregation", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    sw = sub.add_parser("swap", help="SWAP posteriors and retirement for a yes/no question")
    sw.add_argument("--votes", required=True, help="CSV: subject_id,user_id,answer (1 yes, 0 no), time order")
    sw.add_argument("--gold", help="CSV: subject_id,label (1/0); volunteers learn their skills from these")
    sw.add_argument("--out", required=True, help="CSV: subject_id,posterior,n_votes,retired,retired_at_vote,label")
    sw.add_argument("--prior", type=float, default=0.3, help="P(yes) before any vote (GZX: 0.3)")
    sw.add_argument("--detect", type=float, default=0.99, help="detection threshold (GZX: 0.99)")
    sw.add_argument("--reject", type=float, default=0.004, help="rejection threshold (GZX: 0.004)")
    sw.add_argument("--initial-pl", type=float, default=0.5, help='initial P("yes"|yes)')
    sw.add_argument("--initial-pd", type=float, default=0.5, help='initial P("no"|no)')
    sw.add_argument("--pseudo-votes", type=float, default=2.0, help="weight of the initial skills in votes")
    sw.add_argument("--skill-cap", type=float, default=0.99, help="upper bound of PL and PD")
    sw.add_argument("--min-votes", type=int, default=0, help="no threshold retirement before this many votes")
    sw.add_argument("--vote-cap", type=int, default=None, help="undecided subjects retire at this many votes")
    sw.add_argument("--expert-after", type=int, default=None, help="undecided subjects go to experts at this many votes")

    tr = sub.add_parser("tree", help="per-answer probabilities along a decision tree (Dawid-Skene per question)")
    tr.add_argument("--votes", required=True, help="CSV: subject_id,user_id,question,answer (tree names)")
    tr.add_argument("--workflow", required=True, help="decision tree JSON (aggregation/trees/*.json format)")
    tr.add_argument("--gold", help="CSV: subject_id,question,answer")
    tr.add_argument("--out", required=True, help="CSV: subject_id,question,answer,probability,n_votes")
    tr.add_argument("--method", default="dawid_skene", help="aggregator per question (default dawid_skene)")

    bx = sub.add_parser("boxes", help="cluster clump boxes and score them")
    bx.add_argument("--marks", required=True, help="CSV: subject_id,user_id,x,y,width,height (pixels)")
    bx.add_argument("--seen", required=True, help="CSV: subject_id,user_id (everyone who classified)")
    bx.add_argument("--out", required=True, help="CSV: subject_id,x,y,width,height,probability,n_marks,spread")
    bx.add_argument("--iou-threshold", type=float, default=BoxAggregator().iou_threshold,
                    help="boxes closer than this IoU are merged")
    return p


def run_swap(args) -> int:
    votes = io.read_swap_votes(args.votes)
    gold = io.read_swap_gold(args.gold) if args.gold else None
    if not gold:
        print("warning: no gold standard: volunteers keep their initial skills", file=sys.stderr)
    agg = Swap(prior=args.prior, detect=args.detect, reject=args.reject, initial_pl=args.initial_pl,
               initial_pd=args.initial_pd, pseudo_votes=args.pseudo_votes, skill_cap=args.skill_cap,
               min_votes=args.min_votes, vote_cap=args.vote_cap, expert_after=args.expert_after)
    r = agg.fit(votes, gold=gold).result_
    retired = r.retired
    label = np.where(r.gold >= 0, r.gold, r.label)
    out = pd.DataFrame({
        "subject_id": r.subject_ids,
        "posterior": r.posterior[:, 1],
        "n_votes": r.n_votes,
        "retired": retired.astype(int),
        "retired_at_vote": pd.Series(r.retired_at_vote, dtype="Int64").where(retired, pd.NA),
        "label": pd.Series(label, dtype="Int64").where(label >= 0, pd.NA),
    })
    io.write_csv(out, args.out, io.SWAP_OUT)
    return 0


def run_tree(args) -> int:
    try:
        tree = DecisionTree.from_file(args.workflow)
    except (TreeError, OSError) as exc:
        raise io.InputError(args.workflow, None, str(exc)) from None
    votes = io.read_tree_votes(args.votes, tree)
    gold = io.read_tree_gold(args.gold, tree) if args.gold else None
    agg = TreeAggregator(tree, method=args.method).fit(votes, gold=gold)
    io.write_csv(agg.to_frame(), args.out, io.TREE_OUT)
    return 0


def run_boxes(args) -> int:
    marks = io.read_marks(args.marks)
    seen = io.read_seen(args.seen)
    agg = BoxAggregator(iou_threshold=args.iou_threshold).fit(marks, seen)
    io.write_csv(agg.clusters_, args.out, io.BOXES_OUT)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return {"swap": run_swap, "tree": run_tree, "boxes": run_boxes}[args.command](args)
    except io.InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:     # bad parameter values (thresholds out of range, ...)
        print(f"error: {exc}", file=sys.stderr)
        return 2
