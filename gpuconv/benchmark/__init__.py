"""Benchmarks of gpuconv's kernels: the layer suites (suite.py), timers and statistics
(measure.py), the PyTorch side (torch_ops.py), and ``gpuconv bench`` on the GPU (gpu.py,
results.py). ``import gpuconv`` does not import this package; torch is imported only by
torch_ops.py, when a bench runs."""
