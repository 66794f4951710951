"""gpuconv.nn: every layer's backward against finite differences (float64), the model
against PyTorch step by step, saving and loading, resuming bit-identically, the
fully convolutional conversion, and the trainer's guards."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from gpuconv import nn
from gpuconv.nn import zoo
from gpuconv.nn.model import Sequential, TrainingDiverged

RNG = np.random.default_rng


# --------------------------------------------------------------------------- layer gradients
def _build(layer, input_shape, seed=0):
    model = Sequential([layer]).build(input_shape, "cpu", seed, "float64")
    layer.need_input_grad = True
    return model


LAYER_CASES = [
    (lambda: nn.Conv2D(3, 3, padding="same"), (2, 5, 5)),
    (lambda: nn.Conv2D(4, (2, 3), strides=2, padding=1, dilation_rate=1, groups=2), (2, 7, 6)),
    (lambda: nn.Conv2DTranspose(3, 4, strides=2, padding=1), (2, 3, 3)),
    (lambda: nn.MaxPool2D(2), (2, 4, 4)),
    (lambda: nn.AvgPool2D(3, strides=2, padding=1), (2, 5, 5)),
    (lambda: nn.GlobalAveragePooling2D(), (3, 4, 4)),
    (lambda: nn.Flatten(), (2, 3, 3)),
    (lambda: nn.Dense(5), (7,)),
    (lambda: nn.ReLU(), (2, 3, 3)),
    (lambda: nn.LeakyReLU(0.2), (2, 3, 3)),
    (lambda: nn.ELU(0.7), (2, 3, 3)),
    (lambda: nn.BatchNorm2D(), (3, 3, 3)),
    (lambda: nn.Conv2D(3, 3, strides=2, padding="same", activation="elu"), (2, 6, 7)),
    (lambda: nn.Conv2DTranspose(2, 3, strides=2, padding="same"), (2, 3, 3)),
    (lambda: nn.MaxPool2D(3, strides=2, padding="same"), (2, 6, 5)),
    (lambda: nn.AvgPool2D(2, padding="same"), (2, 5, 5)),
    (lambda: nn.Dense(4, activation="leaky_relu"), (6,)),
]


@pytest.mark.parametrize("make, shape", LAYER_CASES, ids=lambda v: repr(v()) if callable(v) else "")
def test_layer_backward_matches_finite_differences(make, shape):
    layer = make()
    _build(layer, shape)
    rng = RNG(1)
    x = rng.standard_normal((3,) + shape)
    if isinstance(layer, nn.MaxPool2D):  # distinct values: the maximum is unambiguous
        x = rng.permutation(np.arange(x.size, dtype=np.float64)).reshape(x.shape) / x.size
    gy = rng.standard_normal((3,) + layer.output_shape)
    _assert_backward_is_finite_differences(layer, x, gy, training=True)


@pytest.mark.parametrize("make, shape", LAYER_CASES, ids=lambda v: repr(v()) if callable(v) else "")
def test_layer_backward_after_an_inference_forward_is_that_forwards(make, shape):
    """A backward after an inference forward (a saliency map) is the gradient of that
    forward, not of the last training batch (max pooling routed it by that batch's argmax)."""
    layer = make()
    _build(layer, shape)
    rng = RNG(4)
    size = 3 * math.prod(shape)  # distinct values of both signs, none at a kink (0)
    x, earlier = ((rng.permutation(np.arange(size, dtype=np.float64)) + 0.5).reshape(
        (3,) + shape) / size - 0.5 for _ in range(2))
    layer.forward(earlier, training=True)
    gy = rng.standard_normal((3,) + layer.output_shape)
    _assert_backward_is_finite_differences(layer, x, gy, training=False)


@pytest.mark.parametrize("relu", [False, True], ids=["", "relu"])
def test_batch_norm_backward_after_an_inference_forward(relu):
    """The running statistics are constants there (a saliency map's gradient): it returned
    the training-mode gradient, through the batch's statistics."""
    layer = nn.BatchNorm2D()
    _build(layer, (3, 2, 3), seed=2)
    layer.relu = relu
    rng = RNG(3)
    layer.buffers["running_mean"][...] = rng.standard_normal(3)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2, 3)
    layer.params["gamma"][...], layer.params["beta"][...] = rng.uniform(0.5, 2, 3), rng.random(3)
    x, gy = rng.standard_normal((4, 3, 2, 3)), rng.standard_normal((4, 3, 2, 3))
    _assert_backward_is_finite_differences(layer, x, gy, training=False)


def _assert_backward_is_finite_differences(layer, x, gy, training: bool):
    def loss():
        return float((layer.forward(x, training=training) * gy).sum())

    loss()
    gx = layer.backward(gy)
    grads = dict(layer.grads)
    targets = [("input", x, gx)] + [(k, layer.params[k], grads[k]) for k in layer.params]
    for name, array, analytic in targets:
        numeric = np.zeros_like(array)
        for i in np.ndindex(array.shape):
            keep = array[i]
            array[i] = keep + 1e-6
            up = loss()
            array[i] = keep - 1e-6
            numeric[i] = (up - loss()) / 2e-6
            array[i] = keep
        bad = np.argwhere(~np.isclose(analytic, numeric, rtol=1e-5, atol=1e-7))
        assert not len(bad), f"{layer!r} d/d{name}: first bad index {tuple(bad[0])}, " \
                             f"{analytic[tuple(bad[0])]} vs {numeric[tuple(bad[0])]}"


def test_layers_need_the_right_input_rank():
    with pytest.raises(ValueError, match="Flatten"):
        Sequential([nn.Dense(3)]).build((1, 4, 4))
    with pytest.raises(ValueError, match="does not fit"):
        Sequential([nn.Conv2D(2, 5)]).build((1, 3, 3))
    with pytest.raises(ValueError, match="augmentation"):
        Sequential([nn.Conv2D(2, 3), nn.RandomFlip()]).build((1, 5, 5))


# --------------------------------------------------------------------------- PyTorch equivalence
def _small_model():
    return Sequential([nn.Conv2D(4, 3, padding="same"), nn.BatchNorm2D(momentum=0.9, epsilon=1e-5),
                       nn.ReLU(), nn.MaxPool2D(2), nn.Conv2D(6, 3, strides=2, padding=1),
                       nn.ELU(), nn.Flatten(), nn.Dense(8), nn.LeakyReLU(0.1), nn.Dense(3)])


def _torch_twin(model):
    torch = pytest.importorskip("torch")
    t = torch.nn
    layers = [t.Conv2d(1, 4, 3, padding="same"), t.BatchNorm2d(4, momentum=0.1, eps=1e-5),
              t.ReLU(), t.MaxPool2d(2), t.Conv2d(4, 6, 3, stride=2, padding=1), t.ELU(),
              t.Flatten(), t.Linear(24, 8), t.LeakyReLU(0.1), t.Linear(8, 3)]
    twin = t.Sequential(*layers).double()
    with torch.no_grad():
        for ours, theirs in zip(model.layers, layers):
            p = ours.params
            if isinstance(ours, nn.Conv2D):
                theirs.weight.copy_(torch.tensor(p["kernel"]))
                theirs.bias.copy_(torch.tensor(p["bias"]))
            elif isinstance(ours, nn.Dense):
                theirs.weight.copy_(torch.tensor(p["kernel"].T))
                theirs.bias.copy_(torch.tensor(p["bias"]))
    return torch, twin


def test_training_matches_pytorch_step_by_step():
    model = _small_model().build((1, 8, 8), "cpu", seed=3, dtype="float64")
    model.compile(nn.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=1e-3))
    torch, twin = _torch_twin(model)
    opt = torch.optim.SGD(twin.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                          weight_decay=1e-3)
    rng = RNG(4)
    for step in range(6):
        x, y = rng.standard_normal((10, 1, 8, 8)), rng.integers(0, 3, 10)
        loss, _ = model.train_step(x, y, model.device.rng(0, step))
        opt.zero_grad()
        want = torch.nn.functional.cross_entropy(twin(torch.tensor(x)), torch.tensor(y))
        want.backward()
        opt.step()
        assert float(loss) == pytest.approx(want.item(), rel=1e-10), f"step {step}"
    bn = model.layers[1].buffers
    np.testing.assert_allclose(bn["running_var"], twin[1].running_var.numpy(), rtol=1e-10)
    x = rng.standard_normal((5, 1, 8, 8))
    twin.eval()
    np.testing.assert_allclose(model.predict(x), twin(torch.tensor(x)).detach().numpy(),
                               rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- saving and loading
def _trained(tmp_path, name="slides", epochs=1):
    rng = RNG(0)
    x, y = rng.random((64, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 64)
    model = zoo.make_model(name).build((1, 28, 28), "cpu", 0)
    model.compile("adam")
    model.fit(x, y, epochs=epochs, batch_size=16)
    return model, x


def test_save_load_round_trip_is_exact(tmp_path):
    model, x = _trained(tmp_path, "lenet")
    model.save(tmp_path / "m.npz", include_optimizer=True)
    again = Sequential.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    assert again.summary() == model.summary()
    assert again.optimizer.step == model.optimizer.step
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:  # never pickle
        assert all(archive[k].dtype != object for k in archive.files)


def test_save_refuses_what_would_not_come_back_and_names_the_path(tmp_path):
    """A path that is no path, an extra whose keys JSON would turn into strings or nested past
    the encoder's depth, a folder on the way that is a file: clear errors, nothing written."""
    model, _ = _trained(tmp_path, "slides")
    deep = inner = {}
    for _ in range(100_000):
        inner["a"] = inner = {}
    with pytest.raises(TypeError, match="path must be a file path"):
        model.save(None)
    for extra, message in (({1: 2}, "JSON keys are strings"), (deep, "recursion")):
        with pytest.raises(ValueError, match=f"m.npz: not written: .*{message}"):
            model.save(tmp_path / "m.npz", extra=extra)
    (tmp_path / "file").write_text("kept")
    with pytest.raises(NotADirectoryError, match="a folder on the way is a file"):
        model.save(tmp_path / "file" / "m.npz")
    assert not (tmp_path / "m.npz").exists() and (tmp_path / "file").read_text() == "kept"


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    model, _ = _trained(tmp_path)
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary left behind


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "not a gpuconv model file"),
    (lambda p: p.write_bytes(b"hello"), "not a gpuconv model file"),
    (lambda p: np.savez(p, x=np.zeros(2)), "no __meta__"),
    (lambda p: _rewrite_meta(p, version=99), "version 99"),
    (lambda p: _rewrite_meta(p, layer_class="Evil"), "unknown layer class"),
    (lambda p: _rewrite_meta(p, drop_param=True), "do not match"),
])
def test_a_damaged_model_file_is_a_clear_error(tmp_path, damage, message):
    model, _ = _trained(tmp_path)
    path = tmp_path / "m.npz"
    model.save(path)
    damage(path)
    with pytest.raises(ValueError, match=message):
        Sequential.load(path)


def _rewrite_meta(path, version=None, layer_class=None, drop_param=False):
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays["__meta__"].tobytes())
    if version is not None:
        meta["version"] = version
    if layer_class is not None:
        meta["model"]["layers"][0]["class"] = layer_class
    if drop_param:
        del arrays[next(k for k in arrays if k.startswith("param/"))]
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)


# --------------------------------------------------------------------------- slides' conversion
@pytest.mark.parametrize("name", ["slides", "lenet"])
def test_fully_convolutional_model_gives_the_same_scores(tmp_path, name):
    model, x = _trained(tmp_path, name)
    fcn = model.to_fully_convolutional()
    assert not any(isinstance(layer, (nn.Dense, nn.Flatten)) for layer in fcn.layers)
    scores = fcn(fcn.device.asarray(x))
    assert scores.shape == (64, 10, 1, 1)
    np.testing.assert_allclose(scores[:, :, 0, 0], model.predict(x), rtol=2e-5, atol=2e-5)


def test_calling_a_model_checks_the_input_shape(tmp_path):
    """A model with a Dense layer takes its built input shape only, a fully convolutional
    one any size with the built channels: other shapes are a ValueError naming x."""
    model, x = _trained(tmp_path, "slides")
    fcn = model.to_fully_convolutional()
    for bad in (x[:, :, :20, :20], x[0], np.zeros((2, 3, 28, 28), np.float32)):
        with pytest.raises(ValueError, match=r"x must have shape \(N,\) \+ \(1, 28, 28\)"):
            model(bad)
    for bad in (x[0], np.zeros((2, 3, 28, 28), np.float32)):
        with pytest.raises(ValueError, match=r"x must have shape \(N,\) \+ \(1,\) \+ \(H, W\)"):
            fcn(bad)
    with pytest.raises(ValueError, match="build"):
        Sequential([nn.Flatten(), nn.Dense(3)])(x)


def test_a_model_of_flat_inputs_takes_the_same_x_everywhere():
    """Samples of any rank the first layer takes ((features,) for a Dense): fit, evaluate,
    predict and calling the model take the same x."""
    rng = RNG(3)
    x, y = rng.standard_normal((8, 4)), np.arange(8) % 2
    model = Sequential([nn.Dense(5, activation="relu", input_shape=(4,)), nn.Dense(2)])
    model.compile(nn.SGD(0.1))
    model.fit(x, y, verbose=0)
    scores = model.predict(x)
    assert scores.shape == (8, 2) and model.evaluate(x, y)["accuracy"] == float(
        (scores.argmax(axis=1) == y).mean())
    np.testing.assert_array_equal(model(model.device.asarray(x, model.dtype)), scores)
    with pytest.raises(ValueError, match=r"x must have shape \(N,\) \+ \(4,\), got \(8, 1, 4\)"):
        model(x[:, None])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_model_shares_no_weights_with_its_caller_or_its_fully_convolutional_form(dtype):
    """A model trains arrays of its own: set_weights copies the caller's (even when their
    dtype and layout are the model's already) and to_fully_convolutional gives the new model
    copies, so training the model changes neither."""
    rng = RNG(6)
    x, y = rng.random((8, 1, 4, 4)).astype(dtype), rng.integers(0, 3, 8)
    model = Sequential([nn.Conv2D(2, 1), nn.Flatten(), nn.Dense(3)]).build((1, 4, 4), "cpu", 0,
                                                                           dtype)
    model.compile(nn.SGD(0.1))
    given = model.get_weights()
    model.set_weights(given)
    given_before = [a.copy() for a in given]
    fcn = model.to_fully_convolutional()
    fcn_before = fcn.get_weights()
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), given_before))
    for what, now, before in (("the caller's", given, given_before),
                              ("the fully convolutional model's", fcn.get_weights(), fcn_before)):
        changed = [i for i, (a, b) in enumerate(zip(now, before)) if not np.array_equal(a, b)]
        assert changed == [], f"training the model changed {what} weights {changed}"


def test_fully_convolutional_model_maps_class_scores_over_a_larger_image(tmp_path):
    model, _ = _trained(tmp_path, "slides")  # valid convolutions: total stride 4
    fcn = model.to_fully_convolutional()
    big = RNG(5).random((2, 1, 36, 36), dtype=np.float32)
    scores = fcn(big)
    assert scores.shape == (2, 10, 3, 3)
    for i, j in ((0, 0), (1, 2), (2, 1)):
        crop = big[:, :, 4 * i:4 * i + 28, 4 * j:4 * j + 28]
        np.testing.assert_allclose(scores[:, :, i, j], model.predict(crop), rtol=2e-5, atol=2e-5)


# --------------------------------------------------------------------------- training guards
def test_fit_is_deterministic_and_resume_is_bit_identical(tmp_path):
    rng = RNG(1)
    x, y = rng.random((32, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 32)

    def fresh():
        m = zoo.make_model("vgg").build((1, 28, 28), "cpu", 7)  # dropout and augmentation
        m.compile(zoo.make_training_optimizer("vgg", steps_per_epoch=2, epochs=2))
        return m

    straight = fresh()
    straight.fit(x, y, epochs=2, batch_size=16)
    first = fresh()
    first.fit(x, y, epochs=1, batch_size=16)
    first.save(tmp_path / "ckpt.npz", include_optimizer=True)
    # one more epoch, said as fit(epochs=1) and as Keras' initial_epoch=1, epochs=2
    for more in (dict(epochs=1), dict(epochs=2, initial_epoch=1)):
        resumed = Sequential.load(tmp_path / "ckpt.npz")
        resumed.fit(x, y, batch_size=16, verbose=0, **more)
        assert resumed.epoch == 2, more
        for key, value in straight.parameters().items():
            np.testing.assert_array_equal(resumed.parameters()[key], value, err_msg=key)
        assert resumed.history.history["loss"] == straight.history.history["loss"]


@pytest.mark.parametrize("metric", ["acc", "accuracy"])
def test_a_checkpoint_keeps_the_metric_name_compile_was_given(tmp_path, metric):
    """The logs use the name compile was given ("acc", Keras' alias, or "accuracy"): a run
    resumed from a checkpoint logs under the same keys as the run it continues."""
    rng = RNG(2)
    x, y = rng.random((8, 1, 4, 4), dtype=np.float32), rng.integers(0, 3, 8)
    model = Sequential([nn.Flatten(), nn.Dense(3)]).build((1, 4, 4), "cpu", 1)
    model.compile("sgd", metrics=[metric])
    model.fit(x, y, epochs=1, batch_size=4, validation_data=(x, y), verbose=0)
    model.save(tmp_path / "c.npz", include_optimizer=True)
    resumed = Sequential.load(tmp_path / "c.npz")
    resumed.fit(x, y, epochs=1, batch_size=4, validation_data=(x, y), verbose=0)
    assert resumed.metric_name == metric
    assert {k: len(v) for k, v in resumed.history.history.items() if "acc" in k} == \
        {metric: 2, f"val_{metric}": 2}


def test_a_failed_build_leaves_the_model_unbuilt_and_usable():
    """A build that fails (a bad dtype, seed or device; a kernel larger than the input, met
    by fit's own build) changes nothing that a later build depends on."""
    x, y = RNG(4).random((8, 1, 8, 8), dtype=np.float32), np.zeros(8, np.int64)
    model = Sequential([nn.Conv2D(4, 3), nn.Flatten(), nn.Dense(3)])
    model.compile("sgd")
    for bad, error in ((dict(dtype="float16"), TypeError), (dict(dtype="bogus"), TypeError),
                       (dict(seed=-1), ValueError), (dict(device="bogus"), ValueError)):
        with pytest.raises(error):
            model.build((1, 8, 8), **bad)
        assert not model.built, bad
    with pytest.raises(ValueError, match="does not fit"):
        model.fit(np.zeros((4, 1, 2, 2), np.float32), y[:4])
    assert not model.built
    model.fit(x, y, verbose=0)
    assert model.input_shape == (1, 8, 8) and model.predict(x).shape == (8, 3)


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 3, 3), (2, 8, 8)])
def test_a_built_model_refuses_another_build_and_keeps_its_weights(shape):
    """build() makes the weights: on a trained model it would throw them away (or, failing
    half-way, leave it unbuilt), so a second build is refused whatever its shape."""
    x, y = RNG(5).random((8, 1, 8, 8), dtype=np.float32), np.arange(8) % 3
    model = Sequential([nn.Conv2D(4, 3), nn.Flatten(), nn.Dense(3)])
    model.compile("adam")
    model.fit(x, y, verbose=0)
    trained = {k: v.copy() for k, v in model.parameters().items()}
    with pytest.raises(ValueError, match=r"the model is built \(for inputs \(1, 8, 8\) on "
                                         r"cpu.*\); build\(\) would replace its weights"):
        model.build(shape)
    for key, value in trained.items():
        np.testing.assert_array_equal(model.parameters()[key], value, err_msg=key)
    copy = Sequential.from_config(model.get_config())  # the advice works
    assert copy.input_shape == (1, 8, 8) and copy.predict(x).shape == (8, 3)


def test_an_evaluate_from_a_batch_callback_leaves_the_epochs_metrics_alone():
    """Keras allows evaluate() in a callback; it must not reset or add to the running totals
    of the epoch being trained (the weights never depended on them)."""
    rng = RNG(2)
    x, y = rng.random((32, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 32)

    class Probe(nn.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 1:
                self.model.evaluate(x[:4], y[:4])

    histories = []
    for callbacks in ([], [Probe()]):
        m = zoo.make_model("slides").build((1, 28, 28), "cpu", 3)
        m.compile("sgd")
        history = m.fit(x, y, batch_size=8, callbacks=callbacks, verbose=0).history
        histories.append({k: v for k, v in history.items() if k != "seconds"})
    assert histories[0] == histories[1]


@pytest.mark.parametrize("call", ["fit", "evaluate"])
def test_labels_need_a_model_of_one_score_per_class(tmp_path, call):
    """A model whose output is not (classes,) (a fully convolutional one, a conv stack)
    cannot be scored against labels: a clear error, not a loss of 0."""
    model, x = _trained(tmp_path, "slides")
    y = np.zeros(len(x), np.int64)
    for other in (model.to_fully_convolutional(),
                  Sequential([nn.Conv2D(3, 3)]).build((1, 28, 28), "cpu", 0)):
        other.compile("sgd")
        with pytest.raises(ValueError, match=r"labels need a classifier.*one score per class"):
            getattr(other, call)(x, y)


def test_a_diverging_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path):
    class Sabotage(nn.Callback):
        def on_epoch_end(self, epoch, logs):
            self.model.layers[0].params["kernel"][...] = np.nan

    rng = RNG(2)
    x, y = rng.random((32, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 32)
    model = zoo.make_model("slides").build((1, 28, 28), "cpu", 0)
    model.compile("adam")
    path = tmp_path / "checkpoint.npz"
    with pytest.raises(TrainingDiverged, match="became nan"):
        model.fit(x, y, epochs=3, batch_size=16, callbacks=[nn.ModelCheckpoint(path), Sabotage()])
    kept = Sequential.load(path)
    assert kept.epoch == 1
    assert all(np.isfinite(v).all() for v in kept.parameters().values())


def test_summary_counts_parameters():
    model = zoo.make_model("slides").build((1, 28, 28))
    text = model.summary()
    # conv 5x5x1x20 + 20, conv 5x5x20x20 + 20, dense 320x128 + 128, dense 128x10 + 10
    total = 520 + 10020 + 41088 + 1290
    assert f"Total params: {total:,}" in text
    assert "(None, 20, 24, 24)" in text and "conv2d_1 (Conv2D)" in text


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_every_built_in_model_builds_to_ten_scores(name):
    model = zoo.make_model(name).build((1, 28, 28))
    assert model.output_shape == (10,)
    assert model.predict(np.zeros((2, 1, 28, 28), np.float32)).shape == (2, 10)


def test_cuda_without_a_gpu_says_what_is_missing():
    from gpuconv.backends import BackendUnavailableError, unavailable_reason
    if unavailable_reason("cupy") is None:
        pytest.skip("a GPU is available")
    with pytest.raises(BackendUnavailableError, match="device 'cuda' needs the cupy backend"):
        nn.resolve_device("cuda")
    assert nn.resolve_device("auto").kind == "cpu"
    with pytest.raises(ValueError, match="cannot run on device 'cpu'"):
        nn.resolve_device("cpu", "cupy")


def test_an_optimizer_trains_one_model_at_a_time():
    """Its state and step belong to one model's weights: another model may not share it
    while the first still uses it (b continued a's Adam moments and step, or failed deep in
    a broadcast); once the first has another optimiser it starts afresh for the next."""
    x, y = RNG(6).random((8, 1, 8, 8), dtype=np.float32), np.arange(8) % 3

    def model():
        m = Sequential([nn.Conv2D(4, 3), nn.Flatten(), nn.Dense(3)])
        return m.build((1, 8, 8))

    adam = nn.Adam(0.01)
    a, b = model(), model()
    a.compile(adam)
    a.fit(x, y, verbose=0)
    a.compile(adam)  # the same model again: its state stays
    assert adam.step == 1 and adam.state
    with pytest.raises(ValueError, match=r"this Adam already trains another model \('sequential'"
                                         r"; .*compile\(optimizer.get_config\(\)\)"):
        b.compile(adam)
    assert b.optimizer is None and a.optimizer is adam and adam.step == 1
    fresh = model()
    fresh.compile(adam.get_config())  # the advice: a copy without the state
    a.compile("sgd")
    b.compile(adam)
    assert adam.step == 0 and not adam.state
    b.fit(x, y, verbose=0)
    fresh.fit(x, y, verbose=0)
    for key, value in fresh.parameters().items():
        np.testing.assert_array_equal(b.parameters()[key], value, err_msg=key)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(loss=[]), ValueError, r"loss must be one of \('sparse_categorical_crossentropy',"),
    (dict(loss=None), ValueError, "loss must be one of"),
    (dict(metrics=3), TypeError, "metrics must be a metric name or a list of them, got 3"),
    (dict(metrics=[["accuracy"]]), ValueError, "metrics may hold one of"),
    (dict(metrics=["accuracy", "accuracy"]), ValueError, "metrics may hold one of"),
])
def test_compile_names_its_bad_argument(kwargs, error, match):
    model = Sequential([nn.Flatten(), nn.Dense(3)]).build((1, 2, 2))
    with pytest.raises(error, match=match):
        model.compile("sgd", **kwargs)
    assert model.optimizer is None
    model.compile("sgd", metrics=None)  # Keras' "no extra metric": accuracy, as always
    assert model.metric_name == "accuracy"


@pytest.mark.parametrize("layer", [
    lambda: nn.Conv2D(2, 3, strides=2, padding="same"),
    lambda: nn.MaxPool2D(3, strides=2, padding="same"),
    lambda: nn.AvgPool2D(3, strides=2, padding="same"),
])
def test_asking_for_shapes_changes_no_built_layer(layer):
    """array_shapes (what a model file is checked against) computes Keras' "same" padding
    for the size asked; the built layer keeps its own (it took the other size's padding)."""
    model = Sequential([layer(), nn.Flatten(), nn.Dense(3)]).build((1, 28, 28))
    x = RNG(7).random((2, 1, 28, 28), dtype=np.float32)
    before, spec = model.predict(x), model.layers[0].spec
    model.array_shapes((1, 29, 29))
    assert model.layers[0].spec == spec
    np.testing.assert_array_equal(model.predict(x), before)


def test_evaluate_from_several_threads_gives_each_its_own_totals():
    """evaluate() of one model from 8 threads at once: each gets what it gets alone (they
    summed into one another's totals: wrong losses, no error)."""
    import threading
    model = Sequential([nn.Conv2D(4, 3), nn.ReLU(), nn.Flatten(), nn.Dense(10)])
    model.build((1, 12, 12))
    model.compile("sgd")
    rng = RNG(8)
    data = [(rng.random((40, 1, 12, 12), dtype=np.float32), rng.integers(0, 10, 40))
            for _ in range(8)]
    alone = [model.evaluate(x, y, batch_size=8) for x, y in data]
    got = [None] * len(data)

    def evaluate(i):
        for _ in range(5):
            got[i] = model.evaluate(*data[i], batch_size=8)
    threads = [threading.Thread(target=evaluate, args=(i,)) for i in range(len(data))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == alone


def test_an_optimizer_of_a_dropped_model_is_free():
    """The optimiser refers to its model weakly: re-running a notebook cell that builds a new
    model with the same optimiser works once the old model is gone (it stayed alive, and
    the optimiser refused), and a copy of an optimiser belongs to no model."""
    import copy
    import pickle
    adam = nn.Adam(0.01)

    def model():
        m = Sequential([nn.Flatten(), nn.Dense(3)])
        return m.build((1, 2, 2))
    first = model()
    first.compile(adam)
    first.fit(RNG(1).random((4, 1, 2, 2), dtype=np.float32), np.arange(4) % 3, verbose=0)
    del first  # (fit left it in reference cycles: no collection here, as in a notebook)
    second = model()
    second.compile(adam)
    assert adam.step == 0 and not adam.state
    for clone in (copy.deepcopy(adam), pickle.loads(pickle.dumps(adam))):
        model().compile(clone)
