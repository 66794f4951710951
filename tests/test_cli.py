"""The ``gpuconv`` command line: every command, its output and its error exit codes."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import gpuconv
from gpuconv import demo as demo_module
from gpuconv import report
from gpuconv.cli import main
from gpuconv.shapes import conv_output_size, conv_transpose_output_size, pool_output_size


def run(*args):
    return CliRunner().invoke(main, list(args))


# --------------------------------------------------------------------------- top level
def test_help_lists_commands():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("info", "shapes", "demo"):
        assert command in result.output


def test_version():
    result = run("--version")
    assert result.exit_code == 0
    assert result.output.strip() == f"gpuconv {gpuconv.__version__}"


def test_unknown_command_is_a_usage_error():
    result = run("frobnicate")
    assert result.exit_code == 2
    assert "No such command" in result.output


# --------------------------------------------------------------------------- info
def test_info_lists_every_backend():
    result = run("info")
    assert result.exit_code == 0, result.output
    assert f"gpuconv {gpuconv.__version__}" in result.output
    assert f"numpy   {np.__version__}" in result.output
    for name in gpuconv.BACKENDS:
        assert f"  {name} " in result.output
    assert "numpy  available" in result.output
    assert "CUDA devices:" in result.output


def test_info_reports_why_a_backend_is_unavailable():
    from gpuconv.backends import unavailable_reason
    output = run("info").output
    for name in gpuconv.BACKENDS:
        reason = unavailable_reason(name)
        if reason is not None:
            assert f"{name:<6} unavailable: {reason}" in output


def test_cli_never_imports_torch():
    code = ("import sys; from click.testing import CliRunner; from gpuconv.cli import main; "
            "r = CliRunner().invoke(main, ['info']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(main, ['demo']); assert r.exit_code == 0, r.output; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- shapes
def test_shapes_conv_example():
    result = run("shapes", "conv", "--input", "1x16x16", "--kernel", "5", "--out-channels", "8",
                 "--stride", "1", "--padding", "0", "--dilation", "1")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[-1] == "output: 8x12x12"
    assert "  H: floor((16 + 0 + 0 - 1*(5-1) - 1) / 1) + 1 = 12" in lines
    assert "  W: floor((16 + 0 + 0 - 1*(5-1) - 1) / 1) + 1 = 12" in lines


def test_shapes_quiet_prints_only_the_shape():
    result = run("shapes", "conv", "-i", "3x32x32", "-k", "3", "-o", "16", "-s", "2", "-p", "1",
                 "-n", "4", "-q")
    assert result.exit_code == 0, result.output
    assert result.output == "4x16x16x16\n"


def test_shapes_conv_per_axis_values_and_same_padding():
    result = run("shapes", "conv", "-i", "3x10x9", "-k", "4x3", "-o", "8", "-p", "same", "-q")
    assert result.output == "8x10x9\n"
    result = run("shapes", "conv", "-i", "3x20x20", "-k", "3x5", "-o", "8", "-s", "1x2",
                 "-p", "1,2", "-d", "2x1", "-q")
    assert result.output == "8x{}x{}\n".format(conv_output_size(20, 3, 1, (1, 1), 2),
                                               conv_output_size(20, 5, 2, (2, 2), 1))


def test_shapes_conv_1d():
    result = run("shapes", "conv", "-i", "2x100", "-k", "7", "-o", "4", "-s", "3")
    assert result.exit_code == 0, result.output
    assert "conv1d" in result.output
    assert result.output.splitlines()[-1] == "output: 4x{}".format(
        conv_output_size(100, 7, 3))


def test_shapes_transpose():
    result = run("shapes", "transpose", "--input", "256x16x16", "--kernel", "4",
                 "--out-channels", "128", "--stride", "2", "--padding", "1")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "output: 128x32x32"
    assert "  H: (16 - 1)*2 - (1 + 1) + 1*(4-1) + 0 + 1 = 32" in result.output
    result = run("shapes", "transpose", "-i", "3x7", "-k", "3", "-o", "2", "-s", "2",
                 "--output-padding", "1", "-q")
    assert result.output == f"2x{conv_transpose_output_size(7, 3, 2, (0, 0), 1, 1)}\n"


def test_shapes_pool_ceil_mode():
    args = ["shapes", "pool", "--input", "64x112x112", "--kernel", "3", "--stride", "2",
            "--padding", "1"]
    floor, ceil = run(*args), run(*args, "--ceil-mode")
    assert floor.exit_code == ceil.exit_code == 0
    assert floor.output.splitlines()[-1] == "output: 64x56x56"
    assert ceil.output.splitlines()[-1] == "output: 64x57x57"
    assert "ceil((112 + 2*1 - 1*(3-1) - 1) / 2) + 1 = 57" in ceil.output


def test_shapes_pool_ceil_mode_drops_a_window_in_the_padding():
    result = run("shapes", "pool", "-i", "1x5x5", "-k", "2", "-s", "2", "-p", "1", "--ceil-mode")
    assert result.exit_code == 0, result.output
    assert "= 4 -> 3" in result.output
    assert result.output.splitlines()[-1] == f"output: 1x{pool_output_size(5, 2, 2, 1, 1, True)}x3"


def test_shapes_pool_stride_defaults_to_kernel():
    assert run("shapes", "pool", "-i", "64x56x56", "-k", "2", "-q").output == "64x28x28\n"


@pytest.mark.parametrize("args, message", [
    (["conv", "-i", "1x16x16", "-k", "5", "-o", "8", "-s", "0"], "stride must be positive"),
    (["conv", "-i", "1x16x16", "-k", "5", "-o", "8", "-p", "-1"], "padding must be non-negative"),
    (["conv", "-i", "1x16x16", "-k", "5", "-o", "8", "-d", "0"], "dilation must be positive"),
    (["conv", "-i", "1x4x4", "-k", "7", "-o", "8"], "larger than the padded input"),
    (["conv", "-i", "3x8x8", "-k", "3", "-o", "8", "-g", "2"], "divisible by groups=2"),
    (["conv", "-i", "3x8x8", "-k", "3", "-o", "8", "-g", "0"], "groups must be a positive int"),
    (["conv", "-i", "3x8x8", "-k", "3", "-o", "0"], "out_channels must be a positive int"),
    (["conv", "-i", "3x8x8", "-k", "0", "-o", "2"], "kernel_size must be positive"),
    (["conv", "-i", "3x8x8", "-k", "3x3x3", "-o", "2"], "kernel needs 1 or 2 values"),
    (["conv", "-i", "1x3x8x8", "-k", "3", "-o", "2"], "CxL (1-D) or CxHxW (2-D)"),
    (["conv", "-i", "3x0x8", "-k", "3", "-o", "2"], "input sizes must be positive"),
    (["conv", "-i", "3x8x8", "-k", "3", "-o", "2", "-s", "2", "-p", "same"], "needs stride 1"),
    (["conv", "-i", "3x8x8", "-k", "3", "-o", "2", "-p", "full"], "--padding"),
    (["conv", "-i", "3xax8", "-k", "3", "-o", "2"], "--input"),
    (["conv", "-i", "3x8x8", "-k", "3", "-o", "2", "-n", "0"], "batch must be a positive int"),
    (["transpose", "-i", "4x8x8", "-k", "3", "-o", "2", "-s", "2", "--output-padding", "2"],
     "output_padding must be smaller"),
    (["transpose", "-i", "4x2x2", "-k", "1", "-o", "2", "-p", "2"], "must be positive"),
    (["pool", "-i", "3x8x8", "-k", "3", "-p", "2"], "at most half of kernel_size"),
    (["pool", "-i", "3x2x2", "-k", "5", "-p", "1"], "larger than the padded input"),
    (["pool", "-i", "3x8x8", "-k", "2", "-s", "0"], "stride must be positive"),
    (["conv", "-i", "3x8x8", "-k", "3"], "Missing option '--out-channels'"),
    (["pool", "-i", "3x8x8"], "Missing option '--kernel'"),
])
def test_shapes_bad_values_exit_2_without_traceback(args, message):
    result = run("shapes", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, (ValueError, TypeError))


# --------------------------------------------------------------------------- formulas
def _evaluate(axis_line: str) -> tuple[int, int]:
    """``H: floor((16 + 0 + 0 - 1*(5-1) - 1) / 1) + 1 = 12`` -> (the expression's value, 12)."""
    expr, _, rhs = axis_line.split(": ", 1)[1].partition(" = ")
    return eval(expr, {"floor": math.floor, "ceil": math.ceil}), int(rhs.split(" ")[0])


@pytest.mark.parametrize("n, k, s, p, d", [(16, 5, 1, 0, 1), (56, 3, 2, 1, 1), (7, 3, 3, 2, 2),
                                           (224, 7, 2, 3, 1), (10, 4, 3, 0, 3)])
def test_formula_lines_evaluate_to_the_library_sizes(n, k, s, p, d):
    conv = report.conv_shape((1, n), (k,), 1, (s,), (p,), (d,))
    lhs, rhs = _evaluate(conv.axes[0])
    assert lhs == rhs == conv_output_size(n, k, s, (p, p), d) == conv.output_shape[1]
    op = min(s, d) - 1
    tr = report.conv_transpose_shape((1, n), (k,), 1, (s,), (p,), (op,), (d,))
    lhs, rhs = _evaluate(tr.axes[0])
    assert lhs == rhs == conv_transpose_output_size(n, k, s, (p, p), d, op)
    if 2 * p <= k:
        for ceil in (False, True):
            pool = report.pool_shape((1, n), (k,), (s,), (p,), (d,), ceil)
            lhs, rhs = _evaluate(pool.axes[0])
            assert rhs == lhs
            assert pool.output_shape[1] == pool_output_size(n, k, s, p, d, ceil)


# --------------------------------------------------------------------------- report helpers
def test_parse_dims():
    assert report.parse_dims("1x16x16", "x") == (1, 16, 16)
    assert report.parse_dims("3, 5", "x") == (3, 5)
    assert report.parse_dims("7", "x") == (7,)
    for bad in ("", "3x", "ax3", "3.5"):
        with pytest.raises(ValueError, match="integers separated by 'x'"):
            report.parse_dims(bad, "--kernel")


def test_format_planes_labels_and_fixed_width():
    a = np.arange(8, dtype=np.float64).reshape(2, 2, 2) - 3.5
    lines = report.format_planes("I", a)
    assert lines[0] == "I[1,:,:]" and lines[3] == "I[2,:,:]"
    widths = {len(line) for line in lines if not line.startswith("I[")}
    assert len(widths) == 1
    w = report.format_planes("W", np.zeros((2, 3, 2, 2)))
    assert [l for l in w if l.startswith("W[")][:4] == ["W[1,1,:,:]", "W[1,2,:,:]", "W[1,3,:,:]",
                                                         "W[2,1,:,:]"]
    assert report.format_vector(np.array([1.0, -0.0, 2.5])) == "1.0 0.0 2.5"
    assert report.decimals_needed([1, 2]) == 0 and report.decimals_needed([0.25]) == 2


# --------------------------------------------------------------------------- demo
needs_numpy_backend = pytest.mark.skipif(
    __import__("importlib.util").util.find_spec("gpuconv.backends.numpy_backend") is None,
    reason="the NumPy backend is not there yet")


@needs_numpy_backend
def test_demo_runs_and_prints_the_slides_layout():
    result = run("demo")
    assert result.exit_code == 0, result.output
    out = result.output
    for label in ("I[1,:,:]", "I[2,:,:]", "W[1,1,:,:]", "W[2,2,:,:]", "O[1,:,:]", "O[2,:,:]",
                  "dL/dI[1,:,:]", "dL/dW[2,1,:,:]", "dL/db"):
        assert label in out
    assert "the slides print -3.1; gpuconv computes 3.1" in out
    assert "17 of the 18 values of O match" in out
    assert "numpy.random.default_rng(seed=0)" in out
    assert "-> 14 20" in out and "-> 10 16" in out
    assert "-> 5 8 11" in out and "-> 1 4 7 6" in out
    assert "MISMATCH" not in out and "PROBLEMS" not in out


@needs_numpy_backend
def test_demo_output_grid_matches_the_computed_output():
    r = demo_module.two_channel()
    np.testing.assert_allclose(r["output"][0], [[3.1, -3.9, -10.9], [4.1, -12.9, 16.1],
                                                [-3.9, 0.1, 9.1]])
    lines = run("demo").output.splitlines()
    start = lines.index("O[2,:,:]")
    grid = np.array([[float(v) for v in line.split()] for line in lines[start + 1:start + 4]])
    np.testing.assert_allclose(grid, r["output"][1])


@needs_numpy_backend
def test_demo_seed_changes_only_the_upstream_gradient():
    a, b = demo_module.two_channel(0), demo_module.two_channel(1)
    np.testing.assert_array_equal(a["output"], b["output"])
    assert not np.array_equal(a["grad_out"], b["grad_out"])
    assert run("demo", "--seed", "1").exit_code == 0
    assert run("demo", "--seed", "x").exit_code == 2


@needs_numpy_backend
def test_demo_reports_a_wrong_kernel(monkeypatch):
    real = demo_module.conv1d

    def wrong_conv1d(x, w, *args, **kwargs):
        return real(x, w, *args, **kwargs) + 1

    monkeypatch.setattr(demo_module, "conv1d", wrong_conv1d)
    result = run("demo")
    assert result.exit_code == 1
    assert "MISMATCH" in result.output and "PROBLEMS" in result.output


def test_bench_plan_prints_the_launch_plans_without_a_gpu():
    """gpuconv bench --plan: the CuPy conv plans of the suite, no GPU, no torch."""
    from click.testing import CliRunner

    from gpuconv.cli import main
    result = CliRunner().invoke(main, ["bench", "--plan", "tf32x3", "--layers", "resnet50_3x3_7"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split()[:3] == ["layer", "pass", "tile"]
    assert [line.split()[:3] for line in lines[2:]] == [
        ["resnet50_3x3_7", p, line.split()[2]] for p, line in
        zip(("forward", "grad_input", "grad_weight"), lines[2:])]
    assert all(line.split()[2].startswith("tf32x3-") for line in lines[2:])
    numba = CliRunner().invoke(main, ["bench", "--backend", "numba", "--plan", "ieee",
                                      "--layers", "resnet50_3x3_7"])
    assert numba.exit_code == 0, numba.output
    assert all(line.split()[2].startswith("numba-") for line in numba.output.splitlines()[2:])
    refused = CliRunner().invoke(main, ["bench", "--backend", "numba", "--plan", "tf32"])
    assert refused.exit_code == 2 and "precision 'ieee' only" in refused.output


@pytest.mark.parametrize("setting, value", [("GPUCONV_MAX_BYTES", "5"),
                                            ("GPUCONV_CPU_KERNELS", "bad")])
def test_demo_reports_a_bad_setting_without_a_traceback(monkeypatch, setting, value):
    monkeypatch.setenv(setting, value)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 2 and setting in result.output, result.output
    assert "Traceback" not in result.output


def test_demo_keeps_the_traceback_of_its_own_errors(monkeypatch):
    """Only the environment's errors (a setting, the byte limit) become usage errors: a
    ValueError of the demo itself is a bug, and keeps its traceback."""
    import gpuconv.demo

    def broken(seed):
        raise ValueError("a bug")
    monkeypatch.setattr(gpuconv.demo, "run", broken)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


def test_bench_plan_names_what_it_cannot_show():
    """An empty --layers or --ops is a usage error (it ran the whole suite); a choice with no
    convolution says that only convolutions have plans (it printed an empty table)."""
    for option in ("--layers", "--ops"):
        result = CliRunner().invoke(main, ["bench", "--plan", "ieee", option, " , "])
        assert result.exit_code == 2 and "leave the option out" in result.output
    result = CliRunner().invoke(main, ["bench", "--plan", "ieee", "--ops", "max_pool2d"])
    assert result.exit_code == 0 and "only convolutions have launch plans" in result.output
    # a Numba plan at a tensor-core precision is refused whatever the layers (it printed
    # "no conv layer chosen" for pooling ones, and exited 0)
    result = CliRunner().invoke(main, ["bench", "--backend", "numba", "--plan", "tf32", "--ops",
                                       "max_pool2d"])
    assert result.exit_code == 2 and "precision 'ieee' only" in result.output


@pytest.mark.parametrize("args, message", [
    (["shapes", "pool", "-i", "1x2", "-k", "2", "-d", "3", "-p", "1"],
     "a pooling window lies entirely in the padding"),  # the op refuses it: so does the calculator
    (["shapes", "conv", "-i", "1x16x16", "-k", "3", "-p", "1_0"], "takes integers"),
    (["shapes", "conv", "-i", "\uff11x16x16", "-k", "3"], "takes integers"),
])
def test_shapes_refuses_what_the_ops_refuse_and_reads_plain_digits(args, message):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output, result.output
