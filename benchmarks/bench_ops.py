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
    """(name, input shapes, minigrad fn, torch fn, inputs needing a gradient, input comes from a conv/pool)."""
    import minigrad.nn.functional as F
    import torch.nn.functional as torch_F

    def op(fn, **options):
        return lambda *tensors: fn(*tensors, **options)

    def cross_entropy(module):
        return lambda logits: module.cross_entropy(logits, labels_for(logits))

    b = batch_size
    pool = (op(F.max_pool2d, kernel_size=2), op(torch_F.max_pool2d, kernel_size=2))
    return [
        ("conv1 3->6 5x5 (input is data)", [(b, 3, 32, 32), (6, 3, 5, 5), (6,)], F.conv2d, torch_F.conv2d,
         (1, 2), False),
        ("relu1", [(b, 6, 28, 28)], F.relu, torch_F.relu, (0,), True),
        ("maxpool1 2x2", [(b, 6, 28, 28)], *pool, (0,), True),
        ("conv2 6->16 5x5", [(b, 6, 14, 14), (16, 6, 5, 5), (16,)], F.conv2d, torch_F.conv2d, (0, 1, 2), True),
        ("maxpool2 2x2", [(b, 16, 10, 10)], *pool, (0,), True),
        ("linear 400->120", [(b, 400), (120, 400), (120,)], F.linear, torch_F.linear, (0, 1, 2), False),
        ("linear 84->10", [(b, 84), (10, 84), (10,)], F.linear, torch_F.linear, (0, 1, 2), False),
        ("cross-entropy", [(b, 10)], cross_entropy(F), cross_entropy(torch_F), (0,), False),
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


def random_arrays(shapes):
    import numpy as np
    generator = np.random.default_rng(0)
    return [generator.standard_normal(shape).astype(np.float32) for shape in shapes]


def minigrad_inputs(shapes, grad_positions, from_conv_or_pool, device):
    """Inside the network a conv/pool/relu receives the batch-last view its predecessor made."""
    import minigrad as mg
    from minigrad.backend import to_device
    from minigrad.ops.layout import batch_first, batch_last
    arrays = [to_device(array, mg.backend.parse_device(device)) for array in random_arrays(shapes)]
    if from_conv_or_pool:
        arrays[0] = batch_first(batch_last(arrays[0]))
    return [mg.Tensor(array, requires_grad=i in grad_positions) for i, array in enumerate(arrays)]


def torch_inputs(shapes, grad_positions, device):
    import torch
    return [torch.tensor(array, requires_grad=i in grad_positions, device=device)
            for i, array in enumerate(random_arrays(shapes))]


def minigrad_backward(out, grad, inputs):
    # A layer inside a network hands its input gradient on; it never pays for accumulating into
    # a leaf's .grad (for a batch-last gradient, a transposing copy). So an op that is a single
    # Function (conv, pool, relu, cross-entropy) is timed by that Function's own backward;
    # linear (matmul, transpose, add) by the public backward().
    if out._fn.__class__.__name__ in SINGLE_FUNCTION_OPS:
        out._fn.backward(grad.array)
    else:
        out.backward(grad)


SINGLE_FUNCTION_OPS = {"Conv2d", "MaxPool2d", "ReLU", "CrossEntropy"}


def torch_backward(out, grad, inputs):
    import torch
    torch.autograd.grad(out, [t for t in inputs if t.requires_grad], grad)  # no accumulation into .grad


def time_op(fn, inputs, backward, repeats, sync):
    """Median forward and backward milliseconds of ``fn(*inputs)``."""
    forward_s, backward_s = [], []
    for _ in range(repeats + 2):  # the first two runs warm up
        for tensor in inputs:
            tensor.grad = None
        start = time.perf_counter()
        out = fn(*inputs)
        sync()
        forward_s.append(time.perf_counter() - start)
        out_grad = out.detach() * 0 + 1  # d(sum(out))/d(out), in out's own layout and framework
        start = time.perf_counter()
        backward(out, out_grad, inputs)
        sync()
        backward_s.append(time.perf_counter() - start)
    return 1e3 * statistics.median(forward_s[2:]), 1e3 * statistics.median(backward_s[2:])


def measure(args):
    sys.path.insert(0, REPO_ROOT)
    from bench_lenet import wait_until_idle
    import minigrad as mg
    import torch
    from minigrad import parallel
    from minigrad.backend import keep_freed_host_memory_for_reuse, parse_device, xp_for

    # As `python -m minigrad train` does: glibc keeps freed activation-sized blocks for reuse
    # (backend.py says why). Process-wide: PyTorch's ops in this process run with it too.
    # MINIGRAD_KEEP_FREED_MEMORY=0 turns it off.
    keep_freed_host_memory_for_reuse()

    torch.set_num_threads(args.threads)
    parallel.num_threads = args.threads  # minigrad's own threads (MINIGRAD_NUM_THREADS)
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
    mg_times = [time_op(mg_fn, minigrad_inputs(shapes, grads, from_conv, device), minigrad_backward,
                        args.repeats, sync)
                for _, shapes, mg_fn, _, grads, from_conv in cases]
    torch_times = [time_op(torch_fn, torch_inputs(shapes, grads, torch_device), torch_backward, args.repeats, sync)
                   for _, shapes, _, torch_fn, grads, _ in cases]
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
    parser.add_argument("--threads", type=int, default=2, help="threads for torch and minigrad (OpenBLAS: OPENBLAS_NUM_THREADS)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--wait-for-idle", type=float, default=0.0, metavar="SECONDS",
                        help="on a shared machine, wait up to SECONDS for the cores to be 90%% idle first")
    parser.add_argument("--json", action="store_true", help="print machine-readable results instead of a table")
    args = parser.parse_args(argv)
    report = measure(args)
    print(json.dumps(report, indent=2)) if args.json else print_table(report)


if __name__ == "__main__":
    main()
