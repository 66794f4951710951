"""The static training step (gpuconv/nn/step.py) on the CPU, where the very step a CUDA graph
captures runs eagerly: after N steps its weights, batch-norm statistics and optimiser state
equal those of the per-batch eager step (``Sequential.train_step``) bit for bit, for SGD and
Adam with schedules and weight decay, augmentation, and a last smaller batch. (On a GPU,
tests/test_gpu_graph.py compares graph replay with eager execution the same way.)"""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import nn
from gpuconv.nn import Sequential
from gpuconv.nn.step import StepRandom

OPTIMIZERS = {
    "sgd-nesterov-decay": lambda: nn.SGD(nn.StepDecay(0.05, 2, 0.5), momentum=0.9, nesterov=True,
                                         weight_decay=1e-3),
    "sgd-plain": lambda: nn.SGD(0.02),
    "adam-cosine": lambda: nn.Adam(nn.CosineDecay(0.01, 8, warmup_steps=2), weight_decay=1e-4),
}


def _model(dtype, dropout=False):
    layers = [nn.RandomFlip(), nn.Conv2D(4, 3, padding="same"), nn.BatchNorm2D(momentum=0.8),
              nn.ReLU(), nn.MaxPool2D(2), nn.Flatten()]
    layers += [nn.Dropout(0.3)] if dropout else []
    return Sequential(layers + [nn.Dense(5)]).build((1, 8, 8), "cpu", seed=3, dtype=dtype)


def _data(n=50):
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 1, 8, 8)).astype(np.float32), rng.integers(0, 5, n)


def _state(model):
    return {**model.parameters(), **{f"buffer/{k}": v for k, v in model._buffers().items()},
            **{f"opt/{k}": v for k, v in model.optimizer.state.items()}}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_static_step_equals_the_eager_step_bit_for_bit(optimizer, dtype):
    x, y = _data()
    batch, epochs = 16, 2  # 4 steps an epoch, the last of 2 samples
    eager, static = _model(dtype), _model(dtype)
    for model in (eager, static):
        model.compile(OPTIMIZERS[optimizer]())
    for epoch in range(epochs):  # Sequential.train_step, as fit ran it before the static step
        rng = eager.device.rng(eager.seed, epoch)
        order = rng.permutation(len(x))
        for b in range(4):
            idx = order[b * batch:(b + 1) * batch]
            eager.train_step(x[idx].astype(dtype), y[idx], rng)
    history = static.fit(x, y, epochs=epochs, batch_size=batch)
    want, got = _state(eager), _state(static)
    assert sorted(got) == sorted(want) and static.optimizer.step == eager.optimizer.step == 8
    for key in want:
        assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), key
    assert np.isfinite(history.history["loss"]).all()


def test_totals_match_the_model_on_the_same_batches():
    x, y = _data(40)
    model = _model("float64")
    model.compile("sgd")
    logits = model(x.astype("float64"))
    loss, _ = model.loss(logits, y, np)
    accuracy = float((logits.argmax(axis=1) == y).mean())
    for batch in (40, 16):  # one step, and three with a smaller last one
        result = model.evaluate(x, y, batch_size=batch)
        assert result["loss"] == pytest.approx(float(loss), rel=1e-12)
        assert result["accuracy"] == accuracy


def test_dropout_in_the_step_is_reproducible_and_fresh_each_step():
    x, y = _data()
    runs = []
    for _ in range(2):
        model = _model("float32", dropout=True)
        model.compile("adam")
        model.fit(x, y, epochs=1, batch_size=16)
        runs.append(model.parameters())
    for key in runs[0]:
        assert np.array_equal(runs[0][key], runs[1][key]), key
    trainer = model._steps()
    seeds, _ = trainer.epoch_tables(4)
    assert len({tuple(s) for s in seeds.tolist()}) == 4  # a new counter every step
    assert seeds[0, 1] == model.optimizer.step  # the global step: epochs never repeat a mask


def test_step_random_gives_each_call_its_own_stream():
    seed = np.array([5, 9])
    rng = StepRandom(seed)
    assert [rng.counter_seed()[1] for _ in range(3)] == [0, 1, 2]
    assert rng.counter_seed()[0] is seed


def test_device_random_counter_seeds_are_fresh_per_call_and_set_by_the_whole_seed():
    """A device random stream's counter seeds (an eager Dropout's masks) differ call by call,
    repeat for the same (seed, epoch), and differ for another epoch: the whole seed tuple
    decides the stream, not its first number."""
    device = nn.Device("cpu", "numpy")

    def keys(*seed):
        rng = device.rng(*seed)
        return [int(rng.counter_seed()[0][0]) for _ in range(3)]
    first = keys(7, 1)
    assert len(set(first)) == 3, first
    assert keys(7, 1) == first
    assert keys(7, 2)[0] != first[0] and keys(8, 1)[0] != first[0]
    assert device.rng(7, 1).permutation(50).tolist() != device.rng(7, 2).permutation(50).tolist()


def test_a_new_optimizer_or_graph_setting_gets_new_steps():
    model = _model("float32")
    model.compile("sgd")
    first = model._steps()
    assert model._steps() is first
    model.compile("adam")
    assert model._steps() is not first
    second = model._steps()
    model.graph = False
    assert model._steps() is not second and not model._steps().graph


def test_replaced_weights_get_new_steps():
    """set_weights puts new arrays in place: steps captured on the old ones are dropped."""
    x, y = _data(32)
    model = _model("float32")
    model.compile("adam")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    trainer = model._steps()
    model.evaluate(x, y)
    assert model._steps() is trainer  # its own runs keep it bound
    model.set_weights(model.get_weights())
    assert model._steps() is not trainer


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_weights_set_from_strided_arrays_train_as_contiguous_ones(optimizer):
    """set_weights with Fortran-ordered and reversed-view arrays: the optimiser updates them
    in place through flat views, so every weight must train exactly as from C-ordered
    copies of the same values."""
    x, y = _data(32)
    models = [_model("float32"), _model("float32")]
    weights = models[0].get_weights()
    strided = [np.asfortranarray(w) if w.ndim > 1 else w[::-1].copy()[::-1] for w in weights]
    models[0].set_weights([w.copy() for w in weights])
    models[1].set_weights(strided)
    for model in models:
        model.compile(OPTIMIZERS[optimizer]())
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for got, want in zip(models[1].get_weights(), models[0].get_weights()):
        assert np.array_equal(got, want)
    assert not all(np.array_equal(w, s) for w, s in zip(models[0].get_weights(), weights))


def test_capture_bookkeeping_with_a_stand_in_for_cupy(monkeypatch):
    """The capture path's control flow, CuPy replaced by a recorder: the first batch runs
    eagerly, the second is captured once (under the graph's own memory pool, on a
    non-default stream) and launched, later batches only launch."""
    import sys
    import types

    events = []

    class Stream:
        ptr = 1

        def begin_capture(self):
            events.append("begin")

        def end_capture(self):
            events.append("end")
            return types.SimpleNamespace(launch=lambda stream: events.append("launch"))

    class Pool:
        def malloc(self, size):
            raise AssertionError("not called by the stand-in")

    class UsingAllocator:
        def __init__(self, allocator):
            events.append("private pool")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            events.append("default pool")

    cuda = types.SimpleNamespace(get_current_stream=Stream, MemoryPool=Pool,
                                 using_allocator=UsingAllocator)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=cuda))
    x, y = _data(16)
    model = _model("float32")
    model.compile("sgd")
    step = model._steps().step(16, False)
    step.graph_wanted = True
    bodies = []
    monkeypatch.setattr(step, "_body", lambda: bodies.append(events.count("begin")))
    for _ in range(4):
        step.run(x, y)
    assert bodies == [0, 1]  # eagerly, then once inside the capture
    assert events == ["private pool", "begin", "end", "default pool", "launch", "launch",
                      "launch"]
