"""The numba backend against the NumPy backend on random configurations, forward and backward,
float32 and float64, through Numba's CUDA simulator (tests/conftest.py) or on a GPU.

One table of (op, shapes, hyper-parameters): conv with strides, dilations, groups
(depthwise included), every padding mode and flip; transposed conv; every pooling op.
Inputs and upstream gradients are random; max pooling gets distinct values, so its
indices must match exactly. Every launch is checked against ``kernel_table``'s signature.
Shapes stay small: the simulator runs every CUDA thread in Python.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import gpuconv.functional as F
from gpuconv.backends import unavailable_reason
from test_golden import COEFF, assert_close, assert_indices_equal

try:  # a module global, which the simulator swaps in a kernel (the tests skip without numba)
    from numba import cuda
except ImportError:
    cuda = None

pytestmark = pytest.mark.skipif(unavailable_reason("numba") is not None,
                                reason=f"numba backend: {unavailable_reason('numba')}")

MAX_OPS = ("max_pool1d", "max_pool2d", "adaptive_max_pool2d", "global_max_pool2d")

# (op, input shape, weight shape or None, keyword arguments)
CONFIGS = [
    ("conv2d", (2, 4, 7, 6), (6, 2, 3, 3), dict(stride=(2, 1), padding=1, groups=2)),
    ("conv2d", (1, 3, 6, 7), (3, 1, 3, 2), dict(padding=1, dilation=(2, 1), groups=3,
                                                padding_mode="reflect", flip=True)),
    ("conv2d", (2, 2, 5, 5), (4, 2, 2, 3), dict(stride=(1, 2), padding=2,
                                                padding_mode="replicate")),
    ("conv2d", (1, 2, 5, 6), (3, 2, 3, 3), dict(padding=(2, 3), dilation=2,
                                                padding_mode="circular")),
    ("conv2d", (2, 2, 6, 5), (4, 1, 3, 3), dict(stride=2, padding=1, groups=2, flip=True)),
    ("conv2d", (1, 3, 5, 6), (2, 3, 2, 4), dict(padding="same", padding_mode="reflect")),
    ("conv1d", (2, 3, 9), (4, 3, 3), dict(stride=2, padding=2, padding_mode="circular")),
    ("conv2d", (2, 2, 9, 10), (4, 1, 5, 5), dict(stride=2, padding=2, groups=2)),  # depthwise.cu twins
    ("conv2d", (1, 2, 13, 12), (2, 1, 7, 7), dict(padding=3, dilation=(2, 1), groups=2,
                                                  padding_mode="circular")),
    ("conv2d", (2, 3, 6, 7), (3, 1, 2, 3), dict(padding=(1, 2), groups=3, padding_mode="replicate")),
    ("conv_transpose2d", (2, 4, 4, 5), (4, 1, 3, 3), dict(stride=2, padding=1, groups=4,
                                                          output_padding=1)),
    ("conv_transpose2d", (2, 4, 3, 4), (4, 3, 3, 2), dict(stride=(2, 3), padding=(1, 0),
                                                          output_padding=(1, 2), groups=2)),
    ("conv_transpose2d", (1, 2, 4, 3), (2, 2, 2, 3), dict(stride=2, dilation=(3, 1),
                                                          output_padding=(2, 1))),
    ("conv_transpose1d", (1, 2, 5), (2, 3, 4), dict(stride=3, dilation=2, output_padding=1)),
    # 1-D arrays reach the GPU backends as they are: a flipped 1-D kernel, and a crop of the
    # transposed conv's grad-input (output_padding >= stride)
    ("conv1d", (2, 3, 9), (4, 3, 3), dict(padding=1, flip=True)),
    ("conv_transpose1d", (2, 3, 7), (3, 4, 3), dict(dilation=2, output_padding=1)),
    ("max_pool2d", (2, 2, 7, 8), None, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    ("max_pool2d", (1, 2, 6, 7), None, dict(kernel_size=(2, 3), stride=(1, 2), padding=1,
                                            dilation=(2, 1))),
    ("max_pool1d", (2, 3, 11), None, dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)),
    ("avg_pool2d", (2, 2, 7, 6), None, dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                                            count_include_pad=False)),
    ("avg_pool2d", (1, 3, 6, 7), None, dict(kernel_size=(2, 3), stride=(2, 1), padding=1,
                                            divisor_override=4)),
    ("avg_pool1d", (2, 2, 9), None, dict(kernel_size=3, stride=2, padding=1)),
    ("adaptive_avg_pool2d", (2, 2, 7, 5), None, dict(output_size=(3, 4))),
    ("adaptive_avg_pool2d", (1, 2, 4, 3), None, dict(output_size=(6, 5))),
    ("adaptive_max_pool2d", (2, 2, 7, 6), None, dict(output_size=(4, 3))),
    ("global_avg_pool2d", (2, 3, 5, 4), None, dict()),
    ("global_max_pool2d", (2, 3, 5, 4), None, dict()),
    ("lp_pool2d", (2, 2, 7, 6), None, dict(norm_type=2, kernel_size=(2, 3), stride=2,
                                           ceil_mode=True)),
    ("lp_pool1d", (2, 2, 9), None, dict(norm_type=3, kernel_size=3, stride=2)),
    ("lp_pool2d", (1, 2, 6, 6), None, dict(norm_type=1.5, kernel_size=2)),
    # a column dilation whose first tap falls in the padding: the first tap inside is 1 (a
    # read of column -1 would take the previous row's last element)
    ("max_pool2d", (1, 2, 6, 7), None, dict(kernel_size=3, stride=(1, 2), padding=1,
                                            dilation=(1, 2))),
    # depthwise tiles: column stride 3 (tile_taps, not the registers path of steps 1 and 2),
    # column dilation (tile_taps forward, the transposed tile's origin in grad-input), and a
    # grad-weight whose last chunk of images is short (7 images, chunks of 2)
    ("conv2d", (1, 2, 7, 11), (2, 1, 3, 3), dict(stride=(1, 3), padding=1, groups=2)),
    ("conv2d", (1, 2, 6, 9), (4, 1, 3, 3), dict(padding=2, dilation=(1, 2), groups=2)),
    ("conv2d", (7, 2, 3, 3), (44, 1, 3, 3), dict(padding=1, groups=2)),
]
TABLE = [pytest.param(i, op, x, w, kw, dtype, id=f"{i}-{op}-{dtype}")
         for i, (op, x, w, kw) in enumerate(CONFIGS) for dtype in ("float32", "float64")]


@pytest.fixture(autouse=True)
def check_signatures(monkeypatch):
    from gpuconv.backends import numba_backend
    monkeypatch.setattr(numba_backend, "CHECK_SIGNATURES", True)


def reduction_length(op, x_shape, w_shape, kw) -> int:
    """A bound on how many terms add up into one result number (scales the tolerance)."""
    if w_shape is None:
        kernel = kw.get("kernel_size", 1)
        window = math.prod(kernel) if isinstance(kernel, tuple) else kernel ** (len(x_shape) - 2)
        return max(window, math.prod(x_shape[2:])) + 4
    taps = math.prod(w_shape[2:])
    return max(w_shape[0] * taps * 9, w_shape[1] * taps * 9, x_shape[0] * math.prod(x_shape[2:]))


def arrays(op, x_shape, w_shape, kw, dtype, rng):
    if op.startswith("lp"):  # positive inputs: x ** p is real for any p
        x = rng.uniform(0.2, 2.0, x_shape)
    elif op in MAX_OPS:  # distinct values: one maximum per window
        x = rng.permutation(math.prod(x_shape)).reshape(x_shape) / 7.0 - 3.0
    else:
        x = rng.standard_normal(x_shape)
    if w_shape is None:
        return x.astype(dtype), None, None
    w = rng.standard_normal(w_shape).astype(dtype)
    out_channels = w_shape[1] * kw.get("groups", 1) if "transpose" in op else w_shape[0]
    return x.astype(dtype), w, rng.standard_normal(out_channels).astype(dtype)


def run(op, x, w, b, kw, gy_rng, backend):
    """Forward and backward of ``op`` on ``backend``: a dict of NumPy results."""
    forward, backward = getattr(F, op), getattr(F, op + "_backward")
    if w is not None:
        y = forward(x, w, b, **kw, backend=backend)
        gy = gy_rng.standard_normal(y.shape).astype(x.dtype)
        gx, gw, gb = backward(gy, x, w, **kw, backend=backend)
        return dict(output=y, grad_input=gx, grad_weight=gw, grad_bias=gb)
    if op in MAX_OPS:
        y, idx = forward(x, **kw, return_indices=True, backend=backend)
        gy = gy_rng.standard_normal(y.shape).astype(x.dtype)
        return dict(output=y, indices=idx, grad_input=backward(gy, x, idx, **kw, backend=backend))
    y = forward(x, **kw, backend=backend)
    gy = gy_rng.standard_normal(y.shape).astype(x.dtype)
    return dict(output=y, grad_input=backward(gy, x, **kw, backend=backend))


@pytest.mark.parametrize("seed,op,x_shape,w_shape,kw,dtype", TABLE)
def test_numba_matches_numpy(seed, op, x_shape, w_shape, kw, dtype):
    x, w, b = arrays(op, x_shape, w_shape, kw, dtype, np.random.default_rng(seed))
    want = run(op, x, w, b, kw, np.random.default_rng(seed + 1000), "numpy")
    got = run(op, x, w, b, kw, np.random.default_rng(seed + 1000), "numba")
    k = reduction_length(op, x_shape, w_shape, kw)
    for name, expected in want.items():
        what = f"{op} {kw} [{dtype}] {name}"
        if name == "indices":
            assert_indices_equal(got[name], expected, what)
        else:
            assert_close(got[name], expected, k=k, dtype=dtype, what=what,
                         exact=name == "output" and op in MAX_OPS)


# convs that run the GEMM (not the depthwise kernels: one input channel a group)
CONV_CONFIGS = [i for i, (op, _, w, _) in enumerate(CONFIGS) if op.startswith("conv") and w[1] > 1][:4]


@pytest.mark.parametrize("seed", CONV_CONFIGS)
def test_int64_offsets_match_numpy(seed, monkeypatch):
    """The conv kernels' int64-offset instances (for tensors past 2^31 elements), run on small
    tensors by lowering the planner's limit; prepared calls start afresh (a call signature
    prepared with 32-bit offsets would keep them), and every GEMM launched is an int64 one."""
    from gpuconv.backends import gpu_plan, numba_backend
    monkeypatch.setattr(gpu_plan, "INDEX64_FROM", 0)
    monkeypatch.setattr(numba_backend, "_PREPARED", {})
    op, x_shape, w_shape, kw = CONFIGS[seed]
    x, w, b = arrays(op, x_shape, w_shape, kw, "float64", np.random.default_rng(seed))
    want = run(op, x, w, b, kw, np.random.default_rng(seed + 1000), "numpy")
    got = run(op, x, w, b, kw, np.random.default_rng(seed + 1000), "numba")
    for name, expected in want.items():
        assert_close(got[name], expected, k=reduction_length(op, x_shape, w_shape, kw),
                     dtype="float64", what=f"{op} {kw} int64 offsets {name}")
    launched = [step.name for p in numba_backend._PREPARED.values() for step in p.steps]
    gemms = [name for name in launched if name.startswith(("conv_gemm", "conv_direct"))]
    assert gemms and all(name.endswith("i64>") for name in gemms), launched


def test_device_arrays_in_device_arrays_out():
    """Numba device arrays stay on the device: a flipped kernel (a negative-stride view) is
    copied to a contiguous one there, and a 1-D op lifts its arrays by a reshape."""
    from numba import cuda
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 3, 2, 3))
    y = F.conv2d(cuda.to_device(x), cuda.to_device(w), padding=1, flip=True, backend="numba")
    assert hasattr(y, "copy_to_host"), f"expected a Numba device array, got {type(y).__name__}"
    want = F.conv2d(x, w, padding=1, flip=True)
    assert_close(y.copy_to_host(), want, k=18, dtype="float64", what="conv2d flip on device")
    x1 = rng.standard_normal((2, 3, 8))
    y1, idx = F.max_pool1d(cuda.to_device(x1), 3, 2, return_indices=True, backend="numba")
    want1, want_idx = F.max_pool1d(x1, 3, 2, return_indices=True)
    np.testing.assert_array_equal(y1.copy_to_host(), want1)
    assert_indices_equal(idx.copy_to_host(), want_idx, "max_pool1d indices on device")


def test_device_array_results_are_contiguous_and_indices_checked_on_device():
    """A real GPU copies no reversed view to the host (the simulator does): flip=True's
    kernel gradient comes back contiguous. Max-pool indices on the device are range-checked
    in the kernel, which flags a bad one for gpuconv.check_errors() (no wait in the op)."""
    import gpuconv
    from numba import cuda
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))
    g = rng.standard_normal((2, 3, 3, 3))
    grads = F.conv2d_backward(*map(cuda.to_device, (g, x, w)), flip=True, backend="numba")
    for got, want in zip(grads, F.conv2d_backward(g, x, w, flip=True)):
        assert got.is_c_contiguous()
        assert_close(got.copy_to_host(), want, k=50, dtype="float64", what="flip gradients")
    _, idx = F.max_pool2d(x, 2, return_indices=True)
    idx[0, 0, 0, 0] = 25  # one past the 5x5 plane
    gpuconv.check_errors()
    F.max_pool2d_backward(cuda.to_device(rng.standard_normal(idx.shape)), cuda.to_device(x),
                          cuda.to_device(idx), 2, backend="numba")
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 25\)"):
        gpuconv.check_errors()
    gpuconv.check_errors()  # cleared


def test_float32_stays_float32():
    x = np.ones((1, 2, 4, 4), np.float32)
    w = np.ones((2, 2, 3, 3), np.float32)
    assert F.conv2d(x, w, backend="numba").dtype == np.float32
    assert F.lp_pool2d(x, 2, 2, backend="numba").dtype == np.float32
    assert COEFF["float32"] > COEFF["float64"]


# (n, out): adaptive windows down, up, and up where (n + 1) * out passes 2^32 (gpu_plan.pool32
# allows n * (out + 1) < 2^32): a window end computed as ((o+1)*n + out - 1) // out in 32 bits
# wraps for the last window
ADAPTIVE_RANGES = [(7, 3), (4, 6), (65280, 65792)]


@pytest.mark.parametrize("n, out", ADAPTIVE_RANGES, ids=["down", "up", "up-past-2^32"])
def test_adaptive_windows_match_shapes(n, out):
    """pool_numba.adaptive_range, the [start, end) of the pooling kernels' adaptive windows,
    against shapes.adaptive_windows on the first and last windows of a sweep (one thread
    each: the simulator runs a whole sweep of 65792 windows slowly)."""
    from gpuconv.kernels import pool_numba
    from gpuconv.shapes import adaptive_windows

    @cuda.jit
    def windows(o, n, out, got):
        t = cuda.threadIdx.x
        if t < o.size:
            got[t, 0], got[t, 1] = pool_numba.adaptive_range(o[t], n, out)

    o = np.unique(np.r_[np.arange(min(out, 8)), np.arange(max(0, out - 8), out)]).astype(np.int64)
    got = np.full((o.size, 2), -1, np.int64)
    windows[1, 32](o, np.int64(n), np.int64(out), got)
    starts, ends = adaptive_windows(n, out)
    np.testing.assert_array_equal(got, np.stack([starts[o], ends[o]], 1),
                                  err_msg=f"windows {o.tolist()} of {n} -> {out}")


# (op, input shape, keyword arguments, NaN positions): a NaN after numbers in a window, two
# NaNs in one window (the later wins), and, for global pooling (a 4x5 plane: two lanes, flat
# elements e read by lane e % 2), NaNs after numbers in both lanes, the later (flat 10, lane 0)
# winning the tree's merge over the earlier (flat 3, lane 1)
NAN_CASES = [
    ("max_pool2d", (1, 2, 6, 7), dict(kernel_size=3, stride=2, padding=1),
     [(0, 0, 1, 1), (0, 0, 1, 2), (0, 1, 4, 5)]),
    ("adaptive_max_pool2d", (1, 2, 7, 6), dict(output_size=(3, 2)), [(0, 0, 1, 1), (0, 1, 3, 4),
                                                                     (0, 1, 3, 5)]),
    ("global_max_pool2d", (2, 2, 4, 5), dict(), [(0, 0, 0, 3), (0, 0, 2, 0), (1, 1, 1, 4)]),
]


@pytest.mark.parametrize("op, x_shape, kw, nans", NAN_CASES, ids=[c[0] for c in NAN_CASES])
def test_max_pooling_nans_match_numpy(op, x_shape, kw, nans):
    """A NaN beats any number and, of two NaNs, the later wins (as PyTorch): the value, its
    index and the gradient routed by it match the NumPy backend, windowed, adaptive and
    global (whose lanes merge in a tree)."""
    rng = np.random.default_rng(len(op))
    x = rng.permutation(math.prod(x_shape)).reshape(x_shape) / 7.0 - 3.0
    for at in nans:
        x[at] = np.nan
    want = run(op, x, None, None, kw, np.random.default_rng(1), "numpy")
    got = run(op, x, None, None, kw, np.random.default_rng(1), "numba")
    np.testing.assert_array_equal(got["output"], want["output"], err_msg=f"{op} output")
    assert_indices_equal(got["indices"], want["indices"], f"{op} indices")
    assert_close(got["grad_input"], want["grad_input"], k=4, dtype="float64",
                 what=f"{op} grad_input")
