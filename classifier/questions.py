"""The decision tree as tensors: which answer belongs to which question, and who reaches which question.

The tree itself is :class:`aggregation.tree.DecisionTree` (shared with the platform and the aggregator);
this module only turns it into the index arrays that the loss, the scorer and the acquisition functions
need, so no other module walks the tree in Python per galaxy.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Mapping

import torch

from aggregation.tree import BUILTIN_TREES, DecisionTree


def as_tree(tree: DecisionTree | str | Path | Mapping) -> DecisionTree:
    """A :class:`DecisionTree` from a tree, a built-in name (``gz_decals``, ``gz2``), a JSON path or a dict."""
    if isinstance(tree, DecisionTree):
        return tree
    if isinstance(tree, Mapping):
        return DecisionTree.from_dict(tree)
    if isinstance(tree, str) and tree in BUILTIN_TREES:
        return DecisionTree.builtin(tree)
    path = Path(tree)
    if not path.exists():
        raise FileNotFoundError(f"tree {str(tree)!r} is neither a built-in tree ({', '.join(sorted(BUILTIN_TREES))}) "
                                "nor an existing JSON file")
    return DecisionTree.from_file(path)


@dataclass(frozen=True, eq=False)
class QuestionLayout:
    """Index arrays for a tree whose answers are laid out as ``tree.columns`` (A answers, Q questions)."""

    tree: DecisionTree

    @property
    def columns(self) -> tuple[str, ...]:
        return self.tree.columns

    @property
    def n_answers(self) -> int:
        return len(self.tree.columns)

    @property
    def n_questions(self) -> int:
        return len(self.tree.questions)

    @cached_property
    def slices(self) -> list[slice]:
        """One slice into the answer axis per question, in tree order."""
        return [self.tree.question_slices[q.name] for q in self.tree.questions]

    @cached_property
    def answer_question(self) -> torch.Tensor:
        """long (A,): the question index of every answer."""
        return torch.tensor([qi for qi, s in enumerate(self.slices) for _ in range(s.start, s.stop)])

    def indicator(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """(A, Q) one-hot matrix: ``x @ indicator`` sums a (..., A) tensor within each question."""
        m = torch.zeros(self.n_answers, self.n_questions, dtype=dtype, device=device)
        m[torch.arange(self.n_answers), self.answer_question] = 1
        return m

    def question_sums(self, x: torch.Tensor) -> torch.Tensor:
        """(..., A) -> (..., Q): the sum of ``x`` over each question's answers."""
        return x @ self.indicator(x.device, x.dtype)

    def fractions(self, concentrations: torch.Tensor) -> torch.Tensor:
        """Expected vote fractions alpha_i / sum_q(alpha), (..., A) -> (..., A), the Dirichlet mean per question."""
        totals = self.question_sums(concentrations)[..., self.answer_question.to(concentrations.device)]
        return concentrations / totals

    def reach(self, fractions: torch.Tensor) -> torch.Tensor:
        """Probability that a volunteer reaches each question, (..., A) -> (..., Q).

        Vectorised :meth:`DecisionTree.reach_probability`: the first question is reached with probability 1
        and every other with the sum over the answers leading to it of P(parent) * P(answer | parent).
        An unlinked tree (short form, no ``next``) reaches every question.
        """
        shape = fractions.shape[:-1] + (self.n_questions,)
        if not self.tree.linked:
            return fractions.new_ones(shape)
        index = {q.name: i for i, q in enumerate(self.tree.questions)}
        reach = [fractions.new_zeros(fractions.shape[:-1]) for _ in range(self.n_questions)]
        reach[index[self.tree.first]] = reach[index[self.tree.first]] + 1
        for name in self.tree.topological_order:
            qi, sl = index[name], self.tree.question_slices[name]
            for j, answer in enumerate(self.tree[name].answers):
                if answer.next is not None:
                    reach[index[answer.next]] = reach[index[answer.next]] + reach[qi] * fractions[..., sl.start + j]
        return torch.stack(reach, dim=-1)
