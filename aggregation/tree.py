"""Galaxy Zoo decision trees: parsing, validation and the dependencies between questions.

A tree is stored and served as JSON of one fixed shape, read by the platform, the aggregator and the
classifier alike::

    {"first": "smooth-or-featured",
     "questions": [{"name": "smooth-or-featured", "text": "...",
                    "answers": [{"name": "smooth", "text": "...", "next": "how-rounded"}, ...]},
                   ...]}

``next`` is another question's name, or null at the end of the tree. The classifier's command line also
accepts the short form where answers are plain names (``"answers": ["smooth", "featured-or-disk"]``) and
``first`` is omitted; such a tree has no ``next`` links, so every question counts as reachable.

Columns follow the Galaxy Zoo convention ``<question>_<answer>`` (``smooth-or-featured_featured-or-disk``).
This module is pure Python so that every part of the project, and a notebook, can share it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Mapping, Sequence

TREES_DIR = Path(__file__).resolve().parent / "trees"
BUILTIN_TREES = {"gz_decals": "gz_decals.json", "gz2": "gz2.json"}


class TreeError(ValueError):
    """A tree, or a path of answers through it, is not valid. The message says where and why."""


@dataclass(frozen=True)
class Answer:
    name: str
    text: str = ""
    next: str | None = None


@dataclass(frozen=True)
class Question:
    name: str
    text: str = ""
    answers: tuple[Answer, ...] = ()

    @property
    def answer_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.answers)

    def answer(self, name: str) -> Answer:
        for a in self.answers:
            if a.name == name:
                return a
        raise TreeError(f"question {self.name!r} has no answer {name!r} (answers: {', '.join(self.answer_names)})")


@dataclass(frozen=True)
class DecisionTree:
    """An immutable, validated decision tree.

    ``questions`` keep the order of the JSON; answer indices used by the aggregator and the classifier
    are positions within each question's ``answers``.
    """

    questions: tuple[Question, ...]
    first: str | None = None
    name: str = ""
    _index: Mapping[str, Question] = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self):
        index = {}
        for q in self.questions:
            if q.name in index:
                raise TreeError(f"question {q.name!r} appears twice")
            if not q.answers:
                raise TreeError(f"question {q.name!r} has no answers")
            if len(set(q.answer_names)) != len(q.answers):
                raise TreeError(f"question {q.name!r} repeats an answer name")
            index[q.name] = q
        object.__setattr__(self, "_index", index)
        if not self.questions:
            raise TreeError("the tree has no questions")
        if self.first is not None and self.first not in index:
            raise TreeError(f"first question {self.first!r} is not in the tree")
        for q in self.questions:
            for a in q.answers:
                if a.next is not None and a.next not in index:
                    raise TreeError(f"answer {q.name}_{a.name} leads to unknown question {a.next!r}")
        if self.linked:
            self._check_acyclic_and_reachable()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Mapping) -> "DecisionTree":
        if not isinstance(data, Mapping) or "questions" not in data:
            raise TreeError("a tree is a JSON object with a 'questions' list")
        questions = []
        for i, q in enumerate(data["questions"]):
            if not isinstance(q, Mapping) or "name" not in q or "answers" not in q:
                raise TreeError(f"questions[{i}] needs 'name' and 'answers'")
            answers = []
            for a in q["answers"]:
                if isinstance(a, str):
                    answers.append(Answer(name=a))
                elif isinstance(a, Mapping) and "name" in a:
                    answers.append(Answer(name=str(a["name"]), text=str(a.get("text", "")), next=a.get("next")))
                else:
                    raise TreeError(f"question {q['name']!r}: an answer is a name or an object with 'name'")
            questions.append(Question(name=str(q["name"]), text=str(q.get("text", "")), answers=tuple(answers)))
        first = data.get("first")
        tree = cls(questions=tuple(questions), first=first, name=str(data.get("name", "")))
        if first is None and tree.linked:
            raise TreeError("a tree with 'next' links needs 'first'")
        return tree

    @classmethod
    def from_json(cls, text: str) -> "DecisionTree":
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise TreeError(f"not JSON: {exc}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> "DecisionTree":
        return cls.from_json(Path(path).read_text())

    @classmethod
    def builtin(cls, key: str) -> "DecisionTree":
        """The trees that ship with the project: ``gz_decals`` (GZ DECaLS DR5) and ``gz2`` (Willett+2013)."""
        if key not in BUILTIN_TREES:
            raise KeyError(f"unknown tree {key!r}; known trees: {', '.join(sorted(BUILTIN_TREES))}")
        return cls.from_file(TREES_DIR / BUILTIN_TREES[key])

    def to_dict(self) -> dict:
        out: dict = {}
        if self.name:
            out["name"] = self.name
        out["first"] = self.first
        out["questions"] = [
            {"name": q.name, "text": q.text,
             "answers": [{"name": a.name, "text": a.text, "next": a.next} for a in q.answers]}
            for q in self.questions
        ]
        return out

    # ------------------------------------------------------------------ structure
    @property
    def linked(self) -> bool:
        """True when answers carry ``next`` links (a real tree), False for a flat list of questions."""
        return self.first is not None or any(a.next for q in self.questions for a in q.answers)

    def __getitem__(self, name: str) -> Question:
        try:
            return self._index[name]
        except KeyError:
            raise TreeError(f"unknown question {name!r} (questions: {', '.join(self._index)})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self):
        return iter(self.questions)

    def __len__(self) -> int:
        return len(self.questions)

    @cached_property
    def columns(self) -> tuple[str, ...]:
        """Every ``<question>_<answer>`` column, in tree order."""
        return tuple(f"{q.name}_{a.name}" for q in self.questions for a in q.answers)

    @cached_property
    def question_slices(self) -> dict[str, slice]:
        """Where each question's answers lie in :attr:`columns`."""
        out, start = {}, 0
        for q in self.questions:
            out[q.name] = slice(start, start + len(q.answers))
            start += len(q.answers)
        return out

    @cached_property
    def parents(self) -> dict[str, tuple[tuple[str, str], ...]]:
        """For each question, the (question, answer) pairs whose ``next`` leads straight to it."""
        out: dict[str, list[tuple[str, str]]] = {q.name: [] for q in self.questions}
        for q in self.questions:
            for a in q.answers:
                if a.next is not None:
                    out[a.next].append((q.name, a.name))
        return {k: tuple(v) for k, v in out.items()}

    def _check_acyclic_and_reachable(self) -> None:
        order = self.topological_order  # raises on a cycle
        seen = {self.first}
        for name in order:
            if name in seen:
                for a in self[name].answers:
                    if a.next is not None:
                        seen.add(a.next)
        unreachable = [q.name for q in self.questions if q.name not in seen]
        if unreachable:
            raise TreeError(f"questions not reachable from {self.first!r}: {', '.join(unreachable)}")

    @cached_property
    def topological_order(self) -> tuple[str, ...]:
        """Questions ordered so that every question comes after all questions that can lead to it."""
        indegree = {q.name: 0 for q in self.questions}
        for q in self.questions:
            for nxt in {a.next for a in q.answers if a.next is not None}:
                indegree[nxt] += 1
        ready = [q.name for q in self.questions if indegree[q.name] == 0]
        order = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for nxt in dict.fromkeys(a.next for a in self[name].answers if a.next is not None):
                indegree[nxt] -= 1
                if indegree[nxt] == 0:
                    ready.append(nxt)
        if len(order) != len(self.questions):
            raise TreeError("the tree has a cycle of next links")
        return tuple(order)

    # ------------------------------------------------------------------ paths
    def validate_path(self, answers: Sequence[Mapping[str, str]] | Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
        """Check that ``answers`` walk the tree from ``first`` to an end, following ``next`` links.

        ``answers`` are ``{"question": q, "answer": a}`` objects or ``(q, a)`` pairs. Returns the pairs.
        Raises :class:`TreeError` naming the step that is wrong. For an unlinked tree, each question may
        be answered at most once, in any order.
        """
        pairs: list[tuple[str, str]] = []
        for i, step in enumerate(answers):
            if isinstance(step, Mapping):
                if "question" not in step or "answer" not in step:
                    raise TreeError(f"answers[{i}] needs 'question' and 'answer'")
                pairs.append((str(step["question"]), str(step["answer"])))
            else:
                q, a = step
                pairs.append((str(q), str(a)))
        if not pairs:
            raise TreeError("no answers given")
        if not self.linked:
            seen: set[str] = set()
            for i, (q, a) in enumerate(pairs):
                if q in seen:
                    raise TreeError(f"answers[{i}]: question {q!r} answered twice")
                seen.add(q)
                self._answer_or_error(i, q, a)
            return pairs
        expected: str | None = self.first
        for i, (q, a) in enumerate(pairs):
            if expected is None:
                raise TreeError(f"answers[{i}]: the tree had ended, but question {q!r} was answered")
            if q != expected:
                raise TreeError(f"answers[{i}]: expected question {expected!r}, got {q!r}")
            expected = self._answer_or_error(i, q, a).next
        if expected is not None:
            raise TreeError(f"answers end before the tree does: question {expected!r} is unanswered")
        return pairs

    def _answer_or_error(self, i: int, q: str, a: str) -> Answer:
        if q not in self._index:
            raise TreeError(f"answers[{i}]: unknown question {q!r}")
        try:
            return self._index[q].answer(a)
        except TreeError as exc:
            raise TreeError(f"answers[{i}]: {exc}") from None

    def reach_probability(self, fractions: Mapping[str, float]) -> dict[str, float]:
        """Probability that a volunteer reaches each question, given answer probabilities.

        ``fractions`` maps ``<question>_<answer>`` to the probability of that answer among those who
        reached the question (missing answers count as 0). The first question is reached with
        probability 1; every other question with the sum, over the answers leading to it, of
        P(reach parent) * P(answer | parent). For an unlinked tree every question has probability 1.
        """
        if not self.linked:
            return {q.name: 1.0 for q in self.questions}
        reach = {q.name: 0.0 for q in self.questions}
        reach[self.first] = 1.0
        for name in self.topological_order:
            for a in self[name].answers:
                if a.next is not None:
                    reach[a.next] += reach[name] * float(fractions.get(f"{name}_{a.name}", 0.0))
        return reach

    def path_questions(self, answers: Iterable[tuple[str, str]]) -> list[str]:
        """The questions a valid path visited, in order."""
        return [q for q, _ in answers]
