"""Input validation shared by the public ops and gpuconv.nn: every rule raises a ValueError
or TypeError that names the argument and the rule, before any backend runs."""

from __future__ import annotations

import math
import numbers
import os
from typing import Sequence

import numpy as np

from gpuconv.backends import backend_for_array, check_backend_takes, get_backend

FLOAT_DTYPES = ("float32", "float64")
MAX_BYTES_ENV = "GPUCONV_MAX_BYTES"
# os.environ's own dict of encoded names and values (CPython, PyPy), which os.environ keeps in
# step: a lookup there costs ~20 ns against ~700 ns for os.environ.get, and every op call
# reads the setting (gpuconv.functional's signature memo)
_ENVIRON_DATA = getattr(os.environ, "_data", None)
_MAX_BYTES_KEY = os.environ.encodekey(MAX_BYTES_ENV) if _ENVIRON_DATA is not None else None


class SettingError(ValueError):
    """A GPUCONV_* environment variable holds a value gpuconv cannot use (the message names
    it and its rule)."""


class SizeLimitError(ValueError):
    """An array an op would create is above the byte limit (the physical memory, or
    $GPUCONV_MAX_BYTES)."""


def max_bytes_setting():
    """``$GPUCONV_MAX_BYTES`` as it is set now, unparsed (None when unset)."""
    if _ENVIRON_DATA is None:
        return os.environ.get(MAX_BYTES_ENV)
    return _ENVIRON_DATA.get(_MAX_BYTES_KEY)


def max_array_bytes() -> int:
    """The most bytes one array an op creates may take: ``$GPUCONV_MAX_BYTES`` when set, else
    the host's physical memory (more cannot be held at once; NumPy would fail late with a
    MemoryError, a GPU library with its own out-of-memory error)."""
    configured = int_setting(MAX_BYTES_ENV, None, 1, math.inf,
                             "a positive integer number of bytes")
    if configured is not None:
        return configured
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(physical, np.iinfo(np.intp).max)


def int_setting(name: str, default, minimum: int, maximum: float, rule: str):
    """The integer in environment variable ``name`` (``default`` when unset or blank); a
    SettingError naming it and ``rule`` unless it is an integer in [minimum, maximum]."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = minimum - 1
    if not minimum <= number <= maximum:
        raise SettingError(f"{name} must be {rule}, got {value!r}")
    return number


def short_repr(value) -> str:
    """``repr(value)``, cut to a length an error message can hold."""
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


def check_int(value, name: str, minimum: int) -> int:
    """``value`` must be an int (not a bool, not a float) of at least ``minimum``: the one
    rule for counts and sizes."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        rule = {0: "a non-negative int", 1: "a positive int"}.get(minimum,
                                                                  f"an int >= {minimum}")
        raise ValueError(f"{name} must be {rule}, got {short_repr(value)}")
    return int(value)


def finite_float(value) -> float | None:
    """``value`` as a finite float, or None where it is none: not a real number (a bool, a
    string that ``float`` reads), NaN, infinite, or an int past a float's range."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None


def check_number(value, name: str) -> float:
    """``value`` must be a finite real number (``finite_float``)."""
    number = finite_float(value)
    if number is None:
        raise ValueError(f"{name} must be a finite number, got {short_repr(value)}")
    return number


def check_fraction(value, name: str) -> float:
    """``value`` must be a finite number in [0, 1) (a rate, a momentum, a moment's decay)."""
    value = check_number(value, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value


def over_byte_limit(nbytes: int) -> str | None:
    """Why ``nbytes`` bytes in one array are too many ("N bytes, above the limit of ..."), or
    None where they fit ``max_array_bytes()``."""
    limit = max_array_bytes()
    if nbytes <= limit:
        return None
    return (f"{nbytes:,} bytes, above the limit of {limit:,} bytes (the physical memory, or "
            f"${MAX_BYTES_ENV})")


def check_array_bytes(name: str, shape: Sequence[int], itemsize: int, what: str) -> None:
    """An array of ``shape`` that an op is about to create must fit ``max_array_bytes()``;
    ``name`` is the argument that makes it this large, ``what`` the array."""
    over = over_byte_limit(math.prod(shape) * itemsize)
    if over:
        raise SizeLimitError(f"{name} is too large: {what} would have shape {tuple(shape)}, "
                             f"{over}")


def check_array(array, name: str, layout: str):
    """``array`` must be a float32/float64 array with one axis per letter of ``layout``."""
    if not all(hasattr(array, attr) for attr in ("shape", "dtype", "ndim")):
        raise TypeError(f"{name} must be an array, got {type(array).__name__}")
    check_not_masked(array, name)
    if not isinstance(array.dtype, np.dtype):
        raise TypeError(f"{name} must be an array with a NumPy dtype, got a "
                        f"{type(array).__name__} whose dtype is {short_repr(array.dtype)}")
    if array.dtype.name not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have dtype float32 or float64, got {array.dtype}")
    if not array.dtype.isnative:  # the kernels read the machine's byte order
        raise TypeError(f"{name} has byte order {array.dtype.str!r}, not this machine's: "
                        f"pass {name}.astype({array.dtype.name!r})")
    if array.ndim != len(layout):
        hint = " (add a batch axis with x[None])" if array.ndim == len(layout) - 1 and layout[0] == "N" else ""
        raise ValueError(f"{name} must be {len(layout)}-D ({', '.join(layout)}), "
                         f"got shape {tuple(array.shape)}{hint}")
    strides = getattr(array, "strides", None) or ()
    if any(s == 0 and n > 1 for s, n in zip(strides, array.shape)):
        # a broadcast view holds few elements, but an op copies it whole (its gradient too)
        check_array_bytes(name, array.shape, array.dtype.itemsize,
                          "a copy of this broadcast view")
    return array


def check_not_masked(array, name: str) -> None:
    if isinstance(array, np.ma.MaskedArray):
        raise TypeError(f"{name} is a masked array, whose mask no op would honour: pass "
                        f"{name}.filled(value) or {name}.data")


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
    check_backend_takes(backend, arrays[0])
    return module


def check_bool(value, name: str) -> bool:
    """``value`` must be a ``bool`` or a NumPy bool: a truthy string such as ``"False"`` or a
    number would silently turn an option on."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")


def check_output_mask(output_mask) -> tuple[bool, bool, bool]:
    """``output_mask`` must be a tuple or list of 3 bools (grad_input, grad_weight, grad_bias)."""
    rule = "output_mask must be a tuple of 3 bools (grad_input, grad_weight, grad_bias)"
    if not isinstance(output_mask, (tuple, list)):
        raise TypeError(f"{rule}, got {type(output_mask).__name__} {output_mask!r}")
    if len(output_mask) != 3:
        raise ValueError(f"{rule}, got {len(output_mask)} values {output_mask!r}")
    return tuple(check_bool(m, f"output_mask[{i}]") for i, m in enumerate(output_mask))
