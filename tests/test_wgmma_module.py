"""The CuPy backend's second module, the wgmma tiles' kernels built for sm_90a
(``cupy_backend._sm90a_module``), without a GPU: CuPy's NVRTC bindings stood in for by thin
wrappers of NVRTC itself (cuda.bindings), so the options, name expressions and lowered names
the backend hands over are NVRTC's real ones; the cubin it caches holds each kernel, with
HGMMA in it; a second build reads the cache instead of compiling; and only a Hopper device
builds it at all."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from gpuconv.backends import cuda_source, cupy_backend, gpu_plan

bindings = pytest.importorskip("cuda.bindings.nvrtc")


def _check(result):
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != bindings.nvrtcResult.NVRTC_SUCCESS:
        raise FakeNvrtc.NVRTCError(err)
    return values[0] if len(values) == 1 else values


class FakeNvrtc:
    """cupy_backends.cuda.libs.nvrtc's functions the backend calls, over NVRTC itself."""

    class NVRTCError(RuntimeError):
        pass

    compiled = 0

    @staticmethod
    def createProgram(src, name, headers, include_names):
        return _check(bindings.nvrtcCreateProgram(src.encode(), name.encode(), 0, [], []))

    @staticmethod
    def addNameExpression(program, name):
        _check(bindings.nvrtcAddNameExpression(program, name.encode()))

    @classmethod
    def compileProgram(cls, program, options):
        cls.compiled += 1
        _check(bindings.nvrtcCompileProgram(program, len(options), [o.encode() for o in options]))

    @staticmethod
    def getProgramLog(program):
        log = b" " * _check(bindings.nvrtcGetProgramLogSize(program))
        _check(bindings.nvrtcGetProgramLog(program, log))
        return log.decode(errors="replace")

    @staticmethod
    def getCUBIN(program):
        cubin = b" " * _check(bindings.nvrtcGetCUBINSize(program))
        _check(bindings.nvrtcGetCUBIN(program, cubin))
        return cubin

    @staticmethod
    def getLoweredName(program, name):
        return _check(bindings.nvrtcGetLoweredName(program, name.encode())).decode()

    @staticmethod
    def destroyProgram(program):
        _check(bindings.nvrtcDestroyProgram(program))

    @staticmethod
    def getVersion():
        return tuple(_check(bindings.nvrtcVersion()))


class FakeRawModule:
    def __init__(self, path):
        self.path = path

    def get_function(self, mangled):
        return (self.path, mangled)


@pytest.fixture
def nvrtc(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    libs = types.ModuleType("cupy_backends.cuda.libs")
    libs.nvrtc = FakeNvrtc
    for name, module in (("cupy_backends", types.ModuleType("cupy_backends")),
                         ("cupy_backends.cuda", types.ModuleType("cupy_backends.cuda")),
                         ("cupy_backends.cuda.libs", libs),
                         ("cupy_backends.cuda.libs.nvrtc", FakeNvrtc)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(FakeNvrtc, "compiled", 0)
    return FakeNvrtc


def _executor(capability: str):
    """A CupyExecutor on a stand-in CuPy (its constructor imports CuPy: its fields set here)."""
    ex = cupy_backend.CupyExecutor.__new__(cupy_backend.CupyExecutor)
    ex.xp = types.SimpleNamespace(RawModule=FakeRawModule, cuda=types.SimpleNamespace(
        Device=lambda: types.SimpleNamespace(compute_capability=capability)))
    ex._wgmma, ex._functions, ex._module = None, {}, None
    return ex


def test_hopper_builds_the_wgmma_module_once_and_caches_it(nvrtc):
    ex = _executor("90")
    names = gpu_plan.wgmma_kernel_names()
    handles = {name: ex.function(name) for name in names}
    assert nvrtc.compiled == 1
    (path,) = {path for path, _ in handles.values()}
    mangled = {name: m for name, (_, m) in handles.items()}
    assert len(set(mangled.values())) == len(names)
    functions = (cuda_source.sass_functions(Path(path).read_bytes()) if cuda_source.cuobjdump()
                 else None)
    if functions is not None:  # each kernel there, on the warpgroup MMA
        for name in names:
            ops = [cuda_source.opcode(i).split(".")[0] for _, i in functions[mangled[name]]]
            assert "HGMMA" in ops, name
    again = _executor("90")
    assert again.function(names[0]) == handles[names[0]] and nvrtc.compiled == 1  # the cache


@pytest.mark.parametrize("capability", ["80", "100"])
def test_other_devices_build_nothing(nvrtc, capability):
    ex = _executor(capability)
    assert not ex.wgmma
    with pytest.raises(RuntimeError, match="need a Hopper GPU"):
        ex.function(gpu_plan.wgmma_kernel_names()[0])
    assert nvrtc.compiled == 0
