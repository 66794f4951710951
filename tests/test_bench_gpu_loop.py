"""``gpuconv bench``'s measuring loop on the CPU: the NumPy backend against CPU torch with a
fake timer, through the same code that runs on the GPU, and the command's exits when torch
or its CUDA is missing."""

from __future__ import annotations

import dataclasses
import json
import re
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from gpuconv.benchmark import cudnn as gpu
from gpuconv.benchmark import results
from gpuconv.benchmark.suite import Layer
from gpuconv.cli import main

torch = pytest.importorskip("torch")

# --------------------------------------------------------------------------- the measuring loop on the CPU
TINY = (
    Layer("tiny_resnet", "", "conv", 2, 4, 7, 3, 6, 1, 1, family="resnet50"),
    Layer("tiny_depthwise", "", "conv", 2, 4, (6, 9), (3, 5), 4, 2, (1, 2), groups=4,
          family="depthwise"),
    Layer("tiny_transpose", "", "conv_transpose", 2, 4, 5, 4, 2, 2, 1, family="transposed"),
    Layer("tiny_max", "", "max_pool", 2, 3, 9, 3, None, 2, 1, family="pooling"),
    Layer("tiny_global", "", "global_avg_pool", 2, 3, 5, 5, None, None, family="pooling"),
)


class FakeTimer:
    """Runs the call; says gpuconv took 2 ms and torch 1 ms (so every ratio is 0.5)."""

    def __init__(self):
        self.calls = 0

    def time_ms(self, fn):
        fn()
        self.calls += 1
        return 2.0 if fn.func.__name__ == "gpuconv_pass" else 1.0


def cpu_harness(precisions=("ieee",), timer=None):
    return gpu.Harness("numpy", gpu.Bridge(np.ascontiguousarray, torch.from_numpy),
                       timer or FakeTimer(), precisions, repeat=3, warmup=1,
                       limits=results.H100_SXM5, copy_gbps=100.0)


def test_measuring_loop_checks_then_times_every_pass():
    h = cpu_harness()
    logged, kept = [], []
    report = gpu.build_report(list(TINY), h, {"device": "cpu"}, {"gbps": 100.0}, logged.append,
                              lambda partial: kept.append(json.loads(json.dumps(partial))))
    assert report["all_correct"], json.dumps(report["layers"], indent=1)[:3000]
    assert len(logged) == len(TINY) and "x0.50" in logged[0]
    # after each layer, the report so far (what a run cut short leaves in its JSON)
    assert [len(k["layers"]) for k in kept] == list(range(1, len(TINY) + 1))
    assert kept[0]["groups"] and kept[-1] == json.loads(json.dumps(report))
    conv_pass = report["layers"][0]["passes"][0]
    assert set(conv_pass["sides"]) == {"ours", "cudnn", "cudnn_tf32"}  # NumPy offers no TF32
    assert conv_pass["ratio"] == 0.5 and conv_pass["ratio_tf32"] is None
    assert conv_pass["sides"]["ours"]["error"] < 1e-5
    assert conv_pass["sides"]["ours"]["tflops"] == pytest.approx(
        TINY[0].forward_flops() / 2e-3 / 1e12)
    max_fwd = report["layers"][3]["passes"][0]["sides"]["ours"]
    assert max_fwd["indices_differ"] == 0 and max_fwd["copy_fraction"] > 0
    assert [p["pass"] for p in report["layers"][4]["passes"]] == ["forward", "grad_input"]
    sides_timed = sum(len(p["sides"]) for layer in report["layers"] for p in layer["passes"])
    assert h.timer.calls == 3 * sides_timed
    groups = {g["name"]: g["geomean"] for g in report["groups"]}
    assert groups["ResNet-50 forward"] == pytest.approx(0.5)
    assert groups["depthwise"] == pytest.approx(0.5)
    json.dumps(report, allow_nan=False)  # plain JSON all through


def test_an_empty_selection_gives_a_complete_report():
    """No layer (a selection of layers and ops that share none): groups and the verdict are
    still there for the table and the JSON."""
    report = gpu.build_report([], cpu_harness(), {}, {})
    assert report["layers"] == [] and report["all_correct"] and "groups" in report


def test_a_wrong_or_failing_kernel_is_not_timed(monkeypatch):
    real = gpu.gpuconv_pass

    def off_by_one_percent(layer, pass_, arrays, backend, precision):
        return {k: v * 1.01 for k, v in real(layer, pass_, arrays, backend, precision).items()}

    monkeypatch.setattr(gpu, "gpuconv_pass", off_by_one_percent)
    timer = FakeTimer()
    # asking the NumPy backend for TF32 makes that contender raise
    report = gpu.build_report([TINY[0]], cpu_harness(("ieee", "tf32"), timer), {}, {})
    forward = report["layers"][0]["passes"][0]
    assert not forward["sides"]["ours"]["ok"] and "median_ms" not in forward["sides"]["ours"]
    assert forward["sides"]["ours"]["error"] == pytest.approx(0.01, rel=1e-3)
    assert "ValueError" in forward["sides"]["ours_tf32"]["failed"]
    assert forward["ratio"] is None and not report["all_correct"]
    assert timer.calls == 3 * 2 * 3  # only cuDNN strict and TF32, on each of 3 passes
    assert report["groups"][0]["geomean"] is None


def test_bench_command_end_to_end_on_the_cpu(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu, "GPU_SUITE", TINY)
    monkeypatch.setattr(gpu, "open_harness", lambda backend, repeat, warmup: (
        cpu_harness(), {"device": "NVIDIA H100 80GB HBM3", "versions": {}}, {"gbps": 100.0}))
    out = []
    code = gpu.bench_command("cupy", None, ["pooling", "tiny_resnet"], 3, tmp_path / "r.json",
                             tmp_path / "r.png", out.append)
    assert code == 0
    text = "\n".join(out)
    assert "| tiny_max | forward |" in text and "geometric mean, ResNet-50 forward" in text
    assert json.loads((tmp_path / "r.json").read_text())["all_correct"]
    assert (tmp_path / "r.png").stat().st_size > 0


def test_global_pooling_is_timed_as_a_graph_of_calls():
    """With a replay builder (CUDA graphs on the GPU), global pooling's contenders are timed
    as GRAPH_CALLS calls cycling over operand copies larger than L2, reported per call;
    other layers are timed call by call."""
    built = []

    def replay(calls):
        built.append(calls)
        return lambda: [call() for call in calls]

    class GraphTimer:
        def time_ms(self, fn):
            fn()
            return 50.0

    h = dataclasses.replace(cpu_harness(timer=GraphTimer()), replay=replay, l2_bytes=1000)
    report = gpu.build_report([TINY[4], TINY[0]], h, {}, {})
    assert report["all_correct"]
    forward = report["layers"][0]["passes"][0]["sides"]
    assert forward["ours"]["median_ms"] == 50.0 / gpu.GRAPH_CALLS
    assert forward["ours"]["graph_calls"] == forward["cudnn"]["graph_calls"] == gpu.GRAPH_CALLS
    assert len(built) == 4 and all(len(calls) == gpu.GRAPH_CALLS for calls in built)  # 2 passes x 2 sides
    operand_bytes = (2 * 3 * 5 * 5 + 2 * 3) * 4  # input and grad_out
    copies = -(-gpu.FLUSH_L2_TIMES * 1000 // operand_bytes)
    assert len({id(call.args[2]) for call in built[0]}) == copies
    assert "graph_calls" not in report["layers"][1]["passes"][0]["sides"]["ours"]


def tile_of(kernel: str) -> str:
    """A kernel's name without its trailing flags (which the arrays' alignment sets)."""
    return re.sub(r"(, (true|false))+, \w+>$", ">", kernel)


def test_tile_sweep_times_every_tile_of_each_pass_forced(monkeypatch):
    """--tiles on the CuPy backend (its kernels in the host emulation): each conv pass's side
    checks and times the plan's tile and every other tile of its case, each forced (the
    launches say so); a wrong tile is reported and not timed; the fastest is named."""
    from gpuconv import backends
    from gpuconv.backends import autotune, cupy_backend
    from gpuconv.benchmark import plans
    from tests.cuda_host import harness
    if harness.compiler() is None:
        pytest.skip("no C++ compiler (g++)")
    ex = harness.HostExecutor(harness.build())
    monkeypatch.setattr(cupy_backend, "_EXECUTOR", ex)
    monkeypatch.setitem(backends._LOADED, "cupy", cupy_backend)
    monkeypatch.setitem(backends.TAKES, "cupy", ("numpy",))  # the emulation's device memory
    layer, wrong, fastest = TINY[0], "32x32", "64x128"
    real = gpu.gpuconv_pass

    def off_by_one_percent_on_one_tile(*args):
        scale = 1.01 if autotune.forced() == wrong else 1.0
        return {k: v * scale for k, v in real(*args).items()}

    launched = {}

    class TileTimer:
        """Records what each timed call launched; a forced tile takes 2 ms, ``fastest`` 1."""

        def time_ms(self, fn):
            start = len(ex.launched)
            fn()
            if fn.func is not gpu._with_tile:
                return 1.0
            launched[fn.args[0]] = ex.launched[start:]
            return {None: 3.0, fastest: 1.0}.get(fn.args[0], 2.0)

    monkeypatch.setattr(gpu, "gpuconv_pass", off_by_one_percent_on_one_tile)
    h = dataclasses.replace(cpu_harness(("ieee",), TileTimer()), backend="cupy", tiles=True,
                            repeat=1, warmup=0)
    report = gpu.build_report([layer], h, {}, {})
    for p in report["layers"][0]["passes"]:
        sweep = p["sides"]["ours"]["tile_sweep"]
        models = plans.pass_tiles(layer, p["pass"])
        names = list(models)
        assert list(sweep["tiles"]) == names and sweep["plan"] == names[0]
        assert all(sweep["tiles"][tile]["model"] == models[tile] for tile in names)
        own = gpu.plan_summary(layer, p["pass"], "ieee")
        assert models[names[0]] == {k: v for k, v in own.items() if k != "kernels"}
        assert {fastest, wrong} < set(names) and names[0] not in (fastest, wrong)
        assert not sweep["tiles"][wrong]["ok"] and "median_ms" not in sweep["tiles"][wrong]
        assert sweep["best"] == fastest and sweep["plan_over_best"] == 3.0
        for tile in names[1:]:
            if tile != wrong:
                plan = plans.layer_plans(layer, "ieee", ex.sm_count(), tile=tile)[p["pass"]]
                assert ([tile_of(k) for k in launched[tile]]
                        == [tile_of(launch.kernel) for launch in plan.launches]), tile
    assert not report["all_correct"]  # the wrong tile fails the run
    text = results.tile_table(report)
    assert f"| tiny_resnet | forward | ieee | {names[0]} | 3.00 | {fastest} |" in text
    assert f"{wrong} WRONG" in text and "ieee: the plan's tile took 3.00x the fastest" in text
    assert (f"  {fastest:16s} 1.00x the fastest (of 3 passes; the fastest in 3); "
            f"measured / model 1.00") in text


@pytest.mark.parametrize("hopper", [True, False])
def test_tile_sweep_runs_the_wgmma_tiles_on_hopper_alone(monkeypatch, hopper):
    """At "tf32" the sweep also checks and times the wgmma tiles, which the plans leave out
    until measured (gpu_plan.UNMEASURED), forced; on a device that cannot run them
    (cupy_backend.tile_runs), not at all."""
    from gpuconv import backends
    from gpuconv.backends import cupy_backend, gpu_plan
    from tests.cuda_host import harness
    if harness.compiler() is None:
        pytest.skip("no C++ compiler (g++)")
    ex = harness.HostExecutor(harness.build())
    ex.wgmma = hopper
    monkeypatch.setattr(cupy_backend, "_EXECUTOR", ex)
    monkeypatch.setitem(backends._LOADED, "cupy", cupy_backend)
    monkeypatch.setitem(backends.TAKES, "cupy", ("numpy",))
    h = dataclasses.replace(cpu_harness(("tf32",), FakeTimer()), backend="cupy", tiles=True,
                            repeat=1, warmup=0)
    report = gpu.build_report([TINY[0]], h, {}, {})
    for p in report["layers"][0]["passes"]:
        sweep = p["sides"]["ours_tf32"]["tile_sweep"]
        wgmma_tiles = {name for name in gpu_plan.TILES_FOR[("float32", "tf32")]
                       if gpu_plan.TILES[name].wgmma}
        assert sweep["plan"] not in wgmma_tiles
        assert (wgmma_tiles <= set(sweep["tiles"])) == hopper
        assert hopper or not wgmma_tiles & set(sweep["tiles"])
        assert all(tile["ok"] for tile in sweep["tiles"].values()), sweep
    wgmma = [k for k in ex.launched if k.startswith("conv_gemm_wgmma")]
    assert bool(wgmma) == hopper and set(wgmma) <= set(gpu_plan.wgmma_kernel_names())


def test_cudnn_precision_uses_one_api():
    from gpuconv.benchmark import torch_ops
    torch_ops.set_cudnn_precision("tf32")
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    torch_ops.set_cudnn_precision("ieee")
    assert torch.backends.cudnn.conv.fp32_precision == "ieee"


# --------------------------------------------------------------------------- the command
def invoke(*args):
    return CliRunner().invoke(main, ["bench", *args])


def test_bench_without_torch_or_its_cuda(monkeypatch):
    import gpuconv.backends
    monkeypatch.setattr(gpuconv.backends, "unavailable_reason", lambda name: None)
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    if not torch.cuda.is_available():
        result = invoke()
        assert result.exit_code == 1 and "sees no CUDA device" in result.output
        assert len(result.output.splitlines()) == 1
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    result = invoke()
    assert result.exit_code == 1 and "PyTorch, which is not installed" in result.output
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    assert "simulator is on" in invoke("--backend", "numba").output


@pytest.mark.parametrize("backend, precision, kernel", [("cupy", "ieee", "conv_gemm<float"),
                                                     ("cupy", "tf32x3", "conv_gemm_mma<3"),
                                                     ("numba", "ieee", "conv_gemm<numba-")])
def test_gpu_sides_record_their_launch_plan(backend, precision, kernel):
    """A GPU backend's conv side carries what was launched and the plan model's figures, so
    each measured ratio can be read against its tile, split-K, waves, fill and model time."""
    layer = next(layer for layer in gpu.GPU_SUITE if layer.name.startswith("resnet50_3x3"))
    for pass_ in layer.passes:
        summary = gpu.plan_summary(layer, pass_, precision, backend)
        assert any(k.startswith(kernel) for k in summary["kernels"]), summary
        assert {"tile", "splits", "waves", "fill", "mac_ratio", "model_us"} <= set(summary)


def test_model_table_compares_measured_and_modelled_times_per_tile():
    """Each tile's measured over modelled time, a geometric mean over the passes the plans gave
    it, per precision; wrong or untimed sides left out."""
    from gpuconv.benchmark import results

    def side(ms, tile, model_us, ok=True):
        return {"ok": ok, "median_ms": ms, "plan": {"tile": tile, "model_us": model_us}}
    ours, ours_tf32 = results.side_name(True, "ieee"), results.side_name(True, "tf32")
    report = {"layers": [
        {"passes": [{"sides": {ours: side(0.2, "numba-64x64", 100.0),
                               ours_tf32: side(0.05, "tf32-128x128", 100.0)}},
                    {"sides": {ours: side(0.8, "numba-64x64", 100.0)}}]},
        {"passes": [{"sides": {ours: side(0.1, "numba-128x64", 50.0),
                               ours_tf32: side(9.0, "tf32-128x128", 1.0, ok=False)}}]}]}
    lines = results.model_table(report).splitlines()
    assert lines[1:] == ["  ieee    numba-128x64           2.00 (of 1 pass)",
                         "  ieee    numba-64x64            4.00 (of 2 passes)",
                         "  tf32    tf32-128x128           0.50 (of 1 pass)"]
    assert "no conv side" in results.model_table({"layers": []})
