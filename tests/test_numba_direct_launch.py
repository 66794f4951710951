"""The numba backend's direct launches hand cuda.core's ``launch`` exactly what Numba's own
launch would: for every kernel of ``numba_backend.kernel_table`` (float32 and float64, the
GPU table), arrays of random shapes and addresses (strided ones where the signature takes
any layout) and random scalars, the argument list of ``kernel_arguments`` with the arrays'
addresses written in, the launch configuration and the kernel ``compiled_function`` fetches
equal what Numba's ``_Kernel.launch`` passes to ``launch`` (bench/host.py's
``numba_launch_recorded``), element by element: the same Python ints, the same ctypes types
and values.

Numba's real launch path needs ``numba.cuda`` without the simulator, and tests/conftest.py
turns the simulator on for the test process: the comparison runs as this file's script in
a subprocess with the simulator off. It needs no GPU: the kernels are rebuilt around a
stand-in code library (nothing compiles), the arrays are Numba device arrays over stand-in
device memory. Where the launch sits in a call (addresses written per call, views resolved
to their buffers, constants) is tested in tests/test_host_overhead.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compare_every_kernel(seed: int = 0) -> dict:
    """Compare the two launches for every kernel of both tables; returns a summary (kernels and
    arguments compared), or raises AssertionError naming the kernel and the first argument
    that differs."""
    import types as pytypes

    import numpy as np
    from numba import types

    from bench import host
    from gpuconv.backends import numba_backend

    rng = np.random.default_rng(seed)
    function, stream = object(), object()  # the loaded kernel and the stream both must pass

    def device_array(kind):
        shape = tuple(int(n) for n in rng.integers(1, 6, kind.ndim))
        dtype = np.dtype(str(kind.dtype))
        strides = [dtype.itemsize] * kind.ndim
        for axis in range(kind.ndim - 2, -1, -1):
            strides[axis] = strides[axis + 1] * shape[axis + 1]
        if kind.layout == "A":  # any layout: a view with a reversed, doubled-up axis
            strides[0] = -2 * strides[0]
        return host.numba_device_array(shape, strides, dtype, int(rng.integers(1, 1 << 40)) * 256)

    def scalars(kind):
        return tuple(int(rng.integers(-2**40, 2**40)) if t == types.int64 else float(rng.normal())
                     for t in kind)

    compared = arguments_compared = 0
    _, launch_config, _ = numba_backend._cuda_core()
    with host.numba_launch_recorded(function) as (numba_kernel, passed):
        for dtype in (np.float32, np.float64):
            for name, entry in numba_backend.kernel_table(dtype).items():
                kernel = numba_kernel(name, entry)
                values = [device_array(k) if isinstance(k, types.Array) else scalars(k)
                          for k in entry.signature]
                grid, block = tuple(int(n) for n in rng.integers(1, 9, 3)), (128, 1, 1)
                del passed[:]
                kernel.launch(values, grid, block, stream, 0)
                ((numba_stream, numba_config, numba_function, numba_arguments),) = passed

                arrays = [v for v in values if not isinstance(v, tuple)]
                ours, pointer_at = numba_backend.kernel_arguments(
                    entry.signature, [v if isinstance(v, tuple) else (v.shape, v.strides)
                                      for v in values])
                for at, array in zip(pointer_at, arrays, strict=True):
                    ours[at] = numba_backend.numba_pointer(array)
                config = launch_config(grid=grid, block=block, shmem_size=0)
                fetched = numba_backend.compiled_function(
                    name, numba_backend.Entry(pytypes.SimpleNamespace(compile=lambda sig, k=kernel: k),
                                              entry.signature))

                assert fetched is numba_function is function and numba_stream is stream, name
                assert repr(config) == repr(numba_config), (name, config, numba_config)
                assert len(ours) == len(numba_arguments), (name, len(ours), len(numba_arguments))
                for i, (a, b) in enumerate(zip(ours, numba_arguments)):
                    same = (type(a) is type(b) and
                            (a == b if isinstance(a, int) else a.value == b.value))
                    assert same, f"{name}: argument {i} is {a!r}, Numba passes {b!r}"
                compared += 1
                arguments_compared += len(ours)
    conversion = host.numba_launch_conversion_us(number=3)  # bench/host.py's figure runs
    return {"kernels": compared, "arguments": arguments_compared, "conversion": conversion}


def test_direct_launch_arguments_equal_numbas_own():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="0")
    run = subprocess.run([sys.executable, __file__], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    from gpuconv.backends import numba_backend
    kernels = sum(len(numba_backend.kernel_table(dtype)) for dtype in ("float32", "float64"))
    assert summary["kernels"] == kernels and summary["arguments"] > 30 * kernels, summary
    assert summary["conversion"]["kernel"].startswith("conv_gemm"), summary


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # bench
    print(json.dumps(compare_every_kernel()))
