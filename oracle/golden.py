"""Golden files: one ``.npz`` per case, readable with numpy alone (no torch, no pickle).

Each file holds named arrays plus ``meta``, a JSON string stored as a 0-d numpy
unicode array, so ``np.load(path, allow_pickle=False)`` opens it. Array names:

    inputs     input, weight, bias, grad_out (the upstream gradient dL/d output)
    expected   output, indices (max pooling, int64), grad_input, grad_weight, grad_bias
    slides     printed_<name>: a number as the slides print it, NaN where nothing
               legible is printed (slide cases only)

Metadata: ``format_version`` (:data:`FORMAT_VERSION`), ``torch_version``, ``seed``,
``op`` (the ``gpuconv.functional`` forward op), ``params`` (its keyword arguments,
JSON: tuples as lists), ``dtype``, ``note`` (free text: where the slides disagree
with the maths), and for slide cases ``printed_tol``, ``printed_disagreements``
and ``printed_shapes``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

FORMAT_VERSION = 1
GOLDEN_DIR = Path(__file__).resolve().parent / "goldens"
REGENERATE_HINT = "regenerate the golden files with `python -m oracle generate` (needs torch)"

INPUT_NAMES = ("input", "weight", "bias", "grad_out")
PRINTED_PREFIX = "printed_"
REQUIRED_META = ("format_version", "torch_version", "seed", "op", "params", "dtype", "note")


@dataclass
class Case:
    """One golden case: the op, its keyword arguments, its arrays and metadata."""

    name: str
    op: str
    params: dict[str, Any]
    dtype: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def note(self) -> str:
        return self.meta.get("note", "")

    @property
    def seed(self) -> int:
        return self.meta.get("seed", 0)

    @property
    def is_slide(self) -> bool:
        return (any(k.startswith(PRINTED_PREFIX) for k in self.arrays)
                or "printed_shapes" in self.meta)

    def printed(self) -> dict[str, np.ndarray]:
        """The slides' printed arrays, keyed by the array they print (``output``, ...)."""
        return {k[len(PRINTED_PREFIX):]: v for k, v in self.arrays.items()
                if k.startswith(PRINTED_PREFIX)}


def meta_json(meta: dict[str, Any]) -> str:
    """Canonical JSON of the metadata (sorted keys), as stored in the file."""
    return json.dumps(meta, sort_keys=True, allow_nan=False)


def _jsonable(value):
    """Tuples as lists, numpy scalars as Python scalars: what a JSON round trip gives."""
    return json.loads(json.dumps(value, default=_np_default, allow_nan=False))


def _np_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON-serialisable: {obj!r}")


def make_case(name: str, op: str, params: dict, dtype: str, arrays: dict[str, np.ndarray],
              meta: dict[str, Any]) -> Case:
    """A Case whose params/meta look exactly as they will after a save/load round trip."""
    meta = _jsonable(dict(meta, op=op, params=params, dtype=dtype, name=name,
                          format_version=FORMAT_VERSION))
    return Case(name, meta["op"], meta["params"], meta["dtype"],
                {k: np.asarray(v) for k, v in arrays.items()}, meta)


def save_case(case: Case, directory: os.PathLike | str = GOLDEN_DIR) -> Path:
    """Write ``case`` to ``<directory>/<case.name>.npz``; returns the path."""
    for key in REQUIRED_META:
        if key not in case.meta:
            raise ValueError(f"case {case.name!r}: metadata lacks {key!r}")
    if "meta" in case.arrays:
        raise ValueError(f"case {case.name!r}: 'meta' is reserved for the metadata")
    path = Path(directory) / f"{case.name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {k: np.ascontiguousarray(v) for k, v in case.arrays.items()}
    for k, v in payload.items():
        if v.dtype == object:
            raise ValueError(f"case {case.name!r}: array {k!r} has dtype object")
    payload["meta"] = np.array(meta_json(case.meta))
    np.savez_compressed(path, **payload)
    return path


def load_case(path: os.PathLike | str) -> Case:
    """Read one golden file; refuses a file of another ``format_version``."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        if "meta" not in data.files:
            raise ValueError(f"{path}: not a golden file (no 'meta' entry); {REGENERATE_HINT}")
        meta = json.loads(str(data["meta"][()]))
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: golden format_version {version!r} is not the supported "
                             f"{FORMAT_VERSION}; {REGENERATE_HINT}")
        arrays = {k: data[k] for k in data.files if k != "meta"}
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"{path}: metadata lacks {missing}; {REGENERATE_HINT}")
    name = path.stem
    return Case(name, meta["op"], meta["params"], meta["dtype"], arrays, meta)


def golden_paths(directory: os.PathLike | str = GOLDEN_DIR) -> list[Path]:
    directory = Path(directory)
    return sorted(directory.glob("*.npz")) if directory.is_dir() else []


def load_all(directory: os.PathLike | str = GOLDEN_DIR) -> list[Case]:
    """Every golden case under ``directory``, sorted by name."""
    return [load_case(p) for p in golden_paths(directory)]


def compare_cases(expected: Case, actual: Case, *, ignore_meta: Iterable[str] = ("torch_version",)
                  ) -> list[str]:
    """Differences between two versions of a case (empty when they agree).

    Inputs, indices, printed numbers and metadata must be identical; computed
    float results may differ by a few ulps of their array's scale (a different
    CPU may round a float64 reduction differently)."""
    diffs = []
    ignore = set(ignore_meta)
    keys = sorted(set(expected.meta) | set(actual.meta))
    for key in keys:
        if key in ignore:
            continue
        if expected.meta.get(key, "<missing>") != actual.meta.get(key, "<missing>"):
            diffs.append(f"meta[{key!r}]: {expected.meta.get(key, '<missing>')!r} != "
                         f"{actual.meta.get(key, '<missing>')!r}")
    for name in sorted(set(expected.arrays) | set(actual.arrays)):
        if name not in expected.arrays or name not in actual.arrays:
            diffs.append(f"array {name!r} only in "
                         f"{'the first' if name in expected.arrays else 'the second'}")
            continue
        a, b = expected.arrays[name], actual.arrays[name]
        if a.shape != b.shape or a.dtype != b.dtype:
            diffs.append(f"array {name!r}: {a.dtype}{a.shape} != {b.dtype}{b.shape}")
            continue
        exact = name in INPUT_NAMES or name == "indices" or name.startswith(PRINTED_PREFIX)
        if exact or a.dtype.kind not in "fc":
            if not np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
                diffs.append(f"array {name!r} differs")
            continue
        # NaNs and infinities (max pooling's) in the same places, the finite values within
        # a few ulps of the finite scale
        finite = np.isfinite(a)
        if not (np.array_equal(a[~finite], b[~finite], equal_nan=True)
                and np.isfinite(b[finite]).all()):
            diffs.append(f"array {name!r}: NaNs or infinities at other places")
            continue
        with np.errstate(invalid="ignore"):  # inf - inf where both hold it: not compared
            err = np.where(finite, np.abs(a.astype(np.float64) - b), 0.0)
        scale = float(np.max(np.abs(a[finite]))) if finite.any() else 0.0
        eps = float(np.finfo(a.dtype).eps)
        if a.size and float(err.max()) > 8 * eps * scale:
            i = tuple(int(v) for v in np.unravel_index(int(np.argmax(err)), a.shape))
            diffs.append(f"array {name!r}: max difference {float(err.max()):.3g} at {i} "
                         f"({float(a[i])!r} vs {float(b[i])!r})")
    return diffs
