"""CPU benchmark: gpuconv's NumPy backend against PyTorch on the CPU (oneDNN), float32.

    python bench/cpu.py                 # whole suite, 10 timed repetitions, writes JSON
    python bench/cpu.py --quick         # smoke run: 1 repetition, writes nothing
    python bench/cpu.py --layers vgg_3x3 stem_7x7_s2 --repeat 5
    python bench/cpu.py --from-json bench/results/cpu_latest.json --readme

For every layer of the CPU suite (gpuconv/benchmark/suite.py): the outputs and all gradients
are first checked against PyTorch (autograd for the gradients), so a fast but wrong kernel
reports no time; then gpuconv and torch run alternately after a warm-up, in blocks of
``BLOCK`` timed calls each after ``SETTLE_S`` seconds of untimed calls (a call right after
the other side's is slowed by what that side left running), forward and backward
separately, and the median and the 20th/80th percentiles are reported.
The backward is timed alone: gpuconv's ``*_backward`` ops against the ATen backward
ops autograd calls, with the same random upstream gradient.

The thread-scaling column times gpuconv alone at one thread (its pool at one thread, and
BLAS, which gpuconv's own GEMMs hold at one thread each anyway, limited to one through
threadpoolctl) against all of them, interleaved the same way; plain copies through the
same pool, past the caches and within them, give the ceiling of that column for the passes
bound by memory (``copy_scaling``).
Run it as users do: ``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/cpu.py``
(the JSON records which OpenBLAS kernel ran: ``numpy_blas.threadpools[].architecture``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

from gpuconv import parallel  # noqa: E402
from gpuconv.backends import numpy_backend  # noqa: E402
from gpuconv.benchmark import suite as L  # noqa: E402
from gpuconv.benchmark.measure import (WallClockTimer, geomean, interleaved,  # noqa: E402
                                       relative_error, summarize)

RESULTS = ROOT / "bench" / "results"
RTOL = 1e-3          # max |gpuconv - torch| / max |torch|, per array: loose for float32
DEFAULT_REPEAT = 10
DEFAULT_WARMUP = 1   # on top of the correctness run, which also warms both sides up
# timed calls per block of one side (after an untimed one): calls of gpuconv that came right
# after one of PyTorch took 10-50% longer on this 2-core machine than alone (its OpenMP
# threads spin after each call), PyTorch's own times did not change, and in blocks both sides
# ran as they do alone (resnet50_1x1_expand forward: alone 7.2 / 24.0 ms, A B A B 12.0 /
# 17.4, blocks 8.1 / 24.3)
BLOCK = 3
# seconds of untimed calls before each block (one call at least): those spinning threads
# slowed even the block's second call (depthwise_5x5 forward, the calls after two of
# PyTorch's: 2.2-2.7, 1.9-2.3, then 1.3-1.6 ms; alone 1.3). Busy, not asleep: after a 50 ms
# pause, short calls timed the cores' wake-up (an in-cache copy scaled 0.8-1.0x from one
# thread to two, against 1.8x without the pause)
SETTLE_S = 0.02


# --------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _numpy_blas() -> dict:
    info: dict = {}
    try:
        config = np.show_config(mode="dicts")
        info = config.get("Build Dependencies", {}).get("blas", {})
    except Exception:  # older NumPy: no dict mode
        pass
    try:
        import threadpoolctl
        info["threadpools"] = threadpoolctl.threadpool_info()
    except ImportError:
        info["threadpools"] = "threadpoolctl not installed"
    return info


def machine_info() -> dict:
    import torch
    import gpuconv
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cores": cores,
        "os_cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "gpuconv": gpuconv.__version__,
        "numpy": np.__version__,
        "numpy_blas": _numpy_blas(),
        "torch": torch.__version__,
        "torch_num_threads": torch.get_num_threads(),
        "torch_mkldnn": bool(torch.backends.mkldnn.is_available()),
        "gpuconv_threads": parallel.num_threads(),
        "gpuconv_cpu_engine": numpy_backend.cpu_engine(),
        # other processes' load makes every timing noisier: 1-, 5- and 15-minute averages
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                   "MKL_NUM_THREADS", parallel.ENV_VAR,
                                                   parallel.SPIN_ENV_VAR, "OPENBLAS_CORETYPE",
                                                   "OPENBLAS_L2_SIZE")
                       if k in os.environ},
    }


# --------------------------------------------------------------------------- correctness
def check_layer(layer: L.Layer, a: dict, t: dict) -> dict:
    """Compare gpuconv's forward and backward with torch's; also store the max-pool
    indices each side needs for its backward in ``a`` / ``t``. Returns the errors and
    ``ok``."""
    from gpuconv.benchmark import torch_ops
    errors: dict = {}
    ours, ref = L.gpuconv_forward(layer, a, "numpy"), torch_ops.forward(layer, t)
    if layer.kind == "max_pool":
        (ours, a["indices"]), (ref, t["indices"]) = ours, ref
        errors["indices_differ"] = int(np.sum(a["indices"] != t["indices"].numpy()))
    errors["forward"] = relative_error(ours, ref.numpy())
    grads = L.gpuconv_backward(layer, a, "numpy")
    expected = torch_ops.autograd_grads(layer, t)
    timed = torch_ops.backward(layer, t)
    for name, want in expected.items():
        errors[f"grad_{name}"] = relative_error(grads[name], want.numpy())
        # the torch op we time must be the one autograd runs
        errors[f"torch_op_grad_{name}"] = relative_error(timed[name].numpy(), want.numpy())
    ok = all(v <= RTOL for k, v in errors.items() if k != "indices_differ") \
        and errors.get("indices_differ", 0) == 0
    return {"ok": ok, "rtol": RTOL, "errors": errors}


# --------------------------------------------------------------------------- timing
def with_gflops(samples_ms: list, flops: Optional[int]) -> dict:
    s = summarize(samples_ms)
    median = s["median_ms"]
    return {**s, "gflops": (flops / (median * 1e-3) / 1e9) if flops and median > 0 else None}


def _at_threads(fn, threads: int, blas):
    """``fn`` run with gpuconv's pool and (when threadpoolctl can) BLAS at ``threads``."""
    def call():
        parallel.set_num_threads(threads)
        if blas is not None:
            blas.limit(limits=threads)
        return fn()
    return call


def thread_scaling(fns: dict, repeat: int, warmup: int) -> dict:
    """Per pass, gpuconv at one thread against all threads, interleaved: the median times
    and ``speedup`` = one thread's time / all threads' time."""
    try:
        import threadpoolctl
        blas = threadpoolctl.ThreadpoolController().select(user_api="blas")
    except ImportError:
        blas = None
    threads = parallel.num_threads()
    blas_threads = blas.info()[0]["num_threads"] if blas is not None and blas.info() else None
    result = {"threads": threads, "blas_limited": blas is not None}
    try:
        for name, fn in fns.items():
            one, every = interleaved(WallClockTimer(), [
                _at_threads(fn, 1, blas), _at_threads(fn, threads, blas)], repeat, warmup, BLOCK,
                SETTLE_S)
            one, every = summarize(one), summarize(every)
            result[name] = {"one_thread": one, "all_threads": every,
                            "speedup": one["median_ms"] / every["median_ms"]}
    finally:
        parallel.set_num_threads(threads)
        if blas is not None and blas_threads:
            blas.limit(limits=blas_threads)
    return result


# What a memory-bound pass (pooling, the im2col copies) can gain from more threads here:
# plain copies through gpuconv's pool, of a buffer past the caches and of one piece per thread
# small enough to stay in its core's L2 (copied again and again).
COPY_DRAM_BYTES = 128 << 20
COPY_CACHE_PIECE = 512 << 10
COPY_CACHE_SWEEPS = 100


def copy_scaling(repeat: int) -> dict:
    """Copy bandwidth (GB/s read + written) at one thread against all, interleaved: the
    ceiling of the thread-scaling column for passes bound by memory or by the caches."""
    threads = parallel.num_threads()
    result = {"threads": threads}
    try:
        for where, total, piece, sweeps in (
                ("dram", COPY_DRAM_BYTES, parallel.PIECE_BYTES, 1),
                ("cache", COPY_CACHE_PIECE * threads, COPY_CACHE_PIECE, COPY_CACHE_SWEEPS)):
            src = np.ones(total, dtype=np.uint8)
            dst = np.empty_like(src)
            pieces = parallel.pieces(total, piece)

            def copy(s: slice, src=src, dst=dst, sweeps=sweeps):
                for _ in range(sweeps):
                    np.copyto(dst[s], src[s])

            def at(n: int, pieces=pieces, copy=copy, total=total):
                def call():
                    parallel.set_num_threads(n)
                    parallel.run(copy, pieces, total)
                return call
            one, every = interleaved(WallClockTimer(), [at(1), at(threads)], repeat, 1, BLOCK,
                                     SETTLE_S)
            gbs = [2 * total * sweeps / (float(np.median(ms)) * 1e-3) / 1e9 for ms in (one, every)]
            result[where] = {"bytes": total, "sweeps": sweeps, "one_thread_gbs": gbs[0],
                             "all_threads_gbs": gbs[1], "speedup": gbs[1] / gbs[0]}
    finally:
        parallel.set_num_threads(threads)
    return result


def _copy_line(report: dict) -> str:
    c = report.get("copy_scaling")
    if not c:
        return ""
    d, k = c["dram"], c["cache"]
    return (f"Copy bandwidth through the pool, 1 -> {c['threads']} threads (the ceiling of "
            f"memory-bound passes' scaling): {d['bytes'] >> 20} MB past the caches "
            f"{d['one_thread_gbs']:.0f} -> {d['all_threads_gbs']:.0f} GB/s "
            f"({d['speedup']:.2f}x), {k['bytes'] // c['threads'] >> 10} KB a thread in cache "
            f"{k['one_thread_gbs']:.0f} -> {k['all_threads_gbs']:.0f} GB/s ({k['speedup']:.2f}x).")


def measure_layer(layer: L.Layer, repeat: int = DEFAULT_REPEAT, warmup: int = DEFAULT_WARMUP,
                  seed: int = 0, scaling: bool = True) -> dict:
    """Check one layer against torch, then time forward and backward of both (and, with
    ``scaling``, gpuconv at one thread against all)."""
    import torch
    from gpuconv.benchmark import torch_ops
    a = L.make_arrays(layer, np.float32, seed)
    t = torch_ops.to_torch(a)
    result = {"layer": layer.to_dict(), "shape": layer.shape_text()}
    result["check"] = check_layer(layer, a, t)
    if not result["check"]["ok"]:
        return result
    with torch.no_grad():
        for name, ours, theirs, flops in (
                ("forward", lambda: L.gpuconv_forward(layer, a, "numpy"),
                 lambda: torch_ops.forward(layer, t), layer.forward_flops()),
                ("backward", lambda: L.gpuconv_backward(layer, a, "numpy"),
                 lambda: torch_ops.backward(layer, t), layer.backward_flops())):
            ta, tb = interleaved(WallClockTimer(), [ours, theirs], repeat, warmup, BLOCK,
                                 SETTLE_S)
            g, r = with_gflops(ta, flops), with_gflops(tb, flops)
            result[name] = {"gpuconv": g, "torch": r, "ratio": g["median_ms"] / r["median_ms"]}
    if scaling:
        result["threads"] = thread_scaling(
            {"forward": lambda: L.gpuconv_forward(layer, a, "numpy"),
             "backward": lambda: L.gpuconv_backward(layer, a, "numpy")}, repeat, warmup)
    return result


# --------------------------------------------------------------------------- reporting
def _ms(s: dict) -> str:
    return f"{s['median_ms']:9.2f} ({s['p20_ms']:.1f}-{s['p80_ms']:.1f})"


def _gf(s: dict) -> str:
    return f"{s['gflops']:7.1f}" if s["gflops"] is not None else "      -"


def table(report: dict) -> str:
    """The plain-text table printed after a run."""
    lines = [f"{'layer':<20} {'pass':<8} {'gpuconv ms (p20-p80)':>24} "
             f"{'torch ms (p20-p80)':>24} {'ratio':>7} {'GFLOP/s gpuconv':>16} "
             f"{'torch':>7} {'1 -> all threads':>16}"]
    for r in report["layers"]:
        name = r["layer"]["name"]
        if not r["check"]["ok"]:
            lines.append(f"{name:<20} WRONG: {r['check']['errors']} (no time reported)")
            continue
        for p in ("forward", "backward"):
            x = r[p]
            lines.append(f"{name:<20} {p:<8} {_ms(x['gpuconv']):>24} {_ms(x['torch']):>24} "
                         f"{x['ratio']:7.2f} {_gf(x['gpuconv']):>16} {_gf(x['torch']):>7} "
                         f"{_speedup(r, p):>16}")
    g = report["geomean_ratio"]
    lines.append("geometric mean ratio (gpuconv time / torch time): forward "
                 f"{_fmt(g['forward'])}, backward {_fmt(g['backward'])}")
    return "\n".join(filter(None, lines + [_copy_line(report)]))


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _speedup(r: dict, pass_: str) -> str:
    """The thread-scaling speedup of one pass ("-" when it was not measured)."""
    scaling = r.get("threads", {}).get(pass_)
    return f"{scaling['speedup']:.2f}x" if scaling else "-"


def scaling_summary(report: dict) -> dict:
    """Geometric mean thread-scaling speedups per pass, over the layers that BLAS does not
    run (pooling) and over all layers."""
    out = {}
    for p in ("forward", "backward"):
        measured = [r for r in report["layers"] if r.get("threads", {}).get(p)]
        out[p] = {"all_layers": geomean(r["threads"][p]["speedup"] for r in measured),
                  "non_blas_layers": geomean(r["threads"][p]["speedup"] for r in measured
                                             if not r["layer"]["kind"].startswith("conv"))}
    return out


def _blas_kernel(machine: dict) -> str:
    pools = machine.get("numpy_blas", {}).get("threadpools")
    if isinstance(pools, list):
        return ", ".join(sorted({p.get("architecture", "?") for p in pools
                                 if p.get("user_api") == "blas"})) or "?"
    return "?"


def markdown(report: dict) -> str:
    """The README's "CPU speed" table."""
    m, s = report["machine"], report["settings"]
    threads = next((r["threads"]["threads"] for r in report["layers"] if "threads" in r), None)
    lines = ["| layer | input -> output | fwd gpuconv ms | fwd torch ms | fwd ratio | "
             f"bwd gpuconv ms | bwd torch ms | bwd ratio | 1 -> {threads or 'all'} threads "
             "fwd / bwd |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["layers"]:
        name = r["layer"]["name"]
        if not r["check"]["ok"]:
            lines.append(f"| {name} | {r['shape']} | wrong | | | | | | |")
            continue
        f, b = r["forward"], r["backward"]
        lines.append(f"| {name} | {r['shape']} | {f['gpuconv']['median_ms']:.1f} | "
                     f"{f['torch']['median_ms']:.1f} | {f['ratio']:.2f} | "
                     f"{b['gpuconv']['median_ms']:.1f} | {b['torch']['median_ms']:.1f} | "
                     f"{b['ratio']:.2f} | {_speedup(r, 'forward')} / {_speedup(r, 'backward')} |")
    g = report["geomean_ratio"]
    lines.append(f"| **geometric mean** | | | | **{_fmt(g['forward'])}** | | | "
                 f"**{_fmt(g['backward'])}** | |")
    lines.append("")
    settle = (f"{s['settle_s'] * 1e3:.0f} ms of untimed calls" if s.get("settle_s")
              else "an untimed call")
    block = f" in blocks of {s['block']} (each after {settle})" if s.get("block") else ""
    lines.append(f"Median of {s['repeat']} runs, the two sides interleaved{block}, float32; "
                 f"ratio = gpuconv time / "
                 f"torch time (lower is better for gpuconv). {m['cpu_model']}, {m['cores']} "
                 f"cores, NumPy {m['numpy']} (OpenBLAS kernel {_blas_kernel(m)}), PyTorch "
                 f"{m['torch']} ({m['torch_num_threads']} threads), {m['date'][:10]}. "
                 + _copy_line(report))
    return "\n".join(lines)


# --------------------------------------------------------------------------- main
def run(names=None, repeat: int = DEFAULT_REPEAT, warmup: int = DEFAULT_WARMUP, seed: int = 0,
        quick: bool = False, log=print, scaling: bool = True) -> dict:
    import torch
    torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else os.cpu_count())
    suite = L.select(L.CPU_SUITE, names)
    report = {"machine": machine_info(),
              "settings": {"repeat": repeat, "warmup": warmup, "block": BLOCK,
                           "settle_s": SETTLE_S, "seed": seed, "quick": quick,
                           "dtype": "float32", "rtol": RTOL},
              "layers": []}
    for layer in suite:
        start = time.perf_counter()
        r = measure_layer(layer, repeat, warmup, seed, scaling)
        report["layers"].append(r)
        if r["check"]["ok"]:
            log(f"{layer.name:<20} {r['shape']:<36} fwd ratio {r['forward']['ratio']:6.2f}  "
                f"bwd ratio {r['backward']['ratio']:6.2f}  threads {_speedup(r, 'forward')} / "
                f"{_speedup(r, 'backward')}  ({time.perf_counter() - start:.1f} s)")
        else:
            log(f"{layer.name:<20} WRONG: {r['check']['errors']}")
    ok = [r for r in report["layers"] if r["check"]["ok"]]
    report["geomean_ratio"] = {p: geomean(r[p]["ratio"] for r in ok)
                               for p in ("forward", "backward")}
    report["thread_scaling_geomean"] = scaling_summary(report)
    if scaling:
        report["copy_scaling"] = copy_scaling(repeat)
    report["load_average_at_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    report["all_correct"] = len(ok) == len(report["layers"])
    return report


def write_json(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=None,
                        help=f"timed repetitions per op and side (default {DEFAULT_REPEAT})")
    parser.add_argument("--warmup", type=int, default=None,
                        help=f"untimed runs first (default {DEFAULT_WARMUP})")
    parser.add_argument("--layers", nargs="+", metavar="NAME",
                        help=f"run only these: {', '.join(x.name for x in L.CPU_SUITE)}")
    parser.add_argument("--json", type=Path, metavar="PATH",
                        help="write the results here (default: bench/results/cpu_<date>.json "
                             "and cpu_latest.json for a full run; nothing for --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 repetition, no warm-up beyond the correctness check")
    parser.add_argument("--readme", action="store_true", help="also print the markdown table")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="print the tables of an earlier run instead of running")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-scaling", action="store_true",
                        help="leave out the thread-scaling column (one thread against all)")
    args = parser.parse_args(argv)

    if args.from_json:
        report = json.loads(args.from_json.read_text())
    else:
        repeat = args.repeat or (1 if args.quick else DEFAULT_REPEAT)
        warmup = args.warmup if args.warmup is not None else (0 if args.quick else DEFAULT_WARMUP)
        if repeat < 1 or warmup < 0:
            parser.error("--repeat must be >= 1 and --warmup >= 0")
        try:
            suite_names = [layer.name for layer in L.select(L.CPU_SUITE, args.layers)]
        except ValueError as exc:
            parser.error(str(exc))
        report = run(suite_names, repeat, warmup, args.seed, args.quick,
                     scaling=not args.no_scaling)
        targets = [args.json] if args.json else []
        if not args.json and not args.quick and not args.layers:
            date = report["machine"]["date"][:10]
            targets = [RESULTS / f"cpu_{date}.json", RESULTS / "cpu_latest.json"]
        for path in targets:
            write_json(report, path)
            print(f"wrote {path}")
    print()
    print(table(report))
    if args.readme:
        print()
        print(markdown(report))
    return 0 if report.get("all_correct", True) else 1


if __name__ == "__main__":
    sys.exit(main())
