"""Weight initialisers, drawn on the host from the model's seeded generator so a model
starts from the same weights on the CPU and on the GPU."""

from __future__ import annotations

import math

import numpy as np

INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "zeros")


def initialize(name: str, shape: tuple[int, ...], fan_in: int, fan_out: int,
               rng: np.random.Generator) -> np.ndarray:
    """float64 weights of ``shape``. He (fan-in, for ReLU nets) keeps activations' variance;
    Glorot (fan-in + fan-out) keeps both activations' and gradients' variance."""
    if name == "zeros":
        return np.zeros(shape)
    if name.startswith("he_"):
        scale = 2.0 / fan_in
    elif name.startswith("glorot_"):
        scale = 2.0 / (fan_in + fan_out)
    else:
        raise ValueError(f"initializer must be one of {INITIALIZERS}, got {name!r}")
    if name.endswith("_normal"):
        return rng.normal(0.0, math.sqrt(scale), shape)
    limit = math.sqrt(3.0 * scale)  # a uniform on [-l, l] has variance l^2 / 3
    return rng.uniform(-limit, limit, shape)
