"""The PyTorch side of the benchmarks: each suite layer's forward, its backward alone, and
autograd's gradients for the correctness check. Works for CPU and CUDA tensors.

Only the benchmarks use it (cudnn.py, when ``gpuconv bench`` runs, and the checkout's
bench/), and torch is imported by its functions, when they run: importing this module, or
gpuconv, never needs torch.
The backward is timed through the ATen ops autograd itself calls
(``aten.convolution_backward``, ``aten.max_pool2d_with_indices_backward``,
``aten.avg_pool2d_backward``, ``aten._adaptive_avg_pool2d_backward``), so no graph is
built inside the timed region; ``autograd_grads`` checks that those ops give autograd's
gradients.
"""

from __future__ import annotations

from gpuconv.benchmark.suite import GRADS, Layer, run_pass


def to_torch(arrays: dict, device: str = "cpu") -> dict:
    """NumPy arrays -> tensors (sharing memory on the CPU)."""
    import torch
    return {k: torch.as_tensor(v, device=device) for k, v in arrays.items()}


def set_cudnn_precision(precision: str) -> None:
    """cuDNN's float32 convolution arithmetic: ``"ieee"`` (strict) or ``"tf32"``. Uses the
    per-op flag where this torch has it: torch raises when it is mixed with the legacy
    ``allow_tf32`` flag, which older releases only have."""
    import torch
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):
        conv.fp32_precision = precision
    else:
        torch.backends.cudnn.allow_tf32 = precision == "tf32"


def forward(layer: Layer, t: dict):
    """The layer's forward; max pooling returns ``(values, indices)`` as gpuconv's does."""
    import torch.nn.functional as TF
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
    if layer.kind == "global_avg_pool":
        return TF.adaptive_avg_pool2d(t["input"], 1)
    return TF.avg_pool2d(t["input"], layer.kernel, layer.stride, layer.padding)


def backward(layer: Layer, t: dict, grads=GRADS) -> dict:
    """The backward op alone: the convolution gradients named in ``grads``, the input's for
    pooling. Max pooling needs ``t["indices"]`` from the forward."""
    import torch
    aten = torch.ops.aten
    if layer.is_conv:
        got = aten.convolution_backward(
            t["grad_out"], t["input"], t["weight"], [layer.out_channels], list(layer.stride),
            list(layer.padding), list(layer.dilation), layer.kind == "conv_transpose",
            list(layer.output_padding), layer.groups, [g in grads for g in GRADS])
        return {g: value for g, value in zip(GRADS, got) if g in grads}
    if layer.kind == "max_pool":
        return {"input": aten.max_pool2d_with_indices_backward(
            t["grad_out"], t["input"], list(layer.kernel), list(layer.stride),
            list(layer.padding), list(layer.dilation), False, t["indices"])}
    if layer.kind == "global_avg_pool":
        return {"input": aten._adaptive_avg_pool2d_backward(t["grad_out"], t["input"])}
    return {"input": aten.avg_pool2d_backward(t["grad_out"], t["input"], list(layer.kernel),
                                              list(layer.stride), list(layer.padding), False,
                                              True, None)}


def torch_pass(layer: Layer, pass_: str, t: dict) -> dict:
    """``run_pass`` through torch."""
    return run_pass(layer, pass_, forward, backward, t)


def autograd_grads(layer: Layer, t: dict) -> dict:
    """The gradients autograd computes for ``sum(forward * grad_out)``: the reference."""
    import torch
    leaves = {k: t[k].detach().clone().requires_grad_(True)
              for k in ("input", "weight", "bias") if k in t}
    out = forward(layer, {**t, **leaves})
    if layer.kind == "max_pool":
        out = out[0]
    grads = torch.autograd.grad(out, list(leaves.values()), t["grad_out"])
    return dict(zip(leaves, grads))
