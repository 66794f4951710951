"""The reference maths: every kernel of ``gpuconv.backends.KERNELS`` in plain NumPy, slow and
obviously right. Every kernel in kernels/ and every fast path of ``numpy_backend`` names the
function here that it must equal; tests/test_golden.py runs this module against the PyTorch
goldens as its own column ("reference").

Everything stands on one windowing primitive (tinygrad's Tensor._pool): ``windows`` is a strided
view of a padded input, one axis per kernel tap,

    windows(xp)[n, c, i, j, oh, ow] = xp[n, c, oh*sH + i*dH, ow*sW + j*dW]

and every op is a reduction of it or its adjoint:

    conv            y = windows(pad(x)) . W          (a sum over channels and taps)
    pooling         y = windows(pad(x)) reduced over the taps (max, mean, power sum)
    grad-input      dx = pad^T(fold(dy . W)): ``fold`` is the adjoint of ``windows`` (col2im,
                    a scatter-add of every tap back to the position it read)
    transposed conv = grad-input of the conv it transposes, plus its bias

Sums run in a fixed order (einsum, then tap by tap), so results do not change from run to run.
Adaptive pooling's windows differ in size, so those ops loop over the output cells.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gpuconv import backends
from gpuconv.shapes import ConvSpec, PoolSpec, adaptive_windows

NAME = "reference"
PRECISIONS = ("ieee",)
LIFTS_1D = False  # a 1-D op's arrays come lifted to (N, C, 1, L) views
_NP_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


# --------------------------------------------------------------------------- array helpers
def from_foreign(array) -> np.ndarray:
    """Another library's array in host memory as a NumPy array, without a copy (DLPack)."""
    return np.from_dlpack(array)


def flip_kernel(weight: np.ndarray) -> np.ndarray:
    """The kernel axes reversed: true convolution is correlation with it."""
    return backends.kernel_flipped(weight)



# --------------------------------------------------------------------------- the primitive
def windows(xp: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """view[n, c, i, j, oh, ow] = xp[n, c, oh*sH + i*dH, ow*sW + j*dW] (read-only, no copy)."""
    sn, sc, sh, sw = xp.strides
    return as_strided(xp, xp.shape[:2] + tuple(kernel) + tuple(out_hw),
                      (sn, sc, dilation[0] * sh, dilation[1] * sw, stride[0] * sh, stride[1] * sw),
                      writeable=False)


def fold(grad_windows: np.ndarray, padded_hw, stride, dilation) -> np.ndarray:
    """The adjoint of ``windows`` (col2im): dxp[n, c, oh*sH + i*dH, ow*sW + j*dW] += g[n, c, i, j,
    oh, ow], tap by tap in row-major order."""
    n, c, kh, kw, ho, wo = grad_windows.shape
    grad = np.zeros((n, c) + tuple(padded_hw), dtype=grad_windows.dtype)
    for i in range(kh):
        for j in range(kw):
            r, q = i * dilation[0], j * dilation[1]
            grad[:, :, r:r + stride[0] * (ho - 1) + 1:stride[0],
                 q:q + stride[1] * (wo - 1) + 1:stride[1]] += grad_windows[:, :, i, j]
    return grad


def _pad_table(in_hw, padding, mode: str) -> np.ndarray:
    """Padded plane of flat input positions h*W + w; H*W (a zero element) where mode is zeros."""
    h, w = in_hw
    plane = np.arange(h * w).reshape(h, w)
    kwargs = {"constant_values": h * w} if mode == "zeros" else {}
    return np.pad(plane, padding, _NP_PAD_MODE[mode], **kwargs)


def pad(x: np.ndarray, padding, mode: str = "zeros") -> np.ndarray:
    """xp[n, c, r, q] = x[n, c, table[r, q]]: each padded position copies one input position
    (reflect, replicate, circular) or is zero; ``padding`` is ((top, bottom), (left, right))."""
    n, c, h, w = x.shape
    flat = np.concatenate([x.reshape(n, c, h * w), np.zeros((n, c, 1), x.dtype)], axis=2)
    return flat[:, :, _pad_table((h, w), padding, mode)]


def pad_adjoint(grad_padded: np.ndarray, padding, mode: str, in_hw) -> np.ndarray:
    """The adjoint of ``pad``: each input position collects the gradient of every copy of it."""
    n, c = grad_padded.shape[:2]
    table = _pad_table(in_hw, padding, mode)
    grad = np.zeros((n, c, math.prod(in_hw) + 1), dtype=grad_padded.dtype)
    np.add.at(grad, (slice(None), slice(None), table), grad_padded)
    return grad[:, :, :-1].reshape((n, c) + tuple(in_hw))


# --------------------------------------------------------------------------- convolution
def _grouped(a: np.ndarray, groups: int, axis: int = 1) -> np.ndarray:
    """Split ``axis`` (channels; a weight's axis 0) into (groups, per group)."""
    return a.reshape(a.shape[:axis] + (groups, a.shape[axis] // groups) + a.shape[axis + 1:])


def conv2d(x, weight, bias, spec: ConvSpec, precision: str = "ieee",
           relu: bool = False) -> np.ndarray:
    """y[n, g*O/G + o, oh, ow] = b[g*O/G + o] + sum over c < C/G, i, j of
    W[g*O/G + o, c, i, j] * xp[n, g*C/G + c, oh*sH + i*dH - pT, ow*sW + j*dW - pL];
    then max(y, 0) if ``relu``."""
    out_hw = spec.output_shape(x.shape[2:], weight.shape[2:])
    win = windows(pad(x, spec.padding, spec.padding_mode), weight.shape[2:], spec.stride,
                  spec.dilation, out_hw)
    y = np.einsum("ngcijhw,gocij->ngohw", _grouped(win, spec.groups),
                  _grouped(weight, spec.groups, 0))
    y = y.reshape((x.shape[0], weight.shape[0]) + out_hw)
    y = y if bias is None else y + bias.reshape(1, -1, 1, 1)
    return np.maximum(y, 0) if relu else y


def conv2d_grad_bias(grad_out) -> np.ndarray:
    """db[o] = sum over n, oh, ow of dy[n, o, oh, ow]."""
    return grad_out.sum(axis=(0, 2, 3))


def conv2d_grad_weight(grad_out, x, spec: ConvSpec, kernel_hw, precision: str = "ieee"):
    """dW[g*O/G + o, c, i, j] = sum over n, oh, ow of dy[n, g*O/G + o, oh, ow] *
    xp[n, g*C/G + c, oh*sH + i*dH, ow*sW + j*dW], over grad_out's (H_out, W_out)."""
    win = windows(pad(x, spec.padding, spec.padding_mode), kernel_hw, spec.stride,
                  spec.dilation, grad_out.shape[2:])
    dw = np.einsum("ngohw,ngcijhw->gocij", _grouped(grad_out, spec.groups),
                   _grouped(win, spec.groups))
    return dw.reshape((grad_out.shape[1], x.shape[1] // spec.groups) + tuple(kernel_hw))


def conv2d_grad_input(grad_out, weight, spec: ConvSpec, input_hw, bias=None,
                      precision: str = "ieee") -> np.ndarray:
    """dx = pad^T(fold(dwin)), dwin[n, g*C/G + c, i, j, oh, ow] = sum over o < O/G of
    dy[n, g*O/G + o, oh, ow] * W[g*O/G + o, c, i, j]: dxp[n, c, oh*sH + i*dH, ow*sW + j*dW] +=
    dwin[n, c, i, j, oh, ow]. Also ``conv_transpose2d``'s forward (plus its bias (C,)); rows that
    grad_out lacks (``output_padding``) get no gradient."""
    dwin = np.einsum("ngohw,gocij->ngcijhw", _grouped(grad_out, spec.groups),
                     _grouped(weight, spec.groups, 0))
    dwin = dwin.reshape((grad_out.shape[0], weight.shape[1] * spec.groups) + dwin.shape[3:])
    padded_hw = [size + sum(p) for size, p in zip(input_hw, spec.padding)]
    dx = pad_adjoint(fold(dwin, padded_hw, spec.stride, spec.dilation), spec.padding,
                     spec.padding_mode, input_hw)
    return dx if bias is None else dx + bias.reshape(1, -1, 1, 1)


def conv2d_backward(grad_out, x, weight, spec: ConvSpec, output_mask, precision: str = "ieee",
                    transposed: bool = False):
    """(dx, dW, db) of a conv or transposed conv: ``gpuconv.backends.conv_backward`` over this
    module's kernels."""
    return backends.conv_backward(sys.modules[__name__], grad_out, x, weight, spec, output_mask,
                                  precision, transposed)


# --------------------------------------------------------------------------- window pooling
def _pool_windows(x, spec: PoolSpec, value=0.0):
    """windows of x padded with ``value``, and the same windows of the flat input positions
    (h*W + w; -1 in the padding), taps flattened row-major: (N, C, kH*kW, H_out, W_out)."""
    out_hw = spec.output_shape(x.shape[2:])
    pads = spec.window_padding(x.shape[2:])
    xp = np.pad(x, ((0, 0), (0, 0)) + pads, constant_values=value)
    where = np.pad(np.arange(math.prod(x.shape[2:])).reshape(1, 1, *x.shape[2:]),
                   ((0, 0), (0, 0)) + pads, constant_values=-1)
    shape = x.shape[:2] + (-1,) + out_hw
    return (windows(xp, spec.kernel_size, spec.stride, spec.dilation, out_hw).reshape(shape),
            windows(where, spec.kernel_size, spec.stride, spec.dilation, out_hw).reshape(
                (1, 1, -1) + out_hw))


def _argmax(values: np.ndarray, positions: np.ndarray):
    """Max over axis 2 among taps with a position >= 0, and that position, by PyTorch's rule:
    the first maximum wins; a NaN wins over any number and, among NaNs, the last one."""
    valid = positions >= 0
    nan = np.isnan(values) & valid
    top = np.where(valid, values, -np.inf).max(axis=2, keepdims=True)
    first_max = np.argmax(valid & (values == top), axis=2)
    last_nan = values.shape[2] - 1 - np.argmax(nan[:, :, ::-1], axis=2)
    tap = np.where(nan.any(axis=2), last_nan, first_max)[:, :, None]
    index = np.take_along_axis(np.broadcast_to(positions, values.shape), tap, axis=2)[:, :, 0]
    return np.take_along_axis(values, tap, axis=2)[:, :, 0], index.astype(np.int64)


def max_pool2d(x, spec: PoolSpec, return_indices: bool = True):
    """y[n, c, oh, ow] = max over i, j of x[n, c, oh*sH + i*dH - pT, ow*sW + j*dW - pL] (taps in
    the padding excluded), and the flat index h*W + w of the maximum (``_argmax``'s rule)."""
    y, index = _argmax(*_pool_windows(x, spec, -np.inf))
    return y, (index if return_indices else None)


def checks_index_values() -> bool:
    """False: ``max_pool2d_backward`` trusts its indices (the caller checks them first)."""
    return False


def max_pool2d_backward(grad_out, indices, input_hw, spec: PoolSpec | None) -> np.ndarray:
    """dx[n, c, indices[n, c, oh, ow]] += dy[n, c, oh, ow] (also adaptive max pooling: spec
    None); the indices alone suffice here."""
    n, c = grad_out.shape[:2]
    grad = np.zeros((n, c, math.prod(input_hw)), dtype=grad_out.dtype)
    rows = np.arange(n * c).reshape(n, c, 1, 1)
    np.add.at(grad.reshape(n * c, -1), (np.broadcast_to(rows, indices.shape), indices), grad_out)
    return grad.reshape((n, c) + tuple(input_hw))


def _avg_divisor(spec: PoolSpec, in_hw, count_include_pad: bool, divisor_override, dtype):
    """Each window's divisor as PyTorch counts it: its taps inside the input padded by
    ``spec.padding`` (ceil_mode's overhang excluded), or inside the input alone."""
    out_hw = spec.output_shape(in_hw)
    if divisor_override is not None:
        return np.full(out_hw, divisor_override, dtype=dtype)
    pads = spec.window_padding(in_hw)
    counted = np.zeros([1, 1] + [n + sum(p) for n, p in zip(in_hw, pads)])
    (th, _), (tw, _) = pads
    (eh, ew), (h, w) = (spec.padding if count_include_pad else (0, 0)), in_hw
    counted[:, :, th - eh:th + h + eh, tw - ew:tw + w + ew] = 1
    win = windows(counted, spec.kernel_size, spec.stride, spec.dilation, out_hw)
    return win.sum(axis=(2, 3))[0, 0].astype(dtype)


def avg_pool2d(x, spec: PoolSpec, count_include_pad: bool, divisor_override) -> np.ndarray:
    """y[n, c, oh, ow] = sum over i, j of xp[n, c, oh*sH + i - pT, ow*sW + j - pL] / divisor."""
    divisor = _avg_divisor(spec, x.shape[2:], count_include_pad, divisor_override, x.dtype)
    return _pool_windows(x, spec)[0].sum(axis=2) / divisor


def avg_pool2d_backward(grad_out, spec: PoolSpec, input_hw, count_include_pad: bool,
                        divisor_override) -> np.ndarray:
    """dx = pad^T(fold(dy / divisor repeated over every tap))."""
    divisor = _avg_divisor(spec, input_hw, count_include_pad, divisor_override, grad_out.dtype)
    pads = spec.window_padding(input_hw)
    taps = np.broadcast_to((grad_out / divisor)[:, :, None, None],
                           grad_out.shape[:2] + spec.kernel_size + grad_out.shape[2:])
    padded_hw = [n + sum(p) for n, p in zip(input_hw, pads)]
    return pad_adjoint(fold(taps, padded_hw, spec.stride, spec.dilation), pads, "zeros", input_hw)


def lp_pool2d(x, spec: PoolSpec, norm_type: float) -> np.ndarray:
    """y = (kH*kW * avg_pool2d(x ** p)) ** (1/p): the window's power sum, PyTorch's definition
    (a ceil_mode window clipped at the edge is scaled up to the full kernel)."""
    window = math.prod(spec.kernel_size)
    return (window * avg_pool2d(x ** norm_type, spec, True, None)) ** (1.0 / norm_type)


def lp_pool2d_backward(grad_out, x, spec: PoolSpec, norm_type: float) -> np.ndarray:
    """dx = p x^(p-1) * avg_pool2d^T(dy * kH*kW * t^(1/p-1) / p * [|t| > 0]),
    t = kH*kW * avg_pool2d(x**p). PyTorch's t^(1/p) is (sign(t) * relu(|t|))^(1/p): a window
    of zeros passes no gradient, nor a NaN window (torch.sign(NaN) is 0) whose factor
    t^(1/p-1) is finite (p = 1)."""
    p, window = norm_type, math.prod(spec.kernel_size)
    total = window * avg_pool2d(x ** p, spec, True, None)
    safe = np.where(total == 0, 1, total)
    grad_total = grad_out * window * safe ** (1.0 / p - 1.0) / p * (np.abs(total) > 0)
    return avg_pool2d_backward(grad_total, spec, x.shape[2:], True, None) * (p * x ** (p - 1.0))


# --------------------------------------------------------------------------- adaptive pooling
def _adaptive_cells(in_hw, out_hw):
    """(oh, ow, rows, cols) of every adaptive window: rows [floor(oh*H/H_out),
    ceil((oh+1)*H/H_out)), and likewise cols."""
    (hs, he), (ws, we) = (adaptive_windows(n, o) for n, o in zip(in_hw, out_hw))
    for oh in range(out_hw[0]):
        for ow in range(out_hw[1]):
            yield oh, ow, slice(hs[oh], he[oh]), slice(ws[ow], we[ow])


def adaptive_avg_pool2d(x, out_hw) -> np.ndarray:
    """y[n, c, oh, ow] = mean of x[n, c, rows, cols] over the cell's adaptive window."""
    y = np.empty(x.shape[:2] + tuple(out_hw), dtype=x.dtype)
    for oh, ow, rows, cols in _adaptive_cells(x.shape[2:], out_hw):
        y[:, :, oh, ow] = x[:, :, rows, cols].sum(axis=(2, 3)) / x[0, 0, rows, cols].size
    return y


def adaptive_avg_pool2d_backward(grad_out, input_hw) -> np.ndarray:
    """dx[n, c, rows, cols] += dy[n, c, oh, ow] / window size, cell by cell."""
    dx = np.zeros(grad_out.shape[:2] + tuple(input_hw), dtype=grad_out.dtype)
    for oh, ow, rows, cols in _adaptive_cells(input_hw, grad_out.shape[2:]):
        size = (rows.stop - rows.start) * (cols.stop - cols.start)
        dx[:, :, rows, cols] += (grad_out[:, :, oh, ow] / size)[:, :, None, None]
    return dx


def adaptive_max_pool2d(x, out_hw):
    """y[n, c, oh, ow] = max of x[n, c, rows, cols] and its flat index (``_argmax``'s rule)."""
    n, c, h, w = x.shape
    y = np.empty((n, c) + tuple(out_hw), dtype=x.dtype)
    index = np.empty((n, c) + tuple(out_hw), dtype=np.int64)
    positions = np.arange(h * w).reshape(h, w)
    for oh, ow, rows, cols in _adaptive_cells((h, w), out_hw):
        y[:, :, oh, ow], index[:, :, oh, ow] = _argmax(x[:, :, rows, cols].reshape(n, c, -1),
                                                       positions[rows, cols].reshape(1, 1, -1))
    return y, index
