"""Semantics beyond plain numbers: max-pool ties, NaN / inf propagation (as PyTorch),
dtype and array type of results, 1-D ops == 2-D ops on height-1 images,
``output_mask``, determinism, inputs left untouched, and that ``import gpuconv``
does not import torch.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import warnings

import numpy as np
import pytest

import gpuconv.functional as F

try:
    import torch
    import torch.nn.functional as TF
except ImportError:
    torch = TF = None

# inf - inf and 0 * inf are part of what this file tests
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
nan, inf = np.nan, np.inf


def _rng(seed):
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- max-pool ties
def test_max_pool2d_ties_first_in_row_major_order():
    x = np.zeros((1, 1, 4, 4))
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])  # each window's top-left
    y, idx = F.max_pool2d(x, 2, stride=1, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [[0, 1, 2], [4, 5, 6], [8, 9, 10]])


def test_max_pool2d_tie_prefers_earlier_row_over_earlier_column():
    # window rows 0..1, cols 0..1: the maximum 5 sits at (0, 1) and at (1, 0); (0, 1) is
    # first in row-major order even though (1, 0) has the smaller column
    x = np.array([[[[1.0, 5.0], [5.0, 2.0]]]])
    _, idx = F.max_pool2d(x, 2, return_indices=True)
    assert idx[0, 0, 0, 0] == 1
    x = np.array([[[[1.0, 2.0, 7.0], [7.0, 7.0, 3.0], [0.0, 7.0, 7.0]]]])
    _, idx = F.max_pool2d(x, 3, return_indices=True)
    assert idx[0, 0, 0, 0] == 2


def test_max_pool2d_ties_with_padding_and_dilation():
    x = np.ones((1, 1, 3, 3))
    # window (-1, -1) holds (0, 0) only among real positions: its index must be 0
    _, idx = F.max_pool2d(x, 2, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [3, 4]])
    x = np.full((1, 1, 5, 5), 2.0)
    _, idx = F.max_pool2d(x, 2, stride=1, dilation=2, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], np.arange(25).reshape(5, 5)[:3, :3])


def test_max_pool1d_ties():
    x = np.array([[[1.0, 3.0, 3.0, 2.0, 2.0]]])
    _, idx = F.max_pool1d(x, 2, stride=1, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [1, 1, 2, 3])
    _, idx = F.max_pool1d(x, 3, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [1, 1, 3])


def test_adaptive_and_global_max_ties():
    x = np.full((1, 2, 5, 4), 3.0)
    _, idx = F.adaptive_max_pool2d(x, (3, 2), return_indices=True)
    # windows of 5 -> 3 start at rows 0, 1, 3; 4 -> 2 at columns 0, 2
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [4, 6], [12, 14]])
    _, idx = F.global_max_pool2d(x, return_indices=True)
    np.testing.assert_array_equal(idx, np.zeros((1, 2, 1, 1)))
    _, idx = F.adaptive_max_pool1d(np.full((1, 1, 5), 1.0), 3, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [0, 1, 3])


def test_max_pool_tie_gradient_goes_to_the_first_maximum_only():
    x = np.array([[[[4.0, 4.0, 1.0], [4.0, 0.0, 4.0], [2.0, 4.0, 4.0]]]])
    kw = dict(kernel_size=2, stride=1)
    y, idx = F.max_pool2d(x, return_indices=True, **kw)
    g = np.array([[[[0.5, -1.25], [2.0, 3.5]]]])
    grad = F.max_pool2d_backward(g, x, idx, **kw)
    expected = np.zeros_like(x)
    expected[0, 0, 0, 0] += 0.5    # window (0, 0): 4 at (0,0), (0,1), (1,0) -> (0,0)
    expected[0, 0, 0, 1] += -1.25  # window (0, 1): 4 at (0,1), (1,2) -> (0,1)
    expected[0, 0, 1, 0] += 2.0    # window (1, 0): 4 at (1,0), (2,1) -> (1,0)
    expected[0, 0, 1, 2] += 3.5    # window (1, 1): 4 at (1,2), (2,1), (2,2) -> (1,2)
    np.testing.assert_array_equal(grad, expected)
    x1 = np.array([[[4.0, 4.0, 1.0, 4.0]]])
    _, idx1 = F.max_pool1d(x1, 2, stride=1, return_indices=True)
    np.testing.assert_array_equal(idx1[0, 0], [0, 1, 3])
    grad1 = F.max_pool1d_backward(np.array([[[0.5, -1.25, 2.0]]]), x1, idx1, 2, stride=1)
    np.testing.assert_array_equal(grad1[0, 0], [0.5, -1.25, 0.0, 2.0])


@needs_torch
@pytest.mark.parametrize("seed", range(6))
def test_max_pool_ties_match_torch(seed):
    """Heavily tied integer inputs: indices and tie-routed gradients equal PyTorch's."""
    rng = _rng(seed)
    x = rng.integers(0, 3, (2, 2, 7, 6)).astype(np.float64)
    kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=(1, 2),
              ceil_mode=bool(seed % 2))
    y, idx = F.max_pool2d(x, return_indices=True, **kw)
    xt = torch.tensor(x, requires_grad=True)
    yt, idxt = TF.max_pool2d(xt, return_indices=True, **kw)
    np.testing.assert_array_equal(idx, idxt.numpy())
    g = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(F.max_pool2d_backward(g, x, idx, **kw), xt.grad.numpy(),
                               rtol=1e-12, atol=1e-12)
    _, aidx = F.adaptive_max_pool2d(x, (4, 5), return_indices=True)
    np.testing.assert_array_equal(aidx, TF.adaptive_max_pool2d(torch.tensor(x), (4, 5),
                                                               return_indices=True)[1].numpy())
    x1 = rng.integers(0, 2, (1, 3, 9)).astype(np.float64)
    _, idx1 = F.max_pool1d(x1, 3, stride=2, padding=1, return_indices=True)
    np.testing.assert_array_equal(
        idx1, TF.max_pool1d(torch.tensor(x1), 3, 2, 1, return_indices=True)[1].numpy())


# windows that never reach the padding: the NumPy backend's strided-tap path
INSIDE_WINDOWS = [
    dict(kernel_size=2),                                       # tiling (lenet's pools)
    dict(kernel_size=3, stride=2),                             # overlapping
    dict(kernel_size=(2, 3), stride=(3, 1)),                   # gaps between windows
    dict(kernel_size=(3, 2), stride=(1, 2), dilation=(2, 3)),  # dilated
    dict(kernel_size=2, ceil_mode=True),                       # ceil mode, even sizes
]


@needs_torch
@pytest.mark.parametrize("kw", INSIDE_WINDOWS, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_pool_inside_windows_ties_match_torch(kw, dtype):
    """Heavily tied values, windows inside the input: values and indices are PyTorch's."""
    rng = _rng(7)
    x = rng.integers(0, 3, (2, 3, 10, 12)).astype(dtype)
    y, idx = F.max_pool2d(x, return_indices=True, **kw)
    yt, idxt = TF.max_pool2d(torch.tensor(x), return_indices=True, **kw)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, idxt.numpy())


@needs_torch
def test_max_pool_nan_in_some_pieces_of_planes(monkeypatch):
    """Planes pooled in pieces, NaN in two of them: those pieces take the NaN rule's path,
    the others the strided-tap one; values and indices are PyTorch's throughout."""
    from gpuconv import parallel
    monkeypatch.setattr(parallel, "PIECE_BYTES", 4096)  # 7 planes a piece
    x = _rng(8).integers(0, 3, (4, 8, 12, 12)).astype(np.float32)
    x[1, 3, 4, 5] = x[2, 0, 0, 0] = x[2, 0, 0, 1] = nan
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    yt, idxt = TF.max_pool2d(torch.tensor(x), 2, return_indices=True)
    np.testing.assert_array_equal(y, yt.numpy())
    np.testing.assert_array_equal(idx, idxt.numpy())


def test_max_pool_all_minus_inf_window():
    """Every value -inf: the maximum is -inf at the first real position of the window."""
    x = np.full((1, 1, 3, 3), -inf)
    y, idx = F.max_pool2d(x, 2, stride=2, padding=1, return_indices=True)
    assert np.all(y == -inf)
    np.testing.assert_array_equal(idx[0, 0], [[0, 1], [3, 4]])
    if torch is not None:
        np.testing.assert_array_equal(
            idx, TF.max_pool2d(torch.tensor(x), 2, 2, 1, return_indices=True)[1].numpy())


# --------------------------------------------------------------------------- NaN and inf
def _touched(op_on_indicator):
    """Which outputs depend on the marked input: run the (linear) op on the indicator."""
    return op_on_indicator > 0


@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1),
    dict(dilation=2, padding=2, stride=(1, 2)),
    dict(padding=2, padding_mode="reflect"),
    dict(padding=1, padding_mode="replicate"),
    dict(padding=2, padding_mode="circular"),
    dict(padding="same", groups=2),
])
@pytest.mark.parametrize("bad", [nan, inf])
def test_conv2d_nan_inf_reach_exactly_the_touched_outputs(kw, bad):
    rng = _rng(1)
    x = rng.standard_normal((2, 2, 6, 7))
    w = rng.standard_normal((4, 2 // kw.get("groups", 1), 3, 3))
    marker = np.zeros_like(x)
    marker[1, 0, 2, 4] = 1.0
    x[marker == 1] = bad
    y = F.conv2d(x, w, rng.standard_normal(4), **kw)
    touched = _touched(F.conv2d(marker, np.ones_like(w), **kw))
    assert touched.any() and not touched.all()
    np.testing.assert_array_equal(~np.isfinite(y), touched)
    if bad is nan:
        np.testing.assert_array_equal(np.isnan(y), touched)
    if torch is not None and kw.get("padding_mode", "zeros") == "zeros":
        yt = TF.conv2d(torch.tensor(x), torch.tensor(w), None, **kw).numpy()
        np.testing.assert_array_equal(np.isnan(y), np.isnan(yt))
        np.testing.assert_array_equal(np.isinf(y), np.isinf(yt))


def test_conv1d_nan_in_weight_poisons_its_output_channel_only():
    rng = _rng(2)
    x, w = rng.standard_normal((2, 4, 9)), rng.standard_normal((6, 2, 3))
    w[4, 1, 2] = nan
    y = F.conv1d(x, w, groups=2, padding=1)
    assert np.isnan(y[:, 4]).all()
    assert np.isfinite(np.delete(y, 4, axis=1)).all()


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1, output_padding=1),
                                dict(stride=3, dilation=2)])
def test_conv_transpose2d_nan_reaches_exactly_the_touched_outputs(kw):
    rng = _rng(3)
    x, w = rng.standard_normal((1, 2, 4, 5)), rng.standard_normal((2, 3, 3, 2))
    marker = np.zeros_like(x)
    marker[0, 1, 1, 2] = 1.0
    x[marker == 1] = nan
    y = F.conv_transpose2d(x, w, **kw)
    touched = _touched(F.conv_transpose2d(marker, np.ones_like(w), **kw))
    np.testing.assert_array_equal(np.isnan(y), touched)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv2d_backward_nan_in_grad_out_reaches_exactly_the_touched_inputs(mode):
    """The gradient of a NaN upstream gradient: NaN where the output depends on the input,
    as the PyTorch autograd graph (pad, then conv) computes it."""
    rng = _rng(4)
    kw = dict(padding=1, padding_mode=mode)
    x, w = rng.standard_normal((1, 2, 5, 6)), rng.standard_normal((3, 2, 3, 3))
    g = rng.standard_normal(F.conv2d(x, w, **kw).shape)
    marker = np.zeros_like(g)
    marker[0, 1, 0, 0] = 1.0
    g[marker == 1] = nan
    grad_x, grad_w, grad_b = F.conv2d_backward(g, x, w, **kw)
    touched = F.conv2d_backward(marker, x, np.ones_like(w), **kw,
                                output_mask=(True, False, False))[0] > 0
    assert touched.any() and not touched.all()
    if torch is not None:
        xt = torch.tensor(x, requires_grad=True)
        pad = TF.pad(xt, (1, 1, 1, 1), mode="constant" if mode == "zeros" else mode)
        TF.conv2d(pad, torch.tensor(w)).backward(torch.tensor(g))
        np.testing.assert_array_equal(touched, np.isnan(xt.grad.numpy()))
    np.testing.assert_array_equal(np.isnan(grad_x), touched)
    assert np.isnan(grad_w[1]).all() and np.isfinite(np.delete(grad_w, 1, axis=0)).all()
    assert np.isnan(grad_b[1]) and np.isfinite(np.delete(grad_b, 1)).all()


@needs_torch
@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=(2, 1), dilation=(2, 1)),
                                dict(stride=2, padding=1)])
@pytest.mark.parametrize("bad", [nan, inf])
def test_conv2d_backward_non_finite_weight_reaches_what_torch_reaches(kw, bad):
    """A non-finite weight makes grad-input non-finite exactly where PyTorch's is (the
    stride-1 fold must not multiply it by the zeros of its padded rows)."""
    rng = _rng(5)
    x, w = rng.standard_normal((2, 2, 6, 7)), rng.standard_normal((3, 2, 3, 3))
    w[1, 0, 2, 0] = bad
    g = rng.standard_normal(F.conv2d(x, w, **kw).shape)
    grad_x = F.conv2d_backward(g, x, w, **kw, output_mask=(True, False, False))[0]
    xt = torch.tensor(x, requires_grad=True)
    TF.conv2d(xt, torch.tensor(w), **kw).backward(torch.tensor(g))
    reference = xt.grad.numpy()
    assert np.isnan(reference).any() or np.isinf(reference).any()
    np.testing.assert_array_equal(np.isnan(grad_x), np.isnan(reference))
    np.testing.assert_array_equal(np.isinf(grad_x), np.isinf(reference))


@needs_torch
@pytest.mark.parametrize("kw", [dict(groups=2), dict(groups=2, padding=1),
                                dict(groups=2, stride=2, dilation=(1, 2)), dict(padding=1)],
                         ids=["depthwise", "depthwise-padded", "depthwise-strided-past", "dense"])
@pytest.mark.parametrize("bad", [nan, inf])
def test_conv2d_backward_non_finite_input_reaches_what_torch_reaches(kw, bad):
    """A non-finite input makes grad-weight non-finite exactly where PyTorch's is: in the taps
    that read it (none, strided past it), not in those whose runs of the compiled depthwise
    grad-weight's row images reach it in the zero columns past W_out (at the end of a row)."""
    rng = _rng(6)
    x, w = rng.standard_normal((2, 2, 5, 6)), rng.standard_normal((4, 2 // kw.get("groups", 1), 2, 3))
    x[1, 0, 1, 5] = bad
    g = rng.standard_normal(F.conv2d(x, w, **kw).shape)
    grad_w = F.conv2d_backward(g, x, w, **kw, output_mask=(False, True, False))[1]
    wt = torch.tensor(w, requires_grad=True)
    TF.conv2d(torch.tensor(x), wt, **kw).backward(torch.tensor(g))
    reference = wt.grad.numpy()
    np.testing.assert_array_equal(np.isnan(grad_w), np.isnan(reference))
    np.testing.assert_array_equal(np.isinf(grad_w), np.isinf(reference))


def test_max_pool_picks_nan():
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = nan
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 1
    np.testing.assert_array_equal(y[0, 0].ravel()[1:], [7.0, 13.0, 15.0])
    # two NaNs in one window: the last one (PyTorch's ``val > max || isnan(val)`` scan)
    x[0, 0, 1, 0] = nan
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 4
    # NaN beats +inf
    x[0, 0, 2, 2], x[0, 0, 3, 3] = inf, nan
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert np.isnan(y[0, 0, 1, 1]) and idx[0, 0, 1, 1] == 15
    if torch is not None:
        yt, it = TF.max_pool2d(torch.tensor(x), 2, return_indices=True)
        np.testing.assert_array_equal(idx, it.numpy())
        np.testing.assert_array_equal(y, yt.numpy())  # NaNs compare equal here
    g = np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    grad = F.max_pool2d_backward(g, x, idx, 2)
    assert grad[0, 0, 1, 0] == 1.0 and grad[0, 0, 0, 1] == 0.0  # to the chosen NaN


def test_max_pool1d_and_adaptive_max_pick_nan():
    x = np.array([[[1.0, nan, 3.0, 2.0, nan, 0.5]]])
    y, idx = F.max_pool1d(x, 2, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [1, 2, 4])
    assert np.isnan(y[0, 0, [0, 2]]).all() and y[0, 0, 1] == 3.0
    y, idx = F.adaptive_max_pool1d(x, 2, return_indices=True)
    np.testing.assert_array_equal(idx[0, 0], [1, 4])
    y, idx = F.global_max_pool2d(x[:, :, None, :], return_indices=True)
    assert np.isnan(y).all() and idx[0, 0, 0, 0] == 4
    if torch is not None:
        np.testing.assert_array_equal(
            F.adaptive_max_pool1d(x, 4, return_indices=True)[1],
            TF.adaptive_max_pool1d(torch.tensor(x), 4, return_indices=True)[1].numpy())


def test_max_pool_picks_inf():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 3] = inf
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert y[0, 0, 0, 1] == inf and idx[0, 0, 0, 1] == 7 and y[0, 0, 0, 0] == 0.0


@needs_torch
@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("norm_type", [1.0, 2.0, 3.0])
def test_lp_pool_backward_of_zero_and_nan_windows_as_torch(backend, norm_type):
    """PyTorch's lp pooling is (sign(t) * relu(|t|)) ** (1/p) of the window total t: a
    window of zeros passes no gradient, and nor does a NaN window (torch.sign(NaN) is 0)
    unless t ** (1/p - 1) is NaN too (p > 1): p = 1 gives zeros there, p = 2 NaNs."""
    from gpuconv.backends import reference
    from gpuconv.shapes import PoolSpec
    x = _rng(11).uniform(0.5, 2.0, (1, 2, 4, 6))
    x[0, 0, :2, :2] = 0.0
    x[0, 1, 2, 4] = nan
    g = _rng(12).standard_normal((1, 2, 2, 3))
    xt = torch.tensor(x, requires_grad=True)
    TF.lp_pool2d(xt, norm_type, 2).backward(torch.tensor(g))
    want = xt.grad.numpy()
    assert (want[0, 0, :2, :2] == 0).all() and np.isnan(want).any() == (norm_type != 1.0)
    ours = F.lp_pool2d_backward(g, x, norm_type, 2, backend=backend)
    np.testing.assert_allclose(ours, want, rtol=1e-12, atol=0)  # NaN where torch's are
    np.testing.assert_allclose(reference.lp_pool2d_backward(g, x, PoolSpec.make(2, 2), norm_type),
                               want, rtol=1e-12, atol=0)


@needs_torch
@pytest.mark.parametrize("norm_type", [1.5, 0.5])
def test_lp_pool_of_negative_and_zero_inputs_is_torchs_without_a_warning(norm_type):
    """A fractional power of a negative input is NaN, and a zero input's gradient factor
    inf or 0: PyTorch's values, and no NumPy RuntimeWarning (an error under -W error)."""
    x = _rng(13).standard_normal((1, 2, 4, 6))
    x[0, 0, 0, 0] = 0.0
    g = _rng(14).standard_normal((1, 2, 2, 3))
    xt = torch.tensor(x, requires_grad=True)
    want = TF.lp_pool2d(xt, norm_type, 2)
    want.backward(torch.tensor(g))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = F.lp_pool2d(x, norm_type, 2)
        dx = F.lp_pool2d_backward(g, x, norm_type, 2)
    assert np.isnan(y).any()
    np.testing.assert_allclose(y, want.detach().numpy(), rtol=1e-12, atol=0)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=0)


def test_avg_pool_inf_and_nan():
    x = np.ones((1, 1, 4, 6))
    x[0, 0, 0, 0] = inf
    y = F.avg_pool2d(x, 2)
    assert y[0, 0, 0, 0] == inf
    assert np.isfinite(y.ravel()[1:]).all()
    x[0, 0, 1, 1] = -inf  # inf - inf in one window: NaN
    assert np.isnan(F.avg_pool2d(x, 2)[0, 0, 0, 0])
    x = np.ones((1, 1, 4, 6))
    x[0, 0, 2, 3] = nan
    y = F.avg_pool2d(x, 3, stride=1, padding=1)
    touched = F.avg_pool2d((np.arange(24) == 15).astype(float).reshape(x.shape), 3, stride=1,
                           padding=1) > 0
    np.testing.assert_array_equal(np.isnan(y), touched)
    y1 = F.avg_pool1d(np.array([[[1.0, inf, 2.0, 3.0]]]), 2)
    assert y1[0, 0, 0] == inf and y1[0, 0, 1] == 2.5


def test_lp_pool_inf():
    x = np.ones((1, 1, 2, 4))
    x[0, 0, 0, 3] = inf
    y = F.lp_pool2d(x, 2, 2)
    assert y[0, 0, 0, 1] == inf and y[0, 0, 0, 0] == 2.0


@pytest.mark.parametrize("out", [(3, 2), (2, 4), 1])
@pytest.mark.parametrize("bad", [nan, inf])
def test_adaptive_avg_pool2d_nan_inf_reach_only_their_windows(out, bad):
    """As in PyTorch: a non-finite input spoils the windows that hold it, no others."""
    x = _rng(5).standard_normal((1, 2, 6, 5))
    x[0, 1, 4, 1] = bad
    y = F.adaptive_avg_pool2d(x, out)
    marker = np.zeros_like(x)
    marker[0, 1, 4, 1] = 1.0
    touched = F.adaptive_avg_pool2d(np.abs(marker), out) > 0
    np.testing.assert_array_equal(~np.isfinite(y), touched)
    if torch is not None:
        yt = TF.adaptive_avg_pool2d(torch.tensor(x), out).numpy()
        np.testing.assert_array_equal(np.isnan(y), np.isnan(yt))


def test_adaptive_avg_pool2d_backward_nan_reaches_only_its_window():
    x = _rng(6).standard_normal((1, 1, 6, 6))
    g = _rng(7).standard_normal((1, 1, 3, 3))
    g[0, 0, 0, 0] = nan
    grad = F.adaptive_avg_pool2d_backward(g, x, 3)
    expected = np.zeros((6, 6), bool)
    expected[0:2, 0:2] = True
    np.testing.assert_array_equal(np.isnan(grad[0, 0]), expected)


# --------------------------------------------------------------------------- dtype and array type
def _all_calls(dtype):
    """Every public op, called with ``dtype`` arrays: name -> (function, args, kwargs)."""
    rng = _rng(8)

    def a(*shape, positive=False):
        v = rng.standard_normal(shape)
        return (np.abs(v) + 0.5 if positive else v).astype(dtype)

    calls = {}
    for nd in (1, 2):
        s = lambda n, nd=nd: (n,) * nd  # noqa: E731
        d = f"{nd}d"
        x, w, b = a(2, 4, *s(6)), a(6, 2, *s(3)), a(6)
        ckw = dict(stride=2, padding=1, groups=2)
        calls[f"conv{d}"] = (getattr(F, f"conv{d}"), (x, w, b), ckw)
        calls[f"conv{d}_backward"] = (getattr(F, f"conv{d}_backward"),
                                      (a(2, 6, *s(3)), x, w), ckw)
        xt, wt = a(2, 4, *s(3)), a(4, 3, *s(3))
        tkw = dict(stride=2, padding=1, output_padding=1, groups=2)
        calls[f"conv_transpose{d}"] = (getattr(F, f"conv_transpose{d}"), (xt, wt, b), tkw)
        calls[f"conv_transpose{d}_backward"] = (getattr(F, f"conv_transpose{d}_backward"),
                                                (a(2, 6, *s(6)), xt, wt), tkw)
        xp = a(2, 3, *s(6))
        pkw = dict(kernel_size=3, stride=2, padding=1)
        _, idx = getattr(F, f"max_pool{d}")(xp, return_indices=True, **pkw)
        calls[f"max_pool{d}"] = (getattr(F, f"max_pool{d}"), (xp,), pkw)
        calls[f"max_pool{d}_backward"] = (getattr(F, f"max_pool{d}_backward"),
                                          (a(2, 3, *s(3)), xp, idx), pkw)
        calls[f"avg_pool{d}"] = (getattr(F, f"avg_pool{d}"), (xp,), pkw)
        calls[f"avg_pool{d}_backward"] = (getattr(F, f"avg_pool{d}_backward"),
                                          (a(2, 3, *s(3)), xp), pkw)
        xpos = a(2, 3, *s(6), positive=True)
        calls[f"lp_pool{d}"] = (getattr(F, f"lp_pool{d}"), (xpos, 3, 2), {})
        calls[f"lp_pool{d}_backward"] = (getattr(F, f"lp_pool{d}_backward"),
                                         (a(2, 3, *s(3)), xpos, 3, 2), {})
        calls[f"adaptive_avg_pool{d}"] = (getattr(F, f"adaptive_avg_pool{d}"), (xp, 4), {})
        calls[f"adaptive_avg_pool{d}_backward"] = (getattr(F, f"adaptive_avg_pool{d}_backward"),
                                                   (a(2, 3, *s(4)), xp, 4), {})
        _, aidx = getattr(F, f"adaptive_max_pool{d}")(xp, 4, return_indices=True)
        calls[f"adaptive_max_pool{d}"] = (getattr(F, f"adaptive_max_pool{d}"), (xp, 4), {})
        calls[f"adaptive_max_pool{d}_backward"] = (getattr(F, f"adaptive_max_pool{d}_backward"),
                                                   (a(2, 3, *s(4)), xp, aidx, 4), {})
    xg = a(2, 3, 4, 5)
    _, gidx = F.global_max_pool2d(xg, return_indices=True)
    calls["global_avg_pool2d"] = (F.global_avg_pool2d, (xg,), {})
    calls["global_avg_pool2d_backward"] = (F.global_avg_pool2d_backward, (a(2, 3, 1, 1), xg), {})
    calls["global_max_pool2d"] = (F.global_max_pool2d, (xg,), {})
    calls["global_max_pool2d_backward"] = (F.global_max_pool2d_backward,
                                           (a(2, 3, 1, 1), xg, gidx), {})
    assert set(calls) == set(F.__all__)
    return calls


def _results(out):
    return list(out) if isinstance(out, tuple) else [out]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(F.__all__))
def test_results_keep_dtype_and_array_type(name, dtype):
    fn, args, kwargs = _all_calls(dtype)[name]
    results = _results(fn(*args, **kwargs))
    if "max_pool" in name and not name.endswith("_backward"):
        y, idx = fn(*args, return_indices=True, **kwargs)
        assert type(idx) is np.ndarray and idx.dtype == np.int64 and idx.shape == y.shape
    for r in results:
        assert type(r) is np.ndarray, f"{name}: {type(r)}"
        assert r.dtype == dtype, f"{name}: {r.dtype} from {np.dtype(dtype)} inputs"
        assert np.isfinite(r).all()


@pytest.mark.parametrize("name", sorted(F.__all__))
def test_float32_agrees_with_float64(name):
    fn, args32, kwargs = _all_calls(np.float32)[name]
    args64 = tuple(a.astype(np.float64) if isinstance(a, np.ndarray) and a.dtype == np.float32
                   else a for a in args32)  # the very same values, widened
    for r32, r64 in zip(_results(fn(*args32, **kwargs)), _results(fn(*args64, **kwargs))):
        np.testing.assert_allclose(r32, r64, rtol=1e-4, atol=1e-5 * max(1, np.abs(r64).max()))


# --------------------------------------------------------------------------- 1-D == 2-D, height 1
def _h1(a):
    return a[:, :, None, :]


@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1, dilation=2, groups=2),
    dict(padding="same", dilation=2),
    dict(padding=2, padding_mode="reflect", flip=True),
    dict(padding=1, padding_mode="replicate", stride=3),
    dict(padding=3, padding_mode="circular"),
])
def test_conv1d_equals_conv2d_on_height_one(kw):
    rng = _rng(9)
    x, b = rng.standard_normal((2, 4, 9)), rng.standard_normal(6)
    w = rng.standard_normal((6, 4 // kw.get("groups", 1), 4))
    kw2 = {k: v for k, v in kw.items() if k not in ("stride", "padding", "dilation")}
    kw2.update(stride=(1, kw.get("stride", 1)), dilation=(1, kw.get("dilation", 1)),
               padding=kw.get("padding", 0) if isinstance(kw.get("padding"), str)
               else (0, kw.get("padding", 0)))
    y1 = F.conv1d(x, w, b, **kw)
    y2 = F.conv2d(_h1(x), _h1(w), b, **kw2)
    np.testing.assert_allclose(y1, y2[:, :, 0], rtol=1e-13, atol=1e-13)
    g = rng.standard_normal(y1.shape)
    for g1, g2 in zip(F.conv1d_backward(g, x, w, **kw), F.conv2d_backward(_h1(g), _h1(x), _h1(w),
                                                                           **kw2)):
        g2 = g2 if g2.ndim == 1 else g2[:, :, 0]
        np.testing.assert_allclose(g1, g2, rtol=1e-13, atol=1e-13)


# (op, input shape, weight shape, arguments): kernels of distinct sizes on every axis
_FLIPS = [
    ("conv1d", (2, 3, 9), (4, 3, 3), dict(padding=1)),
    ("conv2d", (2, 3, 7, 8), (4, 3, 3, 2), dict(padding=1)),
    ("conv2d", (1, 4, 6, 7), (4, 2, 2, 3), dict(stride=(2, 1), dilation=(1, 2), groups=2)),
    ("conv2d", (1, 2, 5, 6), (3, 2, 4, 3), dict(padding=(1, 2), padding_mode="reflect")),
]


@needs_torch
@pytest.mark.parametrize("op, x_shape, w_shape, kw", _FLIPS,
                         ids=[f"{op}-k{'x'.join(map(str, w[2:]))}-{i}"
                              for i, (op, _, w, _) in enumerate(_FLIPS)])
def test_flip_is_correlation_with_the_kernel_reversed_on_every_axis(op, x_shape, w_shape, kw):
    """flip=True (true convolution) equals PyTorch's correlation (float64) with the weight
    reversed on every spatial axis, forward and backward (random upstream gradient)."""
    rng = _rng(31)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dims = tuple(range(2, len(w_shape)))
    xt, wt = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    mode = kw.get("padding_mode", "zeros")
    torch_kw = {k: v for k, v in kw.items() if k not in ("padding", "padding_mode")}
    pad = kw.get("padding", 0)
    pads = (pad,) * len(dims) if isinstance(pad, int) else pad
    xp = TF.pad(xt, [p for q in reversed(pads) for p in (q, q)],
                mode="constant" if mode == "zeros" else mode)
    yt = getattr(TF, op)(xp, wt.flip(dims), **torch_kw)
    y = getattr(F, op)(x, w, **kw, flip=True)
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(g))
    gx, gw, _ = getattr(F, f"{op}_backward")(g, x, w, **kw, flip=True)
    np.testing.assert_allclose(gx, xt.grad.numpy(), rtol=1e-12, atol=1e-12,
                               err_msg="grad_input")
    np.testing.assert_allclose(gw, wt.grad.numpy(), rtol=1e-12, atol=1e-12,
                               err_msg="grad_weight")


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1, output_padding=1, groups=2),
                                dict(stride=1, dilation=3, output_padding=2)])
def test_conv_transpose1d_equals_conv_transpose2d_on_height_one(kw):
    rng = _rng(10)
    x, w, b = rng.standard_normal((2, 4, 5)), rng.standard_normal((4, 3, 3)), None
    kw2 = dict(stride=(1, kw.get("stride", 1)), padding=(0, kw.get("padding", 0)),
               output_padding=(0, kw.get("output_padding", 0)), groups=kw.get("groups", 1),
               dilation=(1, kw.get("dilation", 1)))
    y1 = F.conv_transpose1d(x, w, b, **kw)
    y2 = F.conv_transpose2d(_h1(x), _h1(w), b, **kw2)
    np.testing.assert_allclose(y1, y2[:, :, 0], rtol=1e-13, atol=1e-13)
    g = rng.standard_normal(y1.shape)
    for g1, g2 in zip(F.conv_transpose1d_backward(g, x, w, **kw),
                      F.conv_transpose2d_backward(_h1(g), _h1(x), _h1(w), **kw2)):
        g2 = g2 if g2.ndim == 1 else g2[:, :, 0]
        np.testing.assert_allclose(g1, g2, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("k, s, p, d, ceil_mode", [(2, None, 0, 1, False), (3, 2, 1, 1, True),
                                                   (2, 1, 1, 2, False), (3, 3, 1, 1, True)])
def test_pools_1d_equal_2d_on_height_one(k, s, p, d, ceil_mode):
    rng = _rng(11)
    n = 10
    x = rng.permutation(2 * 3 * n).reshape(2, 3, n) * 0.5 - 7.0
    kw1 = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil_mode)
    kw2 = dict(kernel_size=(1, k), stride=None if s is None else (1, s), padding=(0, p),
               ceil_mode=ceil_mode)
    # max
    y1, i1 = F.max_pool1d(x, dilation=d, return_indices=True, **kw1)
    y2, i2 = F.max_pool2d(_h1(x), dilation=(1, d), return_indices=True, **kw2)
    np.testing.assert_array_equal(y1, y2[:, :, 0])
    np.testing.assert_array_equal(i1, i2[:, :, 0])
    g = rng.standard_normal(y1.shape)
    np.testing.assert_array_equal(
        F.max_pool1d_backward(g, x, i1, dilation=d, **kw1),
        F.max_pool2d_backward(_h1(g), _h1(x), i2, dilation=(1, d), **kw2)[:, :, 0])
    # avg, both count_include_pad
    for cip in (True, False):
        y1 = F.avg_pool1d(x, count_include_pad=cip, **kw1)
        np.testing.assert_allclose(y1, F.avg_pool2d(_h1(x), count_include_pad=cip,
                                                    **kw2)[:, :, 0], rtol=1e-14)
        g = rng.standard_normal(y1.shape)
        np.testing.assert_allclose(
            F.avg_pool1d_backward(g, x, count_include_pad=cip, **kw1),
            F.avg_pool2d_backward(_h1(g), _h1(x), count_include_pad=cip, **kw2)[:, :, 0],
            rtol=1e-14)
    # lp (no padding)
    xp = np.abs(x) + 0.1
    lkw1 = dict(kernel_size=k, stride=s, ceil_mode=ceil_mode)
    lkw2 = dict(kernel_size=(1, k), stride=None if s is None else (1, s), ceil_mode=ceil_mode)
    y1 = F.lp_pool1d(xp, 3, **lkw1)
    np.testing.assert_allclose(y1, F.lp_pool2d(_h1(xp), 3, **lkw2)[:, :, 0], rtol=1e-14)
    g = rng.standard_normal(y1.shape)
    np.testing.assert_allclose(F.lp_pool1d_backward(g, xp, 3, **lkw1),
                               F.lp_pool2d_backward(_h1(g), _h1(xp), 3, **lkw2)[:, :, 0],
                               rtol=1e-13)


@pytest.mark.parametrize("out", [1, 3, 7, 13])
def test_adaptive_pools_1d_equal_2d_on_height_one(out):
    rng = _rng(12)
    x = rng.permutation(2 * 2 * 10).reshape(2, 2, 10) * 0.25
    np.testing.assert_allclose(F.adaptive_avg_pool1d(x, out),
                               F.adaptive_avg_pool2d(_h1(x), (1, out))[:, :, 0], rtol=1e-14)
    g = rng.standard_normal((2, 2, out))
    np.testing.assert_allclose(F.adaptive_avg_pool1d_backward(g, x, out),
                               F.adaptive_avg_pool2d_backward(_h1(g), _h1(x), (1, out))[:, :, 0],
                               rtol=1e-14)
    y1, i1 = F.adaptive_max_pool1d(x, out, return_indices=True)
    y2, i2 = F.adaptive_max_pool2d(_h1(x), (1, out), return_indices=True)
    np.testing.assert_array_equal(y1, y2[:, :, 0])
    np.testing.assert_array_equal(i1, i2[:, :, 0])
    np.testing.assert_array_equal(F.adaptive_max_pool1d_backward(g, x, i1, out),
                                  F.adaptive_max_pool2d_backward(_h1(g), _h1(x), i2,
                                                                 (1, out))[:, :, 0])


# --------------------------------------------------------------------------- output_mask
_MASKS = list(itertools.product((False, True), repeat=3))


@pytest.mark.parametrize("mask", _MASKS, ids=["".join("1" if m else "0" for m in mk)
                                              for mk in _MASKS])
@pytest.mark.parametrize("op", ["conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d"])
def test_output_mask(op, mask):
    fn, args, kwargs = _all_calls(np.float64)[f"{op}_backward"]
    full = fn(*args, **kwargs)
    assert all(isinstance(r, np.ndarray) for r in full)
    masked = fn(*args, output_mask=mask, **kwargs)
    assert isinstance(masked, tuple) and len(masked) == 3
    for wanted, r, ref in zip(mask, masked, full):
        if wanted:
            np.testing.assert_array_equal(r, ref)
        else:
            assert r is None
    # NumPy bools are booleans; truthy / falsy ints are not (issue 16)
    again = fn(*args, output_mask=[np.bool_(m) for m in mask], **kwargs)
    assert [r is None for r in again] == [not m for m in mask]
    with pytest.raises(TypeError, match=r"output_mask\[0\] must be True or False"):
        fn(*args, output_mask=[int(m) for m in mask], **kwargs)


# --------------------------------------------------------------------------- determinism, purity
@pytest.mark.parametrize("name", sorted(F.__all__))
def test_determinism_bit_identical(name):
    fn, args, kwargs = _all_calls(np.float64)[name]
    first, second = _results(fn(*args, **kwargs)), _results(fn(*args, **kwargs))
    for a, b in zip(first, second):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes(), f"{name}: two calls differ"


@pytest.mark.parametrize("name", sorted(F.__all__))
def test_inputs_are_not_modified(name):
    fn, args, kwargs = _all_calls(np.float64)[name]
    before = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    fn(*args, **kwargs)
    for a, b in zip(args, before):
        if isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["conv2d", "conv2d_backward", "conv_transpose2d",
                                  "conv_transpose2d_backward", "max_pool2d", "avg_pool2d",
                                  "avg_pool2d_backward", "adaptive_avg_pool2d", "lp_pool2d",
                                  "conv1d", "conv1d_backward", "max_pool1d"])
def test_non_contiguous_inputs(name):
    """Views with odd strides (reversed, sliced, transposed) give the same results as copies."""
    fn, args, kwargs = _all_calls(np.float64)[name]

    def strided(a):
        if not isinstance(a, np.ndarray) or a.dtype != np.float64 or a.ndim < 2:
            return a
        big = np.empty(a.shape[:-1] + (2 * a.shape[-1],))[..., ::-2]  # negative, gapped strides
        big[...] = a
        assert not big.flags.c_contiguous
        return big

    expected = _results(fn(*args, **kwargs))
    got = _results(fn(*[strided(a) for a in args], **kwargs))
    for e, g in zip(expected, got):
        np.testing.assert_allclose(g, e, rtol=1e-13, atol=1e-13)


# --------------------------------------------------------------------------- import hygiene
def test_importing_gpuconv_does_not_import_torch():
    code = "import gpuconv, gpuconv.functional, sys; assert 'torch' not in sys.modules, 'torch'"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_running_an_op_does_not_import_torch():
    code = ("import sys, numpy as np, gpuconv; "
            "gpuconv.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))); "
            "gpuconv.max_pool1d(np.ones((1, 1, 4)), 2); "
            "assert 'torch' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


# the cuDNN side of `gpuconv bench` (imported only when a bench runs) and the PyTorch
# integration (which nothing in gpuconv imports)
TORCH_ALLOWED = {"gpuconv/benchmark/cudnn.py", "gpuconv/benchmark/torch_ops.py",
                 "gpuconv/torch.py"}


def test_no_runtime_module_imports_torch():
    """Only oracle/, tests/, bench/, the benchmark's cuDNN side and gpuconv.torch (the
    PyTorch integration) may use torch: no other module of the installed package (gpuconv/,
    and kernels/ as gpuconv.kernels) imports it, even lazily, nor gpuconv.torch."""
    import re
    from pathlib import Path
    root = Path(F.__file__).resolve().parents[1]
    uses_torch = re.compile(r"^\s*(import torch\b|from torch\b)", re.M)
    uses_adapter = re.compile(r"^\s*(import gpuconv\.torch\b|from gpuconv(\.torch)? import torch\b)",
                              re.M)
    modules = {p.relative_to(root).as_posix(): p.read_text() for folder in ("gpuconv", "kernels")
               for p in sorted((root / folder).rglob("*.py"))}
    offenders = [name for name, text in modules.items() if name not in TORCH_ALLOWED
                 and (uses_torch.search(text) or uses_adapter.search(text))]
    assert not offenders, f"runtime modules import torch: {offenders}"
    assert TORCH_ALLOWED <= set(modules)


def test_torch_modules_import_torch_only_when_used():
    """gpuconv.torch and the benchmark's PyTorch side import torch when their Functions,
    modules or passes are used, not when they are imported."""
    import subprocess
    import sys
    code = ("import sys, gpuconv, gpuconv.torch, gpuconv.benchmark.cudnn, "
            "gpuconv.benchmark.torch_ops; assert 'torch' not in sys.modules, 'imported'; "
            "import gpuconv.torch as gt; gt.Conv2d(1, 1, 1); assert 'torch' in sys.modules")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr


_EMPTY_BATCHES = [  # (op, per-sample input shape, weight shape, arguments)
    ("conv1d", (2, 9), (4, 2, 1), {}),
    ("conv1d", (4, 8), (4, 1, 3), dict(groups=4, stride=2)),
    ("conv2d", (2, 6, 6), (4, 2, 1, 1), {}),
    ("conv2d", (2, 6, 6), (4, 2, 3, 3), dict(stride=2, padding=1)),
    ("conv2d", (4, 7, 7), (4, 2, 3, 3), dict(groups=2, dilation=2, padding=2,
                                             padding_mode="reflect")),
    ("conv_transpose1d", (2, 5), (2, 4, 3), dict(stride=2)),
    ("conv_transpose2d", (2, 3, 3), (2, 4, 3, 3), dict(stride=2, output_padding=1)),
    ("conv_transpose2d", (4, 3, 3), (4, 1, 1, 1), dict(groups=4)),
]


@pytest.mark.parametrize("op, sample, w_shape, kw", _EMPTY_BATCHES, ids=str)
def test_an_empty_batch_gives_empty_results_and_zero_parameter_gradients(op, sample, w_shape, kw):
    """N = 0, as PyTorch: the outputs a batch of one would give, for no sample, and the weight
    and bias gradients of no sample, zeros (1x1 and strided ones failed in a reshape)."""
    rng = _rng(0)
    out_channels = w_shape[1] * kw.get("groups", 1) if "transpose" in op else w_shape[0]
    w, b = rng.standard_normal(w_shape), rng.standard_normal(out_channels)
    forward, backward = getattr(F, op), getattr(F, op + "_backward")
    one = forward(rng.standard_normal((1,) + sample), w, b, **kw)
    x = np.zeros((0,) + sample)
    y = forward(x, w, b, **kw)
    assert y.shape == (0,) + one.shape[1:]
    grad_x, grad_w, grad_b = backward(np.zeros(y.shape), x, w, **kw)
    assert grad_x.shape == x.shape
    assert np.array_equal(grad_w, np.zeros(w.shape)) and np.array_equal(grad_b, np.zeros(b.shape))
