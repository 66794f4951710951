"""The trainer's fused layer kernels (``kernels/layers.cu``) on CuPy arrays: what
``gpuconv.nn`` layers run on the GPU in place of their NumPy array maths (``nn.device``
hands this module to them). Plans come from ``gpu_plan``'s layers section and run through
``cupy_backend``'s executor, so tests/test_cupy_layers_host.py runs these very functions
on the CPU (the g++ emulation) against the layers' NumPy path.

No function synchronises with the host or reads a device value back: inside a captured
CUDA graph each call is one kernel node."""

from __future__ import annotations

import functools

from gpuconv.backends import cupy_backend, gpu_plan as plan


def _xp():
    return cupy_backend._executor().xp


def batch_norm2d_forward(x, gamma, beta, running_mean, running_var, training: bool,
                         momentum: float, epsilon: float, relu: bool = False):
    """(y, saved): y = BatchNorm2D's output (then max(y, 0): a ReLU fused after it); in
    training, batch statistics and the running statistics updated in place, ``saved`` (2, C)
    the batch mean and 1 / std for the backward (None at inference)."""
    xp = _xp()
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    saved = xp.empty((2, x.shape[1]), dtype=x.dtype) if training else None
    cupy_backend._run(plan.batch_norm2d_forward_plan(x.shape, str(x.dtype), training, momentum,
                                                     epsilon, relu),
                      {"x": x, "gamma": gamma, "beta": beta, "y": y, "saved": saved,
                       "running_mean": running_mean, "running_var": running_var})
    return y, saved


def batch_norm2d_backward(grad_out, x, gamma, saved, need_input_grad: bool, relu_y=None):
    """(grad_x or None, grad_gamma, grad_beta) of a training-mode forward; ``relu_y``: the
    forward's output where a ReLU was fused after it (grad_out counts where it is > 0)."""
    xp = _xp()
    grad_out, x = xp.ascontiguousarray(grad_out), xp.ascontiguousarray(x)
    grad_x = xp.empty_like(x) if need_input_grad else None
    grad_gamma, grad_beta = xp.empty_like(gamma), xp.empty_like(gamma)
    relu = relu_y is not None
    cupy_backend._run(plan.batch_norm2d_backward_plan(x.shape, str(x.dtype), need_input_grad, relu),
                      {"x": x, "grad_out": grad_out, "gamma": gamma, "saved": saved,
                       "relu_y": xp.ascontiguousarray(relu_y) if relu else None,
                       "grad_x": grad_x, "grad_gamma": grad_gamma, "grad_beta": grad_beta})
    return grad_x, grad_gamma, grad_beta


def softmax_cross_entropy(logits, labels, totals):
    """d loss / d logits of the mean softmax cross-entropy; adds the batch's loss sum and
    correct count to ``totals`` (float64 [loss sum, correct], on the device)."""
    xp = _xp()
    logits = xp.ascontiguousarray(logits)
    grad = xp.empty_like(logits)
    cupy_backend._run(plan.softmax_cross_entropy_plan(logits.shape[0], logits.shape[1],
                                                      str(logits.dtype)),
                      {"logits": logits, "labels": xp.ascontiguousarray(labels), "grad": grad,
                       "totals": totals})
    return grad


def relu_backward(grad_out, y):
    """grad_out * (y > 0): the backward of a ReLU fused into the layer whose output is y."""
    xp = _xp()
    grad_out, y = xp.ascontiguousarray(grad_out), xp.ascontiguousarray(y)
    grad_x = xp.empty_like(grad_out)
    cupy_backend._run(plan.relu_backward_plan(grad_out.size, str(grad_out.dtype)),
                      {"grad_out": grad_out, "y": y, "grad_x": grad_x})
    return grad_x


def dropout(x, seed, stream: int, threshold: int, scale: float):
    """x * (keep ? scale : 0) with nn.counter_rng's mask of (seed [key, step], stream)."""
    xp = _xp()
    x = xp.ascontiguousarray(x)
    y = xp.empty_like(x)
    cupy_backend._run(plan.dropout_plan(x.size, str(x.dtype), threshold, scale, stream),
                      {"x": x, "y": y, "seed": seed})
    return y


# --------------------------------------------------------------------------- optimiser updates
# Each update is one CuPy elementwise kernel per parameter, not the ~10 array operations (and
# temporaries) of the NumPy expressions in gpuconv.nn.optimizers that it mirrors line by line.
# The step's scalars ``s`` (``Optimizer.step_scalars``) are read from device memory, so a
# captured training step replays with each step's own learning rate.
_UPDATES = {
    "sgd_momentum": ("T g, raw T s, T momentum, bool nesterov", "T p, T v", """
        v = s[1] != 0 ? g : momentum * v + g;
        p -= s[0] * (nesterov ? g + momentum * v : v);"""),
    "adam": ("T g, T b1, T b2, raw T s, T epsilon", "T p, T m, T v", """
        m = b1 * m + (1 - b1) * g;
        v = b2 * v + (1 - b2) * (g * g);
        p -= s[1] * m / (sqrt(v) + epsilon);"""),
}


@functools.cache
def _update_kernel(executor, name: str):
    inputs, outputs, body = _UPDATES[name]
    return executor.elementwise_kernel(inputs, outputs, body, f"gpuconv_{name}")


def sgd_momentum_update(g, s, momentum, nesterov: bool, p, v) -> None:
    """SGD with (Nesterov) momentum, in place: ``optimizers.SGD._update``'s maths."""
    _update_kernel(cupy_backend._executor(), "sgd_momentum")(g, s, momentum, nesterov, p, v)


def adam_update(g, b1, b2, s, epsilon, p, m, v) -> None:
    """Adam, in place: ``optimizers.Adam._update``'s maths."""
    _update_kernel(cupy_backend._executor(), "adam")(g, b1, b2, s, epsilon, p, m, v)
