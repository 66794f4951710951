"""PyTorch integration: gpuconv's kernels inside ``torch.autograd``.

Functions (as ``torch.nn.functional``, gradients included) and modules (subclasses of
``torch.nn``'s: the same constructor arguments, parameter initialisation, ``state_dict``
keys and ``isinstance``), so ``torch.nn.Conv2d`` can be replaced by ``gpuconv.torch.Conv2d``
in a model::

    import gpuconv.torch as gt
    model = torch.nn.Sequential(gt.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                                gt.MaxPool2d(2), torch.nn.Flatten(), torch.nn.LazyLinear(10))

CPU tensors run on the NumPy backend, CUDA tensors on CuPy (or Numba when CuPy cannot
run), both zero-copy through DLPack, on the tensor's device and PyTorch's current stream
there; ``backend=`` names one. Three ``torch.autograd.Function``s cover every op family:
``ConvFunction`` (conv and transposed conv), ``PoolFunction`` (average, adaptive, global
and power-average pooling) and ``MaxPoolFunction`` (max pooling, indices as a second,
non-differentiable output). Their backward passes are gpuconv's backward ops, once
differentiable (no double backward).

``import gpuconv`` does not import this module, and importing it does not import torch:
the Functions and modules are made on first use (``__getattr__``), when torch is needed.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Optional

from gpuconv import functional as F
from gpuconv.backends import CUDA_BACKENDS, backend_for_array, get_backend

__all__ = [
    "ConvFunction", "PoolFunction", "MaxPoolFunction",
    "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d",
    "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "global_avg_pool2d", "global_max_pool2d", "lp_pool1d", "lp_pool2d",
    "Conv1d", "Conv2d", "ConvTranspose1d", "ConvTranspose2d", "MaxPool1d", "MaxPool2d",
    "AvgPool1d", "AvgPool2d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d", "LPPool1d", "LPPool2d",
]


# --------------------------------------------------------------------------- running an op
def _run(op, *args, backend: Optional[str] = None, **kwargs):
    """Run gpuconv op ``op`` on tensors (detached: autograd is the Function's job) where they
    live: the CPU, or a CUDA device on PyTorch's current stream there."""
    import torch
    if not isinstance(args[0], torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor (gpuconv.functional takes other arrays), "
                        f"got {type(args[0]).__name__}")
    # detached, and as plain tensors: a subclass's module is no array library to return to
    args = [_plain(a.detach()) if isinstance(a, torch.Tensor) else a for a in args]
    kwargs = {k: _plain(a.detach()) if isinstance(a, torch.Tensor) else a
              for k, a in kwargs.items()}
    device = args[0].device
    if device.type == "cpu":
        return op(*args, backend=backend, **kwargs)
    if device.type != "cuda":
        raise TypeError(f"gpuconv runs CPU and CUDA tensors, got a tensor on {device}")
    backend = backend or backend_for_array(args[0])
    stream = (get_backend(backend).on_stream(device.index, torch.cuda.current_stream(device))
              if backend in CUDA_BACKENDS else contextlib.nullcontext())
    with stream:
        return op(*args, backend=backend, **kwargs)


def _plain(tensor):
    """``tensor`` as a torch.Tensor itself, sharing its memory, where it is of a subclass;
    a lazily negated view (PyTorch's negative bit, which DLPack drops) is negated first."""
    import torch
    tensor = tensor.resolve_neg()
    return tensor if type(tensor) is torch.Tensor else tensor.as_subclass(torch.Tensor)


@dataclass(frozen=True)
class Op:
    """A gpuconv op for a Function: its forward and backward, the arguments that follow the
    arrays in both (stride, padding, ...) and the backend (None: the tensors' device)."""
    forward: Callable
    backward: Callable
    args: tuple = ()
    backend: Optional[str] = None


# --------------------------------------------------------------------------- autograd Functions
@functools.cache
def _functions() -> SimpleNamespace:
    """The three ``torch.autograd.Function``s, made (and torch imported) on first use."""
    import torch
    from torch.autograd.function import once_differentiable

    class ConvFunction(torch.autograd.Function):
        """A convolution or transposed convolution: ``apply(input, weight, bias, op)``."""

        @staticmethod
        def forward(ctx, input, weight, bias, op: Op):
            ctx.save_for_backward(input, weight)
            ctx.op, ctx.has_bias = op, bias is not None
            return _run(op.forward, input, weight, bias, *op.args, backend=op.backend)

        @staticmethod
        @once_differentiable
        def backward(ctx, grad_out):
            input, weight = ctx.saved_tensors
            needs = ctx.needs_input_grad
            grads = _run(ctx.op.backward, grad_out.contiguous(), input, weight, *ctx.op.args,
                         output_mask=(needs[0], needs[1], ctx.has_bias and needs[2]),
                         backend=ctx.op.backend)
            return (*grads, None)


    class PoolFunction(torch.autograd.Function):
        """A pooling op whose backward needs only the input: ``apply(input, op)``."""

        @staticmethod
        def forward(ctx, input, op: Op):
            ctx.save_for_backward(input)
            ctx.op = op
            return _run(op.forward, input, *op.args, backend=op.backend)

        @staticmethod
        @once_differentiable
        def backward(ctx, grad_out):
            input, = ctx.saved_tensors
            return _run(ctx.op.backward, grad_out.contiguous(), input, *ctx.op.args,
                        backend=ctx.op.backend), None


    class MaxPoolFunction(torch.autograd.Function):
        """A max-pooling op: ``apply(input, op)`` returns the maxima and their int64 indices,
        through which the backward routes each gradient."""

        @staticmethod
        def forward(ctx, input, op: Op):
            output, indices = _run(op.forward, input, *op.args, return_indices=True,
                                   backend=op.backend)
            ctx.mark_non_differentiable(indices)
            ctx.save_for_backward(input, indices)
            ctx.op = op
            return output, indices

        @staticmethod
        @once_differentiable
        def backward(ctx, grad_out, _grad_indices):
            input, indices = ctx.saved_tensors
            return _run(ctx.op.backward, grad_out.contiguous(), input, indices, *ctx.op.args,
                        check_indices=False, backend=ctx.op.backend), None

    return SimpleNamespace(ConvFunction=ConvFunction, PoolFunction=PoolFunction,
                           MaxPoolFunction=MaxPoolFunction)


def _max_pool(op: Op, input, return_indices: bool):
    output, indices = _functions().MaxPoolFunction.apply(input, op)
    return (output, indices) if return_indices else output


# --------------------------------------------------------------------------- functional API
def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode: str = "zeros", backend: Optional[str] = None):
    """``torch.nn.functional.conv1d`` on gpuconv's kernels (and its ``padding_mode``)."""
    return _functions().ConvFunction.apply(input, weight, bias, Op(
        F.conv1d, F.conv1d_backward, (stride, padding, dilation, groups, padding_mode), backend))


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           padding_mode: str = "zeros", backend: Optional[str] = None):
    """``torch.nn.functional.conv2d`` on gpuconv's kernels (and its ``padding_mode``)."""
    return _functions().ConvFunction.apply(input, weight, bias, Op(
        F.conv2d, F.conv2d_backward, (stride, padding, dilation, groups, padding_mode), backend))


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, backend: Optional[str] = None):
    """``torch.nn.functional.conv_transpose1d`` on gpuconv's kernels."""
    return _functions().ConvFunction.apply(input, weight, bias, Op(
        F.conv_transpose1d, F.conv_transpose1d_backward,
        (stride, padding, output_padding, groups, dilation), backend))


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, backend: Optional[str] = None):
    """``torch.nn.functional.conv_transpose2d`` on gpuconv's kernels."""
    return _functions().ConvFunction.apply(input, weight, bias, Op(
        F.conv_transpose2d, F.conv_transpose2d_backward,
        (stride, padding, output_padding, groups, dilation), backend))


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, backend: Optional[str] = None):
    return _max_pool(Op(F.max_pool1d, F.max_pool1d_backward,
                        (kernel_size, stride, padding, dilation, ceil_mode), backend),
                     input, return_indices)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False, *, backend: Optional[str] = None):
    return _max_pool(Op(F.max_pool2d, F.max_pool2d_backward,
                        (kernel_size, stride, padding, dilation, ceil_mode), backend),
                     input, return_indices)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, *, backend: Optional[str] = None):
    return _functions().PoolFunction.apply(input, Op(F.avg_pool1d, F.avg_pool1d_backward, (
        kernel_size, stride, padding, ceil_mode, count_include_pad), backend))


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None, *, backend: Optional[str] = None):
    return _functions().PoolFunction.apply(input, Op(F.avg_pool2d, F.avg_pool2d_backward, (
        kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override), backend))


def adaptive_avg_pool1d(input, output_size, *, backend: Optional[str] = None):
    return _functions().PoolFunction.apply(input, Op(F.adaptive_avg_pool1d, F.adaptive_avg_pool1d_backward,
                                        (output_size,), backend))


def adaptive_avg_pool2d(input, output_size, *, backend: Optional[str] = None):
    return _functions().PoolFunction.apply(input, Op(F.adaptive_avg_pool2d, F.adaptive_avg_pool2d_backward,
                                        (output_size,), backend))


def adaptive_max_pool1d(input, output_size, return_indices=False, *,
                        backend: Optional[str] = None):
    return _max_pool(Op(F.adaptive_max_pool1d, F.adaptive_max_pool1d_backward, (output_size,),
                        backend), input, return_indices)


def adaptive_max_pool2d(input, output_size, return_indices=False, *,
                        backend: Optional[str] = None):
    return _max_pool(Op(F.adaptive_max_pool2d, F.adaptive_max_pool2d_backward, (output_size,),
                        backend), input, return_indices)


def global_avg_pool2d(input, *, backend: Optional[str] = None):
    """Mean of each channel plane: (N, C, H, W) -> (N, C, 1, 1)."""
    return _functions().PoolFunction.apply(input, Op(F.global_avg_pool2d, F.global_avg_pool2d_backward,
                                        (), backend))


def global_max_pool2d(input, return_indices=False, *, backend: Optional[str] = None):
    """Maximum of each channel plane: (N, C, H, W) -> (N, C, 1, 1)."""
    return _max_pool(Op(F.global_max_pool2d, F.global_max_pool2d_backward, (), backend),
                     input, return_indices)


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *,
              backend: Optional[str] = None):
    return _functions().PoolFunction.apply(input, Op(F.lp_pool1d, F.lp_pool1d_backward, (
        norm_type, kernel_size, stride, ceil_mode), backend))


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False, *,
              backend: Optional[str] = None):
    return _functions().PoolFunction.apply(input, Op(F.lp_pool2d, F.lp_pool2d_backward, (
        norm_type, kernel_size, stride, ceil_mode), backend))


# --------------------------------------------------------------------------- modules
class _OnBackend:
    """Takes the ``torch.nn`` module's own arguments plus a keyword-only ``backend``."""

    def __init__(self, *args, backend: Optional[str] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend

    def extra_repr(self) -> str:
        extra = super().extra_repr()
        return extra if self.backend is None else f"{extra}, backend={self.backend!r}"


def _conv1d_forward(self, input):
    return conv1d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                  self.groups, padding_mode=self.padding_mode, backend=self.backend)


def _conv2d_forward(self, input):
    return conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                  self.groups, padding_mode=self.padding_mode, backend=self.backend)


def _convtranspose1d_forward(self, input, output_size=None):
    output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                          self.kernel_size, 1, self.dilation)
    return conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding,
                            output_padding, self.groups, self.dilation, backend=self.backend)


def _convtranspose2d_forward(self, input, output_size=None):
    output_padding = self._output_padding(input, output_size, self.stride, self.padding,
                                          self.kernel_size, 2, self.dilation)
    return conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                            output_padding, self.groups, self.dilation, backend=self.backend)


def _maxpool1d_forward(self, input):
    return max_pool1d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                      self.ceil_mode, self.return_indices, backend=self.backend)


def _maxpool2d_forward(self, input):
    return max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                      self.ceil_mode, self.return_indices, backend=self.backend)


def _avgpool1d_forward(self, input):
    return avg_pool1d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                      self.count_include_pad, backend=self.backend)


def _avgpool2d_forward(self, input):
    return avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                      self.count_include_pad, self.divisor_override, backend=self.backend)


def _adaptiveavgpool1d_forward(self, input):
    return adaptive_avg_pool1d(input, self.output_size, backend=self.backend)


def _adaptiveavgpool2d_forward(self, input):
    return adaptive_avg_pool2d(input, self.output_size, backend=self.backend)


def _adaptivemaxpool1d_forward(self, input):
    return adaptive_max_pool1d(input, self.output_size, self.return_indices,
                               backend=self.backend)


def _adaptivemaxpool2d_forward(self, input):
    return adaptive_max_pool2d(input, self.output_size, self.return_indices,
                               backend=self.backend)


def _lppool1d_forward(self, input):
    return lp_pool1d(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode,
                     backend=self.backend)


def _lppool2d_forward(self, input):
    return lp_pool2d(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode,
                     backend=self.backend)


# torch.nn module name -> the forward of gpuconv's subclass of it
_MODULE_FORWARDS = {
    "Conv1d": _conv1d_forward,
    "Conv2d": _conv2d_forward,
    "ConvTranspose1d": _convtranspose1d_forward,
    "ConvTranspose2d": _convtranspose2d_forward,
    "MaxPool1d": _maxpool1d_forward,
    "MaxPool2d": _maxpool2d_forward,
    "AvgPool1d": _avgpool1d_forward,
    "AvgPool2d": _avgpool2d_forward,
    "AdaptiveAvgPool1d": _adaptiveavgpool1d_forward,
    "AdaptiveAvgPool2d": _adaptiveavgpool2d_forward,
    "AdaptiveMaxPool1d": _adaptivemaxpool1d_forward,
    "AdaptiveMaxPool2d": _adaptivemaxpool2d_forward,
    "LPPool1d": _lppool1d_forward,
    "LPPool2d": _lppool2d_forward,
}


@functools.cache
def _module(name: str) -> type:
    """gpuconv's subclass of ``torch.nn.<name>``, made (and torch imported) on first use."""
    import torch
    return type(name, (_OnBackend, getattr(torch.nn, name)),
                {"forward": _MODULE_FORWARDS[name], "__module__": __name__, "__qualname__": name})


def __getattr__(name: str):
    if name in _MODULE_FORWARDS:
        return _module(name)
    if name in ("ConvFunction", "PoolFunction", "MaxPoolFunction"):
        return getattr(_functions(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
