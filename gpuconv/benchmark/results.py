"""What the GPU bench makes of its timings: throughput, ratio to cuDNN, fractions of the
device's limits, geometric means per group, and the table, JSON and bar chart.

Everything here works on the plain result dicts that ``cudnn.build_report`` builds (and
writes as JSON), so it runs, and is tested, without a GPU or torch.

Ratio to cuDNN = cuDNN's time / our time: above 1, gpuconv is faster.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from gpuconv._files import atomic_write
from gpuconv.backends import PRECISIONS
from gpuconv.benchmark.measure import geomean
from gpuconv.benchmark.suite import PASSES

# Tolerances of ``max|ours - cuDNN strict| / max|cuDNN strict|``. Strict float32 differs
# from cuDNN only in summation order (~1e-6); 1e-4 still catches a kernel that quietly
# uses TF32 (~1e-3). TF32 keeps 10 mantissa bits.
TOLERANCE = {"ieee": 1e-4, "tf32": 1e-2, "tf32x3": 1e-4}
# The cuDNN side each of our precisions is timed against: cuDNN has no 3xTF32, so gpuconv's
# FP32-accurate tensor-core mode races cuDNN's strict FP32.
CUDNN_PRECISION = {"ieee": "ieee", "tf32": "tf32", "tf32x3": "ieee"}


@dataclass(frozen=True)
class DeviceLimits:
    """A device's datasheet peaks, to report each result as a fraction of them."""

    device: str          # the CUDA device name these figures describe
    fp32_tflops: float
    tf32_tflops: float   # dense (the datasheets print twice this, with sparsity)
    hbm_gbps: float


# Keyed by the exact name CUDA reports: an H100 PCIe or NVL has lower limits, so another
# device gets no fraction rather than a wrong one.
H100_SXM5 = DeviceLimits("NVIDIA H100 80GB HBM3", fp32_tflops=67.0, tf32_tflops=495.0,
                         hbm_gbps=3350.0)
H200_SXM = DeviceLimits("NVIDIA H200", fp32_tflops=67.0, tf32_tflops=495.0, hbm_gbps=4800.0)
KNOWN_LIMITS = {limits.device: limits for limits in (H100_SXM5, H200_SXM)}


def limits_for(device_name: str) -> Optional[DeviceLimits]:
    return KNOWN_LIMITS.get(device_name)


# --------------------------------------------------------------------------- sides
def side_name(ours: bool, precision: str) -> str:
    """``ours``, ``cudnn``, ``ours_tf32``, ``cudnn_tf32``: one timed contender of a pass."""
    return ("ours" if ours else "cudnn") + ("" if precision == "ieee" else f"_{precision}")


def side_metrics(timing: dict, flops: Optional[int], nbytes: int, precision: str,
                 limits: Optional[DeviceLimits], copy_gbps: Optional[float]) -> dict:
    """Throughput of one timed side: TFLOP/s and the fraction of the FP32 or TF32 peak for
    convolutions; GB/s and the fractions of HBM's peak and of the measured copy bandwidth
    for pooling (which moves data and computes next to nothing)."""
    seconds = timing["median_ms"] * 1e-3
    if flops:
        tflops = flops / seconds / 1e12
        peak = None if limits is None else (limits.tf32_tflops if precision == "tf32"
                                            else limits.fp32_tflops)
        return {"tflops": tflops, "peak_fraction": None if peak is None else tflops / peak}
    gbps = nbytes / seconds / 1e9
    return {"gbps": gbps, "peak_fraction": None if limits is None else gbps / limits.hbm_gbps,
            "copy_fraction": None if not copy_gbps else gbps / copy_gbps}


def ratio_key(precision: str) -> str:
    """Where a pass keeps its ratio to cuDNN: ``ratio`` (strict FP32) or ``ratio_tf32``."""
    return "ratio" if precision == "ieee" else f"ratio_{precision}"


def ratio(sides: dict, precision: str) -> Optional[float]:
    """cuDNN's median time / ours, when both were timed (ours only if it was right)."""
    ours = sides.get(side_name(True, precision))
    theirs = sides.get(side_name(False, CUDNN_PRECISION[precision]))
    if not ours or not theirs or "median_ms" not in ours or "median_ms" not in theirs:
        return None
    return theirs["median_ms"] / ours["median_ms"]


# --------------------------------------------------------------------------- groups
@dataclass(frozen=True)
class Group:
    """A geometric mean over some layers' passes, with the issues' targets per backend."""

    name: str
    family: str
    passes: tuple[str, ...]
    metric: str            # "ratio", "ratio_tf32" or "copy_fraction" (of our side)
    targets: dict

    def values(self, report: dict) -> list[Optional[float]]:
        """The metric of every member; None for a member whose side is wrong or failed."""
        return [_metric(p, self.metric) for layer in report["layers"]
                if layer["layer"]["family"] == self.family
                for p in layer["passes"] if p["pass"] in self.passes
                and _timed_or_wrong(p, self.metric)]


def _metric(pass_result: dict, metric: str) -> Optional[float]:
    if metric == "copy_fraction":
        return pass_result["sides"].get("ours", {}).get("copy_fraction")
    return pass_result.get(metric)


def _timed_or_wrong(pass_result: dict, metric: str) -> bool:
    """Whether a pass belongs in the metric's mean: our side ran, right or wrong (a backend
    that does not offer TF32 has no TF32 side, and nothing to average)."""
    precision = metric.removeprefix("ratio_") if metric.startswith("ratio_") else "ieee"
    return side_name(True, precision) in pass_result["sides"]


GROUPS = (
    Group("ResNet-50 forward", "resnet50", ("forward",), "ratio", {"cupy": 1.0, "numba": 0.5}),
    Group("ResNet-50 grad-input", "resnet50", ("grad_input",), "ratio",
          {"cupy": 1.0, "numba": 0.5}),
    Group("ResNet-50 grad-weight", "resnet50", ("grad_weight",), "ratio",
          {"cupy": 1.0, "numba": 0.5}),
    Group("dilated", "dilated", PASSES, "ratio", {"cupy": 1.0}),
    Group("depthwise", "depthwise", PASSES, "ratio", {"cupy": 1.5}),
    Group("TF32 (ResNet-50, all passes)", "resnet50", PASSES, "ratio_tf32", {"cupy": 1.0}),
    Group("3xTF32 vs cuDNN FP32 (ResNet-50, all passes)", "resnet50", PASSES, "ratio_tf32x3",
          {"cupy": 2.0}),
    Group("pooling, of copy bandwidth", "pooling", PASSES, "copy_fraction",
          {"cupy": 0.8, "numba": 0.6}),
)


def group_means(report: dict) -> list[dict]:
    """Each group with members: its geometric mean (None if any member is wrong, so a fast
    wrong kernel cannot lift it), and the backend's target, if the issues set one."""
    rows = []
    for group in GROUPS:
        values = group.values(report)
        if not values:
            continue
        wrong = sum(v is None for v in values)
        mean = None if wrong else geomean(values)
        target = group.targets.get(report["settings"]["backend"])
        rows.append({"name": group.name, "metric": group.metric, "count": len(values),
                     "wrong": wrong, "geomean": mean, "target": target,
                     "met": None if mean is None or target is None else mean >= target})
    return rows


# --------------------------------------------------------------------------- rendering
def _ms(side: Optional[dict]) -> str:
    if not side:
        return ""
    if "failed" in side:
        return "FAILED"
    if not side["ok"]:
        return "WRONG"
    return f"{side['median_ms']:.3f} ({side['p20_ms']:.3f}-{side['p80_ms']:.3f})"


def _num(value: Optional[float], fmt: str = ".2f") -> str:
    return "" if value is None else format(value, fmt)


def _pct(value: Optional[float]) -> str:
    return "" if value is None else f"{value:.0%}"


def _error(side: Optional[dict]) -> str:
    if not side:
        return ""
    if "failed" in side:
        return side["failed"]
    text = f"{side['error']:.1e}"
    return text + (f", {side['indices_differ']} indices differ" if side.get("indices_differ")
                   else "")


def _speed(side: Optional[dict]) -> str:
    if not side or "median_ms" not in side:
        return ""
    return f"{side['tflops']:.1f} TFLOP/s" if "tflops" in side else f"{side['gbps']:.0f} GB/s"


TABLE_HEADER = ("layer", "pass", "ours ms (p20-p80)", "cuDNN ms", "x cuDNN", "ours speed",
                "% peak", "% copy", "max rel err", "ours TF32 ms", "cuDNN TF32 ms",
                "x cuDNN TF32", "TF32 err", "ours 3xTF32 ms", "x cuDNN FP32",
                "err vs fp64: FP32 / 3xTF32")


def table(report: dict) -> str:
    """One markdown row per layer and pass (readable in a terminal, pasteable into the README)."""
    lines = ["| " + " | ".join(TABLE_HEADER) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(TABLE_HEADER) - 2)) + "|"]
    for layer in report["layers"]:
        for p in layer["passes"]:
            s = p["sides"]
            ours, ours_tf32, ours_x3 = s.get("ours"), s.get("ours_tf32"), s.get("ours_tf32x3")
            fp64 = " / ".join(f"{side['error_fp64']:.1e}" for side in (ours, ours_x3)
                              if side and "error_fp64" in side)
            cells = (layer["layer"]["name"], p["pass"], _ms(ours), _ms(s.get("cudnn")),
                     _num(p.get("ratio")), _speed(ours), _pct((ours or {}).get("peak_fraction")),
                     _pct((ours or {}).get("copy_fraction")), _error(ours), _ms(ours_tf32),
                     _ms(s.get("cudnn_tf32")), _num(p.get("ratio_tf32")), _error(ours_tf32),
                     _ms(ours_x3), _num(p.get("ratio_tf32x3")), fp64)
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _peaks_line(peaks: dict | None) -> list[str]:
    """The register-only loops' ceilings (benchmark/peaks.py), as a line, if measured."""
    if peaks is None:
        return []
    if "skipped" in peaks:
        return [f"register-only FFMA / mma.sync loops: not measured ({peaks['skipped']})"]
    rate = {k: f"{p['tflops']:.1f} TFLOP/s" if p["ok"] else "WRONG sums, no rate"
            for k, p in peaks.items()}
    return [(f"register-only loops (the most these instructions reach here): FFMA {rate['ffma']}, "
             f"mma.sync m16n8k8 TF32 {rate['mma_tf32']}")]


def summary(report: dict) -> str:
    """The lines under the table: what was measured where, the copy bandwidth and the
    geometric means against the targets."""
    env, s, copy = report["environment"], report["settings"], report["copy"]
    limits = report["limits"]
    lines = [f"gpuconv {s['backend']} backend vs cuDNN (PyTorch {env['versions'].get('torch')}, "
             f"cudnn.benchmark on) on {env['device']}, float32, median of {s['repeat']} "
             f"repetitions with L2 flushed; x cuDNN = cuDNN time / our time (above 1: "
             f"gpuconv is faster). Pooling is measured against PyTorch's own CUDA kernels "
             f"(ATen does not use cuDNN for 2-D pooling).",
             f"device-to-device copy: {copy['gbps']:.0f} GB/s (bytes read + written)"
             + (f"; strict-FP32 torch.mm {copy['sgemm_fp32']['n']}^3: "
                f"{copy['sgemm_fp32']['tflops']:.1f} TFLOP/s (the CUDA-core ceiling)"
                if "sgemm_fp32" in copy else "")
             + (f"; TF32 torch.mm: {copy['sgemm_tf32']['tflops']:.1f} TFLOP/s"
                if "sgemm_tf32" in copy else ""),
             *_peaks_line(copy.get("peaks")),
             "% peak: of " + (f"{limits['device']}'s {limits['fp32_tflops']:g} TFLOP/s FP32, "
                              f"{limits['tf32_tflops']:g} TFLOP/s TF32 dense, "
                              f"{limits['hbm_gbps']:g} GB/s HBM" if limits
                              else "nothing: no datasheet limits are known for this device")]
    for g in report["groups"]:
        if g["geomean"] is None:
            mean = f"n/a ({g['wrong']} of {g['count']} wrong or failed)"
        else:
            mean = _pct(g["geomean"]) if g["metric"] == "copy_fraction" else f"{g['geomean']:.2f}x"
        target = "" if g["target"] is None else (
            f"   target {g['target']:g}: {'met' if g['met'] else 'NOT met'}")
        lines.append(f"geometric mean, {g['name']:<30} {mean}{target}")
    return "\n".join(lines)


def _tile_sweeps(report: dict) -> list[tuple[str, str, str, dict]]:
    """(layer, pass, precision, sweep) of each of our conv sides with a tile sweep."""
    sweeps = []
    for layer in report["layers"]:
        for p in layer["passes"]:
            for precision in PRECISIONS:
                side = p["sides"].get(side_name(True, precision)) or {}
                if "tile_sweep" in side:
                    sweeps.append((layer["layer"]["name"], p["pass"], precision,
                                   side["tile_sweep"]))
    return sweeps


def _tile_ms(timing: dict) -> str:
    if "failed" in timing:
        return "FAILED"
    return f"{timing['median_ms']:.3f}" if timing["ok"] else "WRONG"


def _passes(count: int) -> str:
    return f"{count} pass" + ("" if count == 1 else "es")


def tile_table(report: dict) -> str:
    """The tile sweeps (``gpuconv bench --tiles``): for each conv pass and precision, the plan
    model's tile against the fastest and every tile's median ms; then, per precision, the
    plan's tile time over the fastest's, and for each tile its time over the fastest's and
    how far the plan model misjudged it (its measured over modelled time, relative to the
    fastest tile's; geometric means): above 1, the tile ran slower than the model says, and
    its rating in gpu_plan.TILE_EFFICIENCY divided by that figure would fit the run."""
    sweeps = _tile_sweeps(report)
    lines = ["| layer | pass | precision | plan tile | x fastest | fastest tile | median ms |",
             "|---|---|---|---|---:|---|---|"]
    for name, pass_, precision, sweep in sweeps:
        times = ", ".join(f"{tile} {_tile_ms(t)}" for tile, t in sweep["tiles"].items())
        lines.append(f"| {name} | {pass_} | {precision} | {sweep['plan']} | "
                     f"{_num(sweep.get('plan_over_best'))} | {sweep.get('best', '')} | {times} |")
    for precision in PRECISIONS:
        chosen = [s for *_, p, s in sweeps if p == precision and "best" in s]
        plan = [s["plan_over_best"] for s in chosen if "plan_over_best" in s]
        if plan:
            lines.append(f"{precision}: the plan's tile took {geomean(plan):.2f}x the fastest "
                         f"tile's time (geometric mean of {_passes(len(plan))}; the fastest in "
                         f"{sum(r == 1 for r in plan)})")
        slower: dict[str, list[float]] = {}
        misjudged: dict[str, list[float]] = {}
        for s in chosen:
            best = s["tiles"][s["best"]]
            for tile, timing in s["tiles"].items():
                if "median_ms" in timing:
                    slower.setdefault(tile, []).append(timing["median_ms"] / best["median_ms"])
                    misjudged.setdefault(tile, []).append(
                        slower[tile][-1] * best["model"]["model_us"] / timing["model"]["model_us"])
        for tile, r in slower.items():
            lines.append(f"  {tile:16s} {geomean(r):.2f}x the fastest (of {_passes(len(r))}; "
                         f"the fastest in {sum(x == 1 for x in r)}); measured / model "
                         f"{geomean(misjudged[tile]):.2f}")
    return "\n".join(lines)


def model_table(report: dict) -> str:
    """The plan model against the run: for each tile our conv sides ran (``plan``, the GPU
    backends' sides), at each precision, their measured median time over the model's
    (geometric mean over the passes it ran; only right results): a tile whose figure sits
    above its precision's others ran slower than the model's rating for it says
    (gpu_plan.TILE_EFFICIENCY; the figures share the model's bandwidth and launch terms)."""
    factors: dict[tuple[str, str], list[float]] = {}
    for layer in report["layers"]:
        for p in layer["passes"]:
            for precision in PRECISIONS:
                side = p["sides"].get(side_name(True, precision)) or {}
                plan = side.get("plan") or {}
                if side.get("ok") and "median_ms" in side and plan.get("model_us"):
                    factors.setdefault((precision, plan["tile"]), []).append(
                        1e3 * side["median_ms"] / plan["model_us"])
    if not factors:
        return "plan model: no conv side with a launch plan was timed"
    lines = ["plan model: measured / modelled time of each tile the plans chose"]
    lines += [f"  {precision:7s} {tile:20s} {geomean(r):6.2f} (of {_passes(len(r))})"
              for (precision, tile), r in sorted(factors.items())]
    return "\n".join(lines)


def write_json(report: dict, path: Path) -> None:
    """The report as JSON at ``path``, replaced whole (a reader never sees half a file)."""
    text = (json.dumps(report, indent=1) + "\n").encode()
    atomic_write(Path(path), lambda f: f.write(text))


def plot(report: dict, path: Path) -> None:
    """Bar chart of x cuDNN per layer and pass (FP32 and TF32), with the parity line."""
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on a GPU server
    import matplotlib.pyplot as plt

    rows = [(f"{layer['layer']['name']} {p['pass']}", p.get("ratio"), p.get("ratio_tf32"))
            for layer in report["layers"] for p in layer["passes"]]
    y = range(len(rows))
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.28 * len(rows)))
    ax.barh([i - 0.2 for i in y], [r[1] or 0 for r in rows], height=0.4, label="FP32 vs cuDNN")
    ax.barh([i + 0.2 for i in y], [r[2] or 0 for r in rows], height=0.4,
            label="TF32 vs cuDNN TF32")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(list(y), [r[0] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("cuDNN time / gpuconv time (above 1: gpuconv is faster; 0: wrong or not run)")
    ax.set_title(f"gpuconv {report['settings']['backend']} vs cuDNN on "
                 f"{report['environment']['device']}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
