"""Timing and error measures shared by the CPU and GPU benches (no torch, no GPU here).

A timer is any object with ``time_ms(fn) -> float``: ``WallClockTimer`` for the CPU,
``cudnn.CudaEventTimer`` for the GPU, a fake one in the tests, so the code that repeats,
interleaves and summarises runs the same under all three.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional, Protocol, Sequence

import numpy as np


class Timer(Protocol):
    def time_ms(self, fn: Callable[[], object]) -> float:
        """Milliseconds one call of ``fn`` took."""


class WallClockTimer:
    """Host wall-clock time of a call that finishes its work before it returns (CPU ops)."""

    def time_ms(self, fn: Callable[[], object]) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1e3


def interleaved(timer: Timer, fns: Sequence[Callable[[], object]], repeat: int,
                warmup: int, block: int = 1, settle_s: float = 0.0) -> list[list[float]]:
    """``repeat`` millisecond samples of each of ``fns``, run in turn so that they share the
    machine's state (clocks, caches, other load) as fairly as possible: A B C A B C ... or,
    with ``block`` > 1, in blocks of ``block`` timed calls, each block after untimed calls
    for ``settle_s`` seconds (one at least), which let what the previous function left
    running wind down (on the CPU, PyTorch's OpenMP threads spin on the cores for a while
    after each call, which slows whatever runs next) while the cores stay busy (after an
    idle pause, short calls time the cores' wake-up)."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    samples: list[list[float]] = [[] for _ in fns]
    if block <= 1:
        for _ in range(repeat):
            for fn, times in zip(fns, samples):
                times.append(timer.time_ms(fn))
        return samples
    for _ in range(-(-repeat // block)):
        for fn, times in zip(fns, samples):
            settled = time.perf_counter() + settle_s
            fn()
            while time.perf_counter() < settled:
                fn()
            times += [timer.time_ms(fn) for _ in range(min(block, repeat - len(times)))]
    return samples


def summarize(samples_ms: Sequence[float]) -> dict:
    """Median and 20th / 80th percentiles (robust to the odd slow run) and the samples."""
    ms = np.asarray(samples_ms, dtype=np.float64)
    return {"median_ms": float(np.median(ms)), "p20_ms": float(np.percentile(ms, 20)),
            "p80_ms": float(np.percentile(ms, 80)), "samples_ms": [float(v) for v in ms]}


def geomean(values) -> Optional[float]:
    """Geometric mean of the positive values (None when there are none)."""
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def relative_error(got, want) -> float:
    """``max|got - want| / max|want|`` for NumPy arrays or torch tensors (on one device);
    infinite when the shapes differ."""
    if tuple(got.shape) != tuple(want.shape):
        return math.inf
    if math.prod(want.shape) == 0:
        return 0.0
    scale = max(float(abs(want).max()), 1e-30)
    return float(abs(got - want).max()) / scale


def count_differing(got, want) -> int:
    """How many entries differ (integer results such as max-pooling indices)."""
    if tuple(got.shape) != tuple(want.shape):
        return math.prod(want.shape) or 1
    return int((got != want).sum())
