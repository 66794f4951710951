"""Numba CPU kernels of the NumPy backend: the passes NumPy can only write as many
full-size temporaries or as a serial ``np.add.at``, compiled (``njit``, no GIL) and run on
the pieces of ``gpuconv.parallel``'s pool exactly where the backend's NumPy versions would
run (``numpy_backend._depthwise_correlate``, ``numpy_backend._depthwise_grad_weight``,
``numpy_backend.max_pool2d``, ``numpy_backend.avg_pool2d``, ``numpy_backend.max_pool2d_backward``,
``numpy_backend._avg_pool2d_backward_tiled``, ``numpy_backend._winograd_tiles``), so the pieces,
and with them the results, do not depend on the thread count.

reference: gpuconv.backends.reference.conv2d (groups = channels), reference.conv2d_grad_weight,
reference.max_pool2d, reference.avg_pool2d, reference.max_pool2d_backward,
reference.avg_pool2d_backward:
    depthwise  y[c, k, oh, ow] = sum_{i,j} w[c, k, i*kW + j] * xp[c, oh*sh + i*dh, ow*sw + j*dw]
               (xp the zero-padded plane, Hp x Wp). Split into sh*sw phase planes
               P_ab[r, s] = xp[r*sh + a, s*sw + b] of width pw = ceil(Wp / sw), tap (i, j)
               reads P_ab[oh + i*dh // sh, ow + j*dw // sw], a = i*dh % sh, b = j*dw % sw.
               As a "row image" of pitch pw, output (oh, ow) is element q = oh*pw + ow of a
               run of L = (H_out - 1)*pw + W_out, and each tap adds w times one run of its
               phase plane: a long contiguous multiply-add, which vectorises (at stride 1
               the one phase plane is xp).
    grad-weight  dW[c, k, i*kW + j] = sum_{n, q} dy[n, c, k](q) * (tap (i, j)'s run of
               xp[n, c])(q), with dy as a row image too (zero past W_out): the slides'
               dL/dW = Correlation(I, dL/dO), one dot product of two runs per tap.
    max pooling  y[p, oh, ow] = max over taps (i, j) in row-major order of the -inf-padded
               plane at (oh*sh + i*dh, ow*sw + j*dw), the first maximum or the last NaN
               winning; each tap one run of the row image, as above, over a stack of planes
    average pooling  the window sums are the depthwise correlation with a kernel of ones,
               over the window sizes (numpy_backend._avg_pool_geometry)
    max-pool backward  dx[p, idx[p, l]] += dy[p, l], for l in order (np.add.at's order)
    average-pool backward, windows that tile the plane  dx[p, h, w] = dy[p, h // kH, w // kW]
               / divisor[h // kH, w // kW], zero past the last window
    Winograd F(2x2, 3x3) transforms  V = B^T d B and Y = A^T M A of every tile
               (numpy_backend._winograd_correlate, whose header has B, G and A), the NumPy
               passes' operations in their order, so that both engines give the same bits
Checked against PyTorch by tests/test_cpu_kernels.py and tests/test_winograd.py, which run
both paths (GPUCONV_CPU_KERNELS), and through the goldens and the rest of the suite, which
run this one.

Kernels:
1. depthwise_correlate: a piece of channels of one sample; up to eight taps a pass over the
   row image (one load and store of it per eight multiply-adds), in a fixed order.
2. depthwise_grad_weight: a piece of channels, all samples in order; each tap one
   vectorised dot product of the grad_out and input row images (``_dot``).
3. max_pool2d_planes: a piece of planes, in stacks whose row image is about
   ``POOL_STACK_ELEMENTS`` long; the winning tap's number becomes the flat index.
4. max_pool2d_backward_planes: a piece of planes; returns the first index outside its
   output's window (or -1): a bad index is an error, never a write outside the gradient.
5. avg_pool2d_backward_tiled: a piece of planes; each row of windows spread once, then
   copied to its kH input rows.
6. split_planes: planes into their stride phases (``_split_plane``), for Winograd's
   parity planes and the dilation phases of its input.
7. winograd_input_transform / winograd_output_transform: a chunk's tiles, an input plane
   (or an output channel) at a time, in cache; winograd_output_planes: the 2x2 output
   blocks into the output's rows.
Compiled on first use for each dtype (cached on disk by Numba).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _phase_geometry(padded_hw, out_hw, taps, kernel_w, stride, dilation, planes=1):
    """For a stack of ``planes`` Hp x Wp padded planes, split into sh*sw phase planes in which
    each plane takes ceil(Hp/sh) rows of ceil(Wp/sw) (``_split_plane``, one plane below the
    other): their buffer's size, a phase plane's width pw and size, a plane's pitch in it,
    the row image's length L = (planes - 1)*pitch + (H_out - 1)*pw + W_out and each tap's
    start in the buffer. A tap's run then covers every plane of the stack."""
    (sh, sw), (dh, dw) = stride, dilation
    pw = (padded_hw[1] + sw - 1) // sw
    pitch = (padded_hw[0] + sh - 1) // sh * pw
    phase_size = planes * pitch
    starts = np.empty(taps, dtype=np.int64)
    for i in range(taps // kernel_w):
        for j in range(kernel_w):
            phase = (i * dh % sh) * sw + j * dw % sw
            starts[i * kernel_w + j] = phase * phase_size + i * dh // sh * pw + j * dw // sw
    length = (planes - 1) * pitch + (out_hw[0] - 1) * pw + out_hw[1]
    return sh * sw * phase_size, pw, phase_size, pitch, length, starts


@njit(nogil=True, cache=True)
def _split_plane(plane, phases, top, left, stride, pw, phase_size):
    """Copy ``plane`` (H, W), zero-padded by ``top`` / ``left``, into the flat zero-bordered
    phase planes: padded element (R, C) goes to phase (R % sh, C % sw), at (R // sh, C // sw).
    The row's phase and position advance by one step a row (no division in the loop)."""
    sh, sw = stride
    height, width = plane.shape
    firsts = np.empty(sw if sw > 2 else 0, dtype=np.int64)  # (sw > 2) per phase column: the
    offsets = np.empty_like(firsts)  # first input column, and where it goes in a phase row
    for b in range(len(firsts)):
        firsts[b] = (b - left) % sw
        offsets[b] = b * phase_size + (firsts[b] + left) // sw
    phase_row, row_in_phase = top % sh, top // sh
    for r in range(height):
        base = phase_row * sw * phase_size + row_in_phase * pw
        if sw == 1:  # a whole row: a unit-stride copy the compiler vectorises
            dst, src = phases[base + left:base + left + width], plane[r]
            for t in range(width):
                dst[t] = src[t]
        elif sw == 2:  # pairs of columns to the two phases: one loop, vectorised as such
            src = plane[r]
            first = phases[base + left % 2 * phase_size + left // 2:]
            second = phases[base + (1 - left % 2) * phase_size + (left + 1) // 2:]
            for t in range(width // 2):
                first[t] = src[2 * t]
                second[t] = src[2 * t + 1]
            if width % 2:
                first[width // 2] = src[width - 1]
        else:
            for b in range(sw):
                dst, src = phases[base + offsets[b]:], plane[r, firsts[b]::sw]
                for t in range(len(src)):
                    dst[t] = src[t]
        phase_row += 1
        if phase_row == sh:
            phase_row, row_in_phase = 0, row_in_phase + 1


@njit(nogil=True, cache=True, fastmath={"contract"})
def depthwise_correlate(x, w, y, top, left, padded_hw, kernel_w, stride, dilation):
    """y (count, m, H_out, W_out) = the depthwise correlation of x (count, H, W), zero-padded
    by ``top`` / ``left`` to ``padded_hw``, with w (count, m, kH*kW), kW = ``kernel_w``."""
    m, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    taps = w.shape[2]
    size, wp, phase_size, _, length, starts = _phase_geometry(padded_hw, (ho, wo), taps,
                                                           kernel_w, stride, dilation)
    padded = np.zeros(size, dtype=x.dtype)  # borders stay zero from channel to channel
    row_image = np.empty(length, dtype=y.dtype)
    for c in range(x.shape[0]):
        _split_plane(x[c], padded, top, left, stride, wp, phase_size)
        for k in range(m):
            wk = w[c, k]
            row_image[:] = 0
            t = 0
            while taps - t >= 8:  # eight taps a pass, then four, then one
                a0, w0 = padded[starts[t]:starts[t] + length], wk[t]
                a1, w1 = padded[starts[t + 1]:starts[t + 1] + length], wk[t + 1]
                a2, w2 = padded[starts[t + 2]:starts[t + 2] + length], wk[t + 2]
                a3, w3 = padded[starts[t + 3]:starts[t + 3] + length], wk[t + 3]
                a4, w4 = padded[starts[t + 4]:starts[t + 4] + length], wk[t + 4]
                a5, w5 = padded[starts[t + 5]:starts[t + 5] + length], wk[t + 5]
                a6, w6 = padded[starts[t + 6]:starts[t + 6] + length], wk[t + 6]
                a7, w7 = padded[starts[t + 7]:starts[t + 7] + length], wk[t + 7]
                for q in range(length):
                    row_image[q] += ((w0 * a0[q] + w1 * a1[q] + w2 * a2[q] + w3 * a3[q])
                                     + (w4 * a4[q] + w5 * a5[q] + w6 * a6[q] + w7 * a7[q]))
                t += 8
            if taps - t >= 4:
                a0, w0 = padded[starts[t]:starts[t] + length], wk[t]
                a1, w1 = padded[starts[t + 1]:starts[t + 1] + length], wk[t + 1]
                a2, w2 = padded[starts[t + 2]:starts[t + 2] + length], wk[t + 2]
                a3, w3 = padded[starts[t + 3]:starts[t + 3] + length], wk[t + 3]
                for q in range(length):
                    row_image[q] += w0 * a0[q] + w1 * a1[q] + w2 * a2[q] + w3 * a3[q]
                t += 4
            while t < taps:
                a0, w0 = padded[starts[t]:starts[t] + length], wk[t]
                for q in range(length):
                    row_image[q] += w0 * a0[q]
                t += 1
            for oh in range(ho):
                out, run = y[c, k, oh], row_image[oh * wp:oh * wp + wo]
                for ow in range(wo):
                    out[ow] = run[ow]


@njit(nogil=True, cache=True, fastmath={"contract", "reassoc"})
def _dot(a, b):
    """sum(a * b) over two runs, vectorised: its partial sums are added in the order of the
    compiled loop (fixed for a machine, so every run and thread count gives the same bits)."""
    total = a.dtype.type(0)
    for q in range(a.shape[0]):
        total += a[q] * b[q]
    return total


@njit(nogil=True, cache=True)
def depthwise_grad_weight(x, grad_out, grad_w, top, left, padded_hw, kernel_w, stride,
                          dilation):
    """grad_w (count, m, kH*kW) = the gradient of ``depthwise_correlate``'s weights: for each
    channel and tap, the sum over samples and outputs of grad_out (N, count, m, H_out, W_out)
    times the tap's input, x (N, count, H, W) zero-padded as there. grad_out is laid out as
    a row image too (zeros past W_out), so each tap is one dot product of two contiguous
    runs; samples are added in order."""
    m, ho, wo = grad_out.shape[2], grad_out.shape[3], grad_out.shape[4]
    taps = grad_w.shape[2]
    size, wp, phase_size, _, length, starts = _phase_geometry(padded_hw, (ho, wo), taps,
                                                           kernel_w, stride, dilation)
    padded = np.zeros(size, dtype=x.dtype)  # borders stay zero from plane to plane
    grad_image = np.zeros(length, dtype=grad_out.dtype)  # and its columns past W_out
    for c in range(x.shape[1]):
        grad_w[c] = 0
        for b in range(x.shape[0]):
            _split_plane(x[b, c], padded, top, left, stride, wp, phase_size)
            for k in range(m):
                for oh in range(ho):
                    dst = grad_image[oh * wp:oh * wp + wo]
                    src = grad_out[b, c, k, oh]
                    for ow in range(wo):
                        dst[ow] = src[ow]
                for t in range(taps):
                    grad_w[c, k, t] += _dot(grad_image, padded[starts[t]:starts[t] + length])


@njit(nogil=True, cache=True)
def _names_a_tap(r, c, row_lo, row_hi, row_step, col_start, col_lo, col_hi, col_step):
    """Whether position (r, c) is a tap of a window whose taps lie on rows row_lo, row_lo +
    row_step, ... <= row_hi and columns col_lo <= c <= col_hi with (c - col_start) % col_step
    == 0 (``shapes.max_window_taps``)."""
    return (row_lo <= r <= row_hi and (row_step == 1 or (r - row_lo) % row_step == 0)
            and col_lo <= c <= col_hi and (col_step == 1 or (c - col_start) % col_step == 0))


@njit(nogil=True, cache=True)
def max_pool2d_backward_planes(grad_out, indices, grad, width, row_of, row_taps, row_step,
                               col_taps, col_step):
    """grad (P, plane) = each plane's outputs' gradients grad_out (P, L) added where indices
    (P, L) name, in output order; outputs (L = Ho * Wo) in row-major order, their windows'
    taps as ``shapes.max_window_taps`` gives them (stacked (3, Ho) and (3, Wo)), the plane
    ``width`` wide, ``row_of`` each of its flat positions' row (a table: no division per
    index, which would cost the scatter several times its time). Returns the flat position
    in ``indices`` of the first index that names no tap of its output's window (in the
    plane or not), after which nothing more is written, or -1."""
    planes, outputs = grad_out.shape
    plane, out_h, out_w = grad.shape[1], row_taps.shape[1], col_taps.shape[1]
    for p in range(planes):
        dst, gy, idx = grad[p], grad_out[p], indices[p]
        dst[:] = 0
        q = 0
        for oh in range(out_h):
            row_lo, row_hi = row_taps[1, oh], row_taps[2, oh]
            for ow in range(out_w):
                i = idx[q]
                if i < 0 or i >= plane:
                    return p * outputs + q
                r = np.int64(row_of[i])
                if not _names_a_tap(r, i - r * width, row_lo, row_hi, row_step,
                                    col_taps[0, ow], col_taps[1, ow], col_taps[2, ow], col_step):
                    return p * outputs + q
                dst[i] += gy[q]
                q += 1
    return -1


@njit(nogil=True, cache=True)
def _max_tap(run, best, tap, t):
    """Where ``run`` beats ``best`` (is greater, or NaN: PyTorch's rule, so that the first
    maximum and the last NaN win), take its value and the tap number t."""
    for q in range(run.shape[0]):
        v = run[q]
        better = (v > best[q]) | (v != v)
        best[q] = v if better else best[q]
        tap[q] = t if better else tap[q]


@njit(nogil=True, cache=True)
def _first_inside(start, step):
    """The first position start + i*step (i >= 0) that is not negative."""
    return start if start >= 0 else start + (-start + step - 1) // step * step


# planes of a max pooling stack: row images of about this many elements (in L1 / L2)
POOL_STACK_ELEMENTS = 4096


@njit(nogil=True, cache=True)
def max_pool2d_planes(x, y, index, top, left, padded_hw, kernel_hw, stride, dilation):
    """y and int64 flat indices h*W + w (P, H_out, W_out) of max pooling of planes x (P, H, W)
    whose padded plane, ``padded_hw``, holds every window (``top`` / ``left`` before it), in
    stacks of planes (``_phase_geometry``: long runs for small planes). The padding is -inf,
    which never wins (greater, or NaN, wins), so every tap of every window is one run of the
    row image, taken in row-major order; the one exception is a window of -inf alone, whose
    first tap keeps the lead even in the padding: its index is then that of the window's
    first element inside the plane, as in PyTorch."""
    (kh, kw), (sh, sw), (dh, dw) = kernel_hw, stride, dilation
    planes, width = x.shape[0], x.shape[2]
    ho, wo = y.shape[1], y.shape[2]
    _, _, _, pitch, _, _ = _phase_geometry(padded_hw, (ho, wo), 1, 1, stride, dilation)
    stack = max(1, min(planes, POOL_STACK_ELEMENTS // pitch))
    size, pw, phase_size, _, length, starts = _phase_geometry(padded_hw, (ho, wo), kh * kw,
                                                              kw, stride, dilation, stack)
    padded = np.full(size, -np.inf, dtype=x.dtype)  # borders stay -inf from plane to plane
    best = np.empty(length, dtype=x.dtype)
    tap = np.empty(length, dtype=np.int32)
    offset = np.empty(kh * kw, np.int64)  # tap t's flat offset from its window's corner
    for t in range(kh * kw):
        offset[t] = t // kw * dh * width + t % kw * dw
    border_cols = min(wo, (left + sw - 1) // sw)  # windows whose first column is padding
    for p0 in range(0, planes, stack):
        count = min(stack, planes - p0)
        for i in range(count):
            _split_plane(x[p0 + i], padded[i * pitch:], top, left, stride, pw, phase_size)
        run = length - (stack - count) * pitch  # a last, shorter stack
        best[:run] = padded[starts[0]:starts[0] + run]
        tap[:run] = 0
        for t in range(1, kh * kw):
            _max_tap(padded[starts[t]:starts[t] + run], best[:run], tap[:run], np.int32(t))
        for i in range(count):
            for oh in range(ho):
                row0, q = oh * sh - top, i * pitch + oh * pw
                out, where = y[p0 + i, oh], index[p0 + i, oh]
                lead, lead_tap, corner = best[q:q + wo], tap[q:q + wo], row0 * width - left
                for ow in range(wo):
                    out[ow], where[ow] = lead[ow], corner + ow * sw + offset[lead_tap[ow]]
                # a lead kept by tap 0 in the padding (-inf alone) goes to the first element
                # inside the window: its first row and column inside the plane
                for ow in range(wo if row0 < 0 else border_cols):
                    if lead_tap[ow] == 0:
                        where[ow] = (_first_inside(row0, dh) * width
                                     + _first_inside(ow * sw - left, dw))


@njit(nogil=True, cache=True)
def winograd_input_transform(planes, v, pitch):
    """v (16, C, N, n0) = B^T d B for every 4x4 input tile d (Winograd F(2x2, 3x3),
    ``numpy_backend._winograd_input_transform``: the same operations in the same order, a
    plane at a time in cache): planes (2, 2, C, N, (rows + 2)*pitch) are the sub-image's
    parity planes (even / odd rows, even / odd columns), flat with a pitch of one more than
    the tile columns, so that tile q's row 2i + p is parity row p at q + i*pitch. Each
    step is one short loop over two runs, which the compiler vectorises."""
    n0 = v.shape[3]
    t = np.empty((4, 2, n0 + 1), dtype=v.dtype)  # B^T d, per column parity
    for c in range(v.shape[1]):
        for n in range(v.shape[2]):
            for pc in range(2):
                even, odd = planes[0, pc, c, n], planes[1, pc, c, n]
                t0, t1, t2, t3 = t[0, pc], t[1, pc], t[2, pc], t[3, pc]
                for p in range(n0 + 1):  # rows: d0 - d2, d1 + d2, d2 - d1, d1 - d3
                    t0[p] = even[p] - even[p + pitch]
                for p in range(n0 + 1):
                    t1[p] = odd[p] + even[p + pitch]
                for p in range(n0 + 1):
                    t2[p] = even[p + pitch] - odd[p]
                for p in range(n0 + 1):
                    t3[p] = odd[p] - odd[p + pitch]
            for a in range(4):  # columns, alike; tap k = 4*row + column
                even, odd = t[a, 0], t[a, 1]
                v0, v1, v2, v3 = v[4 * a, c, n], v[4 * a + 1, c, n], v[4 * a + 2, c, n], \
                    v[4 * a + 3, c, n]
                for q in range(n0):
                    v0[q] = even[q] - even[q + 1]
                for q in range(n0):
                    v1[q] = odd[q] + even[q + 1]
                for q in range(n0):
                    v2[q] = even[q + 1] - odd[q]
                for q in range(n0):
                    v3[q] = odd[q] - odd[q + 1]


@njit(nogil=True, cache=True)
def winograd_output_transform(m, out):
    """out (2, 2, O, T) = A^T m A for every tile's sixteen products m (16, O, T), k = 4*row +
    column (``numpy_backend._winograd_tiles``, same operations in the same order)."""
    for o in range(m.shape[1]):
        for q in range(m.shape[2]):
            # m A, by rows a: s_a0 = m_a0 + m_a1 + m_a2, s_a1 = m_a1 - m_a2 - m_a3
            s00 = m[0, o, q] + m[1, o, q] + m[2, o, q]
            s01 = m[1, o, q] - m[2, o, q] - m[3, o, q]
            s10 = m[4, o, q] + m[5, o, q] + m[6, o, q]
            s11 = m[5, o, q] - m[6, o, q] - m[7, o, q]
            s20 = m[8, o, q] + m[9, o, q] + m[10, o, q]
            s21 = m[9, o, q] - m[10, o, q] - m[11, o, q]
            s30 = m[12, o, q] + m[13, o, q] + m[14, o, q]
            s31 = m[13, o, q] - m[14, o, q] - m[15, o, q]
            # A^T (m A)
            out[0, 0, o, q], out[0, 1, o, q] = s00 + s10 + s20, s01 + s11 + s21
            out[1, 0, o, q], out[1, 1, o, q] = s10 - s20 - s30, s11 - s21 - s31


@njit(nogil=True, cache=True)
def avg_pool2d_backward_tiled(grad_out, divisor, kernel_hw, grad):
    """grad (P, H, W) = the gradient of average pooling whose windows tile the input (stride =
    kernel, no padding): each element's is its window's grad_out (P, H_out, W_out) over that
    window's divisor (H_out, W_out) (the one division the NumPy pass makes, so the same
    bits); zero past the last window."""
    kh, kw = kernel_hw
    ho, wo = grad_out.shape[1], grad_out.shape[2]
    width = grad.shape[2]
    row = np.zeros(width, dtype=grad.dtype)  # a row of windows' gradients, zero past them
    scaled = np.empty(wo, dtype=grad.dtype)
    for p in range(grad.shape[0]):
        for oh in range(ho):
            g, d = grad_out[p, oh], divisor[oh]
            for ow in range(wo):
                scaled[ow] = g[ow] / d[ow]
            if kw == 2:  # pairs: one loop, vectorised as such
                for ow in range(wo):
                    row[2 * ow] = scaled[ow]
                    row[2 * ow + 1] = scaled[ow]
            else:
                for ow in range(wo):
                    for j in range(kw):
                        row[ow * kw + j] = scaled[ow]
            for i in range(kh):
                dst = grad[p, oh * kh + i]
                for w in range(width):
                    dst[w] = row[w]
        for h in range(ho * kh, grad.shape[1]):
            dst = grad[p, h]
            for w in range(width):
                dst[w] = 0


@njit(nogil=True, cache=True)
def split_planes(x, phases, top, left, stride):
    """phases (sh, sw, A, B, R, pw) = the stride phases of the planes x (A, B, h, w), any
    strides, zero-padded by ``top`` / ``left`` on an (R*sh) x (pw*sw) grid:
    phases[a, b, i, j, r, s] = grid of x[i, j] at (r*sh + a, s*sw + b) (``_split_plane``),
    zero where the grid is outside x. Winograd's parity planes (stride 2) and the dilation
    phases of its input."""
    count_a, count_b, rows, pw = phases.shape[2], phases.shape[3], phases.shape[4], \
        phases.shape[5]
    flat = phases.reshape(-1)
    flat[:] = 0
    phase_size = count_a * count_b * rows * pw
    for i in range(count_a):
        for j in range(count_b):
            _split_plane(x[i, j], flat[(i * count_b + j) * rows * pw:], top, left, stride, pw,
                         phase_size)


@njit(nogil=True, cache=True)
def winograd_output_planes(out, ys, first_row):
    """ys[n, o, first_row + 2r + i, 2s + j] = out[i, j, o, n, r, s] for the 2x2 output blocks
    out (2, 2, O, N, R, pitch) into ys (N, O, H, W), any strides (a dilation phase's), the
    rows and columns past ys's end dropped."""
    o_count, count, rows = out.shape[2], out.shape[3], out.shape[4]
    height, width = ys.shape[2], ys.shape[3]
    for o in range(o_count):
        for n in range(count):
            for r in range(first_row, min(height, first_row + 2 * rows)):
                i, tile_row = (r - first_row) % 2, (r - first_row) // 2
                even, odd, dst = out[i, 0, o, n, tile_row], out[i, 1, o, n, tile_row], ys[n, o, r]
                for s in range(width // 2):
                    dst[2 * s] = even[s]
                    dst[2 * s + 1] = odd[s]
                if width % 2:
                    dst[width - 1] = even[width // 2]
