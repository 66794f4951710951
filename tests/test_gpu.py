"""Checks that only mean something on a real GPU (skipped elsewhere): arrays of over 2^31
elements (64-bit offsets and indices), and bit-identical reruns (no atomics, fixed
reduction order), every precision and tensor-core tile against float64. The golden and
PyTorch tables run on the GPU backends as well."""

from __future__ import annotations

import functools

import numpy as np
import pytest

import gpuconv.functional as F
from gpuconv.backends import autotune, gpu_plan
from tests.arrays import GPU_BACKENDS, to_numpy

pytestmark = pytest.mark.skipif(not GPU_BACKENDS, reason="needs a CUDA GPU")
BACKENDS = pytest.mark.parametrize("backend", GPU_BACKENDS)
SIDE = 46_342  # SIDE**2 > 2**31: a plane whose flat offsets and indices overflow int32


@pytest.fixture
def large_cupy():
    """CuPy, when the GPU has the 28 GiB a test below needs free; its memory is handed
    back after the test (CuPy's pool would keep it)."""
    cupy = pytest.importorskip("cupy")
    free, _ = cupy.cuda.runtime.memGetInfo()
    if free < 28 * 2**30:
        pytest.skip(f"needs 28 GiB of free GPU memory, {free / 2**30:.0f} free")
    yield cupy
    cupy.get_default_memory_pool().free_all_blocks()


@BACKENDS
def test_conv2d_over_2_31_elements(backend, large_cupy):
    cupy = large_cupy
    x = cupy.random.default_rng(1).standard_normal((1, 1, SIDE, SIDE), dtype=cupy.float32)
    w = cupy.random.default_rng(2).standard_normal((1, 1, 3, 3), dtype=cupy.float32)
    tail = to_numpy(F.conv2d(x, w, backend=backend)[..., -4:, :])
    # the last 4 output rows read the last 6 input rows: beyond 2^31 elements into x
    want = F.conv2d(to_numpy(x[..., -6:, :]), to_numpy(w))
    np.testing.assert_allclose(tail, want, rtol=1e-5, atol=1e-5)


@BACKENDS
def test_max_pool2d_over_2_31_elements(backend, large_cupy):
    cupy = large_cupy
    x = cupy.random.default_rng(3).standard_normal((1, 1, SIDE, SIDE), dtype=cupy.float32)
    out, idx = F.max_pool2d(x, 2, return_indices=True, backend=backend)
    up = cupy.random.default_rng(4).standard_normal(out.shape, dtype=cupy.float32)
    grad = F.max_pool2d_backward(up, x, idx, 2, backend=backend)
    # the last output row pools the last 2 input rows; their flat indices h * SIDE + w in
    # the whole plane exceed 2^31
    x_tail = to_numpy(x[..., -2:, :])
    want, want_idx = F.max_pool2d(x_tail, 2, return_indices=True)
    np.testing.assert_array_equal(to_numpy(out[..., -1:, :]), want)
    np.testing.assert_array_equal(to_numpy(idx[..., -1:, :]), want_idx + (SIDE - 2) * SIDE)
    assert int(idx.max()) > 2**31
    want_grad = F.max_pool2d_backward(to_numpy(up[..., -1:, :]), x_tail, want_idx, 2)
    np.testing.assert_array_equal(to_numpy(grad[..., -2:, :]), want_grad)


@BACKENDS
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_reruns_are_bit_identical(backend, dtype):
    cupy = pytest.importorskip("cupy")
    rng = cupy.random.default_rng(4)
    # a batch and channel count that split grad-weight's long reduction over blocks
    x = rng.standard_normal((32, 64, 28, 28), dtype=dtype)
    w = rng.standard_normal((96, 32, 3, 3), dtype=dtype)
    g = rng.standard_normal((32, 96, 14, 14), dtype=dtype)
    kw = dict(stride=2, padding=1, groups=2, backend=backend)

    up = rng.standard_normal((32, 64, 14, 14), dtype=dtype)  # max pooling's upstream gradient

    def run():
        grads = F.conv2d_backward(g, x, w, **kw)
        pooled, idx = F.max_pool2d(x, 3, 2, 1, return_indices=True, backend=backend)
        back = F.max_pool2d_backward(up, x, idx, 3, 2, 1, backend=backend)
        return [to_numpy(a) for a in (*grads, pooled, back)]

    first, second = run(), run()
    for a, b in zip(first, second):
        assert a.tobytes() == b.tobytes()


@pytest.mark.skipif("numba" not in GPU_BACKENDS, reason="needs Numba on a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_numba_direct_launches_equal_numbas_own(monkeypatch, dtype):
    """The numba backend's direct launches (its own argument lists, through cuda.core) and
    Numba's launch give bit-identical results, both near the NumPy backend's: a conv's
    forward with bias and backward (grad-bias, split-K grad-weight), a transposed conv (its
    flipped kernel is a strided copy), max pooling and its backward, on Numba device arrays."""
    from numba import cuda

    from gpuconv.backends import numba_backend
    rng = np.random.default_rng(6)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in
               ((8, 16, 15, 15), (24, 16, 3, 3), (24,)))
    g = rng.standard_normal((8, 24, 8, 8)).astype(dtype)
    up = rng.standard_normal((8, 16, 7, 7)).astype(dtype)
    options = dict(stride=2, padding=1)

    def run(backend, arrays):
        x, w, b, g, up = arrays
        pooled, idx = F.max_pool2d(x, 3, 2, return_indices=True, backend=backend)
        return [to_numpy(a) for a in (
            F.conv2d(x, w, b, **options, backend=backend),
            *F.conv2d_backward(g, x, w, **options, backend=backend),
            F.conv_transpose2d(g, w, **options, backend=backend),
            pooled, F.max_pool2d_backward(up, x, idx, 3, 2, backend=backend))]

    host = (x, w, b, g, up)
    results = {}
    for direct in (True, False):
        monkeypatch.setattr(numba_backend, "DIRECT_LAUNCH", direct)
        results[direct] = run("numba", [cuda.to_device(a) for a in host])
    want = run("numpy", host)
    for direct, own, ref in zip(results[True], results[False], want):
        assert direct.tobytes() == own.tobytes()
        np.testing.assert_allclose(direct, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("config", [
    dict(name="sgd", learning_rate=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    dict(name="sgd", learning_rate=0.1, momentum=0.8),
    dict(name="adam", learning_rate=0.01, weight_decay=1e-3),
], ids=["sgd-nesterov", "sgd-momentum", "adam"])
def test_fused_gpu_updates_match_the_numpy_expressions(config):
    cupy = pytest.importorskip("cupy")
    from gpuconv.nn.optimizers import make_optimizer
    rng = np.random.default_rng(5)
    params = {"w": rng.standard_normal((7, 5)), "b": rng.standard_normal(5)}
    on_cpu, on_gpu = make_optimizer(config), make_optimizer(config)
    cpu = {k: v.copy() for k, v in params.items()}
    gpu = {k: cupy.asarray(v) for k, v in params.items()}
    for _ in range(4):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        on_cpu.apply(cpu, grads)
        on_gpu.apply(gpu, {k: cupy.asarray(g) for k, g in grads.items()})
    for key in params:
        np.testing.assert_allclose(cupy.asnumpy(gpu[key]), cpu[key], rtol=1e-12, atol=1e-14)
    for name, state in on_cpu.state.items():
        np.testing.assert_allclose(cupy.asnumpy(on_gpu.state[name]), state, rtol=1e-12,
                                   atol=1e-14)


# (x shape, weight shape, conv options): tiles of every size, stride, dilation, groups, padding
PRECISION_CASES = {
    "resnet-3x3": ((8, 64, 28, 28), (128, 64, 3, 3), dict(padding=1)),
    "stride2-dilated": ((4, 32, 30, 30), (64, 32, 3, 3), dict(stride=2, padding=2, dilation=2)),
    "groups-1x1": ((16, 64, 14, 14), (96, 16, 1, 1), dict(groups=4)),
    "few-rows": ((4, 48, 20, 20), (24, 48, 5, 5), dict(padding=2)),
}


@pytest.mark.parametrize("precision", ["ieee", "tf32", "tf32x3"])
@pytest.mark.parametrize("case", list(PRECISION_CASES))
def test_cupy_every_precision_against_float64(case, precision):
    """On the tensor cores too: each pass against the NumPy backend in float64 (strict FP32
    within 1e-7 x sqrt(reduction length); 3xTF32 within twice the strict kernel's error: FP32
    accuracy; TF32 within its 10-bit products)."""
    _check_precision_case(case, precision)


TENSOR_CORE_TILES = [(precision, tile) for precision in ("tf32", "tf32x3")
                     for tile in gpu_plan.TILES_FOR[("float32", precision)]]


@pytest.mark.parametrize("precision, tile", TENSOR_CORE_TILES)
@pytest.mark.parametrize("case", list(PRECISION_CASES))
def test_cupy_every_tensor_core_tile_against_float64(case, precision, tile):
    """The same bounds with each tensor-core tile forced, the wgmma tiles (Hopper; which the
    plans leave out until measured: gpu_plan.UNMEASURED) included; a case off the tiles' fast
    path runs its own."""
    if "cupy" in GPU_BACKENDS:
        from gpuconv.backends import cupy_backend
        if not cupy_backend.tile_runs(tile):
            pytest.skip(f"{tile} needs a Hopper GPU")
    _check_precision_case(case, precision, tile)


@functools.cache
def _precision_case(case: str):
    """(x, w, grad_out, the three passes in float64 on the NumPy backend) of a case, made
    once per process (the float64 passes take the CPU a while)."""
    x_shape, w_shape, kw = PRECISION_CASES[case]
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y = F.conv2d(x, w, **kw)
    g = rng.standard_normal(y.shape)
    return x, w, g, (y, *F.conv2d_backward(g, x, w, **kw)[:2])


def _check_precision_case(case: str, precision: str, tile: str | None = None) -> None:
    cupy = pytest.importorskip("cupy")
    if "cupy" not in GPU_BACKENDS:
        pytest.skip("needs the cupy backend")
    _, w_shape, kw = PRECISION_CASES[case]
    x, w, g, exact = _precision_case(case)

    def run(p):
        xd, wd, gd = (cupy.asarray(a, dtype=cupy.float32) for a in (x, w, g))
        return (F.conv2d(xd, wd, precision=p, backend="cupy", **kw),
                *F.conv2d_backward(gd, xd, wd, precision=p, backend="cupy", **kw)[:2])

    def errors(p):
        return [float(np.abs(to_numpy(a) - e).max() / np.abs(e).max()) for a, e in zip(run(p), exact)]

    strict = errors("ieee")
    with autotune.forced_tile(tile):
        got = errors(precision)
    groups = kw.get("groups", 1)
    taps = w_shape[2] * w_shape[3]
    lengths = (w_shape[1] * taps, w_shape[0] // groups * taps, g.shape[0] * g.shape[2] * g.shape[3])
    bound = {"ieee": [1e-7 * k ** 0.5 for k in lengths], "tf32": [5e-3] * 3,
             "tf32x3": [2 * e + 1e-7 for e in strict]}[precision]
    assert all(e <= b for e, b in zip(got, bound)), (got, strict)
