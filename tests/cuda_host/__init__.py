"""CPU emulation of the CuPy backend's CUDA C kernels (see harness.py)."""
