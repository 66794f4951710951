"""The CUDA C++ the GPU kernels are built from, and how NVRTC compiles it (no CuPy, no driver).

- ``module_source()``: ``kernels/common.cuh``, ``conv.cu``, ``depthwise.cu``, ``pool.cu`` and
  ``layers.cu`` as one translation unit, the NVRTC options and the name expressions
  (``gpu_plan.kernel_names()``): what
  ``cupy_backend`` loads, what tests/test_cupy_compile.py compiles for sm_90 and what
  tests/cuda_host builds for the CPU.
- ``wgmma_source()``: the same translation unit with the wgmma tiles' kernels
  (``gpu_plan.wgmma_kernel_names()``), which only sm_90a builds: their own module.
- ``peak_source()``: ``kernels/peak.cu``, the benchmark's arithmetic ceilings
  (``gpuconv.benchmark.peaks``), alike.
- ``compile_report()``: registers, spills and shared memory per kernel, from ``ptxas -v``.
- ``sass_report()``: each GEMM's main loop read from its SASS (``cuobjdump -sass``): its
  instruction mix (FFMA share, HMMA, divisions, calls, generic and local memory).
"""

from __future__ import annotations

import functools
import re
from importlib import resources

from gpuconv.backends.gpu_plan import kernel_names, wgmma_kernel_names


# --------------------------------------------------------------------------- sources
KERNEL_FILES = ("common.cuh", "conv.cu", "depthwise.cu", "pool.cu", "layers.cu")
NVRTC_OPTIONS = ("-std=c++17", "-ftz=true")  # CuPy's flags; the compile test adds -arch / -Xptxas


PEAK_FILES = ("common.cuh", "peak.cu")
PEAK_KERNELS = ("ffma_peak", "mma_peak")


def kernel_source(files: tuple[str, ...] = KERNEL_FILES) -> str:
    """``files`` of kernels/ as one translation unit (so CuPy's compile cache, keyed on the
    source text, sees every change)."""
    root = resources.files("gpuconv.kernels")
    parts = [root.joinpath(name).read_text() for name in files]
    return "\n".join(re.sub(r'^#include "common.cuh"$', "", text, flags=re.M) for text in parts)


def module_source() -> tuple[str, tuple[str, ...], list[str]]:
    """(code, NVRTC options, name expressions) of the backend's one RawModule. The tensor-core
    kernels are inline PTX (mma.sync): no CUDA headers needed."""
    return kernel_source(), NVRTC_OPTIONS, kernel_names()


WGMMA_ARCH = "sm_90a"  # wgmma is an sm_90a ("architecture-specific") feature: Hopper alone


def wgmma_source() -> tuple[str, tuple[str, ...], list[str]]:
    """(code, NVRTC options, name expressions) of the wgmma kernels' module, for WGMMA_ARCH."""
    return kernel_source(), NVRTC_OPTIONS, wgmma_kernel_names()


def peak_source() -> tuple[str, tuple[str, ...], list[str]]:
    """(code, NVRTC options, name expressions) of the benchmark's ceiling kernels."""
    return kernel_source(PEAK_FILES), NVRTC_OPTIONS, list(PEAK_KERNELS)


SOURCES = {"backend": module_source, "wgmma": wgmma_source, "peak": peak_source}


# --------------------------------------------------------------------------- compile report
def compile_module(arch: str = "sm_90", source: str = "backend") -> tuple[bytes, dict[str, str], str]:
    """``SOURCES[source]()`` (the backend's module, the wgmma module or the peak kernels)
    compiled for ``arch`` by NVRTC (cuda.core, no GPU needed) with ``-Xptxas -v``, once per
    process: (cubin, {mangled name: name expression}, ptxas log). A compile error raises
    ``cuda.core``'s error with NVRTC's log.

    It runs in a fresh process: ptxas's register allocation depends on the state of the
    process it runs in (the same kernel compiled three times in one long-lived process took
    127 registers, then 128 and a 16-byte spill, then 127 again), so what the checks read
    and the results record is a fresh process's, the same on every run."""
    return _compiled(arch, source)  # one cache entry however the arguments are passed


@functools.lru_cache(maxsize=None)
def _compiled(arch: str, source: str) -> tuple[bytes, dict[str, str], str]:
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_compile_here, (arch, source))


def _compile_here(arch: str, source: str) -> tuple[bytes, dict[str, str], str]:
    import io

    from cuda.core import Program, ProgramOptions

    code, _, names = SOURCES[source]()
    opts = ProgramOptions(arch=arch, std="c++17", ftz=True, ptxas_options="-v")
    log = io.StringIO()
    obj = Program(code, "c++", options=opts).compile("cubin", name_expressions=names, logs=log)
    mangled = {(v.decode() if isinstance(v, bytes) else v): k for k, v in obj.symbol_mapping.items()}
    return bytes(obj.code), mangled, log.getvalue()


def compile_report(arch: str = "sm_90", source: str = "backend") -> dict[str, dict]:
    """Per name expression: registers, spill bytes, stack and shared memory (ptxas -v)."""
    _, mangled, log = compile_module(arch, source)
    return {mangled[k]: v for k, v in parse_ptxas_log(log).items() if k in mangled}


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


# --------------------------------------------------------------------------- SASS
def cuobjdump() -> str | None:
    """cuobjdump from PATH or from the pip wheel nvidia-cuda-cuobjdump, or None."""
    import shutil
    import sys
    from pathlib import Path

    found = shutil.which("cuobjdump")
    for site in sys.path if found is None else ():
        for candidate in sorted(Path(site).glob("nvidia/*/bin/cuobjdump")):
            return str(candidate)
    return found


def sass_functions(cubin: bytes) -> dict[str, list[tuple[int, str]]]:
    """{mangled function: [(address, instruction)]} from ``cuobjdump -sass``."""
    import subprocess
    import tempfile

    tool = cuobjdump()
    if tool is None:
        raise FileNotFoundError("cuobjdump not found: pip install nvidia-cuda-cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(cubin)
        f.flush()
        text = subprocess.run([tool, "-sass", f.name], check=True, capture_output=True,
                              text=True).stdout
    functions: dict[str, list[tuple[int, str]]] = {}
    current = None
    for line in text.splitlines():
        if m := re.match(r"\s*Function : (\S+)", line):
            current = functions.setdefault(m.group(1), [])
        elif current is not None and (m := re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;", line)):
            current.append((int(m.group(1), 16), m.group(2)))
    return functions


def opcode(instruction: str) -> str:
    """'@!P0 FFMA R1, ...' -> 'FFMA' (predicate dropped, modifiers kept: 'LDS.128')."""
    return instruction.split()[1] if instruction.startswith("@") else instruction.split()[0]


def innermost_loops(code: list[tuple[int, str]]) -> list[list[str]]:
    """The instructions of each innermost loop (a backward branch with no other backward branch
    inside), in address order."""
    loops = []
    for address, instruction in code:
        m = re.search(r"\bBRA\b.*?(0x[0-9a-f]+)", instruction)
        if m and int(m.group(1), 16) <= address:
            loops.append((int(m.group(1), 16), address))
    return [[i for a, i in code if start <= a <= end] for start, end in loops
            if not any(start <= s and e < end for s, e in loops if (s, e) != (start, end))]


MMA_OPCODES = ("HMMA", "HGMMA")  # mma.sync, wgmma
WGMMA_WAIT = re.compile(r"WARPGROUP\.DEPBAR\.LE\s+gsb0,\s*0x([0-9a-f]+)")


def math_ops(body: list[str]) -> int:
    """FFMA / DFMA / HMMA / HGMMA instructions in ``body``."""
    return sum(opcode(i).split(".")[0] in ("FFMA", "DFMA", *MMA_OPCODES) for i in body)


def hot_loop(code: list[tuple[int, str]]) -> list[str]:
    """The innermost loop that holds the most FFMA / DFMA / HMMA / HGMMA (the first of
    equals): the GEMM main loop; [] when none has any."""
    best, best_math = [], 0
    for body in innermost_loops(code):
        if math_ops(body) > best_math:
            best, best_math = body, math_ops(body)
    return best


def loop_figures(body: list[str], code: list[tuple[int, str]]) -> dict:
    """What the SASS checks assert on: the hot loop's size and mix, and the whole function's
    local-memory traffic."""
    ops = [opcode(i) for i in body]
    base = [o.split(".")[0] for o in ops]
    count = len(ops) or 1
    return dict(
        loop_instructions=len(ops),
        ffma=base.count("FFMA") + base.count("DFMA"),
        hmma=sum(base.count(op) for op in MMA_OPCODES),
        ffma_share=round((base.count("FFMA") + base.count("DFMA")) / count, 3),
        mufu_rcp=sum(o.startswith("MUFU.RCP") for o in ops),
        calls=base.count("CALL"),
        generic_memory=sum(b in ("LD", "ST") for b in base),
        lds128=sum(o.startswith("LDS.128") for o in ops),
        cp_async=base.count("LDGSTS"),
        local_memory=sum(opcode(i).split(".")[0] in ("LDL", "STL") for _, i in code),
        # wgmma groups left running by the loop's wait (wgmma.wait_group N: WARPGROUP.DEPBAR)
        wgmma_in_flight=max((int(m.group(1), 16) for m in map(WGMMA_WAIT.search, body) if m),
                            default=0),
    )


def sass_report(arch: str = "sm_90", source: str = "backend") -> dict[str, dict]:
    """{name expression: loop_figures} for every GEMM kernel of the module (and conv_direct,
    the few-rows kernel), from its SASS."""
    cubin, mangled, _ = compile_module(arch, source)
    out = {}
    for name, code in sass_functions(cubin).items():
        if name in mangled and mangled[name].startswith(("conv_gemm", "conv_direct")):
            out[mangled[name]] = loop_figures(hot_loop(code), code)
    return out
