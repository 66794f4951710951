"""Numba CUDA kernels of the pooling family: the twins of kernels/pool.cu (same names, same
PoolParams fields, same sums), launched by ``gpuconv.backends.numba_backend`` from the plans of
``gpuconv.backends.gpu_plan``.

reference: gpuconv.backends.reference.max_pool2d, reference.avg_pool2d, reference.lp_pool2d,
reference.adaptive_avg_pool2d, reference.adaptive_max_pool2d and their backwards:
    max     y[n,c,i,j] = max_{r,s} x[n, c, i*sh + r*dh - ph, j*sw + s*dw - pw] (taps inside x)
    avg     y[n,c,i,j] = sum_{r,s} x[n, c, i*sh + r - ph, j*sw + s - pw] / divisor[i,j]
    Lp      y = (kh*kw * avg(x^p))^(1/p);  adaptive: rows [floor(i*H/Ho), ceil((i+1)*H/Ho))
Checked against the NumPy backend through the PyTorch goldens and tests/test_numba_random.py.

Layout (every kernel): a block of (bx column chunks, by rows, bz planes); each thread POOL_V
consecutive outputs (forward) or input elements (backward) of a row; grid x over column
chunks, y over rows, z over planes (looping by the grid); no division in the tap loops.
Kernels (each the only one for its op; none is chosen among alternatives):
1. max_pool2d: the maximum over each window (sliding with dilation, or adaptive); the first
   maximum wins, a NaN wins and the last NaN wins; int64 indices optional.
2. avg_pool2d: the average, Lp pooling, or the Lp gradient's per-window scale (the average's
   divisor rules of PyTorch).
   Global (adaptive 1x1) max / average inside 1. and 2.: bx lanes per plane read it and
   reduce in a fixed shared-memory tree.
3. pool2d_backward: average / Lp gather over the closed-form ranges of windows that hold each
   input element.
4. max_pool2d_backward: the same closed-form ranges from the pooling spec (or adaptive
   windows); an output adds its gradient where its index names the element; the thread of
   a window's first tap checks that its index names one of its taps.

Every kernel takes ``PoolParams`` (kernels/common.cuh) as its arguments: the pointer fields
(x, gy, y, idx, err) as flat device arrays (idx and err int64: ``gpu_plan.INDEX_POINTERS``),
then one tuple ``p`` of the scalar fields in the struct's order (``gpu_plan.scalar_slots``; norm a
float). A null pointer is an empty array. Numba has no 16-byte loads or stores: elements go one
by one. Plane and window divisions take unsigned 32-bit operands (``gpu_plan.pool32``).
Every kernel is a gather or a fixed-order sum (no atomics): results repeat bit for bit.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import config, cuda

from gpuconv.backends import gpu_plan as plan
from gpuconv.kernels.conv_numba import div32, mod32

_SLOT = plan.scalar_slots(plan.POOL_FIELDS)
# a heterogeneous tuple (norm is a float) takes constant indices only: one name per stride slot
XS0, XS1, XS2, XS3 = (_SLOT["x_stride"] + i for i in range(4))
GS0, GS1, GS2, GS3 = (_SLOT["g_stride"] + i for i in range(4))
(N, C, H, W, OUT_H, OUT_W, KH, KW, SH, SW, PH, PW, DH, DW, ADAPTIVE, OP, COUNT_INCLUDE_PAD,
 DIVISOR_OVERRIDE, LP_POST, NORM) = (_SLOT[name] for name in (
    "n", "c", "h", "w", "out_h", "out_w", "kh", "kw", "sh", "sw", "ph", "pw", "dh", "dw",
    "adaptive", "op", "count_include_pad", "divisor_override", "lp_post", "norm"))
OP_AVG, OP_LP = plan.AVG, plan.LP
POOL_V = plan.POOL_V
assert POOL_V == 4  # max_pool2d_backward keeps four named sums
BLOCK = plan.POOL_BLOCK
U32 = np.uint32
MAX_REGISTERS = 128  # two 256-thread blocks per SM


# --------------------------------------------------------------------------- layout
@cuda.jit(device=True)
def place():
    """(col0, row0, row_step, plane0, plane_step) of the calling thread: its POOL_V columns
    col0.. of rows row0, row0 + row_step, ... and planes plane0, plane0 + plane_step, ..."""
    col0 = (np.int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x) * POOL_V
    row0 = np.int64(cuda.blockIdx.y) * cuda.blockDim.y + cuda.threadIdx.y
    plane0 = np.int64(cuda.blockIdx.z) * cuda.blockDim.z + cuda.threadIdx.z
    return (col0, row0, np.int64(cuda.gridDim.y) * cuda.blockDim.y, plane0,
            np.int64(cuda.gridDim.z) * cuda.blockDim.z)


@cuda.jit(device=True)
def split_plane(plane, channels):
    """plane = n * channels + c -> (n, c)."""
    n = div32(plane, channels)
    return n, plane - n * channels


# --------------------------------------------------------------------------- windows
@cuda.jit(device=True)
def pool_axis(p, rows):
    """(size, out, kernel, stride, pad, dilation) of the rows or the columns."""
    if rows:
        return p[H], p[OUT_H], p[KH], p[SH], p[PH], p[DH]
    return p[W], p[OUT_W], p[KW], p[SW], p[PW], p[DW]


@cuda.jit(device=True)
def adaptive_range(o, n, out):
    """[start, end) of adaptive window o of out over n positions (shapes.adaptive_windows); the
    end's ceiling as ((o+1)*n - 1) // out + 1, whose operand stays below n * out (pool.cu's)."""
    return div32(o * n, out), div32((o + 1) * n - 1, out) + 1


@cuda.jit(device=True)
def max_taps(p, a, o):
    """Output o's taps along axis a, clipped to the input: (first, end, step)."""
    n, out, k, st, pad, d = a
    if p[ADAPTIVE]:
        first, end = adaptive_range(o, n, out)
        return first, end, np.int64(1)
    start = o * st - pad
    first = start + div32(-start + d - 1, d) * d if start < 0 else start  # first tap inside
    return first, min(start + (k - 1) * d + 1, n), d


@cuda.jit(device=True)
def avg_axis(p, a, o):
    """Output o's window along axis a for averages: (lo, hi) clipped to the input, and its
    factor of the divisor (numpy_backend._avg_divisor: clipped to the padded input, then,
    unless count_include_pad, to the input)."""
    n, out, k, st, pad, _ = a
    if p[ADAPTIVE]:
        start, end = adaptive_range(o, n, out)
    else:
        start = o * st - pad
        end = min(start + k, n + pad)
    lo, hi = max(start, np.int64(0)), min(end, n)
    count = end - start if p[COUNT_INCLUDE_PAD] and not p[ADAPTIVE] else hi - lo
    return lo, hi, count


@cuda.jit(device=True)
def avg_divisor(p, count_h, count_w):
    if p[DIVISOR_OVERRIDE]:
        return p[DIVISOR_OVERRIDE]
    return count_h * count_w


@cuda.jit(device=True)
def members(p, a, i):
    """(lo, hi): the outputs along axis a whose window may hold input position i, in closed
    form: sliding (o*s - pad <= i <= o*s - pad + (k-1)*d) or adaptive (start(o) <= i < end(o)
    <=> floor(i*out/n) <= o <= floor(((i+1)*out - 1)/n)). Empty when lo > hi."""
    n, out, k, st, pad, d = a
    if p[ADAPTIVE]:
        return div32(i * out, n), div32((i + 1) * out - 1, n)
    first = i + pad - (k - 1) * d
    lo = np.int64(0) if first <= 0 else div32(first + st - 1, st)
    return lo, min(out - 1, div32(i + pad, st))


@cuda.jit(device=True)
def check_window_index(p, aw, ow, col0, at, r0, r1, rs, err):
    """For the thread whose columns col0 .. col0 + POOL_V - 1 hold the first tap of output
    ow's window (on the row where the window's taps r0, r0 + rs, ... < r1 start): unless flat
    index ``at`` (inside the plane) names one of the window's taps, set err to -H * W. Row by
    row of taps: no division of a flat index (pool.cu's)."""
    c0, c1, cs = max_taps(p, aw, ow)
    if not 0 <= c0 - col0 < POOL_V:
        return  # another thread's column (c0 < W: a tap)
    r = r0
    while r < r1:
        c = at - r * p[W]
        if c0 <= c < c1 and mod32(c - c0, cs) == 0:
            return
        r += rs
    err[0] = -p[H] * p[W]


@cuda.jit(device=True)
def is_global(p):
    return p[ADAPTIVE] and p[OUT_H] == 1 and p[OUT_W] == 1


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
def kernels(dtype) -> dict:
    """name -> kernel of the pooling family for ``dtype`` (float32 maths stays float32)."""
    F = np.dtype(dtype).type
    zero = F(0)
    jit = cuda.jit(**({} if config.ENABLE_CUDASIM else {"max_registers": MAX_REGISTERS}))

    @cuda.jit(device=True)
    def global_pool(x, y, idx, p, want_max):
        """Global pooling: each plane's max (with index) or sum by blockDim.x lanes, then a fixed
        tree over the lanes in shared memory; lane 0 writes the plane's result. Every thread
        runs the same iterations (the tree synchronises the block)."""
        part_v = cuda.shared.array(BLOCK, F)
        part_i = cuda.shared.array(BLOCK, np.int64)
        lanes, lane = np.int64(cuda.blockDim.x), np.int64(cuda.threadIdx.x)
        slot = cuda.threadIdx.z * cuda.blockDim.x + cuda.threadIdx.x
        planes, width, plane_len = p[N] * p[C], p[W], p[H] * p[W]
        contiguous = p[XS3] == 1 and p[XS2] == width
        base = np.int64(cuda.blockIdx.z) * cuda.blockDim.z
        while base < planes:
            plane = base + cuda.threadIdx.z
            v, arg = zero, np.int64(-1)
            if plane < planes:
                n, c = split_plane(plane, p[C])
                at = n * p[XS0] + c * p[XS1]
                if contiguous:
                    e = lane
                    while e < plane_len:
                        val = x[at + e]
                        if want_max:
                            if arg < 0 or val > v or val != val:
                                v, arg = val, e
                        else:
                            v += val
                        e += lanes
                else:
                    for r in range(p[H]):
                        col = lane
                        while col < width:
                            val = x[at + r * p[XS2] + col * p[XS3]]
                            if want_max:
                                if arg < 0 or val > v or val != val:
                                    v, arg = val, r * width + col
                            else:
                                v += val
                            col += lanes
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
            # no barrier before the next planes: lane 0 reads only its own slot, which only it
            # writes, and the other slots were last read before the tree's final barrier
            if lane == 0 and plane < planes:
                if want_max:
                    y[plane] = part_v[slot]
                    if idx.size > 0:
                        idx[plane] = part_i[slot]
                else:
                    y[plane] = part_v[slot] / F(plane_len)
            base += np.int64(cuda.gridDim.z) * cuda.blockDim.z

    def max_pool2d(x, gy, y, idx, err, p):
        """y[n, c, oh, ow] = max over (r, col) in window(oh, ow) of x[n, c, r, col]; idx =
        r * W + col of that maximum (numpy_backend.max_pool2d / adaptive_max_pool2d).
        gy, err: unused."""
        if is_global(p):
            global_pool(x, y, idx, p, True)
            return
        # index decoding: POOL_V outputs (oh, col0 + v) per thread, planes by the grid
        col0, row0, row_step, plane0, plane_step = place()
        ah, aw = pool_axis(p, True), pool_axis(p, False)
        # bounds
        if col0 >= aw[1]:
            return
        count = min(np.int64(POOL_V), aw[1] - col0)
        # body: each of the POOL_V outputs in turn, its column taps in registers
        xs2, xs3, width = p[XS2], p[XS3], p[W]
        oh = row0
        while oh < ah[1]:
            r0, r1, rs = max_taps(p, ah, oh)
            plane = plane0
            while plane < p[N] * p[C]:
                n, c = split_plane(plane, p[C])
                at = n * p[XS0] + c * p[XS1]
                out = (plane * ah[1] + oh) * aw[1] + col0
                for v in range(POOL_V):
                    if v < count:
                        c0, c1, cs = max_taps(p, aw, col0 + v)
                        best, arg = zero, np.int64(-1)  # functional rejects all-padding windows
                        r = r0
                        while r < r1:
                            col = c0
                            while col < c1:
                                val = x[at + r * xs2 + col * xs3]
                                if arg < 0 or val > best or val != val:  # first max, last NaN
                                    best, arg = val, r * width + col
                                col += cs
                            r += rs
                        y[out + v] = best
                        if idx.size > 0:
                            idx[out + v] = arg
                plane += plane_step
            oh += row_step

    def avg_pool2d(x, gy, y, idx, err, p):
        """op 0: y = sum over window(oh, ow) of x / divisor (numpy_backend.avg_pool2d,
        adaptive_avg_pool2d); op 1: y = (kh*kw * avg(x^p))^(1/p) (lp_pool2d); op 2: the Lp
        gradient's per-window scale gy * total^(1/p - 1) / p * kh*kw (lp_pool2d_backward).
        idx, err: unused."""
        if is_global(p):
            global_pool(x, y, idx, p, False)
            return
        # index decoding: POOL_V outputs (oh, col0 + v) per thread, planes by the grid
        col0, row0, row_step, plane0, plane_step = place()
        ah, aw = pool_axis(p, True), pool_axis(p, False)
        # bounds
        if col0 >= aw[1]:
            return
        count = min(np.int64(POOL_V), aw[1] - col0)
        # body
        norm, window = F(p[NORM]), F(p[KH] * p[KW])
        xs2, xs3 = p[XS2], p[XS3]
        oh = row0
        while oh < ah[1]:
            h0, h1, count_h = avg_axis(p, ah, oh)
            plane = plane0
            while plane < p[N] * p[C]:
                n, c = split_plane(plane, p[C])
                at = n * p[XS0] + c * p[XS1]
                out = (plane * ah[1] + oh) * aw[1] + col0
                for v in range(POOL_V):
                    if v < count:
                        w0, w1, count_w = avg_axis(p, aw, col0 + v)
                        total = zero
                        for r in range(h0, h1):
                            for col in range(w0, w1):
                                val = x[at + r * xs2 + col * xs3]
                                total += val if p[OP] == OP_AVG else val ** norm
                        mean = total / F(avg_divisor(p, count_h, count_w))
                        if p[OP] == OP_AVG:
                            y[out + v] = mean
                        elif p[OP] == OP_LP:  # numpy_backend.lp_pool2d
                            y[out + v] = (mean * window) ** F(1.0 / p[NORM])
                        else:  # d total^(1/p) / d total, 0 for an all-zero or NaN window
                            lp_total = mean * window
                            g = gy[n * p[GS0] + c * p[GS1] + oh * p[GS2]
                                   + (col0 + v) * p[GS3]]
                            safe = lp_total + F(lp_total == zero)
                            y[out + v] = (g * F(lp_total > zero or lp_total < zero)
                                          * (safe ** F(1.0 / p[NORM] - 1.0) / norm) * window)
                plane += plane_step
            oh += row_step

    def pool2d_backward(x, gy, y, idx, err, p):
        """y[n, c, h, w] (dx) = sum over the windows (oh, ow) holding (h, w), in increasing
        output order, of gy[n, c, oh, ow] / divisor(oh, ow); times p * x^(p-1) when lp_post
        (Lp, whose gy is the per-window scale). numpy_backend.avg_pool2d_backward,
        adaptive_avg_pool2d_backward, lp_pool2d_backward. idx, err: unused."""
        # index decoding: POOL_V input elements (h, col0 + v) per thread, planes by the grid
        col0, row0, row_step, plane0, plane_step = place()
        ah, aw = pool_axis(p, True), pool_axis(p, False)
        # bounds
        if col0 >= aw[0]:
            return
        count = min(np.int64(POOL_V), aw[0] - col0)
        # body
        norm = F(p[NORM])
        gs2, gs3 = p[GS2], p[GS3]
        h = row0
        while h < ah[0]:
            h_lo, h_hi = members(p, ah, h)
            plane = plane0
            while plane < p[N] * p[C]:
                n, c = split_plane(plane, p[C])
                g0 = n * p[GS0] + c * p[GS1]
                out = (plane * ah[0] + h) * aw[0] + col0
                for v in range(POOL_V):
                    if v < count:
                        w_lo, w_hi = members(p, aw, col0 + v)
                        total = zero
                        for oh in range(h_lo, h_hi + 1):
                            count_h = avg_axis(p, ah, oh)[2]
                            for ow in range(w_lo, w_hi + 1):
                                divisor = avg_divisor(p, count_h, avg_axis(p, aw, ow)[2])
                                total += gy[g0 + oh * gs2 + ow * gs3] / F(divisor)
                        if p[LP_POST]:  # Lp: times d(x^p)/dx
                            xv = x[n * p[XS0] + c * p[XS1] + h * p[XS2]
                                   + (col0 + v) * p[XS3]]
                            total *= norm * xv ** F(p[NORM] - 1.0)
                        y[out + v] = total
                plane += plane_step
            h += row_step

    def max_pool2d_backward(x, gy, y, idx, err, p):
        """y[n, c, h, w] (dx) = sum, in increasing output order, of gy[n, c, oh, ow] over the
        outputs whose window may hold (h, w) (closed form from the spec, or adaptive) and whose
        index idx[n, c, oh, ow] == h * W + w (numpy_backend.max_pool2d_backward). idx:
        contiguous. An index outside the plane sets the error word err (when given) to H * W;
        one inside it that names no tap of its output's window (shapes.max_window_taps; found
        by the thread holding the window's first tap, which reads every index of it) to
        -H * W. x: unused."""
        # index decoding: POOL_V input elements (h, col0 + v) per thread, planes by the grid
        col0, row0, row_step, plane0, plane_step = place()
        ah, aw = pool_axis(p, True), pool_axis(p, False)
        # bounds
        if col0 >= aw[0]:
            return
        count = min(np.int64(POOL_V), aw[0] - col0)
        # body: the column candidates of the POOL_V elements together
        w_lo = members(p, aw, col0)[0]
        w_hi = members(p, aw, col0 + count - 1)[1]
        plane_len = p[H] * p[W]
        gs2, gs3 = p[GS2], p[GS3]
        h = row0
        while h < ah[0]:
            h_lo, h_hi = members(p, ah, h)
            this = h * aw[0] + col0
            plane = plane0
            while plane < p[N] * p[C]:
                n, c = split_plane(plane, p[C])
                g0 = n * p[GS0] + c * p[GS1]
                i0 = plane * ah[1] * aw[1]
                s0 = s1 = s2 = s3 = zero  # the POOL_V sums (scalars: registers)
                for oh in range(h_lo, h_hi + 1):
                    r0, r1, rs = max_taps(p, ah, oh)
                    first_row = err.size > 0 and h == r0  # the window's taps start on row h
                    for ow in range(w_lo, w_hi + 1):
                        at = idx[i0 + oh * aw[1] + ow]
                        if err.size > 0 and (at < 0 or at >= plane_len):
                            err[0] = plane_len  # every output's index is read by some element
                        elif first_row:
                            check_window_index(p, aw, ow, col0, at, r0, r1, rs, err)
                        d = at - this
                        if 0 <= d < POOL_V:  # else it names another element
                            g = gy[g0 + oh * gs2 + ow * gs3]
                            if d == 0:
                                s0 += g
                            elif d == 1:
                                s1 += g
                            elif d == 2:
                                s2 += g
                            else:
                                s3 += g
                out = (plane * ah[0] + h) * aw[0] + col0
                y[out] = s0
                if count > 1:
                    y[out + 1] = s1
                if count > 2:
                    y[out + 2] = s2
                if count > 3:
                    y[out + 3] = s3
                plane += plane_step
            h += row_step

    return {name: jit(kernel) for name, kernel in (
        ("max_pool2d", max_pool2d), ("avg_pool2d", avg_pool2d),
        ("pool2d_backward", pool2d_backward), ("max_pool2d_backward", max_pool2d_backward))}
