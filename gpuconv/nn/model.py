"""``Sequential``: a stack of layers with Keras' compile / fit / evaluate / predict /
summary / save / load, on gpuconv's own kernels. Data is channels-first, (N, C, H, W),
where Keras is channels-last, (N, H, W, C); an input that looks channels-last is named
as such in the error.

Randomness is a function of (seed, epoch): the shuffling, dropout masks and
augmentation of epoch ``e`` come from ``device.rng(seed, e)``, so a run resumed
from the checkpoint of epoch ``e`` repeats the uninterrupted run exactly (on the
CPU, where every kernel is deterministic).

Model files are ``.npz`` archives read with ``allow_pickle=False``: the weights,
and a JSON description of the architecture (and, in a checkpoint, the optimiser's
state and the training position). Loading a file can never run code, and it is
checked from its headers before anything is allocated (``gpuconv.nn.modelfile``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from gpuconv._checks import check_bool, check_int, check_not_masked, check_number, short_repr
from gpuconv._files import atomic_write
from gpuconv.nn.callbacks import Callback, ProgressLogger
from gpuconv.nn.device import Device, array_module, resolve_device, to_host
from gpuconv.nn.layers import (LAYERS, BatchNorm2D, Conv2D, Dense, Flatten, Layer, ReLU,
                               check_input_shape)
from gpuconv.nn.losses import LOSSES, SoftmaxCrossEntropy, correct_count
from gpuconv.nn.modelfile import (FORMAT, FORMAT_VERSION, MAX_MODEL_BYTES, META, ModelFile,
                                  check_extra, check_structure)
from gpuconv.nn.optimizers import Optimizer, make_optimizer
from gpuconv.nn.step import Trainer


def _check_numbers(**arrays) -> None:
    """Each array must be a NumPy or CuPy array of numbers (not masked: nothing honours a
    mask)."""
    for name, a in arrays.items():
        check_not_masked(a, name)
        if getattr(getattr(a, "dtype", None), "kind", None) not in tuple("biuf"):
            raise TypeError(f"{name} must be a NumPy or CuPy array of numbers, got "
                            f"{type(a).__name__} {getattr(a, 'dtype', '')}".rstrip())


def _json_change(value, back, where: str) -> str | None:
    """Where and why ``value`` comes back from JSON as ``back``, not equal; None if equal."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {short_repr(key)}; JSON keys are strings"
            change = _json_change(item, back[key], f"{where}[{key!r}]")
            if change:
                return change
    elif isinstance(value, (list, tuple)):
        if isinstance(value, tuple):
            return f"{where} is a tuple; JSON gives it back as a list"
        for i, (item, item_back) in enumerate(zip(value, back)):
            change = _json_change(item, item_back, f"{where}[{i}]")
            if change:
                return change
    elif isinstance(value, float) and math.isnan(value):
        return f"{where} is NaN, which equals nothing, not even its copy (store None)"
    elif value != back:
        return f"{where} is {short_repr(value)}, which JSON gives back as {short_repr(back)}"
    return None


def _check_callbacks(callbacks) -> list:
    """``callbacks`` (None: none) as a list of ``Callback``s."""
    try:
        callbacks = [] if callbacks is None else list(callbacks)
    except TypeError:
        raise TypeError(f"callbacks must be a list of gpuconv.nn Callbacks, got "
                        f"{type(callbacks).__name__}") from None
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(f"callbacks must be gpuconv.nn Callbacks, got "
                            f"{type(cb).__name__} {short_repr(cb)}")
    return callbacks


def _json_scalar(value):
    """A NumPy scalar in a layer's config or ``extra`` as the JSON value it stands for."""
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    raise TypeError(f"{type(value).__name__} {short_repr(value)} is not a JSON value")


class TrainingDiverged(RuntimeError):
    """The loss, a metric or a weight became NaN or infinite; the model's weights are no
    longer usable (and are never saved)."""


METRIC_NAMES = ("accuracy", "acc")  # Keras' alias: the logs use the name compile was given
# what rebuilding layers or an optimiser from a description may raise on a bad one
_CONFIG_ERRORS = (TypeError, ValueError, ArithmeticError, KeyError, AttributeError)


def _channels_last_hint(shape: Sequence[int]) -> str:
    """A hint for a per-sample shape that looks like Keras' (H, W, C)."""
    shape = tuple(shape)
    if len(shape) == 3 and shape[2] in (1, 3, 4) and min(shape[:2]) > 4:
        return (f"; {shape} looks channels-last (H, W, C), Keras' layout: gpuconv is "
                "channels-first (C, H, W), so pass x.transpose(0, 3, 1, 2)")
    return ""


@dataclass
class History:
    """Per-epoch metrics: ``history["val_accuracy"][-1]`` etc., as Keras."""

    history: dict[str, list] = field(default_factory=dict)

    def append(self, logs: dict) -> None:
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)


# --------------------------------------------------------------------------- the model
class Sequential:
    def __init__(self, layers: Sequence[Layer] = (), name: str = "sequential"):
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        self.layers: list[Layer] = []
        self.name = name
        self.device: Optional[Device] = None
        self.input_shape: Optional[tuple[int, ...]] = None
        self.dtype = np.dtype("float32")
        self.seed = 0
        self.optimizer: Optional[Optimizer] = None
        self.loss = SoftmaxCrossEntropy()
        self.metric_name = "accuracy"
        self.epoch = 0  # epochs trained so far
        self.history = History()
        self.stop_training = False
        self.extra: dict = {}  # what save(extra=...) stored, after load()
        self.graph = True  # on CuPy, fit / evaluate replay each step as a CUDA graph
        self.fuse_relu = True  # build: a ReLU inside the Conv2D or BatchNorm2D before it
        self._trainer: Optional[Trainer] = None
        for layer in layers:
            self.add(layer)

    def add(self, layer: Layer) -> None:
        if not isinstance(layer, Layer):
            raise TypeError(f"layers must be gpuconv.nn layers, got {type(layer).__name__}")
        if self.built:
            raise ValueError("the model is built; add layers before build()")
        taken = {existing.name for existing in self.layers}
        base, n = layer.name, 1
        while layer.name in taken:  # Keras' naming: conv2d, conv2d_1, conv2d_2, ...
            layer.name, n = f"{base}_{n}", n + 1
        self.layers.append(layer)

    # ------------------------------------------------------------------ building
    def build(self, input_shape: Optional[Sequence[int]] = None, device: Device | str = "cpu",
              seed: int = 0, dtype="float32") -> "Sequential":
        """Create every layer's parameters for per-sample inputs of ``input_shape`` ((C, H, W),
        or (features,) for a Dense first; default: the first layer's ``input_shape=``), on
        ``device`` (a ``Device`` or "cpu" / "cuda" / "auto"), from ``seed``. Once: a built
        model refuses another build (it would replace the weights);
        ``from_config(get_config())`` builds a fresh copy."""
        if not self.layers:
            raise ValueError("a Sequential model needs at least one layer")
        if self.built:
            raise ValueError(f"the model is built (for inputs {self.input_shape} on "
                             f"{self.device.describe()}); build() would replace its weights: "
                             "for new ones, build a copy: Sequential.from_config("
                             "model.get_config(), device)")
        if input_shape is None:
            input_shape = self.layers[0].declared_input_shape
            if input_shape is None:
                raise ValueError("build() needs input_shape (C, H, W), or input_shape= on the "
                                 "first layer")
        # every argument checked before anything changes; a failed build leaves the model
        # unbuilt (a layer's half-made parameters are made again by the next build)
        device = device if isinstance(device, Device) else resolve_device(device)
        try:
            real = np.dtype(dtype)
        except TypeError:
            real = None
        if real not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {short_repr(dtype)}")
        seed = check_int(seed, "seed", 0)
        input_shape = check_input_shape(input_shape)
        self.device, self.dtype, self.seed, self.input_shape = device, real, seed, input_shape
        try:
            self._build_layers()
        except BaseException as exc:
            self.device = None
            hint = _channels_last_hint(input_shape) if isinstance(exc, ValueError) else ""
            if hint:
                raise ValueError(f"{exc}{hint}") from None
            raise
        self._fuse_relu()
        return self

    def _build_layers(self) -> None:
        init_rng = np.random.default_rng(self.seed)
        shape, trainable_seen = self.input_shape, False
        for layer in self.layers:
            if layer.is_augmentation and trainable_seen:
                raise ValueError(f"{layer.name}: augmentation layers must come before any "
                                 "layer with parameters (they pass no gradient back)")
            layer.build(shape, self.device, init_rng, self.dtype)
            # nothing before the first trainable layer needs a gradient of its input
            layer.need_input_grad = trainable_seen
            trainable_seen = trainable_seen or bool(layer.params)
            shape = layer.output_shape

    def _fuse_relu(self) -> None:
        """With ``fuse_relu``, a ReLU runs inside the layer before it, one pass fewer over its
        output (the same numbers, bit for bit): a Conv2D(activation="relu"), or a Conv2D
        directly followed by a ReLU layer, runs as one conv that applies the ReLU as it
        writes its output (every backend); a BatchNorm2D directly followed by a ReLU applies
        it in its own passes over the batch (CPU) or its own kernels (CUDA)."""
        for before, layer in zip([None] + self.layers, self.layers):
            if isinstance(layer, ReLU):
                layer.in_epilogue = self.fuse_relu and (
                    (isinstance(before, Conv2D) and before._activation is None)
                    or isinstance(before, BatchNorm2D))
        for layer, after in zip(self.layers, self.layers[1:] + [None]):
            relu_after = isinstance(after, ReLU) and after.in_epilogue
            if isinstance(layer, Conv2D):
                layer.epilogue_relu = self.fuse_relu and (layer.activation == "relu"
                                                          or relu_after)
            if isinstance(layer, BatchNorm2D):
                layer.relu = relu_after

    @property
    def built(self) -> bool:
        return self.device is not None

    def _require_built(self) -> None:
        """Build for the first layer's ``input_shape=`` if given (Keras builds then), on the
        device ``fit`` would choose."""
        if self.built:
            return
        if self.layers and self.layers[0].declared_input_shape is not None:
            self.build(device="auto", seed=self.seed)
            return
        raise ValueError("the model is not built: call build(input_shape), fit(), or give "
                         "input_shape= to the first layer")

    @property
    def output_shape(self) -> tuple[int, ...]:
        self._require_built()
        return self.layers[-1].output_shape

    def compile(self, optimizer="adam", loss="sparse_categorical_crossentropy",
                metrics: Iterable[str] = ("accuracy",)) -> None:
        optimizer = make_optimizer(optimizer)
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"loss must be one of {tuple(LOSSES)}, got {short_repr(loss)}")
        if metrics is None or isinstance(metrics, str):
            metrics = [] if metrics is None else [metrics]
        elif not isinstance(metrics, Iterable):
            raise TypeError(f"metrics must be a metric name or a list of them, got "
                            f"{short_repr(metrics)}")
        metrics = list(metrics)
        unknown = [m for m in metrics if not isinstance(m, str) or m not in METRIC_NAMES]
        if unknown or len(metrics) > 1:
            raise ValueError(f"metrics may hold one of {METRIC_NAMES} (accuracy is always "
                             f"computed), got {metrics}")
        optimizer.bind(self)  # last: a compile refused changes nothing
        self.optimizer, self.loss = optimizer, LOSSES[loss]()
        self.metric_name = metrics[0] if metrics else "accuracy"

    # ------------------------------------------------------------------ parameters
    def parameters(self) -> dict[str, object]:
        """Every trainable array, keyed "<layer index>/<name>"."""
        return {f"{i}/{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    def gradients(self) -> dict[str, object]:
        return {f"{i}/{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()}

    def _buffers(self) -> dict[str, object]:
        return {f"{i}/{k}": v for i, layer in enumerate(self.layers)
                for k, v in layer.buffers.items()}

    def array_shapes(self, input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter ("param/<layer index>/<name>") and buffer
        ("buffer/...") for per-sample inputs of ``input_shape``, computed without creating
        any array (a model file is checked against them before the model is built)."""
        shapes, shape = {}, tuple(input_shape)
        for i, layer in enumerate(self.layers):
            shapes.update({f"param/{i}/{k}": v for k, v in layer.param_shapes(shape).items()})
            shapes.update({f"buffer/{i}/{k}": v for k, v in layer.buffer_shapes(shape).items()})
            shape = layer.compute_output_shape(shape)
        return shapes

    @property
    def n_params(self) -> int:
        """Trainable parameters."""
        return sum(layer.n_params for layer in self.layers)

    @property
    def n_non_trainable(self) -> int:
        """Saved values that are not trained (batch norm's running statistics)."""
        return sum(int(math.prod(v.shape)) for v in self._buffers().values())

    def get_weights(self) -> list[np.ndarray]:
        """Host copies of every parameter and buffer, layer by layer (Keras' order)."""
        self._require_built()
        return [to_host(v).copy() for layer in self.layers
                for v in (*layer.params.values(), *layer.buffers.values())]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Put back what ``get_weights`` returned (same shapes, same order, finite numbers);
        all are checked before any is set."""
        self._require_built()
        slots = [(f"{layer.name}/{k}", store, k) for layer in self.layers
                 for store in (layer.params, layer.buffers) for k in store]
        if not isinstance(weights, Sequence) or isinstance(weights, (str, bytes)):
            raise TypeError(f"set_weights needs a list of {len(slots)} arrays (as get_weights "
                            f"returns), got {short_repr(weights)}")
        if len(weights) != len(slots):
            raise ValueError(f"set_weights needs {len(slots)} arrays, got {len(weights)}")
        values = []
        for (name, store, key), value in zip(slots, weights):
            name = f"weight {name}"
            check_not_masked(value, name)
            try:
                value = to_host(value) if hasattr(value, "__cuda_array_interface__") else \
                    np.asarray(value)
            except (ValueError, TypeError):  # (a ragged list)
                raise TypeError(f"{name} must be an array of numbers, got "
                                f"{short_repr(value)}") from None
            _check_numbers(**{name: value})
            if value.shape != tuple(store[key].shape):
                raise ValueError(f"{name} needs shape {tuple(store[key].shape)}, got "
                                 f"{value.shape}")
            value = value.astype(self.dtype, copy=False)
            if not np.isfinite(value).all():
                raise ValueError(f"{name} holds NaN or infinite values at the model's dtype "
                                 f"{self.dtype}")
            values.append(value)
        for (_, store, key), value in zip(slots, values):
            store[key] = self.device.copy(value, self.dtype)

    # ------------------------------------------------------------------ computing
    def __call__(self, x, training: bool = False, rng=None):
        """The output for x (N,) + input_shape, an array of the model's device and dtype: of
        the built input shape, or, for images (C, H, W), of any size a fully convolutional
        model (no Flatten or Dense layer) takes."""
        shape = tuple(getattr(x, "shape", ()))
        if not self.built:
            raise ValueError("build() the model (or fit it) before calling it")
        any_size = (len(self.input_shape) == 3
                    and not any(isinstance(layer, (Flatten, Dense)) for layer in self.layers))
        want = tuple(self.input_shape[:1] if any_size else self.input_shape)
        if len(shape) != len(self.input_shape) + 1 or shape[1:1 + len(want)] != want:
            raise ValueError(f"x must have shape (N,) + {want}{' + (H, W)' if any_size else ''}, "
                             f"got {shape}")
        for layer in self.layers:
            x = layer.forward(x, training, rng)
        return x

    def _backward(self, grad) -> None:
        for layer in reversed(self.layers):
            if grad is None:
                break
            grad = layer.backward(grad)

    def _check_finite_weights(self, error) -> None:
        """Raise ``error(names)`` when a parameter or a buffer (BatchNorm2D's running
        statistics) holds a NaN or an infinity (one reduction and one read-back each)."""
        xp = self.device.xp
        bad = [key for key, value in {**self.parameters(), **self._buffers()}.items()
               if not bool(xp.isfinite(value).all())]
        if bad:
            raise error(bad[:5])

    def _check_inputs(self, x, y=None, finite: bool = False):
        """x (N,) + input_shape, numbers (``finite``: no NaN or infinity, which would make
        training diverge for no fault of the learning rate); y one whole-number label in
        [0, classes) per sample."""
        _check_numbers(x=x, **({} if y is None else {"y": y}))
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"x must have shape (N,) + {self.input_shape}, got "
                             f"{tuple(x.shape)}{_channels_last_hint(x.shape[1:])}")
        xp = array_module(x)
        if finite and x.dtype.kind == "f":
            # at the model's dtype: 1e39 is finite in float64, infinite in float32
            bad = ~xp.isfinite(x)
            if x.dtype.itemsize > self.dtype.itemsize:
                bad |= xp.abs(x) > np.finfo(self.dtype).max
            if bool(bad.any()):
                raise ValueError(f"x holds NaN or infinite values at the model's dtype "
                                 f"{self.dtype} (sample {int(xp.argwhere(bad)[0][0])})")
        if y is not None:
            if y.ndim != 1 or y.shape[0] != x.shape[0]:
                raise ValueError(f"y must hold one label per sample: shape ({x.shape[0]},), got "
                                 f"{tuple(y.shape)}")
            yp = array_module(y)
            if y.dtype.kind == "f" and not bool((yp.isfinite(y) & (yp.floor(y) == y)).all()):
                raise ValueError("y must hold whole-number class labels, got fractions, NaN or "
                                 "infinities")
            if len(self.output_shape) != 1:
                raise ValueError(f"labels need a classifier, whose output is one score per "
                                 f"class (shape (classes,)); this model's is "
                                 f"{tuple(self.output_shape)}")
            classes = self.output_shape[0]
            if y.size and (int(y.min()) < 0 or int(y.max()) >= classes):
                raise ValueError(f"labels must be in [0, {classes}), got [{int(y.min())}, "
                                 f"{int(y.max())}]")

    @staticmethod
    def _checked_pair(pair, name: str) -> tuple:
        """``pair`` as (x, y): a tuple or list of two arrays of numbers."""
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            got = (f"a {type(pair).__name__} of {len(pair)}" if isinstance(pair, (tuple, list))
                   else type(pair).__name__)
            raise TypeError(f"{name} must be a pair (x, y) of arrays, got {got}")
        _check_numbers(**{f"{name}[0]": pair[0], f"{name}[1]": pair[1]})
        return tuple(pair)

    def _to_device(self, x, y=None):
        xp = self.device.xp
        x = self.device.asarray(x, self.dtype)
        return x, (None if y is None else xp.asarray(y).astype(xp.int64))

    def train_step(self, x, y, rng) -> tuple[object, object]:
        """One optimiser step on a batch; returns (loss, correct count) as device scalars."""
        logits = self(x, training=True, rng=rng)
        loss, grad = self.loss(logits, y, self.device.xp)
        self._backward(grad)
        self.optimizer.apply(self.parameters(), self.gradients())
        return loss, correct_count(logits, y)

    def fit(self, x, y, batch_size: int = 32, epochs: int = 1, verbose="auto",
            callbacks: Sequence[Callback] = (), validation_split: float = 0.0,
            validation_data=None, shuffle: bool = True, initial_epoch: Optional[int] = None,
            seed: Optional[int] = None, device="auto",
            log_every: Optional[int] = None) -> History:
        """Train ``epochs`` more epochs (Keras: with ``initial_epoch``, train from that epoch
        up to epoch ``epochs``; ``self.epoch`` counts those done, so a loaded checkpoint
        continues). x (N,) + input_shape floats, y (N,) integer labels. ``verbose``: 0 silent,
        1 a progress bar ("auto"; a line every few seconds when standard output is not a
        terminal), 2 a line per epoch. Batch hooks run every batch; their logs are read
        back every ``log_every`` batches (default: every batch on the CPU, every 20 on a
        GPU, where a read back waits for the GPU). The data moves to the model's device
        once; batches are gathered there."""
        if self.optimizer is None:
            raise ValueError("compile() the model before fit()")
        if verbose == "auto":
            verbose = 1
        if verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be 0, 1, 2 or 'auto', got {verbose!r}")
        seed = None if seed is None else check_int(seed, "seed", 0)
        batch_size, epochs = check_int(batch_size, "batch_size", 1), check_int(epochs, "epochs", 0)
        if initial_epoch is not None:
            initial_epoch = check_int(initial_epoch, "initial_epoch", 0)
        if log_every is not None:
            log_every = check_int(log_every, "log_every", 1)
        shuffle = check_bool(shuffle, "shuffle")
        callbacks = _check_callbacks(callbacks)
        _check_numbers(x=x, y=y)
        if not self.built:
            declared = self.layers[0].declared_input_shape if self.layers else None
            self.build(declared or x.shape[1:], device, self.seed if seed is None else seed)
        elif not (isinstance(device, str) and device == "auto"):  # "auto": where it is built
            asked = device if isinstance(device, Device) else resolve_device(device)
            if asked != self.device:
                raise ValueError(f"device {short_repr(device)}: the model is built on "
                                 f"{self.device.describe()}; to move it, build a copy there: "
                                 "Sequential.from_config(model.get_config(), device), then "
                                 "set_weights(model.get_weights())")
        self._check_inputs(x, y, finite=True)
        if len(x) == 0:
            raise ValueError(f"fit needs at least one sample, got x of shape {tuple(x.shape)}")
        if seed is not None:  # (after the checks: a fit refused changes nothing)
            self.seed = seed
        if initial_epoch is None:
            first, last = self.epoch, self.epoch + epochs
        else:
            first, last = initial_epoch, epochs
        if first < 0 or last <= first:
            raise ValueError(f"fit trains epochs [initial_epoch, epochs): got initial_epoch "
                             f"{first} and epochs {epochs}, which leave none to train")
        if validation_data is None and check_number(validation_split, "validation_split"):
            if not 0.0 < validation_split < 1.0:
                raise ValueError(f"validation_split must be in (0, 1), got {validation_split!r}")
            cut = int(len(x) * (1.0 - validation_split))  # Keras': floor of the training part
            if not 0 < cut < len(x):
                raise ValueError(f"validation_split {validation_split!r} of {len(x)} samples "
                                 f"leaves {cut} to train on and {len(x) - cut} to validate "
                                 "with; both need at least one")
            x, y, validation_data = x[:cut], y[:cut], (x[cut:], y[cut:])
        x, y = self._to_device(x, y)
        if validation_data is not None:
            validation_data = self._checked_pair(validation_data, "validation_data")
            self._check_inputs(*validation_data, finite=True)
            validation_data = self._to_device(*validation_data)  # once, not every epoch
        if log_every is None:
            log_every = 1 if self.device.kind == "cpu" else 20
        steps = math.ceil(len(x) / batch_size)
        callbacks += [ProgressLogger(verbose)] if verbose else []
        for cb in callbacks:
            cb.set_model(self)
            cb.set_params({"epochs": last, "steps": steps, "verbose": verbose})
        self.stop_training, self.epoch = False, first
        for cb in callbacks:
            cb.on_train_begin({})
        logs: dict = {}
        while self.epoch < last and not self.stop_training:
            for cb in callbacks:
                cb.on_epoch_begin(self.epoch, {})
            logs = self._train_epoch(x, y, batch_size, steps, shuffle, callbacks, log_every)
            # the loss before each step was checked; this checks what the last step did
            where = f"after epoch {self.epoch + 1}"
            self._check_finite_weights(lambda bad: TrainingDiverged(
                f"{bad} became NaN or infinite {where}; try a smaller learning rate"
                + (" or inputs of a smaller scale" if any("running" in k for k in bad) else "")))
            if validation_data is not None:
                val = self.evaluate(*validation_data, batch_size=max(batch_size, 256))
                if not math.isfinite(val["loss"]):
                    raise TrainingDiverged(f"the validation loss became {val['loss']} {where}; "
                                           "try a smaller learning rate")
                logs.update({f"val_{k}": v for k, v in val.items()})
            self.epoch += 1
            self.history.append(logs)
            for cb in callbacks:
                cb.on_epoch_end(self.epoch - 1, logs)
        for cb in callbacks:
            cb.on_train_end(logs)
        return self.history

    def _train_epoch(self, x, y, batch_size, steps, shuffle, callbacks, log_every) -> dict:
        return self._steps().train_epoch(x, y, batch_size, steps, shuffle, callbacks, log_every)

    def _steps(self) -> Trainer:
        """The trainer whose captured steps belong to this optimiser, ``graph`` setting and
        these weights."""
        trainer = self._trainer
        if (trainer is None or trainer.optimizer is not self.optimizer
                or trainer.graph != self.graph or not trainer.still_bound()):
            self._trainer = trainer = Trainer(self, self.graph)
        return trainer

    def evaluate(self, x, y, batch_size: int = 256) -> dict:
        """Mean loss and accuracy over (x, y), in inference mode; x finite (a NaN sample's
        scores have no class)."""
        self._require_built()
        _check_numbers(x=x, y=y)
        self._check_inputs(x, y, finite=True)
        if len(x) == 0:
            raise ValueError("evaluate needs at least one sample, got x of shape "
                             f"{tuple(x.shape)}")
        return self._steps().evaluate(x, y, check_int(batch_size, "batch_size", 1))

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """The last layer's outputs (logits) for x, as a NumPy array."""
        self._require_built()
        self._check_inputs(x)
        batch_size = check_int(batch_size, "batch_size", 1)
        if len(x) == 0:
            return np.zeros((0,) + tuple(self.output_shape), self.dtype)
        return np.concatenate([to_host(self(self._to_device(x[s:s + batch_size])[0]))
                               for s in range(0, len(x), batch_size)])

    # ------------------------------------------------------------------ describing
    def summary(self, print_fn=print) -> str:
        """Print (through ``print_fn``, None for silence) and return each layer's output
        shape and parameter count, and the totals: trainable, and non-trainable (batch
        norm's running statistics, as Keras counts them)."""
        self._require_built()
        rows = [("Layer (type)", "Output shape", "Param #")]
        for layer in self.layers:
            count = layer.n_params + sum(int(math.prod(v.shape)) for v in layer.buffers.values())
            rows.append((f"{layer.name} ({type(layer).__name__})",
                         str((None,) + tuple(layer.output_shape)), f"{count:,}"))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        line = "-" * sum(widths)
        text = [f'Model: "{self.name}"  input {(None,) + self.input_shape}', line]
        for i, row in enumerate(rows):
            text.append(row[0].ljust(widths[0]) + row[1].ljust(widths[1]) + row[2].rjust(widths[2]))
            if i == 0:
                text.append("=" * sum(widths))
        text += ["=" * sum(widths),
                 f"Total params: {self.n_params + self.n_non_trainable:,}",
                 f"Trainable params: {self.n_params:,}",
                 f"Non-trainable params: {self.n_non_trainable:,}"]
        text = "\n".join(text)
        if print_fn is not None:
            print_fn(text)
        return text

    def get_config(self) -> dict:
        return {"name": self.name, "input_shape": list(self.input_shape),
                "dtype": self.dtype.name, "seed": self.seed,
                "layers": [{"class": type(layer).__name__, "config": layer.get_config()}
                           for layer in self.layers]}

    @classmethod
    def from_config(cls, config: dict, device: Device | str = "cpu") -> "Sequential":
        model = cls._unbuilt_from_config(config)
        return model.build(config["input_shape"], device, config["seed"], config["dtype"])

    @classmethod
    def _unbuilt_from_config(cls, config: dict) -> "Sequential":
        layers = []
        for entry in config["layers"]:
            if entry["class"] not in LAYERS:
                raise ValueError(f"unknown layer class {entry['class'][:100]!r} in the model file")
            layers.append(LAYERS[entry["class"]](**entry["config"]))
        return cls(layers, name=config["name"])

    # ------------------------------------------------------------------ saving
    def save(self, path, include_optimizer: bool = False, extra: Optional[dict] = None) -> None:
        """Write the model to ``path`` (.npz) atomically: a crash leaves the old file or the
        new one, never a broken one. ``include_optimizer`` adds the optimiser's state and
        the training position (a checkpoint); ``extra`` (a dict of JSON values) is stored
        with it. What ``load`` would refuse is never written (a ValueError): a model with a
        NaN or infinite weight, a description that does not load back (an optimiser whose
        learning-rate schedule is not one of gpuconv's)."""
        self._require_built()
        if not isinstance(path, (str, PathLike)):
            raise TypeError(f"path must be a file path, got {type(path).__name__}")
        include_optimizer = check_bool(include_optimizer, "include_optimizer")
        try:
            description = self.file_description(include_optimizer, extra)
        except ValueError as exc:
            raise ValueError(f"{path}: not written: {exc}") from None
        arrays = {f"param/{k}": to_host(v) for k, v in self.parameters().items()}
        arrays.update({f"buffer/{k}": to_host(v) for k, v in self._buffers().items()})
        if include_optimizer and self.optimizer is not None:
            arrays.update({f"optimizer/{k}": to_host(v) for k, v in self.optimizer.state.items()})
        bad = [k for k, v in arrays.items() if not np.isfinite(v).all()]  # load refuses them
        if bad:
            raise ValueError(f"{path}: not written: {', '.join(bad[:5])} "
                             f"{'is' if len(bad) == 1 else 'are'} NaN or infinite")
        arrays[META] = np.frombuffer(description, dtype=np.uint8)
        atomic_write(Path(path), lambda f: np.savez(f, **arrays))

    def file_description(self, include_optimizer: bool, extra: Optional[dict]) -> bytes:
        """The JSON description ``save`` writes, checked as ``load`` checks it (its structure,
        the layers and optimiser rebuilt from it): a ValueError names what would not load
        back, a TypeError an ``extra`` that is no dict. ``ModelCheckpoint`` calls it before
        training, so that a checkpoint that cannot be written fails before the first epoch."""
        check_extra(extra)
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "model": self.get_config(),
                "epoch": self.epoch, "history": self.history.history, "extra": extra or {}}
        if include_optimizer and self.optimizer is not None:
            meta["optimizer"] = {"config": self.optimizer.get_config(), "step": self.optimizer.step,
                                 "metric": self.metric_name}
        try:
            text = json.dumps(meta, default=_json_scalar)
            loaded = json.loads(text)
            change = _json_change(extra or {}, loaded["extra"], "extra")
            if change:
                raise ValueError(f"extra would come back changed: {change}")
            check_structure(loaded)
            self._unbuilt_from_config(loaded["model"])
            if "optimizer" in loaded:
                make_optimizer(loaded["optimizer"]["config"])
        except (*_CONFIG_ERRORS, RecursionError) as exc:  # RecursionError: a deep extra
            raise ValueError(f"the model's description would not load back "
                             f"({str(exc)[:300]})") from None
        return text.encode()

    @classmethod
    def load(cls, path, device: Device | str = "cpu",
             max_bytes: int = MAX_MODEL_BYTES) -> "Sequential":
        """A model saved by ``save`` (with its optimiser, compiled, when it was saved). The
        file is checked from its headers (archive members, array shapes and dtypes, the
        architecture's parameter shapes, ``max_bytes`` of arrays at most) before an array
        is read or a layer built; any problem is a ValueError naming the file."""
        with ModelFile(Path(path), check_int(max_bytes, "max_bytes", 0)) as file:
            return cls._from_file(file, device)

    @classmethod
    def _from_file(cls, file: ModelFile, device) -> "Sequential":
        meta, config = file.meta, file.meta["model"]
        try:
            model = cls._unbuilt_from_config(config)
            shapes = model.array_shapes(config["input_shape"])
            optimizer = make_optimizer(meta["optimizer"]["config"]) if "optimizer" in meta \
                else None
            # the name compile was given, which the logs use (files before it: "accuracy")
            metric = meta.get("optimizer", {}).get("metric", "accuracy")
            if metric not in METRIC_NAMES:
                raise ValueError(f"optimizer.metric must be one of {METRIC_NAMES}, got "
                                 f"{short_repr(metric)}")
        except _CONFIG_ERRORS as exc:
            file._fail(f"its architecture or optimiser is invalid ({str(exc)[:300]})")
        file.check_arrays(shapes, np.dtype(config["dtype"]).itemsize)
        if optimizer is not None:
            optimizer.step = meta["optimizer"]["step"]
            file.check_optimizer({k.removeprefix("param/"): v for k, v in shapes.items()
                                  if k.startswith("param/")}, optimizer.slots, optimizer.step)
        model.build(config["input_shape"], device, config["seed"], config["dtype"])

        def read(key):
            """The stored array at the model's dtype, on its device: save never writes a NaN
            or an infinity, so one here is damage (float64's 1e300 is infinite in float32)."""
            with np.errstate(over="ignore"):  # an overflow to infinity is refused next
                value = file.read(key).astype(model.dtype, copy=False)
            if not np.isfinite(value).all():
                file._fail(f"{key} holds NaN or infinite values (as {model.dtype})")
            return model.device.asarray(value, model.dtype)

        for key in shapes:
            kind, index, name = key.split("/", 2)
            store = model.layers[int(index)].params if kind == "param" else \
                model.layers[int(index)].buffers
            store[name] = read(key)
        model.epoch, model.history = meta["epoch"], History(meta["history"])
        if optimizer is not None:
            model.compile(optimizer, metrics=[metric])
            optimizer.state = {k.removeprefix("optimizer/"): read(k)
                               for k in file.shapes if k.startswith("optimizer/")}
        model.extra = meta.get("extra", {})
        return model

    # ------------------------------------------------------------------ the slides' conversion
    def to_fully_convolutional(self) -> "Sequential":
        """The same function with every Dense after the Flatten turned into a Conv2D (the
        slides' "converting linear to convolution"): the first takes the whole feature map
        (kernel = its H x W, in-channels = its C, out-channels = the units), the next ones
        are 1x1. On the training image size it gives (N, classes, 1, 1) with the same
        scores; on a larger image, a map of class scores."""
        self._require_built()
        flat = [i for i, layer in enumerate(self.layers) if isinstance(layer, Flatten)]
        if len(flat) != 1:
            raise ValueError("to_fully_convolutional needs exactly one Flatten layer, "
                             f"found {len(flat)}")
        f = flat[0]
        feature_shape = self.layers[f].input_shape
        layers, weights = [], []
        for i, layer in enumerate(self.layers):
            if i == f:
                continue
            if i > f and isinstance(layer, Dense):
                first_dense = not any(isinstance(earlier, Dense) for earlier in self.layers[f:i])
                kernel_hw = feature_shape[1:] if first_dense else (1, 1)
                conv = Conv2D(layer.units, kernel_hw, use_bias=layer.use_bias,
                              activation=layer.activation, name=layer.name)
                in_channels = to_host(layer.params["kernel"]).shape[0] // math.prod(kernel_hw)
                w = to_host(layer.params["kernel"]).T.reshape(layer.units, in_channels, *kernel_hw)
                layers.append(conv)
                weights.append({"kernel": w, **({"bias": to_host(layer.params["bias"])}
                                                if layer.use_bias else {})})
            elif i > f and layer.params:
                raise ValueError(f"{layer.name} ({type(layer).__name__}) after the Flatten has "
                                 "no convolutional form")
            else:
                layers.append(type(layer)(**layer.get_config()))
                weights.append({k: to_host(v) for k, v in layer.params.items()}
                               | {f"buffer:{k}": to_host(v) for k, v in layer.buffers.items()})
        model = Sequential(layers, name=f"{self.name}_fully_convolutional")
        model.build(self.input_shape, self.device, self.seed, self.dtype)
        for layer, values in zip(model.layers, weights):
            for k, v in values.items():
                store = layer.buffers if k.startswith("buffer:") else layer.params
                store[k.removeprefix("buffer:")] = self.device.copy(v, self.dtype)
        return model
