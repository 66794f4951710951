"""Numba CPU kernels of the NumPy backend: the passes NumPy can only write as many
full-size temporaries or as a serial ``np.add.at``, compiled (``njit``, no GIL) and run on
the pieces of ``gpuconv.parallel``'s pool exactly where the backend's NumPy versions would
run (``numpy_backend._depthwise_correlate``, ``numpy_backend._depthwise_grad_weight``,
``numpy_backend.max_pool2d_backward``), so the pieces, and with them the results, do not
depend on the thread count.

reference: gpuconv.backends.reference.conv2d (groups = channels), reference.conv2d_grad_weight,
reference.max_pool2d_backward:
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
    max-pool backward  dx[p, idx[p, l]] += dy[p, l], for l in order (np.add.at's order)
Checked against PyTorch by tests/test_cpu_kernels.py, which runs both paths
(GPUCONV_CPU_KERNELS), and through the goldens and the rest of the suite, which run this one.

Kernels:
1. depthwise_correlate: a piece of channels of one sample; up to eight taps a pass over the
   row image (one load and store of it per eight multiply-adds), in a fixed order.
2. depthwise_grad_weight: a piece of channels, all samples in order; each tap one
   vectorised dot product of the grad_out and input row images (``_dot``).
3. max_pool2d_backward_planes: a piece of planes; returns the first index outside its
   plane (or -1): a bad index is an error, never a write outside the gradient.
Compiled on first use for each dtype (cached on disk by Numba).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def _phase_geometry(padded_hw, out_hw, taps, kernel_w, stride, dilation):
    """For a Hp x Wp zero-padded plane split into sh*sw phase planes of ceil(Hp/sh) x
    ceil(Wp/sw) (``_split_plane``): their buffer's size, a phase plane's width pw and size,
    the row image's length L = (H_out - 1)*pw + W_out and each tap's start in the buffer."""
    (sh, sw), (dh, dw) = stride, dilation
    pw = (padded_hw[1] + sw - 1) // sw
    phase_size = (padded_hw[0] + sh - 1) // sh * pw
    starts = np.empty(taps, dtype=np.int64)
    for i in range(taps // kernel_w):
        for j in range(kernel_w):
            phase = (i * dh % sh) * sw + j * dw % sw
            starts[i * kernel_w + j] = phase * phase_size + i * dh // sh * pw + j * dw // sw
    return sh * sw * phase_size, pw, phase_size, (out_hw[0] - 1) * pw + out_hw[1], starts


@njit(nogil=True, cache=True)
def _split_plane(plane, phases, top, left, stride, pw, phase_size):
    """Copy ``plane`` (H, W), zero-padded by ``top`` / ``left``, into the flat zero-bordered
    phase planes: padded element (R, C) goes to phase (R % sh, C % sw), at (R // sh, C // sw).
    The row's phase and position advance by one step a row (no division in the loop)."""
    sh, sw = stride
    height, width = plane.shape
    firsts = np.empty(sw, dtype=np.int64)  # per phase column: the first input column,
    counts = np.empty(sw, dtype=np.int64)  # how many, and where they start in a phase row
    offsets = np.empty(sw, dtype=np.int64)
    for b in range(sw):
        firsts[b] = (b - left) % sw
        counts[b] = max(0, (width - 1 - firsts[b]) // sw + 1)
        offsets[b] = b * phase_size + (firsts[b] + left) // sw
    phase_row, row_in_phase = top % sh, top // sh
    for r in range(height):
        base = phase_row * sw * phase_size + row_in_phase * pw
        if sw == 1:  # a whole row: a unit-stride copy the compiler vectorises
            dst, src = phases[base + left:base + left + width], plane[r]
            for t in range(width):
                dst[t] = src[t]
        else:
            for b in range(sw):
                start, count = base + offsets[b], counts[b]
                dst, src = phases[start:start + count], plane[r, firsts[b]::sw]
                for t in range(count):
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
    size, wp, phase_size, length, starts = _phase_geometry(padded_hw, (ho, wo), taps,
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
    size, wp, phase_size, length, starts = _phase_geometry(padded_hw, (ho, wo), taps,
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
def max_pool2d_backward_planes(grad_out, indices, grad):
    """grad (P, plane) = each plane's outputs' gradients grad_out (P, L) added where indices
    (P, L) name, in output order. Returns the flat position in ``indices`` of the first index
    outside [0, plane), after which nothing more is written, or -1."""
    planes, outputs = grad_out.shape
    plane = grad.shape[1]
    for p in range(planes):
        dst, gy, idx = grad[p], grad_out[p], indices[p]
        dst[:] = 0
        for q in range(outputs):
            i = idx[q]
            if i < 0 or i >= plane:
                return p * outputs + q
            dst[i] += gy[q]
    return -1
