"""Host synchronisations and device calls of a CUDA training step, counted on the CuPy stand-in.

    python benchmarks/count_device_work.py                 # LeNet, batch 512, 3 steps
    python benchmarks/count_device_work.py --batch-size 64 --steps 5 --json

On a GPU every host synchronisation stalls the CPU until the device queue drains, and every
device call is at least one kernel launch (~5-10 us of CPU time each): a step of a small
network is bound by these counts, not by FLOPs. This script runs ``train.train_one_epoch`` on
``device="cuda"`` with ``tests/fake_cupy.py`` standing in for CuPy (no GPU needed) and prints,
per training step: the host syncs (and where they come from) and the device calls, the latter
also for one bare step (zero_grad, forward, backward, optimizer step) without the epoch loop.
Targets (issue 10): at most 2 host syncs per train_one_epoch step, at most 350 device calls
per LeNet step at batch 512.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO_ROOT, "tests"))  # fake_cupy lives with the tests
sys.path.insert(0, REPO_ROOT)
os.environ["MINIGRAD_FAKE_CUDA"] = "1"

import fake_cupy  # noqa: E402
import numpy as np  # noqa: E402

import minigrad as mg  # noqa: E402
from minigrad import models, nn, optim, train  # noqa: E402

TARGET_SYNCS_PER_STEP, TARGET_CALLS_PER_STEP = 2, 350


def lenet_and_batches(batch_size, steps, image_size=28, channels=1):
    mg.manual_seed(0)
    model = models.LeNet(channels, 10, image_size).to("cuda")
    rng = np.random.default_rng(0)
    batches = [(mg.tensor(rng.standard_normal((batch_size, channels, image_size, image_size)).astype(np.float32),
                          device="cuda"),
                mg.tensor(rng.integers(0, 10, batch_size), device="cuda")) for _ in range(steps)]
    return model, batches


def count(batch_size, steps):
    """Counts of an epoch of 1 step and of ``steps`` steps: their difference is what one more step
    costs, the rest is per epoch (the accuracy, read once at the end)."""
    model, batches = lenet_and_batches(batch_size, steps)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train.train_one_epoch(model, criterion, optimizer, batches[:1])  # warm-up: optimizer state exists
    with fake_cupy.counting() as one_step:
        train.train_one_epoch(model, criterion, optimizer, batches[:1])
    with fake_cupy.counting() as epoch:
        train.train_one_epoch(model, criterion, optimizer, batches)
    inputs, targets = batches[0]
    with fake_cupy.counting() as bare:
        optimizer.zero_grad()
        criterion(model(inputs), targets).backward()
        optimizer.step()
    more_steps = max(steps - 1, 1)
    return dict(batch_size=batch_size, steps=steps,
                host_syncs_per_step=(epoch.host_syncs - one_step.host_syncs) / more_steps,
                host_syncs_per_epoch=one_step.host_syncs - (epoch.host_syncs - one_step.host_syncs) / more_steps,
                device_calls_per_step=(epoch.device_calls - one_step.device_calls) / more_steps,
                sync_reasons_per_epoch=epoch.sync_reasons,
                device_calls_bare_step=bare.device_calls, host_syncs_bare_step=bare.host_syncs,
                device_calls_bare_step_by_name=dict(sorted(bare.calls_by_name.items(), key=lambda kv: -kv[1])))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=3, help="steps of the counted epoch (default 3)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = count(args.batch_size, args.steps)
    if args.json:
        print(json.dumps(report))
        return report
    print(f"LeNet, batch {report['batch_size']}, device cuda on fake_cupy, epochs of 1 and {report['steps']} steps")
    print(f"  host syncs per train_one_epoch step:   {report['host_syncs_per_step']:.2f}"
          f"  (target <= {TARGET_SYNCS_PER_STEP}), + {report['host_syncs_per_epoch']:.2f} per epoch")
    print(f"    by reason, epoch of {report['steps']} steps: {report['sync_reasons_per_epoch']}")
    print(f"  device calls per train_one_epoch step: {report['device_calls_per_step']:.1f}")
    print(f"  device calls of one bare step:         {report['device_calls_bare_step']}"
          f"  (target <= {TARGET_CALLS_PER_STEP}); host syncs: {report['host_syncs_bare_step']}")
    print(f"    by function: {report['device_calls_bare_step_by_name']}")
    return report


if __name__ == "__main__":
    main()
