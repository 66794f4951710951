"""The public ops' boundary, where the caller's arrays meet the backends' and go back.

Any array in: an array of a library no backend takes (PyTorch, JAX, ...) reaches the backend
through DLPack or the CUDA array interface without a copy (host memory -> NumPy, a CUDA
device -> CuPy or Numba), and the results go back as the caller's array type.

Unbatched inputs, as PyTorch: an op's ``input`` may lack the batch axis, ``(C, L)`` or
``(C, H, W)``; its ``grad_out`` and ``indices`` then lack it too, and so do the results
shaped like the input or the output (not a weight's or a bias' gradient).
"""

from __future__ import annotations

import functools
import inspect
import sys

from gpuconv.backends import (array_library, backend_for_array, check_backend_takes, get_backend,
                              is_foreign_array)

ARRAY_ARGUMENTS = ("input", "weight", "bias", "grad_out", "indices")
FOLLOW_INPUT = ("grad_out", "indices")  # batched exactly when the input is


def public_op(layout: str, parameter_grads: bool = False):
    """Decorate a public op whose batched input has ``layout`` ("NCL" or "NCHW").
    ``parameter_grads``: the op returns ``(grad_input, grad_weight, grad_bias)``."""
    spatial = len(layout) - 2

    def decorate(fn):
        names = list(inspect.signature(fn).parameters)
        positions = {name: names.index(name) for name in ARRAY_ARGUMENTS if name in names}

        @functools.wraps(fn)
        def op(*args, **kwargs):
            arrays = {}
            for name, i in positions.items():
                value = args[i] if i < len(args) else kwargs.get(name)
                if value is not None:
                    arrays[name] = value
            caller = _foreign_caller(arrays)
            if caller is not None:
                namespace = _caller_namespace(caller)  # before any work: results can go back
                arrays = _to_backend(arrays, kwargs.get("backend"))
            unbatched = _is_unbatched(arrays.get("input"), layout)
            if caller is None and not unbatched:  # the arrays go in as they came
                return fn(*args, **kwargs)
            if unbatched:
                arrays = _add_batch_axis(arrays, spatial + 1)
            args = list(args)
            for name, value in arrays.items():
                if positions[name] < len(args):
                    args[positions[name]] = value
                else:
                    kwargs[name] = value
            results = fn(*args, **kwargs)
            if unbatched:
                results = _drop_batch_axis(results, parameter_grads)
            return results if caller is None else _to_caller(results, namespace)
        return op
    return decorate


def _foreign_caller(arrays: dict):
    """The caller's foreign array whose type the results take, or None when every array is
    one a backend takes as it is."""
    foreign = [a for a in arrays.values() if is_foreign_array(a)]
    if not foreign:
        return None
    libraries = sorted({array_library(a) for a in arrays.values()})
    if len(libraries) > 1:
        raise TypeError(f"arrays must all come from one array library, got {libraries}")
    return foreign[0]


def _to_backend(arrays: dict, backend) -> dict:
    """The caller's arrays as arrays of the backend named (or the one their device implies),
    without a copy."""
    if backend is None:
        backend = backend_for_array(next(iter(arrays.values())))
    elif not isinstance(backend, str):
        raise TypeError(f"backend must be a string or None, got {type(backend).__name__}")
    module = get_backend(backend)
    for array in arrays.values():
        check_backend_takes(backend, array)
    converted = {}
    for name, array in arrays.items():
        if getattr(array, "is_neg", lambda: False)():  # (DLPack would share it unnegated)
            raise TypeError(f"{name} is a lazily negated PyTorch view (its negative bit is "
                            f"set), which cannot be shared without a copy: pass "
                            f"{name}.resolve_neg()")
        try:
            converted[name] = module.from_foreign(array)
        except (BufferError, RuntimeError) as exc:  # a tensor that requires grad, say
            why = ("for autograd use gpuconv.torch" if getattr(array, "requires_grad", False)
                   else "gpuconv takes float32 or float64 arrays of strided memory")
            raise TypeError(f"{name}: the {array_library(array)} array cannot be shared "
                            f"without a copy ({exc}); {why}") from exc
    return converted


def _is_unbatched(x, layout: str) -> bool:
    """Whether ``x`` lacks the batch axis; an array of neither rank is a ValueError (a
    non-array is left to the op's own checks)."""
    ndim = getattr(x, "ndim", None)
    if not isinstance(ndim, int) or not hasattr(x, "shape") or ndim == len(layout):
        return False
    if ndim == len(layout) - 1:
        return True
    raise ValueError(f"input must be {len(layout)}-D ({', '.join(layout)}) or "
                     f"{len(layout) - 1}-D without the batch axis ({', '.join(layout[1:])}), "
                     f"got shape {tuple(x.shape)}")


def _add_batch_axis(arrays: dict, unbatched_ndim: int) -> dict:
    """The input, grad_out and indices with a batch axis of one (a non-array is left to the
    op's own checks)."""
    lifted = dict(arrays)
    for name in ("input",) + FOLLOW_INPUT:
        array = arrays.get(name)
        if not hasattr(array, "ndim") or not hasattr(array, "reshape"):
            continue
        if array.ndim != unbatched_ndim:
            raise ValueError(f"{name} must be {unbatched_ndim}-D without the batch axis, like "
                             f"the input, got shape {tuple(array.shape)}")
        # reshape, not [None]: Numba device arrays take no None index
        lifted[name] = array.reshape((1,) + tuple(array.shape))
    return lifted


def _drop_batch_axis(results, parameter_grads: bool):
    if not isinstance(results, tuple):
        return results[0]
    if parameter_grads:
        grad_input, *rest = results
        return (None if grad_input is None else grad_input[0], *rest)
    return tuple(r[0] for r in results)


def _caller_namespace(caller):
    """The caller's array library (its array namespace, or the module that defines its
    type), which must make arrays from DLPack or from other arrays."""
    namespace = (caller.__array_namespace__() if hasattr(caller, "__array_namespace__")
                 else sys.modules[array_library(caller)])
    if not (hasattr(namespace, "from_dlpack") or hasattr(namespace, "asarray")):
        raise TypeError(f"results cannot be returned as {type(caller).__name__} arrays: "
                        f"{getattr(namespace, '__name__', namespace)!s} has neither from_dlpack "
                        f"nor asarray")
    return namespace


def _to_caller(results, namespace):
    """Results as arrays of the caller's library ``namespace``, without a copy."""

    def convert(result):
        if result is None:
            return None
        if hasattr(result, "__dlpack__") and hasattr(namespace, "from_dlpack"):
            return namespace.from_dlpack(result)
        return namespace.asarray(result)
    return tuple(map(convert, results)) if isinstance(results, tuple) else convert(results)
