"""The CPU thread pool: the NumPy passes that BLAS does not run (im2col copies, folds,
tap loops, pooling, batch norm, activations) split over batch or channel pieces.

The pool is small and bounded: ``GPUCONV_NUM_THREADS`` threads (like ``OMP_NUM_THREADS``),
else one per core this process may use. NumPy releases the GIL inside its copy and ufunc
loops, so the pieces run in parallel.

Bit-identical results for any thread count: callers cut the work into pieces whose
boundaries depend only on the shapes, never on the thread count; each piece computes the
same thing whichever thread runs it, and a reduction adds its per-piece partial results in
piece order (``reduce``). The one exception is BLAS (NumPy's OpenBLAS), which runs its
own threads (``OPENBLAS_NUM_THREADS``) and may split a GEMM's sums differently for another
count of them.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Sequence, TypeVar

ENV_VAR = "GPUCONV_NUM_THREADS"
# Pieces smaller than this run on the calling thread: handing them out costs more than
# it saves. Only where a piece runs depends on it, never what it computes.
MIN_PARALLEL_BYTES = 256 << 10

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_state = {"threads": None, "pool": None}
_in_worker = threading.local()


def _cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _threads_from_env() -> int:
    value = os.environ.get(ENV_VAR, "").strip()
    if not value:
        return _cores()
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{ENV_VAR} must be a positive integer, got {value!r}")
    return threads


def num_threads() -> int:
    """Threads the CPU passes use: set by ``set_num_threads``, else ``GPUCONV_NUM_THREADS``,
    else the number of cores this process may run on."""
    with _lock:
        if _state["threads"] is None:
            _state["threads"] = _threads_from_env()
        return _state["threads"]


def set_num_threads(threads: int) -> None:
    """Use ``threads`` (a positive int) threads from now on."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    with _lock:
        if threads != _state["threads"] and _state["pool"] is not None:
            _state["pool"].shutdown(wait=True)
            _state["pool"] = None
        _state["threads"] = threads


def _pool() -> ThreadPoolExecutor:
    threads = num_threads()
    with _lock:
        if _state["pool"] is None:
            _state["pool"] = ThreadPoolExecutor(threads - 1, thread_name_prefix="gpuconv",
                                                initializer=_mark_worker)
        return _state["pool"]


def _mark_worker() -> None:
    _in_worker.active = True


def run(fn: Callable[[T], R], pieces: Iterable[T], piece_bytes: int = MIN_PARALLEL_BYTES) -> list[R]:
    """``[fn(p) for p in pieces]``, the pieces spread over the pool (the calling thread takes
    its share). ``piece_bytes``, about how much memory one piece touches, keeps small work on
    the calling thread. A piece called from inside the pool runs inline (no nested waits)."""
    pieces = list(pieces)
    threads = num_threads()
    if (threads == 1 or len(pieces) < 2 or piece_bytes < MIN_PARALLEL_BYTES
            or getattr(_in_worker, "active", False)):
        return [fn(p) for p in pieces]
    pool = _pool()
    # thread t takes pieces t, t + threads, ...: the caller is thread 0
    futures = [pool.submit(_run_strided, fn, pieces, t, threads) for t in range(1, threads)]
    results: list = [None] * len(pieces)
    _fill(results, _run_strided(fn, pieces, 0, threads), 0, threads)
    for t, future in enumerate(futures, start=1):
        _fill(results, future.result(), t, threads)
    return results


def _run_strided(fn, pieces: Sequence, first: int, step: int) -> list:
    return [fn(p) for p in pieces[first::step]]


def _fill(results: list, values: list, first: int, step: int) -> None:
    results[first::step] = values


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

