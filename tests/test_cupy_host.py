"""The CuPy backend's CUDA C kernels, run on the CPU (tests/cuda_host), against the NumPy
backend: every kernel, tile configuration and padding mode, float32 / float64, and TF32 with
a TF32-sized tolerance. The backend's own functions run, with a NumPy executor in place of
CuPy, so plans and parameter packing are checked too."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gpuconv.backends import autotune, gpu_plan, cupy_backend, numpy_backend as ref
from gpuconv.shapes import ConvSpec, PoolSpec
from tests.cuda_host import harness

pytestmark = pytest.mark.skipif(harness.compiler() is None, reason="no C++ compiler (g++)")

# |got - want| <= c * sqrt(K) * (|want| + max|want|), K the reduction length behind a number
# (as tests/test_golden.py); TF32 keeps 10 mantissa bits of each product's inputs.
COEFF = {"float64": 2e-14, "float32": 2e-6, "tf32": 2e-3, "tf32x3": 2e-6}


@pytest.fixture(scope="module")
def lib():
    return harness.build()


LAUNCHED: set[str] = set()  # every kernel this module's tests ran


def _shifted(x: np.ndarray, elements: int = 1) -> np.ndarray:
    """A C-contiguous copy of x that starts ``elements`` past a 16-byte boundary: the kernels'
    vector paths must not take it (`make check-memory` makes a misaligned vector access fatal,
    as a GPU does)."""
    buffer = np.empty(x.size + elements, x.dtype)
    shifted = buffer[elements:].reshape(x.shape)
    shifted[...] = x
    return shifted


@pytest.fixture
def host(lib, monkeypatch):
    ex = harness.HostExecutor(lib)
    monkeypatch.setattr(cupy_backend, "_EXECUTOR", ex)
    yield ex
    LAUNCHED.update(ex.launched)


def assert_close(got, want, k: int, tol: str, what: str):
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape)
    finite = np.abs(want[np.isfinite(want)])  # a NaN or inf expected sets no scale
    scale = np.abs(want) + (finite.max() if finite.size else 0)
    bad = ~(np.abs(got - want) <= COEFF[tol] * math.sqrt(max(k, 1)) * scale)
    bad &= ~(np.isnan(got) & np.isnan(want))
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        pytest.fail(f"{what}: {bad.sum()} of {bad.size} differ, first at {i}: got {got[i]!r}, "
                    f"want {want[i]!r}")


# --------------------------------------------------------------------------- convolution
# name: (x shape, weight shape, ConvSpec.make kwargs)
CONV = {
    "basic": ((2, 3, 7, 6), (4, 3, 3, 3), dict(padding=1)),
    "stride2-asym": ((2, 3, 9, 8), (5, 3, 3, 2), dict(stride=(2, 3), padding=(1, 0))),
    "same-even-dilated": ((1, 2, 6, 7), (3, 2, 2, 3), dict(padding="same", dilation=(1, 2))),
    "reflect": ((2, 2, 6, 5), (3, 2, 3, 3), dict(stride=2, padding=2, padding_mode="reflect")),
    "replicate": ((1, 3, 5, 6), (2, 3, 3, 2), dict(padding=(3, 1), padding_mode="replicate")),
    "circular": ((2, 2, 5, 6), (4, 2, 2, 3), dict(stride=(1, 2), padding=(1, 2), dilation=(2, 1),
                                                padding_mode="circular")),
    "groups": ((2, 4, 8, 7), (6, 2, 3, 3), dict(stride=2, dilation=2, padding=1, groups=2)),
    "depthwise": ((2, 4, 7, 7), (8, 1, 3, 3), dict(stride=2, padding=1, groups=4)),
    "depthwise-reflect": ((1, 3, 6, 6), (3, 1, 3, 3), dict(padding=1, groups=3, padding_mode="reflect")),
    "one-channel": ((2, 1, 7, 6), (3, 1, 3, 3), dict(padding=1)),  # grad-input: conv_direct of 1 row
    "pointwise": ((2, 8, 4, 8), (16, 8, 1, 1), {}),
    "stride-gt-kernel": ((2, 3, 10, 9), (4, 3, 2, 2), dict(stride=3, dilation=2)),
    "wide-rows": ((2, 9, 5, 5), (40, 9, 3, 3), dict(padding=1)),
    "keras-same-stride2": ((2, 3, 8, 7), (4, 3, 3, 4), dict(stride=2, padding=((0, 1), (1, 2)))),
    # planes of 48 and 36 taps: every pass's output rows are 16-byte aligned (the GEMMs' 16-byte
    # stores; the other cases take their one-column-a-thread path)
    "aligned-planes": ((2, 4, 8, 6), (12, 4, 3, 3), dict(padding=1)),
}
# Every case for each (dtype, precision), the tiles taken in turn: each tile runs several cases
# (other padding modes run the generic tile, as the planner does).
CONV_TABLE = [(name, dtype, precision, tiles[i % len(tiles)])
              for (dtype, precision), tiles in gpu_plan.TILES_FOR.items()
              for i, name in enumerate(CONV)]
# and every float32 tile over reductions of several of its k-tiles with a partial last one
# ("wide-rows": 81, 360 and 50 for forward, grad-input and grad-weight)
CONV_TABLE += [row for row in (("wide-rows", "float32", precision, tile)
                               for precision in gpu_plan.PRECISIONS
                               for tile in gpu_plan.TILES_FOR[("float32", precision)])
               if row not in CONV_TABLE]
CONV_TABLE = [pytest.param(*row, id=f"{row[0]}-{row[1]}-{row[3]}") for row in CONV_TABLE]


def _conv_case(name, dtype, rng):
    x_shape, w_shape, kw = CONV[name]
    spec = ConvSpec.make(2, w_shape[2:], **kw)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    gy = rng.standard_normal((x_shape[0], w_shape[0]) + spec.output_shape(x_shape[2:], w_shape[2:]))
    return x, w, b, gy.astype(dtype), spec


def _force_tile(monkeypatch, dtype: str, precision: str, tile: str) -> None:
    """The planner takes ``tile`` (the generic tile where a case leaves the fast path: other
    padding modes), not the model's pick, and no conv_direct."""
    monkeypatch.setattr(gpu_plan, "TILES_FOR", {**gpu_plan.TILES_FOR, (dtype, precision): (
        tile,) + gpu_plan.TILES_FOR[(dtype, precision)][-1:]})
    monkeypatch.setattr(gpu_plan, "DIRECT_ROWS_USED", ())
    monkeypatch.setattr(gpu_plan, "UNMEASURED", frozenset())  # forced, as the tile sweep does
    first = gpu_plan.gemm_choice
    monkeypatch.setattr(gpu_plan, "choose_gemm", lambda shape, candidates, *args, **kwargs: first(
        shape, gpu_plan.TILES[candidates[0]], *args, **kwargs))


@pytest.mark.parametrize("name, dtype, precision, tile", CONV_TABLE)
def test_conv_kernels(host, monkeypatch, name, dtype, precision, tile):
    """Forward, grad-input, grad-weight and grad-bias with one forced tile configuration (the
    generic tile where the case leaves the fast path: other padding modes)."""
    _force_tile(monkeypatch, dtype, precision, tile)
    tol = dtype if precision == "ieee" else precision
    x, w, b, gy, spec = _conv_case(name, dtype, np.random.default_rng(len(name)))
    o, cg, kh, kw = w.shape
    assert_close(cupy_backend.conv2d(x, w, b, spec, precision), ref.conv2d(x, w, b, spec), cg * kh * kw,
                 tol, "conv2d")
    assert_close(cupy_backend.conv2d_grad_input(gy, w, spec, x.shape[2:], None, precision),
                 ref.conv2d_grad_input(gy, w, spec, x.shape[2:]), o // spec.groups * kh * kw, tol,
                 "conv2d_grad_input")
    assert_close(cupy_backend.conv2d_grad_weight(gy, x, spec, (kh, kw), precision),
                 ref.conv2d_grad_weight(gy, x, spec, (kh, kw)), gy.shape[0] * gy[0, 0].size, tol,
                 "conv2d_grad_weight")
    assert_close(cupy_backend.conv2d_grad_bias(gy), ref.conv2d_grad_bias(gy), gy[:, 0].size, dtype,
                 "conv2d_grad_bias")


TENSOR_CORE_TILES = [(precision, tile) for precision in ("tf32", "tf32x3")
                     for tile in gpu_plan.TILES_FOR[("float32", precision)]]


# (x, weight) with padding 1 and 72 output channels, whose weight rows (C x kH x kW) and
# grad_out planes (H_out x W_out) run on in 4s (36, 48), or not (27, 42)
A_RUNS = {True: ((2, 4, 8, 6), (72, 4, 3, 3)), False: ((2, 3, 7, 6), (72, 3, 3, 3))}


@pytest.mark.parametrize("precision, tile", TENSOR_CORE_TILES)
@pytest.mark.parametrize("a", ["aligned", "shifted", "shifted-8-bytes", "no-runs"])
def test_tensor_core_a_runs(host, monkeypatch, precision, tile, a):
    """Where A runs on along the reduction (gpu_plan.a_runs: a forward's weight of C/G x kH x kW
    = 36, a grad-weight's grad_out planes of 48), the tensor-core tiles copy it 16 bytes at a
    time (VEC_A), over partial row blocks (72 rows: a second row of warps in every tile) and a
    partial last step (36 = 2 x 16 + 4); an A one element or 8 bytes off a 16-byte boundary
    is copied to an aligned one first (`make check-memory` makes a misaligned 16-byte copy
    fatal); where A does not run on in 4s (27, 42), the same tiles copy it an element at a
    time."""
    _force_tile(monkeypatch, "float32", precision, tile)
    runs = a != "no-runs"
    (x_shape, w_shape), spec = A_RUNS[runs], ConvSpec.make(2, (3, 3), padding=1)
    rng = np.random.default_rng(9)
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in (x_shape, w_shape, w_shape[:1]))
    gy = rng.standard_normal((2, 72) + spec.output_shape(x_shape[2:], (3, 3))).astype(np.float32)
    if a.startswith("shifted"):
        elements = 2 if a == "shifted-8-bytes" else 1
        w, gy = _shifted(w, elements), _shifted(gy, elements)
    assert_close(cupy_backend.conv2d(x, w, b, spec, precision), ref.conv2d(x, w, b, spec),
                 w[0].size, precision, "conv2d")
    # the backward as one prepared call of its parts: grad_out's alignment copy is the composite's
    got = cupy_backend.conv2d_backward(gy, x, w, spec, (True, True, True), precision)
    want = ref.conv2d_backward(gy, x, w, spec, (True, True, True))
    for name, k, tol, g, r in zip(("grad_input", "grad_weight", "grad_bias"),
                                  (72 * 9, gy[:, 0].size, gy[:, 0].size),
                                  (precision, precision, "float32"), got, want):
        assert_close(g, r, k, tol, name)
    t = gpu_plan.TILES[tile]
    assert {t.kernel("float", wgrad, vec_a=runs) for wgrad in (False, True)} <= set(host.launched)


@pytest.mark.parametrize("precision, tile", TENSOR_CORE_TILES)
def test_tensor_core_tiles_over_many_columns(host, monkeypatch, precision, tile):
    """Every pass with 288 columns (pixels, or grad-weight's taps): a block's columns past the
    first 128 (the wgmma tiles' second 128-column part) and a partial last block."""
    _force_tile(monkeypatch, "float32", precision, tile)
    rng = np.random.default_rng(12)
    spec = ConvSpec.make(2, (3, 3), padding=1)
    x = rng.standard_normal((2, 32, 12, 12)).astype(np.float32)
    w = rng.standard_normal((16, 32, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 16, 12, 12)).astype(np.float32)
    assert_close(cupy_backend.conv2d(x, w, None, spec, precision), ref.conv2d(x, w, None, spec),
                 w[0].size, precision, "conv2d")
    assert_close(cupy_backend.conv2d_grad_input(gy, w, spec, x.shape[2:], None, precision),
                 ref.conv2d_grad_input(gy, w, spec, x.shape[2:]), 16 * 9, precision,
                 "conv2d_grad_input")
    assert_close(cupy_backend.conv2d_grad_weight(gy, x, spec, (3, 3), precision),
                 ref.conv2d_grad_weight(gy, x, spec, (3, 3)), gy[:, 0].size, precision,
                 "conv2d_grad_weight")
    assert gpu_plan.TILES[tile].kernel("float", True, vec_a=True) in host.launched


# (input width, kernel): masks (30 taps), then past MASK_TAPS (32 taps), and past MASK_PIXELS
# output columns (the tensor-core grad-weight's tables; forward and grad-input keep the masks)
MASKS = {"masks": (40, (1, 30)), "taps": (40, (1, 31)), "pixels": (2 * gpu_plan.MASK_PIXELS, (1, 3))}


@pytest.mark.parametrize("precision", ["ieee", "tf32x3"])
@pytest.mark.parametrize("case", list(MASKS))
def test_tap_masks_and_past_them(host, monkeypatch, case, precision):
    """Zero padding through the loader's tap masks (conv.cu's Bounds): forward and grad-input
    test a pixel column's in-bounds taps; the tensor-core grad-weight a tap column against
    its pixel's in-bounds taps, from per-block tables. Past gpu_plan.MASK_TAPS kernel taps
    (rows plus columns) forward and grad-input run the generic instance (zero padding
    through source_index); past them or MASK_PIXELS output rows or columns, grad-weight runs
    the CUDA-core tiles, whose row and column tests have no limit."""
    monkeypatch.setattr(gpu_plan, "DIRECT_ROWS_USED", ())
    width, kernel_hw = MASKS[case]
    rng = np.random.default_rng(31)
    x = rng.standard_normal((2, 3, 3, width)).astype(np.float32)
    w = rng.standard_normal((5, 3) + kernel_hw).astype(np.float32)
    spec = ConvSpec.make(2, kernel_hw, padding=(1, 15), dilation=(1, 2))
    out_hw = spec.output_shape((3, width), kernel_hw)
    gy = rng.standard_normal((2, 5) + out_hw).astype(np.float32)
    taps, tables = gpu_plan.masks_fit(kernel_hw), gpu_plan.masks_fit(kernel_hw, out_hw)
    cores = precision != "ieee"
    for op, run, want, k, zero_pad, mma in (
            ("conv2d", lambda: cupy_backend.conv2d(x, w, None, spec, precision),
             ref.conv2d(x, w, None, spec), w[0].size, taps, cores and taps),
            ("conv2d_grad_input",
             lambda: cupy_backend.conv2d_grad_input(gy, w, spec, x.shape[2:], None, precision),
             ref.conv2d_grad_input(gy, w, spec, x.shape[2:]), 5 * w[0, 0].size, taps,
             cores and taps),
            ("conv2d_grad_weight",
             lambda: cupy_backend.conv2d_grad_weight(gy, x, spec, kernel_hw, precision),
             ref.conv2d_grad_weight(gy, x, spec, kernel_hw), gy[:, 0].size, True,
             cores and tables)):
        before = len(host.launched)
        assert_close(run(), want, k, precision if mma else "float32", op)
        (gemm,) = [n for n in host.launched[before:] if n.startswith("conv_gemm")]
        assert gemm.endswith(", true, int>") == zero_pad, (op, gemm)
        assert gemm.startswith("conv_gemm_mma") == mma, (op, gemm)
    assert case == "masks" or not tables


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", [n for n in CONV if not n.startswith("depthwise")])  # depthwise.cu
def test_conv_direct(host, name, dtype):
    """Forward and grad-input slices of at most 4 rows run conv_direct (zero padding)."""
    x, w, b, gy, spec = _conv_case(name, dtype, np.random.default_rng(len(name) + 1))
    o, cg, kh, kw = w.shape
    assert_close(cupy_backend.conv2d(x, w, b, spec), ref.conv2d(x, w, b, spec), cg * kh * kw,
                 dtype, "conv2d")
    assert_close(cupy_backend.conv2d_grad_input(gy, w, spec, x.shape[2:], None),
                 ref.conv2d_grad_input(gy, w, spec, x.shape[2:]), o // spec.groups * kh * kw,
                 dtype, "conv2d_grad_input")
    zero_pad = spec.padding_mode == "zeros" or spec.padding == ((0, 0), (0, 0))
    direct = {f"conv_direct<{gpu_plan.CTYPES[dtype]}, {rows}>" for rows, ok in (
        (o // spec.groups, zero_pad), (cg, True)) if ok and rows <= 4}  # forward, grad-input
    assert {k for k in host.launched if k.startswith("conv_direct")} == direct


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv_direct_grid_covers_every_row_of_short_runs(host, dtype):
    """conv_direct's grid (``gpu_plan.direct_columns``): 130 output rows of 5 pixels are 650
    pixels, but each row's runs of DIRECT_PIXELS take 8 columns (the last run holds one pixel):
    1040 columns, past one block's 1024. A grid of the pixels alone (or of rows of 7) leaves
    the last rows unwritten."""
    rng = np.random.default_rng(23)
    x = rng.standard_normal((2, 3, 65, 5)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    spec = ConvSpec.make(2, (3, 3), padding=1)
    y = cupy_backend.conv2d(x, w, None, spec)
    assert_close(y, ref.conv2d(x, w, None, spec), 27, dtype, "conv2d")
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_close(cupy_backend.conv2d_grad_input(gy, w, spec, x.shape[2:], None),
                 ref.conv2d_grad_input(gy, w, spec, x.shape[2:]), 36, dtype, "conv2d_grad_input")
    ctype = gpu_plan.CTYPES[dtype]
    assert {k for k in host.launched if k.startswith("conv_direct")} == {
        f"conv_direct<{ctype}, 4>", f"conv_direct<{ctype}, 3>"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_conv_direct_stages_its_weights_chunk_by_chunk(host, dtype):
    """A reduction longer than conv_direct's chunk of staged weights (512 taps): a forward
    of 2 channels over 64 and a grad-input of 2 channels from 64, 576 taps each (the second
    chunk's weights replace the first's in shared memory)."""
    rng = np.random.default_rng(29)
    x = rng.standard_normal((2, 64, 5, 6)).astype(dtype)
    w = rng.standard_normal((2, 64, 3, 3)).astype(dtype)
    spec = ConvSpec.make(2, (3, 3), padding=1)
    assert_close(cupy_backend.conv2d(x, w, None, spec), ref.conv2d(x, w, None, spec), 576,
                 dtype, "conv2d")
    gy = rng.standard_normal((2, 64, 5, 6)).astype(dtype)
    wt = w.reshape(64, 2, 3, 3)
    assert_close(cupy_backend.conv2d_grad_input(gy, wt, spec, (5, 6), None),
                 ref.conv2d_grad_input(gy, wt, spec, (5, 6)), 576, dtype, "conv2d_grad_input")
    assert {k for k in host.launched if k.startswith("conv_direct")} == {
        f"conv_direct<{gpu_plan.CTYPES[dtype]}, 2>"}


@pytest.mark.parametrize("precision", ["ieee", "tf32x3"])
def test_split_k_forward_with_bias_and_relu(host, precision):
    """A forward whose output is a fraction of a wave splits its reduction; the ordered second
    pass adds the bias and applies the ReLU."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 64, 6, 6)).astype(np.float32)
    w = rng.standard_normal((8, 64, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    spec = ConvSpec.make(2, (3, 3), padding=1)
    plan = gpu_plan.conv_forward_plan(x.shape, cupy_backend._strides(x), w.shape,
                                      cupy_backend._strides(w), spec, "float32", True, precision,
                                      sm_count=host.sm_count(), relu=True)
    assert plan.launches[0].params["splits"] > 1 and "partials" in plan.workspaces
    out = np.empty((1, 8, 6, 6), np.float32)
    cupy_backend._run(plan, {"x": x, "weight": w, "bias": b, "out": out})
    want = ref.conv2d(x, w, b, spec)
    assert_close(out, np.where(want < 0, 0, want), 64 * 9, "float32", "conv2d + relu")
    assert host.launched[-1] == "conv_splitk_reduce<float>"


def test_split_k_partials_are_summed_in_split_order(host):
    """conv_splitk_reduce adds the splits' partials in split order, so that a split-K result
    is one fixed rounding: the first three splits each hold one product (1, 1e8, -1e8, the
    weight 1 at the split's first tap), the others none, and every output equals those
    partials summed first to last in float32, bit for bit ((1 + 1e8) - 1e8 = 0, where last to
    first gives 1)."""
    spec = ConvSpec.make(2, (3, 3), padding=1)
    x = np.zeros((1, 64, 6, 6), np.float32)
    w = np.zeros((8, 64, 3, 3), np.float32)
    plan = gpu_plan.conv_forward_plan(x.shape, cupy_backend._strides(x), w.shape,
                                      cupy_backend._strides(w), spec, "float32", False, "ieee",
                                      sm_count=host.sm_count())
    params = plan.launches[0].params
    splits, per_split = params["splits"], params["tiles_per_split"] * plan.choice.tile.bk
    assert splits >= 3 and plan.launches[-1].kernel == "conv_splitk_reduce<float>"
    partials = []
    for j, v in enumerate((1.0, 1e8, -1e8)):
        c, tap = divmod(j * per_split, 9)  # the split's first reduction index: (c, r, s)
        assert x[0, c].max() == 0  # a channel of its own
        x[0, c], w[:, c, tap // 3, tap % 3] = v, 1.0
        one = np.zeros_like(w)
        one[:, c, tap // 3, tap % 3] = 1.0
        partials.append(ref.conv2d(x, one, None, spec))  # one product a sum: exact
    want = partials[0]
    for part in partials[1:]:
        want = want + part  # float32, first to last
    out = np.empty((1, 8, 6, 6), np.float32)
    cupy_backend._run(plan, {"x": x, "weight": w, "out": out})
    assert (want == 0).any() and np.array_equal(out, want), np.argwhere(out != want)[:1]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_grad_bias_reads_grad_out_by_its_strides(host, dtype):
    """conv_grad_bias sums each channel of a strided view of grad_out (rows and columns
    strided, channels and images too) through its strides, not as contiguous planes."""
    rng = np.random.default_rng(31)
    gy = rng.standard_normal((3, 6, 9, 14)).astype(dtype)[::2, ::2, ::2, 1::3]
    assert_close(cupy_backend.conv2d_grad_bias(gy), ref.conv2d_grad_bias(gy), gy[:, 0].size,
                 dtype, "conv2d_grad_bias")
    assert f"conv_grad_bias<{gpu_plan.CTYPES[dtype]}>" in host.launched


def test_grad_input_launches_only_reached_phases(host):
    """A 1x1 stride-2 transposed conv: one of four stride phases has a tap. conv_fill_bias
    writes the bias to the other three; the GEMM runs one slice per group."""
    rng = np.random.default_rng(6)
    spec = ConvSpec.make(2, (1, 1), stride=2, groups=2, transposed=True)
    gy = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)   # the transposed conv's input
    wt = rng.standard_normal((4, 3, 1, 1)).astype(np.float32)   # (C_in, C_out / groups, 1, 1)
    bias = rng.standard_normal(6).astype(np.float32)
    out_hw = spec.transpose_output_shape((3, 3), (1, 1))
    plan = gpu_plan.conv_grad_input_plan(gy.shape, cupy_backend._strides(gy), wt.shape,
                                         cupy_backend._strides(wt), spec, out_hw, "float32", True)
    assert plan.launches[0].kernel == "conv_fill_bias<float>"
    assert plan.launches[1].params["phases"] == 1 and plan.launches[1].grid[2] == 2
    assert_close(cupy_backend.conv2d_grad_input(gy, wt, spec, out_hw, bias),
                 ref.conv2d_grad_input(gy, wt, spec, out_hw, bias), 2, "float32", "conv_transpose2d")


# name: (x shape, weight shape, ConvSpec.make kwargs); depthwise.cu's K = 3, 5, 7 and generic,
# channel multipliers, strides, dilations, every padding mode, the direct fallback
DEPTHWISE = {
    "k3-pad1": ((2, 4, 9, 12), (4, 1, 3, 3), dict(padding=1, groups=4)),
    "k5-mult2-s2": ((2, 3, 11, 13), (6, 1, 5, 5), dict(stride=2, padding=2, groups=3)),
    "k7-dil2-reflect": ((1, 2, 14, 16), (2, 1, 7, 7), dict(padding=3, dilation=2, groups=2,
                                                            padding_mode="reflect")),
    "k3-circular-mult3": ((2, 2, 8, 9), (6, 1, 3, 3), dict(stride=(2, 1), padding=1, groups=2,
                                                            padding_mode="circular")),
    "generic-replicate": ((2, 3, 7, 8), (3, 1, 2, 3), dict(padding=(1, 2), dilation=(2, 1), groups=3,
                                                            padding_mode="replicate")),
    "k3-same-dilated": ((1, 4, 10, 12), (8, 1, 3, 3), dict(padding="same", dilation=2, groups=4)),
    "direct-wide": ((1, 2, 9, 1040), (2, 1, 3, 3), dict(stride=(1, 8), dilation=(4, 1), groups=2)),
    # a column stride past the register segments' 1 and 2; blocks whose last output ends the row
    # (16 = 4 threads x DW_V: the tile's last columns are read); pads (1, 2) under reflect
    # (grad-weight's K x K path of the other padding modes); 3 images in 2 grad-weight chunks
    "k3-s3-full-row-reflect": ((3, 2, 10, 46), (2, 1, 3, 3),
                               dict(stride=3, padding=(1, 2), groups=2, padding_mode="reflect")),
    # the direct fallback (tall dilated tile) with pads (1, 2)
    "direct-tall-padded": ((1, 2, 90, 70), (2, 1, 3, 3),
                           dict(padding=(1, 2), dilation=(40, 1), groups=2)),
}


DEPTHWISE_TABLE = [pytest.param(name, dtype, id=f"{name}-{dtype}") for name in DEPTHWISE
                   for dtype in ("float32", "float64")
                   if dtype == "float32" or name.startswith(("k3-pad1", "k5", "k7", "generic"))]


@pytest.mark.parametrize("name, dtype", DEPTHWISE_TABLE)  # float64: one case per kernel size
def test_depthwise_kernels(host, name, dtype):
    """depthwise.cu forward (with bias), grad-input (with the transposed conv's bias) and
    grad-weight against the NumPy backend, on a strided view of the input."""
    x_shape, w_shape, kw = DEPTHWISE[name]
    rng = np.random.default_rng(len(name))
    spec = ConvSpec.make(2, w_shape[2:], **kw)
    padded = rng.standard_normal(x_shape[:3] + (x_shape[3] + 1,)).astype(dtype)
    x = padded[..., 1:]  # rows of odd stride: no 16-byte vectors
    x_aligned = np.ascontiguousarray(padded[..., :-1]) if x_shape[3] % 4 == 0 else x
    w = rng.standard_normal(w_shape).astype(dtype)
    b, bc = rng.standard_normal(w_shape[0]).astype(dtype), rng.standard_normal(x_shape[1]).astype(dtype)
    gy = rng.standard_normal((x_shape[0], w_shape[0]) + spec.output_shape(x_shape[2:], w_shape[2:]))
    gy = gy.astype(dtype)
    taps = w_shape[2] * w_shape[3]
    for xs in (x, x_aligned, _shifted(x_aligned)):
        assert_close(cupy_backend.conv2d(xs, w, b, spec), ref.conv2d(xs, w, b, spec), taps, dtype, "conv2d")
    assert_close(cupy_backend.conv2d_grad_input(gy, w, spec, x.shape[2:], bc),
                 ref.conv2d_grad_input(gy, w, spec, x.shape[2:], bc), taps * w_shape[0], dtype,
                 "conv2d_grad_input")
    assert_close(cupy_backend.conv2d_grad_weight(gy, x, spec, w_shape[2:]),
                 ref.conv2d_grad_weight(gy, x, spec, w_shape[2:]), gy[:, 0].size, dtype,
                 "conv2d_grad_weight")
    assert all(k.startswith(("conv_depthwise", "conv_splitk_reduce", "conv_pad_adjoint"))
               for k in host.launched), host.launched


def test_empty_batch_depthwise_and_pooling(host):
    """N = 0: one block that finds no plane; grad-weight sums nothing (zeros)."""
    x, w = np.zeros((0, 4, 6, 6), "float32"), np.ones((8, 1, 3, 3), "float32")
    spec = ConvSpec.make(2, (3, 3), padding=1, groups=4)
    assert cupy_backend.conv2d(x, w, None, spec).shape == (0, 8, 6, 6)
    gy = np.zeros((0, 8, 6, 6), "float32")
    assert cupy_backend.conv2d_grad_input(gy, w, spec, (6, 6)).shape == (0, 4, 6, 6)
    assert np.array_equal(cupy_backend.conv2d_grad_weight(gy, x, spec, (3, 3)), np.zeros(w.shape, "float32"))
    y, idx = cupy_backend.max_pool2d(x, PoolSpec.make(2, 2), True)
    assert y.shape == idx.shape == (0, 4, 3, 3)
    assert cupy_backend.adaptive_avg_pool2d(x, (1, 1)).shape == (0, 4, 1, 1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_strided_views_and_transposed_conv(host, dtype):
    """Non-contiguous inputs (a lifted 1-D slice, a flipped kernel) and a transposed conv whose
    output rows grad_out does not reach (output_padding), with its bias."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 1, 23)).astype(dtype)[::2, :, :, 1::2]
    w = rng.standard_normal((5, 4, 1, 3)).astype(dtype)[:, :, ::-1, ::-1]
    spec = ConvSpec.make(2, (1, 3), stride=(1, 2), padding=(0, 1), dilation=(1, 2))
    assert_close(cupy_backend.conv2d(x, w, None, spec), ref.conv2d(x, w, None, spec), 12, dtype, "conv2d")
    t_spec = ConvSpec.make(2, (3, 3), stride=2, padding=1, output_padding=1, transposed=True)
    gy = rng.standard_normal((2, 3, 4, 5)).astype(dtype)     # the transposed conv's input
    wt = rng.standard_normal((3, 2, 3, 3)).astype(dtype)     # (C_in, C_out, kH, kW)
    bias = rng.standard_normal(2).astype(dtype)
    out_hw = t_spec.transpose_output_shape((4, 5), (3, 3))
    assert_close(cupy_backend.conv2d_grad_input(gy, wt, t_spec, out_hw, bias),
                 ref.conv2d_grad_input(gy, wt, t_spec, out_hw, bias), 27, dtype, "conv_transpose2d")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_one_d_arrays_as_they_are(host, dtype):
    """A 1-D op's (N, C, L) arrays (a strided one among them) go to the backend as they are
    (``signature.lift`` lifts them when the signature is prepared): results of that rank, with
    the lifted 2-D op's numbers."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 19)).astype(dtype)[:, :, ::2]
    w, bias = rng.standard_normal((4, 3, 3)).astype(dtype), rng.standard_normal(4).astype(dtype)
    spec = ConvSpec.make(2, (1, 3), stride=(1, 2), padding=(0, 1))
    lifted = [a[:, :, None] for a in (x, w)]
    y = cupy_backend.conv2d(x, w, bias, spec)
    assert_close(y, ref.conv2d(*lifted, bias, spec)[:, :, 0], 9, dtype, "conv1d")
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = cupy_backend.conv2d_backward(gy, x, w, spec, (True, True, True))
    want = ref.conv2d_backward(gy[:, :, None], *lifted, spec, (True, True, True))
    for name, g, r in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
        assert_close(g, r[:, :, 0] if r.ndim == 4 else r, 30, dtype, f"conv1d {name}")
    pool = PoolSpec.make(2, kernel_size=(1, 3), stride=(1, 2), padding=(0, 1))
    y, idx = cupy_backend.max_pool2d(x, pool, True)
    want_y, want_idx = ref.max_pool2d(lifted[0], pool, True)
    assert np.array_equal(y, want_y[:, :, 0]) and np.array_equal(idx, want_idx[:, :, 0])
    gp = rng.standard_normal(y.shape).astype(dtype)
    assert_close(cupy_backend.max_pool2d_backward(gp, idx, (1, x.shape[2]), pool),
                 ref.max_pool2d_backward(gp[:, :, None], want_idx, (1, x.shape[2]), pool)[:, :, 0],
                 3, dtype, "max_pool1d_backward")


def test_signatures_of_equal_byte_strides_but_other_dtypes_are_planned_apart(host):
    """A float32 view of every other column has the byte strides of a contiguous float64 array
    of its shape: the prepared call's signature (``signature.prepared``) holds the dtype too,
    so each call runs its own dtype's kernels and returns its own dtype."""
    rng = np.random.default_rng(21)
    spec, pool = ConvSpec.make(2, (3, 3), padding=1), PoolSpec.make(2, 2)
    x64 = rng.standard_normal((2, 3, 6, 6))
    w64 = rng.standard_normal((4, 3, 3, 3))
    x32 = rng.standard_normal((2, 3, 6, 12)).astype("float32")[:, :, :, ::2]
    w32 = rng.standard_normal((4, 3, 3, 6)).astype("float32")[:, :, :, ::2]
    assert x32.strides == x64.strides and w32.strides == w64.strides
    for x, w, dtype in ((x64, w64, "float64"), (x32, w32, "float32")):
        assert_close(cupy_backend.conv2d(x, w, None, spec), ref.conv2d(x, w, None, spec), 27,
                     dtype, f"conv2d {dtype}")
        y, idx = cupy_backend.max_pool2d(x, pool, True)
        want_y, want_idx = ref.max_pool2d(x, pool, True)
        assert y.dtype == x.dtype and np.array_equal(y, want_y) and np.array_equal(idx, want_idx)


def test_a_forced_tile_is_planned_anew(host, monkeypatch):
    """The prepared call's signature holds ``autotune.switches``: a call of the same arrays
    under a forced tile launches that tile, and plain again the plan model's tile."""
    monkeypatch.setattr(gpu_plan, "DIRECT_ROWS_USED", ())  # GEMM tiles for these 4 channels
    rng = np.random.default_rng(22)
    x = rng.standard_normal((2, 3, 9, 9)).astype("float32")
    w = rng.standard_normal((4, 3, 3, 3)).astype("float32")
    spec = ConvSpec.make(2, (3, 3), padding=1)
    tiles = ("32x32", "64x64", None)
    for tile in tiles:
        del host.launched[:]
        with autotune.forced_tile(tile):
            assert_close(cupy_backend.conv2d(x, w, None, spec), ref.conv2d(x, w, None, spec), 27,
                         "float32", f"conv2d {tile}")
        t = gpu_plan.TILES[tile or gpu_plan.conv_forward_plan(
            x.shape, cupy_backend._strides(x), w.shape, cupy_backend._strides(w), spec,
            "float32", False, sm_count=host.sm_count()).choice.tile.name]
        assert t.kernel("float", False) in host.launched, (tile, host.launched)


@pytest.fixture
def autotuned(tmp_path, monkeypatch):
    """Autotuning on, its cache a fresh file under tmp_path (returned)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(autotune, "_CACHE", None)
    monkeypatch.setattr(autotune, "_ENABLED", True)
    return tmp_path / "gpuconv" / autotune.CACHE_FILE


def test_autotune_picks_and_caches_a_tile(host, autotuned):
    x, w, b, _, spec = _conv_case("basic", "float32", np.random.default_rng(4))
    assert_close(cupy_backend.conv2d(x, w, b, spec), ref.conv2d(x, w, b, spec), 27, "float32", "conv2d")
    (key, tile), = json.loads(autotuned.read_text()).items()
    assert key.startswith("host-emulation|conv2d|") and tile in gpu_plan.TILES_FOR[("float32", "ieee")]
    assert host.launched[-1] == gpu_plan.TILES[tile].kernel("float", False)


def test_autotune_off_the_tensor_core_path(host, autotuned):
    """Autotuning "tf32" where the case runs the generic CUDA-core instance (reflect padding):
    every candidate tile plans, and the one it keeps runs that instance."""
    x, w, b, _, spec = _conv_case("reflect", "float32", np.random.default_rng(4))
    assert_close(cupy_backend.conv2d(x, w, b, spec, "tf32"), ref.conv2d(x, w, b, spec), 18,
                 "float32", "conv2d")
    (tile,) = json.loads(autotuned.read_text()).values()
    assert tile in gpu_plan.TILES_FOR[("float32", "tf32")]
    assert host.launched[-1] == gpu_plan.TILES["64x64"].kernel("float", False, zero_pad=False)


def test_autotuning_keeps_each_precisions_tile_apart(host, autotuned):
    """The tuned tile's key holds the precision: the same problem tuned in "ieee" and then in
    "tf32" keeps two entries, each a candidate of its own precision (one key for both would
    hand the second precision the first's tile, or tune it over the first's entry)."""
    x, w, b, _, spec = _conv_case("basic", "float32", np.random.default_rng(31))
    for precision in ("ieee", "tf32"):
        assert_close(cupy_backend.conv2d(x, w, b, spec, precision), ref.conv2d(x, w, b, spec),
                     27, "float32" if precision == "ieee" else precision, f"conv2d {precision}")
    cached = json.loads(autotuned.read_text())
    by_precision = {key.rsplit("-", 1)[-1]: tile for key, tile in cached.items()}
    assert len(cached) == 2 and set(by_precision) == {"ieee", "tf32"}, cached
    for precision, tile in by_precision.items():
        assert tile in gpu_plan.TILES_FOR[("float32", precision)], (precision, tile)


def test_a_forced_tile_wins_over_the_autotune_cache(host, autotuned):
    """With autotuning on and the problem's tile already cached, a forced tile (the bench's
    tile sweep) still runs the forced tile, not the cached one."""
    x, w, b, _, spec = _conv_case("basic", "float32", np.random.default_rng(32))
    cupy_backend.conv2d(x, w, b, spec)
    (tuned,) = json.loads(autotuned.read_text()).values()
    forced = next(t for t in gpu_plan.TILES_FOR[("float32", "ieee")]
                  if gpu_plan.TILES[t].kernel("float", False)
                  != gpu_plan.TILES[tuned].kernel("float", False))
    with autotune.forced_tile(forced):
        assert_close(cupy_backend.conv2d(x, w, b, spec), ref.conv2d(x, w, b, spec), 27,
                     "float32", f"conv2d forced {forced}")
    assert host.launched[-1] == gpu_plan.TILES[forced].kernel("float", False), \
        (forced, tuned, host.launched[-3:])


@pytest.mark.parametrize("precision", ["tf32", "tf32x3"])
@pytest.mark.parametrize("device", ["tensor-cores", "no-tensor-cores", "autotuned"])
def test_a_float64_conv_asked_for_tensor_cores_runs_in_ieee_float64(host, request, monkeypatch,
                                                                   precision, device):
    """Tensor-core precisions apply to float32 only (PyTorch's allow_tf32 rule): a float64 conv
    asked for one runs the float64 kernels and is as accurate as IEEE float64, also on a device
    without tensor cores (where a float32 conv would refuse it) and with autotuning on (which
    tunes the float64 tiles)."""
    monkeypatch.setattr(host, "tensor_cores", device != "no-tensor-cores")
    if device == "autotuned":
        request.getfixturevalue("autotuned")
    rng = np.random.default_rng(33)
    x, w, b, gy, spec = _conv_case("basic", "float64", rng)
    o, cg, kh, kw = w.shape
    assert_close(cupy_backend.conv2d(x, w, b, spec, precision), ref.conv2d(x, w, b, spec),
                 cg * kh * kw, "float64", "conv2d")
    assert_close(cupy_backend.conv2d_grad_input(gy, w, spec, x.shape[2:], precision=precision),
                 ref.conv2d_grad_input(gy, w, spec, x.shape[2:]), o * kh * kw, "float64",
                 "conv2d_grad_input")
    assert_close(cupy_backend.conv2d_grad_weight(gy, x, spec, (kh, kw), precision),
                 ref.conv2d_grad_weight(gy, x, spec, (kh, kw)), gy[:, 0].size, "float64",
                 "conv2d_grad_weight")
    gemms = [k for k in host.launched if k.startswith("conv_gemm")]
    assert all("double" in k for k in gemms), host.launched


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_strided_bias_is_read_as_its_values(host, dtype):
    """conv2d and the transposed conv take a bias that is a strided view (every other element
    of a longer vector): the kernels index the bias flat, so it reaches them as a copy."""
    rng = np.random.default_rng(34)
    x, w, _, gy, spec = _conv_case("basic", dtype, rng)
    o, cg, kh, kw = w.shape
    bias = rng.standard_normal(2 * o).astype(dtype)[::2]
    assert_close(cupy_backend.conv2d(x, w, bias, spec), ref.conv2d(x, w, bias, spec),
                 cg * kh * kw, dtype, "conv2d")
    t_bias = rng.standard_normal(2 * cg).astype(dtype)[::2]
    assert_close(cupy_backend.conv2d_grad_input(gy, w, spec, x.shape[2:], bias=t_bias),
                 ref.conv2d_grad_input(gy, w, spec, x.shape[2:], bias=t_bias), o * kh * kw,
                 dtype, "conv2d_grad_input")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["basic", "reflect"])
def test_64_bit_offsets(host, monkeypatch, name, dtype):
    """The 64-bit-offset instantiations (tensors past 2^31 elements), on small tensors."""
    monkeypatch.setattr(gpu_plan, "INDEX64_FROM", 1)
    x, w, b, gy, spec = _conv_case(name, dtype, np.random.default_rng(7))
    o, cg, kh, kw = w.shape
    assert_close(cupy_backend.conv2d(x, w, b, spec), ref.conv2d(x, w, b, spec), cg * kh * kw,
                 dtype, "conv2d")
    assert_close(cupy_backend.conv2d_grad_input(gy, w, spec, x.shape[2:]),
                 ref.conv2d_grad_input(gy, w, spec, x.shape[2:]), o * kh * kw, dtype,
                 "conv2d_grad_input")
    assert_close(cupy_backend.conv2d_grad_weight(gy, x, spec, (kh, kw)),
                 ref.conv2d_grad_weight(gy, x, spec, (kh, kw)), gy[:, 0].size, dtype,
                 "conv2d_grad_weight")
    gemms = [k for k in host.launched if k.startswith("conv_gemm")]
    assert gemms and all("long long" in k for k in gemms), host.launched


@pytest.mark.parametrize("stages", [2, 1])
def test_a_launch_short_of_dynamic_shared_memory_fails(host, monkeypatch, stages):
    """The emulation gives a launch the dynamic shared memory it carries: a plan that gives a
    GEMM fewer pipeline stages' worth than the kernel uses fails the call (a GPU would fail
    the launch or read past its shared memory), and the test process goes on."""
    x, w, b, _, spec = _conv_case("wide-rows", "float32", np.random.default_rng(0))  # a GEMM
    monkeypatch.setattr(gpu_plan, "PIPELINE_STAGES", stages)
    with pytest.raises(RuntimeError, match="dynamic shared memory, its launch gave"):
        cupy_backend.conv2d(x, w, b, spec)


def test_results_are_deterministic(host):
    x, w, b, gy, spec = _conv_case("groups", "float32", np.random.default_rng(3))
    x, gy = np.concatenate([x] * 16), np.concatenate([gy] * 16)  # a reduction worth splitting
    runs = [cupy_backend.conv2d_grad_weight(gy, x, spec, w.shape[2:]) for _ in range(2)]
    assert np.array_equal(runs[0], runs[1])
    assert "conv_splitk_reduce<float>" in host.launched  # the two-pass split-K ran


# name: (x shape, weight shape, ConvSpec.make kwargs): a map one row (or column, or pixel)
# long under a padded stride-2 3x3 kernel. Its grad-input's stride phase 0 has taps (0 and 2)
# but no row of the input (the one row, padded row 1, is phase 1's): the live phases are not
# the first ones (conv.cu's nth_live_phase skips phases with taps and no rows). 3 input
# channels run conv_direct, 6 the GEMMs.
PHASE_GAPS = {
    "one-row": ((2, 3, 1, 5), (4, 3, 3, 3), dict(stride=2, padding=1)),
    "one-column": ((2, 3, 5, 1), (4, 3, 3, 3), dict(stride=2, padding=1)),
    "one-pixel": ((2, 6, 1, 1), (4, 6, 3, 3), dict(stride=2, padding=1)),
    "one-row-gemm": ((2, 6, 1, 6), (5, 6, 3, 3), dict(stride=(2, 3), padding=1)),
    "one-column-gemm": ((1, 12, 7, 1), (6, 6, 3, 3), dict(stride=2, padding=1, groups=2)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(PHASE_GAPS))
def test_grad_input_phases_that_reach_no_row(host, name, dtype):
    """Grad-input (and the transposed conv, with its bias) where a stride phase that some tap
    reaches writes no row or column of the input, ahead of the phases that do."""
    x_shape, w_shape, kw = PHASE_GAPS[name]
    rng = np.random.default_rng(len(name) + 20)
    spec = ConvSpec.make(2, w_shape[2:], **kw)
    w = rng.standard_normal(w_shape).astype(dtype)
    gy = rng.standard_normal((x_shape[0], w_shape[0]) + spec.output_shape(x_shape[2:], w_shape[2:]))
    gy, bias = gy.astype(dtype), rng.standard_normal(x_shape[1]).astype(dtype)
    for b in (None, bias):
        assert_close(cupy_backend.conv2d_grad_input(gy, w, spec, x_shape[2:], b),
                     ref.conv2d_grad_input(gy, w, spec, x_shape[2:], b),
                     w_shape[0] // spec.groups * 9, dtype, "conv2d_grad_input")
    assert any(k.startswith("conv_direct" if x_shape[1] // spec.groups <= 4 else "conv_gemm")
               for k in host.launched), host.launched


@pytest.fixture
def poisoned(host, monkeypatch):
    """``host`` allocating outputs and workspaces filled with NaN (-1 for integers), as a
    GPU's allocator may hand over any bytes: a position no launch writes shows."""
    def ndarray(shape, dtype):
        return np.full(shape, np.nan if np.dtype(dtype).kind == "f" else -1, dtype)
    monkeypatch.setattr(host, "xp", type("PoisonedNumPy", (), dict(
        ndarray=staticmethod(ndarray), zeros=staticmethod(np.zeros),
        ascontiguousarray=staticmethod(np.ascontiguousarray))))
    return host


# name: (x shape, weight shape, ConvSpec.make kwargs, split-K expected): every position of
# grad-input written by the GEMM, by conv_fill_bias (a phase no tap reaches), or, split, zeros
# in every split's partials first
GRAD_INPUT_COVERAGE = {
    # one position (column 1) in a phase no tap reaches: conv_fill_bias writes it
    "one-unreached": ((2, 6, 1, 2), (4, 6, 1, 1), dict(stride=(1, 2)), False),
    # phase (0, 0) has 3 x 3 pixels, (1, 1) 4 x 4: the grid spans the largest phase's columns
    "largest-phase-last": ((16, 8, 7, 7), (8, 8, 3, 3), dict(stride=2, padding=1), False),
    # 3 x 3 of 5 x 5 reached, a reduction of 256 split: every split's partials zeroed
    "split-with-gaps": ((1, 8, 5, 5), (256, 8, 1, 1), dict(stride=2), True),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(GRAD_INPUT_COVERAGE))
def test_grad_input_writes_every_position(poisoned, name, dtype):
    x_shape, w_shape, kw, split = GRAD_INPUT_COVERAGE[name]
    rng = np.random.default_rng(len(name) + 40)
    spec = ConvSpec.make(2, w_shape[2:], **kw)
    w = rng.standard_normal(w_shape).astype(dtype)
    gy = rng.standard_normal((x_shape[0], w_shape[0]) + spec.output_shape(x_shape[2:], w_shape[2:]))
    gy = gy.astype(dtype)
    plan = gpu_plan.conv_grad_input_plan(gy.shape, cupy_backend._strides(gy), w.shape,
                                         cupy_backend._strides(w), spec, x_shape[2:], dtype,
                                         False, sm_count=poisoned.sm_count())
    assert (plan.choice.splits > 1) == split, plan.choice.row()
    assert_close(cupy_backend.conv2d_grad_input(gy, w, spec, x_shape[2:]),
                 ref.conv2d_grad_input(gy, w, spec, x_shape[2:]), w_shape[0] * 9, dtype,
                 "conv2d_grad_input")


@pytest.mark.parametrize("dtype, precision, tile", [
    ("float32", "ieee", "64x64"), ("float64", "ieee", "32x64"),
    ("float32", "tf32x3", "tf32x3-64x64"), ("float32", "tf32", "wgmma-128x128")])
def test_transposed_conv_bias_in_every_stride_phase(host, monkeypatch, dtype, precision, tile):
    """A grouped stride-2 transposed conv with its bias on each GEMM family: the slices of
    every group's four stride phases add the bias of the group's channels (the epilogue's
    group is blockIdx.z / (phases * splits))."""
    _force_tile(monkeypatch, dtype, precision, tile)
    rng = np.random.default_rng(13)
    spec = ConvSpec.make(2, (3, 3), stride=2, padding=1, output_padding=1, groups=2,
                         transposed=True)
    gy = rng.standard_normal((2, 4, 4, 5)).astype(dtype)   # the transposed conv's input
    wt = rng.standard_normal((4, 6, 3, 3)).astype(dtype)   # (C_in, C_out / groups, kH, kW)
    bias = rng.standard_normal(12).astype(dtype)
    out_hw = spec.transpose_output_shape((4, 5), (3, 3))
    plan = gpu_plan.conv_grad_input_plan(gy.shape, cupy_backend._strides(gy), wt.shape,
                                         cupy_backend._strides(wt), spec, out_hw, dtype, True,
                                         precision, sm_count=host.sm_count())
    assert plan.launches[-1].params["phases"] == 4 and plan.launches[-1].params["splits"] == 1
    assert_close(cupy_backend.conv2d_grad_input(gy, wt, spec, out_hw, bias, precision),
                 ref.conv2d_grad_input(gy, wt, spec, out_hw, bias), 2 * 9,
                 dtype if precision == "ieee" else precision, "conv_transpose2d")
    assert gpu_plan.TILES[tile].kernel(gpu_plan.CTYPES[dtype], False) in host.launched


@pytest.mark.parametrize("tile", ["64x64", "tf32x3-64x64"])
def test_grad_input_row_phases_store_16_bytes_only_at_aligned_offsets(host, monkeypatch, tile):
    """Grad-input of a stride (2, 1) conv on the GEMMs: a row stride phase writes every other
    row of a 6-wide input, so its columns' output offsets jump by a row at each row's end
    (phase 1's pixel 8 is offset 14). The epilogue's 16-byte stores go only to runs of 4
    contiguous columns that start at a multiple of 4 (under `make check-memory` a misaligned
    vector store is fatal, as on a GPU)."""
    precision = "ieee" if tile == "64x64" else "tf32x3"
    _force_tile(monkeypatch, "float32", precision, tile)
    rng = np.random.default_rng(33)
    spec = ConvSpec.make(2, (3, 3), stride=(2, 1), padding=1)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 8) + spec.output_shape((8, 6), (3, 3))).astype(np.float32)
    plan = gpu_plan.conv_grad_input_plan(gy.shape, cupy_backend._strides(gy), w.shape,
                                         cupy_backend._strides(w), spec, (8, 6), "float32", False,
                                         precision, sm_count=host.sm_count())
    assert plan.launches[-1].params["phases"] == 2
    assert_close(cupy_backend.conv2d_grad_input(gy, w, spec, (8, 6), None, precision),
                 ref.conv2d_grad_input(gy, w, spec, (8, 6)), 8 * 9, "float32", "conv2d_grad_input")
    assert gpu_plan.TILES[tile].kernel("float", False) in host.launched, host.launched


# name: (x shape, weight shape, ConvSpec.make kwargs): grouped (not depthwise) convs whose
# loader maps rows and columns through source_index (conv.cu's SOURCE_INDEX: other padding
# modes, and zero padding past MASK_TAPS kernel taps): each group reads its own channels
GROUPED_SOURCE_INDEX = {
    "reflect": ((2, 4, 6, 7), (6, 2, 3, 3), dict(padding=1, groups=2, padding_mode="reflect")),
    "replicate": ((2, 6, 5, 6), (6, 2, 3, 2), dict(stride=(1, 2), padding=(2, 1), groups=3,
                                                 padding_mode="replicate")),
    "circular": ((1, 4, 6, 5), (8, 2, 2, 3), dict(padding=(1, 2), dilation=(2, 1), groups=2,
                                                padding_mode="circular")),
    "zeros-past-masks": ((2, 4, 2, 40), (6, 2, 1, 31), dict(padding=(0, 15), groups=2)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(GROUPED_SOURCE_INDEX))
def test_grouped_conv_through_source_index(host, name, dtype):
    """Forward and grad-weight of grouped convs on the generic (SOURCE_INDEX) GEMM instance,
    on the CUDA cores and under TF32 (which runs that instance too)."""
    x_shape, w_shape, kw = GROUPED_SOURCE_INDEX[name]
    rng = np.random.default_rng(len(name) + 80)
    spec = ConvSpec.make(2, w_shape[2:], **kw)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    gy = rng.standard_normal((x_shape[0], w_shape[0]) + spec.output_shape(x_shape[2:], w_shape[2:]))
    gy = gy.astype(dtype)
    for precision in ("ieee", "tf32") if dtype == "float32" else ("ieee",):
        assert_close(cupy_backend.conv2d(x, w, b, spec, precision), ref.conv2d(x, w, b, spec),
                     w[0].size, dtype, "conv2d")
        assert_close(cupy_backend.conv2d_grad_weight(gy, x, spec, w_shape[2:], precision),
                     ref.conv2d_grad_weight(gy, x, spec, w_shape[2:]), gy[:, 0].size, dtype,
                     "conv2d_grad_weight")
    assert any(k.startswith("conv_gemm<") and k.endswith("false, int>") for k in host.launched)


# --------------------------------------------------------------------------- pooling
def _pool_input(shape, dtype, rng, ties=False):
    if ties:  # few distinct values: ties everywhere, the first maximum must win
        return rng.integers(0, 3, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


MAX_POOL = {
    "k3s2p1": dict(kernel_size=3, stride=2, padding=1),
    "dilated-ceil": dict(kernel_size=(2, 3), stride=(2, 1), padding=(1, 1), dilation=(2, 2), ceil_mode=True),
    "k2-ceil": dict(kernel_size=2, ceil_mode=True),
    "k1-s3": dict(kernel_size=1, stride=3),  # inputs no window holds
    "k4-dil3": dict(kernel_size=(1, 4), stride=(1, 2), padding=(0, 2), dilation=(1, 3)),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
@pytest.mark.parametrize("name", list(MAX_POOL))
def test_max_pool(host, name, ties, dtype):
    x = _pool_input((2, 3, 7, 8), dtype, np.random.default_rng(4), ties)
    spec = PoolSpec.make(2, **MAX_POOL[name])
    y, idx = cupy_backend.max_pool2d(x, spec, True)
    want_y, want_idx = ref.max_pool2d(x, spec, True)
    assert np.array_equal(y, want_y) and np.array_equal(idx, want_idx)
    assert cupy_backend.max_pool2d(x, spec, False)[1] is None
    gy = np.random.default_rng(5).standard_normal(y.shape).astype(dtype)
    assert_close(cupy_backend.max_pool2d_backward(gy, idx, x.shape[2:], spec),
                 ref.max_pool2d_backward(gy, want_idx, x.shape[2:], spec), 9, dtype, "max_pool2d_backward")


def test_max_pool_nan(host):
    x = np.random.default_rng(6).standard_normal((1, 2, 5, 5)).astype("float32")
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = x[0, 1, 4, 4] = np.nan
    spec = PoolSpec.make(2, kernel_size=3, stride=2, padding=1)
    y, idx = cupy_backend.max_pool2d(x, spec, True)
    want_y, want_idx = ref.max_pool2d(x, spec, True)
    assert np.array_equal(y, want_y, equal_nan=True) and np.array_equal(idx, want_idx)


# "up-past-2^32": out > n with (n + 1) * out > 2^32 (gpu_plan.pool32 allows n * (out + 1) <
# 2^32): a window end computed as ((o+1)*n + out - 1) / out wraps in 32 bits for the last
# window (empty: average -0, maximum 0 at index -1)
ADAPTIVE = [((7, 5), (3, 4)), ((4, 6), (6, 4)), ((5, 7), (1, 1)), ((1, 65280), (1, 65792))]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("in_hw, out_hw", ADAPTIVE, ids=["down", "up", "global", "up-past-2^32"])
def test_adaptive_pools(host, in_hw, out_hw, dtype):
    rng = np.random.default_rng(7)
    x = _pool_input((2, 3) + in_hw, dtype, rng, ties=True)
    y, idx = cupy_backend.adaptive_max_pool2d(x, out_hw)
    want_y, want_idx = ref.adaptive_max_pool2d(x, out_hw)
    assert np.array_equal(y, want_y) and np.array_equal(idx, want_idx)
    gy = rng.standard_normal((2, 3) + out_hw).astype(dtype)
    k = math.prod(in_hw)
    assert_close(cupy_backend.max_pool2d_backward(gy, idx, in_hw, None),
                 ref.max_pool2d_backward(gy, want_idx, in_hw, None), k, dtype, "adaptive max backward")
    assert_close(cupy_backend.adaptive_avg_pool2d(x, out_hw), ref.adaptive_avg_pool2d(x, out_hw), k,
                 dtype, "adaptive_avg_pool2d")
    assert_close(cupy_backend.adaptive_avg_pool2d_backward(gy, in_hw),
                 ref.adaptive_avg_pool2d_backward(gy, in_hw), k, dtype, "adaptive avg backward")


GLOBAL = {  # input view -> which read path of pool.cu version 4 it takes
    "vector": lambda x: x,                                   # 4x6 planes, 16-byte aligned
    "scalar": lambda x: x[:, :, :, 1:],                      # 4x5: no whole vectors
    "strided": lambda x: x[:, :, ::-1, ::2],                 # rows and columns strided
    "shifted": _shifted,                                     # 4x6 planes, off 16 bytes
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("view", list(GLOBAL))
def test_global_pools(host, view, dtype):
    """Global max (ties, NaN) and average over many planes per block, against the NumPy backend."""
    rng = np.random.default_rng(10)
    x = GLOBAL[view](_pool_input((3, 37, 4, 6), dtype, rng, ties=True))
    x[0, 1, 2, 1] = x[1, 2, 0, 0] = x[1, 2, 3, 1] = np.nan
    y, idx = cupy_backend.adaptive_max_pool2d(x, (1, 1))
    want_y, want_idx = ref.adaptive_max_pool2d(x, (1, 1))
    assert np.array_equal(y, want_y, equal_nan=True) and np.array_equal(idx, want_idx)
    x = np.nan_to_num(x)
    assert_close(cupy_backend.adaptive_avg_pool2d(x, (1, 1)), ref.adaptive_avg_pool2d(x, (1, 1)),
                 x[0, 0].size, dtype, "global average")


AVG_POOL = {
    "include-pad": (dict(kernel_size=3, stride=2, padding=1), True, None),
    "exclude-pad-ceil": (dict(kernel_size=(3, 2), stride=2, padding=1, ceil_mode=True), False, None),
    "divisor-override": (dict(kernel_size=2, stride=1), True, 3),
    # ceil mode's last column window (columns 5..7 of 6) runs past the trailing pad (column
    # 6): count_include_pad counts the padding only, 2 columns, not the kernel's 3
    "include-pad-ceil": (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), True, None),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(AVG_POOL))
def test_avg_pool(host, name, dtype):
    kw, include_pad, divisor = AVG_POOL[name]
    spec = PoolSpec.make(2, **kw)
    rng = np.random.default_rng(8)
    x = _pool_input((2, 3, 7, 6), dtype, rng)
    y = cupy_backend.avg_pool2d(x, spec, include_pad, divisor)
    assert_close(y, ref.avg_pool2d(x, spec, include_pad, divisor), 9, dtype, "avg_pool2d")
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_close(cupy_backend.avg_pool2d_backward(gy, spec, x.shape[2:], include_pad, divisor),
                 ref.avg_pool2d_backward(gy, spec, x.shape[2:], include_pad, divisor), 9, dtype,
                 "avg_pool2d_backward")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("p, kw", [(2.0, dict(kernel_size=2)), (1.0, dict(kernel_size=2)),
                                   (1.5, dict(kernel_size=3, stride=2, ceil_mode=True))],
                         ids=["p2", "p1", "p1.5-ceil"])
def test_lp_pool(host, p, kw, dtype):
    spec = PoolSpec.make(2, **kw)
    rng = np.random.default_rng(9)
    x = np.abs(_pool_input((2, 3, 7, 6), dtype, rng))
    x[0, 0, :2, :2] = 0  # an all-zero window: gradient 0
    x[1, 2, 3, 3] = np.nan  # a NaN window: gradient 0 for p = 1, else NaN (as PyTorch)
    y = cupy_backend.lp_pool2d(x, spec, p)
    assert_close(y, ref.lp_pool2d(x, spec, p), 9, dtype, "lp_pool2d")
    gy = rng.standard_normal(y.shape).astype(dtype)
    assert_close(cupy_backend.lp_pool2d_backward(gy, x, spec, p), ref.lp_pool2d_backward(gy, x, spec, p),
                 9, dtype, "lp_pool2d_backward")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_pool_backwards_read_strided_views(host, dtype):
    """grad_out (and Lp's x) as strided views, rows reversed and every other column: the
    backward kernels address them by their strides (max, average, adaptive average, and the
    Lp gradient's scale and gather passes)."""
    rng = np.random.default_rng(12)

    def view(shape):
        wide = rng.standard_normal(shape[:3] + (2 * shape[3],)).astype(dtype)
        return wide[:, :, ::-1, ::2]

    x = view((2, 3, 7, 6))
    np.abs(x, out=x)  # positive, and still the strided view
    in_hw = x.shape[2:]
    spec = PoolSpec.make(2, kernel_size=3, stride=2, padding=1)
    _, idx = ref.max_pool2d(x, spec, True)
    gy = view(idx.shape)
    assert_close(cupy_backend.max_pool2d_backward(gy, idx, in_hw, spec),
                 ref.max_pool2d_backward(gy, idx, in_hw, spec), 9, dtype, "max_pool2d_backward")
    assert_close(cupy_backend.avg_pool2d_backward(gy, spec, in_hw, False, None),
                 ref.avg_pool2d_backward(gy, spec, in_hw, False, None), 9, dtype,
                 "avg_pool2d_backward")
    gy = view((2, 3, 3, 4))
    assert_close(cupy_backend.adaptive_avg_pool2d_backward(gy, in_hw),
                 ref.adaptive_avg_pool2d_backward(gy, in_hw), 9, dtype, "adaptive avg backward")
    lp = PoolSpec.make(2, kernel_size=2)
    gy = view(ref.lp_pool2d(x, lp, 2.0).shape)
    assert_close(cupy_backend.lp_pool2d_backward(gy, x, lp, 2.0), ref.lp_pool2d_backward(gy, x, lp, 2.0),
                 9, dtype, "lp_pool2d_backward")


def test_max_pool_backward_takes_indices_as_a_strided_view(host):
    """The max-pool backward kernel reads its indices flat: a strided view of them (every
    other column of a wider array) is copied contiguous first (the prepared call's copies)."""
    rng = np.random.default_rng(24)
    x = rng.standard_normal((2, 3, 8, 10)).astype("float32")
    spec = PoolSpec.make(2, kernel_size=2)
    y, idx = ref.max_pool2d(x, spec, True)
    wide = np.full(idx.shape[:3] + (2 * idx.shape[3],), -1, "int64")
    wide[..., ::2] = idx
    gy = rng.standard_normal(y.shape).astype("float32")
    assert_close(cupy_backend.max_pool2d_backward(gy, wide[..., ::2], x.shape[2:], spec),
                 ref.max_pool2d_backward(gy, idx, x.shape[2:], spec), 4, "float32",
                 "max_pool2d_backward")
    assert cupy_backend.take_errors() == []


POOL2, POOL3 = PoolSpec.make(2, 2), PoolSpec.make(2, 3, 1, 1)
DW_SPEC = ConvSpec.make(2, (3, 3), padding=1, groups=3)
DW_W = np.linspace(-1, 1, 27).reshape(3, 1, 3, 3)
# name: (input shape, the op on a backend): rows enough for several 8-row blocks, planes for
# several blocks
GRID_LOOPS = {
    "max": ((2, 3, 20, 264), lambda b, x: b.max_pool2d(x, POOL2, True)),
    "max-backward": ((2, 3, 20, 264), lambda b, x: b.max_pool2d_backward(
        x[:, :, :10, :132], ref.max_pool2d(x, POOL2, True)[1], x.shape[2:], POOL2)),
    "avg": ((2, 3, 20, 132), lambda b, x: b.avg_pool2d(x, POOL3, True, None)),
    "avg-backward": ((2, 3, 20, 132), lambda b, g: b.avg_pool2d_backward(g, POOL3, g.shape[2:], True,
                                                                          None)),
    "global-max": ((3, 150, 2, 3), lambda b, x: b.adaptive_max_pool2d(x, (1, 1))),
    "global-avg": ((3, 150, 2, 3), lambda b, x: b.adaptive_avg_pool2d(x, (1, 1))),
    "depthwise": ((2, 3, 20, 132), lambda b, x: b.conv2d(x, DW_W.astype(x.dtype), None, DW_SPEC)),
    "depthwise-grad-input": ((2, 3, 20, 132), lambda b, g: b.conv2d_grad_input(
        g, DW_W.astype(g.dtype), DW_SPEC, g.shape[2:])),
}


@pytest.mark.parametrize("name", list(GRID_LOOPS))
def test_kernels_loop_past_the_grid(host, monkeypatch, name):
    """CUDA caps the grid at 65535 blocks along y and z (2x2 max pooling of 2^16 planes of
    64x64 runs one plane a block: past it): the pooling and depthwise kernels loop over the
    rows and planes past their grid. Here the cap is one block, so all but the first block's
    rows and planes are the loops'."""
    monkeypatch.setattr(gpu_plan, "MAX_GRID_Z", 1)
    shape, op = GRID_LOOPS[name]
    x = np.random.default_rng(14).standard_normal(shape).astype("float32")
    got, want = op(cupy_backend, x), op(ref, x)
    got, want = (got, want) if isinstance(got, tuple) else ((got,), (want,))
    for g, w in zip(got, want):
        if w.dtype == np.int64:
            assert np.array_equal(g, w), name
        else:
            assert_close(g, w, 9, "float32", name)
    grids = [step[1] for prepared in host.prepared.values() for step in prepared.steps]
    assert grids and all(grid[1:] == (1, 1) for grid in grids), grids


def _cases(test) -> int:
    """How many cases a test function's parametrize marks make."""
    marks = [m for m in getattr(test, "pytestmark", []) if m.name == "parametrize"]
    return math.prod(len(m.args[1]) for m in marks)


@pytest.mark.last
def test_every_kernel_was_emulated(request):
    """After every other test (the ``last`` marker of tests/conftest.py, in any order): this
    module's tests launched every conv and pooling kernel the runtime can launch (the trainer's
    layer kernels: tests/test_cupy_layers_host.py). A run that left some of those tests out
    (-k, node ids) cannot tell: it says which."""
    this = request.module
    selected = [item.function for item in request.session.items if item.module is this]
    launching = [f for name, f in vars(this).items() if name.startswith("test_")
                 and {"host", "poisoned"} & set(f.__code__.co_varnames[:f.__code__.co_argcount])]
    left_out = [f.__name__ for f in launching if selected.count(f) < _cases(f)]
    if left_out:
        pytest.skip(f"every kernel runs only with all of this module's tests; left out: {left_out}")
    names = {n for n in gpu_plan.kernel_names() if not gpu_plan.is_layer_kernel(n)}
    assert sorted(names - LAUNCHED) == []


def test_tf32x3_is_as_accurate_as_strict_fp32(host):
    """3xTF32 against float64: within 2x the strict FP32 kernel's error (plain TF32 is far
    off), forward, grad-input and grad-weight. The emulated mma.sync sums its 8 products in
    double, a little better than the hardware: on the GPU the bench reports both errors."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 32, 10, 10)).astype(np.float32)
    w = rng.standard_normal((64, 32, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((2, 64, 10, 10)).astype(np.float32)
    spec = ConvSpec.make(2, (3, 3), padding=1)
    x64, w64, gy64 = x.astype(np.float64), w.astype(np.float64), gy.astype(np.float64)
    passes = {
        "forward": (lambda p: cupy_backend.conv2d(x, w, None, spec, p),
                    ref.conv2d(x64, w64, None, spec)),
        "grad_input": (lambda p: cupy_backend.conv2d_grad_input(gy, w, spec, (10, 10), None, p),
                       ref.conv2d_grad_input(gy64, w64, spec, (10, 10))),
        "grad_weight": (lambda p: cupy_backend.conv2d_grad_weight(gy, x, spec, (3, 3), p),
                        ref.conv2d_grad_weight(gy64, x64, spec, (3, 3))),
    }
    for name, (run, exact) in passes.items():
        error = {p: np.abs(run(p) - exact).max() / np.abs(exact).max() for p in gpu_plan.PRECISIONS}
        assert error["tf32x3"] <= 2 * error["ieee"] + 1e-7, (name, error)
        assert error["tf32"] > 10 * error["tf32x3"], (name, error)


def test_tf32x3_errors_are_unbiased(host):
    """3xTF32's big part is x rounded to nearest (common.cuh, split_tf32), so that its small
    part carries either sign: over positive inputs the outputs' errors against float64 average
    out, as strict FP32's do (a truncated big part leaves every small part positive, which
    the MMA then truncates toward zero: errors all one way, about 2e-7 of the largest output
    on average here, within the accuracy test's bound but a bias)."""
    rng = np.random.default_rng(10)
    x = rng.uniform(0.5, 1.0, (2, 64, 8, 8)).astype(np.float32)
    w = rng.uniform(0.5, 1.0, (32, 64, 3, 3)).astype(np.float32)
    spec = ConvSpec.make(2, (3, 3), padding=1)
    exact = ref.conv2d(x.astype(np.float64), w.astype(np.float64), None, spec)
    for precision in ("ieee", "tf32x3"):
        error = (cupy_backend.conv2d(x, w, None, spec, precision) - exact) / np.abs(exact).max()
        assert abs(error.mean()) < 2e-8, (precision, error.mean(), np.abs(error).max())


@pytest.mark.parametrize("precision", gpu_plan.PRECISIONS)
def test_nan_and_inf_reach_the_outputs_they_touch(host, precision):
    """A NaN input (NumPy's and the GPU's canonical 0x7fffffff) makes NaN exactly where the
    NumPy backend does, on the tensor cores too; an infinity stays one, except under 3xTF32,
    whose split (small = x - big) turns it into NaN, as CUTLASS's 3xTF32 does (README)."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 16, 9, 9)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    x[0, 3, 4, 4] = np.nan
    x[1, 5, 2, 6] = np.array(0x7FFFFFFF, np.uint32).view(np.float32)
    x[1, 7, 7, 1] = np.inf
    spec = ConvSpec.make(2, (3, 3), padding=1)
    want = ref.conv2d(x, w, None, spec)
    got = cupy_backend.conv2d(x, w, None, spec, precision)
    assert np.array_equal(np.isnan(got), np.isnan(want)) if precision != "tf32x3" else \
        np.array_equal(np.isnan(got), ~np.isfinite(want))
    finite = np.isfinite(want)
    assert np.array_equal(np.isinf(got), ~finite & ~np.isnan(want)) if precision != "tf32x3" else \
        not np.isinf(got).any()
    assert_close(got[finite], want[finite], 16 * 9, "tf32" if precision == "tf32" else "float32", precision)

