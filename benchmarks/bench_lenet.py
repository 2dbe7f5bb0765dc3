"""Training-step throughput of the seed LeNet: minigrad vs PyTorch, measured in the same run.

    python benchmarks/bench_lenet.py                      # CPU, batch sizes 32, 128, 512
    python benchmarks/bench_lenet.py --batch-sizes 512 --json
    python benchmarks/bench_lenet.py --device cuda        # CuPy vs PyTorch CUDA

Each (framework, batch size) runs in its own subprocess, so its peak RSS (ru_maxrss) is its
own. In each round both processes are started and warmed up, then take turns of one untimed
step (caches warm again, and the other process's BLAS/OpenMP threads stop spinning meanwhile)
and ``--steps-per-turn`` timed steps until each has ``--steps``: on a shared VM whose speed
drifts by 20-40% from one second to the next, turns a few steps long put both frameworks in the
same moment, where whole runs one after the other did not. Both frameworks train the
same network (conv 3->6 5x5, relu, maxpool 2, conv 6->16 5x5, relu, maxpool 2, flatten,
400->120->84->10, cross-entropy, SGD lr 0.01 momentum 0.9) on the same random float32 batch,
with ``--threads`` threads (torch.set_num_threads; minigrad gets MINIGRAD_NUM_THREADS, OpenBLAS
OPENBLAS_NUM_THREADS).
On a shared machine, ``--wait-for-idle`` waits for quiet cores before each round.
Achieved GFLOP/s are counted analytically (2 x MACs forward, x3 for forward + backward) and
set against the GEMM GFLOP/s of NumPy's BLAS measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEARNING_RATE, MOMENTUM, NUM_CLASSES = 0.01, 0.9, 10


# ----------------------------------------------------------------------------- FLOP count
def lenet_training_flops_per_image():
    """2 x multiply-adds of one forward pass, x3 for forward + backward (two GEMMs each)."""
    conv1 = 6 * 28 * 28 * (3 * 5 * 5)
    conv2 = 16 * 10 * 10 * (6 * 5 * 5)
    linears = 400 * 120 + 120 * 84 + 84 * 10
    return 3 * 2 * (conv1 + conv2 + linears)


# ----------------------------------------------------------------------------- models
def lenet(nn):
    """The seed LeNet, from either framework's ``nn`` (minigrad's mirrors PyTorch's names)."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, NUM_CLASSES),
    )


def minigrad_step_fn(batch_size, device):
    sys.path.insert(0, REPO_ROOT)
    import minigrad as mg
    import minigrad.nn as nn
    from minigrad import backend, optim
    from minigrad.backend import np

    # As `python -m minigrad train` does: glibc keeps freed activation-sized blocks for the next
    # step instead of unmapping them (backend.py says why). Process-wide, so the PyTorch worker,
    # a separate process, runs with glibc's defaults. MINIGRAD_KEEP_FREED_MEMORY=0 turns it off.
    backend.keep_freed_host_memory_for_reuse()
    mg.manual_seed(0)
    model = lenet(nn).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    images, labels = random_batch(np, batch_size)
    inputs, targets = mg.tensor(images, device=device), mg.tensor(labels, device=device)

    return training_step(model, criterion, optimizer, inputs, targets)


def torch_step_fn(batch_size, device, threads):
    import numpy as np
    import torch
    import torch.nn as nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = lenet(nn).to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM)
    images, labels = random_batch(np, batch_size)
    inputs, targets = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)

    return training_step(model, criterion, optimizer, inputs, targets)


def training_step(model, criterion, optimizer, inputs, targets):
    """One SGD step as a closure; the same lines for both frameworks, since their APIs match."""
    def step():
        optimizer.zero_grad()
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
        return loss.item()  # .item() waits for the GPU, so the step is really finished

    return step


def random_batch(np, batch_size):
    generator = np.random.default_rng(0)
    images = generator.standard_normal((batch_size, 3, 32, 32)).astype(np.float32)
    labels = generator.integers(0, NUM_CLASSES, size=batch_size).astype(np.int64)
    return images, labels


# ----------------------------------------------------------------------------- one worker
def peak_rss_mib():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def serve_worker(framework, batch_size, device, threads, warmup):
    """A worker process: warm up, then for each line "N" on stdin run one untimed step (the
    other process ran meanwhile: caches and idle threads warm up again) and N timed steps, and
    print their wall and CPU seconds as a JSON line; at "done", print the peak RSS and exit."""
    step = (minigrad_step_fn(batch_size, device) if framework == "minigrad"
            else torch_step_fn(batch_size, device, threads))
    for _ in range(warmup):
        step()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "done":
            break
        step()
        seconds, cpu_seconds = [], []
        for _ in range(int(line)):
            start, cpu_start = time.perf_counter(), time.process_time()
            step()
            seconds.append(time.perf_counter() - start)
            cpu_seconds.append(time.process_time() - cpu_start)
        print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds}), flush=True)
    print(json.dumps({"peak_rss_mib": peak_rss_mib()}), flush=True)


class Worker:
    """One framework at one batch size in its own process, timed a turn at a time (``turn``)."""

    def __init__(self, arguments, threads, batch_size):
        self.batch_size = batch_size
        # stderr to a file, not a pipe: a pipe nobody reads fills up with warnings and the worker
        # then blocks on it while this process waits for its stdout.
        self.errors = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), *arguments],
                                        env=worker_env(threads), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=self.errors, text=True)
        self.seconds, self.cpu_seconds = [], []
        self._ask(None)                                        # warmed up

    def _ask(self, command):
        """Send ``command`` (None: only listen) and read the worker's one-line JSON answer."""
        try:
            if command is not None:
                self.process.stdin.write(f"{command}\n")
                self.process.stdin.flush()
            line = self.process.stdout.readline()
            return json.loads(line)
        except (OSError, ValueError):   # a dead worker: a broken pipe, no line, or not its answer
            self.close()
            raise self._failure("failed") from None

    def _failure(self, what):
        """The error for a worker that ``what`` (failed, exited badly), with its exit status and stderr."""
        self.errors.seek(0)
        return RuntimeError(f"worker {self.process.args[2:]} {what} (exit status {self.process.returncode}):\n"
                            f"{self.errors.read()}")

    def turn(self, steps):
        times = self._ask(steps)
        self.seconds += times["seconds"]
        self.cpu_seconds += times["cpu_seconds"]

    def finish(self):
        """Stop the process; the result of all its turns: median step, CPU per step, peak RSS."""
        peak = self._ask("done")["peak_rss_mib"]
        if self.process.wait() != 0:
            raise self._failure("exited badly")
        self.errors.close()
        median = statistics.median(self.seconds)
        return {"median_step_s": median, "images_per_s": self.batch_size / median,
                "median_cpu_s_per_step": statistics.median(self.cpu_seconds), "peak_rss_mib": peak}

    def close(self):
        """Make sure the process is gone (a no-op after ``finish``)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def gemm_gflops(size=2048, repeats=5):
    """The machine's float32 GEMM speed through NumPy's BLAS (the ceiling for im2col convs)."""
    import numpy as np
    a = np.random.default_rng(0).standard_normal((size, size)).astype(np.float32)
    a @ a
    best = min(_timed(lambda: a @ a) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def numpy_blas():
    """Which BLAS NumPy calls, e.g. 'scipy-openblas 0.3.31' (from numpy.show_config)."""
    import numpy as np
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas['version']}"
    except (TypeError, KeyError):  # NumPy < 1.25 has no mode="dicts"
        return "unknown"


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def cpu_idle_fraction(seconds=1.0):
    """Share of all cores left idle over ``seconds`` (Linux /proc/stat; 1.0 where unreadable)."""
    def idle_and_total():
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks)  # idle + iowait, all
    try:
        idle_start, total_start = idle_and_total()
        time.sleep(seconds)
        idle_end, total_end = idle_and_total()
    except OSError:
        return 1.0
    return (idle_end - idle_start) / max(1, total_end - total_start)


def wait_until_idle(max_wait_s, wanted=0.9):
    """On a shared machine, wait (at most ``max_wait_s``) until the cores are ``wanted`` idle."""
    deadline = time.monotonic() + max_wait_s
    idle = cpu_idle_fraction()
    while idle < wanted and time.monotonic() < deadline:
        idle = cpu_idle_fraction()
    return idle


def worker_env(threads):
    """Every library's thread setting for a worker process."""
    return dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                MKL_NUM_THREADS=str(threads), MINIGRAD_NUM_THREADS=str(threads))


def spawn(arguments, threads):
    """Run this script as a one-shot worker in a fresh process (the GEMM measurement)."""
    result = subprocess.run([sys.executable, os.path.abspath(__file__), *arguments],
                            env=worker_env(threads), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"worker {arguments} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report
def run_round(common, batch_size, args):
    """A fresh PyTorch and minigrad process side by side, taking turns until each has timed
    ``args.steps`` steps (whoever went first goes second next time); their results."""
    idle_before = wait_until_idle(args.wait_for_idle)
    workers = {}
    try:
        for framework in ("torch", "minigrad"):
            workers[framework] = Worker(["--worker", framework, *common], args.threads, batch_size)
        timed = 0
        while timed < args.steps:
            turn = min(args.steps_per_turn, args.steps - timed)
            order = ("torch", "minigrad") if (timed // args.steps_per_turn) % 2 == 0 else ("minigrad", "torch")
            for framework in order:
                workers[framework].turn(turn)
            timed += turn
        return {framework: dict(worker.finish(), idle_before=idle_before) for framework, worker in workers.items()}
    finally:
        for worker in workers.values():   # on a failure, the other process does not linger
            worker.close()


def measure(args):
    flops_per_image = lenet_training_flops_per_image()
    load_before = os.getloadavg()[0]
    machine = spawn(["--worker", "gemm"], args.threads)
    rows = []
    for batch_size in args.batch_sizes:
        common = ["--batch-size", str(batch_size), "--device", args.device, "--threads", str(args.threads),
                  "--warmup", str(args.warmup)]
        rounds = [run_round(common, batch_size, args) for _ in range(args.repeats)]
        # On a noisy machine each round's ratio compares two runs seconds apart: the round with
        # the median ratio (the lower middle one for an even count) is reported, with the spread.
        ratios = [r["minigrad"]["images_per_s"] / r["torch"]["images_per_s"] for r in rounds]
        median_round = sorted(range(len(rounds)), key=ratios.__getitem__)[(len(rounds) - 1) // 2]
        mg, pt = rounds[median_round]["minigrad"], rounds[median_round]["torch"]
        rows.append({
            "batch_size": batch_size,
            "minigrad_images_per_s": mg["images_per_s"], "torch_images_per_s": pt["images_per_s"],
            "ratio": ratios[median_round], "ratio_min": min(ratios), "ratio_max": max(ratios),
            "round_ratios": ratios,
            "minigrad_peak_rss_mib": mg["peak_rss_mib"], "torch_peak_rss_mib": pt["peak_rss_mib"],
            "rss_ratio": mg["peak_rss_mib"] / pt["peak_rss_mib"],
            "minigrad_gflops": mg["images_per_s"] * flops_per_image / 1e9,
            "torch_gflops": pt["images_per_s"] * flops_per_image / 1e9,
            "minigrad_fraction_of_gemm": mg["images_per_s"] * flops_per_image / 1e9 / machine["gemm_gflops"],
            "torch_fraction_of_gemm": pt["images_per_s"] * flops_per_image / 1e9 / machine["gemm_gflops"],
            "minigrad_idle_before": mg["idle_before"], "torch_idle_before": pt["idle_before"],
            "minigrad_cpu_ms_per_step": 1e3 * mg["median_cpu_s_per_step"],
            "torch_cpu_ms_per_step": 1e3 * pt["median_cpu_s_per_step"],
        })
    return {"device": args.device, "threads": args.threads, "steps": args.steps, "warmup": args.warmup,
            "repeats": args.repeats, "steps_per_turn": args.steps_per_turn,
            "training_flops_per_image": flops_per_image, "numpy_gemm_gflops": machine["gemm_gflops"],
            "numpy_blas": machine["numpy_blas"],
            # Other processes skew wall-clock ratios (2-thread PyTorch suffers most): check these.
            "load_average_1min_before": load_before, "load_average_1min_after": os.getloadavg()[0],
            "results": rows}


def print_table(report):
    print(f"LeNet training step, device={report['device']}, threads={report['threads']}, "
          f"median of {report['steps']} steps after {report['warmup']} warm-up, in alternating turns of "
          f"{report['steps_per_turn']}; the round with the median ratio of {report['repeats']} rounds; "
          f"NumPy ({report['numpy_blas']}) float32 GEMM: {report['numpy_gemm_gflops']:.1f} GFLOP/s; load average "
          f"{report['load_average_1min_before']:.1f} before, {report['load_average_1min_after']:.1f} after")
    header = f"{'batch':>6} {'minigrad img/s':>15} {'torch img/s':>12} {'ratio':>6} {'ratio spread':>13} " \
             f"{'mg GFLOP/s':>11} {'pt GFLOP/s':>11} {'mg RSS MiB':>11} {'pt RSS MiB':>11} {'RSS ratio':>9} " \
             f"{'mg CPU ms':>10} {'pt CPU ms':>10} {'idle before mg/pt':>18}"
    print(header)
    for row in report["results"]:
        print(f"{row['batch_size']:>6} {row['minigrad_images_per_s']:>15.0f} {row['torch_images_per_s']:>12.0f} "
              f"{row['ratio']:>6.2f} {row['ratio_min']:>6.2f}-{row['ratio_max']:<6.2f} "
              f"{row['minigrad_gflops']:>11.1f} {row['torch_gflops']:>11.1f} "
              f"{row['minigrad_peak_rss_mib']:>11.0f} {row['torch_peak_rss_mib']:>11.0f} {row['rss_ratio']:>9.2f} "
              f"{row['minigrad_cpu_ms_per_step']:>10.1f} {row['torch_cpu_ms_per_step']:>10.1f} "
              f"{row['minigrad_idle_before']:>12.0%} / {row['torch_idle_before']:.0%}")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=lambda s: [int(b) for b in s.split(",")], default=[32, 128, 512],
                        help="comma-separated batch sizes (default 32,128,512)")
    parser.add_argument("--device", default="cpu", help="cpu (NumPy vs torch CPU) or cuda (CuPy vs torch CUDA)")
    parser.add_argument("--threads", type=int, default=2, help="threads for both frameworks (default 2)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    parser.add_argument("--steps", type=int, default=15, help="timed steps; the median is reported (default 15)")
    parser.add_argument("--steps-per-turn", type=int, default=3,
                        help="timed steps per turn; the frameworks' processes take turns (default 3)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds, a fresh process per framework in each; the round with the median "
                             "ratio is reported, with the spread of all (default 1)")
    parser.add_argument("--wait-for-idle", type=float, default=0.0, metavar="SECONDS",
                        help="on a shared machine, wait up to SECONDS before each round for the cores to be "
                             "90%% idle (the idle share seen is reported; default 0: do not wait)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results instead of a table")
    parser.add_argument("--worker", choices=["minigrad", "torch", "gemm"], help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.steps < 10:
        raise SystemExit(f"--steps: expected at least 10 timed steps, got {args.steps}")
    if args.steps_per_turn < 1:
        raise SystemExit(f"--steps-per-turn: expected at least 1 step, got {args.steps_per_turn}")
    if args.worker == "gemm":
        print(json.dumps({"gemm_gflops": gemm_gflops(), "numpy_blas": numpy_blas()}))
    elif args.worker:
        serve_worker(args.worker, args.batch_size, args.device, args.threads, args.warmup)
    else:
        report = measure(args)
        print(json.dumps(report, indent=2)) if args.json else print_table(report)


if __name__ == "__main__":
    main()
