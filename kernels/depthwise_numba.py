"""Numba CUDA kernels of depthwise / channel-multiplier convolutions (weight (O, 1, kH, kW),
groups G > 1, M = O / G outputs per input channel): the twins of kernels/depthwise.cu (same
names, same ConvParams fields, same sums), launched by ``gpuconv.backends.numba_backend``
from ``gpu_plan``'s ``numba_depthwise_*_plan``.

reference: gpuconv.backends.reference.conv2d, reference.conv2d_grad_input and
reference.conv2d_grad_weight; checked against the NumPy backend through the goldens and
tests/test_numba_random.py.

Kernels (each the only one for its op on depthwise convs; 3. is a path inside 1. and 2.):
1. conv_depthwise<K> forward: y[n, o, oh, ow] = sum_{i,j} w[o, 0, i, j] *
   xpad[n, o / M, oh*sh + i*dh - pt, ow*sw + j*dw - pl] + bias[o] (bias last; then ReLU when
   relu). A block computes a (by rows) x (bx * DW_V columns) output tile of one plane; the
   source tile plus halo is staged in shared memory (padding modes through tile_source_index);
   each thread DW_V consecutive outputs of a row. K = 3, 5, 7 with unit column dilation and
   column step 1 or 2: each tap row's segment and weights in registers; K = 0: any kH x kW.
2. conv_depthwise<K> grad-input (transposed = 1): t[n, c, th, tw] = sum_{m<M} sum_{i,j}
   w[c*M + m, 0, i, j] * gy[n, c*M + m, oh, ow] over oh*sh + i*dh = th + lo_h,
   ow*sw + j*dw = tw + lo_w; t is dx (zeros padding) or the padded gradient that
   conv_pad_adjoint folds back. Stride 1: item 1's tile over gy with the flipped kernel;
   larger strides: item 3.
3. direct path of 1 and 2 (strided grad-input, a tile over DW_TILE_BYTES): the same outputs
   per thread, taps read from global memory.
4. conv_depthwise_grad_weight<K>: dw[o, 0, i, j] = sum_n sum_{oh,ow} gy[n, o, oh, ow] *
   xpad[n, o / M, oh*sh + i*dh - pt, ow*sw + j*dw - pl]: a block per (o, batch chunk), the
   threads as rows of 32 columns (depthwise.cu's 8 x 32 on the GPU), the K x K sums in
   registers (a pixel's K source columns found once for all tap rows; zero padding with planes
   addressable in 32 bits: each tap bounded by an unsigned compare and offset in 32 bits, the
   same pixels and taps in the same order as the other modes' source_index path, so the same
   bits), a fixed shared-memory tree per tap; conv_splitk_reduce adds the chunks' partials
   in order (no atomics).

Every kernel takes ``ConvParams`` (kernels/common.cuh) as its arguments: the pointer fields
(a, b, bias, out) as flat device arrays, then one int64 tuple of the scalar fields in the
struct's order (``gpu_plan.scalar_slots(CONV_FIELDS)``). A null pointer is an empty array.
Numba has no 16-byte loads: tile rows are staged element by element (row stride = the tile's
width, so a tile that depthwise.cu stages may be narrower here; both paths give the same
sums). Divisions take unsigned 32-bit operands (gpu_plan keeps planes below 2^32).
"""

from __future__ import annotations

import functools

import numpy as np
from numba import config, cuda

from gpuconv.backends import gpu_plan as plan
from gpuconv.kernels.conv_numba import (I32, ZEROS, block_sum, div32, source_index,
                                         tile_source_index)

_SLOT = plan.scalar_slots(plan.CONV_FIELDS)
A_STRIDE, B_STRIDE = _SLOT["a_stride"], _SLOT["b_stride"]
(BATCH, B_H, B_W, OUT_C, OUT_H, OUT_W, M, KH, KW, SH, SW, DH, DW, PT, PL, Q_H, Q_W, LO_H, LO_W,
 MODE, TRANSPOSED, TILES_PER_SPLIT, RELU) = (_SLOT[name] for name in (
    "batch", "b_h", "b_w", "out_c", "out_h", "out_w", "m", "kh", "kw", "sh", "sw", "dh", "dw",
    "pt", "pl", "q_h", "q_w", "lo_h", "lo_w", "mode", "transposed", "tiles_per_split", "relu"))
DW_V = plan.DW_V
U32, U64 = np.uint32, np.uint64
MAX_REGISTERS = 128  # two 256-thread blocks per SM


def _jit(kernel):
    """A kernel under the register cap (a link option; the simulator has none)."""
    return cuda.jit(kernel, **({} if config.ENABLE_CUDASIM else {"max_registers": MAX_REGISTERS}))


SPAN_32 = 0x7FFFFFFF  # the largest offset an int32 holds


@cuda.jit(device=True)
def span(count, stride):
    """The offset between the first and the last of ``count`` elements ``stride`` apart."""
    return (count - 1) * abs(stride)


@functools.cache
def conv_depthwise(dtype, k: int):
    """conv_depthwise<k> for ``dtype`` (k = 3, 5, 7; 0: any kH x kW from the parameters);
    launch with the plan's (bx, by) block."""
    dtype = np.dtype(dtype)
    zero = dtype.type(0)
    capacity = plan.DW_TILE_BYTES // dtype.itemsize

    def segment_taps(step):
        """acc[v] += the k x k taps of output column v (item 1's registers path, column step
        ``step``): per tap row, its k weights and its segment of (DW_V - 1) * step + k tile
        values in registers."""
        width = max(k, 1)  # array sizes must be constants
        length = (DW_V - 1) * step + width

        @cuda.jit(device=True)
        def taps(a, w0, sa2, sa3, flip, tile, base, ld, dh, acc):
            seg = cuda.local.array(length, dtype)
            w = cuda.local.array(width, dtype)
            for i in range(k):
                wi = k - 1 - i if flip else i
                for j in range(k):
                    wj = k - 1 - j if flip else j
                    w[j] = a[w0 + wi * sa2 + wj * sa3]
                row = base + U32(i * dh * ld)
                for e in range(length):
                    seg[e] = tile[row + U32(e)]
                for j in range(k):
                    for v in range(DW_V):
                        acc[v] = cuda.fma(w[j], seg[v * step + j], acc[v])

        return taps

    segment_taps1, segment_taps2 = segment_taps(1), segment_taps(2)

    @cuda.jit(device=True)
    def tile_taps(a, w0, sa2, sa3, flip, kh, kw, tile, base, ld, dh, dw, step, acc):
        """acc[v] += the kh x kw taps of output column v from the tile, weights one by one."""
        for i in range(kh):
            wi = kh - 1 - i if flip else i
            for j in range(kw):
                wj = kw - 1 - j if flip else j
                wij = a[w0 + wi * sa2 + wj * sa3]
                tap = base + U32(i * dh * ld + j * dw)
                for v in range(DW_V):
                    acc[v] = cuda.fma(wij, tile[tap + U32(v * step)], acc[v])

    @cuda.jit(device=True)
    def direct_taps(a, b, p, w0, src, kh, kw, oh, ow, count, acc):
        """Item 3: acc[v] += every tap of output (oh, ow + v) read from global memory (grad-input
        keeps the taps whose output position divides by the stride)."""
        transposed = p[TRANSPOSED] != 0
        sh, sw, dh, dw = p[SH], p[SW], p[DH], p[DW]
        for i in range(kh):
            if transposed:
                num = oh + p[LO_H] - i * dh
                sr = -1
                if num >= 0:
                    q = div32(num, sh)
                    if q * sh == num and q < p[B_H]:
                        sr = q
            else:
                sr = np.int64(source_index(oh * sh + i * dh - p[PT], p[B_H], p[MODE]))
            if sr < 0:
                continue
            row = src + sr * p[B_STRIDE + 2]
            for j in range(kw):
                wij = a[w0 + i * p[A_STRIDE + 2] + j * p[A_STRIDE + 3]]
                for v in range(DW_V):
                    sc = -1
                    if v < count:
                        if transposed:
                            num = ow + v + p[LO_W] - j * dw
                            if num >= 0:
                                q = div32(num, sw)
                                if q * sw == num and q < p[B_W]:
                                    sc = q
                        else:
                            sc = np.int64(source_index((ow + v) * sw + j * dw - p[PL], p[B_W],
                                                       p[MODE]))
                    if sc >= 0:
                        acc[v] = cuda.fma(wij, b[row + sc * p[B_STRIDE + 3]], acc[v])

    def conv_depthwise(a, b, bias, out, p):
        # index decoding: block (bx, by): a tile of by rows x bx*DW_V columns; grid (x tiles,
        # y tiles, planes), rows and planes looped by the grid so every thread meets every
        # barrier
        tile = cuda.shared.array(capacity, dtype)
        acc = cuda.local.array(DW_V, dtype)
        kh, kw = (np.int64(k), np.int64(k)) if k else (p[KH], p[KW])
        transposed = p[TRANSPOSED] != 0
        step_h = np.int64(1) if transposed else p[SH]
        step_w = np.int64(1) if transposed else p[SW]
        mode = ZEROS if transposed else p[MODE]
        terms = p[M] if transposed else np.int64(1)
        dh, dw = p[DH], p[DW]
        bx, by = np.int64(cuda.blockDim.x), np.int64(cuda.blockDim.y)
        tx, ty = np.int64(cuda.threadIdx.x), np.int64(cuda.threadIdx.y)
        rows_in = (by - 1) * step_h + (kh - 1) * dh + 1
        ld = (bx * DW_V - 1) * step_w + (kw - 1) * dw + 1
        use_tile = (not transposed or (p[SH] == 1 and p[SW] == 1)) and rows_in * ld <= capacity
        registers = k > 0 and dw == 1 and step_w <= 2
        planes = p[BATCH] * p[OUT_C]
        ow0 = np.int64(cuda.blockIdx.x) * bx * DW_V
        ow = ow0 + tx * DW_V
        # bounds: threads past the row still stage the tile; they store nothing
        count = min(np.int64(DW_V), p[OUT_W] - ow)
        sa0, sa2, sa3 = p[A_STRIDE], p[A_STRIDE + 2], p[A_STRIDE + 3]
        # body
        oh0 = np.int64(cuda.blockIdx.y) * by
        while oh0 < p[OUT_H]:
            oh = oh0 + ty
            live = oh < p[OUT_H] and count > 0
            if transposed:
                org_h, org_w = oh0 + p[LO_H] - (kh - 1) * dh, ow0 + p[LO_W] - (kw - 1) * dw
            else:
                org_h, org_w = oh0 * step_h - p[PT], ow0 * step_w - p[PL]
            plane = np.int64(cuda.blockIdx.z)
            while plane < planes:
                n = div32(plane, p[OUT_C])
                ch = plane - n * p[OUT_C]
                for v in range(DW_V):
                    acc[v] = zero
                for term in range(terms):
                    src_c = ch * p[M] + term if transposed else div32(ch, p[M])
                    w0 = (src_c if transposed else ch) * sa0
                    src = n * p[B_STRIDE] + src_c * p[B_STRIDE + 1]
                    if not use_tile:
                        if live:
                            direct_taps(a, b, p, w0, src, kh, kw, oh, ow, count, acc)
                        continue
                    cuda.syncthreads()  # the previous tile is consumed
                    r = ty
                    while r < rows_in:
                        sr = tile_source_index(org_h + r, p[B_H], mode)
                        row = src + sr * p[B_STRIDE + 2]
                        col = tx
                        while col < ld:
                            sc = tile_source_index(org_w + col, p[B_W], mode)
                            value = zero
                            if sr >= 0 and sc >= 0:
                                value = b[row + sc * p[B_STRIDE + 3]]
                            tile[U32(r * ld + col)] = value
                            col += bx
                        r += by
                    cuda.syncthreads()
                    if live:
                        base = U32(ty * step_h * ld + tx * DW_V * step_w)
                        if registers and step_w == 1:
                            segment_taps1(a, w0, sa2, sa3, transposed, tile, base, ld, dh, acc)
                        elif registers:
                            segment_taps2(a, w0, sa2, sa3, transposed, tile, base, ld, dh, acc)
                        else:
                            tile_taps(a, w0, sa2, sa3, transposed, kh, kw, tile, base, ld, dh, dw,
                                      step_w, acc)
                if live:
                    at = (plane * p[OUT_H] + oh) * p[OUT_W] + ow
                    for v in range(DW_V):
                        if v < count:
                            value = acc[v]
                            if bias.size > 0:
                                value += bias[ch]
                            if p[RELU] and value < zero:
                                value = zero
                            out[at + v] = value
                plane += cuda.gridDim.z
            oh0 += np.int64(cuda.gridDim.y) * by

    return _jit(conv_depthwise)


def _written_out(name: str, args: str, lines: list[str], namespace: dict):
    """A device function whose body is ``lines``: Numba has no unroll pragma and LLVM does not
    fully unroll loops of K x K taps or of tree reductions, yet the accumulators stay in
    registers only at constant indices (as conv_numba's inner product)."""
    source = [f"def {name}({args}):"] + [f"    {line}" for line in lines]
    exec("\n".join(source), namespace)  # noqa: S102 (generated from integers)
    return cuda.jit(device=True)(namespace[name])


@functools.cache
def conv_depthwise_grad_weight(dtype, k: int, block: int):
    """conv_depthwise_grad_weight<k> for ``dtype``, launched with ``block`` threads (a power of
    two; the tree's size)."""
    dtype = np.dtype(dtype)
    zero = dtype.type(0)
    width = min(32, block)
    rows = block // width
    # tap rows summed per pass over the data (k > 0): all, unless their accumulators would
    # not fit the register cap (float64 7 x 7: two passes)
    per_pass = k if k * k * dtype.itemsize <= 200 else (k + 1) // 2
    slots = max(1, per_pass * k)  # accumulators; k = 0: one tap per pass
    row_taps = max(1, k)  # array sizes must be constants

    @cuda.jit(device=True)
    def column_sources(cols, ow, p):
        """cols[j] = the offset in x of tap column j's source for output column ow, or -1 (a
        zero): once per pixel for every tap row."""
        for j in range(k):
            sc = source_index(ow * p[SW] + j * p[DW] - p[PL], p[B_W], p[MODE])
            cols[j] = sc * p[B_STRIDE + 3] if sc >= 0 else -1

    @cuda.jit(device=True)
    def tap_row(acc, i, row0, g, b, x, oh, cols, p):
        """acc[i*k + j] += g * the source value of tap (row0 + i, j), for every j (i a
        constant). Offsets are unsigned: no negative-index wraparound."""
        r = row0 + i
        if r < k:
            sr = source_index(oh * p[SH] + r * p[DH] - p[PT], p[B_H], p[MODE])
            if sr >= 0:
                row = x + sr * p[B_STRIDE + 2]
                for j in range(k):
                    if cols[j] >= 0:
                        acc[i * k + j] = cuda.fma(g, b[U64(row + cols[j])], acc[i * k + j])

    @cuda.jit(device=True)
    def zero_columns(inside, offsets, c0, geometry):
        """Zero padding: tap column j's source column c = c0 + j*dw, whether it is inside the
        plane (an unsigned compare) and its offset c * x's column stride (32 bits), once per
        pixel for every tap row."""
        dw, width_x, xs_w = geometry[1], geometry[3], geometry[5]
        for j in range(k):
            c = I32(c0 + j * dw)
            inside[j] = U32(c) < U32(width_x)
            offsets[j] = I32(c * xs_w)

    @cuda.jit(device=True)
    def zero_tap_row(acc, i, row0, g, b, x, r0, inside, offsets, geometry):
        """Zero padding: acc[i*k + j] += g * x[r, c] for the taps (r, c) = (r0 + (row0 + i)*dh,
        column j) inside the plane, the row bounded by an unsigned compare and offset in 32 bits
        (i a constant; ``geometry``: dh, dw, H, W and x's row and column strides, int32)."""
        r = row0 + i
        if r < k:
            h = I32(r0 + I32(r) * geometry[0])
            if U32(h) < U32(geometry[2]):
                row = x + I32(h * geometry[4])
                for j in range(k):
                    if inside[j]:
                        acc[i * k + j] = cuda.fma(g, b[U64(row + offsets[j])], acc[i * k + j])

    @cuda.jit(device=True)
    def one_tap(acc, tap, g, b, x, oh, ow, p):
        """k = 0: acc[0] += g * the source value of tap number ``tap``."""
        i = div32(tap, p[KW])
        sr = source_index(oh * p[SH] + i * p[DH] - p[PT], p[B_H], p[MODE])
        sc = source_index(ow * p[SW] + (tap - i * p[KW]) * p[DW] - p[PL], p[B_W], p[MODE])
        if sr >= 0 and sc >= 0:
            acc[0] = cuda.fma(g, b[x + sr * p[B_STRIDE + 2] + sc * p[B_STRIDE + 3]], acc[0])

    namespace = dict(tap_row=tap_row, zero_tap_row=zero_tap_row, block_sum=block_sum, zero=zero)
    clear = _written_out("clear", "acc", [f"acc[{e}] = zero" for e in range(slots)], namespace)
    add_taps = _written_out("add_taps", "acc, row0, g, b, x, oh, cols, p",
                            [f"tap_row(acc, {i}, row0, g, b, x, oh, cols, p)"
                             for i in range(per_pass)] or ["pass"], namespace)
    add_zero_taps = _written_out(
        "add_zero_taps", "acc, row0, g, b, x, r0, inside, offsets, geometry",
        [f"zero_tap_row(acc, {i}, row0, g, b, x, r0, inside, offsets, geometry)"
         for i in range(per_pass)] or ["pass"], namespace)
    # out[at + e] = the block's sum of acc[e], for the slots of tap rows below k
    reduce_taps = _written_out("reduce_taps", "partial, t, acc, out, at, live", [
        line for e in range(slots) for line in (
            f"if {e} < live:", f"    total = block_sum(partial, t, acc[{e}])",
            "    if t == 0:", f"        out[at + {e}] = total")], namespace)

    def conv_depthwise_grad_weight(a, b, bias, out, p):
        # index decoding: block (o, chunk of tiles_per_split images); threads as rows of 32
        # columns of output pixels. bias: unused
        partial = cuda.shared.array(block, dtype)
        acc = cuda.local.array(slots, dtype)
        cols = cuda.local.array(row_taps, np.int64)
        inside = cuda.local.array(row_taps, np.bool_)
        offsets = cuda.local.array(row_taps, I32)
        o, split = np.int64(cuda.blockIdx.x), np.int64(cuda.blockIdx.y)
        t = cuda.threadIdx.x
        tx, ty = np.int64(t % width), np.int64(t // width)
        n0 = split * p[TILES_PER_SPLIT]
        n1 = min(p[BATCH], n0 + p[TILES_PER_SPLIT])
        ch = div32(o, p[M])
        at = (split * p[OUT_C] + o) * p[KH] * p[KW]
        # bounds: none (grid = out_c x splits)
        # body: gy[n, o, oh, ow] * x[n, o / M, source rows and columns], summed per tap, pixels
        # in the same order on every path. k > 0: per_pass tap rows at once, in registers;
        # zero padding with planes addressable in 32 bits (the usual case) bounds each tap by
        # an unsigned compare and offsets it in 32 bits; other padding modes map each tap
        # through source_index. k = 0: one tap per pass.
        x_span = span(p[B_H], p[B_STRIDE + 2]) + span(p[B_W], p[B_STRIDE + 3])
        gy_span = span(p[Q_H], p[A_STRIDE + 2]) + span(p[Q_W], p[A_STRIDE + 3])
        fast = k > 0 and p[MODE] == ZEROS and x_span <= SPAN_32 and gy_span <= SPAN_32
        geometry = (I32(p[DH]), I32(p[DW]), I32(p[B_H]), I32(p[B_W]), I32(p[B_STRIDE + 2]),
                    I32(p[B_STRIDE + 3]))
        sh, sw, pt, pl = I32(p[SH]), I32(p[SW]), I32(p[PT]), I32(p[PL])
        gs_h, gs_w, q_h, q_w = I32(p[A_STRIDE + 2]), I32(p[A_STRIDE + 3]), I32(p[Q_H]), I32(p[Q_W])
        step = per_pass * k if k else 1
        for tap0 in range(0, p[KH] * p[KW], step):
            clear(acc)
            for n in range(n0, n1):
                gy = n * p[A_STRIDE] + o * p[A_STRIDE + 1]
                x = n * p[B_STRIDE] + ch * p[B_STRIDE + 1]
                if fast:
                    oh32 = I32(ty)
                    while oh32 < q_h:
                        r0, g_row = I32(oh32 * sh - pt), gy + I32(oh32 * gs_h)
                        ow32 = I32(tx)
                        while ow32 < q_w:
                            g = a[U64(g_row + I32(ow32 * gs_w))]
                            zero_columns(inside, offsets, I32(ow32 * sw - pl), geometry)
                            add_zero_taps(acc, tap0 // k, g, b, x, r0, inside, offsets, geometry)
                            ow32 = I32(ow32 + width)
                        oh32 = I32(oh32 + rows)
                    continue
                oh = ty
                while oh < p[Q_H]:
                    ow = tx
                    while ow < p[Q_W]:
                        g = a[gy + oh * p[A_STRIDE + 2] + ow * p[A_STRIDE + 3]]
                        if k:
                            column_sources(cols, ow, p)
                            add_taps(acc, tap0 // k, g, b, x, oh, cols, p)
                        else:
                            one_tap(acc, tap0, g, b, x, oh, ow, p)
                        ow += width
                    oh += rows
            reduce_taps(partial, t, acc, out, at + tap0, p[KH] * p[KW] - tap0)

    return _jit(conv_depthwise_grad_weight)


def kernels(dtype, block: int) -> dict:
    """Every instance, by the name gpu_plan's Numba depthwise plans launch (K = 3, 5, 7 and 0,
    the generic one); ``block``: grad-weight's block size."""
    sizes = plan.DW_SIZES + (0,)
    return {**{f"conv_depthwise<{k}>": conv_depthwise(dtype, k) for k in sizes},
            **{f"conv_depthwise_grad_weight<{k}>": conv_depthwise_grad_weight(dtype, k, block)
               for k in sizes}}
