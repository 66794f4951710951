"""bench/gpu_acceptance.sh without a GPU: its dry run lists the quick profile's steps, finds
every file they name, and the steps' time limits fit the 8 minutes a device lease allows
(steps of one group run at once: the group takes its longest limit); run for real with a
stand-in Python, the group's steps log in order and a failing one fails the run."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOGETHER = ["goldens-cupy", "goldens-numba-f32", "goldens-numba-f64", "checks-cupy",
            "checks-numba-f32", "checks-numba-f64", "host-numba"]
QUICK_STEPS = ["install", "machine", *TOGETHER, "bench-cupy", "bench-numba", "train-epoch",
               "host-cupy"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_quick_profile_dry_run(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path)}
    run = subprocess.run(["bash", "bench/gpu_acceptance.sh", "quick"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    steps = [line.split() for line in run.stdout.splitlines() if not line.startswith("full log")]
    assert [s[0] for s in steps] == QUICK_STEPS
    assert [s[0] for s in steps if s[3] != "-"] == TOGETHER
    groups: dict[str, int] = {}
    for name, limit, _, group, *_ in steps:
        key = name if group == "-" else group
        groups[key] = max(groups.get(key, 0), int(limit))
    assert sum(groups.values()) <= 8 * 60
    assert (tmp_path / "results.tar.gz").is_file()


def test_unknown_phase_is_refused(tmp_path):
    env = {**os.environ, "DRY_RUN": "1", "OUT": str(tmp_path)}
    run = subprocess.run(["bash", "bench/gpu_acceptance.sh", "everything"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "unknown phase" in run.stdout


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("failing", ["", "pytest"])
def test_quick_profile_runs_its_group_together(tmp_path, failing):
    """A stand-in Python that exits 3 for ``-m pytest`` when told to, else 0: the group's
    pytest steps fail and fail the run, every step is logged in order."""
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\n[ "$2" = "{failing}" ] && exit 3\nexit 0\n')
    python.chmod(0o755)
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": str(python)}
    run = subprocess.run(["bash", "bench/gpu_acceptance.sh", "quick"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == (1 if failing else 0), run.stdout + run.stderr
    status = {s[0]: s[2] for s in (line.split() for line in run.stdout.splitlines())
              if len(s) > 2 and s[1] == "exit"}
    assert list(status) == QUICK_STEPS
    assert [name for name, code in status.items() if code != "0"] == (
        [name for name in TOGETHER if name != "host-numba"] if failing else [])
    log = (tmp_path / "out" / "acceptance.log").read_text()
    headers = [line[4:].split(":")[0] for line in log.splitlines() if line.startswith("=== ")]
    assert headers == QUICK_STEPS
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["acceptance.log",
                                                                   "results.tar.gz"]
