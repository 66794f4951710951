"""The CPU thread pool: the NumPy passes of the CPU ops (im2col copies, the folds' tap
loops, the GEMMs, depthwise blocks, pooling, batch norm, activations) split over pieces of
the batch, of the channels or of a matrix product.

The pool is small and bounded: ``GPUCONV_NUM_THREADS`` threads (like ``OMP_NUM_THREADS``),
else one per core this process may use. NumPy releases the GIL inside its copy, ufunc and
matmul loops, so the pieces run in parallel.

Matrix products (``matmul``) run as pieces on the pool too, each on one BLAS thread: while
one runs, NumPy's OpenBLAS is held at one thread (``blas_at_one_thread``), so its own
threads neither compete with the pool's for the cores (OpenBLAS's idle threads spin for a
while after each call, which on a machine with few cores stalls whatever runs next) nor
split a product's sums by their count.

Handing out work costs a thread's wake-up, 13-50 µs on a virtual machine, and more where a
thread then sleeps on the GIL: most of what a pass of a few hundred microseconds gains from
a second core. So the pool's threads poll before they sleep, as OpenMP's do, without the
GIL (``gpuconv._wait``, with Numba): a helper polls for its next job and a
caller for its pieces under way, ``GPUCONV_SPIN_US`` microseconds (default 200; 0 sleeps
at once, as the pool does without Numba or with more threads than cores). The polls only
shorten waits: who runs what is decided as without them.

Bit-identical results for any thread count: callers cut the work into pieces whose
boundaries depend only on the shapes, never on the thread count; each piece computes the
same thing whichever thread runs it, and a reduction adds its per-piece partial results in
piece order (``reduce``). A pass whose pieces are independent (elementwise, plane-wise)
gives the same bits whole, which one thread may do to skip the pieces' overhead. NumPy
products that gpuconv does not run through ``matmul`` (small ones: depthwise blocks) are
left to OpenBLAS, which runs them on the calling thread at these sizes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import queue
import threading
from typing import Callable, Iterable, TypeVar

import numpy as np

from gpuconv._blas import blas_threads, set_blas_threads
from gpuconv._checks import int_setting

ENV_VAR = "GPUCONV_NUM_THREADS"
MAX_THREADS = 1024  # past any machine's cores: a larger count only starts idle threads
# Microseconds a helper thread polls for its next job, and a caller for the pieces under way,
# before sleeping (like OpenMP's spin before its threads sleep; 0: sleep at once)
SPIN_ENV_VAR = "GPUCONV_SPIN_US"
DEFAULT_SPIN_US = 200
MAX_SPIN_US = 1_000_000  # a second: past it a thread has long been better asleep
# Pieces smaller than this run on the calling thread: handing them out costs more than
# it saves. Only where a piece runs depends on it, never what it computes.
MIN_PARALLEL_BYTES = 256 << 10
PIECE_BYTES = 2 << 20  # a piece of a copy, pooling or elementwise pass: fits a core's L2 or L3
# A piece of a matrix product: enough multiply-adds (about a millisecond on one core) for
# BLAS to run at full speed and for the hand-out to cost nothing
PIECE_FLOPS = 64 << 20
SMALL_GEMM_FLOPS = 4 << 20  # products in a stack smaller than this are not worth a Python call
SIMD_ROWS = 64  # rows or columns of a product's piece come in multiples of this (BLAS tiles)

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_state = {"threads": None, "pool": None, "pool_workers": 0}
_piece = threading.local()  # .active: running a piece (``in_piece``)


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _threads_from_env() -> int:
    return int_setting(ENV_VAR, _cores(), 1, MAX_THREADS,
                         f"an integer from 1 to {MAX_THREADS}")


def num_threads() -> int:
    """Threads the CPU passes use: set by ``set_num_threads``, else ``GPUCONV_NUM_THREADS``,
    else the number of cores this process may run on."""
    with _lock:
        if _state["threads"] is None:
            _state["threads"] = _threads_from_env()
        return _state["threads"]


def set_num_threads(threads: int) -> None:
    """Use ``threads`` (an int from 1 to MAX_THREADS) threads from now on."""
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"threads must be an integer from 1 to {MAX_THREADS}, got {threads!r}")
    with _lock:
        _state["threads"] = threads


def _pool() -> "_Helpers":
    """The pool's helper threads (``run`` hands out ``num_threads() - 1`` jobs at most). It
    only grows: a smaller thread count leaves the threads idle, so switching counts (the
    thread-scaling bench does, call by call) starts no thread and joins none."""
    workers = num_threads() - 1
    with _lock:
        pool = _state["pool"]
        if pool is None or _state["pool_workers"] < workers:
            if pool is not None:
                pool.retire()  # its threads finish the jobs they hold and end
            _state["pool"] = _Helpers(workers, _spin_polls(workers + 1))
            _state["pool_workers"] = workers
        return _state["pool"]


def _forget_pool_after_fork() -> None:
    """A forked child has none of its parent's threads: its first ``run`` starts its own."""
    _state["pool"], _state["pool_workers"] = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _spin_from_env() -> int:
    return int_setting(SPIN_ENV_VAR, DEFAULT_SPIN_US, 0, MAX_SPIN_US,
                         f"an integer from 0 to {MAX_SPIN_US:,} (microseconds)")


def _spin_polls(threads: int) -> int:
    """How many polls ``SPIN_ENV_VAR``'s microseconds hold for a pool of ``threads``; 0
    (threads sleep at once) without the compiled wait (without Numba), and where there are
    more threads than cores: a polling thread would hold a core that another one needs."""
    microseconds = _spin_from_env()
    if microseconds == 0 or threads > _cores() or _waits() is None:
        return 0
    return max(1, int(microseconds * _waits().polls_per_microsecond()))


@functools.cache
def _waits():
    """``gpuconv._wait`` (waits without the GIL), or None without Numba."""
    try:
        from gpuconv import _wait as waits
    except ImportError:
        return None
    return waits


class _Helpers:
    """``count`` daemon threads serving jobs from one queue. A helper that finds the queue
    empty polls ``posted`` (jobs posted so far) for ``polls`` polls before it sleeps in the
    queue's ``get``: a pool in use answers within a microsecond instead of a thread's
    wake-up (13-50 µs here). The queue alone decides who runs what; the polls only shorten
    the waits. ``busy`` counts the helpers that hold the GIL or wait for it: a caller whose
    pieces are done waits (polling) until it is 0, for a GIL it can then take without
    sleeping."""

    def __init__(self, count: int, polls: int):
        self.polls = polls
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.posted = np.zeros(1, np.int64)
        self.busy = np.full(1, count, np.int64)
        self._busy_lock = threading.Lock()
        self.threads = [threading.Thread(target=self._serve, name=f"gpuconv-{i}", daemon=True)
                        for i in range(count)]
        for thread in self.threads:
            thread.start()

    def post(self, job: "_Job", copies: int) -> None:
        for _ in range(copies):
            self.jobs.put(job)
        self.posted[0] += 1  # after the puts: a helper that sees it finds them queued

    def retire(self) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        self.posted[0] += 1

    def _count_busy(self, change: int) -> None:
        with self._busy_lock:
            self.busy[0] += change

    def _serve(self) -> None:
        _piece.active = True  # pool threads run nothing but pieces
        while True:
            seen = int(self.posted[0])
            self._count_busy(-1)
            if self.polls and self.jobs.empty():
                _waits().wait_while_equal(self.posted, seen, self.polls)
            job = self.jobs.get()
            self._count_busy(1)
            if job is None:
                return
            job.work()
            # let go of the job at once: held until the next one, it would keep the call's
            # arrays alive, and the next call's would land in memory the caches do not hold
            # (lenet's first conv: 2.5 ms against 2.1 on two threads)
            del job


def run(fn: Callable[[T], R], pieces: Iterable[T],
        piece_bytes: int = MIN_PARALLEL_BYTES) -> list[R]:
    """``[fn(p) for p in pieces]``, the pieces spread over the pool. ``piece_bytes``, about
    how much memory the pieces touch, keeps small work on the calling thread. Two or more
    pieces run as pieces (``in_piece``) whatever the thread count, so that what they call
    takes the same path, and the same bits, at any count; a ``run`` inside a piece runs
    inline (no nested waits)."""
    pieces = list(pieces)
    if len(pieces) < 2:
        return [fn(p) for p in pieces]
    threads = num_threads()
    if threads == 1 or piece_bytes < MIN_PARALLEL_BYTES or in_piece():
        outer = in_piece()
        _piece.active = True
        try:
            return [fn(p) for p in pieces]
        finally:
            _piece.active = outer
    job = _Job(fn, pieces)
    pool = _pool()
    pool.post(job, min(threads, len(pieces)) - 1)
    _piece.active = True  # the caller works on pieces too
    try:
        job.work()
    finally:
        _piece.active = False
    job.wait(pool)
    if job.error is not None:
        raise job.error
    return job.results


def in_piece() -> bool:
    """Whether this thread is running a piece of a ``run`` of several pieces."""
    return getattr(_piece, "active", False)


class _Job:
    """Pieces handed out one at a time to whichever thread asks next: the calling thread
    takes pieces too, so it never waits for a helper that the OS has not scheduled yet (on
    a busy machine that wait would cost more than the work), only for pieces under way."""

    def __init__(self, fn, pieces: list):
        self.fn, self.pieces = fn, pieces
        self.results: list = [None] * len(pieces)
        self.error: BaseException | None = None
        self._next = itertools.count()  # next() on it is atomic under the GIL
        self._left = np.array([len(pieces)], np.int64)  # pieces not finished; polled by wait
        self._lock = threading.Lock()
        self._finished = threading.Event()

    def work(self) -> None:
        while (i := next(self._next)) < len(self.pieces):
            try:
                if self.error is None:
                    self.results[i] = self.fn(self.pieces[i])
            except BaseException as exc:  # re-raised by the caller
                self.error = self.error or exc
            with self._lock:
                self._left[0] -= 1
                if self._left[0] == 0:
                    self._finished.set()

    def wait(self, pool: _Helpers) -> None:
        """Until every piece has finished: polling first (until the helpers have let go of
        the GIL too), then asleep."""
        if pool.polls:
            _waits().wait_until_zero(self._left, pool.busy, pool.polls)
        self._finished.wait()


def reduce(fn: Callable[[T], R], pieces: Iterable[T], piece_bytes: int = MIN_PARALLEL_BYTES):
    """The sum of ``fn(p)`` over ``pieces``, added in piece order whichever threads ran them."""
    parts = run(fn, pieces, piece_bytes)
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def pieces(n: int, size: int) -> list[slice]:
    """``range(n)`` cut into slices of ``size`` (the last may be shorter)."""
    size = max(1, size)
    return [slice(start, min(n, start + size)) for start in range(0, n, size)]


def pieces_by_bytes(n: int, bytes_per_item: int) -> list[slice]:
    """``range(n)`` in even pieces of about ``PIECE_BYTES`` at most: shapes alone decide
    them."""
    return even_pieces(n, PIECE_BYTES // max(1, bytes_per_item))


def map_batch(fn: Callable, *arrays, cache_blocked: bool = False):
    """``fn(*arrays)`` for a pass in which each sample's result depends on that sample
    alone (elementwise, say), computed on pieces of the batch over the pool into one output
    (or a tuple of them, where None stays None). Such a pass gives the same bits in pieces
    or whole, so one thread runs it whole (no copy into the output), unless it is
    ``cache_blocked``: a pass that sweeps temporaries as large as its input several times
    (pooling through a padded copy) runs 1.7-2.5x faster in cache-sized pieces on one core
    too. CuPy arrays are handed to ``fn`` whole."""
    first = arrays[0]
    if (not isinstance(first, np.ndarray) or first.ndim == 0 or first.shape[0] < 2
            or (num_threads() == 1 and not cache_blocked)):
        return fn(*arrays)
    slices = pieces_by_bytes(first.shape[0], first.nbytes // first.shape[0])
    if len(slices) < 2:
        return fn(*arrays)
    head = fn(*(a[slices[0]] for a in arrays))
    heads = head if isinstance(head, tuple) else (head,)
    outs = tuple(None if h is None else
                 np.empty((first.shape[0],) + h.shape[1:], dtype=h.dtype) for h in heads)

    def store(s, got):
        for out, value in zip(outs, got if isinstance(got, tuple) else (got,)):
            if out is not None:
                out[s] = value
    store(slices[0], head)
    run(lambda s: store(s, fn(*(a[s] for a in arrays))), slices[1:], first.nbytes)
    return outs if isinstance(head, tuple) else outs[0]


def fill_batch(fn: Callable, out: np.ndarray, *arrays) -> np.ndarray:
    """``fn(out_piece, *piece_arrays)``, which writes its piece of ``out`` in place, on
    pieces of the batch over the pool; returns ``out``. Where the shape of the result is known
    beforehand this saves ``map_batch``'s copy of each piece into the output."""
    if out.ndim == 0 or out.shape[0] < 2:
        fn(out, *arrays)
    else:
        run(lambda s: fn(out[s], *(a[s] for a in arrays)),
            pieces_by_bytes(out.shape[0], out.nbytes // out.shape[0]), out.nbytes)
    return out


def sum_batch(fn: Callable, *arrays):
    """The sum over pieces of the batch of ``fn(*piece_arrays)`` (a reduction over the
    batch, per channel say), the pieces' partial sums added in piece order: the same bits
    for any thread count. NumPy arrays only: others (CuPy) are handed to ``fn`` whole."""
    first = arrays[0]
    if not isinstance(first, np.ndarray) or first.ndim == 0 or first.shape[0] < 2:
        return fn(*arrays)
    slices = pieces_by_bytes(first.shape[0], first.nbytes // first.shape[0])
    return reduce(lambda s: fn(*(a[s] for a in arrays)), slices, first.nbytes)



_blas_lock = threading.Lock()
_blas_state = {"depth": 0, "saved": None}


@contextlib.contextmanager
def blas_at_one_thread():
    """NumPy's OpenBLAS held at one thread inside (re-entrant, thread-safe: the count is put
    back when the last holder leaves)."""
    with _blas_lock:
        if _blas_state["depth"] == 0:
            saved = blas_threads()
            _blas_state["saved"] = saved if saved and saved > 1 and set_blas_threads(1) else None
        _blas_state["depth"] += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_state["depth"] -= 1
            if _blas_state["depth"] == 0 and _blas_state["saved"] is not None:
                set_blas_threads(_blas_state["saved"])


def matmul(a, b, out=None, epilogue=None):
    """``np.matmul(a, b, out=out)`` (operands of 2 or more dimensions) in pieces over the
    pool, each on one BLAS thread: over the stack of products, else over blocks of the
    product's rows or columns, whichever are more; whole inside a piece. Other arrays (CuPy,
    without ``out``) go to their own ``matmul`` whole.

    ``epilogue(block, at, rows)``, where given, runs on each block of the result right after
    it is written, while it is in cache: ``block`` is ``out[at][..., rows, :]``, ``at`` an
    index into the stack of products, whole (``()`` without a stack) or, for a stack of
    small products finished in one call, empty with ``block`` the whole result.
    """
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        out = a @ b
        if epilogue is not None:
            epilogue(out, (), slice(0, out.shape[-2]))
        return out
    if min(a.ndim, b.ndim) < 2:
        with blas_at_one_thread():
            return np.matmul(a, b, out=out)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    stack = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if out is None:
        out = np.empty(stack + (m, n), dtype=np.result_type(a, b))
    if math.prod(stack) == 0:  # an empty stack: no product (one, below, is reshaped)
        return out
    flops = 2 * m * k * n
    if math.prod(stack) > 1 and flops < SMALL_GEMM_FLOPS:
        # a stack of small products: one C loop over it on this thread (np.matmul keeps the
        # GIL, and a Python call per product would cost more than the product: on two
        # threads, those calls' GIL hand-overs made lenet's first conv 2x slower)
        with blas_at_one_thread():
            np.matmul(a, b, out=out)
        if epilogue is not None:
            epilogue(out, (), slice(0, m))
        return out
    finish = epilogue or (lambda block, at, rows: None)
    # inside a piece the product runs on this thread anyway: one BLAS call (pieces of it
    # would only repack its operands)
    whole = in_piece()
    if math.prod(stack) > 1:
        a, b = np.broadcast_to(a, stack + a.shape[-2:]), np.broadcast_to(b, stack + b.shape[-2:])

        def piece(s):
            for i in range(s.start, s.stop):
                at = np.unravel_index(i, stack)
                _dot(a[at], b[at], out[at])
                finish(out[at], at, slice(0, m))
        count = math.prod(stack)
        slices = pieces(count, count if whole else PIECE_FLOPS // max(1, flops))
    else:
        at = (0,) * len(stack)
        a2, b2, out2 = a.reshape(m, k), b.reshape(k, n), out.reshape(m, n)
        # blocks of rows, each written in place, unless there are too few rows for two
        # SIMD tiles and more columns (a block of columns is written through a copy)
        if whole or m >= min(n, 2 * SIMD_ROWS):
            slices = even_pieces(m, m if whole else PIECE_FLOPS // max(1, flops // max(1, m)),
                                 SIMD_ROWS)

            def piece(s):
                _dot(a2[s], b2, out2[s])
                finish(out2[s], at, s)
        else:
            slices = even_pieces(n, PIECE_FLOPS // max(1, flops // max(1, n)), SIMD_ROWS)

            def piece(s):
                _dot(a2, b2[:, s], out2[:, s])
                finish(out2[:, s], at, slice(0, m))
    with blas_at_one_thread():
        run(piece, slices, PIECE_BYTES if len(slices) > 1 else 0)
    return out


def _dot(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = a @ b`` for 2-D arrays through ``np.dot``, which lets go of the GIL
    around its BLAS call (``np.matmul`` keeps it for a stack of fewer than 500 products)."""
    if out.flags.c_contiguous and out.dtype == np.result_type(a, b):
        np.dot(a, b, out=out)
    else:
        out[...] = np.dot(a, b)


def even_pieces(n: int, size: int, tile: int = 1) -> list[slice]:
    """``range(n)`` in as few pieces of at most about ``size`` as it takes, of equal length (so
    that two threads finish together), in whole tiles of ``tile`` (a product's SIMD tiles,
    ``SIMD_ROWS``) once pieces are that long: shapes alone decide them."""
    count = max(1, -(-n // max(1, size)))
    length = -(-n // count)
    if length >= tile:
        length = -(-length // tile) * tile
    return pieces(n, length)
