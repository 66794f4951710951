"""The trainer's fused layer kernels (kernels/layers.cu) on the CPU through the g++ host
emulation, against the NumPy path of the gpuconv.nn layers they replace: the layer code runs
twice on the same NumPy arrays, once with its array maths (device "cpu") and once with
``Device.layer_kernels`` pointing at the emulated kernels (what "cuda" uses)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gpuconv import nn
from gpuconv.backends import cupy_backend, cupy_layers
from gpuconv.nn import counter_rng
from gpuconv.nn.device import Device
from gpuconv.nn.losses import SoftmaxCrossEntropy
from tests.cuda_host import harness

pytestmark = pytest.mark.skipif(harness.compiler() is None, reason="no C++ compiler (g++)")

COEFF = {"float64": 1e-13, "float32": 4e-6}  # per sqrt(reduction length), as test_cupy_host


@pytest.fixture(scope="module")
def lib():
    return harness.build()


@pytest.fixture
def host(lib, monkeypatch):
    ex = harness.HostExecutor(lib)
    monkeypatch.setattr(cupy_backend, "_EXECUTOR", ex)
    return ex


class FusedCpu(Device):
    """The CPU device whose layers take the fused-kernel path (through the emulation)."""

    @property
    def layer_kernels(self):
        return cupy_layers


CPU, FUSED = Device("cpu", "numpy"), FusedCpu("cpu", "numpy")


def assert_close(got, want, k: int, dtype: str, what: str):
    assert got.shape == want.shape and got.dtype == want.dtype, (what, got.shape, want.shape)
    scale = np.abs(want) + np.abs(want).max()
    bad = ~(np.abs(got - want) <= COEFF[dtype] * math.sqrt(k) * scale)
    if bad.any():
        i = tuple(np.argwhere(bad)[0])
        pytest.fail(f"{what}: {bad.sum()} of {bad.size} differ, first at {i}: got {got[i]!r}, "
                    f"want {want[i]!r}")


def _built(layer_factory, shape, device, dtype, rng_seed):
    layer = layer_factory()
    layer.build(shape[1:], device, np.random.default_rng(rng_seed), np.dtype(dtype))
    return layer


# --------------------------------------------------------------------------- batch norm
# plane-of-144: thread 32's next element lies exactly two planes on (32 + 256 = 2 * 144),
# for_channel's boundary between its one-plane wrap and its general step;
# one-value: a batch of one pixel, whose unbiased variance divides by max(count - 1, 1)
BN_SHAPES = {"small": (3, 4, 5, 6), "wide-plane": (2, 3, 20, 17), "one-pixel": (5, 2, 1, 1),
             "plane-of-144": (2, 3, 12, 12), "one-value": (1, 2, 1, 1)}


@pytest.mark.parametrize("relu", [False, True], ids=["", "relu"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(BN_SHAPES))
def test_batch_norm_training_step(host, name, dtype, relu):
    """Forward in training mode (output, running statistics) then backward (grad_x, grad_gamma,
    grad_beta) with a random upstream gradient, twice so the running update compounds; with
    ``relu``, the ReLU that Sequential fuses into it, in the same two kernels."""
    shape = BN_SHAPES[name]
    rng = np.random.default_rng(len(name))
    layers = {}
    for key, device in (("numpy", CPU), ("kernel", FUSED)):
        layer = _built(lambda: nn.BatchNorm2D(momentum=0.8, epsilon=1e-3), shape, device, dtype, 0)
        layer.relu = relu
        layer.params["gamma"][...] = np.linspace(0.5, 1.5, shape[1])
        layer.params["beta"][...] = np.linspace(-1, 1, shape[1])
        layers[key] = layer
    count = shape[0] * shape[2] * shape[3]
    for step in range(2):
        x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        want_y, got_y = (layers[k].forward(x, training=True) for k in ("numpy", "kernel"))
        assert_close(got_y, want_y, count, dtype, f"y (step {step})")
        assert np.array_equal(got_y > 0, want_y > 0) and ((want_y >= 0).all() or not relu)
        for buf in ("running_mean", "running_var"):
            assert_close(layers["kernel"].buffers[buf], layers["numpy"].buffers[buf], count, dtype, buf)
        want_gx, got_gx = (layers[k].backward(g) for k in ("numpy", "kernel"))
        assert_close(got_gx, want_gx, count, dtype, "grad_x")
        for p in ("gamma", "beta"):
            assert_close(layers["kernel"].grads[p], layers["numpy"].grads[p], count, dtype, f"grad_{p}")
    assert host.launched[-2:] == [f"batch_norm2d_forward<{'float' if dtype == 'float32' else 'double'}>",
                                  f"batch_norm2d_backward<{'float' if dtype == 'float32' else 'double'}>"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_backward_reads_a_strided_upstream_gradient_as_its_values(host, dtype):
    """The backward takes grad_out as any array of the right shape: a strided one (Fortran
    order, a transpose's layout) gives the NumPy layer's gradients, as a contiguous one does."""
    shape = BN_SHAPES["small"]
    rng = np.random.default_rng(41)
    x = (rng.standard_normal(shape) * 2 - 1).astype(dtype)
    g = np.asfortranarray(rng.standard_normal(shape).astype(dtype))
    assert not g.flags.c_contiguous
    layers = {k: _built(nn.BatchNorm2D, shape, d, dtype, 0) for k, d in (("numpy", CPU), ("kernel", FUSED))}
    for layer in layers.values():
        layer.forward(x, training=True)
    want, got = layers["numpy"].backward(np.ascontiguousarray(g)), layers["kernel"].backward(g)
    count = shape[0] * shape[2] * shape[3]
    assert_close(got, want, count, dtype, "grad_x")
    for p in ("gamma", "beta"):
        assert_close(layers["kernel"].grads[p], layers["numpy"].grads[p], count, dtype, f"grad_{p}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_inference_and_no_input_grad(host, dtype):
    shape = BN_SHAPES["small"]
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    layers = [_built(nn.BatchNorm2D, shape, d, dtype, 0) for d in (CPU, FUSED)]
    for layer in layers:
        layer.buffers["running_mean"][...] = np.arange(shape[1]) - 1.0
        layer.buffers["running_var"][...] = np.arange(shape[1]) + 0.5
        layer.need_input_grad = False
    want, got = (layer.forward(x) for layer in layers)
    assert_close(got, want, 1, dtype, "inference y")
    assert np.array_equal(layers[1].buffers["running_mean"], np.arange(shape[1]) - 1.0)
    g = rng.standard_normal(shape).astype(dtype)
    for layer in layers:  # after an inference forward: the running statistics' gradient
        layer.need_input_grad = True
    want, got = (layer.backward(g) for layer in layers)
    assert_close(got, want, 1, dtype, "inference grad_x")
    assert_close(layers[1].grads["gamma"], layers[0].grads["gamma"], 90, dtype, "grad_gamma")
    for layer in layers:
        layer.need_input_grad = False
    for layer in layers:
        layer.forward(x, training=True)
    g = rng.standard_normal(shape).astype(dtype)
    assert [layer.backward(g) for layer in layers] == [None, None]
    assert_close(layers[1].grads["gamma"], layers[0].grads["gamma"], 90, dtype, "grad_gamma")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_norm_relu_keeps_nan(host, dtype):
    """A NaN input makes its channel's batch statistics NaN: the fused ReLU keeps NaN there
    (np.maximum's rule), and the other channels are as the NumPy path's."""
    shape = BN_SHAPES["small"]
    x = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    x[1, 2, 3, 4] = np.nan
    layers = [_built(nn.BatchNorm2D, shape, d, dtype, 0) for d in (CPU, FUSED)]
    for layer in layers:
        layer.relu = True
    want, got = (layer.forward(x, training=True) for layer in layers)
    assert np.isnan(want[:, 2]).all() and np.array_equal(np.isnan(got), np.isnan(want))
    finite = ~np.isnan(want)
    assert_close(got[finite], want[finite], shape[0] * shape[2] * shape[3], dtype, "y")


# --------------------------------------------------------------------------- loss
LOSS = {"one-row-each": (37, 10, False), "rows-per-thread": (300, 7, False), "ties": (40, 5, True)}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(LOSS))
def test_softmax_cross_entropy(host, name, dtype):
    rows, classes, ties = LOSS[name]
    rng = np.random.default_rng(rows)
    if ties:  # integer logits: equal maxima everywhere, the first must win (argmax)
        logits = rng.integers(0, 3, (rows, classes)).astype(dtype)
    else:
        logits = (rng.standard_normal((rows, classes)) * 4).astype(dtype)
    labels = rng.integers(0, classes, rows)
    loss = SoftmaxCrossEntropy()
    totals = {d: np.array([1.5, 2.0]) for d in ("numpy", "kernel")}  # added to, not overwritten
    want = loss.gradient_and_totals(logits, labels, totals["numpy"], CPU)
    got = loss.gradient_and_totals(logits, labels, totals["kernel"], FUSED)
    assert_close(got, want, classes, dtype, "grad")
    assert_close(totals["kernel"][:1], totals["numpy"][:1], rows * classes, dtype, "loss sum")
    assert totals["kernel"][1] == totals["numpy"][1]  # correct counts agree exactly


# --------------------------------------------------------------------------- dropout
def test_philox_known_answers():
    """Random123's known-answer vectors for philox4x32_10."""
    kat = [((0, 0, 0, 0), (0, 0), (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
           ((0xffffffff,) * 4, (0xffffffff,) * 2, (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
           ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
            (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1))]
    for counter, key, want in kat:
        assert tuple(int(v) for v in counter_rng.philox4x32_10(*counter, *key)) == want


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, rate", [((3, 5, 7, 9), 0.3), ((4, 1023), 0.5), ((2, 6), 0.9)])
def test_dropout_masks_are_bit_identical(host, shape, rate, dtype):
    """The kernel's mask is the NumPy twin's, element for element, forward and backward; a
    different step or stream draws a different mask; the keep rate is 1 - rate."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    seed = np.array([rng.integers(1 << 62), 17], dtype=np.int64)

    class Clock:
        def counter_seed(self):
            return seed, 3

    layers = [_built(lambda: nn.Dropout(rate), shape, d, dtype, 0) for d in (CPU, FUSED)]
    want, got = (layer.forward(x, training=True, rng=Clock()) for layer in layers)
    assert np.array_equal(got, want)
    assert np.array_equal(layers[1].backward(g), layers[0].backward(g))
    keep = got != 0
    assert abs(keep.mean() - (1 - rate)) < 4 * math.sqrt(rate * (1 - rate) / x.size) + 1e-9
    assert np.array_equal(got[keep], x[keep] * x.dtype.type(1 / (1 - rate)))
    other = cupy_layers.dropout(x, np.array([seed[0], 18]), 3, counter_rng.dropout_threshold(rate),
                                1 / (1 - rate))
    if x.size >= 64:
        assert not np.array_equal(other != 0, keep)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_keeps_a_draw_equal_to_the_threshold(host, dtype):
    """keep = draw >= threshold: with the threshold set to some elements' own 24-bit draws
    (nn.counter_rng's words), those elements are kept, as by the NumPy twin."""
    seed, stream, x = np.array([0x1234_5678_9ABC, 5], np.int64), 2, np.ones(24, dtype)
    key, step = int(seed[0]), int(seed[1])
    words = counter_rng.philox4x32_10(np.arange(6, dtype=np.uint32), 0, step, stream,
                                      key & 0xFFFFFFFF, key >> 32).reshape(-1)
    draws = words >> np.uint32(32 - counter_rng.DRAW_BITS)
    for i in (0, 7, 22):
        threshold = int(draws[i])
        want = counter_rng.dropout_keep(seed, stream, x.size, threshold)
        got = cupy_layers.dropout(x, seed, stream, threshold, 2.0)
        assert want[i] and np.array_equal(got != 0, want), i


# --------------------------------------------------------------------------- optimiser updates
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("nesterov", [False, True], ids=["momentum", "nesterov"])
def test_the_fused_sgd_update_is_the_optimisers_numpy_update(host, nesterov, dtype):
    """cupy_layers' SGD kernel body mirrors SGD._update: its velocity and parameters after
    each of a few updates (momentum, Nesterov) equal the NumPy update's."""
    rng = np.random.default_rng(42)
    opt = nn.SGD(0.05, momentum=0.8, nesterov=nesterov)
    p = rng.standard_normal((3, 5)).astype(dtype)
    p_kernel, v_kernel = p.copy(), np.zeros_like(p)
    for step in range(4):
        g = rng.standard_normal(p.shape).astype(dtype)
        s = opt.step_scalars(opt.step, p.dtype)
        cupy_layers.sgd_momentum_update(g, s, p.dtype.type(opt.momentum), nesterov, p_kernel,
                                        v_kernel)
        opt.apply({"w": p}, {"w": g})
        for name, got, want in (("velocity", v_kernel, opt.state["w/velocity"]),
                                ("parameters", p_kernel, p)):
            np.testing.assert_allclose(got, want, rtol=COEFF[dtype], atol=COEFF[dtype],
                                       err_msg=f"{name} after update {step}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_fused_adam_update_is_the_optimisers_numpy_update(host, dtype):
    """cupy_layers' Adam kernel body mirrors Adam._update: moments and parameters after each
    of a few updates equal the NumPy update's (the bias-corrected step size from s[1])."""
    rng = np.random.default_rng(43)
    opt = nn.Adam(0.01, beta_1=0.8, beta_2=0.95, epsilon=1e-3)
    p = rng.standard_normal((4, 3)).astype(dtype)
    p_kernel, m_kernel, v_kernel = p.copy(), np.zeros_like(p), np.zeros_like(p)
    t = p.dtype.type
    for step in range(4):
        g = rng.standard_normal(p.shape).astype(dtype)
        s = opt.step_scalars(opt.step, p.dtype)
        cupy_layers.adam_update(g, t(opt.beta_1), t(opt.beta_2), s, t(opt.epsilon), p_kernel,
                                m_kernel, v_kernel)
        opt.apply({"w": p}, {"w": g})
        for name, got, want in (("m", m_kernel, opt.state["w/m"]), ("v", v_kernel, opt.state["w/v"]),
                                ("parameters", p_kernel, p)):
            np.testing.assert_allclose(got, want, rtol=COEFF[dtype], atol=COEFF[dtype],
                                       err_msg=f"{name} after update {step}")


# --------------------------------------------------------------------------- fused ReLU backward
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (2, 1, 1, 1), (1, 2, 33, 31)])
def test_conv_relu_backward_is_the_numpy_mask(host, shape, dtype):
    """A Conv2D with its ReLU fused into the epilogue: the backward through the relu_backward
    kernel is the NumPy path's g * (y > 0) bit for bit (so is the whole conv backward), with
    zeros, negative zeros and NaN among the outputs and an infinite upstream gradient."""
    rng = np.random.default_rng(shape[-1])
    x = rng.standard_normal(shape).astype(dtype)
    grads, g = {}, None
    for key, device in (("numpy", CPU), ("kernel", FUSED)):
        layer = _built(lambda: nn.Conv2D(3, 3, padding=1, activation="relu"), shape, device,
                       dtype, 0)
        layer.epilogue_relu = True  # as Sequential's fusion sets it
        y = layer.forward(x, training=True)
        if g is None:  # one upstream gradient for both
            g = rng.standard_normal(y.shape).astype(dtype)
        grads[key] = (layer.backward(g), layer.grads["kernel"])
    assert all(np.array_equal(a, b) for a, b in zip(grads["kernel"], grads["numpy"]))
    y = rng.standard_normal(shape).astype(dtype)
    y.flat[:4] = [0.0, -0.0, np.nan, 1.0]
    g = rng.standard_normal(shape).astype(dtype)
    g.flat[:4] = [np.inf, -2.0, 3.0, -np.inf]
    with np.errstate(invalid="ignore"):  # inf * 0
        want = g * (y > 0)
    got = cupy_layers.relu_backward(g, y)
    assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)
    assert np.array_equal(np.signbit(got), np.signbit(want))
