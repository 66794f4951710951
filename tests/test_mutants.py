"""The mutant catalogue (tests/mutants.py) stays live: every entry still applies to the code
and names tests that pytest collects, so `make check-mutants` plants what it says. Planting
them (a rebuild and a test run each) is that target's work, not CI's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mutants import MUTANTS

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


def test_names_are_unique_and_plain():
    names = [m.name for m in MUTANTS]
    assert [n for n in names if not NAME.fullmatch(n)] == []
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_readme_counts_the_catalogue():
    counts = re.findall(r"`tests/mutants\.py`: (\d+) plausible bugs", (ROOT / "README.md").read_text())
    assert counts == [str(len(MUTANTS))], counts


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_entry_applies(mutant):
    text = (ROOT / mutant.path).read_text(encoding="utf-8")
    assert text.count(mutant.old) == 1, f"{mutant.path}: its text occurs {text.count(mutant.old)} times"
    assert mutant.new != mutant.old and mutant.fault and mutant.sanitizer in (None, "asan", "tsan")
    assert mutant.tests and all(t.startswith("tests/test_") for t in mutant.tests), mutant.tests


def test_named_tests_are_collected():
    """Every node id the catalogue names, case ids included (a test or case renamed shows
    here, not when check-mutants runs)."""
    ids = sorted({t for m in MUTANTS for t in m.tests})
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p",
                             "no:randomly", "-p", "no:cacheprovider", *ids], cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
