"""Simulated volunteers: a seeded population with heterogeneous, per-question skills, who answer by
walking the decision tree, and the stream of sessions in which they arrive.

The population (:class:`PopulationConfig`, every number configurable):

=============  ======  =====================================================================================
kind           share   behaviour at a question on the galaxy's true path
=============  ======  =====================================================================================
``expert``     10 %    errs ``expert_error_scale`` (0.2) times as often as an average volunteer with skill 1:
                       ~97 % right on smooth-or-featured, ~90 % on bulge size; ~95 % over the tree
``average``    70 %    right with probability ``VOLUNTEER_ACCURACY[q] * clarity * skill`` (capped at 0.97),
                       ``skill`` drawn per volunteer in ``average_skill`` (0.90-1.03: 75-85 % on the first
                       question, 50-65 % on bars, winding and bulge size); wrong answers fall on the
                       neighbours of ordered questions (``classifier.synthetic``'s confusions)
``random``     15 %    a uniformly random answer at every question (random clickers)
``contrarian``  5 %    a wrong answer (uniform over the others) with probability ``contrarian_wrong`` (0.8)
=============  ======  =====================================================================================

``clarity`` is drawn once per galaxy in [0.85, 1.1] (as ``classifier.synthetic.simulate_votes`` does): a
hard galaxy is hard for everyone. Every volunteer follows the ``next`` links of their *own* answers, so a
wrong answer early leads to questions off the true path, answered from ``OFF_PATH_PRIOR`` (random clickers:
uniformly), and deeper questions are answered only by those who reach them.

Activity is heavy tailed, as on Zooniverse: a volunteer's share of sessions is proportional to
``rank ** -activity_exponent`` (ranks shuffled over kinds). A session is a few galaxies in a row (geometric
length, mean ``session_mean``).

Randomness: the answer of volunteer ``v`` to galaxy ``g`` depends only on ``(seed, v, g)``, so every arm of a
simulation sees the same answer from the same volunteer (common random numbers). Pure numpy; no Django.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from aggregation.tree import DecisionTree
# The realistic confusion of ``classifier.synthetic.simulate_votes`` (one volunteer at a time, here).
from classifier.synthetic import OFF_PATH_PRIOR, VOLUNTEER_ACCURACY, _answer_probs

KINDS = ("expert", "average", "random", "contrarian")
DEFAULT_ACCURACY = 0.7  # a question VOLUNTEER_ACCURACY does not list (another tree)


@dataclass(frozen=True)
class PopulationConfig:
    """Who the volunteers are and how they come (see the module docstring)."""

    mix: Mapping[str, float] = field(default_factory=lambda: {"expert": 0.10, "average": 0.70, "random": 0.15,
                                                              "contrarian": 0.05})
    average_skill: tuple[float, float] = (0.90, 1.03)
    expert_error_scale: float = 0.2
    contrarian_wrong: float = 0.8
    clarity: tuple[float, float] = (0.85, 1.10)
    activity_exponent: float = 0.8
    session_mean: float = 10.0
    session_max: int = 60

    def __post_init__(self):
        unknown = set(self.mix) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown volunteer kinds {sorted(unknown)}; known kinds: {', '.join(KINDS)}")
        if not any(v > 0 for v in self.mix.values()) or any(v < 0 for v in self.mix.values()):
            raise ValueError("mix needs non-negative shares, at least one positive")
        if self.session_mean < 1:
            raise ValueError("session_mean must be at least 1")


@dataclass(frozen=True)
class Session:
    volunteer: int   # index into the population
    length: int      # galaxies the volunteer means to classify in this visit


class VolunteerPopulation:
    """``n`` volunteers drawn from ``config`` with ``seed``.

    After construction: ``kinds_`` (n,) kind names, ``skill_`` (n,) the average volunteers' skill factor
    (1 for the others), ``activity_`` (n,) share of sessions (sums to 1).
    """

    def __init__(self, n: int, *, seed: int = 0, config: PopulationConfig | None = None):
        if n < 1:
            raise ValueError("a population needs at least one volunteer")
        self.n = n
        self.seed = seed
        self.config = config or PopulationConfig()
        cfg = self.config
        rng = np.random.default_rng([int(seed), 101])
        names = [k for k in KINDS if cfg.mix.get(k, 0) > 0]
        share = np.array([cfg.mix[k] for k in names], dtype=float)
        # Shares as exact as n allows (largest remainders), then shuffled: 100 volunteers -> 10/70/15/5.
        counts = np.floor(share / share.sum() * n).astype(int)
        rest = share / share.sum() * n - counts
        counts[np.argsort(-rest, kind="stable")[: n - counts.sum()]] += 1
        kinds = np.repeat(np.array(names, dtype=object), counts)
        self.kinds_ = kinds[rng.permutation(n)]
        lo, hi = cfg.average_skill
        self.skill_ = np.where(self.kinds_ == "average", rng.uniform(lo, hi, n), 1.0)
        activity = 1.0 / np.arange(1, n + 1) ** cfg.activity_exponent
        self.activity_ = rng.permutation(activity / activity.sum())

    # ------------------------------------------------------------------ arrivals
    def sessions(self) -> Iterator[Session]:
        """The endless, seeded stream of visits: who comes next and for how many galaxies."""
        rng = np.random.default_rng([int(self.seed), 202])
        p = 1.0 / self.config.session_mean
        while True:
            volunteers = rng.choice(self.n, size=256, p=self.activity_)
            lengths = np.minimum(rng.geometric(p, size=256), self.config.session_max)
            for v, length in zip(volunteers.tolist(), lengths.tolist()):
                yield Session(volunteer=int(v), length=int(length))

    # ------------------------------------------------------------------ answers
    def clarity(self, galaxy: int) -> float:
        """How clearly galaxy ``galaxy`` shows its features (a factor on every volunteer's accuracy)."""
        lo, hi = self.config.clarity
        return float(np.random.default_rng([int(self.seed), 303, int(galaxy)]).uniform(lo, hi))

    def answer_rng(self, volunteer: int, galaxy: int, visit: int = 0) -> np.random.Generator:
        key = [int(self.seed), 404, int(volunteer), int(galaxy)] + ([int(visit)] if visit else [])
        return np.random.default_rng(key)

    def question_probs(self, tree: DecisionTree, volunteer: int, question: str, truth: str | None,
                       clarity: float) -> np.ndarray:
        """P(answer) over ``tree[question]``'s answers, for this volunteer, given the true answer (None:
        the question is off the galaxy's true path)."""
        kind = self.kinds_[volunteer]
        k = len(tree[question].answers)
        if kind == "random":
            return np.full(k, 1.0 / k)
        if truth is None:
            return _answer_probs(tree, question, None, 0.0) if question in OFF_PATH_PRIOR else np.full(k, 1.0 / k)
        base = min(0.97, VOLUNTEER_ACCURACY.get(question, DEFAULT_ACCURACY) * clarity)
        if kind == "contrarian":
            t = tree[question].answer_names.index(truth)
            p = np.full(k, self.config.contrarian_wrong / (k - 1))
            p[t] = 1.0 - self.config.contrarian_wrong
            return p
        if kind == "expert":
            accuracy = 1.0 - (1.0 - base) * self.config.expert_error_scale
        else:
            accuracy = min(0.97, base * float(self.skill_[volunteer]))
        return _answer_probs(tree, question, truth, accuracy)

    def answer(self, tree: DecisionTree, volunteer: int, galaxy: int,
               truth: Sequence[tuple[str, str]], visit: int = 0) -> list[tuple[str, str]]:
        """Volunteer ``volunteer``'s path through ``tree`` for galaxy ``galaxy`` whose true path is ``truth``
        (``(question, answer)`` pairs). Always a valid path (``tree.validate_path`` accepts it). ``visit``
        > 0 is the same volunteer seeing the galaxy again (only the fixed-votes baseline with fewer
        volunteers than votes does that): an independent answer."""
        rng = self.answer_rng(volunteer, galaxy, visit)
        clarity = self.clarity(galaxy)
        true = dict(truth)
        path: list[tuple[str, str]] = []
        q = tree.first
        while q is not None:
            p = self.question_probs(tree, volunteer, q, true.get(q), clarity)
            names = tree[q].answer_names
            a = names[int(rng.choice(len(names), p=p))]
            path.append((q, a))
            q = tree[q].answer(a).next
        return path

    def describe(self) -> dict:
        """The population as numbers, for the report."""
        out = {"n": self.n, "seed": self.seed, "mix": dict(self.config.mix),
               "counts": {k: int((self.kinds_ == k).sum()) for k in KINDS},
               "activity_share": {k: round(float(self.activity_[self.kinds_ == k].sum()), 4) for k in KINDS},
               "average_skill": list(self.config.average_skill), "expert_error_scale": self.config.expert_error_scale,
               "contrarian_wrong": self.config.contrarian_wrong, "activity_exponent": self.config.activity_exponent,
               "session_mean": self.config.session_mean}
        return out


class VotePool:
    """Real votes replayed: volunteer answers to a galaxy are draws without replacement from its real
    vote counts (GZ DECaLS ``panoptes.csv``). When a galaxy's votes run out (a few have fewer than 40),
    further answers are drawn with replacement from all of its votes, and counted in ``exhausted_``.

    counts : int array (n_galaxies, K), real votes per answer of one question.
    """

    def __init__(self, counts: np.ndarray, *, seed: int = 0):
        self.counts = np.asarray(counts, dtype=np.int64)
        self.seed = seed
        self.exhausted_ = 0
        self._order: dict[int, np.ndarray] = {}
        self._used: dict[int, int] = {}

    def reset(self) -> VotePool:
        """Start again with full pools (each arm replays the same votes in the same order)."""
        self._used = {}
        self.exhausted_ = 0
        return self

    def _shuffled(self, galaxy: int) -> np.ndarray:
        if galaxy not in self._order:
            votes = np.repeat(np.arange(self.counts.shape[1]), self.counts[galaxy])
            self._order[galaxy] = np.random.default_rng([int(self.seed), 505, int(galaxy)]).permutation(votes)
        return self._order[galaxy]

    def draw(self, galaxy: int) -> int:
        """The next real vote (an answer index) for ``galaxy``."""
        order = self._shuffled(galaxy)
        i = self._used.get(galaxy, 0)
        self._used[galaxy] = i + 1
        if i < len(order):
            return int(order[i])
        self.exhausted_ += 1
        rng = np.random.default_rng([int(self.seed), 606, int(galaxy), i])
        return int(order[rng.integers(len(order))])
