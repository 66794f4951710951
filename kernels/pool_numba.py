"""Numba CUDA kernels of the pooling family, launched by ``gpuconv.backends.numba_backend``
and checked against the NumPy backend (``gpuconv/backends/numpy_backend.py``) through the
PyTorch goldens and tests/test_numba_random.py.

reference: gpuconv.backends.reference.max_pool2d, reference.avg_pool2d, reference.lp_pool2d,
reference.adaptive_avg_pool2d, reference.adaptive_max_pool2d and their backwards:
    max  y[n,c,i,j] = max_{r,s} x[n, c, i*sh + r*dh - ph, j*sw + s*dw - pw] (taps inside x)
    avg  y[n,c,i,j] = sum_{r,s} x[n, c, i*sh + r - ph, j*sw + s - pw] / divisor[i,j]
    Lp   y = (kh*kw * avg(x^p))^(1/p); adaptive windows: rows [floor(i*H/Ho), ceil((i+1)*H/Ho))

How the kernels work (design points, not alternative versions):
1. one thread per output (forward) or per input element (backward), grid-stride in int64
2. one window description for strided and adaptive windows (``window``, ``containing``)
3. backward as a gather: an input element visits the windows that can hold it
4. max-pool backward without the window geometry: candidate windows from the index extents
5. Lp pooling as PyTorch composes it from average pooling, fused per output

Every kernel is a gather or a fixed-order sum (no atomics): results repeat bit for bit.
Factories per dtype keep float32 maths in float32; ``@cuda.jit`` compiles lazily.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
from numba import cuda

from gpuconv.kernels.conv_numba import grid_start, split4

# Fields of the int64 geometry tuple every pooling kernel takes (``geometry`` builds it);
# per-axis fields are (row, column) pairs, so ``field + axis`` picks one.
(N, C, H, W, HO, WO, KH, KW, SH, SW, PH, PW, DH, DW, ADAPTIVE, COUNT_INCLUDE_PAD,
 DIVISOR_OVERRIDE, WANT_INDICES) = range(18)
GEOMETRY_FIELDS = 18


def geometry(x_shape, out_hw, spec=None, *, count_include_pad=True, divisor_override=None,
             want_indices=False) -> tuple[int, ...]:
    """The geometry tuple of a pooling of ``x_shape`` (N, C, H, W) to ``out_hw``: strided
    windows of ``spec`` (a PoolSpec), or adaptive windows when ``spec`` is None."""
    if spec is None:
        windows = (0,) * 8 + (1,)  # no kernel, stride, padding, dilation; adaptive
    else:
        windows = (*spec.kernel_size, *spec.stride, *spec.padding, *spec.dilation, 0)
    return (*x_shape, *out_hw, *windows, int(count_include_pad), divisor_override or 0,
            int(want_indices))


# --------------------------------------------------------------------------- windows
@cuda.jit(device=True)
def window(geom, axis, o):
    """Positions (start, stop, step) of output ``o``'s window along ``axis`` (0 rows, 1 columns),
    before clipping to the input: strided (numpy backend's ``_windows``) or adaptive
    (``gpuconv.shapes.adaptive_windows``)."""
    size, out = geom[H + axis], geom[HO + axis]
    if geom[ADAPTIVE]:
        return (o * size) // out, ((o + 1) * size + out - 1) // out, np.int64(1)
    start = o * geom[SH + axis] - geom[PH + axis]
    return start, start + (geom[KH + axis] - 1) * geom[DH + axis] + 1, geom[DH + axis]


@cuda.jit(device=True)
def containing(geom, axis, i):
    """(first, last): the outputs whose window along ``axis`` may hold position ``i``."""
    size, out = geom[H + axis], geom[HO + axis]
    if geom[ADAPTIVE]:
        return (i * out) // size, min(out - 1, ((i + 1) * out - 1) // size)
    s, p = geom[SH + axis], geom[PH + axis]
    reach = (geom[KH + axis] - 1) * geom[DH + axis]
    return max(0, -((reach - i - p) // s)), min(out - 1, (i + p) // s)


@cuda.jit(device=True)
def first_inside(start, step):
    """The first window position start + k*step that is not in the leading padding."""
    return start + (max(0, -start) + step - 1) // step * step


@cuda.jit(device=True)
def holds(geom, axis, o, i):
    """Whether output ``o``'s window along ``axis`` holds position ``i``."""
    start, stop, step = window(geom, axis, o)
    return start <= i < stop and (i - start) % step == 0


@cuda.jit(device=True)
def axis_divisor(geom, axis, o):
    """One axis' factor of the average divisor, as PyTorch counts it (numpy backend's
    ``_avg_divisor``): clip the window to the padded input, then, without
    count_include_pad, to the input."""
    start, stop, _ = window(geom, axis, o)
    if geom[ADAPTIVE]:
        return stop - start
    size = geom[H + axis]
    end = min(stop, size + geom[PH + axis])
    if geom[COUNT_INCLUDE_PAD]:
        return end - start
    return min(end, size) - max(start, 0)


@cuda.jit(device=True)
def divisor(geom, oh, ow):
    if geom[DIVISOR_OVERRIDE]:
        return geom[DIVISOR_OVERRIDE]
    return axis_divisor(geom, 0, oh) * axis_divisor(geom, 1, ow)


# --------------------------------------------------------------------------- kernels
@functools.cache
def kernels(dtype: np.dtype, threads: int):
    """The pooling kernels for ``dtype``; ``threads`` is the block size of ``index_extent``
    (its shared partial extents)."""
    F = np.dtype(dtype).type
    zero, one = F(0), F(1)

    @cuda.jit(device=True)
    def window_sum(x, geom, n, c, oh, ow, p):
        """Sum of x ** p over the window's input positions (p = 0: of x, average pooling)."""
        hs, he, hstep = window(geom, 0, oh)
        ws, we, wstep = window(geom, 1, ow)
        total = zero
        for h in range(first_inside(hs, hstep), min(he, geom[H]), hstep):
            for w in range(first_inside(ws, wstep), min(we, geom[W]), wstep):
                v = x[n, c, h, w]
                total += v if p == 0 else v ** p
        return total

    @cuda.jit(device=True)
    def lp_total(x, geom, n, c, oh, ow, p):
        """PyTorch's Lp total: window size x avg_pool(x ** p), before the 1/p power."""
        return window_sum(x, geom, n, c, oh, ow, p) / F(divisor(geom, oh, ow)) * F(
            geom[KH] * geom[KW])

    @cuda.jit
    def max_pool(x, y, indices, geom):
        """y (N, C, HO, WO) = max over each window of x (N, C, H, W); indices (if wanted) the
        flat h*W + w of the first maximum, or of the last NaN (``reference._argmax``'s
        rule). Windows start inside the input only at a ceil_mode or padded
        edge; functional rejects windows that hold no input position."""
        start, stride = grid_start()
        for e in range(start, y.size, stride):
            n, c, oh, ow = split4(e, geom[C], geom[HO], geom[WO])
            hs, he, hstep = window(geom, 0, oh)
            ws, we, wstep = window(geom, 1, ow)
            best = zero
            arg = np.int64(-1)
            for h in range(hs, he, hstep):
                if 0 <= h < geom[H]:
                    for w in range(ws, we, wstep):
                        if 0 <= w < geom[W]:
                            v = x[n, c, h, w]
                            if arg < 0 or v > best or v != v:
                                best, arg = v, h * geom[W] + w
            y[n, c, oh, ow] = best
            if geom[WANT_INDICES]:
                indices[n, c, oh, ow] = arg

    @cuda.jit
    def avg_pool(x, y, geom, p):
        """y = window sum / divisor (p = 0: average pooling), or Lp pooling
        (window size x avg_pool(x ** p)) ** (1/p) for p > 0."""
        start, stride = grid_start()
        for e in range(start, y.size, stride):
            n, c, oh, ow = split4(e, geom[C], geom[HO], geom[WO])
            if p == 0:
                y[n, c, oh, ow] = window_sum(x, geom, n, c, oh, ow, p) / F(divisor(geom, oh, ow))
            else:
                y[n, c, oh, ow] = lp_total(x, geom, n, c, oh, ow, p) ** (one / p)

    @cuda.jit
    def lp_coefficient(x, grad_out, coef, geom, p):
        """coef = dL/d(Lp total) x window size (numpy backend's ``lp_pool2d_backward``):
        grad_out * total ** (1/p - 1) / p * window; a window of zeros gets 0, as in PyTorch."""
        start, stride = grid_start()
        for e in range(start, coef.size, stride):
            n, c, oh, ow = split4(e, geom[C], geom[HO], geom[WO])
            total = lp_total(x, geom, n, c, oh, ow, p)
            g = zero
            if total != zero:
                g = grad_out[n, c, oh, ow] * (total ** (one / p - one) / p) * F(geom[KH] * geom[KW])
            coef[n, c, oh, ow] = g

    @cuda.jit
    def avg_pool_backward(grad_out, x, grad_x, geom, p):
        """grad_x (N, C, H, W) gathers grad_out / divisor from every window holding the element
        (p = 0); for Lp pooling grad_out is ``lp_coefficient``'s and the sum is times
        p * x ** (p - 1)."""
        start, stride = grid_start()
        for e in range(start, grad_x.size, stride):
            n, c, h, w = split4(e, geom[C], geom[H], geom[W])
            oh0, oh1 = containing(geom, 0, h)
            ow0, ow1 = containing(geom, 1, w)
            total = zero
            for oh in range(oh0, oh1 + 1):
                if holds(geom, 0, oh, h):
                    for ow in range(ow0, ow1 + 1):
                        if holds(geom, 1, ow, w):
                            total += grad_out[n, c, oh, ow] / F(divisor(geom, oh, ow))
            if p != 0:
                total *= p * x[n, c, h, w] ** (p - one)
            grad_x[n, c, h, w] = total

    @cuda.jit
    def index_extent(indices, lo, hi, geom):
        """lo, hi (HO + WO,): the least and greatest input row (column) that the indices of
        output row oh (column ow = line - HO) name. Block per line, per-thread strided
        extents, then thread 0 combines them."""
        line = cuda.blockIdx.x
        t = cuda.threadIdx.x
        axis = 0 if line < geom[HO] else 1
        o = line - axis * geom[HO]
        across = geom[WO - axis]  # outputs along the other axis
        low = cuda.shared.array(threads, np.int64)
        high = cuda.shared.array(threads, np.int64)
        first, last = geom[H + axis], np.int64(-1)
        for i in range(t, geom[N] * geom[C] * across, threads):
            plane, other = i // across, i % across
            oh, ow = (o, other) if axis == 0 else (other, o)
            flat = indices[plane // geom[C], plane % geom[C], oh, ow]
            pos = flat // geom[W] if axis == 0 else flat % geom[W]
            first, last = min(first, pos), max(last, pos)
        low[t], high[t] = first, last
        cuda.syncthreads()
        if t == 0:
            for s in range(1, threads):
                first, last = min(first, low[s]), max(last, high[s])
            lo[line], hi[line] = first, last

    @cuda.jit
    def candidate_span(lo, hi, first, last, geom):
        """first, last (H + W,): for input row h (column w = position - H), the first and last
        output line whose index extent holds it (last < first: none)."""
        start, stride = grid_start()
        for e in range(start, first.size, stride):
            axis = 0 if e < geom[H] else 1
            pos = e - axis * geom[H]
            a, b = np.int64(0), np.int64(-1)
            for o in range(geom[HO + axis]):
                line = o + axis * geom[HO]
                if lo[line] <= pos <= hi[line]:
                    a = o if b < a else a
                    b = o
            first[e], last[e] = a, b

    @cuda.jit
    def max_pool_backward(grad_out, indices, first, last, grad_x, geom):
        """grad_x (N, C, H, W): each element sums, in output order, the grad_out of the outputs
        among its candidates whose index names it (as np.add.at adds them)."""
        start, stride = grid_start()
        for e in range(start, grad_x.size, stride):
            n, c, h, w = split4(e, geom[C], geom[H], geom[W])
            flat = h * geom[W] + w
            total = zero
            for oh in range(first[h], last[h] + 1):
                for ow in range(first[geom[H] + w], last[geom[H] + w] + 1):
                    if indices[n, c, oh, ow] == flat:
                        total += grad_out[n, c, oh, ow]
            grad_x[n, c, h, w] = total

    return SimpleNamespace(max_pool=max_pool, avg_pool=avg_pool, lp_coefficient=lp_coefficient,
                           avg_pool_backward=avg_pool_backward, index_extent=index_extent,
                           candidate_span=candidate_span, max_pool_backward=max_pool_backward)
