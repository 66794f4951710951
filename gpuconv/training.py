"""``gpuconv train`` / ``evaluate`` / ``predict`` as library calls: the CLI only parses
arguments and prints what these functions report through ``echo``.

A training run writes into its own directory, ``runs/<UTC time>`` unless ``out`` names
one (a file of these already there is replaced only with ``overwrite``; ``resume``
continues in the checkpoint's directory, which for a checkpoint under another name must
hold none of them), and points the link ``runs/latest`` at the newest run:

    model.npz           the trained model (weights + architecture, no pickle)
    checkpoint.npz      model + optimiser + position after the last finished epoch,
                        replaced atomically each epoch (``--resume`` reads it)
    metrics.json        per-epoch metrics, final test accuracy, wall time, device, ...
    learning_curves.png, filters.png, feature_maps.png
    .gpuconv-train.lock a lock held while a run writes here: a second run is refused

The directory is checked writable before anything is trained; temporary files that a
killed run left are removed on start. A model whose loss, metrics or weights stop
being finite is never written (``TrainingDiverged``), and a failed write
(``RunOutputError``) says which files were kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from gpuconv import __version__
from gpuconv._blas import blas_threads
from gpuconv.data import (Dataset, fit_to_model, light_background, load_dataset, load_images,
                          split_validation, to_float_images)
from gpuconv.nn import zoo
from gpuconv.nn.device import resolve_device
from gpuconv.nn.losses import softmax
from gpuconv._files import atomic_write, remove_stale_temporaries
from gpuconv.nn.callbacks import ModelCheckpoint, ProgressLogger
from gpuconv.nn.model import Sequential, TrainingDiverged

VALIDATION_FRACTION = 1 / 12  # 5,000 of Fashion-MNIST's 60,000 training images
CHECKPOINT, MODEL, METRICS = "checkpoint.npz", "model.npz", "metrics.json"
CURVES, FILTERS, FEATURE_MAPS = "learning_curves.png", "filters.png", "feature_maps.png"
RUN_FILES = (MODEL, CHECKPOINT, METRICS, CURVES, FILTERS, FEATURE_MAPS)  # what a run writes
# the per-epoch logs a run keeps (History): the pictures and metrics.json read them
RUN_LOGS = ("loss", "accuracy", "lr", "seconds", "val_loss", "val_accuracy")
LOCK = ".gpuconv-train.lock"
Echo = Callable[[str], None]


class RunOutputError(RuntimeError):
    """The output directory cannot be used or a file could not be written (full disk,
    read-only directory, another run writing there); the message says what was kept."""


@dataclass(frozen=True)
class TrainOptions:
    """``None``: the recipe's value (a new run) or the checkpoint's (``resume``); a value
    given with ``resume`` must agree with the checkpoint's."""

    model: Optional[str] = None        # None: zoo.DEFAULT_MODEL
    device: str = "auto"
    backend: Optional[str] = None
    data: Optional[str] = None
    epochs: Optional[int] = None       # None: the recipe's
    batch_size: Optional[int] = None   # None: the recipe's
    optimizer: Optional[str] = None    # None: the recipe's
    lr: Optional[float] = None         # None: the recipe's
    seed: Optional[int] = None         # None: 0
    out: Optional[str] = None          # None: a new runs/<UTC time>
    resume: Optional[str] = None
    overwrite: bool = False
    graph: bool = True                 # on cuda: each step replayed as one CUDA graph


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says how to resume."""


RUNS, LATEST = Path("runs"), "latest"


def _run_directory(options: TrainOptions, echo: Echo) -> Path:
    """Where this run writes (see the module's docstring); never over files it did not
    write before without ``overwrite``: a folder holding any file a run writes is taken,
    unless this run resumes that folder's own checkpoint."""
    if options.out is None and not options.resume:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        out, n = RUNS / stamp, 1
        while out.exists():
            out, n = RUNS / f"{stamp}-{n}", n + 1
        out.mkdir(parents=True)
        _point_latest_at(out, echo)
        return out
    out = Path(options.out) if options.out is not None else Path(options.resume).parent
    own_checkpoint = bool(options.resume) and (
        Path(options.resume).resolve() == (out / CHECKPOINT).resolve())
    taken = [name for name in RUN_FILES if (out / name).exists()]
    if taken and not (options.overwrite or own_checkpoint):
        where = "--out" if options.out is not None else f"the folder of {options.resume}"
        raise ValueError(f"{out} ({where}) already holds {', '.join(taken)}, which this run "
                         "would replace: pass --overwrite to replace them, or --out a new "
                         "directory" + ("" if options.resume else
                                        f" (or none, for a new {RUNS}/<time>)"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def _point_latest_at(out: Path, echo: Echo) -> None:
    latest = out.parent / LATEST
    if latest.exists() and not latest.is_symlink():
        echo(f"note: {latest} is not a link, so it stays as it is")
        return
    link = out.parent / f".{LATEST}-{out.name}"  # renamed over the old link: atomic
    link.symlink_to(out.name, target_is_directory=True)
    link.replace(latest)


class RunCheckpoint(ModelCheckpoint):
    """The run's checkpoint after every epoch; a failed write says what was kept."""

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        path = Path(self.filepath)
        kept = (f"{path} still holds the previous checkpoint" if path.exists()
                else "no checkpoint was written")
        _write(path, lambda: ModelCheckpoint.on_epoch_end(self, epoch, logs), kept)


def _write(path: Path, write: Callable[[], None], kept: str) -> None:
    """Run ``write``; an OSError (full disk, read-only or vanished directory) becomes a
    RunOutputError that says what was kept (every write is atomic: nothing is half-written)."""
    try:
        write()
    except OSError as exc:
        raise RunOutputError(f"could not write {path} ({exc.strerror or exc}); {kept}") from None


# --------------------------------------------------------------------------- the output directory
def _claim_output(out: Path, echo: Echo) -> int:
    """Create ``out``, prove it writable and lock it for this run (a lock that dies with
    the process, so a killed run never blocks the next one); returns the lock's descriptor."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise RunOutputError(f"--out {out} cannot be written ({exc.strerror or exc}); nothing "
                             "was trained") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise RunOutputError(f"another gpuconv train is writing to {out} (it holds {out / LOCK}); "
                             "wait for it to finish or choose another --out") from None
    try:
        os.ftruncate(lock, 0)
        os.write(lock, f"{os.getpid()}\n".encode())
        stale = remove_stale_temporaries(out, RUN_FILES)
    except OSError as exc:
        os.close(lock)
        raise RunOutputError(f"--out {out} cannot be written ({exc.strerror or exc}); nothing "
                             "was trained") from None
    if stale:
        echo(f"removed {len(stale)} temporary file(s) a killed run left in {out}")
    return lock


@contextlib.contextmanager
def _output_claimed(out: Path, echo: Echo):
    """``_claim_output`` for the duration of a ``with`` block."""
    lock = _claim_output(out, echo)
    try:
        yield
    finally:
        os.close(lock)


# --------------------------------------------------------------------------- train
def _images(ds_images: np.ndarray) -> np.ndarray:
    return to_float_images(ds_images, "float32")


def _start_or_resume(options: TrainOptions, device, steps_per_epoch: int, echo: Echo):
    """(model, epochs, batch size, run options saved with each checkpoint)."""
    if options.resume:
        model = Sequential.load(options.resume, device)
        run = model.extra.get("run")
        if run is None or model.optimizer is None:
            raise ValueError(f"{options.resume} is a model without training state; resume needs "
                             f"the {CHECKPOINT} of a training run")
        _check_run(options.resume, run)
        _check_run_history(options.resume, model)
        _check_resume_options(options, run)
        echo(f"resuming {run['model']} from {options.resume} after epoch {model.epoch}")
        return model, run["epochs"], run["batch_size"], run
    name = zoo.DEFAULT_MODEL if options.model is None else options.model
    seed = 0 if options.seed is None else options.seed
    recipe = zoo.recipe(name)
    epochs = recipe.epochs if options.epochs is None else options.epochs
    batch_size = recipe.batch_size if options.batch_size is None else options.batch_size
    if epochs <= 0 or batch_size <= 0:
        raise ValueError(f"epochs and batch size must be positive, got {epochs} and {batch_size}")
    if seed < 0:
        raise ValueError(f"--seed must be non-negative, got {seed}")
    model = recipe.model().build((1, 28, 28), device, seed)
    steps = math.ceil(steps_per_epoch / batch_size)
    model.compile(recipe.training_optimizer(steps, epochs, options.optimizer, options.lr))
    run = {"model": name, "epochs": epochs, "batch_size": batch_size, "seed": seed,
           "optimizer": model.optimizer.get_config()}
    return model, epochs, batch_size, run


def _check_run(path, run) -> None:
    """The run options a checkpoint stores (``extra["run"]``) must have their types."""
    rules = {"model": (str, "a model name"), "epochs": (int, "a positive int"),
             "batch_size": (int, "a positive int"), "seed": (int, "a non-negative int"),
             "optimizer": (dict, "an optimiser config")}
    problems = [f"{key} must be {rule}" for key, (kind, rule) in rules.items()
                if not isinstance(run, dict) or not isinstance(run.get(key), kind)
                or isinstance(run.get(key), bool)
                or (kind is int and run[key] < (0 if key == "seed" else 1))]
    if problems:
        raise ValueError(f"{path}: the checkpoint's run description is malformed: "
                         + "; ".join(problems))


def _check_run_history(path, model: Sequential) -> None:
    """A checkpoint's history holds each of a run's logs (RUN_LOGS) for each finished epoch."""
    history = model.history.history

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    bad = [key for key in RUN_LOGS if len(history.get(key, ())) != model.epoch
           or not all(map(number, history[key]))]
    if bad:
        raise ValueError(f"{path}: the checkpoint's history must hold a finite number of "
                         f"{', '.join(bad)} for each of its {model.epoch} epochs (a checkpoint "
                         "of gpuconv train has them)")


def _check_resume_options(options: TrainOptions, run: dict) -> None:
    """A resumed run keeps the checkpoint's options: one given that differs is refused."""
    schedule = run["optimizer"].get("learning_rate")
    saved = {"--model": run["model"], "--epochs": run["epochs"],
             "--batch-size": run["batch_size"], "--seed": run["seed"],
             "--optimizer": run["optimizer"].get("name"),
             "--lr": schedule.get("lr") if isinstance(schedule, dict) else schedule}
    given = {"--model": options.model, "--epochs": options.epochs,
             "--batch-size": options.batch_size, "--seed": options.seed,
             "--optimizer": options.optimizer, "--lr": options.lr}
    clashes = [f"{flag} {value} (the checkpoint has {saved[flag]})"
               for flag, value in given.items() if value is not None and value != saved[flag]]
    if clashes:
        raise ValueError(f"--resume continues {options.resume} with its own options, but "
                         f"{', '.join(clashes)} contradict them; drop those options or start a "
                         "new run (the learning-rate schedule was planned for the checkpoint's)")


def train(options: TrainOptions, echo: Echo = print, progress=None) -> dict:
    """Train, evaluate on the test set, save everything in the run's directory; returns the
    metrics written to metrics.json, with the directory ("out") and the files written
    ("files"). The progress of each epoch goes to the stream ``progress`` (default
    standard output). Raises TrainingDiverged (the last good checkpoint stays) when the
    loss, a metric or a weight stops being finite, RunOutputError when the directory cannot
    be used or written, TrainingInterrupted on Ctrl-C."""
    started = time.perf_counter()
    device = resolve_device(options.device, options.backend)
    ds = load_dataset(options.data)
    echo(f"data: {ds.source}")
    try:
        x_train, y_train, x_val, y_val = split_validation(ds.x_train, ds.y_train,
                                                          VALIDATION_FRACTION, seed=0)
    except ValueError:  # (its message names its own argument, no option of this command)
        raise ValueError(f"{ds.source}: {len(ds.x_train)} training images are too few to hold "
                         f"out {VALIDATION_FRACTION:.0%} of them for validation and train on "
                         f"the rest") from None
    model, epochs, batch_size, run = _start_or_resume(options, device, len(x_train), echo)
    if (1,) + ds.x_train.shape[1:] != tuple(model.input_shape):  # before any run directory
        h, w = ds.x_train.shape[1:]
        raise ValueError(f"{ds.source}: its images are {h}x{w}, model {run['model']} takes "
                         f"{model.input_shape[1]}x{model.input_shape[2]} (resize them first: "
                         f"gpuconv.data.resize_images)")
    model.graph = options.graph
    echo(f"model {run['model']} ({model.n_params:,} parameters) on {device.describe()}: "
         f"{epochs} epochs, batch {batch_size}, {len(x_train):,} training images")
    try:
        out = _run_directory(options, echo)
    except OSError as exc:
        where = f"--out {options.out}" if options.out is not None else f"{RUNS}/<time>"
        raise RunOutputError(f"{where} cannot be written ({exc.strerror or exc}); "
                             "nothing was trained") from None
    echo(f"run directory: {out}")
    with _output_claimed(out, echo):
        # the checkpoint is replaced atomically each epoch: a crash or Ctrl-C keeps the last one
        callbacks = [ProgressLogger(1, progress),
                     RunCheckpoint(out / CHECKPOINT, extra={"run": run})]
        first_epoch = model.epoch
        try:
            if model.epoch < epochs:
                model.fit(_images(x_train), y_train, batch_size=batch_size, epochs=epochs,
                          initial_epoch=model.epoch, verbose=0,
                          validation_data=(_images(x_val), y_val), callbacks=callbacks)
        except KeyboardInterrupt:
            raise TrainingInterrupted(_how_to_resume(options, out, model.epoch > first_epoch)) \
                from None
        test = model.evaluate(_images(ds.x_test), ds.y_test)
        if not math.isfinite(test["loss"]):
            raise TrainingDiverged(f"the test loss is {test['loss']}; {out / MODEL} is not written "
                                   f"({out / CHECKPOINT} holds the last epoch)")
        echo(f"test accuracy {test['accuracy']:.4f} (loss {test['loss']:.4f}) on "
             f"{len(ds.x_test):,} images")
        _write(out / MODEL, lambda: model.save(out / MODEL,
                                               extra={"class_names": list(ds.class_names)}),
               f"{out / CHECKPOINT} holds the trained model (evaluate or resume from it)")
        metrics = {
            "gpuconv": __version__,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "model": run["model"], "device": device.describe(), "backend": device.backend,
            "seed": run["seed"], "epochs": epochs, "batch_size": batch_size,
            "optimizer": run["optimizer"], "parameters": model.n_params, "data": ds.source,
            "train_images": len(x_train), "validation_images": len(x_val),
            "test_images": len(ds.x_test), "history": model.history.history,
            "test_loss": test["loss"], "test_accuracy": test["accuracy"],
            "train_seconds": sum(model.history.history["seconds"]),
            "wall_seconds_this_run": time.perf_counter() - started,
            "blas_threads": blas_threads(),
        }
        text = json.dumps(_finite_or_null(metrics), indent=2, allow_nan=False)
        _write(out / METRICS,
               lambda: atomic_write(out / METRICS, lambda f: f.write(text.encode())),
               f"{out / MODEL} and {out / CHECKPOINT} were written")
        pictures: list[Path] = []
        _write(out, lambda: pictures.extend(_pictures(model, ds, out, echo)),
               f"{out / MODEL}, {out / CHECKPOINT} and {out / METRICS} were written")
        files = [p for p in (out / MODEL, out / CHECKPOINT, out / METRICS, *pictures)
                 if p.exists()]
        echo("wrote " + ", ".join(str(p) for p in files))
        return {**metrics, "out": str(out), "files": [str(p) for p in files]}


def _finite_or_null(value):
    """``value`` with every NaN or infinite float replaced by None: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_null(v) for v in value]
    return value


def _how_to_resume(options: TrainOptions, out: Path, saved_an_epoch: bool) -> str:
    """The command that continues the run (not a checkpoint an --overwrite run replaces)."""
    if saved_an_epoch:
        checkpoint = out / CHECKPOINT
    elif options.resume:
        checkpoint = Path(options.resume)
    else:
        return "interrupted before the first epoch finished: nothing to resume"
    epoch = Sequential.load(checkpoint).epoch
    flags = "".join(f" --{name} {value}" for name, value in
                    (("data", options.data), ("device", options.device),
                     ("backend", options.backend)) if value)
    return (f"interrupted; the checkpoint after epoch {epoch} is kept. Resume with:\n"
            f"  gpuconv train --resume {checkpoint}{flags}")


def _pictures(model: Sequential, ds: Dataset, out: Path, echo: Echo) -> list[Path]:
    try:
        from gpuconv import plots
    except ImportError:
        echo("pictures skipped: they need matplotlib: pip install 'gpuconv[train]'")
        return []
    image = _images(ds.x_test[:1])
    return [plots.learning_curves(model.history.history, out / CURVES),
            plots.first_layer_filters(model, out / FILTERS),
            plots.feature_maps(model, image, ds.class_names[int(ds.y_test[0])],
                               out / FEATURE_MAPS)]


# --------------------------------------------------------------------------- evaluate, predict
def _class_names(saved, classes: int) -> list[str]:
    """A name for each of the model's ``classes`` outputs: the saved names where there are
    any (a dataset may have fewer classes than the model has outputs), else the index."""
    names = [str(i) for i in range(classes)]
    if isinstance(saved, list) and all(isinstance(name, str) for name in saved):
        names[:len(saved)] = saved[:classes]
    return names


def evaluate(model_path: str, data: Optional[str] = None, device: str = "auto",
             backend: Optional[str] = None, echo: Echo = print) -> dict:
    """Test loss and accuracy of a saved model on a dataset's test split."""
    model = Sequential.load(model_path, resolve_device(device, backend))
    ds = load_dataset(data)
    echo(f"data: {ds.source}")
    result = model.evaluate(_images(ds.x_test), ds.y_test)
    echo(f"test accuracy {result['accuracy']:.4f} (loss {result['loss']:.4f}) on "
         f"{len(ds.x_test):,} images")
    return {"model": str(model_path), "data": ds.source, "test_images": len(ds.x_test),
            "test_loss": result["loss"], "test_accuracy": result["accuracy"]}


def predict(model_path: str, image_paths, invert: bool = False, top: int = 3,
            device: str = "auto", backend: Optional[str] = None, echo: Echo = print) -> list:
    """The ``top`` classes and probabilities for each image (PNG/JPEG, or IDX files of
    images), as ``[{"image": name, "classes": [{"class": ..., "probability": ...}]}]``,
    name the file's (``file[i]`` for the i-th image of an IDX file of several). Pictures are
    resized to the model's input; ``invert`` turns dark-on-light photos into Fashion-MNIST's
    light-on-dark."""
    model = Sequential.load(model_path, resolve_device(device, backend))
    if len(model.output_shape) != 1:
        raise ValueError(f"{model_path}: predict needs a classifier with one score per class, "
                         f"its output has shape {model.output_shape}")
    if top <= 0:
        raise ValueError(f"top must be positive, got {top}")
    names = _class_names(model.extra.get("class_names"), model.output_shape[0])
    if isinstance(image_paths, (str, os.PathLike)) or len(image_paths) == 0:
        raise ValueError(f"image_paths must be a non-empty list of files, got {image_paths!r}")
    # each file's images, labelled by the file (an IDX file of several: file[i])
    batches = [load_images([path], size=model.input_shape[1:]) for path in image_paths]
    labels = [str(path) if len(batch) == 1 else f"{path}[{i}]"
              for path, batch in zip(image_paths, batches) for i in range(len(batch))]
    images = np.concatenate(batches)
    if not invert and light_background(images).any():
        echo("note: some images have a light background; Fashion-MNIST items are light on "
             "black, so try --invert")
    images = fit_to_model(images, model.input_shape[1:], invert)
    probabilities = softmax(model.predict(_images(images)), np)
    results = []
    for label, p in zip(labels, probabilities):
        best = np.argsort(-p)[:top]
        ranked = [{"class": names[i], "probability": float(p[i])} for i in best]
        echo(f"{label}: " + ", ".join(f"{r['class']} {r['probability']:.1%}" for r in ranked))
        results.append({"image": label, "classes": ranked})
    return results
