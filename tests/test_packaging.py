"""What a wheel of gpuconv holds: pyproject lists packages explicitly (kernels/ installs
as gpuconv.kernels), so a new package or data file must be listed too; the wheel built
and installed into a fresh venv without extras works, and the sdist's tests run."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import os
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_dir(package: str) -> Path:
    mapped = SETUPTOOLS.get("package-dir", {})
    if package in mapped:
        return ROOT / mapped[package]
    return ROOT.joinpath(*package.split("."))


def test_every_package_is_listed():
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "gpuconv").rglob("__init__.py")}
    found |= {"gpuconv.kernels"}
    assert found == set(SETUPTOOLS["packages"])


def test_every_non_python_file_of_a_package_is_package_data():
    for package in SETUPTOOLS["packages"]:
        directory = _package_dir(package)
        patterns = SETUPTOOLS.get("package-data", {}).get(package, [])
        for path in directory.rglob("*"):
            relative = path.relative_to(directory).as_posix()
            if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in relative:
                continue
            top = directory / Path(relative).parts[0]
            if top.is_dir() and (top / "__init__.py").exists():
                continue  # belongs to a subpackage, checked there
            assert any(fnmatch.fnmatch(relative, p) for p in patterns), \
                f"{package}: {relative} would be missing from a wheel"


# --------------------------------------------------------------------------- built artefacts
def _build(kind: str, dest: Path) -> Path:
    """The wheel or sdist setuptools builds from this checkout (PEP 517, no network)."""
    code = f"from setuptools import build_meta; build_meta.build_{kind}({str(dest)!r})"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                   timeout=300)
    (built,) = dest.glob("*.whl" if kind == "wheel" else "*.tar.gz")
    return built


def _fresh_venv(root: Path) -> Path:
    """A new venv that sees only numpy and click (linked from this environment, with their
    metadata, so pip counts them installed): gpuconv's own dependencies and nothing else,
    installed without the network."""
    venv, deps = root / "venv", root / "deps"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=120)
    deps.mkdir()
    for name in ("numpy", "click"):
        dist = importlib.metadata.distribution(name)
        for top in {Path(f).parts[0] for f in dist.files if not str(f).startswith("..")}:
            (deps / top).symlink_to(Path(dist.locate_file(top)))
    purelib = subprocess.run([venv / "bin" / "python", "-c",
                              "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (Path(purelib) / "deps.pth").write_text(f"{deps}\n")
    return venv


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_the_wheel_installs_without_extras_and_trains(tmp_path):
    """The wheel in a fresh venv without extras (no torch, matplotlib, Pillow, GPU
    libraries): import, a conv, --help, demo, and one epoch of training on the bundled
    subset, run from outside the checkout. About 35 s of CPU time, most of it the epoch
    (214 s wall on the shared 2-core machine it was written on, under heavy load)."""
    _build("wheel", tmp_path)
    venv = _fresh_venv(tmp_path)
    subprocess.run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python",
                    "install", "-q", "--no-index", "--find-links", tmp_path, "gpuconv"],
                   check=True, timeout=300, env=_clean_env())

    def run(*args):
        result = subprocess.run([str(a) for a in args], cwd=tmp_path, capture_output=True,
                                text=True, timeout=600, env=_clean_env())
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    run(venv / "bin" / "python", "-c",
        "import sys, importlib.util as u, numpy as np, gpuconv; "
        "assert gpuconv.__file__.startswith(sys.prefix), gpuconv.__file__; "
        "y = gpuconv.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))); "
        "assert y.shape == (1, 1, 2, 2) and (y == 9).all(); "
        "from importlib.resources import files; "
        "assert files('gpuconv.kernels').joinpath('conv.cu').is_file(); "
        "assert not any(u.find_spec(m) for m in ('torch', 'matplotlib', 'PIL', 'cupy'))")
    assert "train" in run(venv / "bin" / "gpuconv", "--help").stdout
    run(venv / "bin" / "gpuconv", "demo")
    subset = run(venv / "bin" / "python", "-c", "from gpuconv.datasets import "
                 "FASHION_MNIST_SUBSET_DIR as d; print(d)").stdout.strip()
    assert subset.startswith(str(venv))  # installed with the wheel
    # --data: the bundled subset even where Debian's full Fashion-MNIST is installed
    trained = run(venv / "bin" / "gpuconv", "train", "--device", "cpu", "--model", "slides",
                  "--epochs", "1", "--data", subset, "--json")
    summary = json.loads(trained.stdout)
    assert "5000 training" in summary["data"] and 0.0 <= summary["test_accuracy"] <= 1.0
    assert "pip install 'gpuconv[train]'" in trained.stderr  # no matplotlib: no pictures
    assert all((tmp_path / f).is_file() for f in summary["files"])
    bench = subprocess.run([venv / "bin" / "gpuconv", "bench"], cwd=tmp_path, text=True,
                           capture_output=True, timeout=120, env=_clean_env())
    assert bench.returncode == 1 and "Traceback" not in bench.stderr, bench.stderr


def test_the_sdist_carries_its_tests_and_they_run(tmp_path):
    sdist = _build("sdist", tmp_path)
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path, filter="data")
    (unpacked,) = (p for p in tmp_path.iterdir() if p.is_dir())
    for needed in ("LICENSE", "Makefile", "tests/conftest.py", "tests/arrays.py",
                   "tests/cuda_host/harness.py", "tests/cuda_host/cuda_shim.h",
                   "oracle/goldens/conv2d_1xN_f64.npz", "bench/cpu.py", "kernels/conv.cu",
                   "gpuconv/datasets/fashion-mnist-subset/train-images-idx3-ubyte.gz"):
        assert (unpacked / needed).is_file(), needed
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly",
                             "-p", "no:cacheprovider", "tests/test_golden.py", "-k", "numpy"],
                            cwd=unpacked, capture_output=True, text=True, timeout=600,
                            env=_clean_env())
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout
