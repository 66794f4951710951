"""The training run's pictures (matplotlib, drawn off-screen): learning curves, the first
convolution's filters, and the slides' "feature maps" of one image after each
convolution."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no window, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from gpuconv.nn.device import to_host  # noqa: E402
from gpuconv.nn.layers import Conv2D  # noqa: E402
from gpuconv._files import atomic_write  # noqa: E402
from gpuconv.nn.model import Sequential  # noqa: E402

MAX_MAPS = 16  # channels shown per layer


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def learning_curves(history: dict, path: Path) -> Path:
    """Loss and accuracy per epoch, training and validation."""
    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history[metric], "o-", label="training")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "s-", label="validation")
        ax.set(xlabel="epoch", ylabel=metric, title=metric)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, path)


def _grid(images: list[np.ndarray], titles: list[str], suptitle: str, path: Path) -> Path:
    cols = min(8, len(images))
    rows = math.ceil(len(images) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.45 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, title in zip(axes.flat, images, titles):
        ax.imshow(image, cmap="gray")
        ax.set_title(title, fontsize=7)
    fig.suptitle(suptitle, fontsize=9)
    return _save(fig, path)


def first_layer_filters(model: Sequential, path: Path) -> Path:
    """Each filter of the first convolution (summed over its input channels)."""
    conv = next(layer for layer in model.layers if isinstance(layer, Conv2D))
    kernels = to_host(conv.params["kernel"]).sum(axis=1)
    return _grid(list(kernels), [f"filter {i}" for i in range(len(kernels))],
                 f"{conv.name}: {kernels.shape[0]} filters of {kernels.shape[1]}x{kernels.shape[2]}",
                 path)


def feature_maps(model: Sequential, image, label: str, path: Path) -> Path:
    """The input image and up to ``MAX_MAPS`` channels of each convolution's output for it."""
    x = model.device.asarray(image, model.dtype)
    images, titles = [to_host(x)[0, 0]], [f"input ({label})"]
    for layer in model.layers:
        x = layer.forward(x, training=False)
        if isinstance(layer, Conv2D):
            maps = to_host(x)[0, :MAX_MAPS]
            images += list(maps)
            titles += [f"{layer.name} #{c}" for c in range(len(maps))]
    return _grid(images, titles, "feature maps after each convolution", path)
