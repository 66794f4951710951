"""Host overhead of every op of ``gpuconv.functional`` on a GPU backend, measured on the CPU.

    python bench/host.py              # both GPU backends, writes bench/results/host_overhead.json
    python bench/host.py --quick          # smoke run (few repetitions), writes nothing
    python bench/host.py --backends cupy --ops conv2d max_pool2d_backward --json /tmp/h.json
    python bench/host.py --device --backends cupy --json OUT.json   # on a GPU: real arrays

The backends' own Python runs unchanged; only what would touch a GPU is replaced:

- CuPy: ``NoOpExecutor`` stands in for ``cupy_backend.CupyExecutor`` (kernel handles that
  launch nothing, ``ndarray`` that allocates nothing);
- Numba: the backend as on a GPU (its tiles and direct launches), with the ``cuda`` module it
  calls (allocation, streams), Numba's compile and cuda.core's ``launch`` stubbed
  (``numba_backend_stubbed``): what is measured is everything up to cuda.core's launch call,
  the argument lists included.

Arrays are ``DeviceArray``s: shape, strides, dtype and a fake device pointer, and any way of
reading them on the host (``__array__``, ``int()``, ``float()``, ``bool()``, ``.get()``,
``.item()``, ``.tolist()``, ``copy_to_host``, ``len()``) raises ``HostTransfer``: an op
that synchronises with the device fails here instead of being timed.

With ``--device`` (a CUDA GPU) nothing is stubbed: the ops run on real CuPy or Numba device
arrays of the same shapes, and what is timed is this process's CPU time per call over loops
short enough (LOOP calls) that the launch queue never fills and blocks, with the device
synchronised between loops; the wall time per call (synchronisations included) comes with it.

Per op: the host time of one call in µs (CPU time: the best mean over a few timed loops,
after the first call prepared the signature) and the Python function calls one call makes, counted
with ``sys.setprofile`` (calls into the stand-ins above count as none: CuPy's ``ndarray``
and ``RawKernel`` calls are C), and apart from them the calls of builtins (C functions and
methods). Targets (issue 13): at most 20 µs and 40 Python calls.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import json
import math
import operator
import os
import platform
import sys
import time
import types
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

import gpuconv.functional as F  # noqa: E402
from gpuconv import backends  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TARGET_US, TARGET_CALLS = 20.0, 40
BATCH = 128  # lenet's batch: the launch-bound case of issue 13


# --------------------------------------------------------------------------- fake device arrays
class HostTransfer(RuntimeError):
    """An op tried to read a device array on the host (a copy and a synchronisation)."""


class _Pointer:
    """A device allocation's address (``array.data.ptr``, as CuPy's MemoryPointer)."""

    next_address = 1 << 32

    def __init__(self, ptr: int):
        self.ptr = ptr

    @classmethod
    def allocate(cls, nbytes: int) -> "_Pointer":
        ptr = cls.next_address
        cls.next_address += (nbytes + 511) // 256 * 256
        return cls(ptr)


@functools.cache
def _contiguous_strides(shape, itemsize: int) -> tuple:
    strides, step = [], itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= n
    return tuple(reversed(strides))


class DeviceArray:
    """Metadata of a device array: all that gpuconv may read without a transfer."""

    def __init__(self, shape, dtype="float32", strides=None, data=None):
        # kept cheap: it stands in for cupy.ndarray, whose constructor is C
        self.dtype = dtype if type(dtype) is np.dtype else np.dtype(dtype)
        self.shape = (shape,) if type(shape) is int else tuple(shape)
        self.ndim, self.itemsize = len(self.shape), self.dtype.itemsize
        self.size = math.prod(self.shape)
        self.strides = strides or _contiguous_strides(self.shape, self.itemsize)
        self.data = data or _Pointer.allocate(self.size * self.itemsize)

    def __getitem__(self, index):
        """Basic indexing (ints and slices): the view's shape, strides and pointer."""
        index = index if isinstance(index, tuple) else (index,)
        shape, strides, offset = [], [], 0
        for axis, n in enumerate(self.shape):
            i = index[axis] if axis < len(index) else slice(None)
            if isinstance(i, slice):
                start, stop, step = i.indices(n)
                shape.append(len(range(start, stop, step)))
                strides.append(self.strides[axis] * step)
                offset += start * self.strides[axis]
            else:
                offset += (i % n) * self.strides[axis]
        return type(self)(shape, self.dtype, tuple(strides), _Pointer(self.data.ptr + offset))

    def reshape(self, *shape):
        if not self.is_c_contiguous():
            raise ValueError("DeviceArray reshapes contiguous arrays only")
        return type(self)(shape[0] if len(shape) == 1 else shape, self.dtype, None, self.data)

    def is_c_contiguous(self) -> bool:
        return self.size <= 1 or self.strides == _contiguous_strides(self.shape, self.itemsize)

    def min(self):   # a device reduction: fine until its value is read on the host
        return type(self)((), self.dtype)

    max = min

    def ravel(self):
        return self.reshape(self.size)

    def _transfer(self, *args, **kwargs):
        raise HostTransfer(f"host transfer of a device array of shape {self.shape}")

    __array__ = __int__ = __float__ = __bool__ = __index__ = __len__ = __iter__ = _transfer
    get = item = tolist = copy_to_host = _transfer


class CupyArray(DeviceArray):
    """A stand-in for ``cupy.ndarray`` (gpuconv picks the backend by the array's module)."""

    __module__ = "cupy"


class NumbaArray(DeviceArray):
    """A stand-in for a Numba device array."""

    __module__ = "numba.cuda.cudadrv.devicearray"

    @property
    def device_ctypes_pointer(self):
        return ctypes.c_size_t(self.data.ptr)


# --------------------------------------------------------------------------- CuPy: a no-op executor
class _NoOpKernel:
    def __init__(self, name: str, launches: list):
        self.name, self.launches = name, launches

    def __call__(self, grid, block, args, shared_mem=0):  # tests/test_host_overhead.py checks them
        self.launches.append(self.name)


def _ascontiguousarray(array):
    return array if array.is_c_contiguous() else CupyArray(array.shape, array.dtype)


class NoOpExecutor:
    """``cupy_backend``'s executor interface: launches and allocations do nothing."""

    xp = types.SimpleNamespace(ndarray=CupyArray, ascontiguousarray=_ascontiguousarray,
                               zeros=lambda shape, dtype="float64": CupyArray(shape, dtype))
    tensor_cores = True
    pointer = staticmethod(operator.attrgetter("data.ptr"))  # as CuPy's executor

    def __init__(self):
        self.prepared: dict = {}
        self.error_words: dict = {}
        self.launches: list[str] = []

    def current_device(self) -> int:
        return 0

    def function(self, kernel: str):
        return _NoOpKernel(kernel, self.launches)

    def sm_count(self) -> int:
        return 132

    def device_name(self) -> str:
        return "no-op"


@contextlib.contextmanager
def cupy_backend_stubbed():
    """gpuconv's cupy backend with ``NoOpExecutor``, as if CuPy and a GPU were here."""
    from gpuconv.backends import cupy_backend
    saved = cupy_backend._EXECUTOR, backends._LOADED.get("cupy")
    cupy_backend._EXECUTOR = executor = NoOpExecutor()
    backends._LOADED["cupy"] = cupy_backend
    try:
        yield executor.launches
    finally:
        cupy_backend._EXECUTOR = saved[0]
        if saved[1] is None:
            backends._LOADED.pop("cupy", None)


# --------------------------------------------------------------------------- Numba: stubbed launch
class _Stream:
    handle = 0


@contextlib.contextmanager
def numba_backend_stubbed():
    """gpuconv's numba backend as on a GPU (its tiles, its direct launches), with Numba's
    allocations and streams, its compile and cuda.core's ``launch`` stubbed."""
    from cuda.core import LaunchConfig

    from gpuconv.backends import numba_backend
    launches: list[str] = []
    fake_cuda = types.SimpleNamespace(
        device_array=lambda shape, dtype=np.float64, stream=None: NumbaArray(shape, dtype),
        to_device=lambda array, stream=None: NumbaArray(array.shape, array.dtype),
        get_current_device=lambda: types.SimpleNamespace(id=0),
        default_stream=lambda: _Stream, external_stream=lambda ptr: _Stream)

    def core_launch(stream, config, function, *arguments):
        launches.append(function)

    # and the backend's memo and device state (made of stand-ins while stubbed)
    stubs = {"cuda": fake_cuda, "SIMULATED": False, "DIRECT_LAUNCH": True,
             "compiled_function": lambda name, entry: name,  # a launch names its kernel
             "_cuda_core": lambda: (core_launch, LaunchConfig, lambda stream: stream),
             "_ERROR_WORDS": {}, "_PLACEHOLDERS": {}, "_PREPARED": {}, "_STREAMS": {}}
    saved = {name: getattr(numba_backend, name) for name in stubs}
    for name, value in stubs.items():
        setattr(numba_backend, name, value)
    loaded = backends._LOADED.get("numba")
    backends._LOADED["numba"] = numba_backend
    try:
        yield launches
    finally:
        for name, value in saved.items():
            setattr(numba_backend, name, value)
        if loaded is None:
            backends._LOADED.pop("numba", None)


STUBS = {"cupy": (cupy_backend_stubbed, CupyArray), "numba": (numba_backend_stubbed, NumbaArray)}


# --------------------------------------------------------------------------- Numba's own launch
class DeviceMemory:
    """Device memory as a Numba device array holds it, at an address of our choosing."""

    __cuda_memory__ = True

    def __init__(self, address: int, size: int):
        self.device_ctypes_pointer, self.size = ctypes.c_size_t(address), size


def numba_device_array(shape, strides, dtype, address: int):
    """A real Numba device array (numba.cuda without the simulator) over DeviceMemory."""
    from numba.cuda.cudadrv.devicearray import DeviceNDArray
    dtype = np.dtype(dtype)
    return DeviceNDArray(tuple(shape), tuple(strides), dtype,
                         gpu_data=DeviceMemory(address, dtype.itemsize * math.prod(shape)))


@contextlib.contextmanager
def numba_launch_recorded(function):
    """Numba's launch without a driver: yields ``kernel(name, entry)``, Numba's kernel object
    of a kernel_table entry rebuilt around a code library whose loaded kernel is
    ``function`` (nothing compiles), and the list of what its ``launch`` hands cuda.core's
    launch: (stream, config, kernel, arguments)."""
    from numba import types as numba_types
    from numba.core.typing import signature
    from numba.cuda import dispatcher
    library = types.SimpleNamespace(get_cufunc=lambda: types.SimpleNamespace(kernel=function))
    passed, saved = [], dispatcher.launch
    dispatcher.launch = lambda stream, config, kernel, *arguments: passed.append(
        (stream, config, kernel, arguments))

    def kernel(name, entry):
        return dispatcher._Kernel._rebuild(
            cooperative=False, name=name, signature=signature(numba_types.void, *entry.signature),
            codelibrary=library, debug=False, lineinfo=False, call_helper=None, extensions=[])
    try:
        yield kernel, passed
    finally:
        dispatcher.launch = saved


def numba_simulated() -> bool:
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def numba_launch_conversion_us(number: int = 2000) -> dict:
    """CPU µs of one conv_gemm launch's argument conversion (four flat arrays, new each call,
    and the scalar tuple): in Numba's own launch (``_Kernel.launch`` up to cuda.core's
    launch), and in the backend's direct launch (its prepared list copied, the addresses
    written in). Needs numba.cuda without the simulator."""
    from gpuconv.backends import gpu_plan
    from gpuconv.backends import numba_backend as nb
    table = nb.kernel_table(np.float32)
    name = next(n for n in table if n.startswith("conv_gemm"))
    entry = table[name]
    *arrays, _ = entry.signature
    size = 1 << 20
    scalars = gpu_plan.scalars(gpu_plan.CONV_FIELDS, {"batch": 128, "m": 16, "kc": 6, "kh": 5})
    addresses = [(1 << 32) + i * 4 * size for i in range(len(arrays))]

    def fresh():
        return [numba_device_array((size,), (4,), np.float32, a) for a in addresses]
    with numba_launch_recorded(function=None) as (kernel, _):
        own = kernel(name, entry)
        prepared, pointer_at = nb.kernel_arguments(
            entry.signature, [((size,), (4,))] * len(arrays) + [scalars])
        patches = tuple(enumerate(pointer_at))

        def numba_launch():
            own.launch(fresh() + [scalars], (1, 1, 1), (256, 1, 1), 0, 0)

        def direct_launch():
            pointers = [nb.numba_pointer(a) for a in fresh()]
            arguments = list(prepared)
            for slot, at in patches:
                arguments[at] = pointers[slot]

        base = host_us(fresh, number, 3)
        return {"kernel": name, "numba_own_us": round(host_us(numba_launch, number, 3) - base, 2),
                "direct_us": round(host_us(direct_launch, number, 3) - base, 2)}


# --------------------------------------------------------------------------- the ops
def op_calls(make) -> dict:
    """name -> a call of every op of gpuconv.functional on device arrays made by ``make(shape,
    dtype)``: lenet-sized layers, batch 128; backward ops get the forward's output shapes."""
    x, w, b = make((BATCH, 6, 14, 14)), make((16, 6, 5, 5)), make((16,))
    x1, w1 = make((BATCH, 6, 28)), make((16, 6, 5))
    wt, wt1, bt = make((6, 16, 5, 5)), make((6, 16, 5)), make((16,))
    p, p1 = make((BATCH, 16, 10, 10)), make((BATCH, 16, 20))
    gy, gy1 = make((BATCH, 16, 14, 14)), make((BATCH, 16, 28))
    gt, gt1 = make((BATCH, 16, 28, 28)), make((BATCH, 16, 56))
    transpose = dict(stride=2, padding=2, output_padding=1)

    def like(array, dtype=None):
        return make(array.shape, dtype)

    calls = {
        "conv1d": lambda: F.conv1d(x1, w1, b, padding=2),
        "conv2d": lambda: F.conv2d(x, w, b, padding=2),
        "conv1d_backward": lambda: F.conv1d_backward(gy1, x1, w1, padding=2),
        "conv2d_backward": lambda: F.conv2d_backward(gy, x, w, padding=2),
        "conv_transpose1d": lambda: F.conv_transpose1d(x1, wt1, bt, **transpose),
        "conv_transpose2d": lambda: F.conv_transpose2d(x, wt, bt, **transpose),
        "conv_transpose1d_backward": lambda: F.conv_transpose1d_backward(gt1, x1, wt1, **transpose),
        "conv_transpose2d_backward": lambda: F.conv_transpose2d_backward(gt, x, wt, **transpose),
    }
    pooled = {  # name -> (forward call, backward call)
        "max_pool1d": ((F.max_pool1d, p1, 2, dict(return_indices=True)),
                       (F.max_pool1d_backward, p1, 2, {})),
        "max_pool2d": ((F.max_pool2d, p, 2, dict(return_indices=True)),
                       (F.max_pool2d_backward, p, 2, {})),
        "avg_pool1d": ((F.avg_pool1d, p1, 2, {}), (F.avg_pool1d_backward, p1, 2, {})),
        "avg_pool2d": ((F.avg_pool2d, p, 2, {}), (F.avg_pool2d_backward, p, 2, {})),
        "adaptive_avg_pool1d": ((F.adaptive_avg_pool1d, p1, 5, {}),
                                (F.adaptive_avg_pool1d_backward, p1, 5, {})),
        "adaptive_avg_pool2d": ((F.adaptive_avg_pool2d, p, (5, 5), {}),
                                (F.adaptive_avg_pool2d_backward, p, (5, 5), {})),
        "adaptive_max_pool1d": ((F.adaptive_max_pool1d, p1, 5, dict(return_indices=True)),
                                (F.adaptive_max_pool1d_backward, p1, 5, {})),
        "adaptive_max_pool2d": ((F.adaptive_max_pool2d, p, (5, 5), dict(return_indices=True)),
                                (F.adaptive_max_pool2d_backward, p, (5, 5), {})),
        "lp_pool1d": ((F.lp_pool1d, p1, 2.0, dict(kernel_size=2)),
                      (F.lp_pool1d_backward, p1, 2.0, dict(kernel_size=2))),
        "lp_pool2d": ((F.lp_pool2d, p, 2.0, dict(kernel_size=2)),
                      (F.lp_pool2d_backward, p, 2.0, dict(kernel_size=2))),
    }
    for name, ((forward, xs, arg, kw), (backward, _, _, bkw)) in pooled.items():
        out = forward(xs, arg, **kw)
        y, indices = out if isinstance(out, tuple) else (out, None)
        calls[name] = (lambda f=forward, xs=xs, arg=arg, kw=kw: f(xs, arg, **kw))
        extra = () if indices is None else (indices,)  # the forward's: each in its window
        calls[f"{name}_backward"] = (lambda f=backward, g=like(y), xs=xs, arg=arg, e=extra, kw=bkw:
                                     f(g, xs, *e, arg, **kw))
    y, indices = F.global_max_pool2d(p, return_indices=True)
    g = like(y)
    calls.update({
        "global_avg_pool2d": lambda: F.global_avg_pool2d(p),
        "global_avg_pool2d_backward": lambda: F.global_avg_pool2d_backward(g, p),
        "global_max_pool2d": lambda: F.global_max_pool2d(p, return_indices=True),
        "global_max_pool2d_backward": lambda: F.global_max_pool2d_backward(g, p, indices),
    })
    missing = set(F.__all__) - set(calls)
    assert not missing, f"ops without a host-overhead case: {sorted(missing)}"
    return {name: calls[name] for name in F.__all__}


# --------------------------------------------------------------------------- measuring
def count_calls(call, builtins: bool = False) -> int:
    """Python function calls made by ``call()`` (with ``builtins``: calls of C functions and
    methods instead); the stand-ins in this file (and whatever they call) count as none: what
    they replace is C in CuPy."""
    here, count, stub_depth, entered = __file__, 0, 0, False
    counted = "c_call" if builtins else "call"

    def profile(frame, event, arg):
        nonlocal count, stub_depth, entered
        if event == "call":
            if not entered:  # ``call`` itself, a lambda of op_calls
                entered = True
                return
            if stub_depth or frame.f_code.co_filename == here:
                stub_depth += 1
                return
        elif event == "return" and stub_depth:
            stub_depth -= 1
        if event == counted and not stub_depth:
            count += 1

    sys.setprofile(profile)
    try:
        call()
    finally:
        sys.setprofile(None)
    return count


def host_us(call, number: int, repeat: int) -> float:
    """Best mean µs of one call over ``repeat`` loops of ``number`` calls, in CPU time of this
    process (a host-side cost: time the process waits for a core on a shared machine is not
    part of it)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(number):
            call()
        best = min(best, (time.process_time() - start) / number)
    return 1e6 * best


def measure_backend(backend: str, ops=None, number: int = 2000, repeat: int = 5) -> dict:
    stubbed, array_type = STUBS[backend]
    with stubbed() as launches:
        calls = op_calls(lambda shape, dtype=None: array_type(shape, dtype or "float32"))
        results = {}
        for name, call in calls.items():
            if ops and name not in ops:
                continue
            try:
                call()  # prepares the signature
            except Exception as exc:  # a host transfer, or a stub the op got past
                results[name] = {"synchronises": f"{type(exc).__name__}: {exc}"[:200]}
                continue
            del launches[:]
            calls_made, launched = count_calls(call), len(launches)
            results[name] = {"us": round(host_us(call, number, repeat), 2),
                             "python_calls": calls_made,
                             "builtin_calls": count_calls(call, builtins=True),
                             "launches": launched}
    return results


LOOP = 100  # calls per timed loop on a device: at most ~5 launches each, under CUDA's queue


def device_arrays(backend: str):
    """(make(shape, dtype), synchronize) for real device arrays of ``backend``."""
    if backend == "cupy":
        import cupy
        return (lambda shape, dtype=None: cupy.zeros(shape, dtype or "float32"),
                cupy.cuda.runtime.deviceSynchronize)
    from numba import cuda
    return (lambda shape, dtype=None: cuda.to_device(np.zeros(shape, dtype or "float32")),
            cuda.synchronize)


def measure_device(backend: str, ops=None, repeat: int = 5) -> dict:
    """Real launches: CPU µs per call (best of ``repeat`` loops of LOOP calls) and wall µs per
    call over all loops, synchronisations included."""
    make, synchronize = device_arrays(backend)
    results = {}
    for name, call in op_calls(make).items():
        if ops and name not in ops:
            continue
        call()  # prepares the signature, compiles what it launches
        synchronize()
        best, wall = float("inf"), time.perf_counter()
        for _ in range(repeat):
            start = time.process_time()
            for _ in range(LOOP):
                call()
            best = min(best, (time.process_time() - start) / LOOP)
            synchronize()
        results[name] = {"us": round(1e6 * best, 2),
                         "wall_us": round(1e6 * (time.perf_counter() - wall) / (LOOP * repeat), 2)}
    return results


def machine() -> dict:
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__}


def table(report: dict) -> str:
    lines = []
    for backend, results in report["backends"].items():
        if report.get("device"):
            lines.append(f"{backend} on {report['device']}: CPU µs and wall µs per op call "
                         f"(target {TARGET_US:g} µs of CPU)")
            lines += [f"  {name:28s} {r['us']:7.2f} µs {r['wall_us']:8.2f} µs wall"
                      f"{'' if r['us'] <= TARGET_US else '  over'}" for name, r in results.items()]
            continue
        lines.append(f"{backend}: µs and Python calls per op call (targets {TARGET_US:g} µs, "
                     f"{TARGET_CALLS} calls)")
        for name, r in results.items():
            if "synchronises" in r:
                lines.append(f"  {name:28s} SYNCHRONISES: {r['synchronises']}")
                continue
            flag = "" if r["us"] <= TARGET_US and r["python_calls"] <= TARGET_CALLS else "  over"
            lines.append(f"  {name:28s} {r['us']:7.2f} µs {r['python_calls']:4d} calls "
                         f"({r['builtin_calls']:3d} builtin) {r['launches']:2d} launches{flag}")
    conversion = report.get("numba_launch_conversion")
    if conversion:
        lines.append(f"numba: argument conversion of one {conversion['kernel']} launch: "
                     f"{conversion['numba_own_us']:.2f} µs in Numba's own launch, "
                     f"{conversion['direct_us']:.2f} µs in the direct launch")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", nargs="+", default=list(STUBS), choices=list(STUBS))
    parser.add_argument("--ops", nargs="+", help="only these ops")
    parser.add_argument("--quick", action="store_true", help="few repetitions, writes nothing")
    parser.add_argument("--json", type=Path, help="write the report here")
    parser.add_argument("--label", default="current",
                        help="the run's name in the JSON (other runs there are kept)")
    parser.add_argument("--device", action="store_true",
                        help="real launches on the CUDA GPU (nothing stubbed)")
    args = parser.parse_args(argv)
    number, repeat = (5, 1) if args.quick else (2000, 5)
    report = {"machine": machine(), "targets": {"us": TARGET_US, "python_calls": TARGET_CALLS}}
    if args.device:
        from numba import cuda
        report["device"] = cuda.get_current_device().name.decode()
        report["backends"] = {b: measure_device(b, args.ops, 1 if args.quick else 5)
                              for b in args.backends}
    else:
        report["backends"] = {b: measure_backend(b, args.ops, number, repeat)
                              for b in args.backends}
        if "numba" in args.backends and not numba_simulated():
            report["numba_launch_conversion"] = numba_launch_conversion_us(number)
    print(table(report))
    out = args.json or (None if args.quick or args.ops else RESULTS / "host_overhead.json")
    if out is not None:
        runs = json.loads(out.read_text()).get("runs", {}) if out.exists() else {}
        runs[args.label] = report
        out.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
        print(f"wrote {out} ({args.label!r})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
