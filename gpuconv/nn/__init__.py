"""Neural-network layers, a Keras-style ``Sequential`` model, losses, optimisers and the
built-in models, all on gpuconv's own kernels (``gpuconv.functional``)."""

from gpuconv.nn.callbacks import Callback, EarlyStopping, ModelCheckpoint, ProgressLogger
from gpuconv.nn.device import Device, resolve_device
from gpuconv.nn.layers import (ELU, AvgPool2D, BatchNorm2D, Conv2D, Conv2DTranspose, Dense,
                               Dropout, Flatten, GlobalAveragePooling2D, Layer, LeakyReLU,
                               MaxPool2D, RandomFlip, RandomShift, ReLU)
from gpuconv.nn.losses import SoftmaxCrossEntropy, log_softmax, softmax
from gpuconv.nn.model import History, Sequential, TrainingDiverged
from gpuconv.nn.optimizers import SGD, Adam, Constant, CosineDecay, StepDecay

__all__ = [
    "Device", "resolve_device", "Layer", "Conv2D", "Conv2DTranspose", "MaxPool2D", "AvgPool2D",
    "GlobalAveragePooling2D", "Flatten", "Dense", "ReLU", "LeakyReLU", "ELU", "Dropout",
    "BatchNorm2D", "RandomFlip", "RandomShift", "SoftmaxCrossEntropy", "log_softmax", "softmax",
    "Sequential", "Callback", "EarlyStopping", "ModelCheckpoint", "ProgressLogger", "History", "TrainingDiverged", "SGD", "Adam", "Constant",
    "StepDecay", "CosineDecay",
]
