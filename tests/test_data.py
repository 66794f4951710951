"""gpuconv.data: the IDX reader and writer against the spec and against damaged
files, dataset loading (a synthetic directory, Debian's Fashion-MNIST, the
bundled subset), pictures for predict, and batch order."""

from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

from gpuconv import data
from gpuconv.data import (FASHION_MNIST_CLASSES, IDX_MAX_DIMS, STANDARD_FILES, fit_to_model,
                          light_background, load_dataset, load_images, read_idx, resize_images,
                          split_validation, to_float_images, write_idx)

ROOT = Path(__file__).resolve().parents[1]
debian_only = pytest.mark.skipif(
    not data.DEBIAN_FASHION_MNIST_DIR.is_dir(),
    reason=f"Debian's dataset-fashion-mnist is not installed ({data.DEBIAN_FASHION_MNIST_DIR})")


def idx_bytes(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    """An IDX file written by hand from the spec, independent of write_idx."""
    return struct.pack(f">2xBB{len(shape)}I", code, len(shape), *shape) + payload


# ---------------------------------------------------------------- IDX round trips


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype, values", [
    ("uint8", [0, 1, 127, 255]),
    ("int8", [-128, -1, 0, 127]),
    ("int16", [-32768, -1, 258, 32767]),
    ("int32", [-2**31, -1, 66051, 2**31 - 1]),
    ("float32", [-1.5, 0.0, 3.25, np.inf]),
    ("float64", [-1e300, 0.1, np.pi, np.nan]),
])
def test_write_then_read_keeps_every_dtype(tmp_path, dtype, values, suffix):
    array = np.array(values * 6, dtype=dtype).reshape(2, 3, 4)
    path = tmp_path / f"array-idx3{suffix}"
    write_idx(path, array)
    loaded = read_idx(path)
    assert loaded.dtype == np.dtype(dtype) and loaded.dtype.isnative
    np.testing.assert_array_equal(loaded, array)
    assert loaded.flags.writeable


@pytest.mark.parametrize("code, payload, expected", [
    (0x08, b"\x01\x02\x03", np.array([1, 2, 3], np.uint8)),
    (0x09, b"\xff\x80\x7f", np.array([-1, -128, 127], np.int8)),
    (0x0B, b"\x01\x02\xff\xfe", np.array([258, -2], np.int16)),
    (0x0C, b"\x00\x01\x00\x00", np.array([65536], np.int32)),
    (0x0D, b"\x3f\xc0\x00\x00", np.array([1.5], np.float32)),
    (0x0E, b"\xc0\x04\x00\x00\x00\x00\x00\x00", np.array([-2.5], np.float64)),
])
def test_reads_big_endian_files_written_from_the_spec(tmp_path, code, payload, expected):
    path = tmp_path / "spec-idx1"
    path.write_bytes(idx_bytes(code, expected.shape, payload))
    loaded = read_idx(path)
    assert loaded.dtype == expected.dtype
    np.testing.assert_array_equal(loaded, expected)


def test_writes_the_spec_header_and_big_endian_payload(tmp_path):
    path = tmp_path / "written-idx2"
    write_idx(path, np.array([[1, 2]], dtype="<i2"))
    assert path.read_bytes() == idx_bytes(0x0B, (1, 2), b"\x00\x01\x00\x02")


def test_gzip_output_is_reproducible_and_no_temporary_file_stays(tmp_path):
    array = np.arange(100, dtype=np.uint8).reshape(4, 5, 5)
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    packed = (tmp_path / "a.gz").read_bytes()
    assert packed == (tmp_path / "b.gz").read_bytes()
    assert packed[3] == 0 and packed[4:8] == bytes(4)  # gzip header: no file name, mtime 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gz", "b.gz"]


@pytest.mark.parametrize("array, rule", [
    (np.zeros(3, dtype=np.int64), "cannot store dtype int64"),
    (np.zeros(3, dtype=bool), "cannot store dtype bool"),
    (np.uint8(7), "1 to 255 dimensions"),
])
def test_write_rejects_what_idx_cannot_store_and_leaves_no_file(tmp_path, array, rule):
    with pytest.raises(ValueError, match=rule):
        write_idx(tmp_path / "x-idx", array)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- damaged IDX files

GOOD = idx_bytes(0x08, (2, 3), bytes(6))


@pytest.mark.parametrize("content, rule", [
    (b"", "too short for the 4-byte IDX magic number, has 0 bytes"),
    (b"\x01\x00" + GOOD[2:], "must start with two zero bytes, got 01 00 08 02"),
    (gzip.compress(GOOD, mtime=0), "looks gzip-compressed: name it"),
    (b"\0\0\x0a\x02" + GOOD[4:], "unknown IDX type code 0x0a"),
    (b"\0\0\x08\x00", f"declares 0 dimensions; gpuconv reads 1 to {IDX_MAX_DIMS}"),
    (idx_bytes(0x08, (1,) * (IDX_MAX_DIMS + 1), b"\0"),
     f"declares {IDX_MAX_DIMS + 1} dimensions; gpuconv reads 1 to {IDX_MAX_DIMS}"),
    (GOOD[:10], "header truncated: it declares 2 dimensions, which need a 12-byte header"),
    (GOOD[:-1], "truncated: header says 2x3 uint8 = 6 bytes, the file has 5 after the header"),
    (GOOD + b"\0\0", "2 trailing bytes: header says 2x3 uint8 = 6 bytes, the file has 8"),
    (idx_bytes(0x0C, (2,), bytes(7)), "header says 2 int32 = 8 bytes, the file has 7"),
])
def test_damaged_idx_file_is_a_value_error_naming_file_and_rule(tmp_path, content, rule):
    path = tmp_path / "damaged-idx2-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rule) as error:
        read_idx(path)
    assert str(error.value).startswith(str(path))


def test_truncated_payload_inside_gzip_says_decompressed(tmp_path):
    path = tmp_path / "short-idx2-ubyte.gz"
    path.write_bytes(gzip.compress(GOOD[:-2]))
    with pytest.raises(ValueError, match="truncated: .* the decompressed data has 4"):
        read_idx(path)


@pytest.mark.parametrize("damage", [
    pytest.param(lambda packed: GOOD, id="not gzip"),
    pytest.param(lambda packed: packed[: len(packed) // 2], id="cut short"),
    pytest.param(lambda packed: packed[:-8] + bytes(8), id="bad crc"),
])
def test_corrupt_gzip_is_a_value_error_naming_the_file(tmp_path, damage):
    path = tmp_path / "images-idx3-ubyte.gz"
    path.write_bytes(damage(gzip.compress(GOOD)))
    with pytest.raises(ValueError, match=f"^{path}: corrupt gzip stream"):
        read_idx(path)


def test_missing_idx_file_is_file_not_found_naming_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-idx1-ubyte.gz: no such file"):
        read_idx(tmp_path / "nothing-idx1-ubyte.gz")


# ---------------------------------------------------------------- dataset directories


def write_dataset(directory: Path, n_train=20, n_test=10, size=(6, 5), suffix=".gz", **replace):
    """A small MNIST-style directory; ``replace`` swaps in arrays by STANDARD_FILES key."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (n_train, *size), dtype=np.uint8),
              "y_train": np.arange(n_train, dtype=np.uint8) % 10,
              "x_test": rng.integers(0, 256, (n_test, *size), dtype=np.uint8),
              "y_test": np.arange(n_test, dtype=np.uint8) % 10, **replace}
    for key, stem in STANDARD_FILES.items():
        write_idx(directory / f"{stem}{suffix}", arrays[key])
    return arrays


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_loads_an_idx_directory_with_digit_names(tmp_path, suffix):
    arrays = write_dataset(tmp_path, suffix=suffix)
    dataset = load_dataset(tmp_path)
    np.testing.assert_array_equal(dataset.x_train, arrays["x_train"])
    np.testing.assert_array_equal(dataset.y_test, arrays["y_test"])
    assert dataset.x_test.shape == (10, 6, 5) and dataset.x_test.dtype == np.uint8
    assert dataset.y_train.dtype == np.int64
    assert dataset.class_names == tuple("0123456789")
    assert str(tmp_path) in dataset.source and "20 training and 10 test 6x5 images" in dataset.source


def test_classes_txt_names_the_classes_and_allows_more_labels(tmp_path):
    write_dataset(tmp_path, y_train=np.arange(20, dtype=np.uint8) % 12)
    (tmp_path / "classes.txt").write_text("".join(f"kana {i}\n" for i in range(12)))
    assert load_dataset(tmp_path).class_names == tuple(f"kana {i}" for i in range(12))


@pytest.mark.parametrize("text, rule", [
    ("a\n\nb\n", "line 2 is empty"),
    ("a\nb\na\n", "line 3 repeats class name 'a'"),
    ("", "no class names"),
])
def test_bad_classes_txt_is_an_error_naming_it(tmp_path, text, rule):
    write_dataset(tmp_path)
    (tmp_path / "classes.txt").write_text(text)
    with pytest.raises(ValueError, match=f"classes.txt: {rule}"):
        load_dataset(tmp_path)


@pytest.mark.parametrize("replace, rule", [
    ({"y_train": np.zeros(19, np.uint8)}, "train-images-idx3-ubyte.gz holds 20 images but .*"
                                          "train-labels-idx1-ubyte.gz holds 19 labels"),
    ({"y_test": np.full(10, 10, np.uint8)}, "t10k-labels-idx1-ubyte.gz: label 10 at index 0 is "
                                            "outside 0..9 .*the digits 0-9"),
    ({"y_test": np.full(10, -1, np.int8)}, "label -1 at index 0 is outside 0..9"),
    ({"x_train": np.zeros((20, 30), np.uint8)}, "train-images-idx3-ubyte.gz: images must be 3-D "
                                                "uint8 .*got 2-D uint8"),
    ({"x_test": np.zeros((10, 6, 5), np.float32)}, "images must be 3-D uint8 .*got 3-D float32"),
    ({"y_train": np.zeros((20, 1), np.uint8)}, "labels must be 1-D integers, got 2-D"),
    ({"x_test": np.zeros((10, 7, 5), np.uint8)}, "t10k-images-idx3-ubyte.gz holds 7x5 images but "
                                                 ".*train-images-idx3-ubyte.gz holds 6x5"),
])
def test_inconsistent_dataset_is_an_error_naming_the_file(tmp_path, replace, rule):
    write_dataset(tmp_path, **replace)
    with pytest.raises(ValueError, match=rule):
        load_dataset(tmp_path)


def test_missing_file_in_data_dir_names_dir_and_file_without_fallback(tmp_path):
    write_dataset(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=f"{tmp_path} has no t10k-labels-idx1-ubyte "
                                                f"\\(nor t10k-labels-idx1-ubyte.gz\\)"):
        load_dataset(tmp_path)


def test_missing_data_dir_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"data directory {tmp_path / 'absent'} does not exist"):
        load_dataset(tmp_path / "absent")


@pytest.fixture(scope="module")
def debian():
    return load_dataset(data.DEBIAN_FASHION_MNIST_DIR)


@debian_only
def test_default_is_debian_fashion_mnist_full_and_balanced(debian):
    assert debian.x_train.shape == (60000, 28, 28) and debian.x_test.shape == (10000, 28, 28)
    assert debian.x_train.dtype == np.uint8
    assert np.bincount(debian.y_train).tolist() == [6000] * 10
    assert np.bincount(debian.y_test).tolist() == [1000] * 10
    assert debian.class_names == FASHION_MNIST_CLASSES
    assert "Debian's dataset-fashion-mnist" in load_dataset().source


@debian_only
def test_a_copy_of_fashion_mnist_anywhere_gets_its_class_names(tmp_path, debian):
    write_dataset(tmp_path, x_test=debian.x_test, y_test=debian.y_test.astype(np.uint8),
                  size=(28, 28), suffix="")
    assert load_dataset(tmp_path).class_names == FASHION_MNIST_CLASSES


@pytest.fixture
def without_debian(monkeypatch, tmp_path):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "not-installed")


def test_falls_back_to_the_bundled_subset_and_says_so(without_debian, tmp_path):
    bundled = load_dataset()
    assert bundled.source.startswith("5000 training and 1000 test 28x28 images: the small "
                                     "Fashion-MNIST subset bundled with gpuconv")
    assert f"{tmp_path / 'not-installed'} does not exist" in bundled.source
    assert np.bincount(bundled.y_train).tolist() == [500] * 10
    assert np.bincount(bundled.y_test).tolist() == [100] * 10
    assert bundled.class_names == FASHION_MNIST_CLASSES


def test_bundled_subset_is_small_and_licensed():
    files = list(data.FASHION_MNIST_SUBSET_DIR.iterdir())
    assert sum(path.stat().st_size for path in files) < 3_000_000
    licence = (data.FASHION_MNIST_SUBSET_DIR / "LICENSE").read_text()
    assert "Zalando SE" in licence and "MIT License" in licence


@debian_only
def test_bundled_subset_is_what_the_script_makes_from_debian(without_debian, debian):
    spec = importlib.util.spec_from_file_location("make_bundled_subset",
                                                  ROOT / "scripts" / "make_bundled_subset.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    remade, bundled = script.subset_arrays(debian), load_dataset()
    for key in STANDARD_FILES:
        np.testing.assert_array_equal(getattr(bundled, key), remade[key], err_msg=key)


def test_to_float_images_adds_a_channel_and_scales_to_unit_range():
    images = np.array([[[0, 51], [255, 102]]], dtype=np.uint8)
    scaled = to_float_images(images, "float64")
    assert scaled.shape == (1, 1, 2, 2) and scaled.dtype == np.float64
    np.testing.assert_array_equal(scaled[0, 0], [[0, 0.2], [1, 0.4]])
    assert to_float_images(images).dtype == np.float32


@pytest.mark.parametrize("images, dtype, error, rule", [
    (np.zeros((1, 2, 2), np.float32), "float32", TypeError, "images must have dtype uint8"),
    (np.zeros((1, 1, 2, 2), np.uint8), "float32", ValueError, "images must be 3-D"),
    (np.zeros((1, 2, 2), np.uint8), "float16", TypeError, "dtype must be float32 or float64"),
])
def test_to_float_images_rejects(images, dtype, error, rule):
    with pytest.raises(error, match=rule):
        to_float_images(images, dtype)


# ---------------------------------------------------------------- pictures


def test_grey_png_reads_exactly(tmp_path):
    from PIL import Image
    grey = np.arange(12 * 10, dtype=np.uint8).reshape(12, 10)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    loaded = load_images([tmp_path / "grey.png"])
    assert loaded.shape == (1, 12, 10) and loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded[0], grey)


def test_rgb_jpeg_becomes_luma(tmp_path):
    from PIL import Image
    colours = np.zeros((16, 32, 3), dtype=np.uint8)
    colours[:, :16] = (255, 0, 0)
    colours[:, 16:] = (0, 0, 255)
    Image.fromarray(colours).save(tmp_path / "red-blue.JPG", quality=95)
    loaded = load_images([str(tmp_path / "red-blue.JPG")])[0].astype(int)
    # ITU-R 601 luma: red 0.299 * 255 = 76, blue 0.114 * 255 = 29 (JPEG is lossy)
    assert abs(loaded[8, 4] - 76) <= 4 and abs(loaded[8, 28] - 29) <= 4


def test_transparent_png_is_flattened_onto_white(tmp_path):
    from PIL import Image
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:2] = (0, 0, 0, 255)  # opaque black on top, transparent black below
    Image.fromarray(rgba).save(tmp_path / "cutout.png")
    loaded = load_images([tmp_path / "cutout.png"])[0]
    assert (loaded[:2] == 0).all() and (loaded[2:] == 255).all()


def test_idx_files_give_their_images(tmp_path):
    stack = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "two-idx3-ubyte.gz", stack)
    write_idx(tmp_path / "one-idx2-ubyte", stack[0])
    loaded = load_images([tmp_path / "two-idx3-ubyte.gz", tmp_path / "one-idx2-ubyte"])
    np.testing.assert_array_equal(loaded, np.concatenate([stack, stack[:1]]))


def test_pictures_of_different_sizes_need_size(tmp_path):
    from PIL import Image
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "small.png")
    Image.fromarray(np.full((56, 84), 200, np.uint8)).save(tmp_path / "large.png")
    paths = [tmp_path / "small.png", tmp_path / "large.png"]
    with pytest.raises(ValueError, match="large.png is 56x84 but .*small.png is 28x28; pass size"):
        load_images(paths)
    resized = load_images(paths, size=(28, 28))
    assert resized.shape == (2, 28, 28) and (resized[1] == 200).all()


@pytest.mark.parametrize("name, content, error, rule", [
    ("absent.png", None, FileNotFoundError, "absent.png: no such file"),
    ("garbage.png", b"not a picture", ValueError, "garbage.png: cannot read it as a PNG/JPEG"),
    ("floats-idx1", idx_bytes(0x0D, (1,), bytes(4)), ValueError,
     "floats-idx1: an IDX image file must hold uint8"),
    ("notes.txt", b"hello", ValueError, "notes.txt: not an IDX file"),
])
def test_unreadable_image_files_are_errors_naming_them(tmp_path, name, content, error, rule):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(error, match=rule):
        load_images([tmp_path / name])


def test_missing_pillow_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install 'gpuconv\[train\]'"):
        data._pillow()


@pytest.mark.parametrize("paths", ["one.png", []])
def test_load_images_wants_a_non_empty_list(paths):
    with pytest.raises(ValueError, match="paths must be a non-empty list"):
        load_images(paths)


# ---------------------------------------------------------------- resizing


def test_shrinking_by_two_averages_blocks():
    images = np.array([[[0, 4, 8, 8], [4, 8, 8, 8], [100, 100, 0, 0], [100, 100, 0, 2]]], np.uint8)
    np.testing.assert_array_equal(resize_images(images, (2, 2))[0], [[4, 8], [100, 0]])


@pytest.mark.parametrize("source, size", [((28, 28), (28, 28)), ((30, 50), (28, 28)),
                                          ((10, 7), (28, 28)), ((3, 90), (28, 28))])
def test_resize_keeps_flat_images_flat_and_same_size_unchanged(source, size):
    flat = np.full((2, *source), 77, np.uint8)
    assert (resize_images(flat, size) == 77).all()
    varied = np.random.default_rng(1).integers(0, 256, (1, *size), dtype=np.uint8)
    np.testing.assert_array_equal(resize_images(varied, size), varied)


def test_an_idx_file_of_no_images_is_refused(tmp_path):
    """predict would print nothing and succeed."""
    path = tmp_path / "none.idx"
    write_idx(path, np.zeros((0, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"none.idx holds no images"):
        load_images([path])


@pytest.mark.parametrize("shape", [(1, 28, 0), (2, 0, 5), (0, 0)])
def test_images_without_pixels_are_refused(tmp_path, shape):
    """An IDX file of 0-wide or 0-high images, and such an array to resize: a ValueError
    naming the file or the argument (resizing divided by the missing size)."""
    path = tmp_path / "empty.idx"
    write_idx(path, np.zeros(shape, np.uint8))
    with pytest.raises(ValueError, match=r"empty.idx: its images are \d+x\d+ pixels"):
        load_images([path])
    if len(shape) == 3:
        with pytest.raises(ValueError, match="images must be at least 1x1 pixels"):
            resize_images(np.zeros(shape, np.uint8), (28, 28))


def test_growing_interpolates_between_pixels():
    grown = resize_images(np.array([[[0, 200]]], np.uint8), (1, 4))[0, 0]
    np.testing.assert_array_equal(grown, [0, 50, 150, 200])


@pytest.mark.parametrize("images, size, rule", [
    (np.zeros((4, 4), np.uint8), (2, 2), "images must be a uint8 NumPy array \\(N, H, W\\)"),
    (np.zeros((1, 4, 4), np.float32), (2, 2), "images must be a uint8"),
    (np.zeros((1, 4, 4), np.uint8), (0, 2), "size must be two positive ints"),
    (np.zeros((1, 4, 4), np.uint8), 28, "size must be two positive ints"),
])
def test_resize_rejects(images, size, rule):
    with pytest.raises(ValueError, match=rule):
        resize_images(images, size)


def test_fit_to_model_inverts_only_when_asked():
    photo = np.full((1, 56, 56), 250, np.uint8)
    photo[:, 20:36, 20:36] = 10  # a dark item on a light background
    assert light_background(photo).tolist() == [True]
    kept, inverted = fit_to_model(photo), fit_to_model(photo, invert=True)
    assert kept.shape == inverted.shape == (1, 28, 28)
    np.testing.assert_array_equal(inverted, 255 - kept)
    assert light_background(inverted).tolist() == [False]


# ---------------------------------------------------------------- validation split


def test_split_validation_is_deterministic_disjoint_and_ordered():
    x, y = np.arange(100) * 10, np.arange(100)
    x_train, y_train, x_val, y_val = split_validation(x, y, 0.2, seed=1)
    assert len(y_val) == 20 and len(y_train) == 80
    assert sorted(np.concatenate([y_train, y_val]).tolist()) == list(range(100))
    assert (np.diff(y_train) > 0).all() and (np.diff(y_val) > 0).all()
    np.testing.assert_array_equal(x_val, y_val * 10)
    np.testing.assert_array_equal(split_validation(x, y, 0.2, seed=1)[3], y_val)
    assert not np.array_equal(split_validation(x, y, 0.2, seed=2)[3], y_val)


@pytest.mark.parametrize("n, fraction, seed", [(10, 0.2, 0), (37, 0.1, 5), (60, 0.5, 3)])
def test_split_validation_keeps_each_label_with_its_image(n, fraction, seed):
    """Both parts are the samples a seeded permutation picks, in their original order, each
    image with its own label (labels in random order: a sorted label list would hide a
    reordering)."""
    rng = np.random.default_rng(seed + 100)
    x, y = rng.integers(0, 256, (n, 2, 3), dtype=np.uint8), rng.integers(0, 10, n)
    held = np.zeros(n, dtype=bool)
    held[np.random.default_rng(seed).permutation(n)[:round(n * fraction)]] = True
    got = split_validation(x, y, fraction, seed=seed)
    want = (x[~held], y[~held], x[held], y[held])
    for name, a, b in zip(("x_train", "y_train", "x_val", "y_val"), got, want):
        np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("n_y, fraction, rule", [
    (9, 0.2, "x has 10 examples but y has 9"),
    (10, 0.0, "fraction must be between 0 and 1"),
    (10, 1.0, "fraction must be between 0 and 1"),
    (10, 0.01, "leaves 0 for validation"),
])
def test_split_validation_rejects(n_y, fraction, rule):
    with pytest.raises(ValueError, match=rule):
        split_validation(np.zeros(10), np.zeros(n_y), fraction, seed=0)


def test_the_most_axes_an_array_has_are_written_and_read_back(tmp_path):
    """write_idx takes any array this NumPy makes, and read_idx reads it back (its limit
    once stopped below what write_idx wrote)."""
    array = np.arange(6, dtype=np.uint8).reshape((2, 3) + (1,) * (IDX_MAX_DIMS - 2))
    write_idx(tmp_path / "deep-idx", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "deep-idx"), array)

