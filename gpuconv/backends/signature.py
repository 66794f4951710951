"""The GPU backends' memo of prepared launches, one entry per call signature (issue 13).

What a call launches depends only on its signature: the op, each array's type, shape,
strides and dtype, the op's other arguments (specs, sizes, flags, precision) by value and
by type (1, 1.0 and True are equal dict keys, not the same argument), and the backend's
context (the device; CuPy: also the autotune switch). Both GPU backends prepare a
signature once -- plan, kernel handles, grids, packed parameters -- and a call then only
allocates its outputs and launches.
"""

from __future__ import annotations

import threading

LIMIT = 4096  # remembered signatures per backend (the memo starts afresh beyond)


def prepared(memo: dict, build, owner, arrays: tuple, options: tuple, context):
    """``memo``'s entry for this call's signature; ``build(owner, *arrays, *options)`` makes it
    the first time the signature is met (a build that raises leaves nothing behind)."""
    key = [build, context, options, tuple(map(type, options))]
    for array in arrays:
        if array is None:
            key.append(None)
        else:
            key += (type(array), array.shape, array.strides, array.dtype)
    key = tuple(key)
    entry = memo.get(key)
    if entry is None:
        if len(memo) >= LIMIT:
            memo.clear()
        entry = memo[key] = build(owner, *arrays, *options)
    return entry


# --------------------------------------------------------------------------- composite calls
_recording = threading.local()


def recorder() -> list | None:
    """The list a backend's ``_call`` appends its (build, arrays, options) to instead of
    running, while ``record`` runs; None otherwise."""
    return getattr(_recording, "calls", None)


def record(compose, *args) -> tuple[list, object]:
    """The backend calls that ``compose(*args)`` makes, as (build, arrays, options) in order,
    and its result, in which each call's outputs are its index among them: an op made of
    several backend ops (a conv's backward) prepares them as one call signature, so a call
    costs one memo lookup and one launch pass."""
    calls = _recording.calls = []
    try:
        return calls, compose(*args)
    finally:
        del _recording.calls
