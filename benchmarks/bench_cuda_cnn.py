"""Training-step throughput of a wider CIFAR-10 CNN: minigrad vs PyTorch, measured in the same run.

    NVIDIA_TF32_OVERRIDE=0 python benchmarks/bench_cuda_cnn.py --device cuda --batch-size 256
    python benchmarks/bench_cuda_cnn.py --device cpu --batch-size 8 --steps 10   # a smoke run

The network is three (conv 3x3 same-padding, relu, maxpool 2) blocks of 64, 128 and 256
channels on 32x32x3 images, then Linear(4096, 10); cross-entropy, SGD lr 0.01 momentum 0.9.
It is built from each framework's ``nn`` (minigrad's mirrors PyTorch's names). Each framework
runs in its own subprocess: warm-up steps, then the median of ``--steps`` timed steps, each
ending in ``loss.item()`` so the GPU has really finished. TF32 is off in PyTorch (and
``NVIDIA_TF32_OVERRIDE=0`` turns it off for cuBLAS/cuDNN everywhere), so both compute in float32.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from bench_lenet import random_batch, training_step  # the same batch and step as the LeNet benchmark

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEARNING_RATE, MOMENTUM, NUM_CLASSES, CHANNELS = 0.01, 0.9, 10, (64, 128, 256)


def wide_cnn(nn):
    """Three conv blocks (64, 128, 256 channels), each halving the image: 32 -> 4."""
    layers, in_channels = [], 3
    for out_channels in CHANNELS:
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        in_channels = out_channels
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(CHANNELS[-1] * 4 * 4, NUM_CLASSES))


def training_flops_per_image():
    """2 x multiply-adds of one forward pass, x3 for forward + backward."""
    macs, side, in_channels = 0, 32, 3
    for out_channels in CHANNELS:
        macs += out_channels * side * side * in_channels * 9
        side, in_channels = side // 2, out_channels
    return 3 * 2 * (macs + CHANNELS[-1] * 16 * NUM_CLASSES)


def step_fn(framework, batch_size, device):
    """One SGD step of the wide CNN in ``framework`` ("minigrad" or "torch"), on a fixed batch."""
    import numpy as np
    if framework == "minigrad":
        sys.path.insert(0, REPO_ROOT)
        import minigrad as library
        from minigrad import nn, optim
    else:
        import torch as library
        from torch import nn, optim
        library.backends.cuda.matmul.allow_tf32 = False  # float32 products, as CuPy's
        library.backends.cudnn.allow_tf32 = False
    library.manual_seed(0)
    model = wide_cnn(nn).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    inputs, targets = (library.tensor(array, device=device) for array in random_batch(np, batch_size))

    return training_step(model, criterion, optimizer, inputs, targets)


def run_worker(framework, batch_size, device, warmup, steps):
    step = step_fn(framework, batch_size, device)
    first_loss = step()
    for _ in range(warmup - 1):
        step()
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    return {"framework": framework, "median_step_s": median, "images_per_s": batch_size / median,
            "first_loss": first_loss}


def measure(args):
    results = {}
    for framework in ("torch", "minigrad"):
        command = [sys.executable, os.path.abspath(__file__), "--worker", framework, "--device", args.device,
                   "--batch-size", str(args.batch_size), "--warmup", str(args.warmup), "--steps", str(args.steps)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
        if done.returncode:
            raise SystemExit(f"{framework} worker failed:\n{done.stderr}")
        results[framework] = json.loads(done.stdout.strip().splitlines()[-1])
    mg, pt = results["minigrad"], results["torch"]
    flops = training_flops_per_image()
    return {"device": args.device, "batch_size": args.batch_size, "steps": args.steps,
            "minigrad_images_per_s": mg["images_per_s"], "torch_images_per_s": pt["images_per_s"],
            "ratio": mg["images_per_s"] / pt["images_per_s"],
            "minigrad_tflops": mg["images_per_s"] * flops / 1e12, "torch_tflops": pt["images_per_s"] * flops / 1e12,
            "first_loss_minigrad": mg["first_loss"], "first_loss_torch": pt["first_loss"],
            "tf32_override": os.environ.get("NVIDIA_TF32_OVERRIDE")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (CuPy vs torch CUDA) or cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps; the median is reported (default 20)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per framework before giving up")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", choices=["minigrad", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.batch_size, args.device, max(args.warmup, 1), args.steps)))
        return
    report = measure(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"wide CIFAR CNN {CHANNELS}, batch {report['batch_size']}, device {report['device']}, median of "
          f"{report['steps']} steps, NVIDIA_TF32_OVERRIDE={report['tf32_override']}")
    print(f"  minigrad {report['minigrad_images_per_s']:.0f} img/s ({report['minigrad_tflops']:.2f} TFLOP/s), "
          f"torch {report['torch_images_per_s']:.0f} img/s ({report['torch_tflops']:.2f} TFLOP/s), "
          f"ratio {report['ratio']:.2f}")
    print(f"  first-step loss: minigrad {report['first_loss_minigrad']:.4f}, torch {report['first_loss_torch']:.4f}")


if __name__ == "__main__":
    main()
