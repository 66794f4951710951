"""gpuconv against the PyTorch golden files (``oracle/goldens``, made by ``python -m oracle
generate``), on every backend that can run here, and against the numbers the slides print.

One table: golden case (op, hyper-parameters, dtype) x backend. Each test runs the
forward op and its ``<op>_backward`` with the stored upstream gradient and compares
the output, the max-pool indices (exactly) and every gradient.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

import gpuconv
import gpuconv.functional as F
from gpuconv.backends import _LOADED, gpu_plan, unavailable_reason
from gpuconv.shapes import ConvSpec
from oracle.golden import Case, load_all
from tests.arrays import SIMULATED, to_backend, to_numpy
from tests.cuda_host import harness

CASES = load_all()
BACKENDS = ["numpy"] + [b for b in ("cupy", "numba") if unavailable_reason(b) is None]
# Where CuPy cannot run, the cupy backend's CUDA C kernels still run, on the CPU, through the
# host emulation of tests/cuda_host (g++): "cupy-host" in the table, NumPy arrays in and out.
if unavailable_reason("cupy") is not None and harness.compiler() is not None:
    BACKENDS.append("cupy-host")
# gpuconv.backends.reference, the plain NumPy maths every kernel cites, on NumPy arrays.
BACKENDS.append("reference")
# Numba's CUDA simulator (tests/conftest.py) runs every CUDA thread in Python: there the
# numba backend runs the slides' cases and the cases whose largest array holds at most
# SIMULATED_MAX_ELEMENTS numbers (174 of 214, every op); on a GPU it runs them all.
SIMULATED_MAX_ELEMENTS = 180


def _runs(case: Case, backend: str) -> bool:
    if backend != "numba" or not SIMULATED or case.is_slide:
        return True
    return max(a.size for a in case.arrays.values()) <= SIMULATED_MAX_ELEMENTS


TABLE = [pytest.param(case, backend, id=f"{case.name}-{backend}")
         for case in CASES for backend in BACKENDS if _runs(case, backend)]
SLIDE_TABLE = [p for p in TABLE if p.values[0].is_slide]

# Max-type ops copy an input element: their output must be exact.
MAX_OPS = ("max_pool1d", "max_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d",
           "global_max_pool2d")
# Per-dtype coefficient c: |got - want| <= c * sqrt(K) * (|want| + max|want|), K the
# reduction length behind that number (about 90 ulps for float64, 17 for float32,
# times sqrt(K); the max|want| term covers cancellation in a sum).
COEFF = {"float64": 2e-14, "float32": 2e-6}


# --------------------------------------------------------------------------- array-library glue
def api_name(backend: str) -> str:
    """The backend name gpuconv is given: "cupy-host" runs the cupy backend's kernels,
    "reference" runs on NumPy arrays (``reference_kernels`` puts its module in place)."""
    return {"cupy-host": "cupy", "reference": "numpy"}.get(backend, backend)


# --------------------------------------------------------------------------- running a case
def run_case(case: Case, backend: str) -> dict[str, np.ndarray]:
    """gpuconv's forward and backward for ``case``: the arrays the golden stores."""
    a = {k: to_backend(backend, v) for k, v in case.arrays.items()
         if not k.startswith("printed_")}
    backend = api_name(backend)
    op, kw = case.op, dict(case.params)
    forward, backward = getattr(F, op), getattr(F, op + "_backward")
    got = {}
    if op.startswith("conv"):
        has_bias = "bias" in a
        got["output"] = forward(a["input"], a["weight"], a.get("bias"), **kw, backend=backend)
        gx, gw, gb = backward(a["grad_out"], a["input"], a["weight"], **kw,
                              output_mask=(True, True, has_bias), backend=backend)
        got.update(grad_input=gx, grad_weight=gw)
        if has_bias:
            got["grad_bias"] = gb
        else:
            assert gb is None, "a masked grad_bias must be None"
    elif op in MAX_OPS:
        got["output"], got["indices"] = forward(a["input"], **kw, return_indices=True,
                                                backend=backend)
        # the stored indices, so the backward is tested on its own; the GPU kernels' index
        # checks must flag none of them (gpuconv.check_errors raises what they flagged)
        _take_device_errors()
        got["grad_input"] = backward(a["grad_out"], a["input"], a["indices"], **kw,
                                     backend=backend)
        gpuconv.check_errors()
    else:
        got["output"] = forward(a["input"], **kw, backend=backend)
        got["grad_input"] = backward(a["grad_out"], a["input"], **kw, backend=backend)
    return {k: to_numpy(v) for k, v in got.items()}


def _take_device_errors() -> None:
    """Clear what GPU kernels flagged before (another test's deliberate bad indices)."""
    for module in list(_LOADED.values()):
        getattr(module, "take_errors", list)()


def _spatial(kw_value, ndim):
    if kw_value is None:
        return None
    return (kw_value,) * ndim if isinstance(kw_value, int) else tuple(kw_value)


def reduction_length(case: Case, name: str) -> int:
    """How many products / terms add up into one number of array ``name`` (at most)."""
    arr, op, p = case.arrays, case.op, case.params
    x = arr["input"]
    ndim = x.ndim - 2
    out_spatial = math.prod(arr["output"].shape[2:])
    groups = p.get("groups", 1)
    if op.startswith("conv_transpose"):
        w = arr["weight"]  # (C_in, C_out/groups, *k)
        taps = math.prod(w.shape[2:])
        return {"output": w.shape[0] // groups * taps + 1,
                "grad_input": w.shape[1] * taps,
                "grad_weight": x.shape[0] * math.prod(x.shape[2:]),
                "grad_bias": x.shape[0] * out_spatial}[name]
    if op.startswith("conv"):
        w = arr["weight"]  # (C_out, C_in/groups, *k)
        taps = math.prod(w.shape[2:])
        fold = 3 ** ndim if p.get("padding_mode", "zeros") != "zeros" else 1
        return {"output": w.shape[1] * taps + 1,
                "grad_input": w.shape[0] // groups * taps * fold,
                "grad_weight": x.shape[0] * out_spatial,
                "grad_bias": x.shape[0] * out_spatial}[name]
    if op.startswith(("adaptive", "global")):
        out = arr["output"].shape[2:]
        window = math.prod(-(-n // o) + 1 for n, o in zip(x.shape[2:], out))
        return window if name == "output" else math.prod(max(1, -(-o // n) + 1)
                                                         for n, o in zip(x.shape[2:], out))
    kernel = math.prod(_spatial(p["kernel_size"], ndim))
    return kernel + (4 if op.startswith("lp") else 1)


def assert_close(got, want, *, k: int, dtype: str, what: str, exact: bool = False):
    assert got is not None, f"{what}: got None"
    got = np.asarray(got)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, expected {want.dtype}"
    g, w = got.astype(np.float64), want.astype(np.float64)
    finite = np.isfinite(w)
    with np.errstate(invalid="ignore"):  # inf - inf: an expected infinity, checked below
        err = np.abs(g - w)
    if exact:
        tol = np.zeros_like(w)
    else:
        scale = float(np.max(np.abs(w[finite]))) if finite.any() else 0.0
        tol = np.where(finite, COEFF[dtype] * math.sqrt(k) * (np.abs(w) + scale), 0.0)
    # an expected NaN or infinity must be met exactly; any other NaN is bad
    bad = ~((finite & (err <= tol)) | (g == w) | (np.isnan(g) & np.isnan(w)))
    if bad.any():
        i = tuple(int(v) for v in np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {w.size} values off; first at index {i}: got "
            f"{float(g[i])!r}, expected {float(w[i])!r}, error {err[i]:.3g} > tolerance "
            f"{tol[i]:.3g} (K={k}); worst error {float(np.max(err, initial=0, where=finite)):.3g}")


def assert_indices_equal(got, want, what: str):
    assert got is not None and got.dtype == np.int64, \
        f"{what}: indices must be int64, got {getattr(got, 'dtype', None)}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    if not np.array_equal(got, want):
        i = tuple(int(v) for v in np.argwhere(got != want)[0])
        raise AssertionError(f"{what}: {int((got != want).sum())} of {want.size} indices "
                             f"differ; first at {i}: got {int(got[i])}, expected {int(want[i])}")


# --------------------------------------------------------------------------- the table
@functools.cache
def _host_library():
    return harness.build()


@pytest.fixture
def host_cupy(backend, monkeypatch):
    """For "cupy-host": the cupy backend, with the emulation's executor in place of CuPy."""
    if backend == "cupy-host":
        from gpuconv.backends import _LOADED, TAKES, cupy_backend
        monkeypatch.setattr(cupy_backend, "_EXECUTOR", harness.HostExecutor(_host_library()))
        monkeypatch.setitem(_LOADED, "cupy", cupy_backend)
        monkeypatch.setitem(TAKES, "cupy", ("numpy",))  # the emulation's device memory


@pytest.fixture(autouse=True)
def reference_kernels(request, monkeypatch):
    """For "reference": gpuconv.functional's validation, then the reference module's kernels."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("backend") == "reference":
        from gpuconv.backends import _LOADED, reference
        monkeypatch.setitem(_LOADED, "numpy", reference)


def test_goldens_exist():
    assert len(CASES) > 100, "no golden files: run `python -m oracle generate`"
    ops = {c.op for c in CASES}
    assert {op for op in F.__all__ if not op.endswith("_backward")} <= ops, \
        "every forward op of gpuconv.functional needs golden cases"
    assert {c.dtype for c in CASES} == {"float32", "float64"}


@pytest.mark.parametrize("case,backend", TABLE)
def test_golden(case: Case, backend: str, host_cupy):
    got = run_case(case, backend)
    expected = [k for k in ("output", "indices", "grad_input", "grad_weight", "grad_bias")
                if k in case.arrays]
    assert sorted(got) == sorted(expected)
    for name in expected:
        want = case.arrays[name]
        what = f"{case.name} [{backend}] {name}"
        if name == "indices":
            assert_indices_equal(got[name], want, what)
            continue
        exact = name == "output" and case.op in MAX_OPS
        assert_close(got[name], want, k=reduction_length(case, name), dtype=case.dtype,
                     what=what, exact=exact)


# --------------------------------------------------------------------------- the slides
@pytest.mark.parametrize("case,backend", SLIDE_TABLE)
def test_slide_printed_numbers(case: Case, backend: str, host_cupy):
    """gpuconv reproduces every legible number the slides print (documented
    disagreements: gpuconv gives the maths, not the misprint)."""
    got = run_case(case, backend)
    tol = case.meta.get("printed_tol", {"rtol": 0.0, "atol": 0.0})
    disagreements = {(d["array"], tuple(d["index"])): d
                     for d in case.meta.get("printed_disagreements", [])}
    for name, printed in case.printed().items():
        # the slides print float32 numbers in decimal: read them in the case's dtype
        printed = printed.astype(case.dtype).astype(np.float64)
        value = got[name].astype(np.float64)
        assert value.shape == printed.shape, f"{case.name}: {name} shape {value.shape}"
        for index in zip(*np.nonzero(np.isfinite(printed))):
            index = tuple(int(i) for i in index)
            d = disagreements.get((name, index))
            want = d["computed"] if d else printed[index]
            assert abs(value[index] - want) <= tol["atol"] + tol["rtol"] * abs(want), (
                f"{case.name} [{backend}] {name}{index}: gpuconv {value[index]!r}, slides "
                f"{'(corrected) ' if d else ''}{want!r}")
    for name, shape in case.meta.get("printed_shapes", {}).items():
        array = got.get(name, case.arrays.get(name))
        assert list(array.shape) == shape, f"{case.name}: {name} shape {array.shape} != {shape}"


def test_slide_disagreements_are_documented():
    """Every documented disagreement is also explained in the case's note."""
    found = 0
    for case in CASES:
        for d in case.meta.get("printed_disagreements", []):
            found += 1
            printed = case.printed()[d["array"]][tuple(d["index"])]
            assert printed == d["printed"] and printed != d["computed"]
            assert str(d["printed"]) in case.note and str(d["computed"]) in case.note
    assert found >= 1  # slide (a): O[1][1,1] printed -3.1, the maths gives 3.1


def _case(name: str) -> Case:
    matches = [c for c in CASES if c.name == name]
    assert matches, f"golden case {name} missing: run `python -m oracle generate`"
    return matches[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_slide_transposed_conv_is_conv_backward(backend, host_cupy):
    """Slide 'Deconvolution': conv_transpose2d(r, W, stride 2) equals the grad-input of the
    stride-2 convolution with upstream gradient r, and both print the same 5x5."""
    conv = _case("slide_g_conv2d_stride2_5x5_f32")
    deconv = _case("slide_g_conv_transpose2d_stride2_f32")
    assert deconv.meta["same_as"] == {"output": [conv.name, "grad_input"],
                                      "input": [conv.name, "grad_out"]}
    np.testing.assert_array_equal(deconv.arrays["input"], conv.arrays["grad_out"])
    forward_t = run_case(deconv, backend)["output"]
    backward_c = run_case(conv, backend)["grad_input"]
    assert_close(forward_t, backward_c, k=9, dtype="float32",
                 what="conv_transpose2d(r) vs conv2d_backward(r)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_slide_one_d_literals(backend, host_cupy):
    """I = 1 2 3 4, W = 1 2 3: correlation 14 20, true convolution 10 16; with dL/dO = 1 2,
    dL/dW = 5 8 11 and dL/dI = 1 4 7 6."""
    I = to_backend(backend, np.array([[[1.0, 2, 3, 4]]]))
    W = to_backend(backend, np.array([[[1.0, 2, 3]]]))
    LO = to_backend(backend, np.array([[[1.0, 2]]]))
    assert to_numpy(F.conv1d(I, W, backend=api_name(backend))).ravel().tolist() == [14, 20]
    assert to_numpy(F.conv1d(I, W, flip=True, backend=api_name(backend))).ravel().tolist() == [10, 16]
    gx, gw, _ = F.conv1d_backward(LO, I, W, output_mask=(True, True, False), backend=api_name(backend))
    assert to_numpy(gw).ravel().tolist() == [5, 8, 11]
    assert to_numpy(gx).ravel().tolist() == [1, 4, 7, 6]


@pytest.mark.parametrize("backend", BACKENDS)
def test_slide_max_pool_routing(backend, host_cupy):
    """4x4 -> 2x2 max pooling: the all-ones gradient lands on the four maxima."""
    case = _case("slide_h_max_pool2d_f32")
    x = to_backend(backend, case.arrays["input"])
    m, idx = F.max_pool2d(x, 2, 2, return_indices=True, backend=api_name(backend))
    ones = to_backend(backend, np.ones((1, 1, 2, 2), np.float32))
    g = to_numpy(F.max_pool2d_backward(ones, x, idx, 2, 2, backend=api_name(backend)))[0, 0]
    assert np.argwhere(g == 1).tolist() == [[0, 1], [0, 2], [2, 0], [3, 3]]
    assert g.sum() == 4
    np.testing.assert_array_equal(to_numpy(m)[0, 0], np.array(
        [[1.1895669, 2.6777048], [0.53753567, -0.19861951]], np.float32))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate"])
def test_a_tile_past_the_padded_input_reads_nothing(backend, mode, host_cupy):
    """A depthwise conv's staged tile spans the block's columns whether or not outputs exist
    there: on a 2-long input, circular padding wrapped its far columns a second time, past
    the input (the Numba simulator's IndexError; out of bounds on a GPU)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 4, 2)), rng.standard_normal((8, 1, 3))
    want = F.conv1d(x, w, padding=1, padding_mode=mode, groups=4)
    got = F.conv1d(to_backend(backend, x), to_backend(backend, w), padding=1,
                   padding_mode=mode, groups=4, backend=api_name(backend))
    assert_close(to_numpy(got), want, k=3, dtype="float64", what=f"{mode} on {backend}")


# conv_direct's two layouts (kernels/conv.cu): pixel and tap column steps 1 and +-1 make runs
# of pixels slide a window of input columns (segment); a dilation of 2 along the width spreads
# them out
DIRECT_LAYOUTS = {"segment": dict(padding=(1, 2)), "spread": dict(padding=(1, 2), dilation=(1, 2))}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("flipped", [False, True])
@pytest.mark.parametrize("layout", list(DIRECT_LAYOUTS))
def test_conv_direct_over_several_blocks(backend, flipped, layout, host_cupy):
    """Slices that write few channels run conv_direct on both GPU backends; here wider than
    one of its blocks (gpu_plan.DIRECT_PIXELS columns a thread): every pixel of a thread and
    the last block's partial columns (segment: runs of pixels cut by the row's end), forward
    (4 rows) and grad-input (3 rows), on inputs read through negative strides too (the CUDA
    kernel's offsets are signed)."""
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((2, 3, 23, 29)), rng.standard_normal((4, 3, 3, 5))
    kw = DIRECT_LAYOUTS[layout]
    spec = ConvSpec.make(2, (3, 5), **kw)
    out_hw = spec.output_shape(x.shape[2:], w.shape[2:])
    gy = rng.standard_normal((2, 4) + out_hw)
    pixels = 2 * out_hw[0] * out_hw[1]
    for simulator, block in ((False, 256), (True, gpu_plan.NUMBA_SIMULATOR_BLOCK)):
        forward, grad_input = (plan.launches[0] for plan in (
            gpu_plan.numba_conv_forward_plan(x.shape, w.shape, spec, "float64", False, simulator),
            gpu_plan.numba_conv_grad_input_plan(gy.shape, w.shape, spec, x.shape[2:], "float64",
                                                False, simulator)))
        assert (forward.kernel, grad_input.kernel) == ("conv_direct<4>", "conv_direct<3>")
        assert forward.grid[0] * block * gpu_plan.DIRECT_PIXELS > pixels > block * 4
    cuda = gpu_plan.conv_forward_plan(x.shape, gpu_plan.contiguous_strides(x.shape), w.shape,
                                      gpu_plan.contiguous_strides(w.shape), spec, "float64", False)
    assert cuda.launches[0].kernel == "conv_direct<double, 4>" and cuda.launches[0].grid[0] == 2

    def put(a):  # flipped: a view with negative strides where the backend's arrays allow it
        if not flipped:
            return to_backend(backend, a)
        if backend == "numba":  # device arrays: a copy (the Numba kernels take contiguous ones)
            return to_backend(backend, a[:, :, ::-1, ::-1])
        return to_backend(backend, a)[:, :, ::-1, ::-1]
    y = F.conv2d(put(x), to_backend(backend, w), **kw, backend=api_name(backend))
    gx = F.conv2d_backward(put(gy), put(x), to_backend(backend, w), **kw,
                           output_mask=(True, False, False), backend=api_name(backend))[0]
    if flipped:
        x, gy = x[:, :, ::-1, ::-1], gy[:, :, ::-1, ::-1]
    assert_close(to_numpy(y), F.conv2d(x, w, **kw), k=45, dtype="float64",
                 what=f"forward on {backend}")
    assert_close(to_numpy(gx), F.conv2d_backward(gy, x, w, **kw,
                                                 output_mask=(True, False, False))[0],
                 k=60, dtype="float64", what=f"grad-input on {backend}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_direct_chunks_cut_kernel_rows(backend, host_cupy):
    """conv_direct stages the weights of 512 reduction indices at a time: with 58 channels of
    3x3 taps (522 indices), the second chunk starts inside a kernel row, where the segment
    layout refills its window mid-row. Forward of one output channel and grad-input of one
    input channel, each reducing over the 58."""
    rng = np.random.default_rng(11)
    x, w = rng.standard_normal((1, 58, 5, 7)), rng.standard_normal((1, 58, 3, 3))
    gy, wt = rng.standard_normal((1, 58, 5, 7)), rng.standard_normal((58, 1, 3, 3))
    plans = (gpu_plan.numba_conv_forward_plan(x.shape, w.shape, ConvSpec.make(2, 3, padding=1),
                                              "float64", False),
             gpu_plan.numba_conv_grad_input_plan(gy.shape, wt.shape, ConvSpec.make(2, 3, padding=1),
                                                 (5, 7), "float64", False))
    assert [p.launches[0].kernel for p in plans] == ["conv_direct<1>"] * 2
    y = F.conv2d(to_backend(backend, x), to_backend(backend, w), padding=1,
                 backend=api_name(backend))
    gx = F.conv2d_backward(to_backend(backend, gy), to_backend(backend, x[:, :1]),
                           to_backend(backend, wt), padding=1, output_mask=(True, False, False),
                           backend=api_name(backend))[0]
    assert_close(to_numpy(y), F.conv2d(x, w, padding=1), k=522, dtype="float64",
                 what=f"forward on {backend}")
    assert_close(to_numpy(gx), F.conv2d_backward(gy, x[:, :1], wt, padding=1,
                                                 output_mask=(True, False, False))[0],
                 k=522, dtype="float64", what=f"grad-input on {backend}")
