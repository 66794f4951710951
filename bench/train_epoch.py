"""One training epoch of a built-in model with gpuconv and with PyTorch: same
architecture, batch size, optimiser and data (already in memory), timed in the same
run, alternating the two so machine noise hits both alike.

    python bench/train_epoch.py                       # lenet on the CPU (PyTorch CPU)
    python bench/train_epoch.py --device cuda         # gpuconv's CuPy backend vs cuDNN
    python bench/train_epoch.py --images 6000 --repeat 3 --json out.json

Reports seconds per epoch (median over --repeat epochs each) and the ratio
gpuconv / PyTorch (below 1: gpuconv is faster).
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
from gpuconv.data import load_dataset, to_float_images  # noqa: E402
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
        else:
            raise ValueError(f"no PyTorch twin for {type(layer).__name__} (augmentation layers "
                             "are left out of the speed comparison: pick another model)")
    return t.Sequential(*modules)


def _blas_kernels():
    """NumPy's BLAS libraries, kernels and thread counts (threadpoolctl), or None."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    return [{k: p.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
            for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]


def gpuconv_epoch(model, x, y, batch_size) -> float:
    start = time.perf_counter()
    model.epoch = 0  # every timed epoch is epoch 1 of an endless run
    model.fit(x, y, epochs=1, batch_size=batch_size, verbose=0)
    if model.device.kind == "cuda":
        model.device.xp.cuda.Device().synchronize()
    return time.perf_counter() - start


def torch_epoch(twin, optimizer, x, y, batch_size, torch, device) -> float:
    start = time.perf_counter()
    order = torch.randperm(len(x), device=device)
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(twin(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet", choices=sorted(zoo.MODELS))
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--data", default=None,
                        help="directory of MNIST-style IDX files (default: Fashion-MNIST)")
    parser.add_argument("--images", type=int, default=None, help="training images (default all)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="timed epochs per library")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    import torch
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    ds = load_dataset(args.data)
    n = args.images or len(ds.x_train)
    x, y = to_float_images(ds.x_train[:n]), ds.y_train[:n].astype(np.int64)
    batch = args.batch_size or zoo.recipe(args.model).batch_size

    model = zoo.make_model(args.model).build((1, 28, 28), args.device, 0)
    model.compile(zoo.make_training_optimizer(args.model, steps_per_epoch=10 ** 9, epochs=1))
    xd, yd = model.device.asarray(x), model.device.xp.asarray(y)
    twin = torch_twin(model, torch).to(args.device)
    opt = torch.optim.Adam(twin.parameters(), lr=zoo.recipe(args.model).learning_rate) \
        if zoo.recipe(args.model).optimizer == "adam" else \
        torch.optim.SGD(twin.parameters(), lr=zoo.recipe(args.model).learning_rate, momentum=0.9,
                        nesterov=True)
    xt, yt = torch.tensor(x, device=args.device), torch.tensor(y, device=args.device)

    ours, theirs = [], []
    for _ in range(args.repeat + 1):  # the first round warms both up and is dropped
        ours.append(gpuconv_epoch(model, xd, yd, batch))
        theirs.append(torch_epoch(twin, opt, xt, yt, batch, torch, args.device))
    ours, theirs = statistics.median(ours[1:]), statistics.median(theirs[1:])
    report = {
        "model": args.model, "device": model.device.describe(), "images": n, "batch_size": batch,
        "gpuconv_seconds": ours, "torch_seconds": theirs, "ratio": ours / theirs,
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "gpuconv_threads": parallel.num_threads(), "blas": _blas_kernels(),
        "gpuconv": gpuconv.__version__, "numpy": np.__version__,
        "machine": platform.processor() or platform.machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "repeat": args.repeat,
        "load_average_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    print(f"{args.model} on {report['device']}, {n:,} images, batch {batch}: "
          f"gpuconv {ours:.2f} s/epoch, PyTorch {theirs:.2f} s/epoch, ratio {ours / theirs:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
