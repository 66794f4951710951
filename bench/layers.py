"""The benchmark layer suite, in one place for the CPU bench (bench/cpu.py) and later ones.

A ``Layer`` describes one op with its shapes; ``make_arrays`` builds its float
inputs with NumPy, and ``gpuconv_forward`` / ``gpuconv_backward`` run it through
``gpuconv.functional`` on any backend (the arrays' library decides, as in the ops).
Nothing here imports torch; the PyTorch side is in bench/torch_ops.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

import gpuconv.functional as F
from gpuconv.shapes import (conv_flops, conv_output_size, conv_transpose_output_size,
                            pool_output_size)

KINDS = ("conv", "conv_transpose", "max_pool", "avg_pool")


@dataclass(frozen=True)
class Layer:
    """One benchmarked op: 2-D, square kernel, stride, padding and dilation."""

    name: str
    description: str
    kind: str
    batch: int
    in_channels: int
    size: int                      # input height = width
    kernel: int
    out_channels: Optional[int] = None  # conv / conv_transpose only
    stride: Optional[int] = 1           # None for pooling means stride = kernel
    padding: int = 0
    dilation: int = 1
    groups: int = 1
    output_padding: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def is_conv(self) -> bool:
        return self.kind in ("conv", "conv_transpose")

    @property
    def effective_stride(self) -> int:
        return self.kernel if self.stride is None else self.stride

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, self.size, self.size)

    @property
    def weight_shape(self) -> Optional[tuple[int, int, int, int]]:
        k = self.kernel
        if self.kind == "conv":
            return (self.out_channels, self.in_channels // self.groups, k, k)
        if self.kind == "conv_transpose":
            return (self.in_channels, self.out_channels // self.groups, k, k)
        return None

    @property
    def out_size(self) -> int:
        k, s, p, d = self.kernel, self.effective_stride, self.padding, self.dilation
        if self.kind == "conv":
            return conv_output_size(self.size, k, s, (p, p), d)
        if self.kind == "conv_transpose":
            return conv_transpose_output_size(self.size, k, s, (p, p), d, self.output_padding)
        return pool_output_size(self.size, k, s, p, d)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        channels = self.out_channels if self.is_conv else self.in_channels
        return (self.batch, channels, self.out_size, self.out_size)

    def forward_flops(self) -> Optional[int]:
        """Forward multiply-adds x 2 (convolutions only; pooling reports none)."""
        k = (self.kernel, self.kernel)
        if self.kind == "conv":
            return conv_flops(self.batch, self.out_channels, self.in_channels // self.groups, k,
                              (self.out_size, self.out_size))
        if self.kind == "conv_transpose":
            # the conv it transposes maps the output (out_channels) back to the input
            return conv_flops(self.batch, self.in_channels, self.out_channels // self.groups, k,
                              (self.size, self.size))
        return None

    def backward_flops(self) -> Optional[int]:
        """grad-input + grad-weight, each as costly as the forward (grad-bias is negligible)."""
        f = self.forward_flops()
        return None if f is None else 2 * f

    def shape_text(self) -> str:
        """``8x64x56x56 -> 8x64x56x56``."""
        return "x".join(map(str, self.input_shape)) + " -> " + "x".join(map(str, self.output_shape))

    def with_batch(self, batch: int) -> "Layer":
        return Layer(**{**asdict(self), "batch": batch})

    def to_dict(self) -> dict:
        return {**asdict(self), "input_shape": self.input_shape, "weight_shape": self.weight_shape,
                "output_shape": self.output_shape, "forward_flops": self.forward_flops(),
                "backward_flops": self.backward_flops()}


SUITE: tuple[Layer, ...] = (
    Layer("resnet50_3x3", "ResNet-50 bottleneck 3x3, 64->64", "conv", 8, 64, 56, 3, 64, 1, 1),
    Layer("resnet50_1x1_expand", "ResNet-50 1x1 expansion, 64->256", "conv", 8, 64, 56, 1, 256),
    Layer("resnet50_1x1_s2", "ResNet-50 1x1 stride-2 projection, 256->128", "conv", 8, 256, 56,
          1, 128, 2),
    Layer("vgg_3x3", "VGG 3x3, 128->256", "conv", 8, 128, 56, 3, 256, 1, 1),
    Layer("stem_7x7_s2", "7x7 stride-2 stem, 3->64, pad 3", "conv", 8, 3, 224, 7, 64, 2, 3),
    Layer("dilated_3x3", "dilated 3x3, 64->64, dilation 2, pad 2", "conv", 8, 64, 64, 3, 64, 1,
          2, dilation=2),
    Layer("depthwise_3x3", "depthwise 3x3, 256 channels (groups=256)", "conv", 8, 256, 56, 3,
          256, 1, 1, groups=256),
    Layer("transpose_4x4_s2", "transposed 4x4 stride 2, 256->128, pad 1", "conv_transpose", 16,
          256, 16, 4, 128, 2, 1),
    Layer("maxpool_3x3_s2", "max pooling 3x3 stride 2, pad 1, 64 channels", "max_pool", 8, 64,
          112, 3, None, 2, 1),
    Layer("avgpool_2x2", "average pooling 2x2 (stride 2), 64 channels", "avg_pool", 16, 64, 56,
          2, None, None),
)

BY_NAME = {layer.name: layer for layer in SUITE}


def select(names=None) -> list[Layer]:
    """The suite, or the named layers in the order given; unknown names raise ValueError."""
    if not names:
        return list(SUITE)
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; choose from {list(BY_NAME)}")
    return [BY_NAME[n] for n in names]


def make_arrays(layer: Layer, dtype=np.float32, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal input, weight (scaled by 1/sqrt(fan-in)), bias and upstream gradient."""
    rng = np.random.default_rng(seed)
    arrays = {"input": rng.standard_normal(layer.input_shape, dtype=np.float64)}
    if layer.is_conv:
        fan_in = layer.in_channels // layer.groups * layer.kernel ** 2
        arrays["weight"] = rng.standard_normal(layer.weight_shape) / np.sqrt(fan_in)
        arrays["bias"] = rng.standard_normal(layer.out_channels) * 0.1
    arrays["grad_out"] = rng.standard_normal(layer.output_shape)
    return {k: np.ascontiguousarray(v.astype(dtype)) for k, v in arrays.items()}


def _conv_args(layer: Layer) -> dict:
    args = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation,
            "groups": layer.groups}
    if layer.kind == "conv_transpose":
        args["output_padding"] = layer.output_padding
    return args


def _pool_args(layer: Layer) -> dict:
    args = {"kernel_size": layer.kernel, "stride": layer.stride, "padding": layer.padding}
    if layer.kind == "max_pool":
        args["dilation"] = layer.dilation
    return args


def gpuconv_forward(layer: Layer, a: dict, backend: Optional[str] = None):
    """The layer's forward through gpuconv; max pooling returns ``(values, indices)``."""
    if layer.kind == "conv":
        return F.conv2d(a["input"], a["weight"], a["bias"], **_conv_args(layer), backend=backend)
    if layer.kind == "conv_transpose":
        return F.conv_transpose2d(a["input"], a["weight"], a["bias"], **_conv_args(layer),
                                  backend=backend)
    if layer.kind == "max_pool":
        return F.max_pool2d(a["input"], **_pool_args(layer), return_indices=True, backend=backend)
    return F.avg_pool2d(a["input"], **_pool_args(layer), backend=backend)


def gpuconv_backward(layer: Layer, a: dict, backend: Optional[str] = None) -> dict:
    """The layer's backward through gpuconv: ``{"input": ..., "weight": ..., "bias": ...}``
    for convolutions (all three gradients), ``{"input": ...}`` for pooling. Max pooling needs
    ``a["indices"]`` from the forward."""
    if layer.is_conv:
        op = F.conv2d_backward if layer.kind == "conv" else F.conv_transpose2d_backward
        gx, gw, gb = op(a["grad_out"], a["input"], a["weight"], **_conv_args(layer),
                        output_mask=(True, True, True), backend=backend)
        return {"input": gx, "weight": gw, "bias": gb}
    if layer.kind == "max_pool":
        return {"input": F.max_pool2d_backward(a["grad_out"], a["input"], a["indices"],
                                               **_pool_args(layer), backend=backend)}
    return {"input": F.avg_pool2d_backward(a["grad_out"], a["input"], **_pool_args(layer),
                                           backend=backend)}
