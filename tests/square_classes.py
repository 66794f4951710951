"""A small stand-in for Fashion-MNIST for the trainer's tests: IDX files of 28x28 images in
10 classes, each class a square of its own brightness on noise, which a model learns in an
epoch or two."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gpuconv.data import write_idx


def write_square_classes(root: Path, train: int, test: int, suffix: str = "") -> Path:
    """``train`` and ``test`` images with their labels under ``root``, named as Fashion-MNIST's
    files plus ``suffix`` (".gz": compressed); returns ``root``."""
    rng = np.random.default_rng(0)
    for split, n in (("train", train), ("t10k", test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            images[i, 8:20, 8:20] += np.uint8(18 * label)
        write_idx(root / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(root / f"{split}-labels-idx1-ubyte{suffix}", labels)
    return root
