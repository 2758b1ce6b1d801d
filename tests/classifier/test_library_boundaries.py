"""classifier/ is a plain library: it never imports Django or the platform, and importing it is cheap."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = ["acquisition", "augment", "checkpoint", "cli", "data", "detection", "devices", "losses", "models",
           "questions", "scoring", "train"]


def run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_no_django_or_platform_imports():
    code = ("import sys, importlib\n"
            f"for m in {MODULES!r}: importlib.import_module('classifier.' + m)\n"
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('django', 'zooplatform', 'rest_framework')))")
    assert run(code).strip() == "[]"


def test_import_classifier_is_light():
    code = "import sys, classifier; print('torch' in sys.modules, 'timm' in sys.modules)"
    assert run(code).strip() == "False False"
    code = "import classifier; print(classifier.create_model.__module__, sorted(classifier.__all__)[:2])"
    assert run(code).startswith("classifier.models")


def test_public_api_resolves():
    import classifier
    for name in classifier.__all__:
        assert getattr(classifier, name) is not None, name
