"""The mutant catalogue (tests/mutants.py) stays live: every entry still applies to the code
and names tests that exist, so `make check-mutants` plants what it says. Planting them (a
rebuild and a test run each) is that target's work, not CI's."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from mutants import MUTANTS

ROOT = Path(__file__).resolve().parents[1]
NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


@functools.cache
def _definitions(path: Path) -> frozenset:
    """'test_f' and 'TestClass::test_f' for the functions a test file defines."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(f"{node.name}::{f.name}" for f in node.body
                         if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return frozenset(names)


def test_names_are_unique_and_plain():
    names = [m.name for m in MUTANTS]
    assert [n for n in names if not NAME.fullmatch(n)] == []
    assert sorted({n for n in names if names.count(n) > 1}) == []


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_entry_applies_and_names_existing_tests(mutant):
    text = (ROOT / mutant.path).read_text()
    assert text.count(mutant.old) == 1, f"{mutant.path}: its text occurs {text.count(mutant.old)} times"
    assert mutant.new != mutant.old and mutant.fault and mutant.sanitizer in (None, "asan", "tsan")
    assert mutant.tests, "no tests named"
    for node in mutant.tests:
        file, _, function = node.partition("::")
        assert (ROOT / file).is_file() and file.startswith("tests/test_"), node
        assert function.split("[")[0] in _definitions(ROOT / file), f"{node}: no such test"
