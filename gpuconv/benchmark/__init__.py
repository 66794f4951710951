"""The torch-free half of gpuconv's benchmarks: the layer suites (suite.py), timers and
statistics (measure.py), and the results' tables, JSON and chart (results.py).

The other half compares with PyTorch / cuDNN and lives in the repository's bench/ (gpuconv
never imports torch): ``gpuconv bench`` runs bench/gpu.py from a source checkout."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

_CHECKOUT = Path(__file__).resolve().parents[2]


class BenchUnavailableError(RuntimeError):
    """The bench cannot run here (no CUDA device, no CUDA build of torch, no checkout, ...)."""


def load_gpu_bench() -> ModuleType:
    """bench/gpu.py of the source checkout this gpuconv runs from."""
    if not (_CHECKOUT / "bench" / "gpu.py").is_file():
        raise BenchUnavailableError(
            "gpuconv bench compares with cuDNN through PyTorch, which the gpuconv package never "
            "imports: run it from a source checkout of gpuconv (it uses bench/gpu.py)")
    if str(_CHECKOUT) not in sys.path:
        sys.path.insert(0, str(_CHECKOUT))
    return importlib.import_module("bench.gpu")
