"""The CPU thread pool's short waits (``gpuconv.parallel``), compiled with Numba so that
they run without the GIL: a helper thread that has just finished a job polls for the next
one, and a caller polls for the pieces still under way, for a few hundred microseconds
before either goes to sleep. Waking a sleeping thread costs 13-50 µs on a virtual machine
(most of a short pass's gain from a second core); a thread that polls starts within a
microsecond.

The wait is ``while word[0] == value: pass``; what matters is what it may not do: read
``word`` once (an ordinary load in a loop may be hoisted out of it), or hold the GIL (the
thread that changes ``word`` needs it). Imported only where the pool polls.

Functions:
1. wait_while_equal: polls ``word[0]`` (an acquire load, then the CPU's spin-loop hint)
   until it differs from ``value`` or ``polls`` reads have been made; returns the last value
   read.
2. wait_until_zero: polls ``a[0]`` and ``b[0]`` until both are zero (True) or ``polls``
   rounds have been made (False).
3. polls_per_microsecond: how many polls a microsecond holds on this CPU, measured once.
"""

from __future__ import annotations

import functools
import platform
import time

import numpy as np
from llvmlite import ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic

# the spin-loop hint as an LLVM intrinsic and its arguments (x86 ``pause``, Arm ``yield``): it
# lets the core's other hyperthread run and saves power
_SPIN_HINT = {"x86_64": ("llvm.x86.sse2.pause", ()), "amd64": ("llvm.x86.sse2.pause", ()),
              "aarch64": ("llvm.aarch64.hint", (1,)), "arm64": ("llvm.aarch64.hint", (1,))
              }.get(platform.machine().lower())


@intrinsic
def _load_acquire(typingctx, word, index):
    """``word[index]`` read with acquire ordering: a load the compiler must repeat each time."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(context, builder, array_type, array, [args[1]])
        return builder.load_atomic(pointer, "acquire", align=word.dtype.bitwidth // 8)
    return word.dtype(word, index), codegen


@intrinsic
def _spin_hint(typingctx):
    """The CPU's spin-loop hint (``pause`` / ``yield``), nothing on other CPUs."""
    def codegen(context, builder, signature, args):
        if _SPIN_HINT is not None:
            name, operands = _SPIN_HINT
            i32 = ir.IntType(32)
            hint = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [i32] * len(operands)), name)
            builder.call(hint, [ir.Constant(i32, v) for v in operands])
        return context.get_dummy_value()
    return types.none(), codegen


@njit(nogil=True, cache=True)
def wait_while_equal(word, value, polls):
    """Polls ``word[0]`` until it differs from ``value``, ``polls`` reads at most; returns the
    last value read (``value`` if the wait ran out)."""
    for _ in range(polls):
        seen = _load_acquire(word, 0)
        if seen != value:
            return seen
        _spin_hint()
    return value


@njit(nogil=True, cache=True)
def wait_until_zero(a, b, polls):
    """Polls ``a[0]`` and ``b[0]`` until both are zero (True), ``polls`` rounds at most."""
    for _ in range(polls):
        if _load_acquire(a, 0) == 0 and _load_acquire(b, 0) == 0:
            return True
        _spin_hint()
    return False


@functools.cache
def polls_per_microsecond() -> float:
    """Polls of an unchanging word in a microsecond: the best of three timings of 20,000,
    taken once per process (each new pool asks for it)."""
    word = np.zeros(1, np.int64)
    wait_while_equal(word, 0, 1)  # compiled (or loaded from the cache) before it is timed
    wait_until_zero(word, word, 1)
    polls, best = 20_000, float("inf")
    for _ in range(3):
        start = time.perf_counter()
        wait_while_equal(word, 0, polls)
        best = min(best, time.perf_counter() - start)
    return polls / max(best * 1e6, 1e-3)
