"""Keras habits in gpuconv.nn: "same" padding at any stride against PyTorch on explicitly
padded inputs, activation= and input_shape=, fit(epochs=N) trains N more epochs, verbose,
the callback hooks in Keras' order, EarlyStopping, ModelCheckpoint, the "acc" alias,
summary() and the channels-last hint."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from gpuconv import nn
from gpuconv.nn.model import Sequential

RNG = np.random.default_rng


# --------------------------------------------------------------------------- "same" padding
def _tf_same(n, k, s, d=1):
    """TensorFlow's documented rule: ceil(n / s) outputs, the odd padding element after."""
    out = math.ceil(n / s)
    total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
    return total // 2, total - total // 2


def _pad_tf(x, kernel, stride, dilation=(1, 1), value=0.0):
    (th, bh), (lw, rw) = (_tf_same(n, k, s, d) for n, k, s, d in
                          zip(x.shape[2:], kernel, stride, dilation))
    return TF.pad(x, (lw, rw, th, bh), value=value)


def _conv_ref(x, w, b, kernel, stride, dilation=(1, 1)):
    return TF.conv2d(_pad_tf(x, kernel, stride, dilation), w, b, stride, dilation=dilation)


def _max_ref(x, kernel, stride):
    return TF.max_pool2d(_pad_tf(x, kernel, stride, value=-math.inf), kernel, stride)


def _avg_ref(x, kernel, stride):
    ones = torch.ones_like(x)  # the padding is not counted: divide by the real elements
    return (TF.avg_pool2d(_pad_tf(x, kernel, stride), kernel, stride)
            / TF.avg_pool2d(_pad_tf(ones, kernel, stride), kernel, stride))


def _transpose_ref(x, w, b, kernel, stride):
    """Keras' transposed "same": the adjoint of the "same" conv of an input stride times larger."""
    big = torch.zeros(x.shape[0], w.shape[1], x.shape[2] * stride[0], x.shape[3] * stride[1],
                      dtype=x.dtype, requires_grad=True)
    forward = _conv_ref(big, w, None, kernel, stride)  # (C_in, filters): conv maps filters to C_in
    (grad,) = torch.autograd.grad(forward, big, x)
    return grad + b[None, :, None, None]


SAME_CASES = [  # layer, per-sample input shape, reference
    (lambda: nn.Conv2D(3, 3, strides=2, padding="same"), (2, 7, 8),
     lambda l, x: _conv_ref(x, *_params(l), (3, 3), (2, 2))),
    (lambda: nn.Conv2D(3, (4, 2), strides=(3, 2), padding="SAME"), (2, 9, 6),
     lambda l, x: _conv_ref(x, *_params(l), (4, 2), (3, 2))),
    (lambda: nn.Conv2D(2, 2, dilation_rate=2, padding="same"), (1, 6, 5),
     lambda l, x: _conv_ref(x, *_params(l), (2, 2), (1, 1), (2, 2))),
    (lambda: nn.MaxPool2D(3, strides=2, padding="same"), (2, 8, 7),
     lambda l, x: _max_ref(x, (3, 3), (2, 2))),
    (lambda: nn.MaxPool2D(2, padding="same"), (1, 5, 6),
     lambda l, x: _max_ref(x, (2, 2), (2, 2))),
    (lambda: nn.AvgPool2D(2, padding="same"), (2, 7, 7),
     lambda l, x: _avg_ref(x, (2, 2), (2, 2))),
    (lambda: nn.AvgPool2D(3, strides=1, padding="same"), (1, 4, 5),
     lambda l, x: _avg_ref(x, (3, 3), (1, 1))),
    # an even window at stride 1: the odd padding element after, which ceil_mode cannot add
    (lambda: nn.MaxPool2D(2, strides=1, padding="same"), (1, 4, 4),
     lambda l, x: _max_ref(x, (2, 2), (1, 1))),
    (lambda: nn.MaxPool2D(2, strides=(2, 1), padding="same"), (2, 5, 2),
     lambda l, x: _max_ref(x, (2, 2), (2, 1))),
    (lambda: nn.MaxPool2D(2, strides=1, padding="same"), (1, 1, 1),
     lambda l, x: _max_ref(x, (2, 2), (1, 1))),
    (lambda: nn.AvgPool2D((4, 2), strides=1, padding="same"), (2, 3, 5),
     lambda l, x: _avg_ref(x, (4, 2), (1, 1))),
    (lambda: nn.Conv2DTranspose(3, 3, strides=2, padding="same"), (2, 4, 5),
     lambda l, x: _transpose_ref(x, *_params(l), (3, 3), (2, 2))),
    (lambda: nn.Conv2DTranspose(2, (4, 1), strides=(2, 3), padding="same"), (2, 3, 3),
     lambda l, x: _transpose_ref(x, *_params(l), (4, 1), (2, 3))),
]


def _params(layer):
    return (torch.tensor(layer.params["kernel"]), torch.tensor(layer.params["bias"]))


@pytest.mark.parametrize("make, shape, reference", SAME_CASES,
                         ids=lambda v: repr(v()) if callable(v) and v.__code__.co_argcount == 0
                         else "")
def test_same_padding_is_tensorflows_rule_at_any_stride(make, shape, reference):
    layer = make()
    model = Sequential([layer]).build(shape, "cpu", 3, "float64")
    if "bias" in layer.params:
        layer.params["bias"][:] = RNG(4).standard_normal(layer.params["bias"].shape)
    x = RNG(5).standard_normal((2,) + shape)
    want = reference(layer, torch.tensor(x)).detach().numpy()
    if isinstance(layer, nn.Conv2DTranspose):
        assert want.shape[2:] == tuple(n * s for n, s in zip(shape[1:], layer.spec.stride))
    else:
        assert want.shape[2:] == tuple(math.ceil(n / s) for n, s in
                                       zip(shape[1:], layer.spec.stride))
    np.testing.assert_allclose(model.predict(x), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make, shape, reference",
                         [case for case in SAME_CASES if "Pool" in repr(case[0]())])
def test_same_pooling_gradients_are_those_of_the_padded_reference(make, shape, reference):
    layer = make()
    Sequential([layer]).build(shape, "cpu", 3, "float64")
    layer.need_input_grad = True
    x = RNG(6).permutation(2 * math.prod(shape)).reshape((2,) + shape).astype(np.float64)
    y = layer.forward(x, training=True)
    g = RNG(7).standard_normal(y.shape)
    xt = torch.tensor(x, requires_grad=True)
    (want,) = torch.autograd.grad(reference(layer, xt), xt, torch.tensor(g))
    np.testing.assert_allclose(layer.backward(g), want.numpy(), rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------- activation=, input_shape=
@pytest.mark.parametrize("linear, activation", [
    (lambda a: nn.Dense(4, activation=a), nn.ReLU),
    (lambda a: nn.Conv2D(2, 3, activation=a), nn.ELU),
    (lambda a: nn.Conv2DTranspose(2, 3, strides=2, activation=a), nn.LeakyReLU),
])
def test_activation_argument_equals_the_activation_layer(linear, activation):
    name = {nn.ReLU: "relu", nn.ELU: "elu", nn.LeakyReLU: "leaky_relu"}[activation]
    shape = (6,) if "Dense" in repr(linear(None)) else (2, 5, 5)
    fused = Sequential([linear(name)]).build(shape, "cpu", 1, "float64")
    split = Sequential([linear(None), activation()]).build(shape, "cpu", 1, "float64")
    x = RNG(0).standard_normal((3,) + shape)
    for model in (fused, split):
        model.layers[0].need_input_grad = True
    y = fused.layers[0].forward(x, training=True)
    assert not np.allclose(y, split.layers[0].forward(x, training=True))  # the activation acts
    np.testing.assert_array_equal(y, split.layers[1].forward(split.layers[0].forward(x)))
    gy = RNG(1).standard_normal(y.shape)
    np.testing.assert_array_equal(fused.layers[0].backward(gy),
                                  split.layers[0].backward(split.layers[1].backward(gy)))
    assert fused.layers[0].get_config()["activation"] == name


@pytest.mark.parametrize("name, message", [("softmax", "from_logits"), ("tanhh", "one of")])
def test_unknown_or_softmax_activation_is_a_clear_error(name, message):
    with pytest.raises(ValueError, match=message):
        nn.Dense(3, activation=name)


def _small_model(metric="accuracy", seed=0):
    model = Sequential([nn.Conv2D(2, 3, activation="relu", input_shape=(1, 6, 6)),
                        nn.BatchNorm2D(), nn.Flatten(), nn.Dense(3)])
    model.compile(nn.SGD(0.05), metrics=[metric])
    model.seed = seed
    return model


def _data(n=24, seed=0):
    rng = RNG(seed)
    return rng.random((n, 1, 6, 6), dtype=np.float32), rng.integers(0, 3, n)


def test_input_shape_builds_the_model_and_summary_prints_the_counts(capsys):
    model = _small_model()
    text = model.summary()
    assert capsys.readouterr().out.strip() == text.strip()
    assert model.built and model.input_shape == (1, 6, 6)
    trainable = (2 * 9 + 2) + 2 * 2 + (2 * 16 * 3 + 3)  # conv, BN gamma/beta, dense
    assert f"Trainable params: {trainable:,}" in text
    assert "Non-trainable params: 4" in text  # BN running mean and variance
    assert f"Total params: {trainable + 4:,}" in text
    assert model.summary(print_fn=None) == text and capsys.readouterr().out == ""


def test_channels_last_data_is_named_as_such():
    x, y = _data()
    nhwc = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    with pytest.raises(ValueError, match=r"channels-last.*transpose\(0, 3, 1, 2\)"):
        _small_model().fit(nhwc, y, verbose=0)
    unbuilt = Sequential([nn.Conv2D(2, 5), nn.Flatten(), nn.Dense(3)])
    unbuilt.compile()
    big = RNG(0).random((4, 12, 12, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="does not fit.*channels-last"):
        unbuilt.fit(big, y[:4], verbose=0)
    assert not unbuilt.built


# --------------------------------------------------------------------------- fit and callbacks
def test_fit_trains_epochs_more_each_call_and_refuses_an_empty_range():
    x, y = _data()
    model = _small_model()
    model.fit(x, y, epochs=2, verbose=0)
    model.fit(x, y, epochs=2, verbose=0)
    assert model.epoch == 4 and len(model.history.history["loss"]) == 4
    with pytest.raises(ValueError, match="leave none to train"):
        model.fit(x, y, epochs=3, initial_epoch=3, verbose=0)


class Recorder(nn.Callback):
    def __init__(self):
        super().__init__()
        self.calls = []

    def on_train_begin(self, logs=None):
        self.calls.append(("train_begin", dict(self.params)))

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(("epoch_begin", epoch))

    def on_batch_begin(self, batch, logs=None):  # Keras' older names still heard
        self.calls.append(("batch_begin", batch))

    def on_train_batch_end(self, batch, logs=None):
        self.calls.append(("batch_end", batch, sorted(logs)))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(("epoch_end", epoch, sorted(logs), self.model.epoch))

    def on_train_end(self, logs=None):
        self.calls.append(("train_end", sorted(logs)))


def test_callbacks_hear_keras_hooks_in_order_with_0_based_epochs():
    x, y = _data(20)
    model, recorder = _small_model(), Recorder()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[recorder])
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[recorder],
              validation_data=(x[:5], y[:5]))
    batch_keys = ["accuracy", "loss", "seconds", "seen"]
    epoch_keys = ["accuracy", "loss", "lr", "seconds"]
    val_keys = sorted(epoch_keys + ["val_accuracy", "val_loss"])
    expected = []
    for epoch, keys in ((0, epoch_keys), (1, val_keys)):
        expected += [("train_begin", {"epochs": epoch + 1, "steps": 3, "verbose": 0}),
                     ("epoch_begin", epoch)]
        for b in range(3):
            expected += [("batch_begin", b), ("batch_end", b, batch_keys)]
        expected += [("epoch_end", epoch, keys, epoch + 1), ("train_end", keys)]
    assert recorder.calls == expected


class Script(nn.Callback):
    """Replaces the logged val_loss by a scripted series and keeps each epoch's weights."""

    def __init__(self, values, key="val_loss"):
        super().__init__()
        self.values, self.key, self.weights = values, key, []

    def on_epoch_end(self, epoch, logs=None):
        logs[self.key] = self.values[epoch]
        self.weights.append(self.model.get_weights())


@pytest.mark.parametrize("key, values, min_delta, patience, epochs, best", [
    ("val_loss", [1.0, 1.0, 0.5], 0.0, 0, 2, 0),        # no change is no improvement
    ("val_loss", [1.0, 0.5, 0.25], 0.5, 0, 2, 0),       # an improvement of min_delta is none
    ("val_loss", [1.0, 0.25, 0.25], 0.5, 0, 3, 1),
    ("val_acc", [0.5, 0.5, 1.0], 0.0, 0, 2, 0),
    ("val_acc", [0.25, 0.5, 0.75], 0.25, 0, 2, 0),
    ("val_acc", [0.25, 0.75, 0.75], 0.25, 0, 3, 1),
    # an improvement starts the count again: 1 bad epoch, the best, then 2 bad epochs
    ("val_loss", [1.0, 1.5, 0.5, 0.75, 0.75, 0.25], 0.0, 2, 5, 2),
])
def test_early_stopping_needs_an_improvement_by_more_than_min_delta(key, values, min_delta,
                                                                    patience, epochs, best):
    rng = RNG(0)
    x, y = rng.standard_normal((8, 1, 2, 2)), rng.integers(0, 2, 8)
    model = Sequential([nn.Flatten(input_shape=(1, 2, 2)), nn.Dense(2)])
    model.compile(nn.SGD(0.01))
    stop = nn.EarlyStopping(key, min_delta=min_delta, patience=patience)
    model.fit(x, y, epochs=len(values), verbose=0, callbacks=[Script(values, key), stop])
    assert model.epoch == epochs and stop.best_epoch == best


@pytest.mark.parametrize("patience, stops_after", [(0, 3), (1, 3), (2, 4)])
def test_early_stopping_counts_patience_as_keras_and_restores_the_best(patience, stops_after):
    x, y = _data()
    script = Script([1.0, 0.9, 0.8, 0.85, 0.86, 0.87, 0.88, 0.9])
    model = _small_model()
    stop = nn.EarlyStopping(patience=patience, min_delta=0.01, restore_best_weights=True)
    model.fit(x, y, epochs=8, verbose=0, callbacks=[script, stop])
    assert model.epoch == stops_after + 1 and stop.best_epoch == 2
    for got, want in zip(model.get_weights(), script.weights[2]):
        np.testing.assert_array_equal(got, want)


def test_early_stopping_restores_the_best_when_training_ends_without_stopping():
    """Keras 3: the best epoch's weights come back at the end of training, stopped or not
    (they were kept only when EarlyStopping stopped, tf.keras 2's rule)."""
    x, y = _data()
    script = Script([5.0, 1.0, 3.0, 2.0, 2.0, 1.5, 1.2, 1.1])
    model = _small_model()
    stop = nn.EarlyStopping(patience=10, restore_best_weights=True)
    model.fit(x, y, epochs=8, verbose=0, callbacks=[script, stop])
    assert model.epoch == 8 and stop.stopped_epoch is None and stop.best_epoch == 1
    for got, want in zip(model.get_weights(), script.weights[1]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("n, split, validated", [(10, 0.25, 3), (5, 0.5, 3), (7, 0.3, 3),
                                                 (24, 0.25, 6), (10, 0.04, 1)])
def test_validation_split_holds_out_what_keras_holds_out(n, split, validated):
    """Keras trains on the first floor(N * (1 - split)) samples and validates on the rest
    (it held out round(N * split): 2 of 10 at 0.25, and refused 0.04 of 10)."""
    x, y = _data(n)
    model = _small_model()
    model.fit(x, y, epochs=1, verbose=0, validation_split=split)
    tail = model.evaluate(x[n - validated:], y[n - validated:])
    assert model.history.history["val_loss"][-1] == pytest.approx(tail["loss"], rel=1e-6)
    longer = model.evaluate(x[n - validated - 1:], y[n - validated - 1:])
    assert model.history.history["val_loss"][-1] != pytest.approx(longer["loss"], rel=1e-6)


def test_early_stopping_on_acc_maximises_and_a_missing_quantity_is_an_error():
    x, y = _data()
    model = _small_model("acc")
    model.fit(x, y, epochs=3, verbose=0, validation_split=0.25,
              callbacks=[Script([0.5, 0.6, 0.55], "val_acc"), nn.EarlyStopping("val_acc")])
    assert model.epoch == 3 and "val_acc" in model.history.history
    with pytest.raises(ValueError, match="does not log"):
        _small_model().fit(x, y, epochs=1, verbose=0, callbacks=[nn.EarlyStopping()])


def test_model_checkpoint_formats_the_path_and_keeps_the_best(tmp_path):
    x, y = _data()
    model = _small_model()
    pattern = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.npz")
    model.fit(x, y, epochs=4, verbose=0, callbacks=[
        Script([0.9, 0.5, 0.7, 0.4]), nn.ModelCheckpoint(pattern, save_best_only=True)])
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "ckpt-01-0.90.npz", "ckpt-02-0.50.npz", "ckpt-04-0.40.npz"]
    resumed = Sequential.load(tmp_path / "ckpt-02-0.50.npz")
    assert resumed.epoch == 2 and resumed.optimizer is not None


# --------------------------------------------------------------------------- verbose
class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("verbose, lines", [(0, 0), (2, 2), (1, 2)])
def test_verbose_prints_a_line_per_epoch_or_nothing(capsys, verbose, lines):
    x, y = _data()
    _small_model().fit(x, y, epochs=2, verbose=verbose)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == lines and all(line.startswith(f"epoch {i + 1}/2  loss ")
                                     for i, line in enumerate(out))


def test_progress_bar_on_a_terminal_and_timed_lines_elsewhere():
    x, y = _data()
    terminal, log = Terminal(), io.StringIO()
    _small_model().fit(x, y, batch_size=8, epochs=1, verbose=0,
                       callbacks=[nn.ProgressLogger(1, terminal)])
    assert "epoch 1/1" in terminal.getvalue() and "3/3" in terminal.getvalue()
    _small_model().fit(x, y, batch_size=8, epochs=1, verbose=0,
                       callbacks=[nn.ProgressLogger(1, log, interval=0.0)])
    lines = log.getvalue().splitlines()
    assert [line.split("  ")[1] for line in lines[:2]] == ["batch 1/3", "batch 2/3"]
    assert "ETA" in lines[0] and len(lines) == 3
