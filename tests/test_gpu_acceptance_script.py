"""bench/gpu_acceptance.sh without a GPU: its dry run lists the quick profile's steps, finds
every file they name, and the steps' time limits fit the 8 minutes a device lease allows."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
QUICK_STEPS = ["install", "machine", "goldens", "gpu-checks", "bench-cupy", "bench-numba",
               "train-epoch", "host-cupy"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_quick_profile_dry_run(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path)}
    run = subprocess.run(["bash", "bench/gpu_acceptance.sh", "quick"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    steps = [line.split() for line in run.stdout.splitlines() if not line.startswith("full log")]
    assert [s[0] for s in steps] == QUICK_STEPS
    assert sum(int(s[1]) for s in steps) <= 8 * 60
    assert (tmp_path / "results.tar.gz").is_file()


def test_unknown_phase_is_refused(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path)}
    run = subprocess.run(["bash", "bench/gpu_acceptance.sh", "everything"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "unknown phase" in run.stdout
