"""Backend registry: which implementation runs an op, and why one cannot.

A backend is a module that provides the entries listed in ``KERNELS``: its 2-D kernels
(1-D ops run as 2-D ops over a height-1 image) and three helpers beside them.
``gpuconv.functional`` validates every argument before it calls one, so a backend receives
checked arrays of one dtype and a validated ``ConvSpec`` / ``PoolSpec``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import numpy as np

# every conv arithmetic: strict IEEE FP32/FP64 FMAs; TF32 tensor cores; 3xTF32 (FP32 accuracy
# on tensor cores)
PRECISIONS = ("ieee", "tf32", "tf32x3")

# What every backend module provides (signatures and maths in reference.py): the kernels,
# flip_kernel (functional.py's true convolution), from_foreign, its zero-copy view of
# another library's array, and checks_index_values (whether its max-pool backward refuses
# bad indices itself, or the caller must check them first); besides NAME, PRECISIONS (the
# part of PRECISIONS above it offers: "ieee", and "tf32", "tf32x3" on tensor cores) and
# LIFTS_1D: whether it takes a 1-D op's (N, C, L) arrays as they are and returns results of
# that rank (the GPU backends lift them to (N, C, 1, L) once, when they prepare a call
# signature: signature.lift), or gets them as (N, C, 1, L) views.
# max_pool2d_backward(grad_out, indices, input_hw, spec) receives the PoolSpec (None for
# adaptive max pooling, whose windows follow from input_hw and grad_out's shape), so a GPU
# backend finds each input element's candidate windows in closed form.
KERNELS = (
    "conv2d", "conv2d_grad_input", "conv2d_grad_weight", "conv2d_grad_bias", "conv2d_backward",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d",
    "lp_pool2d", "lp_pool2d_backward", "flip_kernel", "from_foreign", "checks_index_values",
)


def conv_backward(ops, grad_out, x, weight, spec, output_mask, precision: str = "ieee",
                  transposed: bool = False):
    """(dx, dW, db) of a convolution (``transposed``: of a transposed convolution) from
    ``ops``' conv kernels; a gradient that ``output_mask`` leaves out is None. Each backend's
    ``conv2d_backward`` is this over its kernels (a GPU backend's ``ops`` plan the three into
    one prepared call). The duality (the slides' backward):

        conv        dx = conv2d_grad_input(dy, W)       dW = conv2d_grad_weight(dy, x)
        transposed  dx = conv2d(dy, W)                  dW = conv2d_grad_weight(x, dy)
        both        db = conv2d_grad_bias(dy)

    A transposed conv's dx may be one row or column longer than x (``output_padding`` >=
    stride): the caller crops it."""
    kernel_hw = tuple(weight.shape[2:])
    grad_x = grad_w = grad_b = None
    if output_mask[0]:
        grad_x = (ops.conv2d(grad_out, weight, None, spec, precision) if transposed else
                  ops.conv2d_grad_input(grad_out, weight, spec, tuple(x.shape[2:]), None,
                                        precision))
    if output_mask[1]:
        grad_w = (ops.conv2d_grad_weight(x, grad_out, spec, kernel_hw, precision) if transposed
                  else ops.conv2d_grad_weight(grad_out, x, spec, kernel_hw, precision))
    if output_mask[2]:
        grad_b = ops.conv2d_grad_bias(grad_out)
    return grad_x, grad_w, grad_b


# Backend name -> the array library whose arrays it takes and returns.
ARRAY_LIBRARY = {"numpy": "numpy", "cupy": "cupy", "numba": "numba"}
BACKENDS = tuple(ARRAY_LIBRARY)
# Backend name -> the array libraries it takes (Numba copies NumPy arrays to the device and
# back), and where another library's arrays must live for it.
TAKES = {"numpy": ("numpy",), "cupy": ("cupy",), "numba": ("numba", "cupy", "numpy")}
TAKES_FOREIGN_ON = {"numpy": ("cpu",), "cupy": ("cuda",), "numba": ("cpu", "cuda")}
CUDA_BACKENDS = ("cupy", "numba")  # in the order a CUDA array of another library tries them


class BackendUnavailableError(RuntimeError):
    """A known backend cannot run here (library missing, no CUDA device, ...)."""


class BadPoolIndex(ValueError):
    """A max-pool backward index that names no tap of its output's window (``output``: its
    (n, c, oh, ow)), met by a backend's scatter (which writes nothing past it) or by the
    caller's check; the op reports it as its own ``ValueError``."""

    WINDOW_RULE = "indices must name a tap of their output's pooling window, as max pooling " \
                  "returns them"

    def __init__(self, plane_size: int, index: int, output: tuple):
        if 0 <= index < plane_size:
            super().__init__(f"{self.WINDOW_RULE}; output {output}'s index {index} is outside "
                             f"its window")
        else:
            super().__init__(f"{self.plane_rule(plane_size)}; got {index}")
        self.plane_size, self.index, self.output = plane_size, index, output

    @staticmethod
    def plane_rule(plane_size: int) -> str:
        return f"indices must lie in [0, {plane_size}), the flat positions of an input plane"

    @classmethod
    def device_message(cls, word: int) -> str:
        """What a GPU kernel's error word says: H*W for an index outside the plane, -H*W for
        one inside it but outside its window."""
        rule = cls.plane_rule(word) if word > 0 else cls.WINDOW_RULE
        return f"{rule}: max-pool backward met an index that breaks it on the device"

    @classmethod
    def at(cls, indices, position: int, plane_size: int) -> "BadPoolIndex":
        """The error for ``indices``' element at flat ``position``."""
        output = tuple(map(int, np.unravel_index(position, indices.shape)))
        return cls(plane_size, int(indices.reshape(-1)[position]), output)


def _probe_cuda_library(module: str) -> str | None:
    """Why the CUDA backend built on ``module`` cannot run here, or None if it could."""
    try:
        lib = importlib.import_module(module)
        if module == "numba":  # numba.cuda is a subpackage that `import numba` does not load
            importlib.import_module("numba.cuda")
    except ImportError:
        return f"{module} is not installed (pip install 'gpuconv[cuda]')"
    try:
        if module == "cupy":
            count = lib.cuda.runtime.getDeviceCount()
        else:  # the CUDA simulator (NUMBA_ENABLE_CUDASIM=1) counts as one device
            count = len(lib.cuda.gpus) if lib.cuda.is_available() else 0
    except Exception as exc:  # a missing driver raises library-specific errors
        return f"no CUDA device ({type(exc).__name__}: {exc})"
    if count == 0:
        return "no CUDA device"
    if module == "numba" and not lib.config.ENABLE_CUDASIM:
        return _numba_compiler_problem()
    return None


def _numba_compiler_problem() -> str | None:
    """Why numba-cuda's compiler cannot load here, or None. numba-cuda 0.30 registers an
    overload of ``np.row_stack``, which NumPy 2.5 removed: its first kernel compilation then
    fails deep inside numba (NVIDIA/numba-cuda#907, not to be fixed there)."""
    try:
        importlib.import_module("numba.cuda.np.arrayobj")
    except AttributeError as exc:
        import numpy
        return (f"numba-cuda cannot compile kernels with NumPy {numpy.__version__} ({exc}; "
                "NVIDIA/numba-cuda#907): install numpy<2.5")
    return None


def unavailable_reason(name: str) -> str | None:
    """Why backend ``name`` cannot run here, or None when it can."""
    if name not in ARRAY_LIBRARY:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    if name == "numpy":
        return None
    reason = _probe_cuda_library(ARRAY_LIBRARY[name])
    if reason is not None:
        return reason
    try:
        importlib.import_module(f"gpuconv.backends.{name}_backend")
    except ImportError as exc:  # a dependency of the backend module is missing or broken
        return f"gpuconv.backends.{name}_backend cannot be imported ({exc})"
    return None


def get_backend(name: str) -> ModuleType:
    """The backend module ``name``; a clear error when it is unknown or cannot run here."""
    module = _LOADED.get(name)
    if module is not None:
        return module
    reason = unavailable_reason(name)
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} is unavailable: {reason}")
    module = importlib.import_module(f"gpuconv.backends.{name}_backend")
    _LOADED[name] = module
    return module


# GPUCONV_DEBUG=1: ops that flag bad input on the device (max-pool backward's indices) wait
# for the device and raise at once, as the NumPy backend does.
DEBUG = os.environ.get("GPUCONV_DEBUG", "") == "1"


def check_errors() -> None:
    """Raise the bad input that GPU kernels flagged since the last check, and clear the flags.

    GPU ops never wait for the device to validate values: max-pool backward on CuPy or Numba
    device arrays checks its indices in the kernel and only flags one that names no tap of
    its output's window (its gradient is dropped, or added where it points). Call this where
    a wait is fine (after an epoch, in a test), or set ``GPUCONV_DEBUG=1`` to check after
    every such op. It reads each backend's error word on the host, so it waits for the work
    queued on the current stream."""
    for module in list(_LOADED.values()):
        take_errors = getattr(module, "take_errors", None)
        for word in (take_errors() if take_errors is not None else ()):
            raise ValueError(BadPoolIndex.device_message(word))


def kernel_flipped(weight):
    """``weight`` (O, C/G, kH, kW), or a 1-D op's (O, C/G, K), with its kernel axes reversed
    (a view): true convolution is correlation with it."""
    return weight[(slice(None),) * 2 + (slice(None, None, -1),) * (weight.ndim - 2)]


def array_library(array) -> str:
    """The library that made ``array``: "numpy" (a subclass of NumPy's array too), "cupy",
    "numba", "torch", "jax", ..."""
    if isinstance(array, np.ndarray):
        return "numpy"
    return type(array).__module__.partition(".")[0]


_BACKEND_LIBRARIES = frozenset(ARRAY_LIBRARY.values())


def is_foreign_array(array) -> bool:
    """Whether ``array`` comes from a library no backend takes as it is, yet can be shared
    without a copy (DLPack, or the CUDA array interface); a subclass of NumPy's array is
    shared as a plain one (but a masked array, which the ops refuse)."""
    if isinstance(array, np.ndarray):
        return type(array) is not np.ndarray and not isinstance(array, np.ma.MaskedArray)
    return array_library(array) not in _BACKEND_LIBRARIES and (
        hasattr(array, "__dlpack__") or hasattr(array, "__cuda_array_interface__"))


def foreign_device(array) -> str:
    """Where a foreign array's memory lives: "cpu" or "cuda"."""
    if hasattr(array, "__dlpack_device__"):
        try:
            kind, _ = array.__dlpack_device__()
        except (ValueError, RuntimeError, BufferError) as exc:  # (PyTorch's meta device)
            raise TypeError(f"{type(array).__name__} arrays on a device DLPack cannot name "
                            f"are not supported ({exc}): gpuconv runs on the CPU and on CUDA "
                            "devices") from None
        device = {1: "cpu", 2: "cuda"}.get(int(kind))  # DLPack's kDLCPU, kDLCUDA
        if device is None:
            raise TypeError(f"{type(array).__name__} arrays on DLPack device type {int(kind)} "
                            f"are not supported: gpuconv runs on the CPU and on CUDA devices")
        return device
    return "cuda"  # only the CUDA array interface


def backend_for_array(array) -> str:
    """The default backend for an array: the one whose array library made it; for another
    library's array, NumPy in host memory and the first CUDA backend that runs here on a
    CUDA device."""
    library = array_library(array)
    for name, lib in ARRAY_LIBRARY.items():
        if lib == library:
            return name
    if not is_foreign_array(array):
        raise TypeError(f"expected an array (numpy, cupy, numba, or one with __dlpack__ or "
                        f"__cuda_array_interface__), got {type(array).__name__}")
    if foreign_device(array) == "cpu":
        return "numpy"
    reasons = {name: unavailable_reason(name) for name in CUDA_BACKENDS}
    for name, reason in reasons.items():
        if reason is None:
            return name
    raise BackendUnavailableError(f"no CUDA backend can run the {library} array: " + "; ".join(
        f"{name}: {reason}" for name, reason in reasons.items()))


def check_backend_takes(backend: str, array) -> None:
    """A TypeError unless backend ``backend`` takes ``array`` (see ``TAKES``)."""
    if backend not in ARRAY_LIBRARY:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    library = array_library(array)
    if not is_foreign_array(array):
        if library not in TAKES[backend]:
            raise TypeError(f"backend {backend!r} takes {' or '.join(TAKES[backend])} arrays, "
                            f"got {library} arrays; use backend={backend_for_array(array)!r} "
                            f"or move them")
        return
    device = foreign_device(array)
    if device not in TAKES_FOREIGN_ON[backend]:
        where, fit = (("in host memory", "'numpy'") if device == "cpu"
                      else ("on a CUDA device", "'cupy' or 'numba'"))
        raise TypeError(f"backend {backend!r} cannot take {library} arrays {where}; use "
                        f"backend={fit} or move them")


_LOADED: dict[str, ModuleType] = {}
