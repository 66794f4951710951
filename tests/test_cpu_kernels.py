"""The NumPy backend's two CPU engines (``numpy_backend.cpu_kernels``): the compiled Numba
passes of kernels/cpu_numba.py and the NumPy passes they replace, case x engine x dtype,
against PyTorch in float64: depthwise convs (forward; grad-input, which is a depthwise
correlation too; grad-weight) and max-pool backward. Each case checks which engine ran;
the engines' max-pool gradients agree bit for bit (the same adds in the same order); a bad
index is an error in either, never a write outside the gradient."""

from __future__ import annotations

import math
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("numba")

import torch.nn.functional as TF  # noqa: E402

import gpuconv.functional as F  # noqa: E402
from gpuconv.backends import numpy_backend  # noqa: E402
from gpuconv.kernels import cpu_numba  # noqa: E402
from gpuconv.shapes import PoolSpec, max_window_taps  # noqa: E402

ENGINES = ("numba", "numpy")
DTYPES = (np.float64, np.float32)
# name, input shape, weight shape (groups = input channels), keyword arguments, input made
# strided (a column slice); the tap counts cover eight-tap passes, four and single taps
DEPTHWISE = [
    ("3x3_same", (2, 6, 9, 11), (6, 1, 3, 3), dict(padding=1), False),
    ("5x5_multiplier2", (2, 4, 10, 9), (8, 1, 5, 5), dict(padding=2), False),
    ("7x7_valid", (1, 3, 12, 13), (3, 1, 7, 7), {}, False),
    ("2x2_dilated", (2, 5, 9, 10), (5, 1, 2, 2), dict(padding=(1, 2), dilation=(2, 3)), False),
    ("3x2_asymmetric_padding", (2, 3, 7, 8), (9, 1, 3, 2), dict(padding=(2, 1)), False),
    ("1x1", (2, 4, 5, 6), (4, 1, 1, 1), {}, False),
    ("3x3_reflect", (1, 4, 8, 7), (4, 1, 3, 3), dict(padding=2, padding_mode="reflect"), False),
    ("3x3_strided_input", (2, 3, 8, 9), (3, 1, 3, 3), dict(padding=1), True),
    ("3x3_stride2", (2, 4, 11, 10), (4, 1, 3, 3), dict(stride=2, padding=1), False),
    ("5x5_stride3x2_dilated", (2, 3, 17, 14), (6, 1, 5, 5),
     dict(stride=(3, 2), padding=(2, 3), dilation=(2, 1)), True),
    ("4x3_stride2_unpadded_even", (1, 5, 12, 13), (5, 1, 4, 3), dict(stride=2), False),
    ("3x3_stride2x3", (2, 3, 10, 14), (3, 1, 3, 3), dict(stride=(2, 3), padding=1), False),
]
# name, input shape, pooling keyword arguments (None: adaptive max pooling to (3, 4))
MAX_POOL = [
    ("2x2_disjoint", (2, 3, 8, 10), dict(kernel_size=2)),
    ("3x3_s2_pad1_overlapping", (2, 3, 11, 9), dict(kernel_size=3, stride=2, padding=1)),
    ("2x3_dilated_ceil", (1, 4, 10, 11), dict(kernel_size=(2, 3), stride=2, dilation=(2, 1),
                                              ceil_mode=True)),
    ("adaptive", (2, 3, 10, 7), None),
]


@pytest.fixture
def engine(request, monkeypatch):
    """The engine of the parametrised name, and a spy on the compiled kernels it calls."""
    monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, request.param)
    spy = mock.Mock(wraps=cpu_numba)
    spy.depthwise_correlate.side_effect = cpu_numba.depthwise_correlate
    spy.depthwise_grad_weight.side_effect = cpu_numba.depthwise_grad_weight
    spy.max_pool2d_backward_planes.side_effect = cpu_numba.max_pool2d_backward_planes
    spy.max_pool2d_planes.side_effect = cpu_numba.max_pool2d_planes
    with mock.patch.object(numpy_backend, "_load_cpu_kernels",
                           lambda choice: None if choice == "numpy" else spy):
        yield request.param, spy


def _assert_close(got, want, k, dtype, what):
    """float64 1e-10, float32 2e-6 * sqrt(K) relative to (|want| + max |want|), for a sum of
    K terms; a failure names the first bad index."""
    assert got.shape == want.shape and got.dtype == dtype, what
    scale = float(np.abs(want).max())
    coeff = 2e-6 * math.sqrt(k) if dtype == np.float32 else 1e-10
    bad = ~(np.abs(got - want) <= coeff * (np.abs(want) + scale))
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        pytest.fail(f"{what}: {int(bad.sum())} values off, first at {first}: {got[first]!r}, "
                    f"expected {want[first]!r}")


def _depthwise_inputs(x_shape, w_shape, strided, dtype, seed):
    rng = np.random.default_rng(seed)
    if strided:  # columns 1..W of a wider array: a plane's rows are not one run
        x = rng.standard_normal(x_shape[:3] + (x_shape[3] + 3,))[..., 1:1 + x_shape[3]]
    else:
        x = rng.standard_normal(x_shape)
    return (x.astype(dtype, copy=False), rng.standard_normal(w_shape).astype(dtype),
            rng.standard_normal(w_shape[0]).astype(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("case", DEPTHWISE, ids=lambda c: c[0])
def test_depthwise_conv_matches_torch(case, engine, dtype):
    name, x_shape, w_shape, kw, strided = case
    which, spy = engine
    x, w, b = _depthwise_inputs(x_shape, w_shape, strided, dtype, seed=len(name))
    groups = x_shape[1]
    y = F.conv2d(x, w, b, groups=groups, **kw, backend="numpy")
    forward_calls = spy.depthwise_correlate.call_count
    gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
    gx, gw, gb = F.conv2d_backward(gy, x, w, groups=groups, **kw, backend="numpy")
    # a grad-input is a depthwise correlation where each channel has one output channel
    compiled, multiplier = which == "numba", w_shape[0] // groups
    assert (forward_calls > 0, spy.depthwise_correlate.call_count > forward_calls,
            spy.depthwise_grad_weight.called) == (
        compiled, compiled and multiplier == 1, compiled), f"{name}: compiled calls ({which})"
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    kw_t = dict(kw)
    if kw_t.pop("padding_mode", "zeros") == "reflect":
        pad = kw_t.pop("padding")
        want = TF.conv2d(TF.pad(xt, (pad,) * 4, mode="reflect"), wt,
                         torch.tensor(b, dtype=torch.float64), groups=groups, **kw_t)
    else:
        want = TF.conv2d(xt, wt, torch.tensor(b, dtype=torch.float64), groups=groups, **kw_t)
    want.backward(torch.tensor(gy, dtype=torch.float64))
    taps = w_shape[2] * w_shape[3]
    _assert_close(y, want.detach().numpy(), taps + 1, dtype, f"{name} output")
    _assert_close(gx, xt.grad.numpy(), taps * multiplier * 4, dtype, f"{name} grad_input")
    _assert_close(gw, wt.grad.numpy(), int(np.prod(y.shape[::2])), dtype, f"{name} grad_weight")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_depthwise_conv_transpose_matches_torch(engine, dtype):
    """A stride-1 depthwise transposed conv is a depthwise conv's grad-input: the same
    compiled correlation, with the flipped kernel."""
    which, spy = engine
    x, w, b = _depthwise_inputs((2, 5, 7, 8), (5, 2, 3, 5), False, dtype, seed=3)
    y = F.conv_transpose2d(x, w, np.tile(b, 2), padding=(1, 2), groups=5, backend="numpy")
    assert (spy.depthwise_correlate.call_count > 0) == (which == "numba")
    want = TF.conv_transpose2d(*(torch.tensor(a, dtype=torch.float64) for a in
                                 (x, w, np.tile(b, 2))), padding=(1, 2), groups=5).numpy()
    _assert_close(y, want, 16, dtype, "conv_transpose2d output")


def _pool(x, kw):
    if kw is None:
        return F.adaptive_max_pool2d(x, (3, 4), return_indices=True, backend="numpy")
    return F.max_pool2d(x, **kw, return_indices=True, backend="numpy")


def _pool_backward(gy, x, indices, kw, check_indices=True):
    if kw is None:
        return F.adaptive_max_pool2d_backward(gy, x, indices, (3, 4), backend="numpy",
                                              check_indices=check_indices)
    return F.max_pool2d_backward(gy, x, indices, **kw, backend="numpy",
                                 check_indices=check_indices)


def _distinct_values(shape, dtype, seed):
    """A permutation of distinct values: every window has one maximum."""
    rng = np.random.default_rng(seed)
    return rng.permutation(math.prod(shape)).reshape(shape).astype(dtype) / 7


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", MAX_POOL, ids=lambda c: c[0])
def test_max_pool_backward_engines_agree_bit_for_bit_and_with_torch(case, dtype, monkeypatch):
    name, x_shape, kw = case
    x = _distinct_values(x_shape, dtype, seed=len(name))
    _, indices = _pool(x, kw)
    gy = np.random.default_rng(2).standard_normal(indices.shape).astype(dtype)
    grads = {}
    for which in ENGINES:
        monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, which)
        grads[which] = _pool_backward(gy, x, indices, kw)
    np.testing.assert_array_equal(grads["numba"], grads["numpy"], err_msg=name)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    if kw is None:
        want = TF.adaptive_max_pool2d(xt, (3, 4))
    else:
        want = TF.max_pool2d(xt, **kw)
    want.backward(torch.tensor(gy, dtype=torch.float64))
    _assert_close(grads["numba"], xt.grad.numpy(), 9, dtype, f"{name} grad_input")


@pytest.mark.parametrize("check_indices", [True, False])
@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("bad", [-1, 80, 2**40])
def test_max_pool_backward_index_outside_the_plane_is_an_error(engine, bad, check_indices):
    """An index outside its plane raises, naming the rule and the index: met by the compiled
    scatter in its own pass (the caller does not check first), checked by the caller before
    NumPy's scatter, which takes ``check_indices=False`` on trust."""
    which, spy = engine
    if which == "numpy" and not check_indices:
        pytest.skip("the NumPy scatter trusts unchecked indices")
    x = _distinct_values((2, 3, 8, 10), np.float32, seed=0)
    _, indices = _pool(x, dict(kernel_size=2))
    indices = indices.copy()
    indices[1, 2, 3, 1] = bad
    gy = np.ones(indices.shape, np.float32)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 80\)") as info:
        _pool_backward(gy, x, indices, dict(kernel_size=2), check_indices=check_indices)
    assert type(info.value) is ValueError
    assert spy.max_pool2d_backward_planes.called == (which == "numba")
    if which == "numba":
        assert str(info.value).endswith(f"got {bad}")


def _scatter(grad_out, indices, grad, col_windows):
    """cpu_numba's scatter over one row of 4 columns: output o's window the columns
    col_windows[o] (first, last), step 1."""
    first, last = np.array(col_windows).T
    return cpu_numba.max_pool2d_backward_planes(grad_out, indices, grad, 4,
                                                np.zeros(4, np.int32), np.zeros((3, 1), np.int64),
                                                1, np.stack([first, first, last]), 1)


def test_compiled_scatter_reports_its_first_bad_index_and_writes_nothing_past_it():
    grad_out = np.arange(1.0, 7.0).reshape(2, 3)
    indices = np.array([[0, 2, 1], [3, 9, 0]])
    grad = np.full((2, 4), np.nan)
    assert _scatter(grad_out, indices, grad, [(0, 3)] * 3) == 4  # past the plane
    np.testing.assert_array_equal(grad[0], [1.0, 3.0, 2.0, 0.0])
    np.testing.assert_array_equal(grad[1], [0.0, 0.0, 0.0, 4.0])
    grad[:] = np.nan
    assert _scatter(grad_out, indices, grad, [(0, 3), (0, 3), (2, 3)]) == 2  # outside its window
    np.testing.assert_array_equal(grad[0], [1.0, 0.0, 2.0, 0.0])
    assert np.isnan(grad[1]).all()


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("case", MAX_POOL, ids=[c[0] for c in MAX_POOL])
def test_max_pool_backward_index_outside_its_window_is_an_error(engine, case):
    """An index inside the plane that names no tap of its output's window (an element its
    window misses: beside it, or between dilated taps) raises, naming the output."""
    which, spy = engine
    name, x_shape, kw = case
    x = _distinct_values(x_shape, np.float64, seed=3)
    _, indices = _pool(x, kw)
    indices = indices.copy()
    out = (0, x_shape[1] - 1, indices.shape[2] - 1, 0)
    (r_start, r_lo, r_hi, r_step), (c_start, c_lo, c_hi, c_step) = max_window_taps(
        None if kw is None else PoolSpec.make(2, **kw), x_shape[2:], indices.shape[2:])
    taps = {(r, c) for r in range(r_lo[out[2]], r_hi[out[2]] + 1, r_step)
            for c in range(c_lo[0], c_hi[0] + 1, c_step)}
    missed = [(r, c) for r in range(x_shape[2]) for c in range(x_shape[3]) if (r, c) not in taps]
    between = [(r, c) for r, c in missed  # inside the window's span: between dilated taps
               if r_lo[out[2]] <= r <= r_hi[out[2]] and c_lo[0] <= c <= c_hi[0]]
    r, c = between[0] if between else missed[len(missed) // 2]
    indices[out] = r * x_shape[3] + c
    with pytest.raises(ValueError, match=rf"output \(0, {out[1]}, {out[2]}, 0\)'s index "
                                         rf"{indices[out]} is outside its window"):
        _pool_backward(np.ones(indices.shape), x, indices, kw)
    assert spy.max_pool2d_backward_planes.called == (which == "numba")


# (max_pool1d's arguments, the output whose index is bad, the bad index: inside the row, outside
# that output's window): index 0, the plane's first element, is no index outside the plane
BAD_1D_INDICES = [
    pytest.param(dict(kernel_size=2), (1, 0, 3), 0, id="k2-index-0"),
    pytest.param(dict(kernel_size=2), (0, 1, 2), 7, id="k2-index-past-the-window"),
    pytest.param(dict(kernel_size=3, stride=2, padding=1), (1, 1, 3), 0, id="k3s2p1-index-0"),
    # between the window's dilated taps (2 and 4)
    pytest.param(dict(kernel_size=2, dilation=2), (0, 0, 1), 3, id="k2d2-between-taps"),
]


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("kw, out, bad", BAD_1D_INDICES)
def test_max_pool1d_backward_index_outside_its_window_names_its_1d_output(engine, kw, out, bad):
    """A 1-D max-pool backward's index inside the row but outside its output's window raises
    naming that output as (n, c, l), the 1-D op's own coordinates (not the lifted 2-D
    kernel's (n, c, 0, l)), and says it is outside the window, not outside the plane."""
    x = _distinct_values((2, 2, 8), np.float64, seed=5)
    _, indices = F.max_pool1d(x, **kw, return_indices=True, backend="numpy")
    indices = indices.copy()
    indices[out] = bad
    with pytest.raises(ValueError, match=rf"; output \({out[0]}, {out[1]}, {out[2]}\)'s index "
                                         rf"{bad} is outside its window$"):
        F.max_pool1d_backward(np.ones(indices.shape), x, indices, **kw, backend="numpy")


# name, input shape, pooling keyword arguments: strides 1, 2 and 3 (each of the phase
# split's copies), padding on every side, dilation, ceil_mode's last window
POOL_FORWARD = [
    ("2x2_disjoint", (2, 3, 8, 10), dict(kernel_size=2)),
    ("3x3_s2_pad1", (2, 3, 11, 9), dict(kernel_size=3, stride=2, padding=1)),
    ("3x3_s1_pad1", (1, 4, 6, 7), dict(kernel_size=3, stride=1, padding=1)),
    ("4x3_s3_pad_ceil", (2, 2, 13, 11), dict(kernel_size=(4, 3), stride=3, padding=(2, 1),
                                             ceil_mode=True)),
    ("2x3_dilated_ceil", (1, 4, 10, 11), dict(kernel_size=(2, 3), stride=2, dilation=(2, 1),
                                              ceil_mode=True)),
    ("3x2_s2x1_pad_dilated", (3, 2, 9, 8), dict(kernel_size=(3, 2), stride=(2, 1),
                                                padding=(1, 1), dilation=(1, 2))),
    # every window inside the input, dilated along both axes: NumPy's strided-tap pass
    # (``_max_pool_inside``), whose flat index steps by the column dilation
    ("3x2_s1x2_dilated_2x3_inside", (2, 3, 12, 13), dict(kernel_size=(3, 2), stride=(1, 2),
                                                         dilation=(2, 3))),
]


def _pool_input(kind, shape, dtype, seed):
    """Distinct values; ties (few values); NaNs and -inf, a corner block of -inf included
    (a window there holds -inf alone, its lead in the padding); or distinct values whose
    first two columns are -inf (a window there whose rows lie inside the input holds -inf
    alone, its lead in the left padding)."""
    rng = np.random.default_rng(seed)
    if kind == "distinct":
        return _distinct_values(shape, dtype, seed)
    if kind == "minus_inf_columns":
        x = _distinct_values(shape, dtype, seed)
        x[:, :, :, :2] = -np.inf
        return x
    if kind == "ties":
        return rng.integers(0, 3, shape).astype(dtype)
    x = rng.standard_normal(shape).astype(dtype)
    x[rng.random(shape) < 0.1] = np.nan
    x[rng.random(shape) < 0.2] = -np.inf
    x[:, :, :3, :3] = -np.inf
    x[0, 0, -1, -1] = np.nan
    return x


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("kind", ["distinct", "ties", "nan_and_inf", "minus_inf_columns"])
@pytest.mark.parametrize("case", POOL_FORWARD, ids=lambda c: c[0])
def test_max_pool_engines_agree_bit_for_bit_and_with_torch(case, kind, dtype, monkeypatch):
    """Values and indices, with PyTorch's rules: the first maximum wins, a NaN wins over any
    number (the last NaN among several), a window of -inf alone points at its first element
    inside the input (whether its rows or its columns start in the padding)."""
    name, x_shape, kw = case
    x = _pool_input(kind, x_shape, dtype, seed=len(name))
    got = {}
    for which in ENGINES:
        monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, which)
        got[which] = F.max_pool2d(x, **kw, return_indices=True, backend="numpy")
        y_only = F.max_pool2d(x, **kw, backend="numpy")
        np.testing.assert_array_equal(y_only, got[which][0], err_msg=f"{name} {which}")
    for a, b in zip(got["numba"], got["numpy"]):
        np.testing.assert_array_equal(a, b, err_msg=name)
    want, want_index = TF.max_pool2d(torch.tensor(x, dtype=torch.float64), **kw,
                                     return_indices=True)
    np.testing.assert_array_equal(got["numba"][0], want.numpy().astype(dtype), err_msg=name)
    np.testing.assert_array_equal(got["numba"][1], want_index.numpy(), err_msg=name)


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
def test_max_pool_takes_the_compiled_pass(engine):
    which, spy = engine
    F.max_pool2d(np.ones((2, 3, 8, 8), np.float32), 2, backend="numpy")
    assert spy.max_pool2d_planes.called == (which == "numba")


# name, input shape, avg_pool2d keyword arguments
AVG_POOL = [
    ("2x2", (2, 3, 8, 10), dict(kernel_size=2)),
    ("3x3_s2_pad1_ceil_exclude_pad", (2, 3, 11, 9),
     dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    ("3x3_s1_pad1_include_pad", (1, 4, 6, 7), dict(kernel_size=3, stride=1, padding=1)),
    ("5x4_s3_pad2_divisor", (2, 2, 13, 11), dict(kernel_size=(5, 4), stride=3, padding=2,
                                                 divisor_override=7)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("case", AVG_POOL, ids=lambda c: c[0])
def test_avg_pool_matches_torch(case, engine, dtype):
    """The compiled window sums are a depthwise correlation with a kernel of ones."""
    name, x_shape, kw = case
    which, spy = engine
    x = np.random.default_rng(len(name)).standard_normal(x_shape).astype(dtype)
    y = F.avg_pool2d(x, **kw, backend="numpy")
    assert spy.depthwise_correlate.called == (which == "numba")
    want = TF.avg_pool2d(torch.tensor(x, dtype=torch.float64), **kw).numpy()
    _assert_close(y, want, math.prod(np.broadcast_to(kw["kernel_size"], 2)), dtype,
                  f"{name} output")


# name, input shape, avg_pool2d keyword arguments, whose windows tile the input
AVG_POOL_BACKWARD = [
    ("2x2_tiled", (2, 3, 8, 10), dict(kernel_size=2), True),
    ("3x2_tiled_with_tails", (2, 3, 11, 9), dict(kernel_size=(3, 2)), True),
    ("3x2_tiled_column_tail_only", (2, 3, 9, 11), dict(kernel_size=(3, 2)), True),
    ("2x3_tiled_row_tail_only", (2, 3, 9, 12), dict(kernel_size=(2, 3)), True),
    ("3x3_s2_pad1_overlapping", (2, 3, 11, 9), dict(kernel_size=3, stride=2, padding=1), False),
    # divisor_override replaces the window sizes in the tiled spread too
    ("2x2_tiled_divisor_override", (2, 3, 8, 10), dict(kernel_size=2, divisor_override=3), True),
    # row and column strides differ: each spreads its own axis
    ("3x2_s2x1_pad1_overlapping", (2, 3, 9, 8), dict(kernel_size=(3, 2), stride=(2, 1),
                                                     padding=1), False),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", AVG_POOL_BACKWARD, ids=lambda c: c[0])
def test_avg_pool_backward_engines_agree_bit_for_bit_and_with_torch(case, dtype, monkeypatch):
    """Windows that tile the input take the compiled spread (past the last window: zeros)."""
    name, x_shape, kw, tiled = case
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal(x_shape).astype(dtype)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    want = TF.avg_pool2d(xt, **kw)
    gy = rng.standard_normal(want.shape).astype(dtype)
    want.backward(torch.tensor(gy, dtype=torch.float64))
    grads = {}
    for which in ENGINES:
        monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, which)
        spy = mock.Mock(wraps=cpu_numba.avg_pool2d_backward_tiled)
        with mock.patch.object(cpu_numba, "avg_pool2d_backward_tiled", spy):
            grads[which] = F.avg_pool2d_backward(gy, x, **kw, backend="numpy")
        assert spy.called == (tiled and which == "numba"), f"{name} {which}"
    np.testing.assert_array_equal(grads["numba"], grads["numpy"], err_msg=name)
    _assert_close(grads["numba"], xt.grad.numpy(), 9, dtype, f"{name} grad_input")


@pytest.mark.parametrize("value", ["", "numba", "numpy"])
def test_engine_choice(value, monkeypatch):
    monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, value)
    assert (numpy_backend.cpu_kernels() is None) == (value == "numpy")
    assert numpy_backend.cpu_engine().split()[0] == (value or "numba")


def test_unknown_engine_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, "fortran")
    with pytest.raises(ValueError, match=numpy_backend.CPU_KERNELS_ENV):
        numpy_backend.cpu_kernels()


@pytest.mark.parametrize("zero_padding, stride, out_hw, every", [
    (((1, 1), (2, 2)), (1, 1), (8, 11), True),
    (((1, 1), (2, 2)), (1, 1), (7, 11), False),  # a row short
    (((1, 1), (2, 2)), (2, 1), (4, 11), True),
    (((1, 1), (2, 2)), (2, 3), (4, 4), True),
    (((1, 1), (2, 2)), (2, 3), (4, 3), False),
    (((-1, 3), (2, 2)), (1, 1), (8, 11), False),  # a crop
])
def test_the_compiled_depthwise_passes_take_only_every_window(zero_padding, stride, out_hw,
                                                              every):
    """They read the padded plane's windows without bounds checks: any other geometry keeps
    NumPy's path."""
    got = numpy_backend._every_window((8, 9), zero_padding, (3, 3), stride, (1, 1), out_hw)
    assert got == every


@pytest.mark.parametrize("engine", ENGINES, indirect=True)
@pytest.mark.parametrize("case", MAX_POOL, ids=[c[0] for c in MAX_POOL])
def test_max_pool_backward_of_an_empty_batch(engine, case):
    """No planes: nothing to check or scatter, an empty gradient of the input's shape."""
    name, x_shape, kw = case
    x = np.zeros((0,) + x_shape[1:])
    _, indices = _pool(x, kw)
    grad = _pool_backward(np.zeros(indices.shape), x, indices, kw)
    assert grad.shape == x.shape, name


@pytest.mark.parametrize("value, engine", [(" ", None), ("", None), (" numpy ", "numpy"),
                                           ("bad", ValueError)])
def test_the_cpu_kernels_setting_reads_blank_as_unset(monkeypatch, value, engine):
    """As every GPUCONV_* setting: blank is unset (a space was refused), spaces around a
    value are ignored, anything else is named."""
    monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, value)
    if engine is ValueError:
        with pytest.raises(ValueError, match="GPUCONV_CPU_KERNELS must be 'numba' or 'numpy'"):
            numpy_backend.cpu_engine()
        return
    monkeypatch.delenv(numpy_backend.CPU_KERNELS_ENV)
    unset = numpy_backend.cpu_engine()
    monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, value)
    assert numpy_backend.cpu_engine() == (engine or unset)
