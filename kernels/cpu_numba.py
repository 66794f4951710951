"""Numba CPU kernels of the NumPy backend: the passes NumPy can only write as many
full-size temporaries or as a serial ``np.add.at``, compiled (``njit``, no GIL) and run on
the pieces of ``gpuconv.parallel``'s pool exactly where the backend's NumPy versions would
run (``numpy_backend._depthwise_correlate``, ``numpy_backend._depthwise_grad_weight``,
``numpy_backend.max_pool2d_backward``), so the pieces, and with them the results, do not
depend on the thread count.

reference: gpuconv.backends.reference.conv2d (groups = channels), reference.conv2d_grad_weight,
reference.max_pool2d_backward:
    depthwise  y[c, k, oh, ow] = sum_{i,j} w[c, k, i*kW + j] * xp[c, oh + i*dh, ow + j*dw]
               (stride 1; xp the zero-padded plane). As a "row image" of pitch Wp (the
               padded width), output (oh, ow) is element q = oh*Wp + ow of one run of
               L = (H_out - 1)*Wp + W_out, and tap (i, j) adds w times the run of the flat
               padded plane that starts at i*dh*Wp + j*dw: every tap is one long
               contiguous multiply-add, which vectorises.
    grad-weight  dW[c, k, i*kW + j] = sum_{n, q} dy[n, c, k](q) * xp[n, c](q + i*dh*Wp + j*dw)
               with dy as a row image too (zero past W_out): the slides'
               dL/dW = Correlation(I, dL/dO), one dot product of two runs per tap.
    max-pool backward  dx[p, idx[p, l]] += dy[p, l], for l in order (np.add.at's order)
Checked against the NumPy path and PyTorch by tests/test_cpu_kernels.py, and through the
goldens (GPUCONV_CPU_KERNELS chooses the path; both run in CI).

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
def _row_image_geometry(ho, wo, taps, kernel_w, dil_h, dil_w):
    """The padded plane's size Hp*Wp and width Wp, the row image's length L and each tap's
    start in the flat padded plane, for an H_out x W_out output: H_out = Hp - (kH-1)*dh and
    W_out = Wp - (kW-1)*dw."""
    kh = taps // kernel_w
    wp = wo + (kernel_w - 1) * dil_w
    starts = np.empty(taps, dtype=np.int64)
    for i in range(kh):
        for j in range(kernel_w):
            starts[i * kernel_w + j] = i * dil_h * wp + j * dil_w
    return (ho + (kh - 1) * dil_h) * wp, wp, (ho - 1) * wp + wo, starts


@njit(nogil=True, cache=True)
def _pad_plane(plane, padded, top, left, wp):
    """Copy ``plane`` (H, W) into the flat zero-bordered ``padded`` of width Wp."""
    for r in range(plane.shape[0]):
        dst = padded[(r + top) * wp + left:(r + top) * wp + left + plane.shape[1]]
        src = plane[r]
        for t in range(plane.shape[1]):
            dst[t] = src[t]


@njit(nogil=True, cache=True, fastmath={"contract"})
def depthwise_correlate(x, w, y, top, left, kernel_w, dil_h, dil_w):
    """y (count, m, H_out, W_out) = the stride-1 depthwise correlation of x (count, H, W),
    zero-padded by ``top`` / ``left`` (and by what y's shape leaves below and right), with
    w (count, m, kH*kW), kW = ``kernel_w``."""
    m, ho, wo = y.shape[1], y.shape[2], y.shape[3]
    taps = w.shape[2]
    size, wp, length, starts = _row_image_geometry(ho, wo, taps, kernel_w, dil_h, dil_w)
    padded = np.zeros(size, dtype=x.dtype)  # borders stay zero from channel to channel
    row_image = np.empty(length, dtype=y.dtype)
    for c in range(x.shape[0]):
        _pad_plane(x[c], padded, top, left, wp)
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
def depthwise_grad_weight(x, grad_out, grad_w, top, left, kernel_w, dil_h, dil_w):
    """grad_w (count, m, kH*kW) = the gradient of ``depthwise_correlate``'s weights: for each
    channel and tap, the sum over samples and outputs of grad_out (N, count, m, H_out, W_out)
    times the tap's input, x (N, count, H, W) zero-padded as there (``top`` / ``left``, and
    what grad_out's shape leaves below and right). grad_out is laid out as a row image too
    (zeros past W_out), so each tap is one dot product of two contiguous runs; samples are
    added in order."""
    m, ho, wo = grad_out.shape[2], grad_out.shape[3], grad_out.shape[4]
    taps = grad_w.shape[2]
    size, wp, length, starts = _row_image_geometry(ho, wo, taps, kernel_w, dil_h, dil_w)
    padded = np.zeros(size, dtype=x.dtype)  # borders stay zero from plane to plane
    grad_image = np.zeros(length, dtype=grad_out.dtype)  # and its columns past W_out
    for c in range(x.shape[1]):
        grad_w[c] = 0
        for b in range(x.shape[0]):
            _pad_plane(x[b, c], padded, top, left, wp)
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
