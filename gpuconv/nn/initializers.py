"""Weight initialisers, drawn on the host from the model's seeded generator so a model
starts from the same weights on the CPU and on the GPU."""

from __future__ import annotations

import math

import numpy as np

INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "zeros")


def check_initializer(name, what: str = "kernel_initializer") -> str:
    """``name`` must be one of ``INITIALIZERS``: checked where a layer is written, not where
    it is built."""
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(f"{what} must be one of {INITIALIZERS}, got {name!r}")
    return name


def initialize(name: str, shape: tuple[int, ...], fan_in: int, fan_out: int,
               rng: np.random.Generator) -> np.ndarray:
    """float64 weights of ``shape``. He (fan-in, for ReLU nets) keeps activations' variance;
    Glorot (fan-in + fan-out) keeps both activations' and gradients' variance."""
    if check_initializer(name, "initializer") == "zeros":
        return np.zeros(shape)
    scale = 2.0 / fan_in if name.startswith("he_") else 2.0 / (fan_in + fan_out)  # glorot_
    if name.endswith("_normal"):
        return rng.normal(0.0, math.sqrt(scale), shape)
    limit = math.sqrt(3.0 * scale)  # a uniform on [-l, l] has variance l^2 / 3
    return rng.uniform(-limit, limit, shape)
