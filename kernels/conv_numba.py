"""Numba CUDA kernels of the convolution family: the twins of kernels/conv.cu (same names, same
ConvParams fields, same sums), launched by ``gpuconv.backends.numba_backend`` from the plans of
``gpu_plan`` (``numba_conv_*_plan``).

reference: gpuconv.backends.reference.conv2d, reference.conv2d_grad_input,
reference.conv2d_grad_weight, reference.conv2d_grad_bias:
    y[n,o,i,j]  = sum_{c,r,s} w[o,c,r,s] * x[n, c, i*sh + r*dh - pt, j*sw + s*dw - pl] + b[o]
                  (then max(y, 0) when the relu field is set)
    dx[n,c,h,w] = sum of w[o,c,r,s] * dy[n,o,i,j] over h = i*sh + r*dh - pt, w = j*sw + s*dw - pl
    dw[o,c,r,s] = sum_{n,i,j} dy[n,o,i,j] * x[n, c, i*sh + r*dh - pt, j*sw + s*dw - pl]
    db[o]       = sum_{n,i,j} dy[n,o,i,j]

Kernels:
- conv_gemm: implicit GEMM on CUDA cores (forward; grad-input by live stride phase;
  grad-weight), each slice's reduction split as the plan says, loader after CUTLASS's "optimized"
  iterators: positions decoded once per block, advanced per k-tile by a precomputed delta
- conv_direct: forward and grad-input slices writing at most 4 rows (channels): several pixels
  a thread sharing one walk over the taps, the weights staged in shared memory
- conv_splitk_reduce: split-K's second pass, partials summed in split order, then bias and ReLU
- conv_grad_bias: a block per channel, per-thread strided sums, then a fixed tree
- conv_pad_adjoint: grad-input under reflect / replicate / circular padding, a gather
- conv_fill_bias: grad-input positions that no kernel tap reaches: the bias, or zero

Every kernel takes ``ConvParams`` (kernels/common.cuh) as its arguments: the pointer fields
(a, b, bias, out) as flat device arrays, then one int64 tuple of the scalar fields in the
struct's order (``gpu_plan.scalar_slots(CONV_FIELDS)``). A null pointer is an empty array.
Kernels are gathers or fixed-order sums (no atomics): results repeat bit for bit, and the
sums run in the CUDA twins' order (bias added last, the same grad-bias tree).
Kernels come from factories per dtype (constants keep it: float32 stays float32), tile and
index width (the 32-bit instances and conv_direct divide in unsigned 32 bits, ``div32``: no
int64 division routine); ``@cuda.jit`` is lazy, so each compiles once, at its first launch.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import config, cuda

from gpuconv.backends import gpu_plan as plan

_SLOT = plan.scalar_slots(plan.CONV_FIELDS)
A_STRIDE, B_STRIDE = _SLOT["a_stride"], _SLOT["b_stride"]
(BATCH, B_H, B_W, OUT_C, OUT_H, OUT_W, GROUPS, M, KC, KH, KW, SH, SW, DH, DW, PT, PL, Q_H, Q_W,
 LO_H, LO_W, LEN_H, LEN_W, MODE, TRANSPOSED, PHASES, SPLITS, TILES_PER_SPLIT, TOTAL, PLANE, RELU) = (
    _SLOT[name] for name in ("batch", "b_h", "b_w", "out_c", "out_h", "out_w", "groups", "m",
                             "kc", "kh", "kw", "sh", "sw", "dh", "dw", "pt", "pl", "q_h", "q_w",
                             "lo_h", "lo_w", "len_h", "len_w", "mode", "transposed", "phases",
                             "splits", "tiles_per_split", "total", "plane", "relu"))
ZEROS, REFLECT, REPLICATE, CIRCULAR = (plan.PAD_MODES[m] for m in
                                       ("zeros", "reflect", "replicate", "circular"))
I32 = np.int32  # spatial positions and reduction digits
EPILOGUE_FIELDS = 12  # conv_gemm's block constants kept in shared memory for the epilogue
U32 = np.uint32  # shared-memory indices (unsigned: no negative-index wraparound)


# --------------------------------------------------------------------------- shared device code
@cuda.jit(device=True)
def source_index(i, n, mode):
    """The input position that padded coordinate ``i`` copies, or -1 for a zero (common.cuh's
    source_index: functional checks the padding, so one reflection or wrap suffices)."""
    if i >= 0 and i < n:
        return I32(i)
    if mode == ZEROS:
        return I32(-1)
    if mode == REPLICATE:
        return I32(0) if i < 0 else I32(n - 1)
    if mode == CIRCULAR:
        return I32(i + n) if i < 0 else I32(i - n)
    return I32(-i) if i < 0 else I32(2 * (n - 1) - i)  # reflect


@cuda.jit(device=True)
def tile_source_index(i, n, mode):
    """source_index for a staged tile, whose columns span the block whether or not outputs
    exist there (common.cuh's tile_source_index): past the padded input, -1."""
    j = source_index(i, n, mode)
    return j if j >= 0 and j < n else I32(-1)


@cuda.jit(device=True)
def block_sum(partial, t, value):
    """The block's sum of ``value`` (thread t's), a fixed tree over the shared array
    ``partial`` of one slot per thread, a power of two (common.cuh's block_reduce); every
    thread gets it, and ``partial`` is free again on return."""
    partial[t] = value
    cuda.syncthreads()
    step = partial.size // 2
    while step > 0:
        if t < step:
            partial[t] = partial[t] + partial[t + step]
        cuda.syncthreads()
        step //= 2
    total = partial[0]
    cuda.syncthreads()
    return total


@cuda.jit(device=True)
def edge_slope(mode):
    """The slope of source_index outside the input: reflect -1, circular 1, replicate 0 (a
    constant), zeros 0 (with offsets -1: no source)."""
    return I32(-1) if mode == REFLECT else (I32(1) if mode == CIRCULAR else I32(0))


@cuda.jit(device=True)
def edge_offsets(mode, n):
    """(below, above): the offsets of source_index's linear maps outside [0, n): reflect -i and
    2(n-1) - i, replicate 0 and n-1, circular i + n and i - n, zeros -1 (no source)."""
    if mode == REFLECT:
        return I32(0), I32(2 * (n - 1))
    if mode == CIRCULAR:
        return I32(n), I32(-n)
    if mode == REPLICATE:
        return I32(0), I32(n - 1)
    return I32(-1), I32(-1)


@cuda.jit(device=True)
def source_map(i, n, slope, below, above):
    """source_index(i, n, mode) from the mode's slope and offsets, without branches: i inside
    [0, n), else slope * i + (below or above); -1 for a zero."""
    out_below, out_above = i < 0, i >= n
    mapped = I32(slope * i + (below if out_below else above))
    return mapped if out_below | out_above else i


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


@cuda.jit(device=True)
def forward_axis(count, k, s, d, pad):
    """Forward and grad-weight: pixel q reads padded row q*s + t*d - pad for tap t (conv.cu's
    Axis: count, taps, first, step, sq, st, off, so, ro)."""
    return count, k, np.int64(0), np.int64(1), s, d, -pad, np.int64(1), np.int64(0)


@cuda.jit(device=True)
def div32(a, b):
    """a // b of non-negative values below 2^32, in unsigned 32 bits: an inline division, where
    int64's is a subroutine call, and a kernel with any call keeps the global memory
    descriptor in vector registers (two R2UR before every global load and store)."""
    return np.int64(U32(a) // U32(b))


@cuda.jit(device=True)
def mod32(a, b):
    """a % b, as div32."""
    return np.int64(U32(a) % U32(b))


@cuda.jit(device=True)
def idiv(a, b):
    return a // b


@cuda.jit(device=True)
def imod(a, b):
    return a % b


def _nth_live_phase(narrow: bool):
    """nth_live_phase, its divisions (of non-negative integers: lo is a padding) in int64, or
    with ``narrow`` (32-bit offsets: every operand below 2^31) in unsigned 32 bits (div32)."""
    quot, rem = (div32, mod32) if narrow else (idiv, imod)

    @cuda.jit(device=True)
    def phase_axis(r, k, s, d, lo, length):
        """Grad-input, stride phase r: the padded rows r + s*u in [lo, lo + len). Tap i reaches
        them iff i*d = r (mod s) (numpy_backend._phase_taps), and the grad_out row it reads
        steps by -d/gcd(s, d) per tap: a stride-1 correlation (conv.cu's phase_axis)."""
        g, b = s, d
        while b:
            g, b = b, rem(g, b)
        step = quot(s, g)
        first = np.int64(-1)
        for i in range(min(k, s)):
            if rem(i * d, s) == r:
                first = np.int64(i)
                break
        taps = np.int64(0) if first < 0 else quot(k - first + step - 1, step)
        first = max(first, np.int64(0))
        u0 = quot(lo - r + s - 1, s)  # first u with r + s*u >= lo (lo >= 0, r < s)
        count = max(np.int64(0), quot(lo + length - r + s - 1, s) - u0)
        # floor((r - first*d) / s) for r < s (exact where a tap exists: first*d = r (mod s))
        off = u0 - quot(first * d - r + s - 1, s)
        return count, taps, first, step, np.int64(1), -quot(d, g), off, s, r + s * u0 - lo

    @cuda.jit(device=True)
    def nth_live_phase(p, j):
        """Grad-input's stride phase j, counting only phases that some tap reaches (an axis
        with pixels, ``[0]``, and taps, ``[1]``), as its two axes (conv.cu's nth_live_phase).
        The plans launch no slice past the last live phase; the axes both loops start from
        keep Numba's typing of the return defined on every path."""
        ah = phase_axis(np.int64(0), p[KH], p[SH], p[DH], p[LO_H], p[LEN_H])
        aw = phase_axis(np.int64(0), p[KW], p[SW], p[DW], p[LO_W], p[LEN_W])
        rh = np.int64(0)
        while rh < p[SH]:
            ah = phase_axis(rh, p[KH], p[SH], p[DH], p[LO_H], p[LEN_H])
            if ah[0] > 0 and ah[1] > 0:
                rw = np.int64(0)
                while rw < p[SW]:
                    aw = phase_axis(rw, p[KW], p[SW], p[DW], p[LO_W], p[LEN_W])
                    if aw[0] > 0 and aw[1] > 0:
                        if j == 0:
                            return ah, aw
                        j -= 1
                    rw += 1
            rh += 1
        return ah, aw

    return nth_live_phase


nth_live_phase, nth_live_phase32 = _nth_live_phase(False), _nth_live_phase(True)


@cuda.jit(device=True)
def digits(k, r1, r2):
    """Flat reduction index k -> (d0, d1, d2) with d1 < r1, d2 < r2."""
    return I32(k // (r1 * r2)), I32(k // r2 % r1), I32(k % r2)


@cuda.jit(device=True)
def digits32(k, r1, r2):
    """digits in unsigned 32 bits (0 <= k < 2^32, 1 <= r1 * r2 < 2^32; see div32)."""
    k, r1, r2 = U32(k), U32(r1), U32(r2)
    return I32(k // U32(r1 * r2)), I32(U32(k // r2) % r1), I32(k % r2)


@cuda.jit(device=True)
def advance(d0, d1, d2, e0, e1, e2, r1, r2):
    """(d0, d1, d2) + the delta (e0, e1, e2) (e1 < r1, e2 < r2): one carry per digit, no
    division (CUTLASS's precomputed filter deltas)."""
    d2 = I32(d2 + e2)
    carry = d2 >= r2
    if carry:
        d2 = I32(d2 - r2)
    d1 = I32(d1 + e1 + carry)
    if d1 >= r1:
        d1 = I32(d1 - r1)
        d0 = I32(d0 + 1)
    return I32(d0 + e0), d1, d2


# --------------------------------------------------------------------------- 1. implicit GEMM
def _inner_product(dtype: np.dtype, bk: int, tm: int, tn: int, lda: int, ldb: int):
    """mac(sa, sb, at, bt, acc): acc[i*tn + j] += sa[at + k*lda + i] * sb[bt + k*ldb + j] for
    k = 0 .. bk-1 in order. Numba has no unroll pragma and LLVM does not fully unroll the k
    loop, yet it must be unrolled for acc to live in registers and the shared reads to take
    constant offsets: ``mac`` is written out as bk calls of ``step`` (whose short loops LLVM
    unrolls). ``at`` and ``bt`` are uint32, so their sums with the offsets are known
    non-negative: no negative-index wraparound."""

    @cuda.jit(device=True)
    def step(sa, sb, at, bt, acc):
        fa = cuda.local.array(tm, dtype)
        fb = cuda.local.array(tn, dtype)
        for i in range(tm):
            fa[i] = sa[at + i]
        for j in range(tn):
            fb[j] = sb[bt + j]
        for i in range(tm):
            for j in range(tn):
                acc[i * tn + j] = cuda.fma(fa[i], fb[j], acc[i * tn + j])

    lines = ["def mac(sa, sb, at, bt, acc):"]
    lines += [f"    step(sa, sb, at + {k * lda}, bt + {k * ldb}, acc)" for k in range(bk)]
    namespace = {"step": step}
    exec("\n".join(lines), namespace)  # noqa: S102 (generated from the integers above)
    return cuda.jit(device=True)(namespace["mac"])


def _conv_gemm(dtype: np.dtype, tile: plan.TileConfig, wgrad: bool, zero_pad: bool, wide: bool):
    """out[m, col] = sum over the reduction of A[m, k] * B[k, col] (conv.cu's conv_gemm):
    forward: rows O/G, columns N*Ho*Wo, reduction taps (C/G, kH, kW); grad-input (transposed):
    the same per live stride phase, reduction (O/G, phase taps); grad-weight (``wgrad``):
    columns taps, reduction pixels (N, Ho, Wo). Block (x: BN columns, y: BM rows, z: slice =
    group, phase, split of the reduction: a split writes its partials at split x the output's
    size), BM x BN outputs; thread: TM x TN of them. BK-deep tiles of A (k-major) and B
    go through two shared stages; the next tile is read into registers while this one is
    multiplied. ``wide``: int64 offsets (a tensor past 2^31 elements), else uint32.
    ``zero_pad`` (zero padding; conv.cu's ZERO_PAD): each B column's offset holds its first
    tap's position, so an element costs one add and two unsigned compares; otherwise every
    position goes through source_map. Grad-input (transposed, stride phases) runs zero_pad
    instances only (grad_out's bounds are zeros; conv_pad_adjoint folds the other modes): the
    other instances, and grad-weight's, compile the forward axes alone."""
    bm, bn, bk, tm, tn, threads = tile.bm, tile.bn, tile.bk, tile.tm, tile.tn, tile.threads
    bdx = bn // tn
    pa, pb = bm * bk // threads, bn * bk // threads   # A and B elements loaded per thread
    # Loader maps (thread -> elements): A: k = tid % bk, rows tid // bk + r * lanes; B: grad-weight
    # the same (both run along pixels, contiguous), else k = tid // lanes, columns tid % lanes
    # + r * lanes (a warp reads consecutive pixels). Each operand has one reduction position.
    lanes = threads // bk
    assert threads == bdx * (bm // tm) and threads % bk == 0 and pa >= 1 and pb >= 1, tile
    lda, ldb = bm + 4, bn + 4                       # +4: conflict-free k-major stores
    # one shared array: stage s holds A at s * stage, then B at s * stage + stage_a
    stage_a, stage = bk * lda, bk * (lda + ldb)
    smem, outputs = 2 * stage, tm * tn              # array sizes must be constants
    states = 1 if wgrad else 2                      # reduction positions: A's, B's
    # Element offsets: ``ix`` arithmetic, every operation cut back to ix (in 32 bits LLVM then
    # keeps it 32-bit; zero padding's folded negative taps wrap modulo 2^32 and come out exact
    # once a real element's sum is formed), read as unsigned ``ux`` (no negative-index fixup).
    ix, ux = (np.int64, np.uint64) if wide else (np.int32, np.uint32)
    kint = ix                                       # reduction counts
    phases = zero_pad and not wgrad                 # may run grad-input's stride phases
    zero = dtype.type(0)
    mac = _inner_product(dtype, bk, tm, tn, lda, ldb)
    align = None if config.ENABLE_CUDASIM else 16   # 16-byte fragment reads (LDS.128)
    # 32-bit offsets: every count and position below 2^31, every division (slice decode,
    # column and reduction digits) in unsigned 32 bits (div32): no subroutine call
    quot, rem, dig, live_phase = ((idiv, imod, digits, nth_live_phase) if wide else
                                  (div32, mod32, digits32, nth_live_phase32))

    def conv_gemm(a, b, bias, out, p):
        tid = cuda.threadIdx.x
        z = np.int64(cuda.blockIdx.z)
        m0 = np.int64(cuda.blockIdx.y) * bm
        col0 = np.int64(cuda.blockIdx.x) * bn
        tx, ty = tid % bdx, tid // bdx
        # slice geometry (block-uniform): z = (group, live stride phase, split of the reduction)
        per_group = p[PHASES] * p[SPLITS]
        g, split = quot(z, per_group), rem(z, p[SPLITS])
        if phases and p[TRANSPOSED]:
            ah, aw = live_phase(p, quot(rem(z, per_group), p[SPLITS]))
        else:
            ah = forward_axis(p[Q_H], p[KH], p[SH], p[DH], p[PT])
            aw = forward_axis(p[Q_W], p[KW], p[SW], p[DW], p[PL])
        rows, kc = p[M], p[KC]
        plane = ah[0] * aw[0]
        b_chan0 = g * kc
        if wgrad:
            cols = kc * p[KH] * p[KW]
            total = p[BATCH] * plane
            r1, r2 = ah[0], aw[0]                   # reduction digits: image, row, column
            split_base = split * p[OUT_C] * cols    # this split's partials
        else:
            cols = p[BATCH] * plane
            total = kc * ah[1] * aw[1]
            r1, r2 = ah[1], aw[1]                   # reduction digits: channel, tap row, tap column
            split_base = split * p[BATCH] * p[OUT_C] * p[OUT_H] * p[OUT_W]
        k_begin = min(total, split * p[TILES_PER_SPLIT] * bk)
        k_end = min(total, k_begin + p[TILES_PER_SPLIT] * bk)
        if col0 >= cols or m0 >= rows:
            return
        # what the epilogue needs, parked in shared memory rather than in registers across
        # the main loop (the first barrier publishes it)
        epi = cuda.shared.array(EPILOGUE_FIELDS, np.int64)
        if tid == 0:
            epi[0], epi[1], epi[2], epi[3], epi[4] = g * rows, rows, cols, m0, col0
            epi[5], epi[6], epi[7], epi[8] = ah[0], aw[0], ah[7], ah[8]
            epi[9], epi[10] = aw[7], aw[8]
            epi[11] = split_base
        r1, r2 = max(r1, np.int64(1)), max(r2, np.int64(1))
        e0, e1, e2 = dig(bk, r1, r2)
        r1, r2 = I32(r1), I32(r2)
        tiles = kint((k_end - k_begin + bk - 1) // bk)
        # A's rows: weight rows (forward: o; grad-input: c at the phase's first tap), grad_out
        # channels (grad-weight); the reduction digits add d0*a_k0 + d1*a_k1 + d2*a_k2
        sa0, sa1, sa2, sa3 = p[A_STRIDE], p[A_STRIDE + 1], p[A_STRIDE + 2], p[A_STRIDE + 3]
        sb0, sb1, sb2, sb3 = p[B_STRIDE], p[B_STRIDE + 1], p[B_STRIDE + 2], p[B_STRIDE + 3]
        if wgrad:
            a_base, a_row = g * rows * sa1, sa1
            a_k0, a_k1, a_k2 = ix(sa0), ix(sa2), ix(sa3)
        elif phases and p[TRANSPOSED]:
            a_base, a_row = g * kc * sa0 + ah[2] * sa2 + aw[2] * sa3, sa1
            a_k0, a_k1, a_k2 = ix(sa0), ix(ah[3] * sa2), ix(aw[3] * sa3)
        else:
            a_base, a_row = g * rows * sa0, sa0
            a_k0, a_k1, a_k2 = ix(sa1), ix(sa2), ix(sa3)
        # this thread's A rows: m_a + r * lanes, at a_first + r * a_next
        m_a = m0 + tid // bk
        a_rows = I32(rows - m_a)                    # rows r * lanes < a_rows exist
        a_first = ix(a_base + min(m_a, rows - 1) * a_row)
        a_next = ix(lanes * a_row)
        # B's columns. Forward / grad-input: image n, pixel (qh, qw), gathering b at row
        # qh*sq + t*st + off for tap t. Grad-weight: taps (c, i, j), gathering x at
        # (oh*sh + i*dh - pt, ow*sw + j*dw - pl) for pixel (n, oh, ow). Columns past the
        # slice load the last column's elements: their outputs are never stored.
        b_off = cuda.local.array(pb, ix)
        b_h0 = cuda.local.array(pb, I32)
        b_w0 = cuda.local.array(pb, I32)
        bh, bw = I32(p[B_H]), I32(p[B_W])
        # padding as linear maps of a coordinate i outside [0, n): below a_lo*i + b_lo, above
        # a_hi*i + b_hi (source_index without branches); zeros: masked loads instead
        slope = edge_slope(p[MODE])
        lo_h, hi_h = edge_offsets(p[MODE], bh)
        lo_w, hi_w = edge_offsets(p[MODE], bw)
        for r in range(pb):
            if wgrad:
                c, i, j = dig(min(col0 + tid // bk + r * lanes, cols - 1), p[KH], p[KW])
                base = (b_chan0 + c) * sb1
                b_h0[r] = I32(i * p[DH] - p[PT])
                b_w0[r] = I32(j * p[DW] - p[PL])
            else:
                n, qh, qw = dig(min(col0 + tid % lanes + r * lanes, cols - 1), ah[0], aw[0])
                base = n * sb0 + b_chan0 * sb1
                b_h0[r] = I32(qh * ah[4] + ah[6])
                b_w0[r] = I32(qw * aw[4] + aw[6])
            if zero_pad:  # the first tap's position folded in
                base += b_h0[r] * sb2 + b_w0[r] * sb3
            b_off[r] = ix(base)
        if wgrad:
            st_h, st_w = I32(p[SH]), I32(p[SW])
        else:
            st_h, st_w = I32(ah[5]), I32(aw[5])
        chan = ix(sb0 if wgrad else sb1)            # B's first digit: image or channel
        sb2, sb3 = ix(sb2), ix(sb3)
        # reduction positions (k_begin + kk[s] + t * bk) as digits
        kk = cuda.local.array(states, I32)
        k0 = cuda.local.array(states, I32)
        k1 = cuda.local.array(states, I32)
        k2 = cuda.local.array(states, I32)
        for s in range(states):
            kk[s] = I32(tid % bk if s == 0 else tid // lanes)
            k0[s], k1[s], k2[s] = dig(k_begin + kk[s], r1, r2)
        k_left = kint(k_end - k_begin)              # reduction left from this tile on
        a_reg = cuda.local.array(pa, dtype)
        b_reg = cuda.local.array(pb, dtype)
        sm = cuda.shared.array(smem, dtype, alignment=align)
        acc = cuda.local.array(outputs, dtype)
        for i in range(outputs):
            acc[i] = zero
        s_b = 0 if wgrad else 1                     # B's reduction position
        # where this thread stores its A and B elements in a stage, and reads its fragments
        st_a = U32(kk[0] * lda + tid // bk)
        st_b = U32(stage_a + (kk[0] * ldb + tid // bk if wgrad else kk[1] * ldb + tid % lanes))
        at_a, at_b = U32(ty * tm), U32(stage_a + tx * tn)
        t = kint(0)
        while t <= tiles:
            # tile t's stage, and tile t-1's (multiples of the stage size that LLVM can see:
            # 16-byte fragment reads)
            write = U32((t & 1) * stage)
            read = U32(stage - write)
            # 1. read tile t into registers (its global loads fly while tile t-1 multiplies);
            # past the last tile every load is masked off (k_left <= 0), so no branch
            a_k = ix(ix(a_first + ix(k0[0] * a_k0)) + ix(ix(k1[0] * a_k1) + ix(k2[0] * a_k2)))
            a_in = kk[0] < k_left
            for r in range(pa):
                value = zero
                if a_in & (r * lanes < a_rows):
                    value = a[ux(ix(a_k + ix(r * a_next)))]
                a_reg[r] = value
            b_in = kk[s_b] < k_left
            h_k, w_k = I32(k1[s_b] * st_h), I32(k2[s_b] * st_w)
            b_k = ix(k0[s_b] * chan)
            if zero_pad:
                b_k = ix(b_k + ix(ix(h_k * sb2) + ix(w_k * sb3)))
            for r in range(pb):
                h, w = I32(b_h0[r] + h_k), I32(b_w0[r] + w_k)
                value = zero
                if zero_pad:
                    if b_in & (U32(h) < U32(bh)) & (U32(w) < U32(bw)):
                        value = b[ux(ix(b_off[r] + b_k))]
                else:
                    h = source_map(h, bh, slope, lo_h, hi_h)
                    w = source_map(w, bw, slope, lo_w, hi_w)
                    if b_in & (h >= 0) & (w >= 0):
                        if wide:  # h, w >= 0: unsigned 32 x 64-bit products (2 instructions, not 4)
                            value = b[ux(b_off[r] + b_k) + ux(U32(h)) * ux(sb2)
                                      + ux(U32(w)) * ux(sb3)]
                        else:
                            value = b[ux(ix(ix(b_off[r] + b_k) + ix(ix(h * sb2) + ix(w * sb3))))]
                b_reg[r] = value
            k_left = kint(k_left - bk)
            for s in range(states):
                k0[s], k1[s], k2[s] = advance(k0[s], k1[s], k2[s], e0, e1, e2, r1, r2)
            # 2. multiply tile t-1 from its shared stage
            if t > 0:
                mac(sm, sm, U32(read + at_a), U32(read + at_b), acc)
            # 3. registers -> the other stage (freed by the barrier that ended tile t-2); the
            # constant r * lanes added outside the uint32 (an int64 index LLVM knows is
            # non-negative): an immediate offset of one address, not an add and a LEA a store
            for r in range(pa):
                sm[U32(write + st_a) + r * lanes] = a_reg[r]
            for r in range(pb):
                sm[U32(write + st_b) + r * lanes] = b_reg[r]
            t = kint(t + 1)
            cuda.syncthreads()

    # epilogue: bias last, after the whole sum, then ReLU if asked (conv.cu's Epilogue; a
        # split writes its partials, and conv_splitk_reduce applies them). The thread's columns
        # are consecutive: decode the first, step to the others (small bodies, so the loops
        # unroll and acc stays in registers)
        chan0, rows, cols, m0, col0 = epi[0], epi[1], epi[2], epi[3], epi[4]
        count_h, count_w, so_h, ro_h, so_w, ro_w = epi[5], epi[6], epi[7], epi[8], epi[9], epi[10]
        col = col0 + tx * tn
        col_off = cuda.local.array(tn, np.int64)
        if wgrad:
            row_step = cols
            for j in range(tn):
                col_off[j] = epi[11] + chan0 * cols + col + j
        else:
            row_step = p[OUT_H] * p[OUT_W]
            n, qh, qw = dig(min(col, cols - 1), count_h, count_w)
            for j in range(tn):
                col_off[j] = epi[11] + ((n * p[OUT_C] + chan0) * p[OUT_H] + qh * so_h + ro_h) \
                    * p[OUT_W] + qw * so_w + ro_w
                qw += 1
                if qw == count_w:
                    qw = I32(0)
                    qh += 1
                    if qh == count_h:
                        qh = I32(0)
                        n += 1
        has_bias = not wgrad and p[SPLITS] == 1 and bias.size > 0
        relu = not wgrad and p[SPLITS] == 1 and p[RELU] != 0
        for i in range(tm):
            m = m0 + ty * tm + i
            if m < rows:
                bias_m = bias[chan0 + m] if has_bias else zero
                row = m * row_step
                for j in range(tn):
                    if col + j < cols:
                        value = acc[i * tn + j]
                        if has_bias:
                            value += bias_m
                        if relu and value < zero:  # NaN stays NaN, as torch.relu
                            value = zero
                        out[ux(row + col_off[j])] = value

    return conv_gemm


MAX_REGISTERS = 128  # two 256-thread blocks per SM (64K registers)


@functools.cache
def conv_gemm(dtype, tile: plan.TileConfig, wgrad: bool, zero_pad: bool, wide: bool):
    """The lazily compiled conv_gemm instance (``gpu_plan.numba_gemm_kernel`` names it); launch
    with block ``tile.threads``. The register cap is a link option (the simulator has none)."""
    cap = {} if config.ENABLE_CUDASIM else {"max_registers": MAX_REGISTERS}
    return cuda.jit(_conv_gemm(np.dtype(dtype), tile, wgrad, zero_pad, wide), **cap)


# --------------------------------------------------------------------------- 2. direct (few rows)
DIRECT_CHUNK = 512  # reduction indices whose weights are staged at a time (conv.cu's CHUNK)
DIRECT_F64_REGISTERS = 160  # conv_direct of 3 and 4 rows in float64 (see conv_direct)
NO_ROW = -(1 << 30)  # a row no tap reaches (conv.cu's NO_ROW)


def _conv_direct(dtype: np.dtype, rows: int):
    """out[m, col] = sum over the taps of A[m, k] * B[k, col] for slices writing ``rows`` <= 4
    rows (channels), forward or grad-input, zero padding, 32-bit offsets (conv.cu's
    conv_direct): a GEMM tile would be mostly empty (the stem's and DeepSpeech's grad-input).
    Block (x: columns, y: ``rows`` rows, z: slice); a thread owns DIRECT_PIXELS pixels and
    all rows, the rows' weights staged in shared memory DIRECT_CHUNK taps at a time. Its
    pixels lie one of two ways (conv.cu's): segment, where the pixel column step is 1 and the
    tap column step +-1, DIRECT_PIXELS consecutive pixels of one output row, whose reads along
    a kernel row slide a window of registers one input column a tap (one load a tap); spread,
    otherwise, pixels blockDim apart sharing one walk over the taps (tap shift, carries, row
    bounds), each adding a column bound, one load and ``rows`` multiply-adds a tap. A stride
    phase no tap reaches gets its bias (or zeros), as conv_gemm's."""
    px = plan.DIRECT_PIXELS
    outputs, staged = px * rows, DIRECT_CHUNK * rows  # array sizes must be constants
    zero = dtype.type(0)

    def conv_direct(a, b, bias, out, p):
        tid, threads = cuda.threadIdx.x, cuda.blockDim.x
        z = np.int64(cuda.blockIdx.z)
        m0 = np.int64(cuda.blockIdx.y) * rows
        # index decoding: the slice (group; grad-input: live stride phase) and its two axes
        if p[TRANSPOSED]:
            g = div32(z, p[PHASES])
            ah, aw = nth_live_phase32(p, mod32(z, p[PHASES]))
        else:
            g = z
            ah = forward_axis(p[Q_H], p[KH], p[SH], p[DH], p[PT])
            aw = forward_axis(p[Q_W], p[KW], p[SW], p[DW], p[PL])
        m_rows, kc = p[M], p[KC]
        cols = p[BATCH] * ah[0] * aw[0]
        k_end = kc * ah[1] * aw[1]
        # bounds: the block's (uniform); the segment layout's runs of px pixels, a row's last
        # one possibly short (gpu_plan.direct_columns)
        if cols == 0 or m0 >= m_rows:
            return
        segment = aw[4] == 1 and (aw[5] == 1 or aw[5] == -1)
        row_len = aw[0]
        runs, rows_out = (row_len + px - 1) // px, div32(cols, row_len)
        block0 = np.int64(cuda.blockIdx.x) * threads
        if block0 * (1 if segment else px) >= (rows_out * runs if segment else cols):
            return
        # body. A: weight rows (forward: o; grad-input: c at the phase's first tap); the
        # reduction digits (channel, tap row, tap column) add d0*a_k0 + d1*a_k1 + d2*a_k2
        sa0, sa1, sa2, sa3 = p[A_STRIDE], p[A_STRIDE + 1], p[A_STRIDE + 2], p[A_STRIDE + 3]
        sb0, sb1, sb2, sb3 = p[B_STRIDE], p[B_STRIDE + 1], p[B_STRIDE + 2], p[B_STRIDE + 3]
        if p[TRANSPOSED]:
            a_base, a_row = g * kc * sa0 + ah[2] * sa2 + aw[2] * sa3, sa1
            a_k0, a_k1, a_k2 = sa0, ah[3] * sa2, aw[3] * sa3
        else:
            a_base, a_row = g * m_rows * sa0, sa0
            a_k0, a_k1, a_k2 = sa1, sa2, sa3
        r1, r2 = max(ah[1], np.int64(1)), max(aw[1], np.int64(1))
        bh, bw = I32(p[B_H]), I32(p[B_W])
        st_h, st_w = I32(ah[5]), I32(aw[5])
        col_step = I32(st_w * sb3)
        row_step = I32(st_h * sb2 - r2 * col_step)
        outer_step = I32(sb1 - r1 * st_h * sb2)
        # segment: the thread's run (output row run_row, first pixel run_w0 of px); spread:
        # each pixel's B offset, row and column (a pixel past the columns: a row no tap reaches)
        run_row = div32(block0 + tid, runs)
        run_w0 = (block0 + tid - run_row * runs) * px
        live_run = run_row < rows_out
        n, qh, qw = digits32(run_row * row_len + run_w0 if live_run else 0, ah[0], aw[0])
        h, w = I32(qh * ah[4] + ah[6]), I32(qw * aw[4] + aw[6])
        row_b = I32(n * sb0 + g * kc * sb1 + h * sb2)
        row_h = h if live_run else I32(NO_ROW)
        cbase = I32(w if st_w > 0 else w + px - 1)  # window slot 0's column at tap column 0
        pix_b = cuda.local.array(px, I32)
        pix_h = cuda.local.array(px, I32)
        pix_w = cuda.local.array(px, I32)
        for q in range(px):
            col = block0 * px + q * threads + tid
            n, qh, qw = digits32(min(col, cols - 1), ah[0], aw[0])
            h, w = I32(qh * ah[4] + ah[6]), I32(qw * aw[4] + aw[6])
            pix_b[q] = I32(n * sb0 + g * kc * sb1 + h * sb2 + w * sb3)
            pix_h[q] = h if col < cols else I32(NO_ROW)
            pix_w[q] = w
        acc = cuda.local.array(outputs, dtype)
        for i in range(outputs):
            acc[i] = zero
        w_end = cuda.local.array(px, U32)
        wr = cuda.local.array(rows, dtype)  # this tap's weights, read once for the pixels
        win = cuda.local.array(px, dtype)   # the segment layout's window of input columns
        wts = cuda.shared.array(staged, dtype)
        r1_32, r2_32 = I32(r1), I32(r2)
        for k0 in range(0, k_end, DIRECT_CHUNK):
            n_k = I32(min(np.int64(DIRECT_CHUNK), k_end - k0))
            cuda.syncthreads()  # the previous chunk's weights are consumed
            # (a range with a run-time step would count its trips with an int64 division)
            i = I32(tid)
            while i < n_k * rows:
                r = i % rows
                d0, d1, d2 = digits32(k0 + i // rows, r1, r2)
                value = zero
                if m0 + r < m_rows:
                    value = a[a_base + (m0 + r) * a_row + d0 * a_k0 + d1 * a_k1 + d2 * a_k2]
                wts[i] = value
                i = I32(i + threads)
            cuda.syncthreads()
            d0, d1, d2 = digits32(k0, r1, r2)
            if segment:
                # the chunk's taps a run along one kernel row at a time. Accumulator u is
                # pixel u of the run (st_w 1) or px-1-u (st_w -1), which reads column
                # cbase + st_w * (u + tap column): at the run's tap j, window slot u + j
                # (mod px). px taps at a time the slots rotate (the entering column replaces
                # the one just left: constant slot numbers, no register moves), the run's
                # last taps shift them
                kk = I32(0)
                while kk < n_k:
                    length = min(I32(r2_32 - d2), I32(n_k - kk))
                    th = I32(d1 * st_h)
                    col_end = U32(bw) if U32(row_h + th) < U32(bh) else U32(0)
                    col = I32(cbase + st_w * d2)
                    off = I32(row_b + d0 * sb1 + th * sb2 + col * sb3)
                    for u in range(px):
                        win[u] = b[U32(off)] if U32(col) < col_end else zero
                        col, off = I32(col + st_w), I32(off + col_step)
                    at, j = U32(kk * rows), I32(0)
                    while I32(j + px) <= length:
                        for jj in range(px):
                            for r in range(rows):
                                wv = wts[at + r]
                                for u in range(px):
                                    acc[u * rows + r] = cuda.fma(wv, win[(u + jj) % px],
                                                                 acc[u * rows + r])
                            at = U32(at + rows)
                            win[jj] = b[U32(off)] if U32(col) < col_end else zero
                            col, off = I32(col + st_w), I32(off + col_step)
                        j = I32(j + px)
                    while j < length:
                        for r in range(rows):
                            wv = wts[at + r]
                            for u in range(px):
                                acc[u * rows + r] = cuda.fma(wv, win[u], acc[u * rows + r])
                        at = U32(at + rows)
                        for u in range(px - 1):
                            win[u] = win[u + 1]
                        win[px - 1] = b[U32(off)] if U32(col) < col_end else zero
                        col, off = I32(col + st_w), I32(off + col_step)
                        j = I32(j + 1)
                    kk, d2 = I32(kk + length), I32(d2 + length)
                    if d2 == r2_32:
                        d2, d1 = I32(0), I32(d1 + 1)
                        if d1 == r1_32:
                            d1, d0 = I32(0), I32(d0 + 1)
                continue
            # spread: tap by tap, the inner digit moves the column, its carry the row, the
            # row's carry the channel; the tap's offset by constant deltas
            th, tw = I32(d1 * st_h), I32(d2 * st_w)
            tap = I32(d0 * sb1 + th * sb2 + tw * sb3)
            for q in range(px):  # a pixel's column bound, 0 while the tap's row is outside
                w_end[q] = U32(bw) if U32(pix_h[q] + th) < U32(bh) else U32(0)
            kk, at = I32(0), U32(0)  # 32-bit counters: no 64-bit carries in the loop
            while kk < n_k:
                for r in range(rows):
                    wr[r] = wts[at + r]
                for q in range(px):
                    if U32(pix_w[q] + tw) < w_end[q]:
                        v = b[U32(pix_b[q] + tap)]
                        for r in range(rows):
                            acc[q * rows + r] = cuda.fma(wr[r], v, acc[q * rows + r])
                tw, tap = I32(tw + st_w), I32(tap + col_step)
                kk, at, d2 = I32(kk + 1), U32(at + rows), I32(d2 + 1)
                if d2 == r2_32:
                    d2, tw, th, tap = I32(0), I32(0), I32(th + st_h), I32(tap + row_step)
                    d1 = I32(d1 + 1)
                    if d1 == r1_32:
                        d1, th, tap = I32(0), I32(0), I32(tap + outer_step)
                    for q in range(px):
                        w_end[q] = U32(bw) if U32(pix_h[q] + th) < U32(bh) else U32(0)
        # epilogue: bias last, then ReLU if asked (conv.cu's Epilogue)
        chan0 = g * m_rows
        has_bias, relu = bias.size > 0, p[RELU] != 0
        for q in range(px):
            if segment:  # accumulator q: pixel q of the run, or px-1-q (st_w -1)
                w = run_w0 + (q if st_w > 0 else px - 1 - q)
                col = run_row * row_len + w if live_run and w < row_len else cols
            else:
                col = block0 * px + q * threads + tid
            if col < cols:
                n, qh, qw = digits32(col, ah[0], aw[0])
                col_off = ((n * p[OUT_C] + chan0) * p[OUT_H] + qh * ah[7] + ah[8]) * p[OUT_W] \
                    + qw * aw[7] + aw[8]
                for r in range(rows):
                    m = m0 + r
                    if m < m_rows:
                        value = acc[q * rows + r]
                        if has_bias:
                            value += bias[chan0 + m]
                        if relu and value < zero:  # NaN stays NaN, as torch.relu
                            value = zero
                        out[U32(col_off + m * p[OUT_H] * p[OUT_W])] = value

    return conv_direct


@functools.cache
def conv_direct(dtype, rows: int):
    """The lazily compiled conv_direct instance for slices of ``rows`` rows
    (``gpu_plan.numba_direct_kernel`` names it); any block size, registers capped as
    conv_gemm's (two 256-thread blocks per SM), but for float64 with three or four rows:
    their 8-byte accumulators, window and a group of taps' weights spill at 128 registers
    (28 and 48 bytes), so they get DIRECT_F64_REGISTERS, one block per SM."""
    wide = np.dtype(dtype) == np.float64 and rows >= 3
    cap = {} if config.ENABLE_CUDASIM else {
        "max_registers": DIRECT_F64_REGISTERS if wide else MAX_REGISTERS}
    return cuda.jit(_conv_direct(np.dtype(dtype), rows), **cap)


# --------------------------------------------------------------------------- 3-5. the other kernels
@functools.cache
def conv_kernels(dtype, block: int) -> dict:
    """conv_splitk_reduce, conv_grad_bias, conv_pad_adjoint and conv_fill_bias for ``dtype``;
    ``block`` is the block size (a power of two) of conv_grad_bias's tree."""
    dtype = np.dtype(dtype)
    zero = dtype.type(0)

    @cuda.jit
    def conv_splitk_reduce(a, b, bias, out, p):
        """out (total) = sum over s of b (splits, total), s ascending, then + bias[i / plane %
        out_c] and ReLU where asked: one element per thread (conv.cu's conv_splitk_reduce; the
        sums of reference.conv2d, conv2d_grad_input, conv2d_grad_weight)."""
        total = p[TOTAL]
        i = np.int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        if i >= total:
            return
        s = b[i]
        for k in range(1, p[SPLITS]):
            s += b[k * total + i]
        if bias.size > 0:
            s += bias[i // p[PLANE] % p[OUT_C]]
        if p[RELU] != 0 and s < zero:  # NaN stays NaN, as torch.relu
            s = zero
        out[i] = s

    @cuda.jit
    def conv_fill_bias(a, b, bias, out, p):
        """out (total) = bias[i / plane % out_c], or zero: grad-input positions that no kernel
        tap reaches (conv.cu's conv_fill_bias), before the GEMM writes the others."""
        start, stride = grid_start()
        for i in range(start, p[TOTAL], stride):
            out[i] = bias[i // p[PLANE] % p[OUT_C]] if bias.size > 0 else zero

    @cuda.jit
    def conv_grad_bias(a, b, bias, out, p):
        """out (O,) = sum of a = grad_out (N, O, Ho, Wo) over batch and pixels: block o, each
        thread sums pixels t, t + block, ... of every image, then a fixed tree (conv.cu's
        conv_grad_bias; reference.conv2d_grad_bias)."""
        o = np.int64(cuda.blockIdx.x)
        t = cuda.threadIdx.x
        plane = p[Q_H] * p[Q_W]
        s = zero
        for n in range(p[BATCH]):
            row = (n * p[A_STRIDE] + o * p[A_STRIDE + 1])
            pix = np.int64(t)  # a plane below 2^31 pixels, as conv.cu's: 32-bit divisions
            while pix < plane:
                h = div32(pix, p[Q_W])
                s += a[row + h * p[A_STRIDE + 2] + (pix - h * p[Q_W]) * p[A_STRIDE + 3]]
                pix += block
        total = block_sum(cuda.shared.array(block, dtype), t, s)
        if t == 0:
            out[o] = total

    @cuda.jit(device=True)
    def pad_candidate(t, i, before, n):
        """The padded positions, ascending, that may copy input position i: the leading pad,
        i itself, the trailing pad (candidate t of before + 1 + after)."""
        return t if t < before else (before + i if t == before else n + t - 1)

    @cuda.jit
    def conv_pad_adjoint(a, b, bias, out, p):
        """out (N, C, H, W) gathers, for each element, b = the padded gradient (N, C, len_h,
        len_w) at every padded position that copies it, rows then columns ascending, then
        adds bias (conv.cu's conv_pad_adjoint; reference.pad_adjoint)."""
        i = np.int64(cuda.blockIdx.x) * cuda.blockDim.x + cuda.threadIdx.x
        hh, ww = p[OUT_H], p[OUT_W]
        if i >= p[BATCH] * p[OUT_C] * hh * ww:
            return
        w, h = i % ww, i // ww % hh
        image = i // (hh * ww)
        g0 = image * p[LEN_H] * p[LEN_W]
        s = zero
        for th in range(p[LEN_H] - hh + 1):
            r = pad_candidate(th, h, p[PT], hh)
            if source_index(r - p[PT], hh, p[MODE]) == h:
                for tw in range(p[LEN_W] - ww + 1):
                    c = pad_candidate(tw, w, p[PL], ww)
                    if source_index(c - p[PL], ww, p[MODE]) == w:
                        s += b[g0 + r * p[LEN_W] + c]
        if bias.size > 0:
            s += bias[image % p[OUT_C]]
        out[i] = s

    return dict(conv_splitk_reduce=conv_splitk_reduce, conv_grad_bias=conv_grad_bias,
                conv_pad_adjoint=conv_pad_adjoint, conv_fill_bias=conv_fill_bias)


@cuda.jit
def copy_strided(src, dst):
    """dst (C-contiguous) = src (any strides, e.g. a flipped kernel view): thread per element.
    Numba-only: the CUDA kernels read strides, the Numba twins take contiguous arrays."""
    start, stride = grid_start()
    for e in range(start, dst.size, stride):
        a, b, c, d = split4(e, dst.shape[1], dst.shape[2], dst.shape[3])
        dst[a, b, c, d] = src[a, b, c, d]
