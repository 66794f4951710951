"""``gpuconv train`` / ``evaluate`` / ``predict`` as library calls: the CLI only parses
arguments and prints what these functions report through ``echo``.

A training run writes into its own directory, ``runs/<UTC time>`` unless ``out`` names
one (an existing run there is replaced only with ``overwrite``; ``resume`` continues in
the checkpoint's directory), and points the link ``runs/latest`` at the newest run:

    model.npz           the trained model (weights + architecture, no pickle)
    checkpoint.npz      model + optimiser + position after the last finished epoch,
                        replaced atomically each epoch (``--resume`` reads it)
    metrics.json        per-epoch metrics, final test accuracy, wall time, device, ...
    learning_curves.png, filters.png, feature_maps.png
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from gpuconv import __version__
from gpuconv.data import (Dataset, fit_to_model, light_background, load_dataset, load_images,
                          split_validation, to_float_images)
from gpuconv.nn import zoo
from gpuconv.nn.device import resolve_device
from gpuconv.nn.losses import softmax
from gpuconv._files import atomic_write
from gpuconv.nn.callbacks import ModelCheckpoint, ProgressLogger
from gpuconv.nn.model import Sequential

VALIDATION_FRACTION = 1 / 12  # 5,000 of Fashion-MNIST's 60,000 training images
CHECKPOINT, MODEL, METRICS = "checkpoint.npz", "model.npz", "metrics.json"
Echo = Callable[[str], None]


@dataclass(frozen=True)
class TrainOptions:
    model: str = zoo.DEFAULT_MODEL
    device: str = "auto"
    backend: Optional[str] = None
    data: Optional[str] = None
    epochs: Optional[int] = None       # None: the recipe's
    batch_size: Optional[int] = None   # None: the recipe's
    optimizer: Optional[str] = None    # None: the recipe's
    lr: Optional[float] = None         # None: the recipe's
    seed: int = 0
    out: Optional[str] = None          # None: a new runs/<UTC time>
    resume: Optional[str] = None
    overwrite: bool = False


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says how to resume."""


RUNS, LATEST = Path("runs"), "latest"


def _run_directory(options: TrainOptions, echo: Echo) -> Path:
    """Where this run writes (see the module's docstring); never another run's files
    silently."""
    if options.out is None and options.resume:
        return Path(options.resume).parent
    if options.out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        out, n = RUNS / stamp, 1
        while out.exists():
            out, n = RUNS / f"{stamp}-{n}", n + 1
        out.mkdir(parents=True)
        _point_latest_at(out, echo)
        return out
    out = Path(options.out)
    resuming_here = options.resume and Path(options.resume).resolve().parent == out.resolve()
    taken = [name for name in (MODEL, CHECKPOINT, METRICS) if (out / name).exists()]
    if taken and not (options.overwrite or resuming_here):
        raise ValueError(f"{out} already holds a training run ({', '.join(taken)}): pass "
                         "--overwrite to replace it, or leave out --out for a new "
                         f"{RUNS}/<time> directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _point_latest_at(out: Path, echo: Echo) -> None:
    latest = out.parent / LATEST
    if latest.exists() and not latest.is_symlink():
        echo(f"note: {latest} is a directory, not a link, so it stays as it is")
        return
    link = out.parent / f".{LATEST}-{out.name}"  # renamed over the old link: atomic
    link.symlink_to(out.name, target_is_directory=True)
    link.replace(latest)


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
        epochs = options.epochs or run["epochs"]
        if epochs != run["epochs"]:
            raise ValueError(f"--epochs {epochs} differs from the run's {run['epochs']}: the "
                             "learning-rate schedule was planned for that many epochs")
        echo(f"resuming {run['model']} from {options.resume} after epoch {model.epoch}")
        return model, epochs, run["batch_size"], run
    recipe = zoo.recipe(options.model)
    epochs = options.epochs or recipe.epochs
    batch_size = options.batch_size or recipe.batch_size
    if epochs <= 0 or batch_size <= 0:
        raise ValueError(f"epochs and batch size must be positive, got {epochs} and {batch_size}")
    model = zoo.make_model(options.model).build((1, 28, 28), device, options.seed)
    steps = math.ceil(steps_per_epoch / batch_size)
    model.compile(zoo.make_training_optimizer(options.model, steps, epochs, options.optimizer,
                                              options.lr))
    run = {"model": options.model, "epochs": epochs, "batch_size": batch_size,
           "seed": options.seed, "optimizer": model.optimizer.get_config()}
    return model, epochs, batch_size, run


def train(options: TrainOptions, echo: Echo = print, progress=None) -> dict:
    """Train, evaluate on the test set, save everything in the run's directory; returns the
    metrics written to metrics.json, with the directory ("out") and the files written
    ("files"). The progress of each epoch goes to the stream ``progress`` (default
    standard output). Raises TrainingDiverged (the last good checkpoint stays) when the
    loss stops being finite, TrainingInterrupted on Ctrl-C."""
    started = time.perf_counter()
    device = resolve_device(options.device, options.backend)
    ds = load_dataset(options.data)
    echo(f"data: {ds.source}")
    x_train, y_train, x_val, y_val = split_validation(ds.x_train, ds.y_train,
                                                      VALIDATION_FRACTION, seed=0)
    model, epochs, batch_size, run = _start_or_resume(options, device, len(x_train), echo)
    echo(f"model {run['model']} ({model.n_params:,} parameters) on {device.describe()}: "
         f"{epochs} epochs, batch {batch_size}, {len(x_train):,} training images")
    out = _run_directory(options, echo)
    echo(f"run directory: {out}")
    # the checkpoint is replaced atomically each epoch: a crash or Ctrl-C keeps the last one
    callbacks = [ProgressLogger(1, progress), ModelCheckpoint(out / CHECKPOINT, extra={"run": run})]
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
    echo(f"test accuracy {test['accuracy']:.4f} (loss {test['loss']:.4f}) on "
         f"{len(ds.x_test):,} images")
    model.save(out / MODEL, extra={"class_names": list(ds.class_names)})
    metrics = {
        "gpuconv": __version__, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": run["model"], "device": device.describe(), "backend": device.backend,
        "seed": run["seed"], "epochs": epochs, "batch_size": batch_size,
        "optimizer": run["optimizer"], "parameters": model.n_params, "data": ds.source,
        "train_images": len(x_train), "validation_images": len(x_val),
        "test_images": len(ds.x_test), "history": model.history.history,
        "test_loss": test["loss"], "test_accuracy": test["accuracy"],
        "train_seconds": sum(model.history.history["seconds"]),
        "wall_seconds_this_run": time.perf_counter() - started,
    }
    atomic_write(out / METRICS, lambda f: f.write(json.dumps(metrics, indent=2).encode()))
    files = [out / MODEL, out / CHECKPOINT, out / METRICS, *_pictures(model, ds, out, echo)]
    echo("wrote " + ", ".join(str(p) for p in files if p.exists()))
    return {**metrics, "out": str(out), "files": [str(p) for p in files if p.exists()]}


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
    return [plots.learning_curves(model.history.history, out / "learning_curves.png"),
            plots.first_layer_filters(model, out / "filters.png"),
            plots.feature_maps(model, image, ds.class_names[int(ds.y_test[0])],
                               out / "feature_maps.png")]


# --------------------------------------------------------------------------- evaluate, predict
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
    images), as ``[{"image": name, "classes": [{"class": ..., "probability": ...}]}]``. Pictures are resized to the model's input; ``invert`` turns dark-on-light
    photos into Fashion-MNIST's light-on-dark."""
    model = Sequential.load(model_path, resolve_device(device, backend))
    names = model.extra.get("class_names") or [str(i) for i in range(model.output_shape[0])]
    if top <= 0:
        raise ValueError(f"top must be positive, got {top}")
    images = load_images(image_paths, size=model.input_shape[1:])
    if not invert and light_background(images).any():
        echo("note: some images have a light background; Fashion-MNIST items are light on "
             "black, so try --invert")
    images = fit_to_model(images, model.input_shape[1:], invert)
    probabilities = softmax(model.predict(_images(images)), np)
    results = []
    labels = [str(p) for p in image_paths] if len(image_paths) == len(images) else \
        [f"image {i}" for i in range(len(images))]
    for label, p in zip(labels, probabilities):
        best = np.argsort(-p)[:top]
        ranked = [{"class": names[i], "probability": float(p[i])} for i in best]
        echo(f"{label}: " + ", ".join(f"{r['class']} {r['probability']:.1%}" for r in ranked))
        results.append({"image": label, "classes": ranked})
    return results
