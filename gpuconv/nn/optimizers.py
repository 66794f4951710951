"""Optimisers (SGD with momentum / Nesterov / weight decay, Adam) and learning-rate
schedules. Their state is a dict of arrays keyed like the model's parameters, so a
checkpoint saves it and a resumed run continues exactly."""

from __future__ import annotations

import gc
import math
import numbers
import weakref

import numpy as np

from gpuconv import parallel
from gpuconv._checks import check_bool, check_fraction, check_int, check_number
from gpuconv.nn.device import array_module, layer_kernels_for

# --------------------------------------------------------------------------- schedules
def _learning_rate(lr) -> float:
    lr = check_number(lr, "learning_rate")
    if lr < 0:
        raise ValueError(f"learning_rate must be >= 0, got {lr!r}")
    return lr


class Constant:
    def __init__(self, lr: float):
        self.lr = _learning_rate(lr)

    def __call__(self, step: int) -> float:
        return self.lr

    def get_config(self) -> dict:
        return {"name": "constant", "lr": self.lr}


class StepDecay:
    """``lr * gamma ** (step // step_size)``, gamma in (0, 1]: a decay."""

    def __init__(self, lr: float, step_size: int, gamma: float = 0.1):
        self.lr, self.step_size = _learning_rate(lr), check_int(step_size, "step_size", 1)
        self.gamma = check_number(gamma, "gamma")
        if not 0.0 < self.gamma <= 1.0:  # above 1 the rate grows without bound
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")

    def __call__(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.step_size)

    def get_config(self) -> dict:
        return {"name": "step", "lr": self.lr, "step_size": self.step_size, "gamma": self.gamma}


class CosineDecay:
    """``total_steps`` in all: ``warmup_steps`` of linear warm-up to ``lr`` (step i at
    ``lr * (i + 1) / warmup_steps``), then half a cosine from ``lr`` down to
    ``lr * final_fraction`` over the remaining steps."""

    def __init__(self, lr: float, total_steps: int, final_fraction: float = 0.0,
                 warmup_steps: int = 0):
        self.lr, self.total_steps = _learning_rate(lr), check_int(total_steps, "total_steps", 1)
        self.final_fraction = check_number(final_fraction, "final_fraction")
        if not 0.0 <= self.final_fraction <= 1.0:
            raise ValueError(f"final_fraction must be in [0, 1], got {final_fraction!r}")
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", 0)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / span)
        low = self.lr * self.final_fraction
        return low + (self.lr - low) * 0.5 * (1 + math.cos(math.pi * t))

    def get_config(self) -> dict:
        return {"name": "cosine", "lr": self.lr, "total_steps": self.total_steps,
                "final_fraction": self.final_fraction, "warmup_steps": self.warmup_steps}


SCHEDULES = {"constant": Constant, "step": StepDecay, "cosine": CosineDecay}


def make_schedule(config) -> Constant | StepDecay | CosineDecay:
    """A schedule from a number (constant), a schedule, or its ``get_config()`` dict."""
    if isinstance(config, numbers.Real):
        return Constant(config)
    if isinstance(config, dict):
        kwargs = dict(config)
        name = kwargs.pop("name", None)
        if name not in SCHEDULES:
            raise ValueError(f"a learning_rate schedule's name must be one of "
                             f"{tuple(SCHEDULES)}, got {name!r}")
        return SCHEDULES[name](**kwargs)
    if callable(config) and hasattr(config, "get_config"):
        return config
    raise TypeError(f"learning_rate must be a number, a schedule or a schedule config, "
                    f"got {config!r}")


# --------------------------------------------------------------------------- optimisers
class Optimizer:
    """Updates parameters in place from their gradients. ``state`` maps a parameter key
    and a slot name to an array; ``step`` counts updates (the schedule's clock)."""

    def __init__(self, learning_rate, weight_decay: float = 0.0):
        self.schedule = make_schedule(learning_rate)
        self.weight_decay = check_number(weight_decay, "weight_decay")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be non-negative, got {weight_decay!r}")
        self.state: dict[str, object] = {}
        self.step = 0
        # a weak reference to the model compile() gave it to (its state is that model's): a
        # model dropped frees the optimiser, and is not kept alive by it
        self._model = None

    def bind(self, model) -> None:
        """``model.compile(self)``: this optimiser now trains ``model``. Its state and step
        belong to one model's parameters: one that another model still uses is refused; one
        that another model used before starts afresh here (state empty, step 0)."""
        owner = None if self._model is None else self._model()
        if owner is not None and owner is not model and owner.optimizer is self:
            owner = None  # (not kept alive by this reference while collecting)
            gc.collect()  # a dropped, trained model lives on in its reference cycles till then
            owner = self._model()
        if owner is not model and self._model is not None:
            if owner is not None and owner.optimizer is self:
                raise ValueError(f"this {type(self).__name__} already trains another model "
                                 f"({owner.name!r}; its state and step belong to that "
                                 "model's weights): give each model its own, e.g. "
                                 "compile(optimizer.get_config()) for a fresh copy")
            self.state, self.step = {}, 0
        self._model = weakref.ref(model)

    def __getstate__(self) -> dict:
        """A copy (pickle, deepcopy) is bound to no model until compiled."""
        return {**self.__dict__, "_model": None}

    @property
    def learning_rate(self) -> float:
        return self.schedule(self.step)

    @property
    def slots(self) -> tuple[str, ...]:
        """The state arrays kept per parameter (each of its shape), there after the first step."""
        return ()

    def apply(self, params: dict, grads: dict) -> None:
        """One update of every ``params[key]`` (in place) from ``grads[key]``."""
        if params:
            p = next(iter(params.values()))
            scalars = array_module(p).asarray(self.step_scalars(self.step, p.dtype))
            self.apply_scalars(params, grads, scalars)
        self.step += 1

    def step_scalars(self, step: int, dtype) -> np.ndarray:
        """What update ``step`` needs besides the arrays, in the parameters' dtype:
        [learning rate, the optimiser's own scalar]."""
        lr = np.dtype(dtype).type(self.schedule(step))
        return np.array([lr, self._own_scalar(step, lr)], dtype=dtype)

    def apply_scalars(self, params: dict, grads: dict, scalars) -> None:
        """The update with ``step_scalars`` as an array on the parameters' device (a captured
        training step reads them from there); does not advance ``step``."""
        for key, p in params.items():
            g = grads[key]
            if self.weight_decay:
                g = g + p.dtype.type(self.weight_decay) * p  # L2 penalty, coupled (as SGD's)
            self._update(key, p, g, scalars)

    def _slot(self, key: str, slot: str, like):
        name = f"{key}/{slot}"
        if name not in self.state:
            self.state[name] = like * 0
        return self.state[name]

    def get_config(self) -> dict:
        return {"name": self.name, "learning_rate": self.schedule.get_config(),
                "weight_decay": self.weight_decay}


class SGD(Optimizer):
    """v = momentum * v + g; p -= lr * (g + momentum * v if nesterov else v) (PyTorch's form)."""

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        super().__init__(learning_rate, weight_decay)
        self.momentum = check_fraction(momentum, "momentum")
        self.nesterov = check_bool(nesterov, "nesterov")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0")

    @property
    def slots(self) -> tuple[str, ...]:
        return ("velocity",) if self.momentum else ()

    def _own_scalar(self, step: int, lr):
        return 1 if step == 0 else 0  # the first step starts the velocity at g, as PyTorch

    def _update(self, key, p, g, s):
        if self.momentum == 0:
            p -= s[0] * g
            return
        m = p.dtype.type(self.momentum)
        v = self._slot(key, "velocity", p)
        kernels = layer_kernels_for(p)
        if kernels is not None:  # one fused kernel instead of the expressions below
            kernels.sgd_momentum_update(g, s, m, self.nesterov, p, v)
            return
        v[...] = g if s[1] else m * v + g
        p -= s[0] * (g + m * v if self.nesterov else v)

    def get_config(self) -> dict:
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba) as Keras computes it, epsilon 1e-7 as Keras;
    ``weight_decay`` is an L2 term added to the gradient (PyTorch's Adam), not Keras'
    decoupled decay (AdamW's)."""

    name = "adam"

    def __init__(self, learning_rate=0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-7, weight_decay: float = 0.0):
        super().__init__(learning_rate, weight_decay)
        self.beta_1 = check_fraction(beta_1, "beta_1")
        self.beta_2 = check_fraction(beta_2, "beta_2")
        self.epsilon = check_number(epsilon, "epsilon")
        if self.epsilon <= 0:
            raise ValueError(f"epsilon must be positive, got {epsilon!r}")

    slots = ("m", "v")

    def _own_scalar(self, step: int, lr):
        """The bias-corrected step size of update ``step``."""
        t = step + 1
        return lr * lr.dtype.type(math.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t))

    def _update(self, key, p, g, s):
        b1, b2 = p.dtype.type(self.beta_1), p.dtype.type(self.beta_2)
        m, v = self._slot(key, "m", p), self._slot(key, "v", p)
        epsilon = p.dtype.type(self.epsilon)
        kernels = layer_kernels_for(p)
        if kernels is not None:  # one fused kernel instead of the expressions below
            kernels.adam_update(g, b1, b2, s, epsilon, p, m, v)
            return
        # m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  p -= s m / (sqrt(v) + epsilon),
        # operation by operation as written here, in place on pieces of the flat arrays over
        # the CPU pool (the model's parameters and slots are contiguous: flat views of them)
        flat = [a.reshape(-1) for a in (p, np.ascontiguousarray(g), m, v)]
        step = s[1]

        def update(piece):
            pp, gg, mm, vv = (a[piece] for a in flat)
            mm *= b1
            t = gg * (1 - b1)
            mm += t
            np.multiply(gg, gg, out=t)
            t *= 1 - b2
            vv *= b2
            vv += t
            np.sqrt(vv, out=t)
            t += epsilon
            u = mm * step
            u /= t
            pp -= u
        parallel.run(update, parallel.pieces_by_bytes(p.size, 4 * p.itemsize), 4 * p.nbytes)

    def get_config(self) -> dict:
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


OPTIMIZERS = {SGD.name: SGD, Adam.name: Adam}


def make_optimizer(config) -> Optimizer:
    """An optimiser from its name ("sgd", "adam"), an instance, or its ``get_config()``."""
    if isinstance(config, Optimizer):
        return config
    if isinstance(config, str):
        config = {"name": config}
    if isinstance(config, dict):
        kwargs = dict(config)
        name = kwargs.pop("name", None)
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {tuple(OPTIMIZERS)}, got {name!r}")
        return OPTIMIZERS[name](**kwargs)
    raise TypeError(f"optimizer must be a name, an Optimizer or a config dict, got {config!r}")
