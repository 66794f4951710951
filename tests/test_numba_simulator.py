"""The CUDA simulator that runs the numba backend's kernels in CI, with a block's threads as
greenlets run in turn (tests/conftest.py, ``_simulator_blocks_as_greenlets``): a block's
threads share one ``cuda.shared.array``; each thread sees its own block and thread index, syncthreads waits for the threads still
running (not those that have returned), its reductions count the block, and a thread's
exception ends the launch with that exception while the others wait at a barrier, and they
unwind (later launches see their own block size)."""

from __future__ import annotations

import os

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


def test_a_block_shares_one_array():
    out = np.zeros(32, np.int64)
    for launch in range(10):
        _broadcast[1, 32](out, 1000 + launch)
        assert (out == 1000 + launch).all(), f"launch {launch}: threads read {set(out)}"


@cuda.jit
def _rotate(out, early):
    """Each block's threads rotate their global indices by one through shared memory, over two
    barriers; threads at or past ``early`` return first (the barriers then wait for the rest)."""
    shared = cuda.shared.array(64, np.int64)
    t = cuda.threadIdx.x
    if t >= early:
        return
    shared[t] = cuda.blockIdx.x * cuda.blockDim.x + t
    cuda.syncthreads()
    value = shared[(t + 1) % early]
    cuda.syncthreads()
    shared[t] = value
    cuda.syncthreads()
    out[cuda.blockIdx.x, t] = shared[t] + 1000 * cuda.syncthreads_count(t % 3 == 0)


@pytest.mark.parametrize("early", [64, 37])
def test_blocks_run_their_own_indices_and_barriers_wait_for_running_threads(early):
    out = np.full((3, 64), -1, np.int64)
    _rotate[3, 64](out, early)
    t = np.arange(early)
    want = np.arange(3)[:, None] * 64 + (t + 1) % early + 1000 * len(range(0, early, 3))
    np.testing.assert_array_equal(out[:, :early], want)
    assert (out[:, early:] == -1).all()


@cuda.jit
def _fail_in_one_thread(out):
    cuda.syncthreads()
    if cuda.threadIdx.x == 5:
        raise ValueError("thread five")
    cuda.syncthreads()  # the others wait here
    out[cuda.threadIdx.x] = 1


def test_an_exception_in_one_thread_ends_the_launch_with_it():
    out = np.zeros(32, np.int64)
    with pytest.raises(ValueError, match=r"tid=\[5, 0, 0\].*thread five"):
        _fail_in_one_thread[2, 32](out)
    _rotate[1, 64](np.zeros((1, 64), np.int64), 64)  # later launches still run


@cuda.jit(device=True)
def _wait_then_store_block_size(out, t):
    cuda.syncthreads()
    out[t] = cuda.blockDim.x


@cuda.jit
def _fail_while_the_others_wait_in_a_device_function(out):
    t = cuda.threadIdx.x
    if t == 5:
        raise ValueError("thread five")
    _wait_then_store_block_size(out, t)


@cuda.jit
def _block_size(out):
    out[cuda.threadIdx.x] = cuda.blockDim.x


def test_threads_left_waiting_by_an_exception_unwind():
    """The simulator swaps the module's ``cuda`` for the launch's while a device function runs:
    threads left suspended there would keep the failed launch's (its block size) for later
    launches."""
    with pytest.raises(ValueError, match="thread five"):
        _fail_while_the_others_wait_in_a_device_function[1, 32](np.zeros(32, np.int64))
    out = np.zeros(8, np.int64)
    _block_size[1, 8](out)
    assert (out == 8).all(), f"block size read as {set(out)}"


def test_the_numba_backend_takes_turns_in_the_simulator_from_several_threads():
    """The simulator keeps a launch's state in module globals: the numba backend's calls
    from several threads take turns (compiles included), and each gets its own result (they
    failed with AttributeError: 'Thread' object has no attribute 'threadIdx')."""
    import threading

    import gpuconv.functional as F
    rng = np.random.default_rng(0)
    cases = [(rng.standard_normal((1, 2, 5, 5 + i)), rng.standard_normal((3, 2, 3, 3)))
             for i in range(4)]
    got, errors = [None] * len(cases), []

    def run(i):
        try:
            x, w = cases[i]
            flipped = F.conv2d(cuda.to_device(x), cuda.to_device(w[:, :, ::-1, ::-1].copy()),
                               flip=True, backend="numba")  # (its own copy launch)
            got[i] = (F.conv2d(x, w, backend="numba"), F.max_pool2d(x, 2, backend="numba"),
                      flipped.copy_to_host())
        except Exception as exc:  # (reported below: a thread's exception is not the test's)
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for (x, w), (y, pooled, flipped) in zip(cases, got):
        np.testing.assert_allclose(y, F.conv2d(x, w), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(flipped, y, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(pooled, F.max_pool2d(x, 2))
