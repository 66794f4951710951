"""Keras-style layers with a forward and a backward on ``gpuconv.functional``.

A layer is written without its input size (``Conv2D(20, 5)``): ``build`` infers it
from the per-sample input shape (no batch axis: ``(C, H, W)`` or ``(features,)``),
creates the parameters on the model's device and fixes the output shape, using
``gpuconv.shapes`` like every op. ``forward(x, training, rng)`` keeps what
``backward(grad_out)`` needs; ``backward`` fills ``grads`` (one per entry of
``params``) and returns the gradient of the layer's input, or ``None`` when the
model said the input needs none (the first layer's input is the data).

As in Keras, ``input_shape=`` on the first layer lets the model build itself,
``activation=`` on ``Conv2D``, ``Conv2DTranspose`` and ``Dense`` applies an
activation after the layer, and ``padding="same"`` is TensorFlow's rule at any
stride (``ceil(size / stride)`` outputs, the odd padding element after). Shapes
are channels-first, (C, H, W), where Keras is channels-last, (H, W, C).

Conv and pooling run on the model's backend; everything else is array arithmetic
on the model's array library (NumPy or CuPy). On NumPy, activations and batch norm run
in cache-sized pieces of the batch over the CPU thread pool (``gpuconv.parallel``), each
piece in one pass.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

import gpuconv.functional as F
from gpuconv._checks import (check_array_bytes, check_bool, check_fraction, check_int,
                             check_number, short_repr)
from gpuconv.channelwise import (affine, channel_dots, channel_rows, channel_sums,
                                 per_channel_rows, sum_over_batch)
from gpuconv.nn.counter_rng import dropout_keep, dropout_threshold
from gpuconv.nn.device import Device
from gpuconv.parallel import fill_batch, map_batch, matmul
from gpuconv.nn.initializers import check_initializer, initialize
from gpuconv.shapes import (ConvSpec, PoolSpec, keras_same_padding, keras_same_transpose_padding,
                            ntuple)

Shape = tuple[int, ...]


class Layer:
    """Base class: no parameters, output shape = input shape."""

    is_augmentation = False  # random, training-only, first in the model, passes no gradient

    def __init__(self, name: Optional[str] = None, input_shape=None):
        self.name = name or type(self).__name__.lower()
        # Keras' input_shape= on the first layer: the model builds for it (no batch axis)
        self.declared_input_shape = None if input_shape is None else \
            check_input_shape(input_shape)
        self.params: dict[str, object] = {}   # trainable, updated by the optimiser
        self.buffers: dict[str, object] = {}  # saved state that is not trained (BN statistics)
        self.grads: dict[str, object] = {}
        self.input_shape: Optional[Shape] = None
        self.output_shape: Optional[Shape] = None
        self.need_input_grad = True
        self.device: Optional[Device] = None

    # ------------------------------------------------------------------ building
    def build(self, input_shape: Shape, device: Device, init_rng: np.random.Generator,
              dtype) -> None:
        self.device, self.input_shape = device, tuple(int(n) for n in input_shape)
        self.output_shape = self.compute_output_shape(self.input_shape)
        self._fit_to(self.input_shape)
        shapes = {**self.param_shapes(self.input_shape), **self.buffer_shapes(self.input_shape)}
        for key, shape in shapes.items():  # before the initialisers draw them (in float64)
            check_array_bytes(f"layer {self.name}'s {key}", shape, 8, "its initial values")
        self.params = {k: device.asarray(v, dtype) for k, v in
                       self.initial_params(self.input_shape, init_rng).items()}
        self.buffers = {k: device.asarray(v, dtype) for k, v in
                        self.initial_buffers(self.input_shape).items()}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        """The per-sample output shape for ``input_shape``; it changes nothing (a model file
        is checked with it before any layer is built)."""
        return input_shape

    def _fit_to(self, input_shape: Shape) -> None:
        """build: fix what depends on the input's size (Keras' "same" padding at a stride)."""

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        """The shape of each parameter for ``input_shape``, without creating any (a model
        file is checked against these before a layer is built)."""
        return {}

    def buffer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {}

    def initial_params(self, input_shape: Shape, rng: np.random.Generator) -> dict:
        return {}

    def initial_buffers(self, input_shape: Shape) -> dict:
        return {}

    @property
    def n_params(self) -> int:
        return sum(int(math.prod(p.shape)) for p in self.params.values())

    def get_config(self) -> dict:
        """The constructor's arguments, as JSON values (saved with the model)."""
        return {"name": self.name}

    # ------------------------------------------------------------------ computing
    def forward(self, x, training: bool = False, rng=None):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "name")
        return f"{type(self).__name__}({args})"


def _check_rank(layer: Layer, input_shape: Shape, rank: int, what: str) -> None:
    if len(input_shape) != rank:
        raise ValueError(f"{type(layer).__name__} needs {what} inputs, got per-sample shape "
                         f"{input_shape}" + (" (add a Flatten before it)" if rank == 1 else ""))


def _named(layer: Layer, check, *args):
    """``check(*args)`` (a ConvSpec / PoolSpec rule), its error prefixed with the layer's name."""
    try:
        return check(*args)
    except ValueError as exc:
        raise ValueError(f"{layer.name}: {exc}") from None


def check_input_shape(input_shape) -> tuple[int, ...]:
    """A per-sample shape: 1 to 8 positive ints (a model file holds no more)."""
    sizes = None
    if not isinstance(input_shape, (str, bytes)):
        try:
            sizes = tuple(input_shape)
        except TypeError:
            pass
    if sizes is None or not 1 <= len(sizes) <= 8:
        raise TypeError(f"input_shape must be a tuple of 1 to 8 positive ints (C, H, W), got "
                        f"{short_repr(input_shape)}")
    return tuple(check_int(n, "each size of input_shape", 1) for n in sizes)


def _keras_padding(padding):
    """Keras spells padding "valid" / "same" in any case; ints and tuples pass through."""
    return padding.lower() if isinstance(padding, str) else padding


def _same_pairs(spatial: Shape, kernel: Shape, strides, dilation) -> tuple:
    return tuple(keras_same_padding(n, k, s, d) for n, k, s, d in
                 zip(spatial, kernel, ntuple(strides, 2, "strides"),
                     ntuple(dilation, 2, "dilation_rate")))


class _Linear(Layer):
    """A layer with weights, optionally followed by an elementwise activation (Keras'
    ``activation=``): subclasses give ``linear_forward`` and ``linear_backward``."""

    def __init__(self, activation: Optional[str], name: Optional[str], input_shape):
        super().__init__(name, input_shape)
        self.activation = activation
        self._activation = make_activation(activation)
        # Conv2D only: its conv applies ReLU where it writes the output (Sequential.build
        # sets it for activation="relu" or a ReLU layer right after)
        self.epilogue_relu = False

    def get_config(self) -> dict:
        return {**super().get_config(), "activation": self.activation}

    def build(self, input_shape: Shape, device: Device, init_rng, dtype) -> None:
        super().build(input_shape, device, init_rng, dtype)
        if self._activation is not None:
            self._activation.device = device

    def forward(self, x, training=False, rng=None):
        y = self.linear_forward(x)
        return y if self._own_activation is None else self._own_activation.forward(y)

    def backward(self, grad_out):
        if self._own_activation is not None:
            grad_out = self._own_activation.backward(grad_out)
        return self.linear_backward(grad_out)

    @property
    def _own_activation(self) -> Optional["_Activation"]:
        """The activation this layer runs after its linear part (none when the epilogue did)."""
        return None if self.epilogue_relu and self.activation == "relu" else self._activation


# --------------------------------------------------------------------------- convolutions
class Conv2D(_Linear):
    """2-D convolution (cross-correlation, as Keras and PyTorch): ``filters`` output
    channels, square or (kH, kW) ``kernel_size``; ``padding`` an int, a pair, "valid" or
    "same" (Keras' rule, at any stride). Weights (filters, C_in/groups, kH, kW), as
    ``gpuconv.conv2d``."""

    def __init__(self, filters: int, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 groups: int = 1, use_bias: bool = True, kernel_initializer: str = "he_normal",
                 activation: Optional[str] = None, name: Optional[str] = None,
                 input_shape=None):
        super().__init__(activation, name, input_shape)
        self.filters = check_int(filters, "filters", 1)
        self.kernel_size = ntuple(kernel_size, 2, "kernel_size")  # (make checks its sizes)
        self.padding = _keras_padding(padding)
        self.strides, self.dilation_rate = strides, dilation_rate
        self.groups, self.use_bias = groups, check_bool(use_bias, "use_bias")
        self.kernel_initializer = check_initializer(kernel_initializer)
        # validated now, so a bad layer fails where it is written; "same" waits for the input
        self.spec = ConvSpec.make(2, self.kernel_size, strides,
                                  0 if self.padding == "same" else self.padding, dilation_rate,
                                  groups)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding,
                "dilation_rate": self.dilation_rate, "groups": self.groups,
                "use_bias": self.use_bias, "kernel_initializer": self.kernel_initializer}

    def _spec_for(self, hw) -> ConvSpec:
        """The spec for inputs of ``hw`` pixels: Keras' "same" pads by the input's size."""
        if self.padding != "same":
            return self.spec
        return ConvSpec.make(2, self.kernel_size, self.strides,
                             _same_pairs(hw, self.kernel_size, self.strides, self.dilation_rate),
                             self.dilation_rate, self.groups)

    def _fit_to(self, input_shape: Shape) -> None:
        self.spec = self._spec_for(input_shape[1:])

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        _check_rank(self, input_shape, 3, "(C, H, W)")
        spec = self._spec_for(input_shape[1:])
        _named(self, spec.check_groups, input_shape[0], self.filters, "filters")
        out_hw = _named(self, spec.checked_output_shape, input_shape[1:], self.kernel_size)
        return (self.filters,) + out_hw

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        kernel = (self.filters, input_shape[0] // self.groups) + self.kernel_size
        return {"kernel": kernel, **({"bias": (self.filters,)} if self.use_bias else {})}

    def initial_params(self, input_shape: Shape, rng) -> dict:
        cg, (kh, kw) = input_shape[0] // self.groups, self.kernel_size
        shapes = self.param_shapes(input_shape)
        params = {"kernel": initialize(self.kernel_initializer, shapes["kernel"], cg * kh * kw,
                                       self.filters // self.groups * kh * kw, rng)}
        if self.use_bias:
            params["bias"] = np.zeros(shapes["bias"])
        return params

    def _conv_args(self) -> dict:
        return dict(stride=self.spec.stride, padding=self.spec.padding,
                    dilation=self.spec.dilation, groups=self.groups, backend=self.device.backend)

    def linear_forward(self, x):
        self._x = x
        y = F.conv2d(x, self.params["kernel"], self.params.get("bias"), relu=self.epilogue_relu,
                     **self._conv_args())
        self._y = y if self.epilogue_relu else None  # ReLU's slope source (the layer owns y)
        return y

    def linear_backward(self, grad_out):
        if self.epilogue_relu:
            # ReLU's backward: y = max(x, 0), so y > 0 exactly where x > 0 (the same product)
            fused = self.device.layer_kernels
            grad_out = (fused.relu_backward(grad_out, self._y) if fused is not None else
                        map_batch(lambda g, y: g * (y > 0), grad_out, self._y))
        gx, gw, gb = F.conv2d_backward(grad_out, self._x, self.params["kernel"],
                                       output_mask=(self.need_input_grad, True, self.use_bias),
                                       **self._conv_args())
        self.grads = {"kernel": gw, **({"bias": gb} if self.use_bias else {})}
        return gx


class Conv2DTranspose(_Linear):
    """2-D transposed convolution ("deconvolution"): upsamples by ``strides``; ``padding``
    an int, a pair, "valid" or "same" (Keras' rule: output = input * strides). Weights
    (C_in, filters/groups, kH, kW), as ``gpuconv.conv_transpose2d``."""

    def __init__(self, filters: int, kernel_size, strides=1, padding=0, output_padding=0,
                 dilation_rate=1, groups: int = 1, use_bias: bool = True,
                 kernel_initializer: str = "he_normal", activation: Optional[str] = None,
                 name: Optional[str] = None, input_shape=None):
        super().__init__(activation, name, input_shape)
        self.filters = check_int(filters, "filters", 1)
        self.kernel_size = ntuple(kernel_size, 2, "kernel_size")  # (make checks its sizes)
        self.padding = _keras_padding(padding)
        self.strides, self.output_padding = strides, output_padding
        self.dilation_rate, self.groups = dilation_rate, groups
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = check_initializer(kernel_initializer)
        if self.padding == "same" and output_padding != 0:
            raise ValueError("output_padding is set by padding='same' (output = input * "
                             f"strides); got output_padding={output_padding!r}")
        self.spec = ConvSpec.make(2, self.kernel_size, strides,
                                  0 if self.padding in ("same", "valid") else self.padding,
                                  dilation_rate, groups, output_padding=output_padding,
                                  transposed=True)
        if self.padding == "same":
            pairs, out_pad = zip(*map(keras_same_transpose_padding, self.kernel_size,
                                      self.spec.stride, self.spec.dilation))
            self.spec = ConvSpec.make(2, self.kernel_size, strides, pairs, dilation_rate, groups,
                                      transposed=True, output_padding=out_pad)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding,
                "output_padding": self.output_padding, "dilation_rate": self.dilation_rate,
                "groups": self.groups, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        _check_rank(self, input_shape, 3, "(C, H, W)")
        _named(self, self.spec.check_groups, input_shape[0], self.filters, "filters")
        out_hw = _named(self, self.spec.checked_transpose_output_shape, input_shape[1:],
                        self.kernel_size)
        return (self.filters,) + out_hw

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        kernel = (input_shape[0], self.filters // self.groups) + self.kernel_size
        return {"kernel": kernel, **({"bias": (self.filters,)} if self.use_bias else {})}

    def initial_params(self, input_shape: Shape, rng) -> dict:
        og, (kh, kw) = self.filters // self.groups, self.kernel_size
        shape = self.param_shapes(input_shape)["kernel"]
        # each output pixel sums C_in/groups * kH * kW / stride^2 terms on average
        fan_in = max(1, input_shape[0] // self.groups * kh * kw
                     // math.prod(self.spec.stride))
        params = {"kernel": initialize(self.kernel_initializer, shape, fan_in, og * kh * kw, rng)}
        if self.use_bias:
            params["bias"] = np.zeros(self.filters)
        return params

    def _conv_args(self) -> dict:
        return dict(stride=self.spec.stride, padding=self.spec.padding,
                    output_padding=self.spec.output_padding, groups=self.groups,
                    dilation=self.spec.dilation, backend=self.device.backend)

    def linear_forward(self, x):
        self._x = x
        return F.conv_transpose2d(x, self.params["kernel"], self.params.get("bias"),
                                  **self._conv_args())

    def linear_backward(self, grad_out):
        gx, gw, gb = F.conv_transpose2d_backward(
            grad_out, self._x, self.params["kernel"],
            output_mask=(self.need_input_grad, True, self.use_bias), **self._conv_args())
        self.grads = {"kernel": gw, **({"bias": gb} if self.use_bias else {})}
        return gx


# --------------------------------------------------------------------------- pooling
class _Pool2D(Layer):
    """``padding`` an int, a pair, "valid" or "same" (Keras' rule, at any stride: the
    padding is never part of a window's maximum or average)."""

    def __init__(self, pool_size=2, strides=None, padding=0, name: Optional[str] = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.pool_size, self.strides = pool_size, strides
        self.padding = _keras_padding(padding)
        self.spec = PoolSpec.make(2, pool_size, strides,
                                  0 if self.padding in ("same", "valid") else self.padding)
        self._skip = (0, 0)  # leading windows "same" drops (PoolSpec.keras_same)

    def get_config(self) -> dict:
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding}

    def _spec_for(self, hw) -> tuple[PoolSpec, tuple[int, int]]:
        """(spec, leading windows dropped) for inputs of ``hw`` pixels: Keras' "same" pads
        by the input's size (PoolSpec.keras_same)."""
        if self.padding != "same":
            return self.spec, (0, 0)
        return PoolSpec.keras_same(self.spec.kernel_size, self.spec.stride, hw)

    def _fit_to(self, input_shape: Shape) -> None:
        self.spec, self._skip = self._spec_for(input_shape[1:])

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        _check_rank(self, input_shape, 3, "(C, H, W)")
        spec, skip = self._spec_for(input_shape[1:])
        out_hw = _named(self, spec.checked_output_shape, input_shape[1:])
        return input_shape[:1] + tuple(n - k for n, k in zip(out_hw, skip))

    def _kept(self, y):
        """The pooled windows this layer outputs: those from ``_skip`` on."""
        return y[:, :, self._skip[0]:, self._skip[1]:] if any(self._skip) else y

    def _all_windows(self, grad_out):
        """``grad_out`` with zeros for the windows ``_kept`` drops."""
        if not any(self._skip):
            return grad_out
        n, c, h, w = grad_out.shape
        full = self.device.xp.zeros((n, c, h + self._skip[0], w + self._skip[1]), grad_out.dtype)
        full[:, :, self._skip[0]:, self._skip[1]:] = grad_out
        return full

    def _pool_args(self) -> dict:
        return dict(kernel_size=self.spec.kernel_size, stride=self.spec.stride,
                    padding=self.spec.padding, ceil_mode=self.spec.ceil_mode,
                    backend=self.device.backend)


class MaxPool2D(_Pool2D):
    """Max pooling; its gradient goes to each window's maximum (the slides' routing)."""

    def forward(self, x, training=False, rng=None):
        self._x = x
        if not training:  # inference needs no indices: a backward after it makes them
            self._indices = None
            return self._kept(F.max_pool2d(x, **self._pool_args()))
        y, self._indices = F.max_pool2d(x, return_indices=True, **self._pool_args())
        return self._kept(y)

    def backward(self, grad_out):
        if not self.need_input_grad:
            return None
        if self._indices is None:  # (a gradient of an inference pass: a saliency map)
            _, self._indices = F.max_pool2d(self._x, return_indices=True, **self._pool_args())
        # the indices are the forward's own: no range check (on the GPU, a wait for it)
        return F.max_pool2d_backward(self._all_windows(grad_out), self._x, self._indices,
                                     **self._pool_args(), check_indices=False)


class AvgPool2D(_Pool2D):
    """Average pooling; an int padding counts in the divisor (PyTorch's default
    ``count_include_pad``), "same" padding does not (Keras)."""

    def _pool_args(self) -> dict:
        return {**super()._pool_args(), "count_include_pad": self.padding != "same"}

    def forward(self, x, training=False, rng=None):
        self._x = x
        return self._kept(F.avg_pool2d(x, **self._pool_args()))

    def backward(self, grad_out):
        if not self.need_input_grad:
            return None
        return F.avg_pool2d_backward(self._all_windows(grad_out), self._x, **self._pool_args())


class GlobalAveragePooling2D(Layer):
    """Mean of each channel: (N, C, H, W) -> (N, C), as Keras."""

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        _check_rank(self, input_shape, 3, "(C, H, W)")
        return input_shape[:1]

    def forward(self, x, training=False, rng=None):
        self._x = x
        return F.global_avg_pool2d(x, backend=self.device.backend).reshape(x.shape[:2])

    def backward(self, grad_out):
        if not self.need_input_grad:
            return None
        return F.global_avg_pool2d_backward(grad_out.reshape(grad_out.shape + (1, 1)), self._x,
                                            backend=self.device.backend)


# --------------------------------------------------------------------------- dense and reshape
class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), in C, H, W order."""

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)

    def forward(self, x, training=False, rng=None):
        self._shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_out):
        return grad_out.reshape(self._shape)


class Dense(_Linear):
    """Fully connected: y = x @ kernel + bias, kernel (in_features, units), as Keras."""

    def __init__(self, units: int, activation: Optional[str] = None, use_bias: bool = True,
                 kernel_initializer: str = "glorot_uniform", name: Optional[str] = None,
                 input_shape=None):
        super().__init__(activation, name, input_shape)
        self.units = check_int(units, "units", 1)
        self.use_bias = check_bool(use_bias, "use_bias")
        self.kernel_initializer = check_initializer(kernel_initializer)

    def get_config(self) -> dict:
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        _check_rank(self, input_shape, 1, "flat (features,)")
        return (self.units,)

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        kernel = (input_shape[0], self.units)
        return {"kernel": kernel, **({"bias": (self.units,)} if self.use_bias else {})}

    def initial_params(self, input_shape: Shape, rng) -> dict:
        params = {"kernel": initialize(self.kernel_initializer,
                                       self.param_shapes(input_shape)["kernel"],
                                       input_shape[0], self.units, rng)}
        if self.use_bias:
            params["bias"] = np.zeros(self.units)
        return params

    def linear_forward(self, x):
        self._x = x
        y = matmul(x, self.params["kernel"])
        return y + self.params["bias"] if self.use_bias else y

    def linear_backward(self, grad_out):
        self.grads = {"kernel": matmul(self._x.T, grad_out)}
        if self.use_bias:
            self.grads["bias"] = grad_out.sum(axis=0)
        return matmul(grad_out, self.params["kernel"].T) if self.need_input_grad else None


# --------------------------------------------------------------------------- activations
class _Activation(Layer):
    """An elementwise f: forward keeps f'(x), so backward is one product."""

    def value_and_slope(self, x, xp):
        raise NotImplementedError

    def forward(self, x, training=False, rng=None):
        xp = self.device.xp
        y, self._slope = map_batch(lambda piece: self.value_and_slope(piece, xp), x)
        return y

    def backward(self, grad_out):
        return map_batch(lambda g, slope: g * slope, grad_out, self._slope)


class ReLU(_Activation):
    # computed by the layer right before it (a Conv2D's conv, a BatchNorm2D's passes on the
    # CPU: Sequential.build): values and gradients pass through here
    in_epilogue = False

    def value_and_slope(self, x, xp):
        return xp.maximum(x, 0), x > 0

    def forward(self, x, training=False, rng=None):
        return x if self.in_epilogue else super().forward(x, training, rng)

    def backward(self, grad_out):
        return grad_out if self.in_epilogue else super().backward(grad_out)


class LeakyReLU(_Activation):
    """x for x > 0, ``negative_slope * x`` otherwise (Keras 3's default slope 0.3)."""

    def __init__(self, negative_slope: float = 0.3, name: Optional[str] = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.negative_slope = check_number(negative_slope, "negative_slope")

    def get_config(self) -> dict:
        return {**super().get_config(), "negative_slope": self.negative_slope}

    def value_and_slope(self, x, xp):
        slope = xp.where(x > 0, x.dtype.type(1), x.dtype.type(self.negative_slope))
        return x * slope, slope


class ELU(_Activation):
    """x for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""

    def __init__(self, alpha: float = 1.0, name: Optional[str] = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.alpha = check_number(alpha, "alpha")

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha}

    def value_and_slope(self, x, xp):
        alpha = x.dtype.type(self.alpha)
        negative = alpha * xp.expm1(xp.minimum(x, 0))  # the clamp keeps exp from overflowing
        return xp.where(x > 0, x, negative), xp.where(x > 0, x.dtype.type(1), negative + alpha)


# --------------------------------------------------------------------------- regularisation
class Dropout(Layer):
    """Zeroes each activation with probability ``rate`` while training and scales the rest
    by 1/(1 - rate) ("inverted" dropout), so inference is the identity."""

    def __init__(self, rate: float, name: Optional[str] = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.rate = check_fraction(rate, "rate")

    def get_config(self) -> dict:
        return {**super().get_config(), "rate": self.rate}

    def forward(self, x, training=False, rng=None):
        if not training or self.rate == 0.0:
            self._seed = None
            return x
        # a counter-based mask: a function of (seed, stream) that the backward draws again
        self._seed, self._stream = rng.counter_seed()
        return self._masked(x)

    def backward(self, grad_out):
        return grad_out if self._seed is None else self._masked(grad_out)

    def _masked(self, t):
        threshold, scale = dropout_threshold(self.rate), 1.0 / (1.0 - self.rate)
        fused = self.device.layer_kernels
        if fused is not None:
            return fused.dropout(t, self._seed, self._stream, threshold, scale)
        keep = dropout_keep(self._seed, self._stream, t.size, threshold).reshape(t.shape)
        return t * (keep * t.dtype.type(scale))


class BatchNorm2D(Layer):
    """Per-channel batch normalisation of (N, C, H, W): while training, normalises with the
    batch's mean and (biased) variance and updates running statistics as
    ``running = momentum * running + (1 - momentum) * batch`` (Keras' momentum convention)
    with the batch's unbiased variance (PyTorch's; Keras 3 takes the biased one); at
    inference, uses the running statistics."""

    # the ReLU right after it runs in its passes or kernels (Sequential.build)
    relu = False

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, name: Optional[str] = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.momentum = check_fraction(momentum, "momentum")
        self.epsilon = check_number(epsilon, "epsilon")
        if self.epsilon <= 0:
            raise ValueError(f"epsilon must be positive, got {epsilon!r}")

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        _check_rank(self, input_shape, 3, "(C, H, W)")
        return input_shape

    def param_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"gamma": input_shape[:1], "beta": input_shape[:1]}

    def buffer_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        return {"running_mean": input_shape[:1], "running_var": input_shape[:1]}

    def initial_params(self, input_shape: Shape, rng) -> dict:
        return {"gamma": np.ones(input_shape[0]), "beta": np.zeros(input_shape[0])}

    def initial_buffers(self, input_shape: Shape) -> dict:
        return {"running_mean": np.zeros(input_shape[0]), "running_var": np.ones(input_shape[0])}

    def forward(self, x, training=False, rng=None):
        fused = self.device.layer_kernels
        self._training = training
        if fused is not None:
            self._x = x
            y, self._saved = fused.batch_norm2d_forward(
                x, self.params["gamma"], self.params["beta"], self.buffers["running_mean"],
                self.buffers["running_var"], training, self.momentum, self.epsilon, self.relu)
            self._y = y if self.relu else None  # the ReLU's slope: y > 0
            return y
        # pieces of (N, C, H*W) rows, per-channel factors as whole rows (gpuconv.channelwise)
        rows = channel_rows(x)
        if training:
            count = x.dtype.type(rows.shape[0] * rows.shape[2])
            mean = sum_over_batch(channel_sums, rows) / count
            mean_rows = per_channel_rows(mean, rows)

            def squares(a):
                centred = a - mean_rows
                return channel_dots(centred, centred)
            var = sum_over_batch(squares, rows) / count
            m = x.dtype.type(self.momentum)
            # in place: a captured training step keeps updating the same buffers
            self.buffers["running_mean"][...] = m * self.buffers["running_mean"] + (1 - m) * mean
            self.buffers["running_var"][...] = (m * self.buffers["running_var"]
                                                + (1 - m) * var * (count / max(count - 1, 1)))
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        self._x, self._mean = x, mean
        self._inv_std = 1 / np.sqrt(var + x.dtype.type(self.epsilon))
        # y = gamma * (x - mean) / std + beta, as one scale and one shift per channel
        scale = self.params["gamma"] * self._inv_std
        y = fill_batch(affine(scale, self.params["beta"] - mean * scale, rows, self.relu),
                       np.empty_like(rows), rows).reshape(x.shape)
        self._y = y if self.relu else None  # the ReLU's slope: y > 0
        return y

    def backward(self, grad_out):
        if not self._training:
            return self._inference_backward(grad_out)
        fused = self.device.layer_kernels
        if fused is not None:
            grad_x, grad_gamma, grad_beta = fused.batch_norm2d_backward(
                grad_out, self._x, self.params["gamma"], self._saved, self.need_input_grad,
                self._y)
            self.grads = {"gamma": grad_gamma, "beta": grad_beta}
            return grad_x
        inv_std, mean = self._inv_std, self._mean
        rows, grads = channel_rows(self._x), channel_rows(grad_out)
        count = grad_out.dtype.type(rows.shape[0] * rows.shape[2])
        mean_rows = per_channel_rows(mean, rows)
        if self.relu:  # the fused ReLU's backward first: g where the output was positive
            relu_grads = np.empty_like(grads)

            def sums(g, a, y, masked):
                np.multiply(g, y > 0, out=masked)
                return np.stack([channel_sums(masked), channel_dots(masked, a - mean_rows)])
            sum_g, sum_gc = sum_over_batch(sums, grads, rows, channel_rows(self._y), relu_grads)
            grads = relu_grads
        else:
            sum_g, sum_gc = sum_over_batch(lambda g, a: np.stack(
                [channel_sums(g), channel_dots(g, a - mean_rows)]), grads, rows)
        self.grads = {"gamma": sum_gc * inv_std, "beta": sum_g}
        if not self.need_input_grad:
            return None
        # d/dx of gamma * (x - mean) / std with the batch's mean and std (training mode):
        # gamma / std * (g - mean(g) - (x - mean) / std^2 * mean(g * (x - mean))), that is
        # g * scale + x * slope + shift per channel
        scale = self.params["gamma"] * inv_std
        slope = -scale * inv_std * inv_std * sum_gc / count
        shift = -scale * sum_g / count - mean * slope
        scale_rows, slope_rows, shift_rows = (per_channel_rows(v, rows)
                                              for v in (scale, slope, shift))

        def grad_input(grad_x, g, a):  # g * scale + a * slope + shift
            np.multiply(g, scale_rows, out=grad_x)
            a = a * slope_rows
            grad_x += a
            grad_x += shift_rows
        # with the ReLU, the masked gradient is this layer's own temporary: overwrite it
        grad_x = fill_batch(grad_input, grads if self.relu else np.empty_like(grads),
                            grads, rows)
        return grad_x.reshape(grad_out.shape)

    def _inference_backward(self, grad_out):
        """The gradients of an inference-mode forward (a saliency map; fit never asks), where
        the mean and std are the running statistics, constants: g * gamma / std (derived here,
        not in the forward: inference does not change them, and evaluation need not pay)."""
        channels = (1, -1, 1, 1)
        xp, x = self.device.xp, self._x
        inv_std = 1 / xp.sqrt(self.buffers["running_var"] + x.dtype.type(self.epsilon))
        g = grad_out * (self._y > 0) if self.relu else grad_out
        centred = x - self.buffers["running_mean"].reshape(channels)
        self.grads = {"gamma": (g * centred).sum(axis=(0, 2, 3)) * inv_std,
                      "beta": g.sum(axis=(0, 2, 3))}
        if not self.need_input_grad:
            return None
        return g * (self.params["gamma"] * inv_std).reshape(channels)


# --------------------------------------------------------------------------- augmentation
class RandomFlip(Layer):
    """Mirrors each image left-right with probability 1/2 while training (Keras'
    ``RandomFlip("horizontal")``); the identity at inference."""

    is_augmentation = True

    def forward(self, x, training=False, rng=None):
        if not training:
            return x
        flip = (rng.uniform((x.shape[0],), x.dtype) < 0.5)[:, None, None, None]
        return self.device.xp.where(flip, x[..., ::-1], x)

    def backward(self, grad_out):
        return None  # augmentation sits on the data, which needs no gradient


class RandomShift(Layer):
    """Shifts each image by up to ``max_shift`` pixels in each direction while training,
    filling with zeros (the "pad and random crop" augmentation); the identity at inference."""

    is_augmentation = True

    def __init__(self, max_shift: int = 2, name: Optional[str] = None,
                 input_shape=None):
        super().__init__(name, input_shape)
        self.max_shift = check_int(max_shift, "max_shift", 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "max_shift": self.max_shift}

    def compute_output_shape(self, input_shape: Shape) -> Shape:
        _check_rank(self, input_shape, 3, "(C, H, W)")
        if self.max_shift >= min(input_shape[1:]):  # a shift that far leaves no pixel
            raise ValueError(f"{self.name}: max_shift must be smaller than the image's height "
                             f"and width {tuple(input_shape[1:])}, got {self.max_shift}")
        return input_shape

    def forward(self, x, training=False, rng=None):
        if not training:
            return x
        xp, s = self.device.xp, self.max_shift
        n, c, h, w = x.shape
        padded = xp.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))
        dy, dx = rng.integers(2 * s + 1, (n,)), rng.integers(2 * s + 1, (n,))
        rows = (dy[:, None] + xp.arange(h)[None, :])[:, None, :, None]
        cols = (dx[:, None] + xp.arange(w)[None, :])[:, None, None, :]
        return padded[xp.arange(n)[:, None, None, None], xp.arange(c)[None, :, None, None],
                      rows, cols]

    def backward(self, grad_out):
        return None


ACTIVATIONS = {"relu": ReLU, "leaky_relu": LeakyReLU, "elu": ELU}


def make_activation(name: Optional[str]) -> Optional[_Activation]:
    """The activation layer for Keras' ``activation=`` name (None or "linear": none), with
    the layer's defaults: "leaky_relu" slopes 0.3 as Keras 3's LeakyReLU layer (Keras 3's
    activation function of that name slopes 0.2; a LeakyReLU layer sets any slope)."""
    if name is None or name == "linear":
        return None
    if name == "softmax":
        raise ValueError("activation='softmax': gpuconv's losses take logits and apply the "
                         "softmax themselves (Keras' from_logits=True); leave the last layer "
                         "linear and use gpuconv.nn.softmax(model.predict(x)) for probabilities")
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be None, 'linear' or one of {tuple(ACTIVATIONS)}, "
                         f"got {name!r}")
    return ACTIVATIONS[name]()


LAYERS = {cls.__name__: cls for cls in (
    Conv2D, Conv2DTranspose, MaxPool2D, AvgPool2D, GlobalAveragePooling2D, Flatten, Dense, ReLU,
    LeakyReLU, ELU, Dropout, BatchNorm2D, RandomFlip, RandomShift)}
