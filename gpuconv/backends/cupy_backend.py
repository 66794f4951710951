"""CuPy backend: every 2-D kernel of ``gpuconv.backends.KERNELS`` as raw CUDA C++ kernels
(``kernels/conv.cu``, ``kernels/pool.cu``), compiled once per process into one
``cupy.RawModule`` and launched on the caller's current device and stream.

Checked against the NumPy backend: on the CPU through the CUDA C host emulation
(tests/test_cupy_host.py runs these very functions with a NumPy executor), on a GPU through
the golden suite (tests/test_golden.py).

What runs where is planned in pure Python (``gpu_plan``): this module only allocates the
outputs and workspaces a plan names, packs each launch's parameter struct and launches it.
Tile choice follows ``gpu_plan.choose_gemm`` unless autotuning is on (``set_autotune(True)``
or ``GPUCONV_AUTOTUNE=1``, see ``autotune``).
"""

from __future__ import annotations

import numpy as np

from gpuconv.backends import autotune, cuda_source, gpu_plan as plan
from gpuconv.backends.autotune import set_autotune  # noqa: F401  (public switch)
from gpuconv.shapes import ConvSpec, PoolSpec

PRECISIONS = plan.PRECISIONS  # "tf32", "tf32x3": mma.sync tensor cores, float32 accumulation


class CupyExecutor:
    """Runs plans with CuPy: one RawModule per process (CuPy loads it once per device)."""

    def __init__(self):
        import cupy
        self.xp = cupy
        self._module = None
        self._options = ()

    def _get_module(self):
        if self._module is None:
            code, self._options, names = cuda_source.module_source()
            self._module = self.xp.RawModule(code=code, options=self._options,
                                             name_expressions=names)
        return self._module

    @property
    def tensor_cores(self) -> bool:
        """mma.sync TF32 needs compute capability 8.0 (Ampere) or newer."""
        return int(self.xp.cuda.Device().compute_capability) >= 80

    def pointer(self, array) -> int:
        return array.data.ptr

    def launch(self, kernel: str, grid, block, params: np.ndarray) -> None:
        # a size-1 NumPy array is passed by value: the ConvParams / PoolParams struct
        self._get_module().get_function(kernel)(tuple(grid), tuple(block), (params,))

    def sm_count(self) -> int:
        return self.xp.cuda.Device().attributes["MultiProcessorCount"]

    def device_name(self) -> str:
        props = self.xp.cuda.runtime.getDeviceProperties(self.xp.cuda.Device().id)
        return props["name"].decode()

    def time_ms(self, run) -> float:
        """Mean time of ``run`` over a few repetitions after a warm-up, by CUDA events."""
        run()
        start, end = self.xp.cuda.Event(), self.xp.cuda.Event()
        start.record()
        for _ in range(3):
            run()
        end.record()
        end.synchronize()
        return self.xp.cuda.get_elapsed_time(start, end) / 3


_EXECUTOR = None


def _executor():
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = CupyExecutor()
    return _EXECUTOR


def _strides(array) -> tuple[int, ...]:
    return tuple(s // array.itemsize for s in array.strides)


def _run(p: plan.Plan, buffers: dict) -> None:
    ex = _executor()
    buffers = dict(buffers)
    for name, (count, dtype) in p.workspaces.items():
        buffers[name] = ex.xp.empty(count, dtype=dtype)
    for launch in p.launches:
        params = plan.pack(launch.kernel, launch.params, lambda name: ex.pointer(buffers[name]))
        ex.launch(launch.kernel, launch.grid, launch.block, params)


def _precision(precision: str, dtype: str) -> str:
    """Tensor-core precisions apply to float32 only (PyTorch's allow_tf32 rule), on sm_80+."""
    if precision == "ieee" or dtype != "float32":
        return "ieee"
    if not _executor().tensor_cores:
        raise RuntimeError(f"precision={precision!r} needs tensor cores with TF32 (compute "
                           f"capability 8.0 or newer); use precision='ieee'")
    return precision


def _conv(op: str, make_plan, buffers: dict, dtype: str, precision: str, rows_cols) -> None:
    """Run a conv plan; with autotuning on, first time each candidate tile for this shape."""
    tile = None
    if autotune.enabled():
        ex = _executor()
        key = autotune.make_key(ex.device_name(), op, rows_cols, f"{dtype}-{precision}")
        tile = autotune.best_tile(key, plan.TILES_FOR[(dtype, precision)],
                                  lambda t: ex.time_ms(lambda: _run(make_plan(t), buffers)))
    _run(make_plan(tile), buffers)


# --------------------------------------------------------------------------- convolution
def conv2d(x, weight, bias, spec: ConvSpec, precision: str = "ieee"):
    """y (N, O, H_out, W_out) = x (N, C, H, W) correlated with weight (O, C/G, kH, kW) + bias."""
    xp, dtype = _executor().xp, str(x.dtype)
    precision = _precision(precision, dtype)
    o = weight.shape[0]
    ho, wo = spec.output_shape(x.shape[2:], weight.shape[2:])
    out = xp.empty((x.shape[0], o, ho, wo), dtype=x.dtype)
    bias = None if bias is None else xp.ascontiguousarray(bias)
    sm_count = _executor().sm_count()

    def make(tile):
        return plan.conv_forward_plan(x.shape, _strides(x), weight.shape, _strides(weight), spec,
                                      dtype, bias is not None, precision, tile, sm_count)
    _conv("conv2d", make, {"x": x, "weight": weight, "bias": bias, "out": out}, dtype, precision,
          (x.shape, weight.shape, spec))
    return out


def conv2d_grad_input(grad_out, weight, spec: ConvSpec, input_hw, bias=None,
                      precision: str = "ieee"):
    """dL/dx (N, C, H, W), also conv_transpose2d's forward (with its ``bias`` (C,))."""
    xp, dtype = _executor().xp, str(grad_out.dtype)
    precision = _precision(precision, dtype)
    c = weight.shape[1] * spec.groups
    out = xp.empty((grad_out.shape[0], c) + tuple(input_hw), dtype=grad_out.dtype)
    bias = None if bias is None else xp.ascontiguousarray(bias)
    sm_count = _executor().sm_count()

    def make(tile):
        return plan.conv_grad_input_plan(grad_out.shape, _strides(grad_out), weight.shape,
                                         _strides(weight), spec, tuple(input_hw), dtype,
                                         bias is not None, precision, tile, sm_count)
    _conv("conv2d_grad_input", make, {"grad_out": grad_out, "weight": weight, "bias": bias,
                                      "out": out}, dtype, precision,
          (grad_out.shape, weight.shape, spec, tuple(input_hw)))
    return out


def conv2d_grad_weight(grad_out, x, spec: ConvSpec, kernel_hw, precision: str = "ieee"):
    """dL/dW (O, C/G, kH, kW) from grad_out (N, O, H_out, W_out) and x (N, C, H, W)."""
    xp, dtype = _executor().xp, str(x.dtype)
    precision = _precision(precision, dtype)
    o = grad_out.shape[1]
    out = xp.empty((o, x.shape[1] // spec.groups) + tuple(kernel_hw), dtype=x.dtype)
    sm_count = _executor().sm_count()

    def make(tile):
        return plan.conv_grad_weight_plan(grad_out.shape, _strides(grad_out), x.shape, _strides(x),
                                          spec, tuple(kernel_hw), dtype, precision, tile, sm_count)
    _conv("conv2d_grad_weight", make, {"grad_out": grad_out, "x": x, "out": out}, dtype,
          precision, (grad_out.shape, x.shape, spec, tuple(kernel_hw)))
    return out


def conv2d_grad_bias(grad_out):
    """dL/db (O,) = sum of grad_out over batch and pixels."""
    out = _executor().xp.empty((grad_out.shape[1],), dtype=grad_out.dtype)
    _run(plan.conv_grad_bias_plan(grad_out.shape, _strides(grad_out), str(grad_out.dtype)),
         {"grad_out": grad_out, "out": out})
    return out


# --------------------------------------------------------------------------- pooling
def _pool_out(x, out_hw):
    return _executor().xp.empty(tuple(x.shape[:2]) + tuple(out_hw), dtype=x.dtype)


def _max_pool(x, spec: PoolSpec | None, out_hw, return_indices: bool):
    out = _pool_out(x, out_hw)
    indices = _executor().xp.empty(out.shape, dtype=np.int64) if return_indices else None
    _run(plan.max_pool_plan(x.shape, _strides(x), spec, str(x.dtype), return_indices, out_hw),
         {"x": x, "out": out, "indices": indices})
    return out, indices


def max_pool2d(x, spec: PoolSpec, return_indices: bool = True):
    """y (N, C, H_out, W_out) and, if asked, int64 flat indices ``h*W + w`` of each maximum."""
    return _max_pool(x, spec, spec.output_shape(x.shape[2:]), return_indices)


def adaptive_max_pool2d(x, out_hw):
    return _max_pool(x, None, out_hw, True)


def max_pool2d_backward(grad_out, indices, input_hw, spec: PoolSpec | None):
    """dL/dx: each input element gathers the gradients of the outputs whose window may hold it
    (closed form from ``spec``; adaptive windows when None) and whose index names it."""
    xp = _executor().xp
    out = xp.empty(tuple(grad_out.shape[:2]) + tuple(input_hw), dtype=grad_out.dtype)
    _run(plan.max_pool_backward_plan(grad_out.shape, _strides(grad_out), tuple(input_hw), spec,
                                     str(grad_out.dtype)),
         {"grad_out": grad_out, "indices": xp.ascontiguousarray(indices), "out": out})
    return out


def avg_pool2d(x, spec: PoolSpec, count_include_pad: bool, divisor_override):
    out = _pool_out(x, spec.output_shape(x.shape[2:]))
    _run(plan.avg_pool_plan(x.shape, _strides(x), spec, str(x.dtype), count_include_pad,
                            divisor_override), {"x": x, "out": out})
    return out


def adaptive_avg_pool2d(x, out_hw):
    out = _pool_out(x, out_hw)
    _run(plan.avg_pool_plan(x.shape, _strides(x), None, str(x.dtype), out_hw=out_hw),
         {"x": x, "out": out})
    return out


def _avg_backward(grad_out, spec: PoolSpec | None, input_hw, count_include_pad, divisor_override):
    out = _executor().xp.empty(tuple(grad_out.shape[:2]) + tuple(input_hw), dtype=grad_out.dtype)
    _run(plan.avg_pool_backward_plan(grad_out.shape, _strides(grad_out), spec, tuple(input_hw),
                                     str(grad_out.dtype), count_include_pad, divisor_override),
         {"grad_out": grad_out, "out": out})
    return out


def avg_pool2d_backward(grad_out, spec: PoolSpec, input_hw, count_include_pad: bool,
                        divisor_override):
    return _avg_backward(grad_out, spec, input_hw, count_include_pad, divisor_override)


def adaptive_avg_pool2d_backward(grad_out, input_hw):
    return _avg_backward(grad_out, None, input_hw, True, None)


def lp_pool2d(x, spec: PoolSpec, norm_type: float):
    """PyTorch's definition: (window size * avg_pool(x ** p)) ** (1/p), in one kernel."""
    out = _pool_out(x, spec.output_shape(x.shape[2:]))
    _run(plan.avg_pool_plan(x.shape, _strides(x), spec, str(x.dtype), norm=norm_type),
         {"x": x, "out": out})
    return out


def lp_pool2d_backward(grad_out, x, spec: PoolSpec, norm_type: float):
    out = _executor().xp.empty(x.shape, dtype=x.dtype)
    _run(plan.lp_pool_backward_plan(grad_out.shape, _strides(grad_out), x.shape, _strides(x), spec,
                                    str(x.dtype), norm_type),
         {"grad_out": grad_out, "x": x, "out": out})
    return out
