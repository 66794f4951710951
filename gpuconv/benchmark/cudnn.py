"""``gpuconv bench``: gpuconv's CUDA backends against cuDNN (through PyTorch) on the GPU
layer suite, on the same device arrays.

For each layer and pass (forward, grad-input, grad-weight; pooling: forward and its
backward) the contenders are our kernels and cuDNN in strict FP32 (TF32 off, the main
baseline), then cuDNN with TF32 and, where the backend offers it, our ``precision="tf32"``,
then our ``precision="tf32x3"`` (FP32 accuracy on tensor cores) against cuDNN's strict FP32;
our strict and 3xTF32 sides also record their error against float64 (``error_fp64``).
Each contender's result is first compared with cuDNN strict FP32's, and only a right one
is timed; so a fast wrong kernel reports an error, not a time. Timing: CUDA events around
each call, L2 flushed before it, warm-up calls first (cudnn.benchmark autotunes on its
first call), contenders interleaved, median and 20th/80th percentiles. Global pooling, whose
one call is shorter than a launch, is timed per call over a CUDA graph of GRAPH_CALLS calls
(CuPy backend) on operand copies larger than L2. The device's copy bandwidth is measured in
the same run, for pooling to be judged against, a strict-FP32 ``torch.mm`` (the CUDA-core
ceiling, ``copy.sgemm_fp32``), a TF32 one (cuBLAS's tensor-core GEMM, ``copy.sgemm_tf32``) and
register-only FFMA and mma.sync loops (``copy.peaks``: what those instructions can do here,
peaks.py). With ``--tiles`` (CuPy), each conv pass's side also times
every tile the backend can run for it (``tile_sweep``): the plan model's pick against the
fastest, per pass and precision.

torch (``gpuconv[bench]``) is imported only when a bench runs, here and in the PyTorch
side, torch_ops.py: importing gpuconv, or this module, never imports it. The CUDA-bound parts
(``open_harness``, ``CudaEventTimer``, ``copy_bandwidth``) are small; the rest runs with
any ``Harness``, which is how the tests drive it on the CPU with a fake timer.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from gpuconv.backends import PRECISIONS, autotune, get_backend
from gpuconv.benchmark import BenchUnavailableError, peaks
from gpuconv.benchmark.measure import (Timer, count_differing, interleaved, relative_error,
                                       summarize)
from gpuconv.benchmark.plans import layer_plans, pass_tiles
from gpuconv.benchmark.results import (CUDNN_PRECISION, TOLERANCE, DeviceLimits, group_means,
                                       limits_for, model_table, plot, ratio, ratio_key,
                                       side_metrics, side_name, summary, table, tile_table,
                                       write_json)
from gpuconv.benchmark.suite import (GPU_SUITE, Layer, gpuconv_forward, gpuconv_pass,
                                     make_arrays, select)

DEFAULT_REPEAT = 30
GRAPH_CALLS = 100      # global pooling is timed as one CUDA graph of this many calls
GRAPH_KINDS = ("global_avg_pool",)  # layers whose one call is shorter than a launch
DEFAULT_WARMUP = 3
COPY_BYTES = 1 << 30   # large against any L2, so the copy runs at DRAM speed
FLUSH_L2_TIMES = 4     # the flush buffer's size in L2 sizes
PACKAGES = ("gpuconv", "numpy", "torch", "cupy-cuda13x", "cupy-cuda12x", "numba", "numba-cuda",
            "matplotlib")


@dataclass(frozen=True)
class Bridge:
    """How host arrays become the benchmarked backend's device arrays, and how those are
    seen, zero-copy, as torch tensors."""

    to_ours: Callable[[np.ndarray], object]
    to_torch: Callable[[object], object]


@dataclass(frozen=True)
class Harness:
    """Everything the measuring needs from the machine, so the tests can give their own."""

    backend: str
    bridge: Bridge
    timer: Timer
    precisions: tuple[str, ...]   # the conv arithmetic our backend offers
    repeat: int = DEFAULT_REPEAT
    warmup: int = DEFAULT_WARMUP
    limits: Optional[DeviceLimits] = None
    copy_gbps: Optional[float] = None
    seed: int = 0
    # builds one callable that replays the given calls as one captured CUDA graph (None:
    # time single calls); the calls cycle over copies of the operands that together are
    # larger than L2 (FLUSH_L2_TIMES x l2_bytes), so the replay reads from DRAM
    replay: Optional[Callable[[list], Callable[[], object]]] = None
    l2_bytes: int = 0
    tiles: bool = False  # also time every tile of each conv pass (tile_sweep; CuPy backend)


# --------------------------------------------------------------------------- correctness
def check(fn: Callable[[], dict], convert: Callable, reference: dict, precision: str,
          reference64: Optional[dict] = None) -> dict:
    """Run one contender once and compare each of its results with the reference (cuDNN
    strict FP32): ``{"ok", "error", "tolerance"[, "indices_differ"][, "error_fp64"]}``, or
    ``{"ok": False, "failed": "<exception>"}`` when it raises. ``reference64``: the same pass
    in float64, for the error of FP32-accurate modes against exact-ish arithmetic."""
    try:
        got = {name: convert(value) for name, value in fn().items()}
        side = {"error": max(relative_error(got[k], want) for k, want in reference.items()
                             if k != "indices"),
                "tolerance": TOLERANCE[precision]}
        if reference64 is not None:
            side["error_fp64"] = max(relative_error(got[k].double(), want)
                                     for k, want in reference64.items() if k != "indices")
        if "indices" in reference:
            side["indices_differ"] = count_differing(got["indices"], reference["indices"])
    except Exception as exc:  # a failing kernel is a result to report, not a crash
        return {"ok": False, "failed": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    side["ok"] = side["error"] <= side["tolerance"] and not side.get("indices_differ")
    return side


def _same(value):
    return value


# --------------------------------------------------------------------------- measuring
def _replayed(h: Harness, make: Callable[[dict, dict], Callable], copies: list) -> Callable:
    """One callable running GRAPH_CALLS calls as a CUDA graph replay, cycling over the operand
    ``copies`` (pairs of our and torch's arrays); ``make(ours, theirs)`` makes one call."""
    return h.replay([make(*copies[k % len(copies)]) for k in range(GRAPH_CALLS)])


def measure_pass(layer: Layer, pass_: str, ours: dict, theirs: dict, h: Harness,
                 copies: Optional[list] = None) -> dict:
    """Check, then time, every contender of one pass; strict FP32 first, then TF32. With
    ``copies`` (graph layers), each contender is timed as a graph of GRAPH_CALLS calls and
    its time per call reported."""
    from gpuconv.benchmark import torch_ops
    flops = layer.forward_flops()   # grad-input and grad-weight cost the same
    nbytes = layer.bytes_moved(pass_)
    torch_ops.set_cudnn_precision("ieee")
    reference = torch_ops.torch_pass(layer, pass_, theirs)
    reference64 = None
    if layer.is_conv:  # float64 on the GPU: what the strict and 3xTF32 errors are measured by
        reference64 = torch_ops.torch_pass(layer, pass_, {k: v.double() if v.is_floating_point()
                                                          else v for k, v in theirs.items()})
    result = {"pass": pass_, "flops": flops, "bytes": nbytes, "sides": {}}
    for precision in PRECISIONS if layer.is_conv else ("ieee",):
        torch_ops.set_cudnn_precision(CUDNN_PRECISION[precision])
        makers = {}
        if CUDNN_PRECISION[precision] == precision:  # 3xTF32 races the strict side above
            makers[side_name(False, precision)] = (
                lambda o, t: partial(torch_ops.torch_pass, layer, pass_, t), _same)
        if precision in h.precisions:
            makers[side_name(True, precision)] = (
                lambda o, t: partial(gpuconv_pass, layer, pass_, o, h.backend, precision),
                h.bridge.to_torch)
        sides = {name: check(make(ours, theirs), convert, reference, precision,
                             reference64 if name.startswith("ours") else None)
                 for name, (make, convert) in makers.items()}
        timed = [name for name in makers if sides[name]["ok"]]
        runs = [_replayed(h, makers[name][0], copies) if copies else makers[name][0](ours, theirs)
                for name in timed]
        samples = interleaved(h.timer, runs, h.repeat, h.warmup)
        for name, ms in zip(timed, samples):
            timing = summarize([t / GRAPH_CALLS for t in ms] if copies else ms)
            if copies:
                timing["graph_calls"] = GRAPH_CALLS
            sides[name].update(timing, **side_metrics(timing, flops, nbytes, precision, h.limits,
                                                      h.copy_gbps))
        ours_side = sides.get(side_name(True, precision))
        if layer.is_conv and ours_side is not None:
            ours_side["plan"] = plan_summary(layer, pass_, precision, h.backend)
            if h.tiles and h.backend == "cupy":
                ours_side["tile_sweep"] = tile_sweep(layer, pass_, ours, h, precision, reference)
        result["sides"].update(sides)
        result[ratio_key(precision)] = ratio(result["sides"], precision)
    torch_ops.set_cudnn_precision("ieee")
    return result


def plan_summary(layer: Layer, pass_: str, precision: str, backend: str = "cupy") -> dict:
    """What the GPU backend launched for this pass (on a 132-SM device): its kernels, and the
    plan model's tile, split-K, waves, fill, issued / useful MACs and time, to read a
    measured ratio against (why a layer stands where it does; the measured time over the
    model's calibrates a tile's efficiency)."""
    plan = layer_plans(layer, precision, backend=backend)[pass_]
    summary = {"kernels": [launch.kernel for launch in plan.launches]}
    if plan.choice is not None:
        summary.update(plan.choice.row())
    return summary


def tile_sweep(layer: Layer, pass_: str, ours: dict, h: Harness, precision: str,
               reference: dict) -> dict:
    """Every tile the CuPy backend can run for this pass on this device (``plans.pass_tiles``:
    the plan's own choice, then each one forced with ``autotune.forced_tile``; the wgmma
    tiles on Hopper alone, ``cupy_backend.tile_runs``), checked, then timed against
    each other: ``{"tiles": {tile: check, timing and the plan model's figures ("model")},
    "plan": the plan model's tile, "best": the fastest right one, "plan_over_best": their
    time ratio}``, what the plan model's tile ratings (``gpu_plan.TILE_EFFICIENCY``) are
    judged and set by."""
    models = pass_tiles(layer, pass_, precision)
    names = [name for name in models if get_backend(h.backend).tile_runs(name)]
    run = partial(gpuconv_pass, layer, pass_, ours, h.backend, precision)
    runs = {name: partial(_with_tile, None if i == 0 else name, run)
            for i, name in enumerate(names)}
    tiles = {name: dict(check(runs[name], h.bridge.to_torch, reference, precision),
                        model=models[name]) for name in names}
    timed = [name for name in names if tiles[name]["ok"]]
    for name, ms in zip(timed, interleaved(h.timer, [runs[name] for name in timed], h.repeat,
                                           h.warmup)):
        tiles[name].update(summarize(ms))
    result = {"tiles": tiles, "plan": names[0] if names else None}
    if timed:
        result["best"] = min(timed, key=lambda name: tiles[name]["median_ms"])
        if result["plan"] in timed:
            result["plan_over_best"] = (tiles[result["plan"]]["median_ms"]
                                        / tiles[result["best"]]["median_ms"])
    return result


def _with_tile(tile: Optional[str], run: Callable[[], dict]) -> dict:
    """``run()`` with ``tile`` forced (None: the plan's own choice)."""
    with autotune.forced_tile(tile):
        return run()


def measure_layer(layer: Layer, h: Harness) -> dict:
    """All passes of one layer, on device arrays made once and shared by both sides."""
    host = make_arrays(layer, np.float32, h.seed)
    if layer.kind == "max_pool":
        # both backwards read the same indices: the NumPy backend's (equal to torch's, as
        # the forward's check confirms for the backend under test)
        host["indices"] = gpuconv_forward(layer, host, "numpy")[1]
    ours = {name: h.bridge.to_ours(array) for name, array in host.items()}
    theirs = {name: h.bridge.to_torch(array) for name, array in ours.items()}
    copies = None
    if h.replay is not None and layer.kind in GRAPH_KINDS:
        operand_bytes = sum(array.nbytes for array in host.values())
        count = min(GRAPH_CALLS, max(1, -(-FLUSH_L2_TIMES * h.l2_bytes // operand_bytes)))
        copies = [(ours, theirs)]
        for _ in range(count - 1):
            ours_k = {name: h.bridge.to_ours(array) for name, array in host.items()}
            copies.append((ours_k, {name: h.bridge.to_torch(a) for name, a in ours_k.items()}))
    return {"layer": layer.to_dict(), "shape": layer.shape_text(),
            "passes": [measure_pass(layer, p, ours, theirs, h, copies) for p in layer.passes]}


def _progress(result: dict, seconds: float) -> str:
    def one(p):
        ours = p["sides"].get("ours", {})
        shown = "WRONG" if not ours.get("ok") else ("-" if p["ratio"] is None
                                                     else f"x{p['ratio']:.2f}")
        return f"{p['pass']} {shown}"
    return (f"{result['layer']['name']:<22} " + ", ".join(map(one, result["passes"]))
            + f"  ({seconds:.1f} s)")


def all_correct(report: dict) -> bool:
    """Every side right, and every tile of the tile sweeps (autotuning may pick any)."""
    sides = [side for layer in report["layers"] for p in layer["passes"]
             for side in p["sides"].values()]
    return all(side["ok"] and all(t["ok"] for t in side.get("tile_sweep", {}).get("tiles", {})
                                  .values()) for side in sides)


def build_report(layers: list[Layer], h: Harness, environment: dict, copy: dict,
                 log: Callable[[str], object] = print,
                 keep: Optional[Callable[[dict], object]] = None) -> dict:
    """Measure ``layers`` and gather everything the table, JSON and chart show; ``keep``
    receives the report of the layers measured so far after each one."""
    report = {"environment": environment,
              "settings": {"backend": h.backend, "precisions": list(h.precisions),
                           "repeat": h.repeat, "warmup": h.warmup, "seed": h.seed,
                           "dtype": "float32", "tolerance": TOLERANCE,
                           "ratio": "cuDNN time / gpuconv time (above 1: gpuconv is faster)"},
              "limits": asdict(h.limits) if h.limits else None, "copy": copy, "layers": []}
    def summarised():
        report["groups"] = group_means(report)
        report["all_correct"] = all_correct(report)
        return report

    for layer in layers:
        start = time.perf_counter()
        report["layers"].append(measure_layer(layer, h))
        log(_progress(report["layers"][-1], time.perf_counter() - start))
        if keep is not None:
            keep(summarised())
    return summarised()


# --------------------------------------------------------------------------- the CUDA device
class CudaEventTimer:
    """GPU time of one call between two CUDA events on torch's current stream, which must
    be the legacy default stream: work on every blocking stream (CuPy's and Numba's
    defaults included) is ordered with it. L2 is flushed first by writing a buffer several
    times its size, so no call finds its operands left in L2 by the call before."""

    def __init__(self, torch, flush_bytes: int):
        self._flush = torch.empty(flush_bytes // 4, dtype=torch.float32, device="cuda")
        self._start = torch.cuda.Event(enable_timing=True)
        self._end = torch.cuda.Event(enable_timing=True)

    def time_ms(self, fn: Callable[[], object]) -> float:
        self._flush.zero_()
        self._start.record()
        fn()
        self._end.record()
        self._end.synchronize()
        return self._start.elapsed_time(self._end)


def sgemm_ceiling(torch, timer: Timer, repeat: int, warmup: int, n: int = 8192,
                  tf32: bool = False) -> dict:
    """A ``torch.mm`` of n x n by n x n (cuBLAS), measured in the same run as the convolutions:
    strict FP32 (TF32 off), the most a CUDA-core GEMM reaches on this chip, or TF32, cuBLAS's
    tensor-core GEMM (wgmma on Hopper), against which mma.sync's own ceiling
    (``peaks.measure``) says what staying on mma.sync costs."""
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        a = torch.randn(n, n, device="cuda")
        b = torch.randn(n, n, device="cuda")
        [samples] = interleaved(timer, [partial(torch.mm, a, b)], repeat, warmup)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = False
    mm = summarize(samples)
    return {**mm, "n": n, "tflops": 2 * n ** 3 / mm["median_ms"] / 1e9}


def arithmetic_peaks(timer: Timer, repeat: int, warmup: int, sm_count: int) -> dict:
    """``peaks.measure``'s FFMA and mma.sync TF32 ceilings (kernels/peak.cu, through CuPy), or
    why they were not measured."""
    from gpuconv.backends import unavailable_reason
    reason = unavailable_reason("cupy")
    if reason is not None:
        return {"skipped": f"CuPy is unavailable: {reason}"}

    def time_ms(run: Callable[[], object]) -> dict:
        [samples] = interleaved(timer, [run], repeat, warmup)
        return summarize(samples)
    return peaks.measure(time_ms, sm_count)


def copy_bandwidth(torch, timer: Timer, repeat: int, warmup: int) -> dict:
    """A large device-to-device copy; GB/s counts the bytes read and the bytes written."""
    src = torch.ones(COPY_BYTES // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    [samples] = interleaved(timer, [partial(dst.copy_, src)], repeat, warmup)
    copy = summarize(samples)
    return {**copy, "bytes": 2 * COPY_BYTES, "gbps": 2 * COPY_BYTES / copy["median_ms"] / 1e6}


def cuda_graph_replay(torch, backend: str) -> Optional[Callable[[list], Callable[[], object]]]:
    """``Harness.replay`` on the GPU: the calls captured once into a CUDA graph on a side stream
    (CuPy launches on it through ExternalStream; their outputs are kept alive with the graph),
    replayed on torch's current stream. Numba launches on its own default stream, which a
    capture cannot take: None there (single calls are timed)."""
    if backend != "cupy":
        return None
    import cupy

    def build(calls: list) -> Callable[[], object]:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), cupy.cuda.ExternalStream(stream.cuda_stream):
            for call in calls:  # warm-up: kernels loaded, CuPy's pool holds the output blocks
                call()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream), cupy.cuda.ExternalStream(stream.cuda_stream):
            outputs = [call() for call in calls]
        return partial(_replay, graph, outputs)
    return build


def _replay(graph, outputs) -> None:
    """One replay of ``graph``; ``outputs`` (the captured calls' results) stay alive with it."""
    graph.replay()


def cuda_bridge(backend: str, torch) -> Bridge:
    """CuPy arrays reach torch through DLPack, Numba's through ``__cuda_array_interface__``."""
    if backend == "cupy":
        import cupy
        return Bridge(cupy.asarray, torch.from_dlpack)
    from numba import cuda
    return Bridge(cuda.to_device, partial(torch.as_tensor, device="cuda"))


def _import_torch():
    try:
        import torch
    except ImportError:
        raise BenchUnavailableError(
            "gpuconv bench compares with cuDNN through PyTorch, which is not installed "
            "(pip install 'gpuconv[bench]', with a CUDA build of torch)") from None
    if not torch.cuda.is_available():
        raise BenchUnavailableError(f"PyTorch {torch.__version__} sees no CUDA device (a "
                                    "CPU-only build of torch, or no driver)")
    if torch.cuda.current_stream().cuda_stream != 0:
        raise BenchUnavailableError("torch's current CUDA stream is not the legacy default "
                                    "stream, so CUDA events would not bracket gpuconv's work")
    return torch


def _driver_version() -> Optional[str]:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def package_versions() -> dict:
    """Installed versions of the packages the bench depends on (absent ones left out)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return found


def _cuda_runtimes(torch) -> dict:
    """The CUDA runtime each library was built against, as each reports it (torch's and
    Numba's "major.minor", CuPy's integer 1000*major + 10*minor)."""
    found = {"torch": torch.version.cuda}
    probes = {"cupy": lambda m: m.cuda.runtime.runtimeGetVersion(),
              "numba.cuda": lambda m: ".".join(map(str, m.runtime.get_version()))}
    for module, probe in probes.items():
        try:
            found[module] = probe(importlib.import_module(module))
        except Exception:  # not installed or not usable: nothing to record
            pass
    return found


def environment(torch) -> dict:
    device = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(device)
    return {"device": torch.cuda.get_device_name(device), "multiprocessors": props.multi_processor_count,
            "memory_bytes": props.total_memory, "l2_bytes": props.L2_cache_size,
            "driver": _driver_version(), "cuda_runtime": _cuda_runtimes(torch),
            "cudnn": torch.backends.cudnn.version(), "versions": package_versions(),
            "python": platform.python_version(),
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": shlex.join(sys.argv)}


def open_harness(backend: str, repeat: int, warmup: int) -> tuple[Harness, dict, dict]:
    """The CUDA device ready to measure: the harness, the environment and the copy
    bandwidth; BenchUnavailableError says why not."""
    from gpuconv.backends import unavailable_reason
    reason = unavailable_reason(backend)
    if reason is not None:
        raise BenchUnavailableError(f"backend {backend!r} is unavailable: {reason}")
    if backend == "numba" and os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        raise BenchUnavailableError("Numba's CUDA simulator is on (NUMBA_ENABLE_CUDASIM=1): "
                                    "unset it to time the real kernels")
    torch = _import_torch()
    torch.backends.cudnn.benchmark = True
    env = environment(torch)
    timer = CudaEventTimer(torch, FLUSH_L2_TIMES * env["l2_bytes"])
    copy = copy_bandwidth(torch, timer, repeat, warmup)
    copy["sgemm_fp32"] = sgemm_ceiling(torch, timer, min(repeat, 10), warmup)
    copy["sgemm_tf32"] = sgemm_ceiling(torch, timer, min(repeat, 10), warmup, tf32=True)
    copy["peaks"] = arithmetic_peaks(timer, min(repeat, 10), warmup, env["multiprocessors"])
    harness = Harness(backend, cuda_bridge(backend, torch), timer,
                      tuple(get_backend(backend).PRECISIONS), repeat, warmup,
                      limits_for(env["device"]), copy["gbps"],
                      replay=cuda_graph_replay(torch, backend), l2_bytes=env["l2_bytes"])
    return harness, env, copy


def bench_command(backend: str = "cupy", ops=None, layers=None, repeat: int = DEFAULT_REPEAT,
                  json_path: Optional[Path] = None, plot_path: Optional[Path] = None,
                  echo: Callable[[str], object] = print, tiles: bool = False) -> int:
    """What ``gpuconv bench`` does; 0 when every result was right, else 1. ``tiles``: also
    the tile sweep of each conv pass (CuPy backend). Bad names raise ValueError; a machine
    that cannot run it raises BenchUnavailableError."""
    suite = select(GPU_SUITE, layers, ops)
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    if tiles and backend != "cupy":
        raise ValueError(f"the tile sweep times the CuPy backend's tiles, not {backend!r}'s")
    harness, env, copy = open_harness(backend, repeat, DEFAULT_WARMUP)
    harness = replace(harness, tiles=tiles)
    # the JSON after every layer: a run cut short keeps the layers it measured
    keep = None if json_path is None else lambda partial: write_json(partial, Path(json_path))
    report = build_report(suite, harness, env, copy, echo, keep)
    echo("")
    echo(table(report))
    echo("")
    echo(summary(report))
    echo(model_table(report))
    if tiles:
        echo("")
        echo(tile_table(report))
    for path, write in ((json_path, write_json), (plot_path, plot)):
        if path is not None:
            write(report, Path(path))
            echo(f"wrote {path}")
    return 0 if report["all_correct"] else 1
