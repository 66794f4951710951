"""The CPU benchmark's code path on tiny layers (nothing meaningful is timed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

pytest.importorskip("torch")

from bench import cpu  # noqa: E402
from gpuconv import nn  # noqa: E402
from gpuconv.benchmark import suite as L  # noqa: E402

TINY = [
    L.Layer("tiny_conv", "tiny grouped strided conv", "conv", 2, 4, 9, 3, 6, 2, 1, groups=2),
    L.Layer("tiny_dilated", "tiny dilated conv", "conv", 2, 3, 8, 3, 4, 1, 2, dilation=2),
    L.Layer("tiny_transpose", "tiny transposed conv", "conv_transpose", 2, 4, 5, 4, 2, 2, 1),
    L.Layer("tiny_max", "tiny max pool", "max_pool", 2, 3, 9, 3, None, 2, 1),
    L.Layer("tiny_avg", "tiny avg pool", "avg_pool", 2, 3, 8, 2, None, None),
]


def test_suite_is_well_formed():
    by_name = {layer.name: layer for layer in L.CPU_SUITE}
    assert len(L.CPU_SUITE) == 20 and len(by_name) == 20
    for layer in L.CPU_SUITE:
        assert layer.batch >= 8
        assert all(n > 0 for n in layer.output_shape)
        assert (layer.forward_flops() is not None) == layer.is_conv
    assert by_name["resnet50_3x3"].output_shape == (8, 64, 56, 56)
    assert by_name["stem_7x7_s2"].output_shape == (8, 64, 112, 112)
    assert by_name["transpose_4x4_s2"].output_shape == (16, 128, 32, 32)
    assert by_name["maxpool_3x3_s2"].output_shape == (8, 64, 56, 56)
    assert by_name["avgpool_2x2"].output_shape == (16, 64, 28, 28)
    assert by_name["transpose_3x3_s2"].output_shape == (16, 64, 56, 56)
    assert by_name["stem_7x7_s2_112"].output_shape == (8, 64, 56, 56)
    assert by_name["lenet_conv2"].output_shape == (128, 64, 14, 14)
    with pytest.raises(ValueError, match="unknown layer"):
        L.select(L.CPU_SUITE, ["nope"])


@pytest.mark.parametrize("layer", TINY, ids=lambda layer: layer.name)
def test_harness_checks_and_times_a_tiny_layer(layer):
    r = cpu.measure_layer(layer, repeat=1, warmup=0)
    assert r["check"]["ok"], r["check"]
    for p in ("forward", "backward"):
        assert r[p]["ratio"] > 0
        assert len(r[p]["gpuconv"]["samples_ms"]) == 1


def test_a_wrong_kernel_reports_no_time(monkeypatch):
    real = L.gpuconv_forward
    monkeypatch.setattr(L, "gpuconv_forward", lambda layer, a, backend=None:
                        real(layer, a, backend) * 1.01)
    r = cpu.measure_layer(TINY[0], repeat=1, warmup=0)
    assert not r["check"]["ok"] and "forward" not in r


def test_report_json_and_tables(monkeypatch, tmp_path):
    monkeypatch.setattr(L, "CPU_SUITE", tuple(TINY[-2:]))
    out = tmp_path / "r.json"
    assert cpu.main(["--quick", "--layers", "tiny_max", "tiny_avg", "--json", str(out),
                     "--readme"]) == 0
    report = json.loads(out.read_text())
    assert report["all_correct"] and len(report["layers"]) == 2
    assert report["machine"]["cores"] >= 1 and report["machine"]["torch"]
    assert "| **geometric mean** |" in cpu.markdown(report)
    assert "geometric mean ratio" in cpu.table(report)
    copies = report["copy_scaling"]
    assert all(copies[where]["one_thread_gbs"] > 0 for where in ("dram", "cache"))
    assert "Copy bandwidth through the pool" in cpu.markdown(report)


@pytest.mark.parametrize("model", ["slides", "allconv"])
def test_train_epoch_bench_runs_both_libraries(model, tmp_path, capsys):
    from bench import train_epoch
    out = tmp_path / "epoch.json"
    assert train_epoch.main(["--model", model, "--images", "64", "--batch-size", "32",
                             "--repeat", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())  # rewritten after each round: the last one's
    assert report["model"] == model and report["images"] == 64 and report["repeat"] == 2
    assert all(len(samples) == 2 for samples in report["samples"].values())
    assert report["ratio"] == pytest.approx(report["gpuconv_seconds"] / report["torch_seconds"])
    assert "s/epoch" in capsys.readouterr().out


def test_train_epoch_bench_needs_a_timed_round():
    from bench import train_epoch
    with pytest.raises(SystemExit):
        train_epoch.main(["--repeat", "0"])


def test_train_epoch_bench_refuses_models_without_a_torch_twin():
    from bench import train_epoch
    model = nn.Sequential([nn.Conv2DTranspose(2, 3)]).build((1, 4, 4))
    with pytest.raises(ValueError, match="no PyTorch twin for Conv2DTranspose"):
        train_epoch.torch_twin(model, pytest.importorskip("torch"))


def test_train_epoch_bench_augmentation_twins():
    """vgg's RandomShift and RandomFlip have PyTorch twins: identity at inference, a shifted
    or mirrored copy of each image while training."""
    torch = pytest.importorskip("torch")
    from bench import train_epoch
    model = nn.Sequential([nn.RandomShift(2), nn.RandomFlip()]).build((2, 6, 5))
    twin = train_epoch.torch_twin(model, torch)
    x = torch.arange(4 * 2 * 6 * 5, dtype=torch.float32).reshape(4, 2, 6, 5) + 1
    assert torch.equal(twin.eval()(x), x)
    shifted = twin[0].train()(x)
    assert shifted.shape == x.shape and set(shifted.unique().tolist()) <= set(x.unique().tolist()) | {0.0}
    flipped = twin[1].train()(x)
    assert all(torch.equal(f, i) or torch.equal(f, i.flip(-1)) for f, i in zip(flipped, x))


def test_train_epoch_bench_skips_cuda_without_a_gpu(monkeypatch, capsys):
    from bench import train_epoch
    monkeypatch.setattr(train_epoch, "cuda_unavailable", lambda: "no CUDA device")
    assert train_epoch.main(["--device", "cuda", "--images", "32", "--repeat", "1"]) == 0
    assert "skipped" in capsys.readouterr().out


def test_host_overhead_bench_measures_every_op(tmp_path):
    from bench import host
    from gpuconv import functional
    out = tmp_path / "host.json"
    assert host.main(["--quick", "--json", str(out)]) == 0
    report = json.loads(out.read_text())["runs"]["current"]
    for backend in ("cupy", "numba"):
        results = report["backends"][backend]
        assert list(results) == list(functional.__all__)
        timed = [r for r in results.values() if "us" in r]
        assert timed and all(r["us"] > 0 and r["launches"] >= 1 for r in timed)


def test_host_overhead_on_a_device_times_real_calls(monkeypatch):
    """--device's loop, with NumPy arrays standing in for device arrays (the NumPy backend
    runs the ops) and a counting synchronisation: every op timed, synchronised per loop."""
    from bench import host
    from gpuconv import functional
    synced = []
    monkeypatch.setattr(host, "device_arrays", lambda backend: (
        lambda shape, dtype=None: np.zeros(shape, dtype or "float32"), lambda: synced.append(1)))
    monkeypatch.setattr(host, "LOOP", 2)
    results = host.measure_device("cupy", repeat=2)
    assert list(results) == list(functional.__all__)
    assert all(r["us"] >= 0 and r["wall_us"] > 0 for r in results.values())
    assert len(synced) == 3 * len(results)  # after the first call, then after each loop
