"""The trainer's data layer: IDX files (MNIST, Fashion-MNIST, KMNIST), the dataset
to train on, pictures for ``gpuconv predict``, and batch order on CPU and GPU.

``load_dataset`` takes Fashion-MNIST from Debian's ``dataset-fashion-mnist`` when
no directory is given, else the small subset bundled with the package, and says
which in ``Dataset.source``. Images stay uint8 (N, H, W) until
``to_float_images`` scales them, so a dataset moves to the GPU at a quarter of
the float32 size. Every malformed input is an error naming the file or argument
and the rule it breaks.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import warnings
import zlib
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from gpuconv._checks import check_array_bytes
from gpuconv._files import atomic_write
from gpuconv.datasets import FASHION_MNIST_SUBSET_DIR

PathLike = Union[str, os.PathLike]

# IDX type code -> element type; multi-byte elements are big-endian (IDX spec).
IDX_DTYPES = {
    0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dtype: code for code, dtype in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"

# The four files of an MNIST-style directory, each raw or with ".gz" appended.
STANDARD_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
# SHA-256 of Fashion-MNIST's 10000 test labels as int64: recognises a copy of the
# dataset in any directory, raw or gzipped, without trusting its name.
_FASHION_MNIST_TEST_LABELS_SHA256 = "d51d859896c55775b9e9e219b77ff03bcec1b6ac322f313544dc3f9e7bc94fae"
CLASSES_FILE = "classes.txt"
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
PICTURE_FORMATS = ("PNG", "JPEG")  # the only Pillow decoders predict runs


# ---------------------------------------------------------------- IDX files
def _check_regular_file(path: Path) -> None:
    """FileNotFoundError where nothing is at ``path``; ValueError where it is no regular
    file (a directory, a FIFO, a device)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file (a folder, a pipe or a device); "
                         "give the picture or IDX file itself")


def read_idx(path: PathLike) -> np.ndarray:
    """The array stored in IDX file ``path`` (gzip-compressed when it ends in .gz),
    in native byte order. Raises ValueError naming the file for a bad magic number,
    an unknown type code, a short header, a payload larger than one array may be
    (``gpuconv``'s byte limit), a truncated payload, trailing bytes or a corrupt
    gzip stream; FileNotFoundError when it does not exist.

    The file is read as a stream: the header is checked first, then exactly the
    payload it declares is read (decompressed) in bounded chunks, so a gzip bomb
    costs no more memory than its header admits to."""
    path = Path(path)
    _check_regular_file(path)
    compressed = path.suffix.lower() == ".gz"
    try:
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
            head = _read_at_most(stream, 4)
            header = head + (_read_at_most(stream, 4 * head[3]) if len(head) == 4 else b"")
            dtype, shape, _ = _parse_idx_header(path, header)
            expected = prod(shape) * dtype.itemsize
            check_array_bytes(str(path), shape, dtype.itemsize, "its IDX payload")
            payload = _read_at_most(stream, expected)
            extra = len(_read_at_most(stream, _TRAILING_BYTES_COUNTED))
    except (OSError, EOFError, zlib.error) as exc:  # bad header or CRC, cut short, bad deflate data
        if not compressed:
            raise
        raise ValueError(f"{path}: corrupt gzip stream ({exc})") from exc
    _check_payload_size(path, dtype, shape, len(payload) + extra)
    stored = np.frombuffer(payload, dtype).reshape(shape)
    return stored.astype(dtype.newbyteorder("="))  # a writable, native-order copy


_TRAILING_BYTES_COUNTED = 2**20  # past the payload, only this many are read to count them


def _read_at_most(stream, size: int) -> bytes:
    """Up to ``size`` bytes from ``stream``, read in chunks of at most 16 MiB."""
    chunks, left = [], size
    while left > 0:
        chunk = stream.read(min(left, 2**24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_idx(path: PathLike, array) -> None:
    """Write ``array`` (uint8, int8, int16, int32, float32 or float64, at least 1-D)
    as IDX file ``path``, gzip-compressed when it ends in .gz. The file appears
    atomically (a temporary file in the same directory, then os.replace), and a
    .gz file is byte-for-byte reproducible (no name or time in its header)."""
    path = Path(path)
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder(">"))
    if code is None:
        names = ", ".join(dtype.name for dtype in IDX_DTYPES.values())
        raise ValueError(f"{path}: IDX cannot store dtype {array.dtype}; use one of {names}")
    if not 1 <= array.ndim <= 255 or max(array.shape) >= 2**32:
        raise ValueError(f"{path}: IDX stores 1 to 255 dimensions of fewer than 2**32 "
                         f"elements each, got shape {array.shape}")
    header = struct.pack(f">2xBB{array.ndim}I", code, array.ndim, *array.shape)
    payload = array.astype(IDX_DTYPES[code], copy=False).tobytes()
    _write_atomically(path, header + payload, compress=path.suffix.lower() == ".gz")


# the most axes an array of this NumPy has: what read_idx reads (an array write_idx takes
# has no more; IDX itself allows 255)
IDX_MAX_DIMS = 64 if np.lib.NumpyVersion(np.__version__) >= "2.0.0" else 32


def _parse_idx_header(path: Path, data: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """(element dtype, shape, payload offset) from the IDX header at the start of ``data``."""
    if len(data) < 4:
        raise ValueError(f"{path}: too short for the 4-byte IDX magic number, has {len(data)} bytes")
    if data[:2] != b"\0\0":
        hint = "; it looks gzip-compressed: name it *.gz" if data[:2] == _GZIP_MAGIC else ""
        raise ValueError(f"{path}: not an IDX file: the magic number must start with two zero "
                         f"bytes, got {data[:4].hex(' ')}{hint}")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02x} ({d})" for c, d in IDX_DTYPES.items())
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02x}; the IDX spec defines {known}")
    if not 1 <= ndim <= IDX_MAX_DIMS:
        raise ValueError(f"{path}: the IDX header declares {ndim} dimensions; gpuconv reads 1 "
                         f"to {IDX_MAX_DIMS} (this NumPy's limit)")
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise ValueError(f"{path}: header truncated: it declares {ndim} dimensions, which need "
                         f"a {offset}-byte header, but the file has {len(data)} bytes")
    return IDX_DTYPES[code], struct.unpack_from(f">{ndim}I", data, 4), offset


def _check_payload_size(path: Path, dtype: np.dtype, shape: tuple[int, ...], size: int) -> None:
    expected = prod(shape) * dtype.itemsize
    if size == expected:
        return
    trailing = size - expected
    problem = "truncated" if size < expected else (
        f"{trailing} trailing bytes" if trailing < _TRAILING_BYTES_COUNTED
        else f"{trailing} or more trailing bytes")
    dims = "x".join(map(str, shape))
    content = "decompressed data" if path.suffix.lower() == ".gz" else "file"
    raise ValueError(f"{path}: {problem}: header says {dims} {dtype.name} = {expected} bytes, "
                     f"the {content} has {size} after the header")


def _write_atomically(path: Path, data: bytes, compress: bool) -> None:
    def write(file):
        if compress:  # no name and mtime 0 in the header: the same data, the same bytes
            with gzip.GzipFile(filename="", mode="wb", fileobj=file, mtime=0) as packed:
                packed.write(data)
        else:
            file.write(data)
    atomic_write(path, write)


# ---------------------------------------------------------------- datasets


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split: images uint8 (N, H, W), labels int64 (N,) in
    0..len(class_names)-1, and ``source``, a sentence saying where it came from."""

    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    class_names: tuple[str, ...]
    source: str


def load_dataset(data_dir: PathLike | None = None) -> Dataset:
    """The four MNIST-style IDX files of ``data_dir`` (see ``STANDARD_FILES``; each
    raw or .gz). Without ``data_dir``: Fashion-MNIST from Debian's
    dataset-fashion-mnist when installed, else the subset bundled with gpuconv,
    which ``source`` then says. Class names come from a ``classes.txt`` in the
    directory (one a line), else Fashion-MNIST's when the test labels are
    Fashion-MNIST's, else the digits "0".."9"."""
    if data_dir is not None:
        return _load_idx_dir(Path(data_dir), f"IDX files in {data_dir}")
    if DEBIAN_FASHION_MNIST_DIR.is_dir():
        return _load_idx_dir(DEBIAN_FASHION_MNIST_DIR, "Fashion-MNIST from Debian's "
                             f"dataset-fashion-mnist ({DEBIAN_FASHION_MNIST_DIR})")
    return _load_idx_dir(FASHION_MNIST_SUBSET_DIR,
                         f"the small Fashion-MNIST subset bundled with gpuconv ({FASHION_MNIST_SUBSET_DIR})",
                         note=f". {DEBIAN_FASHION_MNIST_DIR} does not exist: for the full dataset "
                              f"install Debian's dataset-fashion-mnist or pass a data directory (--data)")


def to_float_images(images, dtype="float32"):
    """uint8 images (N, H, W) -> (N, 1, H, W) of ``dtype`` (float32/float64) in [0, 1].
    Works on NumPy and CuPy arrays alike, so scaling happens where the data lives."""
    if str(images.dtype) != "uint8":
        raise TypeError(f"images must have dtype uint8, got {images.dtype}")
    if images.ndim != 3:
        raise ValueError(f"images must be 3-D (N, H, W), got shape {tuple(images.shape)}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
    scaled = images[:, None].astype(dtype)
    scaled /= 255
    return scaled


def _load_idx_dir(directory: Path, description: str, note: str = "") -> Dataset:
    if not directory.is_dir():
        raise FileNotFoundError(f"data directory {directory} does not exist")
    paths = {key: _find_idx_file(directory, stem) for key, stem in STANDARD_FILES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    class_names, names_origin = _class_names(directory, arrays["y_test"])
    for split in ("train", "test"):
        _check_split(paths, arrays, split, len(class_names), names_origin)
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise ValueError(f"{paths['x_test']} holds {_size(arrays['x_test'])} images but "
                         f"{paths['x_train']} holds {_size(arrays['x_train'])}; they must match")
    labels = {key: arrays[key].astype(np.int64) for key in ("y_train", "y_test")}
    source = (f"{len(labels['y_train'])} training and {len(labels['y_test'])} test "
              f"{_size(arrays['x_train'])} images: {description}; class names from {names_origin}{note}")
    return Dataset(arrays["x_train"], labels["y_train"], arrays["x_test"], labels["y_test"],
                   class_names, source)


def _find_idx_file(directory: Path, stem: str) -> Path:
    """``directory/stem``, else ``directory/stem.gz`` (raw first: it reads faster)."""
    for name in (stem, f"{stem}.gz"):
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(f"data directory {directory} has no {stem} (nor {stem}.gz); an IDX "
                            f"data directory holds {', '.join(STANDARD_FILES.values())}")


def _class_names(directory: Path, test_labels: np.ndarray) -> tuple[tuple[str, ...], str]:
    """(class names, where they came from)."""
    listing = directory / CLASSES_FILE
    if listing.is_file():
        return _read_class_names(listing), str(listing)
    fingerprint = hashlib.sha256(test_labels.astype(np.int64).tobytes()).hexdigest()
    if fingerprint == _FASHION_MNIST_TEST_LABELS_SHA256:
        return FASHION_MNIST_CLASSES, "Fashion-MNIST (recognised by its test labels)"
    return tuple(str(i) for i in range(10)), f"the digits 0-9 (no {CLASSES_FILE} in {directory})"


def _read_class_names(listing: Path) -> tuple[str, ...]:
    names = tuple(line.strip() for line in listing.read_text(encoding="utf-8").splitlines())
    for number, name in enumerate(names, start=1):
        if not name:
            raise ValueError(f"{listing}: line {number} is empty; write one class name a line")
        if names.index(name) != number - 1:
            raise ValueError(f"{listing}: line {number} repeats class name {name!r}")
    if not names:
        raise ValueError(f"{listing}: no class names; write one a line, in label order")
    return names


def _check_split(paths: dict, arrays: dict, split: str, num_classes: int, names_origin: str) -> None:
    images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
    images_path, labels_path = paths[f"x_{split}"], paths[f"y_{split}"]
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{images_path}: images must be 3-D uint8 (N, H, W), "
                         f"got {images.ndim}-D {images.dtype} of shape {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{labels_path}: labels must be 1-D integers, "
                         f"got {labels.ndim}-D {labels.dtype} of shape {labels.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} holds "
                         f"{len(labels)} labels; they must match")
    if len(images) == 0:
        raise ValueError(f"{images_path} holds no images; the {split} split needs at least one")
    out_of_range = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if out_of_range.size:
        first = out_of_range[0]
        raise ValueError(f"{labels_path}: label {labels[first]} at index {first} is outside "
                         f"0..{num_classes - 1} (the {num_classes} classes from {names_origin})")


def _size(images: np.ndarray) -> str:
    return "x".join(map(str, images.shape[1:]))


# ---------------------------------------------------------------- pictures for predict


def load_images(paths: Sequence[PathLike], size: tuple[int, int] | None = None) -> np.ndarray:
    """The grey images in ``paths`` as one uint8 array (N, H, W): PNG/JPEG files (by
    suffix; colour becomes luma, transparency is flattened onto white as a viewer
    shows it, EXIF rotation is applied) give one image each; IDX files (any other
    name) give their uint8 (H, W) image or (N, H, W) images. Pictures of different
    sizes need ``size`` (H, W), which resizes each with ``resize_images``."""
    if isinstance(paths, (str, os.PathLike)) or len(paths) == 0:
        raise ValueError(f"paths must be a non-empty list of files, got {paths!r}")
    batches = [(Path(path), _read_image_file(Path(path))) for path in paths]
    if size is not None:
        return np.concatenate([resize_images(images, size) for _, images in batches])
    first_path, first = batches[0]
    for path, images in batches[1:]:
        if images.shape[1:] != first.shape[1:]:
            raise ValueError(f"{path} is {_size(images)} but {first_path} is {_size(first)}; "
                             f"pass size=(H, W) to resize each while loading")
    return np.concatenate([images for _, images in batches])


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 images (N, H, W) resized to ``size`` (H, W): area averaging along an
    axis that shrinks, bilinear interpolation along one that grows. The aspect
    ratio is not kept: crop a picture to a square first if that matters."""
    _check_images(images, "images")
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(n, int) and n > 0 for n in size)):
        raise ValueError(f"size must be two positive ints (H, W), got {size!r}")
    rows = _resize_weights(images.shape[1], size[0])
    columns = _resize_weights(images.shape[2], size[1])
    resized = rows @ images.astype(np.float64) @ columns.T
    return np.clip(np.rint(resized), 0, 255).astype(np.uint8)


def fit_to_model(images: np.ndarray, size: tuple[int, int] = (28, 28), invert: bool = False) -> np.ndarray:
    """uint8 images (N, H, W) made ready for a model trained on Fashion-MNIST:
    resized to ``size`` and, with ``invert``, made negative. Fashion-MNIST items are
    light on a black background, while photos usually show a dark item on a light
    one: those need ``invert=True``. Nothing guesses this; ``light_background``
    tells which images look like that, so a caller can suggest it."""
    resized = resize_images(images, size)
    return 255 - resized if invert else resized


def light_background(images: np.ndarray) -> np.ndarray:
    """Per image (N, H, W) uint8: True where the one-pixel border is brighter than
    mid-grey on average, the usual look of a photo that needs inverting."""
    _check_images(images, "images")
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    return border.mean(axis=1) > 127.5


def _read_image_file(path: Path) -> np.ndarray:
    """uint8 images (N, H, W) from one picture or IDX file."""
    _check_regular_file(path)
    if path.suffix.lower() in PICTURE_SUFFIXES:
        return _read_picture(path)[None]
    images = read_idx(path)
    if images.dtype != np.uint8 or images.ndim not in (2, 3):
        raise ValueError(f"{path}: an IDX image file must hold uint8 (H, W) or (N, H, W), "
                         f"got {images.ndim}-D {images.dtype}")
    if 0 in images.shape[-2:]:
        raise ValueError(f"{path}: its images are {images.shape[-2]}x{images.shape[-1]} "
                         f"pixels; an image needs at least 1x1")
    if images.ndim == 3 and len(images) == 0:
        raise ValueError(f"{path} holds no images")
    return images if images.ndim == 3 else images[None]


def _read_picture(path: Path) -> np.ndarray:
    """Only Pillow's PNG and JPEG decoders run, whatever the file holds (an EPS file named
    .png would otherwise start Ghostscript); a picture over Pillow's pixel limit
    (``Image.MAX_IMAGE_PIXELS``, a decompression bomb) is refused before it is decoded."""
    Image, ImageOps = _pillow()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=PICTURE_FORMATS) as picture:
                if picture.mode.startswith("I;16"):  # 16-bit grey: keep the high byte
                    return (np.asarray(picture) >> 8).astype(np.uint8)
                upright = ImageOps.exif_transpose(picture).convert("RGBA")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"{path}: the picture is too large to decode ({exc})") from None
    except OSError as exc:  # not a PNG or JPEG, or a damaged one
        raise ValueError(f"{path}: cannot read it as a PNG/JPEG picture ({exc})") from exc
    on_white = Image.alpha_composite(Image.new("RGBA", upright.size, "white"), upright)
    return np.asarray(on_white.convert("L"))


class MissingPackageError(ImportError):
    """An optional package a feature needs is not installed; the message says how to."""


def _pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError as exc:
        raise MissingPackageError("reading PNG/JPEG needs Pillow: pip install "
                                  "'gpuconv[train]' (or pip install pillow)") from exc
    return Image, ImageOps


def _check_images(images, name: str) -> None:
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 3:
        shape = getattr(images, "shape", None)
        raise ValueError(f"{name} must be a uint8 NumPy array (N, H, W), got "
                         f"{type(images).__name__} {getattr(images, 'dtype', '')} {shape}")
    if 0 in images.shape[1:]:
        raise ValueError(f"{name} must be at least 1x1 pixels, got {images.shape[1]}x"
                         f"{images.shape[2]}")


def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix mapping a row of n_in pixels to n_out; each row sums to 1."""
    scale = n_in / n_out
    if n_out <= n_in:  # area: each output pixel averages the input span it covers
        start = np.arange(n_out)[:, None] * scale
        pixel = np.arange(n_in)[None, :]
        overlap = np.minimum(start + scale, pixel + 1) - np.maximum(start, pixel)
        return np.clip(overlap, 0, None) / scale
    # bilinear with pixel centres at i + 0.5, clamped at the edges
    source = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0, n_in - 1)
    left = np.floor(source).astype(int)
    right = np.minimum(left + 1, n_in - 1)
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), left), 1 - (source - left))
    np.add.at(weights, (np.arange(n_out), right), source - left)
    return weights


# ---------------------------------------------------------------- validation split


def split_validation(x, y, fraction: float, seed: int):
    """(x_train, y_train, x_val, y_val): a random ``fraction`` of the examples,
    the same for the same seed, held out for validation; both parts keep the
    original order of their examples. Takes NumPy arrays: split before moving the
    data to the GPU."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)}; they must match")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    n_val = round(len(x) * fraction)
    if not 0 < n_val < len(x):
        raise ValueError(f"fraction={fraction} of {len(x)} examples leaves {n_val} for "
                         f"validation; both parts need at least one")
    held_out = np.zeros(len(x), dtype=bool)
    held_out[np.random.default_rng(seed).permutation(len(x))[:n_val]] = True
    return x[~held_out], y[~held_out], x[held_out], y[held_out]
