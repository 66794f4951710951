"""Moving test arrays to a backend's array kind and back, shared by the test tables.

``GPU_BACKENDS`` lists the GPU backends that run on real hardware here: CuPy when it has a
driver, Numba when it has one too (not its CUDA simulator, which tests/conftest.py turns on
without a GPU).
"""

from __future__ import annotations

import os

import numpy as np

from gpuconv.backends import unavailable_reason

SIMULATED = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
GPU_BACKENDS = [b for b in ("cupy", "numba")
                if unavailable_reason(b) is None and not (b == "numba" and SIMULATED)]


def to_backend(backend: str, array):
    """A private copy of ``array`` as the backend's array kind (NumPy for "cupy-host" and
    "reference")."""
    if array is None or backend in ("numpy", "cupy-host", "reference"):
        return None if array is None else np.array(array)
    if backend == "cupy":
        import cupy
        return cupy.asarray(array)
    if backend == "numba":
        from numba import cuda
        return cuda.to_device(np.ascontiguousarray(array))
    raise ValueError(backend)


def to_numpy(array):
    if array is None or isinstance(array, np.ndarray):
        return array
    if hasattr(array, "copy_to_host"):  # numba device array
        return array.copy_to_host()
    import cupy
    return cupy.asnumpy(array)
