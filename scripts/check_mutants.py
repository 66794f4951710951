"""Plant each fault of the mutant catalogue (tests/mutants.py) and check that its tests fail.

A test that cannot fail proves nothing. Each catalogue entry is a plausible bug (a bound off by
one, a dropped mask term, swapped strides, a flipped NaN rule), the text it replaces in one
file, and the tests that must catch it. For each entry this script copies the tree once into a
scratch folder, writes the mutated file there, runs the named tests (stopping at the first
failure), and restores the file. An entry is

    caught    the tests failed (pytest's exit status 1),
    SURVIVED  they passed: the suite no longer sees that bug,
    STALE     its text no longer occurs exactly once in its file (the code moved on: the entry
              needs rewriting),
    BROKEN    pytest could not run the tests (an error other than a failure).

Usage: python scripts/check_mutants.py [--only NAME,...] [--list] [--catalogue FILE]
(`make check-mutants`). Exit status 0 when every entry is caught. Your working tree is never
touched: the scratch copy holds the tracked files and the untracked ones git does not ignore.
Entries marked with a sanitizer run their tests as `make check-memory` (asan) or
`make check-races` (tsan) do: a missing __syncthreads changes no value in the emulation.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _preload(library: str) -> str:
    return subprocess.run(["g++", f"-print-file-name={library}"], capture_output=True,
                          text=True, check=True).stdout.strip()


# the environment of the Makefile's check-memory and check-races targets
SANITIZERS = {
    "asan": lambda: {"GPUCONV_HOST_ASAN": "1", "ASAN_OPTIONS": "detect_leaks=0",
                     "LD_PRELOAD": _preload("libasan.so")},
    "tsan": lambda: {"GPUCONV_HOST_TSAN": "1",
                     "TSAN_OPTIONS": "halt_on_error=1 report_signal_unsafe=0",
                     "LD_PRELOAD": _preload("libtsan.so")},
}

# what a sanitizer prints as it stops a run (UBSan's alignment check: "runtime error")
SANITIZER_REPORT = re.compile(r"(?:Address|Thread)Sanitizer: [\w-]+(?: [\w-]+)?|runtime error: [^\n]{0,80}")


def load_catalogue(path: Path) -> list:
    spec = importlib.util.spec_from_file_location("mutants", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MUTANTS


def scratch_copy(destination: Path) -> None:
    """The tracked files and the untracked ones git does not ignore, as in the working tree."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    # gpuconv.kernels installs from kernels/ (pyproject's package-dir); a source tree on
    # PYTHONPATH finds it through this link
    (destination / "gpuconv" / "kernels").symlink_to(Path("..") / "kernels")


def run_tests(tree: Path, mutant) -> tuple[str, str]:
    env = dict(os.environ, PYTHONPATH=str(tree), XDG_CACHE_HOME=str(tree / ".cache"),
               NUMBA_CACHE_DIR=str(tree / ".cache" / "numba"), PYTHONDONTWRITEBYTECODE="1")
    if mutant.sanitizer:
        env.update(SANITIZERS[mutant.sanitizer]())
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly", "-p",
               "no:cacheprovider", "--capture=sys", *mutant.tests]
    result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True,
                            check=False)
    output = result.stdout + result.stderr
    first = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - |$)", output, re.MULTILINE)
    if result.returncode == 1 and first:
        return "caught", first[1]
    if result.returncode == 0:
        return "SURVIVED", output.strip().splitlines()[-1]
    if mutant.sanitizer and SANITIZER_REPORT.search(output):
        return "caught", f"{mutant.sanitizer}: {SANITIZER_REPORT.search(output)[0]}"
    return "BROKEN", f"pytest exit status {result.returncode}: {output.strip()[-300:]}"


def check(mutant, tree: Path) -> tuple[str, str]:
    target = tree / mutant.path
    original = target.read_text()
    if original.count(mutant.old) != 1:
        return "STALE", f"{original.count(mutant.old)} occurrences of its text in {mutant.path}"
    target.write_text(original.replace(mutant.old, mutant.new))
    try:
        return run_tests(tree, mutant)
    finally:
        target.write_text(original)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated entry names")
    parser.add_argument("--list", action="store_true", help="list the entries and stop")
    parser.add_argument("--catalogue", type=Path, default=ROOT / "tests" / "mutants.py")
    args = parser.parse_args(argv)
    mutants = load_catalogue(args.catalogue)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {m.name for m in mutants}
        if unknown:
            parser.error(f"--only: no entries named {', '.join(sorted(unknown))}")
        mutants = [m for m in mutants if m.name in wanted]
    if args.list:
        for m in mutants:
            print(f"{m.name:44s} {m.path:34s} {m.fault}")
        return 0
    verdicts = {}
    with tempfile.TemporaryDirectory(prefix="gpuconv-mutants-") as scratch:
        tree = Path(scratch)
        scratch_copy(tree)
        for m in mutants:
            start = time.perf_counter()
            verdict, detail = check(m, tree)
            verdicts[m.name] = verdict
            print(f"{verdict:8s} {m.name:44s} {time.perf_counter() - start:5.0f} s  {detail}",
                  flush=True)
    missed = [name for name, v in verdicts.items() if v != "caught"]
    print(f"{len(verdicts) - len(missed)} of {len(verdicts)} caught"
          + (f"; not caught: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
