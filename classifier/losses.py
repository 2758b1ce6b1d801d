"""The Dirichlet-multinomial likelihood of volunteer votes (Walmsley et al. 2022, MNRAS 509, 3966, Eq. 1-3).

For one question with answers i = 1..K, votes k_i (N = sum k_i) and predicted concentrations alpha_i
(A = sum alpha_i), the probability of the votes is

    log p(k | alpha) = log Gamma(N + 1) + log Gamma(A) - log Gamma(N + A)
                       + sum_i [log Gamma(k_i + alpha_i) - log Gamma(alpha_i) - log Gamma(k_i + 1)]

(the Dirichlet-multinomial, or multivariate Polya, distribution). Questions are treated as independent
given the image, so the loss of a galaxy is the sum over questions of -log p. A question nobody answered
(N = 0, or counts given as NaN) has p = 1 exactly and is masked out explicitly, so it adds neither loss
nor gradient: this is what lets one model learn from galaxies with partial votes down the tree.
"""
from __future__ import annotations

import torch
from torch import nn

from .questions import QuestionLayout, as_tree


def dirichlet_multinomial_log_prob(concentrations: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """log p(counts | concentrations) for ONE question: (..., K), (..., K) -> (...).

    Counts need not be integers (the Gamma function interpolates), which allows pseudo-counts.
    """
    n = counts.sum(-1)
    a = concentrations.sum(-1)
    return (torch.lgamma(n + 1) + torch.lgamma(a) - torch.lgamma(n + a)
            + (torch.lgamma(counts + concentrations) - torch.lgamma(concentrations) - torch.lgamma(counts + 1)).sum(-1))


def tree_neg_log_prob(concentrations: torch.Tensor, counts: torch.Tensor, layout: QuestionLayout) -> torch.Tensor:
    """Per-question negative log-likelihood, (B, A), (B, A) -> (B, Q); 0 where a question has no votes.

    All questions are evaluated at once: the per-answer Gamma terms are computed on the whole (B, A) array
    and summed within questions by a (A, Q) indicator matmul, so there is no Python loop over questions.
    NaN counts mean "not asked" and count as zero votes. Computed in the dtype of ``concentrations``
    (call with float32 or float64; under autocast the caller should pass ``.float()``).
    """
    counts = torch.nan_to_num(counts.to(concentrations.dtype), nan=0.0)
    m = layout.indicator(concentrations.device, concentrations.dtype)
    n = counts @ m                                                    # (B, Q) votes per question
    a = concentrations @ m                                            # (B, Q) total concentration
    per_answer = torch.lgamma(counts + concentrations) - torch.lgamma(concentrations) - torch.lgamma(counts + 1)
    log_p = torch.lgamma(n + 1) + torch.lgamma(a) - torch.lgamma(n + a) + per_answer @ m
    return torch.where(n > 0, -log_p, torch.zeros_like(log_p))


class TreeLoss(nn.Module):
    """Dirichlet-multinomial loss summed over the questions of a tree: (B, A), (B, A) -> (B,).

    ``forward`` returns one loss per galaxy (sum over answered questions); the training step takes the mean
    over the batch, as Zoobot does. ``per_question`` gives the (B, Q) matrix for diagnostics.
    """

    def __init__(self, tree):
        super().__init__()
        self.layout = QuestionLayout(as_tree(tree))

    def per_question(self, concentrations: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        return tree_neg_log_prob(concentrations, counts, self.layout)

    def forward(self, concentrations: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        return self.per_question(concentrations, counts).sum(-1)
