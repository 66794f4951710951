"""Numba CUDA backend: every 2-D kernel of ``gpuconv.backends.KERNELS`` on the GPU, in the
Numba kernels of ``gpuconv.kernels``.

Checked against the PyTorch goldens and the NumPy backend (tests/test_golden.py,
tests/test_numba_random.py) through Numba's CUDA simulator, and compiled for sm_90
(tests/test_numba_sm90.py) from ``kernel_table``, the one list of kernels and signatures.

Arrays: Numba device arrays in, Numba device arrays out (asynchronous, default stream, or
the stream of ``on_stream``); CuPy arrays in, CuPy arrays out (zero-copy through
``__cuda_array_interface__``, on CuPy's current stream, no synchronisation); NumPy arrays
are copied to the device and back.

Every kernel is the twin of a CuPy backend kernel (same name, same struct fields):
conv_gemm, conv_splitk_reduce, conv_grad_bias, conv_pad_adjoint (kernels/conv_numba.py),
conv_depthwise, conv_depthwise_grad_weight (kernels/depthwise_numba.py) and the pooling
kernels (kernels/pool_numba.py), launched as ``gpu_plan``'s plans say
(``numba_conv_*_plan``, and ``numba_plan`` of the pooling plans; the pooling entry points
are both GPU backends', ``gpu_pooling``): this module only allocates, packs the struct
fields and launches. No kernel uses atomics: every result repeats bit for bit.

Host overhead (issues 13, 14): what depends only on a call's signature (shapes, strides,
dtypes and types of the arrays, spec and options, device: ``signature.prepared``, as in
the CuPy backend) is prepared once: the plan, the kernels, grids, each launch's scalar
tuple and the buffer each pointer argument is; per stream object, each launch's compiled
kernel and the argument list Numba's launch would build (``kernel_arguments``). A call
allocates its outputs, writes its arrays' addresses into copies of those lists and hands
them to cuda.core's ``launch`` (direct launches: Numba's own launch converts every argument
on every call). A conv's backward (``conv2d_backward``) is prepared as one call, as in the
CuPy backend. Numba's simulator runs Numba's launch, on flat views of the arrays.
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import math
import operator
import os
import sys
import threading
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import numba
from numba import config, cuda, types
from numba.np import numpy_support

from gpuconv import backends
from gpuconv._checks import SettingError
from gpuconv.backends import array_library, foreign_device, gpu_plan, gpu_pooling, signature
from gpuconv.kernels import conv_numba as ck
from gpuconv.kernels import depthwise_numba as dk
from gpuconv.kernels import pool_numba as pk
from gpuconv.shapes import ConvSpec

NAME = "numba"
PRECISIONS = ("ieee",)  # conv arithmetic: strict IEEE float maths (FFMA), no tensor cores
LIFTS_1D = True  # takes a 1-D op's arrays as they are (signature.lift)
_STREAM = contextvars.ContextVar("gpuconv_numba_stream", default=None)  # set by on_stream


@dataclass(frozen=True)
class CopyLaunch:
    """The strided copy's launches: ``threads`` per block, grid-striding over at most
    ``max_blocks``."""

    threads: int
    max_blocks: int


GPU = CopyLaunch(threads=256, max_blocks=1 << 16)
# The simulator runs one OS thread per CUDA thread and pays for every syncthreads: few,
# narrow blocks (the conv plans do the same through gpu_plan's ``simulator`` flag).
SIMULATOR = CopyLaunch(threads=16, max_blocks=2)
SIMULATED = bool(config.ENABLE_CUDASIM)
launch = SIMULATOR if SIMULATED else GPU
# The simulator keeps a launch's state in module globals (and swaps numba.cuda for its own
# while a kernel runs): calls from several threads take turns, compiles included (they
# failed with AttributeError: 'Thread' object has no attribute 'threadIdx')
_SIMULATOR_TURN = threading.Lock() if SIMULATED else None


# --------------------------------------------------------------------------- kernels and signatures
class Entry(NamedTuple):
    """A kernel, its argument types, and the struct fields its arguments are (None: a Numba
    helper or a kernel outside the shared vocabulary)."""

    kernel: object
    signature: tuple
    fields: list | None = None


@functools.cache
def kernel_table(dtype, simulator: bool = False) -> dict[str, Entry]:
    """name -> Entry of every kernel this backend launches for ``dtype`` (``simulator``: the
    simulator's tiles and blocks): the runtime launches from it, the sm_90 test compiles it,
    the vocabulary test compares it with the CUDA kernels."""
    dtype = np.dtype(dtype)
    real = types.float32 if dtype == np.float32 else types.float64

    def array(ndim, kind=real, layout="C"):
        return types.Array(kind, ndim, layout)

    conv_fields = gpu_plan.CONV_FIELDS
    conv_args = (array(1),) * len(gpu_plan.pointer_names(conv_fields)) + (
        types.UniTuple(types.int64, len(gpu_plan.scalars(conv_fields, {}))),)
    table = {gpu_plan.numba_gemm_kernel(*i): Entry(ck.conv_gemm(dtype, *i), conv_args, conv_fields)
             for i in gpu_plan.numba_gemm_instances(dtype.name, simulator)}
    table.update({gpu_plan.numba_direct_kernel(rows): Entry(ck.conv_direct(dtype, rows),
                                                             conv_args, conv_fields)
                  for rows in gpu_plan.DIRECT_ROWS})
    block = gpu_plan.NUMBA_SIMULATOR_BLOCK if simulator else gpu_plan.POOL_BLOCK
    for kernels in (ck.conv_kernels(dtype, block), dk.kernels(dtype, block)):
        table.update({name: Entry(kernel, conv_args, conv_fields) for name, kernel in kernels.items()})
    pool_fields = gpu_plan.POOL_FIELDS
    pool_args = tuple(array(1, types.int64 if name in gpu_plan.INDEX_POINTERS else real)
                      for name in gpu_plan.pointer_names(pool_fields)) + (
        numba.typeof(gpu_plan.scalars(pool_fields, {})),)
    table.update({name: Entry(kernel, pool_args, pool_fields)
                  for name, kernel in pk.kernels(dtype).items()})
    a4, i4 = array(4), array(4, types.int64)
    table.update(
        copy_strided=Entry(ck.copy_strided, (array(4, layout="A"), a4)),
        copy_strided_indices=Entry(ck.copy_strided, (array(4, types.int64, "A"), i4)),
    )
    return table


# --------------------------------------------------------------------------- prepared launches
class _Step(NamedTuple):
    """One launch of a prepared call: kernel_table's ``name`` and ``kernel``, its grid and block,
    the buffer slot and the (flat) size of each array argument and the packed scalar fields."""

    name: str
    kernel: object
    grid: tuple
    block: tuple
    slots: tuple
    sizes: tuple
    scalars: tuple


@dataclass(frozen=True)
class _Prepared:
    """One call signature's launches, prepared once. Buffer slots: the inputs, then the
    ``allocations`` ((shape, dtype): the ``outputs`` outputs, None for one not asked for,
    then the workspaces), the ``views`` ((slot, shape): flat views of the buffers of more
    axes), then the ``constants`` (placeholders for null pointers, the error word).
    ``copies``: input slots of Numba arrays that are not C-contiguous (copied first).
    ``configured``: stream -> each step's configured kernel ``kernel[grid, block, stream]``,
    the getter of its array arguments and its scalars (``_configure``)."""

    kind: str
    dtype: np.dtype
    steps: tuple
    allocations: tuple
    outputs: int
    views: tuple
    constants: tuple
    copies: tuple
    configured: dict

    def without_unit_axis(self) -> "_Prepared":
        """This entry for a 1-D op's call (``signature.lift``): its outputs allocated without
        the unit axis (their flat views stay as they are)."""
        outputs = tuple(None if out is None else (signature.unit_axis_dropped(out[0]), out[1])
                        for out in self.allocations[:self.outputs])
        return replace(self, allocations=outputs + self.allocations[self.outputs:])


_PREPARED: dict = {}  # call signature -> _Prepared (see gpuconv.backends.signature)
_PLACEHOLDERS: dict = {}  # (device, dtype) -> the array passed for a null pointer
_STREAMS: dict = {}  # CUDA stream handle -> its Numba stream object


def _placeholder(device: int, dtype):
    """The array passed for a null pointer: flat and empty (the kernels read size 0 as null;
    a slice, since a fresh size-0 array may type as layout 'A')."""
    key = (device, dtype)
    if key not in _PLACEHOLDERS:
        _PLACEHOLDERS[key] = cuda.device_array(1, dtype)[1:]
    return _PLACEHOLDERS[key]


def _prepare(device: int, p: gpu_plan.Plan, arrays: tuple, names: tuple,
             outputs: tuple) -> _Prepared:
    """Bind plan ``p`` to kernel_table's kernels, scalar tuples and buffer slots. ``names``: the
    plan's buffer name of each input and output slot, in order; ``outputs``: (shape, dtype) of
    each output (None: not asked for). Every pointer argument is a flat array (the one
    vocabulary): a buffer of more axes goes in as a flat view of it."""
    first = next(a for a in arrays if a is not None)
    kind, dtype = array_library(first), np.dtype(first.dtype)
    allocations = tuple(outputs) + tuple(((count,), kind_)
                                         for name, (count, kind_) in p.workspaces.items())
    natural = ([None if a is None else tuple(a.shape) for a in arrays]
               + [None if a is None else tuple(a[0]) for a in allocations])
    slots = {name: i for i, name in enumerate(tuple(names) + tuple(p.workspaces))}
    views: dict = {}      # (buffer slot, shape) -> its index among the views
    constants: dict = {}  # id -> (its index among the constants, the array)
    steps = []
    table = kernel_table(dtype, SIMULATED)
    for planned in p.launches:
        if min(planned.grid) == 0:
            continue
        name = planned.kernel
        entry = table[name]
        fields = entry.fields
        refs, sizes = [], []  # ("buffer" | "view" | "constant", index), size of each array
        for field, arg in zip(gpu_plan.pointer_names(fields), entry.signature):
            assert arg.ndim == 1 and arg.layout == "C", f"{name}: {field} is not a flat array"
            buffer = planned.params.get(field)
            if buffer is None or buffer == "err":
                constant = (_error_word(device) if buffer == "err" else
                            _placeholder(device, numpy_support.as_dtype(arg.dtype)))
                refs.append(("constant",
                             constants.setdefault(id(constant), (len(constants), constant))[0]))
                sizes.append(constant.size)
                continue
            slot = slots[buffer]
            flat = (math.prod(natural[slot]),)
            refs.append(("buffer", slot) if natural[slot] == flat else
                        ("view", views.setdefault((slot, flat), len(views))))
            sizes.append(flat[0])
        steps.append((name, entry.kernel, tuple(planned.grid), tuple(planned.block), refs,
                      tuple(sizes), gpu_plan.scalars(fields, planned.params)))
    base = {"buffer": 0, "view": len(natural), "constant": len(natural) + len(views)}
    steps = tuple(_Step(name, kernel, grid, block, tuple(base[where] + i for where, i in refs),
                        sizes, scalars)
                  for name, kernel, grid, block, refs, sizes, scalars in steps)
    copies = tuple(i for i, a in enumerate(arrays) if kind == "numba" and a is not None
                   and not a.is_c_contiguous())
    return _Prepared(kind, dtype, steps, allocations, len(outputs), tuple(views),
                     tuple(array for _, array in constants.values()), copies, {})


CHECK_SIGNATURES = False  # tests set it: every launch must match its kernel_table entry


def _launch(p: _Prepared, buffers: list, stream, empty, pointer=None) -> list:
    """Allocate ``p``'s outputs and workspaces after the device arrays in ``buffers``
    (``empty(shape, dtype, stream=)``) and launch ``p``'s kernels on ``stream``; returns the
    outputs. Direct launches take the buffers' device pointers (``pointer(array)``); Numba's
    own launch takes flat views of them and the constants. Numba memoises ``kernel[grid,
    block, stream]`` per stream object, and so does ``p.configured``: the stream must be the
    same object from call to call (see ``_external_stream``)."""
    first = len(buffers)
    for allocation in p.allocations:
        buffers.append(None if allocation is None else empty(*allocation, stream=stream))
    key = (stream, DIRECT_LAUNCH)
    launches = p.configured.get(key) or _configure(p, key, len(buffers))
    if DIRECT_LAUNCH:
        pointers = [0 if b is None else pointer(b) for b in buffers]
        for step in launches:
            arguments = list(step.arguments)
            for at, slot in step.patches:
                arguments[at] = pointers[slot]
            step.launch(step.stream, step.config, step.function, *arguments)
        return buffers[first:first + p.outputs]
    outputs = buffers[first:first + p.outputs]
    for slot, shape in p.views:
        buffers.append(buffers[slot].reshape(shape))
    buffers += p.constants
    if CHECK_SIGNATURES:
        for step in p.steps:
            _check_signature(p, step, buffers)
    for kernel, arguments, scalars in launches:
        kernel(*arguments(buffers), scalars)
    return outputs


def _configure(p: _Prepared, key: tuple, buffer_count: int) -> tuple:
    """Each step's launch on stream ``key[0]``, kept in ``p.configured[key]``: direct
    (``key[1]``), a ``DirectLaunch``; else Numba's configured kernel ``kernel[grid, block,
    stream]``, the getter of its array arguments among the buffers, views and constants, and
    its scalars. ``buffer_count``: the inputs, outputs and workspaces."""
    stream, direct = key
    launches = []
    for step in p.steps:
        if direct:
            launches.append(_direct_launch(p, step, stream, buffer_count))
            continue
        configured = step.kernel[step.grid, step.block, stream]
        if configured is step.kernel:  # the simulator configures its one kernel object in place
            configured = functools.partial(_configure_and_launch, step.kernel, step.grid,
                                           step.block, stream)
        arguments = (operator.itemgetter(*step.slots) if len(step.slots) > 1 else
                     lambda buffers, slot=step.slots[0]: (buffers[slot],))
        launches.append((configured, arguments, step.scalars))
    p.configured[key] = tuple(launches)
    return p.configured[key]


def _configure_and_launch(kernel, grid, block, stream, *args):
    kernel[grid, block, stream](*args)


# --------------------------------------------------------------------------- direct launches
# Numba's launch (``kernel[grid, block, stream](*args)``) types and converts every argument on
# every call into the list that it hands to cuda.core's ``launch``: for a conv kernel's four
# arrays and 39 scalars, 56-79 µs of CPU a launch against the direct launch's 0.5-1.4 µs
# (bench/host.py, numba-cuda 0.30, this project's 2-core VM); a conv backward launches four.
# On a GPU this backend builds that list itself once per signature and stream
# (``kernel_arguments``, checked against Numba's own in tests/test_numba_direct_launch.py)
# and a call writes its arrays' addresses into a copy of it. Numba's launch stays for the
# simulator, for the GPU test that compares the two (tests/test_gpu.py), and for a user who
# sets LAUNCH_ENV to "numba" (the direct launch relies on numba-cuda's kernel objects and
# stream conversion, which a later release may change).
LAUNCH_ENV = "GPUCONV_NUMBA_LAUNCH"


def launches_directly(choice: str, simulated: bool) -> bool:
    """Whether kernels launch directly: on a GPU, unless LAUNCH_ENV (``choice``) says "numba"."""
    if choice not in ("", "direct", "numba"):
        raise SettingError(f"{LAUNCH_ENV} must be 'direct' or 'numba' (or unset), got "
                           f"{choice!r}")
    return not simulated and choice != "numba"


DIRECT_LAUNCH = launches_directly(os.environ.get(LAUNCH_ENV, ""), SIMULATED)
SCALAR_TYPES = {types.int64: ctypes.c_int64, types.float64: ctypes.c_double}


def kernel_arguments(signature: tuple, values: tuple) -> tuple[list, list]:
    """The argument list Numba's launch (``_Kernel._prepare_args``) builds for a kernel of
    ``signature`` called with ``values``: an array given as its (shape, byte strides), its
    address left 0; a tuple of scalars as it is. Returns the list and the position of each
    array's address in it."""
    arguments, pointer_at = [], []
    for kind, value in zip(signature, values, strict=True):
        if isinstance(kind, types.Array):
            shape, strides = value
            assert len(shape) == len(strides) == kind.ndim, (kind, value)
            pointer_at.append(len(arguments) + 4)
            # Numba's array model: meminfo, parent, size, itemsize, data, shape, strides
            arguments += [0, 0, math.prod(shape), numpy_support.as_dtype(kind.dtype).itemsize,
                          0, *shape, *strides]
        else:
            arguments += [SCALAR_TYPES[t](v) for t, v in zip(kind, value, strict=True)]
    return arguments, pointer_at


class DirectLaunch(NamedTuple):
    """One step launched through cuda.core as Numba would launch it (``_launch`` runs
    ``launch(stream, config, function, *arguments)``): ``arguments`` prepared, ``patches``
    (position in them, buffer slot) where a call writes each array's pointer."""

    launch: object
    stream: object
    config: object
    function: object
    arguments: tuple
    patches: tuple


@functools.cache
def _cuda_core() -> tuple:
    """cuda.core's ``launch`` and ``LaunchConfig``, and Numba's conversion of its stream
    objects to cuda.core's (what Numba's own launch uses)."""
    from cuda.core import LaunchConfig, launch
    from numba.cuda.cudadrv import driver
    return launch, LaunchConfig, driver._to_core_stream


def compiled_function(name: str, entry: Entry):
    """The cuda.core kernel of kernel_table's ``name`` (``entry``) compiled for its signature
    and loaded on the current device (Numba's compile and module caches keep both)."""
    kernel = entry.kernel.compile(entry.signature)
    assert not kernel.cooperative, name
    return kernel.library.get_cufunc().kernel


def _direct_launch(p: _Prepared, step: _Step, stream, buffer_count: int) -> DirectLaunch:
    """``step`` as a DirectLaunch: its views resolve to the buffers they view, its constants'
    pointers are written in once."""
    core_launch, launch_config, core_stream = _cuda_core()
    entry = kernel_table(p.dtype, SIMULATED)[step.name]
    *arrays, _ = entry.signature
    flat = [((size,), (numpy_support.as_dtype(a.dtype).itemsize,))
            for a, size in zip(arrays, step.sizes, strict=True)]
    arguments, pointer_at = kernel_arguments(entry.signature, (*flat, step.scalars))
    patches = []
    for at, slot in zip(pointer_at, step.slots):
        view = slot - buffer_count
        if view < 0:
            patches.append((at, slot))
        elif view < len(p.views):
            patches.append((at, p.views[view][0]))
        else:
            arguments[at] = numba_pointer(p.constants[view - len(p.views)])
    function = compiled_function(step.name, entry)
    return DirectLaunch(core_launch, core_stream(stream),
                        launch_config(grid=step.grid, block=step.block, shmem_size=0), function,
                        tuple(arguments), tuple(patches))


numba_pointer = operator.attrgetter("device_ctypes_pointer.value")  # as Numba's launch reads it


def _check_signature(p: _Prepared, step: _Step, buffers: list) -> None:
    got = tuple(numba.typeof(buffers[s]) for s in step.slots) + (numba.typeof(step.scalars),)
    want = kernel_table(p.dtype, SIMULATED)[step.name].signature
    assert got == want, f"{step.name} launched with {got}, kernel_table has {want}"


def _call(build, arrays: tuple, options: tuple) -> list:
    """Run the op that ``build(device, *arrays, *options)`` prepares, preparing it only the first
    time its signature is met (``signature.prepared``: shapes, strides, dtypes and types of
    the arrays, the options, the device); returns the outputs. Numba device arrays go to the
    kernels as they are (on the stream of ``on_stream``, else the default stream); CuPy and
    NumPy arrays through ``_cupy_call`` / ``_host_call``."""
    recording = signature.recorder()
    if recording is not None:  # a part of a composite op (see _composite)
        recording.append((build, arrays, options))
        return [len(recording) - 1]
    return _taking_turns(_run, build, arrays, options)


def _taking_turns(work, *args):
    """``work(*args)``; in the simulator, one caller at a time (``_SIMULATOR_TURN``)."""
    if _SIMULATOR_TURN is None:
        return work(*args)
    with _SIMULATOR_TURN:
        return work(*args)


def _run(build, arrays: tuple, options: tuple) -> list:
    """``_call``'s work: prepare (once per signature), then launch."""
    device = getattr(cuda.get_current_device(), "id", 0)  # the simulator's device has none
    p = signature.prepared(_PREPARED, build, device, arrays, options, device)
    if p.kind != "numba":
        return (_cupy_call if p.kind == "cupy" else _host_call)(p, arrays)
    stream = _STREAM.get() or 0
    buffers = list(arrays)
    for slot in p.copies:
        buffers[slot] = _contiguous(buffers[slot], stream)
    return _launch(p, buffers, stream, cuda.device_array, numba_pointer)


def _composite(device: int, arrays: tuple, compose, *args) -> _Prepared:
    """One prepared call of the ops of this module that ``compose(*args)`` calls, each with one
    output (``signature.record``): their launches in order, their inputs found among ``arrays``
    by identity, the outputs in the order compose returns them (None: not computed)."""
    calls, results = signature.record(compose, *args)
    parts = [build(device, *part_arrays, *options) for build, part_arrays, options in calls]
    workspaces, part_slots = signature.composite_slots(
        arrays, calls, results,
        [[(count, dtype) for (count,), dtype in p.allocations[p.outputs:]] for p in parts])
    views: dict = {}      # (composite buffer slot, shape) -> its index among the views
    constants: dict = {}  # id -> (its index among the constants, the array)
    steps, copies = [], set()
    for part, slots in zip(parts, part_slots):
        refs = slots + [("view", views.setdefault((slots[slot], shape), len(views)))
                        for slot, shape in part.views]
        refs += [("constant", constants.setdefault(id(c), (len(constants), c))[0])
                 for c in part.constants]
        copies.update(slots[slot] for slot in part.copies)
        steps += [step._replace(slots=tuple(refs[slot] for slot in step.slots))
                  for step in part.steps]
    base = {"view": len(arrays) + len(results) + len(workspaces)}
    base["constant"] = base["view"] + len(views)
    steps = tuple(step._replace(slots=tuple(ref if isinstance(ref, int) else base[ref[0]] + ref[1]
                                            for ref in step.slots)) for step in steps)
    outputs = tuple(None if r is None else parts[r].allocations[0] for r in results)
    allocations = outputs + tuple(((count,), dtype) for count, dtype in workspaces)
    first = next(a for a in arrays if a is not None)
    return _Prepared(array_library(first), np.dtype(first.dtype), steps, allocations, len(outputs),
                     tuple(views), tuple(c for _, c in constants.values()),
                     tuple(sorted(copies)), {})


def _cupy_call(p: _Prepared, arrays: tuple) -> list:
    """CuPy arrays: the kernels run on CuPy's current stream over the same memory, with no
    synchronisation (direct launches take CuPy's pointers; Numba's own takes zero-copy views
    through ``__cuda_array_interface__``, sync=False), and CuPy allocates the outputs."""
    import cupy
    stream = _external_stream(cupy.cuda.get_current_stream().ptr)
    arrays = [None if a is None else cupy.ascontiguousarray(a) for a in arrays]
    if DIRECT_LAUNCH:
        return _launch(p, arrays, stream, lambda shape, dtype, stream: cupy.empty(shape, dtype),
                       _cupy_pointer)
    owners = []

    def empty(shape, dtype, stream):
        owners.append(cupy.empty(shape, dtype))
        return cuda.as_cuda_array(owners[-1], sync=False)
    buffers = [None if a is None else cuda.as_cuda_array(a, sync=False) for a in arrays]
    results = _launch(p, buffers, stream, empty)
    owned = iter(owners)
    return [None if r is None else next(owned) for r in results]


_cupy_pointer = operator.attrgetter("data.ptr")


def _host_call(p: _Prepared, arrays: tuple) -> list:
    """NumPy arrays: copied to the device, the kernels run, the outputs copied back (this waits
    for the device)."""
    stream = _STREAM.get() or 0
    buffers = [None if a is None else cuda.to_device(np.ascontiguousarray(a), stream=stream)
               for a in arrays]
    results = [None if r is None else r.copy_to_host(stream=stream)
               for r in _launch(p, buffers, stream, cuda.device_array, numba_pointer)]
    if stream:
        stream.synchronize()
    return results


def _external_stream(handle: int):
    """One Numba stream object per CUDA stream handle, so that configured kernels are reused."""
    if handle not in _STREAMS:
        _STREAMS[handle] = cuda.external_stream(handle)
    return _STREAMS[handle]


def _contiguous(array, stream):
    """A C-contiguous copy of a 4-D Numba device array of any strides, on ``stream``."""
    if array.ndim != 4:
        raise ValueError(f"a non-contiguous Numba device array must be 4-D here, got "
                         f"shape {tuple(array.shape)}; copy it to a contiguous one")
    copy = cuda.device_array(array.shape, array.dtype, stream=stream)
    name = "copy_strided_indices" if array.dtype == np.int64 else "copy_strided"
    entry = kernel_table(np.float64 if name == "copy_strided_indices" else array.dtype,
                         SIMULATED)[name]
    blocks = max(1, min(-(-copy.size // launch.threads), launch.max_blocks))
    if not DIRECT_LAUNCH:
        entry.kernel[blocks, launch.threads, stream](array, copy)
        return copy
    arguments, pointer_at = kernel_arguments(
        entry.signature, ((array.shape, array.strides), (copy.shape, copy.strides)))
    for at, each in zip(pointer_at, (array, copy)):
        arguments[at] = numba_pointer(each)
    core_launch, launch_config, core_stream = _cuda_core()
    core_launch(core_stream(stream), launch_config(grid=(blocks, 1, 1),
                                                   block=(launch.threads, 1, 1), shmem_size=0),
                compiled_function(name, entry), *arguments)
    return copy


# --------------------------------------------------------------------------- array helpers
def from_foreign(array):
    """Another library's array as one this backend takes, without a copy: a CUDA array as a
    Numba device array (CUDA array interface; outside ``on_stream`` Numba first waits for
    the producer's stream), a host array as a NumPy array (DLPack)."""
    if foreign_device(array) == "cpu":
        return np.from_dlpack(array)
    if not hasattr(array, "__cuda_array_interface__"):
        raise TypeError(f"backend 'numba' reads CUDA arrays through __cuda_array_interface__, "
                        f"which this {array_library(array)} array lacks; use backend='cupy'")
    return cuda.as_cuda_array(array, sync=_STREAM.get() is None)


@contextlib.contextmanager
def on_stream(device: int, stream):
    """Run the launches inside on CUDA device ``device`` and on ``stream``, another library's
    stream object (CUDA stream protocol: ``__cuda_stream__``), PyTorch's current one say."""
    _, handle = stream.__cuda_stream__()
    with cuda.gpus[device]:
        token = _STREAM.set(_external_stream(handle))
        try:
            yield
        finally:
            _STREAM.reset(token)


def flip_kernel(weight):
    """The kernel axes reversed; a Numba device array as a contiguous copy (Numba copies
    no reversed view to the host), a NumPy or CuPy one as a view."""
    if array_library(weight) != "numba":
        return backends.kernel_flipped(weight)
    if weight.ndim == 3:  # a 1-D op's kernel: the copy kernel takes 4-D arrays
        return flip_kernel(signature.lift(weight)).reshape(weight.shape)
    return contiguous(backends.kernel_flipped(weight))


def contiguous(array):
    """A C-contiguous copy of a strided 4-D Numba device array (a reversed view, say; one
    of size-1 axes only counts as contiguous to Numba, yet its negative strides break
    slicing)."""
    return _taking_turns(_contiguous, array, _STREAM.get() or 0)  # (a launch outside _call)


_ERROR_WORDS: dict = {}  # device id -> its int64 error word (a 1-element device array)


def _error_word(device: int):
    """Device ``device``'s (the current one's) error word, zero until a kernel flags bad input;
    allocated once: prepared launches hold it."""
    if device not in _ERROR_WORDS:
        _ERROR_WORDS[device] = cuda.to_device(np.zeros(1, np.int64))
    return _ERROR_WORDS[device]


def take_errors() -> list[int]:
    """The error words kernels set since the last call, each cleared (a copy to the host:
    it waits for the device). Max-pool backward stores its plane size H*W there
    for an index outside [0, H*W), -H*W for one outside its window (BadPoolIndex)."""
    found = []
    for word in _ERROR_WORDS.values():
        value = int(word.copy_to_host()[0])
        if value:
            found.append(value)
            word.copy_to_device(np.zeros(1, np.int64))
    return found


# --------------------------------------------------------------------------- convolution
def _build_conv2d(device, x, weight, bias, spec: ConvSpec, precision: str, relu: bool):
    dtype = np.dtype(x.dtype).name
    out = (x.shape[0], weight.shape[0]) + spec.output_shape(x.shape[2:], weight.shape[2:])
    return _prepare(device, gpu_plan.numba_conv_forward_plan(x.shape, weight.shape, spec, dtype,
                                                             bias is not None, SIMULATED, relu),
                    (x, weight, bias), ("x", "weight", "bias", "out"), ((out, dtype),))


def conv2d(x, weight, bias, spec: ConvSpec, precision: str = "ieee", relu: bool = False):
    """y (N, O, H_out, W_out) = x (N, C, H, W) correlated with weight (O, C/G, kH, kW) + bias,
    then max(y, 0) if ``relu`` (in conv_gemm's epilogue)."""
    return _call(_build_conv2d, (x, weight, bias), (spec, precision, relu))[0]


def _build_conv2d_grad_bias(device, grad_out):
    dtype = np.dtype(grad_out.dtype).name
    return _prepare(device, gpu_plan.numba_conv_grad_bias_plan(grad_out.shape, dtype, SIMULATED),
                    (grad_out,), ("grad_out", "out"), (((grad_out.shape[1],), dtype),))


def conv2d_grad_bias(grad_out):
    """dL/db (O,) = sum of grad_out (N, O, H_out, W_out) over batch and pixels."""
    return _call(_build_conv2d_grad_bias, (grad_out,), ())[0]


def _build_conv2d_grad_weight(device, grad_out, x, spec: ConvSpec, kernel_hw, precision: str):
    dtype = np.dtype(x.dtype).name
    out = (grad_out.shape[1], x.shape[1] // spec.groups) + tuple(kernel_hw)
    return _prepare(device, gpu_plan.numba_conv_grad_weight_plan(grad_out.shape, x.shape, spec,
                                                                 kernel_hw, dtype, SIMULATED),
                    (grad_out, x), ("grad_out", "x", "out"), ((out, dtype),))


def conv2d_grad_weight(grad_out, x, spec: ConvSpec, kernel_hw, precision: str = "ieee"):
    """dL/dW (O, C/G, kH, kW): the correlation of the padded input with grad_out, reduced over
    batch and pixels in the plan's fixed splits, which a second kernel adds in order."""
    return _call(_build_conv2d_grad_weight, (grad_out, x), (spec, tuple(kernel_hw), precision))[0]


def _build_conv2d_grad_input(device, grad_out, weight, bias, spec: ConvSpec, input_hw,
                             precision: str):
    dtype = np.dtype(grad_out.dtype).name
    out = (grad_out.shape[0], weight.shape[1] * spec.groups) + input_hw
    return _prepare(device, gpu_plan.numba_conv_grad_input_plan(
        grad_out.shape, weight.shape, spec, input_hw, dtype, bias is not None, SIMULATED),
        (grad_out, weight, bias), ("grad_out", "weight", "bias", "out"), ((out, dtype),))


def conv2d_grad_input(grad_out, weight, spec: ConvSpec, input_hw, bias=None,
                      precision: str = "ieee"):
    """dL/dx (N, C, H, W): the transposed convolution of grad_out (N, O, H_out, W_out) with
    weight (O, C/G, kH, kW), plus ``bias`` (C,) (the forward of ``conv_transpose2d``).
    Zero padding: the GEMM writes dx directly; other modes: it writes the gradient of the
    padded input, and ``conv_pad_adjoint`` gathers it back onto the positions it copies."""
    return _call(_build_conv2d_grad_input, (grad_out, weight, bias),
                 (spec, tuple(input_hw), precision))[0]


def _build_conv2d_backward(device, grad_out, x, weight, spec: ConvSpec, output_mask,
                           precision: str, transposed: bool):
    return _composite(device, (grad_out, x, weight), backends.conv_backward,
                      sys.modules[__name__], grad_out, x, weight, spec, output_mask, precision,
                      transposed)


def conv2d_backward(grad_out, x, weight, spec: ConvSpec, output_mask, precision: str = "ieee",
                    transposed: bool = False):
    """(dx, dW, db) of a conv or transposed conv (``backends.conv_backward`` over this module's
    kernels), prepared and launched as one call."""
    return tuple(_call(_build_conv2d_backward, (grad_out, x, weight),
                       (spec, tuple(output_mask), precision, transposed)))


# --------------------------------------------------------------------------- pooling
# the pooling entries of KERNELS (max_pool2d, avg_pool2d, ..., their backwards and
# checks_index_values) from gpu_pooling, run by this module's executor: the CuPy backend's
# plans as the twins take them (gpu_plan.numba_plan), for contiguous strides (the Numba
# kernels take contiguous arrays: see _call)
gpu_pooling.bind(
    globals(), _call,
    lambda device, p, arrays, names, outputs, contiguous: _prepare(
        device, gpu_plan.numba_plan(p, SIMULATED), arrays, names, outputs),
    lambda array: gpu_plan.contiguous_strides(array.shape))
