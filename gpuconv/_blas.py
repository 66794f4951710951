"""How many threads NumPy's BLAS uses: matrix products split their sums by thread, so
results (and a resumed training run) are bit-identical only under the same count."""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Optional

import numpy as np

# OpenBLAS as NumPy's wheels ship it (64-bit ints, prefixed symbols), then plain OpenBLAS
_GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
            "openblas_get_num_threads")


@functools.cache
def _getter():
    libs = Path(np.__file__).parent.parent / "numpy.libs"
    for lib in sorted(libs.glob("*openblas*.so*")):
        try:
            handle = ctypes.CDLL(str(lib))
        except OSError:
            continue
        for name in _GETTERS:
            if hasattr(handle, name):
                return getattr(handle, name)
    return None


def blas_threads() -> Optional[int]:
    """The thread count of NumPy's OpenBLAS now, or None where it cannot be asked (another
    BLAS, or NumPy linked against a system library)."""
    getter = _getter()
    return int(getter()) if getter is not None else None
