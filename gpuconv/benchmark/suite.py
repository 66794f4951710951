"""The benchmark layer suites: one description of each benchmarked layer for the CPU bench
(bench/cpu.py) and the GPU bench (``gpuconv bench``).

A ``Layer`` describes one op with its shapes; ``make_arrays`` builds its float inputs
with NumPy; ``gpuconv_forward`` / ``gpuconv_backward`` run it through
``gpuconv.functional`` on any backend (the arrays' library decides, as in the ops) and
``run_pass`` runs one timed pass (forward, grad-input or grad-weight) through either
library's functions. Nothing here imports torch; the PyTorch side is in torch_ops.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import partial
from typing import Callable, Optional, Sequence

import numpy as np

import gpuconv.functional as F
from gpuconv.shapes import (conv_flops, conv_output_size, conv_transpose_output_size, ntuple,
                            pool_output_size)

# kind -> the gpuconv op that runs it (what ``--ops`` selects)
OPS = {"conv": "conv2d", "conv_transpose": "conv_transpose2d", "max_pool": "max_pool2d",
       "avg_pool": "avg_pool2d", "global_avg_pool": "global_avg_pool2d"}
KINDS = tuple(OPS)
PASSES = ("forward", "grad_input", "grad_weight")
GRADS = ("input", "weight", "bias")
INDEX_BYTES = 8  # max pooling's int64 indices, on both sides


@dataclass(frozen=True)
class Layer:
    """One benchmarked 2-D op. Spatial sizes and hyper-parameters take an int (both axes)
    or an (H, W) pair and are stored as pairs."""

    name: str
    description: str
    kind: str
    batch: int
    in_channels: int
    size: tuple[int, int]               # input (H, W)
    kernel: tuple[int, int]
    out_channels: Optional[int] = None  # conv / conv_transpose only
    stride: Optional[tuple[int, int]] = (1, 1)  # None for pooling means stride = kernel
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    output_padding: tuple[int, int] = (0, 0)
    family: str = ""                    # what the GPU bench's geometric means group by

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        pairs = {f: ntuple(getattr(self, f), 2, f) for f in
                 ("size", "kernel", "padding", "dilation", "output_padding")}
        pairs["stride"] = pairs["kernel"] if self.stride is None else ntuple(self.stride, 2,
                                                                             "stride")
        for field, value in pairs.items():  # frozen: normalise through object.__setattr__
            object.__setattr__(self, field, value)
        if self.kind == "global_avg_pool" and self.kernel != self.size:
            raise ValueError(f"{self.name}: a global pooling window is the whole plane")

    @property
    def is_conv(self) -> bool:
        return self.kind in ("conv", "conv_transpose")

    @property
    def op(self) -> str:
        return OPS[self.kind]

    @property
    def passes(self) -> tuple[str, ...]:
        return PASSES if self.is_conv else PASSES[:2]

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, *self.size)

    @property
    def weight_shape(self) -> Optional[tuple[int, int, int, int]]:
        if self.kind == "conv":
            return (self.out_channels, self.in_channels // self.groups, *self.kernel)
        if self.kind == "conv_transpose":
            return (self.in_channels, self.out_channels // self.groups, *self.kernel)
        return None

    @property
    def out_size(self) -> tuple[int, int]:
        axes = zip(self.size, self.kernel, self.stride, self.padding, self.dilation,
                   self.output_padding)
        if self.kind == "conv":
            return tuple(conv_output_size(n, k, s, (p, p), d) for n, k, s, p, d, _ in axes)
        if self.kind == "conv_transpose":
            return tuple(conv_transpose_output_size(n, k, s, (p, p), d, op)
                         for n, k, s, p, d, op in axes)
        return tuple(pool_output_size(n, k, s, p, d) for n, k, s, p, d, _ in axes)

    @property
    def output_shape(self) -> tuple[int, int, int, int]:
        channels = self.out_channels if self.is_conv else self.in_channels
        return (self.batch, channels, *self.out_size)

    def forward_flops(self) -> Optional[int]:
        """Forward multiply-adds x 2 (convolutions only; pooling reports none). Grad-input
        and grad-weight each cost the same."""
        if self.kind == "conv":
            return conv_flops(self.batch, self.out_channels, self.in_channels // self.groups,
                              self.kernel, self.out_size)
        if self.kind == "conv_transpose":
            # the conv it transposes maps the output (out_channels) back to the input
            return conv_flops(self.batch, self.in_channels, self.out_channels // self.groups,
                              self.kernel, self.size)
        return None

    def backward_flops(self) -> Optional[int]:
        """grad-input + grad-weight (grad-bias is negligible)."""
        f = self.forward_flops()
        return None if f is None else 2 * f

    def bytes_moved(self, pass_: str, itemsize: int = 4) -> int:
        """The least traffic a pass needs: each operand read once, each result written once
        (max pooling's indices are written by the forward and read by the backward)."""
        counts = {"input": math.prod(self.input_shape), "output": math.prod(self.output_shape),
                  "weight": math.prod(self.weight_shape or ()) if self.is_conv else 0,
                  "bias": self.out_channels if self.is_conv else 0}
        touched = {"forward": ("input", "weight", "bias", "output"),
                   "grad_input": ("output", "weight", "input"),
                   "grad_weight": ("output", "input", "weight")}[pass_]
        indices = counts["output"] * INDEX_BYTES if self.kind == "max_pool" else 0
        return sum(counts[name] for name in touched) * itemsize + indices

    def shape_text(self) -> str:
        """``8x64x56x56 -> 8x64x56x56``."""
        return "x".join(map(str, self.input_shape)) + " -> " + "x".join(map(str, self.output_shape))

    def to_dict(self) -> dict:
        return {**asdict(self), "op": self.op, "input_shape": self.input_shape,
                "weight_shape": self.weight_shape, "output_shape": self.output_shape,
                "forward_flops": self.forward_flops(), "backward_flops": self.backward_flops()}


# The CPU bench's suite: small batches, so that the NumPy backend runs it in minutes.
CPU_SUITE: tuple[Layer, ...] = (
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
    Layer("depthwise_5x5", "depthwise 5x5, 256 channels (groups=256), pad 2", "conv", 8, 256, 28,
          5, 256, 1, 2, groups=256),
    Layer("transpose_3x3_s2", "transposed 3x3 stride 2, 128->64, pad 1, output padding 1",
          "conv_transpose", 16, 128, 28, 3, 64, 2, 1, output_padding=1),
    Layer("pointwise_1x1_28", "1x1, 128->512 on 28x28", "conv", 8, 128, 28, 1, 512),
    Layer("pointwise_1x1_14", "1x1, 256->1024 on 14x14", "conv", 8, 256, 14, 1, 1024),
    Layer("stem_7x7_s2_112", "7x7 stride-2 stem, 3->64, pad 3, 112x112", "conv", 8, 3, 112, 7, 64,
          2, 3),
    Layer("dilated_3x3_32", "dilated 3x3, 64->64, dilation 2, pad 2, 32x32", "conv", 8, 64, 32, 3,
          64, 1, 2, dilation=2),
    # the lenet model's own layers (gpuconv.nn.zoo), at its training batch of 128
    Layer("lenet_conv1", "lenet conv 1->32 3x3 'same', 28x28", "conv", 128, 1, 28, 3, 32, 1, 1),
    Layer("lenet_pool1", "lenet max pooling 2x2, 32x28x28", "max_pool", 128, 32, 28, 2, None,
          None),
    Layer("lenet_conv2", "lenet conv 32->64 3x3 'same', 14x14", "conv", 128, 32, 14, 3, 64, 1, 1),
    Layer("lenet_pool2", "lenet max pooling 2x2, 64x14x14", "max_pool", 128, 64, 14, 2, None,
          None),
)


def _resnet(name: str, description: str, *args, **kwargs) -> Layer:
    return Layer(name, "ResNet-50 " + description, "conv", 32, *args, family="resnet50",
                 **kwargs)


# The GPU bench's suite (float32), as issue 3 lists it. Padding keeps the spatial size
# ("same") except where the layer downsamples; DeepSpeech's layer is DeepBench's (no padding).
GPU_SUITE: tuple[Layer, ...] = (
    _resnet("resnet50_3x3_56", "3x3, 64->64, 56x56", 64, 56, 3, 64, 1, 1),
    _resnet("resnet50_1x1_56", "1x1, 64->256, 56x56", 64, 56, 1, 256),
    _resnet("resnet50_1x1_s2_56", "1x1 stride 2, 256->128, 56x56", 256, 56, 1, 128, 2),
    _resnet("resnet50_3x3_28", "3x3, 128->128, 28x28", 128, 28, 3, 128, 1, 1),
    _resnet("resnet50_3x3_14", "3x3, 256->256, 14x14", 256, 14, 3, 256, 1, 1),
    _resnet("resnet50_3x3_7", "3x3, 512->512, 7x7", 512, 7, 3, 512, 1, 1),
    _resnet("resnet50_stem_7x7_s2", "7x7 stride-2 stem, 3->64, 224x224, pad 3", 3, 224, 7, 64,
            2, 3),
    Layer("vgg_3x3_56", "VGG 3x3, 128->256, 56x56", "conv", 8, 128, 56, 3, 256, 1, 1,
          family="vgg"),
    Layer("inception_5x5_28", "Inception 5x5, 192->32, 28x28", "conv", 16, 192, 28, 5, 32, 1, 2,
          family="inception"),
    Layer("deepspeech_5x20_s2", "DeepSpeech 5x20 stride 2, 1->32, 161x700", "conv", 16, 1,
          (161, 700), (5, 20), 32, 2, family="deepspeech"),
    Layer("dilated_3x3_d2", "dilated 3x3, 64->64, 64x64, dilation 2", "conv", 16, 64, 64, 3,
          64, 1, 2, dilation=2, family="dilated"),
    Layer("dilated_3x3_d4", "dilated 3x3, 64->64, 64x64, dilation 4", "conv", 16, 64, 64, 3,
          64, 1, 4, dilation=4, family="dilated"),
    Layer("depthwise_3x3_56", "depthwise 3x3, 256 channels, 56x56", "conv", 32, 256, 56, 3, 256,
          1, 1, groups=256, family="depthwise"),
    Layer("depthwise_5x5_56", "depthwise 5x5, 256 channels, 56x56", "conv", 32, 256, 56, 5, 256,
          1, 2, groups=256, family="depthwise"),
    Layer("transpose_4x4_s2_16", "transposed 4x4 stride 2, 256->128, 16x16", "conv_transpose",
          16, 256, 16, 4, 128, 2, 1, family="transposed"),
    Layer("maxpool_3x3_s2_112", "max pooling 3x3 stride 2, pad 1, 64x112x112", "max_pool", 32,
          64, 112, 3, None, 2, 1, family="pooling"),
    Layer("global_avgpool_7", "global average pooling, 2048x7x7", "global_avg_pool", 32, 2048,
          7, 7, None, None, family="pooling"),
)


def select(suite: Sequence[Layer], names=None, ops=None) -> list[Layer]:
    """The layers of ``suite`` named in ``names`` (layer or family names, in the order given;
    all when empty) whose op is in ``ops`` (all when empty). Unknown names raise ValueError."""
    by_name = {layer.name: [layer] for layer in suite}
    for layer in suite:
        if layer.family and layer.family not in by_name:
            by_name[layer.family] = [x for x in suite if x.family == layer.family]
    unknown = [n for n in names or () if n not in by_name]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; choose from {list(by_name)}")
    bad_ops = sorted(set(ops or ()) - {layer.op for layer in suite})
    if bad_ops:
        raise ValueError(f"unknown op(s) {bad_ops}; choose from "
                         f"{sorted({layer.op for layer in suite})}")
    chosen = [x for n in names for x in by_name[n]] if names else list(suite)
    chosen = list(dict.fromkeys(chosen))  # a layer named twice (or by its family) runs once
    return [layer for layer in chosen if not ops or layer.op in ops]


def make_arrays(layer: Layer, dtype=np.float32, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal input, weight (scaled by 1/sqrt(fan-in)), bias and upstream gradient."""
    rng = np.random.default_rng(seed)
    arrays = {"input": rng.standard_normal(layer.input_shape, dtype=np.float64)}
    if layer.is_conv:
        fan_in = layer.in_channels // layer.groups * math.prod(layer.kernel)
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


def gpuconv_forward(layer: Layer, a: dict, backend: Optional[str] = None,
                    precision: str = "ieee"):
    """The layer's forward through gpuconv; max pooling returns ``(values, indices)``."""
    if layer.kind == "conv":
        return F.conv2d(a["input"], a["weight"], a["bias"], **_conv_args(layer),
                        precision=precision, backend=backend)
    if layer.kind == "conv_transpose":
        return F.conv_transpose2d(a["input"], a["weight"], a["bias"], **_conv_args(layer),
                                  precision=precision, backend=backend)
    if layer.kind == "max_pool":
        return F.max_pool2d(a["input"], **_pool_args(layer), return_indices=True, backend=backend)
    if layer.kind == "global_avg_pool":
        return F.global_avg_pool2d(a["input"], backend=backend)
    return F.avg_pool2d(a["input"], **_pool_args(layer), backend=backend)


def gpuconv_backward(layer: Layer, a: dict, backend: Optional[str] = None,
                     grads: Sequence[str] = GRADS, precision: str = "ieee") -> dict:
    """The layer's backward through gpuconv: the convolution gradients named in ``grads``
    (``{"input": ..., "weight": ..., "bias": ...}``), ``{"input": ...}`` for pooling. Max
    pooling needs ``a["indices"]`` from the forward."""
    if layer.is_conv:
        op = F.conv2d_backward if layer.kind == "conv" else F.conv_transpose2d_backward
        mask = tuple(g in grads for g in GRADS)
        got = op(a["grad_out"], a["input"], a["weight"], **_conv_args(layer), output_mask=mask,
                 precision=precision, backend=backend)
        return {g: value for g, value in zip(GRADS, got) if g in grads}
    if layer.kind == "max_pool":
        return {"input": F.max_pool2d_backward(a["grad_out"], a["input"], a["indices"],
                                               **_pool_args(layer), backend=backend)}
    if layer.kind == "global_avg_pool":
        return {"input": F.global_avg_pool2d_backward(a["grad_out"], a["input"],
                                                      backend=backend)}
    return {"input": F.avg_pool2d_backward(a["grad_out"], a["input"], **_pool_args(layer),
                                           backend=backend)}


def run_pass(layer: Layer, pass_: str, forward: Callable, backward: Callable, arrays: dict) -> dict:
    """One pass through a library's ``forward(layer, arrays)`` / ``backward(layer, arrays,
    grads=...)`` (gpuconv's above, or torch_ops'), as named results: ``output`` (and max
    pooling's ``indices``), ``grad_input`` or ``grad_weight``."""
    if pass_ == "forward":
        out = forward(layer, arrays)
        return dict(zip(("output", "indices"), out)) if layer.kind == "max_pool" else {"output": out}
    grad = pass_.removeprefix("grad_")
    return {pass_: backward(layer, arrays, grads=(grad,))[grad]}


def gpuconv_pass(layer: Layer, pass_: str, arrays: dict, backend: Optional[str] = None,
                 precision: str = "ieee") -> dict:
    """``run_pass`` through gpuconv."""
    return run_pass(layer, pass_, partial(gpuconv_forward, backend=backend, precision=precision),
                    partial(gpuconv_backward, backend=backend, precision=precision), arrays)
