"""Opt-in tile autotuning for the CuPy backend, like ``torch.backends.cudnn.benchmark``.

Off by default. ``set_autotune(True)`` (also ``gpuconv.backends.cupy_backend.set_autotune``) or
``GPUCONV_AUTOTUNE=1`` turns it on: the first time a conv op meets a (device, op, shape,
dtype), every candidate tile is timed with CUDA events and the fastest is kept, in memory and
in ``$XDG_CACHE_HOME/gpuconv/autotune-v1.json`` (``~/.cache/gpuconv`` without XDG). The file is
written atomically (``gpuconv._files.atomic_write``); a corrupt or foreign file is ignored with
a warning, never an error, and so is a failed write.

``forced_tile(name)`` (a context manager) makes conv ops run one tile instead, wherever their
case has it: ``gpuconv bench --tiles`` times every tile of a case that way.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Iterable

from gpuconv._files import atomic_write
from gpuconv.backends import gpu_plan

CACHE_FILE = "autotune-v1.json"
_ENABLED: bool | None = None  # None: follow GPUCONV_AUTOTUNE


def set_autotune(enabled: bool | None) -> None:
    """Turn autotuning on or off for this process (None: back to ``GPUCONV_AUTOTUNE``)."""
    global _ENABLED
    _ENABLED = None if enabled is None else bool(enabled)


def enabled() -> bool:
    if _ENABLED is not None:
        return _ENABLED
    return os.environ.get("GPUCONV_AUTOTUNE", "") == "1"


_FORCED: str | None = None  # the tile forced_tile sets


@contextlib.contextmanager
def forced_tile(name: str | None):
    """Within the block, a conv op of the CuPy backend runs the GEMM tile ``name`` wherever its
    case has it (``gpu_plan._gemm_candidates``; elsewhere the case's own choice), in place of
    the plan model's or autotuning's choice. None: no tile forced."""
    global _FORCED
    if name is not None and name not in gpu_plan.TILES:
        raise ValueError(f"tile must be one of {sorted(gpu_plan.TILES)}, got {name!r}")
    previous, _FORCED = _FORCED, name
    try:
        yield
    finally:
        _FORCED = previous


def forced() -> str | None:
    return _FORCED


def switches() -> tuple:
    """What a conv op's tile choice depends on besides its arguments (a prepared call's
    signature holds it): the autotune switch and the forced tile."""
    return _ENABLED, _FORCED


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpuconv"


def make_key(device: str, op: str, shape, dtype: str) -> str:
    """One line per tuned problem: device name, op, shapes and hyper-parameters, dtype."""
    return f"{device}|{op}|{shape}|{dtype}"


class TuneCache:
    """Tile choices by key, mirrored in a JSON file."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else cache_dir() / CACHE_FILE
        self.entries = self._load()

    def _load(self) -> dict[str, str]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            warnings.warn(f"gpuconv autotune cache {self.path} unreadable, ignored: {exc}")
            return {}
        try:  # non-UTF-8 bytes are a ValueError too; deep nesting a RecursionError
            data = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            warnings.warn(f"gpuconv autotune cache {self.path} is corrupt, ignored: {exc}")
            return {}
        if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in data.items()):
            warnings.warn(f"gpuconv autotune cache {self.path} has an unknown layout, ignored")
            return {}
        return data

    def get(self, key: str) -> str | None:
        return self.entries.get(key)

    def put(self, key: str, value: str) -> None:
        """Remember ``value`` and rewrite the file atomically (a failed write only warns)."""
        self.entries[key] = value
        text = json.dumps(self.entries, indent=1, sort_keys=True).encode()
        try:
            atomic_write(self.path, lambda f: f.write(text))
        except (OSError, ValueError) as exc:  # ValueError: no regular file in the cache's place
            warnings.warn(f"gpuconv autotune cache {self.path} not written: {exc}")


_CACHE: TuneCache | None = None


def _cache() -> TuneCache:
    global _CACHE
    if _CACHE is None:
        _CACHE = TuneCache()
    return _CACHE


def best_tile(key: str, candidates: Iterable[str], time_ms: Callable[[str], float],
              cache: TuneCache | None = None) -> str:
    """The cached choice for ``key``, or the candidate with the least ``time_ms`` (then cached).
    A cached name that is no longer a candidate is tuned again."""
    cache = cache if cache is not None else _cache()
    candidates = list(candidates)
    hit = cache.get(key)
    if hit in candidates:
        return hit
    best = min(candidates, key=time_ms)
    cache.put(key, best)
    return best
