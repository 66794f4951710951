"""Every kernel the numba backend launches, compiled for sm_90 without a GPU: the signatures
of ``numba_backend.kernel_table`` (float32 and float64, the GPU launch configuration) go
through libNVVM to PTX (``numba.cuda.compile``), then nvJitLink links them verbosely
(``cuda.core``'s Linker) under each kernel's register cap, whose log gives registers, spills
and shared memory per kernel. The convolution kernels must not spill. The conv GEMMs' SASS
(``cuobjdump``, read by ``cuda_source.sass_functions`` / ``hot_loop`` / ``loop_figures``, the
parser the CuPy checks use) must show an unrolled hot loop (the k-tile loop,
barrier included) with no division routine or reciprocal in it, no local memory anywhere,
registers within the cap, and an FMA share of the loop of at least ``MIN_FMA_SHARE`` (50%)
for every float32 instance the planner launches, bar the one for other padding modes past
2^31 elements (64-bit source maps per element: ``FMA_FLOOR_WIDE_MAPPED``); float64 (4 x 4
per thread: twice the registers per accumulator) a floor against regressions, ``FMA_FLOOR``
(all recorded in bench/results/numba_sm90_resources.json).

conv_direct (slices writing at most 4 rows): registers within the cap, no spills or local
memory, no division in its hot loop (the segment layout's window: one load a tap for four
pixels), an FMA share of it of at least ``DIRECT_FMA_SHARE``.

The 32-bit-offset conv kernels (conv_gemm's u32 instances, conv_direct) hold no subroutine
call at all: their divisions run in unsigned 32 bits (conv_numba.div32), since one int64
division routine anywhere in a kernel makes ptxas keep the global memory descriptor in
vector registers, two R2UR before every global load and store of the hot loop.

The depthwise and pooling twins: registers within their cap, no spills, no local memory,
and no subroutine call where the maths has no division or power. The depthwise grad-weight
twin's zero-padding pixel loop (K > 0; its most economical innermost loop) takes at most
``DW_GRAD_WEIGHT_PER_FMA`` instructions per FMA (unsigned bounds, 32-bit offsets; the
source_index path took 24-46).

The compile runs in a subprocess per dtype with the simulator off (tests/conftest.py turns it
on for this process), started as soon as the tests are collected. Run this file as a script
to record the table in bench/results/numba_sm90_resources.json (``python
tests/test_numba_sm90.py [OUT [DTYPE...]]``).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "numba_sm90_resources.json"
MISSING_TOOLCHAIN = 3  # the compile script's exit status when NVVM or nvJitLink is missing

# nvJitLink's info log: "used 142 registers, used 1 barriers, 0 stack, 9216 bytes smem, ..."
# and ptxas' "0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads".
USAGE = re.compile(r"used (\d+) registers.*?(\d+) bytes smem")
MIN_FMA_SHARE = 0.5
FMA_FLOOR = 0.33
FMA_FLOOR_WIDE_MAPPED = 0.44
CALL_FREE = {"conv_depthwise", "conv_depthwise_grad_weight", "max_pool2d", "max_pool2d_backward"}
DW_GRAD_WEIGHT_PER_FMA = 12
# conv_direct's window loop: one row 25% (the spread layout's loop, a load a multiply-add:
# 5.6%); the CUDA twin's floor is 30% (Numba reloads the input's address from the parameter
# bank for every predicated load)
DIRECT_FMA_SHARE = 0.22
SPILLS = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")


def resources(log: str) -> dict[str, int]:
    usage, spills = USAGE.search(log), SPILLS.search(log)
    if usage is None or spills is None:
        raise AssertionError(f"no register or spill line in the linker's log:\n{log}")
    return {"registers": int(usage[1]), "shared_bytes": int(usage[2]),
            "spill_stores": int(spills[1]), "spill_loads": int(spills[2])}


def compile_all(dtypes=("float32", "float64")) -> list[dict]:
    """Compile and link every kernel of the table for sm_90, for each of ``dtypes``; one row
    per (kernel, dtype), with the hot-loop figures of the conv GEMMs' SASS."""
    import types as pytypes

    import numpy as np
    from cuda.core import Linker, LinkerOptions, ObjectCode
    from numba import cuda
    import numba.cuda.dispatcher as dispatcher

    from gpuconv.backends import cuda_source, gpu_plan, numba_backend

    # A device function asks the current device for its compute capability while the kernel
    # that calls it is typed; without a driver, a stand-in answers sm_90's.
    dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=(9, 0))
    tiles = {t.name: t for each in gpu_plan.NUMBA_TILES_FOR.values() for t in each}
    rows = []
    for dtype in map(np.dtype, dtypes):
        for name, entry in numba_backend.kernel_table(dtype.type).items():
            ptx, _ = cuda.compile(entry.kernel.py_func, entry.signature, cc=(9, 0), output="ptx",
                                  device=False, abi="numba")
            cap = entry.kernel.targetoptions.get("max_registers")
            linker = Linker(ObjectCode.from_ptx(ptx.encode(), name=name),
                            options=LinkerOptions(arch="sm_90", verbose=True,
                                                  max_register_count=cap))
            cubin = linker.link("cubin")
            code = max(cuda_source.sass_functions(cubin.code).values(), key=len)
            ops = [i.split()[1] if i.startswith("@") else i.split()[0] for _, i in code]
            row = {"kernel": name, "dtype": dtype.name,
                   "family": entry.kernel.py_func.__module__.rpartition(".")[2],
                   "register_cap": cap, **resources(linker.get_info_log()),
                   "local_memory": sum(o.split(".")[0] in ("LDL", "STL") for o in ops),
                   "function_calls": sum(o.startswith("CALL") for o in ops)}
            if name.startswith("conv_gemm"):
                body = cuda_source.hot_loop(code)
                ops = [i.split()[1] if i.startswith("@") else i.split()[0] for i in body]
                tile = name.partition("<")[2].partition(",")[0]
                row.update(cuda_source.loop_figures(body, code), tile_rows=tiles[tile].bm,
                           barriers=sum(o.startswith("BAR") for o in ops),
                           global_loads=sum(o.startswith("LDG") for o in ops))
            elif name.startswith("conv_direct"):
                row.update(cuda_source.loop_figures(cuda_source.hot_loop(code), code),
                           tile_rows=int(name[name.index("<") + 1:-1]))
            elif name.startswith("conv_depthwise_grad_weight<") and not name.endswith("<0>"):
                row["pixel_loop_per_fma"] = round(min(
                    len(body) / cuda_source.math_ops(body)
                    for body in cuda_source.innermost_loops(code) if cuda_source.math_ops(body)), 2)
            rows.append(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = [f"{'kernel':42} {'dtype':8} {'regs':>5} {'smem B':>7} {'spill st/ld':>12} "
             f"{'loop':>5} {'FMA %':>6}"]
    lines += [f"{r['kernel']:42} {r['dtype']:8} {r['registers']:5d} {r['shared_bytes']:7d} "
              f"{r['spill_stores']:6d}/{r['spill_loads']:<5d}"
              + (f" {r['loop_instructions']:5d} {100 * r['ffma_share']:6.1f}"
                 if "loop_instructions" in r else "") for r in rows]
    return "\n".join(lines)


DTYPES = ("float32", "float64")
_EARLY: list[tuple[subprocess.Popen, Path]] = []  # each process and its results' file


def start_early() -> None:
    """The compile (the script, with the simulator off), one process per dtype, begun after
    collection (tests/conftest.py) so that it runs beside the other tests."""
    folder = Path(tempfile.mkdtemp(prefix="gpuconv-sm90-"))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    for dtype in DTYPES:
        out = folder / f"{dtype}.json"
        with open(out.with_suffix(".log"), "w") as log:  # (a pipe nobody reads could fill)
            process = subprocess.Popen([sys.executable, __file__, str(out), dtype], env=env,
                                       cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        atexit.register(process.kill)  # a session that ends first leaves no compile behind
        _EARLY.append((process, out))


@pytest.fixture(scope="module")
def sm90_rows() -> list[dict]:
    """One compile of every kernel for the module's tests: the early one's rows."""
    if not _EARLY:
        start_early()
    rows = []
    for process, out in _EARLY:
        try:
            process.wait(timeout=600)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        log = out.with_suffix(".log").read_text()
        if process.returncode == MISSING_TOOLCHAIN:
            pytest.skip(log.strip().splitlines()[-1])
        assert process.returncode == 0, log[-4000:]
        rows += json.loads(out.read_text())["kernels"]
    shutil.rmtree(_EARLY[0][1].parent, ignore_errors=True)
    print("\n" + table(rows))
    return rows


def test_every_kernel_compiles_for_sm90_without_conv_spills(sm90_rows):
    rows = sm90_rows
    from gpuconv.backends import numba_backend
    assert len(rows) == sum(len(numba_backend.kernel_table(d)) for d in ("float32", "float64"))
    spilled = [f"{r['kernel']} ({r['dtype']})" for r in rows
               if r["family"] == "conv_numba" and r["spill_stores"] + r["spill_loads"]]
    assert not spilled, f"conv kernels spill registers on sm_90: {spilled}"
    gemms = [r for r in rows if r["kernel"].startswith("conv_gemm")]
    assert gemms
    for r in gemms:
        what = f"{r['kernel']} ({r['dtype']})"
        assert r["register_cap"] and r["registers"] <= r["register_cap"], what
        assert r["local_memory"] == 0, f"{what}: local memory (LDL/STL)"
        assert r["barriers"] >= 1 and r["global_loads"] >= 1, \
            f"{what}: the hot loop is not the k-tile loop (inner product not unrolled)"
        assert r["calls"] == 0 and r["mufu_rcp"] == 0, f"{what}: division in the hot loop"
        if r["kernel"].endswith("u32>"):
            assert r["function_calls"] == 0, f"{what}: a subroutine call (an int64 division?)"
        zero_pad, index = r["kernel"].rstrip(">").split(", ")[2:]
        want = (FMA_FLOOR if r["dtype"] == "float64" else
                FMA_FLOOR_WIDE_MAPPED if (zero_pad, index) == ("false", "i64") else MIN_FMA_SHARE)
        assert r["ffma_share"] >= want, f"{what}: FMA share {r['ffma_share']} < {want}"


def test_plan_model_rates_numba_tiles_by_their_fma_share(sm90_rows):
    """gpu_plan.TILE_EFFICIENCY of each Numba tile is its forward 32-bit zero-padding
    instance's FMA share times NUMBA_EFFICIENCY_PER_FMA_SHARE (to the rounding of 0.01)."""
    from gpuconv.backends import gpu_plan
    share = {r["kernel"]: r["ffma_share"] for r in sm90_rows if "loop_instructions" in r}
    for tile in (t for tiles in gpu_plan.NUMBA_TILES_FOR.values() for t in tiles):
        fast = gpu_plan.numba_gemm_kernel(tile, wgrad=False, zero_pad=True, wide=False)
        want = gpu_plan.NUMBA_EFFICIENCY_PER_FMA_SHARE * share[fast]
        assert abs(gpu_plan.TILE_EFFICIENCY[tile.name] - want) <= 0.006, (tile.name, round(want, 3))


def test_conv_direct_loop(sm90_rows):
    """conv_direct (slices of at most 4 rows): registers within the cap, no spills, no local
    memory, no division in its hot loop and no subroutine call anywhere, at least
    DIRECT_FMA_SHARE of the loop FMAs."""
    from gpuconv.backends import gpu_plan
    rows = [r for r in sm90_rows if r["kernel"].startswith("conv_direct")]
    assert len(rows) == 2 * len(gpu_plan.DIRECT_ROWS)
    for r in rows:
        what = f"{r['kernel']} ({r['dtype']})"
        assert r["register_cap"] and r["registers"] <= r["register_cap"], what
        assert r["spill_stores"] + r["spill_loads"] + r["local_memory"] == 0, what
        assert r["calls"] == 0 and r["mufu_rcp"] == 0, f"{what}: division in the tap loop"
        assert r["function_calls"] == 0, f"{what}: a subroutine call (an int64 division?)"
        assert r["ffma_share"] >= DIRECT_FMA_SHARE, f"{what}: FMA share {r['ffma_share']}"


def test_depthwise_and_pooling_kernels_fit_in_registers(sm90_rows):
    """The depthwise and pooling twins: within their register cap, no spills, no local memory;
    no subroutine call at all where the maths has no division or power (depthwise, max
    pooling: integer divisions are 32-bit and inline). Average / Lp pooling divide by the
    window's divisor and raise to p as pool.cu does: their calls are the IEEE division's and
    pow's slow paths (recorded, not asserted)."""
    rows = [r for r in sm90_rows if r["family"] in ("depthwise_numba", "pool_numba")]
    assert {r["kernel"].partition("<")[0] for r in rows} == CALL_FREE | {"avg_pool2d",
                                                                         "pool2d_backward"}
    for r in rows:
        what = f"{r['kernel']} ({r['dtype']})"
        assert r["register_cap"] and r["registers"] <= r["register_cap"], what
        assert r["spill_stores"] + r["spill_loads"] == 0, f"{what}: spills"
        assert r["local_memory"] == 0, f"{what}: local memory (LDL/STL)"
        if r["kernel"].partition("<")[0] in CALL_FREE:
            assert r["function_calls"] == 0, f"{what}: a subroutine call (division?)"
        if "pixel_loop_per_fma" in r:
            assert r["pixel_loop_per_fma"] <= DW_GRAD_WEIGHT_PER_FMA, \
                f"{what}: {r['pixel_loop_per_fma']} instructions per FMA in the pixel loop"




def main(path: str, dtypes=DTYPES) -> int:
    try:
        import cuda.core  # noqa: F401  (nvJitLink's Linker)
        from numba.cuda.cudadrv import nvvm
        nvvm.NVVM()
        from gpuconv.backends import cuda_source
        if cuda_source.cuobjdump() is None:
            raise FileNotFoundError("cuobjdump")
    except Exception as exc:  # a missing wheel or library
        print(f"sm_90 compile needs libNVVM, nvJitLink and cuobjdump (pip install "
              f"'gpuconv[test]'): {type(exc).__name__}: {exc}", file=sys.stderr)
        return MISSING_TOOLCHAIN
    rows = compile_all(dtypes)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps({"arch": "sm_90", "kernels": rows}, indent=1) + "\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(RESULTS),
                  tuple(sys.argv[2:]) or DTYPES))
