"""Every kernel the CuPy backend can launch, compiled for the H100 (sm_90) with NVRTC and CuPy's
flags, exactly as the runtime compiles it (cuda_source.module_source): no compile error, no
register spill; registers and shared memory recorded in bench/results/cupy_sm90_resources.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuconv.backends import cuda_source

pytest.importorskip("cuda.core")
RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "cupy_sm90_resources.json"


@pytest.fixture(scope="module")
def report():
    return cuda_source.compile_report("sm_90")


def test_every_kernel_compiles_for_sm90(report):
    code, options, names = cuda_source.module_source()
    assert "-std=c++17" in options and "-ftz=true" in options
    assert sorted(report) == sorted(names)


def test_no_spills_and_resources_recorded(report):
    rows = [f"{name:48s} {r['registers']:4d} regs {r['smem']:6d} B smem "
            f"{r['spill_stores'] + r['spill_loads']:3d} B spilled" for name, r in sorted(report.items())]
    print("\n".join(rows))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"arch": "sm_90", "kernels": report}, indent=1, sort_keys=True) + "\n")
    spilled = {n: r for n, r in report.items() if r["spill_stores"] or r["spill_loads"] or r["stack"]}
    assert spilled == {}


def test_ptxas_log_parsing():
    log = ("ptxas info    : Compiling entry function '_Z1kv' for 'sm_90'\n"
           "ptxas info    : Function properties for _Z1kv\n"
           "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
           "ptxas info    : Used 40 registers, used 1 barriers, 1024 bytes smem\n")
    assert cuda_source.parse_ptxas_log(log) == {"_Z1kv": dict(registers=40, spill_stores=4, spill_loads=4,
                                                            stack=8, smem=1024)}
