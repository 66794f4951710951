"""Shared pytest configuration. The repository root is on sys.path (pyproject:
``pythonpath = ["."]``), so tests import ``oracle`` as well as ``gpuconv``."""

import functools
import os
import sys
import threading

import numpy as np
import pytest

# Numba's CUDA simulator runs the numba backend's kernels on the CPU, so CI tests them without
# a GPU. It must be chosen before anything imports numba; setdefault lets a GPU run set 0.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")


def _simulator_blocks_as_greenlets():
    """The simulator's BlockManager (numba-cuda 0.30) starts an OS thread for every CUDA thread
    of every block and finds the threads waiting in syncthreads by polling them in a loop that
    never sleeps: thread switches and that loop took most of the simulator tests' time. Here a
    block's threads are greenlets run in turn on the launching thread, each until it reaches a
    barrier or returns, with the simulator's rules: syncthreads waits for the threads still
    running (a thread that has returned no longer counts), and a thread's exception ends the
    launch with it (named by its thread and block index). Threads switch only at barriers, so
    none is ever inside the simulator's lookup of a block's shared array (get, np.empty, set)
    while another does the same: its OS threads could switch there and give one block two
    arrays. The simulator asks ``threading.current_thread()`` for the running CUDA thread; its
    module gets a ``threading`` whose ``current_thread`` answers the running greenlet's."""
    try:
        import greenlet
        from numba.cuda.simulator import kernel, kernelapi
    except ImportError:  # no Numba (its tests skip), or no greenlet (the stock simulator)
        return
    simulate_block = kernel.BlockManager.run

    def release(block):
        """Every thread still running has arrived: the barrier's waiters may leave."""
        block.arrived, block.generation = 0, block.generation + 1

    class CudaThread(greenlet.greenlet):
        """One CUDA thread of a block: the simulator's BlockThread without an OS thread."""

        syncthreads_count = kernel.BlockThread.syncthreads_count
        syncthreads_and = kernel.BlockThread.syncthreads_and
        syncthreads_or = kernel.BlockThread.syncthreads_or

        def __init__(self, block, call, block_index, thread_index):
            super().__init__()
            self._manager, self._call = block, call
            self.blockIdx, self.threadIdx = kernel.Dim3(*block_index), kernel.Dim3(*thread_index)
            x, y, _ = block._block_dim
            self.thread_id = thread_index[0] + x * (thread_index[1] + y * thread_index[2])
            self.exception = None
            self.waits_to_leave = None  # the generation of the barrier it waits at

        def run(self):
            try:
                self._call()
            except Exception as error:  # reported as the simulator's BlockThread does
                where = f"tid={list(self.threadIdx)} ctaid={list(self.blockIdx)}"
                self.exception = (type(error)(f"{where}: {error}" if str(error) else where),
                                  sys.exc_info()[2])

        def syncthreads(self):
            block = self._manager
            block.arrived += 1
            if block.arrived == block.running:
                release(block)
            else:
                self.waits_to_leave = block.generation
                self.parent.switch()  # to run_block, until the last thread arrives

        def runnable(self) -> bool:
            return self.waits_to_leave is None or self.waits_to_leave != self._manager.generation

    def run_block(self, grid_point, *args):
        if self._debug:
            return simulate_block(self, grid_point, *args)
        threads = [CudaThread(self, functools.partial(self._f, *args), grid_point, point)
                   for point in np.ndindex(*self._block_dim)]
        self.running, self.arrived, self.generation = len(threads), 0, 0
        try:
            while threads:
                for thread in threads:
                    if not thread.runnable():
                        continue
                    thread.waits_to_leave = None
                    thread.switch()
                    if thread.exception is not None:
                        error, traceback = thread.exception
                        raise error.with_traceback(traceback)
                    if thread.dead:  # it no longer counts at a barrier
                        self.running -= 1
                        if self.arrived and self.arrived == self.running:
                            release(self)
                threads = [thread for thread in threads if not thread.dead]
        finally:  # after an exception: the others unwind (the simulator's swapped cuda module)
            for thread in threads:
                if not thread.dead:
                    thread.throw()

    class SimulatorThreading:
        """What the simulator's kernelapi uses of ``threading``."""
        Lock = threading.Lock

        @staticmethod
        def current_thread():
            running = greenlet.getcurrent()
            return running if isinstance(running, CudaThread) else threading.current_thread()

    kernel.BlockManager.run = run_block
    kernelapi.threading = SimulatorThreading


if os.environ["NUMBA_ENABLE_CUDASIM"] == "1":
    _simulator_blocks_as_greenlets()


def pytest_configure(config):
    config.addinivalue_line("markers", "last: runs after every other test (a check of what the "
                                       "session's other tests did)")


# The early compiles' priority: below the tests', so that they take the second core and the
# cycles the tests leave, never the tests' core (at equal priority the three compiles and the
# tests share two cores, and the tests, the longest job, get two thirds of one)
BACKGROUND_NICENESS = 10


def pytest_collection_finish(session):
    """A test module whose setup runs in other processes (the sm_90 compiles: minutes on one
    core) starts them now, through its ``start_early()``, so that they run on the second core
    while the other tests run; its fixture waits for them. They start from a thread of lowered
    priority, which on Linux the processes and threads it starts inherit."""
    starts = [start for start in {getattr(getattr(item, "module", None), "start_early", None)
                                  for item in session.items} if start is not None]

    def start_behind_the_tests():
        if hasattr(os, "setpriority"):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
        for start in starts:
            start()

    starter = threading.Thread(target=start_behind_the_tests)
    starter.start()
    starter.join()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """After any reordering (pytest-randomly): the tests of a module with an early start come
    after the others (they wait for its process: run first, they would leave this process idle
    for minutes while the compiles share the other core), and tests marked ``last`` at the
    end."""
    items.sort(key=lambda item: (item.get_closest_marker("last") is not None,
                                 hasattr(getattr(item, "module", None), "start_early")))


def pytest_make_parametrize_id(config, val, argname):
    """A case's id says its numbers, not its position: a tuple or list of a few ints or floats
    (a shape, a padding, a stride, a series of losses) reads "0,1", where pytest would write
    "padding3", so a node id named elsewhere (tests/mutants.py, a command line) keeps
    pointing at the same case when cases are added before it."""
    if (isinstance(val, (tuple, list)) and 0 < len(val) <= 8
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in val)):
        return ",".join(map(str, val))
    return None
