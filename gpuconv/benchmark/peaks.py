"""The chip's arithmetic ceilings, measured in the bench's own run (kernels/peak.cu, launched with
CuPy): FFMA and mma.sync TF32 loops with nothing but registers in them, the most any CUDA-core
or mma.sync kernel reaches on this device. Against them the conv GEMMs' TFLOP/s say how much of
what the instruction can do they get, and the mma.sync figure against cuBLAS's TF32 (wgmma on
Hopper) how much a kernel loses by staying on mma.sync.

Each kernel's every thread sums to a value known beforehand (``expected``): a result that
differs marks the measurement wrong rather than reporting a rate for work not done."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from gpuconv.backends import cuda_source

# peak.cu's constants (tests/test_bench_peaks.py reads them there)
PEAK_CHAINS = 8
PEAK_UNROLL = 8
PEAK_THREADS = 256
BLOCKS_PER_SM = 8  # 2048 threads: a full SM at the loops' few registers
PEAK_PARAMS = np.dtype([("out", np.uint64), ("x", np.float32), ("y", np.float32),
                        ("iterations", np.int32)], align=True)
# Loop iterations of each kernel: about a millisecond on an H100 / H200, and sums that stay
# exact in float32 (below 2^24)
ITERATIONS = {"ffma_peak": 2048, "mma_peak": 512}
MMA_FLOPS = 2 * 16 * 8 * 8  # one mma.sync m16n8k8


def flops(kernel: str, blocks: int, iterations: int) -> int:
    """The multiply-adds' flops of one launch: 2 a multiply-add, an MMA a warp's 16 x 8 x 8."""
    steps = iterations * PEAK_UNROLL * PEAK_CHAINS
    if kernel == "ffma_peak":
        return 2 * blocks * PEAK_THREADS * steps
    return blocks * PEAK_THREADS // 32 * steps * MMA_FLOPS


def expected(kernel: str, iterations: int, x: float = 1.0, y: float = 1.0) -> float:
    """What every thread writes (peak.cu's header), x = 1 for ffma_peak."""
    steps = iterations * PEAK_UNROLL
    if kernel == "ffma_peak":
        return sum(c + steps * y for c in range(PEAK_CHAINS))
    return PEAK_CHAINS * 4 * steps * 8 * x * x


def params(out_pointer: int, iterations: int, x: float = 1.0, y: float = 1.0) -> np.ndarray:
    """The kernels' PeakParams, packed (size 1)."""
    p = np.zeros(1, PEAK_PARAMS)
    p["out"], p["x"], p["y"], p["iterations"] = out_pointer, x, y, iterations
    return p


def measure(time_ms: Callable[[Callable[[], object]], dict], sm_count: int) -> dict:
    """{"ffma": ..., "mma_tf32": ...}: each kernel's timing summary (``time_ms`` times a call,
    returning its samples' summary), its TFLOP/s and whether every thread's sum was right."""
    import cupy

    code, options, names = cuda_source.peak_source()
    module = cupy.RawModule(code=code, options=options, name_expressions=names)
    blocks = sm_count * BLOCKS_PER_SM
    out = cupy.zeros(blocks * PEAK_THREADS, dtype=cupy.float32)
    results = {}
    for kernel, label in (("ffma_peak", "ffma"), ("mma_peak", "mma_tf32")):
        function, iterations = module.get_function(kernel), ITERATIONS[kernel]
        p = params(out.data.ptr, iterations)
        out.fill(0)
        summary = time_ms(partial(function, (blocks,), (PEAK_THREADS,), (p,)))
        right = bool((out == expected(kernel, iterations)).all())
        results[label] = {**summary, "ok": right, "blocks": blocks, "threads": PEAK_THREADS,
                          "iterations": iterations,
                          "tflops": flops(kernel, blocks, iterations) / summary["median_ms"] / 1e9}
    return results
