"""Run PyTorch on every case of ``oracle.cases`` and write the golden files.

PyTorch runs on the CPU in float64 with deterministic algorithms, under autograd:
the forward output, max-pool indices and every gradient (input, weight, bias)
for the case's upstream gradient ``grad_out``. A float32 case stores float32
inputs and the float64 answer *for those float32 inputs*, rounded to float32: the
exact answer for the given inputs, whatever the precision of the code under test.

Random inputs come from numpy's generator seeded per case, so they do not depend
on the torch version; only the results do.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as TF

from oracle import cases as case_defs
from oracle.golden import (GOLDEN_DIR, PRINTED_PREFIX, Case, compare_cases, golden_paths,
                           load_case, make_case, save_case)

DTYPES = {"float32": np.float32, "float64": np.float64}


# --------------------------------------------------------------------------- inputs
def _draw(rng: np.random.Generator, shape, kind: str) -> np.ndarray:
    shape = tuple(shape)
    if kind == "distinct":
        size = math.prod(shape)
        # a random permutation of a quarter-step grid: distinct, exact in float32
        return ((rng.permutation(size) - size / 2) * 0.25).reshape(shape)
    if kind == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if kind == "nan_ties":
        x = rng.integers(0, 3, shape).astype(np.float64)  # few values: ties
        x[rng.random(shape) < 0.15] = np.nan  # windows with two NaNs and more
        x[rng.random(shape) < 0.1] = -np.inf
        return x
    if kind == "normal":
        return rng.standard_normal(shape)
    raise ValueError(f"unknown input kind {kind!r}")


def build_inputs(defn: dict) -> tuple[dict[str, np.ndarray], np.random.Generator]:
    """The case's input arrays (input, weight, bias) in its dtype, and the generator to
    draw its upstream gradient from next."""
    dtype = DTYPES[defn["dtype"]]
    rng = np.random.default_rng(defn["seed"])
    explicit = defn.get("arrays", {})
    shapes = defn.get("shapes", {})
    arrays = {}
    for name in ("input", "weight", "bias"):
        if name in explicit:
            arrays[name] = np.asarray(explicit[name], dtype=np.float64).astype(dtype)
        elif name in shapes:
            kind = defn["kind"] if name == "input" else "normal"
            arrays[name] = _draw(rng, shapes[name], kind).astype(dtype)
    return arrays, rng


# --------------------------------------------------------------------------- PyTorch
def _tup(value):
    """JSON lists back to tuples (PyTorch's own argument style)."""
    return tuple(_tup(v) for v in value) if isinstance(value, list) else value


def _explicit_padding(padding, kernel, dilation, ndim) -> list[tuple[int, int]]:
    """(before, after) per spatial axis; "same" puts an even kernel's extra element after."""
    dilation = (dilation,) * ndim if isinstance(dilation, int) else tuple(dilation)
    if padding == "valid":
        return [(0, 0)] * ndim
    if padding == "same":
        pairs = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            pairs.append((total // 2, total - total // 2))
        return pairs
    padding = (padding,) * ndim if isinstance(padding, int) else tuple(padding)
    return [(p, p) for p in padding]


def _conv_torch(ndim, p, x, w, b):
    stride, padding = _tup(p.get("stride", 1)), _tup(p.get("padding", 0))
    dilation, groups = _tup(p.get("dilation", 1)), p.get("groups", 1)
    mode = p.get("padding_mode", "zeros")
    if p.get("flip", False):  # true convolution: correlation with the flipped kernel
        w = w.flip(tuple(range(2, 2 + ndim)))
    if mode != "zeros":       # as nn.Conv*d does: pad in that mode, then convolve unpadded
        pairs = _explicit_padding(padding, w.shape[2:], dilation, ndim)
        flat = [v for pair in reversed(pairs) for v in pair]  # last axis first
        x = TF.pad(x, flat, mode=mode)
        padding = 0
    conv = TF.conv1d if ndim == 1 else TF.conv2d
    return conv(x, w, b, stride, padding, dilation, groups)


def _avg_pool1d_torch(p, x):
    if p.get("divisor_override") is None:
        return TF.avg_pool1d(x, _tup(p["kernel_size"]), _tup(p.get("stride")),
                             _tup(p.get("padding", 0)), p.get("ceil_mode", False),
                             p.get("count_include_pad", True))
    # torch's avg_pool1d has no divisor_override: pool a height-1 image
    one = lambda v: v[0] if isinstance(v, list) else v  # noqa: E731
    k = one(p["kernel_size"])
    s = k if p.get("stride") is None else one(p["stride"])
    y = TF.avg_pool2d(x[:, :, None, :], (1, k), (1, s), (0, one(p.get("padding", 0))),
                      p.get("ceil_mode", False), p.get("count_include_pad", True),
                      p["divisor_override"])
    return y[:, :, 0, :]


def torch_forward(op: str, p: dict, x, w=None, b=None):
    """(output, indices or None) of ``op`` in PyTorch, ``p`` as gpuconv's keyword args."""
    if op in ("conv1d", "conv2d"):
        return _conv_torch(int(op[4]), p, x, w, b), None
    if op in ("conv_transpose1d", "conv_transpose2d"):
        fn = TF.conv_transpose1d if op.endswith("1d") else TF.conv_transpose2d
        return fn(x, w, b, _tup(p.get("stride", 1)), _tup(p.get("padding", 0)),
                  _tup(p.get("output_padding", 0)), p.get("groups", 1),
                  _tup(p.get("dilation", 1))), None
    if op in ("max_pool1d", "max_pool2d"):
        fn = TF.max_pool1d if op.endswith("1d") else TF.max_pool2d
        return fn(x, _tup(p["kernel_size"]), _tup(p.get("stride")), _tup(p.get("padding", 0)),
                  _tup(p.get("dilation", 1)), p.get("ceil_mode", False), return_indices=True)
    if op == "avg_pool1d":
        return _avg_pool1d_torch(p, x), None
    if op == "avg_pool2d":
        return TF.avg_pool2d(x, _tup(p["kernel_size"]), _tup(p.get("stride")),
                             _tup(p.get("padding", 0)), p.get("ceil_mode", False),
                             p.get("count_include_pad", True), p.get("divisor_override")), None
    if op == "adaptive_avg_pool1d":
        return TF.adaptive_avg_pool1d(x, _tup(p["output_size"])), None
    if op == "adaptive_avg_pool2d":
        return TF.adaptive_avg_pool2d(x, _tup(p["output_size"])), None
    if op == "adaptive_max_pool1d":
        return TF.adaptive_max_pool1d(x, _tup(p["output_size"]), return_indices=True)
    if op == "adaptive_max_pool2d":
        return TF.adaptive_max_pool2d(x, _tup(p["output_size"]), return_indices=True)
    if op == "global_avg_pool2d":
        return TF.adaptive_avg_pool2d(x, 1), None
    if op == "global_max_pool2d":
        return TF.adaptive_max_pool2d(x, 1, return_indices=True)
    if op in ("lp_pool1d", "lp_pool2d"):
        fn = TF.lp_pool1d if op.endswith("1d") else TF.lp_pool2d
        return fn(x, p["norm_type"], _tup(p["kernel_size"]), _tup(p.get("stride")),
                  p.get("ceil_mode", False)), None
    raise ValueError(f"unknown op {op!r}")


# --------------------------------------------------------------------------- max-pool index check
def _axis_windows(op: str, p: dict, n: int, n_out: int, axis: int, ndim: int) -> list[list[int]]:
    """Input positions of each window along one axis (in window order, in bounds only)."""
    if op.startswith("global"):
        return [list(range(n))]
    if op.startswith("adaptive"):
        return [list(range((i * n) // n_out, -(-((i + 1) * n) // n_out))) for i in range(n_out)]

    def get(key, default):
        v = p.get(key, default)
        v = default if v is None else v
        return v[axis] if isinstance(v, (list, tuple)) else v
    k = get("kernel_size", None)
    s, pad, d = get("stride", k), get("padding", 0), get("dilation", 1)
    return [[o * s - pad + d * j for j in range(k) if 0 <= o * s - pad + d * j < n]
            for o in range(n_out)]


def first_max_indices(op: str, p: dict, x: np.ndarray, out_spatial) -> np.ndarray:
    """Brute force: the flat index of the first maximum of each window, row-major order, or
    of its last NaN where it holds NaNs (PyTorch's rule: a NaN beats every number)."""
    ndim = x.ndim - 2
    spatial = x.shape[2:]
    wins = [_axis_windows(op, p, n, o, a, ndim)
            for a, (n, o) in enumerate(zip(spatial, out_spatial))]
    idx = np.zeros(x.shape[:2] + tuple(out_spatial), np.int64)
    for pos in np.ndindex(*out_spatial):
        cells = [()]
        for a, o in enumerate(pos):
            cells = [c + (i,) for c in cells for i in wins[a][o]]
        flat = [int(np.ravel_multi_index(c, spatial)) for c in cells]
        for nc in np.ndindex(*x.shape[:2]):
            plane = x[nc].ravel()
            values = plane[flat]
            nans = np.flatnonzero(np.isnan(values))  # else argmax: the first maximum
            idx[nc + pos] = flat[int(nans[-1])] if nans.size else flat[int(np.argmax(values))]
    return idx


# --------------------------------------------------------------------------- one case
def _deterministic() -> None:
    """``torch.use_deterministic_algorithms(True)``, for eager CPU ops.

    The public function also imports ``torch._inductor`` (2 s) to configure
    ``torch.compile``, which the oracle never uses; the eager switch underneath is
    called directly when it exists (torch is pinned), the public one otherwise."""
    switch = getattr(torch._C, "_set_deterministic_algorithms", None)
    if switch is None:
        torch.use_deterministic_algorithms(True)
    else:
        switch(True)
    assert torch.are_deterministic_algorithms_enabled()


def build_case(defn: dict) -> Case:
    """Run PyTorch on one expanded case definition; returns the golden Case."""
    _deterministic()
    warnings.filterwarnings("ignore", message="Using padding='same'", category=UserWarning)
    dtype = DTYPES[defn["dtype"]]
    arrays, rng = build_inputs(defn)
    op, params = defn["op"], defn["params"]
    t = {k: torch.from_numpy(v.astype(np.float64)).requires_grad_(True)
         for k, v in arrays.items()}
    with torch.enable_grad():
        out, indices = torch_forward(op, params, t["input"], t.get("weight"), t.get("bias"))
        g = defn["grad_out"]
        if isinstance(g, str):
            if g != "random":
                raise ValueError(f"{defn['name']}: grad_out must be 'random' or an array")
            grad_out = rng.standard_normal(tuple(out.shape)).astype(dtype)
        else:
            grad_out = np.asarray(g, np.float64).astype(dtype)
            if grad_out.shape != tuple(out.shape):
                raise ValueError(f"{defn['name']}: grad_out shape {grad_out.shape} != output "
                                 f"shape {tuple(out.shape)}")
        out.backward(torch.from_numpy(grad_out.astype(np.float64)))
    result = dict(arrays)
    result["grad_out"] = grad_out
    result["output"] = out.detach().numpy().astype(dtype)
    if indices is not None:
        result["indices"] = indices.numpy().astype(np.int64)
        brute = first_max_indices(op, params, arrays["input"], tuple(out.shape[2:]))
        if not np.array_equal(brute, result["indices"]):
            raise AssertionError(f"{defn['name']}: torch's max indices are not the first "
                                 f"maximum in row-major window order (or its last NaN)")
    for name, grad_name in (("input", "grad_input"), ("weight", "grad_weight"),
                            ("bias", "grad_bias")):
        if name in t:
            result[grad_name] = t[name].grad.numpy().astype(dtype)
    for name, printed in defn.get("printed", {}).items():
        result[PRINTED_PREFIX + name] = np.asarray(printed, np.float64)
    meta: dict[str, Any] = {
        "torch_version": torch.__version__,
        "seed": defn["seed"],
        "note": defn.get("note", ""),
        "kind": defn["kind"] if "shapes" in defn else "explicit",
        "grad_out": defn["grad_out"] if isinstance(defn["grad_out"], str) else "explicit",
        "base": defn["base"],
    }
    for key in ("printed_tol", "printed_disagreements", "printed_shapes", "same_as"):
        if key in defn:
            meta[key] = defn[key]
    case = make_case(defn["name"], op, params, defn["dtype"], result, meta)
    _check_printed(case)
    return case


def _check_printed(case: Case) -> None:
    """The reconstruction must reproduce every printed number (except the documented
    disagreements, which must really disagree)."""
    tol = case.meta.get("printed_tol", {"rtol": 0.0, "atol": 0.0})
    disagreements = case.meta.get("printed_disagreements", [])
    for name, printed in case.printed().items():
        # the slides print float32 values in decimal: compare in the case's dtype
        printed = printed.astype(case.dtype).astype(np.float64)
        got = case.arrays[name].astype(np.float64)
        mask = np.isfinite(printed)
        for d in disagreements:
            if d["array"] == name:
                i = tuple(d["index"])
                mask[i] = False
                if abs(got[i] - d["computed"]) > tol["atol"] + tol["rtol"] * abs(d["computed"]) \
                        or abs(got[i] - printed[i]) <= tol["atol"] + tol["rtol"] * abs(printed[i]):
                    raise AssertionError(f"{case.name}: documented disagreement at {name}{i} "
                                         f"no longer holds (got {got[i]!r})")
        bad = np.abs(got - printed) > tol["atol"] + tol["rtol"] * np.abs(printed)
        bad &= mask
        if bad.any():
            i = tuple(int(v) for v in np.argwhere(bad)[0])
            raise AssertionError(f"{case.name}: {name}{i} computes {got[i]!r} but the slides "
                                 f"print {printed[i]!r}")
    for name, shape in case.meta.get("printed_shapes", {}).items():
        if list(case.arrays[name].shape) != shape:
            raise AssertionError(f"{case.name}: {name} has shape {case.arrays[name].shape}, "
                                 f"the slides print {shape}")


# --------------------------------------------------------------------------- all cases
def build_all() -> list[Case]:
    """Every golden case, computed now (sorted by name)."""
    built = sorted((build_case(d) for d in case_defs.expanded_cases()), key=lambda c: c.name)
    by_name = {c.name: c for c in built}
    for case in built:
        for name, (other, other_name) in case.meta.get("same_as", {}).items():
            a, b = case.arrays[name], by_name[other].arrays[other_name]
            scale = float(np.max(np.abs(b)))
            if a.shape != b.shape or np.max(np.abs(a - b)) > 4 * np.finfo(a.dtype).eps * scale:
                raise AssertionError(f"{case.name}: {name} should equal {other}'s {other_name}")
    return built


def write_all(directory: Path | str = GOLDEN_DIR) -> tuple[list[Path], list[Path]]:
    """Write every golden file under ``directory``; delete files of cases that no longer
    exist. Returns (written, deleted)."""
    directory = Path(directory)
    built = build_all()
    names = {c.name for c in built}
    deleted = [p for p in golden_paths(directory) if p.stem not in names]
    for p in deleted:
        p.unlink()
    written = [save_case(c, directory) for c in built]
    return written, deleted


def check(directory: Path | str = GOLDEN_DIR) -> tuple[list[str], list[str]]:
    """Compare freshly computed cases with the files under ``directory``.

    Returns (problems, notes): problems are differences that make the files stale;
    notes are informational (a different torch version produced them)."""
    directory = Path(directory)
    problems, notes = [], []
    built = {c.name: c for c in build_all()}
    on_disk = {p.stem: p for p in golden_paths(directory)}
    for name in sorted(set(built) - set(on_disk)):
        problems.append(f"{name}: missing golden file")
    for name in sorted(set(on_disk) - set(built)):
        problems.append(f"{name}: stale golden file (no such case)")
    for name in sorted(set(built) & set(on_disk)):
        try:
            stored = load_case(on_disk[name])
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        problems += [f"{name}: {d}" for d in compare_cases(stored, built[name])]
        if stored.meta.get("torch_version") != built[name].meta.get("torch_version"):
            notes.append(f"{name}: made with torch {stored.meta.get('torch_version')}, "
                         f"this is torch {built[name].meta.get('torch_version')}")
    return problems, notes
