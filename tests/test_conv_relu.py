"""Conv + ReLU fused (``relu=True``; the CUDA, Numba and NumPy epilogues): against PyTorch in
float64 (conv then relu), and bit for bit the unfused conv followed by ``np.maximum(y, 0)``,
on every backend (the cupy backend's kernels through the host emulation where CuPy cannot
run; Numba through its simulator). Then gpuconv.nn: a model whose Conv2D + ReLU pairs run
fused trains to the very weights of the same model unfused."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import gpuconv.functional as F
from gpuconv import nn
from gpuconv.backends import cupy_backend
from gpuconv.nn.device import Device
from tests.arrays import GPU_BACKENDS, to_backend, to_numpy
from test_golden import (BACKENDS, api_name, assert_close, host_cupy,  # noqa: F401 (fixtures)
                         reference_kernels)

# name: (op, x shape, weight shape, bias, keyword arguments, the kernel the cupy backend runs)
CASES = {
    "direct": ("conv2d", (2, 3, 7, 6), (4, 3, 3, 3), True, dict(padding=1), "conv_direct"),
    "gemm-groups": ("conv2d", (2, 4, 8, 7), (12, 2, 3, 3), True,
                    dict(stride=2, dilation=2, padding=1, groups=2), "conv_gemm"),
    "gemm-reflect-no-bias": ("conv2d", (2, 8, 4, 4), (6, 8, 3, 3), False,
                             dict(padding=1, padding_mode="reflect"), "conv_gemm"),
    # few outputs, a long reduction: split-K, so bias and ReLU come in conv_splitk_reduce
    "split-k": ("conv2d", (1, 64, 4, 4), (8, 64, 3, 3), True, dict(padding=1),
                "conv_splitk_reduce"),
    "depthwise": ("conv2d", (2, 4, 7, 7), (8, 1, 3, 3), True, dict(stride=2, padding=1, groups=4),
                  "conv_depthwise"),
    "conv1d": ("conv1d", (2, 3, 9), (4, 3, 3), True, dict(stride=2, padding=2), "conv_direct"),
}
TABLE = [pytest.param(name, backend, dtype, id=f"{name}-{backend}-{dtype}")
         for name in CASES for backend in BACKENDS for dtype in ("float32", "float64")]


def _torch_conv_relu(op, x, w, b, kw):
    """relu(conv) in float64 by PyTorch; other padding modes through torch's own pad."""
    kw = dict(kw)
    mode = kw.pop("padding_mode", "zeros")
    t = [None if a is None else torch.from_numpy(a.astype(np.float64)) for a in (x, w, b)]
    if mode != "zeros":
        pad = kw.pop("padding")
        t[0] = torch.nn.functional.pad(t[0], (pad,) * 2 * (t[0].ndim - 2), mode=mode)
    return torch.relu(getattr(torch.nn.functional, op)(*t, **kw)).numpy()


def _inputs(name, dtype):
    op, x_shape, w_shape, has_bias, kw, _ = CASES[name]
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal(x_shape).astype(dtype)
    x[(0, 0) + (1,) * (x.ndim - 2)] = np.nan  # read by every case: NaN stays NaN (torch.relu)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype) if has_bias else None
    return op, x, w, b, kw


@pytest.mark.parametrize("name, backend, dtype", TABLE)
def test_conv_relu(name, backend, dtype, host_cupy):
    op, x, w, b, kw = _inputs(name, dtype)
    args = [to_backend(backend, a) for a in (x, w, b)]
    fused = to_numpy(getattr(F, op)(*args, relu=True, **kw, backend=api_name(backend)))
    plain = to_numpy(getattr(F, op)(*args, **kw, backend=api_name(backend)))
    want = _torch_conv_relu(op, x, w, b, kw)
    nan = np.isnan(want)
    assert nan.any() and (nan == np.isnan(fused)).all(), "NaN where PyTorch has NaN"
    assert (fused[~nan] >= 0).all() and (fused[~nan] == 0).any() and (fused > 0).any()
    fused_finite = np.where(nan, 0, fused).astype(dtype)
    assert_close(fused_finite, np.where(nan, 0, want).astype(dtype),
                 k=math.prod(w.shape[1:]) + 1, dtype=dtype, what=f"{op}(relu=True)")
    # the same bits as the unfused conv, then ReLU
    assert fused.dtype == plain.dtype and fused.tobytes() == np.maximum(plain, 0).tobytes()
    if backend == "cupy-host":
        assert CASES[name][-1] in " ".join(cupy_backend._EXECUTOR.launched)


# A grouped conv on the NumPy backend whose products (one per sample and group, or per band of
# output rows) each take over parallel.SMALL_GEMM_FLOPS: parallel.matmul finishes them one by
# one, telling the epilogue which group each belongs to (float32: whole samples, float64:
# bands of output rows)
LARGE_GROUPED = ((2, 64, 16, 32), (64, 32, 3, 3), dict(padding=1, groups=2))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_products_finished_one_by_one_add_their_own_groups_bias(dtype, relu):
    x_shape, w_shape, kw = LARGE_GROUPED
    rng = np.random.default_rng(3)
    x, w = (rng.standard_normal(s).astype(dtype) for s in (x_shape, w_shape))
    b = (rng.standard_normal(w_shape[0]) * 4).astype(dtype)  # a bias the tolerance sees
    y = F.conv2d(x, w, b, relu=relu, **kw, backend="numpy")
    want = torch.nn.functional.conv2d(*(torch.from_numpy(a.astype(np.float64)) for a in (x, w, b)),
                                      **kw)
    want = (torch.relu(want) if relu else want).numpy().astype(dtype)
    assert_close(y, want, k=math.prod(w_shape[1:]) + 1, dtype=dtype,
                 what=f"grouped conv2d(relu={relu})")


# --------------------------------------------------------------------------- gpuconv.nn
# The layers' code is the same on every backend; what differs, the fused conv, has the same
# bits as conv then ReLU on each (the table above). The Numba simulator, every CUDA thread in
# Python, would take ~15 s a run here: Numba runs it on a GPU only.
NN_BACKENDS = [b for b in BACKENDS if b in ("numpy", "cupy-host") or b in GPU_BACKENDS]


def _model(backend, dtype, fuse: bool):
    model = nn.Sequential([nn.Conv2D(4, 3, padding="same"), nn.ReLU(), nn.MaxPool2D(2),
                           nn.Conv2D(3, 3, padding=1, activation="relu"), nn.Flatten(),
                           nn.Dense(3)])
    model.fuse_relu = fuse
    kind = "cuda" if backend in GPU_BACKENDS else "cpu"  # emulated kernels: NumPy arrays
    model.build((2, 6, 6), Device(kind, api_name(backend)), seed=5, dtype=dtype)
    model.compile(nn.SGD(0.1, momentum=0.9))
    return model


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", NN_BACKENDS)
def test_fused_model_trains_bit_identically(backend, dtype, host_cupy):
    """Two steps of fit (the trainer's static step, eager here; the last batch smaller),
    fused and unfused: the same losses, weights and predictions, bit for bit."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((11, 2, 6, 6)).astype(dtype), rng.integers(0, 3, 11)
    fused, plain = _model(backend, dtype, True), _model(backend, dtype, False)
    assert [getattr(l, "epilogue_relu", None) for l in fused.layers] == [True, None, None, True,
                                                                         None, False]
    assert fused.layers[1].in_epilogue and not plain.layers[1].in_epilogue
    assert not any(getattr(l, "epilogue_relu", False) for l in plain.layers)
    history = {}
    for key, model in (("fused", fused), ("plain", plain)):
        history[key] = model.fit(x, y, batch_size=6, verbose=0).history["loss"]
    assert history["fused"] == history["plain"]
    for got, want in zip(fused.get_weights(), plain.get_weights()):
        assert got.tobytes() == want.tobytes()
    assert np.array_equal(fused.predict(x), plain.predict(x))
