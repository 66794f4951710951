"""Property tests: gpuconv (float64) against torch.nn.functional (float64), on the NumPy
backend and, where a GPU is present, on the CuPy and Numba backends (against PyTorch CUDA).

Hypothesis draws valid hyper-parameters and derives input shapes from them, so
almost nothing is rejected. Forward results, max-pool indices, and gradients
(torch autograd with a random upstream gradient vs gpuconv's ``*_backward`` ops)
must agree.

Mapping to PyTorch: gpuconv's ``padding_mode`` is nn.Conv2d's (F.pad with that mode,
then an unpadded conv); ``padding="same"`` puts an even kernel's extra padding after;
``flip=True`` is torch's correlation with the kernel flipped on every spatial axis.
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")
hypothesis = pytest.importorskip("hypothesis")

import torch.nn.functional as TF  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import gpuconv.functional as F  # noqa: E402
from gpuconv.backends import numpy_backend  # noqa: E402
from gpuconv.shapes import pool_output_size  # noqa: E402
from tests.arrays import GPU_BACKENDS, to_backend, to_numpy  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Using padding=.same.:UserWarning")
SETTINGS = settings(max_examples=40, deadline=None)
BACKENDS = pytest.mark.parametrize("backend", ["numpy"] + GPU_BACKENDS)
MODES = ("zeros", "reflect", "replicate", "circular")
_TORCH_MODE = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}


# --------------------------------------------------------------------------- helpers
def _t(a: np.ndarray, backend: str, grad: bool = False):
    """The reference's tensor: on the GPU when gpuconv runs there."""
    device = "cpu" if backend == "numpy" or not torch.cuda.is_available() else "cuda"
    return torch.tensor(a, dtype=torch.float64, device=device, requires_grad=grad)


def _ours(backend: str, op: str, *args, **kw):
    """gpuconv's ``op`` on ``backend``: array arguments moved there, results back as NumPy."""
    moved = [to_backend(backend, a) if isinstance(a, np.ndarray) else a for a in args]
    out = getattr(F, op)(*moved, **kw, backend=backend)
    return tuple(map(to_numpy, out)) if isinstance(out, tuple) else to_numpy(out)


def _close(ours, ref, what, rtol=1e-10):
    ref = ref.detach().cpu().numpy() if isinstance(ref, torch.Tensor) else np.asarray(ref)
    assert isinstance(ours, np.ndarray), f"{what}: got {type(ours).__name__}"
    assert ours.dtype == np.float64, f"{what}: dtype {ours.dtype}"
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != torch {ref.shape}"
    scale = max(1.0, float(np.abs(ref).max())) if ref.size else 1.0
    np.testing.assert_allclose(ours, ref, rtol=rtol, atol=rtol * scale, err_msg=what)


def _tuple(draw, strategy, nd):
    return tuple(draw(strategy) for _ in range(nd))


def _same_pairs(k, d):
    total = d * (k - 1)
    return total // 2, total - total // 2


def _has_empty_window(n, k, s, p, d, ceil_mode):
    """Brute force: does some window of the sweep hold padding only?"""
    out = pool_output_size(n, k, s, p, d, ceil_mode)
    return any(not any(0 <= o * s - p + j * d < n for j in range(k)) for o in range(out))


def _distinct(rng, shape):
    """Distinct values (ties would make max pooling's index and gradient ambiguous)."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) * 0.25 + rng.uniform(0, 0.1, n)).reshape(shape)


# --------------------------------------------------------------------------- convolution
@st.composite
def conv_cases(draw, nd):
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = _tuple(draw, st.integers(1, 4), nd)
    dilation = _tuple(draw, st.integers(1, 3), nd)
    mode = draw(st.sampled_from(MODES))
    style = draw(st.sampled_from(["int", "tuple", "same", "valid"]))
    if style == "same":
        stride, padding = (1,) * nd, "same"
        pairs = [_same_pairs(k, d) for k, d in zip(kernel, dilation)]
    else:
        stride = _tuple(draw, st.integers(1, 3), nd)
        if style == "valid":
            padding, pads = "valid", (0,) * nd
        elif style == "int":
            padding = draw(st.integers(0, 3))
            pads = (padding,) * nd
        else:
            padding = pads = _tuple(draw, st.integers(0, 3), nd)
        pairs = [(p, p) for p in pads]
    spatial = tuple(
        max(1, d * (k - 1) + 1 - lo - hi, max(lo, hi) + 1) + draw(st.integers(0, 5))
        for k, d, (lo, hi) in zip(kernel, dilation, pairs))
    return dict(x_shape=(draw(st.integers(1, 2)), cin) + spatial,
                w_shape=(cout, cin // groups) + kernel, bias=draw(st.booleans()),
                pairs=pairs, seed=draw(st.integers(0, 2**32 - 1)),
                kw=dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                        padding_mode=mode, flip=draw(st.booleans())))


def _torch_conv(nd, x, w, b, pairs, kw):
    conv = getattr(TF, f"conv{nd}d")
    spatial_dims = tuple(range(2, 2 + nd))
    if kw["flip"]:
        w = w.flip(spatial_dims)
    args = dict(stride=kw["stride"], dilation=kw["dilation"], groups=kw["groups"])
    if kw["padding_mode"] == "zeros":
        return conv(x, w, b, padding=kw["padding"], **args)
    pad = [p for lo_hi in reversed(pairs) for p in lo_hi]  # F.pad: last axis first
    return conv(TF.pad(x, pad, mode=_TORCH_MODE[kw["padding_mode"]]), w, b, padding=0, **args)


def _check_conv(nd, case, backend):
    rng = np.random.default_rng(case["seed"])
    kw = case["kw"]
    x, w = rng.standard_normal(case["x_shape"]), rng.standard_normal(case["w_shape"])
    b = rng.standard_normal(case["w_shape"][0]) if case["bias"] else None
    xt, wt = _t(x, backend, True), _t(w, backend, True)
    bt = _t(b, backend, True) if b is not None else None
    ref = _torch_conv(nd, xt, wt, bt, case["pairs"], kw)
    ours = _ours(backend, f"conv{nd}d", x, w, b, **kw)
    _close(ours, ref, f"conv{nd}d forward {case}")

    g = rng.standard_normal(ours.shape)
    ref.backward(_t(g, backend))
    grad_x, grad_w, grad_b = _ours(backend, f"conv{nd}d_backward", g, x, w, **kw)
    _close(grad_x, xt.grad, f"conv{nd}d grad_input {case}")
    _close(grad_w, wt.grad, f"conv{nd}d grad_weight {case}")
    if bt is not None:
        _close(grad_b, bt.grad, f"conv{nd}d grad_bias {case}")
    else:
        _close(grad_b, _t(g, backend).sum(dim=(0,) + tuple(range(2, 2 + nd))),
               "grad_bias (no bias)")


@BACKENDS
@SETTINGS
@given(conv_cases(1))
def test_conv1d_matches_torch(backend, case):
    _check_conv(1, case, backend)


@BACKENDS
@SETTINGS
@given(conv_cases(2))
def test_conv2d_matches_torch(backend, case):
    _check_conv(2, case, backend)


# --------------------------------------------------------------------------- transposed conv
@st.composite
def conv_transpose_cases(draw, nd):
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = _tuple(draw, st.integers(1, 4), nd)
    stride = _tuple(draw, st.integers(1, 3), nd)
    dilation = _tuple(draw, st.integers(1, 3), nd)
    padding = _tuple(draw, st.integers(0, 3), nd)
    output_padding = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    spatial = []
    for k, s, d, p, op in zip(kernel, stride, dilation, padding, output_padding):
        smallest = 1
        while (smallest - 1) * s - 2 * p + d * (k - 1) + op + 1 <= 0:
            smallest += 1
        spatial.append(smallest + draw(st.integers(0, 4)))
    return dict(x_shape=(draw(st.integers(1, 2)), cin) + tuple(spatial),
                w_shape=(cin, cout // groups) + kernel, bias=draw(st.booleans()),
                seed=draw(st.integers(0, 2**32 - 1)),
                kw=dict(stride=stride, padding=padding, output_padding=output_padding,
                        groups=groups, dilation=dilation))


def _check_conv_transpose(nd, case, backend):
    rng = np.random.default_rng(case["seed"])
    kw = case["kw"]
    x, w = rng.standard_normal(case["x_shape"]), rng.standard_normal(case["w_shape"])
    b = rng.standard_normal(case["w_shape"][1] * kw["groups"]) if case["bias"] else None
    xt, wt = _t(x, backend, True), _t(w, backend, True)
    bt = _t(b, backend, True) if b is not None else None
    ref = getattr(TF, f"conv_transpose{nd}d")(xt, wt, bt, **kw)
    ours = _ours(backend, f"conv_transpose{nd}d", x, w, b, **kw)
    _close(ours, ref, f"conv_transpose{nd}d forward {case}")

    g = rng.standard_normal(ours.shape)
    ref.backward(_t(g, backend))
    grad_x, grad_w, grad_b = _ours(backend, f"conv_transpose{nd}d_backward", g, x, w, **kw)
    _close(grad_x, xt.grad, f"conv_transpose{nd}d grad_input {case}")
    _close(grad_w, wt.grad, f"conv_transpose{nd}d grad_weight {case}")
    if bt is not None:
        _close(grad_b, bt.grad, f"conv_transpose{nd}d grad_bias {case}")


@BACKENDS
@SETTINGS
@given(conv_transpose_cases(1))
def test_conv_transpose1d_matches_torch(backend, case):
    _check_conv_transpose(1, case, backend)


@BACKENDS
@SETTINGS
@given(conv_transpose_cases(2))
def test_conv_transpose2d_matches_torch(backend, case):
    _check_conv_transpose(2, case, backend)


@SETTINGS
@given(conv_cases(2), conv_transpose_cases(2))
def test_numpy_batch_chunks_of_one_sample_match_torch(conv_case, transpose_case):
    """The NumPy backend splits the batch into chunks that fit its buffer budgets; with
    budgets of one byte every sample is its own chunk, and nothing may change."""
    with mock.patch.multiple(numpy_backend, CHUNK_BYTES=1, FOLD_CHUNK_BYTES=1):
        _check_conv(2, conv_case, "numpy")
        _check_conv_transpose(2, transpose_case, "numpy")


# --------------------------------------------------------------------------- max / avg pooling
@st.composite
def pool_cases(draw, nd, with_dilation):
    kernel = _tuple(draw, st.integers(1, 3), nd)
    stride = draw(st.one_of(st.none(), st.tuples(*[st.integers(1, 3)] * nd)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = _tuple(draw, st.integers(1, 2), nd) if with_dilation else (1,) * nd
    spatial = tuple(max(1, d * (k - 1) + 1 - 2 * p) + draw(st.integers(0, 5))
                    for k, d, p in zip(kernel, dilation, padding))
    ceil_mode = draw(st.booleans())
    # gpuconv rejects a sweep with a window entirely in the padding (PyTorch returns -inf
    # with an index outside the input there); such draws are rare
    hypothesis.assume(not any(
        _has_empty_window(n, k, s, p, d, ceil_mode) for n, k, s, p, d in
        zip(spatial, kernel, stride or kernel, padding, dilation)))
    kw = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    if with_dilation:
        kw["dilation"] = dilation
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3))) + spatial, kw=kw,
                seed=draw(st.integers(0, 2**32 - 1)))


def _check_max_pool(nd, case, backend):
    rng = np.random.default_rng(case["seed"])
    kw = case["kw"]
    x = _distinct(rng, case["shape"])
    xt = _t(x, backend, True)
    ref, ref_idx = getattr(TF, f"max_pool{nd}d")(xt, return_indices=True, **kw)
    ours, idx = _ours(backend, f"max_pool{nd}d", x, return_indices=True, **kw)
    _close(ours, ref, f"max_pool{nd}d forward {case}", rtol=0)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, ref_idx.cpu().numpy(), err_msg=f"indices {case}")
    assert np.array_equal(ours, _ours(backend, f"max_pool{nd}d", x, **kw))

    g = rng.standard_normal(ours.shape)
    ref.backward(_t(g, backend))
    grad = _ours(backend, f"max_pool{nd}d_backward", g, x, idx, **kw)
    _close(grad, xt.grad, f"max_pool{nd}d grad_input {case}")


@BACKENDS
@SETTINGS
@given(pool_cases(1, with_dilation=True))
def test_max_pool1d_matches_torch(backend, case):
    _check_max_pool(1, case, backend)


@BACKENDS
@SETTINGS
@given(pool_cases(2, with_dilation=True))
def test_max_pool2d_matches_torch(backend, case):
    _check_max_pool(2, case, backend)


@BACKENDS
@SETTINGS
@given(pool_cases(2, with_dilation=False), st.booleans(),
       st.one_of(st.none(), st.integers(1, 5)))
def test_avg_pool2d_matches_torch(backend, case, count_include_pad, divisor_override):
    rng = np.random.default_rng(case["seed"])
    kw = dict(case["kw"], count_include_pad=count_include_pad, divisor_override=divisor_override)
    x = rng.standard_normal(case["shape"])
    xt = _t(x, backend, True)
    ref = TF.avg_pool2d(xt, **kw)
    ours = _ours(backend, "avg_pool2d", x, **kw)
    _close(ours, ref, f"avg_pool2d forward {kw}")

    g = rng.standard_normal(ours.shape)
    ref.backward(_t(g, backend))
    _close(_ours(backend, "avg_pool2d_backward", g, x, **kw), xt.grad, f"avg_pool2d grad_input {kw}")


# --------------------------------------------------------------------------- adaptive pooling
@st.composite
def adaptive_cases(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)),
             draw(st.integers(1, 8)), draw(st.integers(1, 8)))
    out = draw(st.one_of(st.integers(1, 8),
                         st.tuples(st.one_of(st.none(), st.integers(1, 8)),
                                   st.one_of(st.none(), st.integers(1, 8)))))
    return dict(shape=shape, output_size=out, seed=draw(st.integers(0, 2**32 - 1)))


@BACKENDS
@SETTINGS
@given(adaptive_cases())
def test_adaptive_avg_pool2d_matches_torch(backend, case):
    rng = np.random.default_rng(case["seed"])
    out = case["output_size"]
    x = rng.standard_normal(case["shape"])
    xt = _t(x, backend, True)
    ref = TF.adaptive_avg_pool2d(xt, out)
    ours = _ours(backend, "adaptive_avg_pool2d", x, out)
    _close(ours, ref, f"adaptive_avg_pool2d forward {case}")

    g = rng.standard_normal(ours.shape)
    ref.backward(_t(g, backend))
    _close(_ours(backend, "adaptive_avg_pool2d_backward", g, x, out), xt.grad,
           f"adaptive_avg_pool2d grad_input {case}")


@BACKENDS
@SETTINGS
@given(adaptive_cases())
def test_adaptive_max_pool2d_matches_torch(backend, case):
    rng = np.random.default_rng(case["seed"])
    out = case["output_size"]
    x = _distinct(rng, case["shape"])
    xt = _t(x, backend, True)
    ref, ref_idx = TF.adaptive_max_pool2d(xt, out, return_indices=True)
    ours, idx = _ours(backend, "adaptive_max_pool2d", x, out, return_indices=True)
    _close(ours, ref, f"adaptive_max_pool2d forward {case}", rtol=0)
    np.testing.assert_array_equal(idx, ref_idx.cpu().numpy(), err_msg=f"indices {case}")

    g = rng.standard_normal(ours.shape)
    ref.backward(_t(g, backend))
    _close(_ours(backend, "adaptive_max_pool2d_backward", g, x, idx, out), xt.grad,
           f"adaptive_max_pool2d grad_input {case}")


# --------------------------------------------------------------------------- lp pooling
@BACKENDS
@SETTINGS
@given(pool_cases(2, with_dilation=False), st.sampled_from([1, 2, 3, 1.5, 4.0]))
def test_lp_pool2d_matches_torch(backend, case, norm_type):
    rng = np.random.default_rng(case["seed"])
    kw = dict(kernel_size=case["kw"]["kernel_size"], stride=case["kw"]["stride"],
              ceil_mode=case["kw"]["ceil_mode"])
    # lp pooling has no padding: grow the input so the window fits
    shape = case["shape"][:2] + tuple(max(n, k) for n, k in zip(case["shape"][2:],
                                                                kw["kernel_size"]))
    # positive inputs: odd and fractional powers of negative numbers are NaN in both
    x = rng.uniform(0.1, 2.0, shape)
    xt = _t(x, backend, True)
    ref = TF.lp_pool2d(xt, norm_type, **kw)
    ours = _ours(backend, "lp_pool2d", x, norm_type, **kw)
    _close(ours, ref, f"lp_pool2d forward p={norm_type} {kw}", rtol=1e-9)

    g = rng.standard_normal(ours.shape)
    ref.backward(_t(g, backend))
    _close(_ours(backend, "lp_pool2d_backward", g, x, norm_type, **kw), xt.grad,
           f"lp_pool2d grad_input p={norm_type} {kw}", rtol=1e-9)
