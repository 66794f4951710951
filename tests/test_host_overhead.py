"""Host overhead of the GPU backends, on the CPU (bench/host.py's stand-ins for CuPy and
Numba): no op reads device memory on the host (the fake device arrays raise on any
transfer), an op call stays within issue 13's Python-call budget, and the per-signature
caches (validation, plans, kernel handles, parameter structs) are keyed on everything the
launch depends on."""

from __future__ import annotations

import ctypes
import math
import sys
import types as pytypes
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import gpuconv.functional as F  # noqa: E402
from bench import host  # noqa: E402
from gpuconv import backends  # noqa: E402
from gpuconv.backends import cupy_backend, gpu_plan, numba_backend, numpy_backend  # noqa: E402
from gpuconv.shapes import ConvSpec, PoolSpec, max_window_taps  # noqa: E402

BACKENDS = ("cupy", "numba")


def _ops(backend):
    stubbed, array_type = host.STUBS[backend]
    with stubbed():
        return list(host.op_calls(lambda shape, dtype=None: array_type(shape, dtype or "float32")))


CASES = [pytest.param(backend, op, id=f"{backend}-{op}") for backend in BACKENDS
         for op in _ops(backend)]


@pytest.mark.parametrize("backend, op", CASES)
def test_op_never_reads_device_memory(backend, op):
    stubbed, array_type = host.STUBS[backend]
    with stubbed() as launches:
        calls = host.op_calls(lambda shape, dtype=None: array_type(shape, dtype or "float32"))
        calls[op]()          # prepares the signature
        del launches[:]
        count = host.count_calls(calls[op])
    assert launches, f"{op} launched nothing"
    assert count <= host.TARGET_CALLS, f"{op}: {count} Python calls"


@pytest.mark.parametrize("read", [np.asarray, int, float, bool, len, lambda a: a.get(),
                                  lambda a: a.item(), lambda a: a.tolist(), list,
                                  lambda a: a.copy_to_host(), lambda a: int(a.min())])
@pytest.mark.parametrize("array_type", [host.CupyArray, host.NumbaArray])
def test_fake_device_arrays_refuse_host_reads(array_type, read):
    with pytest.raises(host.HostTransfer):
        read(array_type((2, 3), "int64"))


def test_fake_device_array_views_follow_numpy():
    a = host.CupyArray((4, 3, 5, 6))
    ref = np.empty((4, 3, 5, 6), np.float32)
    for index in [(slice(None), slice(None), 0), (slice(None, None, -1), 1, slice(1, 4, 2)),
                  (slice(None), slice(None), slice(None, None, -1), slice(None, None, -1))]:
        view, want = a[index], ref[index]
        assert view.shape == want.shape and view.strides == want.strides
        offset = want.__array_interface__["data"][0] - ref.__array_interface__["data"][0]
        assert view.data.ptr == a.data.ptr + offset
    assert a.reshape(4, 3, 1, 30).is_c_contiguous() and not a[:, :, ::2].is_c_contiguous()


# --------------------------------------------------------------------------- the caches
class RecordingExecutor(host.NoOpExecutor):
    """Keeps a copy of every struct launched, and counts how often each kernel is fetched."""

    def __init__(self):
        super().__init__()
        self.structs, self.fetched = [], []

    def function(self, kernel):
        self.fetched.append(kernel)

        def launch(grid, block, args, shared_mem=0):
            (struct,) = args  # one struct, passed by value
            assert type(shared_mem) is int and 0 <= shared_mem <= 227 * 1024, kernel
            assert struct.shape == (1,) and struct.dtype in (gpu_plan.CONV_PARAMS,
                                                             gpu_plan.POOL_PARAMS), kernel
            assert all(type(v) is int and v > 0 for v in grid + block) and len(grid + block) == 6
            self.structs.append(struct.copy())
        return launch


@pytest.fixture
def recording(monkeypatch):
    with host.cupy_backend_stubbed():
        ex = RecordingExecutor()
        monkeypatch.setattr(cupy_backend, "_EXECUTOR", ex)
        yield ex


@pytest.mark.parametrize("op", _ops("cupy"))
def test_every_op_launches_structs_by_value(recording, op):
    """What CuPy receives: a size-1 parameter struct per launch, 3-D grids and blocks."""
    calls = host.op_calls(lambda shape, dtype=None: host.CupyArray(shape, dtype or "float32"))
    del recording.structs[:]
    calls[op]()
    assert recording.structs


@pytest.fixture
def numba_recording(monkeypatch):
    """The numba backend with stubbed allocation and direct launches that record what cuda.core
    would receive: (kernel name, stream, config, arguments); ``compiled`` lists each kernel
    fetched (once per signature and stream)."""
    with host.numba_backend_stubbed():
        log = pytypes.SimpleNamespace(compiled=[], launches=[])
        _, config, core_stream = numba_backend._cuda_core()

        def launch(stream, config, name, *arguments):
            log.launches.append((name, stream, config, arguments))

        def compiled(name, entry):
            log.compiled.append(name)
            return name
        monkeypatch.setattr(numba_backend, "compiled_function", compiled)
        monkeypatch.setattr(numba_backend, "_cuda_core", lambda: (launch, config, core_stream))
        yield log


def _numba_arrays(arguments: tuple) -> list[tuple[int, int]]:
    """(pointer, size) of each array in a direct launch's arguments (Numba's array model:
    meminfo, parent, size, itemsize, data, shape, stride), up to the scalars (ctypes)."""
    arrays = []
    while arguments and isinstance(arguments[0], int):
        meminfo, parent, size, itemsize, data, shape, stride = arguments[:7]
        assert meminfo == parent == 0 and shape == size and stride == itemsize in (4, 8)
        arrays.append((data, size))
        arguments = arguments[7:]
    return arrays


def _counting(monkeypatch, name):
    calls = []
    real = getattr(gpu_plan, name)

    def plan(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        return calls[-1]
    monkeypatch.setattr(gpu_plan, name, plan)
    return calls


def test_a_signature_is_planned_once_and_only_pointers_change(recording, monkeypatch):
    planned = _counting(monkeypatch, "conv_forward_plan")
    x, w, b = host.CupyArray((8, 4, 9, 9)), host.CupyArray((6, 4, 3, 3)), host.CupyArray((6,))
    y1 = F.conv2d(x, w, b, padding=1)
    x2, w2, b2 = host.CupyArray(x.shape), host.CupyArray(w.shape), host.CupyArray(b.shape)
    y2 = F.conv2d(x2, w2, b2, padding=1)
    assert len(planned) == 1 and len(recording.fetched) == 1
    first, second = recording.structs
    for struct, arrays in ((first, (w, x, b, y1)), (second, (w2, x2, b2, y2))):
        assert [int(struct[f][0]) for f in ("a", "b", "bias", "out")] == \
            [a.data.ptr for a in arrays]
    scalars = [name for name in first.dtype.names if name not in gpu_plan.POINTER_FIELDS]
    assert all(np.array_equal(first[f], second[f]) for f in scalars)
    template = next(iter(recording.prepared.values())).steps[0][4]
    assert not any(template[:32])  # the prefilled struct's pointers are never patched


def test_numba_plans_once_and_only_the_arrays_change(numba_recording, monkeypatch):
    """Numba: one plan and one compiled kernel fetched per signature and stream; later calls
    launch it with the same scalars, on the new arrays' memory (flat: their sizes)."""
    planned = _counting(monkeypatch, "numba_conv_forward_plan")
    calls = []
    for _ in range(2):
        x, w = host.NumbaArray((8, 4, 9, 9)), host.NumbaArray((6, 4, 3, 3))
        b = host.NumbaArray((6,))
        calls.append(((w, x, b), F.conv2d(x, w, b, padding=1)))
    assert len(planned) == 1 and len(numba_recording.compiled) == 1
    launched = numba_recording.launches
    assert len(launched) == 2 and launched[0][:3] == launched[1][:3]
    n_fields = len(gpu_plan.scalars(gpu_plan.CONV_FIELDS, {}))
    for (inputs, y), (_, _, _, arguments) in zip(calls, launched):
        assert _numba_arrays(arguments) == [(a.data.ptr, a.size) for a in inputs + (y,)]
        scalars = arguments[-n_fields:]
        assert all(type(v) is ctypes.c_int64 for v in scalars)
        assert tuple(v.value for v in scalars) == gpu_plan.scalars(
            gpu_plan.CONV_FIELDS, planned[0].launches[0].params)
    (w, x, b), _ = calls[0]
    token = numba_backend._STREAM.set(host._Stream())  # another stream: configured anew
    try:
        F.conv2d(x, w, b, padding=1)
    finally:
        numba_backend._STREAM.reset(token)
    assert len(planned) == 1 and len(numba_recording.compiled) == 2


def test_numba_null_pointers_and_views(numba_recording):
    """A null pointer (no bias) is an empty array at a fixed address, and an array of more axes
    goes in flat at its own address (no view is made): a backward's four launches."""
    gy, x, w = host.NumbaArray((8, 6, 7, 7)), host.NumbaArray((8, 4, 9, 9)), \
        host.NumbaArray((6, 4, 3, 3))
    dx, dw, db = F.conv2d_backward(gy, x, w, output_mask=(True, True, True))
    (grad_input, _, _, arguments), *others = numba_recording.launches
    launched = {name.partition("<")[0]: _numba_arrays(arguments)
                for name, _, _, arguments in others}
    flat = {id(a): (a.data.ptr, a.size) for a in (gy, x, w, dx, dw, db)}
    assert launched["conv_grad_bias"][0] == flat[id(gy)] and launched["conv_grad_bias"][3] == \
        flat[id(db)]
    assert flat[id(dw)] in launched["conv_splitk_reduce"]
    assert {flat[id(gy)], flat[id(x)]} <= set(launched["conv_gemm"])
    assert _numba_arrays(arguments)[:2] == [flat[id(w)], flat[id(gy)]]
    assert _numba_arrays(arguments)[3] == flat[id(dx)], grad_input
    placeholder = numba_backend._placeholder(0, np.dtype(np.float32))
    assert launched["conv_grad_bias"][1] == (placeholder.data.ptr, 0)


def test_numba_launch_choice():
    """Direct launches on a GPU; Numba's own where GPUCONV_NUMBA_LAUNCH says so, and always in
    the simulator; another value is refused, naming the variable."""
    assert numba_backend.launches_directly("", simulated=False)
    assert numba_backend.launches_directly("direct", simulated=False)
    assert not numba_backend.launches_directly("numba", simulated=False)
    assert not numba_backend.launches_directly("direct", simulated=True)
    with pytest.raises(ValueError, match="GPUCONV_NUMBA_LAUNCH must be"):
        numba_backend.launches_directly("cupy", simulated=False)


def test_numba_on_cupy_arrays_launches_on_cupy_memory(numba_recording, monkeypatch):
    """CuPy arrays on the numba backend: CuPy allocates the outputs and workspaces (the outputs
    come back as those CuPy arrays), the kernels get their pointers, on the cuda.core stream
    of one Numba stream object for CuPy's current stream (configured once)."""
    allocated = []

    def empty(shape, dtype):
        allocated.append(host.CupyArray(shape, dtype))
        return allocated[-1]
    stream = pytypes.SimpleNamespace(ptr=7)
    monkeypatch.setitem(sys.modules, "cupy", pytypes.SimpleNamespace(
        empty=empty, ascontiguousarray=host._ascontiguousarray,
        cuda=pytypes.SimpleNamespace(get_current_stream=lambda: stream)))
    monkeypatch.setattr(numba_backend.cuda, "external_stream", lambda handle: host._Stream())
    x, w = host.CupyArray((8, 4, 9, 9)), host.CupyArray((6, 4, 3, 3))
    for _ in range(2):
        del allocated[:], numba_recording.launches[:]
        y = F.conv2d(x, w, padding=1, backend="numba")
        assert y is allocated[0] and y.shape == (8, 6, 9, 9)
        ((_, launch_stream, _, arguments),) = numba_recording.launches
        arrays = _numba_arrays(arguments)
        assert arrays[:2] == [(w.data.ptr, w.size), (x.data.ptr, x.size)]
        assert arrays[3] == (y.data.ptr, y.size) and arrays[2][1] == 0  # out; no bias: null
    assert len(numba_recording.compiled) == 1 and launch_stream is numba_backend._STREAMS[7]


CHANGES = {"cupy": ("strides", "spec", "dtype", "precision", "device"),
           "numba": ("strides", "spec", "dtype", "device", "library")}  # numba: "ieee" only


@pytest.mark.parametrize("backend, change", [(b, c) for b in CHANGES for c in CHANGES[b]])
def test_what_the_launch_depends_on_is_planned_anew(request, monkeypatch, backend, change):
    if backend == "cupy":
        recording, array, plan = request.getfixturevalue("recording"), host.CupyArray, \
            "conv_forward_plan"
    else:
        request.getfixturevalue("numba_recording")
        array, plan = host.NumbaArray, "numba_conv_forward_plan"
    planned = _counting(monkeypatch, plan)
    x, w = array((8, 4, 9, 9)), array((6, 4, 3, 3))
    F.conv2d(x, w)
    kwargs = {}
    if change == "strides":
        x = array((8, 4, 9, 18))[:, :, :, ::2]
    elif change == "spec":
        kwargs = dict(padding=1)
    elif change == "dtype":
        x, w = array(x.shape, "float64"), array(w.shape, "float64")
    elif change == "precision":
        kwargs = dict(precision="tf32x3")
    elif change == "library":  # CuPy arrays on the numba backend: the same plan, other I/O
        monkeypatch.setattr(numba_backend, "_cupy_call", lambda p, arrays: [p.kind])
        x, w = host.CupyArray(x.shape), host.CupyArray(w.shape)
        assert F.conv2d(x, w, backend="numba") == "cupy"
    elif backend == "cupy":
        monkeypatch.setattr(recording, "current_device", lambda: 1)
    else:
        monkeypatch.setattr(numba_backend.cuda, "get_current_device",
                            lambda: pytypes.SimpleNamespace(id=1))
    if change != "library":
        F.conv2d(x, w, **kwargs)
    assert len(planned) == 2


def test_device_attributes_are_read_once_per_device(recording, monkeypatch):
    reads = []
    monkeypatch.setattr(recording, "sm_count", lambda: reads.append(1) or 132)
    gy, x = host.CupyArray((8, 6, 7, 7)), host.CupyArray((8, 4, 9, 9))
    for _ in range(3):
        F.conv2d_backward(gy, x, host.CupyArray((6, 4, 3, 3)), output_mask=(False, True, False))
    assert len(reads) == 1


def test_remembered_validation_still_tells_equal_values_of_other_types_apart():
    """1, True and 1.0 are equal dict keys: a signature checked with stride=1 must not let
    stride=True or stride=1.0 through."""
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    want = F.conv2d(x, w, stride=1)
    for bad in (True, 1.0, (1, True), (1.0, 1)):
        with pytest.raises(TypeError, match="stride"):
            F.conv2d(x, w, stride=bad)
    np.testing.assert_array_equal(F.conv2d(x, w, stride=[1, 1]), want)  # a list: checked afresh
    F.conv2d(x, w, padding=((1, 0), (0, 1)))
    with pytest.raises(TypeError, match="padding"):
        F.conv2d(x, w, padding=((True, 0), (0, 1)))
    with pytest.raises(TypeError, match="input"):
        F.conv2d(x.astype(np.int64), w)


# --------------------------------------------------------------------------- device index check
@pytest.fixture
def emulated(monkeypatch):
    """The CuPy backend on the CPU: its CUDA C kernels through tests/cuda_host."""
    from gpuconv import backends
    from tests.cuda_host import harness
    if harness.compiler() is None:
        pytest.skip("no C++ compiler (g++)")
    monkeypatch.setattr(cupy_backend, "_EXECUTOR", harness.HostExecutor(harness.build()))
    monkeypatch.setitem(backends._LOADED, "cupy", cupy_backend)
    monkeypatch.setitem(backends.TAKES, "cupy", ("numpy",))  # the emulation's device memory
    yield


PLANE_RULE = r"indices must lie in \[0, 25\)"
WINDOW_RULE = r"indices must name a tap of their output's pooling window"


# a bad index for output (0, 1) of 2x2 max pooling of a 5x5 plane (window rows 0-1, columns
# 2-3): outside the plane, or inside it but outside the window (row 0 column 1, row 2 column 2)
@pytest.mark.parametrize("bad, rule", [(25, PLANE_RULE), (-1, PLANE_RULE), (1 << 40, PLANE_RULE),
                                       (1, WINDOW_RULE), (12, WINDOW_RULE)])
@pytest.mark.parametrize("debug", [False, True])
def test_bad_indices_are_flagged_on_the_device(emulated, monkeypatch, bad, rule, debug):
    """No wait in the op: a bad index sets the error word, which check_errors() (or, with
    GPUCONV_DEBUG=1, the op itself) turns into the NumPy backend's ValueError, once."""
    import gpuconv
    from gpuconv import backends
    from gpuconv.backends import numpy_backend
    from gpuconv.shapes import PoolSpec
    monkeypatch.setattr(backends, "DEBUG", debug)
    rng = np.random.default_rng(bad % 7)
    x, gy = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((2, 3, 2, 2))
    _, idx = numpy_backend.max_pool2d(x, PoolSpec.make(2, 2), True)
    gpuconv.check_errors()                                 # nothing flagged
    want = F.max_pool2d_backward(gy, x, idx, 2)            # NumPy: checked on the host
    idx[1, 2, 0, 1] = bad
    with pytest.raises(ValueError, match=rule):
        F.max_pool2d_backward(gy, x, idx, 2)
    call = (lambda: F.max_pool2d_backward(gy, x, idx, 2, backend="cupy"))
    # emulated "device" arrays are NumPy arrays: present them as CuPy's to skip the host check
    monkeypatch.setattr(F, "backend_for_array", lambda array: "cupy")
    if debug:
        with pytest.raises(ValueError, match=rule):
            call()
    else:
        got = call()
        mask = np.ones_like(want)
        mask[1, 2, 0:2, 2:4] = 0  # the flagged output's window: its gradient is dropped, or
        if 0 <= bad < 25:         # added where the index points, if a gather reads it there
            mask[1, 2, bad // 5, bad % 5] = 0
        np.testing.assert_allclose(got * mask, want * mask)
        with pytest.raises(ValueError, match=rule):
            gpuconv.check_errors()
    gpuconv.check_errors()                                 # cleared


def test_remembered_validation_follows_the_loaded_backend(monkeypatch):
    """A signature checked once still reaches the backend module loaded now (tests swap it)."""
    from gpuconv import backends
    x, w = np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    F.conv2d(x, w)
    stand_in = pytypes.SimpleNamespace(PRECISIONS=("ieee",), __name__="stand_in_backend",
                                       conv2d=lambda *args: "stand-in")
    monkeypatch.setitem(backends._LOADED, "numpy", stand_in)
    assert F.conv2d(x, w) == "stand-in"


# --------------------------------------------------------------------------- composite backward
# (input shape, weight shape, spec arguments, transposed): split-K partials in both GEMM parts,
# a padded workspace (reflect), groups, strided phases, a transposed conv
BACKWARD_CASES = {
    "3x3": ((2, 6, 9, 11), (4, 6, 3, 3), dict(padding=1), False),
    "reflect-groups-s2": ((2, 4, 8, 8), (4, 2, 3, 3),
                          dict(stride=2, padding=1, groups=2, padding_mode="reflect"), False),
    "transposed-s2": ((2, 3, 5, 5), (3, 5, 4, 4), dict(stride=2, padding=1), True),
}
MASKS = [(True, True, True), (True, False, True), (False, True, False), (False, False, False)]


def _spec(w, kw, transposed):
    return ConvSpec.make(2, w.shape[2:], kw.get("stride", 1), kw.get("padding", 0), 1,
                         kw.get("groups", 1), kw.get("padding_mode", "zeros"),
                         transposed=transposed)


@pytest.fixture(params=["cupy", "numba"])
def gpu_backend(request, monkeypatch):
    """A GPU backend on the CPU: CuPy through its host emulation, Numba through the simulator."""
    if request.param == "cupy":
        request.getfixturevalue("emulated")
        return cupy_backend
    return numba_backend


# name -> input shape, pooling (None: adaptive to (3, 4)): dilated windows with padding,
# overlapping windows, adaptive windows
WINDOW_CASES = {
    "dilated_padded": ((1, 2, 9, 9), PoolSpec.make(2, 3, 2, 1, 2)),
    "overlapping": ((1, 2, 6, 7), PoolSpec.make(2, 3, 1)),
    "adaptive": ((1, 2, 7, 9), None),
}


@pytest.mark.parametrize("case", WINDOW_CASES)
def test_gpu_max_pool_backward_flags_an_index_outside_its_window(gpu_backend, case):
    """The indices max pooling returns pass (no false alarm: every window's first-tap thread
    checks its index). Then every output column's window (rows taking turns: whichever of a
    thread's POOL_V columns holds its first tap): its last tap passes; an index just before
    or past its columns, between dilated column or row taps, or in the rows just before and
    after its taps sets the error word to -H*W (for gpuconv.check_errors)."""
    x_shape, spec = WINDOW_CASES[case]
    x = np.random.default_rng(6).permutation(math.prod(x_shape)).reshape(x_shape) * 1.0
    _, idx = (numpy_backend.max_pool2d(x, spec, True) if spec is not None else
              numpy_backend.adaptive_max_pool2d(x, (3, 4)))
    gy, (h, w) = np.ones(idx.shape), x_shape[2:]
    gpu_backend.take_errors()
    gpu_backend.max_pool2d_backward(gy, idx, (h, w), spec)
    assert gpu_backend.take_errors() == []
    (_, r_lo, r_hi, r_step), (_, c_lo, c_hi, c_step) = max_window_taps(
        spec, (h, w), idx.shape[2:])
    flagged = 0
    for ow in range(idx.shape[3]):
        oh = ow % idx.shape[2]
        rows, cols = range(r_lo[oh], r_hi[oh] + 1, r_step), range(c_lo[ow], c_hi[ow] + 1, c_step)
        for r, c in ((r_hi[oh], c_hi[ow]),        # its last tap
                     (r_lo[oh], c_lo[ow] - 1),    # just before its first column
                     (r_lo[oh], c_hi[ow] + 1),    # just past its last column
                     (r_lo[oh], c_lo[ow] + 1),    # between dilated columns
                     (r_lo[oh] + 1, c_lo[ow]),    # between dilated rows
                     (r_lo[oh] - 1, c_lo[ow]),    # the row before
                     (r_hi[oh] + 1, c_hi[ow])):   # the row after
            if not (0 <= r < h and 0 <= c < w):
                continue
            bad = idx.copy()
            bad[0, 1, oh, ow] = r * w + c
            gpu_backend.max_pool2d_backward(gy, bad, (h, w), spec)
            tap = r in rows and c in cols
            assert gpu_backend.take_errors() == ([] if tap else [-h * w]), (oh, ow, r, c)
            flagged += not tap
    assert flagged >= 2 * idx.shape[3]


@pytest.mark.parametrize("case", BACKWARD_CASES)
@pytest.mark.parametrize("mask", MASKS, ids=lambda m: "".join("xwb"[i] for i in range(3) if m[i]))
def test_conv_backward_is_its_parts_in_one_call(gpu_backend, case, mask):
    """conv2d_backward, one prepared call, gives each part's bits (a part's workspace shared
    with the others'); a gradient left out is None."""
    x_shape, w_shape, kw, transposed = BACKWARD_CASES[case]
    rng = np.random.default_rng(len(case))
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    forward = F.conv_transpose2d if transposed else F.conv2d
    gy = rng.standard_normal(forward(x, w, **kw).shape)
    spec = _spec(w, kw, transposed)
    got = gpu_backend.conv2d_backward(gy, x, w, spec, mask, "ieee", transposed)
    # outside conv2d_backward, conv_backward calls the backend's ops one by one
    want = backends.conv_backward(gpu_backend, gy, x, w, spec, mask, "ieee", transposed)
    for name, g, r in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
        assert (g is None) == (r is None), name
        if r is not None:
            assert np.array_equal(np.asarray(g), np.asarray(r)), name
    if mask[1]:  # and the parts are right: grad_weight against the NumPy backend
        np.testing.assert_allclose(got[1], numpy_backend.conv2d_backward(
            gy, x, w, spec, mask, "ieee", transposed)[1], rtol=1e-10, atol=1e-10)


def test_composite_parts_share_workspaces_as_large_as_the_largest():
    """composite_slots: inputs found by identity (a part may take them in another order), one
    output slot per result in compose's order, the i-th workspace of each dtype shared and as
    large as the largest part's."""
    from gpuconv.backends import signature
    a, b, c = object(), object(), object()
    calls = [(None, (b, a, None), ()), (None, (c,), ()), (None, (a, b), ())]
    results = (2, None, 0, 1)  # compose returned the third part's output first
    workspaces, slots = signature.composite_slots(
        (a, b, c), calls, results,
        [[(1000, "float32"), (9, "int64")], [], [(800, "float32"), (300, "float32")]])
    assert workspaces == [(1000, "float32"), (9, "int64"), (300, "float32")]
    assert slots == [[1, 0, None, 5, 7, 8], [2, 6], [0, 1, 3, 7, 9]]
