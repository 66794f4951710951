"""Reading a model file without trusting it.

A model file is a ``.npz`` (zip) archive of ``.npy`` arrays: ``__meta__`` (the JSON
description), ``param/<layer>/<name>``, ``buffer/<layer>/<name>`` and, in a checkpoint,
``optimizer/<layer>/<name>/<slot>``. Everything is checked from headers first: the zip
member list, each ``.npy`` header (shape and dtype, through ``numpy.lib.format``) against
its member's declared size, the JSON's structure, and the shapes the architecture
needs (computed without creating a layer's arrays), all against each other and against
a size limit. Only then is an array read, each bounded by its checked size (the zip
reader stops at a member's declared size). Every problem is a ``ValueError`` naming the
file; nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
from pathlib import Path

import numpy as np

from gpuconv._checks import short_repr

META = "__meta__"
FORMAT = "gpuconv-model"
FORMAT_VERSION = 1
MAX_MODEL_BYTES = 4 * 2**30   # default limit on the arrays a model file may hold
MAX_META_BYTES = 64 * 2**20   # the JSON description (history included)
MAX_MEMBERS = 100_000
# the zip directory: 46 bytes a member, its name (gpuconv's: under 64 bytes) and extras
MAX_DIRECTORY_BYTES = MAX_MEMBERS * 160
MAX_COUNT = 2**53             # epochs and optimiser steps (counts a float holds exactly)
_KINDS = ("param", "buffer", "optimizer")
_NPY_MAGIC = b"\x93NUMPY"
# what reading a damaged archive raises (an unsupported compression or encryption flag:
# NotImplementedError; an encrypted member: RuntimeError)
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError, KeyError,
               NotImplementedError, RuntimeError)


# a zip archive's end records (APPNOTE 4.3.16, 4.3.14, 4.3.15): the classic one, last in
# the file before a comment of up to 64 KiB, and the zip64 one its locator points at
_END = struct.Struct("<4s4H2LH")        # signature, disks, entries here, entries, size, offset
_END64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk, offset of the zip64 end record
_END64 = struct.Struct("<4sQ2H2L4Q")    # ..., entries here, entries, size, offset


def _directory_extent(path: Path) -> tuple[int, int]:
    """(member count, directory bytes) the end records of the zip archive at ``path``
    declare, found as ``zipfile`` finds them; (0, 0) where there are none (``zipfile`` then
    refuses the file). Of the zip64 record, both places a reader may take it from count:
    just before its locator (Python 3.11's zipfile) and where the locator points."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        start = f.seek(max(0, f.tell() - _END.size - 0xFFFF))
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06", 0, len(tail) - _END.size + 4)  # a whole record after it
        if at < 0:
            return 0, 0
        _, _, _, _, entries, directory, _, _ = _END.unpack_from(tail, at)
        locator_at = start + at - _END64_LOCATOR.size
        if locator_at >= 0:
            f.seek(locator_at)
            locator = f.read(_END64_LOCATOR.size)
            if locator[:4] == b"PK\x06\x07":
                declared = []
                for at in (locator_at - _END64.size, _END64_LOCATOR.unpack(locator)[2]):
                    f.seek(max(at, 0))
                    record = f.read(_END64.size)
                    if len(record) == _END64.size and record[:4] == b"PK\x06\x06":
                        declared.append(_END64.unpack(record)[7:9])
                if declared:  # (they replace the classic record's values, as in zipfile)
                    entries, directory = map(max, zip(*declared))
    return entries, directory


class ModelFile:
    """An opened, header-checked model file: ``meta`` (validated JSON) and ``shapes`` (the
    shape of each stored array, by key); ``read(key)`` reads one array."""

    def __init__(self, path: Path, max_bytes: int = MAX_MODEL_BYTES):
        self.path = Path(path)
        self.max_bytes = max_bytes
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no such file")
        if not self.path.is_file():
            raise ValueError(f"{self.path}: not a regular file (a model file is the .npz "
                             "archive that Sequential.save writes)")
        size = self.path.stat().st_size
        if size > max_bytes + MAX_META_BYTES:
            self._too_large(f"the file has {size:,} bytes")
        with open(self.path, "rb") as f:
            head = f.read(len(_NPY_MAGIC))
        if head == _NPY_MAGIC:
            self._fail("it is a single .npy array; a model file is the .npz archive that "
                       "Sequential.save writes")
        self._check_directory_size()
        try:
            self.zip = zipfile.ZipFile(self.path)
        except _ZIP_ERRORS as exc:
            self._fail(f"not a .npz (zip) archive ({exc})")
        try:
            self._headers = self._read_headers()
            self.meta = self._read_meta()
        except BaseException:
            self.zip.close()
            raise
        self.shapes = {key: shape for key, (shape, _) in self._headers.items() if key != META}

    def __enter__(self) -> "ModelFile":
        return self

    def __exit__(self, *exc) -> None:
        self.zip.close()

    def _check_directory_size(self) -> None:
        """The archive's member count and directory size, from its end records, before
        ``zipfile`` reads the directory into one object per member (a forged directory of
        millions of tiny entries took 8 times the file's size in memory)."""
        entries, directory = _directory_extent(self.path)
        if entries > MAX_MEMBERS or directory > MAX_DIRECTORY_BYTES:
            self._fail(f"its directory lists {entries:,} archive members in {directory:,} "
                       f"bytes, more than {MAX_MEMBERS:,} members or {MAX_DIRECTORY_BYTES:,} "
                       "bytes")

    def _fail(self, problem: str):
        raise ValueError(f"{self.path}: not a gpuconv model file, or a damaged one: {problem}")

    def _too_large(self, problem: str):
        raise ValueError(f"{self.path}: too large to load: {problem}, above the limit of "
                         f"{self.max_bytes:,} bytes (pass a larger max_bytes to load it)")

    # ------------------------------------------------------------------ headers
    def _read_headers(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        infos = self.zip.infolist()
        if len(infos) > MAX_MEMBERS:
            self._fail(f"{len(infos):,} archive members, more than {MAX_MEMBERS:,}")
        if META + ".npy" not in {info.filename for info in infos}:
            self._fail(f"no {META} entry (the model description)")
        headers, total = {}, 0
        for info in infos:
            key = info.filename.removesuffix(".npy")
            if not info.filename.endswith(".npy") or key in headers:
                self._fail(f"unexpected or repeated archive member {info.filename!r}")
            if key != META and key.split("/", 1)[0] not in _KINDS:
                self._fail(f"unexpected archive member {info.filename!r}")
            shape, dtype, header_size = self._npy_header(info)
            nbytes = math.prod(shape) * dtype.itemsize
            if info.file_size != header_size + nbytes:
                self._fail(f"{info.filename} declares {info.file_size:,} bytes but its header "
                           f"describes {header_size + nbytes:,} ({dtype} {shape})")
            total += nbytes
            if total > self.max_bytes:
                self._too_large(f"its arrays declare {total:,} bytes or more")
            headers[key] = (shape, dtype)
        return headers

    def _npy_header(self, info: zipfile.ZipInfo) -> tuple[tuple[int, ...], np.dtype, int]:
        """(shape, dtype, header bytes) of one member, from its .npy header alone."""
        fmt = np.lib.format
        try:
            with self.zip.open(info) as f:
                version = fmt.read_magic(f)
                if version == (1, 0):
                    shape, _, dtype = fmt.read_array_header_1_0(f)
                elif version == (2, 0):
                    shape, _, dtype = fmt.read_array_header_2_0(f)
                else:
                    raise ValueError(f".npy format version {version} is not read here")
                header_size = f.tell()
        except _ZIP_ERRORS as exc:
            self._fail(f"{info.filename}: unreadable .npy header ({exc})")
        expected = ("uint8",) if info.filename == META + ".npy" else ("float32", "float64")
        if dtype.hasobject or dtype.newbyteorder("=").name not in expected:
            self._fail(f"{info.filename} has dtype {dtype}; it must be {' or '.join(expected)}")
        if info.filename == META + ".npy" and len(shape) != 1:
            self._fail(f"{info.filename} must be 1-D, got shape {shape}")
        return tuple(shape), dtype, header_size

    # ------------------------------------------------------------------ the description
    def _read_meta(self) -> dict:
        (length,), _ = self._headers[META]
        if length > MAX_META_BYTES:
            self._fail(f"the model description has {length:,} bytes, more than "
                       f"{MAX_META_BYTES:,}")
        try:
            meta = json.loads(self.read(META).tobytes().decode())
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, a 4300-digit int
            self._fail(f"the model description is not valid JSON "
                       f"({type(exc).__name__}: {str(exc)[:200]})")
        if not isinstance(meta, dict):
            self._fail(f"the model description must be a JSON object, got "
                       f"{type(meta).__name__}")
        if meta.get("format") != FORMAT:
            self._fail(f"format {short_repr(meta.get('format'))}, not {FORMAT!r}")
        if meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{self.path}: model format version "
                             f"{short_repr(meta.get('version'))}; this gpuconv reads version "
                             f"{FORMAT_VERSION}")
        try:
            check_structure(meta)
        except ValueError as exc:
            problem = str(exc)
        else:
            return meta
        self._fail(problem)

    # ------------------------------------------------------------------ checks and reads
    def check_arrays(self, expected: dict[str, tuple[int, ...]], itemsize: int) -> None:
        """The stored ``param/`` and ``buffer/`` arrays must be exactly ``expected`` (key ->
        shape), whose bytes at the model's ``itemsize`` must fit the limit."""
        needed = sum(math.prod(shape) for shape in expected.values()) * itemsize
        if needed > self.max_bytes:
            self._too_large(f"its architecture needs {needed:,} bytes of parameters")
        stored = {k: v for k, v in self.shapes.items() if not k.startswith("optimizer/")}
        if set(stored) != set(expected):
            difference = sorted(set(stored) ^ set(expected))
            self._fail(f"the arrays {difference[:10]} do not match the architecture")
        for key, shape in expected.items():
            if stored[key] != tuple(shape):
                self._fail(f"{key} has shape {stored[key]}, the architecture needs "
                           f"{tuple(shape)}")

    def check_optimizer(self, params: dict[str, tuple[int, ...]], slots: tuple[str, ...],
                        step: int) -> None:
        """The ``optimizer/`` arrays: one per parameter and slot, of the parameter's shape,
        all there once the optimiser has taken a step."""
        stored = {k.removeprefix("optimizer/"): v for k, v in self.shapes.items()
                  if k.startswith("optimizer/")}
        wanted = {f"{key}/{slot}": shape for key, shape in params.items() for slot in slots}
        missing, unknown = sorted(set(wanted) - set(stored)), sorted(set(stored) - set(wanted))
        if unknown or (step > 0 and missing):
            self._fail(f"the optimiser state does not match the model after {step} steps: "
                       f"missing {missing[:10]}, unexpected {unknown[:10]}")
        for key, shape in stored.items():
            if shape != tuple(wanted[key]):
                self._fail(f"optimizer/{key} has shape {shape}, its parameter has "
                           f"{tuple(wanted[key])}")

    def read(self, key: str) -> np.ndarray:
        """One array, read after its header was checked (so its size is known and bounded)."""
        try:
            with self.zip.open(key + ".npy") as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except _ZIP_ERRORS as exc:
            self._fail(f"{key}: unreadable data ({exc})")


# --------------------------------------------------------------------------- description rules
def check_structure(meta: dict) -> None:
    """A ValueError naming the first field of ``meta`` (a model description, past its format
    and version) that breaks the rules of a model file: what ``ModelFile`` refuses, and what
    ``Sequential.save`` checks before it writes."""
    model = _field(meta, "model", dict, "a JSON object")
    _field(model, "name", str, "a string", "model.")
    shape = _field(model, "input_shape", list, "a list of positive ints", "model.")
    if not shape or len(shape) > 8 or not all(_is_count(n) for n in shape):
        raise ValueError(f"model.input_shape must be a list of positive ints, got "
                         f"{short_repr(shape)}")
    if model.get("dtype") not in ("float32", "float64"):
        raise ValueError(f"model.dtype must be 'float32' or 'float64', got "
                         f"{short_repr(model.get('dtype'))}")
    seed = _field(model, "seed", int, "a non-negative int", "model.")
    layers = _field(model, "layers", list, "a non-empty list", "model.")
    if seed < 0 or not layers:
        raise ValueError("model.seed must be non-negative and model.layers non-empty")
    for i, entry in enumerate(layers):
        if not (isinstance(entry, dict) and isinstance(entry.get("class"), str)
                and isinstance(entry.get("config"), dict)):
            raise ValueError(f"model.layers[{i}] must be an object with a 'class' string "
                             f"and a 'config' object, got {short_repr(entry)}")
    epoch = _field(meta, "epoch", int, "a non-negative int")
    history = _field(meta, "history", dict, "an object of lists")
    if not 0 <= epoch <= MAX_COUNT or not all(isinstance(v, list) for v in history.values()):
        raise ValueError(f"epoch must be in [0, {MAX_COUNT}] and history an object of lists")
    _field(meta, "extra", dict, "a JSON object", default={})
    if "optimizer" in meta:
        optimizer = _field(meta, "optimizer", dict, "a JSON object")
        _field(optimizer, "config", dict, "a JSON object", "optimizer.")
        step = _field(optimizer, "step", int, "a non-negative int", "optimizer.")
        _field(optimizer, "metric", str, "a metric's name", "optimizer.", default="accuracy")
        if not 0 <= step <= MAX_COUNT:
            raise ValueError(f"optimizer.step must be in [0, {MAX_COUNT}], got {short_repr(step)}")


def check_extra(extra) -> None:
    """What ``save`` stores with a model: None or a dict of JSON values."""
    if extra is not None and not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict of JSON values or None, got "
                        f"{type(extra).__name__}")


def _field(parent: dict, name: str, kind: type, rule: str, prefix: str = "", default=None):
    value = parent.get(name, default)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{prefix}{name} must be {rule}, got {type(value).__name__}")
    return value


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
