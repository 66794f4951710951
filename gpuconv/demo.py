"""``gpuconv demo``: the slides' worked examples run through ``gpuconv.functional``.

The slides give the 2-channel example's forward pass only, so its backward pass
uses an upstream gradient dL/dO of small random integers from a fixed seed (every
printed number stays exact and checkable by hand). The 1-D example has the slides'
own upstream gradient. Every number the slides print is compared with the computed
one; a disagreement other than the documented -3.1 misprint is reported as a problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gpuconv import examples
from gpuconv.functional import conv1d, conv1d_backward, conv2d, conv2d_backward
from gpuconv.report import format_planes, format_vector

DEFAULT_SEED = 0
GRAD_LOW, GRAD_HIGH = -2, 2  # the upstream gradient's integer range, inclusive
# The one printed value the slides get wrong (see gpuconv.examples.two_channel_example),
# as a 0-based (plane, row, column) index.
KNOWN_MISPRINT = (0, 0, 0)


@dataclass
class Demo:
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.lines)


def upstream_gradient(shape, seed: int = DEFAULT_SEED) -> np.ndarray:
    """dL/dO for the 2-channel example: integers in [-2, 2] from
    ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return rng.integers(GRAD_LOW, GRAD_HIGH + 1, size=shape).astype(np.float64)


def two_channel(seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """The 2-channel example's forward and backward pass (arrays without the batch axis)."""
    ex = examples.two_channel_example()
    x, w, b = ex["input"][None], ex["weight"], ex["bias"]
    out = conv2d(x, w, b)
    grad_out = upstream_gradient(out.shape, seed)
    grad_x, grad_w, grad_b = conv2d_backward(grad_out, x, w)
    return {"input": x[0], "weight": w, "bias": b, "output": out[0],
            "printed_output": ex["printed_output"], "grad_out": grad_out[0],
            "grad_input": grad_x[0], "grad_weight": grad_w, "grad_bias": grad_b}


def one_d() -> dict[str, np.ndarray]:
    """The 1-D example: correlation, true convolution, and the correlation's backward."""
    ex = examples.one_d_example()
    x, w, gy = ex["input"][None, None], ex["weight"][None, None], ex["grad_out"][None, None]
    grad_x, grad_w, _ = conv1d_backward(gy, x, w, output_mask=(True, True, False))
    return {**ex,
            "computed_correlation": conv1d(x, w)[0, 0],
            "computed_true_convolution": conv1d(x, w, flip=True)[0, 0],
            "computed_grad_weight": grad_w[0, 0], "computed_grad_input": grad_x[0, 0]}


def _two_channel_section(demo: Demo, seed: int) -> None:
    r = two_channel(seed)
    add = demo.lines.extend
    demo.lines.append("== 1. Two-channel convolution (the slides' multi-channel example) ==")
    demo.lines.append("I: 2 input planes of 4x4.  W: nOutputPlane x nInputPlane x kH x kW = "
                      "2x2x2x2.  b: one bias per output plane.")
    add(format_planes("I", r["input"]))
    add(format_planes("W", r["weight"]))
    demo.lines.append(f"b = {format_vector(r['bias'])}")
    demo.lines.append("")
    demo.lines.append("O = conv2d(I, W, b): cross-correlation, stride 1, no padding -> 2x3x3")
    add(format_planes("O", r["output"]))

    printed, out = r["printed_output"], r["output"]
    wrong = [idx for idx in zip(*np.nonzero(~np.isclose(out, printed, atol=1e-9)))]
    for idx in wrong:
        plane, row, col = (int(i) for i in idx)
        where = f"O[{plane + 1},:,:] row {row + 1}, column {col + 1}"
        if (plane, row, col) == KNOWN_MISPRINT:
            kh, kw = r["weight"].shape[2:]
            window = r["input"][:, row:row + kh, col:col + kw]
            terms = [f"W[{plane + 1},{c + 1},:,:] . ({kh}x{kw} window of I[{c + 1},:,:]) = "
                     f"{np.sum(r['weight'][plane, c] * window[c]):g}"
                     for c in range(r["input"].shape[0])]
            demo.lines.append(
                f"note: at {where} the slides print {printed[idx]:g}; gpuconv computes "
                f"{out[idx]:g}: {', '.join(terms)}, b[{plane + 1}] = "
                f"{r['bias'][plane]:g}. Every other printed number agrees, so the slide's sign "
                f"is a misprint (see gpuconv/examples.py).")
        else:
            demo.problems.append(f"{where}: the slides print {printed[idx]}, gpuconv computes "
                                 f"{out[idx]}")
    demo.lines.append(f"{out.size - len(wrong)} of the {out.size} values of O match the "
                      f"slides' printed O.")

    demo.lines.append("")
    demo.lines.append(f"Backward pass. The slides give no upstream gradient, so dL/dO is random "
                      f"integers in [{GRAD_LOW}, {GRAD_HIGH}] from "
                      f"numpy.random.default_rng(seed={seed}):")
    add(format_planes("dL/dO", r["grad_out"]))
    demo.lines.append("dI, dW, db = conv2d_backward(dL/dO, I, W)")
    demo.lines.append("dL/dI: the transposed convolution of dL/dO with W")
    add(format_planes("dL/dI", r["grad_input"]))
    demo.lines.append("dL/dW: the correlation of I with dL/dO")
    add(format_planes("dL/dW", r["grad_weight"]))
    demo.lines.append(f"dL/db = {format_vector(r['grad_bias'])}  (dL/dO summed over each plane)")
    # The convolution is linear in I and in W, so all three pairings give one number.
    through_out = float(np.sum(r["grad_out"] * (out - r["bias"][:, None, None])))
    through_w = float(np.sum(r["grad_weight"] * r["weight"]))
    through_x = float(np.sum(r["grad_input"] * r["input"]))
    demo.lines.append(f"check: sum(dL/dO * (O - b)) = {through_out:g}, sum(dL/dW * W) = "
                      f"{through_w:g}, sum(dL/dI * I) = {through_x:g} (equal: the convolution is "
                      f"linear in I and in W)")
    if not np.allclose([through_w, through_x], through_out):
        demo.problems.append("the gradients fail the linearity check")


def _one_d_section(demo: Demo) -> None:
    r = one_d()
    demo.lines.append("== 2. 1-D: correlation vs true convolution ==")
    demo.lines.append(f"I = {format_vector(r['input'])}")
    demo.lines.append(f"W = {format_vector(r['weight'])}")
    rows = [
        ("correlation       O_i = sum_j I[i+j] W[j]      ", "conv1d(I, W)           ",
         "computed_correlation", "correlation"),
        ("true convolution  O_i = sum_j I[i+j] W[K-1-j]  ", "conv1d(I, W, flip=True)",
         "computed_true_convolution", "true_convolution"),
    ]
    for formula, call, got, want in rows:
        demo.lines.append(f"{formula}{call} -> {format_vector(r[got])}"
                          f"{_verdict(demo, r[got], r[want], want)}")
    demo.lines.append(f"Backward of the correlation with the slides' dL/dO = "
                      f"{format_vector(r['grad_out'])}, conv1d_backward(dL/dO, I, W):")
    rows = [("dL/dW = Correlation(I, dL/dO)               ", "computed_grad_weight",
             "grad_weight"),
            ("dL/dI = Correlation(W padded, dL/dO flipped)", "computed_grad_input",
             "grad_input")]
    for formula, got, want in rows:
        demo.lines.append(f"{formula} -> {format_vector(r[got])}"
                          f"{_verdict(demo, r[got], r[want], want)}")


def _verdict(demo: Demo, got, want, name: str) -> str:
    if np.allclose(got, want, rtol=0, atol=1e-9):
        return "   (matches the slides)"
    demo.problems.append(f"1-D {name}: the slides give {format_vector(want)}, gpuconv computes "
                         f"{format_vector(got)}")
    return f"   MISMATCH: the slides give {format_vector(want)}"


def run(seed: int = DEFAULT_SEED) -> Demo:
    """Both worked examples as printable lines, plus any disagreement with the slides."""
    demo = Demo()
    demo.lines.append("gpuconv demo: the slides' worked examples through gpuconv.functional "
                      "(NumPy backend, float64). Plane labels are 1-based, as on the slides.")
    demo.lines.append("")
    _two_channel_section(demo, seed)
    demo.lines.append("")
    _one_d_section(demo)
    if demo.problems:
        demo.lines.append("")
        demo.lines.append("PROBLEMS:")
        demo.lines.extend(f"  {p}" for p in demo.problems)
    return demo
