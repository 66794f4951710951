"""The CUDA simulator that runs the numba backend's kernels in CI (tests/conftest.py): a
block's threads share one ``cuda.shared.array`` even when a thread switch falls inside its
lookup (forced here: ``np.empty`` first yields the GIL), which numba-cuda 0.30's simulator
alone does not ensure (conftest's ``_simulator_shared_arrays_once_per_site``)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("the simulator's own behaviour", allow_module_level=True)
cuda = pytest.importorskip("numba.cuda")


@cuda.jit
def _broadcast(out, value):
    """Thread 0 stores ``value`` in shared memory; after the barrier every thread reads it."""
    shared = cuda.shared.array(1, np.int64)
    if cuda.threadIdx.x == 0:
        shared[0] = value
    cuda.syncthreads()
    out[cuda.threadIdx.x] = shared[0]


def test_a_block_shares_one_array_even_when_threads_switch_inside_its_lookup(monkeypatch):
    empty = np.empty

    def yielding_empty(*args, **kwargs):
        time.sleep(0)  # a thread switch where the simulator looks the array up
        return empty(*args, **kwargs)
    monkeypatch.setattr(np, "empty", yielding_empty)
    out = np.zeros(32, np.int64)
    for launch in range(10):
        _broadcast[1, 32](out, 1000 + launch)
        assert (out == 1000 + launch).all(), f"launch {launch}: threads read {set(out)}"
