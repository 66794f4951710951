"""Numba CUDA kernels of the pooling family: the twins of kernels/pool.cu (same names, same
launch plans from ``gpuconv.backends.gpu_plan``), launched by ``gpuconv.backends.numba_backend``.
reference: gpuconv.backends.reference.max_pool2d, reference.avg_pool2d, reference.lp_pool2d,
reference.adaptive_avg_pool2d, reference.adaptive_max_pool2d and their backwards (formulas in
kernels/pool.cu); checked against the NumPy backend through the PyTorch goldens and
tests/test_numba_random.py.

Parameters, as pool.cu's ``PoolParams``: the pointer fields as device arrays in
``gpu_plan.POOL_FIELDS`` order (x, gy, y, idx: 4-D; err: a one-element int64 error word), then
one tuple of the scalar fields in that order (``gpu_plan.scalars``; strides flattened, ``norm``
a float).

Layout (every kernel): a block of (bx column chunks, by rows, bz planes); each thread POOL_V
consecutive outputs (forward) or input elements (backward) of a row; grid x over column
chunks, y over rows, z over planes (looping by the grid); no division in the tap loops.
Kernels (each the only one for its op):
1. max_pool2d: the maximum over each window; the first maximum wins, a NaN wins and the last
   NaN wins; int64 indices optional.
2. avg_pool2d: the average, Lp pooling, or the Lp gradient's per-window scale.
   Global (adaptive 1x1) max / average inside 1. and 2.: bx lanes per plane, a fixed
   shared-memory tree.
3. pool2d_backward: average / Lp gather over the closed-form ranges of windows.
4. max_pool2d_backward: the same closed-form ranges from the pooling spec (or adaptive
   windows); an output adds its gradient where its index names the element.

Every kernel is a gather or a fixed-order sum (no atomics): results repeat bit for bit.
Factories per dtype keep float32 maths in float32; ``@cuda.jit`` compiles lazily.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
from numba import cuda

from gpuconv.backends import gpu_plan as plan

_AT = plan.scalar_slots(plan.POOL_FIELDS)
(N, C, H, W, HO, WO, KH, KW, SH, SW, PH, PW, DH, DW, ADAPTIVE, OP, COUNT_INCLUDE_PAD,
 DIVISOR_OVERRIDE, LP_POST, NORM) = (_AT[k] for k in (
    "n", "c", "h", "w", "out_h", "out_w", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw",
    "adaptive", "op", "count_include_pad", "divisor_override", "lp_post", "norm"))
OP_AVG, OP_LP, OP_LP_GRAD_SCALE = plan.AVG, plan.LP, plan.LP_GRAD_SCALE
POOL_V = plan.POOL_V
assert POOL_V == 4  # max_pool2d_backward keeps four named accumulators
BLOCK = plan.POOL_BLOCK


# --------------------------------------------------------------------------- 1. layout
@cuda.jit(device=True)
def place():
    """(col0, row0, row_step, plane0, plane_step) of the calling thread."""
    col0 = (np.int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x) * POOL_V
    row0 = np.int64(cuda.blockIdx.y) * cuda.blockDim.y + cuda.threadIdx.y
    plane0 = np.int64(cuda.blockIdx.z) * cuda.blockDim.z + cuda.threadIdx.z
    return (col0, row0, np.int64(cuda.gridDim.y) * cuda.blockDim.y, plane0,
            np.int64(cuda.gridDim.z) * cuda.blockDim.z)


# --------------------------------------------------------------------------- windows
@cuda.jit(device=True)
def axis(s, rows):
    """(size, out, kernel, stride, pad, dilation) of the rows or the columns."""
    if rows:
        return s[H], s[HO], s[KH], s[SH], s[PH], s[DH]
    return s[W], s[WO], s[KW], s[SW], s[PW], s[DW]


@cuda.jit(device=True)
def adaptive_range(o, n, out):
    """[start, end) of adaptive window o of out over n positions (shapes.adaptive_windows)."""
    return (o * n) // out, ((o + 1) * n + out - 1) // out


@cuda.jit(device=True)
def max_taps(s, a, o):
    """Output o's taps along axis a, clipped to the input: (first, end, step)."""
    n, out, k, st, pad, d = a
    if s[ADAPTIVE]:
        first, end = adaptive_range(o, n, out)
        return first, end, np.int64(1)
    start = o * st - pad
    first = start + (-start + d - 1) // d * d if start < 0 else start
    return first, min(start + (k - 1) * d + 1, n), d


@cuda.jit(device=True)
def avg_axis(s, a, o):
    """Output o's window along axis a for averages: (lo, hi) clipped to the input, and its
    factor of the divisor (numpy_backend._avg_divisor)."""
    n, out, k, st, pad, _ = a
    if s[ADAPTIVE]:
        start, end = adaptive_range(o, n, out)
    else:
        start = o * st - pad
        end = min(start + k, n + pad)
    lo, hi = max(start, 0), min(end, n)
    count = end - start if s[COUNT_INCLUDE_PAD] and not s[ADAPTIVE] else hi - lo
    return lo, hi, count


@cuda.jit(device=True)
def avg_divisor(s, count_h, count_w):
    if s[DIVISOR_OVERRIDE]:
        return s[DIVISOR_OVERRIDE]
    return count_h * count_w


@cuda.jit(device=True)
def members(s, a, i):
    """(lo, hi): the outputs along axis a whose window may hold input position i, in closed
    form (sliding or adaptive); empty when lo > hi."""
    n, out, k, st, pad, d = a
    if s[ADAPTIVE]:
        return (i * out) // n, ((i + 1) * out - 1) // n
    first = i + pad - (k - 1) * d
    lo = np.int64(0) if first <= 0 else (first + st - 1) // st
    return lo, min(out - 1, (i + pad) // st)


@cuda.jit(device=True)
def is_global(s):
    return s[ADAPTIVE] and s[HO] == 1 and s[WO] == 1


@cuda.jit(device=True)
def merge_max(v, arg, ov, oarg):
    """pool.cu's MaxArg::merge: a NaN beats a number, of two NaNs the later index wins, of
    two equal numbers the earlier."""
    if oarg < 0:
        return v, arg
    a_nan, o_nan = v != v, ov != ov
    if a_nan or o_nan:
        wins = o_nan and (not a_nan or oarg > arg)
    else:
        wins = ov > v or (ov == v and oarg < arg)
    if arg < 0 or wins:
        return ov, oarg
    return v, arg


# --------------------------------------------------------------------------- kernels
@functools.cache
def kernels(dtype: np.dtype):
    """The pooling kernels for ``dtype``."""
    F = np.dtype(dtype).type
    zero = F(0)

    @cuda.jit(device=True)
    def global_pool(x, y, idx, s, want_max):
        """Global pooling: each plane's max (with index) or sum by blockDim.x lanes, then a fixed
        tree over the lanes in shared memory; lane 0 writes the plane's result."""
        part_v = cuda.shared.array(BLOCK, F)
        part_i = cuda.shared.array(BLOCK, np.int64)
        lanes, lane = cuda.blockDim.x, cuda.threadIdx.x
        slot = cuda.threadIdx.z * lanes + lane
        planes, width = s[N] * s[C], s[W]
        base = np.int64(cuda.blockIdx.z) * cuda.blockDim.z
        while base < planes:
            plane = base + cuda.threadIdx.z
            v, arg = zero, np.int64(-1)
            if plane < planes:
                n, c = plane // s[C], plane % s[C]
                for r in range(s[H]):
                    for col in range(lane, width, lanes):
                        val = x[n, c, r, col]
                        if want_max:
                            if arg < 0 or val > v or val != val:
                                v, arg = val, r * width + col
                        else:
                            v += val
            part_v[slot], part_i[slot] = v, arg
            cuda.syncthreads()
            step = lanes // 2
            while step > 0:
                if lane < step:
                    if want_max:
                        part_v[slot], part_i[slot] = merge_max(part_v[slot], part_i[slot],
                                                               part_v[slot + step],
                                                               part_i[slot + step])
                    else:
                        part_v[slot] += part_v[slot + step]
                cuda.syncthreads()
                step //= 2
            if lane == 0 and plane < planes:
                n, c = plane // s[C], plane % s[C]
                if want_max:
                    y[n, c, 0, 0] = part_v[slot]
                    if idx.size == y.size:
                        idx[n, c, 0, 0] = part_i[slot]
                else:
                    y[n, c, 0, 0] = part_v[slot] / F(s[H] * s[W])
            cuda.syncthreads()  # part_* are reused by the next planes
            base += np.int64(cuda.gridDim.z) * cuda.blockDim.z

    @cuda.jit
    def max_pool2d(x, gy, y, idx, err, s):
        """y[n, c, oh, ow] = max over (r, col) in window(oh, ow) of x[n, c, r, col]; idx =
        r * W + col of that maximum when idx has y's size (numpy_backend.max_pool2d /
        adaptive_max_pool2d). gy: unused."""
        if is_global(s):
            global_pool(x, y, idx, s, True)
            return
        col0, row0, row_step, plane0, plane_step = place()
        ah, aw = axis(s, True), axis(s, False)
        if col0 >= aw[1]:
            return
        want_idx = idx.size == y.size
        for oh in range(row0, ah[1], row_step):
            r0, r1, rs = max_taps(s, ah, oh)
            for plane in range(plane0, s[N] * s[C], plane_step):
                n, c = plane // s[C], plane % s[C]
                for ow in range(col0, min(col0 + POOL_V, aw[1])):
                    c0, c1, cs = max_taps(s, aw, ow)
                    best, arg = zero, np.int64(-1)
                    for r in range(r0, r1, rs):
                        for col in range(c0, c1, cs):
                            val = x[n, c, r, col]
                            if arg < 0 or val > best or val != val:  # first max, last NaN
                                best, arg = val, r * s[W] + col
                    y[n, c, oh, ow] = best
                    if want_idx:
                        idx[n, c, oh, ow] = arg

    @cuda.jit
    def avg_pool2d(x, gy, y, idx, err, s):
        """op 0: y = window sum / divisor (numpy_backend.avg_pool2d, adaptive_avg_pool2d);
        op 1: y = (kh*kw * avg(x^p))^(1/p) (lp_pool2d); op 2: the Lp gradient's per-window
        scale gy * total^(1/p - 1) / p * kh*kw (lp_pool2d_backward). idx: unused."""
        if is_global(s):
            global_pool(x, y, idx, s, False)
            return
        col0, row0, row_step, plane0, plane_step = place()
        ah, aw = axis(s, True), axis(s, False)
        if col0 >= aw[1]:
            return
        p, window = F(s[NORM]), F(s[KH] * s[KW])
        for oh in range(row0, ah[1], row_step):
            h0, h1, count_h = avg_axis(s, ah, oh)
            for plane in range(plane0, s[N] * s[C], plane_step):
                n, c = plane // s[C], plane % s[C]
                for ow in range(col0, min(col0 + POOL_V, aw[1])):
                    w0, w1, count_w = avg_axis(s, aw, ow)
                    total = zero
                    for r in range(h0, h1):
                        for col in range(w0, w1):
                            val = x[n, c, r, col]
                            total += val if s[OP] == OP_AVG else val ** p
                    out = total / F(avg_divisor(s, count_h, count_w))
                    if s[OP] != OP_AVG:  # numpy_backend.lp_pool2d
                        lp_total = out * window
                        if s[OP] == OP_LP:
                            out = lp_total ** (F(1) / p)
                        elif lp_total != zero:  # 0 for an all-zero window
                            out = gy[n, c, oh, ow] * (lp_total ** (F(1) / p - F(1)) / p) * window
                        else:
                            out = zero
                    y[n, c, oh, ow] = out

    @cuda.jit
    def pool2d_backward(x, gy, y, idx, err, s):
        """y[n, c, h, w] (dx) = sum over the windows (oh, ow) holding (h, w), in increasing
        output order, of gy[n, c, oh, ow] / divisor(oh, ow); times p * x^(p-1) when lp_post
        (numpy_backend.avg_pool2d_backward, adaptive_avg_pool2d_backward, lp_pool2d_backward).
        idx: unused."""
        col0, row0, row_step, plane0, plane_step = place()
        ah, aw = axis(s, True), axis(s, False)
        if col0 >= aw[0]:
            return
        p = F(s[NORM])
        for h in range(row0, ah[0], row_step):
            h_lo, h_hi = members(s, ah, h)
            for plane in range(plane0, s[N] * s[C], plane_step):
                n, c = plane // s[C], plane % s[C]
                for w in range(col0, min(col0 + POOL_V, aw[0])):
                    w_lo, w_hi = members(s, aw, w)
                    total = zero
                    for oh in range(h_lo, h_hi + 1):
                        count_h = avg_axis(s, ah, oh)[2]
                        for ow in range(w_lo, w_hi + 1):
                            total += gy[n, c, oh, ow] / F(avg_divisor(s, count_h,
                                                                        avg_axis(s, aw, ow)[2]))
                    if s[LP_POST]:  # Lp: d(x^p)/dx
                        total *= p * x[n, c, h, w] ** (p - F(1))
                    y[n, c, h, w] = total

    @cuda.jit
    def max_pool2d_backward(x, gy, y, idx, err, s):
        """y[n, c, h, w] (dx) = sum, in increasing output order, of gy[n, c, oh, ow] over the
        outputs whose window may hold (h, w) (closed form) and whose index idx[n, c, oh, ow]
        == h * W + w (numpy_backend.max_pool2d_backward); an index outside the plane sets
        err[0] to H * W. x: unused."""
        col0, row0, row_step, plane0, plane_step = place()
        ah, aw = axis(s, True), axis(s, False)
        if col0 >= aw[0]:
            return
        count = min(POOL_V, aw[0] - col0)
        w_lo = members(s, aw, col0)[0]
        w_hi = members(s, aw, col0 + count - 1)[1]
        for h in range(row0, ah[0], row_step):
            h_lo, h_hi = members(s, ah, h)
            this = h * aw[0] + col0
            for plane in range(plane0, s[N] * s[C], plane_step):
                n, c = plane // s[C], plane % s[C]
                s0 = s1 = s2 = s3 = zero
                for oh in range(h_lo, h_hi + 1):
                    for ow in range(w_lo, w_hi + 1):
                        at = idx[n, c, oh, ow]
                        if at < 0 or at >= s[H] * s[W]:  # every output's index is read
                            err[0] = s[H] * s[W]
                        d = at - this
                        if 0 <= d < count:
                            g = gy[n, c, oh, ow]
                            if d == 0:
                                s0 += g
                            elif d == 1:
                                s1 += g
                            elif d == 2:
                                s2 += g
                            else:
                                s3 += g
                y[n, c, h, col0] = s0
                if count > 1:
                    y[n, c, h, col0 + 1] = s1
                if count > 2:
                    y[n, c, h, col0 + 2] = s2
                if count > 3:
                    y[n, c, h, col0 + 3] = s3

    return SimpleNamespace(max_pool2d=max_pool2d, avg_pool2d=avg_pool2d,
                           pool2d_backward=pool2d_backward, max_pool2d_backward=max_pool2d_backward)
