"""benchmarks/gpu_check.sh, the prepared GPU run: its plumbing, rehearsed on the CPU (DEVICE=cpu)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def run(tmp_path, *steps, **env):
    return subprocess.run([str(SCRIPT), *steps], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "DEVICE": "cpu", "OUT": str(tmp_path), "PYTHON": sys.executable, **env})


def test_env_and_tests_steps_write_their_logs(tmp_path):
    done = run(tmp_path, "env", "tests")
    assert done.returncode == 0, done.stdout + done.stderr
    env_log = (tmp_path / "env.log").read_text()
    assert "torch" in env_log and "cuda False" in env_log and "== env: rc 0" in env_log
    assert "== tests: rc 0" in (tmp_path / "tests.log").read_text()


def test_a_failing_step_fails_the_run_and_the_next_steps_still_run(tmp_path):
    done = run(tmp_path, "env", "tests", PYTHON="false")
    assert done.returncode == 1
    assert "failed: env (rc 1) tests (rc 1)" in done.stdout
    assert (tmp_path / "tests.log").exists()


def test_an_unknown_step_is_refused(tmp_path):
    done = run(tmp_path, "benchmark")
    assert done.returncode == 2 and "the steps are env throughput tests pipeline" in done.stderr
