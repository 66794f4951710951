"""Winograd F(2x2, 3x3) in the NumPy backend (``numpy_backend._winograd_correlate``): the
forward and grad-input of 3x3 stride-1 convolutions against PyTorch in float64, in float64
and float32, whole and in chunks of one tile row; and which convolutions take it.

The selection rule's thresholds are lowered so that small test arrays take the path (each
case checks that it did)."""

from __future__ import annotations

import contextlib
import importlib.util
import math
from unittest import mock

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as TF  # noqa: E402

import gpuconv.functional as F  # noqa: E402
from gpuconv.backends import numpy_backend  # noqa: E402

# name, input shape, weight shape, keyword arguments, input made strided (a column slice)
CASES = [
    ("same_odd_planes", (2, 16, 9, 11), (16, 16, 3, 3), dict(padding=1), False),
    ("valid_batch1_more_out_channels", (1, 16, 10, 13), (24, 16, 3, 3), {}, False),
    ("more_in_channels", (2, 24, 9, 8), (16, 24, 3, 3), dict(padding=1), False),
    ("reflect", (2, 16, 8, 9), (16, 16, 3, 3), dict(padding=2, padding_mode="reflect"), False),
    ("replicate", (1, 16, 9, 9), (16, 16, 3, 3), dict(padding=1, padding_mode="replicate"), False),
    ("circular_asymmetric", (2, 16, 8, 7), (16, 16, 3, 3),
     dict(padding=(1, 2), padding_mode="circular"), False),
    ("dilated_2", (2, 16, 19, 18), (16, 16, 3, 3), dict(padding=2, dilation=2), False),
    ("dilated_2x3", (1, 16, 21, 26), (16, 16, 3, 3), dict(padding=(2, 3), dilation=(2, 3)), False),
    ("groups_2", (2, 32, 10, 9), (32, 16, 3, 3), dict(padding=1, groups=2), False),
    ("strided_input", (2, 16, 9, 10), (16, 16, 3, 3), dict(padding=1), True),
]
# whole (default budget), and one tile row of one sample per chunk
CHUNKS = {"whole": numpy_backend.WINOGRAD_CHUNK_BYTES, "tile_rows": 1}
DTYPES = (np.float64, np.float32)
# the transforms' two engines (numpy_backend.cpu_kernels): the compiled ones do NumPy's
# operations in NumPy's order
ENGINES = ("numba", "numpy") if importlib.util.find_spec("numba") else ("numpy",)


@contextlib.contextmanager
def _winograd_for_small_arrays(chunk_bytes):
    """The rule lowered for 16-channel tests, and a spy on the tiles that counts calls."""
    spy = mock.Mock(wraps=numpy_backend._winograd_tiles)
    with mock.patch.multiple(numpy_backend, WINOGRAD_MIN_MACS_PER_VALUE=4,
                             WINOGRAD_MIN_MACS_PER_VALUE_COMPILED=4, WINOGRAD_MIN_PIXELS=16,
                             WINOGRAD_CHUNK_BYTES=chunk_bytes, _winograd_tiles=spy):
        yield spy


def _inputs(x_shape, w_shape, strided, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if strided:  # columns 1..W of a wider array: rows are not one run in memory
        wide = rng.standard_normal(x_shape[:3] + (x_shape[3] + 3,))
        x = wide[..., 1:1 + x_shape[3]]
    else:
        x = rng.standard_normal(x_shape)
    w, b = rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    return x.astype(dtype, copy=False), w.astype(dtype), b.astype(dtype)


def _torch_reference(x, w, b, gy, kw):
    """Output and grad-input in float64: padding modes other than zeros as an explicit pad."""
    kw = dict(kw)
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    mode = kw.pop("padding_mode", "zeros")
    if mode != "zeros":
        ph, pw = (kw.pop("padding"),) * 2 if isinstance(kw["padding"], int) else kw.pop("padding")
        inp = TF.pad(xt, (pw, pw, ph, ph), mode=mode)
    else:
        inp = xt
    y = TF.conv2d(inp, torch.tensor(w, dtype=torch.float64),
                  torch.tensor(b, dtype=torch.float64), **kw)
    y.backward(torch.tensor(gy, dtype=torch.float64))
    return y.detach().numpy(), xt.grad.numpy()


def _assert_close(got, want, k, dtype, what):
    """float64: as tight as the other conv tables; float32: the golden tests' bound,
    2e-6 * sqrt(K) * (|want| + max |want|) for a reduction of length K."""
    assert got.shape == want.shape and got.dtype == dtype, what
    scale = float(np.abs(want).max())
    coeff = 2e-6 * math.sqrt(k) if dtype == np.float32 else 1e-10
    bad = ~(np.abs(got - want) <= coeff * (np.abs(want) + scale))
    assert not bad.any(), f"{what}: {int(bad.sum())} values off, worst " \
                          f"{float(np.nanmax(np.abs(got - want))):.3g} (scale {scale:.3g})"


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("chunks", list(CHUNKS))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c[0])
def test_winograd_conv_matches_torch(case, dtype, chunks, engine, monkeypatch):
    name, x_shape, w_shape, kw, strided = case
    monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, engine)
    x, w, b = _inputs(x_shape, w_shape, strided, dtype)
    with _winograd_for_small_arrays(CHUNKS[chunks]) as spy:
        y = F.conv2d(x, w, b, **kw, backend="numpy")
        forward_calls = spy.call_count
        gy = np.random.default_rng(1).standard_normal(y.shape).astype(dtype)
        gx, gw, _ = F.conv2d_backward(gy, x, w, **kw, backend="numpy")
        assert forward_calls > 0 and spy.call_count > forward_calls, \
            f"{name}: Winograd not taken (forward {forward_calls}, total {spy.call_count})"
    y_ref, gx_ref = _torch_reference(x, w, b, gy, kw)
    groups = kw.get("groups", 1)
    fold = 9 if kw.get("padding_mode", "zeros") != "zeros" else 1
    _assert_close(y, y_ref, w_shape[1] * 9 + 1, dtype, f"{name} output")
    _assert_close(gx, gx_ref, w_shape[0] // groups * 9 * fold, dtype, f"{name} grad_input")
    assert gw.shape == w.shape


@pytest.mark.skipif(len(ENGINES) < 2, reason="needs Numba")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", [CASES[0], CASES[7]], ids=lambda c: c[0])
def test_winograd_engines_agree_bit_for_bit(case, dtype, monkeypatch):
    name, x_shape, w_shape, kw, strided = case
    x, w, b = _inputs(x_shape, w_shape, strided, dtype)
    got = []
    for engine in ENGINES:
        monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, engine)
        with _winograd_for_small_arrays(CHUNKS["whole"]) as spy:
            got.append(F.conv2d(x, w, b, **kw, backend="numpy"))
            assert spy.called, name
    np.testing.assert_array_equal(got[0], got[1], err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_winograd_conv_transpose_matches_torch(dtype):
    """A stride-1 transposed conv is a conv's grad-input: the same Winograd correlation."""
    x, w, b = _inputs((2, 16, 9, 8), (16, 20, 3, 3), False, dtype)
    with _winograd_for_small_arrays(1) as spy:
        y = F.conv_transpose2d(x, w, b[:1].repeat(20), padding=1, backend="numpy")
        assert spy.call_count > 0
    ref = TF.conv_transpose2d(*(torch.tensor(a, dtype=torch.float64) for a in
                                (x, w, b[:1].repeat(20))), padding=1).numpy()
    _assert_close(y, ref, 16 * 9 + 1, dtype, "conv_transpose2d output")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_winograd_non_finite_input_gives_what_direct_conv_gives(bad):
    """Winograd's transforms subtract inputs (inf - inf = NaN): a result that is not all
    finite is recomputed by im2col, so an inf reaches its outputs as torch's does."""
    x, w, b = _inputs((1, 16, 8, 9), (16, 16, 3, 3), False, np.float64)
    x[0, 3, 4, 5] = bad
    with _winograd_for_small_arrays(CHUNKS["whole"]) as spy:
        y = F.conv2d(x, w, b, padding=1, backend="numpy")
        assert spy.call_count > 0
    ref = TF.conv2d(*(torch.tensor(a) for a in (x, w, b)), padding=1).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(y[finite], ref[finite], rtol=1e-10, atol=1e-10)


# kernel, stride, dilation, in / out channels per group, output plane, takes Winograd with
# NumPy's transforms, with the compiled ones
RULE = [
    ((3, 3), (1, 1), (1, 1), 128, 256, (56, 56), True, True),    # VGG 3x3
    ((3, 3), (1, 1), (1, 1), 64, 64, (56, 56), False, True),     # ResNet-50 3x3
    ((3, 3), (1, 1), (1, 1), 128, 128, (28, 28), True, True),
    ((3, 3), (1, 1), (2, 2), 128, 128, (64, 64), True, True),    # 32x32 per phase
    ((3, 3), (1, 1), (2, 2), 64, 64, (64, 64), False, True),
    ((3, 3), (1, 1), (2, 2), 128, 128, (32, 32), False, False),  # 16x16 per phase
    ((3, 3), (1, 1), (1, 1), 256, 256, (14, 14), False, False),  # short runs
    ((3, 3), (1, 1), (1, 1), 32, 64, (56, 56), False, False),    # lenet conv2's channels
    ((3, 3), (1, 1), (1, 1), 1, 32, (28, 28), False, False),     # lenet conv1
    ((3, 3), (1, 1), (1, 1), 16, 512, (28, 28), False, False),   # thin GEMMs
    ((3, 3), (2, 2), (1, 1), 128, 256, (28, 28), False, False),  # strided
    ((5, 5), (1, 1), (1, 1), 128, 256, (28, 28), False, False),
    ((3, 1), (1, 1), (1, 1), 128, 256, (28, 28), False, False),
]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("rule", RULE, ids=str)
def test_winograd_rule(rule, engine, monkeypatch):
    monkeypatch.setenv(numpy_backend.CPU_KERNELS_ENV, engine)
    *args, with_numpy, compiled = rule
    expected = compiled if engine == "numba" else with_numpy
    assert numpy_backend._winograd_fits(*args) is expected
