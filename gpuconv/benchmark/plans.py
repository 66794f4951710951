"""The conv launch plans of the GPU layer suite, without a GPU (``gpuconv bench --plan``).

For every conv layer and pass, what ``gpu_plan`` launches: the GEMM's tile and split-K, and
the plan model's figures (waves of blocks, tile fill, issued / useful multiply-adds), and
whether they meet ``gpu_plan.LAUNCH_THRESHOLDS`` (the tests assert it for the whole suite).
"""

from __future__ import annotations

from typing import Sequence

from gpuconv.backends import gpu_plan
from gpuconv.benchmark.suite import GPU_SUITE, Layer
from gpuconv.shapes import ConvSpec


def _check_precision(backend: str, precision: str) -> None:
    if backend == "numba" and precision != "ieee":
        raise ValueError(f"backend numba runs precision 'ieee' only, got {precision!r}")


def layer_plans(layer: Layer, precision: str = "ieee", sm_count: int = gpu_plan.DEFAULT_SM_COUNT,
                dtype: str = "float32", tile: str | None = None,
                backend: str = "cupy") -> dict[str, gpu_plan.Plan]:
    """pass -> the Plan the CuPy backend (or ``backend`` "numba", "ieee" only) makes for
    ``layer`` (a conv or transposed conv), with ``tile`` forced where a pass's case has it
    (``autotune.forced_tile``; CuPy)."""
    _check_precision(backend, precision)
    transposed = layer.kind == "conv_transpose"
    spec = ConvSpec.make(2, layer.kernel, stride=layer.stride, padding=layer.padding,
                         dilation=layer.dilation, groups=layer.groups,
                         output_padding=layer.output_padding, transposed=transposed)
    x, w, y = layer.input_shape, layer.weight_shape, layer.output_shape
    # a transposed conv runs conv's passes with input and output exchanged
    conv_x, conv_y = (y, x) if transposed else (x, y)
    if backend == "numba":
        forward = gpu_plan.numba_conv_forward_plan(conv_x, w, spec, dtype, True)
        grad_input = gpu_plan.numba_conv_grad_input_plan(conv_y, w, spec, conv_x[2:], dtype, True)
        grad_weight = gpu_plan.numba_conv_grad_weight_plan(conv_y, conv_x, spec, w[2:], dtype,
                                                           sm_count=sm_count)
    else:
        strides = gpu_plan.contiguous_strides
        forward = gpu_plan.conv_forward_plan(conv_x, strides(conv_x), w, strides(w), spec, dtype,
                                             True, precision, tile, sm_count)
        grad_input = gpu_plan.conv_grad_input_plan(conv_y, strides(conv_y), w, strides(w), spec,
                                                   conv_x[2:], dtype, True, precision, tile,
                                                   sm_count)
        grad_weight = gpu_plan.conv_grad_weight_plan(conv_y, strides(conv_y), conv_x,
                                                     strides(conv_x), spec, w[2:], dtype,
                                                     precision, tile, sm_count)
    if transposed:  # its forward is conv's grad-input, its grad-input conv's forward
        forward, grad_input = grad_input, forward
    return {"forward": forward, "grad_input": grad_input, "grad_weight": grad_weight}


def pass_tiles(layer: Layer, pass_: str, precision: str = "ieee",
               sm_count: int = gpu_plan.DEFAULT_SM_COUNT) -> dict[str, dict]:
    """The tiles a pass of ``layer`` can run at ``precision`` (float32), each with the plan
    model's figures for it (``GemmChoice.row``): the plan's own choice first (a GEMM tile, or
    conv_direct's), then each of the precision's tiles that its case has (forced elsewhere,
    a case runs its own choice); none where the pass runs no GEMM."""
    own = layer_plans(layer, precision, sm_count)[pass_].choice
    if own is None:
        return {}
    choices = [own] + [layer_plans(layer, precision, sm_count, tile=name)[pass_].choice
                       for name in gpu_plan.TILES_FOR[("float32", precision)]]
    tiles: dict[str, dict] = {}
    for choice in choices:
        tiles.setdefault(choice.tile.name, choice.row())
    return tiles


def plan_rows(layers: Sequence[Layer] = GPU_SUITE, precision: str = "ieee",
              sm_count: int = gpu_plan.DEFAULT_SM_COUNT, backend: str = "cupy") -> list[dict]:
    """One row per conv layer and pass that runs a GEMM (``backend``'s plans): the choice and
    the model's figures, with ``ok`` saying whether the thresholds hold."""
    _check_precision(backend, precision)  # (also where no conv layer is chosen)
    rows = []
    for layer in layers:
        if not layer.is_conv:
            continue
        for pass_, plan in layer_plans(layer, precision, sm_count, backend=backend).items():
            if plan.choice is None:
                continue
            rows.append(dict(layer=layer.name, pass_=pass_, **plan.choice.row(),
                             ok=gpu_plan.meets_thresholds(plan.choice)))
    return rows


def format_rows(rows: list[dict]) -> str:
    head = (f"{'layer':24s} {'pass':11s} {'tile':15s} {'split':>5s} {'blocks':>7s} "
            f"{'waves':>6s} {'fill':>6s} {'MACs':>6s} {'model us':>9s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['layer']:24s} {r['pass_']:11s} {r['tile']:15s} {r['splits']:5d} "
                     f"{r['blocks']:7d} {r['waves']:6.2f} {r['fill']:6.3f} {r['mac_ratio']:6.3f} "
                     f"{r['model_us']:9.1f}{'' if r['ok'] else '  below the thresholds'}")
    return "\n".join(lines)
