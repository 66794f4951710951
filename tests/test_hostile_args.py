"""Hostile arguments to the public ops (issue 16): option flags that must be real bools,
masked arrays, PyTorch's 1-tuples, and absurd sizes that must fail fast with a ValueError
naming the argument instead of hanging in a Python loop or dying in the allocator; and to
the gpuconv.nn layers, whose arguments are checked where a layer is written."""

from __future__ import annotations

import itertools
import os
import tempfile
import time

import numpy as np
import pytest

import gpuconv.functional as F
from gpuconv import nn
from gpuconv.backends import numpy_backend
from gpuconv.shapes import (adaptive_windows, conv_output_size, conv_transpose_output_size,
                            floor_sum, pool_has_empty_window, pool_output_size)


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


X2, W2, X1 = _x(2, 3, 8, 8), _x(4, 3, 3, 3, seed=1), _x(2, 3, 9)
GY2 = F.conv2d(X2, W2)
Y_POOL = F.max_pool2d(X2, 2)

# (call, argument the message must name, exception)
_BAD_FLAGS = [
    (lambda v: F.max_pool2d(X2, 2, ceil_mode=v), "ceil_mode"),
    (lambda v: F.max_pool1d(X1, 2, return_indices=v), "return_indices"),
    (lambda v: F.avg_pool2d(X2, 3, padding=1, count_include_pad=v), "count_include_pad"),
    (lambda v: F.avg_pool2d_backward(Y_POOL, X2, 2, count_include_pad=v), "count_include_pad"),
    (lambda v: F.conv2d(X2, W2, flip=v), "flip"),
    (lambda v: F.conv1d(X1, W2[:, :, 0], relu=v), "relu"),
    (lambda v: F.conv2d_backward(GY2, X2, W2, flip=v), "flip"),
    (lambda v: F.adaptive_max_pool2d(X2, 3, return_indices=v), "return_indices"),
    (lambda v: F.conv2d_backward(GY2, X2, W2, output_mask=(True, v, True)), r"output_mask\[1\]"),
]


@pytest.mark.parametrize("value", ["False", "True", 0, 1, None, 1.0])
@pytest.mark.parametrize("call, name", _BAD_FLAGS)
def test_flags_must_be_bools(call, name, value):
    with pytest.raises(TypeError, match=f"{name} must be True or False"):
        call(value)


@pytest.mark.parametrize("call, name", _BAD_FLAGS)
def test_flags_take_bool_and_numpy_bool(call, name):
    for value in (True, np.bool_(False)):
        call(value)


# (call of one NumPy scalar argument, its first and second value): a second call with
# another value must not reuse what the first call's checks made of the first
_NUMPY_SCALAR_ARGS = [
    (lambda v: F.conv2d(X2, W2, stride=v), np.int64(1), np.int64(2)),
    (lambda v: F.conv2d(X2, W2, dilation=v), np.int32(1), np.int32(3)),
    (lambda v: F.conv2d(X2, W2, padding=v), np.int64(0), np.int64(2)),
    (lambda v: F.conv2d(X2, W2, relu=v), np.False_, np.True_),
    (lambda v: F.conv2d(X2, W2, flip=v), np.True_, np.False_),
    (lambda v: F.conv2d(X2, W2, padding=v), np.str_("same"), np.str_("valid")),
    (lambda v: F.conv_transpose2d(X2, _x(3, 2, 3, 3), groups=v), np.int64(1), np.int64(3)),
    (lambda v: F.max_pool2d(X2, v), np.int64(2), np.int64(3)),
    (lambda v: F.max_pool2d(X2, 3, ceil_mode=v), np.True_, np.False_),
    (lambda v: F.max_pool2d(X2, 2, return_indices=v)[0], np.False_, np.True_),
    (lambda v: F.avg_pool2d(X2, 3, padding=1, count_include_pad=v), np.True_, np.False_),
    (lambda v: F.avg_pool2d(X2, 3, divisor_override=v), np.int64(2), np.int64(5)),
    (lambda v: F.adaptive_avg_pool2d(X2, v), np.int64(2), np.int64(5)),
    (lambda v: F.lp_pool2d(X2, v, 2), np.float64(2.0), np.float64(3.0)),
]


@pytest.mark.parametrize("call, first, second", _NUMPY_SCALAR_ARGS)
def test_numpy_scalar_arguments_are_read_on_every_call(call, first, second):
    call(first)
    got, want = call(second), call(second.item())
    assert got.shape == want.shape and np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("call, bad", [(lambda v: F.conv2d(X2, W2, stride=v), np.int64(0)),
                                       (lambda v: F.avg_pool2d(X2, 2, divisor_override=v),
                                        np.int64(0))])
def test_a_bad_numpy_scalar_after_a_good_one_is_refused(call, bad):
    call(np.int64(1))
    with pytest.raises(ValueError):
        call(bad)


@pytest.mark.parametrize("mask, exc", [
    (True, TypeError), ("abc", TypeError), ("TTF", TypeError), (np.ones(3, bool), TypeError),
    ((True, False), ValueError), ([True] * 4, ValueError),
])
def test_output_mask_is_a_sequence_of_three_bools(mask, exc):
    with pytest.raises(exc, match="output_mask must be a tuple of 3 bools"):
        F.conv2d_backward(GY2, X2, W2, output_mask=mask)


def test_output_mask_list_of_numpy_bools():
    gx, gw, gb = F.conv2d_backward(GY2, X2, W2, output_mask=[np.bool_(True), False, True])
    assert gx is not None and gw is None and gb is not None


@pytest.mark.parametrize("call", [
    lambda x: F.conv2d(x, W2), lambda x: F.max_pool2d(x, 2), lambda x: F.avg_pool2d(x, 2),
    lambda x: F.adaptive_avg_pool2d(x, 2),
])
def test_masked_arrays_are_refused(call):
    masked = np.ma.masked_array(X2, mask=X2 > 1)
    with pytest.raises(TypeError, match="input is a masked array"):
        call(masked)


@pytest.mark.parametrize("call", [
    lambda x: F.conv2d(x, W2), lambda x: F.conv2d(X2, x[:, :, :3, :3]),
    lambda x: F.max_pool2d(x, 3, 2, 1), lambda x: F.avg_pool2d(x, 2),
    lambda x: F.conv2d(x, x[:, :1, :3, :3], groups=X2.shape[1]),
    lambda x: F.max_pool2d_backward(x[:, :, :3, :3], X2, F.max_pool2d(X2, 2, return_indices=True)[1], 2),
])
def test_arrays_of_another_byte_order_are_refused(call):
    """The kernels read the machine's byte order: a big-endian array gave wrong maxima (the
    compiled max pooling, after an unaligned call) or a Numba typing error."""
    swapped = X2.astype(X2.dtype.newbyteorder(">" if np.little_endian else "<"))
    with pytest.raises(TypeError, match=r"has byte order '[<>]f8', not this machine's: pass "
                                        r".*\.astype\('float64'\)"):
        call(swapped)


@pytest.mark.parametrize("call, name", [
    (lambda: F.conv2d_backward(np.ones((1, 2**20, 1, 1)), np.broadcast_to(_ONE, (1, 2**20, 1, 1)),
                               np.broadcast_to(_ONE, (2**20, 2**20, 1, 1))), "weight"),
    (lambda: F.max_pool2d(np.broadcast_to(_ONE, (1, 1, 2**16, 2**16)), 2), "input"),
])
def test_a_broadcast_view_too_large_to_copy_is_refused(call, name):
    """A broadcast view holds one element, but an op copies it (and makes a gradient of its
    shape): 8 TiB of weight gradient, a 32 GiB plane raised MemoryError."""
    with pytest.raises(ValueError, match=f"{name} is too large: a copy of this broadcast view "
                                         "would have shape"):
        call()


# (view, the argument it is): each 1,024 bytes once copied, with a broadcast axis of 2 or 3
_SMALL_BROADCASTS = [
    (lambda: np.broadcast_to(np.zeros((1, 1, 8, 8)), (2, 1, 8, 8)), "batch axis of 2"),
    (lambda: np.broadcast_to(np.zeros((1, 1, 8, 1)), (1, 1, 8, 16)), "width of 16"),
    (lambda: np.broadcast_to(np.zeros((1, 1, 4, 8)), (2, 2, 4, 8)), "two axes of 2"),
    (lambda: np.broadcast_to(np.zeros((1, 1, 1, 8)), (2, 1, 8, 8)), "two axes, 2 and 8"),
]


@pytest.mark.parametrize("make", [m for m, _ in _SMALL_BROADCASTS],
                         ids=[i for _, i in _SMALL_BROADCASTS])
def test_a_broadcast_view_is_size_checked_as_its_copy_whatever_its_axes(make, monkeypatch):
    """Under a limit of 1,000 bytes, a broadcast view whose copy takes 1,024 is refused even
    when its zero-stride axes are short (2 elements): the op copies it whole. Its output (a
    quarter of it, after 2x2 pooling) would fit."""
    monkeypatch.setenv("GPUCONV_MAX_BYTES", "1000")
    view = make()
    assert view.nbytes == 1024 and 0 in view.strides
    with pytest.raises(ValueError, match=r"input is too large: a copy of this broadcast view "
                                         r"would have shape \(.*\), 1,024 bytes"):
        F.max_pool2d(view, 2)


@pytest.mark.parametrize("pooling, backward, size", [
    (F.max_pool2d, F.max_pool2d_backward, 2),
    (F.adaptive_max_pool2d, F.adaptive_max_pool2d_backward, (2, 2)),
])
def test_masked_indices_are_refused(pooling, backward, size):
    """The compiled scatter failed with Numba's own error; NumPy's ignored the mask."""
    y, indices = pooling(X2, size, return_indices=True)
    masked = np.ma.masked_array(indices, mask=indices == indices.flat[0])
    with pytest.raises(TypeError, match="indices is a masked array"):
        backward(np.ones_like(y), X2, masked, size)


@pytest.mark.parametrize("op, args, one_tuple, full", [
    (F.conv2d, (X2, W2), dict(stride=(2,), padding=(1,), dilation=(2,)),
     dict(stride=2, padding=1, dilation=2)),
    (F.max_pool2d, (X2,), dict(kernel_size=(3,), stride=(2,), padding=(1,)),
     dict(kernel_size=3, stride=2, padding=1)),
    (F.avg_pool2d, (X2,), dict(kernel_size=(2,), stride=(1,)), dict(kernel_size=2, stride=1)),
    (F.conv_transpose2d, (X2, _x(3, 2, 3, 3)), dict(stride=(2,), output_padding=(1,)),
     dict(stride=2, output_padding=1)),
])
def test_one_tuples_broadcast_as_pytorch(op, args, one_tuple, full):
    np.testing.assert_array_equal(op(*args, **one_tuple), op(*args, **full))


@pytest.mark.parametrize("formula", [conv_output_size, conv_transpose_output_size,
                                     pool_output_size])
def test_one_dim_formulas_name_a_zero_stride(formula):
    with pytest.raises(ValueError, match="stride must be a positive int"):
        formula(8, 3, 0)


# --------------------------------------------------------------------------- closed forms
def _brute_force_empty_window(n, k, s, p, d, out):
    return any(all(not 0 <= o * s - p + j * d < n for j in range(k)) for o in range(out))


def test_empty_window_closed_form_matches_brute_force_on_wide_dilations():
    rng = np.random.default_rng(16)
    empty = 0
    for _ in range(3000):
        n, k, s = (int(v) for v in rng.integers((1, 2, 1), (12, 12, 6)))
        # a window can only be empty when its dilation jumps over the whole input
        d, p = max(1, n + int(rng.integers(-3, 12))), int(rng.integers(0, k // 2 + 1))
        ceil_mode = bool(rng.integers(2))
        out = pool_output_size(n, k, s, p, d, ceil_mode)
        if out > 0:
            expected = _brute_force_empty_window(n, k, s, p, d, out)
            assert pool_has_empty_window(n, k, s, p, d, out) == expected, (n, k, s, p, d, out)
            empty += expected
    assert empty > 15


def test_floor_sum_matches_the_sum():
    for n, m, a, b in itertools.product(range(0, 9), range(1, 7), range(-8, 9), range(-9, 10)):
        assert floor_sum(n, m, a, b) == sum((a * i + b) // m for i in range(n)), (n, m, a, b)


# A hang guard, not a speed measurement: a loop over these sizes (2^40 positions, a 10^12
# kernel) would run for hours; closed forms answer at once, even on a loaded CI machine.
HANG_SECONDS = 30.0


def test_adaptive_windows_of_a_huge_axis_are_computed_without_a_loop():
    start = time.perf_counter()
    starts, ends = adaptive_windows(2**40 + 3, 10**6)
    assert time.perf_counter() - start < HANG_SECONDS
    i = np.array([0, 1, 77, 10**6 - 1])
    assert starts[i].tolist() == [int(v) * (2**40 + 3) // 10**6 for v in i]
    assert ends[i].tolist() == [-(-(int(v) + 1) * (2**40 + 3) // 10**6) for v in i]


# --------------------------------------------------------------------------- absurd sizes
_ONE = np.zeros((1, 1, 1, 1))

_ABSURD = [  # (call, the argument the error must name), each answered without a hang
    (lambda: F.max_pool1d(np.broadcast_to(np.zeros((1, 1, 1)), (1, 1, 2**33)), 2), "input"),
    (lambda: F.max_pool1d(np.zeros((1, 1, 4)), 2 * 10**12, padding=10**12), "padding"),
    (lambda: F.max_pool1d(np.zeros((1, 1, 4)), 2 * 10**12, 3, padding=10**12,
                          ceil_mode=True), "padding"),
    (lambda: F.adaptive_avg_pool2d(np.zeros((1, 1, 4, 4)), 10**9), "output_size"),
    (lambda: F.adaptive_max_pool1d(np.zeros((1, 1, 4)), 10**12), "output_size"),
    (lambda: F.conv2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), padding=10**6), "padding"),
    (lambda: F.avg_pool2d(np.zeros((1, 1, 4, 4)), 2 * 10**6, padding=10**6), "padding"),
    (lambda: F.conv2d(np.broadcast_to(_ONE, (2**40, 1, 1, 1)), np.zeros((1, 1, 1, 1))), "input"),
    (lambda: F.conv_transpose2d(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 3, 3)), stride=10**6),
     "stride"),
]


@pytest.mark.parametrize("call", [
    lambda: F.conv1d(np.zeros((1, 1, 10**6)), np.zeros((1, 1, 10**5))),
    lambda: F.conv1d_backward(np.zeros((1, 1, 900_001)), np.zeros((1, 1, 10**6)),
                              np.zeros((1, 1, 10**5)), output_mask=(False, True, False)),
    lambda: F.conv1d(np.zeros((1, 2, 10**6)), np.zeros((2, 1, 10**5)), groups=2),  # depthwise
])
def test_the_numpy_workspace_is_checked_before_it_is_allocated(call, monkeypatch):
    """A 10^5 kernel over 10^6 positions: the output is small, one sample's im2col is not.
    (NumPy's passes: the compiled depthwise correlation has no such workspace.)"""
    monkeypatch.setenv("GPUCONV_MAX_BYTES", str(2**30))
    monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, "numpy")
    with pytest.raises(ValueError, match="input and weight are too large for the numpy backend"):
        call()


@pytest.mark.parametrize("call, name", _ABSURD)
def test_absurd_sizes_fail_fast_naming_the_argument(call, name, monkeypatch):
    monkeypatch.setenv("GPUCONV_MAX_BYTES", str(2**30))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=f"{name} is too large"):
        call()
    assert time.perf_counter() - start < HANG_SECONDS


def test_the_size_limit_is_configurable(monkeypatch):
    x = np.zeros((1, 1, 64, 64))
    F.max_pool2d(x, 2)
    monkeypatch.setenv("GPUCONV_MAX_BYTES", "1000")
    with pytest.raises(ValueError, match=r"input is too large.*\(1, 1, 32, 32\), 8,192 bytes"):
        F.max_pool2d(x, 2)
    for bad in ("lots", "-5", "0", "1e30"):
        monkeypatch.setenv("GPUCONV_MAX_BYTES", bad)
        with pytest.raises(ValueError, match="GPUCONV_MAX_BYTES must be a positive integer"):
            F.max_pool2d(x, 2)
    monkeypatch.setenv("GPUCONV_MAX_BYTES", " ")  # blank: unset, as the other settings
    F.max_pool2d(x, 2)


@pytest.mark.parametrize("call, indices_always", [
    (lambda x, **kw: F.max_pool1d(x, 1, **kw), False),
    (lambda x, **kw: F.adaptive_max_pool1d(x, x.shape[2], **kw), True),
], ids=["max_pool1d", "adaptive_max_pool1d"])
def test_max_pooling_counts_its_indices(call, indices_always, monkeypatch):
    """Max pooling's int64 indices are allocated beside its output: 4 + 8 bytes an output of
    float32 must fit the limit (adaptive max pooling computes them even when not returned)."""
    x = np.zeros((1, 1, 1000), np.float32)
    monkeypatch.setenv("GPUCONV_MAX_BYTES", str(12 * 1000))
    call(x, return_indices=True)
    monkeypatch.setenv("GPUCONV_MAX_BYTES", str(12 * 1000 - 1))
    for return_indices in (True, False):
        if return_indices or indices_always:
            with pytest.raises(ValueError, match="the output and its int64 indices would have"):
                call(x, return_indices=return_indices)
        else:
            assert call(x, return_indices=return_indices).shape == x.shape


def test_absurd_sizes_fail_under_the_default_limit():
    """Without the variable, the limit is the machine's memory: 2^40 images do not fit."""
    with pytest.raises(ValueError, match="input is too large"):
        F.conv2d(np.broadcast_to(_ONE, (2**40, 1, 1, 1)), np.zeros((1, 1, 1, 1)))


# A layer's arguments are checked where it is written, not when it is built or trained
# (a NaN slope trained to a diverged model; a kernel_initializer of 1 failed deep in the
# build): (layer made with the value, argument the message must name, bad values)
_NUMBERS = [float("nan"), float("inf"), "0.5", True, None]
_FLAGS = ["False", 1, None, 0.5]
_INITIALIZERS = ["bogus", "He_Normal", None, 1, ("he_normal",)]
_LAYER_ARGS = [
    (lambda v: nn.Conv2D(2, 3, kernel_initializer=v), "kernel_initializer", _INITIALIZERS),
    (lambda v: nn.Conv2DTranspose(2, 3, kernel_initializer=v), "kernel_initializer",
     _INITIALIZERS),
    (lambda v: nn.Dense(3, kernel_initializer=v), "kernel_initializer", _INITIALIZERS),
    (lambda v: nn.Conv2D(2, 3, use_bias=v), "use_bias", _FLAGS),
    (lambda v: nn.Conv2DTranspose(2, 3, use_bias=v), "use_bias", _FLAGS),
    (lambda v: nn.Dense(3, use_bias=v), "use_bias", _FLAGS),
    (lambda v: nn.LeakyReLU(v), "negative_slope", _NUMBERS),
    (lambda v: nn.ELU(v), "alpha", _NUMBERS),
    (lambda v: nn.Dropout(v), "rate", _NUMBERS),
    (lambda v: nn.BatchNorm2D(momentum=v), "momentum", _NUMBERS),
    (lambda v: nn.BatchNorm2D(epsilon=v), "epsilon", _NUMBERS),
]


def _compiled(optimizer="adam"):
    model = nn.Sequential([nn.Flatten(), nn.Dense(3)])
    model.build((1, 2, 2), "cpu", 0)
    model.compile(optimizer)
    return model


XS, YS = _x(4, 1, 2, 2).astype(np.float32), np.array([0, 1, 2, 0])
_UNWRITTEN = os.path.join(tempfile.gettempdir(), "gpuconv-never-written.npz")
_COUNTS = [0.5, 2.0, "2", True, None, float("inf")]
# The training arguments, checked before a step is taken: a log_every of 0 divided by zero,
# a float epochs of inf trained forever, a seed of inf failed deep in NumPy; an optimiser
# of NaN learning rate or epsilon trained to a diverged model.
_FIT_ARGS = [
    (lambda v: _compiled().fit(XS, YS, epochs=v, verbose=0), "epochs", _COUNTS + [-1]),
    (lambda v: _compiled().fit(XS, YS, batch_size=v, verbose=0), "batch_size", _COUNTS + [0]),
    (lambda v: _compiled().fit(XS, YS, log_every=v, verbose=0), "log_every",
     [0.5, "2", True, 0]),
    (lambda v: _compiled().fit(XS, YS, seed=v, verbose=0), "seed", [0.5, "1", True, -1]),
    (lambda v: _compiled().fit(XS, YS, initial_epoch=v, verbose=0), "initial_epoch",
     [0.5, "0", -1]),
    (lambda v: _compiled().fit(XS, YS, shuffle=v, verbose=0), "shuffle", ["False", 0, None]),
    (lambda v: _compiled().fit(XS, YS, validation_split=v, verbose=0), "validation_split",
     ["0.5", float("nan"), 1.0]),
    (lambda v: _compiled().predict(XS, batch_size=v), "batch_size", _COUNTS + [0]),
    (lambda v: _compiled().evaluate(XS, YS, batch_size=v), "batch_size", _COUNTS + [0]),
    (lambda v: nn.Sequential([nn.Flatten(), nn.Dense(3)]).build((1, 2, 2), "cpu", v), "seed",
     [0.5, "1", -1]),
    (lambda v: _compiled({"name": "adam", "learning_rate": v}), "learning_rate",
     [float("nan"), float("inf"), -0.1, "0.1", {}]),
    (lambda v: _compiled({"name": "sgd", "learning_rate": v}), "learning_rate",
     [float("nan"), -1.0, True]),
    (lambda v: _compiled({"name": "adam", "epsilon": v}), "epsilon", [0, float("nan"), "1e-7"]),
    (lambda v: _compiled({"name": "adam", "beta_1": v}), "beta_1", [float("nan"), 1.0, "0.9"]),
    (lambda v: _compiled({"name": "sgd", "weight_decay": v}), "weight_decay",
     [float("nan"), float("inf"), -1.0]),
    (lambda v: _compiled({"name": "sgd", "momentum": v}), "momentum", [float("nan"), 1.0, "0.9"]),
    (lambda v: _compiled({"name": "sgd", "momentum": 0.9, "nesterov": v}), "nesterov",
     ["True", 1]),
    (lambda v: _compiled({"name": "sgd", "learning_rate": {"name": "step", "lr": 0.1,
                                                           "step_size": v}}), "step_size",
     [0, 2.5, "10"]),
    (lambda v: _compiled().fit(v, YS, verbose=0), "x", [XS.astype(str), XS.tolist(),
                                                        np.where(XS > 1, np.nan, XS)]),
    (lambda v: _compiled().fit(XS, v, verbose=0), "y", [YS + 0.5, YS.astype(str), YS.tolist(),
                                                        None, np.full(4, np.inf)]),
    (lambda v: _compiled().fit(v, YS, verbose=0), "x .*at the model's dtype float32",
     [np.full((4, 1, 2, 2), 1e39)]),
    (lambda v: _compiled().fit(XS[:v], YS[:v], verbose=0), "at least one sample", [0]),
    (lambda v: _compiled().fit(XS, YS, validation_split=v, verbose=0), "validation_split",
     [0.99, 0.9]),
    (lambda v: _compiled().fit(XS, YS, validation_data=v, verbose=0), "validation_data",
     [(XS,), (XS, None), (XS, YS, YS), XS]),
    (lambda v: _compiled().fit(XS, YS, callbacks=v, verbose=0), "callbacks", [[1], 5]),
    (lambda v: _compiled().predict(v), "x", [None]),
    (lambda v: _compiled().evaluate(v, YS), "x", [None]),
    (lambda v: _compiled().evaluate(XS, v), "y", [None]),
    (lambda v: nn.Sequential([nn.Flatten(), nn.Dense(3)]).build(v), "input_shape",
     [(3.7, 2, 2), "388", (0, 2, 2), (-1, 2, 2), 5, ()]),
    (lambda v: nn.Sequential([nn.RandomShift(v), nn.Flatten(), nn.Dense(3)]).build((1, 4, 4)),
     "max_shift", [4, 10**12]),
    (lambda v: nn.Sequential([nn.Flatten(), nn.Dense(3)], name=v), "name", [5, None]),
    (lambda v: _compiled().save(_UNWRITTEN, extra=v), "extra", [[1], "s"]),
    (lambda v: nn.Sequential.load("unused.npz", max_bytes=v), "max_bytes", ["1", -1, 1.5]),
    (lambda v: nn.StepDecay(0.1, 1, gamma=v), "gamma", [10.0, -0.5, 0.0]),
    (lambda v: nn.CosineDecay(0.1, 10, final_fraction=v), "final_fraction", [-5.0, 1.5]),
    (lambda v: nn.EarlyStopping(monitor=v), "monitor", [5, None]),
    (lambda v: nn.EarlyStopping(patience=v), "patience", [float("inf"), 1.5, None, -1]),
    (lambda v: nn.EarlyStopping(min_delta=v), "min_delta", [float("nan"), "0.1"]),
    (lambda v: nn.EarlyStopping(restore_best_weights=v), "restore_best_weights", ["no", 1]),
    (lambda v: nn.ModelCheckpoint(v), "filepath", [5, None, "{epoch:99999999999d}.npz", "c-{.npz"]),
    (lambda v: _compiled().fit(XS, YS, callbacks=[nn.ModelCheckpoint(v)], verbose=0),
     "filepath", ["c-{epoch.x}.npz", "c-{lost}.npz",
                  os.path.join(tempfile.gettempdir(), "{epoch:.>250}{epoch:.>250}.npz")]),
    (lambda v: _compiled().fit(XS, YS, device=v, verbose=0), "device", ["bogus", 5]),
    (lambda v: nn.ModelCheckpoint("c.npz", save_best_only=v), "save_best_only", ["yes", 1]),
    (lambda v: nn.ModelCheckpoint("c.npz", extra=v), "extra", [[1], "s"]),
    # where the layer is written, not at its build
    (lambda v: nn.Conv2D(2, v), "kernel_size", [0, -1, (3, 0)]),
    (lambda v: nn.Conv2DTranspose(2, v), "kernel_size", [0, (0, 2)]),
    (lambda v: nn.Conv2D(2, 3, input_shape=v), "input_shape", [5, (0, 2, 2), "abc"]),
    (lambda v: _compiled().set_weights(v), "set_weights needs", [None, 5, [1]]),
    (lambda v: (m := _compiled()).set_weights([np.full_like(w, v) for w in m.get_weights()]),
     "weight dense/kernel holds NaN or infinite", [np.nan, np.inf]),
    (lambda v: (m := _compiled()).set_weights([v] + m.get_weights()[1:]), "weight dense/kernel",
     [[[1, 2], [3]], np.ma.masked_array(np.zeros((4, 3))), "abc"]),
    (lambda v: _compiled().compile("sgd", loss=v), "loss", [[], None, {}]),
    (lambda v: _compiled().compile("sgd", metrics=v), "metrics", [3, [["accuracy"]]]),
    (lambda v: _compiled().evaluate(v, YS), "x holds NaN", [np.where(XS > 0.5, np.nan, XS)]),
    (lambda v: _compiled().fit(v, YS, verbose=0), "x is a masked array", [np.ma.masked_array(XS)]),
]


@pytest.mark.parametrize("call, name, value", [(call, name, value)
                                               for call, name, values in _LAYER_ARGS + _FIT_ARGS
                                               for value in values])
def test_nn_arguments_are_checked_before_use(call, name, value):
    with pytest.raises((ValueError, TypeError), match=name):
        call(value)


def test_a_fit_refused_leaves_the_seed_and_weights_alone():
    model = _compiled()
    before = model.get_weights()
    with pytest.raises(ValueError, match="y must hold whole-number class labels"):
        model.fit(XS, YS + 0.5, seed=99, verbose=0)
    assert model.seed == 0
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("layers", [
    [nn.Conv2D(2**31, 3)], [nn.Conv2DTranspose(2**33, 2)], [nn.Flatten(), nn.Dense(2**40)]])
def test_a_layer_too_large_to_hold_fails_before_its_weights_are_drawn(layers):
    with pytest.raises(ValueError, match="kernel is too large: its initial values would have"):
        nn.Sequential(layers).build((1, 3, 3), "cpu", 0)


@pytest.mark.parametrize("call, name", [
    (lambda v: F.lp_pool2d(X2, v, 2), "norm_type"),
    (lambda v: nn.SGD(learning_rate=v), "learning_rate"),
    (lambda v: nn.LeakyReLU(negative_slope=v), "negative_slope"),
])
def test_an_int_past_a_floats_range_is_a_value_error(call, name):
    with pytest.raises(ValueError, match=f"{name} must be a .*finite number"):
        call(10**400)


class _DuckWithTextDtype:
    shape, ndim, dtype = X2.shape, X2.ndim, "float64"


class _DLPackOnly:
    """A DLPack producer whose module makes no arrays (neither from_dlpack nor asarray)."""

    def __init__(self, array):
        self.array, self.shape, self.dtype, self.ndim = array, array.shape, array.dtype, array.ndim

    def __dlpack__(self, **kwargs):
        return self.array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()


def test_an_array_whose_dtype_is_no_numpy_dtype_is_refused():
    with pytest.raises(TypeError, match="input must be an array with a NumPy dtype"):
        F.max_pool2d(_DuckWithTextDtype(), 2)


def test_an_array_whose_library_cannot_take_the_results_is_refused_first(monkeypatch):
    def no_pooling(*args, **kwargs):
        raise AssertionError("computed although the results could not be returned")
    monkeypatch.setattr(numpy_backend, "max_pool2d", no_pooling)
    with pytest.raises(TypeError, match="results cannot be returned as _DLPackOnly arrays"):
        F.max_pool2d(_DLPackOnly(X2), 2)
