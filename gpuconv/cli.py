"""The ``gpuconv`` command: argument plumbing only; the work is in gpuconv.report,
gpuconv.demo, gpuconv.training and gpuconv.benchmark."""

from __future__ import annotations

import json
import sys

import click

from gpuconv import __version__
from gpuconv.backends import PRECISIONS

# size-like options: one value for every axis ("3") or one per axis ("3x5")
_DIMS_HELP = "one value for every axis (3) or one per axis (3x5)"


def _dims(ctx, param, value):
    """Click callback: parse "16x16" / "3" into a tuple of ints (None stays None)."""
    if value is None:
        return None
    from gpuconv.report import parse_dims
    try:
        return parse_dims(value, max(param.opts, key=len))
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def _padding(ctx, param, value):
    if isinstance(value, str) and value.strip().lower() in ("same", "valid"):
        return value.strip().lower()
    return _dims(ctx, param, value)


def _run_report(make):
    """Call a library function; its ValueError/TypeError (a bad option, or a bad GPUCONV_*
    setting) becomes a usage error (exit 2), with no traceback."""
    try:
        return make()
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None


def _emit(report, quiet: bool) -> None:
    click.echo(report.shape_text if quiet else report.text())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="gpuconv",
                      message="%(prog)s %(version)s")
def main():
    """gpuconv: readable, tested convolution, transposed-convolution and pooling kernels
    with PyTorch semantics, on the CPU (NumPy) and on NVIDIA GPUs (CuPy and Numba CUDA),
    and a CNN trainer on them."""


_JSON = click.option("--json", "as_json", is_flag=True,
                     help="Print the result as JSON on standard output (messages go to "
                          "standard error).")


def _print_json(value) -> None:
    click.echo(json.dumps(value, indent=2))


@main.command()
@_JSON
def info(as_json):
    """Versions, each backend's availability (and why not), and CUDA devices."""
    from gpuconv.report import environment, environment_lines
    env = environment()
    if as_json:
        _print_json(env)
    else:
        click.echo("\n".join(environment_lines(env)))


@main.command()
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the random integer upstream gradient of the 2-channel example.")
def demo(seed):
    """Run the slides' worked examples (2-channel convolution, 1-D correlation vs true
    convolution) forward and backward, laid out as the slides print them."""
    from gpuconv._checks import SettingError, SizeLimitError
    from gpuconv.demo import run
    try:
        result = run(seed)
    except (SettingError, SizeLimitError) as exc:  # the environment's, not the demo's: no traceback
        raise click.UsageError(str(exc)) from None
    click.echo(result.text())
    if result.problems:
        raise SystemExit(1)


@main.group()
def shapes():
    """Output-size calculator: the slides' "calculating output dimensions".

    Give the input without the batch axis as CxL (1-D) or CxHxW (2-D), e.g. 1x16x16.
    Prints the formula with the numbers plugged in for each axis, then the output shape."""


def _head(f):
    """The first options of every ``shapes`` subcommand (decorators apply bottom-up)."""
    f = click.option("--kernel", "-k", required=True, callback=_dims,
                     help=f"Kernel size: {_DIMS_HELP}.")(f)
    f = click.option("--input", "-i", "input_shape", required=True, callback=_dims,
                     help="Input shape without the batch axis: CxL or CxHxW.")(f)
    return f


def _tail(f):
    """The last options of every ``shapes`` subcommand."""
    f = click.option("-q", "--quiet", is_flag=True, help="Print only the output shape.")(f)
    f = click.option("--batch", "-n", type=int, default=None,
                     help="Batch size to prepend to the shapes.")(f)
    f = click.option("--dilation", "-d", default="1", show_default=True, callback=_dims,
                     help=f"Dilation: {_DIMS_HELP}.")(f)
    return f


@shapes.command("conv")
@_head
@click.option("--out-channels", "-o", type=int, required=True, help="Output channels.")
@click.option("--stride", "-s", default="1", show_default=True, callback=_dims,
              help=f"Stride: {_DIMS_HELP}.")
@click.option("--padding", "-p", default="0", show_default=True, callback=_padding,
              help=f"Zero padding: {_DIMS_HELP}, or 'same' / 'valid'.")
@click.option("--groups", "-g", type=int, default=1, show_default=True, help="Groups.")
@_tail
def shapes_conv(input_shape, kernel, dilation, batch, quiet, out_channels, stride, padding,
                groups):
    """Output shape of conv1d / conv2d."""
    from gpuconv.report import conv_shape
    _emit(_run_report(lambda: conv_shape(input_shape, kernel, out_channels, stride, padding,
                                         dilation, groups, batch)), quiet)


@shapes.command("transpose")
@_head
@click.option("--out-channels", "-o", type=int, required=True, help="Output channels.")
@click.option("--stride", "-s", default="1", show_default=True, callback=_dims,
              help=f"Stride: {_DIMS_HELP}.")
@click.option("--padding", "-p", default="0", show_default=True, callback=_dims,
              help=f"Padding removed from the output: {_DIMS_HELP}.")
@click.option("--output-padding", default="0", show_default=True, callback=_dims,
              help=f"Extra size on one side of the output: {_DIMS_HELP}.")
@click.option("--groups", "-g", type=int, default=1, show_default=True, help="Groups.")
@_tail
def shapes_transpose(input_shape, kernel, dilation, batch, quiet, out_channels, stride, padding,
                     output_padding, groups):
    """Output shape of conv_transpose1d / conv_transpose2d."""
    from gpuconv.report import conv_transpose_shape
    _emit(_run_report(lambda: conv_transpose_shape(input_shape, kernel, out_channels, stride,
                                                   padding, output_padding, dilation, groups,
                                                   batch)), quiet)


@shapes.command("pool")
@_head
@click.option("--stride", "-s", default=None, callback=_dims,
              help=f"Stride: {_DIMS_HELP}. Default: the kernel size.")
@click.option("--padding", "-p", default="0", show_default=True, callback=_dims,
              help=f"Implicit padding (at most half the kernel): {_DIMS_HELP}.")
@click.option("--ceil-mode", is_flag=True, help="Round the window count up (PyTorch's rule).")
@_tail
def shapes_pool(input_shape, kernel, dilation, batch, quiet, stride, padding, ceil_mode):
    """Output shape of max / average pooling."""
    from gpuconv.report import pool_shape
    _emit(_run_report(lambda: pool_shape(input_shape, kernel, stride, padding, dilation,
                                         ceil_mode, batch)), quiet)


# --------------------------------------------------------------------------- bench
def _names(ctx, param, value):
    """Click callback: "a,b" -> ["a", "b"] (None stays None; given, at least one name)."""
    if value is None:
        return None
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise click.BadParameter(f"names no {param.name}: leave the option out for all of them")
    return names


@main.command()
@click.option("--backend", type=click.Choice(["cupy", "numba"]), default="cupy",
              show_default=True, help="Whose kernels to time against cuDNN.")
@click.option("--ops", callback=_names,
              help="Comma-separated ops to run: conv2d, conv_transpose2d, max_pool2d, "
                   "global_avg_pool2d (default: all).")
@click.option("--layers", callback=_names,
              help="Comma-separated layers or families, e.g. resnet50,depthwise_5x5_56 "
                   "(default: the whole suite; a bad name lists them).")
@click.option("--repeat", type=click.IntRange(min=1), default=None,
              help="Timed repetitions of each contender (default 30).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False),
              help="Write every result, with the device and versions, to this JSON file.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Write a bar chart of the ratios to cuDNN to this PNG file.")
@click.option("--plan", "plan_precision", type=click.Choice(PRECISIONS),
              help="Print the backend's conv launch plans for the suite at this precision "
                   "(tile, split-K, waves, fill, issued/useful MACs) and exit; needs no GPU.")
@click.option("--tiles", is_flag=True,
              help="Also time every tile the CuPy backend can run for each conv pass and "
                   "precision: the plan's tile against the fastest.")
def bench(backend, ops, layers, repeat, json_path, plot_path, plan_precision, tiles):
    """Time gpuconv's CUDA kernels against cuDNN (through PyTorch) on the GPU layer suite,
    after checking each result against cuDNN's. Prints ms, TFLOP/s or GB/s and
    x cuDNN = cuDNN time / our time (above 1: gpuconv is faster). Needs a CUDA device and
    a CUDA build of PyTorch; exits 1 if any result is wrong."""
    if plan_precision is not None:
        from gpuconv.benchmark import plans
        from gpuconv.benchmark.suite import GPU_SUITE, select
        rows = _run_report(lambda: plans.plan_rows(select(GPU_SUITE, layers, ops), plan_precision,
                                                   backend=backend))
        click.echo(plans.format_rows(rows) if rows else
                   "no conv layer chosen: only convolutions have launch plans")
        raise SystemExit(0 if all(r["ok"] for r in rows) else 1)
    from gpuconv.benchmark import BenchUnavailableError, cudnn as gpu
    try:
        code = _run_report(lambda: gpu.bench_command(backend, ops, layers,
                                                     repeat or gpu.DEFAULT_REPEAT, json_path,
                                                     plot_path, click.echo, tiles))
    except BenchUnavailableError as exc:
        raise click.ClickException(str(exc)) from None
    raise SystemExit(code)


# --------------------------------------------------------------------------- training
def _run_training(work, as_json: bool):
    """Run a gpuconv.training call with its messages on standard output, or standard error
    when the result is printed as JSON: bad input is a usage error (exit 2), a diverged or
    unavailable run or a missing optional package a plain error (exit 1), Ctrl-C in
    training says how to resume (exit 130)."""
    from gpuconv.backends import BackendUnavailableError
    from gpuconv.data import MissingPackageError
    from gpuconv.nn import TrainingDiverged
    from gpuconv.training import RunOutputError, TrainingInterrupted
    echo = (lambda text: click.echo(text, err=True)) if as_json else click.echo
    try:
        result = work(echo)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None
    except (FileNotFoundError, BackendUnavailableError, TrainingDiverged,
            MissingPackageError, RunOutputError) as exc:
        raise click.ClickException(str(exc)) from None
    except TrainingInterrupted as exc:
        click.echo(f"\n{exc}", err=True)
        raise SystemExit(130) from None
    if as_json:
        _print_json(result)


_DEVICE = click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                       show_default=True, help="Where the model runs (auto: cuda if available).")
_BACKEND = click.option("--backend", type=click.Choice(["numpy", "cupy", "numba"]), default=None,
                        help="Kernels for conv and pooling (default: numpy on cpu, cupy on cuda).")


@main.command()
@_DEVICE
@_BACKEND
@click.option("--model", default=None, type=click.Choice(["slides", "lenet", "allconv", "vgg"]),
              help="Built-in model (default: lenet; with --resume: the checkpoint's).")
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Directory of MNIST-style IDX files (default: Fashion-MNIST).")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help="Epochs (default: the model's recipe).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Batch size (default: the model's recipe).")
@click.option("--optimizer", type=click.Choice(["sgd", "adam"]), default=None,
              help="Optimiser (default: the model's recipe).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Peak learning rate of the cosine schedule (default: the recipe's).")
@click.option("--seed", type=click.IntRange(min=0), default=None,
              help="Seed of the whole run (default: 0; with --resume: the checkpoint's).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Directory for the model, checkpoints, metrics, pictures (default: a new "
                   "runs/<UTC time>, linked from runs/latest).")
@click.option("--overwrite", is_flag=True,
              help="Replace the files of a run already in the run's directory.")
@click.option("--resume", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Continue from a checkpoint.npz of an earlier run (in its directory, "
                   "unless --out says otherwise).")
@click.option("--graph/--no-graph", default=True, show_default=True,
              help="On cuda, replay each training step as one CUDA graph.")
@_JSON
def train(as_json, **options):
    """Train a CNN classifier on Fashion-MNIST with gpuconv's own kernels. A progress bar
    with ETA on a terminal, a line every few seconds otherwise; the files written are
    listed at the end."""
    from gpuconv.training import TrainOptions, train as run
    _run_training(lambda echo: run(TrainOptions(**options), echo=echo,
                                   progress=sys.stderr if as_json else None), as_json)


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.option("--data", type=click.Path(file_okay=False), default=None,
              help="Directory of MNIST-style IDX files (default: Fashion-MNIST).")
@_DEVICE
@_BACKEND
@_JSON
def evaluate(model, data, device, backend, as_json):
    """Test accuracy of a saved MODEL (.npz)."""
    from gpuconv.training import evaluate as run
    _run_training(lambda echo: run(model, data, device, backend, echo=echo), as_json)


@main.command()
@click.argument("model", type=click.Path(exists=True, dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--invert", is_flag=True,
              help="Invert dark-on-light photos (Fashion-MNIST items are light on black).")
@click.option("--top", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many classes to show per image.")
@_DEVICE
@_BACKEND
@_JSON
def predict(model, images, invert, top, device, backend, as_json):
    """The most likely classes of each of IMAGES (PNG, JPEG or IDX) under MODEL."""
    from gpuconv.training import predict as run
    _run_training(lambda echo: run(model, list(images), invert, top, device, backend,
                                   echo=echo), as_json)


if __name__ == "__main__":  # pragma: no cover
    main()
