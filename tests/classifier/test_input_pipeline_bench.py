"""The input-pipeline benchmark measures what it says, on the real DECaLS cutouts."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from tests.conftest import needs_realdata

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import classifier_input_pipeline as bench  # noqa: E402


@needs_realdata
def test_per_core_rates_cover_both_formats_and_split_only_full_size_decodes():
    jpgs, pngs = bench.real_images()
    assert len(jpgs) == 470 and len(pngs) == 4
    rows = bench.per_core_rows(jpgs[:6], pngs[:2], [64, 224], repeats=1)
    assert [(r["format"], r["px"]) for r in rows] == [("JPEG", 64), ("JPEG", 224), ("PNG", 64), ("PNG", 224)]
    for r in rows:
        assert r["images/s per core"] == pytest.approx(1e3 / r["load_image ms"])
        assert r["cores for 1,667/s"] * r["images/s per core"] == pytest.approx(bench.TARGET)
        # a 64 px JPEG is decoded at a reduced DCT scale: no full-size decode to split off
        assert math.isnan(r["crop + resize ms"]) == (r["format"] == "JPEG" and r["px"] == 64)


@needs_realdata
def test_both_loader_patterns_deliver_every_galaxy(monkeypatch):
    jpgs, _ = bench.real_images()
    monkeypatch.setattr(bench, "BATCH", 4)
    for chunk in (None, 6):
        assert bench.loader_rate(jpgs[:14], 32, 1, chunk) > 0     # asserts inside that all 14 came out
