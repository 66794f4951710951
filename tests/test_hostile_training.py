"""Faults around a training run (issue 16): divergence in the last step or in the metrics,
an unusable or full output directory, two runs on one directory, stale temporary files,
resumes that contradict their checkpoint or change BLAS's thread count, and predict with
any class count. Each ends in a clear error (or a warning) and never in a written model
that is not finite."""

from __future__ import annotations

import errno
import fcntl
import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from gpuconv.cli import main
from gpuconv.data import write_idx
from gpuconv.nn import TrainingDiverged
from gpuconv.nn.model import Sequential
from gpuconv.training import LOCK, RunOutputError, TrainOptions, predict, train
from square_classes import write_square_classes


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """60 training and 20 test images of 10 classes, each class a brighter square."""
    return write_square_classes(tmp_path_factory.mktemp("idx"), 60, 20)


@pytest.fixture(autouse=True)
def no_pictures(monkeypatch):
    """The plots cost seconds and are not what these tests are about."""
    from gpuconv import training
    monkeypatch.setattr(training, "_pictures", lambda *args: [])


def _options(data_dir, out, **changes):
    """``out`` None: the default, a new runs/<time> below the working directory."""
    base = dict(model="slides", device="cpu", data=str(data_dir), epochs=1, batch_size=64,
                out=None if out is None else str(out))
    return TrainOptions(**(base | changes))


@pytest.fixture(scope="module")
def finished_run(data_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    train(_options(data_dir, out, epochs=2), echo=lambda line: None)
    return out


def _lines():
    lines = []
    return lines, lines.append


# --------------------------------------------------------------------------- divergence
@pytest.mark.parametrize("epochs", [1, 3])
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")  # it diverges
def test_a_diverged_last_step_is_caught_and_never_written(data_dir, tmp_path, epochs):
    """One step per epoch: the update after the last loss check diverges the weights."""
    options = _options(data_dir, tmp_path, epochs=epochs, batch_size=256, lr=1e30)
    with pytest.raises(TrainingDiverged, match="became"):
        train(options, echo=lambda line: None)
    assert not (tmp_path / "model.npz").exists() and not (tmp_path / "metrics.json").exists()
    if (tmp_path / "checkpoint.npz").exists():  # only a good epoch may have been kept
        kept = Sequential.load(tmp_path / "checkpoint.npz")
        assert all(np.isfinite(p).all() for p in kept.parameters().values())
        assert all(np.isfinite(v).all() for v in kept.history.history["val_loss"])


def test_a_model_with_a_nan_weight_is_never_saved(finished_run, tmp_path):
    model = Sequential.load(finished_run / "model.npz")
    next(iter(model.parameters().values()))[0] = np.nan
    with pytest.raises(ValueError, match=r"not written: param/0/kernel is NaN or infinite"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_running_statistics_that_overflow_are_never_saved(tmp_path):
    """Finite inputs of 1e20 make BatchNorm2D's running variance infinite in float32 while
    the loss stays finite: fit stops there, and save refuses what load would refuse, its
    optimiser state included."""
    from gpuconv.nn import Adam, BatchNorm2D, Conv2D, Dense, Flatten
    model = Sequential([BatchNorm2D(), Conv2D(4, 3), Flatten(), Dense(3)]).build((1, 6, 6))
    model.compile(Adam(0.01))
    x = np.random.default_rng(0).standard_normal((8, 1, 6, 6)).astype(np.float32) * 1e20
    with pytest.raises(TrainingDiverged, match=r"\['0/running_var'\] became NaN or infinite after "
                                               "epoch 1; try a smaller learning rate or inputs"):
        model.fit(x, np.arange(8) % 3, epochs=1, verbose=0)
    with pytest.raises(ValueError, match="not written: buffer/0/running_var is NaN or infinite"):
        model.save(tmp_path / "m.npz")
    model.layers[0].buffers["running_var"][...] = 1
    next(iter(model.optimizer.state.values()))[...] = np.inf
    model.save(tmp_path / "m.npz")  # the optimiser's state is not saved
    with pytest.raises(ValueError, match=r"not written: optimizer/.* is NaN or infinite"):
        model.save(tmp_path / "c.npz", include_optimizer=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_metrics_json_holds_no_bare_nan(finished_run):
    def refuse(constant):
        raise AssertionError(f"bare {constant} in metrics.json")
    metrics = json.loads((finished_run / "metrics.json").read_text(), parse_constant=refuse)
    assert len(metrics["history"]["val_loss"]) == 2 and metrics["blas_threads"] >= 1


# --------------------------------------------------------------------------- the output directory
def test_an_out_below_a_file_is_refused_before_training(data_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    lines, echo = _lines()
    with pytest.raises(RunOutputError, match=r"--out .*file/run cannot be written .*nothing was "
                                             r"trained"):
        train(_options(data_dir, tmp_path / "file" / "run"), echo=echo)
    assert not any(line.startswith("epoch") for line in lines)


@pytest.mark.parametrize("name", ["filters.png", "metrics.json", "learning_curves.png"])
def test_an_out_holding_any_file_a_run_writes_is_refused(data_dir, tmp_path, name):
    (tmp_path / name).write_bytes(b"the user's")
    with pytest.raises(ValueError, match=f"already holds {name}, which this run would replace: "
                                         "pass --overwrite"):
        train(_options(data_dir, tmp_path), echo=lambda line: None)
    assert (tmp_path / name).read_bytes() == b"the user's"


def test_a_resume_writes_over_no_other_run_in_the_checkpoints_folder(finished_run, data_dir,
                                                                      tmp_path):
    """Resuming a checkpoint kept under another name continues in its folder only if that
    folder holds no other run's files (or with --overwrite); its own checkpoint.npz resumes
    in place."""
    store = tmp_path / "store"
    store.mkdir()
    (store / "mine.npz").write_bytes((finished_run / "checkpoint.npz").read_bytes())
    others = {name: f"another run's {name}".encode() for name in
              ("model.npz", "metrics.json", "checkpoint.npz")}
    for name, data in others.items():
        (store / name).write_bytes(data)
    resume = dict(resume=str(store / "mine.npz"), model=None, epochs=None, batch_size=None)
    with pytest.raises(ValueError, match=r"store \(the folder of .*mine.npz\) already holds "
                                         "model.npz, checkpoint.npz, metrics.json"):
        train(_options(data_dir, None, **resume), echo=lambda line: None)
    assert {name: (store / name).read_bytes() for name in others} == others
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "mine.npz").write_bytes((store / "mine.npz").read_bytes())
    result = train(_options(data_dir, None, **(resume | {"resume": str(fresh / "mine.npz")})),
                   echo=lambda line: None)
    assert result["out"] == str(fresh) and (fresh / "model.npz").exists()
    # the folder's own checkpoint resumes in place, over the files of its own run
    (fresh / "checkpoint.npz").write_bytes((fresh / "mine.npz").read_bytes())
    result = train(_options(data_dir, None, **(resume | {"resume": str(fresh / "checkpoint.npz")})),
                   echo=lambda line: None)
    assert result["out"] == str(fresh)


@pytest.mark.parametrize("history, bad", [
    ({}, "loss, accuracy, lr, seconds, val_loss, val_accuracy"),
    ({"seconds": ["1", "2"]}, "seconds"),
    ({"val_loss": [0.5]}, "val_loss"),
    ({"accuracy": [0.5, None]}, "accuracy"),
    ({"val_accuracy": [0.5, 0.5, 0.5]}, "val_accuracy"),  # one more than its epochs
])
def test_a_checkpoint_whose_history_is_malformed_is_refused_before_any_write(
        finished_run, data_dir, tmp_path, history, bad):
    model = Sequential.load(finished_run / "checkpoint.npz")
    model.history.history = {} if not history else model.history.history | history
    model.save(tmp_path / "bad.npz", include_optimizer=True, extra=model.extra)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ValueError, match=f"bad.npz: the checkpoint's history must hold a finite "
                                         f"number of {bad} for each of its 2 epochs"):
        train(_options(data_dir, None, resume=str(tmp_path / "bad.npz"), model=None,
                       epochs=None, batch_size=None), echo=lambda line: None)
    assert sorted(tmp_path.iterdir()) == before


def _failing_writes(monkeypatch, fail_on: str, after: int = 0):
    """Make the ``after``-th and later writes of a file named ``fail_on`` hit a full disk."""
    import gpuconv.nn.model as model_module
    real, seen = model_module.atomic_write, []

    def atomic_write(path, write):
        if path.name == fail_on:
            seen.append(path)
            if len(seen) > after:
                raise OSError(errno.ENOSPC, "No space left on device")
        real(path, write)
    monkeypatch.setattr(model_module, "atomic_write", atomic_write)


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(data_dir, tmp_path,
                                                                monkeypatch):
    _failing_writes(monkeypatch, "checkpoint.npz", after=1)
    with pytest.raises(RunOutputError, match=r"could not write .*checkpoint.npz \(No space left "
                                             r"on device\); .* still holds the previous"):
        train(_options(data_dir, tmp_path, epochs=3), echo=lambda line: None)
    assert Sequential.load(tmp_path / "checkpoint.npz").epoch == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_at_the_model_says_the_checkpoint_holds_it(data_dir, tmp_path, monkeypatch):
    _failing_writes(monkeypatch, "model.npz")
    with pytest.raises(RunOutputError, match=r"model.npz \(No space left on device\); .*"
                                             r"checkpoint.npz holds the trained model"):
        train(_options(data_dir, tmp_path), echo=lambda line: None)
    assert Sequential.load(tmp_path / "checkpoint.npz").epoch == 1


def test_the_cli_reports_output_errors_without_a_traceback(data_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["train", "--device", "cpu", "--model", "slides",
                                       "--data", str(data_dir), "--out",
                                       str(tmp_path / "file" / "run")])
    assert result.exit_code == 1 and "cannot be written" in result.output
    assert "Traceback" not in result.output


def test_a_second_trainer_on_the_same_out_is_refused(data_dir, tmp_path):
    tmp_path.joinpath(LOCK).touch()
    holder = os.open(tmp_path / LOCK, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # what a running trainer holds
    try:
        with pytest.raises(RunOutputError, match="another gpuconv train is writing to"):
            train(_options(data_dir, tmp_path), echo=lambda line: None)
    finally:
        os.close(holder)
    train(_options(data_dir, tmp_path), echo=lambda line: None)  # released: it runs
    assert (tmp_path / "model.npz").exists()


def test_stale_temporary_files_are_removed_on_start(data_dir, tmp_path):
    stale = [tmp_path / ".checkpoint.npz.0a1b2c3d.tmp", tmp_path / ".model.npz.deadbeef.tmp"]
    # a temporary's name of a file no run writes is the user's, whatever its pattern
    kept = [tmp_path / ".notes.tmp", tmp_path / "mine.0a1b2c3d.tmp",
            tmp_path / ".holiday.jpg.cafebabe.tmp"]
    for path in stale + kept:
        path.write_bytes(b"partial")
    lines, echo = _lines()
    train(_options(data_dir, tmp_path), echo=echo)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert any("removed 2 temporary file(s)" in line for line in lines)


# --------------------------------------------------------------------------- resume
@pytest.mark.parametrize("change, flag", [
    (dict(model="lenet"), "--model lenet"), (dict(lr=0.5), "--lr 0.5"),
    (dict(batch_size=16), "--batch-size 16"), (dict(seed=3), "--seed 3"),
    (dict(optimizer="sgd"), "--optimizer sgd"), (dict(epochs=5), "--epochs 5"),
])
def test_resume_refuses_options_that_contradict_the_checkpoint(finished_run, data_dir, tmp_path,
                                                              change, flag):
    options = _options(data_dir, tmp_path, resume=str(finished_run / "checkpoint.npz"),
                       **({"model": None, "epochs": None, "batch_size": None} | change))
    with pytest.raises(ValueError, match=f"{flag} \\(the checkpoint has .*\\) contradict"):
        train(options, echo=lambda line: None)


def test_resume_accepts_options_that_agree_under_another_blas_thread_count(finished_run, data_dir,
                                                                          tmp_path):
    """gpuconv's products hold OpenBLAS at one thread: its thread count changes no bit, so a
    resume under another one needs no warning (tests/test_threads.py checks the bits)."""
    from gpuconv._blas import blas_threads, set_blas_threads
    before = blas_threads()
    if before is None or not set_blas_threads(before + 1):
        pytest.skip("NumPy's BLAS thread count cannot be set here")
    try:
        lines, echo = _lines()
        train(_options(data_dir, tmp_path, resume=str(finished_run / "checkpoint.npz"), epochs=2,
                       batch_size=64), echo=echo)
    finally:
        set_blas_threads(before)
    assert not [line for line in lines if line.startswith("warning:")]
    assert any(line.startswith("resuming") for line in lines)


def test_a_malformed_run_description_is_a_clear_error(finished_run, data_dir, tmp_path):
    model = Sequential.load(finished_run / "checkpoint.npz")
    model.save(tmp_path / "bad.npz", include_optimizer=True,
               extra={"run": {"model": 3, "epochs": "two"}})
    with pytest.raises(ValueError, match=r"bad.npz: the checkpoint's run description is "
                                         r"malformed: model must be a model name; epochs must"):
        train(_options(data_dir, tmp_path / "out", resume=str(tmp_path / "bad.npz"),
                       model=None, epochs=None, batch_size=None), echo=lambda line: None)


# --------------------------------------------------------------------------- predict, data, CLI
def test_predict_works_with_fewer_class_names_than_outputs(finished_run, tmp_path):
    from PIL import Image
    model = Sequential.load(finished_run / "model.npz")
    model.save(tmp_path / "three.npz", extra={"class_names": ["ant", "bee", "cat"]})
    picture = tmp_path / "p.png"
    Image.fromarray(np.full((28, 28), 30, np.uint8)).save(picture)
    (result,) = predict(str(tmp_path / "three.npz"), [str(picture)], top=10, device="cpu",
                        echo=lambda line: None)
    assert sorted(r["class"] for r in result["classes"]) == sorted(
        ["ant", "bee", "cat"] + [str(i) for i in range(3, 10)])


def test_predict_labels_each_image_by_its_file(finished_run, tmp_path):
    """A picture by its name, the images of an IDX file of several by name[i], whatever
    else is given with them (a mix labelled every one "image N")."""
    from PIL import Image
    picture, single, several = tmp_path / "p.png", tmp_path / "one-idx", tmp_path / "three-idx"
    Image.fromarray(np.full((28, 28), 30, np.uint8)).save(picture)
    write_idx(single, np.zeros((28, 28), np.uint8))
    write_idx(several, np.zeros((3, 28, 28), np.uint8))
    results = predict(str(finished_run / "model.npz"), [str(picture), str(several), str(single)],
                      device="cpu", echo=lambda line: None)
    assert [r["image"] for r in results] == [str(picture)] + [f"{several}[{i}]" for i in
                                                              range(3)] + [str(single)]
    for bad in ([], str(picture)):
        with pytest.raises(ValueError, match="image_paths must be a non-empty list of files"):
            predict(str(finished_run / "model.npz"), bad, device="cpu", echo=lambda line: None)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ValueError, match="fifo: not a regular file"):
        predict(str(finished_run / "model.npz"), [str(tmp_path / "fifo")], device="cpu",
                echo=lambda line: None)


@pytest.mark.parametrize("change", [dict(epochs=0), dict(batch_size=0), dict(seed=-1),
                                    dict(model="")])
def test_zero_options_are_refused_not_replaced_by_the_recipes(data_dir, tmp_path, change):
    """0 is a value given, not a missing one (it became the recipe's epochs or batch size)."""
    with pytest.raises(ValueError, match="must be positive|must be non-negative|model"):
        train(_options(data_dir, tmp_path, **change), echo=lambda line: None)
    assert not (tmp_path / "model.npz").exists()


def test_an_empty_test_split_is_refused_before_training(data_dir, tmp_path):
    for name in os.listdir(data_dir):
        (tmp_path / name).write_bytes((data_dir / name).read_bytes())
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((0, 28, 28), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(0, np.uint8))
    lines, echo = _lines()
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte holds no images"):
        train(_options(tmp_path, tmp_path / "out"), echo=echo)
    assert not any(line.startswith("epoch") for line in lines)


def test_images_of_another_size_are_refused_before_any_run_directory(data_dir, tmp_path,
                                                                     monkeypatch):
    """32x32 images for a 28x28 model: an error naming the data and both sizes, and neither
    a run directory nor a moved runs/latest (an empty run would have become the latest)."""
    big = tmp_path / "big"
    big.mkdir()
    for split, n in (("train", 30), ("t10k", 10)):
        write_idx(big / f"{split}-images-idx3-ubyte", np.zeros((n, 32, 32), np.uint8))
        write_idx(big / f"{split}-labels-idx1-ubyte", np.zeros(n, np.uint8))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"big.*images are 32x32, model slides takes 28x28"):
        train(_options(big, None), echo=lambda line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big"]


def test_a_runs_folder_that_is_a_file_is_named_as_such(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").write_text("kept")
    with pytest.raises(RunOutputError, match=r"runs/<time> cannot be written"):
        train(_options(data_dir, None), echo=lambda line: None)
    assert (tmp_path / "runs").read_text() == "kept"


def test_too_few_training_images_to_split_name_the_data(data_dir, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    for split, n in (("train", 2), ("t10k", 2)):
        write_idx(small / f"{split}-images-idx3-ubyte", np.zeros((n, 28, 28), np.uint8))
        write_idx(small / f"{split}-labels-idx1-ubyte", np.zeros(n, np.uint8))
    with pytest.raises(ValueError, match=r"small.*2 training images are too few to hold out 8%"):
        train(_options(small, tmp_path / "out"), echo=lambda line: None)


def test_evaluate_refuses_no_samples(finished_run):
    model = Sequential.load(finished_run / "model.npz")
    with pytest.raises(ValueError, match="evaluate needs at least one sample"):
        model.evaluate(np.zeros((0, 1, 28, 28), np.float32), np.zeros(0, np.int64))


@pytest.mark.parametrize("args", [["demo", "--seed", "-1"], ["train", "--seed", "-5"]])
def test_negative_seeds_name_the_option(args):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "Invalid value for '--seed'" in result.output
