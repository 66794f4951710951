"""NumPy CPU backend: every 2-D kernel of ``gpuconv.backends.KERNELS``.

Checked against the PyTorch goldens in ``oracle/goldens`` (tests/test_golden.py).
reference: gpuconv.backends.reference (each kernel here equals the function of the same name
there, e.g. reference.conv2d; this module is the fast CPU engine, that one the plain maths).

The convolution family stands on one windowing primitive, ``_windows``: a
zero-copy ``as_strided`` view ``(N, C, kH, kW, H_out, W_out)`` of a padded
input. Copying a batch chunk of it gives the im2col matrix, and BLAS does the
multiply-adds:

    forward      y[n, g]  = W[g] (O/G, C/G*kH*kW)  @ cols[n, g] (C/G*kH*kW, H_out*W_out)
    grad-weight  dW[g]    = sum_n dy[n, g] (O/G, HW) @ cols[n, g]^T        (the slides'
                            dL/dW = Correlation(I, dL/dO))
    grad-input   dx       = correlation of dy with the flipped, channel-swapped kernel
                            (the slides' dL/dI = Correlation(W_pad, dL/dO_flip)), split
                            into stride x stride phases so no zero is ever multiplied;
                            the transposed convolution's forward is this same function.

The grad-input fold works on "row images" (``_to_rows``), one plane per stride phase:
each row of dL/dO is given the phase planes' full width, zeros past W_out, so that in a
flattened phase plane every kernel tap adds one long contiguous run instead of H_out short
rows, and one GEMM per group covers a whole batch chunk. The gather computes only the
input's own positions of the padded grid.

3x3 stride-1 correlations with enough channels (``_winograd_fits``: forward, and the
grad-input gather, which is such a correlation; any dilation, as phase sub-images) take
Winograd F(2x2, 3x3) instead (``_winograd_correlate``; the formula is next to it): 16 GEMMs
over 4x4 input tiles, 2.25x fewer multiply-adds than im2col. Grad-weight stays im2col.

Small output planes (under ``BATCH_GEMM_PIXELS``) put a chunk's samples side by side in
each im2col row, so that one GEMM per group covers the chunk instead of one small GEMM
per sample; a sample whose im2col would not stay in cache is cut into bands of output
rows; a 1x1 stride-1 convolution needs no im2col copy at all. Bias and ReLU finish each
product's output while it is in cache. Depthwise convolutions are batched small GEMMs
(each channel's kernel times its im2col block) over cache-sized channel blocks, padded
block by block into each thread's buffers. Where Numba is installed, depthwise
correlations and their weight gradients, max and average pooling, the max-pool backward
scatter, the tiling average-pool backward and Winograd's passes run compiled instead
(``cpu_kernels``: kernels/cpu_numba.py, on the same kind of pieces).

The copies, GEMMs, folds, depthwise blocks and pooling planes run in pieces over the
thread pool of ``gpuconv.parallel`` (the GEMMs each on one BLAS thread); pieces are cut by
shape alone and every gradient is a gather or a fixed-order sum (no two writers race), so
results are bit-identical from run to run and for any thread count. Only one im2col chunk
of about ``CHUNK_BYTES`` is alive at a time.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import sys
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from gpuconv import backends, channelwise, parallel
from gpuconv._checks import SettingError, SizeLimitError, over_byte_limit
from gpuconv.shapes import ConvSpec, PoolSpec, adaptive_windows, conv_output_size, max_window_taps

NAME = "numpy"
PRECISIONS = ("ieee",)  # conv arithmetic this backend offers: strict IEEE float maths
LIFTS_1D = False  # a 1-D op's arrays come lifted to (N, C, 1, L) views
# im2col buffer budget per batch chunk: each chunk is a piece on the pool (its copy, GEMM
# and fold on one thread), so its buffer stays in that core's cache while the GEMM reads it
CHUNK_BYTES = 2 << 20
FOLD_CHUNK_BYTES = 1 << 20  # row-image fold buffer per batch chunk: its adds run in cache
CACHE_BLOCK_BYTES = 2 << 20  # working set of the depthwise im2col blocks (as PIECE_BYTES)
# Output planes below this many pixels make per-sample GEMMs too small for BLAS (each
# call pays its threads' start-up): the batch chunk then becomes one GEMM per group.
BATCH_GEMM_PIXELS = 512
# "numba": the compiled passes of kernels/cpu_numba.py (Numba is then required); "numpy":
# NumPy's; unset: the compiled ones where Numba is installed (the ``cpu`` extra)
CPU_KERNELS_ENV = "GPUCONV_CPU_KERNELS"


# --------------------------------------------------------------------------- array helpers
def cpu_kernels():
    """``gpuconv.kernels.cpu_numba`` (the compiled CPU passes), or None where NumPy's passes
    run instead (``CPU_KERNELS_ENV``)."""
    return _load_cpu_kernels(os.environ.get(CPU_KERNELS_ENV, "").strip())  # blank: unset


def cpu_engine() -> str:
    """Which passes ``cpu_kernels`` gives, for reports: "numba <version>" or "numpy"."""
    if cpu_kernels() is None:
        return "numpy"
    import numba
    return f"numba {numba.__version__}"


@functools.cache
def _load_cpu_kernels(choice: str):
    if choice not in ("", "numba", "numpy"):
        raise SettingError(f"{CPU_KERNELS_ENV} must be 'numba' or 'numpy' (or unset), got "
                           f"{choice!r}")
    if choice == "numpy":
        return None
    try:
        from gpuconv.kernels import cpu_numba
    except ImportError as error:  # not installed, or not for this NumPy
        if choice == "numba":
            raise ImportError(f"{CPU_KERNELS_ENV}=numba needs Numba (pip install "
                              f"'gpuconv[cpu]'): {error}") from error
        return None
    return cpu_numba


def from_foreign(array) -> np.ndarray:
    """Another library's array in host memory as a NumPy array, without a copy (DLPack)."""
    return np.from_dlpack(array)


def flip_kernel(weight: np.ndarray) -> np.ndarray:
    """The kernel axes reversed (a view): true convolution is correlation with it."""
    return backends.kernel_flipped(weight)



# --------------------------------------------------------------------------- windowing primitive
def _windows(xp: np.ndarray, kernel, stride, dilation, out_hw) -> np.ndarray:
    """Read-only view (N, C, kH, kW, H_out, W_out) of ``xp`` (N, C, H, W):
    ``view[n, c, i, j, oh, ow] = xp[n, c, oh*sH + i*dH, ow*sW + j*dW]``."""
    sn, sc, sh, sw = xp.strides
    shape = xp.shape[:2] + tuple(kernel) + tuple(out_hw)
    strides = (sn, sc, dilation[0] * sh, dilation[1] * sw, stride[0] * sh, stride[1] * sw)
    return as_strided(xp, shape=shape, strides=strides, writeable=False)


def _check_workspace(nbytes: int, whose: str) -> None:
    """Refuse, before allocating it, an unfolded-windows buffer above the byte limit."""
    over = over_byte_limit(nbytes)
    if over:
        raise SizeLimitError(f"input and weight are too large for the numpy backend: {whose} "
                             f"unfolded windows would take {over}")


def _batch_chunks(n: int, bytes_per_item: int, budget: int | None = None) -> list[slice]:
    _check_workspace(bytes_per_item, "one sample's")  # a chunk holds one sample at least
    return parallel.even_pieces(n, (budget or CHUNK_BYTES) // max(1, bytes_per_item))


def _row_bands(n: int, out_hw, row_bytes: int) -> list[tuple[int, slice]] | None:
    """(sample, output rows) pieces of about ``CHUNK_BYTES`` of im2col (``row_bytes`` an
    output row) where one sample's would not stay in cache; None where it would, or where
    small planes go side by side (``_batch_gemm``)."""
    rows = out_hw[0]
    if _batch_gemm(math.prod(out_hw)) or rows * row_bytes <= CHUNK_BYTES:
        return None
    _check_workspace(row_bytes, "one output row's")  # a band holds one row at least
    bands = parallel.even_pieces(rows, CHUNK_BYTES // max(1, row_bytes))
    return [(b, band) for b in range(n) for band in bands]


def _band_columns(win: np.ndarray, b: int, rows: slice, groups: int) -> np.ndarray:
    """The im2col matrices (1, G, C/G*kH*kW, rows*W_out) of sample b's output ``rows``, from
    its ``_windows`` view ``win`` (a ``_row_bands`` piece)."""
    band = win[b:b + 1, ..., rows, :]
    cols = _copy(np.empty(band.shape, dtype=band.dtype), band)
    return cols.reshape(1, groups, -1, band.shape[4] * band.shape[5])


def _on_chunks(fn, chunks: list) -> list:
    """``fn(chunk)`` for each batch chunk, the chunks spread over the pool (one BLAS thread
    each); what each returns, in chunk order."""
    with parallel.blas_at_one_thread():
        return parallel.run(fn, chunks, parallel.PIECE_BYTES if len(chunks) > 1 else 0)


def _to_rows(a: np.ndarray, width: int) -> np.ndarray:
    """Row image (C, N*H*width) of ``a`` (N, C, H, W), zero in the columns past W."""
    n, c, h, w = a.shape
    rows = np.empty((c, n, h, width), dtype=a.dtype)
    rows[..., w:] = 0
    _copy(rows[..., :w], a.transpose(1, 0, 2, 3))
    return rows.reshape(c, -1)


def _copy(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """``dst[...] = src`` in pieces over the thread pool, along the first axis or, when it
    is too short to share out (a chunk of one large sample), the second."""
    axis = 1 if dst.ndim > 1 and dst.shape[0] < 4 else 0
    n = dst.shape[axis]
    lead = (slice(None),) * axis

    def copy(piece):
        dst[lead + (piece,)] = src[lead + (piece,)]
    parallel.run(copy, parallel.pieces_by_bytes(n, dst.nbytes // max(1, n)), dst.nbytes)
    return dst


def _im2col(xp: np.ndarray, kernel, stride, dilation, out_hw, groups: int) -> np.ndarray:
    """The im2col matrices of the padded ``xp`` (N, C, H, W): (N, G, C/G*kH*kW,
    H_out*W_out), one per sample, or, for small output planes (``_batch_gemm``),
    (G, C/G*kH*kW, N*H_out*W_out) with the samples side by side in each row, so that one
    GEMM per group covers the batch."""
    (n, channels), (kh, kw), (ho, wo) = xp.shape[:2], kernel, out_hw
    k = channels // groups * kh * kw
    if not _batch_gemm(ho * wo):
        win = _windows(xp, kernel, stride, dilation, out_hw)
        cols = _copy(np.empty(win.shape, dtype=win.dtype), win)
        return cols.reshape(n, groups, k, ho * wo)
    # windows of a channels-first copy: the copy's inner loops then run along whole rows of
    # samples' windows, many times faster than from the (N, C) layout for a few samples
    win = _windows(_channels_first(xp), kernel, stride, dilation, out_hw)
    cols = np.empty((channels, kh, kw, n, ho, wo), dtype=xp.dtype)
    _copy(cols, win.transpose(0, 2, 3, 1, 4, 5))
    return cols.reshape(groups, k, n * ho * wo)


def _batch_gemm(pixels: int) -> bool:
    """Whether output planes of ``pixels`` pixels take batch-wide GEMMs."""
    return pixels < BATCH_GEMM_PIXELS


def _channels_first(a: np.ndarray) -> np.ndarray:
    """``a`` (N, C, H, W) as a contiguous (C, N, H, W) copy."""
    return _copy(np.empty((a.shape[1], a.shape[0]) + a.shape[2:], dtype=a.dtype),
                 a.transpose(1, 0, 2, 3))


# --------------------------------------------------------------------------- padding
def _source_index(size: int, before: int, after: int, mode: str) -> np.ndarray:
    """For each padded position, the input position it copies (reflect / replicate / circular)."""
    i = np.arange(-before, size + after)
    if mode == "replicate":
        return np.clip(i, 0, size - 1)
    if mode == "circular":
        return i % size
    if size == 1:  # reflect of a single element
        return np.zeros_like(i)
    period = 2 * (size - 1)
    i = i % period
    return np.where(i >= size, period - i, i)


def _pad(x: np.ndarray, padding, mode: str) -> np.ndarray:
    (top, bottom), (left, right) = padding
    if top == bottom == left == right == 0:
        return x
    h, w = x.shape[2:]
    if mode == "zeros":
        xp = np.zeros(x.shape[:2] + (top + h + bottom, left + w + right), dtype=x.dtype)
        xp[:, :, top:top + h, left:left + w] = x
        return xp
    rows = _source_index(h, top, bottom, mode)
    cols = _source_index(w, left, right, mode)
    return x[:, :, rows[:, None], cols[None, :]]


def _pad_backward(grad_padded: np.ndarray, padding, mode: str, in_hw) -> np.ndarray:
    """Adjoint of ``_pad``: each input element collects the gradient of every copy of it."""
    (top, bottom), (left, right) = padding
    h, w = in_hw
    if mode == "zeros":
        return grad_padded[:, :, top:top + h, left:left + w]
    rows = _gather_sum(grad_padded, 2, *_copies(_source_index(h, top, bottom, mode), h))
    return _gather_sum(rows, 3, *_copies(_source_index(w, left, right, mode), w))


def _gather_sum(a: np.ndarray, axis: int, index: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``out[.., i, ..] = sum over t of a[.., index[i, t], ..] where valid[i, t]``, along ``axis``.
    Each term is a gather masked with ``where``, so a NaN or inf reaches only the sums it
    belongs to (a matmul with a 0/1 matrix would spread it through 0 * inf)."""
    shape = [1] * a.ndim
    shape[axis] = index.shape[0]
    total = np.where(valid[:, 0].reshape(shape), np.take(a, index[:, 0], axis=axis), 0)
    for t in range(1, index.shape[1]):
        total += np.where(valid[:, t].reshape(shape), np.take(a, index[:, t], axis=axis), 0)
    return total


def _ranges(starts: np.ndarray, ends: np.ndarray):
    """``_gather_sum`` tables for the contiguous ranges ``[starts[i], ends[i])``."""
    offsets = np.arange(int((ends - starts).max()))
    index = starts[:, None] + offsets[None, :]
    return np.minimum(index, ends[:, None] - 1), index < ends[:, None]


def _copies(source: np.ndarray, size: int):
    """``_gather_sum`` tables that collect, for each of ``size`` positions, the positions of
    ``source`` that copy it."""
    order = np.argsort(source, kind="stable")
    counts = np.bincount(source, minlength=size)
    firsts = np.cumsum(counts) - counts
    index, valid = _ranges(firsts, firsts + counts)
    return order[index], valid


# --------------------------------------------------------------------------- convolution
def _correlate(x: np.ndarray, weight: np.ndarray, stride, dilation, groups: int, out_hw,
               zero_padding=((0, 0), (0, 0)), bias: np.ndarray | None = None,
               relu: bool = False) -> np.ndarray:
    """Grouped cross-correlation of ``x`` (N, C, H, W), zero-padded by ``zero_padding``
    ((top, bottom), (left, right)), with ``weight`` (O, C/G, kH, kW): y (N, O, H_out, W_out),
    plus ``bias`` (O,) and then max(y, 0) with ``relu`` (on each product's output while it is
    in cache, where the correlation is GEMMs)."""
    o, cg, kh, kw = weight.shape
    if _winograd_fits((kh, kw), stride, dilation, cg, o // groups, out_hw):
        y = _winograd_correlate(x, zero_padding, weight, dilation, groups, out_hw)
        if y is not None:
            return _bias_relu(y, bias, relu)
    if cg == 1 and groups > 1:
        return _bias_relu(_depthwise_correlate(x, zero_padding, weight.reshape(
            groups, o // groups, kh, kw), stride, dilation, out_hw), bias, relu)
    xp = _pad(x, zero_padding, "zeros")
    n, channels = xp.shape[:2]
    ho, wo = out_hw
    k = cg * kh * kw
    w_mat = np.ascontiguousarray(weight.reshape(groups, o // groups, k))  # BLAS-ready
    # the products' stacks end in the groups axis, their rows are a group's channels
    epilogue = channelwise.bias_relu_epilogue(bias, relu, groups, xp.dtype)
    y = np.empty((n, o, ho, wo), dtype=xp.dtype)
    if (kh, kw) == (1, 1) and tuple(stride) == (1, 1):
        # the input already is the im2col matrix of each sample: no copy
        x4 = xp.reshape(n, groups, cg, ho * wo)
        parallel.matmul(w_mat, x4, out=y.reshape(n, groups, o // groups, ho * wo),
                        epilogue=epilogue)
        return y
    row_bytes = channels * kh * kw * wo * xp.dtype.itemsize  # im2col of one output row
    bands = _row_bands(n, out_hw, row_bytes)
    if bands is not None:
        win = _windows(xp, (kh, kw), stride, dilation, out_hw)

        def correlate_band(piece):
            b, rows = piece
            band = parallel.matmul(w_mat, _band_columns(win, b, rows, groups), epilogue=epilogue)
            y[b:b + 1, :, rows] = band.reshape(1, o, -1, wo)
        _on_chunks(correlate_band, bands)
        return y

    def correlate(chunk):
        nb = chunk.stop - chunk.start
        cols = _im2col(xp[chunk], (kh, kw), stride, dilation, out_hw, groups)
        if not _batch_gemm(ho * wo):
            parallel.matmul(w_mat, cols, out=y[chunk].reshape(nb, groups, o // groups, ho * wo),
                            epilogue=epilogue)
            return
        _copy(y[chunk].transpose(1, 0, 2, 3),
              parallel.matmul(w_mat, cols, epilogue=epilogue).reshape(o, nb, ho, wo))
    _on_chunks(correlate, _batch_chunks(n, ho * row_bytes))
    return y


def _bias_relu(y: np.ndarray, bias: np.ndarray | None, relu: bool) -> np.ndarray:
    """``channelwise.add_bias_relu`` where there is something to add or clip."""
    return channelwise.add_bias_relu(y, bias, relu) if bias is not None or relu else y


# --------------------------------------------------------------------------- Winograd F(2x2, 3x3)
# Lavin & Gray 2016, "Fast Algorithms for Convolutional Neural Networks": a 3x3 stride-1
# correlation gives each 2x2 block of outputs from its 4x4 input tile d (tiles overlap by 2) as
#
#     Y = A^T [ U ⊙ (B^T d B) ] A,    U = G g G^T (g: the 3x3 kernel),
#
#     B^T = [[1,  0, -1,  0],    G = [[1,    0,    0  ],    A^T = [[1, 1,  1,  0],
#            [0,  1,  1,  0],         [1/2,  1/2,  1/2],           [0, 1, -1, -1]]
#            [0, -1,  1,  0],         [1/2, -1/2,  1/2],
#            [0,  1,  0, -1]]         [0,    0,    1  ]]
#
# Summed over input channels, the 16 elementwise products are 16 GEMMs, (O x C) @ (C x tiles):
# 16 multiply-adds per 4 outputs instead of 36 (2.25x fewer). The transforms are additions,
# written below as whole-array adds on shifted views.
WINOGRAD_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
WINOGRAD_CHUNK_BYTES = 16 << 20  # workspace of one chunk (input tiles, products, outputs)
# Per tile, the GEMMs do C*O multiply-adds (per group) and the transforms' NumPy passes
# move about C + O values: below this ratio the passes cost more than the multiplies saved
# (on a 2-core Zen4, against im2col in bands of output rows: 128->256 at 56x56 (ratio 85)
# forward 64 against 82 ms; 64->64 at 56x56 (32) even, 12.5 ms; 64->64 dilated 2 at 64x64
# (32) 22 against 16.5 ms; 32->64 at 14x14 (21) slower)
WINOGRAD_MIN_MACS_PER_VALUE = 48
# ... and with the compiled transforms (``cpu_kernels``), which cost a fraction of those
# passes (2-core Zen4, 2 threads, against im2col: 64->64 at 56x56 (32) 10.1 against 15.1 ms;
# 64->64 dilated 2 at 64x64 (32) 18.4 against 19.4, at 32x32 6.0 against 5.8; 32->64 at
# 14x14 (21) 8.2 against 8.3; 128->256 at 56x56 (85) even at 2 threads, 106 against 156 ms
# at one)
WINOGRAD_MIN_MACS_PER_VALUE_COMPILED = 24
WINOGRAD_MIN_PIXELS = 512  # per dilation phase: smaller planes make short runs, more edge tiles


def _winograd_fits(kernel_hw, stride, dilation, in_per_group: int, out_per_group: int,
                   out_hw) -> bool:
    """Whether a correlation takes ``_winograd_correlate``: the one rule for forward and
    grad-input (a dilation d splits the output into d x d phases of about H_out/d x W_out/d)."""
    phase_pixels = math.prod(o // d for o, d in zip(out_hw, dilation))
    macs, values = in_per_group * out_per_group, in_per_group + out_per_group
    min_ratio = (WINOGRAD_MIN_MACS_PER_VALUE if cpu_kernels() is None
                 else WINOGRAD_MIN_MACS_PER_VALUE_COMPILED)
    return (tuple(kernel_hw) == (3, 3) and tuple(stride) == (1, 1)
            and macs >= min_ratio * values
            and phase_pixels >= WINOGRAD_MIN_PIXELS)


def _winograd_correlate(x: np.ndarray, zero_padding, weight: np.ndarray, dilation,
                        groups: int, out_hw) -> np.ndarray | None:
    """Grouped 3x3 stride-1 correlation of ``x`` (N, C, H, W), zero-padded by
    ``zero_padding``, with ``weight`` (O, C/G, 3, 3) by Winograd F(2x2, 3x3), or None where
    a result is not finite: the transforms subtract inputs, so an inf gives NaN where the
    direct sum gives inf (the caller then takes im2col). A dilation d is d x d undilated
    convs of the padded input's phase sub-images (rows a, a + d, ...; columns b, b + d, ...),
    each filling ``y[:, :, a::d, b::d]``."""
    n, channels = x.shape[:2]
    o = weight.shape[0]
    # U = G g G^T per group, from float64: (16, G, O/G, C/G), GEMM-ready; as two tensordots
    # (BLAS, at one thread: its idle threads would spin into the tiles' work), which take a
    # fraction of an einsum's time
    with parallel.blas_at_one_thread():
        gg = np.tensordot(WINOGRAD_G, weight.astype(np.float64), axes=(1, 2))  # (4, O, C/G, 3)
        u = np.tensordot(gg, WINOGRAD_G, axes=(3, 1)).transpose(0, 3, 1, 2)  # (4, 4, O, C/G)
    u = np.ascontiguousarray(u.reshape(16, groups, o // groups, -1), dtype=x.dtype)
    y = np.empty((n, o) + tuple(out_hw), dtype=x.dtype)
    (dh, dw), (top, left) = dilation, (zero_padding[0][0], zero_padding[1][0])
    phases = [(a, b) for a in range(min(dh, out_hw[0])) for b in range(min(dw, out_hw[1]))]
    pieces = [((a, b), chunk) for a, b in phases for chunk in
              _winograd_chunks(n, channels, o, y[:, :, a::dh, b::dw].shape[2:], x.itemsize)]
    kernels = cpu_kernels()
    split = kernels is not None and (dh, dw) != (1, 1)
    if split:  # x's own dilation phases, each contiguous (zero past x), so that a
        # sub-image's rows are whole runs: x_phases[p, q, ..., r, s] = x[..., p + dh*r, q + dw*s]
        x_phases = np.empty((dh, dw, n, channels, -(-x.shape[2] // dh), -(-x.shape[3] // dw)),
                            dtype=x.dtype)
        kernels.split_planes(x, x_phases, 0, 0, (dh, dw))

    def tiles(piece):
        (a, b), chunk = piece
        # phase (a, b)'s padded rows a + dh*i are x's rows a - top + dh*i (columns alike)
        source, rows_of_x, cols_of_x = x, (a - top, dh), (b - left, dw)
        if split:  # those of one of x's phases
            p, q = (a - top) % dh, (b - left) % dw
            source, rows_of_x, cols_of_x = x_phases[p, q], ((a - top - p) // dh, 1), \
                ((b - left - q) // dw, 1)
        with np.errstate(invalid="ignore", over="ignore"):  # (a non-finite y is not kept)
            return _winograd_tiles(u, source, rows_of_x, cols_of_x, y[:, :, a::dh, b::dw],
                                   chunk)
    with parallel.blas_at_one_thread():
        finite = parallel.run(tiles, pieces, parallel.PIECE_BYTES if len(pieces) > 1 else 0)
    return y if all(finite) else None


def _inside(source, first: int, step: int, count: int, size: int):
    """For positions ``first + step*i`` (i < count) of a sub-image whose position j is
    index ``start + stride*j`` of an axis of ``size`` (``source`` = (start, stride)): the
    range of i that falls inside the axis, and the slice of the axis those read."""
    at, stride = source[0] + source[1] * first, source[1] * step
    lo = min(count, max(0, -(at // stride)))  # first i with at + stride*i >= 0
    hi = min(count, max(lo, -((at - size) // stride)))  # first i at or past the end
    begin = at + stride * lo
    return (lo, hi), slice(begin, begin + stride * (hi - lo - 1) + 1 if hi > lo else begin,
                           stride)


def _winograd_chunks(n: int, channels: int, o: int, out_hw, itemsize: int):
    """(samples, tile rows) chunks whose workspace (``_winograd_tiles``) is about
    ``WINOGRAD_CHUNK_BYTES``: several samples, or bands of tile rows of one."""
    rows, pitch = -(-out_hw[0] // 2), -(-out_hw[1] // 2) + 1
    tile_bytes = (28 * channels + 28 * o) * itemsize  # per tile, of _winograd_tiles' arrays
    _check_workspace(tile_bytes * pitch, "one tile row's Winograd")
    tiles = WINOGRAD_CHUNK_BYTES // tile_bytes
    if rows * pitch <= tiles:
        return [(s, slice(0, rows)) for s in parallel.pieces(n, tiles // (rows * pitch))]
    return [(slice(b, b + 1), band) for b in range(n)
            for band in parallel.pieces(rows, tiles // pitch)]


def _winograd_tiles(u: np.ndarray, x: np.ndarray, rows_of_x, cols_of_x, ys: np.ndarray,
                    chunk) -> bool:
    """``ys[samples, :, 2*tile rows]`` (N, O, H_out, W_out) for one chunk, in one workspace,
    from the sub-image of ``x`` (N, C, H, W) whose row i is x's row ``start + step*i`` for
    ``rows_of_x`` = (start, step), zero where that is outside x (columns alike); whether
    the result is finite.

    Layout: the sub-image's rows and columns split by parity, planes[pr, pc][r, s] =
    sub-image[2r + pr, 2s + pc], each flattened with a pitch of one more than the tile columns,
    so that every shift of the transforms is one offset of a flat array (the extra tile
    column is computed and dropped)."""
    samples, band = chunk
    _, groups, og, cg = u.shape
    o, channels = groups * og, groups * cg
    nb, r0, rows = samples.stop - samples.start, band.start, band.stop - band.start
    ho, wo = ys.shape[2:]
    pitch = -(-wo // 2) + 1
    n0 = rows * pitch  # tiles per sample and channel (the extra column included)
    tiles = nb * n0
    shapes = [(2, 2, channels, nb, rows + 2, pitch), (4, 2, channels, nb, n0 + 1),
              (16, channels, tiles), (16, o, tiles), (4, 2, o, nb, n0), (2, 2, o, nb, n0)]
    work = np.empty(sum(map(math.prod, shapes)), dtype=ys.dtype)
    ends = itertools.accumulate(map(math.prod, shapes))
    planes, t, v, m, s, out = (work[end - math.prod(shape):end].reshape(shape)
                               for end, shape in zip(ends, shapes))
    kernels = cpu_kernels()
    if kernels is not None:  # the band's sub-image rows and columns that lie inside x
        (r_lo, r_hi), r_src = _inside(rows_of_x, 2 * r0, 1, 2 * (rows + 2), x.shape[2])
        (c_lo, c_hi), c_src = _inside(cols_of_x, 0, 1, 2 * pitch, x.shape[3])
        kernels.split_planes(x[samples, :, r_src, c_src].transpose(1, 0, 2, 3), planes, r_lo,
                             c_lo, (2, 2))
    else:
        _winograd_parity_planes(x[samples], rows_of_x, cols_of_x, r0, planes)
    flat = planes.reshape(2, 2, channels, nb, -1)
    if kernels is not None:  # the same operations, fused into one pass
        kernels.winograd_input_transform(flat, v.reshape(16, channels, nb, n0), pitch)
    else:
        _winograd_input_transform(flat, t, v.reshape(4, 4, channels, nb, n0), pitch)
    vg, mg = v.reshape(16, groups, cg, tiles), m.reshape(16, groups, og, tiles)
    for k in range(16):
        for g in range(groups):
            np.dot(u[k, g], vg[k, g], out=mg[k, g])
    if kernels is not None:
        kernels.winograd_output_transform(m, out.reshape(2, 2, o, tiles))
        kernels.winograd_output_planes(out.reshape(2, 2, o, nb, rows, pitch), ys[samples],
                                       2 * r0)
    else:
        _winograd_output_transform(m.reshape(4, 4, o, nb, n0), s, out)
        blocks = out.reshape(2, 2, o, nb, rows, pitch)
        dst = ys[samples].transpose(1, 0, 2, 3)
        for i in range(2):
            for j in range(2):
                part = dst[:, :, 2 * r0 + i:2 * (r0 + rows):2, j::2]
                part[...] = blocks[i, j, :, :, :part.shape[2], :part.shape[3]]
    return bool(np.isfinite(out.sum()))


def _winograd_parity_planes(x: np.ndarray, rows_of_x, cols_of_x, r0: int,
                            planes: np.ndarray) -> None:
    """planes (2, 2, C, N, rows + 2, pitch) = the parity planes of the band of sub-images of
    x (N, C, H, W) from tile row r0 (``_winograd_tiles``' layout), zero outside x."""
    rows, pitch = planes.shape[4] - 2, planes.shape[5]
    src = x.transpose(1, 0, 2, 3)
    for pr in range(2):
        # plane rows r: sub-image rows 2*(r0 + r) + pr, x's rows start + step*(...)
        (r_lo, r_hi), r_src = _inside(rows_of_x, 2 * r0 + pr, 2, rows + 2, x.shape[2])
        for pc in range(2):
            (c_lo, c_hi), c_src = _inside(cols_of_x, pc, 2, pitch, x.shape[3])
            plane = planes[pr, pc]
            plane[:, :, r_lo:r_hi, c_lo:c_hi] = src[:, :, r_src, c_src]
            plane[:, :, :r_lo] = 0  # the zero padding, and past the sub-image's end
            plane[:, :, r_hi:] = 0
            plane[:, :, r_lo:r_hi, :c_lo] = 0
            plane[:, :, r_lo:r_hi, c_hi:] = 0


def _winograd_input_transform(flat: np.ndarray, t: np.ndarray, v4: np.ndarray,
                              pitch: int) -> None:
    """v4 (4, 4, C, N, n0) = B^T d B of every tile, from the parity planes ``flat`` (2, 2, C,
    N, -1), through ``t`` (4, 2, C, N, n0 + 1): whole-array adds on shifted views."""
    n0 = v4.shape[-1]
    # B^T d: rows (2i, 2i+1, 2i+2, 2i+3) are (even[i], odd[i], even[i+1], odd[i+1]); the
    # column shift below reads one element past each run, hence n0 + 1
    e0, o0 = flat[0, ..., :n0 + 1], flat[1, ..., :n0 + 1]
    e1, o1 = flat[0, ..., pitch:pitch + n0 + 1], flat[1, ..., pitch:pitch + n0 + 1]
    np.subtract(e0, e1, out=t[0])
    np.add(o0, e1, out=t[1])
    np.subtract(e1, o0, out=t[2])
    np.subtract(o0, o1, out=t[3])
    # (B^T d) B: the same along columns, for the four rows of B^T d at once
    e0, o0, e1, o1 = t[:, 0, ..., :n0], t[:, 1, ..., :n0], t[:, 0, ..., 1:], t[:, 1, ..., 1:]
    np.subtract(e0, e1, out=v4[:, 0])
    np.add(o0, e1, out=v4[:, 1])
    np.subtract(e1, o0, out=v4[:, 2])
    np.subtract(o0, o1, out=v4[:, 3])


def _winograd_output_transform(m4: np.ndarray, s: np.ndarray, out: np.ndarray) -> None:
    """out (2, 2, O, N, n0) = A^T m A of every tile's products m4 (4, 4, O, N, n0), through
    ``s`` (4, 2, O, N, n0): columns, then rows."""
    np.add(m4[:, 0], m4[:, 1], out=s[:, 0])
    s[:, 0] += m4[:, 2]
    np.subtract(m4[:, 1], m4[:, 2], out=s[:, 1])
    s[:, 1] -= m4[:, 3]
    np.add(s[0], s[1], out=out[0])
    out[0] += s[2]
    np.subtract(s[1], s[2], out=out[1])
    out[1] -= s[3]


def _depthwise_pieces(n: int, groups: int, m: int, taps: int, hw: int, itemsize: int):
    """(sample, channel block) pieces of a depthwise conv whose im2col block (channels, kH*kW,
    ``hw``) and outputs stay in cache."""
    _check_workspace(taps * hw * itemsize, "one channel's")  # a block holds one at least
    block = max(1, CACHE_BLOCK_BYTES // ((taps + m) * hw * itemsize))
    return [(b, g) for b in range(n) for g in parallel.pieces(groups, block)]


def _depthwise_columns(xp: np.ndarray, kernel, stride, dilation, out_hw):
    """The depthwise im2col view of the padded ``xp`` (N, C, H, W), (N, C, kH, kW, L) or
    (N, C, kH, kW, H_out, W_out), and its row pitch: output (oh, ow) is column
    ``oh * pitch + ow`` of its L = (H_out - 1)*pitch + W_out columns. At stride 1 the
    windows of a plane's row-major run of outputs are runs of ``xp``'s plane itself (pitch
    W, the columns past W_out unused) where its rows follow one another in memory, so the
    copy of a block moves long rows instead of W_out-element ones; otherwise it is
    ``_windows``' view with pitch W_out."""
    (ho, wo), (dh, dw) = out_hw, dilation
    sn, sc, sh, sw = xp.strides
    pitch = xp.shape[3]
    if tuple(stride) != (1, 1) or sh != pitch * sw:  # (or a plane's rows are not one run)
        return _windows(xp, kernel, stride, dilation, out_hw), wo
    # the last column read is the plane's last element: every window lies inside it
    return as_strided(xp, shape=xp.shape[:2] + tuple(kernel) + ((ho - 1) * pitch + wo,),
                      strides=(sn, sc, dh * sh, dw * sw, sw), writeable=False), pitch


def _depthwise_blocks(x: np.ndarray, zero_padding, kernel, stride, dilation, out_hw,
                      channels: int, exact: bool):
    """The im2col blocks of a depthwise conv of ``x`` (N, G, H, W), zero-padded by
    ``zero_padding``: ``block(b, g)`` gives sample b's channels g (at most ``channels``) as
    (count, kH*kW, L) columns and their pitch (``_depthwise_columns``; with ``exact`` the
    outputs' own (H_out*W_out) columns, which a gradient needs). The planes are copied into a
    zero-bordered buffer of the calling thread (its borders written once) and the block into
    another, both reused from piece to piece: no padded copy of ``x``, and each block is
    overwritten by the thread's next one."""
    h, w = x.shape[2:]
    (top, bottom), (left, right) = zero_padding
    padded_hw = (top + h + bottom, left + w + right)
    buffers = threading.local()

    def block(b: int, g: slice):
        count = g.stop - g.start
        if not hasattr(buffers, "padded"):
            buffers.padded = np.zeros((1, channels) + padded_hw, dtype=x.dtype)
            buffers.view, buffers.pitch = (
                (_windows(buffers.padded, kernel, stride, dilation, out_hw), out_hw[1]) if exact
                else _depthwise_columns(buffers.padded, kernel, stride, dilation, out_hw))
            buffers.cols = np.empty((channels, math.prod(kernel),
                                     math.prod(buffers.view.shape[4:])), dtype=x.dtype)
        buffers.padded[0, :count, top:top + h, left:left + w] = x[b, g]
        cols, window = buffers.cols[:count], buffers.view[0, :count]
        cols.reshape(window.shape)[...] = window
        return cols, buffers.pitch
    return block


def _every_window(in_hw, zero_padding, kernel_hw, stride, dilation, out_hw) -> bool:
    """Whether a correlation's output holds every window of the zero-padded input (pads >= 0),
    as the compiled depthwise passes take it: they read the padded plane's windows without
    bounds checks."""
    return all(min(pads) >= 0 and out == conv_output_size(size, k, s, pads, d)
               for size, pads, k, s, d, out in zip(in_hw, zero_padding, kernel_hw, stride,
                                                   dilation, out_hw))


def _depthwise_correlate(x: np.ndarray, zero_padding, weight: np.ndarray, stride, dilation,
                         out_hw) -> np.ndarray:
    """Depthwise correlation of ``x`` (N, G, H, W), zero-padded by ``zero_padding``, with
    ``weight`` (G, m, kH, kW) (channel multiplier m) as batched small GEMMs, per piece of
    channels of one sample: the im2col block (channels, kH*kW, L) of ``_depthwise_blocks``,
    in cache, times each channel's (m, kH*kW) kernel; or the compiled correlation of each
    channel's plane (``cpu_kernels``), which needs no im2col."""
    n, groups = x.shape[:2]
    _, m, kh, kw = weight.shape
    ho, wo = out_hw
    # contiguous: a flipped kernel (grad-input) would reshape to negative strides, which
    # NumPy cannot hand to BLAS
    w3 = np.ascontiguousarray(weight.reshape(groups, m, kh * kw))
    y5 = np.empty((n, groups, m, ho, wo), dtype=x.dtype)
    (top, bottom), (left, right) = zero_padding
    padded_hw = (x.shape[2] + top + bottom, x.shape[3] + left + right)
    padded_plane = math.prod(padded_hw)
    kernels = cpu_kernels()
    if kernels is not None and _every_window(x.shape[2:], zero_padding, (kh, kw), stride,
                                             dilation, out_hw):  # a plane, not its im2col
        def correlate_compiled(piece):
            b, g = piece
            kernels.depthwise_correlate(x[b, g], w3[g], y5[b, g], top, left, padded_hw, kw,
                                        tuple(stride), tuple(dilation))
        parallel.run(correlate_compiled,
                     _depthwise_pieces(n, groups, m, 1, padded_plane, x.itemsize), y5.nbytes)
        return y5.reshape(n, groups * m, ho, wo)
    pieces = _depthwise_pieces(n, groups, m, kh * kw, padded_plane, x.itemsize)
    block = _depthwise_blocks(x, zero_padding, (kh, kw), stride, dilation, out_hw,
                              pieces[0][1].stop if pieces else 0, exact=False)

    def correlate(piece):
        cols, pitch = block(*piece)
        rows = np.matmul(w3[piece[1]], cols)  # (channels, m, L)
        y5[piece] = as_strided(rows, shape=rows.shape[:2] + (ho, wo),
                               strides=rows.strides[:2] + (pitch * rows.itemsize, rows.itemsize))
    with parallel.blas_at_one_thread():  # its small products on the pool's threads alone
        parallel.run(correlate, pieces, y5.nbytes)
    return y5.reshape(n, groups * m, ho, wo)


def _depthwise_grad_weight(grad_out: np.ndarray, x: np.ndarray, zero_padding, stride,
                           dilation, kernel_hw) -> np.ndarray:
    """dL/dW (G, m, kH*kW) of a depthwise correlation of ``x`` (N, G, H, W), zero-padded by
    ``zero_padding``: per piece of channels, grad_out's (m, H_out*W_out) times the im2col
    block's transpose (``_depthwise_blocks``), summed over samples in order; or the compiled
    dot products of the two row images (``cpu_kernels``)."""
    n, groups = x.shape[:2]
    m, (ho, wo) = grad_out.shape[1] // groups, grad_out.shape[2:]
    kernels = cpu_kernels()
    if kernels is not None and _every_window(x.shape[2:], zero_padding, kernel_hw, stride,
                                             dilation, (ho, wo)):  # all samples, per channel
        (top, bottom), (left, right) = zero_padding
        padded_hw = (x.shape[2] + top + bottom, x.shape[3] + left + right)
        gy5 = grad_out.reshape(n, groups, m, ho, wo)
        grad_w = np.empty((groups, m, math.prod(kernel_hw)), dtype=grad_out.dtype)

        def grad_weight_compiled(g: slice):
            kernels.depthwise_grad_weight(x[:, g], gy5[:, g], grad_w[g], top, left, padded_hw,
                                          kernel_hw[1], tuple(stride), tuple(dilation))
        parallel.run(grad_weight_compiled,
                     parallel.pieces_by_bytes(groups, n * math.prod(x.shape[2:]) * x.itemsize),
                     x.nbytes)
        # The row images' columns past W_out are zeros of grad_out times inputs: zero while
        # the inputs are finite. A result that is not finite is computed again without them.
        if np.isfinite(grad_w).all():
            return grad_w
    gy4 = grad_out.reshape(n, groups, m, ho * wo)
    pieces = _depthwise_pieces(n, groups, m, math.prod(kernel_hw), ho * wo, grad_out.itemsize)
    block = _depthwise_blocks(x, zero_padding, kernel_hw, stride, dilation, (ho, wo),
                              pieces[0][1].stop if pieces else 0, exact=True)

    def grad_weight_t(piece):  # (channels, kH*kW, m): BLAS's fast orientation (a GEMV)
        cols, _ = block(*piece)
        return np.matmul(cols, gy4[piece].transpose(0, 2, 1))
    with parallel.blas_at_one_thread():
        parts = parallel.run(grad_weight_t, pieces, grad_out.nbytes)
    grad_w_t = np.zeros((groups, math.prod(kernel_hw), m), dtype=grad_out.dtype)
    for (_, g), part in zip(pieces, parts):  # samples in order, for each channel block
        grad_w_t[g] += part
    return grad_w_t.transpose(0, 2, 1)


def conv2d(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None, spec: ConvSpec,
           precision: str = "ieee", relu: bool = False) -> np.ndarray:
    """y (N, O, H_out, W_out) = x (N, C, H, W) correlated with weight (O, C/G, kH, kW) + bias,
    then max(y, 0) if ``relu``. ``precision`` is one of ``PRECISIONS`` (checked by the
    caller), as for every conv kernel."""
    out_hw = spec.output_shape(x.shape[2:], weight.shape[2:])
    if spec.padding_mode == "zeros":  # (applied where the correlation reads x)
        return _correlate(x, weight, spec.stride, spec.dilation, spec.groups, out_hw,
                          spec.padding, bias, relu)
    return _correlate(_pad(x, spec.padding, spec.padding_mode), weight, spec.stride,
                      spec.dilation, spec.groups, out_hw, bias=bias, relu=relu)


def conv2d_grad_bias(grad_out: np.ndarray) -> np.ndarray:
    """dL/db (O,) = sum of grad_out (N, O, H_out, W_out) over batch and pixels."""
    return channelwise.batch_channel_sums(grad_out)


def conv2d_grad_weight(grad_out: np.ndarray, x: np.ndarray, spec: ConvSpec, kernel_hw,
                       precision: str = "ieee") -> np.ndarray:
    """dL/dW (O, C/G, kH, kW): the correlation of the padded input with grad_out
    (N, O, H_out, W_out). H_out, W_out are grad_out's, which may be fewer than the
    input allows (a transposed convolution's grad-weight)."""
    n, channels = x.shape[:2]
    o, groups = grad_out.shape[1], spec.groups
    cg, (kh, kw), (ho, wo) = channels // groups, kernel_hw, grad_out.shape[2:]
    if cg == 1 and groups > 1:
        zero_padding = spec.padding if spec.padding_mode == "zeros" else ((0, 0), (0, 0))
        x = x if spec.padding_mode == "zeros" else _pad(x, spec.padding, spec.padding_mode)
        return _depthwise_grad_weight(grad_out, x, zero_padding, spec.stride, spec.dilation,
                                      kernel_hw).reshape(o, 1, kh, kw)
    xp = _pad(x, spec.padding, spec.padding_mode)
    win = _windows(xp, kernel_hw, spec.stride, spec.dilation, (ho, wo))
    k, og = cg * kh * kw, o // groups
    if (kh, kw) == (1, 1) and tuple(spec.stride) == (1, 1) and (ho, wo) == xp.shape[2:]:
        # each sample's input is its im2col matrix: per-sample GEMMs, no copy
        gy = grad_out.reshape(n, groups, og, ho * wo)
        x4 = xp.reshape(n, groups, cg, ho * wo)
        return parallel.matmul(gy, x4.transpose(0, 1, 3, 2)).sum(axis=0).reshape(o, cg, 1, 1)
    # Accumulate dW^T = cols @ dy^T: NumPy hands this orientation to BLAS as one GEMM per
    # sample, while dy @ cols^T falls back to a loop many times slower.
    def grad_weight_t(chunk):
        nb = chunk.stop - chunk.start
        cols = _im2col(xp[chunk], kernel_hw, spec.stride, spec.dilation, (ho, wo), groups)
        if not _batch_gemm(ho * wo):
            gy = grad_out[chunk].reshape(nb, groups, og, ho * wo)
            return parallel.matmul(cols, gy.transpose(0, 1, 3, 2)).sum(axis=0)
        gy = _channels_first(grad_out[chunk]).reshape(groups, og, nb * ho * wo)
        return parallel.matmul(cols, gy.transpose(0, 2, 1))

    def band_grad_weight_t(piece):  # (as forward's bands)
        b, rows = piece
        gy = grad_out[b:b + 1, :, rows].reshape(1, groups, og, -1)
        return parallel.matmul(_band_columns(win, b, rows, groups), gy.transpose(0, 1, 3, 2))[0]
    row_bytes = channels * kh * kw * wo * x.dtype.itemsize  # im2col of one output row
    bands = _row_bands(n, (ho, wo), row_bytes)
    if bands is not None:
        parts = _on_chunks(band_grad_weight_t, bands)
    else:
        parts = _on_chunks(grad_weight_t, _batch_chunks(n, ho * row_bytes))
    grad_w_t = np.zeros((groups, k, og), dtype=x.dtype)
    for part in parts:  # added in piece order, whichever threads ran them
        grad_w_t += part
    return np.ascontiguousarray(grad_w_t.transpose(0, 2, 1)).reshape(o, cg, kh, kw)


def conv2d_backward(grad_out, x, weight, spec: ConvSpec, output_mask, precision: str = "ieee",
                    transposed: bool = False):
    """(dx, dW, db) of a conv or transposed conv: ``gpuconv.backends.conv_backward`` over this
    module's kernels."""
    return backends.conv_backward(sys.modules[__name__], grad_out, x, weight, spec, output_mask,
                                  precision, transposed)


def _phase_taps(kernel: int, stride: int, dilation: int, phase: int):
    """Kernel taps that reach padded-input positions ``q*stride + phase``, and how to gather them.

    Tap k of output o lands on position o*s + k*d, so position q*s + r receives the taps
    with k*d = r (mod s), from output o = q - k*d // s. Those taps are every s/g-th
    (g = gcd(d, s)) and their output offsets step by d/g: a stride-1 correlation with
    dilation d/g. Returns (taps slice, offset of the last tap, dilation) or None.
    """
    first = next((k for k in range(kernel) if (k * dilation) % stride == phase), None)
    if first is None:
        return None
    g = math.gcd(dilation, stride)
    taps = slice(first, kernel, stride // g)
    last = first + (len(range(kernel)[taps]) - 1) * (stride // g)
    return taps, (last * dilation) // stride, dilation // g


def conv2d_grad_input(grad_out: np.ndarray, weight: np.ndarray, spec: ConvSpec, input_hw,
                      bias: np.ndarray | None = None, precision: str = "ieee") -> np.ndarray:
    """dL/dx (N, C, H, W) from grad_out (N, O, H_out, W_out) and weight (O, C/G, kH, kW): the
    transposed convolution of grad_out (also the forward of ``conv_transpose2d``, which adds
    its ``bias`` (C,)). Output rows that grad_out lacks count as zero (a transposed conv's
    ``output_padding``).

    Two exact strategies; each materialises one buffer per batch chunk, of the channel count
    of the tensor it starts from, so the one from the smaller channel count is taken:
    gather (a correlation of grad_out, O channels) or fold (a GEMM to C channels per tap,
    each tap then added back in a fixed order)."""
    (top, bottom), (left, right) = spec.padding
    padded_hw = (input_hw[0] + top + bottom, input_hw[1] + left + right)
    o, cg = weight.shape[:2]
    # a 1x1 stride-1 gather is one GEMM per sample on grad_out as it lies, a 3x3 stride-1
    # gather a Winograd correlation, which materialises no taps
    pointwise = weight.shape[2:] == (1, 1) and tuple(spec.stride) == (1, 1)
    winograd = _winograd_fits(weight.shape[2:], spec.stride, spec.dilation, o // spec.groups,
                              cg, padded_hw)
    if cg * spec.groups < o and not pointwise and not winograd:
        grad_padded = _grad_input_fold(grad_out, weight, spec, padded_hw)
        grad_x = _pad_backward(grad_padded, spec.padding, spec.padding_mode, input_hw)
    elif spec.padding_mode == "zeros":  # only the input's own positions of the padded grid
        grad_x = _grad_input_gather(grad_out, weight, spec, ((top, input_hw[0]),
                                                             (left, input_hw[1])))
    else:
        grad_padded = _grad_input_gather(grad_out, weight, spec,
                                         ((0, padded_hw[0]), (0, padded_hw[1])))
        grad_x = _pad_backward(grad_padded, spec.padding, spec.padding_mode, input_hw)
    return _bias_relu(np.ascontiguousarray(grad_x), bias, False)


def _grad_input_gather(grad_out: np.ndarray, weight: np.ndarray, spec: ConvSpec,
                       window) -> np.ndarray:
    """The slides' dL/dI = Correlation(W_pad, dL/dO_flip), one stride phase at a time, on the
    ``window`` ((first row, rows), (first column, columns)) of the padded input's grid."""
    n, o = grad_out.shape[:2]
    _, cg, kh, kw = weight.shape
    groups = spec.groups
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    phases = [(_phase_taps(kh, sh, dh, rh), _phase_taps(kw, sw, dw, rw))
              for rh in range(sh) for rw in range(sw)]
    # The kernel of the transposed correlation: (C, O/G, kH, kW), flipped in space.
    w_t = (weight.reshape(groups, o // groups, cg, kh, kw).transpose(0, 2, 1, 3, 4)
           .reshape(groups * cg, o // groups, kh, kw)[:, :, ::-1, ::-1])
    shape = (n, cg * groups, window[0][1], window[1][1])
    grad = None
    if (sh, sw) != (1, 1):  # positions of a phase no tap reaches stay zero
        grad = (np.zeros if None in itertools.chain(*phases) else np.empty)(shape, grad_out.dtype)
    for (rh, rw), (taps_h, taps_w) in zip(itertools.product(range(sh), range(sw)), phases):
        if taps_h is None or taps_w is None:
            continue  # no tap reaches this phase: its gradient is zero
        rows = _phase_span(window[0], sh, rh, taps_h, grad_out.shape[2])
        cols = _phase_span(window[1], sw, rw, taps_w, grad_out.shape[3])
        if rows is None or cols is None:
            continue  # no position of the window in this phase
        (first_h, count_h, source_h, pad_h), (first_w, count_w, source_w, pad_w) = rows, cols
        # taps were flipped above, so index the flipped kernel from its end
        sub = w_t[:, :, _flipped(taps_h[0], kh), _flipped(taps_w[0], kw)]
        part = _correlate(grad_out[:, :, source_h, source_w], sub, (1, 1),
                          (taps_h[2], taps_w[2]), groups, (count_h, count_w), (pad_h, pad_w))
        if grad is None:  # stride 1: the one phase is the whole window
            return part
        grad[:, :, first_h::sh, first_w::sw] = part
    return grad if grad is not None else np.zeros(shape, grad_out.dtype)


def _phase_span(window, stride: int, phase: int, taps, out_size: int):
    """Along one axis, the positions ``q*stride + phase`` of the padded grid inside
    ``window`` (first, count), for a phase whose ``taps`` (``_phase_taps``: kernel taps,
    offset, dilation) read grad_out positions q - offset + t*dilation: (the first one's index
    in the window, how many, the slice of grad_out they read, and its zero padding (before,
    after) up to the positions they read outside it), or None where there are none."""
    start, size = window
    first = (phase - start) % stride
    count = len(range(first, size, stride))
    if count == 0:
        return None
    kernel_taps, offset, dilation = taps
    lo = (start + first - phase) // stride - offset  # grad_out positions read: lo .. hi
    hi = lo + count - 1 + (len(range(kernel_taps.stop)[kernel_taps]) - 1) * dilation
    begin = min(max(lo, 0), out_size)
    end = min(max(hi + 1, begin), out_size)
    before = min(hi - lo + 1, max(0, -lo))
    return first, count, slice(begin, end), (before, hi - lo + 1 - before - (end - begin))


def _grad_input_fold(grad_out: np.ndarray, weight: np.ndarray, spec: ConvSpec,
                     padded_hw) -> np.ndarray:
    """dL/dI = W^T dL/dO (the slides' deconvolution), then each kernel tap's slice is added
    back where that tap read the input: the adjoint of ``_windows``."""
    n, o, ho, wo = grad_out.shape
    _, cg, kh, kw = weight.shape
    groups = spec.groups
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    w_t = weight.reshape(groups, o // groups, cg * kh * kw).transpose(0, 2, 1)
    # The row images' extra columns are zeros of dy times the weights: zero while the
    # weights are finite.
    if np.isfinite(weight).all():
        return _grad_input_fold_rows(grad_out, w_t, (kh, kw), spec.stride, spec.dilation,
                                     padded_hw)
    channels = cg * groups
    grad_padded = np.empty((n, channels) + padded_hw, dtype=grad_out.dtype)

    def fold_chunk(chunk):
        nb = chunk.stop - chunk.start
        gy = _channels_first(grad_out[chunk]).reshape(groups, o // groups, nb * ho * wo)
        cols = parallel.matmul(w_t, gy).reshape(channels, kh, kw, nb, ho, wo)
        planes = np.zeros((channels, nb) + padded_hw, dtype=grad_out.dtype)

        def fold(piece):
            target = planes[piece]
            for i in range(kh):
                for j in range(kw):
                    target[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh,
                           j * dw:j * dw + sw * (wo - 1) + 1:sw] += cols[piece, i, j]
        _fold_pieces(fold, planes)
        _copy(grad_padded[chunk].transpose(1, 0, 2, 3), planes)
    _on_chunks(fold_chunk,
               _batch_chunks(n, channels * kh * kw * ho * wo * grad_out.dtype.itemsize))
    return grad_padded


def _fold_pieces(fold, planes: np.ndarray) -> None:
    """Run ``fold(channels)`` over pieces of the channels of ``planes`` (C, ...): each
    piece adds every kernel tap in the same order, whatever thread runs it."""
    parallel.run(fold, parallel.pieces_by_bytes(planes.shape[0], planes[0].nbytes), planes.nbytes)


def _grad_input_fold_rows(grad_out: np.ndarray, w_t: np.ndarray, kernel_hw, stride, dilation,
                          padded_hw) -> np.ndarray:
    """The fold on row images, one stride phase at a time.

    Tap (i, j) of output (oh, ow) lands on padded position (oh*sH + i*dH, ow*sW + j*dW), that
    is on stride phase (i*dH mod sH, j*dW mod sW) at (oh + a, ow + b), a = i*dH // sH,
    b = j*dW // sW. Each phase plane is kept flat with the row pitch P of grad_out's row
    image (P = ceil(W_padded / sW), wide enough for every phase), so each tap's slice of
    W^T dL/dO is one contiguous run added at offset a*P + b of its phase plane. The phases
    are then interleaved into the padded gradient; a phase no tap reaches stays zero."""
    n, o, ho, wo = grad_out.shape
    (groups, k, _), (kh, kw), (hp, wp) = w_t.shape, kernel_hw, padded_hw
    (sh, sw), (dh, dw) = stride, dilation
    channels = groups * k // (kh * kw)
    hq, pitch = -(-hp // sh), -(-wp // sw)  # phase planes: rows, and the common row pitch
    length = (ho - 1) * pitch + wo
    phases = sorted({((i * dh) % sh, (j * dw) % sw) for i in range(kh) for j in range(kw)})
    grad_padded = np.empty((n, channels, hp, wp), dtype=grad_out.dtype)
    if len(phases) < sh * sw:
        grad_padded.fill(0)

    def fold_chunk(chunk):
        nb = chunk.stop - chunk.start
        gy = _to_rows(grad_out[chunk], pitch).reshape(groups, o // groups, -1)
        cols = parallel.matmul(w_t, gy).reshape(channels, kh, kw, nb, ho * pitch)
        planes = np.zeros((len(phases), channels, nb, hq * pitch), dtype=grad_out.dtype)

        def fold(piece):
            for i in range(kh):
                for j in range(kw):
                    (a, rh), (b, rw) = divmod(i * dh, sh), divmod(j * dw, sw)
                    start = a * pitch + b
                    target = planes[phases.index((rh, rw)), piece]
                    target[:, :, start:start + length] += cols[piece, i, j, :, :length]
        parallel.run(fold, parallel.pieces_by_bytes(channels, planes[:, 0].nbytes),
                     planes.nbytes)
        for phase, (rh, rw) in zip(planes, phases):
            rows = phase.reshape(channels, nb, hq, pitch)
            target = grad_padded[chunk, :, rh::sh, rw::sw]
            _copy(target.transpose(1, 0, 2, 3), rows[:, :, :target.shape[2], :target.shape[3]])
    row_bytes = channels * kh * kw * ho * pitch * grad_out.dtype.itemsize
    _on_chunks(fold_chunk, _batch_chunks(n, row_bytes, FOLD_CHUNK_BYTES))
    return grad_padded


def _flipped(taps: slice, kernel: int) -> slice:
    """The slice of a flipped kernel axis that holds ``taps`` of the original, in reverse."""
    ks = range(kernel)[taps]
    start = kernel - 1 - ks[-1]
    return slice(start, kernel - taps.start, taps.step)


# --------------------------------------------------------------------------- plane-wise passes
def _planewise(fn, *arrays: np.ndarray):
    """``fn(*arrays)`` for a pass that treats every (n, c) plane of its (N, C, ...) arrays
    alike (pooling), run on cache-sized pieces of planes, over the thread pool and on one
    thread alike (``parallel.map_batch``: each piece written into the output by the thread
    that computed it). ``fn`` returns an array or a tuple of arrays (or None), each
    (N, C, ...)."""
    n, c = arrays[0].shape[:2]
    got = parallel.map_batch(fn, *(a.reshape((n * c, 1) + a.shape[2:]) for a in arrays),
                             cache_blocked=True)

    def unplane(value):
        return None if value is None else value.reshape((n, c) + value.shape[2:])
    return tuple(map(unplane, got)) if isinstance(got, tuple) else unplane(got)


# --------------------------------------------------------------------------- max pooling
def _window_table(size: int, out: int, kernel: int, stride: int, padding: int,
                  dilation: int) -> np.ndarray:
    """(out, kernel) input positions of every window's taps along one axis. A tap in the
    padding repeats its window's nearest valid position (the first one before the input, the
    last one after it): a repeat of an element never beats it under ``_argmax_taps``' rule,
    so neither the maximum nor its index changes."""
    pos = np.arange(out)[:, None] * stride - padding + np.arange(kernel)[None, :] * dilation
    valid = (pos >= 0) & (pos < size)
    first = np.where(valid, pos, size).min(axis=1, keepdims=True)
    last = np.where(valid, pos, -1).max(axis=1, keepdims=True)
    return np.clip(pos, first, last).astype(np.int64)


def _take(a: np.ndarray, positions: np.ndarray, axis: int) -> np.ndarray:
    """``np.take(a, positions, axis)``, as a strided view when the positions are evenly
    spaced (every tap of a pooling window away from the padding)."""
    step = positions[1] - positions[0] if len(positions) > 1 else 1
    if step > 0 and np.array_equal(np.diff(positions), np.full(len(positions) - 1, step)):
        index = [slice(None)] * a.ndim
        index[axis] = slice(positions[0], positions[-1] + 1, step)
        return a[tuple(index)]
    return np.take(a, positions, axis=axis)


def _argmax_taps(taps, has_nan: bool, codes=None):
    """Running maximum over the same-shape arrays ``taps`` with PyTorch's rule for the
    index: the first maximum wins, a NaN wins over any number and, among NaNs, the last
    one. Returns the maximum and the code of the winning tap: its number, or ``codes[k]``
    for tap k (arrays or scalars that must grow strictly with k, as a row-major tap number
    does)."""
    codes = range(len(taps)) if codes is None else codes
    best = np.array(taps[0], copy=True)
    top = codes[-1] if np.ndim(codes[-1]) == 0 else codes[-1].max(initial=0)
    winner = np.zeros(best.shape, dtype=np.min_scalar_type(top))
    winner += codes[0]
    for k in range(1, len(taps)):
        value = np.ascontiguousarray(taps[k])  # the ufuncs below run far faster on it
        better = value > best
        if has_nan:
            better |= np.isnan(value)
            best = np.where(better, value, best)
        else:
            np.maximum(best, value, out=best)
        # codes only grow, so "code where better" is a maximum: no slow masked copy
        code = codes[k] if np.ndim(codes[k]) else winner.dtype.type(codes[k])
        np.maximum(winner, better * code, out=winner)
    return best, winner


def _max_pool_by_tables(x: np.ndarray, row_table: np.ndarray, col_table: np.ndarray):
    """Max over the windows ``row_table`` (H_out, kH) x ``col_table`` (W_out, kW) of x
    (N, C, H, W), and int64 flat indices ``h*W + w``. Separable: each window row first, then
    across rows, which keeps the row-major order the tie rule is stated in."""
    w = x.shape[3]
    (ho, kh), (wo, kw) = row_table.shape, col_table.shape
    has_nan = x.size > 0 and bool(np.isnan(x.max()))
    row_max, col_tap = _argmax_taps([_take(x, cols, 3) for cols in col_table.T], has_nan)
    # across rows, the window's tap number (row tap * kW + the row's column tap) comes along
    col_tap = col_tap.astype(np.min_scalar_type(kh * kw - 1))
    best, tap = _argmax_taps([_take(row_max, rows, 2) for rows in row_table.T], has_nan,
                             [_take(col_tap, rows, 2) + col_tap.dtype.type(i * kw)
                              for i, rows in enumerate(row_table.T)])
    # look each window's winning tap up in a table of flat indices (H_out, W_out, kH * kW)
    flat = (row_table[:, None, :, None] * w + col_table[None, :, None, :]).ravel()
    index = np.take(flat, tap + np.arange(0, ho * wo * kh * kw, kh * kw).reshape(ho, wo))
    return best, index


def max_pool2d(x: np.ndarray, spec: PoolSpec, return_indices: bool = True):
    """y (N, C, H_out, W_out) and, if asked, int64 flat indices ``h*W + w`` of each maximum:
    by the compiled pass (``cpu_kernels``) on pieces of planes, or by NumPy's passes."""
    (n, c, h, w), out_hw = x.shape, spec.output_shape(x.shape[2:])
    kernels = cpu_kernels()
    if kernels is not None:
        y, index = _max_pool2d_compiled(kernels, x, spec, out_hw)
        return y, (index if return_indices else None)
    inside = not any(map(any, spec.window_padding((h, w), out_hw)))  # no window reaches padding
    if not (return_indices and inside):
        return _planewise(lambda planes: _max_pool2d(planes, spec, return_indices), x)
    # pieces of planes written straight into the outputs
    planes = x.reshape(n * c, 1, h, w)
    y = np.empty((n * c, 1) + out_hw, dtype=x.dtype)
    index = np.empty(y.shape, dtype=np.int64)

    def pool(piece):
        if not _max_pool_inside(planes[piece], spec, out_hw, y[piece], index[piece]):
            y[piece], index[piece] = _max_pool2d(planes[piece], spec, True)
    parallel.run(pool, parallel.pieces_by_bytes(n * c, h * w * x.itemsize), x.nbytes)
    return y.reshape((n, c) + out_hw), index.reshape((n, c) + out_hw)


def _max_pool2d_compiled(kernels, x: np.ndarray, spec: PoolSpec, out_hw):
    """``max_pool2d`` by ``cpu_numba.max_pool2d_planes`` on pieces of planes, through the
    padding that holds every window (``PoolSpec.window_padding``)."""
    (n, c, h, w), pads = x.shape, spec.window_padding(x.shape[2:], out_hw)
    padded_hw = (h + sum(pads[0]), w + sum(pads[1]))
    planes = x.reshape(n * c, h, w)
    y = np.empty((n * c,) + out_hw, dtype=x.dtype)
    index = np.empty(y.shape, dtype=np.int64)

    def pool(piece: slice):
        kernels.max_pool2d_planes(planes[piece], y[piece], index[piece], pads[0][0], pads[1][0],
                                  padded_hw, tuple(spec.kernel_size), tuple(spec.stride),
                                  tuple(spec.dilation))
    parallel.run(pool, parallel.pieces_by_bytes(n * c, h * w * x.itemsize), x.nbytes)
    return y.reshape((n, c) + out_hw), index.reshape((n, c) + out_hw)


def _max_pool2d(x: np.ndarray, spec: PoolSpec, return_indices: bool):
    """Max pooling of planes x (P, 1, H, W) through padding: the indices by window tables."""
    h, w = x.shape[2:]
    out_hw = spec.output_shape((h, w))
    pads = spec.window_padding((h, w), out_hw)
    if return_indices:
        tables = [_window_table(n, o, k, s, p, d) for n, o, k, s, p, d in
                  zip((h, w), out_hw, spec.kernel_size, spec.stride, spec.padding, spec.dilation)]
        return _max_pool_by_tables(x, *tables)
    if any(map(any, pads)):
        xp = np.full(x.shape[:2] + (h + sum(pads[0]), w + sum(pads[1])), -np.inf, dtype=x.dtype)
        xp[:, :, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w] = x
    else:  # every window lies inside the input: read it in place
        xp = x
    # np.maximum propagates NaN, as PyTorch's max does
    return _separable_reduce(np.maximum, xp, spec, out_hw), None


def _max_pool_inside(x: np.ndarray, spec: PoolSpec, out_hw, best: np.ndarray,
                     index: np.ndarray) -> bool:
    """Max pooling with indices, into ``best`` and ``index``, where every window lies inside
    ``x`` (no padding reached): each window tap is a strided view of ``x``, taken in row-major
    order, and a tap wins where it beats the maximum so far (``>``: the first maximum wins).
    Its tap number k = r*kW + c gives the flat index: the window's corner + r*dH*W + c*dW.
    False where a NaN came out, whose rule (``_argmax_taps``) the tables path follows."""
    (kh, kw), (sh, sw), (dh, dw) = spec.kernel_size, spec.stride, spec.dilation
    (ho, wo), w = out_hw, x.shape[3]
    taps = (x[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            for i in range(kh) for j in range(kw))
    np.copyto(best, next(taps))
    tap = np.zeros(best.shape, dtype=np.min_scalar_type(kh * kw - 1))
    for k, value in enumerate(taps, 1):
        better = value > best
        np.maximum(best, value, out=best)
        # tap numbers only grow, so "k where better" is a maximum: no slow masked copy
        np.maximum(tap, better * tap.dtype.type(k), out=tap)
    if np.isnan(best).any():
        return False
    # r*dH*W + c*dW = r*(dH*W - dW*kW) + dW*k, with r = k // kW
    np.floor_divide(tap, kw, out=index, casting="unsafe")
    index *= dh * w - dw * kw
    index += tap if dw == 1 else tap * np.int64(dw)
    index += (np.arange(ho) * (sh * w))[:, None] + np.arange(wo) * sw  # window corners
    return True


def _separable_reduce(ufunc, xp: np.ndarray, spec: PoolSpec, out_hw) -> np.ndarray:
    """Reduce every window of the padded ``xp`` with ``ufunc`` (add, maximum): first along the
    window's rows, then its columns, kH + kW passes instead of kH * kW."""
    (kh, kw), (sh, sw), (dh, dw) = spec.kernel_size, spec.stride, spec.dilation
    ho, wo = out_hw
    rows = xp[:, :, 0:sh * (ho - 1) + 1:sh, :].copy()
    for i in range(1, kh):
        ufunc(rows, xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, :], out=rows)
    y = rows[:, :, :, 0:sw * (wo - 1) + 1:sw].copy()
    for j in range(1, kw):
        ufunc(y, rows[:, :, :, j * dw:j * dw + sw * (wo - 1) + 1:sw], out=y)
    return y


def checks_index_values() -> bool:
    """Whether ``max_pool2d_backward`` checks every index itself (the compiled scatter: it
    raises ``BadPoolIndex``, in the same pass), so that the caller need not check them
    first; NumPy's scatter trusts them."""
    return cpu_kernels() is not None


def max_pool2d_backward(grad_out: np.ndarray, indices: np.ndarray, input_hw,
                        spec: PoolSpec | None) -> np.ndarray:
    """dL/dx (N, C, H, W): each output's gradient is added to the input element its index
    names (max pooling with ``spec``, adaptive max pooling with None), on pieces of planes
    over the pool, in output order: by the compiled scatter (``cpu_kernels``), which raises
    ``BadPoolIndex`` for an index that names no tap of its output's window
    (``shapes.max_window_taps``) and writes nothing past it, or by NumPy, which trusts them
    (``functional`` checks them first unless told not to; an index past the plane is still
    a ``BadPoolIndex``). There, windows that share no element (``_disjoint_windows``) name
    each element once at most: their gradients are stored; otherwise ``np.add.at`` adds them
    (it keeps the GIL, so the pieces' other passes overlap with it, not each other's adds)."""
    n, c, ho, wo = grad_out.shape
    plane = input_hw[0] * input_hw[1]
    grad = np.empty((n * c, plane), dtype=grad_out.dtype)
    index2, grad_out2 = indices.reshape(n * c, ho * wo), grad_out.reshape(n * c, ho * wo)
    pieces = parallel.pieces_by_bytes(n * c, plane * grad.itemsize)

    kernels = cpu_kernels()
    if kernels is not None:
        (r_start, r_lo, r_hi, r_step), (c_start, c_lo, c_hi, c_step) = max_window_taps(
            spec, input_hw, (ho, wo))
        row_taps, col_taps = np.stack([r_start, r_lo, r_hi]), np.stack([c_start, c_lo, c_hi])
        row_of = (_plane_rows(*input_hw) if plane <= ROW_TABLES_CACHED_UP_TO
                  else _plane_rows.__wrapped__(*input_hw))

        def scatter_compiled(planes: slice):
            bad = kernels.max_pool2d_backward_planes(grad_out2[planes], index2[planes],
                                                     grad[planes], input_hw[1], row_of,
                                                     row_taps, r_step, col_taps, c_step)
            if bad >= 0:
                raise backends.BadPoolIndex.at(indices, planes.start * ho * wo + bad, plane)
        parallel.run(scatter_compiled, pieces, grad.nbytes)
        return grad.reshape((n, c) + tuple(input_hw))
    disjoint = spec is not None and _disjoint_windows(spec)

    def scatter(planes: slice):
        dst = grad[planes].reshape(-1)
        dst[...] = 0
        starts = np.arange(0, dst.size, plane, dtype=np.int64)  # each plane's first element
        flat = (index2[planes] + starts[:, None]).reshape(-1)
        try:
            if disjoint:
                dst[flat] = grad_out2[planes].reshape(-1)  # lets go of the GIL
            else:
                np.add.at(dst, flat, grad_out2[planes].reshape(-1))
        except IndexError:  # past the last plane (unchecked indices)
            bad = np.flatnonzero(index2[planes].reshape(-1) >= plane)[0]
            raise backends.BadPoolIndex.at(indices, planes.start * ho * wo + bad, plane) \
                from None
    parallel.run(scatter, pieces, grad.nbytes)
    return grad.reshape((n, c) + tuple(input_hw))


ROW_TABLES_CACHED_UP_TO = 1 << 20  # plane elements: 4 MiB a table kept between calls


@functools.lru_cache(maxsize=4)
def _plane_rows(h: int, w: int) -> np.ndarray:
    """The row of each flat position of an h x w plane (int32: as large as one float32
    plane), for the compiled max-pool scatter's window checks; kept for the planes of up
    to ROW_TABLES_CACHED_UP_TO elements (a larger one is made per call)."""
    rows = np.repeat(np.arange(h, dtype=np.int32), w)
    rows.flags.writeable = False  # shared by the calls
    return rows


def _disjoint_windows(spec: PoolSpec) -> bool:
    """Whether no two pooling windows share an input element: along each axis, each window
    ends before the next one starts."""
    return all(s >= d * (k - 1) + 1
               for k, s, d in zip(spec.kernel_size, spec.stride, spec.dilation))


# --------------------------------------------------------------------------- average pooling
def _avg_divisor(size: int, kernel: int, stride: int, padding: int, out: int,
                 count_include_pad: bool) -> np.ndarray:
    """Per-axis window sizes, as PyTorch counts them: a window is first clipped to the
    padded input, then (without count_include_pad) to the input."""
    start = np.arange(out) * stride - padding
    end = np.minimum(start + kernel, size + padding)
    if count_include_pad:
        return end - start
    return np.minimum(end, size) - np.maximum(start, 0)


def _avg_pool_geometry(spec: PoolSpec, in_hw, count_include_pad: bool, divisor_override, dtype):
    out_hw = spec.output_shape(in_hw)
    pads = spec.window_padding(in_hw, out_hw)  # (average pooling has no dilation)
    if divisor_override is not None:
        divisor = np.full(out_hw, divisor_override, dtype=dtype)
    else:
        dh, dw = (_avg_divisor(n, k, s, p, o, count_include_pad) for n, k, s, p, o in
                  zip(in_hw, spec.kernel_size, spec.stride, spec.padding, out_hw))
        divisor = np.multiply.outer(dh, dw).astype(dtype)
    return out_hw, pads, divisor


def avg_pool2d(x: np.ndarray, spec: PoolSpec, count_include_pad: bool, divisor_override):
    """y (N, C, H_out, W_out): window sums over divisors, by the compiled pass
    (``cpu_kernels``) or NumPy's (separable: rows, then columns)."""
    kernels = cpu_kernels()
    if kernels is not None:
        return _avg_pool2d_compiled(kernels, x, spec, count_include_pad, divisor_override)
    return _planewise(lambda planes: _avg_pool2d(planes, spec, count_include_pad,
                                                 divisor_override), x)


def _avg_pool2d(x: np.ndarray, spec: PoolSpec, count_include_pad: bool, divisor_override):
    out_hw, pads, divisor = _avg_pool_geometry(spec, x.shape[2:], count_include_pad,
                                               divisor_override, x.dtype)
    y = _separable_reduce(np.add, _pad(x, pads, "zeros"), spec, out_hw)
    y /= divisor
    return y


def _avg_pool2d_compiled(kernels, x: np.ndarray, spec: PoolSpec, count_include_pad: bool,
                         divisor_override):
    """``avg_pool2d`` on pieces of planes: the window sums are a depthwise correlation with a
    kernel of ones (``cpu_numba.depthwise_correlate``), then over the divisors."""
    (n, c, h, w) = x.shape
    out_hw, pads, divisor = _avg_pool_geometry(spec, (h, w), count_include_pad,
                                               divisor_override, x.dtype)
    padded_hw = (h + sum(pads[0]), w + sum(pads[1]))
    planes = x.reshape(n * c, h, w)
    y = np.empty((n * c, 1) + out_hw, dtype=x.dtype)
    ones = np.ones((n * c, 1, math.prod(spec.kernel_size)), dtype=x.dtype)

    def pool(piece: slice):
        kernels.depthwise_correlate(planes[piece], ones[piece], y[piece], pads[0][0],
                                    pads[1][0], padded_hw, spec.kernel_size[1],
                                    tuple(spec.stride), (1, 1))
        y[piece] /= divisor
    parallel.run(pool, parallel.pieces_by_bytes(n * c, h * w * x.itemsize), x.nbytes)
    return y.reshape((n, c) + out_hw)


def avg_pool2d_backward(grad_out: np.ndarray, spec: PoolSpec, input_hw, count_include_pad: bool,
                        divisor_override) -> np.ndarray:
    """dL/dx (N, C, H, W): each output's gradient over its divisor, spread over its window
    (the adjoint of the separable sums, column taps then row taps, in a fixed order)."""
    _, pads, divisor = _avg_pool_geometry(spec, input_hw, count_include_pad, divisor_override,
                                          grad_out.dtype)
    if spec.kernel_size == spec.stride and not any(map(any, pads)):
        return _avg_pool2d_backward_tiled(grad_out, spec.kernel_size, input_hw, divisor)
    return _planewise(lambda gy: _avg_pool2d_backward(gy, spec, input_hw, count_include_pad,
                                                      divisor_override), grad_out)


def _avg_pool2d_backward_tiled(grad_out: np.ndarray, kernel_hw, input_hw,
                               divisor: np.ndarray) -> np.ndarray:
    """The backward of windows that tile the input (no padding reached): each element is in
    one window at most, so its gradient is that window's over its ``divisor`` (H_out,
    W_out), repeated along each row of windows (one short pass), then that row copied to
    each of the windows' rows, in pieces of the output's planes (long runs; rows and
    columns past the last window get none): compiled where ``cpu_kernels`` gives it."""
    n, c, ho, wo = grad_out.shape
    (kh, kw), (h, w) = kernel_hw, input_hw
    gy3 = grad_out.reshape(n * c, ho, wo)
    kernels = cpu_kernels()
    if kernels is not None:  # the same, compiled: no temporaries, every row written once
        grad_x = np.empty((n * c, h, w), dtype=grad_out.dtype)
        parallel.run(lambda planes: kernels.avg_pool2d_backward_tiled(
            gy3[planes], divisor, tuple(kernel_hw), grad_x[planes]),
            parallel.pieces_by_bytes(n * c, h * w * grad_x.itemsize), grad_x.nbytes)
        return grad_x.reshape(n, c, h, w)
    tail = (h, w) != (ho * kh, wo * kw)
    grad_x = (np.zeros if tail else np.empty)((n * c, h, w), dtype=grad_out.dtype)

    def spread(planes: slice):
        out = grad_x[planes]
        window_rows = as_strided(out, shape=(len(out), ho, kh, wo * kw),
                                 strides=(out.strides[0], kh * out.strides[1], out.strides[1],
                                          out.strides[2]))
        window_rows[...] = (gy3[planes] / divisor).repeat(kw, axis=2)[:, :, None, :]
    parallel.run(spread, parallel.pieces_by_bytes(n * c, h * w * grad_x.itemsize), grad_x.nbytes)
    return grad_x.reshape(n, c, h, w)


def _avg_pool2d_backward(grad_out: np.ndarray, spec: PoolSpec, input_hw,
                         count_include_pad: bool, divisor_override) -> np.ndarray:
    out_hw, pads, divisor = _avg_pool_geometry(spec, input_hw, count_include_pad,
                                               divisor_override, grad_out.dtype)
    (kh, kw), (sh, sw) = spec.kernel_size, spec.stride
    (ho, wo) = out_hw
    padded_hw = (input_hw[0] + sum(pads[0]), input_hw[1] + sum(pads[1]))
    scaled = grad_out / divisor
    rows = np.zeros(grad_out.shape[:3] + (padded_hw[1],), dtype=grad_out.dtype)
    for j in range(kw):
        rows[:, :, :, j:j + sw * (wo - 1) + 1:sw] += scaled
    grad_padded = np.zeros(grad_out.shape[:2] + padded_hw, dtype=grad_out.dtype)
    for i in range(kh):
        grad_padded[:, :, i:i + sh * (ho - 1) + 1:sh, :] += rows
    return np.ascontiguousarray(_pad_backward(grad_padded, pads, "zeros", input_hw))


# --------------------------------------------------------------------------- power-average pooling
# Powers of negative values (NaN) and of zero (inf) are Lp pooling's results, as PyTorch's,
# which gives them without a warning
def _ieee_powers():
    return np.errstate(invalid="ignore", divide="ignore", over="ignore")


def lp_pool2d(x: np.ndarray, spec: PoolSpec, norm_type: float) -> np.ndarray:
    """PyTorch's definition: (window size * avg_pool(x ** p)) ** (1/p) (no padding). The
    spec's kernel is the one asked for (it is the factor); the average runs on its bounded
    windows (``PoolSpec.bounded``: the same average, no pass per tap of an overhanging
    kernel)."""
    window = math.prod(spec.kernel_size)
    with _ieee_powers():
        average = avg_pool2d(x ** norm_type, spec.bounded(x.shape[2:]), True, None)
        return (average * window) ** (1.0 / norm_type)


def lp_pool2d_backward(grad_out: np.ndarray, x: np.ndarray, spec: PoolSpec,
                       norm_type: float) -> np.ndarray:
    p, window = norm_type, math.prod(spec.kernel_size)
    spec = spec.bounded(x.shape[2:])  # (as lp_pool2d)
    with _ieee_powers():
        total = avg_pool2d(x ** p, spec, True, None) * window
        # d total**(1/p) / d total; a window of zeros, or of NaN (but for a NaN factor), gets
        # gradient 0, as in PyTorch (reference.lp_pool2d_backward)
        safe_total = total + (total == 0)
        grad_total = (grad_out * (np.abs(total) > 0)) * (safe_total ** (1.0 / p - 1.0) / p) * window
        grad_pow = avg_pool2d_backward(grad_total, spec, x.shape[2:], True, None)
        return grad_pow * (p * x ** (p - 1.0))


# --------------------------------------------------------------------------- adaptive pooling
def _adaptive_ranges(size: int, out: int):
    """``_gather_sum`` tables of the adaptive windows along one axis, and the window sizes."""
    starts, ends = adaptive_windows(size, out)
    return _ranges(starts, ends), ends - starts


def _adaptive_members(size: int, out: int):
    """``_gather_sum`` tables that collect, for each input position, the adaptive windows
    holding it: a contiguous run, since window starts and ends both grow with the index."""
    starts, ends = adaptive_windows(size, out)
    positions = np.arange(size)
    return _ranges(np.searchsorted(ends, positions, "right"),
                   np.searchsorted(starts, positions, "right"))


def adaptive_avg_pool2d(x: np.ndarray, out_hw) -> np.ndarray:
    """Mean over adaptive windows: window sums along rows, then columns, over window sizes."""
    rows, sizes_h = _adaptive_ranges(x.shape[2], out_hw[0])
    cols, sizes_w = _adaptive_ranges(x.shape[3], out_hw[1])
    sums = _gather_sum(_gather_sum(x, 2, *rows), 3, *cols)
    return sums / np.multiply.outer(sizes_h, sizes_w).astype(x.dtype)


def adaptive_avg_pool2d_backward(grad_out: np.ndarray, input_hw) -> np.ndarray:
    """Each input element gathers grad_out / window size from the windows that hold it."""
    (h, w), (ho, wo) = input_hw, grad_out.shape[2:]
    _, sizes_h = _adaptive_ranges(h, ho)
    _, sizes_w = _adaptive_ranges(w, wo)
    scaled = grad_out / np.multiply.outer(sizes_h, sizes_w).astype(grad_out.dtype)
    return _gather_sum(_gather_sum(scaled, 2, *_adaptive_members(h, ho)), 3,
                       *_adaptive_members(w, wo))


def adaptive_max_pool2d(x: np.ndarray, out_hw):
    """Max over adaptive windows. Windows differ in size, so a window's missing taps repeat
    its last element (``_ranges`` clamps them), which changes neither maximum nor index."""
    (rows, _), _ = _adaptive_ranges(x.shape[2], out_hw[0])
    (cols, _), _ = _adaptive_ranges(x.shape[3], out_hw[1])
    return _planewise(lambda planes: _max_pool_by_tables(planes, rows, cols), x)
