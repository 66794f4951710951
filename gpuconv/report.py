"""Text reports: the output-size arithmetic with the numbers plugged in, arrays laid out
the way the slides print them, and what this machine can run.

``gpuconv.cli`` only parses arguments and prints what these functions return, so
everything here is importable and testable without Click. Nothing here imports torch.
"""

from __future__ import annotations

import importlib
import platform
import re
import sys
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

from gpuconv._checks import check_int
from gpuconv.shapes import ConvSpec, PoolSpec, ntuple, pool_windows_rounded

AXIS_NAMES = {1: ("L",), 2: ("H", "W")}

CONV_FORMULA = "out = floor((n + pad_before + pad_after - d*(k-1) - 1) / s) + 1"
TRANSPOSE_FORMULA = "out = (n - 1)*s - (pad_before + pad_after) + d*(k-1) + output_padding + 1"
POOL_FORMULA = "out = {rounding}((n + 2*p - d*(k-1) - 1) / s) + 1"
POOL_CEIL_NOTE = "ceil_mode drops the last window if it would start inside the right padding"


# --------------------------------------------------------------------------- parsing helpers
def parse_dims(text: Union[str, int, Sequence[int]], name: str) -> tuple[int, ...]:
    """``"1x16x16"``, ``"3,3"`` or ``"5"`` as a tuple of ints (``x``, ``,`` and spaces separate).

    Signs are kept (the shape specs reject bad values with their own messages)."""
    if isinstance(text, int):
        return (text,)
    if not isinstance(text, str):
        return tuple(int(v) for v in text)
    parts = text.replace(",", "x").replace("X", "x").replace("*", "x").split("x")
    parts = [p.strip() for p in parts]
    # ASCII digits only: int() also reads "1_0" as 10 and other scripts' digits
    if not all(re.fullmatch(r"[+-]?[0-9]+", p) for p in parts):
        raise ValueError(f"{name} takes integers separated by 'x' (e.g. 16x16 or 3), "
                         f"got {text!r}")
    return tuple(int(p) for p in parts)


def format_shape(shape: Sequence[int]) -> str:
    """``(8, 12, 12)`` -> ``"8x12x12"``."""
    return "x".join(str(int(n)) for n in shape)


def _per_axis(values: Sequence[int], ndim: int, name: str) -> tuple[int, ...]:
    """``shapes.ntuple``'s rule (one value for all axes, or one per axis), refused in the
    calculator's words: its sizes are written 3x3."""
    if len(values) not in (1, ndim):
        raise ValueError(f"{name} needs 1 or {ndim} values for a {ndim}-D input, got "
                         f"{format_shape(values)}")
    return ntuple(tuple(values), ndim, name)


def _split_input(input_shape: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """``C x L`` (1-D) or ``C x H x W`` (2-D): the channels and the spatial sizes."""
    shape = tuple(int(n) for n in input_shape)
    if len(shape) not in (2, 3):
        raise ValueError(f"input must be CxL (1-D) or CxHxW (2-D), without the batch axis, "
                         f"got {format_shape(shape)}")
    if any(n <= 0 for n in shape):
        raise ValueError(f"input sizes must be positive, got {format_shape(shape)}")
    return shape[0], shape[1:]


# --------------------------------------------------------------------------- shape reports
@dataclass(frozen=True)
class ShapeReport:
    """An op's output shape and, per spatial axis, the formula with the numbers in it."""

    op: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    formula: str
    axes: tuple[str, ...]
    params: str = ""
    notes: tuple[str, ...] = ()
    batch: Optional[int] = None

    def lines(self) -> list[str]:
        lead = (self.batch,) if self.batch is not None else ()
        params = f", {self.params}" if self.params else ""
        return [f"{self.op}: input {format_shape(lead + self.input_shape)}{params}",
                f"  {self.formula}",
                *(f"  {axis}" for axis in self.axes),
                *(f"  note: {note}" for note in self.notes),
                f"output: {format_shape(lead + self.output_shape)}"]

    def text(self) -> str:
        return "\n".join(self.lines())

    @property
    def shape_text(self) -> str:
        lead = (self.batch,) if self.batch is not None else ()
        return format_shape(lead + self.output_shape)


def _params(**values) -> str:
    """``kernel 3x3, stride 1x1, ...``: the hyper-parameters a report was computed with."""
    text = []
    for name, value in values.items():
        if isinstance(value, tuple):
            value = format_shape(value)
        text.append(f"{name.replace('_', ' ')} {value}")
    return ", ".join(text)


def _pad_text(pairs: tuple[tuple[int, int], ...]) -> str:
    """Symmetric padding as ``1x1``; asymmetric (``"same"``, even kernel) as ``(1,2)x(1,2)``."""
    if all(lo == hi for lo, hi in pairs):
        return format_shape(lo for lo, _ in pairs)
    return "x".join(f"({lo},{hi})" for lo, hi in pairs)


def _check_batch(batch: Optional[int]) -> None:
    if batch is not None:
        check_int(batch, "batch", 1)


def conv_shape(input_shape: Sequence[int], kernel_size: Sequence[int], out_channels: int,
               stride: Sequence[int] = (1,), padding: Union[Sequence[int], str] = (0,),
               dilation: Sequence[int] = (1,), groups: int = 1,
               batch: Optional[int] = None) -> ShapeReport:
    """Output shape of ``conv1d``/``conv2d`` on a ``C x spatial`` input, with the arithmetic.

    Size arguments hold one value per spatial axis or one value for all; ``padding``
    may also be ``"same"`` or ``"valid"``. Bad values raise the library's ValueError /
    TypeError."""
    channels, spatial = _split_input(input_shape)
    ndim = len(spatial)
    _check_batch(batch)
    kernel = _per_axis(kernel_size, ndim, "kernel")
    check_int(out_channels, "out_channels", 1)  # (the kernel: ConvSpec.make checks it)
    pad = padding if isinstance(padding, str) else _per_axis(padding, ndim, "padding")
    spec = ConvSpec.make(ndim, kernel, _per_axis(stride, ndim, "stride"),
                         pad if isinstance(pad, str) else tuple(pad),
                         _per_axis(dilation, ndim, "dilation"), groups)
    spec.check_groups(channels, out_channels)
    out = spec.checked_output_shape(spatial, kernel)
    axes = [f"{name}: floor(({n} + {lo} + {hi} - {d}*({k}-1) - 1) / {s}) + 1 = {size}"
            for name, n, k, s, (lo, hi), d, size in zip(AXIS_NAMES[ndim], spatial, kernel,
                                                       spec.stride, spec.padding, spec.dilation,
                                                       out)]
    notes = (f"groups={spec.groups}: each output channel sees {channels // spec.groups} input "
             f"channels",) if spec.groups > 1 else ()
    params = _params(kernel=kernel, out_channels=out_channels, stride=spec.stride,
                     padding=_pad_text(spec.padding), dilation=spec.dilation, groups=spec.groups)
    return ShapeReport(f"conv{ndim}d", (channels,) + spatial, (out_channels,) + tuple(out),
                       CONV_FORMULA, tuple(axes), params, notes, batch)


def conv_transpose_shape(input_shape: Sequence[int], kernel_size: Sequence[int],
                         out_channels: int, stride: Sequence[int] = (1,),
                         padding: Sequence[int] = (0,), output_padding: Sequence[int] = (0,),
                         dilation: Sequence[int] = (1,), groups: int = 1,
                         batch: Optional[int] = None) -> ShapeReport:
    """Output shape of ``conv_transpose1d``/``conv_transpose2d``, with the arithmetic."""
    channels, spatial = _split_input(input_shape)
    ndim = len(spatial)
    _check_batch(batch)
    kernel = _per_axis(kernel_size, ndim, "kernel")
    check_int(out_channels, "out_channels", 1)  # (the kernel: ConvSpec.make checks it)
    spec = ConvSpec.make(ndim, kernel, _per_axis(stride, ndim, "stride"),
                         _per_axis(padding, ndim, "padding"),
                         _per_axis(dilation, ndim, "dilation"), groups,
                         output_padding=_per_axis(output_padding, ndim, "output_padding"),
                         transposed=True)
    spec.check_groups(channels, out_channels)
    out = spec.checked_transpose_output_shape(spatial, kernel)
    axes = [f"{name}: ({n} - 1)*{s} - ({lo} + {hi}) + {d}*({k}-1) + {op} + 1 = {size}"
            for name, n, k, s, (lo, hi), d, op, size in zip(
                AXIS_NAMES[ndim], spatial, kernel, spec.stride, spec.padding, spec.dilation,
                spec.output_padding, out)]
    params = _params(kernel=kernel, out_channels=out_channels, stride=spec.stride,
                     padding=_pad_text(spec.padding), output_padding=spec.output_padding,
                     dilation=spec.dilation, groups=spec.groups)
    return ShapeReport(f"conv_transpose{ndim}d", (channels,) + spatial,
                       (out_channels,) + tuple(out), TRANSPOSE_FORMULA, tuple(axes), params, (),
                       batch)


def pool_shape(input_shape: Sequence[int], kernel_size: Sequence[int],
               stride: Optional[Sequence[int]] = None, padding: Sequence[int] = (0,),
               dilation: Sequence[int] = (1,), ceil_mode: bool = False,
               batch: Optional[int] = None) -> ShapeReport:
    """Output shape of max/avg pooling (``stride=None`` means stride = kernel), with the
    arithmetic and PyTorch's ``ceil_mode`` rule spelled out."""
    channels, spatial = _split_input(input_shape)
    ndim = len(spatial)
    _check_batch(batch)
    spec = PoolSpec.make(ndim, _per_axis(kernel_size, ndim, "kernel"),
                         None if stride is None else _per_axis(stride, ndim, "stride"),
                         _per_axis(padding, ndim, "padding"),
                         _per_axis(dilation, ndim, "dilation"), ceil_mode)
    out = spec.checked_output_shape(spatial)
    rounding = "ceil" if spec.ceil_mode else "floor"
    axes, notes = [], []
    for name, n, k, s, p, d, size in zip(AXIS_NAMES[ndim], spatial, spec.kernel_size,
                                         spec.stride, spec.padding, spec.dilation, out):
        raw = pool_windows_rounded(n, k, s, p, d, spec.ceil_mode)
        line = f"{name}: {rounding}(({n} + 2*{p} - {d}*({k}-1) - 1) / {s}) + 1 = {raw}"
        if raw != size:
            line += (f" -> {size} (window {raw} would start at padded position {(raw - 1) * s}"
                     f" >= {n} + {p}, inside the right padding)")
        axes.append(line)
    if spec.ceil_mode:
        notes.append(POOL_CEIL_NOTE)
    params = _params(kernel=spec.kernel_size, stride=spec.stride, padding=spec.padding,
                     dilation=spec.dilation, ceil_mode=spec.ceil_mode)
    return ShapeReport(f"pool{ndim}d (max or avg)", (channels,) + spatial,
                       (channels,) + tuple(out), POOL_FORMULA.format(rounding=rounding),
                       tuple(axes), params, tuple(notes), batch)


# --------------------------------------------------------------------------- arrays, slide layout
def decimals_needed(array, max_decimals: int = 4) -> int:
    """The fewest decimals (up to ``max_decimals``) that show every value of ``array`` exactly."""
    a = np.asarray(array, dtype=np.float64)
    for d in range(max_decimals + 1):
        if np.allclose(np.round(a, d), a, rtol=0, atol=1e-9):
            return d
    return max_decimals


def format_grid(plane, decimals: Optional[int] = None, width: Optional[int] = None) -> list[str]:
    """A 1-D or 2-D array as right-aligned fixed-width columns, one line per row."""
    a = np.asarray(plane, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"format_grid takes a 1-D or 2-D array, got shape {a.shape}")
    d = decimals_needed(a) if decimals is None else decimals
    cells = [[f"{v + 0.0:.{d}f}" for v in row] for row in a]  # + 0.0 turns -0.0 into 0.0
    w = max([len(c) for row in cells for c in row] + [width or 0])
    return ["  ".join(c.rjust(w) for c in row) for row in cells]


def format_planes(name: str, array, decimals: Optional[int] = None) -> list[str]:
    """Every 2-D plane of ``array`` under a 1-based label as the slides write it:
    ``I[1,:,:]`` for a 3-D array, ``W[1,2,:,:]`` for a 4-D one; a 1-D or 2-D array is
    printed as one grid under ``name``. One number format is shared by all planes."""
    a = np.asarray(array, dtype=np.float64)
    d = decimals_needed(a) if decimals is None else decimals
    width = max((len(f"{v + 0.0:.{d}f}") for v in a.ravel()), default=1)
    if a.ndim <= 2:
        return [name] + ["  " + row for row in format_grid(a, d, width)]
    lines: list[str] = []
    for index in np.ndindex(*a.shape[:-2]):
        label = ",".join(str(i + 1) for i in index)
        lines.append(f"{name}[{label},:,:]")
        lines += ["  " + row for row in format_grid(a[index], d, width)]
    return lines


def format_vector(array, decimals: Optional[int] = None) -> str:
    """A 1-D array on one line, as the slides write ``I = 1 2 3 4``."""
    a = np.asarray(array, dtype=np.float64).ravel()
    d = decimals_needed(a) if decimals is None else decimals
    return " ".join(f"{v + 0.0:.{d}f}" for v in a)


# --------------------------------------------------------------------------- environment
def cuda_devices() -> dict[str, list[str]]:
    """CUDA device names per CUDA library that is installed and can list them (may be empty)."""
    found: dict[str, list[str]] = {}
    try:
        cupy = importlib.import_module("cupy")
        names = []
        for i in range(cupy.cuda.runtime.getDeviceCount()):
            name = cupy.cuda.runtime.getDeviceProperties(i)["name"]
            names.append(name.decode() if isinstance(name, bytes) else str(name))
        found["cupy"] = names
    except Exception:  # not installed, no driver, no device: nothing to list
        pass
    try:
        numba_cuda = importlib.import_module("numba.cuda")
        if numba_cuda.is_available():
            found["numba"] = [
                (g.name.decode() if isinstance(g.name, bytes) else str(g.name))
                for g in numba_cuda.gpus]
    except Exception:
        pass
    return found


def environment() -> dict:
    """What ``gpuconv info`` reports: versions, each backend's availability (None) or why
    not, and the CUDA devices each GPU library sees."""
    from gpuconv import __version__
    from gpuconv.backends import BACKENDS, unavailable_reason

    backends = {}
    for name in BACKENDS:
        try:
            backends[name] = unavailable_reason(name)
        except Exception as exc:  # a broken install must not hide the other backends
            backends[name] = f"probe failed ({type(exc).__name__}: {exc})"
    return {"gpuconv": __version__, "python": platform.python_version(),
            "python_executable": sys.executable, "numpy": np.__version__,
            "backends": backends, "cuda_devices": cuda_devices()}


def environment_lines(env: Optional[dict] = None) -> list[str]:
    """``environment()`` as ``gpuconv info`` prints it."""
    env = env or environment()
    lines = [f"gpuconv {env['gpuconv']}",
             f"python  {env['python']} ({env['python_executable']})",
             f"numpy   {env['numpy']}",
             "backends:"]
    for name, reason in env["backends"].items():
        status = "available" if reason is None else f"unavailable: {reason}"
        lines.append(f"  {name:<6} {status}")
    devices = env["cuda_devices"]
    lines.append("CUDA devices:")
    if not any(devices.values()):
        lines.append("  none found")
    for library, names in devices.items():
        for i, device in enumerate(names):
            lines.append(f"  {library}: [{i}] {device}")
    return lines
