"""gpuconv's public ops, with PyTorch's names, argument order and semantics.

Layouts: NCL for 1-D ops, NCHW for 2-D ops, or without the batch axis (CL, CHW) as
PyTorch allows (results then lack it too); conv weights ``(C_out, C_in/groups, *kernel)``,
transposed-conv weights ``(C_in, C_out/groups, *kernel)``. float32 and float64; a
result keeps its input's dtype and array library: another library's arrays (PyTorch,
JAX, ...) reach a backend through DLPack without a copy (see ``gpuconv._boundary``).

Every op takes ``backend=None`` (the backend of the input's array library: NumPy
in, NumPy out) or a backend name from ``gpuconv.backends.BACKENDS``. Arguments
are validated here, once, before any backend runs; 1-D ops run as 2-D ops over
a height-1 image, so backends implement 2-D kernels only.

Backward ops return the gradients of a scalar loss ``L`` with respect to the
forward's inputs, given ``grad_out = dL/d(output)``; ``output_mask`` chooses which
to compute, and a masked gradient is ``None``.

Convolutions also take ``precision`` (float32 on the cupy backend; float64 always runs
``"ieee"``): ``"ieee"`` (default, strict float arithmetic on CUDA cores), ``"tf32"``
(products of inputs truncated to TF32, 10 mantissa bits, on tensor cores, float32
accumulation: the opt-in of PyTorch's ``allow_tf32``), or ``"tf32x3"`` (FP32 accuracy on
tensor cores: each product as three TF32 products of the inputs' high and low parts,
big*big + big*small + small*big, as CUTLASS's 3xTF32; an infinite input gives NaN there). A
backend that does not offer the one asked for is a ``ValueError``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import numpy as np

from gpuconv import backends, parallel
from gpuconv._boundary import public_op
from gpuconv._checks import (check_array, check_array_bytes, check_bool, check_int, check_not_masked,
                             check_output_mask, check_positive_dims, check_same_dtype, check_shape,
                             finite_float, max_bytes_setting, resolve_backend, short_repr)
from gpuconv.backends import backend_for_array, get_backend, signature
from gpuconv.shapes import (ConvSpec, IntOrTuple, PoolSpec, adaptive_output_size,
                            max_window_taps)

Padding = Union[int, Sequence[int], str, Sequence[Sequence[int]]]
OutputMask = Sequence[bool]
_LAYOUT = {1: "NCL", 2: "NCHW"}

__all__ = [
    "conv1d",
    "conv2d",
    "conv1d_backward",
    "conv2d_backward",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose1d_backward",
    "conv_transpose2d_backward",
    "max_pool1d",
    "max_pool2d",
    "max_pool1d_backward",
    "max_pool2d_backward",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool1d_backward",
    "avg_pool2d_backward",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_avg_pool1d_backward",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "adaptive_max_pool1d_backward",
    "adaptive_max_pool2d_backward",
    "global_avg_pool2d",
    "global_avg_pool2d_backward",
    "global_max_pool2d",
    "global_max_pool2d_backward",
    "lp_pool1d",
    "lp_pool2d",
    "lp_pool1d_backward",
    "lp_pool2d_backward",
]


# --------------------------------------------------------------------------- lifting 1-D to 2-D
def _lift(ndim: int, be, array):
    """A 1-D op's (N, C, L) array as the (N, C, 1, L) view its backend's 2-D kernel takes
    (``signature.lift``); as it is for the GPU backends, which lift it once per call
    signature (``LIFTS_1D``)."""
    return array if ndim == 2 or be.LIFTS_1D else signature.lift(array)


def _drop(ndim: int, be, array):
    """A 1-D op's result (N, C, 1, L) as (N, C, L) (the GPU backends return it so). Backends
    return freshly allocated, C-contiguous arrays, so this is a reshape (cheaper than
    indexing); a view of one (a crop, a flip) goes through ``_drop_view``."""
    if array is None or ndim == 2 or be.LIFTS_1D:
        return array
    return array.reshape(signature.unit_axis_dropped(array.shape))


def _drop_view(ndim: int, array):
    """``_drop`` of any strided view of a 2-D kernel's result (Numba device arrays reshape
    contiguous ones only)."""
    return array if array is None or array.ndim == ndim + 2 else array[:, :, 0, :]


def _cropped(array, spatial):
    """``array`` (N, C, *sizes) cut to its first ``spatial`` sizes (a view)."""
    return array[(slice(None),) * 2 + tuple(slice(0, n) for n in spatial)]


_SIGNATURE_LIMIT = 4096  # remembered call signatures (the memo starts afresh beyond)
_PLAIN = frozenset({int, float, bool, str, type(None)})
_CHECKED: dict = {}


def _checked(checks, *args):
    """``checks(*args)``, run once per call signature: arrays by their type, shape, dtype and
    ndim (all that the rules read of them), other arguments by value and exact type (1, 1.0
    and True are equal dict keys but not the same argument), by ``$GPUCONV_MAX_BYTES`` (the
    size limit that ``_check_sizes`` applies) and by the backend modules loaded. A failing
    check raises on every call (nothing is remembered); an argument of another kind (a list,
    a NumPy scalar: its shape () and dtype do not say its value) is checked afresh on every
    call."""
    # the size limit some checks apply, and the loaded backend modules (tests swap them)
    key = [checks, max_bytes_setting(), tuple(backends._LOADED.values())]
    for arg in args:
        kind = type(arg)
        if kind is tuple:  # of plain values, or of tuples of them (padding pairs)
            item_kinds = tuple(map(type, arg))
            if _PLAIN.issuperset(item_kinds):
                key += (item_kinds, arg, kind)
                continue
            item_kinds = []
            for item in arg:
                item_kind = type(item)
                if item_kind is tuple:
                    for inner in item:
                        if type(inner) not in _PLAIN:
                            return checks(*args)
                    item_kinds.append(tuple(map(type, item)))
                elif item_kind in _PLAIN:
                    item_kinds.append(item_kind)
                else:
                    return checks(*args)
            key.append(tuple(item_kinds))
            key.append(arg)
        elif kind in _PLAIN:
            key.append(arg)
        else:
            try:
                ndim = arg.ndim
                key.append((arg.shape, arg.dtype, ndim))
            except AttributeError:
                return checks(*args)
            if not ndim:  # a NumPy scalar (np.int64(2), np.True_) or a 0-d array
                return checks(*args)
        key.append(kind)
    key = tuple(key)
    try:
        result = _CHECKED.get(key)
    except TypeError:  # an unhashable shape or dtype
        return checks(*args)
    if result is None:
        result = checks(*args)
        if len(_CHECKED) >= _SIGNATURE_LIMIT:
            _CHECKED.clear()
        _CHECKED[key] = result
    return result


def _flip_kernel(weight):
    """Reverse the two kernel axes: true convolution is correlation with this kernel."""
    return get_backend(backend_for_array(weight)).flip_kernel(weight)


def _check_precision(precision, be):
    """``precision`` must be conv arithmetic the backend offers (``"ieee"`` everywhere;
    ``"tf32"`` and ``"tf32x3"`` on tensor cores, on the cupy backend)."""
    if precision not in backends.PRECISIONS:
        raise ValueError(f"precision must be one of {backends.PRECISIONS}, got {precision!r}")
    if precision not in be.PRECISIONS:
        raise ValueError(f"precision={precision!r} is not offered by backend {be.NAME!r} "
                         f"(it offers {be.PRECISIONS})")
    return precision


def _check_sizes(x, out_shape, out_blame: str, padded_grid=None, grid: str = "input",
                 indices: bool = False) -> None:
    """Fail before allocating: the op's output (``out_blame`` names the argument that sets
    its size; with ``indices``, together with its int64 indices) and, with padding, the padded
    copy of its ``grid`` (shape ``padded_grid``: the input, or the output a transposed conv
    gathers) must fit one array."""
    itemsize = x.dtype.itemsize
    check_array_bytes(out_blame, out_shape, itemsize + 8 * indices,
                      "the output and its int64 indices" if indices else "the output")
    if padded_grid is not None:
        check_array_bytes("padding", padded_grid, itemsize, f"the padded {grid}")


# --------------------------------------------------------------------------- convolution
def _spread(spatial, kernel, spec: ConvSpec) -> str:
    """What spreads a transposed convolution's output widest: "stride" (the input's
    positions, (n - 1) * stride apart) or "dilation" (the kernel's taps, (k - 1) * dilation)."""
    spans = [((n - 1) * s, (k - 1) * d)
             for n, k, s, d in zip(spatial, kernel, spec.stride, spec.dilation)]
    by_stride, by_dilation = max(spans, key=sum)
    return "stride" if by_stride >= by_dilation else "dilation"


def _conv_setup(ndim, x, weight, bias, stride, padding, dilation, groups, padding_mode,
                output_padding=0, transposed=False):
    """Validate a (transposed) convolution; return the 2-D spec and the output's spatial shape."""
    layout = _LAYOUT[ndim]
    check_array(x, "input", layout)
    check_array(weight, "weight", ("IO" if transposed else "OI") + layout[2:])
    if bias is not None:
        check_array(bias, "bias", "C")  # before its dtype is compared: a list has none
    check_same_dtype("input", x, weight=weight, bias=bias)
    check_positive_dims(x, "input", "C" + layout[2:], layout)
    check_positive_dims(weight, "weight", "OI" + layout[2:], "OI" + layout[2:])
    kernel = tuple(weight.shape[2:])
    spec = ConvSpec.make(ndim, kernel, stride, padding, dilation, groups, padding_mode,
                         output_padding, transposed)
    groups, channels = spec.groups, x.shape[1]
    if transposed:
        out_channels = weight.shape[1] * groups
        if weight.shape[0] != channels:
            raise ValueError(f"weight.shape[0] must equal the input's channels {channels} for a "
                             f"transposed convolution, got weight shape {tuple(weight.shape)}")
        spec.check_groups(channels, out_channels)
    else:
        out_channels = weight.shape[0]
        if weight.shape[1] * groups != channels:
            raise ValueError(f"input channels {channels} must equal weight.shape[1] * groups = "
                             f"{weight.shape[1]} * {groups}")
        spec.check_groups(channels, out_channels, "weight.shape[0] output channels")
    if bias is not None:
        check_shape(bias, "bias", (out_channels,), "one value per output channel")
    spatial = tuple(x.shape[2:])
    if transposed:
        out_spatial = spec.checked_transpose_output_shape(spatial, kernel)
    else:
        spec.check_padding_mode(spatial)
        out_spatial = spec.checked_output_shape(spatial, kernel)
    small, big = (spatial, out_spatial) if transposed else (out_spatial, spatial)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(big, spec.padding))
    grows = any(o > n for o, n in zip(out_spatial, spatial))
    _check_sizes(x, (x.shape[0], out_channels) + tuple(out_spatial),
                 (_spread(spatial, kernel, spec) if transposed else "padding") if grows
                 else "input",
                 None if padded == tuple(big) else
                 (x.shape[0], out_channels if transposed else channels) + padded,
                 "output" if transposed else "input")
    spec = spec.bounded(small, big, kernel)
    return spec.with_leading_unit_axis() if ndim == 1 else spec, out_channels, out_spatial


def _check_grad_out(grad_out, x, out_channels, out_spatial, ndim) -> None:
    check_array(grad_out, "grad_out", _LAYOUT[ndim])
    check_same_dtype("input", x, grad_out=grad_out)
    check_shape(grad_out, "grad_out", (x.shape[0], out_channels) + tuple(out_spatial),
                "the forward output's shape")


def _conv_checks(ndim, x, weight, bias, stride, padding, dilation, groups, padding_mode, flip,
                 precision, relu, backend):
    flip, relu = check_bool(flip, "flip"), check_bool(relu, "relu")
    spec, _, _ = _conv_setup(ndim, x, weight, bias, stride, padding, dilation, groups, padding_mode)
    be = resolve_backend(backend, x, weight, bias)
    return flip, relu, spec, be, _check_precision(precision, be)


def _conv(ndim, x, weight, bias, stride, padding, dilation, groups, padding_mode, flip,
          precision, relu, backend):
    flip, relu, spec, be, precision = _checked(_conv_checks, ndim, x, weight, bias, stride,
                                               padding, dilation, groups, padding_mode, flip,
                                               precision, relu, backend)
    w = _lift(ndim, be, weight)
    y = be.conv2d(_lift(ndim, be, x), _flip_kernel(w) if flip else w, bias, spec, precision, relu)
    return _drop(ndim, be, y)


def _conv_backward_checks(ndim, grad_out, x, weight, stride, padding, dilation, groups,
                          padding_mode, output_padding, transposed, flip, output_mask, precision,
                          backend):
    mask, flip = check_output_mask(output_mask), check_bool(flip, "flip")
    spec, out_channels, out_spatial = _conv_setup(ndim, x, weight, None, stride, padding, dilation,
                                                  groups, padding_mode, output_padding, transposed)
    _check_grad_out(grad_out, x, out_channels, out_spatial, ndim)
    be = resolve_backend(backend, grad_out, x, weight)
    return mask, flip, spec, be, _check_precision(precision, be)


def _conv_backward(ndim, grad_out, x, weight, stride, padding, dilation, groups, padding_mode,
                   flip, output_mask, precision, backend):
    mask, flip, spec, be, precision = _checked(
        _conv_backward_checks, ndim, grad_out, x, weight, stride, padding, dilation, groups,
        padding_mode, 0, False, flip, output_mask, precision, backend)
    w = _lift(ndim, be, weight)
    grad_x, grad_w, grad_b = be.conv2d_backward(_lift(ndim, be, grad_out), _lift(ndim, be, x),
                                                _flip_kernel(w) if flip else w, spec, mask,
                                                precision)
    grad_w = (_drop_view(ndim, _flip_kernel(grad_w)) if flip and grad_w is not None else
              _drop(ndim, be, grad_w))
    return _drop(ndim, be, grad_x), grad_w, grad_b


@public_op("NCL")
def conv1d(input, weight, bias=None, stride: IntOrTuple = 1, padding: Padding = 0,
           dilation: IntOrTuple = 1, groups: int = 1, padding_mode: str = "zeros", *,
           flip: bool = False, precision: str = "ieee", relu: bool = False,
           backend: Optional[str] = None):
    """1-D cross-correlation (PyTorch's ``conv1d``) of ``input`` (N, C_in, L) with ``weight``
    (C_out, C_in/groups, K), plus ``bias`` (C_out); returns (N, C_out, L_out).

    ``flip=True`` computes the true convolution of the slides, which flips the kernel:

        I = 1 2 3 4, W = 1 2 3
        correlation       O_i = sum_j I[i+j] W[j]        -> 14 20
        true convolution  O_i = sum_j I[i+j] W[K-1-j]    -> 10 16

    >>> import numpy as np
    >>> I = np.array([[[1., 2, 3, 4]]]); W = np.array([[[1., 2, 3]]])
    >>> conv1d(I, W)[0, 0], conv1d(I, W, flip=True)[0, 0]
    (array([14., 20.]), array([10., 16.]))

    ``padding`` is an int, a 1-tuple, ``"valid"`` or ``"same"`` (stride 1; an even
    kernel gets its extra padding after), or one ``(before, after)`` pair per axis (an
    extension: Keras' "same" at a stride above 1 needs it); ``padding_mode`` is ``"zeros"``,
    ``"reflect"``, ``"replicate"`` or ``"circular"``.

    ``relu=True`` (a gpuconv extension, keyword-only like ``flip``: PyTorch's conv has no
    activation) returns ``max(output, 0)``, the same numbers as ``relu(conv1d(...))``, with
    the ReLU applied where the output is written (one pass on a GPU). Its gradient is
    ``conv1d_backward`` of ``grad_out * (output > 0)``.
    """
    return _conv(1, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip,
                 precision, relu, backend)


@public_op("NCHW")
def conv2d(input, weight, bias=None, stride: IntOrTuple = 1, padding: Padding = 0,
           dilation: IntOrTuple = 1, groups: int = 1, padding_mode: str = "zeros", *,
           flip: bool = False, precision: str = "ieee", relu: bool = False,
           backend: Optional[str] = None):
    """2-D cross-correlation (PyTorch's ``conv2d``) of ``input`` (N, C_in, H, W) with
    ``weight`` (C_out, C_in/groups, kH, kW), plus ``bias`` (C_out); returns
    (N, C_out, H_out, W_out). ``flip=True`` flips both kernel axes: the true
    convolution (see ``conv1d`` for the slides' 1-D example). ``padding``,
    ``padding_mode`` and ``relu=True`` (ReLU fused: ``max(output, 0)``) as in ``conv1d``,
    per axis."""
    return _conv(2, input, weight, bias, stride, padding, dilation, groups, padding_mode, flip,
                 precision, relu, backend)


@public_op("NCL", parameter_grads=True)
def conv1d_backward(grad_out, input, weight, stride: IntOrTuple = 1, padding: Padding = 0,
                    dilation: IntOrTuple = 1, groups: int = 1, padding_mode: str = "zeros", *,
                    flip: bool = False, output_mask: OutputMask = (True, True, True),
                    precision: str = "ieee", backend: Optional[str] = None):
    """Gradients ``(grad_input, grad_weight, grad_bias)`` of ``conv1d``. As the slides derive
    for I = 1 2 3 4, W = 1 2 3, dL/dO = 1 2:

        dL/dW = Correlation(I, dL/dO)                 -> 5 8 11
        dL/dI = Correlation(W padded, dL/dO flipped)  -> 1 4 7 6
    """
    return _conv_backward(1, grad_out, input, weight, stride, padding, dilation, groups,
                          padding_mode, flip, output_mask, precision, backend)


@public_op("NCHW", parameter_grads=True)
def conv2d_backward(grad_out, input, weight, stride: IntOrTuple = 1, padding: Padding = 0,
                    dilation: IntOrTuple = 1, groups: int = 1, padding_mode: str = "zeros", *,
                    flip: bool = False, output_mask: OutputMask = (True, True, True),
                    precision: str = "ieee", backend: Optional[str] = None):
    """Gradients ``(grad_input, grad_weight, grad_bias)`` of ``conv2d``: grad-input is the
    transposed convolution of ``grad_out``, grad-weight the correlation of the input
    with ``grad_out``, grad-bias its sum over batch and pixels."""
    return _conv_backward(2, grad_out, input, weight, stride, padding, dilation, groups,
                          padding_mode, flip, output_mask, precision, backend)


# --------------------------------------------------------------------------- transposed convolution
def _conv_transpose_checks(ndim, x, weight, bias, stride, padding, output_padding, groups,
                           dilation, precision, backend):
    spec, _, out_spatial = _conv_setup(ndim, x, weight, bias, stride, padding, dilation, groups,
                                       "zeros", output_padding, transposed=True)
    be = resolve_backend(backend, x, weight, bias)
    return spec, out_spatial, be, _check_precision(precision, be)


def _conv_transpose(ndim, x, weight, bias, stride, padding, output_padding, groups, dilation,
                    precision, backend):
    spec, out_spatial, be, precision = _checked(_conv_transpose_checks, ndim, x, weight, bias,
                                                stride, padding, output_padding, groups,
                                                dilation, precision, backend)
    # The forward of a transposed convolution is the grad-input of the convolution it transposes.
    y = be.conv2d_grad_input(_lift(ndim, be, x), _lift(ndim, be, weight), spec,
                             _lift_spatial(ndim, out_spatial), bias, precision)
    return _drop(ndim, be, y)


def _lift_spatial(ndim, spatial):
    return tuple(spatial) if ndim == 2 else (1,) + tuple(spatial)


def _conv_transpose_backward(ndim, grad_out, x, weight, stride, padding, output_padding, groups,
                             dilation, output_mask, precision, backend):
    mask, _, spec, be, precision = _checked(
        _conv_backward_checks, ndim, grad_out, x, weight, stride, padding, dilation, groups,
        "zeros", output_padding, True, False, output_mask, precision, backend)
    x2 = _lift(ndim, be, x)
    grad_x, grad_w, grad_b = be.conv2d_backward(_lift(ndim, be, grad_out), x2,
                                                _lift(ndim, be, weight), spec, mask, precision,
                                                transposed=True)
    if grad_x is not None and grad_x.shape[2:] != x2.shape[2:]:  # output_padding >= stride
        grad_x = _drop_view(ndim, _cropped(grad_x, x2.shape[2:]))
    else:
        grad_x = _drop(ndim, be, grad_x)
    return grad_x, _drop(ndim, be, grad_w), grad_b


@public_op("NCL")
def conv_transpose1d(input, weight, bias=None, stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1, dilation: IntOrTuple = 1, *,
                     precision: str = "ieee", backend: Optional[str] = None):
    """1-D transposed convolution ("deconvolution", PyTorch's ``conv_transpose1d``) of
    ``input`` (N, C_in, L) with ``weight`` (C_in, C_out/groups, K): the backward of
    ``conv1d`` with respect to its input, used as a forward op."""
    return _conv_transpose(1, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, precision, backend)


@public_op("NCHW")
def conv_transpose2d(input, weight, bias=None, stride: IntOrTuple = 1, padding: IntOrTuple = 0,
                     output_padding: IntOrTuple = 0, groups: int = 1, dilation: IntOrTuple = 1, *,
                     precision: str = "ieee", backend: Optional[str] = None):
    """2-D transposed convolution (PyTorch's ``conv_transpose2d``) of ``input``
    (N, C_in, H, W) with ``weight`` (C_in, C_out/groups, kH, kW). Its forward equals
    the backward of ``conv2d`` with the same weight (the slides' 5x5, stride-2 example)."""
    return _conv_transpose(2, input, weight, bias, stride, padding, output_padding, groups,
                           dilation, precision, backend)


@public_op("NCL", parameter_grads=True)
def conv_transpose1d_backward(grad_out, input, weight, stride: IntOrTuple = 1,
                              padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
                              groups: int = 1, dilation: IntOrTuple = 1, *,
                              output_mask: OutputMask = (True, True, True),
                              precision: str = "ieee", backend: Optional[str] = None):
    """Gradients ``(grad_input, grad_weight, grad_bias)`` of ``conv_transpose1d``."""
    return _conv_transpose_backward(1, grad_out, input, weight, stride, padding, output_padding,
                                    groups, dilation, output_mask, precision, backend)


@public_op("NCHW", parameter_grads=True)
def conv_transpose2d_backward(grad_out, input, weight, stride: IntOrTuple = 1,
                              padding: IntOrTuple = 0, output_padding: IntOrTuple = 0,
                              groups: int = 1, dilation: IntOrTuple = 1, *,
                              output_mask: OutputMask = (True, True, True),
                              precision: str = "ieee", backend: Optional[str] = None):
    """Gradients ``(grad_input, grad_weight, grad_bias)`` of ``conv_transpose2d``: grad-input
    is a plain ``conv2d`` of ``grad_out``."""
    return _conv_transpose_backward(2, grad_out, input, weight, stride, padding, output_padding,
                                    groups, dilation, output_mask, precision, backend)


# --------------------------------------------------------------------------- pooling
LP_POOL_LIMIT = 2**31


def _pool_setup(ndim, x, kernel_size, stride, padding, dilation, ceil_mode, lp=False,
                indices=False):
    """Validate a pooling; return the 2-D spec (``PoolSpec.bounded``) and the output's spatial
    shape. Lp pooling (``lp``) multiplies by the kernel's size, so its spec keeps the kernel
    and stride asked for, below 2**31 as in PyTorch (32-bit kernel arguments); ``indices``:
    the op also returns int64 indices of the output's shape."""
    layout = _LAYOUT[ndim]
    check_array(x, "input", layout)
    check_positive_dims(x, "input", "C" + layout[2:], layout)
    spec = PoolSpec.make(ndim, kernel_size, stride, padding, dilation, ceil_mode)
    spatial = tuple(x.shape[2:])
    out_spatial = spec.checked_output_shape(spatial)
    if lp and max(spec.kernel_size + spec.stride) >= LP_POOL_LIMIT:
        raise ValueError(f"kernel_size {spec.kernel_size} and stride {spec.stride} of Lp "
                         f"pooling must be below 2**31, as in PyTorch: its result scales with "
                         f"the kernel's size")
    _check_sizes(x, tuple(x.shape[:2]) + tuple(out_spatial),
                 "padding" if any(o > n for o, n in zip(out_spatial, spatial)) else "input",
                 tuple(x.shape[:2]) + tuple(n + 2 * p for n, p in zip(spatial, spec.padding))
                 if any(spec.padding) else None, indices=indices)
    spec = spec if lp else spec.bounded(spatial)
    return (spec.with_leading_unit_axis() if ndim == 1 else spec), out_spatial


def _check_pool_grad_out(grad_out, x, out_spatial, ndim) -> None:
    _check_grad_out(grad_out, x, x.shape[1], out_spatial, ndim)


def _check_indices(indices, grad_out) -> None:
    check_not_masked(indices, "indices")
    if not hasattr(indices, "dtype") or str(indices.dtype) != "int64":
        raise TypeError(f"indices must be an int64 array (as returned with return_indices=True), "
                        f"got {getattr(indices, 'dtype', type(indices).__name__)}")
    check_shape(indices, "indices", grad_out.shape, "grad_out's shape")


def _check_index_values(indices, spec, in_hw, out_hw) -> None:
    """NumPy indices only (the GPU backends check device arrays in the kernel, with no wait on
    the host: ``gpuconv.check_errors``): each must name a tap of its output's window
    (``shapes.max_window_taps``; ``spec`` None: adaptive), else the first that does not is
    the ``BadPoolIndex``. Over pieces of planes; ``in_hw``, ``out_hw``: the input's and the
    output's planes (a 1-D op's lifted to 2-D)."""
    plane, width, per_plane = in_hw[0] * in_hw[1], in_hw[1], math.prod(out_hw)
    flat = indices.reshape((-1,) + tuple(out_hw))
    (r_start, r_lo, r_hi, r_step), (c_start, c_lo, c_hi, c_step) = max_window_taps(
        spec, in_hw, out_hw)

    def first_bad(planes: slice) -> int:
        index = flat[planes]
        inside = (index >= 0) & (index < plane)
        row, col = np.divmod(np.where(inside, index, 0), width)
        good = inside & (r_lo[:, None] <= row) & (row <= r_hi[:, None]) \
            & ((row - r_start[:, None]) % r_step == 0) \
            & (c_lo <= col) & (col <= c_hi) & ((col - c_start) % c_step == 0)
        bad = np.flatnonzero(~good.reshape(-1))
        return planes.start * per_plane + int(bad[0]) if bad.size else -1
    pieces = parallel.pieces_by_bytes(flat.shape[0], per_plane * flat.itemsize)
    bad = [b for b in parallel.run(first_bad, pieces, flat.nbytes) if b >= 0]
    if bad:
        raise ValueError(str(backends.BadPoolIndex.at(indices, bad[0], plane)))


def _max_pool_checks(ndim, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                     backend):
    return_indices = check_bool(return_indices, "return_indices")
    spec, _ = _pool_setup(ndim, x, kernel_size, stride, padding, dilation, ceil_mode,
                          indices=return_indices)
    return return_indices, spec, resolve_backend(backend, x)


def _max_pool(ndim, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, backend):
    return_indices, spec, be = _checked(_max_pool_checks, ndim, x, kernel_size, stride, padding,
                                        dilation, ceil_mode, return_indices, backend)
    y, indices = be.max_pool2d(_lift(ndim, be, x), spec, return_indices)
    y, indices = _drop(ndim, be, y), _drop(ndim, be, indices)
    return (y, indices) if return_indices else y


def _index_pool_backward_checks(ndim, grad_out, x, indices, out_spatial, check_indices, backend):
    check_indices = check_bool(check_indices, "check_indices")
    _check_pool_grad_out(grad_out, x, out_spatial, ndim)
    _check_indices(indices, grad_out)
    be = resolve_backend(backend, grad_out, x, indices)
    on_host = backend_for_array(indices) == "numpy"
    return check_indices and on_host, on_host, be


def _max_pool_backward_checks(ndim, grad_out, x, indices, kernel_size, stride, padding, dilation,
                              ceil_mode, check_indices, backend):
    spec, out_spatial = _pool_setup(ndim, x, kernel_size, stride, padding, dilation, ceil_mode)
    return (spec,) + _index_pool_backward_checks(ndim, grad_out, x, indices, out_spatial,
                                                 check_indices, backend)


def _adaptive_max_pool_backward_checks(ndim, grad_out, x, indices, output_size, check_indices,
                                       backend):
    out = _adaptive_setup(ndim, x, output_size)
    return (None,) + _index_pool_backward_checks(ndim, grad_out, x, indices, out[-ndim:],
                                                 check_indices, backend)


def _index_pool_backward(ndim, checks, grad_out, x, indices, *args):
    """Route each output's gradient to the input element its index names; ``checks``: max
    pooling's (the 2-D spec) or adaptive max pooling's (spec None), run once per signature."""
    spec, check_on_host, on_host, be = _checked(checks, ndim, grad_out, x, indices, *args)
    if check_on_host and not be.checks_index_values():
        _check_index_values(indices, spec, _lift_spatial(ndim, x.shape[2:]),
                            _lift_spatial(ndim, indices.shape[2:]))
    try:
        grad_x = be.max_pool2d_backward(_lift(ndim, be, grad_out), _lift(ndim, be, indices),
                                        _lift_spatial(ndim, x.shape[2:]), spec)
    except backends.BadPoolIndex as error:  # met in the scatter's own pass over them
        output = error.output if ndim == 2 else error.output[:2] + error.output[3:]
        raise ValueError(str(backends.BadPoolIndex(error.plane_size, error.index, output))) \
            from None
    if backends.DEBUG and not on_host:
        backends.check_errors()
    return _drop(ndim, be, grad_x)


@public_op("NCL")
def max_pool1d(input, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False, *, backend: Optional[str] = None):
    """1-D max pooling (PyTorch's ``max_pool1d``); with ``return_indices`` also the int64 flat
    position of each maximum in its input row. Ties: the first maximum in the window
    wins; a NaN in the window wins over any number (the last NaN, as PyTorch)."""
    return _max_pool(1, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                     backend)


@public_op("NCHW")
def max_pool2d(input, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, dilation: IntOrTuple = 1, ceil_mode: bool = False,
               return_indices: bool = False, *, backend: Optional[str] = None):
    """2-D max pooling (PyTorch's ``max_pool2d``) of ``input`` (N, C, H, W); with
    ``return_indices`` also the int64 index ``h * W + w`` of each maximum in its input
    plane. Ties: the first maximum in row-major window order wins; a NaN wins over
    any number (the last NaN in the window, as PyTorch)."""
    return _max_pool(2, input, kernel_size, stride, padding, dilation, ceil_mode, return_indices,
                     backend)


@public_op("NCL")
def max_pool1d_backward(grad_out, input, indices, kernel_size: IntOrTuple,
                        stride: Optional[IntOrTuple] = None, padding: IntOrTuple = 0,
                        dilation: IntOrTuple = 1, ceil_mode: bool = False, *,
                        check_indices: bool = True, backend: Optional[str] = None):
    """Gradient of ``max_pool1d`` with respect to its input: each output's gradient goes
    to its maximum (summed where windows overlap)."""
    return _index_pool_backward(1, _max_pool_backward_checks, grad_out, input, indices,
                                kernel_size, stride, padding, dilation, ceil_mode, check_indices,
                                backend)


@public_op("NCHW")
def max_pool2d_backward(grad_out, input, indices, kernel_size: IntOrTuple,
                        stride: Optional[IntOrTuple] = None, padding: IntOrTuple = 0,
                        dilation: IntOrTuple = 1, ceil_mode: bool = False, *,
                        check_indices: bool = True, backend: Optional[str] = None):
    """Gradient of ``max_pool2d`` with respect to its input: each output's gradient is
    routed to the maximum it came from (the slides' 4x4 -> 2x2 example). Every index must
    name a tap of its output's window inside the input plane, as ``max_pool2d`` returns
    them. The NumPy backend's compiled scatter checks each one as it goes (a bad one raises
    the ValueError, nothing is written past it); other NumPy indices are checked here first
    (``check_indices=False`` skips that pass over them, for indices that ``max_pool2d``
    returned, as a training loop passes back: NumPy's scatter then routes an index inside
    the plane where it points); on CuPy / Numba device arrays the kernel checks them without
    any wait on the host and flags a bad one (its gradient dropped, or added where it
    points) for ``gpuconv.check_errors()`` (at once with ``GPUCONV_DEBUG=1``)."""
    return _index_pool_backward(2, _max_pool_backward_checks, grad_out, input, indices,
                                kernel_size, stride, padding, dilation, ceil_mode, check_indices,
                                backend)


def _avg_setup(ndim, x, kernel_size, stride, padding, ceil_mode, divisor_override):
    if divisor_override is not None:
        check_int(divisor_override, "divisor_override", 1)
    return _pool_setup(ndim, x, kernel_size, stride, padding, 1, ceil_mode)


def _avg_pool_checks(ndim, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, backend):
    include_pad = check_bool(count_include_pad, "count_include_pad")
    spec, _ = _avg_setup(ndim, x, kernel_size, stride, padding, ceil_mode, divisor_override)
    return include_pad, spec, resolve_backend(backend, x)


def _avg_pool(ndim, x, kernel_size, stride, padding, ceil_mode, count_include_pad,
              divisor_override, backend):
    include_pad, spec, be = _checked(_avg_pool_checks, ndim, x, kernel_size, stride, padding,
                                     ceil_mode, count_include_pad, divisor_override, backend)
    return _drop(ndim, be, be.avg_pool2d(_lift(ndim, be, x), spec, include_pad, divisor_override))


def _avg_pool_backward_checks(ndim, grad_out, x, kernel_size, stride, padding, ceil_mode,
                              count_include_pad, divisor_override, backend):
    include_pad = check_bool(count_include_pad, "count_include_pad")
    spec, out_spatial = _avg_setup(ndim, x, kernel_size, stride, padding, ceil_mode,
                                   divisor_override)
    _check_pool_grad_out(grad_out, x, out_spatial, ndim)
    return include_pad, spec, resolve_backend(backend, grad_out, x)


def _avg_pool_backward(ndim, grad_out, x, kernel_size, stride, padding, ceil_mode,
                       count_include_pad, divisor_override, backend):
    include_pad, spec, be = _checked(_avg_pool_backward_checks, ndim, grad_out, x, kernel_size,
                                     stride, padding, ceil_mode, count_include_pad,
                                     divisor_override, backend)
    return _drop(ndim, be, be.avg_pool2d_backward(_lift(ndim, be, grad_out), spec,
                                                  _lift_spatial(ndim, x.shape[2:]),
                                                  include_pad, divisor_override))


@public_op("NCL")
def avg_pool1d(input, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None, *, backend: Optional[str] = None):
    """1-D average pooling (PyTorch's ``avg_pool1d``; ``divisor_override`` is an extension,
    as in ``avg_pool2d``)."""
    return _avg_pool(1, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, backend)


@public_op("NCHW")
def avg_pool2d(input, kernel_size: IntOrTuple, stride: Optional[IntOrTuple] = None,
               padding: IntOrTuple = 0, ceil_mode: bool = False, count_include_pad: bool = True,
               divisor_override: Optional[int] = None, *, backend: Optional[str] = None):
    """2-D average pooling (PyTorch's ``avg_pool2d``). The divisor is ``divisor_override``
    if given, else the window's size counting padding (``count_include_pad``) or not;
    a ``ceil_mode`` window that runs past the padding is clipped first."""
    return _avg_pool(2, input, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, backend)


@public_op("NCL")
def avg_pool1d_backward(grad_out, input, kernel_size: IntOrTuple,
                        stride: Optional[IntOrTuple] = None, padding: IntOrTuple = 0,
                        ceil_mode: bool = False, count_include_pad: bool = True,
                        divisor_override: Optional[int] = None, *,
                        backend: Optional[str] = None):
    """Gradient of ``avg_pool1d`` with respect to its input."""
    return _avg_pool_backward(1, grad_out, input, kernel_size, stride, padding, ceil_mode,
                              count_include_pad, divisor_override, backend)


@public_op("NCHW")
def avg_pool2d_backward(grad_out, input, kernel_size: IntOrTuple,
                        stride: Optional[IntOrTuple] = None, padding: IntOrTuple = 0,
                        ceil_mode: bool = False, count_include_pad: bool = True,
                        divisor_override: Optional[int] = None, *,
                        backend: Optional[str] = None):
    """Gradient of ``avg_pool2d`` with respect to its input: each output's gradient, divided
    by its divisor, is spread over its window."""
    return _avg_pool_backward(2, grad_out, input, kernel_size, stride, padding, ceil_mode,
                              count_include_pad, divisor_override, backend)


# --------------------------------------------------------------------------- adaptive and global pooling
def _adaptive_setup(ndim, x, output_size, indices=False):
    layout = _LAYOUT[ndim]
    check_array(x, "input", layout)
    check_positive_dims(x, "input", "C" + layout[2:], layout)
    out = adaptive_output_size(output_size, tuple(x.shape[2:]))
    _check_sizes(x, tuple(x.shape[:2]) + out, "output_size", indices=indices)
    return _lift_spatial(ndim, out)


def _adaptive_checks(ndim, x, output_size, backend, indices=False):
    return _adaptive_setup(ndim, x, output_size, indices), resolve_backend(backend, x)


def _adaptive_avg_pool(ndim, x, output_size, backend):
    out, be = _checked(_adaptive_checks, ndim, x, output_size, backend)
    return _drop(ndim, be, be.adaptive_avg_pool2d(_lift(ndim, be, x), out))


def _adaptive_avg_pool_backward_checks(ndim, grad_out, x, output_size, backend):
    out = _adaptive_setup(ndim, x, output_size)
    _check_pool_grad_out(grad_out, x, out[-ndim:], ndim)
    return resolve_backend(backend, grad_out, x)


def _adaptive_avg_pool_backward(ndim, grad_out, x, output_size, backend):
    be = _checked(_adaptive_avg_pool_backward_checks, ndim, grad_out, x, output_size, backend)
    return _drop(ndim, be, be.adaptive_avg_pool2d_backward(_lift(ndim, be, grad_out),
                                                           _lift_spatial(ndim, x.shape[2:])))


def _adaptive_max_pool_checks(ndim, x, output_size, return_indices, backend):
    return_indices = check_bool(return_indices, "return_indices")
    # the backends return the indices whether asked or not
    return (return_indices,) + _adaptive_checks(ndim, x, output_size, backend, indices=True)


def _adaptive_max_pool(ndim, x, output_size, return_indices, backend):
    return_indices, out, be = _checked(_adaptive_max_pool_checks, ndim, x, output_size,
                                       return_indices, backend)
    y, indices = be.adaptive_max_pool2d(_lift(ndim, be, x), out)
    y, indices = _drop(ndim, be, y), _drop(ndim, be, indices)
    return (y, indices) if return_indices else y


def _adaptive_max_pool_backward(ndim, grad_out, x, indices, output_size, check_indices,
                                backend):
    return _index_pool_backward(ndim, _adaptive_max_pool_backward_checks, grad_out, x, indices,
                                output_size, check_indices, backend)


@public_op("NCL")
def adaptive_avg_pool1d(input, output_size: IntOrTuple, *, backend: Optional[str] = None):
    """1-D adaptive average pooling: ``output_size`` windows ``[floor(i*L/out), ceil((i+1)*L/out))``."""
    return _adaptive_avg_pool(1, input, output_size, backend)


@public_op("NCHW")
def adaptive_avg_pool2d(input, output_size, *, backend: Optional[str] = None):
    """2-D adaptive average pooling (PyTorch's ``adaptive_avg_pool2d``): windows
    ``[floor(i*H/out), ceil((i+1)*H/out))`` per axis; ``None`` in ``output_size`` keeps
    that axis' size."""
    return _adaptive_avg_pool(2, input, output_size, backend)


@public_op("NCL")
def adaptive_avg_pool1d_backward(grad_out, input, output_size: IntOrTuple, *,
                                 backend: Optional[str] = None):
    """Gradient of ``adaptive_avg_pool1d`` with respect to its input."""
    return _adaptive_avg_pool_backward(1, grad_out, input, output_size, backend)


@public_op("NCHW")
def adaptive_avg_pool2d_backward(grad_out, input, output_size, *, backend: Optional[str] = None):
    """Gradient of ``adaptive_avg_pool2d`` with respect to its input."""
    return _adaptive_avg_pool_backward(2, grad_out, input, output_size, backend)


@public_op("NCL")
def adaptive_max_pool1d(input, output_size: IntOrTuple, return_indices: bool = False, *,
                        backend: Optional[str] = None):
    """1-D adaptive max pooling; indices and ties as in ``max_pool1d``."""
    return _adaptive_max_pool(1, input, output_size, return_indices, backend)


@public_op("NCHW")
def adaptive_max_pool2d(input, output_size, return_indices: bool = False, *,
                        backend: Optional[str] = None):
    """2-D adaptive max pooling (PyTorch's ``adaptive_max_pool2d``); indices and ties as in
    ``max_pool2d``."""
    return _adaptive_max_pool(2, input, output_size, return_indices, backend)


@public_op("NCL")
def adaptive_max_pool1d_backward(grad_out, input, indices, output_size: IntOrTuple, *,
                                 check_indices: bool = True, backend: Optional[str] = None):
    """Gradient of ``adaptive_max_pool1d`` with respect to its input."""
    return _adaptive_max_pool_backward(1, grad_out, input, indices, output_size,
                                       check_indices, backend)


@public_op("NCHW")
def adaptive_max_pool2d_backward(grad_out, input, indices, output_size, *,
                                 check_indices: bool = True, backend: Optional[str] = None):
    """Gradient of ``adaptive_max_pool2d`` with respect to its input."""
    return _adaptive_max_pool_backward(2, grad_out, input, indices, output_size,
                                       check_indices, backend)


@public_op("NCHW")
def global_avg_pool2d(input, *, backend: Optional[str] = None):
    """Mean of each channel plane: (N, C, H, W) -> (N, C, 1, 1) (Keras' GlobalAveragePooling2D,
    keeping the spatial axes)."""
    return _adaptive_avg_pool(2, input, 1, backend)


@public_op("NCHW")
def global_avg_pool2d_backward(grad_out, input, *, backend: Optional[str] = None):
    """Gradient of ``global_avg_pool2d`` with respect to its input."""
    return _adaptive_avg_pool_backward(2, grad_out, input, 1, backend)


@public_op("NCHW")
def global_max_pool2d(input, return_indices: bool = False, *, backend: Optional[str] = None):
    """Maximum of each channel plane: (N, C, H, W) -> (N, C, 1, 1); indices as ``max_pool2d``."""
    return _adaptive_max_pool(2, input, 1, return_indices, backend)


@public_op("NCHW")
def global_max_pool2d_backward(grad_out, input, indices, *, check_indices: bool = True,
                               backend: Optional[str] = None):
    """Gradient of ``global_max_pool2d`` with respect to its input."""
    return _adaptive_max_pool_backward(2, grad_out, input, indices, 1, check_indices, backend)


# --------------------------------------------------------------------------- power-average (Lp) pooling
def _lp_norm(norm_type) -> float:
    p = finite_float(norm_type)
    if p is None or p <= 0:
        raise ValueError(f"norm_type must be a positive finite number, got {short_repr(norm_type)}")
    return p


def _lp_pool_checks(ndim, x, norm_type, kernel_size, stride, ceil_mode, backend):
    p = _lp_norm(norm_type)
    spec, _ = _pool_setup(ndim, x, kernel_size, stride, 0, 1, ceil_mode, lp=True)
    return p, spec, resolve_backend(backend, x)


def _lp_pool(ndim, x, norm_type, kernel_size, stride, ceil_mode, backend):
    p, spec, be = _checked(_lp_pool_checks, ndim, x, norm_type, kernel_size, stride, ceil_mode,
                           backend)
    return _drop(ndim, be, be.lp_pool2d(_lift(ndim, be, x), spec, p))


def _lp_pool_backward_checks(ndim, grad_out, x, norm_type, kernel_size, stride, ceil_mode,
                             backend):
    p = _lp_norm(norm_type)
    spec, out_spatial = _pool_setup(ndim, x, kernel_size, stride, 0, 1, ceil_mode, lp=True)
    _check_pool_grad_out(grad_out, x, out_spatial, ndim)
    return p, spec, resolve_backend(backend, grad_out, x)


def _lp_pool_backward(ndim, grad_out, x, norm_type, kernel_size, stride, ceil_mode, backend):
    p, spec, be = _checked(_lp_pool_backward_checks, ndim, grad_out, x, norm_type, kernel_size,
                           stride, ceil_mode, backend)
    return _drop(ndim, be, be.lp_pool2d_backward(_lift(ndim, be, grad_out), _lift(ndim, be, x),
                                                  spec, p))


@public_op("NCL")
def lp_pool1d(input, norm_type: float, kernel_size: IntOrTuple,
              stride: Optional[IntOrTuple] = None, ceil_mode: bool = False, *,
              backend: Optional[str] = None):
    """1-D power-average pooling (PyTorch's ``lp_pool1d``): ``(sum over window of x**p)**(1/p)``;
    p = 1 is sum pooling, large p approaches max pooling."""
    return _lp_pool(1, input, norm_type, kernel_size, stride, ceil_mode, backend)


@public_op("NCHW")
def lp_pool2d(input, norm_type: float, kernel_size: IntOrTuple,
              stride: Optional[IntOrTuple] = None, ceil_mode: bool = False, *,
              backend: Optional[str] = None):
    """2-D power-average pooling (PyTorch's ``lp_pool2d``): ``(sum over window of x**p)**(1/p)``."""
    return _lp_pool(2, input, norm_type, kernel_size, stride, ceil_mode, backend)


@public_op("NCL")
def lp_pool1d_backward(grad_out, input, norm_type: float, kernel_size: IntOrTuple,
                       stride: Optional[IntOrTuple] = None, ceil_mode: bool = False, *,
                       backend: Optional[str] = None):
    """Gradient of ``lp_pool1d`` with respect to its input."""
    return _lp_pool_backward(1, grad_out, input, norm_type, kernel_size, stride, ceil_mode,
                             backend)


@public_op("NCHW")
def lp_pool2d_backward(grad_out, input, norm_type: float, kernel_size: IntOrTuple,
                       stride: Optional[IntOrTuple] = None, ceil_mode: bool = False, *,
                       backend: Optional[str] = None):
    """Gradient of ``lp_pool2d`` with respect to its input."""
    return _lp_pool_backward(2, grad_out, input, norm_type, kernel_size, stride, ceil_mode,
                             backend)
