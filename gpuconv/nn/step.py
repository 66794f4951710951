"""The training and evaluation steps of a ``Sequential`` as fixed work on fixed buffers, so that
on CuPy each is captured once as a CUDA graph and replayed per batch.

A ``Step`` owns, for one batch size, the buffers the step reads (the batch, the dropout seed
[key, step], the optimiser's scalars) and what it adds to (the device totals [loss sum,
correct]). ``run`` writes a batch into them (device-side copies: no host synchronisation) and
runs the step's Python once per batch (eager: the CPU, ``graph=False``), or on CuPy: eagerly
for the first batch (it creates the optimiser's slots and compiles every kernel), captured on
the second into a graph with its own memory pool (every activation, gradient and workspace is
allocated there once, at capture, and belongs to the graph), then replayed. The last,
smaller batch of an epoch gets its own ``Step``. Everything the step changes in place
(parameters, optimiser slots, batch-norm statistics, totals) lives outside that pool.

Augmentation layers (first in a model) run before the step on the epoch's random stream; the
step's own randomness (dropout) is counter-based (``nn.counter_rng``), drawn from the seed
buffer, so a replay draws a fresh mask each step. The loss is summed on the device and read
back only at the model's log points (``Sequential.fit``'s ``log_every``).
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager

import numpy as np


class StepRandom:
    """The random draws a step's layers may make: counter-based seeds (``Dropout``); the
    ``k``-th call within a step gets stream ``k``, the same in every replay."""

    def __init__(self, seed):
        self.seed, self.calls = seed, 0

    def counter_seed(self) -> tuple[object, int]:
        self.calls += 1
        return self.seed, self.calls - 1


class Step:
    """The training (``training=True``) or evaluation step of ``model`` for batches of
    ``batch`` samples; ``graph``: capture and replay it (CuPy only)."""

    def __init__(self, model, batch: int, training: bool, graph: bool, totals):
        device = model.device
        xp, dtype = device.xp, model.dtype
        self.model, self.batch, self.training, self.totals = model, batch, training, totals
        self.x = xp.zeros((batch,) + model.input_shape, dtype=dtype)
        self.y = xp.zeros(batch, dtype=np.int64)
        self.seed = xp.zeros(2, dtype=np.int64)
        self.scalars = xp.zeros(2, dtype=dtype)
        self.augment = [layer for layer in model.layers if layer.is_augmentation]
        self.layers = model.layers[len(self.augment):]
        self.graph_wanted = graph and device.kind == "cuda"
        self.runs, self._graph, self._pool = 0, None, None

    def run(self, x, y, seed=None, scalars=None, rng=None) -> None:
        """One step on the batch (x, y) (device arrays; x before augmentation); ``seed`` and
        ``scalars``: this step's rows of the epoch's tables (training only)."""
        if self.training:
            for layer in self.augment:
                x = layer.forward(x, True, rng)
            self.seed[...] = seed
            self.scalars[...] = scalars
        self.x[...] = x
        self.y[...] = y
        if self._graph is None and self.graph_wanted and self.runs > 0:
            self._capture()
        if self._graph is not None:
            import cupy
            self._graph.launch(stream=cupy.cuda.get_current_stream())
        else:
            self._body()
        self.runs += 1

    def _body(self) -> None:
        """Forward, loss (adding to the totals) and, in training, backward and update."""
        model, training = self.model, self.training
        rng = StepRandom(self.seed) if training else None
        out = self.x
        for layer in self.layers:
            out = layer.forward(out, training, rng)
        grad = model.loss.gradient_and_totals(out, self.y, self.totals, model.device)
        if not training:
            return
        for layer in reversed(self.layers):
            if grad is None:
                break
            grad = layer.backward(grad)
        model.optimizer.apply_scalars(model.parameters(), model.gradients(), self.scalars)

    def _capture(self) -> None:
        import cupy
        stream = cupy.cuda.get_current_stream()
        if stream.ptr == 0:
            raise RuntimeError("capturing a CUDA graph needs a non-default stream: run the "
                               "step inside a cupy.cuda.Stream(non_blocking=True)")
        self._pool = cupy.cuda.MemoryPool()
        with cupy.cuda.using_allocator(self._pool.malloc):
            stream.begin_capture()
            try:
                self._body()
            finally:
                graph = stream.end_capture()
        self._graph = graph


class Trainer:
    """Runs a model's epochs through ``Step``s: the batch order, augmentation and batching on
    the device, one host read of the totals per log point."""

    def __init__(self, model, graph: bool):
        self.model, self.graph, self.optimizer = model, graph, model.optimizer
        self._bound: list | None = None  # what the steps updated in place, after the last run
        xp = model.device.xp
        # [loss sum, correct] of training and of evaluation apart: an evaluate() from a batch
        # callback leaves the epoch's running totals alone
        self.totals = xp.zeros(2, dtype=np.float64)
        self.eval_totals = xp.zeros(2, dtype=np.float64)
        self._steps: dict[tuple[int, bool], Step] = {}
        # the steps' buffers and the totals serve one call at a time: evaluate() from several
        # threads waits its turn (it summed into another call's totals); re-entrant, since a
        # batch callback of fit may evaluate
        self._busy = threading.RLock()
        self.stream = None
        if graph and model.device.kind == "cuda":
            self.stream = xp.cuda.Stream(non_blocking=True)  # capture needs its own stream

    def _in_place_state(self) -> list:
        """The arrays a captured step reads and updates where they are: parameters, buffers
        (batch-norm statistics) and optimiser slots."""
        model = self.model
        state = [*model.parameters().values(), *model._buffers().values()]
        return state + ([] if model.optimizer is None else list(model.optimizer.state.values()))

    def still_bound(self) -> bool:
        """False once one of those arrays was replaced (``set_weights``, a new optimiser
        state): the captured steps would update the old ones."""
        now = self._in_place_state()
        return self._bound is None or (len(now) == len(self._bound)
                                       and all(a is b for a, b in zip(now, self._bound)))

    def step(self, batch: int, training: bool) -> Step:
        key = (batch, training)
        if key not in self._steps:
            self._steps[key] = Step(self.model, batch, training, self.graph,
                                    self.totals if training else self.eval_totals)
        return self._steps[key]

    @contextmanager
    def _stream(self):
        """Run on the trainer's stream (capture needs a non-default one), ordered after what
        the caller's stream did before (the data's upload) and before what it does next
        (reading the weights)."""
        if self.stream is None:
            yield
            self._bound = self._in_place_state()
            return
        outer = self.model.device.xp.cuda.get_current_stream()
        self.stream.wait_event(outer.record())
        try:
            with self.stream:
                yield
        finally:
            outer.wait_event(self.stream.record())
        self._bound = self._in_place_state()

    def epoch_tables(self, steps: int):
        """(seeds, scalars): per step of this epoch, the dropout seed [key, global step] and
        the optimiser's scalars, built on the host and moved to the device once."""
        model, opt = self.model, self.model.optimizer
        key = int(np.random.SeedSequence([model.seed, model.epoch, 1]).generate_state(
            2, dtype=np.uint32).view(np.int64)[0])
        seeds = np.array([[key, opt.step + b] for b in range(steps)], dtype=np.int64)
        scalars = np.stack([opt.step_scalars(opt.step + b, model.dtype) for b in range(steps)])
        return model.device.asarray(seeds), model.device.asarray(scalars)

    def train_epoch(self, x, y, batch_size: int, steps: int, shuffle: bool, callbacks,
                    log_every: int) -> dict:
        model = self.model
        with self._busy, self._stream():
            return self._train_epoch(model, x, y, batch_size, steps, shuffle, callbacks, log_every)

    def _train_epoch(self, model, x, y, batch_size, steps, shuffle, callbacks, log_every):
        from gpuconv.nn.model import TrainingDiverged
        xp, metric = model.device.xp, model.metric_name
        rng = model.device.rng(model.seed, model.epoch)
        order = rng.permutation(len(x)) if shuffle else xp.arange(len(x))
        seeds, scalars = self.epoch_tables(steps)
        start, lr = time.perf_counter(), model.optimizer.learning_rate
        self.totals[...] = 0
        seen, logs = 0, {}
        for b in range(steps):
            for cb in callbacks:
                cb.on_train_batch_begin(b, logs)
            idx = order[b * batch_size:(b + 1) * batch_size]
            self.step(len(idx), True).run(x[idx], y[idx], seeds[b], scalars[b], rng)
            model.optimizer.step += 1
            seen += len(idx)
            if (b + 1) % log_every == 0 or b + 1 == steps:
                loss_sum, correct = (float(v) for v in self.totals.tolist())
                mean_loss = loss_sum / seen
                if not math.isfinite(mean_loss):
                    raise TrainingDiverged(f"the training loss became {mean_loss} in epoch "
                                           f"{model.epoch + 1}, batch {b + 1}; try a smaller "
                                           "learning rate")
                logs = {"loss": mean_loss, metric: correct / seen, "seen": seen,
                        "seconds": time.perf_counter() - start}
            for cb in callbacks:
                cb.on_train_batch_end(b, logs)
        return {"loss": mean_loss, metric: correct / seen, "lr": lr,
                "seconds": time.perf_counter() - start}

    def evaluate(self, x, y, batch_size: int) -> dict:
        """Mean loss and accuracy over (x, y) in inference mode; one read-back at the end."""
        model = self.model
        with self._busy, self._stream():
            self.eval_totals[...] = 0
            for start in range(0, len(x), batch_size):
                xb, yb = model._to_device(x[start:start + batch_size], y[start:start + batch_size])
                self.step(len(xb), False).run(xb, yb)
            loss_sum, correct = (float(v) for v in self.eval_totals.tolist())
        return {"loss": loss_sum / len(x), model.metric_name: correct / len(x)}
