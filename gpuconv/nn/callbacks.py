"""Keras' callbacks: the hooks ``Sequential.fit`` calls, the progress display of
``fit(verbose=...)``, ``EarlyStopping`` and ``ModelCheckpoint``.

As in Keras, ``epoch`` and ``batch`` are 0-based, ``self.model`` and ``self.params``
(epochs, steps, verbose) are set before ``on_train_begin``, and setting
``model.stop_training = True`` stops after the current epoch.
"""

from __future__ import annotations

import math
import os
import re
import string
import sys
import time
from os import PathLike
from pathlib import Path
from typing import Optional

import click

from gpuconv._checks import check_bool, check_int, check_number
from gpuconv._files import NAME_MAX
from gpuconv.nn.modelfile import check_extra


class Callback:
    """Base class: every hook does nothing. ``on_batch_begin`` / ``on_batch_end`` are
    Keras' older names of the training-batch hooks, called by default."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs: Optional[dict] = None) -> None: ...
    def on_train_end(self, logs: Optional[dict] = None) -> None: ...
    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None: ...
    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None: ...
    def on_batch_begin(self, batch: int, logs: Optional[dict] = None) -> None: ...
    def on_batch_end(self, batch: int, logs: Optional[dict] = None) -> None: ...

    def on_train_batch_begin(self, batch: int, logs: Optional[dict] = None) -> None:
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
        self.on_batch_end(batch, logs)


# --------------------------------------------------------------------------- progress
def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


class ProgressLogger(Callback):
    """What ``fit(verbose=...)`` prints to ``stream`` (standard output by default):
    ``verbose=1`` a progress bar with ETA per epoch on a terminal (click's), a line every
    ``interval`` seconds elsewhere (a log file hears from a long epoch), and a line per
    finished epoch; ``verbose=2`` the line per finished epoch only."""

    def __init__(self, verbose: int = 1, stream=None, interval: float = 5.0):
        super().__init__()
        if verbose not in (1, 2):
            raise ValueError(f"verbose must be 1 or 2 for a ProgressLogger, got {verbose!r}")
        self.verbose, self.stream, self.interval = verbose, stream, float(interval)
        self._bar = None

    @property
    def _out(self):
        return self.stream or sys.stdout  # looked up late: pytest and click swap sys.stdout

    def _metrics(self, logs: dict, keys) -> str:
        return "  ".join(f"{k} {logs[k]:.4f}" for k in keys if k in logs)

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        self._label = f"epoch {epoch + 1}/{self.params['epochs']}"
        self._started = self._last_line = time.perf_counter()
        if self.verbose == 1 and self._out.isatty():
            self._bar = click.progressbar(length=self.params["steps"], label=self._label,
                                          file=self._out, show_eta=True, show_pos=True,
                                          width=24, item_show_func=lambda text: text)
            self._bar.__enter__()

    def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
        if self.verbose != 1 or not logs:
            return
        text = self._metrics(logs, ("loss", self.model.metric_name))
        text += f"  {logs['seen'] / max(logs['seconds'], 1e-9):,.0f} img/s"
        if self._bar is not None:
            self._bar.update(batch + 1 - self._bar.pos, text)
            return
        now, steps = time.perf_counter(), self.params["steps"]
        if now - self._last_line >= self.interval and batch + 1 < steps:
            eta = (now - self._started) / (batch + 1) * (steps - batch - 1)
            click.echo(f"{self._label}  batch {batch + 1}/{steps}  {text}  "
                       f"ETA {_duration(eta)}", file=self._out)
            self._last_line = now

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        name = self.model.metric_name
        text = self._metrics(logs, ("loss", name, "val_loss", f"val_{name}"))
        click.echo(f"{self._label}  {text}  lr {logs['lr']:.2e}  {logs['seconds']:.1f} s",
                   file=self._out)


# --------------------------------------------------------------------------- monitors
class _Monitor(Callback):
    """A callback that follows one logged quantity: "min" for losses, "max" for
    accuracies ("auto" guesses from the name, as Keras)."""

    def __init__(self, monitor: str, mode: str, min_delta: float = 0.0):
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be the name of a logged quantity, got "
                            f"{type(monitor).__name__}")
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        if mode == "auto":
            mode = "max" if monitor.endswith(("acc", "accuracy")) else "min"
        self.monitor, self.mode = monitor, mode
        self.min_delta = abs(check_number(min_delta, "min_delta"))

    def _current(self, logs: dict) -> float:
        if self.monitor not in logs:
            raise ValueError(f"{type(self).__name__} monitors {self.monitor!r}, which fit does "
                             f"not log (it logs {sorted(logs)}); validation quantities need "
                             "validation_data or validation_split")
        return float(logs[self.monitor])

    def _better(self, current: float, best: Optional[float]) -> bool:
        if best is None:
            return math.isfinite(current)
        if self.mode == "min":
            return current + self.min_delta < best
        return current - self.min_delta > best


class EarlyStopping(_Monitor):
    """Stops training when ``monitor`` has not improved by more than ``min_delta`` for
    ``patience`` epochs; ``restore_best_weights`` puts back the best epoch's weights when
    training ends, stopped or not (Keras 3; tf.keras 2 restored only when it stopped)."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", restore_best_weights: bool = False):
        super().__init__(monitor, mode, min_delta)
        self.patience = check_int(patience, "patience", 0)
        self.restore_best_weights = check_bool(restore_best_weights, "restore_best_weights")

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        self.wait, self.best, self.best_weights = 0, None, None
        self.best_epoch = self.stopped_epoch = None

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        current = self._current(logs)
        if self._better(current, self.best):
            self.best, self.best_epoch, self.wait = current, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:  # Keras: patience 0 and 1 both stop at the first
            self.stopped_epoch, self.model.stop_training = epoch, True

    def on_train_end(self, logs: Optional[dict] = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class _AnyQuantity(dict):
    """The fields of a file name checked before training: any logged name is a number then
    (callbacks may add quantities of their own to the logs)."""

    def __missing__(self, key):
        return 0.0


def _check_fields(filepath: str) -> str:
    """``filepath`` whose fields ask for no width or precision longer than a file name can
    be (a field such as {epoch:99999999999d} would make a string of 100 GB)."""
    try:
        specs = [spec for _, field, spec, _ in string.Formatter().parse(filepath)
                 if field is not None]
    except ValueError as exc:
        raise ValueError(f"filepath {filepath!r} is no format string: {exc}") from None
    for spec in specs:
        if any(int(n) > NAME_MAX for n in re.findall(r"\d+", spec or "")):
            raise ValueError(f"filepath {filepath!r}: a field's width or precision {spec!r} "
                             f"is longer than a file name ({NAME_MAX} bytes)")
    return filepath


class ModelCheckpoint(_Monitor):
    """Saves the model after each epoch to ``filepath``, which may hold Keras' fields
    (``"ckpt-{epoch:02d}-{val_loss:.3f}.npz"``, epoch counted from 1). With
    ``save_best_only`` only when ``monitor`` improved. ``include_optimizer`` (default,
    as Keras) makes the file a checkpoint ``Sequential.load`` resumes from; ``extra``
    is stored with it (``model.extra`` after loading). Each save is atomic."""

    def __init__(self, filepath, monitor: str = "val_loss", save_best_only: bool = False,
                 mode: str = "auto", include_optimizer: bool = True,
                 extra: Optional[dict] = None):
        super().__init__(monitor, mode)
        if not isinstance(filepath, (str, PathLike)):
            raise TypeError(f"filepath must be a path, got {type(filepath).__name__}")
        self.filepath = _check_fields(str(filepath))
        self.save_best_only = check_bool(save_best_only, "save_best_only")
        self.include_optimizer = check_bool(include_optimizer, "include_optimizer")
        check_extra(extra)
        self.extra = extra
        self.best: Optional[float] = None

    def on_train_begin(self, logs: Optional[dict] = None) -> None:
        """Fail before the first epoch where every save would fail after it: a file name
        whose fields cannot be filled in, a description that would not load back."""
        self._path(0, _AnyQuantity())
        self.model.file_description(self.include_optimizer, self.extra)

    def _path(self, epoch: int, logs: dict) -> Path:
        """``filepath`` with Keras' fields filled in: ``epoch`` (from 1) and the logs'."""
        fields = type(logs)(logs, epoch=epoch + 1)  # (an _AnyQuantity stays one)
        try:
            path = Path(self.filepath.format_map(fields))
        except KeyError as exc:
            raise ValueError(f"filepath {self.filepath!r} names {exc}, which fit does not log "
                             f"(it logs {sorted(fields)}); validation quantities need "
                             "validation_data or validation_split") from None
        except (IndexError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"filepath {self.filepath!r} must hold only named fields of "
                             f"fit's logs, formatted as their values allow: {exc}") from None
        if len(os.fsencode(path.name)) > NAME_MAX:
            raise ValueError(f"filepath {self.filepath!r} makes a file name of "
                             f"{len(os.fsencode(path.name))} bytes at epoch {epoch + 1}, longer "
                             f"than a file name can be ({NAME_MAX} bytes)")
        return path

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        if self.save_best_only:
            current = self._current(logs)
            if not self._better(current, self.best):
                return
            self.best = current
        path = self._path(epoch, logs)
        self.model.save(path, include_optimizer=self.include_optimizer, extra=self.extra)
