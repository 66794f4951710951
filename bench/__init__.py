"""Benchmark scripts: the CPU harness (cpu.py) and the GPU acceptance script
(gpu_acceptance.sh). The layer suites, the PyTorch side and the GPU bench live in
gpuconv.benchmark, so that the installed ``gpuconv bench`` can use them."""
