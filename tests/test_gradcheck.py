"""Float64 central finite-difference checks of every analytic gradient.

For every forward op ``f`` of gpuconv.functional, on tiny shapes:
``L = sum(f(x, w, b) * g)`` with a random upstream gradient ``g``; each element of
every differentiable argument is nudged by +-eps and the difference quotient is
compared with the gradient the matching ``*_backward`` op returns.
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import gpuconv.functional as F

EPS = 1e-6
# Central differences with eps 1e-6 are good to ~1e-9 here (rounding of L over 2 eps;
# the truncation error, eps**2 times a third derivative, is far smaller), so 1e-7
# relative to the largest gradient element leaves a wide margin and still catches a
# gradient that is off by 1e-6.
RTOL = 1e-7


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _distinct(rng, shape):
    """Values at least 0.1 apart (and of both signs): max pooling is differentiable there,
    and a +-eps nudge never changes which element is the maximum."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * 0.1 + rng.uniform(0, 0.01, n)).reshape(shape)


def _numeric_grad(loss, array: np.ndarray) -> np.ndarray:
    """d loss / d array by central differences, nudging ``array`` in place."""
    grad = np.empty_like(array)
    for idx in np.ndindex(array.shape):
        orig = array[idx]
        array[idx] = orig + EPS
        plus = loss()
        array[idx] = orig - EPS
        minus = loss()
        array[idx] = orig
        grad[idx] = (plus - minus) / (2 * EPS)
    return grad


def _assert_grad_close(analytic, numeric, what):
    assert analytic is not None, f"{what}: no gradient returned"
    assert isinstance(analytic, np.ndarray), f"{what}: {type(analytic)}"
    assert analytic.dtype == np.float64, f"{what}: dtype {analytic.dtype}"
    assert analytic.shape == numeric.shape, f"{what}: shape {analytic.shape} != {numeric.shape}"
    scale = float(np.abs(numeric).max())
    assert scale > 0, f"{what}: the loss does not depend on it; the check would be vacuous"
    np.testing.assert_allclose(analytic, numeric, rtol=RTOL, atol=RTOL * scale, err_msg=what)


# --------------------------------------------------------------------------- convolution
_CONV = [
    # (nd, input shape, weight shape, keyword arguments)
    (1, (2, 3, 7), (4, 3, 3), {}),
    (1, (2, 2, 8), (3, 2, 3), dict(stride=2, padding=1)),
    (1, (1, 2, 9), (2, 2, 3), dict(dilation=2, padding=2)),
    (1, (1, 2, 9), (2, 2, 2), dict(stride=3)),                      # uncovered inputs
    (1, (2, 4, 6), (4, 2, 3), dict(groups=2, padding=1)),
    (1, (1, 3, 6), (6, 1, 3), dict(groups=3, stride=2, padding=1)),  # depthwise, multiplier 2
    (1, (1, 2, 7), (2, 2, 4), dict(padding="same")),                # even kernel: extra after
    (1, (1, 2, 7), (2, 2, 2), dict(padding="same", dilation=3)),
    (1, (1, 2, 6), (3, 2, 3), dict(padding=2, padding_mode="reflect")),
    (1, (1, 2, 6), (3, 2, 3), dict(padding=2, stride=2, padding_mode="replicate")),
    (1, (1, 2, 5), (3, 2, 3), dict(padding=3, padding_mode="circular")),
    (1, (1, 2, 6), (2, 2, 3), dict(padding=1, stride=2, flip=True)),
    (2, (2, 2, 5, 4), (3, 2, 2, 3), {}),
    (2, (1, 2, 7, 6), (2, 2, 3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2))),
    (2, (1, 2, 7, 7), (2, 2, 3, 3), dict(stride=2, dilation=2, padding=2)),
    (2, (1, 1, 7, 8), (2, 1, 2, 2), dict(stride=3)),
    (2, (2, 4, 5, 5), (6, 2, 3, 3), dict(groups=2, stride=2, padding=1)),
    (2, (1, 3, 5, 4), (3, 1, 3, 2), dict(groups=3, padding=(1, 1))),  # depthwise
    (2, (1, 2, 5, 6), (2, 2, 2, 4), dict(padding="same", dilation=(2, 1))),
    (2, (1, 2, 4, 5), (2, 2, 3, 2), dict(padding=(2, 1), padding_mode="reflect")),
    (2, (1, 2, 4, 5), (2, 2, 2, 3), dict(padding="same", padding_mode="reflect")),
    (2, (1, 2, 4, 5), (2, 2, 3, 3), dict(padding=(1, 2), stride=(1, 2),
                                         padding_mode="replicate")),
    (2, (1, 2, 3, 4), (2, 2, 3, 3), dict(padding=(3, 2), padding_mode="circular")),
    (2, (1, 4, 5, 4), (4, 2, 3, 2), dict(groups=2, padding=1, stride=(1, 2), flip=True)),
]


@pytest.mark.parametrize("nd, x_shape, w_shape, kw", _CONV,
                         ids=[f"conv{c[0]}d-{i}-{c[3]}" for i, c in enumerate(_CONV)])
def test_conv_gradients(nd, x_shape, w_shape, kw):
    rng = _rng(f"conv{nd}d{x_shape}{w_shape}{kw}")
    conv, conv_backward = getattr(F, f"conv{nd}d"), getattr(F, f"conv{nd}d_backward")
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    g = rng.standard_normal(conv(x, w, b, **kw).shape)

    def loss():
        return float(np.vdot(conv(x, w, b, **kw), g))

    grad_x, grad_w, grad_b = conv_backward(g, x, w, **kw)
    _assert_grad_close(grad_x, _numeric_grad(loss, x), "grad_input")
    _assert_grad_close(grad_w, _numeric_grad(loss, w), "grad_weight")
    _assert_grad_close(grad_b, _numeric_grad(loss, b), "grad_bias")


_CONV_T = [
    (1, (2, 2, 4), (2, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    (1, (1, 2, 4), (2, 2, 3), dict(dilation=2, output_padding=1)),     # op < dilation
    (1, (1, 4, 3), (4, 1, 2), dict(groups=2, stride=3, padding=1, output_padding=2)),
    (1, (1, 2, 3), (2, 2, 3), dict(stride=2, dilation=3, output_padding=2)),
    (1, (2, 3, 4), (3, 2, 1), {}),
    (2, (1, 2, 3, 4), (2, 2, 3, 2), dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2),
                                         dilation=(1, 2))),
    (2, (2, 2, 3, 3), (2, 3, 2, 2), dict(stride=2)),
    (2, (1, 4, 3, 2), (4, 1, 3, 3), dict(groups=2, stride=2, padding=1, output_padding=1)),
    (2, (1, 2, 3, 3), (2, 1, 3, 2), dict(dilation=(2, 3), output_padding=(1, 2), padding=1)),
]


@pytest.mark.parametrize("nd, x_shape, w_shape, kw", _CONV_T,
                         ids=[f"conv_transpose{c[0]}d-{i}-{c[3]}" for i, c in enumerate(_CONV_T)])
def test_conv_transpose_gradients(nd, x_shape, w_shape, kw):
    rng = _rng(f"convT{nd}d{x_shape}{w_shape}{kw}")
    op = getattr(F, f"conv_transpose{nd}d")
    op_backward = getattr(F, f"conv_transpose{nd}d_backward")
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * kw.get("groups", 1))
    g = rng.standard_normal(op(x, w, b, **kw).shape)

    def loss():
        return float(np.vdot(op(x, w, b, **kw), g))

    grad_x, grad_w, grad_b = op_backward(g, x, w, **kw)
    _assert_grad_close(grad_x, _numeric_grad(loss, x), "grad_input")
    _assert_grad_close(grad_w, _numeric_grad(loss, w), "grad_weight")
    _assert_grad_close(grad_b, _numeric_grad(loss, b), "grad_bias")


# --------------------------------------------------------------------------- pooling
def _check_pool(name, forward, backward, x):
    """``forward(x)`` -> y; ``backward(g, x)`` -> dL/dx."""
    g = _rng(name + "g").standard_normal(forward(x).shape)

    def loss():
        return float(np.vdot(forward(x), g))

    _assert_grad_close(backward(g, x), _numeric_grad(loss, x), f"{name} grad_input")


_MAX = [
    (1, (2, 2, 7), dict(kernel_size=3, stride=2, padding=1)),
    (1, (1, 2, 8), dict(kernel_size=2, stride=1, dilation=2)),
    (1, (1, 2, 5), dict(kernel_size=2, stride=2, padding=1, ceil_mode=True)),
    (1, (1, 1, 6), dict(kernel_size=3, stride=2, ceil_mode=True)),
    (1, (1, 1, 6), dict(kernel_size=4)),
    (2, (2, 2, 4, 4), dict(kernel_size=2)),
    (2, (1, 2, 5, 6), dict(kernel_size=(2, 3), stride=(2, 1), padding=1)),
    (2, (1, 2, 6, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, (1, 1, 7, 6), dict(kernel_size=2, stride=1, dilation=(2, 3), padding=(1, 0))),
    (2, (1, 1, 5, 5), dict(kernel_size=(1, 3), stride=(3, 1), ceil_mode=True)),
]


@pytest.mark.parametrize("nd, shape, kw", _MAX,
                         ids=[f"max_pool{c[0]}d-{i}-{c[2]}" for i, c in enumerate(_MAX)])
def test_max_pool_gradients(nd, shape, kw):
    name = f"max_pool{nd}d{shape}{kw}"
    pool, pool_backward = getattr(F, f"max_pool{nd}d"), getattr(F, f"max_pool{nd}d_backward")
    x = _distinct(_rng(name), shape)
    _, indices = pool(x, return_indices=True, **kw)
    _check_pool(name, lambda a: pool(a, **kw),
                lambda g, a: pool_backward(g, a, indices, **kw), x)


_AVG = [
    (1, (2, 2, 7), dict(kernel_size=3, stride=2, padding=1)),
    (1, (1, 2, 7), dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    (1, (1, 2, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (1, (1, 2, 6), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                        count_include_pad=False)),
    (1, (1, 1, 8), dict(kernel_size=2, stride=3, divisor_override=3)),
    (2, (2, 2, 4, 4), dict(kernel_size=2)),
    (2, (1, 2, 5, 6), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1))),
    (2, (1, 2, 5, 6), dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1),
                           count_include_pad=False)),
    (2, (1, 1, 6, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True,
                           count_include_pad=False)),
    (2, (1, 1, 6, 5), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)),
    (2, (1, 2, 5, 5), dict(kernel_size=2, stride=2, padding=1, divisor_override=7)),
]


@pytest.mark.parametrize("nd, shape, kw", _AVG,
                         ids=[f"avg_pool{c[0]}d-{i}-{c[2]}" for i, c in enumerate(_AVG)])
def test_avg_pool_gradients(nd, shape, kw):
    name = f"avg_pool{nd}d{shape}{kw}"
    pool, pool_backward = getattr(F, f"avg_pool{nd}d"), getattr(F, f"avg_pool{nd}d_backward")
    x = _rng(name).standard_normal(shape)
    _check_pool(name, lambda a: pool(a, **kw), lambda g, a: pool_backward(g, a, **kw), x)


_ADAPTIVE = [
    (1, (2, 2, 7), 3),
    (1, (1, 2, 3), 5),          # more outputs than inputs: overlapping, repeated windows
    (1, (1, 2, 6), 4),
    (2, (1, 2, 5, 7), (3, 2)),
    (2, (2, 1, 4, 3), (None, 4)),
    (2, (1, 2, 3, 5), (4, 3)),
    (2, (1, 1, 6, 6), 6),
]


@pytest.mark.parametrize("nd, shape, out", _ADAPTIVE,
                         ids=[f"adaptive{c[0]}d-{c[2]}" for c in _ADAPTIVE])
@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive_pool_gradients(kind, nd, shape, out):
    name = f"adaptive_{kind}{nd}d{shape}{out}"
    pool = getattr(F, f"adaptive_{kind}_pool{nd}d")
    pool_backward = getattr(F, f"adaptive_{kind}_pool{nd}d_backward")
    if kind == "avg":
        x = _rng(name).standard_normal(shape)
        _check_pool(name, lambda a: pool(a, out), lambda g, a: pool_backward(g, a, out), x)
    else:
        x = _distinct(_rng(name), shape)
        _, indices = pool(x, out, return_indices=True)
        _check_pool(name, lambda a: pool(a, out),
                    lambda g, a: pool_backward(g, a, indices, out), x)


@pytest.mark.parametrize("shape", [(2, 2, 3, 4), (1, 3, 1, 5), (1, 1, 1, 1)])
def test_global_avg_pool_gradients(shape):
    x = _rng(f"gavg{shape}").standard_normal(shape)
    _check_pool(f"gavg{shape}", F.global_avg_pool2d, F.global_avg_pool2d_backward, x)


@pytest.mark.parametrize("shape", [(2, 2, 3, 4), (1, 3, 1, 5), (1, 1, 1, 1)])
def test_global_max_pool_gradients(shape):
    x = _distinct(_rng(f"gmax{shape}"), shape)
    _, indices = F.global_max_pool2d(x, return_indices=True)
    _check_pool(f"gmax{shape}", F.global_max_pool2d,
                lambda g, a: F.global_max_pool2d_backward(g, a, indices), x)


_LP = [
    (1, (2, 2, 7), dict(norm_type=2, kernel_size=3, stride=2)),
    (1, (1, 2, 7), dict(norm_type=3, kernel_size=2)),
    (1, (1, 2, 7), dict(norm_type=3, kernel_size=3, stride=2, ceil_mode=True)),
    (1, (1, 2, 6), dict(norm_type=1.5, kernel_size=2, stride=1)),
    (2, (2, 2, 4, 4), dict(norm_type=2, kernel_size=2)),
    (2, (1, 2, 5, 6), dict(norm_type=2, kernel_size=(3, 2), stride=(1, 2))),
    (2, (1, 2, 5, 5), dict(norm_type=3, kernel_size=2, stride=2, ceil_mode=True)),
    (2, (1, 1, 5, 4), dict(norm_type=3, kernel_size=(2, 3), stride=1)),
]


@pytest.mark.parametrize("nd, shape, kw", _LP,
                         ids=[f"lp_pool{c[0]}d-{i}-{c[2]}" for i, c in enumerate(_LP)])
def test_lp_pool_gradients(nd, shape, kw):
    name = f"lp_pool{nd}d{shape}{kw}"
    pool, pool_backward = getattr(F, f"lp_pool{nd}d"), getattr(F, f"lp_pool{nd}d_backward")
    rng = _rng(name)
    if kw["norm_type"] == 2:  # x ** 2 is defined for any sign
        x = rng.standard_normal(shape)
    else:  # odd or fractional powers of negative numbers are NaN (as in PyTorch)
        x = rng.uniform(0.3, 2.0, shape)
    _check_pool(name, lambda a: pool(a, **kw), lambda g, a: pool_backward(g, a, **kw), x)


def test_every_forward_op_is_gradchecked():
    """Keep this file in step with the public API."""
    checked = {f"{fam}{nd}d" for fam in ("conv", "conv_transpose", "max_pool", "avg_pool",
                                          "adaptive_avg_pool", "adaptive_max_pool", "lp_pool")
               for nd in (1, 2)} | {"global_avg_pool2d", "global_max_pool2d"}
    forward_ops = {name for name in F.__all__ if not name.endswith("_backward")}
    assert forward_ops == checked
