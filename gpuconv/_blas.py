"""How many threads NumPy's BLAS uses: matrix products split their sums by thread, so
results (and a resumed training run) are bit-identical only under the same count."""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Optional

import numpy as np

# OpenBLAS as NumPy's wheels ship it (64-bit ints, prefixed symbols), then plain OpenBLAS
_PREFIXES = ("scipy_openblas_{}64_", "openblas_{}64_", "openblas_{}")


@functools.cache
def _function(name: str):
    """OpenBLAS's ``openblas_<name>`` in NumPy's copy of it, or None."""
    libs = Path(np.__file__).parent.parent / "numpy.libs"
    for lib in sorted(libs.glob("*openblas*.so*")):
        try:
            handle = ctypes.CDLL(str(lib))
        except OSError:
            continue
        for prefix in _PREFIXES:
            if hasattr(handle, prefix.format(name)):
                function = getattr(handle, prefix.format(name))
                function.argtypes = [ctypes.c_int] if name.startswith("set") else []
                return function
    return None


def blas_threads() -> Optional[int]:
    """The thread count of NumPy's OpenBLAS now, or None where it cannot be asked (another
    BLAS, or NumPy linked against a system library)."""
    getter = _function("get_num_threads")
    return int(getter()) if getter is not None else None


def set_blas_threads(threads: int) -> bool:
    """Make NumPy's OpenBLAS use ``threads`` threads from now on; False where it cannot be
    told (another BLAS)."""
    setter = _function("set_num_threads")
    if setter is None:
        return False
    setter(threads)
    return True
