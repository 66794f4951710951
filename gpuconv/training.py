"""``gpuconv train`` / ``evaluate`` / ``predict`` as library calls: the CLI only parses
arguments and prints what these functions report through ``echo``.

A training run writes into its output directory:

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
    out: str = "runs/latest"
    resume: Optional[str] = None


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
    """Train, evaluate on the test set, save everything under ``options.out``; returns the
    metrics written to metrics.json. The progress of each epoch goes to the stream
    ``progress`` (default standard output). Raises TrainingDiverged (the last good checkpoint
    stays) when the loss stops being finite."""
    started = time.perf_counter()
    device = resolve_device(options.device, options.backend)
    ds = load_dataset(options.data)
    echo(f"data: {ds.source}")
    x_train, y_train, x_val, y_val = split_validation(ds.x_train, ds.y_train,
                                                      VALIDATION_FRACTION, seed=0)
    model, epochs, batch_size, run = _start_or_resume(options, device, len(x_train), echo)
    echo(f"model {run['model']} ({model.n_params:,} parameters) on {device.describe()}: "
         f"{epochs} epochs, batch {batch_size}, {len(x_train):,} training images")
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    # the checkpoint is replaced atomically each epoch: a crash or Ctrl-C keeps the last one
    callbacks = [ProgressLogger(1, progress), ModelCheckpoint(out / CHECKPOINT, extra={"run": run})]
    if model.epoch < epochs:
        model.fit(_images(x_train), y_train, batch_size=batch_size, epochs=epochs,
                  initial_epoch=model.epoch, verbose=0,
                  validation_data=(_images(x_val), y_val), callbacks=callbacks)
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
    _pictures(model, ds, out, echo)
    return metrics


def _pictures(model: Sequential, ds: Dataset, out: Path, echo: Echo) -> None:
    try:
        from gpuconv import plots
    except ImportError as exc:
        echo(f"pictures skipped: {exc}")
        return
    image = _images(ds.x_test[:1])
    written = [plots.learning_curves(model.history.history, out / "learning_curves.png"),
               plots.first_layer_filters(model, out / "filters.png"),
               plots.feature_maps(model, image, ds.class_names[int(ds.y_test[0])],
                                  out / "feature_maps.png")]
    echo("wrote " + ", ".join(str(p) for p in [out / MODEL, out / CHECKPOINT, out / METRICS,
                                               *written]))


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
    return result


def predict(model_path: str, image_paths, invert: bool = False, top: int = 3,
            device: str = "auto", backend: Optional[str] = None, echo: Echo = print) -> list:
    """The ``top`` classes and probabilities for each image (PNG/JPEG, or IDX files of
    images). Pictures are resized to the model's input; ``invert`` turns dark-on-light
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
        ranked = [(names[i], float(p[i])) for i in best]
        echo(f"{label}: " + ", ".join(f"{n} {q:.1%}" for n, q in ranked))
        results.append(ranked)
    return results
