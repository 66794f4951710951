"""The training step replayed as a CUDA graph (gpuconv/nn/step.py) against the same step run
eagerly, on a real GPU (skipped elsewhere): N steps both ways from the same weights and
data give bit-identical weights, batch-norm statistics and optimiser state, with dropout,
augmentation, a last smaller batch, and evaluation through its own graphs."""

from __future__ import annotations

import numpy as np
import pytest

from gpuconv import nn
from gpuconv.nn import Sequential
from tests.arrays import GPU_BACKENDS

pytestmark = pytest.mark.skipif("cupy" not in GPU_BACKENDS, reason="needs CuPy on a CUDA GPU")


def _model(graph: bool):
    model = Sequential([nn.RandomFlip(), nn.Conv2D(8, 3, padding="same"), nn.BatchNorm2D(),
                        nn.ReLU(), nn.MaxPool2D(2), nn.Conv2D(16, 3), nn.ReLU(), nn.Flatten(),
                        nn.Dense(32), nn.ReLU(), nn.Dropout(0.3), nn.Dense(10)])
    model.build((1, 12, 12), "cuda", seed=4)
    model.compile(nn.Adam(nn.CosineDecay(0.01, 20, warmup_steps=3), weight_decay=1e-4))
    model.graph = graph
    return model


def test_graph_replay_equals_eager_steps_bit_for_bit():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((100, 1, 12, 12)).astype(np.float32), rng.integers(0, 10, 100)
    models = {graph: _model(graph) for graph in (True, False)}
    results = {graph: (m.fit(x, y, epochs=3, batch_size=32), m.evaluate(x, y, batch_size=48))
               for graph, m in models.items()}
    steps = models[True]._steps()._steps
    for key in ((32, True), (4, True), (48, False)):  # run at least twice: captured, replayed
        assert steps[key]._graph is not None, key
    want, got = models[False], models[True]
    for kind in ("parameters", "_buffers"):
        a, b = getattr(want, kind)(), getattr(got, kind)()
        for key in a:
            assert np.array_equal(a[key].get(), b[key].get()), key
    for key, value in want.optimizer.state.items():
        assert np.array_equal(value.get(), got.optimizer.state[key].get()), key
    assert results[True][1] == results[False][1]
    assert results[True][0].history["loss"] == results[False][0].history["loss"]
