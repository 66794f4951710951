"""The pooling ops of both GPU backends, written once: each builds ``gpu_plan``'s pooling
plan for a call signature and runs it through the backend's own executor.

``bind(globals(), call, prepare, strides)`` adds them to a backend module: ``call(build, arrays,
options)`` runs the call that ``build(context, *arrays, *options)`` prepares (once per
signature); ``prepare(context, plan, arrays, names, outputs, contiguous)`` makes a prepared
call of a plan (``names``: the plan's buffer of each input and output slot; ``outputs``:
(shape, dtype) of each output, None where not asked for; ``contiguous``: the input slots a
kernel indexes flat); ``strides(array)``: the element strides the plans are made for.

Kernels and maths: kernels/pool.cu and its twin kernels/pool_numba.py (reference:
``gpuconv.backends.reference``'s pooling functions).
"""

from __future__ import annotations

import numpy as np

from gpuconv.backends import gpu_plan
from gpuconv.shapes import PoolSpec


def checks_index_values() -> bool:
    """False: ``max_pool2d_backward``'s kernel flags an index outside its plane or outside
    its window on the device (``gpuconv.check_errors``) instead of raising, so indices from
    the host are checked by the caller first."""
    return False


def bind(namespace: dict, call, prepare, strides) -> None:
    """Add ``pooling_ops(call, prepare, strides)`` to a backend module's ``namespace`` (its
    ``globals()``); a name the module defines already is refused, not replaced."""
    ops = pooling_ops(call, prepare, strides)
    taken = sorted(namespace.keys() & ops.keys())
    if taken:
        raise RuntimeError(f"{namespace.get('__name__')} defines {taken} itself")
    namespace.update(ops)


def pooling_ops(call, prepare, strides) -> dict:
    """The pooling entries of ``gpuconv.backends.KERNELS`` for a backend (see the module's
    docstring), by name, each a plain function."""

    def pooled(x, out_hw) -> tuple:
        return (tuple(x.shape[:2]) + tuple(out_hw), np.dtype(x.dtype).name)

    def build_max_pool(context, x, spec: PoolSpec | None, out_hw, return_indices: bool):
        out_hw = spec.output_shape(x.shape[2:]) if spec is not None else out_hw
        indices = (pooled(x, out_hw)[0], "int64") if return_indices else None
        return prepare(context, gpu_plan.max_pool_plan(x.shape, strides(x), spec,
                                                       np.dtype(x.dtype).name, return_indices,
                                                       out_hw),
                       (x,), ("x", "out", "indices"), (pooled(x, out_hw), indices), ())

    def max_pool2d(x, spec: PoolSpec, return_indices: bool = True):
        """y (N, C, H_out, W_out) and, if asked, int64 flat indices ``h*W + w`` of each
        maximum."""
        out, indices = call(build_max_pool, (x,), (spec, None, return_indices))
        return out, indices

    def adaptive_max_pool2d(x, out_hw):
        """Max over adaptive windows, with indices."""
        out, indices = call(build_max_pool, (x,), (None, tuple(out_hw), True))
        return out, indices

    def build_max_pool2d_backward(context, grad_out, indices, input_hw,
                                  spec: PoolSpec | None):
        return prepare(context, gpu_plan.max_pool_backward_plan(
            grad_out.shape, strides(grad_out), input_hw, spec, np.dtype(grad_out.dtype).name),
            (grad_out, indices), ("grad_out", "indices", "out"), (pooled(grad_out, input_hw),),
            (1,))

    def max_pool2d_backward(grad_out, indices, input_hw, spec: PoolSpec | None):
        """dL/dx (N, C, H, W): each element gathers the gradients of the outputs whose window
        may hold it (closed form from ``spec``; adaptive windows when None) and whose index
        names it; an index outside the plane or the window sets the device's error word
        (``gpuconv.check_errors``)."""
        return call(build_max_pool2d_backward, (grad_out, indices), (tuple(input_hw), spec))[0]

    def build_avg_pool(context, x, spec: PoolSpec | None, out_hw, count_include_pad,
                       divisor_override, norm):
        out_hw = spec.output_shape(x.shape[2:]) if spec is not None else out_hw
        return prepare(context, gpu_plan.avg_pool_plan(x.shape, strides(x), spec,
                                                       np.dtype(x.dtype).name,
                                                       count_include_pad, divisor_override,
                                                       out_hw, norm),
                       (x,), ("x", "out"), (pooled(x, out_hw),), ())

    def avg_pool2d(x, spec: PoolSpec, count_include_pad: bool, divisor_override):
        return call(build_avg_pool, (x,),
                    (spec, None, count_include_pad, divisor_override, None))[0]

    def adaptive_avg_pool2d(x, out_hw):
        return call(build_avg_pool, (x,), (None, tuple(out_hw), True, None, None))[0]

    def lp_pool2d(x, spec: PoolSpec, norm_type: float):
        """PyTorch's definition: (window size * avg_pool(x ** p)) ** (1/p), in one kernel."""
        return call(build_avg_pool, (x,), (spec, None, True, None, norm_type))[0]

    def build_avg_backward(context, grad_out, spec: PoolSpec | None, input_hw,
                           count_include_pad, divisor_override):
        return prepare(context, gpu_plan.avg_pool_backward_plan(
            grad_out.shape, strides(grad_out), spec, input_hw, np.dtype(grad_out.dtype).name,
            count_include_pad, divisor_override),
            (grad_out,), ("grad_out", "out"), (pooled(grad_out, input_hw),), ())

    def avg_pool2d_backward(grad_out, spec: PoolSpec, input_hw, count_include_pad: bool,
                            divisor_override):
        return call(build_avg_backward, (grad_out,),
                    (spec, tuple(input_hw), count_include_pad, divisor_override))[0]

    def adaptive_avg_pool2d_backward(grad_out, input_hw):
        return call(build_avg_backward, (grad_out,), (None, tuple(input_hw), True, None))[0]

    def build_lp_pool2d_backward(context, grad_out, x, spec: PoolSpec, norm_type: float):
        """The per-window scale (avg_pool2d, op 2) into a workspace, then the average gather
        of it times p * x^(p-1)."""
        dtype = np.dtype(x.dtype).name
        return prepare(context, gpu_plan.lp_pool_backward_plan(
            grad_out.shape, strides(grad_out), x.shape, strides(x), spec, dtype, norm_type),
            (grad_out, x), ("grad_out", "x", "out"), ((tuple(x.shape), dtype),), ())

    def lp_pool2d_backward(grad_out, x, spec: PoolSpec, norm_type: float):
        return call(build_lp_pool2d_backward, (grad_out, x), (spec, norm_type))[0]

    return dict(
        max_pool2d=max_pool2d, adaptive_max_pool2d=adaptive_max_pool2d,
        max_pool2d_backward=max_pool2d_backward, avg_pool2d=avg_pool2d,
        adaptive_avg_pool2d=adaptive_avg_pool2d, lp_pool2d=lp_pool2d,
        avg_pool2d_backward=avg_pool2d_backward,
        adaptive_avg_pool2d_backward=adaptive_avg_pool2d_backward,
        lp_pool2d_backward=lp_pool2d_backward, checks_index_values=checks_index_values)
