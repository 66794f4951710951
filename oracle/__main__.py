"""``python -m oracle generate`` / ``python -m oracle check`` (run from the repository root)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from oracle.golden import GOLDEN_DIR


def _size(paths) -> int:
    return sum(Path(p).stat().st_size for p in paths)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oracle",
                                     description="PyTorch golden files for gpuconv's tests.")
    parser.add_argument("command", choices=("generate", "check"),
                        help="generate: rewrite the golden files (deleting stale ones); "
                             "check: recompute in memory and compare with the files")
    parser.add_argument("--dir", default=str(GOLDEN_DIR), help="golden directory "
                        "(default: %(default)s)")
    args = parser.parse_args(argv)
    from oracle import generate  # imports torch

    if args.command == "generate":
        written, deleted = generate.write_all(args.dir)
        for p in deleted:
            print(f"deleted stale {p}")
        print(f"wrote {len(written)} golden files to {args.dir} "
              f"({_size(written) / 1024:.0f} KiB)")
        return 0
    problems, notes = generate.check(args.dir)
    for line in notes:
        print(f"note: {line}")
    if problems:
        print(f"{len(problems)} difference(s) between the golden files and PyTorch now:")
        for line in problems:
            print(f"  {line}")
        print("run `python -m oracle generate` to rewrite them (and review the diff)")
        return 1
    print("golden files are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
