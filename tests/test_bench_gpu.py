"""``gpuconv bench`` without a GPU or torch: the suite's shapes and counts, the statistics,
ratios, geometric means and limit fractions, the table / JSON / chart, and the command's
usage errors. The measuring loop itself is in test_bench_gpu_loop.py."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gpuconv.benchmark import cudnn as gpu
from gpuconv.benchmark import measure, results
from gpuconv.benchmark.suite import CPU_SUITE, GPU_SUITE, Layer, select
from gpuconv.cli import main
from gpuconv.shapes import conv_flops

ROOT = Path(__file__).resolve().parents[1]

BY_NAME = {layer.name: layer for layer in GPU_SUITE}


# --------------------------------------------------------------------------- the suite
# name -> (input shape, weight shape, output shape), as issue 3 lists the layers
EXPECTED = {
    "resnet50_3x3_56": ((32, 64, 56, 56), (64, 64, 3, 3), (32, 64, 56, 56)),
    "resnet50_1x1_56": ((32, 64, 56, 56), (256, 64, 1, 1), (32, 256, 56, 56)),
    "resnet50_1x1_s2_56": ((32, 256, 56, 56), (128, 256, 1, 1), (32, 128, 28, 28)),
    "resnet50_3x3_28": ((32, 128, 28, 28), (128, 128, 3, 3), (32, 128, 28, 28)),
    "resnet50_3x3_14": ((32, 256, 14, 14), (256, 256, 3, 3), (32, 256, 14, 14)),
    "resnet50_3x3_7": ((32, 512, 7, 7), (512, 512, 3, 3), (32, 512, 7, 7)),
    "resnet50_stem_7x7_s2": ((32, 3, 224, 224), (64, 3, 7, 7), (32, 64, 112, 112)),
    "vgg_3x3_56": ((8, 128, 56, 56), (256, 128, 3, 3), (8, 256, 56, 56)),
    "inception_5x5_28": ((16, 192, 28, 28), (32, 192, 5, 5), (16, 32, 28, 28)),
    "deepspeech_5x20_s2": ((16, 1, 161, 700), (32, 1, 5, 20), (16, 32, 79, 341)),
    "dilated_3x3_d2": ((16, 64, 64, 64), (64, 64, 3, 3), (16, 64, 64, 64)),
    "dilated_3x3_d4": ((16, 64, 64, 64), (64, 64, 3, 3), (16, 64, 64, 64)),
    "depthwise_3x3_56": ((32, 256, 56, 56), (256, 1, 3, 3), (32, 256, 56, 56)),
    "depthwise_5x5_56": ((32, 256, 56, 56), (256, 1, 5, 5), (32, 256, 56, 56)),
    "transpose_4x4_s2_16": ((16, 256, 16, 16), (256, 128, 4, 4), (16, 128, 32, 32)),
    "maxpool_3x3_s2_112": ((32, 64, 112, 112), None, (32, 64, 56, 56)),
    "global_avgpool_7": ((32, 2048, 7, 7), None, (32, 2048, 1, 1)),
}


def test_gpu_suite_is_the_issue_list():
    assert list(BY_NAME) == list(EXPECTED)
    for name, (x, w, y) in EXPECTED.items():
        layer = BY_NAME[name]
        assert (layer.input_shape, layer.weight_shape, layer.output_shape) == (x, w, y), name
        assert layer.passes == (("forward", "grad_input", "grad_weight") if w else
                                ("forward", "grad_input"))
    assert BY_NAME["dilated_3x3_d4"].dilation == (4, 4)
    assert BY_NAME["depthwise_5x5_56"].groups == 256
    assert {layer.family for layer in GPU_SUITE if layer.name.startswith("resnet50")} == \
        {"resnet50"}


@pytest.mark.parametrize("layer", GPU_SUITE + CPU_SUITE, ids=lambda layer: layer.name)
def test_output_shapes_agree_with_torch(layer):
    """PyTorch's own shape rules, on meta tensors (no memory, no arithmetic)."""
    torch = pytest.importorskip("torch")
    from gpuconv.benchmark import torch_ops
    t = {"input": torch.empty(layer.input_shape, device="meta")}
    if layer.is_conv:
        t["weight"] = torch.empty(layer.weight_shape, device="meta")
        t["bias"] = torch.empty(layer.out_channels, device="meta")
    out = torch_ops.forward(layer, t)
    assert tuple((out[0] if layer.kind == "max_pool" else out).shape) == layer.output_shape


def test_flops_and_bytes():
    resnet = BY_NAME["resnet50_3x3_56"]
    assert resnet.forward_flops() == conv_flops(32, 64, 64, (3, 3), (56, 56)) \
        == 2 * 32 * 64 * 64 * 9 * 56 * 56
    assert BY_NAME["deepspeech_5x20_s2"].forward_flops() == 2 * 16 * 32 * 1 * 100 * 79 * 341
    assert BY_NAME["depthwise_3x3_56"].forward_flops() == 2 * 32 * 256 * 9 * 56 * 56
    # the transposed conv costs what the conv it transposes costs
    assert BY_NAME["transpose_4x4_s2_16"].forward_flops() == conv_flops(16, 256, 128, (4, 4),
                                                                        (16, 16))
    x, w, y = 32 * 64 * 56 * 56, 64 * 64 * 9, 32 * 64 * 56 * 56
    assert resnet.bytes_moved("forward") == 4 * (x + w + 64 + y)
    assert resnet.bytes_moved("grad_weight") == 4 * (y + x + w)
    pool, pooled = 32 * 64 * 112 * 112, 32 * 64 * 56 * 56
    assert BY_NAME["maxpool_3x3_s2_112"].bytes_moved("forward") == 4 * (pool + pooled) + 8 * pooled
    assert BY_NAME["maxpool_3x3_s2_112"].bytes_moved("grad_input") == 4 * (pooled + pool) \
        + 8 * pooled
    assert BY_NAME["global_avgpool_7"].bytes_moved("forward") == 4 * 32 * 2048 * 50
    assert BY_NAME["global_avgpool_7"].forward_flops() is None


def test_layer_normalises_and_validates():
    layer = Layer("l", "", "conv", 1, 2, (5, 9), (3, 1), 4, 2, (1, 0))
    assert (layer.size, layer.kernel, layer.stride, layer.padding) == ((5, 9), (3, 1), (2, 2),
                                                                       (1, 0))
    assert Layer("p", "", "avg_pool", 1, 1, 8, 2, None, None).stride == (2, 2)
    with pytest.raises(ValueError, match="kind"):
        Layer("x", "", "pool", 1, 1, 8, 2)
    with pytest.raises(ValueError, match="whole plane"):
        Layer("g", "", "global_avg_pool", 1, 1, 8, 2)


def test_select_by_name_family_and_op():
    assert [x.name for x in select(GPU_SUITE, ["resnet50"])] == list(EXPECTED)[:7]
    assert [x.name for x in select(GPU_SUITE, ops=["max_pool2d"])] == ["maxpool_3x3_s2_112"]
    both = select(GPU_SUITE, ["pooling", "depthwise_3x3_56", "maxpool_3x3_s2_112"],
                  ["global_avg_pool2d", "conv2d"])
    assert [x.name for x in both] == ["global_avgpool_7", "depthwise_3x3_56"]
    assert select(GPU_SUITE) == list(GPU_SUITE)
    with pytest.raises(ValueError, match="unknown layer"):
        select(GPU_SUITE, ["resnet"])
    with pytest.raises(ValueError, match="unknown op"):
        select(GPU_SUITE, ops=["conv3d"])


# --------------------------------------------------------------------------- statistics
def test_summarize_median_and_percentiles():
    s = measure.summarize([10, 1, 9, 2, 8, 3, 7, 4, 6, 5])
    assert (s["median_ms"], s["p20_ms"], s["p80_ms"]) == pytest.approx((5.5, 2.8, 8.2))
    assert len(s["samples_ms"]) == 10


def test_geomean_relative_error_and_indices():
    assert measure.geomean([1, 4]) == pytest.approx(2)
    assert measure.geomean([2, None, 0, 8]) == pytest.approx(4)
    assert measure.geomean([None]) is None
    want = np.array([[1.0, -4.0], [2.0, 0.0]])
    assert measure.relative_error(want + [[0, 0.4], [0, 0]], want) == pytest.approx(0.1)
    assert measure.relative_error(want[:1], want) == math.inf
    assert measure.count_differing(np.array([1, 2, 3]), np.array([1, 0, 3])) == 1


def _recorded(repeat: int, warmup: int, **kwargs):
    """``measure.interleaved`` of two functions that log their names, with a timer whose
    "time" is the number of calls made so far: (the calls in order, the samples)."""
    calls = []

    class Recorder:
        def time_ms(self, fn):
            fn()
            return float(len(calls))

    samples = measure.interleaved(Recorder(), [partial(calls.append, "a"),
                                               partial(calls.append, "b")], repeat, warmup,
                                  **kwargs)
    return calls, samples


def test_interleaved_warms_up_then_alternates():
    assert _recorded(2, 1) == (["a", "b"] * 3, [[3.0, 5.0], [4.0, 6.0]])


def test_interleaved_in_blocks_settles_after_each_switch():
    calls, samples = _recorded(5, 1, block=3)
    # warm-up, then per block one untimed call and up to 3 timed ones; 5 samples each
    assert calls == ["a", "b"] + ["a"] * 4 + ["b"] * 4 + ["a"] * 3 + ["b"] * 3
    assert samples == [[4.0, 5.0, 6.0, 12.0, 13.0], [8.0, 9.0, 10.0, 15.0, 16.0]]


def test_interleaved_settles_for_a_time_with_untimed_calls(monkeypatch):
    clock = iter(range(1000))  # each reading 10 ms after the last
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(clock) * 0.01)
    calls, _ = _recorded(2, 0, block=2, settle_s=0.025)
    # per block: untimed calls until 25 ms have passed (three readings later), then 2 timed
    assert calls == ["a"] * 5 + ["b"] * 5


# --------------------------------------------------------------------------- derived figures
def test_limits_are_per_device():
    assert results.limits_for("NVIDIA H100 80GB HBM3") is results.H100_SXM5
    assert results.limits_for("NVIDIA H100 PCIe") is None
    assert (results.H100_SXM5.fp32_tflops, results.H100_SXM5.tf32_tflops,
            results.H100_SXM5.hbm_gbps) == (67.0, 495.0, 3350.0)


def test_side_metrics_and_ratio():
    h100 = results.H100_SXM5
    conv = results.side_metrics({"median_ms": 1.0}, 67 * 10**9, 0, "ieee", h100, None)
    assert conv == pytest.approx({"tflops": 67.0, "peak_fraction": 1.0})
    tf32 = results.side_metrics({"median_ms": 0.5}, 99 * 10**9, 0, "tf32", h100, None)
    assert tf32["peak_fraction"] == pytest.approx(0.4)
    pool = results.side_metrics({"median_ms": 2.0}, None, 5 * 10**9, "ieee", h100, 3000.0)
    assert pool == pytest.approx({"gbps": 2500.0, "peak_fraction": 2500 / 3350,
                                  "copy_fraction": 2500 / 3000})
    assert results.side_metrics({"median_ms": 1.0}, 10**9, 0, "ieee", None, None) == \
        {"tflops": 1.0, "peak_fraction": None}
    sides = {"ours": {"median_ms": 2.0}, "cudnn": {"median_ms": 1.0}, "ours_tf32": {"ok": False},
             "cudnn_tf32": {"median_ms": 0.5}}
    assert results.ratio(sides, "ieee") == 0.5
    assert results.ratio(sides, "tf32") is None


def _side(ms, ok=True, **extra):
    return {"ok": ok, "error": 1e-7, "tolerance": 1e-4, "median_ms": ms, "p20_ms": ms * 0.9,
            "p80_ms": ms * 1.1, "samples_ms": [ms], **extra} if ok else \
        {"ok": False, "error": 0.5, "tolerance": 1e-4}


def _pass(name, ours, cudnn, tf32=None, **metrics):
    sides = {"ours": ours, "cudnn": cudnn}
    if tf32:
        sides.update(ours_tf32=tf32[0], cudnn_tf32=tf32[1])
    return {"pass": name, "flops": 10**9, "bytes": 10**9, "sides": sides,
            "ratio": results.ratio(sides, "ieee"), "ratio_tf32": results.ratio(sides, "tf32"),
            **metrics}


def synthetic_report(backend="cupy"):
    """Two ResNet-50 layers (one grad-weight wrong), a pooling layer, as gpu.py builds them."""
    resnet = [{"layer": {"name": f"resnet50_{i}", "family": "resnet50"}, "passes": [
        _pass("forward", _side(1.0, tflops=1.0, peak_fraction=0.01), _side(2.0 * i),
              (_side(0.5, tflops=2.0, peak_fraction=0.004), _side(0.5))),
        _pass("grad_input", _side(1.0, tflops=1.0), _side(0.5)),
        _pass("grad_weight", _side(1.0, ok=i == 1, tflops=1.0), _side(1.0))]} for i in (1, 2)]
    pool = {"layer": {"name": "maxpool", "family": "pooling"}, "passes": [
        _pass(p, _side(1.0, gbps=2000.0, peak_fraction=0.6, copy_fraction=0.8,
                       indices_differ=0), _side(1.0)) for p in ("forward", "grad_input")]}
    report = {"environment": {"device": "NVIDIA H100 80GB HBM3", "versions": {"torch": "2.11"}},
              "settings": {"backend": backend, "repeat": 30},
              "limits": vars(results.H100_SXM5), "copy": {"gbps": 2500.0},
              "layers": resnet + [pool]}
    report["groups"] = results.group_means(report)
    return report


def test_group_means_refuse_wrong_members():
    groups = {g["name"]: g for g in synthetic_report()["groups"]}
    fwd = groups["ResNet-50 forward"]
    assert fwd["geomean"] == pytest.approx(math.sqrt(2 * 4)) and fwd["count"] == 2
    assert fwd["target"] == 1.0 and fwd["met"]
    assert groups["ResNet-50 grad-input"]["geomean"] == pytest.approx(0.5)
    assert not groups["ResNet-50 grad-input"]["met"]
    assert groups["ResNet-50 grad-weight"]["geomean"] is None
    assert groups["ResNet-50 grad-weight"]["wrong"] == 1
    assert groups["TF32 (ResNet-50, all passes)"]["count"] == 2
    assert groups["pooling, of copy bandwidth"]["geomean"] == pytest.approx(0.8)
    assert "dilated" not in groups  # no member was run
    numba = {g["name"]: g for g in synthetic_report("numba")["groups"]}
    assert numba["ResNet-50 forward"]["target"] == 0.5
    assert numba["TF32 (ResNet-50, all passes)"]["target"] is None


def test_table_summary_json_and_plot(tmp_path):
    report = synthetic_report()
    text = results.table(report)
    assert text.splitlines()[0].startswith("| layer | pass | ours ms (p20-p80) | cuDNN ms |")
    assert len(text.splitlines()) == 2 + 3 * 2 + 2
    assert "| resnet50_2 | forward | 1.000 (0.900-1.100) | 4.000 (3.600-4.400) | 4.00 |" in text
    assert "| WRONG |" in text and "2000 GB/s" in text and "80%" in text
    lines = results.summary(report)
    assert "above 1: gpuconv is faster" in lines and "67 TFLOP/s FP32" in lines
    assert "ResNet-50 forward" in lines and "2.83x" in lines and "target 1: met" in lines
    assert "n/a (1 of 2 wrong or failed)" in lines and "NOT met" in lines
    assert re.search(r"pooling, of copy bandwidth +80%   target 0.8: met", lines)
    report["limits"] = None
    assert "no datasheet limits" in results.summary(report)
    results.write_json(report, tmp_path / "sub" / "r.json")
    assert json.loads((tmp_path / "sub" / "r.json").read_text())["groups"] == report["groups"]
    results.plot(report, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- the command
def invoke(*args):
    return CliRunner().invoke(main, ["bench", *args])


def test_bench_without_a_usable_backend_is_a_one_line_error(monkeypatch):
    import gpuconv.backends
    monkeypatch.setattr(gpuconv.backends, "unavailable_reason", lambda name: "no CUDA device")
    result = invoke("--backend", "numba")
    assert result.exit_code == 1
    assert result.output == "Error: backend 'numba' is unavailable: no CUDA device\n"


@pytest.mark.parametrize("args, message", [
    (("--layers", "nope"), "unknown layer"), (("--ops", "conv3d"), "unknown op"),
    (("--repeat", "0"), "--repeat"), (("--backend", "numpy"), "--backend"),
    (("--backend", "numba", "--tiles"), "the CuPy backend's tiles")])
def test_bench_usage_errors(args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output


def test_bench_help_states_the_defaults():
    text = invoke("--help").output
    assert f"default {gpu.DEFAULT_REPEAT}" in text and "cuDNN time / our time" in text


def test_the_bench_modules_do_not_import_torch():
    code = ("import sys, gpuconv.benchmark.cudnn, gpuconv.benchmark.results; "
            "from gpuconv.cli import main; "
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
