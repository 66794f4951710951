"""Numba CUDA kernels of the convolution family, launched by ``gpuconv.backends.numba_backend``
and checked against the NumPy backend (``gpuconv/backends/numpy_backend.py``) through the
PyTorch goldens and tests/test_numba_random.py.

reference: gpuconv.backends.reference.conv2d, reference.conv2d_grad_input,
reference.conv2d_grad_weight, reference.conv2d_grad_bias:
    y[n,o,i,j]  = b[o] + sum_{c,r,s} w[o,c,r,s] * x[n, c, i*sh + r*dh - pt, j*sw + s*dw - pl]
    dx[n,c,h,w] = sum of w[o,c,r,s] * dy[n,o,i,j] over h = i*sh + r*dh - pt, w = j*sw + s*dw - pl
    dw[o,c,r,s] = sum_{n,i,j} dy[n,o,i,j] * x[n, c, i*sh + r*dh - pt, j*sw + s*dw - pl]

How the kernels work (design points, not alternative versions):
1. tiled implicit GEMM: shared-memory tiles of both operands, RM x RN outputs per thread
2. one GEMM body for forward, grad-input and grad-weight: each op is an operand description
3. grad-input by stride phase: a block reads only the kernel taps that reach its phase
4. grad-weight split over the batch-and-pixel reduction, partial sums added in a fixed order
5. padding modes by source index: the forward reads through it, grad-input folds back (gather)

Every kernel is a gather or a fixed-order sum (no atomics): results repeat bit for bit.
Kernels are made by factories per dtype (constants keep that dtype: float32 stays float32)
and tile; ``@cuda.jit`` is lazy, so each compiles once per signature at its first launch.
Indices are int64: a tensor may hold more than 2^31 elements.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
from numba import cuda

# Fields of the int64 geometry tuple every conv kernel takes (``geometry`` builds it).
(N, C, H, W, O, HO, WO, KH, KW, SH, SW, PT, PL, DH, DW, GROUPS, MODE, HAS_BIAS,
 TH, TW, OFF_H, OFF_W, CHUNK, NSPLIT) = range(24)
GEOMETRY_FIELDS = 24
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")  # MODE codes 0..3
ZEROS, REFLECT, REPLICATE, CIRCULAR = range(4)


def geometry(x_shape, o, out_hw, kernel_hw, spec, *, has_bias=False, target_hw=None,
             offset_hw=(0, 0), chunk=0, nsplit=1) -> tuple[int, ...]:
    """The geometry tuple of a conv of input ``x_shape`` (N, C, H, W) into ``o`` channels of
    ``out_hw``; grad-input also names its target (the input, or the padded input) and
    where the target starts in padded coordinates, grad-weight its reduction split."""
    n, c, h, w = x_shape
    (pt, _), (pl, _) = spec.padding
    target_hw = target_hw or (h, w)
    return (n, c, h, w, o, *out_hw, *kernel_hw, *spec.stride, pt, pl, *spec.dilation,
            spec.groups, PADDING_MODES.index(spec.padding_mode), int(has_bias),
            *target_hw, *offset_hw, chunk, nsplit)


# --------------------------------------------------------------------------- shared device code
@cuda.jit(device=True)
def source_index(pos, size, mode):
    """The input position a padded position ``pos`` (relative to the input) copies, or -1 for
    a zero (numpy backend's ``_source_index``)."""
    if 0 <= pos < size:
        return pos
    if mode == ZEROS:
        return -1
    if mode == REPLICATE:
        return 0 if pos < 0 else size - 1
    if mode == CIRCULAR:
        return pos % size
    if size == 1:  # reflect of a single element
        return 0
    period = 2 * (size - 1)
    i = pos % period
    return period - i if i >= size else i


@cuda.jit(device=True)
def copy_position(a, i, size, before, mode):
    """Candidate ``a`` of the padded positions that may copy input position ``i``: 0 is the
    centre (i + before), then come the leading and the trailing padding. Returns the padded
    position, or -1 when that candidate copies another position."""
    if a == 0:
        return i + before
    pos = a - 1 if a <= before else size + a - 1
    return pos if source_index(pos - before, size, mode) == i else -1


@cuda.jit(device=True)
def phase_taps(phase, kernel, stride, dilation):
    """(first, step, count) of the kernel taps k with k * dilation = phase (mod stride): the
    taps that reach padded positions of that phase (numpy backend's ``_phase_taps``)."""
    a, b = stride, dilation
    while b:
        a, b = b, a % b
    step = stride // a
    for k in range(min(kernel, step)):
        if (k * dilation) % stride == phase:
            return k, step, (kernel - 1 - k) // step + 1
    return 0, step, 0


@cuda.jit(device=True)
def grid_start():
    """First flat index and stride of a 1-D grid-stride loop, in int64."""
    return (np.int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x,
            np.int64(cuda.gridDim.x) * cuda.blockDim.x)


@cuda.jit(device=True)
def split4(i, d1, d2, d3):
    """Flat index -> (a, b, c, d) of a C-order array (., d1, d2, d3)."""
    d = i % d3
    i //= d3
    c = i % d2
    i //= d2
    return i // d1, i % d1, c, d


# --------------------------------------------------------------------------- tiled implicit GEMM
def _gemm_kernel(op, dtype, tile):
    """out[z][m, p] = sum over k in plan's range of A[z][m, k] * B[z][k, p], by ``op``'s device
    functions: plan(geom, z) -> (M, P, k_begin, k_end, ...), column(geom, plan, p) -> the
    decoded column (first field < 0 past P), load_a, load_b (gathers, zero outside) and
    store (epilogue). Block (x, y, z) = (P tile, M tile, operand pair z); thread (tx, ty)
    owns outputs (ty + u*BDY, tx + v*BDX), so warps read shared tiles without conflicts
    and write consecutive pixels."""
    tm, tn, tk, rm, rn = tile
    bdx, bdy = tn // rn, tm // rm
    threads = bdx * bdy
    assert threads % tn == 0 and threads % tk == 0 and tk * tm % threads == 0, tile
    a_loads, a_step = tk * tm // threads, threads // tk
    b_loads, b_step = tk * tn // threads, threads // tn
    zero = dtype.type(0)
    plan, column, load_a, load_b, store = op.plan, op.column, op.load_a, op.load_b, op.store

    def kernel(a, b, out, bias, geom):
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        tid = ty * bdx + tx
        m0 = cuda.blockIdx.y * tm
        p0 = np.int64(cuda.blockIdx.x) * tn
        pl = plan(geom, cuda.blockIdx.z)
        sa = cuda.shared.array((tk, tm), dtype)  # A tile, k-major
        sb = cuda.shared.array((tk, tn), dtype)  # B tile, k-major
        acc = cuda.local.array((rm, rn), dtype)
        frag = cuda.local.array(rn, dtype)
        for u in range(rm):
            for v in range(rn):
                acc[u, v] = zero
        # Each thread loads one fixed column of the B tile: decode it once.
        col = column(geom, pl, p0 + tid % tn)
        for k0 in range(pl[2], pl[3], tk):
            k = k0 + tid % tk
            for r in range(a_loads):
                mm = tid // tk + r * a_step
                value = zero
                if m0 + mm < pl[0] and k < pl[3]:
                    value = load_a(a, geom, pl, m0 + mm, k)
                sa[tid % tk, mm] = value
            for r in range(b_loads):
                kk = tid // tn + r * b_step
                value = zero
                if col[0] >= 0 and k0 + kk < pl[3]:
                    value = load_b(b, geom, pl, k0 + kk, col)
                sb[kk, tid % tn] = value
            cuda.syncthreads()
            for kk in range(tk):
                for v in range(rn):
                    frag[v] = sb[kk, tx + v * bdx]
                for u in range(rm):
                    av = sa[kk, ty + u * bdy]
                    for v in range(rn):
                        acc[u, v] += av * frag[v]
            cuda.syncthreads()
        for u in range(rm):
            m = m0 + ty + u * bdy
            for v in range(rn):
                p = p0 + tx + v * bdx
                if m < pl[0] and p < pl[1]:
                    store(out, bias, geom, pl, m, column(geom, pl, p), acc[u, v])

    return kernel


def _channel_store(dtype):
    """Epilogue of forward and grad-input, whose columns are (n, row, column) and rows the
    group's channels: out[n, channel, row, column] = value + bias[channel]."""
    zero = dtype.type(0)

    @cuda.jit(device=True)
    def store(out, bias, geom, pl, m, col, value):
        channel = pl[4] * pl[0] + m
        out[col[0], channel, col[1], col[2]] = value + (bias[channel] if geom[HAS_BIAS] else zero)

    return store


def _forward_op(dtype):
    """y (N, O, HO, WO) = W (O, C/G, KH, KW) x im2col(x): M = O/G, P = N*HO*WO, K = C/G*KH*KW,
    z = group."""
    zero = dtype.type(0)

    @cuda.jit(device=True)
    def plan(geom, z):
        return (geom[O] // geom[GROUPS], geom[N] * geom[HO] * geom[WO], 0,
                geom[C] // geom[GROUPS] * geom[KH] * geom[KW], np.int64(z))

    @cuda.jit(device=True)
    def column(geom, pl, p):  # (n, oh, ow)
        if p >= pl[1]:
            return np.int64(-1), np.int64(0), np.int64(0)
        _, n, oh, ow = split4(p, geom[N], geom[HO], geom[WO])
        return n, oh, ow

    @cuda.jit(device=True)
    def load_a(w, geom, pl, m, k):
        _, c, i, j = split4(k, w.shape[1], geom[KH], geom[KW])
        return w[pl[4] * pl[0] + m, c, i, j]

    @cuda.jit(device=True)
    def load_b(x, geom, pl, k, col):
        _, c, i, j = split4(k, x.shape[1], geom[KH], geom[KW])
        ih = source_index(col[1] * geom[SH] - geom[PT] + i * geom[DH], geom[H], geom[MODE])
        iw = source_index(col[2] * geom[SW] - geom[PL] + j * geom[DW], geom[W], geom[MODE])
        if ih < 0 or iw < 0:
            return zero
        return x[col[0], pl[4] * (geom[C] // geom[GROUPS]) + c, ih, iw]

    return SimpleNamespace(plan=plan, column=column, load_a=load_a, load_b=load_b,
                           store=_channel_store(dtype))


def _grad_input_op(dtype):
    """dx (N, C, TH, TW) = W^T x col2im(dy), one stride phase (rh, rw) per z: target rows
    t = q*SH + rh, whose padded position t + OFF_H reaches only the taps of ``phase_taps``.
    M = C/G, P = N*QH*QW (the phase's positions), K = O/G * taps_h * taps_w,
    z = group * SH*SW + phase. Plan: (M, P, 0, K, g, rh, rw, QH, QW, first_h, step_h,
    count_h, first_w, step_w, count_w)."""
    zero = dtype.type(0)

    @cuda.jit(device=True)
    def plan(geom, z):
        phases = geom[SH] * geom[SW]
        g, ph = z // phases, z % phases
        rh, rw = ph // geom[SW], ph % geom[SW]
        qh = max(0, (geom[TH] - rh + geom[SH] - 1) // geom[SH])
        qw = max(0, (geom[TW] - rw + geom[SW] - 1) // geom[SW])
        fh, sh, ch = phase_taps((rh + geom[OFF_H]) % geom[SH], geom[KH], geom[SH], geom[DH])
        fw, sw, cw = phase_taps((rw + geom[OFF_W]) % geom[SW], geom[KW], geom[SW], geom[DW])
        return (geom[C] // geom[GROUPS], geom[N] * qh * qw, 0,
                geom[O] // geom[GROUPS] * ch * cw, g, rh, rw, qh, qw, fh, sh, ch, fw, sw, cw)

    @cuda.jit(device=True)
    def column(geom, pl, p):  # (n, th, tw)
        if p >= pl[1]:
            return np.int64(-1), np.int64(0), np.int64(0)
        _, n, qh, qw = split4(p, geom[N], pl[7], pl[8])
        return n, qh * geom[SH] + pl[5], qw * geom[SW] + pl[6]

    @cuda.jit(device=True)
    def tap(pl, k):  # k -> (o in group, i, j)
        taps = pl[11] * pl[14]
        a, b = (k % taps) // pl[14], k % pl[14]
        return k // taps, pl[9] + a * pl[10], pl[12] + b * pl[13]

    @cuda.jit(device=True)
    def load_a(w, geom, pl, m, k):
        o, i, j = tap(pl, k)
        return w[pl[4] * (geom[O] // geom[GROUPS]) + o, m, i, j]

    @cuda.jit(device=True)
    def load_b(gy, geom, pl, k, col):
        o, i, j = tap(pl, k)
        hp = col[1] + geom[OFF_H] - i * geom[DH]  # = oh * SH for the tap's output row oh
        wp = col[2] + geom[OFF_W] - j * geom[DW]
        if hp < 0 or wp < 0 or hp >= geom[HO] * geom[SH] or wp >= geom[WO] * geom[SW]:
            return zero
        return gy[col[0], pl[4] * (geom[O] // geom[GROUPS]) + o, hp // geom[SH], wp // geom[SW]]

    return SimpleNamespace(plan=plan, column=column, load_a=load_a, load_b=load_b,
                           store=_channel_store(dtype))


def _grad_weight_op(dtype):
    """partial[s] (NSPLIT, O, C/G*KH*KW) = dy (O/G, K) x im2col(x)^T over split s of the
    K = N*HO*WO reduction: M = O/G, P = C/G*KH*KW, z = group * NSPLIT + s (the slides'
    dL/dW = Correlation(I, dL/dO))."""
    zero = dtype.type(0)

    @cuda.jit(device=True)
    def plan(geom, z):
        k_begin = (z % geom[NSPLIT]) * geom[CHUNK]
        return (geom[O] // geom[GROUPS], geom[C] // geom[GROUPS] * geom[KH] * geom[KW], k_begin,
                min(geom[N] * geom[HO] * geom[WO], k_begin + geom[CHUNK]),
                np.int64(z // geom[NSPLIT]), np.int64(z % geom[NSPLIT]))

    @cuda.jit(device=True)
    def column(geom, pl, p):  # (c, i, j)
        if p >= pl[1]:
            return np.int64(-1), np.int64(0), np.int64(0)
        _, c, i, j = split4(p, pl[1], geom[KH], geom[KW])
        return c, i, j

    @cuda.jit(device=True)
    def load_a(gy, geom, pl, m, k):
        _, n, oh, ow = split4(k, geom[N], geom[HO], geom[WO])
        return gy[n, pl[4] * pl[0] + m, oh, ow]

    @cuda.jit(device=True)
    def load_b(x, geom, pl, k, col):
        _, n, oh, ow = split4(k, geom[N], geom[HO], geom[WO])
        ih = source_index(oh * geom[SH] - geom[PT] + col[1] * geom[DH], geom[H], geom[MODE])
        iw = source_index(ow * geom[SW] - geom[PL] + col[2] * geom[DW], geom[W], geom[MODE])
        if ih < 0 or iw < 0:
            return zero
        return x[n, pl[4] * (geom[C] // geom[GROUPS]) + col[0], ih, iw]

    @cuda.jit(device=True)
    def store(partial, bias, geom, pl, m, col, value):
        partial[pl[5], pl[4] * pl[0] + m, (col[0] * geom[KH] + col[1]) * geom[KW] + col[2]] = value

    return SimpleNamespace(plan=plan, column=column, load_a=load_a, load_b=load_b, store=store)


GEMM_OPS = {"conv_forward": _forward_op, "conv_grad_input": _grad_input_op,
            "conv_grad_weight": _grad_weight_op}


@functools.cache
def gemm(name: str, dtype: np.dtype, tile: tuple[int, int, int, int, int]):
    """The lazily compiled GEMM kernel of op ``name`` (a key of ``GEMM_OPS``) for ``dtype``
    and ``tile`` = (TM, TN, TK, RM, RN); launch with block (TN/RN, TM/RM)."""
    return cuda.jit(_gemm_kernel(GEMM_OPS[name](np.dtype(dtype)), np.dtype(dtype), tile))


# --------------------------------------------------------------------------- reductions and folds
@functools.cache
def elementwise(dtype: np.dtype, threads: int):
    """The conv family's non-GEMM kernels for ``dtype``; ``threads`` is the block size of
    ``grad_bias`` (its shared partial sums)."""
    zero = np.dtype(dtype).type(0)

    @cuda.jit
    def sum_splits(partial, grad_w):
        """grad_w (O, Q) = sum over s of partial (S, O, Q), s ascending (thread per output)."""
        start, stride = grid_start()
        for i in range(start, grad_w.size, stride):
            o, q = i // grad_w.shape[1], i % grad_w.shape[1]
            total = zero
            for s in range(partial.shape[0]):
                total += partial[s, o, q]
            grad_w[o, q] = total

    @cuda.jit
    def grad_bias(gy, grad_b):
        """grad_b (O,) = sum of gy (N, O, HO, WO) over batch and pixels: block per channel,
        per-thread strided sums, then thread 0 adds them in thread order."""
        o = cuda.blockIdx.x
        t = cuda.threadIdx.x
        partial = cuda.shared.array(threads, dtype)
        plane = gy.shape[2] * gy.shape[3]
        total = zero
        for i in range(t, gy.shape[0] * plane, threads):
            total += gy[i // plane, o, (i % plane) // gy.shape[3], i % gy.shape[3]]
        partial[t] = total
        cuda.syncthreads()
        if t == 0:
            for s in range(1, threads):
                total += partial[s]
            grad_b[o] = total

    @cuda.jit
    def fold_padding(grad_padded, grad_x, bias, geom):
        """grad_x (N, C, H, W) gathers, for each element, grad_padded (N, C, TH, TW) at every
        padded position that copies it (reflect / replicate / circular), rows then columns:
        the centre first, then the top (left) and bottom (right) padding."""
        start, stride = grid_start()
        h_size, w_size = geom[H], geom[W]
        pb, pr = geom[TH] - geom[PT] - h_size, geom[TW] - geom[PL] - w_size
        for e in range(start, grad_x.size, stride):
            n, c, h, w = split4(e, grad_x.shape[1], h_size, w_size)
            total = bias[c] if geom[HAS_BIAS] else zero
            for a in range(1 + geom[PT] + pb):
                hp = copy_position(a, h, h_size, geom[PT], geom[MODE])
                if hp >= 0:
                    for b in range(1 + geom[PL] + pr):
                        wp = copy_position(b, w, w_size, geom[PL], geom[MODE])
                        if wp >= 0:
                            total += grad_padded[n, c, hp, wp]
            grad_x[n, c, h, w] = total

    return SimpleNamespace(sum_splits=sum_splits, grad_bias=grad_bias, fold_padding=fold_padding)


@cuda.jit
def copy_strided(src, dst):
    """dst (C-contiguous) = src (any strides, e.g. a flipped kernel view): thread per element."""
    start, stride = grid_start()
    for e in range(start, dst.size, stride):
        a, b, c, d = split4(e, dst.shape[1], dst.shape[2], dst.shape[3])
        dst[a, b, c, d] = src[a, b, c, d]


def tile_threads(tile) -> tuple[int, int]:
    """The block (x, y) of a GEMM tile."""
    tm, tn, _, rm, rn = tile
    return tn // rn, tm // rm


def cdiv(a: int, b: int) -> int:
    return -(-a // b)

