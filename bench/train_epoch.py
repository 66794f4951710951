"""One training epoch of a built-in model with gpuconv and with PyTorch: same
architecture, batch size, optimiser and data (already in memory), timed in the same
run, alternating the columns so machine noise hits all alike.

    python bench/train_epoch.py                       # lenet on the CPU (PyTorch CPU)
    python bench/train_epoch.py --device cuda         # the GPU columns below
    python bench/train_epoch.py --images 6000 --repeat 3 --json out.json

Columns: gpuconv (on the GPU twice: its training step replayed as a CUDA graph, and
eager with ``graph = False``) and PyTorch eager (+ cuDNN on the GPU); on the GPU also
``torch.compile(mode="reduce-overhead")`` of the same model. Reports seconds per epoch
(median over --repeat epochs each) and the ratio gpuconv / PyTorch eager (below 1:
gpuconv is faster). ``--device cuda`` without a usable GPU prints why and skips.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gpuconv  # noqa: E402
from gpuconv import nn, parallel  # noqa: E402
from gpuconv._files import atomic_write  # noqa: E402
from gpuconv.data import load_dataset, to_float_images  # noqa: E402
from gpuconv.backends import numpy_backend  # noqa: E402
from gpuconv.nn import zoo  # noqa: E402


def torch_twin(model: nn.Sequential, torch):
    """The same layers as PyTorch modules (weights are not copied: only speed matters here)."""
    t, modules = torch.nn, []
    for layer in model.layers:
        c_in = layer.input_shape[0]
        if isinstance(layer, nn.Conv2D):
            modules.append(t.Conv2d(c_in, layer.filters, layer.kernel_size, layer.strides,
                                    layer.padding, layer.dilation_rate, layer.groups,
                                    layer.use_bias))
        elif isinstance(layer, nn.BatchNorm2D):
            modules.append(t.BatchNorm2d(c_in, layer.epsilon, 1 - layer.momentum))
        elif isinstance(layer, nn.MaxPool2D):
            modules.append(t.MaxPool2d(layer.pool_size, layer.strides, layer.padding))
        elif isinstance(layer, nn.Dense):
            modules.append(t.Linear(c_in, layer.units, layer.use_bias))
        elif isinstance(layer, nn.Dropout):
            modules.append(t.Dropout(layer.rate))
        elif isinstance(layer, nn.GlobalAveragePooling2D):
            modules += [t.AdaptiveAvgPool2d(1), t.Flatten()]
        elif isinstance(layer, (nn.ReLU, nn.Flatten)):
            modules.append(t.ReLU() if isinstance(layer, nn.ReLU) else t.Flatten())
        elif isinstance(layer, (nn.RandomFlip, nn.RandomShift)):
            modules.append(torch_augmentation(layer, torch))
        else:
            raise ValueError(f"no PyTorch twin for {type(layer).__name__}")
    return t.Sequential(*modules)


def torch_augmentation(layer, torch):
    """RandomFlip / RandomShift as PyTorch modules doing the same work on the same device
    (training mode only): a per-image mirror, or a zero-padded random crop."""

    class Augmentation(torch.nn.Module):
        def forward(self, x):
            if not self.training:
                return x
            n, c, h, w = x.shape
            if isinstance(layer, nn.RandomFlip):
                flip = torch.rand(n, device=x.device) < 0.5
                return torch.where(flip[:, None, None, None], x.flip(-1), x)
            s = layer.max_shift
            padded = torch.nn.functional.pad(x, (s, s, s, s))
            dy = torch.randint(0, 2 * s + 1, (n,), device=x.device)
            dx = torch.randint(0, 2 * s + 1, (n,), device=x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
            return padded[torch.arange(n, device=x.device)[:, None, None, None],
                          torch.arange(c, device=x.device)[None, :, None, None], rows, cols]

    return Augmentation()


def _blas_kernels():
    """NumPy's BLAS libraries, kernels and thread counts (threadpoolctl), or None."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    return [{k: p.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
            for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]


def gpuconv_epoch(model, x, y, batch_size) -> float:
    """One epoch of ``fit`` (with its own graph setting), synchronised at the end."""
    start = time.perf_counter()
    model.epoch = 0  # every timed epoch is epoch 1 of an endless run
    model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)
    if model.device.kind == "cuda":
        model.device.xp.cuda.Device().synchronize()
    return time.perf_counter() - start


def torch_epoch(twin, optimizer, x, y, batch_size, torch, device) -> float:
    start = time.perf_counter()
    order = torch.randperm(len(x), device=device)
    compiled = hasattr(twin, "_orig_mod")
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        if compiled:  # a new step for the CUDA graph trees of "reduce-overhead"
            torch.compiler.cudagraph_mark_step_begin()
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(twin(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def torch_optimizer(model_name: str, twin, torch):
    recipe = zoo.recipe(model_name)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(twin.parameters(), lr=recipe.learning_rate)
    return torch.optim.SGD(twin.parameters(), lr=recipe.learning_rate, momentum=0.9,
                           nesterov=True)


def cuda_unavailable() -> str | None:
    """Why ``--device cuda`` cannot run here, or None."""
    from gpuconv.backends import unavailable_reason
    return unavailable_reason("cupy")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet", choices=sorted(zoo.MODELS))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--data", default=None,
                        help="directory of MNIST-style IDX files (default: Fashion-MNIST)")
    parser.add_argument("--images", type=int, default=None, help="training images (default all)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs per column")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.device == "cuda" and (reason := cuda_unavailable()) is not None:
        print(f"skipped: --device cuda needs CuPy on a GPU ({reason})")
        return 0
    import torch
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    ds = load_dataset(args.data)
    n = args.images or len(ds.x_train)
    x, y = to_float_images(ds.x_train[:n]), ds.y_train[:n].astype(np.int64)
    batch = args.batch_size or zoo.recipe(args.model).batch_size

    def gpuconv_model(graph: bool):
        model = zoo.make_model(args.model).build((1, 28, 28), args.device, 0)
        model.compile(zoo.make_training_optimizer(args.model, steps_per_epoch=10 ** 9, epochs=1))
        model.graph = graph
        return model

    def torch_column(compile_mode=None):
        twin = torch_twin(gpuconv_model(False), torch).to(args.device)
        opt = torch_optimizer(args.model, twin, torch)
        module = twin if compile_mode is None else torch.compile(twin, mode=compile_mode)
        return lambda: torch_epoch(module, opt, xt, yt, batch, torch, args.device)

    probe = gpuconv_model(False)
    xd, yd = probe.device.asarray(x), probe.device.xp.asarray(y)
    xt, yt = torch.tensor(x, device=args.device), torch.tensor(y, device=args.device)
    columns = {}
    if args.device == "cuda":
        graph_model = gpuconv_model(True)
        columns["gpuconv_graph"] = lambda: gpuconv_epoch(graph_model, xd, yd, batch)
    columns["gpuconv_eager"] = lambda: gpuconv_epoch(probe, xd, yd, batch)
    columns["torch_eager"] = torch_column()
    if args.device == "cuda":
        columns["torch_compile_reduce_overhead"] = torch_column("reduce-overhead")

    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    times = {name: [] for name in columns}

    def summary() -> dict:
        """The figures of the rounds timed so far (the first, a warm-up, dropped)."""
        seconds = {name: statistics.median(t[1:]) for name, t in times.items()}
        ours = seconds.get("gpuconv_graph", seconds["gpuconv_eager"])
        theirs = seconds["torch_eager"]
        return {
            "model": args.model, "device": probe.device.describe(), "images": n,
            "batch_size": batch, "seconds": seconds,
            "samples": {name: t[1:] for name, t in times.items()},
            "gpuconv_seconds": ours, "torch_seconds": theirs, "ratio": ours / theirs,
            "ratios_to_torch_eager": {name: s / theirs for name, s in seconds.items()},
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "gpuconv_threads": parallel.num_threads(), "blas": _blas_kernels(),
            "gpuconv_cpu_engine": numpy_backend.cpu_engine(),
            "gpuconv": gpuconv.__version__, "numpy": np.__version__,
            "machine": platform.processor() or platform.machine(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "repeat": len(times["torch_eager"]) - 1,
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        }

    for round_ in range(args.repeat + 1):  # the first round warms every column up
        for name, run in columns.items():
            times[name].append(run())
        if round_ and args.json:  # after every round: a run cut short keeps what it timed
            text = (json.dumps(summary(), indent=2) + "\n").encode()
            atomic_write(args.json, lambda f: f.write(text))
    report = summary()
    seconds, theirs = report["seconds"], report["torch_seconds"]
    cells = ", ".join(f"{name} {s:.2f} s/epoch ({s / theirs:.2f}x)" for name, s in seconds.items())
    print(f"{args.model} on {report['device']}, {n:,} images, batch {batch}: {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
