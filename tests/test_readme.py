"""The README's Python examples run as printed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    if not README.exists():
        return []
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_readme_has_python_examples():
    assert len(_blocks()) >= 2


def test_readme_python_examples_run(capsys):
    from gpuconv.backends import unavailable_reason
    if unavailable_reason("cupy") is None:
        pytest.skip("the README's error example assumes CuPy cannot run here")
    namespace: dict = {}
    for block in _blocks():
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "backend 'cupy' is unavailable" in printed
    assert "input must be 4-D" in printed
