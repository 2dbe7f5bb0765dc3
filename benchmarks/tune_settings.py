"""Compare minigrad settings on the seed LeNet step, alternating them step by step in one process.

    python benchmarks/tune_settings.py --batch-size 128 \
        "backend.conv_block_elements = lambda xp: 256 * 1024" \
        "backend.conv_block_elements = lambda xp: 1024 * 1024"

Each argument is a Python statement run (with ``minigrad``, ``backend`` and ``parallel`` in
scope) before every step of its setting, so each must set everything it changes; the settings
take turns, forward then reverse order, so a slow minute of a shared machine hits all of them
alike (the same statement twice is an A/A check of the noise). On the VM of RESULTS.md the same
code's step time moves by 20-40% between minutes, which drowns a 5% difference measured by
separate processes; alternating steps resolves it. Prints the median and the first quartile of
each setting's step times and their ratio to the first setting. A tuning tool: speed claims
against PyTorch come from bench_lenet.py.
"""
from __future__ import annotations

import argparse
import statistics
import time

from bench_lenet import minigrad_step_fn


def compare(settings, batch_size, steps, warmup):
    step = minigrad_step_fn(batch_size, "cpu")  # puts this checkout's minigrad on the path
    import minigrad
    from minigrad import backend, parallel
    scope = {"minigrad": minigrad, "backend": backend, "parallel": parallel}
    for statement in settings * warmup:
        exec(statement, scope)
        step()
    times = [[] for _ in settings]
    for index in range(steps):
        for which in range(len(settings)) if index % 2 == 0 else reversed(range(len(settings))):
            exec(settings[which], scope)
            start = time.perf_counter()
            step()
            times[which].append(time.perf_counter() - start)
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("settings", nargs="+", help="Python statements, one per setting")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per setting (default 40)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per setting first (default 2)")
    args = parser.parse_args(argv)
    if args.steps < 4:
        raise SystemExit(f"--steps: expected at least 4 timed steps per setting, got {args.steps}")
    times = compare(args.settings, args.batch_size, args.steps, args.warmup)
    first = statistics.median(times[0])
    print(f"LeNet step, batch {args.batch_size}, {args.steps} alternating steps per setting (ms)")
    for statement, seconds in zip(args.settings, times):
        median = statistics.median(seconds)
        print(f"  median {median * 1e3:8.2f}  p25 {statistics.quantiles(seconds, n=4)[0] * 1e3:8.2f}  "
              f"x{median / first:5.3f}  {statement}")


if __name__ == "__main__":
    main()
