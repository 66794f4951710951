"""The committed golden files are what the oracle computes now (needs torch), and the
loader refuses files of an unknown format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from oracle import golden


@pytest.fixture(scope="module")
def fresh_cases():
    pytest.importorskip("torch")
    from oracle import generate
    return {c.name: c for c in generate.build_all()}


def test_goldens_are_fresh(fresh_cases):
    stored = {c.name: c for c in golden.load_all()}
    problems = [f"missing file for case {n}" for n in sorted(set(fresh_cases) - set(stored))]
    problems += [f"stale file {n} (no such case)" for n in sorted(set(stored) - set(fresh_cases))]
    for name in sorted(set(fresh_cases) & set(stored)):
        problems += [f"{name}: {d}" for d in golden.compare_cases(stored[name], fresh_cases[name])]
    assert not problems, ("golden files differ from the oracle; run `python -m oracle "
                          "generate` and review:\n  " + "\n  ".join(problems[:30]))


def test_round_trip(tmp_path, fresh_cases):
    case = fresh_cases["slide_a_two_channel_f64"]
    path = golden.save_case(case, tmp_path)
    with np.load(path, allow_pickle=False) as data:  # no pickle needed
        assert data["meta"].shape == () and data["meta"].dtype.kind == "U"
    back = golden.load_case(path)
    assert back.name == case.name and back.op == case.op and back.params == case.params
    assert golden.compare_cases(case, back, ignore_meta=()) == []


def _write(path, meta, **arrays):
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)


def test_unknown_format_version_is_refused(tmp_path):
    meta = {"format_version": golden.FORMAT_VERSION + 1, "torch_version": "9.9", "seed": 0,
            "op": "conv2d", "params": {}, "dtype": "float64", "note": ""}
    path = tmp_path / "future.npz"
    _write(path, meta, input=np.zeros((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=r"format_version.*python -m oracle generate"):
        golden.load_case(path)
    with pytest.raises(ValueError, match="python -m oracle generate"):
        golden.load_all(tmp_path)


def test_missing_meta_is_refused(tmp_path):
    path = tmp_path / "bare.npz"
    np.savez(path, input=np.zeros(3))
    with pytest.raises(ValueError, match="python -m oracle generate"):
        golden.load_case(path)


def test_golden_module_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, oracle.golden, oracle.cases; oracle.golden.load_all(); "
            "sys.exit('torch' in sys.modules)")
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0
