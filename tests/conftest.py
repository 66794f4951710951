"""Shared pytest configuration. The repository root is on sys.path (pyproject:
``pythonpath = ["."]``), so tests import ``oracle`` as well as ``gpuconv``."""

import os
import sys

import pytest

# Numba's CUDA simulator runs the numba backend's kernels on the CPU, so CI tests them without
# a GPU. It must be chosen before anything imports numba; setdefault lets a GPU run set 0.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")
# The simulator runs one OS thread per CUDA thread, and every syncthreads waits for all of
# them to take the GIL in turn: a 0.5 ms switch interval (default 5 ms) makes that ~6x faster.


def _simulator_shared_arrays_once_per_site():
    """The simulator's cuda.shared.array (numba-cuda 0.30's FakeCUDAShared.array) finds a
    block's array by its call site with a get, np.empty, then a set: a thread switch between
    the get and the set gives two threads two arrays, and the block then shares nothing
    through that one (a rare, nondeterministic wrong result: a conv_gemm grad-weight once
    differed between two identical launches in a full run). The same lookup, keyed as the
    simulator keys it, stored with dict.setdefault (one step under the GIL): every thread
    gets the one array first stored."""
    try:
        from numba.core import types
        from numba.cuda.simulator import kernelapi
        from numba.np import numpy_support
    except ImportError:  # no Numba: the numba backend's tests skip
        return
    import numpy as np
    dynamic_or_refused = kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic shared memory; alignment: an error
            return dynamic_or_refused(self, shape, dtype, alignment)
        caller = sys._getframe(1)
        site = (caller.f_code.co_filename, caller.f_lineno)
        found = self._allocations.get(site)
        if found is None:
            if isinstance(dtype, types.Type):
                dtype = numpy_support.as_dtype(dtype)
            found = self._allocations.setdefault(site, np.empty(shape, dtype))
        return found

    kernelapi.FakeCUDAShared.array = array


if os.environ["NUMBA_ENABLE_CUDASIM"] == "1":
    sys.setswitchinterval(5e-4)
    _simulator_shared_arrays_once_per_site()


def pytest_configure(config):
    config.addinivalue_line("markers", "last: runs after every other test (a check of what the "
                                       "session's other tests did)")


def pytest_collection_finish(session):
    """A test module whose setup runs in another process (the sm_90 compiles: minutes on one
    core) starts it now, through its ``start_early()``, so that it runs on the second core
    while the other tests run; its fixture waits for it."""
    for module in {getattr(item, "module", None) for item in session.items}:
        start = getattr(module, "start_early", None)
        if start is not None:
            start()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Tests marked ``last`` go to the end, after any reordering (pytest-randomly)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
