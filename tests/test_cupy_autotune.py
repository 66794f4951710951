"""Autotune cache and key logic (gpuconv/backends/autotune.py); the CUDA-event timing itself
needs a GPU and is replaced here by a fake timer."""

from __future__ import annotations

import json

import pytest

from gpuconv.backends import autotune


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("GPUCONV_AUTOTUNE", raising=False)
    monkeypatch.setattr(autotune, "_CACHE", None)
    autotune.set_autotune(None)
    yield
    autotune.set_autotune(None)


@pytest.mark.parametrize("flag, env, want", [(None, None, False), (None, "1", True), (None, "0", False),
                                             (True, None, True), (False, "1", False)])
def test_switch(monkeypatch, flag, env, want):
    if env is not None:
        monkeypatch.setenv("GPUCONV_AUTOTUNE", env)
    autotune.set_autotune(flag)
    assert autotune.enabled() is want


def test_forced_tile_nests_restores_and_names_the_tiles():
    assert autotune.switches() == (None, None)
    with autotune.forced_tile("64x64"):
        with autotune.forced_tile("tf32-128x256"):
            assert autotune.forced() == "tf32-128x256"
        assert autotune.switches() == (None, "64x64")
        with pytest.raises(RuntimeError), autotune.forced_tile(None):
            raise RuntimeError
        assert autotune.forced() == "64x64"
    assert autotune.forced() is None
    with pytest.raises(ValueError, match="tile must be one of .*'64x64'.*got '64x65'"), \
            autotune.forced_tile("64x65"):
        pass


def test_cache_dir_follows_xdg(tmp_path, monkeypatch):
    assert autotune.cache_dir() == tmp_path / "gpuconv"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert autotune.cache_dir() == tmp_path / "home" / ".cache" / "gpuconv"


def test_keys_separate_device_shape_and_dtype():
    keys = {autotune.make_key(d, "conv2d", s, t) for d in ("H100", "A100")
            for s in (((1, 3, 8, 8), (4, 3, 3, 3)), ((2, 3, 8, 8), (4, 3, 3, 3))) for t in ("float32", "float64")}
    assert len(keys) == 8


def test_best_tile_times_once_then_caches_on_disk(tmp_path):
    times = {"large": 3.0, "medium": 1.0, "small": 2.0}
    timed = []
    key = autotune.make_key("H100", "conv2d", ((1, 2), (3, 4)), "float32")

    def time_ms(tile):
        timed.append(tile)
        return times[tile]
    assert autotune.best_tile(key, times, time_ms) == "medium"
    assert autotune.best_tile(key, times, time_ms) == "medium" and len(timed) == 3
    path = tmp_path / "gpuconv" / autotune.CACHE_FILE
    assert json.loads(path.read_text()) == {key: "medium"}
    assert autotune.TuneCache(path).get(key) == "medium"        # a new process reads it back
    assert [p.name for p in path.parent.iterdir()] == [autotune.CACHE_FILE]  # no temporary file
    assert autotune.best_tile(key, ["large", "small"], time_ms) == "small"  # stale choice: retuned


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"k": 3}', b'{"k": "\xff\xfe"}',
                                  "[" * 100_000 + "]" * 100_000])
def test_corrupt_cache_is_ignored_with_a_warning(tmp_path, text):
    path = tmp_path / "gpuconv" / autotune.CACHE_FILE
    path.parent.mkdir(parents=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.warns(UserWarning, match="ignored"):
        cache = autotune.TuneCache(path)
    assert cache.entries == {}
    assert autotune.best_tile("k", ["a", "b"], {"a": 2, "b": 1}.__getitem__, cache) == "b"
    assert json.loads(path.read_text()) == {"k": "b"}          # rewritten whole


def test_unwritable_cache_only_warns(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="unreadable"):
        cache = autotune.TuneCache(blocker / "sub" / autotune.CACHE_FILE)
    with pytest.warns(UserWarning, match="not written"):
        cache.put("k", "v")
    assert cache.get("k") == "v"


def test_a_directory_in_the_caches_place_only_warns_and_stays(tmp_path):
    path = tmp_path / "gpuconv" / autotune.CACHE_FILE
    (path / "kept").mkdir(parents=True)
    with pytest.warns(UserWarning, match="unreadable"):
        cache = autotune.TuneCache(path)
    with pytest.warns(UserWarning, match="not written.*regular file"):
        cache.put("k", "v")
    assert cache.get("k") == "v" and (path / "kept").is_dir()
    assert sorted(p.name for p in path.parent.iterdir()) == [autotune.CACHE_FILE]
