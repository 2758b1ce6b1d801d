"""aggregation/ is a library: it must never import Django or torch (house style)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_package_imports_neither_django_nor_torch():
    code = ("import sys, pkgutil, importlib, aggregation; "
            "[importlib.import_module(m.name) for m in pkgutil.walk_packages(aggregation.__path__, 'aggregation.')]; "
            "assert len([m for m in sys.modules if m.startswith('aggregation.')]) > 5; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'torch', 'rest_framework'}); "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_sources_do_not_mention_forbidden_imports():
    for path in (ROOT / "aggregation").rglob("*.py"):
        text = path.read_text()
        for bad in ("import django", "from django", "import torch", "from torch"):
            assert bad not in text, f"{path} contains {bad!r}"
