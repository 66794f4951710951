"""Data shipped inside the package: a small stratified subset of Fashion-MNIST
(``fashion-mnist-subset/``, made by ``scripts/make_bundled_subset.py``) so that
``gpuconv train`` works where the full dataset is not installed.
``gpuconv.data.load_dataset`` reads it; see its README for the licence."""

from pathlib import Path

FASHION_MNIST_SUBSET_DIR = Path(__file__).parent / "fashion-mnist-subset"
