"""Every kernel the numba backend launches, compiled for sm_90 without a GPU: the signatures
of ``numba_backend.kernel_table`` (float32 and float64, the GPU launch configuration) go
through libNVVM to PTX (``numba.cuda.compile``), then nvJitLink links them verbosely
(``cuda.core``'s Linker), whose log gives registers, spills and shared memory per kernel.
The convolution kernels must not spill.

The compile runs in a subprocess with the simulator off (tests/conftest.py turns it on for
this process). Run this file as a script to record the table in
bench/results/numba_sm90_resources.json.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "numba_sm90_resources.json"
MISSING_TOOLCHAIN = 3  # the compile script's exit status when NVVM or nvJitLink is missing

# nvJitLink's info log: "used 142 registers, used 1 barriers, 0 stack, 9216 bytes smem, ..."
# and ptxas' "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads".
USAGE = re.compile(r"used (\d+) registers.*?(\d+) bytes smem")
SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def resources(log: str) -> dict[str, int]:
    usage, spills = USAGE.search(log), SPILLS.search(log)
    if usage is None or spills is None:
        raise AssertionError(f"no register or spill line in the linker's log:\n{log}")
    return {"registers": int(usage[1]), "shared_bytes": int(usage[2]),
            "spill_stores": int(spills[1]), "spill_loads": int(spills[2])}


def compile_all() -> list[dict]:
    """Compile and link every kernel of the table for sm_90; one row per (kernel, dtype)."""
    import types as pytypes

    import numpy as np
    from cuda.core import Linker, LinkerOptions, ObjectCode
    from numba import cuda
    import numba.cuda.dispatcher as dispatcher

    from gpuconv.backends import numba_backend

    # A device function asks the current device for its compute capability while the kernel
    # that calls it is typed; without a driver, a stand-in answers sm_90's.
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(9, 0))
    rows = []
    for dtype in (np.float32, np.float64):
        for name, (kernel, signature) in numba_backend.kernel_table(dtype).items():
            ptx, _ = cuda.compile(kernel.py_func, signature, cc=(9, 0), output="ptx",
                                  device=False, abi="numba")
            linker = Linker(ObjectCode.from_ptx(ptx.encode(), name=name),
                            options=LinkerOptions(arch="sm_90", verbose=True))
            linker.link("cubin")
            rows.append({"kernel": name, "dtype": np.dtype(dtype).name,
                         "family": kernel.py_func.__module__.rpartition(".")[2],
                         **resources(linker.get_info_log())})
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"{'kernel':24} {'dtype':8} {'regs':>5} {'smem B':>7} {'spill st/ld':>12}"]
    lines += [f"{r['kernel']:24} {r['dtype']:8} {r['registers']:5d} {r['shared_bytes']:7d} "
              f"{r['spill_stores']:6d}/{r['spill_loads']:<5d}" for r in rows]
    return "\n".join(lines)


def test_every_kernel_compiles_for_sm90_without_conv_spills(tmp_path):
    out = tmp_path / "resources.json"
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    done = subprocess.run([sys.executable, __file__, str(out)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if done.returncode == MISSING_TOOLCHAIN:
        pytest.skip(done.stderr.strip().splitlines()[-1])
    assert done.returncode == 0, done.stderr[-4000:]
    rows = json.loads(out.read_text())["kernels"]
    print("\n" + table(rows))
    from gpuconv.backends import numba_backend
    assert len(rows) == 2 * len(numba_backend.kernel_table("float32"))
    spilled = [f"{r['kernel']} ({r['dtype']})" for r in rows
               if r["family"] == "conv_numba" and r["spill_stores"] + r["spill_loads"]]
    assert not spilled, f"conv kernels spill registers on sm_90: {spilled}"


def main(path: str) -> int:
    try:
        import cuda.core  # noqa: F401  (nvJitLink's Linker)
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
    except Exception as exc:  # a missing wheel or library
        print(f"sm_90 compile needs libNVVM and nvJitLink (pip install 'gpuconv[test]'): "
              f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return MISSING_TOOLCHAIN
    rows = compile_all()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"arch": "sm_90", "kernels": rows}, indent=1) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(RESULTS)))
