"""The PyTorch side of the benchmarks: each suite layer's forward, its backward alone, and
autograd's gradients for the correctness check. Works for CPU and CUDA tensors.

The backward is timed through the ATen ops autograd itself calls
(``aten.convolution_backward``, ``aten.max_pool2d_with_indices_backward``,
``aten.avg_pool2d_backward``), so no graph is built inside the timed region;
``autograd_grads`` checks that those ops give autograd's gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as TF

from bench.layers import Layer

aten = torch.ops.aten


def to_torch(arrays: dict, device: str = "cpu") -> dict:
    """NumPy arrays -> tensors (sharing memory on the CPU)."""
    return {k: torch.as_tensor(v, device=device) for k, v in arrays.items()}


def _pair(v):
    return [v, v]


def forward(layer: Layer, t: dict):
    """The layer's forward; max pooling returns ``(values, indices)`` as gpuconv's does."""
    if layer.kind == "conv":
        return TF.conv2d(t["input"], t["weight"], t["bias"], layer.stride, layer.padding,
                         layer.dilation, layer.groups)
    if layer.kind == "conv_transpose":
        return TF.conv_transpose2d(t["input"], t["weight"], t["bias"], layer.stride,
                                   layer.padding, layer.output_padding, layer.groups,
                                   layer.dilation)
    if layer.kind == "max_pool":
        return TF.max_pool2d(t["input"], layer.kernel, layer.stride, layer.padding,
                             layer.dilation, return_indices=True)
    return TF.avg_pool2d(t["input"], layer.kernel, layer.stride, layer.padding)


def backward(layer: Layer, t: dict) -> dict:
    """The backward op alone (all three gradients for convolutions). Max pooling needs
    ``t["indices"]`` from the forward."""
    if layer.is_conv:
        gx, gw, gb = aten.convolution_backward(
            t["grad_out"], t["input"], t["weight"], [layer.out_channels],
            _pair(layer.stride), _pair(layer.padding), _pair(layer.dilation),
            layer.kind == "conv_transpose", _pair(layer.output_padding), layer.groups,
            [True, True, True])
        return {"input": gx, "weight": gw, "bias": gb}
    stride = _pair(layer.effective_stride)
    if layer.kind == "max_pool":
        return {"input": aten.max_pool2d_with_indices_backward(
            t["grad_out"], t["input"], _pair(layer.kernel), stride, _pair(layer.padding),
            _pair(layer.dilation), False, t["indices"])}
    return {"input": aten.avg_pool2d_backward(t["grad_out"], t["input"], _pair(layer.kernel),
                                              stride, _pair(layer.padding), False, True, None)}


def autograd_grads(layer: Layer, t: dict) -> dict:
    """The gradients autograd computes for ``sum(forward * grad_out)``: the reference."""
    leaves = {k: t[k].detach().clone().requires_grad_(True)
              for k in ("input", "weight", "bias") if k in t}
    out = forward(layer, {**t, **leaves})
    if layer.kind == "max_pool":
        out = out[0]
    grads = torch.autograd.grad(out, list(leaves.values()), t["grad_out"])
    return dict(zip(leaves, grads))
