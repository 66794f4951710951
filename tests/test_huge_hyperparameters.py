"""Hyper-parameters far larger than the input, which PyTorch accepts: a stride that places
one window, a ceil_mode window that overhangs the input, a one-tap kernel's dilation. The
specs the ops run (``ConvSpec.bounded``, ``PoolSpec.bounded``) keep every window's taps, with
sizes bounded by the padded input; before them a stride of 2**31 looped once per stride
phase (a hang), a 2**31 pooling kernel allocated per tap (MemoryError) and the CuPy kernels
took it as a 32-bit int (wrong maxima). Each huge call must give what the same op with
small hyper-parameters gives, on every backend."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpuconv.functional as F
from gpuconv.shapes import ConvSpec, PoolSpec
from tests.arrays import to_backend, to_numpy
from test_golden import BACKENDS, api_name, host_cupy, reference_kernels  # noqa: F401 (fixtures)

HUGE = (2**31, 2**40, 2**62)
sizes = st.one_of(st.integers(1, 9), st.sampled_from(HUGE))


def _taps(start: int, step: int, count: int, lo: int, hi: int) -> range:
    """Positions ``start + step*t`` (t < count) that fall in [lo, hi), as a range."""
    first = max(0, -(-(lo - start) // step))
    last = min(count, -(-(hi - start) // step))  # one past the last t inside
    return range(start + step * first, start + step * max(first, last), step)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 9), k=sizes, s=sizes, p=st.integers(0, 4), d=sizes, ceil=st.booleans())
def test_bounded_pooling_keeps_every_window(n, k, s, p, d, ceil):
    try:
        spec = PoolSpec.make(1, k, s, p, d, ceil)
        out = spec.checked_output_shape((n,))
    except ValueError:
        return
    bounded = spec.bounded((n,))
    assert bounded.output_shape((n,)) == out
    assert max(bounded.kernel_size + bounded.stride + bounded.dilation) <= n + 2 * p
    for o in range(out[0]):
        # the padded input's positions each window reads: the input's for maxima, the
        # padding's too for divisors
        assert (_taps(o * bounded.stride[0] - p, bounded.dilation[0], bounded.kernel_size[0],
                      -p, n + p)
                == _taps(o * s - p, d, k, -p, n + p)), (o, spec, bounded)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 9), k=st.integers(1, 4), s=sizes, lo=st.integers(0, 3),
       hi=st.integers(0, 3), d=sizes, op=sizes, transposed=st.booleans())
def test_bounded_conv_keeps_every_tap(n, k, s, lo, hi, d, op, transposed):
    try:
        spec = ConvSpec.make(1, (k,), s, ((lo, hi),), d, output_padding=op if transposed else 0,
                             transposed=transposed)
        out = (spec.checked_transpose_output_shape if transposed else
               spec.checked_output_shape)((n,), (k,))
    except ValueError:
        return
    small, big = ((n,), out) if transposed else (out, (n,))
    if big[0] > 10**6:  # a size the ops refuse (the output's bytes)
        return
    bounded = spec.bounded(small, big, (k,))
    assert (bounded.transpose_output_shape((n,), (k,)) if transposed else
            bounded.output_shape((n,), (k,))) == out
    assert max(bounded.stride + bounded.dilation) <= big[0] + lo + hi
    if transposed:
        assert all(o < max(st_, dl) for o, st_, dl in
                   zip(bounded.output_padding, bounded.stride, bounded.dilation))
    # position i of the small side reads (or, transposed, writes) padded big position
    # i*s + t*d with tap t: the same ones inside the padded big side
    for i in range(small[0]):
        assert (_taps(i * bounded.stride[0], bounded.dilation[0], k, 0, big[0] + lo + hi)
                == _taps(i * s, d, k, 0, big[0] + lo + hi)), (i, spec, bounded)


def _x(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


X, X1d, X1 = _x(2, 3, 6, 5), _x(2, 3, 6), _x(2, 3, 1)
W, WT = _x(4, 3, 2, seed=1), _x(3, 4, 2, seed=2)
GY, GX, GP = _x(2, 4, 1, seed=3), _x(2, 4, 2, seed=4), _x(2, 3, 3, 1, seed=5)

# name: (op, arrays, huge hyper-parameters, small ones that make the same windows). X is
# (2, 3, 6, 5), X1d (2, 3, 6), X1 (2, 3, 1): the one-position side of the transposed convs.
CASES = {
    "max_pool2d-overhanging-kernel": (
        F.max_pool2d, (X,), dict(kernel_size=(2**31, 2), ceil_mode=True, return_indices=True),
        dict(kernel_size=(6, 2), ceil_mode=True, return_indices=True)),
    "max_pool1d-overhanging-dilation": (
        F.max_pool1d, (X1d,), dict(kernel_size=2, stride=2**41, dilation=2**40, ceil_mode=True,
                                   return_indices=True),
        dict(kernel_size=1, stride=6, ceil_mode=True, return_indices=True)),
    "max_pool2d-stride": (F.max_pool2d, (X,), dict(kernel_size=(5, 3), stride=2**62),
                          dict(kernel_size=(5, 3), stride=7)),
    "avg_pool2d-overhanging-kernel": (
        F.avg_pool2d, (X,), dict(kernel_size=(3, 2**40), padding=1, ceil_mode=True),
        dict(kernel_size=(3, 7), padding=1, ceil_mode=True)),
    "avg_pool2d_backward-overhanging-kernel": (
        F.avg_pool2d_backward, (GP, X), dict(kernel_size=(3, 2**31), padding=1, ceil_mode=True,
                                             count_include_pad=False),
        dict(kernel_size=(3, 7), padding=1, ceil_mode=True, count_include_pad=False)),
    "lp_pool2d-stride": (F.lp_pool2d, (X,), dict(norm_type=2.0, kernel_size=(2, 5),
                                                 stride=(2, 2**31 - 1)),
                         dict(norm_type=2.0, kernel_size=(2, 5), stride=(2, 9))),
    "conv1d-stride": (F.conv1d, (X1d, W), dict(stride=2**62), dict(stride=7)),
    "conv1d-one-tap-dilation": (F.conv1d, (X1d, W[:, :, :1]), dict(dilation=2**40),
                                dict(dilation=1)),
    "conv1d_backward-stride": (F.conv1d_backward, (GY, X1d, W), dict(stride=2**31),
                               dict(stride=5)),
    "conv_transpose1d-stride": (F.conv_transpose1d, (X1, WT), dict(stride=2**40),
                                dict(stride=3)),
    "conv_transpose1d_backward-stride": (F.conv_transpose1d_backward, (GX, X1, WT),
                                         dict(stride=2**31), dict(stride=2)),
}
TABLE = [pytest.param(name, backend, id=f"{name}-{backend}")
         for name in CASES for backend in BACKENDS]


@pytest.mark.parametrize("name, backend", TABLE)
def test_huge_hyperparameters_run_as_small_ones(name, backend, host_cupy):
    op, arrays, huge, small = CASES[name]
    args = [to_backend(backend, a.astype(np.float32)) for a in arrays]

    def run(params):
        out = op(*args, **params, backend=api_name(backend))
        return [to_numpy(o) for o in (out if isinstance(out, tuple) else (out,))]
    for got, want in zip(run(huge), run(small)):
        np.testing.assert_array_equal(got, want, err_msg=f"{name} on {backend}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kernel", [7, 2**20, 2**31 - 1])
def test_lp_pooling_keeps_the_kernel_of_an_overhanging_window(kernel, backend, host_cupy):
    """Its result is scaled by the kernel's size (PyTorch's definition): kept, though the
    average runs over the input's 6 positions (PyTorch: the same, and a refusal from 2**31)."""
    if backend == "reference" and kernel > 2**20:
        pytest.skip("the reference pads the input to the whole kernel (plain maths)")
    x = to_backend(backend, np.abs(X1d) + 0.5)
    got = to_numpy(F.lp_pool1d(x, 2.0, kernel, ceil_mode=True, backend=api_name(backend)))
    want = np.sqrt(kernel / 6 * (to_numpy(x) ** 2).sum(axis=2, keepdims=True))
    np.testing.assert_allclose(got, want, rtol=1e-12)
    gy = to_backend(backend, GY[:, :3])
    grad = to_numpy(F.lp_pool1d_backward(gy, x, 2.0, kernel, ceil_mode=True,
                                         backend=api_name(backend)))
    np.testing.assert_allclose(grad, to_numpy(gy) * kernel / 6 * to_numpy(x) / want, rtol=1e-10)


def test_lp_pooling_refuses_kernels_from_2_31():
    with pytest.raises(ValueError, match=r"of Lp pooling must be below 2\*\*31"):
        F.lp_pool1d(X1d, 2.0, 2**31, ceil_mode=True)


def test_a_transposed_conv_checks_its_padded_output():
    """A huge stride and padding leave a short output but a padded grid of 2**40 positions,
    on which the output is gathered: refused like a conv's padded input."""
    with pytest.raises(ValueError, match="padding is too large: the padded output"):
        F.conv_transpose1d(_x(2, 3, 2), WT, stride=2**40, padding=2**39 - 1)
