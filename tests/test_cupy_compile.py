"""Every kernel the CuPy backend can launch, compiled for the H100 / H200 (sm_90) with NVRTC and
CuPy's flags, exactly as the runtime compiles it (cuda_source.module_source): no compile error,
no register spill, at most 128 registers for the GEMMs (two 256-thread blocks per SM; the
tensor-core tiles of 64 x 64 warps, one block per SM, at most 255), static
plus the launches' dynamic shared memory within a block's 227 KiB; and the GEMMs' hot loops
read from their SASS (cuobjdump, pip wheel nvidia-cuda-cuobjdump): FFMA share, tensor-core
MMAs, no division, no call, no generic or local memory. Registers, shared memory and the loop
figures are recorded in bench/results/cupy_sm90_resources.json. The wgmma tiles' module, built
for sm_90a alone, alike (bench/results/cupy_sm90a_wgmma_resources.json). These are proxies:
they say a kernel is built right, not that it is fast."""

from __future__ import annotations

import itertools
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from gpuconv.backends import cuda_source, gpu_plan

pytest.importorskip("cuda.core")
RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "cupy_sm90_resources.json"
WGMMA_RESULTS = RESULTS.with_name("cupy_sm90a_wgmma_resources.json")


def _dynamic_smem() -> dict:
    """Each GEMM kernel's dynamic shared memory: its launches' shared_mem (the planner's)."""
    sizes = {}
    for (dtype, _), names in gpu_plan.TILES_FOR.items():
        for t in (gpu_plan.TILES[name] for name in names):
            for flags in itertools.product((False, True), repeat=4 if t.terms else 3):
                sizes[t.kernel(gpu_plan.CTYPES[dtype], *flags)] = t.smem_bytes(np.dtype(dtype).itemsize)
    return sizes


_EARLY: list[threading.Thread] = []


def start_early() -> None:
    """The module's compile (cached by ``cuda_source.compile_module``; its own process), begun
    after collection (tests/conftest.py): the thread only waits for that process."""
    thread = threading.Thread(target=_compile_quietly, daemon=True)
    thread.start()
    _EARLY.append(thread)


def _compile_quietly() -> None:
    for arch, source in (("sm_90", "backend"), (cuda_source.WGMMA_ARCH, "wgmma")):
        try:
            cuda_source.compile_module(arch, source)
        except Exception:  # the fixture's own call raises it where a test sees it
            pass


@pytest.fixture(scope="module")
def compiled():
    """The early compile done, when there is one: every later call gets its cached result."""
    for thread in _EARLY:
        thread.join()


@pytest.fixture(scope="module")
def report(compiled):
    """ptxas's figures per kernel, and its launches' dynamic shared memory."""
    sizes = _dynamic_smem()
    return {name: dict(r, dynamic_smem=sizes.get(name, 0))
            for name, r in cuda_source.compile_report("sm_90").items()}


@pytest.fixture(scope="module")
def sass(compiled):
    if cuda_source.cuobjdump() is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump)")
    return cuda_source.sass_report("sm_90")


@pytest.fixture(scope="module")
def wgmma_report(compiled):
    """ptxas's figures for the wgmma module (sm_90a), with its launches' dynamic shared memory."""
    sizes = _dynamic_smem()
    return {name: dict(r, dynamic_smem=sizes.get(name, 0))
            for name, r in cuda_source.compile_report(cuda_source.WGMMA_ARCH, "wgmma").items()}


@pytest.fixture(scope="module")
def wgmma_sass(compiled):
    if cuda_source.cuobjdump() is None:
        pytest.skip("cuobjdump not installed (pip install nvidia-cuda-cuobjdump)")
    return cuda_source.sass_report(cuda_source.WGMMA_ARCH, "wgmma")


def test_wgmma_kernels_compile_for_sm90a(wgmma_report, wgmma_sass):
    """The wgmma tiles' module, built for sm_90a alone: every kernel there, within its launch
    bounds' registers (128: two 256-thread blocks an SM; 255 for 256 columns, one), no spill;
    its main loop two HGMMA a 16-deep step and 128 columns (one a warpgroup's k8 half; three
    times that for 3xTF32), no division, call, generic or local memory; TF32's wait leaves the
    step's wgmmas running into the next (wgmma.wait_group 1), 3xTF32's none."""
    assert sorted(wgmma_report) == sorted(gpu_plan.wgmma_kernel_names()) != []
    tiles = {t.kernel("float", *flags): t for t in gpu_plan.TILES.values() if t.wgmma
             for flags in itertools.product((False, True), repeat=4)}
    bad = {}
    for name, r in wgmma_report.items():
        t = tiles[name]
        cap = min(255, 65536 // (t.threads * t.blocks_per_sm(4)))
        f = wgmma_sass[name]
        if (r["registers"] > cap or r["spill_stores"] or r["spill_loads"] or r["stack"]
                or f["hmma"] != 2 * t.terms * t.bn // 128 or f["mufu_rcp"] or f["calls"]
                or f["generic_memory"]
                or f["local_memory"] or f["wgmma_in_flight"] != (1 if t.terms == 1 else 0)):
            bad[name] = (r, f)
    assert bad == {}


def test_every_kernel_compiles_for_sm90(report):
    code, options, names = cuda_source.module_source()
    assert "-std=c++17" in options and "-ftz=true" in options
    assert sorted(report) == sorted(names)


def test_shared_memory_per_block(report):
    """Static plus dynamic shared memory within sm_90's 227 KiB per block."""
    assert {n: r for n, r in report.items() if r["smem"] + r["dynamic_smem"] > 227 * 1024} == {}


def test_no_spills_and_gemm_registers(report):
    rows = [f"{name:60s} {r['registers']:4d} regs {r['smem']:6d} B smem "
            f"{r['spill_stores'] + r['spill_loads']:3d} B spilled" for name, r in sorted(report.items())]
    print("\n".join(rows))
    spilled = {n: r for n, r in report.items() if r["spill_stores"] or r["spill_loads"] or r["stack"]}
    assert spilled == {}
    tiles = _float32_gemm_tiles()
    gemm = {n: r["registers"] for n, r in report.items() if n.startswith("conv_gemm")
            and "<double" not in n}
    assert gemm and gemm.keys() <= tiles.keys()
    # the launch bounds' blocks share an SM's 64K registers (a thread's most is 255): at most
    # 128 (two blocks of 256 threads, or four of 128), but for the tiles of 64 x 64 warps
    caps = {n: min(255, 65536 // (tiles[n].threads * tiles[n].blocks_per_sm(4))) for n in gemm}
    assert {n for n, cap in caps.items() if cap != 128} == {n for n in gemm if tiles[n].warp_m == 64}
    assert {n: (r, caps[n]) for n, r in gemm.items() if r > caps[n]} == {}


def _float32_gemm_tiles() -> dict:
    """{name expression: TileConfig} of every float32 GEMM kernel the module can build."""
    return {t.kernel("float", *flags): t
            for (dtype, _), names in gpu_plan.TILES_FOR.items() if dtype == "float32"
            for t in (gpu_plan.TILES[name] for name in names) if not t.direct
            for flags in itertools.product((False, True), repeat=4 if t.terms else 3)}


def _tile_rows(name: str) -> int:
    """BM of a conv_gemm / conv_gemm_mma name expression."""
    args = name[name.index("<") + 1:name.rindex(">")].split(", ")
    return int(args[1])


def test_gemm_hot_loops(sass, report, wgmma_sass, wgmma_report):
    """FFMA >= 75% of the CUDA-core main loop for 128-row tiles, >= 60% for 64-row tiles
    (float32); tensor-core loops hold HMMA and no generic loads; no MUFU.RCP (division), no
    CALL in any main loop; no local memory anywhere; conv_direct (few rows) alike, its hot
    loop (the segment layout's window, one load a tap for four pixels) reading through the
    read-only path (no generic loads), FFMA >= 30%."""
    assert sorted(sass) == sorted(n for n in report if n.startswith(("conv_gemm", "conv_direct")))
    bad = {}
    for name, f in sass.items():
        problems = []
        if f["mufu_rcp"] or f["calls"] or f["local_memory"] or f["generic_memory"]:
            problems.append("division, call, local or generic memory")
        if name.startswith("conv_gemm_mma"):
            if f["hmma"] == 0:
                problems.append("no HMMA")
        elif name.startswith("conv_direct"):
            # one row: 33% (the spread layout's loop, a load a multiply-add: 7%)
            floor = 0.3
            if f["ffma_share"] < floor:
                problems.append(f"FFMA {f['ffma_share']:.3f} < {floor:.3f}")
        elif "<float" in name and ", int>" in name and ", true, int>" in name:
            floor = {128: 0.75, 64: 0.60}.get(_tile_rows(name), 0.0)
            if f["ffma_share"] < floor:
                problems.append(f"FFMA {f['ffma_share']:.2f} < {floor}")
        if problems:
            bad[name] = problems
    assert bad == {}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"arch": "sm_90", "kernels": report, "hot_loops": sass},
                                  indent=1, sort_keys=True) + "\n")
    WGMMA_RESULTS.write_text(json.dumps({"arch": cuda_source.WGMMA_ARCH, "kernels": wgmma_report,
                                         "hot_loops": wgmma_sass}, indent=1, sort_keys=True) + "\n")


def test_ptxas_log_parsing():
    log = ("ptxas info    : Compiling entry function '_Z1kv' for 'sm_90'\n"
           "ptxas info    : Function properties for _Z1kv\n"
           "ptxas         .     8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
           "ptxas info    : Used 40 registers, used 1 barriers, 1024 bytes smem\n")
    assert cuda_source.parse_ptxas_log(log) == {"_Z1kv": dict(registers=40, spill_stores=4, spill_loads=4,
                                                            stack=8, smem=1024)}


def test_hot_loop_parser_finds_the_innermost_math_loop():
    code = [(0x00, "MOV R1, R2"), (0x10, "FFMA R3, R4, R5, R3"), (0x20, "@P0 BRA 0x10"),
            (0x30, "FFMA R3, R4, R5, R3"), (0x40, "FFMA R6, R4, R5, R6"), (0x50, "IADD3 R7, R7, 1, RZ"),
            (0x60, "@P1 BRA 0x30"), (0x70, "MUFU.RCP R8, R9"), (0x80, "BRA 0x0")]
    body = cuda_source.hot_loop(code)
    assert body == ["FFMA R3, R4, R5, R3", "FFMA R6, R4, R5, R6", "IADD3 R7, R7, 1, RZ", "@P1 BRA 0x30"]
    figures = cuda_source.loop_figures(body, code)
    assert figures["ffma"] == 2 and figures["ffma_share"] == 0.5 and figures["mufu_rcp"] == 0


def test_no_kernel_uses_generic_or_local_memory(sass):
    """Every kernel of the module (pooling, depthwise and layers included) reads and writes
    global memory as global (no generic LD/ST: a pointer the compiler could not place, such
    as one read back from shared memory) and keeps no local memory."""
    cubin, mangled, _ = cuda_source.compile_module("sm_90")
    bad = {}
    for name, code in cuda_source.sass_functions(cubin).items():
        kinds = [cuda_source.opcode(i).split(".")[0] for _, i in code]
        found = {k: kinds.count(k) for k in ("LD", "ST", "LDL", "STL") if k in kinds}
        if found:
            bad[mangled.get(name, name)] = found
    assert bad == {}
