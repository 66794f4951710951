"""Make gpuconv/datasets/fashion-mnist-subset/: the small Fashion-MNIST subset that
``gpuconv.data.load_dataset`` falls back to when the full dataset is not installed.

It draws, with a fixed seed, the same number of images of every class from
Debian's dataset-fashion-mnist (500 a class from the training set, 100 a class
from the test set), keeps them in their original order, and writes them as
reproducible IDX .gz files with classes.txt, README.md and LICENSE beside them.
Run again, it writes the same bytes:

    .venv/bin/python scripts/make_bundled_subset.py [--source DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
from pathlib import Path

import numpy as np

from gpuconv.data import (DEBIAN_FASHION_MNIST_DIR, FASHION_MNIST_CLASSES, STANDARD_FILES, Dataset,
                          load_dataset, write_idx)
from gpuconv.datasets import FASHION_MNIST_SUBSET_DIR

SEED = 2017
TRAIN_PER_CLASS = 500
TEST_PER_CLASS = 100

LICENSE = """\
Fashion-MNIST: The MIT License (MIT) Copyright © [2017] Zalando SE, https://tech.zalando.com
(https://github.com/zalandoresearch/fashion-mnist)

Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.
"""

README = """\
# Fashion-MNIST subset bundled with gpuconv

A stratified sample of [Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist),
© 2017 Zalando SE, released under the MIT licence (see LICENSE in this directory).
gpuconv trains on it only when the full dataset is not installed (Debian's
`dataset-fashion-mnist`, or a directory given with `--data`), so that
`gpuconv train` works anywhere; accuracy on it is not comparable with results on
the full dataset.

- {n_train} training images ({train_per_class} of each of the 10 classes) drawn
  from the 60000 training images, and {n_test} test images ({test_per_class} a class)
  from the 10000 test images;
- drawn without replacement by `numpy.random.default_rng({seed})`, class by class
  (training set first, class 0 first), and kept in their original order;
- stored as IDX files (the original format) compressed with gzip; `classes.txt`
  lists the class names in label order.

Made by `scripts/make_bundled_subset.py` from the files of Debian's
`dataset-fashion-mnist`; SHA-256 of their decompressed contents:

{checksums}
"""


def stratified_indices(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """``per_class`` indices of every label value, drawn without replacement, sorted."""
    chosen = [rng.choice(np.flatnonzero(labels == label), per_class, replace=False)
              for label in range(len(FASHION_MNIST_CLASSES))]
    return np.sort(np.concatenate(chosen))


def subset_arrays(dataset: Dataset) -> dict[str, np.ndarray]:
    """The subset's four arrays, keyed like ``STANDARD_FILES``; labels as uint8 as in IDX."""
    rng = np.random.default_rng(SEED)
    train = stratified_indices(dataset.y_train, TRAIN_PER_CLASS, rng)
    test = stratified_indices(dataset.y_test, TEST_PER_CLASS, rng)
    return {"x_train": dataset.x_train[train], "y_train": dataset.y_train[train].astype(np.uint8),
            "x_test": dataset.x_test[test], "y_test": dataset.y_test[test].astype(np.uint8)}


def write_subset(arrays: dict[str, np.ndarray], source_dir: Path, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for key, stem in STANDARD_FILES.items():
        write_idx(out_dir / f"{stem}.gz", arrays[key])
    (out_dir / "classes.txt").write_text("\n".join(FASHION_MNIST_CLASSES) + "\n", encoding="utf-8")
    (out_dir / "LICENSE").write_text(LICENSE, encoding="utf-8")
    readme = README.format(n_train=len(arrays["y_train"]), n_test=len(arrays["y_test"]),
                           train_per_class=TRAIN_PER_CLASS, test_per_class=TEST_PER_CLASS,
                           seed=SEED, checksums=_checksums(source_dir))
    (out_dir / "README.md").write_text(readme, encoding="utf-8")


def _checksums(source_dir: Path) -> str:
    lines = []
    for path in sorted(source_dir.glob("*-ubyte*")):
        content = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines.append(f"    {hashlib.sha256(content).hexdigest()}  {path.name}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEBIAN_FASHION_MNIST_DIR,
                        help="directory of the full Fashion-MNIST IDX files (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=FASHION_MNIST_SUBSET_DIR,
                        help="where to write the subset (default: %(default)s)")
    args = parser.parse_args()
    dataset = load_dataset(args.source)
    if dataset.class_names != FASHION_MNIST_CLASSES:
        parser.error(f"{args.source} does not hold Fashion-MNIST ({dataset.source})")
    write_subset(subset_arrays(dataset), args.source, args.out)
    total = sum(path.stat().st_size for path in args.out.iterdir())
    print(f"wrote {args.out}: {total} bytes")


if __name__ == "__main__":
    main()
