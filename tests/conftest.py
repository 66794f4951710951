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
if os.environ["NUMBA_ENABLE_CUDASIM"] == "1":
    sys.setswitchinterval(5e-4)


def pytest_configure(config):
    config.addinivalue_line("markers", "last: runs after every other test (a check of what the "
                                       "session's other tests did)")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Tests marked ``last`` go to the end, after any reordering (pytest-randomly)."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)
