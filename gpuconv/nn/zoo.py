"""The built-in models for 28x28 grey images and 10 classes, each with the training
recipe it was tuned with (``gpuconv train --model NAME`` uses both)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from gpuconv.nn.layers import (BatchNorm2D, Conv2D, Dense, Dropout, Flatten,
                               GlobalAveragePooling2D, Layer, MaxPool2D, RandomFlip, RandomShift,
                               ReLU)
from gpuconv.nn.model import Sequential
from gpuconv.nn.optimizers import CosineDecay, make_optimizer, Optimizer


def _conv_bn_relu(filters: int, kernel: int = 3, strides: int = 1) -> list[Layer]:
    # "same"-size output for stride 1; stride 2 halves the size (padding kernel // 2)
    padding = "same" if strides == 1 else kernel // 2
    return [Conv2D(filters, kernel, strides=strides, padding=padding, use_bias=False),
            BatchNorm2D(), ReLU()]


def slides() -> list[Layer]:
    """The slides' network: two 5x5 convolutions of 20 filters, each followed by 2x2 max
    pooling, then fully connected layers to the 10 classes."""
    return [Conv2D(20, 5), ReLU(), MaxPool2D(2),
            Conv2D(20, 5), ReLU(), MaxPool2D(2),
            Flatten(), Dense(128), ReLU(), Dense(10)]


def lenet() -> list[Layer]:
    """The default: the slides' conv-pool-conv-pool-dense family, 3x3 kernels, batch norm."""
    return [*_conv_bn_relu(32), MaxPool2D(2),
            *_conv_bn_relu(64), MaxPool2D(2),
            Flatten(), Dense(128), ReLU(), Dropout(0.3), Dense(10)]


def allconv() -> list[Layer]:
    """"Striving for Simplicity: The All Convolutional Net": strided convolutions instead of
    pooling, a 1x1 convolution to the classes and global average pooling instead of dense
    layers."""
    return [*_conv_bn_relu(32), *_conv_bn_relu(32, strides=2),
            *_conv_bn_relu(64), *_conv_bn_relu(64, strides=2),
            *_conv_bn_relu(128), Conv2D(10, 1), GlobalAveragePooling2D()]


def vgg() -> list[Layer]:
    """The strongest: three VGG blocks of batch-normalised 3x3 convolutions (64, 128, 256
    filters) and global average pooling, trained on randomly shifted and mirrored images
    (a GPU model: about 0.23 GFLOP per image forward)."""
    return [RandomShift(2), RandomFlip(),
            *_conv_bn_relu(64), *_conv_bn_relu(64), MaxPool2D(2),
            *_conv_bn_relu(128), *_conv_bn_relu(128), MaxPool2D(2),
            *_conv_bn_relu(256), *_conv_bn_relu(256),
            GlobalAveragePooling2D(), Dense(10)]


@dataclass(frozen=True)
class Recipe:
    """A built-in model and how it is trained by default."""

    name: str
    layers: Callable[[], list[Layer]]
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    weight_decay: float = 0.0
    warmup_epochs: int = 0  # linear warm-up of the learning rate before the cosine decay

    @property
    def description(self) -> str:
        return (self.layers.__doc__ or "").strip().splitlines()[0]

    def model(self) -> Sequential:
        return Sequential(self.layers(), name=self.name)

    def training_optimizer(self, steps_per_epoch: int, epochs: int, optimizer: str | None = None,
                           learning_rate: float | None = None) -> Optimizer:
        """The recipe's optimiser (or ``optimizer``) with its learning rate (or
        ``learning_rate``) warmed up over the recipe's warm-up epochs, then decayed along a
        cosine until the end of ``epochs``; SGD gets Nesterov momentum 0.9."""
        kind = optimizer or self.optimizer
        lr = self.learning_rate if learning_rate is None else learning_rate
        if learning_rate is None and kind != self.optimizer:
            lr = {"adam": 1e-3, "sgd": 0.05}[kind]  # the recipe's rate belongs to its optimiser
        schedule = CosineDecay(lr, steps_per_epoch * epochs,
                               warmup_steps=steps_per_epoch * min(self.warmup_epochs, epochs - 1))
        config = {"name": kind, "learning_rate": schedule.get_config(),
                  "weight_decay": self.weight_decay}
        if kind == "sgd":
            config.update(momentum=0.9, nesterov=True)
        return make_optimizer(config)


MODELS = {
    "slides": Recipe("slides", slides, epochs=10, batch_size=64, optimizer="adam", learning_rate=1e-3),
    "lenet": Recipe("lenet", lenet, epochs=15, batch_size=128, optimizer="adam", learning_rate=2e-3),
    "allconv": Recipe("allconv", allconv, epochs=15, batch_size=128, optimizer="adam", learning_rate=2e-3),
    "vgg": Recipe("vgg", vgg, epochs=30, batch_size=128, optimizer="sgd", learning_rate=0.05,
                  weight_decay=5e-4, warmup_epochs=1),
}
DEFAULT_MODEL = "lenet"


def recipe(name: str) -> Recipe:
    if name not in MODELS:
        raise ValueError(f"model must be one of {tuple(MODELS)}, got {name!r}")
    return MODELS[name]


def make_model(name: str) -> Sequential:
    return recipe(name).model()


def make_training_optimizer(name: str, steps_per_epoch: int, epochs: int,
                            optimizer: str | None = None,
                            learning_rate: float | None = None) -> Optimizer:
    return recipe(name).training_optimizer(steps_per_epoch, epochs, optimizer, learning_rate)
