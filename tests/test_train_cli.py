"""``gpuconv train / evaluate / predict`` end to end on a tiny IDX dataset: the files a run
writes, resuming to the same model as an uninterrupted run, and clear errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from gpuconv.cli import main
from gpuconv.nn.model import Sequential
from square_classes import write_square_classes


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """240 training and 40 test images of 10 classes, each class a brighter square."""
    return write_square_classes(tmp_path_factory.mktemp("idx"), 240, 40, ".gz")


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def _train(data_dir, out, *extra):
    return _run("train", "--device", "cpu", "--model", "slides", "--data", data_dir,
                "--batch-size", "32", "--out", out, *extra)


def test_train_writes_model_metrics_and_pictures(data_dir, tmp_path):
    result = _train(data_dir, tmp_path, "--epochs", "2")
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "test accuracy" in result.output
    for name in ("model.npz", "checkpoint.npz", "metrics.json", "learning_curves.png",
                 "filters.png", "feature_maps.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert len(metrics["history"]["val_accuracy"]) == 2
    assert metrics["device"].startswith("cpu") and metrics["backend"] == "numpy"
    assert metrics["seed"] == 0 and metrics["train_seconds"] > 0

    evaluated = _run("evaluate", tmp_path / "model.npz", "--data", data_dir, "--device", "cpu")
    assert evaluated.exit_code == 0, evaluated.output
    assert f"test accuracy {metrics['test_accuracy']:.4f}" in evaluated.output


def test_resume_gives_the_same_model_as_an_uninterrupted_run(data_dir, tmp_path, monkeypatch):
    assert _train(data_dir, tmp_path / "straight", "--epochs", "3").exit_code == 0
    straight = Sequential.load(tmp_path / "straight" / "model.npz")

    # Ctrl-C right after the first epoch's checkpoint is written
    from gpuconv.nn import ModelCheckpoint
    save = ModelCheckpoint.on_epoch_end

    def interrupt(self, epoch, logs):
        save(self, epoch, logs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ModelCheckpoint, "on_epoch_end", interrupt)
    interrupted = tmp_path / "interrupted"
    stopped = _train(data_dir, interrupted, "--epochs", "3")
    assert stopped.exit_code == 130 and "Traceback" not in stopped.output
    assert f"gpuconv train --resume {interrupted / 'checkpoint.npz'} --data {data_dir}" \
        in stopped.output
    assert not (interrupted / "model.npz").exists()
    monkeypatch.setattr(ModelCheckpoint, "on_epoch_end", save)

    resumed = _run("train", "--device", "cpu", "--data", data_dir, "--out", interrupted,
                   "--resume", interrupted / "checkpoint.npz")
    assert resumed.exit_code == 0, resumed.output
    assert "after epoch 1" in resumed.output
    again = Sequential.load(interrupted / "model.npz")
    for key, value in straight.parameters().items():
        np.testing.assert_array_equal(again.parameters()[key], value, err_msg=key)
    assert again.history.history["val_loss"] == straight.history.history["val_loss"]


def test_predict_names_the_classes_of_pictures(data_dir, tmp_path):
    from PIL import Image
    assert _train(data_dir, tmp_path, "--epochs", "1").exit_code == 0
    picture = tmp_path / "shirt.png"
    Image.fromarray(np.full((40, 40, 3), 230, np.uint8)).save(picture)
    result = _run("predict", tmp_path / "model.npz", picture, "--top", "2", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "try --invert" in result.output
    line = next(l for l in result.output.splitlines() if l.startswith(str(picture)))
    assert line.count("%") == 2


@pytest.mark.parametrize("args, message", [
    (["train", "--device", "cuda"], "device 'cuda' needs"),
    (["train", "--data", "/nonexistent-dir"], "does not exist"),
    (["train", "--model", "resnet"], "Invalid value for '--model'"),
    (["train", "--epochs", "0"], "Invalid value for '--epochs'"),
    (["evaluate", "/nonexistent.npz"], "does not exist"),
])
def test_bad_requests_are_clear_errors(args, message):
    from gpuconv.backends import unavailable_reason
    if "cuda" in args and unavailable_reason("cupy") is None:
        pytest.skip("a GPU is available")
    result = _run(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_resume_from_a_plain_model_file_is_refused(data_dir, tmp_path):
    assert _train(data_dir, tmp_path, "--epochs", "1").exit_code == 0
    result = _run("train", "--device", "cpu", "--data", data_dir, "--out", tmp_path / "again",
                  "--resume", tmp_path / "model.npz")
    assert result.exit_code == 2
    assert "without training state" in result.output


# --------------------------------------------------------------------------- JSON, run directories
def test_json_goes_to_stdout_alone_and_runs_get_their_own_directory(data_dir, tmp_path,
                                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ("train", "--device", "cpu", "--model", "slides", "--data", data_dir, "--epochs", "1",
            "--json")
    first, second = _run(*args), _run(*args)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    summaries = [json.loads(r.stdout) for r in (first, second)]
    assert "epoch 1/1" in first.stderr and "wrote " in first.stderr
    outs = [Path(s["out"]) for s in summaries]
    assert outs[0] != outs[1] and all(p.parent == Path("runs") for p in outs)
    assert Path("runs/latest").resolve() == outs[1].resolve()
    assert all(Path(f).exists() for f in summaries[1]["files"])
    assert summaries[1]["test_accuracy"] == json.loads((outs[1] / "metrics.json").read_text())[
        "test_accuracy"]

    model = outs[1] / "model.npz"
    evaluated = json.loads(_run("evaluate", model, "--data", data_dir, "--json").stdout)
    assert evaluated["test_accuracy"] == summaries[1]["test_accuracy"]
    assert evaluated["test_images"] == 40
    predicted = json.loads(_run("predict", model, data_dir / "t10k-images-idx3-ubyte.gz",
                                "--top", "2", "--json").stdout)
    assert len(predicted) == 40 and len(predicted[0]["classes"]) == 2
    assert sum(c["probability"] for c in predicted[0]["classes"]) <= 1.0


def test_an_existing_run_is_replaced_only_with_overwrite(data_dir, tmp_path):
    assert _train(data_dir, tmp_path, "--epochs", "1").exit_code == 0
    before = (tmp_path / "model.npz").read_bytes()
    refused = _train(data_dir, tmp_path, "--epochs", "1")
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    assert (tmp_path / "model.npz").read_bytes() == before
    assert _train(data_dir, tmp_path, "--epochs", "1", "--overwrite").exit_code == 0


def test_info_json_lists_every_backend():
    from gpuconv.backends import BACKENDS
    info = json.loads(_run("info", "--json").stdout)
    assert set(info["backends"]) == set(BACKENDS) and info["backends"]["numpy"] is None
    assert "later releases" not in _run("--help").output


def test_missing_pillow_and_matplotlib_say_what_to_install(data_dir, tmp_path, monkeypatch):
    import gpuconv
    for name in ("matplotlib", "gpuconv.plots"):
        monkeypatch.setitem(sys.modules, name, None)  # import fails as when not installed
    monkeypatch.delattr(gpuconv, "plots", raising=False)
    result = _train(data_dir, tmp_path, "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert "pip install 'gpuconv[train]'" in result.output
    assert f"wrote {tmp_path / 'model.npz'}" in result.output
    picture = tmp_path / "shirt.png"
    picture.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "PIL", None)
    refused = _run("predict", tmp_path / "model.npz", picture, "--device", "cpu")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "needs Pillow: pip install 'gpuconv[train]'" in refused.output


@pytest.mark.parametrize("flag, graph", [((), True), (("--no-graph",), False)])
def test_graph_flag_reaches_the_model(data_dir, tmp_path, monkeypatch, flag, graph):
    seen, fit = [], Sequential.fit
    monkeypatch.setattr(Sequential, "fit",
                        lambda self, *a, **k: (seen.append(self.graph), fit(self, *a, **k))[1])
    result = _train(data_dir, tmp_path, "--epochs", "1", *flag)
    assert result.exit_code == 0, result.output
    assert seen == [graph]
