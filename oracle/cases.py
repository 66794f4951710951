"""The golden cases, as plain data (no torch here).

A case definition is a dict:

    name      base name; the golden file is ``<name>_f32.npz`` / ``<name>_f64.npz``
    op        the ``gpuconv.functional`` forward op
    params    its keyword arguments (tuples become lists in the file)
    dtypes    the float dtypes to store it in (the grid: both)
    seed      seeds numpy's generator for every random array of the case
    shapes    shapes of the random inputs: ``input`` and, for convolutions,
              ``weight`` and optionally ``bias``
    kind      how random inputs are drawn: ``normal``; ``distinct`` (a random
              permutation, for max pooling: a unique argmax); ``positive``
              (uniform(0.5, 2), for Lp pooling with odd p); ``nan_ties`` (three
              values, NaNs and -infs: max pooling's rules for ties and NaNs)
    arrays    explicit input arrays (the slides' examples), overriding ``shapes``
    grad_out  ``"random"`` (standard normal: never all ones) or an explicit array
    note      free text: how a slide example was reconstructed and where the
              printed numbers disagree with the maths
    printed   slide cases: ``{array name: the printed numbers, NaN where none}``
              in gpuconv's layout; ``printed_tol`` their tolerance;
    printed_disagreements  ``[{"array", "index", "printed", "computed", "why"}]``:
              printed numbers the maths contradicts (the golden keeps the maths)
    printed_shapes         slide cases that print only shapes
    same_as   ``{array: [other case, its array]}``: the two must be equal (the
              transposed convolution's forward is the convolution's backward)

Slide reconstructions are explained in ``oracle/SLIDES.md``.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from gpuconv import examples

F32, F64 = "float32", "float64"
BOTH = (F32, F64)
DTYPE_SUFFIX = {F32: "f32", F64: "f64"}
NAN = float("nan")


def _seed(name: str) -> int:
    """A stable per-case seed (adding a case never reseeds the others)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _case(name: str, op: str, params: dict | None = None, *, dtypes=BOTH, kind: str = "normal",
          grad_out: Any = "random", note: str = "", **fields) -> dict:
    case = {"name": name, "op": op, "params": dict(params or {}), "dtypes": tuple(dtypes),
            "seed": _seed(name), "kind": kind, "grad_out": grad_out, "note": note}
    case.update(fields)
    return case


def _conv(name, ndim, n, c_in, size, c_out, kernel, groups=1, bias=True, **params):
    kernel = (kernel,) * ndim if isinstance(kernel, int) else tuple(kernel)
    size = (size,) * ndim if isinstance(size, int) else tuple(size)
    shapes = {"input": (n, c_in) + size, "weight": (c_out, c_in // groups) + kernel}
    if bias:
        shapes["bias"] = (c_out,)
    if groups != 1:
        params["groups"] = groups
    return _case(name, f"conv{ndim}d", params, shapes=shapes)


def _conv_t(name, ndim, n, c_in, size, c_out, kernel, groups=1, bias=True, **params):
    kernel = (kernel,) * ndim if isinstance(kernel, int) else tuple(kernel)
    size = (size,) * ndim if isinstance(size, int) else tuple(size)
    shapes = {"input": (n, c_in) + size, "weight": (c_in, c_out // groups) + kernel}
    if bias:
        shapes["bias"] = (c_out,)
    if groups != 1:
        params["groups"] = groups
    return _case(name, f"conv_transpose{ndim}d", params, shapes=shapes)


def _pool(name, op, input_shape, kind="normal", **params):
    return _case(name, op, params, shapes={"input": tuple(input_shape)}, kind=kind)


# --------------------------------------------------------------------------- the systematic grid
def grid_cases() -> list[dict]:
    c = []
    # conv1d
    c += [
        _conv("conv1d_basic", 1, 2, 3, 11, 4, 3),
        _conv("conv1d_stride_gt_kernel", 1, 2, 2, 10, 3, 2, stride=3),
        _conv("conv1d_dilation_padding", 1, 2, 2, 9, 3, 3, dilation=2, padding=2),
        _conv("conv1d_same_even_kernel", 1, 2, 2, 7, 3, 4, padding="same"),
        _conv("conv1d_same_dilated_even", 1, 1, 2, 8, 2, 2, padding="same", dilation=3),
        _conv("conv1d_valid", 1, 2, 3, 6, 2, 5, padding="valid"),
        _conv("conv1d_reflect", 1, 2, 2, 6, 3, 3, padding=2, padding_mode="reflect"),
        _conv("conv1d_replicate", 1, 2, 2, 5, 3, 3, padding=2, padding_mode="replicate",
              stride=2),
        _conv("conv1d_circular", 1, 2, 2, 5, 3, 4, padding=3, padding_mode="circular"),
        _conv("conv1d_same_even_reflect", 1, 1, 2, 6, 2, 4, padding="same",
              padding_mode="reflect"),
        _conv("conv1d_groups", 1, 2, 4, 7, 6, 3, groups=2, padding=1),
        _conv("conv1d_depthwise", 1, 2, 3, 7, 3, 3, groups=3),
        _conv("conv1d_depthwise_multiplier", 1, 2, 3, 7, 6, 2, groups=3, stride=2),
        _conv("conv1d_flip", 1, 2, 2, 8, 3, 3, flip=True, padding=1, stride=2),
        _conv("conv1d_no_bias", 1, 2, 3, 6, 2, 3, bias=False, padding=1),
    ]
    # conv2d
    c += [
        _conv("conv2d_odd", 2, 2, 3, (7, 9), 4, 3),
        _conv("conv2d_1xN", 2, 2, 2, (5, 8), 3, (1, 5), padding=(0, 2)),
        _conv("conv2d_Nx1", 2, 2, 2, (8, 5), 3, (5, 1), stride=(2, 1)),
        _conv("conv2d_stride_gt_kernel", 2, 2, 2, (9, 10), 3, 2, stride=(3, 4)),
        _conv("conv2d_dilation_2_1", 2, 2, 2, (9, 7), 3, 3, dilation=(2, 1), padding=(2, 1)),
        _conv("conv2d_asym_padding", 2, 2, 2, (6, 5), 3, 3, padding=(0, 2), stride=(2, 1)),
        _conv("conv2d_same_even_kernel", 2, 2, 2, (6, 7), 3, (2, 4), padding="same"),
        _conv("conv2d_same_even_dilated", 2, 1, 2, (7, 8), 2, (4, 3), padding="same",
              dilation=(1, 2)),
        _conv("conv2d_valid", 2, 2, 2, (6, 5), 3, (3, 2), padding="valid"),
        _conv("conv2d_reflect", 2, 2, 2, (5, 6), 3, 3, padding=(1, 2), padding_mode="reflect"),
        _conv("conv2d_replicate", 2, 2, 2, (5, 6), 3, 3, padding=(2, 1),
              padding_mode="replicate", stride=2),
        _conv("conv2d_circular", 2, 2, 2, (4, 5), 3, (3, 4), padding=(2, 3),
              padding_mode="circular"),
        _conv("conv2d_same_even_replicate", 2, 1, 2, (5, 6), 2, (2, 4), padding="same",
              padding_mode="replicate"),
        _conv("conv2d_same_circular_dilated", 2, 1, 2, (6, 6), 2, 3, padding="same",
              padding_mode="circular", dilation=(2, 1)),
        _conv("conv2d_groups", 2, 2, 4, (5, 6), 6, 3, groups=2, padding=1),
        _conv("conv2d_depthwise", 2, 2, 3, (6, 5), 3, 3, groups=3, padding=(1, 0)),
        _conv("conv2d_depthwise_multiplier", 2, 2, 3, (6, 7), 6, (2, 3), groups=3,
              stride=(1, 2)),
        _conv("conv2d_flip", 2, 2, 2, (6, 7), 3, (2, 3), flip=True, stride=(1, 2), padding=1),
        _conv("conv2d_flip_groups_dilated", 2, 2, 4, (7, 7), 4, (3, 2), flip=True, groups=2,
              dilation=(1, 2)),
        _conv("conv2d_flip_reflect", 2, 1, 2, (5, 5), 2, 3, flip=True, padding=1,
              padding_mode="reflect"),
        _conv("conv2d_no_bias", 2, 2, 3, (5, 5), 2, 3, bias=False, stride=2, padding=1),
        # an empty batch: zero outputs and gradients, and a zero-length grad-weight reduction
        _conv("conv2d_empty_batch", 2, 0, 3, (5, 6), 4, 3, stride=2, padding=1,
              padding_mode="reflect"),
    ]
    # transposed convolutions
    c += [
        _conv_t("conv_transpose1d_basic", 1, 2, 3, 5, 2, 3, stride=2, padding=1),
        _conv_t("conv_transpose1d_output_padding_stride", 1, 2, 2, 4, 3, 3, stride=3, padding=1,
                output_padding=2),
        _conv_t("conv_transpose1d_output_padding_dilation", 1, 2, 2, 5, 2, 3, stride=1,
                dilation=2, output_padding=1),
        _conv_t("conv_transpose1d_groups", 1, 2, 4, 5, 6, 2, groups=2, stride=2),
        _conv_t("conv_transpose2d_basic", 2, 2, 3, (4, 5), 2, (3, 2), stride=(2, 1),
                padding=(1, 0)),
        _conv_t("conv_transpose2d_output_padding_stride", 2, 2, 2, (3, 4), 3, 3, stride=(2, 3),
                padding=(0, 1), output_padding=(1, 2)),
        _conv_t("conv_transpose2d_output_padding_dilation", 2, 1, 2, (4, 3), 2, (3, 2),
                stride=1, dilation=(2, 3), output_padding=(1, 2)),
        _conv_t("conv_transpose2d_groups", 2, 2, 4, (3, 4), 2, 3, groups=2, stride=2,
                bias=False),
        _conv_t("conv_transpose2d_dilation_padding", 2, 2, 2, (4, 4), 3, 3, stride=2,
                padding=(2, 1), dilation=(1, 2)),
        # 1x1 at stride 1: output_padding adds rows or columns no input reaches
        _conv_t("conv_transpose2d_1x1_output_padding", 2, 1, 4, (4, 5), 3, 1, dilation=2,
                output_padding=(1, 0)),
        _conv_t("conv_transpose2d_1x1_output_padding_groups", 2, 1, 4, (4, 5), 6, 1, groups=2,
                padding=1, dilation=(1, 3), output_padding=(0, 2)),
    ]
    # max pooling (distinct values: a unique argmax)
    d = "distinct"
    c += [
        _pool("max_pool1d_overlap", "max_pool1d", (2, 3, 9), d, kernel_size=3, stride=2),
        _pool("max_pool1d_padding_dilation", "max_pool1d", (2, 2, 8), d, kernel_size=3,
              stride=1, padding=1, dilation=2),
        _pool("max_pool1d_ceil_padding", "max_pool1d", (2, 2, 6), d, kernel_size=3, stride=2,
              padding=1, ceil_mode=True),
        _pool("max_pool1d_window_is_input", "max_pool1d", (2, 3, 5), d, kernel_size=5),
        # ceil_mode's extra window would start inside the right padding: PyTorch drops it
        _pool("max_pool1d_ceil_last_window_dropped", "max_pool1d", (1, 2, 5), d, kernel_size=2,
              stride=2, padding=1, ceil_mode=True),
        _pool("max_pool2d_basic", "max_pool2d", (2, 2, 5, 7), d, kernel_size=2, stride=2),
        _pool("max_pool2d_overlap_3x3_s2", "max_pool2d", (2, 2, 7, 9), d, kernel_size=3,
              stride=2),
        _pool("max_pool2d_padding_dilation", "max_pool2d", (2, 2, 7, 6), d, kernel_size=3,
              stride=(2, 1), padding=1, dilation=(2, 1)),
        _pool("max_pool2d_ceil_padding", "max_pool2d", (2, 2, 6, 8), d, kernel_size=3, stride=2,
              padding=1, ceil_mode=True),
        _pool("max_pool2d_ceil_no_padding", "max_pool2d", (1, 2, 5, 5), d, kernel_size=2,
              ceil_mode=True),
        _pool("max_pool2d_window_is_input", "max_pool2d", (2, 3, 4, 5), d, kernel_size=(4, 5)),
        _pool("max_pool2d_rect_stride_none", "max_pool2d", (1, 2, 6, 9), d, kernel_size=(2, 3),
              stride=None),
    ]
    # average pooling
    c += [
        _pool("avg_pool1d_pad_include", "avg_pool1d", (2, 2, 7), kernel_size=3, stride=2,
              padding=1, count_include_pad=True),
        _pool("avg_pool1d_pad_exclude", "avg_pool1d", (2, 2, 7), kernel_size=3, stride=2,
              padding=1, count_include_pad=False),
        _pool("avg_pool1d_ceil_include", "avg_pool1d", (2, 2, 6), kernel_size=3, stride=2,
              padding=1, ceil_mode=True, count_include_pad=True),
        _pool("avg_pool1d_ceil_exclude", "avg_pool1d", (2, 2, 6), kernel_size=3, stride=2,
              padding=1, ceil_mode=True, count_include_pad=False),
        _pool("avg_pool1d_divisor_override", "avg_pool1d", (2, 2, 8), kernel_size=4, stride=3,
              padding=2, ceil_mode=True, divisor_override=3),
        _pool("avg_pool2d_pad_include", "avg_pool2d", (2, 2, 7, 6), kernel_size=3, stride=2,
              padding=1, count_include_pad=True),
        _pool("avg_pool2d_pad_exclude", "avg_pool2d", (2, 2, 7, 6), kernel_size=3, stride=2,
              padding=1, count_include_pad=False),
        _pool("avg_pool2d_ceil_include", "avg_pool2d", (2, 2, 6, 8), kernel_size=3, stride=2,
              padding=1, ceil_mode=True, count_include_pad=True),
        _pool("avg_pool2d_ceil_exclude", "avg_pool2d", (2, 2, 6, 8), kernel_size=(3, 2),
              stride=2, padding=(1, 0), ceil_mode=True, count_include_pad=False),
        _pool("avg_pool2d_divisor_override", "avg_pool2d", (2, 2, 6, 7), kernel_size=(2, 3),
              stride=(2, 2), padding=(1, 1), divisor_override=5),
        _pool("avg_pool2d_stride_none", "avg_pool2d", (1, 3, 6, 6), kernel_size=2),
        _pool("avg_pool2d_ceil_last_window_dropped", "avg_pool2d", (1, 2, 5, 6), kernel_size=2,
              stride=2, padding=1, ceil_mode=True, count_include_pad=True),
        # the axes apart: each counts its own padding and steps by its own stride
        _pool("avg_pool2d_row_padding_include", "avg_pool2d", (2, 2, 7, 6), kernel_size=3,
              stride=2, padding=(1, 0)),
        _pool("avg_pool2d_column_padding_row_stride_ceil", "avg_pool2d", (2, 2, 8, 7),
              kernel_size=(2, 3), stride=(2, 1), padding=(0, 1), ceil_mode=True),
        _pool("avg_pool2d_row_padding_column_stride_exclude", "avg_pool2d", (2, 2, 6, 9),
              kernel_size=(3, 2), stride=(1, 2), padding=(1, 0), count_include_pad=False),
    ]
    # adaptive and global pooling
    c += [
        _pool("adaptive_avg_pool1d_7_to_3", "adaptive_avg_pool1d", (2, 2, 7), output_size=3),
        _pool("adaptive_avg_pool1d_5_to_4", "adaptive_avg_pool1d", (2, 2, 5), output_size=4),
        _pool("adaptive_avg_pool1d_4_to_6", "adaptive_avg_pool1d", (1, 2, 4), output_size=6),
        _pool("adaptive_avg_pool2d_7x5_to_3x4", "adaptive_avg_pool2d", (2, 2, 7, 5),
              output_size=(3, 4)),
        _pool("adaptive_avg_pool2d_none", "adaptive_avg_pool2d", (2, 2, 5, 7),
              output_size=(None, 3)),
        _pool("adaptive_avg_pool2d_int", "adaptive_avg_pool2d", (1, 2, 6, 6), output_size=4),
        _pool("adaptive_max_pool1d_7_to_3", "adaptive_max_pool1d", (2, 2, 7), d, output_size=3),
        _pool("adaptive_max_pool1d_5_to_4", "adaptive_max_pool1d", (2, 2, 5), d, output_size=4),
        _pool("adaptive_max_pool2d_7x5_to_3x4", "adaptive_max_pool2d", (2, 2, 7, 5), d,
              output_size=(3, 4)),
        _pool("adaptive_max_pool2d_none", "adaptive_max_pool2d", (2, 2, 5, 6), d,
              output_size=(4, None)),
        _pool("global_avg_pool2d", "global_avg_pool2d", (2, 3, 5, 6)),
        _pool("global_max_pool2d", "global_max_pool2d", (2, 3, 5, 6), d),
    ]
    # power-average pooling
    c += [
        _pool("lp_pool1d_p1", "lp_pool1d", (2, 2, 8), norm_type=1, kernel_size=3, stride=2),
        _pool("lp_pool1d_p2", "lp_pool1d", (2, 2, 8), norm_type=2, kernel_size=3),
        _pool("lp_pool1d_p3_ceil", "lp_pool1d", (2, 2, 8), "positive", norm_type=3,
              kernel_size=3, stride=2, ceil_mode=True),
        _pool("lp_pool2d_p1", "lp_pool2d", (2, 2, 6, 5), norm_type=1, kernel_size=2, stride=1),
        _pool("lp_pool2d_p2", "lp_pool2d", (2, 2, 6, 7), norm_type=2, kernel_size=(2, 3),
              stride=(2, 2)),
        _pool("lp_pool2d_p3", "lp_pool2d", (2, 2, 6, 6), "positive", norm_type=3,
              kernel_size=3, stride=1),
        _pool("lp_pool2d_p2_ceil", "lp_pool2d", (2, 2, 5, 7), norm_type=2, kernel_size=2,
              ceil_mode=True),
        _pool("lp_pool2d_p3_ceil", "lp_pool2d", (1, 2, 7, 5), "positive", norm_type=3,
              kernel_size=(3, 2), stride=2, ceil_mode=True),
    ]
    # max-pool ties: several equal values in a window, the first in row-major order wins
    ties_1d = np.array([[[1, 3, 3, 0, 3, 2, 2, 2, 1]], [[0, 0, 0, 0, 5, 5, 1, 5, 5]]], float)
    ties_2d = np.array([[[[1, 2, 2, 0, 2],
                          [2, 2, 1, 2, 2],
                          [0, 2, 2, 2, 1],
                          [2, 1, 0, 2, 2]],
                         [[4, 4, 4, 4, 4],
                          [4, 4, 4, 4, 4],
                          [4, 4, 4, 4, 4],
                          [4, 4, 4, 4, 4]]]], float)
    ties_note = ("ties: several equal maxima in a window; PyTorch CPU (and gpuconv) keep the "
                 "first maximum in row-major window order (the generator checks torch's "
                 "indices against a brute-force first-maximum search)")
    c += [
        _case("max_pool1d_ties", "max_pool1d", {"kernel_size": 3, "stride": 1, "padding": 1},
              kind="ties", arrays={"input": ties_1d}, note=ties_note),
        _case("max_pool2d_ties", "max_pool2d", {"kernel_size": 3, "stride": 1, "padding": 1},
              kind="ties", arrays={"input": ties_2d}, note=ties_note),
        _case("max_pool2d_ties_overlap", "max_pool2d", {"kernel_size": 2, "stride": 1},
              kind="ties", arrays={"input": ties_2d}, note=ties_note),
        _case("adaptive_max_pool2d_ties", "adaptive_max_pool2d", {"output_size": [3, 2]},
              kind="ties", arrays={"input": ties_2d}, note=ties_note),
        _case("global_max_pool2d_ties", "global_max_pool2d", {}, kind="ties",
              arrays={"input": ties_2d}, note=ties_note),
        # NaNs among ties: a NaN beats every number, the last NaN of a window wins
        _pool("max_pool2d_nan_ties_padding", "max_pool2d", (2, 2, 6, 7), "nan_ties",
              kernel_size=3, stride=2, padding=1),
        _pool("max_pool2d_nan_ties_dilated_ceil", "max_pool2d", (2, 2, 7, 8), "nan_ties",
              kernel_size=(2, 3), stride=(1, 2), dilation=(2, 1), ceil_mode=True),
    ]
    return c


# --------------------------------------------------------------------------- the slides' examples
def slide_two_channel() -> list[dict]:
    """(a) the 2x4x4 image, 2x2x2x2 weights, bias (0.1, 0.2) -> 2x3x3 (valid correlation)."""
    ex = examples.two_channel_example()
    printed = ex["printed_output"][None]
    note = ("Slides 'Image I = 2x4x4, W = 2x2x2x2 (nOutputPlane x nInputPlane x kH x kW), "
            "b = (0.1, 0.2), O = 2x3x3': valid 2-D correlation. All 18 printed outputs match "
            "the maths except O[1][1,1] (1-based; index (0,0,0,0) here): printed -3.1, but "
            "W[1,1]*I[1] = 2 and W[1,2]*I[2] = 1 give 2 + 1 + 0.1 = +3.1; the golden keeps "
            "+3.1. The slides print no gradient: grad_out is random.")
    return [_case("slide_a_two_channel", "conv2d", {}, dtypes=(F64,), note=note,
                  arrays={"input": ex["input"][None], "weight": ex["weight"],
                          "bias": ex["bias"]},
                  printed={"output": printed},
                  printed_tol={"rtol": 0.0, "atol": 1e-12},
                  printed_disagreements=[{
                      "array": "output", "index": [0, 0, 0, 0], "printed": -3.1,
                      "computed": 3.1,
                      "why": "sign typo on the slide: 1*1 + (-2)(-2) + (-2)2 + 1*1 = 2 from "
                             "channel 1, 3 - 2 = 1 from channel 2, plus bias 0.1"}])]


def slide_one_d() -> list[dict]:
    """(b), (c): I = 1 2 3 4, W = 1 2 3: correlation 14 20, true convolution 10 16;
    with dL/dO = 1 2: dL/dW = 5 8 11, dL/dI = 1 4 7 6."""
    ex = examples.one_d_example()
    arrays = {"input": ex["input"][None, None], "weight": ex["weight"][None, None]}
    corr_note = ("Slides 'Correlation' and 'Convolution - Backward': I = 1 2 3 4, W = 1 2 3, "
                 "O_i = sum_j I_{j+i-1} W_j = 14 20; upstream gradient LO = dL/dO = 1 2 (the "
                 "slides' own); dL/dW = Correlation(I, LO) = 5 8 11; dL/dI = "
                 "Correlation(W_pad, LO_flip) = Correlation(0 1 2 3 0, 2 1) = 1 4 7 6. The OCR "
                 "of the printed numbers is garbled ('O: 1 2 5', 'dL/dW: 1/2 3 4', "
                 "'W_pad: 1 2 3 1'); the values are those of the printed formulas.")
    conv_note = ("Slide 'True Convolution': O_i = sum_j I_{j+i-1} W_{Dim(W)-j+1} with "
                 "W^Flip = 3 2 1 gives 10 16 (gpuconv: conv1d(..., flip=True)). The slides "
                 "print no gradient for it: grad_out is random.")
    return [
        _case("slide_b_1d_correlation", "conv1d", {}, dtypes=(F64,), note=corr_note,
              arrays=arrays, grad_out=ex["grad_out"][None, None],
              printed={"output": ex["correlation"][None, None],
                       "grad_weight": ex["grad_weight"][None, None],
                       "grad_input": ex["grad_input"][None, None]},
              printed_tol={"rtol": 0.0, "atol": 1e-12}),
        _case("slide_b_1d_true_convolution", "conv1d", {"flip": True}, dtypes=(F64,),
              note=conv_note, arrays=arrays,
              printed={"output": ex["true_convolution"][None, None]},
              printed_tol={"rtol": 0.0, "atol": 1e-12}),
    ]


TF_CONV1D = {
    "n": [0.20350695, -0.31481498, -0.85656077, 0.5981919],
    "nextgrad": [-0.47567356, -2.3547919],
    "m": [-0.7662684, 0.2175143],
    "gradWeight": [0.6445209, 2.1667714, -1.0011742],
}


def tf_conv1d_weight() -> np.ndarray:
    """The minimum-norm kernel w (3 taps) with correlation(n, w) = the printed m (float32)."""
    n = np.array(TF_CONV1D["n"], np.float32).astype(np.float64)
    m = np.array(TF_CONV1D["m"], np.float32).astype(np.float64)
    a = np.stack([n[0:3], n[1:4]])
    return np.linalg.lstsq(a, m, rcond=None)[0].astype(np.float32)


def slide_tf_conv1d() -> list[dict]:
    """(d) TensorFlow Conv1D(1, 3, 1, 'VALID'), bias 0, over n (1, 4, 1) channels-last."""
    w = tf_conv1d_weight()
    note = ("Slide 'Convolution - Forward' (TensorFlow): n = tf.random_normal((1,4,1)) "
            "(channels-last; here NCL (1,1,4)), Conv1D(1, 3, 1, 'VALID') with bias 0, "
            "nextgrad = (-0.47567356, -2.3547919) used as dL/dm (the slides' own "
            "gradient). Printed: m = (-0.7662684, 0.2175143) and gradWeight = (0.6445209, "
            "2.1667714, -1.0011742) = correlation(n, nextgrad), which the maths reproduces "
            "to 1e-7. The kernel itself is NOT printed (a random Glorot init): its 3 taps "
            "satisfy only the 2 equations correlation(n, w) = m, so the golden uses the "
            f"minimum-norm solution w = {[round(float(v), 7) for v in w]} (float32); "
            "w + t*(0.9476, -0.1520, 0.2810) fits the printed m equally well. grad_input "
            "depends on that choice and is not printed.")
    return [_case("slide_d_tf_conv1d", "conv1d", {}, dtypes=(F32,), note=note,
                  arrays={"input": np.array(TF_CONV1D["n"])[None, None],
                          "weight": w.astype(np.float64)[None, None]},
                  grad_out=np.array(TF_CONV1D["nextgrad"])[None, None],
                  printed={"output": np.array(TF_CONV1D["m"])[None, None],
                           "grad_weight": np.array(TF_CONV1D["gradWeight"])[None, None]},
                  printed_tol={"rtol": 1e-6, "atol": 1e-7})]


# TF's Conv2D example. I is (1, 4, 4, 2) NHWC; the kernel list is read by TF as
# (kH, kW, in, out); both are converted to gpuconv's NCHW / (out, in, kH, kW).
TF_CONV2D_IMAGE_NHWC = [[[[1, -2], [2, 1], [-2, 3], [-1, 2]],
                         [[2, 2], [3, -2], [-3, 1], [-4, 2]],
                         [[3, 0], [-2, -2], [2, -1], [5, -2]],
                         [[0, 0], [1, -1], [3, 1], [0, 1]]]]
TF_CONV2D_KERNEL_HWIO = [[[[1, -2], [-2, 1]], [[1, 0], [0, 1]]],
                         [[[3, 1], [2, 2]], [[0, 0], [0, 4]]]]
TF_CONV2D_PRINTED_HWC = [[[17.1, -4.8], [3.1, 3.2], [-15.9, 16.2]],
                         [[10.1, -8.8], [-5.9, -16.8], [-4.9, 1.2]],
                         [[1.1, -11.8], [NAN, NAN], [NAN, NAN]]]


def slide_tf_conv2d() -> list[dict]:
    """(e) TensorFlow Conv2D(2, [2,2], [1,1], 'valid') with bias (0.1, 0.2), channels-last."""
    image = np.array(TF_CONV2D_IMAGE_NHWC, float).transpose(0, 3, 1, 2)      # NHWC -> NCHW
    kernel = np.array(TF_CONV2D_KERNEL_HWIO, float).transpose(3, 2, 0, 1)    # HWIO -> OIHW
    printed = np.array(TF_CONV2D_PRINTED_HWC).transpose(2, 0, 1)[None]       # HWC -> NCHW
    note = ("Slide TF Conv2D: I = tf.constant(...) of shape (1,4,4,2) NHWC, "
            "Conv2D(2, [2,2], [1,1], 'valid'), bias (0.1, 0.2), kernel_initializer = the "
            "same nested list as slide (a)'s weights, which TF reads as (kH, kW, in, out), "
            "so it is a different kernel from (a)'s. The OCR of the tf.constant line "
            "mangles the last image row ('[[0,0],[1,-1],[-4,2]]) [3,1],[0,1]]]]': 5 pixels "
            "for a row of 4); the image is slide (a)'s I typed channels-last as "
            "I_tf[0,h,w,c] = I_a[h//2][w, 2*(h%2)+c], which makes the last row "
            "[[0,0],[1,-1],[3,1],[0,1]] (the stray [-4,2] repeats row 2's last pixel). "
            "The printed I rows 1-3 and all 14 legible printed outputs (rows 1-2 and "
            "(1.1, -11.8)) match exactly; the rest of the printed output is cut off on the "
            "slide (the tail '...2]]]' fits the computed 2.2). Stored in gpuconv's layout: "
            "input NCHW, weight (out, in, kH, kW) = kernel_tf.transpose(3, 2, 0, 1). "
            "grad_out is random (no gradient printed).")
    return [_case("slide_e_tf_conv2d", "conv2d", {}, dtypes=(F32,), note=note,
                  arrays={"input": image, "weight": kernel, "bias": np.array([0.1, 0.2])},
                  printed={"output": printed},
                  printed_tol={"rtol": 1e-6, "atol": 1e-6})]


def slide_tf_16x16() -> list[dict]:
    """(f) a 16x16 single-channel image, eight 5x5 filters -> 8x12x12 (shapes only printed)."""
    note = ("Slide TF Conv2D(8, 5x5) on n = tf.random_normal((1,16,16,1)): only shapes are "
            "printed: n (1,16,16,1), m (1,12,12,8), kernel (5,5,1,8) (TF layouts). In "
            "gpuconv's layout: input (1,1,16,16), weight (8,1,5,5), bias (8,), output "
            "(1,8,12,12). Values are random.")
    return [_case("slide_f_16x16_eight_5x5", "conv2d", {}, dtypes=(F32,), note=note,
                  shapes={"input": (1, 1, 16, 16), "weight": (8, 1, 5, 5), "bias": (8,)},
                  printed_shapes={"input": [1, 1, 16, 16], "weight": [8, 1, 5, 5],
                                  "bias": [8], "output": [1, 8, 12, 12]})]


TF_DECONV_W = [[0.13429713, 1.9649408, 0.74939513],
               [0.6982393, 1.2397809, 1.4247327],
               [1.5534406, 0.1190145, 1.3256309]]
# r = conv(imgC) as printed: three of its four values (the fourth is cut off)
TF_DECONV_R_PRINTED = [[25.535583, 28.583742], [23.470192, NAN]]
# grad_input = conv_transpose(r, W, stride 2), printed twice (5x5, rows in order)
TF_DECONV_GRAD_INPUT = [[3.4293556, 50.17591, 22.974957, 56.16536, 21.420517],
                        [17.829948, 31.65853, 56.339676, 35.437576, 40.724194],
                        [42.819992, 49.156643, 98.61191, 43.924065, 53.345966],
                        [16.387812, 29.097897, 47.83826, 25.567505, 29.381691],
                        [36.45955, 2.7932932, 63.148792, 2.4543884, 27.337954]]


def _deconv_matrix(w: np.ndarray) -> np.ndarray:
    """(25, 4): the 5x5 transposed convolution (stride 2) of a 2x2 r with the 3x3 w."""
    cols = []
    for k in range(4):
        out = np.zeros((5, 5))
        i, j = divmod(k, 2)
        out[2 * i:2 * i + 3, 2 * j:2 * j + 3] += w
        cols.append(out.ravel())
    return np.stack(cols, axis=1)


def tf_deconv_r() -> np.ndarray:
    """r (2x2, float32): the three printed values, the fourth by least squares from the
    printed grad_input (which is conv_transpose(r, W))."""
    w = np.array(TF_DECONV_W, np.float32).astype(np.float64)
    a = _deconv_matrix(w)
    g = np.array(TF_DECONV_GRAD_INPUT, np.float32).astype(np.float64).ravel()
    known = np.array(TF_DECONV_R_PRINTED, np.float32).astype(np.float64).ravel()[:3]
    resid = g - a[:, :3] @ known
    r11 = float(a[:, 3] @ resid / (a[:, 3] @ a[:, 3]))
    return np.array([[known[0], known[1]], [known[2], r11]]).astype(np.float32)


def tf_deconv_image(seed: int) -> np.ndarray:
    """A 5x5 imgC in [0, 5] whose stride-2 valid correlation with W is r: a uniform(0, 5)
    draw moved by the least change onto those 4 linear constraints."""
    w = np.array(TF_DECONV_W, np.float32).astype(np.float64)
    a = _deconv_matrix(w).T                      # (4, 25): conv(imgC) = a @ imgC
    r = tf_deconv_r().astype(np.float64).ravel()
    rng = np.random.default_rng(seed)
    for _ in range(100):
        img = rng.uniform(0.0, 5.0, 25)
        img = img + a.T @ np.linalg.solve(a @ a.T, r - a @ img)
        if img.min() >= 0.0 and img.max() <= 5.0:
            return img.reshape(5, 5)
    raise RuntimeError("no imgC in [0, 5] found")


def slide_tf_deconv() -> list[dict]:
    """(g) conv 3x3 stride 2 over a 5x5 image, backward with gradOutput = r, and the
    transposed convolution of r, which equals that backward."""
    conv_name, deconv_name = "slide_g_conv2d_stride2_5x5", "slide_g_conv_transpose2d_stride2"
    w = np.array(TF_DECONV_W)[None, None]
    r = tf_deconv_r().astype(np.float64)
    img = tf_deconv_image(_seed(conv_name))
    grad_printed = np.array(TF_DECONV_GRAD_INPUT)[None, None]
    r_printed = np.array(TF_DECONV_R_PRINTED)[None, None]
    common = ("Slides 'Deconvolution' (TensorFlow): W = tf.random_uniform((3,3),0,2) "
              "printed; Conv2D(1, [3,3], [2,2], 'valid'), bias 0, over imgC = "
              "tf.random_uniform((1,5,5,1),0,5); r = conv(imgC) is 2x2 and r_1 = 0.5*r*r "
              "makes gradOutput = r; grad_input = conv:backward(imgC, r) is printed (5x5), "
              "and Conv2DTranspose(1, [3,3], [2,2], 'valid') with the same W applied to r "
              "prints the same 5x5 ('forward pass is same as backward pass of normal "
              "convolution'). imgC is not printed and r only partly (25.535583, 28.583742, "
              "23.470192, the 4th value cut off). Reconstruction: r[1,1] = "
              f"{float(r[1, 1]):.7g} by least squares from the 25 printed grad_input values "
              "(= conv_transpose(r, W), 25 equations; all 25 then match to 1e-7 relative, "
              "which confirms the row order read from the two-column OCR); imgC is a "
              "uniform(0,5) draw projected onto conv(imgC) = r (not the slide's, which is "
              "unknowable, but consistent with every printed number).")
    conv_case = _case(
        conv_name, "conv2d", {"stride": 2}, dtypes=(F32,), grad_out=r[None, None],
        note=common + " This case: the convolution, grad_out = r (its own output up to "
                      "float32 rounding: conv(imgC) = r holds in exact arithmetic).",
        arrays={"input": img[None, None], "weight": w},
        printed={"output": r_printed, "grad_input": grad_printed},
        printed_tol={"rtol": 2e-6, "atol": 1e-5})
    deconv_case = _case(
        deconv_name, "conv_transpose2d", {"stride": 2}, dtypes=(F32,),
        note=common + f" This case: the transposed convolution of r (its input equals "
                      f"{conv_name}'s grad_out), with a random grad_out for its backward.",
        arrays={"input": r[None, None], "weight": w},
        printed={"output": grad_printed},
        printed_tol={"rtol": 2e-6, "atol": 1e-5},
        same_as={"output": [conv_name + "_f32", "grad_input"],
                 "input": [conv_name + "_f32", "grad_out"]})
    return [conv_case, deconv_case]


TF_MAXPOOL_N = [[0.58009243, 1.1895669, 2.6777048, 0.15597591],
                [-0.94100916, -0.7437242, -1.0578039, -0.30651447],
                [0.53753567, 0.10521288, -0.43827865, -0.7727399],
                [-0.42974523, -1.669584, -0.92768306, -0.19861951]]
TF_MAXPOOL_M = [[1.1895669, 2.6777048], [0.53753567, -0.19861951]]
TF_MAXPOOL_GRAD = [[0, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]


def slide_max_pool() -> list[dict]:
    """(h) 4x4 -> 2x2 max pooling (kernel 2, stride 2) and its gradient routing."""
    note = ("Slide 'Pooling (Max Pooling) in Tensorflow': n = tf.random_normal((1,4,4,1)) "
            "printed as 16 values in two OCR columns; MaxPooling2D([2,2],[2,2],'valid'). "
            "Row order: the tensor prints 4 rows of 4 ([[0.58009243],[1.1895669],"
            "[2.6777048],[0.15597591]] first), which the printed m = [[1.1895669, "
            "2.6777048], [0.53753567, -0.19861951]] and gradInput (ones at (0,1), (0,2), "
            "(2,0), (3,3), with nextgrad = ones) confirm: each is the maximum of its 2x2 "
            "block. Every printed number matches.")
    arrays = {"input": np.array(TF_MAXPOOL_N)[None, None]}
    params = {"kernel_size": 2, "stride": 2}
    printed = {"output": np.array(TF_MAXPOOL_M)[None, None],
               "grad_input": np.array(TF_MAXPOOL_GRAD, float)[None, None]}
    tol = {"rtol": 0.0, "atol": 0.0}
    return [
        _case("slide_h_max_pool2d", "max_pool2d", params, dtypes=(F32,),
              note=note + " grad_out = ones (the slides' nextgrad).", arrays=arrays,
              grad_out=np.ones((1, 1, 2, 2)), printed=printed, printed_tol=tol),
        _case("slide_h_max_pool2d_random_grad", "max_pool2d", params, dtypes=(F32,),
              note=note + " This variant: a random grad_out, routed to the "
                                        "same maxima.",
              arrays=arrays, printed={"output": printed["output"]}, printed_tol=tol),
    ]


def slide_cases() -> list[dict]:
    return (slide_two_channel() + slide_one_d() + slide_tf_conv1d() + slide_tf_conv2d()
            + slide_tf_16x16() + slide_tf_deconv() + slide_max_pool())


# --------------------------------------------------------------------------- all of them
def case_definitions() -> list[dict]:
    """Every case definition (one per name, before the dtype expansion)."""
    defs = slide_cases() + grid_cases()
    names = [d["name"] for d in defs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"duplicate case names: {sorted(dup)}")
    return defs


def expanded_cases() -> list[dict]:
    """One definition per golden file: the case for one dtype, ``name`` with its suffix."""
    out = []
    for d in case_definitions():
        for dtype in d["dtypes"]:
            case = dict(d, dtype=dtype, base=d["name"],
                        name=f"{d['name']}_{DTYPE_SUFFIX[dtype]}")
            del case["dtypes"]
            out.append(case)
    return out
