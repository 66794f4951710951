"""Benchmarks against PyTorch run from the source checkout: the CPU harness (cpu.py), the
training-epoch bench (train_epoch.py) and the GPU acceptance script (gpu_acceptance.sh).
The layer suites, timers, tables, the cuDNN comparison behind ``gpuconv bench`` and the
PyTorch side they share (torch_ops.py) are in gpuconv.benchmark."""
