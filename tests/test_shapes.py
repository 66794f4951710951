"""Output-size arithmetic (gpuconv.shapes) against hand-computed cases and PyTorch.

The hand-computed cases always run; the exhaustive sweeps over small hyper-parameter
grids compare with PyTorch's own shape logic and are skipped when torch is missing.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest

from gpuconv.shapes import (ConvSpec, PoolSpec, adaptive_windows, conv_flops, conv_output_size,
                            conv_transpose_output_size, keras_same_padding,
                            keras_same_transpose_padding, ntuple, pool_has_empty_window,
                            pool_output_size, pool_windows_rounded, same_padding)

try:
    import torch
    import torch.nn.functional as TF
except ImportError:  # the hand-computed tests below still run
    torch = TF = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def _torch_raises(fn) -> bool:
    try:
        fn()
    except RuntimeError:
        return True
    return False


# --------------------------------------------------------------------------- conv, by hand
@pytest.mark.parametrize("size, kernel, stride, padding, dilation, expected", [
    (4, 3, 1, (0, 0), 1, 2),          # the slides' 1-D example: 1 2 3 4 * 1 2 3 -> 2 outputs
    (4, 2, 1, (0, 0), 1, 3),          # the slides' 4x4 image, 2x2 kernel -> 3x3
    (5, 3, 1, (1, 1), 1, 5),          # "same" for an odd kernel
    (5, 3, 2, (1, 1), 1, 3),
    (6, 3, 2, (1, 1), 1, 3),          # floor: the last partial window is dropped
    (7, 3, 2, (0, 0), 1, 3),
    (10, 3, 1, (0, 0), 2, 6),         # dilated kernel spans 5
    (10, 3, 3, (2, 2), 3, 3),         # span 7, padded 14: (14 - 7) // 3 + 1
    (4, 2, 1, (0, 1), 1, 4),          # asymmetric: even kernel "same"
    (4, 2, 1, (1, 0), 1, 4),
    (5, 4, 1, (1, 2), 1, 5),
    (5, 4, 2, (1, 2), 1, 3),          # (5 + 3 - 3 - 1) // 2 + 1
    (5, 4, 2, (2, 1), 1, 3),
    (6, 4, 3, (0, 2), 1, 2),          # (6 + 2 - 3 - 1) // 3 + 1
    (3, 3, 1, (0, 0), 1, 1),          # kernel exactly fills the input
    (2, 3, 1, (0, 0), 1, 0),          # too large: non-positive, the caller rejects it
    (2, 3, 1, (0, 1), 1, 1),          # ... unless padding makes room
    (1, 1, 5, (0, 0), 1, 1),
])
def test_conv_output_size_by_hand(size, kernel, stride, padding, dilation, expected):
    assert conv_output_size(size, kernel, stride, padding, dilation) == expected


def test_conv_output_size_defaults():
    assert conv_output_size(7, 3) == 5
    assert conv_output_size(7, 3, 2) == 3


def test_conv_transpose_output_size_defaults():
    """PyTorch's: stride 1, no padding, dilation 1, no output padding."""
    assert conv_transpose_output_size(3, 3) == 5
    assert conv_transpose_output_size(3, 3, 2) == 7


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, output_padding, expected", [
    (2, 3, 1, (0, 0), 1, 0, 4),       # inverse of the slides' 4 -> 2 example
    (3, 3, 2, (1, 1), 1, 0, 5),       # the slides' 5x5, stride-2 example
    (3, 3, 2, (1, 1), 1, 1, 6),       # output_padding resolves 5 vs 6
    (3, 3, 2, (0, 0), 1, 1, 8),
    (4, 2, 2, (0, 0), 1, 0, 8),       # classic 2x upsampling
    (4, 3, 1, (0, 0), 2, 1, 9),       # output_padding < dilation is allowed with stride 1
    (1, 1, 3, (0, 0), 1, 2, 3),
    (5, 4, 1, (1, 2), 1, 0, 5),       # asymmetric pairs ("same", even kernel)
    (3, 1, 1, (1, 1), 1, 0, 1),
    (1, 1, 1, (1, 1), 1, 0, -1),      # non-positive: the caller rejects it
])
def test_conv_transpose_output_size_by_hand(size, kernel, stride, padding, dilation,
                                            output_padding, expected):
    assert conv_transpose_output_size(size, kernel, stride, padding, dilation,
                                      output_padding) == expected


@pytest.mark.parametrize("size, kernel, stride, pairs, dilation", [
    (n, k, s, (lo, hi), d)
    for n, k, s, lo, hi, d in itertools.product(range(1, 8), range(1, 4), range(1, 4),
                                                range(3), range(3), range(1, 3))
    if conv_output_size(n, k, s, (lo, hi), d) > 0
][::7])
def test_conv_transpose_inverts_conv_size(size, kernel, stride, pairs, dilation):
    """The transposed conv maps the conv's output size back to its input size, once
    output_padding supplies the ``(n + p - span) % stride`` elements the floor dropped."""
    out = conv_output_size(size, kernel, stride, pairs, dilation)
    lost = (size + sum(pairs) - dilation * (kernel - 1) - 1) % stride
    assert conv_transpose_output_size(out, kernel, stride, pairs, dilation, lost) == size


# --------------------------------------------------------------------------- conv, against torch
@needs_torch
def test_conv_output_size_matches_torch_sweep():
    checked = 0
    for n, k, s, p, d in itertools.product(range(1, 10), range(1, 5), range(1, 4), range(3),
                                           range(1, 4)):
        ours = conv_output_size(n, k, s, (p, p), d)
        x, w = torch.zeros(1, 1, n, dtype=torch.float64), torch.zeros(1, 1, k, dtype=torch.float64)
        if ours <= 0:
            assert _torch_raises(lambda: TF.conv1d(x, w, stride=s, padding=p, dilation=d)), \
                (n, k, s, p, d)
            continue
        assert TF.conv1d(x, w, stride=s, padding=p, dilation=d).shape[-1] == ours, (n, k, s, p, d)
        checked += 1
    assert checked > 500


@needs_torch
def test_conv_output_size_asymmetric_padding_matches_torch():
    """Asymmetric (before, after) pairs against F.pad followed by an unpadded conv."""
    for n, k, s, lo, hi, d in itertools.product(range(1, 7), range(1, 5), range(1, 4), range(3),
                                                range(3), range(1, 3)):
        ours = conv_output_size(n, k, s, (lo, hi), d)
        x = TF.pad(torch.zeros(1, 1, n, dtype=torch.float64), (lo, hi))
        w = torch.zeros(1, 1, k, dtype=torch.float64)
        if ours <= 0:
            assert _torch_raises(lambda: TF.conv1d(x, w, stride=s, dilation=d))
        else:
            assert TF.conv1d(x, w, stride=s, dilation=d).shape[-1] == ours, (n, k, s, lo, hi, d)


@needs_torch
def test_conv_transpose_output_size_matches_torch_sweep():
    checked = 0
    for n, k, s, p, d in itertools.product(range(1, 6), range(1, 4), range(1, 4), range(3),
                                           range(1, 3)):
        for op in range(max(s, d)):
            ours = conv_transpose_output_size(n, k, s, (p, p), d, op)
            x = torch.zeros(1, 1, n, dtype=torch.float64)
            w = torch.zeros(1, 1, k, dtype=torch.float64)

            def run():
                return TF.conv_transpose1d(x, w, stride=s, padding=p, output_padding=op,
                                           dilation=d)
            if ours <= 0:
                assert _torch_raises(run), (n, k, s, p, d, op)
            else:
                assert run().shape[-1] == ours, (n, k, s, p, d, op)
                checked += 1
    assert checked > 200


@needs_torch
@pytest.mark.parametrize("spatial, kernel, kw", [
    ((7, 9), (3, 2), dict(stride=(2, 1), padding=(1, 0), dilation=(1, 3))),
    ((5, 6), (1, 4), dict(stride=(1, 3), padding=(0, 2), dilation=(2, 1))),
    ((4, 4), (2, 2), dict(stride=2, padding=0, dilation=1)),
    ((6, 5), (4, 3), dict(stride=1, padding="same", dilation=(1, 2))),
    ((9, 5), (4, 3), dict(stride=1, padding="valid", dilation=(2, 1))),
])
@pytest.mark.filterwarnings("ignore:Using padding=.same.")
def test_convspec_output_shape_2d_matches_torch(spatial, kernel, kw):
    spec = ConvSpec.make(2, kernel, **kw)
    x = torch.zeros((1, 1) + spatial, dtype=torch.float64)
    w = torch.zeros((1, 1) + kernel, dtype=torch.float64)
    assert spec.output_shape(spatial, kernel) == tuple(TF.conv2d(x, w, **kw).shape[2:])


@needs_torch
@pytest.mark.parametrize("spatial, kernel, kw", [
    ((3, 4), (3, 2), dict(stride=(2, 3), padding=(1, 0), output_padding=(1, 2), dilation=(1, 1))),
    ((2, 5), (2, 3), dict(stride=(1, 2), padding=(0, 2), output_padding=(1, 0), dilation=(2, 1))),
    ((4, 1), (1, 4), dict(stride=3, padding=0, output_padding=2, dilation=1)),
])
def test_convspec_transpose_output_shape_2d_matches_torch(spatial, kernel, kw):
    spec = ConvSpec.make(2, kernel, kw["stride"], kw["padding"], kw["dilation"],
                         output_padding=kw["output_padding"], transposed=True)
    x = torch.zeros((1, 1) + spatial, dtype=torch.float64)
    w = torch.zeros((1, 1) + kernel, dtype=torch.float64)
    assert spec.transpose_output_shape(spatial, kernel) == \
        tuple(TF.conv_transpose2d(x, w, **kw).shape[2:])


# --------------------------------------------------------------------------- pooling
@pytest.mark.parametrize("size, kernel, stride, padding, dilation, ceil_mode, expected", [
    (4, 2, 2, 0, 1, False, 2),        # the slides' 4x4 -> 2x2 max pooling
    (4, 2, 2, 0, 1, True, 2),
    (5, 2, 2, 0, 1, False, 2),
    (5, 2, 2, 0, 1, True, 3),         # ceil keeps the partial window starting at 4
    (5, 2, 2, 1, 1, False, 3),
    (5, 2, 2, 1, 1, True, 3),         # ceil would give 4, but window 4 starts at 6 - 1 = 5,
                                      # inside the right padding: PyTorch drops it
    (3, 2, 2, 1, 1, True, 2),         # likewise 3 -> 2
    (7, 2, 2, 1, 1, True, 4),         # likewise 5 -> 4
    (2, 1, 2, 0, 1, True, 1),         # even without padding: a window starting at 2 == size
    (6, 1, 2, 0, 1, True, 3),
    (6, 3, 2, 0, 1, False, 2),
    (6, 3, 2, 0, 1, True, 3),         # the last window starts at 4 < 6: kept
    (6, 3, 2, 1, 1, True, 4),         # starts at 6 - 1 = 5 < 6: kept
    (8, 3, 2, 1, 2, False, 3),        # dilated window spans 5
    (8, 3, 2, 1, 2, True, 4),
    (1, 1, 1, 0, 1, False, 1),
    (1, 2, 1, 1, 1, True, 2),
    (3, 5, 1, 0, 1, False, -1),       # too large: the caller rejects it
])
def test_pool_output_size_by_hand(size, kernel, stride, padding, dilation, ceil_mode, expected):
    assert pool_output_size(size, kernel, stride, padding, dilation, ceil_mode) == expected


def test_pool_formulas_defaults():
    assert pool_output_size(9, 3, 3) == 3
    assert pool_output_size(10, 3, 3) == 3
    assert pool_output_size(10, 3, 3, ceil_mode=True) == 4
    assert pool_windows_rounded(10, 3, 3) == 3                   # no padding, dilation 1
    assert pool_windows_rounded(10, 3, 3, ceil_mode=True) == 4
    # no padding, dilation 1 (padding 1 and dilation 2 make one window of taps -1 and 1)
    assert not pool_has_empty_window(1, 2, 1, dilation=2)
    assert not pool_has_empty_window(1, 2, 1, 1)


def _torch_pool_len(op, n, k, s, p, d, ceil_mode):
    x = torch.zeros(1, 1, n, dtype=torch.float64)
    if op == "max":
        return TF.max_pool1d(x, k, s, p, d, ceil_mode=ceil_mode).shape[-1]
    return TF.avg_pool1d(x, k, s, p, ceil_mode=ceil_mode).shape[-1]


@needs_torch
@pytest.mark.parametrize("op", ["max", "avg"])
def test_pool_output_size_matches_torch_sweep(op):
    dropped = checked = 0
    for n, k, s, d, ceil_mode in itertools.product(range(1, 10), range(1, 5), range(1, 4),
                                                   (1, 2) if op == "max" else (1,), (False, True)):
        for p in range(k // 2 + 1):
            ours = pool_output_size(n, k, s, p, d, ceil_mode)
            if ours <= 0:
                assert _torch_raises(lambda: _torch_pool_len(op, n, k, s, p, d, ceil_mode))
                continue
            assert _torch_pool_len(op, n, k, s, p, d, ceil_mode) == ours, (n, k, s, p, d, ceil_mode)
            checked += 1
            naive_ceil = -(-(n + 2 * p - d * (k - 1) - 1) // s) + 1
            if ceil_mode and naive_ceil != ours:
                dropped += 1
    assert checked > 300
    assert dropped > 10  # the sweep really exercises the "window starts in the padding" rule


@needs_torch
@pytest.mark.parametrize("spatial, kw", [
    ((5, 7), dict(kernel_size=(2, 3), stride=(2, 2), padding=(1, 1), dilation=(1, 1),
                  ceil_mode=True)),
    ((5, 8), dict(kernel_size=(3, 2), stride=(3, 1), padding=(1, 0), dilation=(2, 3),
                  ceil_mode=True)),
    ((9, 4), dict(kernel_size=(4, 1), stride=(2, 3), padding=(2, 0), dilation=(1, 1),
                  ceil_mode=False)),
])
def test_poolspec_output_shape_2d_matches_torch(spatial, kw):
    spec = PoolSpec.make(2, **kw)
    x = torch.zeros((1, 1) + spatial, dtype=torch.float64)
    assert spec.output_shape(spatial) == tuple(TF.max_pool2d(x, **kw).shape[2:])


def _brute_force_empty_window(n, k, s, p, d, out):
    return any(all(not 0 <= o * s - p + j * d < n for j in range(k)) for o in range(out))


@pytest.mark.parametrize("size, kernel, stride, padding, dilation, ceil_mode, expected", [
    (1, 2, 1, 1, 2, False, True),      # window at -1 holds -1 and 1: both outside a 1-element input
    (3, 2, 1, 1, 4, False, True),      # window at -1 holds -1 and 3
    (3, 2, 1, 1, 2, False, False),
    (2, 2, 1, 1, 3, True, True),       # window at -1 holds -1 and 2
    (6, 2, 2, 1, 3, True, False),      # every window holds a real element
    (4, 3, 1, 1, 1, False, False),     # no dilation, padding <= kernel / 2: never empty
])
def test_pool_has_empty_window_by_hand(size, kernel, stride, padding, dilation, ceil_mode,
                                       expected):
    out = pool_output_size(size, kernel, stride, padding, dilation, ceil_mode)
    assert _brute_force_empty_window(size, kernel, stride, padding, dilation, out) == expected
    assert pool_has_empty_window(size, kernel, stride, padding, dilation, out) == expected


def test_pool_has_empty_window_matches_brute_force():
    empty = 0
    for n, k, s, d, ceil_mode in itertools.product(range(1, 10), range(1, 5), range(1, 4),
                                                   range(1, 5), (False, True)):
        for p in range(k // 2 + 1):
            out = pool_output_size(n, k, s, p, d, ceil_mode)
            if out <= 0:
                continue
            expected = _brute_force_empty_window(n, k, s, p, d, out)
            assert pool_has_empty_window(n, k, s, p, d, out) == expected, (n, k, s, p, d, ceil_mode)
            if not ceil_mode:  # ``out`` defaults to the floor-mode sweep
                assert pool_has_empty_window(n, k, s, p, d) == expected
            if d == 1:
                assert not expected  # padding <= kernel / 2 keeps every undilated window real
            empty += expected
    assert empty > 5


# --------------------------------------------------------------------------- same padding
@pytest.mark.parametrize("kernel, dilation, expected", [
    (1, 1, (0, 0)),
    (2, 1, (0, 1)),        # even kernel: the extra element goes after
    (3, 1, (1, 1)),
    (4, 1, (1, 2)),
    (5, 1, (2, 2)),
    (6, 1, (2, 3)),
    (2, 2, (1, 1)),        # dilation makes the span 3: symmetric again
    (2, 3, (1, 2)),        # span 4
    (3, 2, (2, 2)),
    (4, 2, (3, 3)),        # span 7
    (4, 3, (4, 5)),        # span 10
    (1, 7, (0, 0)),
])
def test_same_padding_by_hand(kernel, dilation, expected):
    assert same_padding(kernel, dilation) == expected
    assert conv_output_size(9, kernel, 1, expected, dilation) == 9


def test_same_padding_default_dilation():
    assert same_padding(4) == (1, 2)


@needs_torch
@pytest.mark.parametrize("kernel, dilation", list(itertools.product(range(1, 6), range(1, 4))))
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")  # PyTorch's own copy
def test_same_padding_placement_matches_torch(kernel, dilation):
    """Not only the total: which side gets the extra element decides the values."""
    g = torch.Generator().manual_seed(kernel * 10 + dilation)
    x = torch.randn(1, 1, 11, generator=g, dtype=torch.float64)
    w = torch.randn(1, 1, kernel, generator=g, dtype=torch.float64)
    expected = TF.conv1d(x, w, padding="same", dilation=dilation)
    got = TF.conv1d(TF.pad(x, same_padding(kernel, dilation)), w, dilation=dilation)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- adaptive windows
@pytest.mark.parametrize("size, out, expected", [
    (4, 2, [(0, 2), (2, 4)]),
    (5, 3, [(0, 2), (1, 4), (3, 5)]),            # overlapping windows
    (6, 4, [(0, 2), (1, 3), (3, 5), (4, 6)]),
    (3, 5, [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]),  # upsampling: windows repeat
    (7, 1, [(0, 7)]),
    (1, 3, [(0, 1), (0, 1), (0, 1)]),
    (10, 3, [(0, 4), (3, 7), (6, 10)]),
    (0, 2, [(0, 0), (0, 0)]),                     # an empty axis: empty windows
])
def test_adaptive_windows_by_hand(size, out, expected):
    assert _windows(size, out) == expected


def _windows(size, out):
    """``adaptive_windows`` as a list of ``(start, end)`` pairs of ints."""
    starts, ends = adaptive_windows(size, out)
    return list(zip(starts.tolist(), ends.tolist()))


@pytest.mark.parametrize("size, out", list(itertools.product(range(1, 13), range(1, 13))))
def test_adaptive_windows_invariants(size, out):
    windows = _windows(size, out)
    assert len(windows) == out
    assert windows[0][0] == 0 and windows[-1][1] == size
    for i, (lo, hi) in enumerate(windows):
        assert 0 <= lo < hi <= size
        assert lo == math.floor(i * size / out) and hi == math.ceil((i + 1) * size / out)
    covered = set().union(*(range(lo, hi) for lo, hi in windows))
    assert covered == set(range(size))


@needs_torch
def test_adaptive_windows_match_torch():
    rng = np.random.default_rng(1234)
    for size, out in itertools.product(range(1, 14), range(1, 14)):
        x = rng.standard_normal(size)
        expected = np.array([x[lo:hi].mean() for lo, hi in _windows(size, out)])
        got = TF.adaptive_avg_pool1d(torch.from_numpy(x)[None, None], out)[0, 0].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14,
                                   err_msg=f"size={size}, out={out}")
        _, idx = TF.adaptive_max_pool1d(torch.from_numpy(x)[None, None], out, return_indices=True)
        for i, (lo, hi) in zip(idx[0, 0].tolist(), _windows(size, out)):
            assert lo <= i < hi


# --------------------------------------------------------------------------- ntuple
def test_ntuple():
    assert ntuple(3, 2, "stride") == (3, 3)
    assert ntuple((1, 2), 2, "stride") == (1, 2)
    assert ntuple([4], 1, "stride") == (4,)
    assert ntuple((2,), 2, "stride") == (2, 2)  # a 1-tuple broadcasts, as in PyTorch
    assert ntuple(np.int64(2), 2, "stride") == (2, 2)
    assert all(type(v) is int for v in ntuple((np.int32(1), np.int64(2)), 2, "stride"))
    for bad in (1.0, "2", None, True, (), (1, 2, 3), (1, 2.0), (True, 1), {1, 2}):
        with pytest.raises(TypeError, match="stride"):
            ntuple(bad, 2, "stride")


# --------------------------------------------------------------------------- ConvSpec.make
def test_convspec_defaults():
    spec = ConvSpec.make(2, (3, 3))
    assert spec == ConvSpec((1, 1), ((0, 0), (0, 0)), (1, 1), 1, "zeros", ())
    assert spec == ConvSpec((1, 1), ((0, 0), (0, 0)), (1, 1))
    assert spec.ndim == 2


def test_convspec_normalisation():
    spec = ConvSpec.make(2, (3, 5), stride=2, padding=(1, 2), dilation=[1, 2], groups=3,
                         padding_mode="circular")
    assert spec.stride == (2, 2)
    assert spec.padding == ((1, 1), (2, 2))
    assert spec.dilation == (1, 2)
    assert spec.groups == 3 and spec.padding_mode == "circular"
    assert spec.output_padding == ()  # only transposed convolutions keep it
    assert ConvSpec.make(1, (3,), stride=np.int64(2)).stride == (2,)
    assert type(ConvSpec.make(1, (3,), groups=np.int64(2)).groups) is int


@pytest.mark.parametrize("kernel, dilation, expected", [
    ((3, 3), 1, ((1, 1), (1, 1))),
    ((4, 3), 1, ((1, 2), (1, 1))),
    ((2, 5), (3, 1), ((1, 2), (2, 2))),
    ((4, 2), (2, 2), ((3, 3), (1, 1))),
])
def test_convspec_same_padding(kernel, dilation, expected):
    spec = ConvSpec.make(2, kernel, padding="same", dilation=dilation)
    assert spec.padding == expected
    assert spec.output_shape((7, 8), kernel) == (7, 8)


def test_convspec_same_padding_1d():
    assert ConvSpec.make(1, (4,), padding="same").padding == ((1, 2),)
    assert ConvSpec.make(1, (4,), stride=(1,), padding="same", dilation=2).padding == ((3, 3),)


def test_convspec_valid_padding():
    assert ConvSpec.make(2, (3, 2), padding="valid", stride=2).padding == ((0, 0), (0, 0))


def test_convspec_transposed_output_padding():
    spec = ConvSpec.make(2, (3, 3), stride=(2, 3), padding=1, output_padding=(1, 2),
                         transposed=True)
    assert spec.output_padding == (1, 2)
    assert spec.transpose_output_shape((4, 5), (3, 3)) == (8, 15)
    # output_padding must be smaller than stride OR dilation: 1 < dilation 2 is enough
    assert ConvSpec.make(1, (3,), stride=1, dilation=2, output_padding=1,
                         transposed=True).output_padding == (1,)
    assert ConvSpec.make(1, (3,), transposed=True).output_padding == (0,)


def test_convspec_is_frozen_and_hashable():
    spec = ConvSpec.make(1, (3,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.groups = 2
    assert hash(spec) == hash(ConvSpec.make(1, (3,), stride=(1,), padding=0))


def test_convspec_output_shapes():
    spec = ConvSpec.make(2, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2))
    assert spec.output_shape((7, 6), (3, 2)) == (4, 4)
    t = ConvSpec.make(2, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2),
                      output_padding=(1, 0), transposed=True)
    assert t.transpose_output_shape((4, 5), (3, 2)) == (8, 7)


def test_convspec_with_leading_unit_axis():
    spec = ConvSpec.make(1, (4,), stride=1, padding="same", dilation=2, groups=2,
                         padding_mode="reflect")
    lifted = spec.with_leading_unit_axis()
    assert lifted == ConvSpec((1, 1), ((0, 0), (3, 3)), (1, 2), 2, "reflect", ())
    assert lifted.output_shape((1, 9), (1, 4)) == (1,) + spec.output_shape((9,), (4,))
    t = ConvSpec.make(1, (3,), stride=3, output_padding=2, transposed=True)
    lifted_t = t.with_leading_unit_axis()
    assert lifted_t.output_padding == (0, 2)
    assert lifted_t.transpose_output_shape((1, 4), (1, 3)) == (1,) + t.transpose_output_shape(
        (4,), (3,))


_CONV_RULES = [
    # (kwargs for ConvSpec.make(2, (3, 3), ...), exception, text the message must contain)
    (dict(stride=0), ValueError, "stride"),
    (dict(stride=-1), ValueError, "stride"),
    (dict(stride=(1, 0)), ValueError, "stride"),
    (dict(stride=1.0), TypeError, "stride"),
    (dict(stride=True), TypeError, "stride"),
    (dict(stride=None), TypeError, "stride"),
    (dict(stride=(1, 1, 1)), TypeError, "stride"),
    (dict(stride="1"), TypeError, "stride"),
    (dict(dilation=0), ValueError, "dilation"),
    (dict(dilation=(2, -1)), ValueError, "dilation"),
    (dict(dilation=1.5), TypeError, "dilation"),
    (dict(groups=0), ValueError, "groups"),
    (dict(groups=-2), ValueError, "groups"),
    (dict(groups=1.0), ValueError, "groups"),
    (dict(groups=True), ValueError, "groups"),
    (dict(groups="2"), ValueError, "groups"),
    (dict(padding=-1), ValueError, "padding"),
    (dict(padding=(0, -2)), ValueError, "padding"),
    (dict(padding=0.5), TypeError, "padding"),
    (dict(padding=(1, 1, 1)), TypeError, "padding"),
    (dict(padding=((1, 2), (0, 0), (0, 0))), TypeError, "pairs"),
    (dict(padding=((1, 2), 0)), TypeError, "padding"),
    (dict(padding=((1, -2), (0, 0))), ValueError, "padding"),
    (dict(padding="full"), ValueError, "padding"),
    (dict(padding="SAME"), ValueError, "padding"),
    (dict(padding=""), ValueError, "padding"),
    (dict(padding="same", stride=2), ValueError, "stride"),
    (dict(padding="same", stride=(1, 2)), ValueError, "padding='same'"),
    (dict(padding_mode="zero"), ValueError, "padding_mode"),
    (dict(padding_mode="reflection"), ValueError, "padding_mode"),
    (dict(padding_mode=""), ValueError, "padding_mode"),
    (dict(padding_mode=None), ValueError, "padding_mode"),
    (dict(transposed=True, padding_mode="reflect"), ValueError, "padding_mode"),
    (dict(transposed=True, padding_mode="circular"), ValueError, "padding_mode"),
    (dict(transposed=True, padding="same"), ValueError, "padding"),
    (dict(transposed=True, padding="valid"), ValueError, "padding"),
    (dict(transposed=True, output_padding=-1), ValueError, "output_padding"),
    (dict(transposed=True, output_padding=1), ValueError, "output_padding"),
    (dict(transposed=True, stride=2, output_padding=2), ValueError, "output_padding"),
    (dict(transposed=True, stride=2, dilation=3, output_padding=3), ValueError, "output_padding"),
    (dict(transposed=True, stride=(2, 1), output_padding=(1, 1)), ValueError, "output_padding"),
    (dict(transposed=True, output_padding=1.0), TypeError, "output_padding"),
    (dict(transposed=True, output_padding=(0, 0, 0)), TypeError, "output_padding"),
]


@pytest.mark.parametrize("kwargs, exc, text", _CONV_RULES,
                         ids=[repr(k) for k, _, _ in _CONV_RULES])
def test_convspec_rules(kwargs, exc, text):
    with pytest.raises(exc) as info:
        ConvSpec.make(2, (3, 3), **kwargs)
    assert type(info.value) is exc
    assert text in str(info.value)


@needs_torch
def test_output_padding_rule_matches_torch():
    for s, d, op in itertools.product(range(1, 4), range(1, 4), range(5)):
        x = torch.zeros(1, 1, 4, dtype=torch.float64)
        w = torch.zeros(1, 1, 2, dtype=torch.float64)
        torch_ok = not _torch_raises(
            lambda: TF.conv_transpose1d(x, w, stride=s, output_padding=op, dilation=d))
        try:
            ConvSpec.make(1, (2,), stride=s, dilation=d, output_padding=op, transposed=True)
            ours_ok = True
        except ValueError:
            ours_ok = False
        assert ours_ok == torch_ok, (s, d, op)


# --------------------------------------------------------------------------- PoolSpec.make
def test_poolspec_defaults_and_normalisation():
    spec = PoolSpec.make(2, 3)
    assert spec == PoolSpec((3, 3), (3, 3), (0, 0), (1, 1), False)  # stride defaults to kernel
    assert spec.ndim == 2
    assert PoolSpec.make(2, (2, 3), stride=()).stride == (2, 3)
    assert PoolSpec.make(2, (2, 3), stride=[]).stride == (2, 3)
    assert PoolSpec.make(1, [4], stride=None).stride == (4,)
    spec = PoolSpec.make(2, (4, 2), stride=(1, 2), padding=(2, 1), dilation=[3, 1],
                         ceil_mode=np.bool_(True))
    assert spec == PoolSpec((4, 2), (1, 2), (2, 1), (3, 1), True)
    assert spec.ceil_mode is True
    assert PoolSpec.make(1, 3, ceil_mode=False).ceil_mode is False
    for truthy_or_not in (1, 0, "False", None):  # a string "False" would turn ceil_mode on
        with pytest.raises(TypeError, match="ceil_mode must be True or False"):
            PoolSpec.make(1, 3, ceil_mode=truthy_or_not)
    assert PoolSpec.make(1, np.int64(2)).kernel_size == (2,)


def test_poolspec_padding_may_be_exactly_half():
    assert PoolSpec.make(1, 2, padding=1).padding == (1,)
    assert PoolSpec.make(2, (4, 5), padding=(2, 2)).padding == (2, 2)


def test_poolspec_output_shape_and_lift():
    spec = PoolSpec.make(2, (2, 3), stride=2, padding=1, ceil_mode=True)
    assert spec.output_shape((5, 8)) == (3, 5)
    spec1 = PoolSpec.make(1, 2, stride=2, padding=1, ceil_mode=True)
    lifted = spec1.with_leading_unit_axis()
    assert lifted == PoolSpec((1, 2), (1, 2), (0, 1), (1, 1), True)
    assert lifted.output_shape((1, 5)) == (1,) + spec1.output_shape((5,)) == (1, 3)


_POOL_RULES = [
    # (kwargs for PoolSpec.make(2, ...), exception, text the message must contain)
    (dict(kernel_size=0), ValueError, "kernel_size"),
    (dict(kernel_size=-2), ValueError, "kernel_size"),
    (dict(kernel_size=(2, 0)), ValueError, "kernel_size"),
    (dict(kernel_size=2.0), TypeError, "kernel_size"),
    (dict(kernel_size=(2, 2, 2)), TypeError, "kernel_size"),
    (dict(kernel_size=None), TypeError, "kernel_size"),
    (dict(kernel_size=True), TypeError, "kernel_size"),
    (dict(kernel_size=2, stride=0), ValueError, "stride"),
    (dict(kernel_size=2, stride=(1, -1)), ValueError, "stride"),
    (dict(kernel_size=2, stride=1.5), TypeError, "stride"),
    (dict(kernel_size=2, stride=(1, 1, 1)), TypeError, "stride"),
    (dict(kernel_size=2, padding=-1), ValueError, "padding"),
    (dict(kernel_size=2, padding=1.0), TypeError, "padding"),
    (dict(kernel_size=2, dilation=0), ValueError, "dilation"),
    (dict(kernel_size=2, dilation=(1, -3)), ValueError, "dilation"),
    (dict(kernel_size=3, padding=2), ValueError, "padding"),          # 2 > 3 / 2
    (dict(kernel_size=(4, 3), padding=(2, 2)), ValueError, "padding"),
    (dict(kernel_size=1, padding=1), ValueError, "padding"),
    (dict(kernel_size=2, padding=2, dilation=3), ValueError, "padding"),  # rule uses the kernel
]


@pytest.mark.parametrize("kwargs, exc, text", _POOL_RULES,
                         ids=[repr(k) for k, _, _ in _POOL_RULES])
def test_poolspec_rules(kwargs, exc, text):
    with pytest.raises(exc) as info:
        PoolSpec.make(2, **kwargs)
    assert type(info.value) is exc
    assert text in str(info.value)


@needs_torch
def test_pool_padding_rule_matches_torch():
    """PyTorch rejects padding > kernel_size / 2 (with or without dilation)."""
    x = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    for k, p, d in itertools.product(range(1, 5), range(4), range(1, 4)):
        torch_ok = not _torch_raises(lambda: TF.max_pool2d(x, k, 1, p, d, return_indices=True))
        try:
            PoolSpec.make(2, k, 1, p, d)
            ours_ok = True
        except ValueError:
            ours_ok = False
        assert ours_ok == torch_ok, (k, p, d)


# --------------------------------------------------------------------------- flops
def test_conv_flops():
    # 2 * N * C_out * C_in/g * kH * kW * H_out * W_out
    assert conv_flops(2, 8, 3, (3, 3), (10, 10)) == 2 * 2 * 8 * 3 * 9 * 100
    assert conv_flops(1, 1, 1, (4,), (2,)) == 16


def test_pool_window_padding_holds_every_window_and_no_more():
    """Every tap of every window (ceil_mode's last one, which may reach past the padding,
    included) lies in [-before, n + after); before is the padding, after the padding or the
    last window's reach, whichever is larger."""
    rng = np.random.default_rng(4)
    for _ in range(500):
        k, s, d = (int(v) for v in rng.integers(1, 5, 3))
        p = int(rng.integers(0, k // 2 + 1))
        n = int(rng.integers(d * (k - 1) + 1, 20))
        spec = PoolSpec.make(1, k, s, p, d, ceil_mode=bool(rng.integers(2)))
        ((before, after),) = spec.window_padding((n,))
        (out,) = spec.output_shape((n,))
        last_tap = (out - 1) * s - p + d * (k - 1)
        assert before == p and after == max(p, last_tap - (n - 1)), (spec, n)


# (call, what the refusal says): each gave a silently wrong spec or size (a wrong axis count,
# a negative padding, a string read as ceil_mode) or a deep ZeroDivisionError
_BAD_SHAPE_CALLS = {
    "ndim 0": (lambda: ConvSpec.make(0, ()), "ndim must be a positive int"),
    "ndim -1": (lambda: ConvSpec.make(-1, (3,)), "ndim must be a positive int"),
    "ndim str": (lambda: ConvSpec.make("2", (3, 3)), "ndim must be a positive int"),
    "same kernel 0": (lambda: ConvSpec.make(2, (0, 0), padding="same"),
                      "kernel_size must be positive"),
    "same kernel float": (lambda: ConvSpec.make(2, (3.5, 3), padding="same"),
                          "kernel_size must be an int or a tuple of 2 ints"),
    "3 kernel axes of 2": (lambda: ConvSpec.make(2, (3, 3, 3)),
                           "kernel_size must be an int or a tuple of 2 ints"),
    "pool ndim 0": (lambda: PoolSpec.make(0, 2), "ndim must be a positive int"),
    "1 input axis of 2": (lambda: ConvSpec.make(2, (3, 3)).output_shape((7,), (3, 3)),
                          "spatial must hold 2 sizes"),
    "1 kernel axis of 2": (lambda: ConvSpec.make(2, (3, 3)).transpose_output_shape((7, 7), (3,)),
                           "kernel must hold 2 sizes"),
    "kernel 0 to a spec": (lambda: ConvSpec.make(2, (3, 3)).output_shape((7, 7), (0, 3)),
                           "kernel must hold positive ints"),
    "kernel 3.0 to a spec": (lambda: ConvSpec.make(2, (3, 3)).output_shape((7, 7), (3.0, 3)),
                             "kernel must hold positive ints"),
    "kernel True to a spec": (lambda: ConvSpec.make(2, (3, 3)).output_shape((7, 7), (True, 3)),
                              "kernel must hold positive ints"),
    "3 input axes of 2": (lambda: PoolSpec.make(2, 2).output_shape((5, 5, 5)),
                          "spatial must hold 2 sizes"),
    "ceil_mode str": (lambda: pool_output_size(5, 2, 2, 0, 1, "False"),
                      "ceil_mode must be True or False"),
    "padding -3": (lambda: pool_output_size(5, 2, 2, -3), "padding must be a non-negative int"),
    "keras stride 0": (lambda: keras_same_padding(5, 3, 0), "stride must be a positive int"),
    "keras pool stride 0": (lambda: PoolSpec.keras_same((3, 3), (0, 2), (5, 5)),
                            "stride must be a positive int"),
    "adaptive out 0": (lambda: adaptive_windows(5, 0), "an output size >= 1"),
    "same kernel 0 (1-D)": (lambda: same_padding(0), "kernel must be a positive int"),
}


@pytest.mark.parametrize("call, message", _BAD_SHAPE_CALLS.values(), ids=list(_BAD_SHAPE_CALLS))
def test_the_shape_rules_refuse_bad_arguments_when_called_directly(call, message):
    """gpuconv.shapes as an API of its own (the ops check their arguments before)."""
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_the_one_dim_conv_formulas_take_an_int_padding():
    assert conv_output_size(5, 3, 1, 1) == conv_output_size(5, 3, 1, (1, 1)) == 5
    assert conv_transpose_output_size(5, 3, 2, 1) == conv_transpose_output_size(5, 3, 2, (1, 1))


@pytest.mark.parametrize("args, expected", [
    ((6, 3), (1, 1)),          # stride 1 (the default): same_padding
    ((8, 3, 2), (0, 1)),       # ceil(8 / 2) = 4 outputs need 1: the odd element after
    ((7, 3, 2), (1, 1)),
    ((4, 1, 2), (0, 0)),       # a stride past the kernel needs none (never negative)
    ((6, 2, 1, 2), (1, 1)),    # dilated: span 3
])
def test_keras_same_padding_by_hand(args, expected):
    assert keras_same_padding(*args) == expected


def test_keras_same_transpose_padding_defaults():
    assert keras_same_transpose_padding(3) == ((1, 1), 0)  # stride 1, dilation 1


def test_keras_same_transpose_padding_gives_input_times_stride():
    """Keras' "same" transposed conv: output = input * stride, for every kernel, stride and
    dilation (the padding is cropped, or the end padded through output_padding)."""
    for k, s, d, n in itertools.product(range(1, 6), range(1, 5), range(1, 4), (1, 2, 7)):
        (before, after), out_pad = keras_same_transpose_padding(k, s, d)
        assert conv_transpose_output_size(n, k, s, (before, after), d, out_pad) == n * s
        assert out_pad < max(s, d) and after - before in (0, 1)
