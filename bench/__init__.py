"""Benchmarks against PyTorch, the only place besides oracle/ and tests/ that imports torch:
the CPU harness (cpu.py), the training-epoch bench (train_epoch.py), the cuDNN comparison
behind ``gpuconv bench`` (gpu.py), their PyTorch side (torch_ops.py), and the GPU
acceptance script (gpu_acceptance.sh). The torch-free parts (layer suites, timers,
statistics, tables) are in gpuconv.benchmark."""
