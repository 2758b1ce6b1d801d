"""Forms of the dashboard: each validates a scientist's input with a field-level reason before any
service runs."""
from __future__ import annotations

import inspect
import math

from django import forms

from aggregation import AGGREGATORS
from aggregation.tree import DecisionTree, TreeError
from zooplatform.learning.models import LearningSettings

from .services import LEARNING_ACTIONS

# Parameters the tree aggregator sets itself for every question (n_classes from the tree; the budget
# rules come from the settings' own fields), so they are not free parameters of the JSON.
_TREE_SET = {"self", "n_classes", "vote_cap", "expert_after", "evidence_retires"}


def aggregator_parameters(name: str) -> list[str]:
    """The constructor parameters of ``AGGREGATORS[name]`` that a scientist may set in the JSON."""
    signature = inspect.signature(AGGREGATORS[name].__init__)
    return [p for p in signature.parameters if p not in _TREE_SET and not p.startswith("_")
            and signature.parameters[p].kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]


def _aggregator_choices():
    return [(name, name) for name in sorted(AGGREGATORS)]


class JSONObjectField(forms.JSONField):
    """A JSON object (``{}``), edited as text."""

    default_error_messages = {"invalid": "Not valid JSON: check quotes (use \"double\"), commas and braces."}

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "spellcheck": "false", "class": "mono"}))
        super().__init__(**kwargs)

    def to_python(self, value):
        value = super().to_python(value)
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError("Must be a JSON object, e.g. {\"prior\": 0.5}.")
        return value


class QuestionListField(forms.CharField):
    """Question names separated by commas or spaces, edited as one line; a list, empty when blank."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return ", ".join(value) if isinstance(value, (list, tuple)) else value

    def to_python(self, value):
        names = str(value or "").replace(",", " ").split()
        return list(dict.fromkeys(names))            # in order, each once


class LearningActionForm(forms.Form):
    action = forms.ChoiceField(choices=list(LEARNING_ACTIONS.items()))


class LearningSettingsForm(forms.Form):
    """Every steering knob of ``LearningSettings``, checked against what will consume it.

    Aggregators: the names must be in ``aggregation.AGGREGATORS``; their JSON parameters must be
    parameters of that aggregator and values it accepts (each question's aggregator is built here, as the
    platform will build it); SWAP only on yes/no questions. Training: preset, overrides and acquisition are
    checked against ``classifier``'s registries, only when they change (that loads torch, once per process).
    """

    binary_aggregator = forms.ChoiceField(
        choices=_aggregator_choices, label="Yes/no questions: aggregator",
        error_messages={"invalid_choice": "Unknown aggregator %(value)s; known: " + ", ".join(sorted(AGGREGATORS))})
    binary_params = JSONObjectField(label="Yes/no aggregator parameters (JSON)")
    multi_aggregator = forms.ChoiceField(
        choices=_aggregator_choices, label="Other questions: aggregator",
        error_messages={"invalid_choice": "Unknown aggregator %(value)s; known: " + ", ".join(sorted(AGGREGATORS))})
    multi_params = JSONObjectField(label="Other aggregator parameters (JSON)")
    reach_threshold = forms.FloatField(
        min_value=0.0, max_value=1.0, label="Reach threshold",
        help_text="Questions reached with at least this probability must be decided before a galaxy retires (0 < t ≤ 1).")
    min_votes = forms.IntegerField(min_value=0, max_value=10_000, label="Minimum votes before a decision")
    vote_cap = forms.IntegerField(min_value=1, max_value=10_000, required=False, label="Vote cap",
                                  help_text="Retire an undecided galaxy at this many classifications (empty: no cap).")
    expert_after = forms.IntegerField(min_value=1, max_value=10_000, required=False, label="Expert queue after",
                                      help_text="Send an undecided galaxy to the expert queue at this many "
                                                "classifications (empty: never).")
    machine_enabled = forms.BooleanField(required=False, label="Use the promoted model as one more classifier")
    machine_retires = forms.BooleanField(
        required=False, label="Let the model retire galaxies on its own",
        help_text="When its calibrated evidence alone decides a galaxy, before the minimum human votes.")
    train_preset = forms.CharField(max_length=16, label="Training preset", help_text="tiny, small or base")
    train_overrides = JSONObjectField(label="Training overrides (JSON)", help_text='TrainConfig fields, e.g. {"epochs": 20}')
    detector_enabled = forms.BooleanField(required=False, label="Retrain the clump detector automatically")
    detector_overrides = JSONObjectField(label="Detector overrides (JSON)",
                                         help_text='DetectorConfig fields and "preset", e.g. {"preset": "tiny"}')
    retrain_after_retirements = forms.IntegerField(min_value=1, max_value=10_000_000, label="Retrain after new retirements")
    retrain_interval_hours = forms.FloatField(min_value=0.01, max_value=24 * 365, label="Retrain at least every (hours)")
    min_training_subjects = forms.IntegerField(min_value=1, max_value=10_000_000, label="Minimum labelled subjects to train")
    acquisition = forms.CharField(max_length=32, label="Acquisition function",
                                  help_text="bald, bald-balanced (every question gets its share of each batch), "
                                            "entropy, margin or random")
    acquisition_questions = QuestionListField(
        label="Aim acquisition at questions",
        help_text="Question names, e.g. bar: galaxies are chosen for what they would teach the model about these "
                  "(empty: the whole tree). Aimed at one question, BALD saves far more of that question's labels "
                  "than BALD over the whole tree does (benchmarks/classifier_label_efficiency.py).")
    mc_samples = forms.IntegerField(min_value=1, max_value=100, label="MC-dropout passes when scoring")
    hard_after_votes = forms.IntegerField(
        min_value=1, max_value=10_000, label="Hard after votes",
        help_text="A galaxy still undecided after this many classifications counts as hard.")
    hard_share = forms.FloatField(
        min_value=0.0, max_value=1.0, label="Share of hard galaxies for skilled volunteers",
        help_text="Of a skilled volunteer's galaxies (gold aside), the share taken from the hardest first; 0 turns "
                  "matching off.")
    skilled_accuracy = forms.FloatField(
        min_value=0.0, max_value=1.0, label="Skilled from accuracy",
        help_text="Estimated chance of answering the first question right (1/K is guessing).")
    skilled_min_gold = forms.IntegerField(min_value=0, max_value=100_000, label="… on at least this many gold galaxies")

    def __init__(self, *args, tree: DecisionTree, current: LearningSettings, **kwargs):
        kwargs.setdefault("initial", {name: getattr(current, name) for name in self.base_fields})
        super().__init__(*args, **kwargs)
        self.tree = tree
        self.current = current
        for prefix in ("binary", "multi"):
            name = getattr(current, f"{prefix}_aggregator")
            if name in AGGREGATORS:
                self.fields[f"{prefix}_params"].help_text = f"{name} takes {', '.join(aggregator_parameters(name))}."

    # --------------------------------------------------------------------------------------- fields
    def clean_reach_threshold(self):
        value = self.cleaned_data["reach_threshold"]
        if not math.isfinite(value) or value <= 0:
            raise forms.ValidationError("Must be above 0 and at most 1.")
        return value

    def clean_retrain_interval_hours(self):
        value = self.cleaned_data["retrain_interval_hours"]
        if not math.isfinite(value):
            raise forms.ValidationError("Must be a number of hours.")
        return value

    def clean_acquisition_questions(self):
        names = self.cleaned_data["acquisition_questions"]
        known = [q.name for q in self.tree.questions]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise forms.ValidationError(f"Unknown question {', '.join(map(repr, unknown))}; this project's questions: "
                                        f"{', '.join(known)}.")
        return names

    def _changed(self, name: str) -> bool:
        return name in self.cleaned_data and self.cleaned_data[name] != getattr(self.current, name)

    def clean(self):
        data = super().clean()
        if data.get("vote_cap") and data.get("expert_after") and data["expert_after"] > data["vote_cap"]:
            self.add_error("expert_after", f"The vote cap ({data['vote_cap']}) would retire undecided galaxies "
                                           "first, so none would reach the expert queue: make it at most the cap.")
        self._check_aggregator("binary", binary=True)
        self._check_aggregator("multi", binary=False)
        self._check_training()
        if data.get("acquisition") == "random" and data.get("acquisition_questions"):
            self.add_error("acquisition_questions", "random acquisition looks at no question: leave this empty, or "
                                                    "choose one that scores questions.")
        return data

    def _check_aggregator(self, prefix: str, *, binary: bool) -> None:
        name, params = self.cleaned_data.get(f"{prefix}_aggregator"), self.cleaned_data.get(f"{prefix}_params")
        if name is None or params is None:
            return
        questions = [q for q in self.tree.questions if (len(q.answers) == 2) == binary]
        known = aggregator_parameters(name)
        unknown = sorted(set(params) - set(known))
        if unknown:
            self.add_error(f"{prefix}_params", f"{name} has no parameter {', '.join(unknown)}; it takes "
                                               f"{', '.join(known)}.")
            return
        for q in questions:
            if name == "swap" and len(q.answers) != 2:
                self.add_error(f"{prefix}_aggregator", f"swap handles yes/no questions only; {q.name!r} has "
                                                       f"{len(q.answers)} answers.")
                return
            kwargs = dict(params)
            kwargs.setdefault("min_votes", self.cleaned_data.get("min_votes", self.current.min_votes))
            try:
                AGGREGATORS[name](**kwargs) if name == "swap" else AGGREGATORS[name](n_classes=len(q.answers), **kwargs)
            except (TypeError, ValueError) as exc:
                self.add_error(f"{prefix}_params", f"{name} refuses these parameters: {exc}")
                return

    def _check_training(self) -> None:
        """Preset, overrides and acquisition against the classifier's registries (only when they change:
        ``classifier`` imports torch)."""
        names = ("train_preset", "train_overrides", "detector_overrides", "acquisition")
        if not any(self._changed(n) for n in names):
            return
        import classifier
        from classifier.detection import DetectorConfig
        from classifier.train import TrainConfig

        data = self.cleaned_data
        if self._changed("acquisition") and data["acquisition"] not in classifier.list_acquisitions():
            self.add_error("acquisition", f"Unknown acquisition {data['acquisition']!r}; known: "
                                          f"{', '.join(classifier.list_acquisitions())}.")
        if (self._changed("train_preset") or self._changed("train_overrides")) and "train_preset" in data \
                and "train_overrides" in data:
            try:
                config = TrainConfig.preset(data["train_preset"], **data["train_overrides"])
            except KeyError as exc:
                self.add_error("train_preset", str(exc).strip("'\""))
            except TypeError as exc:
                self.add_error("train_overrides", f"Not a TrainConfig field: {exc}")
            else:
                if config.model not in classifier.list_models():
                    self.add_error("train_overrides", f"Unknown model {config.model!r}; known: "
                                                      f"{', '.join(classifier.list_models())}.")
        if self._changed("detector_overrides") and "detector_overrides" in data:
            overrides = dict(data["detector_overrides"])
            try:
                DetectorConfig.preset(overrides.pop("preset", "small"), **overrides)
            except (KeyError, TypeError) as exc:
                self.add_error("detector_overrides", f"Not a valid detector configuration: {str(exc).strip(chr(39))}")


class PriorityForm(forms.Form):
    priority = forms.FloatField(min_value=-1e6, max_value=1e6, help_text="Scored galaxies lie in 0–1; higher is served sooner.")

    def clean_priority(self):
        value = self.cleaned_data["priority"]
        if not math.isfinite(value):
            raise forms.ValidationError("Must be a finite number.")
        return value


class ExpertLabelForm(forms.Form):
    """An expert's walk through the decision tree: one choice per question; only the questions the chosen
    answers lead to count. The walk is checked with ``DecisionTree.validate_path``."""

    def __init__(self, *args, tree: DecisionTree, **kwargs):
        super().__init__(*args, **kwargs)
        self.tree = tree
        for q in tree.questions:
            self.fields[f"q:{q.name}"] = forms.ChoiceField(
                label=q.text or q.name, required=False, widget=forms.RadioSelect,
                choices=[(a.name, a.text or a.name) for a in q.answers])

    def clean(self):
        data = super().clean()
        path, question = [], self.tree.first
        if not self.tree.linked:  # a flat list of questions: each answered one counts, in tree order
            path = [{"question": q.name, "answer": data[f"q:{q.name}"]} for q in self.tree.questions
                    if data.get(f"q:{q.name}")]
        while question is not None:
            answer = data.get(f"q:{question}")
            if not answer:
                self.add_error(f"q:{question}", "Answer this question: the answers above lead to it.")
                return data
            path.append({"question": question, "answer": answer})
            question = self.tree[question].answer(answer).next
        try:
            self.tree.validate_path(path)
        except TreeError as exc:
            raise forms.ValidationError(str(exc)) from None
        data["answers"] = path
        return data

    def questions(self, votes: dict | None = None):
        """(question, bound field, next question per answer, volunteers' votes per answer) for the
        template, in tree order; ``votes`` maps ``<question>_<answer>`` to a count."""
        votes = votes or {}
        return [(q, self[f"q:{q.name}"], {a.name: a.next or "" for a in q.answers},
                 {a.name: votes.get(f"{q.name}_{a.name}", 0) for a in q.answers}) for q in self.tree.questions]


class CatalogueImportForm(forms.Form):
    catalogue = forms.FileField(label="Catalogue (CSV)",
                                help_text="An id column (id_str, external_id, …), an image column (file_loc, image, …) "
                                          "relative to the zip's top folder, optional ra/dec and metadata columns.")
    images = forms.FileField(label="Images (.zip)", help_text="PNG, JPEG or FITS cut-outs.")
    subject_set = forms.CharField(max_length=200, label="Subject set", help_text="New or existing set to put them in.")
    survey = forms.CharField(max_length=64, required=False, label="Survey", help_text="e.g. DECaLS DR5")

    def clean_catalogue(self):
        upload = self.cleaned_data["catalogue"]
        if not upload.name.lower().endswith((".csv", ".txt")):
            raise forms.ValidationError("Upload the catalogue as a .csv file.")
        return upload

    def clean_images(self):
        upload = self.cleaned_data["images"]
        if not upload.name.lower().endswith(".zip"):
            raise forms.ValidationError("Upload the images as one .zip file.")
        return upload
