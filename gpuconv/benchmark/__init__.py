"""gpuconv's benchmarks: the layer suites (suite.py), timers and statistics (measure.py),
the results' tables, JSON and chart (results.py), the plan model's tables (plans.py) and the
device's limits (peaks.py), all torch-free; and the comparison with cuDNN behind ``gpuconv
bench`` (cudnn.py) with its PyTorch side (torch_ops.py), the only modules of this package
that import torch, and only when a bench runs (``gpuconv[bench]`` installs it). bench/ in
the source checkout holds the CPU and training-epoch benches."""

from __future__ import annotations


class BenchUnavailableError(RuntimeError):
    """The bench cannot run here (no CUDA device, no CUDA build of torch, ...)."""
