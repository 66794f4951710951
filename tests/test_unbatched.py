"""Unbatched inputs, as PyTorch: every conv and pooling op takes ``(C, L)`` / ``(C, H, W)``,
forward and backward, and returns unbatched results. Checked against PyTorch in float64
(and float32) with random upstream gradients, and against the same op on a batch of one."""

from __future__ import annotations

import numpy as np
import pytest

import gpuconv.functional as F

torch = pytest.importorskip("torch")
TF = torch.nn.functional

# (backend, dtype); numba: Numba's CUDA simulator on a machine without a GPU
RUNS = (("numpy", "float64"), ("numpy", "float32"), ("numba", "float32"))
TOL = {"float64": 1e-12, "float32": 2e-5}


def _rand(rng, shape, dtype):
    return rng.standard_normal(shape).astype(dtype)


def _check(got, expected, dtype):
    np.testing.assert_allclose(np.asarray(got), expected.detach().numpy(), rtol=TOL[dtype],
                               atol=TOL[dtype])


# name -> (spatial dims, weight shape, keyword arguments): conv and transposed conv
CONVS = {
    "conv1d": (1, (4, 1, 3), dict(stride=2, padding=1, groups=2)),
    "conv2d": (2, (4, 2, 3, 2), dict(stride=(2, 1), padding=1, dilation=(1, 2))),
    "conv_transpose1d": (1, (2, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    "conv_transpose2d": (2, (2, 2, 3, 3), dict(stride=2, padding=(1, 0), groups=2)),
}


@pytest.mark.parametrize("backend, dtype", RUNS)
@pytest.mark.parametrize("op", sorted(CONVS))
def test_unbatched_conv_matches_torch(op, backend, dtype):
    nd, w_shape, kw = CONVS[op]
    rng = np.random.default_rng(len(op) + nd)
    x, w, b = (_rand(rng, (2,) + (6,) * nd, dtype), _rand(rng, w_shape, dtype),
               _rand(rng, (w_shape[1] * kw.get("groups", 1) if "transpose" in op
                           else w_shape[0],), dtype))
    forward, backward = getattr(F, op), getattr(F, op + "_backward")
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    yt = getattr(TF, op)(xt, wt, bt, **kw)
    y = forward(x, w, b, **kw, backend=backend)
    assert y.shape == tuple(yt.shape) == (yt.shape[0],) + y.shape[1:]
    _check(y, yt, dtype)
    np.testing.assert_array_equal(y, forward(x[None], w, b, **kw, backend=backend)[0])
    g = _rand(rng, y.shape, dtype)
    yt.backward(torch.tensor(g))
    gx, gw, gb = backward(g, x, w, **kw, backend=backend)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    for got, expected in ((gx, xt.grad), (gw, wt.grad), (gb, bt.grad)):
        _check(got, expected, dtype)
    mask_x, _, _ = backward(g, x, w, **kw, output_mask=(True, False, False), backend=backend)
    np.testing.assert_array_equal(mask_x, gx)


# name -> (spatial dims, keyword arguments, PyTorch's op); backward as gpuconv's op_backward
POOLS = {
    "max_pool1d": (1, dict(kernel_size=3, stride=2, padding=1), TF.max_pool1d),
    "max_pool2d": (2, dict(kernel_size=(3, 2), stride=1, dilation=(1, 2), ceil_mode=True),
                   TF.max_pool2d),
    "avg_pool1d": (1, dict(kernel_size=2, ceil_mode=True, count_include_pad=False),
                   TF.avg_pool1d),
    "avg_pool2d": (2, dict(kernel_size=3, stride=2, padding=1, divisor_override=4),
                   TF.avg_pool2d),
    "adaptive_avg_pool1d": (1, dict(output_size=4), TF.adaptive_avg_pool1d),
    "adaptive_avg_pool2d": (2, dict(output_size=(4, 3)), TF.adaptive_avg_pool2d),
    "adaptive_max_pool1d": (1, dict(output_size=4), TF.adaptive_max_pool1d),
    "adaptive_max_pool2d": (2, dict(output_size=(3, 4)), TF.adaptive_max_pool2d),
    "global_avg_pool2d": (2, {}, lambda x: TF.adaptive_avg_pool2d(x, 1)),
    "global_max_pool2d": (2, {}, lambda x: TF.adaptive_max_pool2d(x, 1)),
    "lp_pool1d": (1, dict(norm_type=2.0, kernel_size=3, stride=2), TF.lp_pool1d),
    "lp_pool2d": (2, dict(norm_type=3.0, kernel_size=2), TF.lp_pool2d),
}


@pytest.mark.parametrize("backend, dtype", RUNS)
@pytest.mark.parametrize("op", sorted(POOLS))
def test_unbatched_pooling_matches_torch(op, backend, dtype):
    nd, kw, torch_op = POOLS[op]
    rng = np.random.default_rng(len(op) + nd)
    x = _rand(rng, (3,) + (7,) * nd, dtype)
    if op.startswith("lp"):
        x = np.abs(x) + 0.5  # a positive input: the p-th root's gradient is finite
    forward, backward = getattr(F, op), getattr(F, op + "_backward")
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_op(xt, **kw)
    takes_indices = "max" in op
    out = forward(x, **kw, **({"return_indices": True} if takes_indices else {}),
                  backend=backend)
    y, extra = (out[0], out[1:]) if takes_indices else (out, ())
    assert y.shape == tuple(yt.shape) and y.ndim == nd + 1
    _check(y, yt, dtype)
    batched = forward(x[None], **kw, **({"return_indices": True} if takes_indices else {}),
                      backend=backend)
    np.testing.assert_array_equal(y, batched[0][0] if takes_indices else batched[0])
    if takes_indices:
        _, idx_t = torch_op(xt.detach(), **kw, return_indices=True) if "global" not in op \
            else TF.adaptive_max_pool2d(xt.detach(), 1, return_indices=True)
        np.testing.assert_array_equal(np.asarray(extra[0]), idx_t.numpy())
    g = _rand(rng, y.shape, dtype)
    yt.backward(torch.tensor(g))
    gx = backward(g, x, *extra, **kw, backend=backend)
    assert gx.shape == x.shape
    _check(gx, xt.grad, dtype)


@pytest.mark.parametrize("op, args", [
    ("conv2d_backward", dict(grad_out=np.zeros((1, 2, 3, 3)), weight=np.zeros((2, 2, 1, 1)))),
    ("max_pool2d_backward", dict(grad_out=np.zeros((2, 3)), indices=np.zeros((2, 3, 3), np.int64),
                                 kernel_size=1)),
    ("max_pool1d_backward", dict(grad_out=np.zeros((2, 3)), indices=np.zeros((1, 2, 3), np.int64),
                                 kernel_size=1)),
])
def test_unbatched_input_needs_unbatched_grad_out_and_indices(op, args):
    x = np.zeros((2, 3, 3) if "2d" in op else (2, 3))
    name = "grad_out" if args["grad_out"].ndim != x.ndim else "indices"
    with pytest.raises(ValueError, match=f"{name} must be {x.ndim}-D without the batch axis"):
        getattr(F, op)(input=x, **args)


@pytest.mark.parametrize("op, shape, args", [
    ("conv1d", (5,), dict(weight=np.zeros((1, 1, 1)))),
    ("conv2d", (5, 5), dict(weight=np.zeros((1, 1, 1, 1)))),
    ("max_pool2d", (1, 1, 1, 5, 5), dict(kernel_size=1)),
    ("avg_pool1d", (7,), dict(kernel_size=1)),
])
def test_input_of_neither_rank_names_both(op, shape, args):
    with pytest.raises(ValueError, match=r"input must be \d-D \(N, C.*\) or \d-D without the "
                                         r"batch axis \(C, .*\), got shape"):
        getattr(F, op)(np.zeros(shape), **args)
