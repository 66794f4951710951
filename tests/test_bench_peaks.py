"""The bench's arithmetic ceilings (kernels/peak.cu, gpuconv/benchmark/peaks.py), without a GPU:
the kernels run in the host emulation and must write the sums peaks.expected predicts (so a
GPU run that skipped work reports WRONG, not a rate); ``peaks.measure`` runs end to end on a
stand-in for CuPy that launches the emulated kernels; compiled for sm_90, their loops are
nothing but FFMA or HMMA; and the bench's summary reports them."""

from __future__ import annotations

import ctypes
import re
import sys
import types

import numpy as np
import pytest

from gpuconv.backends import cuda_source
from gpuconv.benchmark import peaks, results
from tests.cuda_host import harness

needs_compiler = pytest.mark.skipif(harness.compiler() is None, reason="no C++ compiler (g++)")


@pytest.fixture(scope="module")
def lib():
    return harness.build("peak")


def _launch(lib, kernel: str, blocks: int, params: np.ndarray) -> None:
    index = cuda_source.PEAK_KERNELS.index(kernel)
    fn = getattr(lib, f"launch_{index}")
    fn.restype = ctypes.c_ulong
    assert fn(*(ctypes.c_uint(v) for v in (blocks, 1, 1, peaks.PEAK_THREADS, 1, 1)),
              ctypes.c_ulong(0), ctypes.c_void_p(params.ctypes.data)) == 0


@pytest.mark.parametrize("name", ["PEAK_CHAINS", "PEAK_UNROLL", "PEAK_THREADS"])
def test_constants_match_the_kernels(name):
    text = (cuda_source.resources.files("gpuconv.kernels") / "peak.cu").read_text()
    assert re.search(rf"constexpr int {name} = (\d+);", text).group(1) == str(getattr(peaks, name))


def test_flops_count_each_multiply_add_twice():
    steps = 3 * peaks.PEAK_UNROLL * peaks.PEAK_CHAINS
    assert peaks.flops("ffma_peak", 2, 3) == 2 * 2 * peaks.PEAK_THREADS * steps
    assert peaks.flops("mma_peak", 2, 3) == 2 * peaks.PEAK_THREADS // 32 * steps * 2 * 16 * 8 * 8


def test_the_bench_iterations_keep_the_sums_exact():
    for kernel, iterations in peaks.ITERATIONS.items():
        assert peaks.expected(kernel, iterations) < 2 ** 24


@needs_compiler
@pytest.mark.parametrize("kernel, x, y", [("ffma_peak", 1.0, 0.5), ("ffma_peak", 1.0, 3.0),
                                          ("mma_peak", 0.5, 0.0), ("mma_peak", 1.0, 0.0)])
def test_every_thread_writes_the_expected_sum(lib, kernel, x, y):
    rng = np.random.default_rng()
    iterations, blocks = int(rng.integers(1, 4)), 2
    out = np.full(blocks * peaks.PEAK_THREADS, np.nan, np.float32)
    _launch(lib, kernel, blocks, peaks.params(out.ctypes.data, iterations, x, y))
    want = peaks.expected(kernel, iterations, x, y)
    assert want != peaks.expected(kernel, iterations + 1, x, y)  # a missed iteration shows
    bad = np.flatnonzero(out != want)
    assert bad.size == 0, f"thread {bad[:1]} wrote {out[bad[:1]]}, want {want}"


class _FakeArray:
    """The parts of a CuPy array peaks.measure uses, over NumPy."""

    def __init__(self, array: np.ndarray):
        self.array = array
        self.data = types.SimpleNamespace(ptr=array.ctypes.data)

    def fill(self, value) -> None:
        self.array.fill(value)

    def __eq__(self, other):
        return self.array == other


def _fake_cupy(lib, wrong: str | None = None) -> types.ModuleType:
    """A stand-in for CuPy whose RawModule launches the emulated peak kernels; ``wrong``: that
    kernel runs one iteration short (a GPU skipping work)."""
    class RawModule:
        def __init__(self, code, options, name_expressions):
            assert (code, options, name_expressions) == cuda_source.peak_source()

        def get_function(self, kernel):
            def launch(grid, block, args):
                (p,) = args
                assert block == (peaks.PEAK_THREADS,)
                p = p.copy()
                p["iterations"] -= kernel == wrong
                _launch(lib, kernel, grid[0], p)
            return launch

    return types.SimpleNamespace(RawModule=RawModule, float32=np.float32,
                                 zeros=lambda n, dtype: _FakeArray(np.zeros(n, dtype)))


@needs_compiler
@pytest.mark.parametrize("wrong", [None, "ffma_peak", "mma_peak"])
def test_measure_times_each_kernel_and_checks_its_sums(lib, monkeypatch, wrong):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(lib, wrong))
    monkeypatch.setattr(peaks, "ITERATIONS", {"ffma_peak": 2, "mma_peak": 1})
    timed = []

    def time_ms(run):
        run()
        timed.append(run)
        return {"median_ms": 0.5}
    got = peaks.measure(time_ms, sm_count=1)
    assert len(timed) == 2 and set(got) == {"ffma", "mma_tf32"}
    for label, kernel in (("ffma", "ffma_peak"), ("mma_tf32", "mma_peak")):
        assert got[label]["ok"] == (kernel != wrong)
        blocks = peaks.BLOCKS_PER_SM
        assert got[label]["tflops"] == peaks.flops(kernel, blocks, peaks.ITERATIONS[kernel]) / 0.5 / 1e9


def test_the_summary_reports_the_ceilings():
    report = {"environment": {"device": "d", "versions": {}}, "limits": None, "groups": [],
              "settings": {"backend": "cupy", "repeat": 3},
              "copy": {"gbps": 3000.0, "sgemm_fp32": {"n": 8192, "tflops": 50.0},
                       "sgemm_tf32": {"n": 8192, "tflops": 300.0},
                       "peaks": {"ffma": {"tflops": 60.0, "ok": True},
                                 "mma_tf32": {"tflops": 250.0, "ok": False}}}}
    text = results.summary(report)
    assert "TF32 torch.mm: 300.0 TFLOP/s" in text
    assert "FFMA 60.0 TFLOP/s, mma.sync m16n8k8 TF32 WRONG sums, no rate" in text
    report["copy"]["peaks"] = {"skipped": "CuPy is unavailable: no CUDA device"}
    assert "not measured (CuPy is unavailable: no CUDA device)" in results.summary(report)


@pytest.mark.skipif(cuda_source.cuobjdump() is None, reason="cuobjdump not installed")
def test_sm90_loops_are_only_multiply_adds():
    pytest.importorskip("cuda.core")
    cubin, mangled, _ = cuda_source.compile_module("sm_90", "peak")
    loops = {mangled[name]: cuda_source.hot_loop(code)
             for name, code in cuda_source.sass_functions(cubin).items() if name in mangled}
    steps = peaks.PEAK_UNROLL * peaks.PEAK_CHAINS
    for kernel, unit in (("ffma_peak", "FFMA"), ("mma_peak", "HMMA")):
        ops = [cuda_source.opcode(i).split(".")[0] for i in loops[kernel]]
        # the loop as written, or unrolled further by ptxas
        assert ops.count(unit) % steps == 0 and ops.count(unit) >= 0.9 * len(ops), (kernel, ops)


def test_without_cupy_the_ceilings_say_why(monkeypatch):
    from gpuconv import backends
    from gpuconv.benchmark import cudnn
    monkeypatch.setattr(backends, "unavailable_reason", lambda name: f"no {name} here")
    assert cudnn.arithmetic_peaks(None, 3, 1, 132) == {"skipped": "CuPy is unavailable: no cupy here"}
