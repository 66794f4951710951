"""Hostile files (issue 16): model files, IDX files and pictures that try to exhaust memory,
run a decoder or crash the loader. Each must load or fail with a ValueError naming the
file, within a small memory bound (tracemalloc sees NumPy's allocations), before any
large array is allocated."""

from __future__ import annotations

import gzip
import io
import json
import re
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gpuconv.data import load_images, read_idx, write_idx
from gpuconv.nn import Conv2D, Dense, Flatten, MaxPool2D, ReLU, Sequential
from gpuconv.nn.layers import LAYERS
from gpuconv.nn.modelfile import META

MEMORY_BOUND = 32 * 2**20  # bytes a rejected file may make the loader allocate


def _small_checkpoint(path):
    model = Sequential([Conv2D(4, 3), ReLU(), MaxPool2D(2), Flatten(), Dense(10)])
    model.build((1, 8, 8), "cpu", seed=1)
    model.compile("adam")
    rng = np.random.default_rng(0)
    model.fit(rng.random((16, 1, 8, 8)), rng.integers(0, 10, 16), epochs=1, batch_size=8)
    model.save(path, include_optimizer=True, extra={"note": "ok"})
    return model


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "checkpoint.npz"
    _small_checkpoint(path)
    return path


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_members(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(array) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _meta(path) -> dict:
    return json.loads(np.load(io.BytesIO(_members(path)[META + ".npy"])).tobytes())


def _with_meta(path, meta) -> None:
    members = _members(path)
    text = meta if isinstance(meta, (str, bytes)) else json.dumps(meta)
    raw = text.encode() if isinstance(text, str) else text
    members[META + ".npy"] = _npy(np.frombuffer(raw, np.uint8))
    _write_members(path, members)


def _load_within_bound(path, **kwargs):
    """Load ``path``; returns (model or the ValueError, peak bytes allocated meanwhile)."""
    tracemalloc.start()
    try:
        try:
            result = Sequential.load(path, **kwargs)
        except ValueError as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _assert_refused(path, match, **kwargs):
    result, peak = _load_within_bound(path, **kwargs)
    assert isinstance(result, ValueError), f"loaded: {result}"
    assert str(path) in str(result) and "Traceback" not in str(result)
    assert re.search(match, str(result)), str(result)
    assert peak < MEMORY_BOUND, f"{peak:,} bytes allocated before refusing"
    return result


# --------------------------------------------------------------------------- the architecture
@pytest.mark.parametrize("units, match", [
    (2_000_000, r"param/4/kernel has shape \(36, 10\), the architecture needs \(36, 2000000\)"),
    (40_000_000, r"too large to load: its architecture needs 5,920,000,160 bytes"),
])
def test_a_huge_architecture_is_refused_before_anything_is_built(checkpoint, units, match):
    meta = _meta(checkpoint)
    meta["model"]["layers"][-1]["config"]["units"] = units
    _with_meta(checkpoint, meta)
    _assert_refused(checkpoint, match)


def test_the_size_limit_is_an_argument(checkpoint):
    _assert_refused(checkpoint, "too large to load", max_bytes=1000)
    assert isinstance(_load_within_bound(checkpoint)[0], Sequential)


def test_an_architecture_that_disagrees_with_the_arrays_is_refused(checkpoint):
    meta = _meta(checkpoint)
    meta["model"]["layers"][0]["config"]["filters"] = 5
    _with_meta(checkpoint, meta)
    _assert_refused(checkpoint, r"param/0/kernel has shape \(4, 1, 3, 3\), the architecture "
                                r"needs \(5, 1, 3, 3\)")


def test_every_layer_declares_the_shapes_it_builds():
    """``param_shapes`` / ``buffer_shapes`` are what the loader checks against: they must be
    what ``build`` creates, for every layer class."""
    from gpuconv.nn import zoo
    seen = set()
    for name in zoo.MODELS:
        model = zoo.make_model(name).build((1, 28, 28), "cpu")
        shapes = model.array_shapes((1, 28, 28))
        built = {f"param/{k}": tuple(v.shape) for k, v in model.parameters().items()}
        built |= {f"buffer/{k}": tuple(v.shape) for k, v in model._buffers().items()}
        assert shapes == built, name
        seen |= {type(layer).__name__ for layer in model.layers}
    model = Sequential([__import__("gpuconv.nn.layers", fromlist=["x"]).Conv2DTranspose(
        3, 3, strides=2, groups=1)]).build((2, 5, 5), "cpu")
    assert model.array_shapes((2, 5, 5)) == {"param/0/kernel": (2, 3, 3, 3), "param/0/bias": (3,)}
    assert {"Conv2D", "Dense", "BatchNorm2D"} <= seen


# --------------------------------------------------------------------------- archive and headers
def test_an_npy_header_claiming_1e11_elements_is_refused(checkpoint):
    members = _members(checkpoint)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False,
                                                  "shape": (10**11,)})
    members["param/4/bias.npy"] = header.getvalue() + b"\0" * 64
    _write_members(checkpoint, members)
    _assert_refused(checkpoint, r"param/4/bias.npy declares \d+ bytes but its header describes")


def test_object_arrays_are_refused_unread(checkpoint):
    members = _members(checkpoint)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False,
                                                  "shape": (1,)})
    members["param/4/bias.npy"] = header.getvalue() + b"cos\nsystem\n(S'echo hi'\ntR."
    _write_members(checkpoint, members)
    _assert_refused(checkpoint, "param/4/bias.npy has dtype object")


@pytest.mark.parametrize("change", [8, 1, -1, -4], ids=lambda n: f"{n:+d}-bytes")
def test_a_member_whose_size_disagrees_with_its_header_is_refused(checkpoint, change):
    """A .npy member holds exactly what its header describes: bytes past the array, or an
    array cut short, is damage, refused before anything is read."""
    members = _members(checkpoint)
    data = members["param/4/bias.npy"]  # its header, then 10 float32
    members["param/4/bias.npy"] = data + b"\0" * change if change > 0 else data[:change]
    _write_members(checkpoint, members)
    _assert_refused(checkpoint, rf"param/4/bias.npy declares {len(data) + change} bytes but its "
                                rf"header describes {len(data)} \(float32 \(10,\)\)")


@pytest.mark.parametrize("member, dtype, allowed", [
    ("param/4/bias", "int64", "float32 or float64"),
    ("param/4/bias", "int32", "float32 or float64"),
    ("param/4/bias", "float16", "float32 or float64"),
    ("param/4/bias", "complex128", "float32 or float64"),
    ("param/4/bias", "bool", "float32 or float64"),
    ("optimizer/4/kernel/m", "int32", "float32 or float64"),
    (META, "int8", "uint8"),
])
def test_arrays_of_another_dtype_are_refused_unread(checkpoint, member, dtype, allowed):
    """Weights and optimiser slots are stored as float32 or float64, the description as
    uint8 bytes: any other dtype is damage, not something to cast."""
    members = _members(checkpoint)
    stored = np.load(io.BytesIO(members[member + ".npy"]))
    members[member + ".npy"] = _npy(stored.astype(dtype))
    _write_members(checkpoint, members)
    _assert_refused(checkpoint, rf"{member}.npy has dtype {np.dtype(dtype)}; it must be "
                                rf"{allowed}")


@pytest.mark.parametrize("content, match", [
    (lambda: _npy(np.zeros(3)), "a single .npy array"),
    (lambda: b"\x80\x04K\x01.", r"not a \.npz \(zip\) archive"),
    (lambda: b"", r"not a \.npz \(zip\) archive"),
])
def test_files_that_are_not_archives(tmp_path, content, match):
    path = tmp_path / "model.npz"
    path.write_bytes(content())
    error = _assert_refused(path, match)
    assert "allow_pickle" not in str(error)


def test_unexpected_members_are_refused(checkpoint):
    members = _members(checkpoint)
    members["evil.pkl"] = b"\x80\x04K\x01."
    _write_members(checkpoint, members)
    _assert_refused(checkpoint, "unexpected or repeated archive member 'evil.pkl'")


# --------------------------------------------------------------------------- the description
@pytest.mark.parametrize("change, match", [
    (lambda m: m["model"].pop("layers"), "model.layers must be a non-empty list, got NoneType"),
    (lambda m: m["model"].update(layers=[]), "model.layers non-empty"),
    (lambda m: m["model"].update(layers=[["Dense", {}]]), r"model.layers\[0\] must be an object"),
    (lambda m: m["model"]["layers"][4].update(config={"units": "ten"}), "invalid"),
    (lambda m: m["model"]["layers"][4].update(config={"unitz": 10}), "unexpected keyword"),
    (lambda m: m["model"].update(input_shape=[1, -8, 8]), "input_shape must be a list"),
    (lambda m: m["model"].update(dtype="object"), "model.dtype must be"),
    (lambda m: m.update(extra=["not", "a", "dict"]), "extra must be a JSON object, got list"),
    (lambda m: m.update(epoch="3"), "epoch must be a non-negative int, got str"),
    (lambda m: m.update(history=[1]), "history must be an object of lists"),
    (lambda m: m["optimizer"].update(step=-1), r"optimizer.step must be in \[0, "),
    (lambda m: m["optimizer"].update(step=2**63), r"optimizer.step must be in \[0, "),
    (lambda m: m.update(epoch=10**30), r"epoch must be in \[0, "),
    (lambda m: m.update(epoch=-1), "and history an object of lists"),
    (lambda m: m["model"].update(name=5), "model.name must be a string"),
    (lambda m: m["optimizer"].update(config={"name": "rmsprop"}), "optimizer must be one of"),
    (lambda m: m["optimizer"].update(metric="f1"), r"optimizer.metric must be one of \("),
    (lambda m: m["optimizer"].update(metric=["acc"]), "optimizer.metric must be a metric's name"),
    (lambda m: m.update(format="other"), "format 'other'"),
    (lambda m: m.update(version=99), "version 99"),
])
def test_malformed_descriptions_are_clear_errors(checkpoint, change, match):
    meta = _meta(checkpoint)
    change(meta)
    _with_meta(checkpoint, meta)
    _assert_refused(checkpoint, match)


@pytest.mark.parametrize("layout", ["fortran-order", "big-endian"])
def test_arrays_stored_in_another_layout_train_as_c_ordered_native_ones(checkpoint, tmp_path,
                                                                         layout):
    """NumPy writes .npy members Fortran-ordered or big-endian too: the loaded model trains
    them (its optimiser updates parameters and slots in place through flat views) exactly as
    it trains the C-ordered native file's."""
    members = _members(checkpoint)
    for key in [k for k in members if k.startswith(("param/", "optimizer/"))]:
        a = np.load(io.BytesIO(members[key]))
        members[key] = _npy(np.asfortranarray(a) if layout == "fortran-order"
                            else a.astype(a.dtype.newbyteorder(">")))
    _write_members(tmp_path / "other.npz", members)
    rng = np.random.default_rng(9)
    x, y = rng.random((16, 1, 8, 8)), rng.integers(0, 10, 16)
    models = [Sequential.load(path) for path in (checkpoint, tmp_path / "other.npz")]
    for model in models:
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for i, (got, want) in enumerate(zip(models[1].get_weights(), models[0].get_weights())):
        assert np.array_equal(got, want), f"weight {i} trained otherwise"


def test_a_checkpoint_from_before_the_metric_name_was_stored_loads_for_accuracy(checkpoint):
    meta = _meta(checkpoint)
    del meta["optimizer"]["metric"]
    _with_meta(checkpoint, meta)
    assert Sequential.load(checkpoint).metric_name == "accuracy"


@pytest.mark.parametrize("text, match", [
    ("[1, 2]", "must be a JSON object, got list"),
    ('{"epoch": ' + "9" * 5000 + "}", "not valid JSON"),  # past Python's 4300-digit limit
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ('{"a": ' * 100_000 + "1" + "}" * 100_000, "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),
])
def test_descriptions_that_are_not_json_objects(checkpoint, text, match):
    _with_meta(checkpoint, text)
    _assert_refused(checkpoint, match)


# --------------------------------------------------------------------------- optimiser state
def test_optimiser_state_of_the_wrong_shape_is_refused(checkpoint):
    members = _members(checkpoint)
    members["optimizer/4/kernel/m.npy"] = _npy(np.zeros((3, 3), np.float32))
    _write_members(checkpoint, members)
    _assert_refused(checkpoint, r"optimizer/4/kernel/m has shape \(3, 3\), its parameter has")


def test_missing_optimiser_state_is_refused(checkpoint):
    """Resuming with fresh Adam moments would silently change the run."""
    members = {k: v for k, v in _members(checkpoint).items() if not k.endswith("/v.npy")}
    _write_members(checkpoint, members)
    _assert_refused(checkpoint, r"optimiser state does not match the model after 2 steps: "
                                r"missing \['0/bias/v'")


def test_a_checkpoint_round_trip_keeps_the_optimiser(tmp_path):
    model = _small_checkpoint(tmp_path / "c.npz")
    loaded = Sequential.load(tmp_path / "c.npz")
    assert loaded.optimizer.step == model.optimizer.step == 2
    assert set(loaded.optimizer.state) == set(model.optimizer.state)
    for key, value in model.optimizer.state.items():
        np.testing.assert_array_equal(loaded.optimizer.state[key], value)
    assert loaded.extra == {"note": "ok"}


@pytest.mark.parametrize("key, value, dtype", [
    ("param/4/bias", np.full(10, np.nan), np.float32),
    ("param/0/kernel", np.full((4, 1, 3, 3), 1e300), np.float64),  # infinite as float32
    ("optimizer/4/kernel/v", np.full((36, 10), np.inf), np.float32),
])
def test_stored_values_that_are_not_finite_are_refused(checkpoint, key, value, dtype):
    """save never writes a NaN or an infinity, so one in a file is damage, even where it
    appears only at the model's dtype."""
    members = _members(checkpoint)
    members[key + ".npy"] = _npy(value.astype(dtype))
    _write_members(checkpoint, members)
    _assert_refused(checkpoint, f"{key} holds NaN or infinite values")


# --------------------------------------------------------------------------- what save writes
class _Halving:
    """A learning-rate schedule of the user's own: it trains, but no file can rebuild it."""

    def __call__(self, step):
        return 0.1 / (1 + step)

    def get_config(self):
        return {"name": "halving"}


def _trained(optimizer="sgd"):
    model = Sequential([Conv2D(2, 3, strides=np.int64(1), padding=np.int64(1)),
                        MaxPool2D(np.int64(2)), Flatten(), Dense(3)])
    model.build((1, 4, 4), "cpu", seed=2)
    model.compile(optimizer)
    rng = np.random.default_rng(3)
    model.fit(rng.random((6, 1, 4, 4)), rng.integers(0, 3, 6), verbose=0)
    return model


def _assert_same_weights(model, other):
    for mine, theirs in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, theirs)


def test_what_would_not_load_back_is_never_written(tmp_path):
    from gpuconv.nn import SGD
    model, path = _trained(SGD(_Halving())), tmp_path / "m.npz"
    with pytest.raises(ValueError, match="not written: .*would not load back.*'halving'"):
        model.save(path, include_optimizer=True)
    assert not path.exists()
    model.save(path)  # without the optimiser it loads back
    _assert_same_weights(Sequential.load(path), model)
    stepped = _trained()
    stepped.optimizer.step = 2**63
    with pytest.raises(ValueError, match=r"not written: .*optimizer.step must be in \[0, "):
        stepped.save(path, include_optimizer=True)


def test_numpy_integers_in_a_layer_config_are_saved_as_ints(tmp_path):
    model, path = _trained(), tmp_path / "m.npz"
    model.save(path, extra={"count": np.int64(3)})
    loaded = Sequential.load(path)
    as_json = json.loads(json.dumps(loaded.get_config()))
    assert as_json == json.loads(json.dumps(model.get_config(), default=int))
    assert type(as_json["layers"][0]["config"]["strides"]) is int
    assert loaded.extra == {"count": 3}
    x = np.random.default_rng(4).random((3, 1, 4, 4))
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_a_checkpoint_that_cannot_be_written_fails_before_training(tmp_path):
    from gpuconv.nn import SGD, ModelCheckpoint
    x, y = np.random.default_rng(5).random((6, 1, 4, 4)), np.arange(6) % 3
    for optimizer, callback, match in [
        (SGD(_Halving()), ModelCheckpoint(tmp_path / "c.npz"), "would not load back"),
        ("sgd", ModelCheckpoint(tmp_path / "{}.npz"), "filepath .* named fields"),
        ("sgd", ModelCheckpoint(tmp_path / "{epoch:.2q}.npz"), "filepath .* named fields"),
        ("sgd", ModelCheckpoint(tmp_path / "{loss:d}.npz"), "filepath .* named fields"),
    ]:
        model = _trained(optimizer)
        weights = model.get_weights()
        with pytest.raises(ValueError, match=match):
            model.fit(x, y, callbacks=[callback], verbose=0)
        assert model.epoch == 1 and model.optimizer.step == 1
        for now, before in zip(model.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(now, before)
    assert list(tmp_path.iterdir()) == []
    # a name fit does not log fails at the first save, naming it (callbacks may add names)
    model = _trained()
    with pytest.raises(ValueError, match=r"filepath .* names 'val_loss', which fit does not"):
        model.fit(x, y, callbacks=[ModelCheckpoint(tmp_path / "{val_loss:.2f}.npz")], verbose=0)


def test_saving_through_a_link_replaces_its_target(tmp_path):
    first, second = _trained(), _trained("adam")
    target, link = tmp_path / "target.npz", tmp_path / "link.npz"
    first.save(target)
    link.symlink_to(target)
    second.save(link)
    assert link.is_symlink()
    _assert_same_weights(Sequential.load(target), second)


def test_a_file_name_near_the_limit_is_written_through_a_shorter_temporary(tmp_path):
    """The temporary's name adds 14 bytes to the file's: it is cut short, so any name the
    file system takes can be saved to."""
    model, path = _trained(), tmp_path / ("m" * 251 + ".npz")
    model.save(path)
    _assert_same_weights(Sequential.load(path), model)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


@pytest.mark.parametrize("name, writer", [
    ("m.npz", lambda: _trained().save),
    ("c.npz", lambda: lambda path: _trained("adam").save(path, include_optimizer=True)),
    ("images-idx", lambda: lambda path: write_idx(path, np.arange(12, dtype=np.uint8)
                                                  .reshape(3, 4))),
    ("images-idx.gz", lambda: lambda path: write_idx(path, np.arange(12, dtype=np.int32))),
], ids=["model", "checkpoint", "idx", "idx.gz"])
def test_a_file_reaches_the_disk_before_its_rename_and_the_rename_after(tmp_path, monkeypatch,
                                                                           name, writer):
    """atomic_write syncs the temporary file's data, then renames it over the file, then
    syncs the folder: a power cut at any point leaves the old file or the whole new one
    (renamed before its data is on disk, a file can come back empty). Only the syncs and
    renames in tmp_path count (a kernel cache may write elsewhere meanwhile)."""
    import os
    import stat
    path, events = tmp_path / name, []
    path.write_bytes(b"old")
    write = writer()  # (the model trained before the spies go in)
    real_fsync, real_replace = os.fsync, os.replace

    def here(st) -> bool:
        return any(os.path.samestat(st, os.stat(p)) for p in (tmp_path, *tmp_path.iterdir()))

    def fsync(fd):
        st = os.fstat(fd)
        if here(st):
            events.append(("fsync", "folder" if stat.S_ISDIR(st.st_mode) else "file",
                           None if stat.S_ISDIR(st.st_mode) else st.st_size))
        real_fsync(fd)

    def replace(source, target):
        if Path(target).parent == tmp_path:
            events.append(("replace", Path(target).name, os.stat(source).st_size))
        real_replace(source, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write(path)
    size = path.stat().st_size
    assert events == [("fsync", "file", size), ("replace", name, size),
                      ("fsync", "folder", None)], events


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o444])
def test_a_file_saved_over_keeps_its_permissions(tmp_path, mode):
    """A private model stays private: the replacement takes the replaced file's mode."""
    import os
    import stat
    path = tmp_path / "m.npz"
    _trained().save(path)
    path.chmod(mode)
    second = _trained("adam")
    second.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    _assert_same_weights(Sequential.load(path), second)


def test_only_regular_files_are_written_or_read(tmp_path):
    import os
    model, fifo = _trained(), tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (tmp_path, fifo):
        with pytest.raises(ValueError, match="not a regular file"):
            model.save(path)
        with pytest.raises(ValueError, match="not a regular file"):
            Sequential.load(path)
    assert fifo.exists() and not fifo.is_file()


# --------------------------------------------------------------------------- fuzzing
def test_random_corruptions_load_or_fail_cleanly_within_a_memory_bound(checkpoint):
    """Flipped bytes, cut and spliced files of a real checkpoint: each loads or raises the
    documented ValueError naming the file, allocating little."""
    original = checkpoint.read_bytes()
    rng = np.random.default_rng(16)
    outcomes = {"loaded": 0, "refused": 0}
    for trial in range(600):
        data = bytearray(original)
        kind = trial % 4
        if kind == 0:  # a few random bytes changed
            for at in rng.integers(0, len(data), int(rng.integers(1, 8))):
                data[at] = int(rng.integers(0, 256))
        elif kind == 1:  # cut short
            data = data[:int(rng.integers(0, len(data)))]
        elif kind == 2:  # a block overwritten with one byte value (e.g. 0xff sizes)
            at = int(rng.integers(0, len(data)))
            data[at:at + 8] = bytes([int(rng.integers(0, 256))]) * 8
        else:  # a slice repeated
            at, size = int(rng.integers(0, len(data))), int(rng.integers(1, 200))
            data = data[:at] + data[at:at + size] * 3 + data[at:]
        checkpoint.write_bytes(bytes(data))
        tracemalloc.start()
        try:
            Sequential.load(checkpoint)
            outcomes["loaded"] += 1
        except ValueError as exc:
            assert str(checkpoint) in str(exc), exc
            outcomes["refused"] += 1
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < MEMORY_BOUND, (trial, peak)
    assert outcomes["refused"] > 400 and sum(outcomes.values()) == 600


def _forged_directory(path, members: int, name: bytes, records: str) -> None:
    """A zip archive that is only a directory of ``members`` entries named ``name``, with
    ``records`` "classic" end records, "zip64" ones, or "zip64-decoy": its locator pointing
    at a record of one member while the record before the locator (where Python 3.11's
    zipfile reads it) declares them all."""
    entry = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0, 0, 0, 0,
                        len(name), 0, 0, 0, 0, 0, 0) + name
    directory = entry * members

    def zip64_record(count, size):
        return struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, size, 0)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, *((members, members, len(directory), 0)
                      if records == "classic" else (0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF)), 0)
    decoy = zip64_record(1, len(entry)) if records == "zip64-decoy" else b""
    locator = struct.pack("<IIQI", 0x07064B50, 0, len(directory), 1)
    tail = b"" if records == "classic" else (decoy + zip64_record(members, len(directory))
                                             + locator)
    path.write_bytes(directory + tail + end)


@pytest.mark.parametrize("members, name, records", [
    (300_000, b"a", "zip64"),        # more members than a model file may hold
    (300_000, b"a", "zip64-decoy"),  # the same, its locator pointing at a harmless record
    (60_000, b"x" * 400 + b".npy", "classic"),  # fewer, in a directory past its byte limit
])
def test_a_forged_directory_is_refused_before_it_is_parsed(tmp_path, members, name, records):
    """zipfile makes an object per directory entry (8 times the file's size in memory):
    the end records' count and size are checked first."""
    path = tmp_path / "forged.npz"
    _forged_directory(path, members, name, records)
    error, peak = _peak_of(lambda: Sequential.load(path))
    assert error is not None and "its directory lists" in str(error), error
    assert peak < 2**20


# --------------------------------------------------------------------------- IDX and pictures
def _idx_header(dtype_code, shape) -> bytes:
    return struct.pack(f">2xBB{len(shape)}I", dtype_code, len(shape), *shape)


def _peak_of(call):
    tracemalloc.start()
    try:
        try:
            call()
        except ValueError as exc:
            return exc, tracemalloc.get_traced_memory()[1]
        return None, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_is_stopped_at_the_size_its_header_declares(tmp_path):
    path = tmp_path / "bomb-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(_idx_header(0x08, (1, 28, 28)))
        zeros = bytes(2**24)
        for _ in range(16):  # 256 MiB of zeros after a 784-byte image
            f.write(zeros)
    assert path.stat().st_size < 2**21
    error, peak = _peak_of(lambda: read_idx(path))
    assert error is not None and "or more trailing bytes" in str(error) and str(path) in str(error)
    assert peak < 8 * 2**20


def test_an_idx_header_declaring_too_much_is_refused_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "huge-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(_idx_header(0x0E, (2**31, 2**31, 2**31)) + bytes(100))
    error, peak = _peak_of(lambda: read_idx(path))
    assert error is not None and "is too large" in str(error) and str(path) in str(error)
    assert peak < 2**20
    monkeypatch.setenv("GPUCONV_MAX_BYTES", "1000")
    write_idx(tmp_path / "fine-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="is too large"):
        read_idx(tmp_path / "fine-idx3-ubyte")


def test_predict_opens_only_png_and_jpeg(tmp_path, monkeypatch):
    """An EPS file named .png must not reach Pillow's EPS plugin (it runs Ghostscript)."""
    from PIL import EpsImagePlugin
    started = []
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: started.append(a))
    path = tmp_path / "e.png"
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n"
                     b"0 0 moveto 28 28 lineto stroke\nshowpage\n%%EOF\n")
    with pytest.raises(ValueError, match="e.png: cannot read it as a PNG/JPEG picture"):
        load_images([path], size=(28, 28))
    assert not started


def test_a_decompression_bomb_picture_is_a_clean_error(tmp_path, monkeypatch):
    from PIL import Image
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 1600 pixels: over the warning limit
    with pytest.raises(ValueError, match="big.png: the picture is too large to decode"):
        load_images([path], size=(28, 28))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # over twice the limit: Pillow's error
    with pytest.raises(ValueError, match="big.png: the picture is too large to decode"):
        load_images([path], size=(28, 28))


def test_all_layer_classes_are_known_to_the_loader():
    assert {"Conv2D", "Dense", "BatchNorm2D", "Conv2DTranspose"} <= set(LAYERS)
