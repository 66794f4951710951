"""The ``gpuconv`` command: argument plumbing only; the work is in gpuconv.report and
gpuconv.demo. ``train`` and ``bench`` come in later releases."""

from __future__ import annotations

import click

from gpuconv import __version__

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
    """Call a gpuconv.report function; its ValueError/TypeError becomes a usage error (exit 2)."""
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
    with PyTorch semantics (NumPy backend; CUDA backends in later releases)."""


@main.command()
def info():
    """Versions, each backend's availability (and why not), and CUDA devices."""
    from gpuconv.report import environment_lines
    click.echo("\n".join(environment_lines()))


@main.command()
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the random integer upstream gradient of the 2-channel example.")
def demo(seed):
    """Run the slides' worked examples (2-channel convolution, 1-D correlation vs true
    convolution) forward and backward, laid out as the slides print them."""
    from gpuconv.demo import run
    result = run(seed)
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


if __name__ == "__main__":  # pragma: no cover
    main()
