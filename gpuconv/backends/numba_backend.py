"""Numba CUDA backend: every 2-D kernel of ``gpuconv.backends.KERNELS`` on the GPU, in the
Numba kernels of ``gpuconv.kernels``.

Checked against the PyTorch goldens and the NumPy backend (tests/test_golden.py,
tests/test_numba_random.py) through Numba's CUDA simulator, and compiled for sm_90
(tests/test_numba_sm90.py) from ``kernel_table``, the one list of kernels and signatures.

Arrays: Numba device arrays in, Numba device arrays out (asynchronous, default stream, or
the stream of ``on_stream``); CuPy arrays in, CuPy arrays out (zero-copy through
``__cuda_array_interface__``, on CuPy's current stream, no synchronisation); NumPy arrays
are copied to the device and back.

Every kernel is the twin of a CuPy backend kernel (same name, same struct fields): conv_gemm,
conv_splitk_reduce, conv_grad_bias, conv_pad_adjoint (kernels/conv_numba.py), conv_depthwise,
conv_depthwise_grad_weight (kernels/depthwise_numba.py) and the pooling kernels
(kernels/pool_numba.py), launched as ``gpu_plan``'s plans say (``numba_conv_*_plan``, and
``numba_plan`` of the pooling plans): this module only allocates, packs the struct fields and
launches. No kernel uses atomics: every result repeats bit for bit.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numba
from numba import config, cuda, types

from gpuconv.backends import array_library, foreign_device, gpu_plan
from gpuconv.kernels import conv_numba as ck
from gpuconv.kernels import depthwise_numba as dk
from gpuconv.kernels import pool_numba as pk
from gpuconv.shapes import ConvSpec, PoolSpec

NAME = "numba"
PRECISIONS = ("ieee",)  # conv arithmetic: strict IEEE float maths (FFMA), no tensor cores
_STREAM = contextvars.ContextVar("gpuconv_numba_stream", default=None)  # set by on_stream


@dataclass(frozen=True)
class PoolLaunch:
    """Pooling launches: ``threads`` per block, grid-striding over at most ``max_blocks``."""

    threads: int
    max_blocks: int


GPU = PoolLaunch(threads=256, max_blocks=1 << 16)
# The simulator runs one OS thread per CUDA thread and pays for every syncthreads: few,
# narrow blocks (the conv plans do the same through gpu_plan's ``simulator`` flag).
SIMULATOR = PoolLaunch(threads=16, max_blocks=2)
SIMULATED = bool(config.ENABLE_CUDASIM)
launch = SIMULATOR if SIMULATED else GPU


# --------------------------------------------------------------------------- kernels and signatures
class Entry(NamedTuple):
    """A kernel, its argument types, and the struct fields its arguments are (None: a Numba
    helper or a kernel outside the shared vocabulary)."""

    kernel: object
    signature: tuple
    fields: list | None = None


@functools.cache
def kernel_table(dtype, simulator: bool = False) -> dict[str, Entry]:
    """name -> Entry of every kernel this backend launches for ``dtype`` (``simulator``: the
    simulator's tiles and blocks): the runtime launches from it, the sm_90 test compiles it,
    the vocabulary test compares it with the CUDA kernels."""
    dtype = np.dtype(dtype)
    real = types.float32 if dtype == np.float32 else types.float64

    def array(ndim, kind=real, layout="C"):
        return types.Array(kind, ndim, layout)

    conv_fields = gpu_plan.CONV_FIELDS
    conv_args = (array(1),) * len(gpu_plan.pointer_names(conv_fields)) + (
        types.UniTuple(types.int64, len(gpu_plan.scalars(conv_fields, {}))),)
    table = {gpu_plan.numba_gemm_kernel(t, wgrad, wide): Entry(ck.conv_gemm(dtype, t, wgrad, wide),
                                                               conv_args, conv_fields)
             for t, wgrad, wide in gpu_plan.numba_gemm_instances(dtype.name, simulator)}
    block = gpu_plan.NUMBA_SIMULATOR_BLOCK if simulator else gpu_plan.POOL_BLOCK
    for kernels in (ck.conv_kernels(dtype, block), dk.kernels(dtype, block)):
        table.update({name: Entry(kernel, conv_args, conv_fields) for name, kernel in kernels.items()})
    pool_fields = gpu_plan.POOL_FIELDS
    pool_args = tuple(array(1, types.int64 if name in gpu_plan.INDEX_POINTERS else real)
                      for name in gpu_plan.pointer_names(pool_fields)) + (
        numba.typeof(gpu_plan.scalars(pool_fields, {})),)
    table.update({name: Entry(kernel, pool_args, pool_fields)
                  for name, kernel in pk.kernels(dtype).items()})
    a4, i4 = array(4), array(4, types.int64)
    table.update(
        copy_strided=Entry(ck.copy_strided, (array(4, layout="A"), a4)),
        copy_strided_indices=Entry(ck.copy_strided, (array(4, types.int64, "A"), i4)),
    )
    return table


CHECK_SIGNATURES = False  # tests set it: every launch must match its kernel_table entry


# --------------------------------------------------------------------------- one call's arrays
_STREAMS: dict = {}  # CuPy stream pointer -> its Numba stream


def _external_stream(ptr: int):
    """One Numba stream object per CuPy stream, so Numba's configured kernels are reused."""
    if ptr not in _STREAMS:
        _STREAMS[ptr] = cuda.external_stream(ptr)
    return _STREAMS[ptr]


class _Call:
    """The arrays of one backend call: inputs as C-contiguous Numba device arrays, outputs
    allocated by the caller's array library, on its stream, and handed back in it."""

    def __init__(self, *arrays):
        first = next(a for a in arrays if a is not None)
        self.kind = array_library(first)  # numpy, cupy or numba
        self.dtype = np.dtype(first.dtype)
        self._owners = {}  # id of a device view -> the CuPy array that owns its memory
        if self.kind == "cupy":
            import cupy
            self._cupy = cupy
            self.stream = _external_stream(cupy.cuda.get_current_stream().ptr)
        elif self.kind == "numba":
            self.stream = 0  # the default stream as launches take it: no Stream object per call
        else:
            self.stream = _STREAM.get() or cuda.default_stream()

    def device(self, array):
        if array is None:
            return None
        if self.kind == "numpy":
            return cuda.to_device(np.ascontiguousarray(array), stream=self.stream)
        if self.kind == "cupy":  # sync=False: our launches queue on the same stream
            return cuda.as_cuda_array(self._cupy.ascontiguousarray(array), sync=False)
        return array if array.is_c_contiguous() else self.copy(array)

    def copy(self, array):
        """A C-contiguous copy of a 4-D Numba device array of any strides."""
        if array.ndim != 4:
            raise ValueError(f"a non-contiguous Numba device array must be 4-D here, got "
                             f"shape {tuple(array.shape)}; copy it to a contiguous one")
        copy = self.empty(array.shape, array.dtype)
        name = "copy_strided_indices" if array.dtype == np.int64 else "copy_strided"
        self.run(name, self._grid(copy.size), launch.threads, array, copy)
        return copy

    def empty(self, shape, dtype=None):
        dtype = self.dtype if dtype is None else dtype
        if self.kind == "cupy":
            owner = self._cupy.empty(shape, dtype)
            view = cuda.as_cuda_array(owner, sync=False)
            self._owners[id(view)] = owner
            return view
        return cuda.device_array(shape, dtype, stream=self.stream)

    def result(self, array):
        if self.kind == "cupy":
            return self._owners[id(array)]
        if self.kind == "numpy":
            host = array.copy_to_host(stream=self.stream)
            self.stream.synchronize()
            return host
        return array

    def run(self, name, grid, block, *args):
        """Launch ``name``. Numba memoises ``kernel[grid, block, stream]`` per configuration, so
        the stream must be the same object from call to call (see ``_external_stream``)."""
        kernel, signature, _ = kernel_table(self.dtype, SIMULATED)[name]
        if CHECK_SIGNATURES:
            import numba
            got = tuple(numba.typeof(a) for a in args)
            assert got == signature, f"{name} launched with {got}, kernel_table has {signature}"
        kernel[grid, block, self.stream](*args)

    def run_elementwise(self, name, total, *args):
        self.run(name, self._grid(total), launch.threads, *args)

    def run_plan(self, plan: gpu_plan.Plan, buffers: dict):
        """Launch ``plan``'s kernels: pointer fields name ``buffers`` (or workspaces, allocated
        here) and go in as flat arrays, an empty one for a null pointer; the scalar fields
        go in as one tuple."""
        buffers = dict(buffers)
        for name, (count, dtype) in plan.workspaces.items():
            buffers[name] = self.empty((count,), dtype)
        # empty, C-contiguous (a fresh size-0 array may type as 'A')
        null = self.empty((1,))[1:]
        null_index = self.empty((1,), np.int64)[1:]
        for step in plan.launches:
            if min(step.grid) == 0:
                continue
            fields = kernel_table(self.dtype, SIMULATED)[step.kernel].fields
            arrays = []
            for name in gpu_plan.pointer_names(fields):
                p = step.params.get(name)
                if p is None:
                    arrays.append(null_index if name in gpu_plan.INDEX_POINTERS else null)
                else:
                    arrays.append(buffers[p].reshape(buffers[p].size))
            self.run(step.kernel, step.grid, step.block, *arrays,
                     gpu_plan.scalars(fields, step.params))

    @staticmethod
    def _grid(total):
        return max(1, min(-(-total // launch.threads), launch.max_blocks))


# --------------------------------------------------------------------------- array helpers
def from_foreign(array):
    """Another library's array as one this backend takes, without a copy: a CUDA array as a
    Numba device array (CUDA array interface; outside ``on_stream`` Numba first waits for
    the producer's stream), a host array as a NumPy array (DLPack)."""
    if foreign_device(array) == "cpu":
        return np.from_dlpack(array)
    if not hasattr(array, "__cuda_array_interface__"):
        raise TypeError(f"backend 'numba' reads CUDA arrays through __cuda_array_interface__, "
                        f"which this {array_library(array)} array lacks; use backend='cupy'")
    return cuda.as_cuda_array(array, sync=_STREAM.get() is None)


@contextlib.contextmanager
def on_stream(device: int, stream):
    """Run the launches inside on CUDA device ``device`` and on ``stream``, another library's
    stream object (CUDA stream protocol: ``__cuda_stream__``), PyTorch's current one say."""
    _, handle = stream.__cuda_stream__()
    with cuda.gpus[device]:
        token = _STREAM.set(cuda.external_stream(handle))
        try:
            yield
        finally:
            _STREAM.reset(token)


def flip_kernel(weight):
    """Both kernel axes reversed; a Numba device array as a contiguous copy (Numba copies
    no reversed view to the host), a NumPy or CuPy one as a view."""
    flipped = weight[:, :, ::-1, ::-1]
    return contiguous(flipped) if array_library(weight) == "numba" else flipped


def contiguous(array):
    """A C-contiguous copy of a strided 4-D Numba device array (a reversed view, say; one
    of size-1 axes only counts as contiguous to Numba, yet its negative strides break
    slicing)."""
    call = _Call(array)
    return call.result(call.copy(array))


_ERROR_WORDS: dict = {}  # device id -> its int64 error word (a 1-element device array)


def _error_word():
    """The current device's error word, zero until a kernel flags bad input."""
    device = getattr(cuda.get_current_device(), "id", 0)  # the simulator's device has none
    if device not in _ERROR_WORDS:
        _ERROR_WORDS[device] = cuda.to_device(np.zeros(1, np.int64))
    return _ERROR_WORDS[device]


def take_errors() -> list[int]:
    """The error words kernels set since the last call, each cleared (a copy to the host:
    it waits for the device). Max-pool backward stores its plane size H*W there when an
    index lies outside [0, H*W)."""
    found = []
    for word in _ERROR_WORDS.values():
        value = int(word.copy_to_host()[0])
        if value:
            found.append(value)
            word.copy_to_device(np.zeros(1, np.int64))
    return found


# --------------------------------------------------------------------------- convolution
def conv2d(x, weight, bias, spec: ConvSpec, precision: str = "ieee", relu: bool = False):
    """y (N, O, H_out, W_out) = x (N, C, H, W) correlated with weight (O, C/G, kH, kW) + bias,
    then max(y, 0) if ``relu`` (in conv_gemm's epilogue)."""
    call = _Call(x, weight, bias)
    plan = gpu_plan.numba_conv_forward_plan(x.shape, weight.shape, spec, call.dtype.name,
                                            bias is not None, SIMULATED, relu)
    p = plan.launches[0].params
    y = call.empty((x.shape[0], weight.shape[0], p["out_h"], p["out_w"]))
    call.run_plan(plan, dict(x=call.device(x), weight=call.device(weight),
                             bias=call.device(bias), out=y))
    return call.result(y)


def conv2d_grad_bias(grad_out):
    """dL/db (O,) = sum of grad_out (N, O, H_out, W_out) over batch and pixels."""
    call = _Call(grad_out)
    grad_b = call.empty((grad_out.shape[1],))
    call.run_plan(gpu_plan.numba_conv_grad_bias_plan(grad_out.shape, call.dtype.name, SIMULATED),
                  dict(grad_out=call.device(grad_out), out=grad_b))
    return call.result(grad_b)


def conv2d_grad_weight(grad_out, x, spec: ConvSpec, kernel_hw, precision: str = "ieee"):
    """dL/dW (O, C/G, kH, kW): the correlation of the padded input with grad_out, reduced over
    batch and pixels in the plan's fixed splits, which a second kernel adds in order."""
    call = _Call(grad_out, x)
    plan = gpu_plan.numba_conv_grad_weight_plan(grad_out.shape, x.shape, spec, tuple(kernel_hw),
                                                call.dtype.name, SIMULATED)
    grad_w = call.empty((grad_out.shape[1], x.shape[1] // spec.groups) + tuple(kernel_hw))
    call.run_plan(plan, dict(grad_out=call.device(grad_out), x=call.device(x), out=grad_w))
    return call.result(grad_w)


def conv2d_grad_input(grad_out, weight, spec: ConvSpec, input_hw, bias=None,
                      precision: str = "ieee"):
    """dL/dx (N, C, H, W): the transposed convolution of grad_out (N, O, H_out, W_out) with
    weight (O, C/G, kH, kW), plus ``bias`` (C,) (the forward of ``conv_transpose2d``).
    Zero padding: the GEMM writes dx directly; other modes: it writes the gradient of the
    padded input, and ``conv_pad_adjoint`` gathers it back onto the positions it copies."""
    call = _Call(grad_out, weight, bias)
    plan = gpu_plan.numba_conv_grad_input_plan(grad_out.shape, weight.shape, spec,
                                               tuple(input_hw), call.dtype.name,
                                               bias is not None, SIMULATED)
    grad_x = call.empty((grad_out.shape[0], weight.shape[1] * spec.groups) + tuple(input_hw))
    call.run_plan(plan, dict(grad_out=call.device(grad_out), weight=call.device(weight),
                             bias=call.device(bias), out=grad_x))
    return call.result(grad_x)


# --------------------------------------------------------------------------- pooling
def _strides(array) -> tuple[int, ...]:
    return tuple(s // array.dtype.itemsize for s in array.strides)


def _run_pool(call: _Call, cuda_plan: gpu_plan.Plan, buffers: dict) -> None:
    """Launch a pooling plan of ``gpu_plan`` with the Numba twins (``gpu_plan.numba_plan``)."""
    call.run_plan(gpu_plan.numba_plan(cuda_plan, SIMULATED), buffers)


def _max_pool(x, out_hw, spec, return_indices):
    call = _Call(x)
    shape = tuple(x.shape[:2]) + tuple(out_hw)
    y = call.empty(shape)
    indices = call.empty(shape, np.int64) if return_indices else None
    xd = call.device(x)
    _run_pool(call, gpu_plan.max_pool_plan(xd.shape, _strides(xd), spec, call.dtype.name,
                                           return_indices, out_hw),
              {"x": xd, "out": y, "indices": indices})
    return call.result(y), (call.result(indices) if return_indices else None)


def max_pool2d(x, spec: PoolSpec, return_indices: bool = True):
    """y (N, C, H_out, W_out) and, if asked, int64 flat indices ``h*W + w`` of each maximum."""
    return _max_pool(x, spec.output_shape(x.shape[2:]), spec, return_indices)


def adaptive_max_pool2d(x, out_hw):
    """Max over adaptive windows, with indices."""
    return _max_pool(x, out_hw, None, True)


def max_pool2d_backward(grad_out, indices, input_hw, spec: PoolSpec | None):
    """dL/dx (N, C, H, W): each element gathers the gradients of the outputs whose window may
    hold it (closed form from ``spec``; adaptive windows when None) and whose index names it;
    a bad index sets the device's error word (gpuconv.check_errors)."""
    call = _Call(grad_out)
    grad_x = call.empty(tuple(grad_out.shape[:2]) + tuple(input_hw))
    gy = call.device(grad_out)
    _run_pool(call, gpu_plan.max_pool_backward_plan(gy.shape, _strides(gy), tuple(input_hw), spec,
                                                    call.dtype.name),
              {"grad_out": gy, "indices": call.device(indices), "out": grad_x,
               "err": _error_word()})
    return call.result(grad_x)


# --------------------------------------------------------------------------- average and Lp pooling
def _avg_pool(x, spec, out_hw, **options):
    call = _Call(x)
    y = call.empty(tuple(x.shape[:2]) + tuple(out_hw))
    xd = call.device(x)
    _run_pool(call, gpu_plan.avg_pool_plan(xd.shape, _strides(xd), spec, call.dtype.name,
                                           out_hw=out_hw, **options), {"x": xd, "out": y})
    return call.result(y)


def _avg_backward(grad_out, spec, input_hw, count_include_pad=True, divisor_override=None):
    call = _Call(grad_out)
    gy = call.device(grad_out)
    grad_x = call.empty(tuple(grad_out.shape[:2]) + tuple(input_hw))
    _run_pool(call, gpu_plan.avg_pool_backward_plan(gy.shape, _strides(gy), spec, tuple(input_hw),
                                                    call.dtype.name, count_include_pad,
                                                    divisor_override),
              {"grad_out": gy, "out": grad_x})
    return call.result(grad_x)


def avg_pool2d(x, spec: PoolSpec, count_include_pad: bool, divisor_override):
    return _avg_pool(x, spec, spec.output_shape(x.shape[2:]), count_include_pad=count_include_pad,
                     divisor_override=divisor_override)


def avg_pool2d_backward(grad_out, spec: PoolSpec, input_hw, count_include_pad: bool,
                        divisor_override):
    return _avg_backward(grad_out, spec, input_hw, count_include_pad, divisor_override)


def adaptive_avg_pool2d(x, out_hw):
    return _avg_pool(x, None, out_hw)


def adaptive_avg_pool2d_backward(grad_out, input_hw):
    return _avg_backward(grad_out, None, input_hw)


def lp_pool2d(x, spec: PoolSpec, norm_type: float):
    """PyTorch's definition: (window size * avg_pool(x ** p)) ** (1/p) (no padding)."""
    return _avg_pool(x, spec, spec.output_shape(x.shape[2:]), norm=norm_type)


def lp_pool2d_backward(grad_out, x, spec: PoolSpec, norm_type: float):
    """The per-window scale (avg_pool2d, op 2) into a workspace shaped as grad_out, then the
    average gather of it times p * x^(p-1)."""
    call = _Call(grad_out, x)
    gy, x_d = call.device(grad_out), call.device(x)
    grad_x = call.empty(x.shape)
    _run_pool(call, gpu_plan.lp_pool_backward_plan(gy.shape, _strides(gy), x_d.shape,
                                                   _strides(x_d), spec, call.dtype.name, norm_type),
              {"grad_out": gy, "x": x_d, "out": grad_x})
    return call.result(grad_x)
