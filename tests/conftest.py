"""Shared pytest configuration. The repository root is on sys.path (pyproject:
``pythonpath = ["."]``), so tests import ``oracle`` as well as ``gpuconv``."""

import os
import sys
import threading

import numpy as np
import pytest

# Numba's CUDA simulator runs the numba backend's kernels on the CPU, so CI tests them without
# a GPU. It must be chosen before anything imports numba; setdefault lets a GPU run set 0.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


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


class _BlockBarrier:
    """``syncthreads`` for one simulated block: the threads still running wait until all of
    them have arrived (a thread that has returned no longer counts, as the simulator's own
    rule); a thread that raised releases the others with ``RuntimeError`` (abort)."""

    def __init__(self, threads: int):
        self.condition = threading.Condition()
        self.running, self.arrived, self.generation = threads, 0, 0
        self.failed = None  # the first thread that raised

    def wait(self):
        with self.condition:
            if self.failed is None:
                generation = self.generation
                self.arrived += 1
                if self.arrived == self.running:
                    self._release()
                while generation == self.generation and self.failed is None:
                    self.condition.wait()
            if self.failed is not None:
                raise RuntimeError("abort: another thread of the block raised")

    def leave(self, thread):
        """``thread`` returned or raised: it no longer counts at a barrier (when every thread
        has left, ``arrived == running == 0`` releases ``wait_done``)."""
        with self.condition:
            self.running -= 1
            if thread.exception is not None and self.failed is None:
                self.failed = thread
            if self.failed is not None or self.arrived == self.running:
                self._release()

    def wait_done(self):
        """Until every thread of the block has returned."""
        with self.condition:
            while self.running:
                self.condition.wait()

    def _release(self):
        self.arrived, self.generation = 0, self.generation + 1
        self.condition.notify_all()


def _simulator_blocks_on_pooled_threads():
    """The simulator's BlockManager (numba-cuda 0.30) starts a new OS thread for every CUDA
    thread of every block, and finds the threads waiting in syncthreads by polling all of them
    in a loop that never sleeps: with 128 or 256 threads a block, thread creation and that
    loop took most of the simulator tests' time, in the kernel more than in Python. Here the
    same rule of syncthreads is kept by a condition variable (``_BlockBarrier``), and a block
    runs on threads kept from earlier blocks (each told its blockIdx and threadIdx)."""
    try:
        from numba.cuda.simulator import kernel
    except ImportError:
        return
    simulate_block = kernel.BlockManager.run

    class PooledThread(kernel.BlockThread):
        def __init__(self):
            threading.Thread.__init__(self, daemon=True)
            self.assigned = threading.Event()
            self.start()

        def assign(self, manager, f, args, block_index, thread_index):
            """Run ``f(*args)`` as thread ``thread_index`` of block ``block_index``."""
            self._manager, self._f_args = manager, (f, args)
            self.blockIdx, self.threadIdx = kernel.Dim3(*block_index), kernel.Dim3(*thread_index)
            x, y, _ = manager._block_dim
            self.thread_id = thread_index[0] + x * (thread_index[1] + y * thread_index[2])
            self.exception = None
            self.assigned.set()

        def run(self):
            while True:
                self.assigned.wait()
                self.assigned.clear()
                # Thread.run's target, which it deletes after the call
                (self._target, self._args), self._kwargs = self._f_args, {}
                try:
                    kernel.BlockThread.run(self)  # keeps a raised exception in self.exception
                finally:
                    self._manager.barrier.leave(self)

        def syncthreads(self):
            self._manager.barrier.wait()

    idle, idle_lock = [], threading.Lock()

    def run_block(self, grid_point, *args):
        if self._debug:
            return simulate_block(self, grid_point, *args)
        points = list(np.ndindex(*self._block_dim))
        with idle_lock:  # launches may come from several test threads at once
            workers = [idle.pop() if idle else None for _ in points]
        workers = [worker or PooledThread() for worker in workers]
        self.barrier = _BlockBarrier(len(points))
        for worker, point in zip(workers, points):
            worker.assign(self, self._f, args, grid_point, point)
        self.barrier.wait_done()
        with idle_lock:
            idle.extend(workers)
        if self.barrier.failed is not None:
            error, traceback = self.barrier.failed.exception
            raise error.with_traceback(traceback)

    kernel.BlockManager.run = run_block


if os.environ["NUMBA_ENABLE_CUDASIM"] == "1":
    _simulator_shared_arrays_once_per_site()
    _simulator_blocks_on_pooled_threads()


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
