"""Adjoint identities of the linear ops, on randomly drawn shapes and hyper-parameters.

For a convolution ``y = conv(x, w)``, linear in ``x`` and in ``w`` separately:

    <conv(x, w), y>   == <x, grad_input(y)>          (grad-input is conv's adjoint in x)
    <conv(x, w), y>   == <grad_weight(x, y), w>      (grad-weight is its adjoint in w)
    <convT(x, w), y>  == <x, conv(y, w)>             (the transposed conv IS conv's adjoint)
    <convT(x, w), y>  == <grad_weight_T(x, y), w>

These hold exactly in real arithmetic; float64 results must agree to 1e-10 relative
to the sum of the absolute products (the worst cancellation the sums can have).
"""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv.functional as F

RTOL = 1e-10
MODES = ("zeros", "reflect", "replicate", "circular")
N_CONFIGS = 36


def _same_pairs(k, d):
    total = d * (k - 1)
    return total // 2, total - total // 2


def _draw_conv(rng: np.random.Generator, nd: int):
    """A valid convolution: shapes derived from the hyper-parameters, never rejected."""
    groups = int(rng.integers(1, 4))
    cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(v) for v in rng.integers(1, 5, nd))
    dilation = tuple(int(v) for v in rng.integers(1, 4, nd))
    mode = str(rng.choice(MODES))
    if rng.random() < 0.25:
        stride, padding = (1,) * nd, "same"
        pairs = [_same_pairs(k, d) for k, d in zip(kernel, dilation)]
    else:
        stride = tuple(int(v) for v in rng.integers(1, 4, nd))
        padding = tuple(int(v) for v in rng.integers(0, 3, nd))
        pairs = [(p, p) for p in padding]
    spatial = []
    for k, d, (lo, hi) in zip(kernel, dilation, pairs):
        smallest = max(1, d * (k - 1) + 1 - lo - hi, max(lo, hi) + 1)  # reflect: pad < size
        spatial.append(smallest + int(rng.integers(0, 5)))
    n = int(rng.integers(1, 3))
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
              padding_mode=mode, flip=bool(rng.random() < 0.3))
    return (n, cin) + tuple(spatial), (cout, cin // groups) + kernel, kw


def _draw_conv_transpose(rng: np.random.Generator, nd: int):
    groups = int(rng.integers(1, 4))
    cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(v) for v in rng.integers(1, 5, nd))
    stride = tuple(int(v) for v in rng.integers(1, 4, nd))
    dilation = tuple(int(v) for v in rng.integers(1, 4, nd))
    padding = tuple(int(v) for v in rng.integers(0, 3, nd))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    spatial = []
    for k, s, d, p, op in zip(kernel, stride, dilation, padding, output_padding):
        smallest = 1
        while (smallest - 1) * s - 2 * p + d * (k - 1) + op + 1 <= 0:
            smallest += 1
        spatial.append(smallest + int(rng.integers(0, 4)))
    n = int(rng.integers(1, 3))
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups,
              dilation=dilation)
    return (n, cin) + tuple(spatial), (cin, cout // groups) + kernel, kw


def _assert_same_inner_product(lhs, rhs, scale, what):
    # scale 0: no input element reaches any output (e.g. a 1-tap transposed conv whose
    # every tap lands in the cropped padding); both sides must then be exactly zero
    assert abs(lhs - rhs) <= RTOL * scale, f"{what}: {lhs!r} != {rhs!r} (scale {scale:.3g})"


def _configs():
    """Every third configuration is 1-D, the rest 2-D."""
    params = []
    for seed in range(N_CONFIGS):
        nd = 1 if seed % 3 == 0 else 2
        params.append(pytest.param(seed, nd, id=f"seed{seed}-{nd}d"))
    return params


@pytest.mark.parametrize("seed, nd", _configs())
def test_conv_grad_input_is_the_adjoint(seed, nd):
    rng = np.random.default_rng(1000 + seed)
    x_shape, w_shape, kw = _draw_conv(rng, nd)
    conv, backward = getattr(F, f"conv{nd}d"), getattr(F, f"conv{nd}d_backward")
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    out = conv(x, w, **kw)
    y = rng.standard_normal(out.shape)
    grad_x, grad_w, grad_b = backward(y, x, w, output_mask=(True, False, False), **kw)
    assert grad_w is None and grad_b is None
    assert grad_x.shape == x.shape
    scale = float(np.vdot(conv(np.abs(x), np.abs(w), **kw), np.abs(y)))
    _assert_same_inner_product(float(np.vdot(out, y)), float(np.vdot(x, grad_x)), scale,
                               f"<conv(x), y> vs <x, grad_input(y)> for {x_shape} {w_shape} {kw}")


@pytest.mark.parametrize("seed, nd", _configs())
def test_conv_grad_weight_is_the_adjoint(seed, nd):
    rng = np.random.default_rng(2000 + seed)
    x_shape, w_shape, kw = _draw_conv(rng, nd)
    conv, backward = getattr(F, f"conv{nd}d"), getattr(F, f"conv{nd}d_backward")
    x, w2 = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    w = rng.standard_normal(w_shape)  # the weight grad_weight is taken at: it must not matter
    out = conv(x, w2, **kw)
    y = rng.standard_normal(out.shape)
    grad_x, grad_w, grad_b = backward(y, x, w, output_mask=(False, True, False), **kw)
    assert grad_x is None and grad_b is None
    assert grad_w.shape == w_shape
    scale = float(np.vdot(conv(np.abs(x), np.abs(w2), **kw), np.abs(y)))
    _assert_same_inner_product(float(np.vdot(out, y)), float(np.vdot(grad_w, w2)), scale,
                               f"<conv(x, w'), y> vs <grad_weight(x, y), w'> for "
                               f"{x_shape} {w_shape} {kw}")


@pytest.mark.parametrize("seed, nd", _configs())
def test_conv_grad_bias_is_the_adjoint(seed, nd):
    rng = np.random.default_rng(3000 + seed)
    x_shape, w_shape, kw = _draw_conv(rng, nd)
    conv, backward = getattr(F, f"conv{nd}d"), getattr(F, f"conv{nd}d_backward")
    x, w, b = (rng.standard_normal(x_shape), rng.standard_normal(w_shape),
               rng.standard_normal(w_shape[0]))
    shift = conv(x, w, b, **kw) - conv(x, w, **kw)  # bias broadcast over batch and pixels
    y = rng.standard_normal(shift.shape)
    _, _, grad_b = backward(y, x, w, output_mask=(False, False, True), **kw)
    scale = float(np.vdot(np.abs(shift) + 1, np.abs(y)))
    _assert_same_inner_product(float(np.vdot(shift, y)), float(np.vdot(grad_b, b)), scale,
                               "<bias term, y> vs <grad_bias(y), b>")


@pytest.mark.parametrize("seed, nd", _configs())
def test_conv_transpose_is_the_adjoint_of_conv(seed, nd):
    rng = np.random.default_rng(4000 + seed)
    x_shape, w_shape, kw = _draw_conv_transpose(rng, nd)
    convt, conv = getattr(F, f"conv_transpose{nd}d"), getattr(F, f"conv{nd}d")
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    out = convt(x, w, **kw)
    y = rng.standard_normal(out.shape)
    conv_kw = {k: v for k, v in kw.items() if k != "output_padding"}
    back = conv(y, w, **conv_kw)
    # output_padding >= stride (allowed when < dilation) makes conv(y) longer than x: the
    # extra positions have no counterpart in x
    assert all(b >= n for b, n in zip(back.shape[2:], x_shape[2:]))
    back = back[(slice(None), slice(None)) + tuple(slice(0, n) for n in x_shape[2:])]
    scale = float(np.vdot(convt(np.abs(x), np.abs(w), **kw), np.abs(y)))
    _assert_same_inner_product(float(np.vdot(out, y)), float(np.vdot(x, back)), scale,
                               f"<convT(x), y> vs <x, conv(y)> for {x_shape} {w_shape} {kw}")


@pytest.mark.parametrize("seed, nd", _configs())
def test_conv_transpose_backward_is_the_adjoint(seed, nd):
    rng = np.random.default_rng(5000 + seed)
    x_shape, w_shape, kw = _draw_conv_transpose(rng, nd)
    convt = getattr(F, f"conv_transpose{nd}d")
    backward = getattr(F, f"conv_transpose{nd}d_backward")
    x, w, w2 = (rng.standard_normal(x_shape), rng.standard_normal(w_shape),
                rng.standard_normal(w_shape))
    out = convt(x, w2, **kw)
    y = rng.standard_normal(out.shape)
    grad_x, _, _ = backward(y, x, w2, output_mask=(True, False, False), **kw)
    _, grad_w, _ = backward(y, x, w, output_mask=(False, True, False), **kw)
    scale = float(np.vdot(convt(np.abs(x), np.abs(w2), **kw), np.abs(y)))
    _assert_same_inner_product(float(np.vdot(out, y)), float(np.vdot(x, grad_x)), scale,
                               f"<convT(x), y> vs <x, grad_input(y)> for {x_shape} {w_shape} {kw}")
    _assert_same_inner_product(float(np.vdot(out, y)), float(np.vdot(grad_w, w2)), scale,
                               f"<convT(x, w'), y> vs <grad_weight(x, y), w'> for "
                               f"{x_shape} {w_shape} {kw}")


def test_draws_cover_the_hyperparameter_space():
    """The seeded draws must actually exercise every padding mode, 'same', groups > 1,
    flips, strides and dilations > 1, and output_padding >= stride."""
    seen = set()
    for seed in range(N_CONFIGS):
        nd = 1 if seed % 3 == 0 else 2
        for base in (1000, 2000, 3000):
            _, _, kw = _draw_conv(np.random.default_rng(base + seed), nd)
            seen.add(kw["padding_mode"])
            seen |= {"same"} if kw["padding"] == "same" else set()
            seen |= {"groups"} if kw["groups"] > 1 else set()
            seen |= {"flip"} if kw["flip"] else set()
            seen |= {"stride"} if max(kw["stride"]) > 1 else set()
            seen |= {"dilation"} if max(kw["dilation"]) > 1 else set()
        for base in (4000, 5000):
            _, _, kw = _draw_conv_transpose(np.random.default_rng(base + seed), nd)
            if any(op >= s for op, s in zip(kw["output_padding"], kw["stride"])):
                seen.add("output_padding>=stride")
            if any(op > 0 for op in kw["output_padding"]):
                seen.add("output_padding")
    assert seen >= set(MODES) | {"same", "groups", "flip", "stride", "dilation",
                                  "output_padding", "output_padding>=stride"}


def test_gather_phase_spans_read_exactly_the_outputs_they_need():
    """``numpy_backend._phase_span``, against a position-by-position count: for each
    position of the window in the phase and each tap, the (padding, slice, padding) row it
    builds holds grad_out's position q - offset + t*dilation there, or a zero where that lies
    outside grad_out (windows wholly before or after grad_out included)."""
    from gpuconv.backends.numpy_backend import _phase_span
    rng = np.random.default_rng(7)
    for _ in range(3000):
        stride, dilation, taps = (int(v) for v in rng.integers(1, 4, 3))
        phase, start = int(rng.integers(0, stride)), int(rng.integers(0, 12))
        size, out_size = int(rng.integers(0, 9)), int(rng.integers(1, 9))
        offset = int(rng.integers(-3, 8))
        span = _phase_span((start, size), stride, phase, (slice(0, taps), offset, dilation),
                           out_size)
        positions = [p for p in range(start, start + size) if p % stride == phase]
        if not positions:
            assert span is None
            continue
        first, count, source, (before, after) = span
        assert (first, count) == (positions[0] - start, len(positions))
        row = [None] * before + list(range(source.start, source.stop)) + [None] * after
        for j, p in enumerate(positions):
            for t in range(taps):
                wanted = (p - phase) // stride - offset + t * dilation
                assert row[j + t * dilation] == (wanted if 0 <= wanted < out_size else None)
        assert len(row) == count + (taps - 1) * dilation
