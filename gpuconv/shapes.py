"""Shape arithmetic shared by every backend, the oracle, the tests and the benchmarks.

The slides' "calculating output dimensions", for one spatial axis of size ``n``,
kernel ``k``, stride ``s``, padding ``p_lo + p_hi``, dilation ``d``:

    conv            out = floor((n + p_lo + p_hi - d*(k-1) - 1) / s) + 1
    conv_transpose  out = (n - 1)*s - (p_lo + p_hi) + d*(k-1) + output_padding + 1
    pooling         out = floor_or_ceil((n + 2p - d*(k-1) - 1) / s) + 1,
                    and with ceil_mode the last window is dropped when it would
                    start inside the right padding (PyTorch's rule).

Hyper-parameters are normalised once into a frozen spec (``ConvSpec`` /
``PoolSpec``) whose constructors validate them, then bounded by the input
(``bounded``: the same windows, no stride, kernel or dilation larger than the
padded input), so every backend receives the same, already checked description
of the op.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, replace
from typing import Sequence, Union

import numpy as np

from gpuconv._checks import check_bool, check_int

IntOrTuple = Union[int, Sequence[int]]
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


# --------------------------------------------------------------------------- helpers
def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def ntuple(value: IntOrTuple, n: int, name: str) -> tuple[int, ...]:
    """``value`` as an n-tuple of ints: an int or a 1-tuple is repeated (PyTorch broadcasts
    ``stride=(2,)`` on a 2-D op), any other sequence must have length n."""
    if _is_int(value):
        return (int(value),) * n
    if isinstance(value, (tuple, list)) and len(value) in (1, n) and all(_is_int(v) for v in value):
        return tuple(int(v) for v in value) * (n // len(value))
    raise TypeError(f"{name} must be an int or a tuple of {n} ints, got {value!r}")


def _check_window(kernel: int, stride: int, dilation: int) -> None:
    """The 1-D formulas' own arguments: a zero stride would divide by zero."""
    for name, value in (("kernel", kernel), ("stride", stride), ("dilation", dilation)):
        check_int(value, name, 1)


def _check_axes(spec_ndim: int, **sizes) -> None:
    """Per-axis arguments of a spec's method hold one size per spatial axis (zip would drop
    the rest), a kernel's positive (the spec's own fields were checked by ``make``)."""
    for name, values in sizes.items():
        if len(values) != spec_ndim:
            raise ValueError(f"{name} must hold {spec_ndim} sizes, one per spatial axis, got "
                             f"{tuple(values)}")
    kernel = sizes.get("kernel", ())
    if not all(_is_int(k) and k >= 1 for k in kernel):
        raise ValueError(f"kernel must hold positive ints, got {tuple(kernel)}")


def _positive(values: tuple[int, ...], name: str) -> tuple[int, ...]:
    if any(v <= 0 for v in values):
        raise ValueError(f"{name} must be positive, got {values}")
    return values


def _non_negative(values: tuple[int, ...], name: str) -> tuple[int, ...]:
    if any(v < 0 for v in values):
        raise ValueError(f"{name} must be non-negative, got {values}")
    return values


# --------------------------------------------------------------------------- 1-D formulas
def conv_output_size(size: int, kernel: int, stride: int = 1, padding: tuple[int, int] = (0, 0),
                     dilation: int = 1) -> int:
    """Output length of a convolution along one axis (``padding`` is ``(before, after)``, or
    an int for both)."""
    _check_window(kernel, stride, dilation)
    before, after = (padding, padding) if _is_int(padding) else padding
    return _conv_size(size, kernel, stride, before + after, dilation)


def _conv_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """``conv_output_size`` of checked arguments (``padding``: both sides' sum)."""
    return (size + padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1,
                               padding: tuple[int, int] = (0, 0), dilation: int = 1,
                               output_padding: int = 0) -> int:
    """Output length of a transposed convolution: the input length of the conv it transposes
    (``padding`` as for ``conv_output_size``)."""
    _check_window(kernel, stride, dilation)
    before, after = (padding, padding) if _is_int(padding) else padding
    return (size - 1) * stride - before - after + dilation * (kernel - 1) + output_padding + 1


def pool_output_size(size: int, kernel: int, stride: int, padding: int = 0, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Output length of a pooling window sweep, with PyTorch's ``ceil_mode`` rule."""
    _check_pool_window(kernel, stride, padding, dilation)
    return _pool_size(size, kernel, stride, padding, dilation, check_bool(ceil_mode, "ceil_mode"))


def pool_windows_rounded(size: int, kernel: int, stride: int, padding: int = 0,
                         dilation: int = 1, ceil_mode: bool = False) -> int:
    """The pooling formula's window count, floor(...) + 1 or with ``ceil_mode`` ceil(...) + 1,
    before ``pool_output_size`` drops a last window that would start in the right padding."""
    _check_pool_window(kernel, stride, padding, dilation)
    return _pool_rounded(size, kernel, stride, padding, dilation,
                         check_bool(ceil_mode, "ceil_mode"))


def _check_pool_window(kernel: int, stride: int, padding: int, dilation: int) -> None:
    _check_window(kernel, stride, dilation)
    check_int(padding, "padding", 0)


def _pool_rounded(size, kernel, stride, padding, dilation, ceil_mode: bool) -> int:
    """``pool_windows_rounded`` of checked arguments."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    return (-(-span // stride) if ceil_mode else span // stride) + 1


def _pool_size(size, kernel, stride, padding, dilation, ceil_mode: bool) -> int:
    """``pool_output_size`` of checked arguments."""
    rounded = _pool_rounded(size, kernel, stride, padding, dilation, ceil_mode)
    if ceil_mode and (rounded - 1) * stride >= size + padding:
        return rounded - 1  # the last window would start inside the right padding
    return rounded


def pool_has_empty_window(size: int, kernel: int, stride: int, padding: int = 0,
                          dilation: int = 1, out: int | None = None) -> bool:
    """Whether a dilated pooling window can hold padding only (its maximum would be
    -inf with no input position to point at, so gpuconv rejects such a sweep).

    In closed form, for any sizes: with ``padding <= kernel / 2`` (``PoolSpec``'s rule) a
    window starting inside the input holds its first tap, and a window starting at
    ``-r < 0`` has a tap inside the padding-free range; its first non-negative tap lands on
    ``(-r) mod dilation``. So a window is empty iff ``(o*stride - padding) mod dilation >=
    size`` for one of the ``m = ceil(padding / stride)`` windows that start in the
    padding, and ``x mod d >= n`` is ``floor((x + d - n) / d) - floor(x / d)``: two floor
    sums count them."""
    if out is None:
        out = pool_output_size(size, kernel, stride, padding, dilation)
    starts_in_padding = min(out, -(-padding // stride))
    if dilation <= size or starts_in_padding <= 0:
        return False
    empty = (floor_sum(starts_in_padding, dilation, stride, dilation - size - padding)
             - floor_sum(starts_in_padding, dilation, stride, -padding))
    return empty > 0


def floor_sum(n: int, m: int, a: int, b: int) -> int:
    """``sum(floor((a*i + b) / m) for i in range(n))`` in O(log) steps (the Euclid-like
    reduction), for n >= 0, m > 0 and any integers a, b."""
    total = 0
    if a < 0 or a >= m:
        total += (a // m) * n * (n - 1) // 2
        a %= m
    if b < 0 or b >= m:
        total += (b // m) * n
        b %= m
    while True:
        if a >= m:
            total += (a // m) * n * (n - 1) // 2
            a %= m
        if b >= m:
            total += (b // m) * n
            b %= m
        y_max = a * n + b
        if y_max < m:
            return total
        n, b, m, a = y_max // m, y_max % m, a, m


def same_padding(kernel: int, dilation: int = 1) -> tuple[int, int]:
    """``padding="same"`` for stride 1: the extra element of an even kernel goes after (as PyTorch)."""
    _check_window(kernel, 1, dilation)
    total = dilation * (kernel - 1)
    return total // 2, total - total // 2


def keras_same_padding(size: int, kernel: int, stride: int = 1,
                       dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's / Keras' ``padding="same"`` at any stride: ``ceil(size / stride)``
    outputs, the padding they need split in two with the odd element after (for stride 1
    this is ``same_padding``)."""
    _check_window(kernel, stride, dilation)
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def keras_same_transpose_padding(kernel: int, stride: int = 1,
                                 dilation: int = 1) -> tuple[tuple[int, int], int]:
    """Keras' ``padding="same"`` of a transposed convolution (output = input * stride), as
    ``((before, after), output_padding)``: the transpose of the "same" convolution of an
    input ``stride`` times larger, which crops that convolution's padding, or pads the end
    (output_padding) where the dilated kernel is shorter than the stride."""
    _check_window(kernel, stride, dilation)
    span = dilation * (kernel - 1) + 1
    total = max(span - stride, 0)
    return (total // 2, total - total // 2), max(stride - span, 0)


def adaptive_output_size(output_size, spatial: Sequence[int]) -> tuple[int, ...]:
    """Adaptive pooling's output sizes for an input of ``spatial`` sizes: an int for every
    axis or one per axis, where (as in PyTorch, 2-D only) None keeps that axis' input size."""
    if len(spatial) == 2 and isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        output_size = tuple(n if o is None else o for o, n in zip(output_size, spatial))
    out = ntuple(output_size, len(spatial), "output_size")
    if any(o <= 0 for o in out):
        raise ValueError(f"output_size must be positive, got {out}")
    return out


def adaptive_windows(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)``: int64 arrays of the ``[start, end)`` of each adaptive-pooling window
    (PyTorch's split ``floor(i*size/out)``, ``ceil((i+1)*size/out)``), computed as
    ``i*q + floor(i*r/out)`` with ``size = q*out + r`` so no product overflows."""
    if not (_is_int(size) and _is_int(out) and size >= 0 and out >= 1):
        raise ValueError(f"adaptive windows need a size >= 0 and an output size >= 1, got "
                         f"{size!r} and {out!r}")
    q, r = divmod(size, out)
    i = np.arange(out + 1, dtype=np.int64)
    bounds_floor = i * q + (i * r) // out
    bounds_ceil = i * q - (-(i * r) // out)
    return bounds_floor[:-1], bounds_ceil[1:]


def max_window_taps(spec: "PoolSpec | None", in_hw, out_hw) -> list[tuple]:
    """Per axis (rows, then columns), where each max-pooling window's taps lie inside the
    input: ``(start, lo, hi, step)``, window o holding the positions i with lo[o] <= i <= hi[o]
    and (i - start[o]) % step == 0 (int64 arrays, a step int). ``spec`` None: adaptive windows
    (``adaptive_windows``, step 1). The indices max pooling returns name such positions."""
    taps = []
    for axis, (size, out) in enumerate(zip(in_hw, out_hw)):
        if spec is None:
            start, end = adaptive_windows(size, out)
            taps.append((start, start, end - 1, 1))
            continue
        k, s, p, d = (spec.kernel_size[axis], spec.stride[axis], spec.padding[axis],
                      spec.dilation[axis])
        # in int64 throughout: a stride matters only for a second window, a dilation only for
        # a second tap, and then both are within the padded input (as is the window's reach)
        start = np.arange(out, dtype=np.int64) * (s if out > 1 else 0) - p
        step = d if k > 1 else 1
        lo = np.where(start < 0, start + (-start + step - 1) // step * step, start)  # first inside
        hi = np.minimum(start + min((k - 1) * d, size + p), size - 1)
        taps.append((start, lo, hi, step))
    return taps


# --------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class ConvSpec:
    """Hyper-parameters of an N-d convolution or transposed convolution, validated.

    ``padding`` holds ``(before, after)`` per spatial axis, so ``"same"`` with an
    even kernel is exact; ``make`` also takes such pairs directly (``keras_same_padding``
    at a stride above 1 needs them). ``output_padding`` is used by transposed convolution only.
    """

    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int = 1
    padding_mode: str = "zeros"
    output_padding: tuple[int, ...] = ()

    @property
    def ndim(self) -> int:
        return len(self.stride)

    @classmethod
    def make(cls, ndim: int, kernel_size: tuple[int, ...], stride: IntOrTuple = 1,
             padding: IntOrTuple | str = 0, dilation: IntOrTuple = 1, groups: int = 1,
             padding_mode: str = "zeros", output_padding: IntOrTuple = 0,
             transposed: bool = False) -> "ConvSpec":
        ndim = check_int(ndim, "ndim", 1)
        kernel_size = _positive(ntuple(kernel_size, ndim, "kernel_size"), "kernel_size")
        stride_t = _positive(ntuple(stride, ndim, "stride"), "stride")
        dilation_t = _positive(ntuple(dilation, ndim, "dilation"), "dilation")
        check_int(groups, "groups", 1)
        if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if transposed and padding_mode != "zeros":
            raise ValueError("padding_mode must be 'zeros' for a transposed convolution")
        if isinstance(padding, str):
            if transposed:
                raise ValueError(f"padding must be an int or a tuple of {ndim} ints for a "
                                 f"transposed convolution, got {padding!r}")
            if padding == "valid":
                pairs = ((0, 0),) * ndim
            elif padding == "same":
                if any(s != 1 for s in stride_t):
                    raise ValueError("padding='same' needs stride 1 (PyTorch's rule), "
                                     f"got stride={stride_t}")
                pairs = tuple(same_padding(k, d) for k, d in zip(kernel_size, dilation_t))
            else:
                raise ValueError(f"padding must be an int, a tuple of {ndim} ints, 'valid' or "
                                 f"'same', got {padding!r}")
        elif isinstance(padding, (tuple, list)) and padding and \
                all(isinstance(p, (tuple, list)) for p in padding):
            if len(padding) != ndim:
                raise TypeError(f"padding must hold {ndim} (before, after) pairs, got {padding!r}")
            pairs = tuple(_non_negative(ntuple(p, 2, "padding pair"), "padding") for p in padding)
        else:
            pads = _non_negative(ntuple(padding, ndim, "padding"), "padding")
            pairs = tuple((p, p) for p in pads)
        out_pad = ()
        if transposed:
            out_pad = _non_negative(ntuple(output_padding, ndim, "output_padding"), "output_padding")
            for op, s, d in zip(out_pad, stride_t, dilation_t):
                if op >= s and op >= d:
                    raise ValueError("output_padding must be smaller than either stride or "
                                     f"dilation, got output_padding={out_pad}, stride={stride_t}, "
                                     f"dilation={dilation_t}")
        return cls(stride_t, pairs, dilation_t, int(groups), padding_mode, out_pad)

    def output_shape(self, spatial: Sequence[int], kernel: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape of the convolution."""
        _check_axes(self.ndim, spatial=spatial, kernel=kernel)
        return tuple(_conv_size(n, k, s, lo + hi, d) for n, k, s, (lo, hi), d in
                     zip(spatial, kernel, self.stride, self.padding, self.dilation))

    def transpose_output_shape(self, spatial: Sequence[int], kernel: Sequence[int]) -> tuple[int, ...]:
        """Spatial output shape of the transposed convolution."""
        _check_axes(self.ndim, spatial=spatial, kernel=kernel)
        return tuple(conv_transpose_output_size(n, k, s, p, d, op) for n, k, s, p, d, op in
                     zip(spatial, kernel, self.stride, self.padding, self.dilation,
                         self.output_padding))

    def check_padding_mode(self, spatial: Sequence[int]) -> None:
        """The padding a mode can make of an input of ``spatial`` sizes: reflect mirrors
        at most n - 1 elements, circular wraps at most n (PyTorch's rules)."""
        if self.padding_mode == "reflect" and any(max(p) >= n
                                                  for p, n in zip(self.padding, spatial)):
            raise ValueError(f"padding_mode='reflect' needs padding smaller than the input "
                             f"size, got padding {self.padding} for input {tuple(spatial)}")
        if self.padding_mode == "circular" and any(max(p) > n
                                                   for p, n in zip(self.padding, spatial)):
            raise ValueError(f"padding_mode='circular' needs padding at most the input size, "
                             f"got padding {self.padding} for input {tuple(spatial)}")

    def check_groups(self, in_channels: int, out_channels: int,
                     out_name: str = "out_channels") -> None:
        """Groups must divide both channel counts: group g maps C/G inputs to O/G outputs."""
        if in_channels % self.groups or out_channels % self.groups:
            raise ValueError(f"input channels {in_channels} and {out_name} {out_channels} must "
                             f"both be divisible by groups={self.groups}")

    def checked_output_shape(self, spatial: Sequence[int], kernel: Sequence[int]) -> tuple[int, ...]:
        """``output_shape``, which must be positive: the dilated kernel fits the padded input."""
        out = self.output_shape(spatial, kernel)
        if any(n <= 0 for n in out):
            dilated = tuple(d * (k - 1) + 1 for k, d in zip(kernel, self.dilation))
            padded = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, self.padding))
            raise ValueError(f"kernel size {dilated} (after dilation) does not fit: it is larger "
                             f"than the padded input {padded}")
        return out

    def checked_transpose_output_shape(self, spatial: Sequence[int],
                                       kernel: Sequence[int]) -> tuple[int, ...]:
        """``transpose_output_shape``, which must be positive: the padding leaves an output."""
        out = self.transpose_output_shape(spatial, kernel)
        if any(n <= 0 for n in out):
            raise ValueError(f"transposed convolution output size {out} must be positive: "
                             f"padding {self.padding} is too large for input {tuple(spatial)}")
        return out

    def bounded(self, small: Sequence[int], big: Sequence[int],
                kernel: Sequence[int]) -> "ConvSpec":
        """The same convolution between ``big`` (the conv's input, a transposed conv's output)
        and ``small`` (the other side) with its strides and dilations no larger than the
        padded ``big``: along an axis where ``small`` has one position the stride places
        nothing, and becomes the room the window leaves + 1 (one position still, and a
        transposed conv's output padding stays below it); a one-tap kernel's dilation places
        nothing, and becomes 1 (or one more than the output padding). PyTorch takes any size
        there; bounded, they cost the backends neither a loop per stride phase nor a 32-bit
        overflow. Elsewhere the output size formula bounds them already."""
        stride, dilation = list(self.stride), list(self.dilation)
        for axis, (n_small, n_big, k, (lo, hi)) in enumerate(
                zip(small, big, kernel, self.padding)):
            if n_small == 1:
                stride[axis] = n_big + lo + hi - self.dilation[axis] * (k - 1)
            if k == 1:  # (the smallest that keeps a transposed conv's output padding valid)
                extra = self.output_padding[axis] if self.output_padding else 0
                dilation[axis] = 1 if extra < stride[axis] else extra + 1
        return replace(self, stride=tuple(stride), dilation=tuple(dilation))

    def with_leading_unit_axis(self) -> "ConvSpec":
        """The 2-D spec that runs a 1-D op as an op over a height-1 image."""
        return ConvSpec((1,) + self.stride, ((0, 0),) + self.padding, (1,) + self.dilation,
                        self.groups, self.padding_mode,
                        ((0,) + self.output_padding) if self.output_padding else ())


@dataclass(frozen=True)
class PoolSpec:
    """Hyper-parameters of an N-d pooling window sweep, validated."""

    kernel_size: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool = False

    @property
    def ndim(self) -> int:
        return len(self.kernel_size)

    @classmethod
    def make(cls, ndim: int, kernel_size: IntOrTuple, stride: IntOrTuple | None = None,
             padding: IntOrTuple = 0, dilation: IntOrTuple = 1,
             ceil_mode: bool = False) -> "PoolSpec":
        ndim = check_int(ndim, "ndim", 1)
        kernel_t = _positive(ntuple(kernel_size, ndim, "kernel_size"), "kernel_size")
        # PyTorch: stride=None (or an empty tuple) means stride = kernel_size
        if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
            stride_t = kernel_t
        else:
            stride_t = _positive(ntuple(stride, ndim, "stride"), "stride")
        padding_t = _non_negative(ntuple(padding, ndim, "padding"), "padding")
        dilation_t = _positive(ntuple(dilation, ndim, "dilation"), "dilation")
        for p, k in zip(padding_t, kernel_t):
            if 2 * p > k:
                raise ValueError("padding must be at most half of kernel_size, got "
                                 f"padding={padding_t}, kernel_size={kernel_t}")
        return cls(kernel_t, stride_t, padding_t, dilation_t, check_bool(ceil_mode, "ceil_mode"))

    @classmethod
    def keras_same(cls, kernel_size: tuple[int, ...], stride: tuple[int, ...],
                   spatial: Sequence[int]) -> tuple["PoolSpec", tuple[int, ...]]:
        """Keras' ``padding="same"``: ``ceil(size / stride)`` windows over the input padded
        as ``keras_same_padding`` says, as (spec, skip): the spec's windows from ``skip[i]``
        on along axis i. The padding is symmetric here, so the odd after-element comes two
        ways: at a stride above 1, ``ceil_mode`` gives the last window, clipped at the end;
        at stride 1, where ceil_mode adds none, both sides get the larger padding and the
        first window (one more before) is skipped."""
        padding, skip = [], []
        for n, k, s in zip(spatial, kernel_size, stride):
            before, after = keras_same_padding(n, k, s)
            odd_at_stride_1 = s == 1 and after > before
            padding.append(after if odd_at_stride_1 else before)
            skip.append(int(odd_at_stride_1))
        spec = cls.make(len(kernel_size), kernel_size, stride, tuple(padding), ceil_mode=True)
        return spec, tuple(skip)

    def output_shape(self, spatial: Sequence[int]) -> tuple[int, ...]:
        _check_axes(self.ndim, spatial=spatial)
        return tuple(_pool_size(n, k, s, p, d, self.ceil_mode) for n, k, s, p, d in
                     zip(spatial, self.kernel_size, self.stride, self.padding, self.dilation))

    def checked_output_shape(self, spatial: Sequence[int]) -> tuple[int, ...]:
        """``output_shape``, which must be positive (the dilated window fits the padded input),
        of windows that each hold an input position (``pool_has_empty_window``)."""
        out = self.output_shape(spatial)
        if any(n <= 0 for n in out):
            dilated = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))
            padded = tuple(n + 2 * p for n, p in zip(spatial, self.padding))
            raise ValueError(f"pooling window {dilated} (after dilation) does not fit: it is "
                             f"larger than the padded input {padded}")
        if any(pool_has_empty_window(n, k, s, p, d, o) for n, k, s, p, d, o in
               zip(spatial, self.kernel_size, self.stride, self.padding, self.dilation, out)):
            raise ValueError(f"a pooling window lies entirely in the padding (kernel_size "
                             f"{self.kernel_size}, dilation {self.dilation}, padding "
                             f"{self.padding}, input {tuple(spatial)}): reduce padding or "
                             "dilation")
        return out

    def window_padding(self, spatial: Sequence[int],
                       out_shape: Sequence[int] | None = None) -> tuple[tuple[int, int], ...]:
        """Per axis, the (before, after) padding of an input of ``spatial`` sizes that holds
        every window, ceil_mode's last one (which may reach past the padding) included
        (``out_shape``: ``output_shape(spatial)``, where the caller has it)."""
        out_shape = self.output_shape(spatial) if out_shape is None else out_shape
        return tuple((p, max(p, (o - 1) * s + d * (k - 1) + 1 - n - p)) for n, k, s, p, d, o in
                     zip(spatial, self.kernel_size, self.stride, self.padding, self.dilation,
                         out_shape))

    def bounded(self, spatial: Sequence[int]) -> "PoolSpec":
        """The same windows over an input of ``spatial`` sizes with kernels, strides and
        dilations no larger than the padded input: along an axis with one window, the taps
        past the padded input (``ceil_mode`` lets one overhang it; they read nothing) are
        dropped and the stride becomes the padded size (one window still, with
        ``ceil_mode`` too); a one-tap kernel's dilation places nothing, and becomes 1.
        PyTorch takes any size there; bounded, they cost the backends neither a pass per
        tap nor a 32-bit overflow. Maxima, indices and divisors stay, but not the kernel's
        size, which Lp pooling multiplies by. Elsewhere the output size formula bounds them
        already."""
        kernel, stride = list(self.kernel_size), list(self.stride)
        dilation, out_shape = list(self.dilation), self.output_shape(spatial)
        for axis, (n, p, out) in enumerate(zip(spatial, self.padding, out_shape)):
            if out == 1:
                padded = n + 2 * p
                kernel[axis] = min(kernel[axis], (padded - 1) // dilation[axis] + 1)
                stride[axis] = padded
            if kernel[axis] == 1:
                dilation[axis] = 1
        return replace(self, kernel_size=tuple(kernel), stride=tuple(stride),
                       dilation=tuple(dilation))

    def with_leading_unit_axis(self) -> "PoolSpec":
        return PoolSpec((1,) + self.kernel_size, (1,) + self.stride, (0,) + self.padding,
                        (1,) + self.dilation, self.ceil_mode)


def conv_flops(batch: int, out_channels: int, in_channels_per_group: int,
               kernel: Sequence[int], out_spatial: Sequence[int]) -> int:
    """Multiply-adds times two of a convolution's forward pass (also its grad-input or grad-weight)."""
    return 2 * batch * out_channels * in_channels_per_group * math.prod(kernel) * math.prod(out_spatial)
