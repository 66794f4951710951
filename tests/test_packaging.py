"""What a wheel of gpuconv would hold: pyproject lists packages explicitly (kernels/
installs as gpuconv.kernels), so a new package or data file must be listed too."""

from __future__ import annotations

import fnmatch
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
