"""Input validation shared by the public ops: every rule raises a ValueError or
TypeError that names the argument and the rule, before any backend runs."""

from __future__ import annotations

from typing import Sequence

from gpuconv.backends import backend_for_array, get_backend

FLOAT_DTYPES = ("float32", "float64")


def check_array(array, name: str, layout: str):
    """``array`` must be a float32/float64 array with one axis per letter of ``layout``."""
    if not all(hasattr(array, attr) for attr in ("shape", "dtype", "ndim")):
        raise TypeError(f"{name} must be an array, got {type(array).__name__}")
    if str(array.dtype) not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {array.dtype}")
    if array.ndim != len(layout):
        hint = " (add a batch axis with x[None])" if array.ndim == len(layout) - 1 and layout[0] == "N" else ""
        raise ValueError(f"{name} must be {len(layout)}-D ({', '.join(layout)}), "
                         f"got shape {tuple(array.shape)}{hint}")
    return array


def check_same_dtype(reference_name: str, reference, **others) -> None:
    for name, array in others.items():
        if array is not None and array.dtype != reference.dtype:
            raise TypeError(f"{name} has dtype {array.dtype} but {reference_name} has "
                            f"{reference.dtype}; convert one of them")


def check_shape(array, name: str, expected: Sequence[int], why: str) -> None:
    if tuple(array.shape) != tuple(expected):
        raise ValueError(f"{name} must have shape {tuple(expected)} ({why}), "
                         f"got {tuple(array.shape)}")


def check_positive_dims(array, name: str, axes: str, layout: str) -> None:
    """The named axes (letters of ``layout``) of ``array`` must be non-empty."""
    for axis in axes:
        if array.shape[layout.index(axis)] <= 0:
            raise ValueError(f"{name} must have a positive {axis} dimension, got shape "
                             f"{tuple(array.shape)}")


def resolve_backend(backend: str | None, *arrays):
    """The backend module for ``arrays``: the one named, or the one their library implies."""
    arrays = [a for a in arrays if a is not None]
    kinds = {backend_for_array(a) for a in arrays}
    if len(kinds) > 1:
        raise TypeError(f"arrays must all come from one array library, got {sorted(kinds)}")
    implied = kinds.pop()
    if backend is None:
        backend = implied
    elif not isinstance(backend, str):
        raise TypeError(f"backend must be a string or None, got {type(backend).__name__}")
    module = get_backend(backend)
    if backend == "numpy" and implied != "numpy":
        raise TypeError(f"backend 'numpy' takes numpy arrays, got {implied} arrays; "
                        f"use backend={implied!r} or copy them to the host")
    return module
