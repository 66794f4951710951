"""The trainer's arithmetic against references, one rule at a time: SGD (momentum, Nesterov,
coupled weight decay, a schedule's rate each step) and Adam (PyTorch's, and Keras' epsilon
placement) update by update, the schedules' values, the documented defaults, softmax
cross-entropy and accuracy, inverted dropout, the augmentation layers' ranges, an epoch's
loss over a last smaller batch. References are PyTorch in float64 or a few lines of NumPy
written from the formulas the docstrings state."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gpuconv import nn
from gpuconv.nn.losses import SoftmaxCrossEntropy, correct_count
from gpuconv.nn.model import Sequential

RNG = np.random.default_rng


# --------------------------------------------------------------------------- schedules
def _step_decay(lr, step_size, gamma):
    return lambda i: lr * gamma ** (i // step_size)


def _cosine(lr, total, final, warmup):
    def rate(i):
        if i < warmup:
            return lr * (i + 1) / warmup
        t = min(1.0, (i - warmup) / max(1, total - warmup))
        return lr * final + (lr - lr * final) * 0.5 * (1 + math.cos(math.pi * t))
    return rate


SCHEDULE_CASES = [
    (lambda: nn.Constant(0.3), lambda i: 0.3),
    (lambda: nn.StepDecay(0.1, 3, 0.5), _step_decay(0.1, 3, 0.5)),
    (lambda: nn.StepDecay(0.2, 1), _step_decay(0.2, 1, 0.1)),
    (lambda: nn.CosineDecay(0.2, 10, final_fraction=0.1, warmup_steps=3),
     _cosine(0.2, 10, 0.1, 3)),
    (lambda: nn.CosineDecay(0.05, 6), _cosine(0.05, 6, 0.0, 0)),
]


@pytest.mark.parametrize("make, rate", SCHEDULE_CASES,
                         ids=lambda v: repr(v().get_config()) if callable(v) and
                         v.__code__.co_argcount == 0 else "")
def test_schedules_give_the_documented_rate_at_each_step(make, rate):
    schedule = make()
    for step in range(14):  # past total_steps: the cosine stays at its end value
        assert schedule(step) == pytest.approx(rate(step), rel=1e-12, abs=1e-15), step


def test_cosine_warms_up_to_the_rate_and_ends_at_its_fraction():
    schedule = nn.CosineDecay(0.4, 12, final_fraction=0.25, warmup_steps=4)
    assert schedule(0) == pytest.approx(0.1) and schedule(3) == pytest.approx(0.4)
    assert schedule(4) == pytest.approx(0.4)  # the cosine's start: the full rate
    assert schedule(12) == pytest.approx(0.1) and schedule(40) == pytest.approx(0.1)


# --------------------------------------------------------------------------- optimisers
def _params(rng):
    """A weight matrix and a bias (weight decay applies to both, as in PyTorch)."""
    return {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(4)}


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.05, momentum=0.9, weight_decay=0.1),
    dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.05),
    dict(lr=(0.1, 2, 0.5), momentum=0.9),  # StepDecay(0.1, 2, 0.5)
]


@pytest.mark.parametrize("case", SGD_CASES, ids=repr)
def test_sgd_updates_as_pytorch(case):
    case = dict(case)
    lr = case.pop("lr")
    schedule = _step_decay(*lr) if isinstance(lr, tuple) else (lambda i: lr)
    ours = nn.SGD(nn.StepDecay(*lr) if isinstance(lr, tuple) else lr, **case)
    rng = RNG(1)
    params = _params(rng)
    theirs = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = torch.optim.SGD(list(theirs.values()), lr=schedule(0), **case)
    for step in range(6):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        ours.apply(params, grads)
        for k, t in theirs.items():
            t.grad = torch.tensor(grads[k])
        opt.param_groups[0]["lr"] = schedule(step)
        opt.step()
        for k in params:
            np.testing.assert_allclose(params[k], theirs[k].detach().numpy(), rtol=1e-12,
                                       atol=1e-14, err_msg=f"{k} after update {step}")


def _keras_adam(params, grads_per_step, lr, beta_1, beta_2, epsilon, weight_decay):
    """Keras' Adam: lr_t = lr sqrt(1 - b2^t) / (1 - b1^t), p -= lr_t m / (sqrt(v) + epsilon),
    t from 1, with weight decay as an L2 term added to the gradient (PyTorch's Adam)."""
    params = {k: v.copy() for k, v in params.items()}
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    for t, grads in enumerate(grads_per_step, start=1):
        lr_t = lr * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        for k, p in params.items():
            g = grads[k] + weight_decay * p
            m[k] = beta_1 * m[k] + (1 - beta_1) * g
            v[k] = beta_2 * v[k] + (1 - beta_2) * g * g
            p -= lr_t * m[k] / (np.sqrt(v[k]) + epsilon)
    return params


ADAM_DEFAULTS = dict(learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                     weight_decay=0.0)  # Keras' (and the docstring's)
ADAM_CASES = [
    # (kwargs, gradient scale): epsilon of the gradients' size makes its placement count
    (dict(), 1.0),
    (dict(learning_rate=0.01, beta_1=0.8, beta_2=0.95), 1.0),
    (dict(learning_rate=0.01, weight_decay=0.1), 1.0),
    (dict(learning_rate=0.01, epsilon=1e-3), 1e-3),
    (dict(learning_rate=0.02, beta_1=0.5, beta_2=0.9, epsilon=1e-2, weight_decay=0.2), 1e-2),
]


@pytest.mark.parametrize("kwargs, scale", ADAM_CASES, ids=repr)
def test_adam_updates_as_keras_writes_it(kwargs, scale):
    ours = nn.Adam(**kwargs)
    rng = RNG(2)
    params = _params(rng)
    grads_per_step = [{k: scale * rng.standard_normal(v.shape) for k, v in params.items()}
                      for _ in range(6)]
    asked = {**ADAM_DEFAULTS, **kwargs}  # the reference takes what was asked, not what Adam kept
    want = _keras_adam(params, grads_per_step, asked["learning_rate"], asked["beta_1"],
                       asked["beta_2"], asked["epsilon"], asked["weight_decay"])
    for grads in grads_per_step:
        ours.apply(params, grads)
    for k in params:
        np.testing.assert_allclose(params[k], want[k], rtol=1e-12, atol=1e-15, err_msg=k)


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adam_with_a_negligible_epsilon_is_pytorchs_adam(weight_decay):
    """Bias correction and coupled weight decay as PyTorch (whose epsilon sits after the
    correction of v, Keras' before it: with a negligible epsilon the two agree)."""
    ours = nn.Adam(0.01, beta_1=0.85, beta_2=0.99, epsilon=1e-14, weight_decay=weight_decay)
    rng = RNG(3)
    params = _params(rng)
    theirs = {k: torch.tensor(v.copy(), requires_grad=True) for k, v in params.items()}
    opt = torch.optim.Adam(list(theirs.values()), lr=0.01, betas=(0.85, 0.99), eps=1e-14,
                           weight_decay=weight_decay)
    for step in range(6):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        ours.apply(params, grads)
        for k, t in theirs.items():
            t.grad = torch.tensor(grads[k])
        opt.step()
        for k in params:
            np.testing.assert_allclose(params[k], theirs[k].detach().numpy(), rtol=1e-10,
                                       atol=1e-15, err_msg=f"{k} after update {step}")


# --------------------------------------------------------------------------- defaults
DEFAULT_CASES = [
    (lambda: nn.Adam(), {**ADAM_DEFAULTS, "learning_rate": {"name": "constant", "lr": 0.001}}),
    (lambda: nn.SGD(), {"learning_rate": {"name": "constant", "lr": 0.01}, "momentum": 0.0,
                        "nesterov": False, "weight_decay": 0.0}),
    (lambda: nn.StepDecay(1.0, 5), {"gamma": 0.1}),
    (lambda: nn.CosineDecay(1.0, 5), {"final_fraction": 0.0, "warmup_steps": 0}),
    (lambda: nn.BatchNorm2D(), {"momentum": 0.99, "epsilon": 1e-3}),  # Keras'
    (lambda: nn.LeakyReLU(), {"negative_slope": 0.3}),  # Keras 3's layer
    (lambda: nn.Dense(2, activation="leaky_relu")._activation, {"negative_slope": 0.3}),
    (lambda: nn.RandomShift(), {"max_shift": 2}),
]


@pytest.mark.parametrize("make, want", DEFAULT_CASES, ids=lambda v: "" if callable(v) else
                         ",".join(v))
def test_defaults_are_the_documented_ones(make, want):
    config = make().get_config()
    assert {k: config[k] for k in want} == want


# --------------------------------------------------------------------------- loss and accuracy
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e3])  # large logits: exp overflows unshifted
def test_softmax_cross_entropy_is_pytorchs_mean_over_the_batch(scale):
    rng = RNG(4)
    logits, labels = scale * rng.standard_normal((7, 5)), rng.integers(0, 5, 7)
    loss, grad = SoftmaxCrossEntropy()(logits, labels, np)
    t = torch.tensor(logits, requires_grad=True)
    want = torch.nn.functional.cross_entropy(t, torch.tensor(labels))
    want.backward()
    assert float(loss) == pytest.approx(want.item(), rel=1e-12, abs=1e-12)
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_accuracy_takes_the_first_of_tied_maxima_as_argmax():
    logits = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0], [0.0, 0.0, 0.0], [5.0, 1.0, 5.0]])
    assert int(correct_count(logits, np.array([2, 0, 1, 0]))) == 2  # rows 1 and 3
    assert int(correct_count(logits, np.array([1, 1, 0, 2]))) == 2  # rows 0 and 2


def test_an_epochs_loss_and_accuracy_weigh_every_sample_once_with_a_last_smaller_batch():
    """lr 0: every batch sees the same weights, so the epoch's means are the whole data's."""
    rng = RNG(5)
    x, y = rng.standard_normal((11, 1, 2, 3)), rng.integers(0, 3, 11)
    model = Sequential([nn.Flatten(), nn.Dense(3)]).build((1, 2, 3), "cpu", 0, "float64")
    model.compile(nn.SGD(0.0))
    logits = model.predict(x)
    loss, _ = SoftmaxCrossEntropy()(logits, y, np)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0, shuffle=False).history
    assert history["loss"][0] == pytest.approx(float(loss), rel=1e-12)
    assert history["accuracy"][0] == float((logits.argmax(axis=1) == y).mean())
    result = model.evaluate(x, y, batch_size=4)
    assert result["loss"] == pytest.approx(float(loss), rel=1e-12)


def test_an_epochs_logged_rate_is_that_of_its_first_update():
    rng = RNG(6)
    x, y = rng.standard_normal((11, 1, 2, 3)), rng.integers(0, 3, 11)
    model = Sequential([nn.Flatten(), nn.Dense(3)]).build((1, 2, 3), "cpu", 0, "float64")
    model.compile(nn.SGD(nn.StepDecay(0.1, 2, 0.5)))  # 3 updates an epoch: steps 0, 3, 6 first
    history = model.fit(x, y, batch_size=4, epochs=3, verbose=0).history
    assert history["lr"] == pytest.approx([0.1, 0.05, 0.0125], rel=1e-12)  # last: .05, .025, ..


# --------------------------------------------------------------------------- random layers
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_keeps_a_fraction_scaled_by_its_inverse_and_routes_the_gradient_alike(rate):
    layer = nn.Dropout(rate)
    model = Sequential([layer]).build((5000,), "cpu", 0, "float64")
    rng = RNG(7)
    x = rng.uniform(1, 2, (2, 5000))
    y = layer.forward(x, training=True, rng=model.device.rng(int(rng.integers(1 << 30))))
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / (1 - rate), rtol=1e-15)
    assert kept.mean() == pytest.approx(1 - rate, abs=0.03)  # 6 standard deviations
    g = rng.standard_normal(x.shape)
    np.testing.assert_allclose(layer.backward(g), np.where(kept, g / (1 - rate), 0), rtol=1e-15)
    assert layer.forward(x, training=False) is x


def test_random_flip_mirrors_left_right_about_half_the_images():
    layer = nn.RandomFlip()
    model = Sequential([layer]).build((2, 3, 4), "cpu", 0, "float64")
    rng = RNG(8)
    x = rng.standard_normal((400, 2, 3, 4))
    y = layer.forward(x, training=True, rng=model.device.rng(int(rng.integers(1 << 30))))
    same = (y == x).all(axis=(1, 2, 3))
    flipped = (y == x[..., ::-1]).all(axis=(1, 2, 3))
    assert (same ^ flipped).all() and 150 < flipped.sum() < 250


def test_random_shift_moves_each_image_by_up_to_max_shift_each_way():
    s, (h, w) = 2, (5, 6)
    layer = nn.RandomShift(s)
    model = Sequential([layer]).build((1, h, w), "cpu", 0, "float64")
    rng = RNG(9)
    x = rng.uniform(1, 2, (500, 1, h, w))
    y = layer.forward(x, training=True, rng=model.device.rng(int(rng.integers(1 << 30))))
    padded = np.pad(x, ((0, 0), (0, 0), (s, s), (s, s)))
    shifts = set()
    for i in range(len(x)):
        found = [(dy, dx) for dy in range(2 * s + 1) for dx in range(2 * s + 1)
                 if np.array_equal(y[i], padded[i, :, dy:dy + h, dx:dx + w])]
        assert len(found) == 1, i
        shifts.add(found[0])
    assert shifts == {(dy, dx) for dy in range(2 * s + 1) for dx in range(2 * s + 1)}
