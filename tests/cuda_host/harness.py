"""Run the CuPy backend's CUDA C kernels on the CPU.

``build()`` compiles ``cuda_source.module_source()``'s code (the very translation unit the runtime
hands to NVRTC) with g++ against ``cuda_shim.h``, plus one ``extern "C"`` launcher per name
expression of ``gpu_plan.kernel_names()`` and ``gpu_plan.wgmma_kernel_names()``, into a shared
library cached under
``$XDG_CACHE_HOME/gpuconv/cuda_host`` by a hash of its source. ``HostExecutor`` stands in for
``cupy_backend.CupyExecutor``: NumPy arrays, launches through ctypes, so the backend's own
functions, plans and parameter packing run unchanged; its elementwise kernels
(``ElementwiseKernel``, cupy.ElementwiseKernel's stand-in) are g++-compiled loops too.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import math
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from gpuconv.backends import autotune, cuda_source, gpu_plan

SHIM = Path(__file__).with_name("cuda_shim.h")
FLAGS = ["-std=c++20", "-O1", "-pthread", "-shared", "-fPIC", "-w"]
# GPUCONV_HOST_ASAN=1: the kernels built with AddressSanitizer, so that a read or write past a
# buffer is reported with the kernel (`make check-memory` preloads libasan into the tests),
# and with UndefinedBehaviorSanitizer's alignment check, fatal: a vector access (float2,
# float4, Vec16) off its alignment, a "misaligned address" fault on a GPU, stops the run
SANITIZE = ["-g", "-fsanitize=address,alignment", "-fno-sanitize-recover=alignment",
            "-fno-omit-frame-pointer"]


# GPUCONV_HOST_TSAN=1: built with ThreadSanitizer (`make check-races` preloads libtsan): each
# emulated thread is a TSan fiber that only __syncthreads orders against the others, so a
# shared-memory access that no barrier orders against another thread's is reported (a missing
# __syncthreads: a GPU race, which the emulation's one order of threads may not expose)
SANITIZE_THREADS = ["-g", "-fsanitize=thread", "-fno-omit-frame-pointer"]


def flags() -> list[str]:
    return (FLAGS + (SANITIZE if os.environ.get("GPUCONV_HOST_ASAN") == "1" else [])
            + (SANITIZE_THREADS if os.environ.get("GPUCONV_HOST_TSAN") == "1" else []))


def compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def emulated_names(source: str = "backend") -> list[str]:
    """The name expressions of ``cuda_source.SOURCES[source]``, the backend's with its wgmma
    module's (one translation unit: the CPU builds both)."""
    names = cuda_source.SOURCES[source]()[2]
    return names + gpu_plan.wgmma_kernel_names() if source == "backend" else names


def library_source(source: str = "backend") -> str:
    """``cuda_source.SOURCES[source]``'s kernels with a launcher ``launch_<i>`` for each of
    ``emulated_names(source)``, in their order."""
    code = cuda_source.SOURCES[source]()[0]
    names = emulated_names(source)
    lines = [f'#include "{SHIM}"', code]
    for i, name in enumerate(names):
        lines.append(f'extern "C" unsigned long launch_{i}(unsigned gx, unsigned gy, unsigned gz, '
                     f'unsigned bx, unsigned by, unsigned bz, unsigned long shared, const void* p) '
                     f'{{ return emulate_launch(&{name}, dim3{{gx, gy, gz}}, dim3{{bx, by, bz}}, shared, p); }}')
    if source == "backend":  # the parameter structs' sizes, which tests check gpu_plan's against
        lines.append('extern "C" unsigned long params_sizes(int kind) { return kind == 2 ? '
                     'sizeof(LayerParams) : kind ? sizeof(PoolParams) : sizeof(ConvParams); }')
    return "\n".join(lines) + "\n"


def build(which: str = "backend") -> ctypes.CDLL:
    """The emulated kernels of ``cuda_source.SOURCES[which]`` (the backend's module, or the
    benchmark's peak kernels) as a shared library, built once per source text."""
    return _shared_library(library_source(which), "kernels")


def _shared_library(source: str, stem: str) -> ctypes.CDLL:
    """``source`` built with g++ (``flags()``) into ``<stem>-<hash>.so`` under the autotune
    cache directory, once per source text, shim and flags."""
    digest = hashlib.sha256((source + SHIM.read_text() + " ".join(flags())).encode()).hexdigest()[:16]
    out_dir = autotune.cache_dir() / "cuda_host"
    lib = out_dir / f"{stem}-{digest}.so"
    if not lib.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            src, tmp_lib = Path(tmp) / f"{stem}.cpp", Path(tmp) / f"{stem}.so"
            src.write_text(source)
            built = subprocess.run([compiler(), *flags(), str(src), "-o", str(tmp_lib)],
                                   capture_output=True, text=True, check=False)
            if built.returncode:
                raise RuntimeError(f"g++ could not build {stem}:\n{built.stderr}")
            os.replace(tmp_lib, lib)
    return ctypes.CDLL(str(lib))


# CuPy's parameter types (NumPy's names) as C types
C_TYPES = {"float32": "float", "float64": "double", "bool": "bool", "int32": "int",
           "int64": "long long", "uint32": "unsigned int", "uint64": "unsigned long long"}


class ElementwiseKernel:
    """cupy.ElementwiseKernel on the CPU: the operation's C body, compiled by g++ in a loop
    over the elements, once per binding of its type placeholders (as CuPy compiles it). As on
    CuPy, the arguments broadcast to one shape; a plain parameter is its element at index
    ``i`` (an output a reference to it, written in place), a ``raw`` one the whole array, and
    a placeholder type (``T``) is the dtype of the arrays and NumPy scalars bound to it, each
    argument cast to its parameter's type."""

    @dataclasses.dataclass(frozen=True)
    class Param:
        raw: bool
        type: str    # a NumPy dtype name, or a placeholder
        name: str
        output: bool

    def __init__(self, in_params: str, out_params: str, operation: str, name: str):
        self.params = [self.Param(words[0] == "raw", words[-2], words[-1], output)
                       for params, output in ((in_params, False), (out_params, True))
                       for words in (p.split() for p in params.split(","))]
        self.operation, self.name = operation, name
        self._functions = {}  # the placeholders' dtypes -> the compiled loop

    def _types(self, args) -> dict[str, str]:
        """Each placeholder's dtype name, from the arrays and NumPy scalars bound to it."""
        bound: dict[str, set[str]] = {}
        for param, arg in zip(self.params, args):
            if param.type not in C_TYPES:
                dtypes = bound.setdefault(param.type, set())
                if isinstance(arg, (np.ndarray, np.generic)):
                    dtypes.add(arg.dtype.name)
        for placeholder, dtypes in bound.items():
            if len(dtypes) != 1:
                raise TypeError(f"{self.name}: type {placeholder} is bound to {sorted(dtypes)}")
        return {placeholder: dtypes.pop() for placeholder, dtypes in bound.items()}

    def _source(self, types: dict[str, str]) -> str:
        arguments, locals_ = [], []
        for param in self.params:
            c_type = C_TYPES[types.get(param.type, param.type)]
            const = "" if param.output else "const "
            arguments.append(f"{const}{c_type}* {param.name}_")
            locals_.append(f"{const}{c_type}* {param.name} = {param.name}_;" if param.raw else
                           f"{const}{c_type}{'&' if param.output else ''} {param.name} = "
                           f"{param.name}_[i];")
        typedefs = "".join(f"typedef {C_TYPES[t]} {p};\n" for p, t in types.items())
        return (f"#include <cmath>\nusing namespace std;\n{typedefs}"
                f'extern "C" void {self.name}(long long n, {", ".join(arguments)}) {{\n'
                f"  for (long long i = 0; i < n; ++i) {{\n    " + "\n    ".join(locals_) +
                f"\n    {{{self.operation}}}\n  }}\n}}\n")

    def __call__(self, *args) -> None:
        if len(args) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        types = self._types(args)
        key = tuple(types.items())
        if key not in self._functions:
            self._functions[key] = getattr(_shared_library(self._source(types), self.name),
                                           self.name)
            self._functions[key].restype = None
        shape = np.broadcast_shapes(*(np.shape(a) for p, a in zip(self.params, args) if not p.raw))
        arrays = []
        for param, arg in zip(self.params, args):
            dtype = np.dtype(types.get(param.type, param.type))
            if param.output:  # written in place: no copy may stand in for it
                if not (isinstance(arg, np.ndarray) and arg.dtype == dtype
                        and arg.flags.c_contiguous and (param.raw or arg.shape == shape)):
                    raise TypeError(f"{self.name}: output {param.name} must be a C-contiguous "
                                    f"{dtype} array of shape {shape}")
                arrays.append(arg)
            elif param.raw:
                arrays.append(np.ascontiguousarray(arg, dtype))
            else:
                arrays.append(np.ascontiguousarray(np.broadcast_to(np.asarray(arg, dtype), shape)))
        self._functions[key](ctypes.c_longlong(math.prod(shape)),
                             *(ctypes.c_void_p(a.ctypes.data) for a in arrays))


class HostExecutor:
    """cupy_backend's executor interface over NumPy arrays and the emulated kernels."""

    xp = np
    tensor_cores = True
    wgmma = True

    def __init__(self, lib: ctypes.CDLL, sm_count: int = 2):
        self.lib = lib
        self._sm_count = sm_count  # few SMs: split-K still splits on small problems
        self.index = {name: i for i, name in enumerate(emulated_names())}
        self.launched: list[str] = []
        self.prepared: dict = {}
        self.error_words: dict = {}

    def current_device(self) -> int:
        return 0

    def pointer(self, array) -> int:
        return array.__array_interface__["data"][0]

    def launch(self, kernel: str, grid, block, params: np.ndarray, shared_mem: int = 0) -> None:
        """One launch of ``kernel`` with a packed struct (tests that pack by hand)."""
        self.function(kernel)(grid, block, (params,), shared_mem=shared_mem)

    def function(self, kernel: str):
        fn = getattr(self.lib, f"launch_{self.index[kernel]}")
        fn.restype = ctypes.c_ulong

        def launch(grid, block, args, shared_mem: int = 0) -> None:
            (params,) = args
            self.launched.append(kernel)
            asked = fn(*(ctypes.c_uint(v) for v in (*grid, *block)), ctypes.c_ulong(shared_mem),
                       ctypes.c_void_p(params.ctypes.data))
            if asked:  # a GPU would fail the launch (or read past its shared memory)
                raise RuntimeError(f"{kernel} uses {asked} bytes of dynamic shared memory, "
                                   f"its launch gave {shared_mem}")
        return launch

    def elementwise_kernel(self, in_params: str, out_params: str, operation: str, name: str):
        return ElementwiseKernel(in_params, out_params, operation, name)

    def sm_count(self) -> int:
        return self._sm_count

    def device_name(self) -> str:
        return "host-emulation"

    def time_ms(self, run) -> float:
        """Wall time of the emulated run (autotune's timer)."""
        start = time.perf_counter()
        run()
        return 1e3 * (time.perf_counter() - start)
