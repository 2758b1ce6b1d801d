"""Active-learning acquisition functions over MC-dropout samples of Dirichlet concentrations.

Every function maps concentrations (S, B, A) (S dropout samples, B galaxies, A answers of a tree) to one
score per galaxy (B,), higher = more worth a volunteer's time, and picks the k best ids, optionally spread
out in embedding space::

    acq = create_acquisition("bald")
    s = acq(concentrations, tree)                      # (B,)
    chosen = acq.select(ids, s, k=100, embeddings=emb) # k distinct ids

BALD (Houlsby et al. 2011) is the mutual information between the votes a galaxy would receive and the
model's parameters, I[k; w] = H[E_w p(k | w)] - E_w H[p(k | w)], where the MC-dropout samples stand in for
draws of w and p(k | w) is the Dirichlet-multinomial predictive of the vote counts k of N volunteers
(Walmsley et al. 2020, MNRAS 491, 1554, Eq. 5-6). It is computed exactly, by enumerating every possible
vote vector: the log-probabilities of all outcomes of a question are one matrix product of a small
log-Gamma table with a fixed one-hot outcome matrix, so it runs as fast as a GPU can multiply.

For a whole decision tree, a question's information counts in proportion to the chance that a volunteer
reaches it (the tree's reach probability under the mean predicted fractions): an uncertain spiral-arm
count matters little for a galaxy that is almost surely smooth.
"""
from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations
from typing import Callable, Sequence

import numpy as np
import torch

from .questions import QuestionLayout, as_tree

_ACQUISITIONS: dict[str, Callable[..., "Acquisition"]] = {}


def register_acquisition(cls):
    _ACQUISITIONS[cls.name] = cls
    return cls


def list_acquisitions() -> list[str]:
    return sorted(_ACQUISITIONS)


def create_acquisition(name: str, **kwargs) -> "Acquisition":
    """The acquisition function registered as ``name`` (``bald``, ``entropy``, ``margin``, ``random``)."""
    if name not in _ACQUISITIONS:
        raise KeyError(f"unknown acquisition {name!r}; known acquisitions: {', '.join(list_acquisitions())}")
    return _ACQUISITIONS[name](**kwargs)


# ------------------------------------------------------------------------------------- vote outcomes
@lru_cache(maxsize=64)
def vote_outcomes(n_answers: int, n_votes: int) -> np.ndarray:
    """Every way ``n_votes`` volunteers can split over ``n_answers`` answers: int (M, K), M = C(N+K-1, K-1).

    Stars and bars: choose the K-1 bar positions among N+K-1 slots.
    """
    k, n = n_answers, n_votes
    rows = []
    for bars in combinations(range(n + k - 1), k - 1):
        edges = (-1,) + bars + (n + k - 1,)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(k)])
    return np.asarray(rows, dtype=np.int64)


def votes_for_budget(n_answers: int, n_votes: int, max_outcomes: int) -> int:
    """The largest N' <= ``n_votes`` whose outcome count C(N'+K-1, K-1) fits in ``max_outcomes``."""
    n = n_votes
    while n > 1 and math.comb(n + n_answers - 1, n_answers - 1) > max_outcomes:
        n -= 1
    return n


@lru_cache(maxsize=64)
def _outcome_design(n_answers: int, n_votes: int) -> tuple[np.ndarray, np.ndarray]:
    """One-hot design (K*(N+1), M) selecting table[i, k_mi], and the multinomial coefficients (M,)."""
    out = vote_outcomes(n_answers, n_votes)
    m = len(out)
    design = np.zeros((n_answers * (n_votes + 1), m), dtype=np.float32)
    for i in range(n_answers):
        design[i * (n_votes + 1) + out[:, i], np.arange(m)] = 1.0
    from scipy.special import gammaln
    log_coef = gammaln(n_votes + 1) - gammaln(out + 1).sum(1)
    return design, log_coef


def dm_outcome_log_probs(concentrations: torch.Tensor, n_votes: int) -> torch.Tensor:
    """log p(k | alpha) of every vote outcome of one question: (..., K) -> (..., M).

    log p = log N!/prod k_i! + log Gamma(A) - log Gamma(N + A) + sum_i [log Gamma(k_i + a_i) - log Gamma(a_i)];
    the last sum needs only the K (N+1) values log Gamma(k + a_i), k = 0..N, so it is a gather-and-add,
    written here as one matmul with the one-hot outcome design.
    """
    k = concentrations.shape[-1]
    design, log_coef = _outcome_design(k, n_votes)
    design_t = torch.as_tensor(design, device=concentrations.device, dtype=concentrations.dtype)
    steps = torch.arange(n_votes, device=concentrations.device, dtype=concentrations.dtype)
    # log Gamma(a + k) - log Gamma(a) = sum_{j<k} log(a + j): a cumulative sum of small terms, about ten
    # times more accurate in float32 than the difference of two large log-Gammas
    rising = torch.log(concentrations.unsqueeze(-1) + steps).cumsum(-1)    # (..., K, N)
    table = torch.cat([rising.new_zeros(rising.shape[:-1] + (1,)), rising], -1)   # (..., K, N+1)
    total = concentrations.sum(-1, keepdim=True)
    norm = -torch.log(total + steps).sum(-1, keepdim=True)                 # log Gamma(A) - log Gamma(A + N)
    log_p = table.flatten(-2) @ design_t                                   # (..., M)
    return log_p + torch.as_tensor(log_coef, device=log_p.device, dtype=log_p.dtype) + norm


def dm_mixture_information(concentrations: torch.Tensor, n_votes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Predictive entropy and mutual information of the MC mixture, for one question.

    concentrations : (S, B, K). Returns (entropy (B,), mutual_information (B,)) in nats, where the
    predictive is p_bar(k) = mean_s DM(k | alpha_s, N) and MI = mean_s KL(DM_s || p_bar) = H[p_bar] - mean_s H[DM_s],
    written as a mean of KL divergences so that it is >= 0 and exactly 0 when all samples agree.
    """
    s = concentrations.shape[0]
    log_p = dm_outcome_log_probs(concentrations, n_votes)                  # (S, B, M)
    log_bar = torch.logsumexp(log_p, dim=0) - math.log(s)                  # (B, M)
    p = log_p.exp()
    mi = (p * (log_p - log_bar)).sum(-1).mean(0).clamp_min(0.0)
    entropy = -(log_bar.exp() * log_bar).sum(-1)
    return entropy, mi


# ------------------------------------------------------------------------------------- the functions
class Acquisition:
    """Base class: ``__call__(concentrations (S, B, A), tree) -> scores (B,)`` and ``select``.

    questions : restrict the score to these question names (default: every question, weighted by reach).

    Most functions score each galaxy on its own. A *pool-relative* one (``pool_relative = True``) scores a
    galaxy against the rest of the pool: it defines ``parts(concentrations, tree) -> (B, P)``, computed batch
    by batch, and ``combine(parts of the whole pool (n, P)) -> (n,)``, called once at the end (:func:`score`
    does that). Calling it on one batch treats that batch as the pool.
    """

    name = ""
    pool_relative = False

    def __init__(self, questions: Sequence[str] | None = None):
        self.questions = tuple(questions) if questions else None
        self._layouts: dict = {}

    def layout(self, tree) -> QuestionLayout:
        if isinstance(tree, QuestionLayout):
            return tree
        tree = as_tree(tree)
        if tree not in self._layouts:          # DecisionTree is a frozen, hashable dataclass
            self._layouts[tree] = QuestionLayout(tree)
        return self._layouts[tree]

    def question_weights(self, concentrations: torch.Tensor, layout: QuestionLayout) -> torch.Tensor:
        """(B, Q): reach probability of each question under the mean predicted fractions, zero for
        questions outside ``self.questions``."""
        w = layout.reach(layout.fractions(concentrations).mean(0))
        if self.questions is not None:
            names = [q.name for q in layout.tree.questions]
            unknown = [q for q in self.questions if q not in names]
            if unknown:
                raise KeyError(f"unknown question(s) {unknown}; tree questions: {', '.join(names)}")
            keep = torch.tensor([n in self.questions for n in names], device=w.device)
            w = w * keep
        return w

    def __call__(self, concentrations: torch.Tensor, tree) -> torch.Tensor:
        raise NotImplementedError

    def select(self, ids: Sequence[str], scores, k: int, embeddings=None, *, pool_factor: int = 4,
               seed: int = 0) -> np.ndarray:
        """The ``k`` ids with the highest ``scores`` (B,); see :func:`select_top_k`."""
        return select_top_k(ids, scores, k, embeddings, pool_factor=pool_factor, seed=seed)


def select_top_k(ids: Sequence[str], scores, k: int, embeddings=None, *, pool_factor: int = 4,
                 seed: int = 0) -> np.ndarray:
    """The ``k`` ids with the highest scores; with ``embeddings`` (B, D), spread out in embedding space.

    Diverse selection: take the ``pool_factor * k`` best-scored galaxies, cluster their (L2-normalised)
    embeddings into k groups with k-means, and keep the best-scored galaxy of each group, so that a
    batch is not k near-duplicates of one confusing kind of galaxy. Returns ids, best score first.
    """
    ids = np.asarray(ids)
    scores = np.asarray(torch.as_tensor(scores).float().cpu())
    if len(ids) != len(scores):
        raise ValueError(f"{len(ids)} ids but {len(scores)} scores")
    k = min(int(k), len(ids))
    order = np.argsort(-scores, kind="stable")
    if embeddings is None or k == 0 or k == len(ids):
        return ids[order[:k]]
    pool = order[:min(len(ids), pool_factor * k)]
    emb = np.asarray(torch.as_tensor(embeddings).float().cpu())[pool]
    emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    labels = _kmeans(emb, k, seed)
    chosen: list[int] = []
    for c in range(k):
        members = pool[labels == c]
        if len(members):
            chosen.append(members[0])          # pool is in score order, so the first is the best
    if len(chosen) < k:                          # empty clusters: fill with the next best unchosen
        taken = set(chosen)
        chosen += [i for i in pool if i not in taken][: k - len(chosen)]
    chosen = sorted(chosen, key=lambda i: -scores[i])
    return ids[np.asarray(chosen, dtype=int)]


def _kmeans(x: np.ndarray, k: int, seed: int, iters: int = 20) -> np.ndarray:
    """Cluster labels (n,) of ``x`` (n, D) by k-means++ initialisation and Lloyd iterations."""
    rng = np.random.default_rng(seed)
    n = len(x)
    centers = [x[rng.integers(n)]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1.0 / n)
        centers.append(x[rng.choice(n, p=p)])
        d2 = np.minimum(d2, ((x - centers[-1]) ** 2).sum(1))
    c = np.stack(centers)
    labels = np.zeros(n, dtype=int)
    for _ in range(iters):
        dist = (x ** 2).sum(1)[:, None] - 2 * x @ c.T + (c ** 2).sum(1)[None]
        new = dist.argmin(1)
        if _ and np.array_equal(new, labels):
            break
        labels = new
        for j in range(k):
            if (labels == j).any():
                c[j] = x[labels == j].mean(0)
    return labels


class _DMInformation(Acquisition):
    """Shared by BALD and predictive entropy: per-question DM mixture information, reach-weighted."""

    def __init__(self, questions: Sequence[str] | None = None, total_votes: int = 40, max_outcomes: int = 4096,
                 chunk_elements: int = 2 ** 24):
        super().__init__(questions)
        self.total_votes, self.max_outcomes, self.chunk_elements = total_votes, max_outcomes, chunk_elements

    def per_question(self, concentrations: torch.Tensor, tree) -> tuple[torch.Tensor, torch.Tensor]:
        """(entropy (B, Q), mutual information (B, Q)) for every question, in nats.

        A question with K answers is scored for N = ``total_votes`` volunteers (GZ DECaLS collected about
        40), lowered where needed so that its C(N+K-1, K-1) outcomes stay within ``max_outcomes``.
        """
        layout = self.layout(tree)
        conc = concentrations if concentrations.dtype == torch.float64 else concentrations.float()
        s, b, _ = conc.shape
        ent = conc.new_zeros(b, layout.n_questions)
        mi = conc.new_zeros(b, layout.n_questions)
        for qi, sl in enumerate(layout.slices):
            k = sl.stop - sl.start
            n = votes_for_budget(k, self.total_votes, self.max_outcomes)
            m = math.comb(n + k - 1, k - 1)
            step = max(1, self.chunk_elements // (s * m))
            for lo in range(0, b, step):
                e, i = dm_mixture_information(conc[:, lo:lo + step, sl], n)
                ent[lo:lo + step, qi], mi[lo:lo + step, qi] = e, i
        return ent, mi


@register_acquisition
class BALD(_DMInformation):
    """Mutual information between the votes and the model parameters (Walmsley et al. 2020, Eq. 6)."""

    name = "bald"

    def __call__(self, concentrations: torch.Tensor, tree) -> torch.Tensor:
        layout = self.layout(tree)
        _, mi = self.per_question(concentrations, layout)
        return (mi * self.question_weights(concentrations.to(mi.dtype), layout)).sum(-1)


@register_acquisition
class BalancedBALD(BALD):
    """BALD with every question given its share of each batch: the most informative galaxies *for each
    question*, in proportion to how often volunteers answer it.

    Reach-weighted BALD summed over the tree ranks galaxies by their largest information in nats, and the
    questions differ in scale: on a survey pool (three quarters smooth) a model's top 100 by that sum
    were 90 spirals and no ellipticals, most for their smooth-or-featured vote fractions, while the
    questions that ellipticals answer (how rounded, merging) got no labels. Here each question ranks the
    pool by its own reach-weighted information; question q's share s_q is its mean reach over the pool
    (the share of the (galaxy, question) pairs that volunteers would answer), and a galaxy that ranks in
    the top fraction u_q of the pool for q is taken once a batch reaches u_q / s_q of the pool, so a batch
    of the top k is, up to overlaps, the top k s_q galaxies of each question q. The score is a galaxy's
    place in that order (ties broken by the summed information) as a share of the pool: (n - i) / n for
    the i-th galaxy taken (i = 0 .. n-1), so in (0, 1]; galaxies with no information about any question
    score 0.

    Pool-relative: see :class:`Acquisition`.
    """

    name = "bald-balanced"
    pool_relative = True

    def parts(self, concentrations: torch.Tensor, tree) -> torch.Tensor:
        """(B, 2Q): each question's reach-weighted information, then each question's reach."""
        layout = self.layout(tree)
        _, mi = self.per_question(concentrations, layout)
        reach = self.question_weights(concentrations.to(mi.dtype), layout)
        return torch.cat([mi * reach, reach], dim=-1)

    def combine(self, parts) -> np.ndarray:
        parts = np.asarray(parts, dtype=np.float64)
        n, q = len(parts), parts.shape[1] // 2
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        info, reach = parts[:, :q], parts[:, q:]
        share = reach.sum(0) / max(reach.sum(), 1e-300)
        # u[i, q]: the fraction of the pool at least as informative about q as galaxy i (1/n for the best)
        rank = np.argsort(np.argsort(-info, axis=0, kind="stable"), axis=0, kind="stable")
        u = (rank + 1) / n
        with np.errstate(divide="ignore"):
            t = np.where((info > 0) & (share > 0), u / share, np.inf).min(1)
        order = np.lexsort((-info.sum(1), t))                  # by t, then by the summed information
        out = np.zeros(n)
        out[order] = (n - np.arange(n)) / n
        out[~np.isfinite(t)] = 0.0
        return out.astype(np.float32)

    def __call__(self, concentrations: torch.Tensor, tree) -> torch.Tensor:
        parts = self.parts(concentrations, tree)
        return torch.as_tensor(self.combine(parts.cpu().numpy()), device=concentrations.device)


@register_acquisition
class PredictiveEntropy(_DMInformation):
    """Entropy of the predictive distribution of votes (mixture over MC samples): total uncertainty,
    model and volunteer disagreement alike."""

    name = "entropy"

    def __call__(self, concentrations: torch.Tensor, tree) -> torch.Tensor:
        layout = self.layout(tree)
        ent, _ = self.per_question(concentrations, layout)
        return (ent * self.question_weights(concentrations.to(ent.dtype), layout)).sum(-1)


@register_acquisition
class Margin(Acquisition):
    """One minus the gap between the two most likely answers' mean predicted fractions (Scheffer et al.
    2001's margin sampling), averaged over questions with reach weights. In [0, 1]."""

    name = "margin"

    def __call__(self, concentrations: torch.Tensor, tree) -> torch.Tensor:
        layout = self.layout(tree)
        conc = concentrations.float()
        frac = layout.fractions(conc).mean(0)                                  # (B, A)
        w = self.question_weights(conc, layout)
        out = torch.zeros_like(w)
        for qi, sl in enumerate(layout.slices):
            f = frac[:, sl]
            if f.shape[-1] == 1:
                continue
            top = f.topk(2, dim=-1).values
            out[:, qi] = 1.0 - (top[:, 0] - top[:, 1])
        return (out * w).sum(-1) / w.sum(-1).clamp_min(1e-12)


@register_acquisition
class Random(Acquisition):
    """Uniform random scores: the baseline every other function must beat. Seeded; each call draws anew."""

    name = "random"

    def __init__(self, questions: Sequence[str] | None = None, seed: int = 0):
        super().__init__(questions)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, concentrations: torch.Tensor, tree) -> torch.Tensor:
        return torch.rand(concentrations.shape[1], generator=self.generator).to(concentrations.device)
