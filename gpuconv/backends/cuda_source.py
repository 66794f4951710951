"""The CUDA C++ the GPU kernels are built from, and how NVRTC compiles it (no CuPy, no driver).

- ``module_source()``: ``kernels/common.cuh``, ``conv.cu`` and ``pool.cu`` as one translation
  unit, the NVRTC options and the name expressions (``gpu_plan.kernel_names()``): what
  ``cupy_backend`` loads, what tests/test_cupy_compile.py compiles for sm_90 and what
  tests/cuda_host builds for the CPU.
- ``compile_report()``: registers, spills and shared memory per kernel, from ``ptxas -v``.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import resources
from pathlib import Path

from gpuconv.backends.gpu_plan import kernel_names


# --------------------------------------------------------------------------- sources
KERNEL_FILES = ("common.cuh", "conv.cu", "pool.cu")
NVRTC_OPTIONS = ("-std=c++17", "-ftz=true")  # CuPy's flags; the compile test adds -arch / -Xptxas


def kernel_source() -> str:
    """common.cuh, conv.cu and pool.cu as one translation unit (so CuPy's compile cache, keyed
    on the source text, sees every change)."""
    root = resources.files("gpuconv.kernels")
    parts = [root.joinpath(name).read_text() for name in KERNEL_FILES]
    return "\n".join(re.sub(r'^#include "common.cuh"$', "", text, flags=re.M) for text in parts)


def cuda_include_dir() -> str | None:
    """A CUDA include directory holding ``mma.h`` (WMMA), or None."""
    candidates = [os.environ.get(v) for v in ("CUDA_PATH", "CUDA_HOME")]
    candidates = [str(Path(c) / "include") for c in candidates if c]
    candidates += ["/usr/local/cuda/include"]
    candidates += sorted(str(p) for p in Path("/usr/local").glob("cuda-*/include"))
    for site in sys.path:
        nvidia = Path(site) / "nvidia"
        if nvidia.is_dir():
            candidates += [str(p.parent) for p in nvidia.glob("*/include/mma.h")]
    return next((c for c in candidates if (Path(c) / "mma.h").is_file()), None)


def module_source() -> tuple[str, tuple[str, ...], list[str]]:
    """(code, NVRTC options, name expressions) of the backend's one RawModule. Without the CUDA
    headers the TF32 kernels are left out (precision='tf32' then says why)."""
    include = cuda_include_dir()
    names = kernel_names()
    if include is None:
        return kernel_source(), NVRTC_OPTIONS + ("-DGPUCONV_NO_WMMA",), [
            n for n in names if not n.startswith("conv_gemm_tf32")]
    return kernel_source(), NVRTC_OPTIONS + (f"-I{include}",), names


# --------------------------------------------------------------------------- compile report
def compile_report(arch: str = "sm_90") -> dict[str, dict]:
    """Compile ``module_source()`` for ``arch`` with NVRTC (cuda.core, no GPU needed) and
    ``-Xptxas -v``; per name expression: registers, spill bytes, stack and shared memory.
    A compile error raises ``cuda.core``'s error with NVRTC's log."""
    import io

    from cuda.core import Program, ProgramOptions

    code, options, names = module_source()
    includes = [o[2:] for o in options if o.startswith("-I")]
    defines = [o[2:] for o in options if o.startswith("-D")]
    opts = ProgramOptions(arch=arch, std="c++17", ftz=True, ptxas_options="-v",
                          include_path=includes or None, define_macro=defines or None)
    log = io.StringIO()
    obj = Program(code, "c++", options=opts).compile("cubin", name_expressions=names, logs=log)
    mangled = {v.decode() if isinstance(v, bytes) else v: k for k, v in obj.symbol_mapping.items()}
    return {mangled[k]: v for k, v in parse_ptxas_log(log.getvalue()).items() if k in mangled}


def parse_ptxas_log(text: str) -> dict[str, dict]:
    """``ptxas -v`` output -> {mangled entry: {registers, spill_stores, spill_loads, stack, smem}}."""
    out: dict[str, dict] = {}
    entry = target = None
    for line in text.replace("\0", "").splitlines():
        if m := re.search(r"Compiling entry function '([^']+)'", line):
            entry = m.group(1)
            out[entry] = dict(registers=0, spill_stores=0, spill_loads=0, stack=0, smem=0)
        elif m := re.search(r"Function properties for (\S+)", line):
            target = m.group(1)
        elif (m := re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads",
                             line)) and target in out:
            out[target].update(stack=int(m.group(1)), spill_stores=int(m.group(2)),
                               spill_loads=int(m.group(3)))
        elif (m := re.search(r"Used (\d+) registers", line)) and entry in out:
            out[entry]["registers"] = int(m.group(1))
            if s := re.search(r"(\d+) bytes smem", line):
                out[entry]["smem"] = int(s.group(1))
    return out
