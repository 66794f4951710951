"""Per-channel passes of the CPU code over (N, C, P) rows, P = H*W: the conv epilogue (bias,
ReLU) and grad-bias of the NumPy backend, and the trainer's batch norm.

Measured on NumPy 2.4 (a 1.6 MB float32 block, one core): an elementwise pass against a
per-channel (C, 1, 1) broadcast takes about 87 µs, against the same values spread over a
whole (C, P) array 52 µs; ``np.maximum`` with the scalar 0 148 µs, with a zero array 41 µs;
per-row sums as a product with a ones vector 22 µs against 71 µs for ``sum`` over the axes,
per-row dot products through ``matmul`` 46 µs against 73 µs for ``einsum``. So per-channel
values go in as whole rows, and reductions go through matmul (each row's own sum or dot
product, then the samples in order: the same bits for any piece a thread takes).
"""

from __future__ import annotations

import math

import numpy as np

from gpuconv import parallel


def channel_rows(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) as (N, C, H*W) (a view of a contiguous array; empty ones too)."""
    return x.reshape(x.shape[:2] + (math.prod(x.shape[2:]),))


def per_channel_rows(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One value per channel spread over a (C, P) array, as the rows of ``rows`` (N, C, P)."""
    return np.ascontiguousarray(np.broadcast_to(
        values.astype(rows.dtype, copy=False)[:, None], rows.shape[1:]))


def channel_sums(a: np.ndarray) -> np.ndarray:
    """The per-channel sum of (n, C, P) rows: each row's sum as a product with ones, then the
    samples in order."""
    return (a @ np.ones(a.shape[2], a.dtype)).sum(axis=0)


def channel_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The per-channel sum of a * b over (n, C, P) rows: one dot product per row through
    matmul, then the samples in order."""
    return (a[:, :, None, :] @ b[:, :, :, None]).sum(axis=(0, 2, 3))


def sum_over_batch(fn, *arrays):
    """``parallel.sum_batch(fn, *arrays)`` for per-channel reductions made of ``channel_sums``
    and ``channel_dots``, with NumPy's OpenBLAS held at one thread: their products are small,
    and OpenBLAS's own threads would keep spinning on the cores after them (a conv backward
    after its grad-bias took 82 ms instead of 48 here)."""
    with parallel.blas_at_one_thread():
        return parallel.sum_batch(fn, *arrays)


def batch_channel_sums(x: np.ndarray) -> np.ndarray:
    """The per-channel sum of x (N, C, ...) over the batch and the pixels (a conv's grad-bias),
    added in piece order."""
    return sum_over_batch(channel_sums, channel_rows(np.ascontiguousarray(x)))


def add_bias_relu(y: np.ndarray, bias: np.ndarray | None, relu: bool) -> np.ndarray:
    """``y += bias`` per channel, then (``relu``) ``max(y, 0)``, on y (N, C, ...) over pieces of
    the batch: the same bits as those two NumPy expressions. In place where y is C-contiguous
    (else on a contiguous copy); returns the result."""
    y = np.ascontiguousarray(y)
    rows = channel_rows(y)
    bias_rows = None if bias is None else per_channel_rows(bias, rows)
    zero_rows = np.zeros(rows.shape[1:], rows.dtype) if relu else None

    def epilogue(piece):
        if bias_rows is not None:
            piece += bias_rows
        if relu:
            np.maximum(piece, zero_rows, out=piece)
    parallel.fill_batch(epilogue, rows)
    return y


def bias_relu_epilogue(bias: np.ndarray | None, relu: bool, groups: int, dtype):
    """``add_bias_relu`` as a ``parallel.matmul`` epilogue for a conv's products, or None
    where there is nothing to do: the product's rows are one group's output channels, and
    the stack of products ends in the groups axis (none for one group); a block with more
    than two axes holds whole products. Each block is finished in cache, with the same bits
    as ``add_bias_relu``."""
    if bias is None and not relu:
        return None
    bias_columns = None if bias is None else bias.astype(dtype).reshape(groups, -1, 1)

    def epilogue(block, at, rows):
        if bias_columns is not None:
            block += bias_columns[:, rows] if block.ndim > 2 else bias_columns[
                at[-1] if at else 0, rows]
        if relu:
            np.maximum(block, np.zeros(block.shape[-1], block.dtype), out=block)
    return epilogue


def affine(scale: np.ndarray, shift: np.ndarray, rows: np.ndarray, relu: bool):
    """The pass ``y = a * scale + shift`` (then ``max(y, 0)`` with ``relu``) over (n, C, P)
    pieces, one scale and one shift per channel, for ``parallel.fill_batch(pass, y, a)``."""
    scale_rows, shift_rows = per_channel_rows(scale, rows), per_channel_rows(shift, rows)
    zero_rows = np.zeros_like(scale_rows) if relu else None

    def affine_pass(y, a):
        np.multiply(a, scale_rows, out=y)
        y += shift_rows
        if relu:
            np.maximum(y, zero_rows, out=y)
    return affine_pass
