"""gpuconv.torch: gpuconv's kernels inside torch.autograd. gradcheck of every Function in
float64, modules equal to torch.nn's (initialisation, state_dict, forward, backward with
random upstream gradients), and a small model trained with gpuconv layers matching the same
model with PyTorch's layers. On a CUDA machine the same checks run on the GPU too."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import gpuconv.torch as gt  # noqa: E402

nn, TF = torch.nn, torch.nn.functional
CUDA = torch.cuda.is_available()
DEVICES = ["cpu"] + (["cuda"] if CUDA else [])
TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


@pytest.fixture(autouse=True)
def _ieee_cuda_convolutions():
    """PyTorch's CUDA convolutions default to TF32 products; gpuconv's to IEEE ones."""
    conv = torch.backends.cudnn.conv
    before, conv.fp32_precision = conv.fp32_precision, "ieee"
    yield
    conv.fp32_precision = before


def _rand(*shape, seed=0, positive=False, device="cpu", dtype=torch.float64):
    g = torch.Generator().manual_seed(seed + sum(shape))
    x = torch.randn(*shape, generator=g, dtype=dtype)
    return (x.abs() + 0.5 if positive else x).to(device)


# --------------------------------------------------------------------------- gradcheck
# name -> (function of the tensors, their shapes); small float64 shapes
GRADCHECK = {
    "conv1d": (lambda x, w, b: gt.conv1d(x, w, b, stride=2, padding=1, groups=2),
               [(2, 4, 7), (4, 2, 3), (4,)]),
    "conv2d": (lambda x, w, b: gt.conv2d(x, w, b, padding=1, dilation=(1, 2)),
               [(1, 2, 5, 6), (3, 2, 3, 2), (3,)]),
    "conv2d-reflect": (lambda x, w: gt.conv2d(x, w, padding=1, padding_mode="reflect"),
                       [(1, 2, 4, 4), (2, 2, 3, 3)]),
    "conv_transpose1d": (lambda x, w, b: gt.conv_transpose1d(x, w, b, stride=2, output_padding=1),
                         [(2, 2, 4), (2, 3, 3), (3,)]),
    "conv_transpose2d": (lambda x, w, b: gt.conv_transpose2d(x, w, b, stride=2, padding=1,
                                                             groups=2),
                         [(1, 4, 3, 3), (4, 1, 3, 3), (2,)]),
    "max_pool1d": (lambda x: gt.max_pool1d(x, 3, stride=2, padding=1), [(2, 2, 7)]),
    "max_pool2d": (lambda x: gt.max_pool2d(x, 2, stride=1, ceil_mode=True), [(1, 2, 4, 5)]),
    "avg_pool1d": (lambda x: gt.avg_pool1d(x, 3, stride=2, padding=1, count_include_pad=False),
                   [(2, 2, 7)]),
    "avg_pool2d": (lambda x: gt.avg_pool2d(x, 3, stride=2, padding=1, divisor_override=5),
                   [(1, 2, 5, 5)]),
    "adaptive_avg_pool1d": (lambda x: gt.adaptive_avg_pool1d(x, 3), [(2, 2, 7)]),
    "adaptive_avg_pool2d": (lambda x: gt.adaptive_avg_pool2d(x, (3, None)), [(1, 2, 5, 4)]),
    "adaptive_max_pool1d": (lambda x: gt.adaptive_max_pool1d(x, 3), [(2, 2, 7)]),
    "adaptive_max_pool2d": (lambda x: gt.adaptive_max_pool2d(x, (2, 3)), [(1, 2, 5, 5)]),
    "global_avg_pool2d": (gt.global_avg_pool2d, [(2, 3, 3, 4)]),
    "global_max_pool2d": (gt.global_max_pool2d, [(2, 3, 3, 4)]),
    "lp_pool1d": (lambda x: gt.lp_pool1d(x, 2, 3, stride=2), [(2, 2, 7)]),
    "lp_pool2d": (lambda x: gt.lp_pool2d(x, 3.0, 2), [(1, 2, 4, 6)]),
    "conv2d-unbatched": (lambda x, w, b: gt.conv2d(x, w, b, stride=2), [(2, 5, 5), (3, 2, 2, 2),
                                                                        (3,)]),
    "max_pool2d-unbatched": (lambda x: gt.max_pool2d(x, 2), [(2, 4, 4)]),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(GRADCHECK))
def test_gradcheck(case, device):
    fn, shapes = GRADCHECK[case]
    inputs = [_rand(*s, seed=i, positive=case.startswith("lp"), device=device).requires_grad_()
              for i, s in enumerate(shapes)]
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_max_pool_indices_are_not_differentiable():
    x = _rand(1, 1, 4, 4).requires_grad_()
    y, idx = gt.max_pool2d(x, 2, return_indices=True)
    assert y.requires_grad and not idx.requires_grad and idx.dtype == torch.int64
    torch.testing.assert_close(idx, TF.max_pool2d(x, 2, return_indices=True)[1])


def test_double_backward_is_refused_clearly():
    x = _rand(1, 1, 4, 4).requires_grad_()
    w = _rand(1, 1, 2, 2).requires_grad_()
    (gx,) = torch.autograd.grad((gt.conv2d(x, w) ** 2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|twice"):
        gx.sum().backward()


# --------------------------------------------------------------------------- modules vs torch.nn
# name -> (constructor arguments, input shape); the same name in gpuconv.torch and torch.nn
MODULES = {
    "Conv1d": ((4, 6, 3), dict(stride=2, padding=1, groups=2), (2, 4, 9)),
    "Conv1d-reflect": ((4, 6, 3), dict(padding=2, padding_mode="reflect"), (2, 4, 9)),
    "Conv2d": ((3, 4, (3, 2)), dict(padding="same", dilation=(1, 2), padding_mode="circular"),
               (2, 3, 7, 6)),
    "Conv2d-nobias": ((2, 4, 3), dict(stride=2, bias=False), (2, 2, 7, 7)),
    "ConvTranspose1d": ((4, 2, 3), dict(stride=2, padding=1, output_padding=1), (2, 4, 5)),
    "ConvTranspose2d": ((4, 6, 3), dict(stride=2, groups=2, dilation=2), (2, 4, 4, 5)),
    "MaxPool1d": ((3,), dict(stride=2, padding=1, dilation=2), (2, 3, 9)),
    "MaxPool2d": ((3,), dict(stride=2, padding=1, ceil_mode=True), (2, 3, 8, 7)),
    "AvgPool1d": ((3,), dict(stride=2, padding=1, count_include_pad=False), (2, 3, 9)),
    "AvgPool2d": ((3,), dict(stride=2, padding=1, divisor_override=4), (2, 3, 8, 7)),
    "AdaptiveAvgPool1d": ((4,), {}, (2, 3, 9)),
    "AdaptiveAvgPool2d": (((3, None),), {}, (2, 3, 8, 7)),
    "AdaptiveMaxPool1d": ((4,), {}, (2, 3, 9)),
    "AdaptiveMaxPool2d": (((5, 3),), {}, (2, 3, 8, 7)),
    "LPPool1d": ((2, 3), dict(stride=2), (2, 3, 9)),
    "LPPool2d": ((3, 2), dict(ceil_mode=True), (2, 3, 8, 7)),
    "LPPool2d-stride": ((2, (2, 3)), dict(stride=(1, 2)), (2, 3, 8, 7)),
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", sorted(MODULES))
def test_module_matches_torch_nn(case, device, dtype):
    name = case.split("-")[0]
    args, kwargs, shape = MODULES[case]
    torch.manual_seed(0)
    reference = getattr(nn, name)(*args, **kwargs).to(device, dtype)
    torch.manual_seed(0)
    module = getattr(gt, name)(*args, **kwargs).to(device, dtype)
    assert isinstance(module, getattr(nn, name))
    assert list(module.state_dict()) == list(reference.state_dict())
    for key, value in reference.state_dict().items():  # the same initialisation
        torch.testing.assert_close(module.state_dict()[key], value, rtol=0, atol=0)
    x = _rand(*shape, positive=name.startswith("LP"), device=device, dtype=dtype)
    for unbatched in (False, True):
        xr = (x[0] if unbatched else x).clone().requires_grad_()
        xg = xr.detach().clone().requires_grad_()
        yr, yg = reference(xr), module(xg)
        assert type(yg) is torch.Tensor and yg.device == yr.device and yg.dtype == dtype
        torch.testing.assert_close(yg, yr, rtol=TOL[dtype], atol=TOL[dtype])
        upstream = _rand(*yr.shape, seed=1, device=device, dtype=dtype)
        yr.backward(upstream)
        yg.backward(upstream)
        torch.testing.assert_close(xg.grad, xr.grad, rtol=TOL[dtype], atol=TOL[dtype])
        for (key, p), q in zip(reference.named_parameters(), module.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=TOL[dtype], atol=TOL[dtype],
                                       msg=key)
            p.grad = q.grad = None


def test_state_dict_moves_between_torch_and_gpuconv_layers():
    reference = nn.Conv2d(3, 5, 3, padding=1)
    module = gt.Conv2d(3, 5, 3, padding=1)
    module.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(module(x), reference(x), rtol=1e-5, atol=1e-5)
    assert set(module.state_dict()) == {"weight", "bias"}
    assert "backend='numba'" in repr(gt.MaxPool2d(2, backend="numba"))


def test_conv_transpose_output_size_as_torch():
    torch.manual_seed(0)
    reference = nn.ConvTranspose2d(2, 3, 3, stride=2)
    module = gt.ConvTranspose2d(2, 3, 3, stride=2)
    module.load_state_dict(reference.state_dict())
    x = torch.randn(1, 2, 4, 4)
    y = module(x, output_size=(10, 10))
    assert y.shape == (1, 3, 10, 10)
    torch.testing.assert_close(y, reference(x, output_size=(10, 10)), rtol=1e-5, atol=1e-5)


# name -> (constructor arguments, input shape): max-pooling modules built with
# return_indices=True
INDEX_MODULES = {
    "MaxPool1d": ((3,), dict(stride=2, padding=1), (2, 3, 9)),
    "MaxPool2d": (((3, 2),), dict(stride=(2, 1), dilation=(1, 2)), (2, 3, 8, 7)),
    "AdaptiveMaxPool1d": ((4,), {}, (2, 3, 9)),
    "AdaptiveMaxPool2d": (((5, 3),), {}, (2, 3, 8, 7)),
}


@pytest.mark.parametrize("case", sorted(INDEX_MODULES))
def test_max_pool_modules_built_to_return_indices_return_torchs(case):
    """A max-pooling module made with return_indices=True returns (output, indices), both
    torch.nn's; the output's gradient (random upstream) is torch's."""
    args, kwargs, shape = INDEX_MODULES[case]
    reference = getattr(nn, case)(*args, **kwargs, return_indices=True)
    module = getattr(gt, case)(*args, **kwargs, return_indices=True)
    xr = _rand(*shape, seed=7).requires_grad_()
    xg = xr.detach().clone().requires_grad_()
    (yr, ir), got = reference(xr), module(xg)
    assert isinstance(got, tuple) and len(got) == 2, type(got)
    yg, ig = got
    assert ig.dtype == torch.int64 and not ig.requires_grad
    torch.testing.assert_close(ig, ir, rtol=0, atol=0)
    torch.testing.assert_close(yg, yr, rtol=0, atol=0)
    upstream = _rand(*yr.shape, seed=8)
    yr.backward(upstream)
    yg.backward(upstream)
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-12, atol=1e-12)


# name -> (module, constructor arguments, input shape, output_size asked for): the output
# size picks output_padding from the dilated kernel's extent, as torch.nn's does
OUTPUT_SIZES = {
    "2d-dilation-2": (
        "ConvTranspose2d", (2, 3, 3), dict(stride=2, dilation=2), (1, 2, 4, 4), (12, 12)),
    "2d-dilation-3-padding-1": (
        "ConvTranspose2d", (2, 3, 2), dict(stride=3, dilation=(3, 1), padding=1), (1, 2, 3, 4),
        (8, 11)),
    "1d-dilation-2": ("ConvTranspose1d", (2, 3, 3), dict(stride=2, dilation=2), (1, 2, 5), (14,)),
}


@pytest.mark.parametrize("case", sorted(OUTPUT_SIZES))
def test_conv_transpose_output_size_counts_the_dilation_as_torch(case):
    name, args, kwargs, shape, size = OUTPUT_SIZES[case]
    torch.manual_seed(0)
    reference = getattr(nn, name)(*args, **kwargs).double()
    module = getattr(gt, name)(*args, **kwargs).double()
    module.load_state_dict(reference.state_dict())
    x = _rand(*shape, seed=3)
    want = reference(x, output_size=size)
    got = module(x, output_size=size)
    assert tuple(got.shape[2:]) == size == tuple(want.shape[2:])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


# backend= for CPU tensors -> (exception, message): the backend named is the one that runs,
# so a name no backend has is refused, not replaced by the NumPy backend
NAMED_BACKENDS = {
    "nonsense": (ValueError, r"backend must be one of \('numpy', 'cupy', 'numba'\), got "
                             r"'nonsense'"),
    "NumPy": (ValueError, r"backend must be one of .*got 'NumPy'"),
    3: (TypeError, r"backend must be a string or None, got int"),
}
_NAMED_CALLS = {
    "conv2d": lambda x, b: gt.conv2d(x, torch.ones(1, 2, 2, 2, dtype=x.dtype), backend=b),
    "max_pool2d": lambda x, b: gt.max_pool2d(x, 2, backend=b),
    "AvgPool2d": lambda x, b: gt.AvgPool2d(2, backend=b)(x),
}


@pytest.mark.parametrize("call", sorted(_NAMED_CALLS))
@pytest.mark.parametrize("backend", list(NAMED_BACKENDS), ids=str)
def test_the_backend_named_for_cpu_tensors_is_the_one_that_runs(call, backend):
    exc, message = NAMED_BACKENDS[backend]
    x = _rand(1, 2, 4, 4).requires_grad_()
    with pytest.raises(exc, match=message):
        _NAMED_CALLS[call](x, backend)


def test_backend_by_name_on_the_cpu():
    """backend='numba' (Numba's CUDA simulator here: NumPy copies in and out) gives what the
    default NumPy backend gives."""
    torch.manual_seed(0)
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    layer = gt.Conv2d(2, 3, 3, backend="numba")
    y = layer(x)
    torch.testing.assert_close(y, nn.functional.conv2d(x, layer.weight, layer.bias), rtol=1e-5,
                               atol=1e-5)
    y.sum().backward()
    assert x.grad.shape == x.shape and layer.weight.grad is not None


# --------------------------------------------------------------------------- training
def _model(layers, seed):
    torch.manual_seed(seed)
    return nn.Sequential(
        layers.Conv2d(1, 4, 3, padding=1), nn.ReLU(), layers.MaxPool2d(2),
        layers.Conv2d(4, 6, 3, stride=1, padding=1, padding_mode="reflect"), nn.Tanh(),
        layers.AvgPool2d(2), layers.ConvTranspose2d(6, 4, 2, stride=2), nn.ReLU(),
        layers.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)).double()


@pytest.mark.parametrize("device", DEVICES)
def test_a_model_with_gpuconv_layers_trains_as_with_torch_layers(device):
    models = [_model(nn, 0).to(device), _model(gt, 0).to(device)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models]
    g = torch.Generator().manual_seed(1)
    losses = [[], []]
    for _ in range(4):
        x = torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64).to(device)
        target = torch.randint(0, 3, (8,), generator=g).to(device)
        for model, optimizer, history in zip(models, optimizers, losses):
            optimizer.zero_grad()
            loss = TF.cross_entropy(model(x), target)
            loss.backward()
            optimizer.step()
            history.append(loss.item())
    assert losses[0][-1] != losses[0][0]  # the parameters did move
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-10, atol=1e-10)
    for (key, p), q in zip(models[0].named_parameters(), models[1].parameters()):
        torch.testing.assert_close(q, p, rtol=1e-9, atol=1e-9, msg=key)


# --------------------------------------------------------------------------- CUDA specifics
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_cuda_runs_on_torchs_current_stream():
    """On a side stream, with the default stream busy: results equal the CPU's, so gpuconv
    launched on (or waited for) PyTorch's current stream."""
    x = _rand(4, 8, 32, 32, device="cuda", dtype=torch.float32)
    w = _rand(16, 8, 3, 3, seed=1, device="cuda", dtype=torch.float32)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        y = gt.conv2d(x * 2, w, padding=1)
        z = gt.max_pool2d(y, 2)
    torch.cuda.current_stream().wait_stream(side)
    expected = TF.max_pool2d(TF.conv2d(x.cpu() * 2, w.cpu(), padding=1), 2)
    torch.testing.assert_close(z.cpu(), expected, rtol=1e-4, atol=1e-4)
    assert z.device == x.device


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("backend", ["cupy", "numba"])
def test_cuda_backends_by_name(backend):
    from gpuconv.backends import unavailable_reason
    if unavailable_reason(backend) is not None:
        pytest.skip(unavailable_reason(backend))
    x = _rand(2, 3, 9, 9, device="cuda").requires_grad_()
    layer = gt.Conv2d(3, 4, 3, stride=2, backend=backend).to("cuda", torch.float64)
    y = gt.MaxPool2d(2, backend=backend)(layer(x))
    y.backward(torch.ones_like(y))
    xr = x.detach().clone().requires_grad_()
    yr = TF.max_pool2d(TF.conv2d(xr, layer.weight, layer.bias, stride=2), 2)
    yr.backward(torch.ones_like(yr))
    torch.testing.assert_close(y, yr, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("op, x", [(gt.lp_pool1d, (2, 3, 8)), (gt.lp_pool2d, (2, 3, 8, 8))])
@pytest.mark.parametrize("norm_type", [True, "2", "abc", None, float("nan"), -1.0])
def test_lp_pool_norm_type_is_checked_as_gpuconv_checks_it(op, x, norm_type):
    """The adapter hands norm_type over as given: converted with float() first, True and
    "2" passed and "abc" failed without naming it."""
    with pytest.raises((ValueError, TypeError), match="norm_type"):
        op(_rand(*x, positive=True), norm_type, 2)


class _Tagged(torch.Tensor):
    """A tensor subclass (as torchvision's tv_tensors are), defined in a module that is no
    array library."""


@pytest.mark.parametrize("call", [lambda x: gt.avg_pool2d(x, 2), lambda x: gt.max_pool2d(x, 2),
                                  lambda x: gt.Conv2d(2, 3, 3).double()(x),
                                  lambda x: gt.conv2d(x, torch.ones(3, 2, 3, 3, dtype=x.dtype))])
def test_a_tensor_subclass_runs_as_a_tensor(call):
    """Forward and gradients of a subclass input are those of the plain tensor (before, the
    result came back as a NumPy array with autograd lost, or the call failed)."""
    torch.manual_seed(0)
    plain = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    tagged = plain.detach().clone().as_subclass(_Tagged).requires_grad_()
    outputs = []
    for x in (plain, tagged):
        torch.manual_seed(1)  # the same layer weights
        y = call(x)
        assert isinstance(y, torch.Tensor) and y.requires_grad
        y.sum().backward()
        outputs.append((y.detach(), x.grad))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


@pytest.mark.parametrize("value", [[[[[0.0]]]], 3, None])
def test_an_input_that_is_no_tensor_is_a_type_error(value):
    import numpy as np
    for x in (np.zeros((1, 1, 4, 4)), value):
        with pytest.raises(TypeError, match="input must be a torch.Tensor"):
            gt.max_pool2d(x, 2)


@pytest.mark.parametrize("make, advice", [
    (lambda: torch.zeros(1, 1, 4, 4, dtype=torch.bfloat16), "float32 or float64 arrays"),
    (lambda: torch.zeros(1, 1, 4, 4).to_sparse(), "strided memory"),
    (lambda: torch.zeros(1, 1, 4, 4, requires_grad=True), "for autograd use gpuconv.torch"),
])
def test_a_tensor_that_cannot_be_shared_says_why(make, advice):
    """gpuconv.functional on a tensor DLPack cannot share: the advice fits the tensor
    (gpuconv.torch only for one that requires grad; gpuconv.torch itself says the same of
    a bfloat16 or sparse one)."""
    import gpuconv.functional as F
    calls = [F.max_pool2d] + ([] if make().requires_grad else [gt.max_pool2d])
    for call in calls:
        with pytest.raises(TypeError, match=f"input: the torch array cannot be shared.*{advice}"):
            call(make(), 2)


def _negated_view(*shape):
    """A float64 tensor whose negative bit is set (what .conj().imag of a complex one is)."""
    view = torch.randn(*shape, dtype=torch.complex128).conj().imag
    assert view.is_neg()
    return view


@pytest.mark.parametrize("op", ["conv2d", "max_pool2d"])
def test_a_negated_view_counts_with_its_sign(op):
    """DLPack shares a tensor's memory without its negative bit: gpuconv.torch resolves it
    (the results came back negated), gpuconv.functional refuses it."""
    import torch.nn.functional as TF
    import gpuconv.functional as F
    torch.manual_seed(2)
    x, w = _negated_view(1, 2, 6, 6).requires_grad_(), torch.randn(3, 2, 3, 3, dtype=torch.float64)
    args = (w,) if op == "conv2d" else (2,)
    y = getattr(gt, op)(x, *args)
    want = getattr(TF, op)(x.detach().resolve_neg(), *args)
    torch.testing.assert_close(y, want, rtol=1e-12, atol=1e-12)
    g = _negated_view(*y.shape)
    y.backward(g)
    x_ref = x.detach().resolve_neg().requires_grad_()
    getattr(TF, op)(x_ref, *args).backward(g.resolve_neg())
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match=r"input is a lazily negated PyTorch view .*"
                                        r"input.resolve_neg\(\)"):
        getattr(F, op)(x.detach(), *args)
