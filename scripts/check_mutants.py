"""Plant each bug of the mutant catalogue (tests/mutants.py) and check that its tests fail.

A test that cannot fail proves nothing. Each catalogue entry is a plausible bug (a bound off by
one, a dropped mask term, swapped strides, a flipped NaN rule, a missing barrier), the text it
replaces in one file, and the tests that must catch it. The script copies the tree once into
a scratch folder and runs every named test there unmutated (they must all pass, or nothing is
judged); then, for each entry, it writes the mutated file, runs the entry's tests (stopping
at the first failure) and restores the file. An entry is

    caught    a test failed (or its sanitizer reported the fault: AddressSanitizer a read or
              write past a buffer for an "asan" entry, ThreadSanitizer a race for a "tsan" one),
    SURVIVED  the tests passed: the suite no longer sees that bug,
    STALE     its text no longer occurs exactly once in its file (the code moved on: the entry
              needs rewriting),
    BROKEN    pytest could not run the tests (an error in setup or collection, a crash),
    TIMEOUT   the tests ran past TIMEOUT_S (a mutant that loops forever).

Usage: .venv/bin/python scripts/check_mutants.py [--only NAME,...] [--list] [--catalogue FILE]
(`make check-mutants`). Exit status 0 when every entry is caught. The working tree is never
touched: the scratch copy holds the tracked files and the untracked ones git does not ignore.
Sanitizer entries run their tests as the Makefile's targets do, for faults that change no
value the tests compare: "asan" as `make check-memory` (a read past a buffer into a tile
column that is never stored), "tsan" as `make check-races` (a missing __syncthreads, in the
emulation's one order of threads).
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
TIMEOUT_S = 900


def _preload(library: str) -> str:
    return subprocess.run(["g++", f"-print-file-name={library}"], capture_output=True, text=True,
                          check=True).stdout.strip()


# sanitizer: (the environment of its Makefile target, the report it stops the run with: not
# its start-up failures)
SANITIZERS = {
    "asan": (lambda: {"GPUCONV_HOST_ASAN": "1", "ASAN_OPTIONS": "detect_leaks=0",
                      "LD_PRELOAD": _preload("libasan.so")},
             re.compile(r"ERROR: AddressSanitizer: [\w-]+|runtime error: [^\n]*misaligned")),
    "tsan": (lambda: {"GPUCONV_HOST_TSAN": "1",
                      "TSAN_OPTIONS": "halt_on_error=1 report_signal_unsafe=0",
                      "LD_PRELOAD": _preload("libtsan.so")},
             re.compile(r"WARNING: ThreadSanitizer: data race")),
}
# the caller's sanitizer settings, which would otherwise apply to every entry
SANITIZER_VARIABLES = ("GPUCONV_HOST_ASAN", "GPUCONV_HOST_TSAN", "ASAN_OPTIONS", "TSAN_OPTIONS",
                       "LD_PRELOAD")


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
    # gpuconv.kernels installs from kernels/ (pyproject's package-dir): without this link the
    # editable install would map it to the working tree's kernels/, not the mutated copy
    (destination / "gpuconv" / "kernels").symlink_to(Path("..") / "kernels")


def pytest(tree: Path, tests, sanitizer, stop_at_first: bool) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if k not in SANITIZER_VARIABLES}
    env.update(PYTHONPATH=str(tree), XDG_CACHE_HOME=str(tree / ".cache"),
               NUMBA_CACHE_DIR=str(tree / ".cache" / "numba"), PYTHONDONTWRITEBYTECODE="1")
    if sanitizer:
        env.update(SANITIZERS[sanitizer][0]())
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p",
               "no:cacheprovider", "--capture=sys", *(["-x"] if stop_at_first else []), *tests]
    result = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True,
                            check=False, timeout=TIMEOUT_S)
    return result.returncode, result.stdout + result.stderr


def judge(returncode: int, output: str, sanitizer) -> tuple[str, str]:
    failed = re.search(r"^FAILED (.+?)(?: - |$)", output, re.MULTILINE)
    report = SANITIZERS[sanitizer][1].search(output) if sanitizer else None
    if returncode == 1 and failed and not re.search(r"^ERROR ", output, re.MULTILINE):
        return "caught", failed[1]
    if report:
        return "caught", report[0]
    if returncode == 0:
        return "SURVIVED", (output.strip().splitlines() or ["no output"])[-1]
    return "BROKEN", f"pytest exit status {returncode}: {output.strip()[-300:]}"


def check(mutant, tree: Path) -> tuple[str, str]:
    target = tree / mutant.path
    original = target.read_text(encoding="utf-8")
    if original.count(mutant.old) != 1:
        return "STALE", f"{original.count(mutant.old)} occurrences of its text in {mutant.path}"
    target.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
    try:
        return judge(*pytest(tree, mutant.tests, mutant.sanitizer, True), mutant.sanitizer)
    except subprocess.TimeoutExpired:
        return "TIMEOUT", f"past {TIMEOUT_S} s"
    finally:
        target.write_text(original, encoding="utf-8")


def clean_run(mutants, tree: Path) -> bool:
    """Every named test passes on the unmutated copy (else a failure would prove nothing)."""
    ok = True
    for sanitizer in sorted({m.sanitizer for m in mutants}, key=str):
        tests = sorted({t for m in mutants if m.sanitizer == sanitizer for t in m.tests})
        returncode, output = pytest(tree, tests, sanitizer, False)
        summary = output.strip().splitlines()[-1] if output.strip() else "no output"
        print(f"clean run ({sanitizer or 'no sanitizer'}): {summary}", flush=True)
        ok &= returncode == 0
    return ok


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
    width = max(len(m.name) for m in mutants)
    if args.list:
        for m in mutants:
            print(f"{m.name:{width}s}  {m.path:34s} {m.fault}")
        return 0
    verdicts = {}
    with tempfile.TemporaryDirectory(prefix="gpuconv-mutants-") as scratch:
        tree = Path(scratch)
        scratch_copy(tree)
        if not clean_run(mutants, tree):
            print("the named tests fail on the unmutated tree: nothing judged")
            return 1
        for m in mutants:
            start = time.perf_counter()
            verdict, detail = check(m, tree)
            verdicts[m.name] = verdict
            print(f"{verdict:8s} {m.name:{width}s} {time.perf_counter() - start:4.0f} s  {detail}",
                  flush=True)
    missed = [name for name, v in verdicts.items() if v != "caught"]
    print(f"{len(verdicts) - len(missed)} of {len(verdicts)} caught"
          + (f"; not caught: {', '.join(missed)}" if missed else ""))
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
