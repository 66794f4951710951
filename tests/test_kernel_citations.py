"""Every name the kernels and backends cite exists: ``module.function`` for a gpuconv module
(``reference.conv2d``, ``numpy_backend._phase_taps``, ``shapes.adaptive_windows``, ...) and
every private name quoted as ``_name`` in a Python file. A renamed or removed function leaves
no stale citation behind. Names are read from the source (ast), so no GPU library is imported.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CITING = sorted([*(ROOT / "kernels").glob("*.cu"), *(ROOT / "kernels").glob("*.cuh"),
                 *(ROOT / "kernels").glob("*.py"), *(ROOT / "gpuconv" / "backends").glob("*.py")])
MODULES = {p.stem: p for folder in ("gpuconv", "gpuconv/backends", "kernels")
           for p in (ROOT / folder).glob("*.py") if p.stem not in ("__init__", "data", "torch")}
# (gpuconv/data.py is left out: "data.items()" in a backend is a local variable; gpuconv/torch.py
# too: "torch.backends" names PyTorch)
CITATION = re.compile(r"(?<![\w.])(?:gpuconv\.(?:backends\.|kernels\.)?)?(%s)\.([A-Za-z_]\w*)"
                      % "|".join(sorted(MODULES)))
QUOTED_PRIVATE = re.compile(r"``(_[a-z]\w*)(?:\(\))?``")
FILE_SUFFIXES = {"py", "cu", "cuh"}  # "numpy_backend.py" names a file, not a function


def defined_names(path: Path) -> set[str]:
    """Functions, classes, assigned and imported names of a module (methods included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in ast.walk(node) if isinstance(t, ast.Name))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


ALL_NAMES = set().union(*(defined_names(p) for p in MODULES.values()))


def citations(path: Path):
    text = path.read_text()
    for match in CITATION.finditer(text):
        module, name = match.groups()
        if name not in FILE_SUFFIXES:
            yield module, name
    if path.suffix == ".py":
        for name in QUOTED_PRIVATE.findall(text):
            yield None, name


@pytest.mark.parametrize("path", CITING, ids=lambda p: p.name)
def test_cited_names_exist(path: Path):
    missing = sorted({f"{module}.{name}" if module else name for module, name in citations(path)
                      if name not in (defined_names(MODULES[module]) if module else ALL_NAMES)})
    assert not missing, f"{path.relative_to(ROOT)} cites names that do not exist: {missing}"


def test_every_kernel_file_names_its_reference():
    for path in (ROOT / "kernels").glob("*"):
        if path.suffix in (".cu", ".py") and path.stem != "__init__":
            head = "\n".join(path.read_text().splitlines()[:12])
            # the trainer's layer kernels (layers.cu) equal the NumPy path of gpuconv.nn, the
            # bench's ceiling loops (peak.cu) the sums of gpuconv.benchmark.peaks
            assert ("reference: gpuconv.backends.reference." in head
                    or "reference: gpuconv.nn." in head
                    or "reference: gpuconv.benchmark.peaks." in head), \
                f"{path.name}: its first lines must name the reference function it equals"


def test_the_check_catches_a_stale_citation(tmp_path):
    stale = tmp_path / "stale.cu"
    stale.write_text("// numpy_backend.lp_pool_from_avg: gone; reference.conv2d: here\n")
    assert [c for c in citations(stale)] == [("numpy_backend", "lp_pool_from_avg"),
                                             ("reference", "conv2d")]
    assert "lp_pool_from_avg" not in defined_names(MODULES["numpy_backend"])
    assert "conv2d" in defined_names(MODULES["reference"])
