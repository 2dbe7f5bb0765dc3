"""Per-op overhead: the time of ``a + b`` on tiny float32 tensors, minigrad vs PyTorch.

    python benchmarks/bench_overhead.py
    python benchmarks/bench_overhead.py --size 4 --number 20000 --repeats 15

On tensors of a few values the arithmetic is free, so what is timed is everything around it:
the Python operator, type promotion, ``Function.apply`` and wrapping the result. Both with and
without a graph (``requires_grad=True`` on one input). Each figure is the median over
``--repeats`` timeit runs of ``--number`` additions, in microseconds per addition, timed with
the process's CPU time (``time.process_time``) so that other programs on a shared machine do
not inflate it; both libraries run on one thread.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import timeit

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def median_microseconds(statement, number, repeats):
    runs = timeit.repeat(statement, number=number, repeat=repeats, timer=time.process_time)
    return statistics.median(runs) / number * 1e6


def cases(size):
    """(name, minigrad a + b, torch a + b), each a zero-argument callable."""
    import numpy as np
    import torch

    import minigrad as mg

    values = np.arange(size, dtype=np.float32)
    mg_a, mg_b = mg.tensor(values), mg.tensor(values)
    mg_w = mg.tensor(values, requires_grad=True)
    torch_a, torch_b = torch.tensor(values), torch.tensor(values)
    torch_w = torch.tensor(values, requires_grad=True)
    return [
        ("a + b (no graph)", lambda: mg_a + mg_b, lambda: torch_a + torch_b),
        ("w + b (records the graph)", lambda: mg_w + mg_b, lambda: torch_w + torch_b),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4, help="values per tensor")
    parser.add_argument("--number", type=int, default=20000, help="additions per timeit run")
    parser.add_argument("--repeats", type=int, default=15, help="timeit runs; the median is reported")
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO_ROOT)
    import torch
    torch.set_num_threads(1)
    print(f"float32 tensors of {args.size} values; median of {args.repeats} x {args.number} additions")
    print(f"{'case':<28}{'minigrad us':>13}{'PyTorch us':>12}{'ratio':>8}")
    for name, minigrad_add, torch_add in cases(args.size):
        ours = median_microseconds(minigrad_add, args.number, args.repeats)
        theirs = median_microseconds(torch_add, args.number, args.repeats)
        print(f"{name:<28}{ours:>13.2f}{theirs:>12.2f}{ours / theirs:>8.2f}")


if __name__ == "__main__":
    main()
