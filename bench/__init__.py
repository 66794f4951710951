"""Benchmarks: the layer suite (layers.py), the PyTorch side (torch_ops.py) and the CPU
harness (cpu.py)."""
