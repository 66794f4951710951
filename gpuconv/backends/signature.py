"""The GPU backends' memo of prepared launches, one entry per call signature (issue 13).

What a call launches depends only on its signature: the op, each array's type, shape,
strides and dtype, the op's other arguments (specs, sizes, flags, precision) by value and
by type (1, 1.0 and True are equal dict keys, not the same argument), and the backend's
context (the device; CuPy: also the tile choice's switches, ``autotune.switches``). Both GPU
backends prepare a signature once -- plan, kernel handles, grids, packed parameters -- and a
call then only allocates its outputs and launches.
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
        if any(a is not None and a.ndim == 3 for a in arrays):  # a 1-D op (see lift)
            entry = build(owner, *map(lift, arrays), *options).without_unit_axis()
        else:
            entry = build(owner, *arrays, *options)
        memo[key] = entry
    return entry


def lift(array):
    """A 1-D op's (N, C, L) array (or (O, C/G, K) kernel) as the (N, C, 1, L) view its 2-D
    kernel takes, made only when the call's signature is prepared: a call then hands its
    arrays over as they are, and the prepared launches (pointers and sizes, which a unit axis
    does not change) run on them, allocating results without the unit axis (the prepared
    entry's ``without_unit_axis``)."""
    if array is None or array.ndim != 3:
        return array
    return array.reshape(tuple(array.shape[:2]) + (1,) + tuple(array.shape[2:]))


def unit_axis_dropped(shape: tuple) -> tuple:
    """The shape of a 2-D kernel's result of a 1-D op without its unit axis: (N, C, 1, L)
    -> (N, C, L); a shape of another rank (a bias gradient) as it is."""
    return tuple(shape[:2]) + tuple(shape[3:]) if len(shape) == 4 else tuple(shape)


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


def composite_slots(arrays: tuple, calls: list, results, part_workspaces: list) -> tuple:
    """The buffer slots of a composite of ``record``'s ``calls`` (each with one output;
    ``results``: compose's result, each output the index of its call or None). Composite slots:
    ``arrays``, then the outputs in ``results``' order, then the workspaces. The parts run one
    after the other on one stream and a part's workspaces are dead once it has run, so the
    parts share them: the i-th of each dtype, as large as the largest (``part_workspaces``:
    each part's (count, dtype) list). Returns the shared workspaces ((count, dtype)) and, for
    each part, the composite slot of each of its own slots (its inputs, found among
    ``arrays`` by identity, its output, its workspaces)."""
    sizes: dict = {}  # (dtype, i) -> count
    for workspaces in part_workspaces:
        for i, (count, dtype) in enumerate(workspaces):
            sizes[dtype, i] = max(count, sizes.get((dtype, i), 0))
    first_workspace = len(arrays) + len(results)
    workspace_slot = {key: first_workspace + j for j, key in enumerate(sizes)}
    input_slot = {id(a): i for i, a in enumerate(arrays) if a is not None}
    output_slot = {r: len(arrays) + i for i, r in enumerate(results) if r is not None}
    slots = [[None if a is None else input_slot[id(a)] for a in part_arrays]
             + [output_slot[index]]
             + [workspace_slot[dtype, i] for i, (_, dtype) in enumerate(workspaces)]
             for index, ((_, part_arrays, _), workspaces)
             in enumerate(zip(calls, part_workspaces))]
    return [(count, dtype) for (dtype, _), count in sizes.items()], slots
