"""Where a model lives: its array library (NumPy on the CPU, CuPy on the GPU), the
backend its conv and pooling ops run on, and its random streams."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from gpuconv.backends import BACKENDS, CUDA_BACKENDS, BackendUnavailableError, unavailable_reason

DEVICES = ("auto", "cpu", "cuda")
# Backends that can run each device's arrays; the first is the default.
DEVICE_BACKENDS = {"cpu": ("numpy",), "cuda": CUDA_BACKENDS}


@dataclass(frozen=True)
class Device:
    """``kind`` "cpu" or "cuda"; ``backend`` runs the conv and pooling ops on ``xp`` arrays."""

    kind: str
    backend: str

    @property
    def xp(self) -> ModuleType:
        return np if self.kind == "cpu" else importlib.import_module("cupy")

    def asarray(self, array, dtype=None):
        """``array`` (host or device) on this device, C-contiguous: parameters, buffers and
        optimiser slots are updated in place through flat views of them."""
        array = self.xp.asarray(array, dtype=dtype)
        return array if array.flags.c_contiguous else self.xp.ascontiguousarray(array)

    def copy(self, array, dtype=None):
        """A C-contiguous copy of ``array`` on this device that nothing else holds: a model's
        parameters and buffers, updated in place, never share memory with the caller's arrays
        or another model's."""
        return self.xp.array(array, dtype=dtype, order="C", copy=True)

    @property
    def layer_kernels(self) -> ModuleType | None:
        """The fused layer kernels (batch norm, softmax cross-entropy, dropout, the backward of
        a conv's fused ReLU: ``gpuconv.backends.cupy_layers``) on "cuda"; None on "cpu", where
        the layers' own array maths runs (the NumPy path the kernels are checked against)."""
        if self.kind == "cpu":
            return None
        return importlib.import_module("gpuconv.backends.cupy_layers")

    def rng(self, *seed: int) -> "DeviceRandom":
        """A random stream fully determined by ``seed`` (e.g. the run's seed and the epoch)."""
        return DeviceRandom(self, seed)

    def describe(self) -> str:
        if self.kind == "cpu":
            return f"cpu (backend {self.backend})"
        cupy = self.xp
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        return f"cuda:{cupy.cuda.Device().id} {props['name'].decode()} (backend {self.backend})"


def array_module(array) -> ModuleType:
    """NumPy for a host array, CuPy for a device array: the library to make its peers with."""
    return np if isinstance(array, np.ndarray) else importlib.import_module("cupy")


def layer_kernels_for(array) -> ModuleType | None:
    """The fused kernels of ``array``'s device (``Device.layer_kernels``): None for a host
    array, whose layers and optimisers run their own array maths."""
    return None if isinstance(array, np.ndarray) else Device("cuda", "cupy").layer_kernels


def to_host(array) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    return array.get() if hasattr(array, "get") and not isinstance(array, np.ndarray) else \
        np.asarray(array)


def resolve_device(device: str = "auto", backend: str | None = None) -> Device:
    """The device ``device`` ("auto", "cpu" or "cuda") with ``backend`` (default: the
    device's first); "auto" is "cuda" when its backend can run here. A clear error says
    what is missing when the choice cannot run."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if device == "auto":
        cuda_backend = backend if backend in DEVICE_BACKENDS["cuda"] else "cupy"
        cuda_ok = backend != "numpy" and unavailable_reason(cuda_backend) is None \
            and unavailable_reason("cupy") is None
        device = "cuda" if cuda_ok else "cpu"
    allowed = DEVICE_BACKENDS[device]
    backend = backend or allowed[0]
    if backend not in allowed:
        raise ValueError(f"backend {backend!r} cannot run on device {device!r}; "
                         f"use one of {allowed}")
    if device == "cuda":
        # the model's arrays are CuPy arrays whichever backend runs the kernels
        for needed in dict.fromkeys(("cupy", backend)):
            reason = unavailable_reason(needed)
            if reason is not None:
                raise BackendUnavailableError(
                    f"device 'cuda' needs the {needed} backend, which is unavailable: {reason}")
    return Device(device, backend)


class DeviceRandom:
    """Uniform draws, integers and permutations on the device, from a seed sequence, so a
    run's randomness is a function of (seed, epoch) and resuming repeats it exactly."""

    def __init__(self, device: Device, seed: tuple[int, ...]):
        self._xp = device.xp
        state = np.random.SeedSequence(list(seed)).generate_state(1)[0]
        if device.kind == "cpu":
            self._gen = np.random.default_rng(int(state))
        else:
            self._gen = self._xp.random.RandomState(int(state))

    def uniform(self, shape, dtype):
        if isinstance(self._gen, np.random.Generator):
            return self._gen.random(shape, dtype=dtype)
        return self._gen.random_sample(shape, dtype=dtype)

    def integers(self, high: int, shape):
        if isinstance(self._gen, np.random.Generator):
            return self._gen.integers(0, high, shape)
        return self._gen.randint(0, high, shape)

    def permutation(self, n: int):
        return self._gen.permutation(n)

    def counter_seed(self) -> tuple[object, int]:
        """(seed, stream) of a counter-based draw (``nn.counter_rng``): a fresh device int64
        [key, 0] from this stream, and stream 0."""
        seed = self._xp.zeros(2, dtype=self._xp.int64)
        seed[0] = self.integers(1 << 62, ())
        return seed, 0
