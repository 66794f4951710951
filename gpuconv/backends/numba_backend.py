"""Numba CUDA backend: every 2-D kernel of ``gpuconv.backends.KERNELS`` on the GPU, in the
Numba kernels of ``gpuconv.kernels.conv_numba`` and ``gpuconv.kernels.pool_numba``.

Checked against the PyTorch goldens and the NumPy backend (tests/test_golden.py,
tests/test_numba_random.py) through Numba's CUDA simulator, and compiled for sm_90
(tests/test_numba_sm90.py) from ``kernel_table``, the one list of kernels and signatures.

Arrays: Numba device arrays in, Numba device arrays out (asynchronous, default stream);
CuPy arrays in, CuPy arrays out (zero-copy through ``__cuda_array_interface__``, on CuPy's
current stream, no synchronisation); NumPy arrays are copied to the device and back.

Convolutions are one tiled implicit GEMM (forward, grad-input by stride phase,
grad-weight split over its reduction); padding modes other than zeros read through
a source index and fold their gradient back with a gather. Pooling runs one thread
per output (forward) or per input element (backward, a gather over the windows that
hold it). No kernel uses atomics: every result repeats bit for bit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import config, cuda, types

from gpuconv.kernels import conv_numba as ck
from gpuconv.kernels import pool_numba as pk
from gpuconv.kernels.conv_numba import cdiv
from gpuconv.shapes import ConvSpec, PoolSpec

PRECISIONS = ("ieee",)  # conv arithmetic: strict IEEE float maths (FFMA), no tensor cores


@dataclass(frozen=True)
class Launch:
    """Launch configuration: GEMM tile (TM, TN, TK, RM, RN) -> block (TN/RN, TM/RM) threads
    computing RM x RN outputs each; ``threads`` per block of the other kernels, which
    grid-stride over at most ``max_blocks`` blocks; grad-weight splits its reduction
    until about ``target_blocks`` blocks run."""

    tile: tuple[int, int, int, int, int]
    threads: int
    max_blocks: int
    target_blocks: int


# The GPU: 64x64 tiles, 16-deep, 4x4 outputs per thread (256 threads, 8 KiB of float32
# tiles); grad-weight aims at about 8 blocks per SM of an H100 (132 SMs).
GPU = Launch(tile=(64, 64, 16, 4, 4), threads=256, max_blocks=1 << 16, target_blocks=1056)
# The simulator runs one OS thread per CUDA thread and pays for every syncthreads: few,
# wide blocks (32 threads of 1x8 outputs, the whole reduction of a small conv per tile).
SIMULATOR = Launch(tile=(8, 32, 32, 1, 8), threads=16, max_blocks=2, target_blocks=1)
launch = SIMULATOR if config.ENABLE_CUDASIM else GPU


# --------------------------------------------------------------------------- kernels and signatures
@functools.cache
def kernel_table(dtype, setup: Launch = GPU) -> dict:
    """name -> (kernel, argument types) of every kernel this backend launches for ``dtype``
    under ``setup``: the runtime launches from it, the sm_90 test compiles it."""
    dtype = np.dtype(dtype)
    real = types.float32 if dtype == np.float32 else types.float64

    def array(ndim, kind=real, layout="C"):
        return types.Array(kind, ndim, layout)

    conv_geom = types.UniTuple(types.int64, ck.GEOMETRY_FIELDS)
    pool_geom = types.UniTuple(types.int64, pk.GEOMETRY_FIELDS)
    conv = ck.elementwise(dtype, setup.threads)
    pool = pk.kernels(dtype, setup.threads)
    a4, a1, i4, i1 = array(4), array(1), array(4, types.int64), array(1, types.int64)
    gemm = (a4, a4, a4, a1, conv_geom)
    table = {name: (ck.gemm(name, dtype, setup.tile), gemm) for name in ck.GEMM_OPS}
    table["conv_grad_weight"] = (table["conv_grad_weight"][0],
                                 (a4, a4, array(3), a1, conv_geom))
    table.update(
        sum_splits=(conv.sum_splits, (array(3), array(2))),
        grad_bias=(conv.grad_bias, (a4, a1)),
        fold_padding=(conv.fold_padding, (a4, a4, a1, conv_geom)),
        copy_strided=(ck.copy_strided, (array(4, layout="A"), a4)),
        copy_strided_indices=(ck.copy_strided, (array(4, types.int64, "A"), i4)),
        max_pool=(pool.max_pool, (a4, a4, i4, pool_geom)),
        avg_pool=(pool.avg_pool, (a4, a4, pool_geom, real)),
        lp_coefficient=(pool.lp_coefficient, (a4, a4, a4, pool_geom, real)),
        avg_pool_backward=(pool.avg_pool_backward, (a4, a4, a4, pool_geom, real)),
        index_extent=(pool.index_extent, (i4, i1, i1, pool_geom)),
        candidate_span=(pool.candidate_span, (i1, i1, i1, i1, pool_geom)),
        max_pool_backward=(pool.max_pool_backward, (a4, i4, i1, i1, a4, pool_geom)),
    )
    return table


CHECK_SIGNATURES = False  # tests set it: every launch must match its kernel_table entry


# --------------------------------------------------------------------------- one call's arrays
class _Call:
    """The arrays of one backend call: inputs as C-contiguous Numba device arrays, outputs
    allocated by the caller's array library, on its stream, and handed back in it."""

    def __init__(self, *arrays):
        first = next(a for a in arrays if a is not None)
        self.kind = type(first).__module__.partition(".")[0]  # numpy, cupy or numba
        self.dtype = np.dtype(first.dtype)
        self._owners = {}  # id of a device view -> the CuPy array that owns its memory
        if self.kind == "cupy":
            import cupy
            self._cupy = cupy
            self.stream = cuda.external_stream(cupy.cuda.get_current_stream().ptr)
        else:
            self.stream = cuda.default_stream()

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

    def placeholder(self, ndim, dtype=None):
        """A one-element array for an argument a kernel does not read (its flag is off)."""
        return self.empty((1,) * ndim, dtype)

    def result(self, array):
        if self.kind == "cupy":
            return self._owners[id(array)]
        if self.kind == "numpy":
            host = array.copy_to_host(stream=self.stream)
            self.stream.synchronize()
            return host
        return array

    def run(self, name, grid, block, *args):
        kernel, signature = kernel_table(self.dtype, launch)[name]
        if CHECK_SIGNATURES:
            import numba
            got = tuple(numba.typeof(a) for a in args)
            assert got == signature, f"{name} launched with {got}, kernel_table has {signature}"
        kernel[grid, block, self.stream](*args)

    def run_elementwise(self, name, total, *args):
        self.run(name, self._grid(total), launch.threads, *args)

    def run_gemm(self, name, p, m, z, *args):
        tm, tn = launch.tile[:2]
        self.run(name, (cdiv(p, tn), cdiv(m, tm), z), ck.tile_threads(launch.tile), *args)

    @staticmethod
    def _grid(total):
        return max(1, min(cdiv(total, launch.threads), launch.max_blocks))


# --------------------------------------------------------------------------- array helpers
def contiguous(array):
    """A C-contiguous copy of a strided 4-D Numba device array (a reversed view, say; one
    of size-1 axes only counts as contiguous to Numba, yet its negative strides break
    slicing)."""
    call = _Call(array)
    return call.result(call.copy(array))


@cuda.reduce
def _min(a, b):
    return min(a, b)


@cuda.reduce
def _max(a, b):
    return max(a, b)


def value_range(array) -> tuple[int, int]:
    """(min, max) of an integer Numba device array, reduced on the GPU."""
    flat = _Call(array).device(array).ravel()
    info = np.iinfo(array.dtype)
    return int(_min(flat, init=info.max)), int(_max(flat, init=info.min))


# --------------------------------------------------------------------------- convolution
def conv2d(x, weight, bias, spec: ConvSpec, precision: str = "ieee"):
    """y (N, O, H_out, W_out) = x (N, C, H, W) correlated with weight (O, C/G, kH, kW) + bias."""
    call = _Call(x, weight, bias)
    n, o, groups = x.shape[0], weight.shape[0], spec.groups
    out_hw = spec.output_shape(x.shape[2:], weight.shape[2:])
    y = call.empty((n, o) + tuple(out_hw))
    geom = ck.geometry(x.shape, o, out_hw, weight.shape[2:], spec, has_bias=bias is not None)
    call.run_gemm("conv_forward", n * out_hw[0] * out_hw[1], o // groups, groups,
                  call.device(weight), call.device(x), y, _bias(call, bias), geom)
    return call.result(y)


def conv2d_grad_bias(grad_out):
    """dL/db (O,) = sum of grad_out (N, O, H_out, W_out) over batch and pixels."""
    call = _Call(grad_out)
    grad_b = call.empty((grad_out.shape[1],))
    call.run("grad_bias", grad_out.shape[1], launch.threads, call.device(grad_out), grad_b)
    return call.result(grad_b)


def conv2d_grad_weight(grad_out, x, spec: ConvSpec, kernel_hw, precision: str = "ieee"):
    """dL/dW (O, C/G, kH, kW): the correlation of the padded input with grad_out, reduced over
    batch and pixels in ``nsplit`` fixed chunks that a second kernel adds in order."""
    call = _Call(grad_out, x)
    n, o, ho, wo = grad_out.shape
    groups, (tm, tn, tk) = spec.groups, launch.tile[:3]
    columns = x.shape[1] // groups * kernel_hw[0] * kernel_hw[1]
    reduction = n * ho * wo
    blocks = groups * cdiv(o // groups, tm) * cdiv(columns, tn)
    nsplit = max(1, min(cdiv(launch.target_blocks, blocks), cdiv(reduction, 8 * tk)))
    chunk = cdiv(cdiv(reduction, nsplit), tk) * tk
    nsplit = cdiv(reduction, chunk)
    grad_w = call.empty((o, x.shape[1] // groups) + tuple(kernel_hw))
    partial = grad_w.reshape(1, o, columns) if nsplit == 1 else call.empty((nsplit, o, columns))
    geom = ck.geometry(x.shape, o, (ho, wo), kernel_hw, spec, chunk=chunk, nsplit=nsplit)
    call.run_gemm("conv_grad_weight", columns, o // groups, groups * nsplit,
                  call.device(grad_out), call.device(x), partial, call.placeholder(1), geom)
    if nsplit > 1:
        call.run_elementwise("sum_splits", o * columns, partial, grad_w.reshape(o, columns))
    return call.result(grad_w)


def conv2d_grad_input(grad_out, weight, spec: ConvSpec, input_hw, bias=None,
                      precision: str = "ieee"):
    """dL/dx (N, C, H, W): the transposed convolution of grad_out (N, O, H_out, W_out) with
    weight (O, C/G, kH, kW), plus ``bias`` (C,) (the forward of ``conv_transpose2d``).
    Zero padding: the GEMM writes dx directly; other modes: it writes the gradient of the
    padded input, and ``fold_padding`` gathers it back onto the positions it copies."""
    call = _Call(grad_out, weight, bias)
    n, o = grad_out.shape[:2]
    _, cg, kh, kw = weight.shape
    groups, channels = spec.groups, weight.shape[1] * spec.groups
    (top, bottom), (left, right) = spec.padding
    zeros = spec.padding_mode == "zeros"
    target_hw = tuple(input_hw) if zeros else (input_hw[0] + top + bottom,
                                               input_hw[1] + left + right)
    grad_x = call.empty((n, channels) + tuple(input_hw))
    target = grad_x if zeros else call.empty((n, channels) + target_hw)

    def geom(has_bias):
        return ck.geometry((n, channels) + tuple(input_hw), o, grad_out.shape[2:], (kh, kw), spec,
                           has_bias=has_bias, target_hw=target_hw,
                           offset_hw=(top, left) if zeros else (0, 0))

    (sh, sw), bias_d = spec.stride, _bias(call, bias)
    phase_positions = n * cdiv(target_hw[0], sh) * cdiv(target_hw[1], sw)
    call.run_gemm("conv_grad_input", phase_positions, cg, groups * sh * sw, call.device(weight),
                  call.device(grad_out), target, bias_d, geom(zeros and bias is not None))
    if not zeros:
        call.run_elementwise("fold_padding", grad_x.size, target, grad_x, bias_d,
                             geom(bias is not None))
    return call.result(grad_x)


def _bias(call: _Call, bias):
    return call.placeholder(1) if bias is None else call.device(bias)


# --------------------------------------------------------------------------- max pooling
def _max_pool(x, out_hw, spec, return_indices):
    call = _Call(x)
    shape = tuple(x.shape[:2]) + tuple(out_hw)
    y = call.empty(shape)
    indices = call.empty(shape, np.int64) if return_indices else call.placeholder(4, np.int64)
    geom = pk.geometry(x.shape, out_hw, spec, want_indices=return_indices)
    call.run_elementwise("max_pool", y.size, call.device(x), y, indices, geom)
    return call.result(y), (call.result(indices) if return_indices else None)


def max_pool2d(x, spec: PoolSpec, return_indices: bool = True):
    """y (N, C, H_out, W_out) and, if asked, int64 flat indices ``h*W + w`` of each maximum."""
    return _max_pool(x, spec.output_shape(x.shape[2:]), spec, return_indices)


def adaptive_max_pool2d(x, out_hw):
    """Max over adaptive windows, with indices."""
    return _max_pool(x, out_hw, None, True)


def max_pool2d_backward(grad_out, indices, input_hw):
    """dL/dx (N, C, H, W): each element gathers the gradients of the outputs whose index names
    it (max and adaptive max pooling). The window geometry is not passed, so the candidate
    outputs of each row and column come from the extent of the indices per output line."""
    call = _Call(grad_out)
    n, c, ho, wo = grad_out.shape
    geom = pk.geometry((n, c) + tuple(input_hw), (ho, wo))
    idx = call.device(indices)
    lo, hi = call.empty((ho + wo,), np.int64), call.empty((ho + wo,), np.int64)
    first = call.empty((sum(input_hw),), np.int64)
    last = call.empty((sum(input_hw),), np.int64)
    grad_x = call.empty((n, c) + tuple(input_hw))
    call.run("index_extent", ho + wo, launch.threads, idx, lo, hi, geom)
    call.run_elementwise("candidate_span", first.size, lo, hi, first, last, geom)
    call.run_elementwise("max_pool_backward", grad_x.size, call.device(grad_out), idx, first,
                         last, grad_x, geom)
    return call.result(grad_x)


# --------------------------------------------------------------------------- average and Lp pooling
def _window_pool(x, out_hw, geom, p):
    """avg_pool kernel: average (p = 0) or Lp (p > 0) pooling of x to out_hw."""
    call = _Call(x)
    y = call.empty(tuple(x.shape[:2]) + tuple(out_hw))
    call.run_elementwise("avg_pool", y.size, call.device(x), y, geom, call.dtype.type(p))
    return call.result(y)


def _window_pool_backward(grad_out, x, input_hw, geom, p):
    """avg_pool_backward kernel: average (p = 0) or, after ``lp_coefficient``, Lp pooling."""
    call = _Call(grad_out, x)
    p_typed = call.dtype.type(p)
    gy = call.device(grad_out)
    if p == 0:
        x_d = call.placeholder(4)
    else:
        x_d = call.device(x)
        coef = call.empty(grad_out.shape)
        call.run_elementwise("lp_coefficient", coef.size, x_d, gy, coef, geom, p_typed)
        gy = coef
    grad_x = call.empty(tuple(grad_out.shape[:2]) + tuple(input_hw))
    call.run_elementwise("avg_pool_backward", grad_x.size, gy, x_d, grad_x, geom, p_typed)
    return call.result(grad_x)


def avg_pool2d(x, spec: PoolSpec, count_include_pad: bool, divisor_override):
    out_hw = spec.output_shape(x.shape[2:])
    geom = pk.geometry(x.shape, out_hw, spec, count_include_pad=count_include_pad,
                       divisor_override=divisor_override)
    return _window_pool(x, out_hw, geom, 0)


def avg_pool2d_backward(grad_out, spec: PoolSpec, input_hw, count_include_pad: bool,
                        divisor_override):
    geom = pk.geometry(tuple(grad_out.shape[:2]) + tuple(input_hw), grad_out.shape[2:], spec,
                       count_include_pad=count_include_pad, divisor_override=divisor_override)
    return _window_pool_backward(grad_out, None, input_hw, geom, 0)


def adaptive_avg_pool2d(x, out_hw):
    return _window_pool(x, out_hw, pk.geometry(x.shape, out_hw), 0)


def adaptive_avg_pool2d_backward(grad_out, input_hw):
    geom = pk.geometry(tuple(grad_out.shape[:2]) + tuple(input_hw), grad_out.shape[2:])
    return _window_pool_backward(grad_out, None, input_hw, geom, 0)


def lp_pool2d(x, spec: PoolSpec, norm_type: float):
    """PyTorch's definition: (window size * avg_pool(x ** p)) ** (1/p) (no padding)."""
    out_hw = spec.output_shape(x.shape[2:])
    return _window_pool(x, out_hw, pk.geometry(x.shape, out_hw, spec), norm_type)


def lp_pool2d_backward(grad_out, x, spec: PoolSpec, norm_type: float):
    geom = pk.geometry(x.shape, grad_out.shape[2:], spec)
    return _window_pool_backward(grad_out, x, x.shape[2:], geom, norm_type)
