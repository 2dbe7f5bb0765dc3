"""Where the time of a LeNet training step goes: each op's forward and backward, minigrad vs PyTorch.

    python benchmarks/bench_ops.py                    # batch 512, CPU, 2 threads
    python benchmarks/bench_ops.py --batch-size 128 --json

Shapes are those of the seed LeNet (see bench_lenet.py). Forward is timed alone; backward is
timed alone too (the forward that builds its graph runs untimed just before). Each figure is
the median of ``--repeats`` runs, in milliseconds. OpenBLAS takes its thread count from
OPENBLAS_NUM_THREADS (both cores by default).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lenet_op_cases(batch_size):
    """(name, input shapes, minigrad function, torch function): the ops of one LeNet step."""
    import minigrad.nn.functional as F
    import torch.nn.functional as torch_F

    def op(fn, **options):
        return lambda *tensors: fn(*tensors, **options)

    def cross_entropy(module):
        return lambda logits: module.cross_entropy(logits, labels_for(logits))

    b = batch_size
    return [
        ("conv1 3->6 5x5 (input is data)", [(b, 3, 32, 32), (6, 3, 5, 5), (6,)], F.conv2d, torch_F.conv2d, (1, 2)),
        ("relu1", [(b, 6, 28, 28)], F.relu, torch_F.relu, (0,)),
        ("maxpool1 2x2", [(b, 6, 28, 28)], op(F.max_pool2d, kernel_size=2), op(torch_F.max_pool2d, kernel_size=2), (0,)),
        ("conv2 6->16 5x5", [(b, 6, 14, 14), (16, 6, 5, 5), (16,)], F.conv2d, torch_F.conv2d, (0, 1, 2)),
        ("maxpool2 2x2", [(b, 16, 10, 10)], op(F.max_pool2d, kernel_size=2), op(torch_F.max_pool2d, kernel_size=2), (0,)),
        ("linear 400->120", [(b, 400), (120, 400), (120,)], F.linear, torch_F.linear, (0, 1, 2)),
        ("linear 84->10", [(b, 84), (10, 84), (10,)], F.linear, torch_F.linear, (0, 1, 2)),
        ("cross-entropy", [(b, 10)], cross_entropy(F), cross_entropy(torch_F), (0,)),
    ]


def labels_for(logits):
    """Fixed class labels for a batch of logits, as a tensor of the logits' framework."""
    import numpy as np
    labels = np.arange(logits.shape[0], dtype=np.int64) % logits.shape[1]
    if type(logits).__module__.startswith("torch"):
        import torch
        return torch.from_numpy(labels).to(logits.device)
    import minigrad as mg
    return mg.tensor(labels, device=logits.device)


def chain_inputs(shapes, requires_grad_positions, make_tensor):
    import numpy as np
    generator = np.random.default_rng(0)
    arrays = [generator.standard_normal(shape).astype(np.float32) for shape in shapes]
    return [make_tensor(array, i in requires_grad_positions) for i, array in enumerate(arrays)]


def time_op(fn, inputs, repeats, sync):
    """Median forward and backward milliseconds of ``fn(*inputs)``."""
    forward_s, backward_s = [], []
    for _ in range(repeats + 2):  # the first two runs warm up
        for tensor in inputs:
            tensor.grad = None
        start = time.perf_counter()
        out = fn(*inputs)
        sync()
        forward_s.append(time.perf_counter() - start)
        loss_grad = out.detach() * 0 + 1  # d(sum(out))/d(out): same shape, same framework
        start = time.perf_counter()
        out.backward(loss_grad)
        sync()
        backward_s.append(time.perf_counter() - start)
    return 1e3 * statistics.median(forward_s[2:]), 1e3 * statistics.median(backward_s[2:])


def measure(args):
    sys.path.insert(0, REPO_ROOT)
    from bench_lenet import wait_until_idle
    import minigrad as mg
    import torch
    from minigrad.backend import parse_device, xp_for

    torch.set_num_threads(args.threads)
    device = args.device
    torch_device = "cuda" if device.startswith("cuda") else "cpu"

    def sync():  # GPU work is asynchronous: wait for it before reading the clock
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            xp_for(parse_device(device)).cuda.Device().synchronize()

    idle_before = wait_until_idle(args.wait_for_idle)
    cases = lenet_op_cases(args.batch_size)
    # Every minigrad op first, then every torch op: torch's worker threads keep spinning for a
    # while after each of its ops and would steal a core from NumPy's BLAS if interleaved.
    mg_times = [time_op(mg_fn, chain_inputs(shapes, grad_positions,
                                            lambda a, g: mg.tensor(a, requires_grad=g, device=device)),
                        args.repeats, sync)
                for _, shapes, mg_fn, _, grad_positions in cases]
    torch_times = [time_op(torch_fn, chain_inputs(shapes, grad_positions,
                                                  lambda a, g: torch.tensor(a, requires_grad=g, device=torch_device)),
                           args.repeats, sync)
                   for _, shapes, _, torch_fn, grad_positions in cases]
    rows = []
    for (name, *_), (mg_forward, mg_backward), (pt_forward, pt_backward) in zip(cases, mg_times, torch_times):
        rows.append({"op": name, "minigrad_forward_ms": mg_forward, "minigrad_backward_ms": mg_backward,
                     "torch_forward_ms": pt_forward, "torch_backward_ms": pt_backward,
                     "ratio_of_times": (mg_forward + mg_backward) / (pt_forward + pt_backward)})
    return {"device": device, "batch_size": args.batch_size, "threads": args.threads, "repeats": args.repeats,
            "idle_before": idle_before, "load_average_1min": os.getloadavg()[0], "ops": rows}


def print_table(report):
    print(f"LeNet ops, batch {report['batch_size']}, device={report['device']}, threads={report['threads']}, "
          f"median of {report['repeats']} (ms); cores {report['idle_before']:.0%} idle before, "
          f"load average {report['load_average_1min']:.1f}")
    print(f"{'op':<32} {'mg fwd':>8} {'mg bwd':>8} {'pt fwd':>8} {'pt bwd':>8} {'mg/pt time':>11}")
    for row in report["ops"]:
        print(f"{row['op']:<32} {row['minigrad_forward_ms']:>8.2f} {row['minigrad_backward_ms']:>8.2f} "
              f"{row['torch_forward_ms']:>8.2f} {row['torch_backward_ms']:>8.2f} {row['ratio_of_times']:>11.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (OpenBLAS: OPENBLAS_NUM_THREADS)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--wait-for-idle", type=float, default=0.0, metavar="SECONDS",
                        help="on a shared machine, wait up to SECONDS for the cores to be 90%% idle first")
    parser.add_argument("--json", action="store_true", help="print machine-readable results instead of a table")
    args = parser.parse_args(argv)
    report = measure(args)
    print(json.dumps(report, indent=2)) if args.json else print_table(report)


if __name__ == "__main__":
    main()
