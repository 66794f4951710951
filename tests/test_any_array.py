"""Any array in: another library's array (PyTorch here, and a minimal DLPack library) reaches
the backend through DLPack without a copy and the results come back in its type; a mismatched
array and ``backend=`` is a TypeError for every backend; the backend contract is complete."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

import gpuconv.functional as F
from gpuconv import backends
from gpuconv.backends import numpy_backend

torch = pytest.importorskip("torch")
TF = torch.nn.functional


class HostArray:
    """A minimal array library of its own: a NumPy buffer shown only through DLPack and the
    array API's ``__array_namespace__`` (as JAX or a future library would)."""

    def __init__(self, data):
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim

    def __dlpack__(self, **kwargs):
        return self._data.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._data.__dlpack_device__()

    def __array_namespace__(self):
        return HostNamespace


class HostNamespace:
    @staticmethod
    def from_dlpack(array):
        return HostArray(np.from_dlpack(array))


HostArray.__module__ = HostNamespace.__module__ = "hostarray"  # a library no backend takes


class CudaArray:
    """A foreign array in CUDA memory, as far as the dispatch can tell."""
    __module__ = "cudalib"
    __cuda_array_interface__ = {"shape": (1, 1, 2, 2), "typestr": "<f4", "data": (0, False),
                                "version": 3}

    def __dlpack_device__(self):
        return (2, 0)  # kDLCUDA, device 0


def _data_pointer(array) -> int:
    return array.__array_interface__["data"][0]


# op -> (positional arrays as shapes, keyword arguments); float64 arrays, int64 "indices"
# (adaptive max pooling's of the input)
OPS = {
    "conv2d": (((2, 3, 6, 5), (4, 3, 3, 3), (4,)), dict(padding=1)),
    "conv1d_backward": (((2, 4, 6), (2, 3, 6), (4, 3, 3)), dict(padding=1)),
    "conv_transpose2d": (((2, 3, 4, 4), (3, 2, 3, 3)), dict(stride=2)),
    "max_pool2d": (((2, 3, 6, 6),), dict(kernel_size=2, return_indices=True)),
    "avg_pool1d_backward": (((2, 3, 3), (2, 3, 6)), dict(kernel_size=2)),
    "adaptive_max_pool2d_backward": (((2, 3, 2, 2), (2, 3, 5, 5), "indices"),
                                     dict(output_size=2)),
    "lp_pool2d": (((2, 3, 6, 6),), dict(norm_type=2.0, kernel_size=2)),
}


def _numpy_args(op, seed=0):
    shapes, kw = OPS[op]
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal(s) for s in shapes if s != "indices"]
    if "indices" in shapes:  # the forward's own: each names a tap of its output's window
        args.append(F.adaptive_max_pool2d(args[1], kw["output_size"], return_indices=True,
                                          backend="numpy")[1])
    return args, kw


def _as_list(result):
    return list(result) if isinstance(result, tuple) else [result]


@pytest.mark.parametrize("library, backend", [("torch", "numpy"), ("hostarray", "numpy"),
                                              ("torch", "numba")])
@pytest.mark.parametrize("op", sorted(OPS))
def test_foreign_arrays_in_give_their_type_out(op, library, backend):
    args, kw = _numpy_args(op)
    wrap = torch.from_numpy if library == "torch" else HostArray
    expected = _as_list(getattr(F, op)(*args, **kw, backend=backend))
    got = _as_list(getattr(F, op)(*map(wrap, args), **kw, backend=backend))
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        if e is None:
            assert g is None
            continue
        assert type(g) is (torch.Tensor if library == "torch" else HostArray)
        assert tuple(g.shape) == e.shape
        np.testing.assert_array_equal(np.from_dlpack(g), e)


def test_torch_tensors_reach_the_numpy_backend_and_come_back_without_a_copy(monkeypatch):
    seen = {}
    real_conv2d = numpy_backend.conv2d

    def spy(x, weight, bias, spec, *options):
        seen["x"] = _data_pointer(x)
        seen["y"] = real_conv2d(x, weight, bias, spec, *options)
        return seen["y"]
    monkeypatch.setattr(numpy_backend, "conv2d", spy)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    y = F.conv2d(x, torch.randn(4, 3, 3, 3, dtype=torch.float64))
    assert seen["x"] == x.data_ptr()
    assert y.data_ptr() == _data_pointer(seen["y"])


@pytest.mark.parametrize("layout", ["strided", "transposed", "expanded"])
def test_torch_views_of_any_strides_match_torch(layout):
    base = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    x = {"strided": base[:, :, ::2, 1::2], "transposed": base.transpose(2, 3),
         "expanded": base[:1].expand(3, -1, -1, -1)}[layout]
    w = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(F.conv2d(x, w, stride=1), TF.conv2d(x, w), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(F.max_pool2d(x, 2), TF.max_pool2d(x, 2), rtol=0, atol=0)


@pytest.mark.parametrize("make, message", [
    (lambda: torch.ones(1, 1, 3, 3, dtype=torch.float16), "dtype float32 or float64, got float16"),
    (lambda: torch.ones(1, 1, 3, 3, dtype=torch.int64), "dtype float32 or float64, got int64"),
    (lambda: torch.ones(1, 1, 3, 3, requires_grad=True), "gpuconv.torch"),
    (lambda: torch.empty(1, 1, 3, 3, device="meta"), "on a device DLPack cannot name"),
])
def test_torch_tensors_gpuconv_cannot_take_are_refused_clearly(make, message):
    with pytest.raises(TypeError, match=message):
        F.max_pool2d(make(), 2)


def test_mixed_array_libraries_are_refused():
    with pytest.raises(TypeError, match=r"one array library, got \['numpy', 'torch'\]"):
        F.conv2d(torch.ones(1, 1, 3, 3, dtype=torch.float64), np.ones((1, 1, 2, 2)))


_RNG = np.random.default_rng(143)
_X, _W = _RNG.standard_normal((1, 2, 5, 5)), _RNG.standard_normal((3, 2, 2, 2))
# calls with arrays of NumPy and of Numba: Numba's backend takes both (it copies NumPy arrays to
# the device), which must not let the mix through
_NUMPY_AND_NUMBA = {
    "numpy input, numba weight": lambda dev: F.conv2d(_X, dev(_W)),
    "numba input, numpy weight": lambda dev: F.conv2d(dev(_X), _W),
    "numpy input, numba weight, on numba": lambda dev: F.conv2d(_X, dev(_W), backend="numba"),
    "numba grad_out, numpy input": lambda dev: F.avg_pool2d_backward(
        dev(np.ones((1, 2, 2, 2))), _X, 2),
}


@pytest.mark.parametrize("case", list(_NUMPY_AND_NUMBA))
def test_numpy_and_numba_arrays_in_one_call_are_refused(case):
    cuda = pytest.importorskip("numba.cuda")
    if not cuda.is_available():  # (the simulator counts as a device)
        pytest.skip("Numba has no CUDA device to put arrays on")
    with pytest.raises(TypeError, match=r"one array library, got \['numba', 'numpy'\]"):
        _NUMPY_AND_NUMBA[case](cuda.to_device)


class _Tagged(np.ndarray):
    """A NumPy array subclass of a user's (as astropy's or xarray's are)."""


def test_numpy_subclasses_are_numpy_arrays_and_masked_ones_stay_refused():
    """A subclass goes in as a plain NumPy array, beside plain ones (it was refused as
    another library's); a masked array is a subclass whose mask no op honours."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3))
    y = F.conv2d(x.view(_Tagged), w, padding=1)
    assert type(y) is np.ndarray
    np.testing.assert_array_equal(y, F.conv2d(x, w, padding=1))
    np.testing.assert_array_equal(F.max_pool2d(x.view(_Tagged), 2), F.max_pool2d(x, 2))
    with pytest.raises(TypeError, match="input is a masked array"):
        F.conv2d(np.ma.masked_array(x), w)


def _cupy_like():
    return type("ndarray", (), {"__module__": "cupy._core.core"})()


# (backend, array factory, takes it)
TAKES = [
    ("numpy", lambda: np.ones(2), True),
    ("numpy", lambda: torch.ones(2), True),
    ("numpy", _cupy_like, False),
    ("numpy", CudaArray, False),
    ("cupy", lambda: np.ones(2), False),
    ("cupy", lambda: torch.ones(2), False),
    ("cupy", _cupy_like, True),
    ("cupy", CudaArray, True),
    ("numba", lambda: np.ones(2), True),
    ("numba", lambda: torch.ones(2), True),
    ("numba", _cupy_like, True),
    ("numba", CudaArray, True),
]


@pytest.mark.parametrize("backend, make, takes", TAKES)
def test_every_backend_refuses_arrays_it_cannot_take(backend, make, takes):
    if takes:
        backends.check_backend_takes(backend, make())
    else:
        with pytest.raises(TypeError, match=f"backend '{backend}' (takes|cannot take)"):
            backends.check_backend_takes(backend, make())


def test_a_mismatched_backend_is_a_type_error_before_any_kernel(monkeypatch):
    """With a CuPy backend that loads (a stand-in here), NumPy and host PyTorch arrays are a
    TypeError naming the backend and the fitting one, not a crash in its pointer code."""
    monkeypatch.setitem(backends._LOADED, "cupy", numpy_backend)
    for x in (np.ones((1, 1, 4, 4)), torch.ones(1, 1, 4, 4, dtype=torch.float64)):
        with pytest.raises(TypeError, match="backend 'cupy' .*use backend='numpy'"):
            F.avg_pool2d(x, 2, backend="cupy")


def test_cuda_arrays_of_other_libraries_go_to_a_cuda_backend(monkeypatch):
    monkeypatch.setattr(backends, "unavailable_reason",
                        lambda name: None if name == "numba" else "no CUDA device")
    assert backends.backend_for_array(CudaArray()) == "numba"
    monkeypatch.setattr(backends, "unavailable_reason", lambda name: "no CUDA device")
    with pytest.raises(backends.BackendUnavailableError, match="no CUDA backend .*cudalib"):
        backends.backend_for_array(CudaArray())
    assert backends.backend_for_array(torch.ones(1)) == "numpy"


@pytest.mark.parametrize("name", backends.BACKENDS)
def test_every_backend_names_itself(name):
    module = importlib.import_module(f"gpuconv.backends.{name}_backend")
    assert module.NAME == name


def test_functional_has_no_backend_name_branches():
    from pathlib import Path
    source = Path(F.__file__).read_text()
    for name in backends.CUDA_BACKENDS:
        assert f'== "{name}"' not in source and f"== '{name}'" not in source
    assert "__name__" not in source.replace("type(indices).__name__", "")
