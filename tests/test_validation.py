"""Every bad-input rule of the public ops: the exception type, a message that names
the offending argument, and no deep error (IndexError, AttributeError, a backend
traceback) leaking out.

Each case starts from a valid call of one op (``_VALID``) and overrides some of its
arguments. The rules are checked before any backend runs, so most of this file
needs no backend at all.
"""

from __future__ import annotations

import math
import os
import traceback

import numpy as np
import pytest

import gpuconv
import gpuconv.backends
import gpuconv.functional as F
import gpuconv.kernels
from gpuconv import BackendUnavailableError
from gpuconv.backends import unavailable_reason


def _arr(*shape, dtype=np.float64, seed=0, positive=False):
    a = np.random.default_rng(seed + sum(shape)).standard_normal(shape)
    return (np.abs(a) + 0.5 if positive else a).astype(dtype)


def _sp(nd, n):
    return (n,) * nd


def _idx(*shape):
    return np.zeros(shape, dtype=np.int64)


# --------------------------------------------------------------------------- valid calls
# name -> (function, factory of keyword arguments that make a valid call)
def _valid_calls():
    calls = {}
    for nd in (1, 2):
        s = lambda n, nd=nd: _sp(nd, n)  # noqa: E731
        d = f"{nd}d"
        # conv: x (2, 4, 5..), w (6, 2, 3..), groups 2, padding 1 -> out (2, 6, 5..)
        conv = lambda s=s: dict(input=_arr(2, 4, *s(5)), weight=_arr(6, 2, *s(3)),  # noqa: E731
                                bias=_arr(6), stride=1, padding=1, dilation=1, groups=2)
        calls[f"conv{d}"] = (getattr(F, f"conv{d}"), conv)
        calls[f"conv{d}_backward"] = (
            getattr(F, f"conv{d}_backward"),
            lambda s=s, conv=conv: {**{k: v for k, v in conv().items() if k != "bias"},
                                    "grad_out": _arr(2, 6, *s(5))})
        # transposed: x (2, 4, 3..), w (4, 3, 3..), groups 2, stride 2, padding 1,
        # output_padding 1 -> out (2, 6, 6..)
        convt = lambda s=s: dict(input=_arr(2, 4, *s(3)), weight=_arr(4, 3, *s(3)),  # noqa: E731
                                 bias=_arr(6), stride=2, padding=1, output_padding=1, groups=2,
                                 dilation=1)
        calls[f"conv_transpose{d}"] = (getattr(F, f"conv_transpose{d}"), convt)
        calls[f"conv_transpose{d}_backward"] = (
            getattr(F, f"conv_transpose{d}_backward"),
            lambda s=s, convt=convt: {**{k: v for k, v in convt().items() if k != "bias"},
                                      "grad_out": _arr(2, 6, *s(6))})
        # max / avg pooling: x (2, 3, 6..), kernel 3, stride 2, padding 1 -> out (2, 3, 3..)
        calls[f"max_pool{d}"] = (getattr(F, f"max_pool{d}"), lambda s=s: dict(
            input=_arr(2, 3, *s(6)), kernel_size=3, stride=2, padding=1, dilation=1))
        calls[f"max_pool{d}_backward"] = (getattr(F, f"max_pool{d}_backward"), lambda s=s: dict(
            grad_out=_arr(2, 3, *s(3)), input=_arr(2, 3, *s(6)), indices=_idx(2, 3, *s(3)),
            kernel_size=3, stride=2, padding=1, dilation=1))
        calls[f"avg_pool{d}"] = (getattr(F, f"avg_pool{d}"), lambda s=s: dict(
            input=_arr(2, 3, *s(6)), kernel_size=3, stride=2, padding=1, divisor_override=None))
        calls[f"avg_pool{d}_backward"] = (getattr(F, f"avg_pool{d}_backward"), lambda s=s: dict(
            grad_out=_arr(2, 3, *s(3)), input=_arr(2, 3, *s(6)), kernel_size=3, stride=2,
            padding=1, divisor_override=None))
        # lp pooling: kernel 2, stride 2 -> out (2, 3, 3..)
        calls[f"lp_pool{d}"] = (getattr(F, f"lp_pool{d}"), lambda s=s: dict(
            input=_arr(2, 3, *s(6), positive=True), norm_type=2, kernel_size=2, stride=2))
        calls[f"lp_pool{d}_backward"] = (getattr(F, f"lp_pool{d}_backward"), lambda s=s: dict(
            grad_out=_arr(2, 3, *s(3)), input=_arr(2, 3, *s(6), positive=True), norm_type=2,
            kernel_size=2, stride=2))
        # adaptive: x (2, 3, 6..) -> out (2, 3, 4..)
        calls[f"adaptive_avg_pool{d}"] = (getattr(F, f"adaptive_avg_pool{d}"), lambda s=s: dict(
            input=_arr(2, 3, *s(6)), output_size=4))
        calls[f"adaptive_avg_pool{d}_backward"] = (
            getattr(F, f"adaptive_avg_pool{d}_backward"),
            lambda s=s: dict(grad_out=_arr(2, 3, *s(4)), input=_arr(2, 3, *s(6)), output_size=4))
        calls[f"adaptive_max_pool{d}"] = (getattr(F, f"adaptive_max_pool{d}"), lambda s=s: dict(
            input=_arr(2, 3, *s(6)), output_size=4))
        calls[f"adaptive_max_pool{d}_backward"] = (
            getattr(F, f"adaptive_max_pool{d}_backward"),
            lambda s=s: dict(grad_out=_arr(2, 3, *s(4)), input=_arr(2, 3, *s(6)),
                             indices=_idx(2, 3, *s(4)), output_size=4))
    calls["global_avg_pool2d"] = (F.global_avg_pool2d, lambda: dict(input=_arr(2, 3, 5, 5)))
    calls["global_avg_pool2d_backward"] = (F.global_avg_pool2d_backward, lambda: dict(
        grad_out=_arr(2, 3, 1, 1), input=_arr(2, 3, 5, 5)))
    calls["global_max_pool2d"] = (F.global_max_pool2d, lambda: dict(input=_arr(2, 3, 5, 5)))
    calls["global_max_pool2d_backward"] = (F.global_max_pool2d_backward, lambda: dict(
        grad_out=_arr(2, 3, 1, 1), input=_arr(2, 3, 5, 5), indices=_idx(2, 3, 1, 1)))
    return calls


_VALID = _valid_calls()


def test_every_public_op_has_a_valid_call():
    assert set(_VALID) == set(F.__all__)


def _ndim(op: str) -> int:
    return 1 if "1d" in op else 2


# --------------------------------------------------------------------------- the rule table
def _c(op, overrides, exc, name, why):
    """One case: ``op`` called with its valid arguments updated by ``overrides`` (values may
    be callables of the valid arguments) raises ``exc`` whose message contains ``name``."""
    return pytest.param(op, overrides, exc, name, id=f"{op}-{why}")


def _cases():
    cases = []
    for nd in (1, 2):
        d = f"{nd}d"
        s = lambda n, nd=nd: _sp(nd, n)  # noqa: E731
        small = s(2)
        # ------------------------------------------------------- conv forward and backward
        for op in (f"conv{d}", f"conv{d}_backward", f"conv_transpose{d}",
                   f"conv_transpose{d}_backward"):
            cases += [
                _c(op, dict(precision="fp16"), ValueError, "precision", "precision-unknown"),
                _c(op, dict(precision=None), ValueError, "precision", "precision-none"),
                # the NumPy backend computes in strict IEEE only
                _c(op, dict(precision="tf32"), ValueError, "precision", "precision-not-offered"),
            ]
        for op in (f"conv{d}", f"conv{d}_backward"):
            cases += [
                _c(op, dict(input=lambda a: a["input"][0, 0]), ValueError, "input", "input-ndim-low"),
                _c(op, dict(input=lambda a: a["input"][None]), ValueError, "input",
                   "input-ndim-high"),
                _c(op, dict(input=lambda a: a["input"].tolist()), TypeError, "input", "input-list"),
                _c(op, dict(input=1.5), TypeError, "input", "input-scalar"),
                _c(op, dict(input=None), TypeError, "input", "input-none"),
                _c(op, dict(input=lambda a: a["input"].astype(np.int64)), TypeError, "input",
                   "input-int"),
                _c(op, dict(input=lambda a: a["input"].astype(np.float16)), TypeError, "input",
                   "input-float16"),
                _c(op, dict(input=lambda a: a["input"].astype(bool)), TypeError, "input",
                   "input-bool"),
                _c(op, dict(input=lambda a: a["input"][:, :0]), ValueError, "input",
                   "input-no-channels"),
                _c(op, dict(weight=lambda a: a["weight"][0]), ValueError, "weight", "weight-ndim"),
                _c(op, dict(weight=lambda a: a["weight"].tolist()), TypeError, "weight",
                   "weight-list"),
                _c(op, dict(weight=lambda a: a["weight"].astype(np.int32)), TypeError, "weight",
                   "weight-int"),
                _c(op, dict(weight=lambda a: a["weight"].astype(np.float32)), TypeError, "weight",
                   "dtype-mismatch-weight"),
                _c(op, dict(input=lambda a: a["input"].astype(np.float32)), TypeError, "weight",
                   "dtype-mismatch-input-float32-weight-float64"),
                _c(op, dict(weight=lambda a: a["weight"][:0]), ValueError, "weight",
                   "weight-no-out-channels"),
                _c(op, dict(weight=_arr(6, 3, *s(3))), ValueError, "groups",
                   "channels-dont-match-groups"),
                # too few input channels per group, not too many: the rule is an equality
                _c(op, dict(weight=_arr(6, 1, *s(3))), ValueError, "groups",
                   "weight-in-channels-fewer-than-per-group"),
                _c(op, dict(groups=4), ValueError, "groups", "channels-dont-match-groups-4"),
                _c(op, dict(weight=_arr(5, 2, *s(3))), ValueError, "groups",
                   "out-channels-not-divisible-by-groups"),
                _c(op, dict(groups=0), ValueError, "groups", "groups-zero"),
                _c(op, dict(groups=-2), ValueError, "groups", "groups-negative"),
                _c(op, dict(groups=2.0), ValueError, "groups", "groups-float"),
                _c(op, dict(input=_arr(2, 4, *small), padding=0), ValueError, "input",
                   "kernel-larger-than-input"),
                _c(op, dict(input=_arr(2, 4, *s(1)), weight=_arr(6, 2, *s(4)), padding=1),
                   ValueError, "input", "kernel-larger-than-padded-input"),
                _c(op, dict(dilation=4), ValueError, "input", "dilated-kernel-larger-than-input"),
                _c(op, dict(stride=0), ValueError, "stride", "stride-zero"),
                _c(op, dict(stride=-1), ValueError, "stride", "stride-negative"),
                _c(op, dict(stride=(1,) * (nd + 1)), TypeError, "stride", "stride-wrong-length"),
                _c(op, dict(stride=1.0), TypeError, "stride", "stride-float"),
                _c(op, dict(dilation=0), ValueError, "dilation", "dilation-zero"),
                _c(op, dict(dilation=-2), ValueError, "dilation", "dilation-negative"),
                _c(op, dict(padding=-1), ValueError, "padding", "padding-negative"),
                _c(op, dict(padding="same", stride=2), ValueError, "padding",
                   "same-padding-with-stride"),
                _c(op, dict(padding="full"), ValueError, "padding", "unknown-padding-string"),
                _c(op, dict(padding_mode="mirror"), ValueError, "padding_mode",
                   "unknown-padding-mode"),
                _c(op, dict(padding_mode="zero"), ValueError, "padding_mode",
                   "unknown-padding-mode-zero"),
                _c(op, dict(padding_mode=np.array(["zeros", "zeros"])), ValueError,
                   "padding_mode", "padding-mode-array"),
                _c(op, dict(input=_arr(2, 4, *s(3)), padding=3, padding_mode="reflect"),
                   ValueError, "padding", "reflect-padding-equals-input-size"),
                _c(op, dict(input=_arr(2, 4, *s(3)), padding=4, padding_mode="reflect"),
                   ValueError, "padding", "reflect-padding-exceeds-input-size"),
                _c(op, dict(input=_arr(2, 4, *small), padding=3, padding_mode="circular"),
                   ValueError, "padding", "circular-padding-exceeds-input-size"),
            ]
        cases += [
            _c(f"conv{d}", dict(bias=lambda a: a["bias"][None]), ValueError, "bias", "bias-ndim"),
            _c(f"conv{d}", dict(bias=_arr(5)), ValueError, "bias", "bias-wrong-length"),
            _c(f"conv{d}", dict(bias=lambda a: a["bias"].tolist()), TypeError, "bias",
               "bias-list"),
            _c(f"conv{d}", dict(bias=2.0), TypeError, "bias", "bias-scalar"),
            _c(f"conv{d}", dict(bias=lambda a: a["bias"].astype(np.int64)), TypeError, "bias",
               "bias-int"),
            _c(f"conv{d}", dict(bias=lambda a: a["bias"].astype(np.float32)), TypeError, "bias",
               "bias-dtype-mismatch"),
            # float16 everywhere: the dtype rule itself, not the dtypes' agreement, refuses it
            _c(f"conv{d}", dict(input=lambda a: a["input"].astype(np.float16),
                                weight=lambda a: a["weight"].astype(np.float16),
                                bias=lambda a: a["bias"].astype(np.float16)), TypeError, "input",
               "all-float16"),
        ]
        op = f"conv{d}_backward"
        cases += [
            _c(op, dict(grad_out=_arr(2, 6, *s(4))), ValueError, "grad_out",
               "grad_out-wrong-spatial"),
            _c(op, dict(grad_out=_arr(2, 5, *s(5))), ValueError, "grad_out",
               "grad_out-wrong-channels"),
            _c(op, dict(grad_out=_arr(1, 6, *s(5))), ValueError, "grad_out",
               "grad_out-wrong-batch"),
            _c(op, dict(grad_out=_arr(2, 6)), ValueError, "grad_out", "grad_out-ndim"),
            _c(op, dict(grad_out=lambda a: a["grad_out"].tolist()), TypeError, "grad_out",
               "grad_out-list"),
            _c(op, dict(grad_out=lambda a: a["grad_out"].astype(np.float32)), TypeError,
               "grad_out", "grad_out-dtype-mismatch"),
            _c(op, dict(grad_out=lambda a: a["grad_out"].astype(np.int64)), TypeError,
               "grad_out", "grad_out-int"),
            _c(op, dict(output_mask=(True, False)), ValueError, "output_mask",
               "output_mask-length"),
        ]
        # ------------------------------------------------------- transposed conv
        for op in (f"conv_transpose{d}", f"conv_transpose{d}_backward"):
            cases += [
                _c(op, dict(input=lambda a: a["input"][0, 0]), ValueError, "input", "input-ndim"),
                _c(op, dict(input=lambda a: a["input"].tolist()), TypeError, "input", "input-list"),
                _c(op, dict(input=3), TypeError, "input", "input-scalar"),
                _c(op, dict(input=lambda a: a["input"].astype(np.int64)), TypeError, "input",
                   "input-int"),
                _c(op, dict(weight=lambda a: a["weight"][None]), ValueError, "weight",
                   "weight-ndim"),
                _c(op, dict(weight=lambda a: a["weight"].astype(np.float32)), TypeError, "weight",
                   "dtype-mismatch"),
                _c(op, dict(weight=_arr(5, 3, *s(3))), ValueError, "weight",
                   "weight-in-channels-mismatch"),
                _c(op, dict(weight=_arr(3, 3, *s(3))), ValueError, "weight",
                   "weight-in-channels-fewer-than-input"),
                _c(op, dict(input=_arr(2, 3, *s(3)), weight=_arr(3, 3, *s(3))), ValueError,
                   "groups", "channels-not-divisible-by-groups"),
                _c(op, dict(groups=0), ValueError, "groups", "groups-zero"),
                _c(op, dict(output_padding=2), ValueError, "output_padding",
                   "output_padding-equals-stride"),
                _c(op, dict(stride=1, output_padding=1), ValueError, "output_padding",
                   "output_padding-not-smaller-than-stride-or-dilation"),
                _c(op, dict(stride=2, dilation=3, output_padding=3), ValueError, "output_padding",
                   "output_padding-equals-dilation"),
                _c(op, dict(output_padding=-1), ValueError, "output_padding",
                   "output_padding-negative"),
                _c(op, dict(padding="same"), ValueError, "padding", "string-padding"),
                _c(op, dict(padding=-1), ValueError, "padding", "padding-negative"),
                _c(op, dict(input=_arr(2, 4, *s(1)), weight=_arr(4, 3, *s(1)), stride=1,
                            padding=1, output_padding=0), ValueError, "padding",
                   "non-positive-output"),
                _c(op, dict(stride=0), ValueError, "stride", "stride-zero"),
                _c(op, dict(dilation=0), ValueError, "dilation", "dilation-zero"),
            ]
        cases += [
            _c(f"conv_transpose{d}", dict(bias=_arr(4)), ValueError, "bias", "bias-wrong-length"),
            _c(f"conv_transpose{d}", dict(bias=lambda a: a["bias"][:, None]), ValueError, "bias",
               "bias-ndim"),
            _c(f"conv_transpose{d}", dict(bias=lambda a: a["bias"].tolist()), TypeError, "bias",
               "bias-list"),
            _c(f"conv_transpose{d}_backward", dict(grad_out=_arr(2, 6, *s(5))), ValueError,
               "grad_out", "grad_out-wrong-spatial"),
            _c(f"conv_transpose{d}_backward", dict(grad_out=_arr(2, 4, *s(6))), ValueError,
               "grad_out", "grad_out-wrong-channels"),
            _c(f"conv_transpose{d}_backward", dict(grad_out=_arr(2, 6, 6, 6, 6)), ValueError,
               "grad_out", "grad_out-ndim"),
            _c(f"conv_transpose{d}_backward", dict(grad_out=lambda a: a["grad_out"].astype(
                np.float32)), TypeError, "grad_out", "grad_out-dtype"),
            _c(f"conv_transpose{d}_backward", dict(output_mask=(1, 1, 1, 1)), ValueError,
               "output_mask", "output_mask-length"),
        ]
        # ------------------------------------------------------- max / avg / lp pooling
        for op in (f"max_pool{d}", f"max_pool{d}_backward", f"avg_pool{d}",
                   f"avg_pool{d}_backward", f"lp_pool{d}", f"lp_pool{d}_backward"):
            lp = op.startswith("lp")
            cases += [
                _c(op, dict(input=lambda a: a["input"][0, 0]), ValueError, "input", "input-ndim"),
                _c(op, dict(input=lambda a: a["input"][None]), ValueError, "input",
                   "input-ndim-high"),
                _c(op, dict(input=lambda a: a["input"].tolist()), TypeError, "input", "input-list"),
                _c(op, dict(input=0.5), TypeError, "input", "input-scalar"),
                _c(op, dict(input=lambda a: a["input"].astype(np.int32)), TypeError, "input",
                   "input-int"),
                _c(op, dict(input=lambda a: a["input"].astype(np.float16)), TypeError, "input",
                   "input-float16"),
                _c(op, dict(input=lambda a: a["input"][:, :, :0]), ValueError, "input",
                   "input-empty-spatial"),
                _c(op, dict(kernel_size=0), ValueError, "kernel_size", "kernel_size-zero"),
                _c(op, dict(kernel_size=-3), ValueError, "kernel_size", "kernel_size-negative"),
                _c(op, dict(kernel_size=2.5), TypeError, "kernel_size", "kernel_size-float"),
                _c(op, dict(kernel_size=(2,) * (nd + 1)), TypeError, "kernel_size",
                   "kernel_size-wrong-length"),
                _c(op, dict(stride=0), ValueError, "stride", "stride-zero"),
                _c(op, dict(stride=-2), ValueError, "stride", "stride-negative"),
                _c(op, dict(input=_arr(2, 3, *small, positive=True), kernel_size=5, stride=1,
                            **({} if lp else dict(padding=0))),
                   ValueError, "input", "window-larger-than-input"),
            ]
            if not lp:
                cases += [
                    _c(op, dict(padding=-1), ValueError, "padding", "padding-negative"),
                    _c(op, dict(padding=2), ValueError, "padding", "padding-over-half-kernel"),
                    _c(op, dict(kernel_size=1, padding=1), ValueError, "padding",
                       "padding-over-half-kernel-1"),
                ]
        for op in (f"max_pool{d}", f"max_pool{d}_backward"):
            cases += [
                _c(op, dict(dilation=0), ValueError, "dilation", "dilation-zero"),
                _c(op, dict(input=_arr(2, 3, *s(4)), dilation=3, padding=0), ValueError, "input",
                   "dilated-window-larger-than-input"),
                _c(op, dict(input=_arr(2, 3, *s(1)), kernel_size=2, dilation=2, padding=1),
                   ValueError, "padding", "window-entirely-in-padding"),
            ]
        for op in (f"avg_pool{d}", f"avg_pool{d}_backward"):
            for bad in (0, -1, 1.5, True, "2"):
                cases.append(_c(op, dict(divisor_override=bad), ValueError, "divisor_override",
                                f"divisor_override-{bad!r}"))
        for op in (f"lp_pool{d}", f"lp_pool{d}_backward"):
            for bad in (0, -1, -0.5, math.nan, math.inf, True, "2", None):
                cases.append(_c(op, dict(norm_type=bad), ValueError, "norm_type",
                                f"norm_type-{bad!r}"))
        # ------------------------------------------------------- adaptive pooling
        for op in (f"adaptive_avg_pool{d}", f"adaptive_avg_pool{d}_backward",
                   f"adaptive_max_pool{d}", f"adaptive_max_pool{d}_backward"):
            cases += [
                _c(op, dict(input=lambda a: a["input"][0, 0]), ValueError, "input", "input-ndim"),
                _c(op, dict(input=lambda a: a["input"].tolist()), TypeError, "input", "input-list"),
                _c(op, dict(input=2.0), TypeError, "input", "input-scalar"),
                _c(op, dict(input=lambda a: a["input"].astype(np.int16)), TypeError, "input",
                   "input-int"),
                _c(op, dict(input=lambda a: a["input"][:, :, :0]), ValueError, "input",
                   "input-empty-spatial"),
                _c(op, dict(output_size=0), ValueError, "output_size", "output_size-zero"),
                _c(op, dict(output_size=-2), ValueError, "output_size", "output_size-negative"),
                _c(op, dict(output_size=1.5), TypeError, "output_size", "output_size-float"),
                _c(op, dict(output_size="4"), TypeError, "output_size", "output_size-string"),
                _c(op, dict(output_size=(4,) * (nd + 1)), TypeError, "output_size",
                   "output_size-wrong-length"),
            ]
            if nd == 2:
                cases += [_c(op, dict(output_size=(4, 0)), ValueError, "output_size",
                             "output_size-one-zero"),
                          _c(op, dict(output_size=(None, -1)), ValueError, "output_size",
                             "output_size-none-and-negative")]
        # ------------------------------------------------------- pooling grad_out
        for op, good in ((f"max_pool{d}_backward", 3), (f"avg_pool{d}_backward", 3),
                         (f"lp_pool{d}_backward", 3), (f"adaptive_avg_pool{d}_backward", 4),
                         (f"adaptive_max_pool{d}_backward", 4)):
            cases += [
                _c(op, dict(grad_out=_arr(2, 3, *s(good + 1))), ValueError, "grad_out",
                   "grad_out-wrong-spatial"),
                _c(op, dict(grad_out=_arr(2, 4, *s(good))), ValueError, "grad_out",
                   "grad_out-wrong-channels"),
                _c(op, dict(grad_out=_arr(2, 3, *s(good))[0]), ValueError, "grad_out",
                   "grad_out-ndim"),
                _c(op, dict(grad_out=lambda a: a["grad_out"].tolist()), TypeError, "grad_out",
                   "grad_out-list"),
                _c(op, dict(grad_out=lambda a: a["grad_out"].astype(np.float32)), TypeError,
                   "grad_out", "grad_out-dtype-mismatch"),
            ]
        # ------------------------------------------------------- max-pool indices
        for op, good in ((f"max_pool{d}_backward", 3), (f"adaptive_max_pool{d}_backward", 4)):
            plane = 6 ** nd
            cases += _index_cases(op, (2, 3) + s(good), plane)
    # ----------------------------------------------------------- global pooling (2-D only)
    for op in ("global_avg_pool2d", "global_avg_pool2d_backward", "global_max_pool2d",
               "global_max_pool2d_backward"):
        cases += [
            _c(op, dict(input=lambda a: a["input"][0, 0]), ValueError, "input", "input-ndim"),
            _c(op, dict(input=lambda a: a["input"].tolist()), TypeError, "input", "input-list"),
            _c(op, dict(input=lambda a: a["input"].astype(np.int64)), TypeError, "input",
               "input-int"),
        ]
    for op in ("global_avg_pool2d_backward", "global_max_pool2d_backward"):
        cases += [
            _c(op, dict(grad_out=_arr(2, 3, 5, 5)), ValueError, "grad_out", "grad_out-not-1x1"),
            _c(op, dict(grad_out=_arr(2, 3, 1)), ValueError, "grad_out", "grad_out-ndim"),
            _c(op, dict(grad_out=lambda a: a["grad_out"].astype(np.float32)), TypeError,
               "grad_out", "grad_out-dtype"),
        ]
    cases += _index_cases("global_max_pool2d_backward", (2, 3, 1, 1), 25)
    return cases


def _index_cases(op, shape, plane):
    bad_high = np.zeros(shape, np.int64)
    bad_high.flat[-1] = plane
    bad_low = np.zeros(shape, np.int64)
    bad_low.flat[0] = -1
    return [
        _c(op, dict(indices=np.zeros(shape, np.int32)), TypeError, "indices", "indices-int32"),
        _c(op, dict(indices=np.zeros(shape, np.float64)), TypeError, "indices", "indices-float"),
        _c(op, dict(indices=np.zeros(shape, np.uint64)), TypeError, "indices", "indices-uint64"),
        _c(op, dict(indices=np.zeros(shape, np.int64).tolist()), TypeError, "indices",
           "indices-list"),
        _c(op, dict(indices=None), TypeError, "indices", "indices-none"),
        _c(op, dict(indices=np.zeros(shape[:-1] + (shape[-1] + 1,), np.int64)), ValueError,
           "indices", "indices-wrong-shape"),
        _c(op, dict(indices=np.zeros(shape[1:], np.int64)), ValueError, "indices",
           "indices-wrong-ndim"),
        _c(op, dict(indices=bad_high), ValueError, "indices", "indices-too-large"),
        _c(op, dict(indices=bad_low), ValueError, "indices", "indices-negative"),
        # check_indices=False spares the value range only
        _c(op, dict(indices=np.zeros(shape, np.int32), check_indices=False), TypeError,
           "indices", "indices-int32-unchecked"),
    ]


_CASES = _cases()
_PACKAGE_DIR = os.path.dirname(os.path.abspath(gpuconv.__file__))
# Where backend code lives (every backend module and its kernels; not the registry, whose
# BackendUnavailableError is the one error a backend name may raise).
_BACKEND_DIRS = tuple(os.path.dirname(os.path.abspath(m.__file__))
                      for m in (gpuconv.backends, gpuconv.kernels))


def _backend_frames(error: BaseException) -> list[str]:
    """The files of the traceback's frames that run backend code."""
    files = [os.path.abspath(f.filename) for f in traceback.extract_tb(error.__traceback__)]
    return [f for f in files if f.startswith(_BACKEND_DIRS) and os.path.basename(f) != "__init__.py"]
_DEEP = (IndexError, AttributeError, KeyError, ZeroDivisionError, AssertionError, RuntimeError,
         OverflowError, NameError, UnboundLocalError)


def _call(op, overrides, extra=None):
    fn, factory = _VALID[op]
    kwargs = factory()
    for key, value in overrides.items():
        kwargs[key] = value(kwargs) if callable(value) else value
    kwargs.update(extra or {})
    return fn(**kwargs)


def _assert_raised_in_validation(info, exc, name):
    error = info.value
    assert type(error) is exc, f"expected exactly {exc.__name__}, got {type(error).__name__}"
    assert not isinstance(error, _DEEP)
    message = str(error)
    assert name in message, f"message does not name {name!r}: {message}"
    assert len(message) > len(name) + 10  # says the rule too, not just the name
    frames = [frame.filename for frame in traceback.extract_tb(error.__traceback__)]
    assert not _backend_frames(error), f"raised inside a backend: {_backend_frames(error)}"
    assert os.path.dirname(os.path.abspath(frames[-1])).startswith(_PACKAGE_DIR), \
        f"raised outside gpuconv's own checks: {frames[-1]}"


def test_every_public_op_has_rule_cases():
    ops = {p.values[0] for p in _CASES}
    assert ops == set(F.__all__)


@pytest.mark.parametrize("op, overrides, exc, name", _CASES)
def test_bad_input_is_rejected(op, overrides, exc, name):
    with pytest.raises(exc) as info:
        _call(op, overrides)
    _assert_raised_in_validation(info, exc, name)


# --------------------------------------------------------------------------- backends
@pytest.mark.parametrize("op", sorted(_VALID))
@pytest.mark.parametrize("backend", ["nonsense", "NumPy", "torch", ""])
def test_unknown_backend_name(op, backend):
    with pytest.raises(ValueError) as info:
        _call(op, {}, dict(backend=backend))
    _assert_raised_in_validation(info, ValueError, "backend")
    assert repr(backend) in str(info.value)
    for known in gpuconv.BACKENDS:
        assert known in str(info.value)  # the message lists the valid names


@pytest.mark.parametrize("op", sorted(_VALID))
@pytest.mark.parametrize("backend", [3, ["numpy"], b"numpy"])
def test_backend_of_wrong_type(op, backend):
    with pytest.raises(TypeError) as info:
        _call(op, {}, dict(backend=backend))
    _assert_raised_in_validation(info, TypeError, "backend")


_REASONS = ("not installed", "no CUDA device", "cannot be imported")


@pytest.mark.parametrize("op", sorted(_VALID))
@pytest.mark.parametrize("backend", ["cupy", "numba"])
def test_unavailable_backend_says_why(op, backend):
    reason = unavailable_reason(backend)
    if reason is None:
        pytest.skip(f"backend {backend!r} can run here")
    with pytest.raises(BackendUnavailableError) as info:
        _call(op, {}, dict(backend=backend))
    message = str(info.value)
    assert repr(backend) in message and "unavailable" in message
    assert reason in message
    assert any(r in reason for r in _REASONS), reason
    assert isinstance(info.value, RuntimeError)  # documented base class
    assert not _backend_frames(info.value), "raised inside a backend"


def test_backend_frames_are_found():
    """The raised-inside-a-backend check sees a frame of any backend module."""
    from gpuconv.backends import reference
    from gpuconv.shapes import ConvSpec
    with pytest.raises(ValueError) as info:  # an unchecked 3-channel weight on a 2-channel input
        reference.conv2d(np.ones((1, 2, 4, 4)), np.ones((1, 3, 2, 2)), None,
                         ConvSpec.make(2, (2, 2)))
    assert [os.path.basename(f) for f in _backend_frames(info.value)] == ["reference.py"]


def test_backend_unavailable_error_is_exported():
    assert gpuconv.BackendUnavailableError is BackendUnavailableError
    assert issubclass(BackendUnavailableError, RuntimeError)


def test_unavailable_reason_of_unknown_backend():
    with pytest.raises(ValueError, match="backend"):
        unavailable_reason("tpu")
    assert unavailable_reason("numpy") is None


def test_numba_cuda_without_numpy_2_5_support_is_a_clear_reason(monkeypatch):
    """numba-cuda 0.30 fails to compile any kernel under NumPy 2.5 (np.row_stack is gone):
    the backend is then reported unavailable with the remedy, not failing at first launch."""
    import importlib

    from gpuconv import backends
    real_import = importlib.import_module

    def numba_cuda_0_30_under_numpy_2_5(name, *args):
        if name == "numba.cuda.np.arrayobj":
            raise AttributeError("module 'numpy' has no attribute 'row_stack'")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", numba_cuda_0_30_under_numpy_2_5)
    reason = backends._numba_compiler_problem()
    assert "row_stack" in reason and "numpy<2.5" in reason


def test_validation_comes_before_backend_resolution():
    """A bad argument is reported even when the backend is bad too: rules first."""
    with pytest.raises(ValueError, match="stride"):
        _call("conv2d", dict(stride=0), dict(backend="nonsense"))
    with pytest.raises(ValueError, match="padding"):
        _call("max_pool1d", dict(padding=2), dict(backend="cupy"))


# --------------------------------------------------------------------------- garbage sweep
_GARBAGE_ARRAYS = [None, [1.0, 2.0], 3.0, "x", object(), np.float64(1.0), np.zeros((), np.float64),
                   np.zeros(3, np.float64), np.zeros((2, 2), np.int64),
                   np.zeros((1, 1, 1, 1, 1), np.float64), np.zeros((2, 3, 0, 0), np.float64),
                   np.zeros((1, 1, 1), np.complex128)]
_GARBAGE_PARAMS = ["x", 1.5, -1, object(), True, (1, 1, 1), [], {}, math.nan]
_ARRAY_ARGS = ("input", "weight", "bias", "grad_out", "indices")
_PARAM_ARGS = ("stride", "padding", "dilation", "groups", "kernel_size", "output_padding",
               "output_size", "norm_type", "divisor_override")


def _garbage_cases():
    cases = []
    for op, (_, factory) in sorted(_VALID.items()):
        args = factory()
        for key in args:
            if key in _ARRAY_ARGS:
                for i, value in enumerate(_GARBAGE_ARRAYS):
                    if key == "bias" and value is None:
                        continue  # no bias is valid
                    cases.append(pytest.param(op, key, value, id=f"{op}-{key}-{i}"))
            elif key in _PARAM_ARGS:
                for i, value in enumerate(_GARBAGE_PARAMS):
                    if key == "stride" and value == [] and "pool" in op:
                        continue  # PyTorch: an empty stride means stride = kernel_size
                    if key == "norm_type" and value == 1.5:
                        continue  # any positive finite power is valid
                    cases.append(pytest.param(op, key, value, id=f"{op}-{key}-{i}"))
    return cases


@pytest.mark.parametrize("op, key, value", _garbage_cases())
def test_garbage_argument_gives_a_named_error(op, key, value):
    """Any nonsense in any argument ends in a TypeError/ValueError naming an argument,
    never in an IndexError, AttributeError or a backend traceback."""
    with pytest.raises((TypeError, ValueError)) as info:
        _call(op, {key: value})
    error = info.value
    assert type(error) in (TypeError, ValueError), type(error)
    message = str(error)
    named = [a for a in _ARRAY_ARGS + _PARAM_ARGS if a in message]
    assert named, f"{type(error).__name__} names no argument: {message}"
    assert not _backend_frames(error), f"raised inside a backend: {_backend_frames(error)}"


@pytest.mark.parametrize("name", ["numpy_backend", "cupy_backend", "numba_backend", "reference"])
def test_every_backend_module_implements_the_kernel_list(name):
    import importlib
    from gpuconv.backends import KERNELS
    module = importlib.import_module(f"gpuconv.backends.{name}")
    missing = [k for k in KERNELS if not callable(getattr(module, k, None))]
    assert not missing, f"{name} backend lacks {missing}"
    assert "ieee" in module.PRECISIONS


# (call, the argument of the wrong rank, whether its message suggests x[None]): only an array
# that has a batch axis (input, grad_out, indices) can lack one; a weight one axis short is
# no unbatched array
_X44, _W33 = np.ones((2, 1, 4, 4)), np.ones((1, 1, 3, 3))
_RANK_HINTS = {
    "grad_out without its batch axis": (
        lambda: F.conv2d_backward(np.ones((1, 2, 2)), _X44, _W33), "grad_out", True),
    "pooling grad_out without its batch axis": (
        lambda: F.avg_pool2d_backward(np.ones((1, 2, 2)), _X44, 2), "grad_out", True),
    "weight one axis short": (lambda: F.conv2d(_X44, np.ones((1, 3, 3))), "weight", False),
    "transposed weight one axis short": (
        lambda: F.conv_transpose2d(_X44, np.ones((1, 3, 3))), "weight", False),
    "bias of two axes": (lambda: F.conv2d(_X44, _W33, np.ones((1, 1))), "bias", False),
}


@pytest.mark.parametrize("case", list(_RANK_HINTS))
def test_only_an_array_with_a_batch_axis_is_told_to_add_one(case):
    call, name, hinted = _RANK_HINTS[case]
    with pytest.raises(ValueError, match=f"^{name} must be \\d-D") as info:
        call()
    assert ("(add a batch axis with x[None])" in str(info.value)) == hinted, str(info.value)


# (call, the whole message): the shape rules' boundaries, and the sizes a message names
_X34, _W22 = np.ones((1, 1, 3, 4)), np.ones((1, 1, 2, 2))
_BOUNDARY_ERRORS = {
    "reflect pad after = size": (
        lambda: F.conv2d(_X34, _W22, padding=((0, 3), (0, 0)), padding_mode="reflect"),
        "padding_mode='reflect' needs padding smaller than the input size, got padding "
        "((0, 3), (0, 0)) for input (3, 4)"),
    "circular pad after = size + 1": (
        lambda: F.conv2d(_X34, _W22, padding=((0, 4), (0, 0)), padding_mode="circular"),
        "padding_mode='circular' needs padding at most the input size, got padding "
        "((0, 4), (0, 0)) for input (3, 4)"),
    "transposed output of size 0": (
        lambda: F.conv_transpose2d(np.ones((1, 1, 1, 1)), _W22, padding=1),
        "transposed convolution output size (0, 0) must be positive: padding ((1, 1), (1, 1)) "
        "is too large for input (1, 1)"),
    "dilated kernel past the padded input": (
        lambda: F.conv2d(_X34, np.ones((1, 1, 3, 2)), padding=((0, 0), (0, 1)), dilation=2),
        "kernel size (5, 3) (after dilation) does not fit: it is larger than the padded input "
        "(3, 5)"),
    "dilated window past the padded input": (
        lambda: F.max_pool2d(np.ones((1, 1, 2, 3)), (3, 2), dilation=(2, 3), padding=1),
        "pooling window (5, 4) (after dilation) does not fit: it is larger than the padded "
        "input (4, 5)"),
}


@pytest.mark.parametrize("name", list(_BOUNDARY_ERRORS))
def test_shape_rules_at_their_boundaries_name_the_sizes(name):
    call, message = _BOUNDARY_ERRORS[name]
    with pytest.raises(ValueError) as info:
        call()
    assert str(info.value) == message


def test_circular_padding_of_the_whole_input_is_allowed():
    """Circular padding wraps up to the input size (PyTorch's rule): padding 3 of 3 rows."""
    y = F.conv2d(_X34, _W22, padding=((0, 3), (0, 0)), padding_mode="circular")
    assert y.shape == (1, 1, 5, 3) and (y == 4).all()
