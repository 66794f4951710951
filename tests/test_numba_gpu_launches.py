"""The numba backend's GPU launch configurations, run through Numba's CUDA simulator.

In the simulator the backend makes the simulator's plans (one small conv tile, 32-thread
blocks: the simulator pays an OS thread per CUDA thread), so what a GPU runs — the conv_gemm
tiles of ``gpu_plan.NUMBA_TILES_FOR`` with their 64 to 256 threads, 64-bit offsets, the
blocks of conv_direct, the depthwise and the pooling kernels — would only be compiled
(tests/test_numba_sm90.py) before a GPU ran it. Here the backend plans as on a GPU
(``numba_backend.SIMULATED`` off) and the simulator runs those plans on small cases, against
the NumPy backend. The GEMM table names, for each case, the instance it must launch (a tile
forced where the plan model would pick another; int64 offsets forced by a tiny index limit),
and together they are every instance a GPU plan can launch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpuconv.backends import gpu_plan
from gpuconv.backends import numpy_backend as ref
from gpuconv.shapes import ConvSpec, PoolSpec
from test_golden import assert_close, assert_indices_equal

nb = pytest.importorskip("gpuconv.backends.numba_backend")
pytestmark = pytest.mark.skipif(not nb.SIMULATED, reason="runs the GPU plans in the simulator")

TILES = {t.name: t for tiles in gpu_plan.NUMBA_TILES_FOR.values() for t in tiles}


@pytest.fixture
def gpu_plans(monkeypatch):
    """The backend planning as on a GPU, with fresh caches of prepared calls and kernel
    tables (a test may narrow the tiles); yields the kernel names of the calls prepared."""
    monkeypatch.setattr(nb, "SIMULATED", False)
    monkeypatch.setattr(nb, "launch", nb.GPU)
    monkeypatch.setattr(nb, "_PREPARED", {})
    monkeypatch.setattr(nb, "CHECK_SIGNATURES", True)
    nb.kernel_table.cache_clear()
    yield lambda: {step.name for p in nb._PREPARED.values() for step in p.steps}
    nb.kernel_table.cache_clear()


# (dtype, tile, grad-weight?, zero padding?, int64 offsets?): every conv_gemm instance
GEMMS = [(dtype, tile.name, wgrad, zero_pad, wide)
         for dtype in gpu_plan.NUMBA_TILES_FOR
         for tile, wgrad, zero_pad, wide in gpu_plan.numba_gemm_instances(dtype)]


@pytest.mark.parametrize("dtype, tile, wgrad, zero_pad, wide", GEMMS, ids=[
    f"{d}-{t}-{'wgrad' if g else 'gather'}-{'zeros' if z else 'reflect'}-{'i64' if w else 'u32'}"
    for d, t, g, z, w in GEMMS])
def test_conv_gemm_instances(gpu_plans, monkeypatch, dtype, tile, wgrad, zero_pad, wide):
    """Forward and grad-input (a gather, wgrad false) or grad-weight through the instance:
    20 output channels of 2 samples, 3 input channels, 3x3 taps (several k-tiles)."""
    monkeypatch.setitem(gpu_plan.NUMBA_TILES_FOR, dtype, (TILES[tile],))
    if wide:
        monkeypatch.setattr(gpu_plan, "INDEX64_FROM", 64)
    rng = np.random.default_rng(len(tile) + 2 * wgrad + 4 * zero_pad + 8 * wide)
    x = rng.standard_normal((2, 3, 5, 6)).astype(dtype)
    w = rng.standard_normal((20, 3, 3, 3)).astype(dtype)
    gy = rng.standard_normal((2, 20, 4, 3)).astype(dtype)
    spec = ConvSpec.make(2, (3, 3), stride=(1, 2), padding=1,
                         padding_mode="zeros" if zero_pad else "reflect")
    if wgrad:
        assert_close(nb.conv2d_grad_weight(gy, x, spec, (3, 3)),
                     ref.conv2d_grad_weight(gy, x, spec, (3, 3)), k=24, dtype=dtype,
                     what="grad_weight")
    else:
        assert_close(nb.conv2d(x, w, None, spec), ref.conv2d(x, w, None, spec), k=27,
                     dtype=dtype, what="forward")
        assert_close(nb.conv2d_grad_input(gy, w, spec, (5, 6)),
                     ref.conv2d_grad_input(gy, w, spec, (5, 6)), k=60, dtype=dtype,
                     what="grad_input")
    want = gpu_plan.numba_gemm_kernel(TILES[tile], wgrad, zero_pad, wide)
    assert want in gpu_plans(), gpu_plans()


@pytest.mark.parametrize("dtype", list(gpu_plan.NUMBA_TILES_FOR))
def test_direct_depthwise_and_pooling_blocks(gpu_plans, dtype):
    """conv_direct (grad-input of 2 channels, wider than a block of 4-pixel threads), the
    depthwise forward and grad-weight, and max / average / global pooling with their
    backward, at the GPU's block sizes."""
    rng = np.random.default_rng(7)
    spec = ConvSpec.make(2, (3, 3), padding=1)
    w = rng.standard_normal((4, 2, 3, 3)).astype(dtype)
    gy = rng.standard_normal((2, 4, 23, 25)).astype(dtype)
    assert_close(nb.conv2d_grad_input(gy, w, spec, (23, 25)),
                 ref.conv2d_grad_input(gy, w, spec, (23, 25)), k=36, dtype=dtype,
                 what="conv_direct grad_input")
    x = rng.standard_normal((1, 3, 7, 6)).astype(dtype)
    wd = rng.standard_normal((3, 1, 3, 3)).astype(dtype)
    depthwise = ConvSpec.make(2, (3, 3), padding=1, groups=3)
    assert_close(nb.conv2d(x, wd, None, depthwise), ref.conv2d(x, wd, None, depthwise), k=9,
                 dtype=dtype, what="depthwise forward")
    assert_close(nb.conv2d_grad_weight(x, x, depthwise, (3, 3)),
                 ref.conv2d_grad_weight(x, x, depthwise, (3, 3)), k=42, dtype=dtype,
                 what="depthwise grad_weight")
    x = rng.permutation(2 * 3 * 9 * 8).reshape(2, 3, 9, 8).astype(dtype)  # distinct: one max
    pool = PoolSpec.make(2, 3, stride=2, padding=1)
    y, idx = nb.max_pool2d(x, pool)
    want_y, want_idx = ref.max_pool2d(x, pool)
    assert_close(y, want_y, k=1, dtype=dtype, what="max_pool2d", exact=True)
    assert_indices_equal(idx, want_idx, "max_pool2d indices")
    g = rng.standard_normal(y.shape).astype(dtype)
    assert_close(nb.max_pool2d_backward(g, idx, (9, 8), pool),
                 ref.max_pool2d_backward(g, want_idx, (9, 8), pool), k=4, dtype=dtype,
                 what="max_pool2d_backward")
    assert_close(nb.avg_pool2d(x, pool, True, None), ref.avg_pool2d(x, pool, True, None), k=9,
                 dtype=dtype, what="avg_pool2d")
    assert_close(nb.avg_pool2d_backward(g, pool, (9, 8), True, None),
                 ref.avg_pool2d_backward(g, pool, (9, 8), True, None), k=4, dtype=dtype,
                 what="avg_pool2d_backward")
    assert_close(nb.adaptive_avg_pool2d(x, (1, 1)), ref.adaptive_avg_pool2d(x, (1, 1)), k=72,
                 dtype=dtype, what="global average")
    launched = gpu_plans()
    assert {"conv_direct<2>", "conv_depthwise<3>", "conv_depthwise_grad_weight<3>",
            "max_pool2d", "max_pool2d_backward", "avg_pool2d", "pool2d_backward"} <= launched, \
        launched


@pytest.mark.parametrize("dtype", list(gpu_plan.NUMBA_TILES_FOR))
def test_conv_direct_stages_its_weights_chunk_by_chunk(gpu_plans, dtype):
    """A reduction longer than conv_direct's DIRECT_CHUNK of staged weights: a forward of 2
    channels over 64 and a grad-input of 2 channels from 64, 576 taps each."""
    from gpuconv.kernels.conv_numba import DIRECT_CHUNK

    rng = np.random.default_rng(29)
    x = rng.standard_normal((1, 64, 3, 4)).astype(dtype)
    w = rng.standard_normal((2, 64, 3, 3)).astype(dtype)
    assert w[0].size > DIRECT_CHUNK
    spec = ConvSpec.make(2, (3, 3), padding=1)
    assert_close(nb.conv2d(x, w, None, spec), ref.conv2d(x, w, None, spec), k=576, dtype=dtype,
                 what="conv_direct forward")
    gy, wt = rng.standard_normal(x.shape).astype(dtype), w.reshape(64, 2, 3, 3)
    assert_close(nb.conv2d_grad_input(gy, wt, spec, (3, 4)),
                 ref.conv2d_grad_input(gy, wt, spec, (3, 4)), k=576, dtype=dtype,
                 what="conv_direct grad_input")
    assert {name for name in gpu_plans() if name.startswith("conv")} == {"conv_direct<2>"}


# (input or grad_out shape, weight shape, conv options, grad-input's input size (None: the
# forward, with bias and ReLU), the launches' kernels (base names) and slices of the GEMM)
SPLITS_AND_PHASES = {
    "split forward": ((1, 32, 6, 6), (8, 32, 3, 3), dict(padding=1), None,
                      ["conv_gemm", "conv_splitk_reduce"]),
    "split grad-input": ((1, 64, 5, 5), (64, 8, 3, 3), dict(stride=2, padding=1), (9, 9),
                         ["conv_gemm", "conv_splitk_reduce"]),
    # stride 4, dilation 2: taps reach phases 0 and 2 of each axis, 4 of the 16 (not the
    # first four), and half the rows and columns; 4 slices
    "4 phases of 16": ((2, 8, 4, 4), (8, 6, 2, 2), dict(stride=4, dilation=2), (15, 15),
                       ["conv_fill_bias", "conv_gemm"]),
    "conv_direct, 1 phase of 4": ((2, 4, 3, 3), (4, 2, 1, 1), dict(stride=2), (6, 6),
                                  ["conv_fill_bias", "conv_direct"]),
    # stride 3 over the padded rows (or columns) 1 and 2 of a 2-long input: phase 0 has taps
    # but no pixels, and comes before the live phases 1 and 2 (slices 0, 1, ... must skip it,
    # as the plan counts them)
    "dead row phase first": ((2, 4, 1, 2), (4, 6, 3, 3), dict(stride=3, padding=1), (2, 5),
                             ["conv_gemm"]),
    "conv_direct, dead column phase first": ((1, 2, 2, 1), (2, 3, 3, 3),
                                             dict(stride=(2, 3), padding=1), (4, 2),
                                             ["conv_direct"]),
}


@pytest.mark.parametrize("case", list(SPLITS_AND_PHASES))
@pytest.mark.parametrize("dtype", list(gpu_plan.NUMBA_TILES_FOR))
def test_split_reductions_and_phases_no_tap_reaches(gpu_plans, dtype, case):
    """As on a GPU, the plan model splits long reductions of small outputs (partials summed
    in split order, then bias and ReLU) in the forward and grad-input, and grad-input runs
    only the stride phases some tap reaches, the bias filled in first where none does."""
    shape, w_shape, options, input_hw, kernels = SPLITS_AND_PHASES[case]
    rng = np.random.default_rng(8)
    a, w = (rng.standard_normal(s).astype(dtype) for s in (shape, w_shape))
    spec = ConvSpec.make(2, w_shape[2:], **options)
    if input_hw is None:  # reductions over C/G x kH x kW, or (at most) O x kH x kW
        b = rng.standard_normal(w_shape[0]).astype(dtype)
        got, want = (be.conv2d(a, w, b, spec, relu=True) for be in (nb, ref))
        k = math.prod(w_shape[1:])
    else:
        b = rng.standard_normal(w_shape[1]).astype(dtype)
        got, want = (be.conv2d_grad_input(a, w, spec, input_hw, b) for be in (nb, ref))
        k = w_shape[0] * math.prod(w_shape[2:])
    assert_close(got, want, k=k, dtype=dtype, what=case)
    (p,) = nb._PREPARED.values()
    assert [step.name.partition("<")[0] for step in p.steps] == kernels, p.steps
    if case == "4 phases of 16":
        assert p.steps[1].grid[2] == 4, p.steps
