"""Data-parallel training over MPI: what a step communicates, where its time goes, how it scales.

    python benchmarks/bench_distributed.py                        # LeNet, global batch 256, p = 1, 2
    python benchmarks/bench_distributed.py --model mlp --steps 30
    python benchmarks/bench_distributed.py --json

Every rank runs with ONE BLAS thread (OPENBLAS/OMP/MKL_NUM_THREADS=1, torch.set_num_threads(1)),
so p ranks use p cores. At a FIXED global batch (strong scaling) it reports, per world size p:
- parameters and bytes communicated per step (the flat gradient buffer, its has-a-gradient
  flags and the loss; plus the 8-byte normaliser), and the Allreduce time of that buffer alone;
- the step time split into compute (forward/backward, and packing the flat buffer), communication
  (time inside MPI calls, including waiting for the slowest rank) and other (zero_grad, step);
- strong-scaling efficiency T1 / (p * Tp), next to PyTorch DDP's (gloo backend, same model,
  same global batch, launched the same way) measured in the same run;
- the overhead of the distributed path at p = 1 (``mpiexec -n 1``: flat buffer, Allreduce on one
  rank) over a plain single process (no MPI at all);
- max |parameter difference| after a few float64 steps (dropout on, a short last batch) between
  1, 2 and 3 ranks: the data-parallel run is the one-process run, up to round-off.

Each configuration runs in fresh processes; a worker prints one JSON line (rank 0).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE_SHAPE, NUM_CLASSES = (3, 32, 32), 10


# ----------------------------------------------------------------------------- minigrad worker
class TimedComm:
    """An MPI communicator that adds up the seconds and bytes spent in its collectives."""

    def __init__(self, comm):
        self.comm, self.seconds, self.bytes = comm, 0.0, 0

    def Allreduce(self, send, receive, op):
        started = time.perf_counter()
        self.comm.Allreduce(send, receive, op=op)
        self.seconds += time.perf_counter() - started
        self.bytes += receive.nbytes

    def __getattr__(self, name):  # everything else goes straight to MPI
        return getattr(self.comm, name)


def minigrad_timing(args):
    sys.path.insert(0, REPO_ROOT)
    import minigrad as mg
    from minigrad import distributed, optim, train
    from minigrad.backend import np
    from minigrad.models import build_model

    world = distributed.world()
    if world.is_distributed:
        world = distributed.World(TimedComm(world.comm))
    mg.manual_seed(0)
    model = build_model(args.model, IMAGE_SHAPE, NUM_CLASSES)
    criterion = mg.nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    inputs = mg.tensor(rng.standard_normal((args.batch_size, *IMAGE_SHAPE)).astype(np.float32))
    targets = mg.tensor(rng.integers(0, NUM_CLASSES, size=args.batch_size))
    rows = []
    for step in range(args.warmup + args.steps):
        communicated_before, bytes_before = getattr(world.comm, "seconds", 0.0), getattr(world.comm, "bytes", 0)
        started = time.perf_counter()
        optimizer.zero_grad()
        accumulate_started = time.perf_counter()
        train.accumulate(model, criterion, inputs, targets, world=world)
        accumulate_seconds = time.perf_counter() - accumulate_started
        optimizer.step()
        total = time.perf_counter() - started
        communication = getattr(world.comm, "seconds", 0.0) - communicated_before
        if step >= args.warmup:
            rows.append(dict(total=total, communication=communication, compute=accumulate_seconds - communication,
                             other=total - accumulate_seconds,
                             bytes=getattr(world.comm, "bytes", 0) - bytes_before))
    result = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
    result["bytes"] = int(result["bytes"])
    parameters = [p for p in model.parameters()]
    result.update(parameters=sum(p.numel() for p in parameters), world_size=world.size,
                  distributed=world.is_distributed, allreduce_s=allreduce_seconds(world, parameters, np))
    if world.is_distributed:  # the slowest rank sets the pace: report its times
        everyone = world.comm.gather(result, root=0)
        if world.rank == 0:
            for key in ("total", "compute", "communication", "other"):
                result[key] = max(rank_result[key] for rank_result in everyone)
    return result if world.rank == 0 else None


def allreduce_seconds(world, parameters, np, repeats=30):
    """Median time of one Allreduce(SUM) of a buffer as large as the step's (None for one process)."""
    if not world.is_distributed:
        return None
    from mpi4py import MPI
    buffer = np.ones(sum(p.numel() for p in parameters) + len(parameters) + 1, dtype=np.float32)
    times = []
    for _ in range(repeats):
        world.comm.Barrier()
        started = time.perf_counter()
        world.comm.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def minigrad_parameters_after_training(args):
    """float64, dropout, 300 samples in batches of 64 (the last has 44), SGD with momentum:
    the parameters after 2 epochs, to compare world sizes."""
    sys.path.insert(0, REPO_ROOT)
    import minigrad as mg
    from minigrad import distributed, optim, train
    from minigrad.backend import np
    from minigrad.data import DataLoader, TensorDataset
    from minigrad.models import build_model

    mg.manual_seed(0)
    model = build_model("cnn", IMAGE_SHAPE, NUM_CLASSES).to(mg.float64)  # the cnn has dropout
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(1)
    images, labels = rng.standard_normal((300, *IMAGE_SHAPE)), rng.integers(0, NUM_CLASSES, size=300)
    loader = DataLoader(TensorDataset(images, labels), batch_size=64, shuffle=True, seed=0)
    train.fit(model, mg.nn.CrossEntropyLoss(), optimizer, loader, epochs=2)
    if distributed.world().rank == 0:
        np.save(args.save, np.concatenate([p.numpy().ravel() for p in model.parameters()]))


# ----------------------------------------------------------------------------- PyTorch DDP worker
def torch_timing(args):
    """The same model and global batch under torch DistributedDataParallel (gloo), each rank
    taking its array_split shard; the same timing as minigrad's worker."""
    import numpy as np
    import torch
    import torch.distributed as torch_distributed
    import torch.nn as nn

    rank, size = int(os.environ.get("PMI_RANK", 0)), int(os.environ.get("PMI_SIZE", 1))
    torch.set_num_threads(1)
    torch_distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank,
                                         world_size=size)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(torch_model(args.model, nn))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch_size, *IMAGE_SHAPE)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, size=args.batch_size)
    mine = np.array_split(np.arange(args.batch_size), size)[rank]
    inputs, targets = torch.from_numpy(images[mine]), torch.from_numpy(labels[mine])
    times = []
    for step in range(args.warmup + args.steps):
        started = time.perf_counter()
        optimizer.zero_grad()
        criterion(model(inputs), targets).backward()  # DDP averages the gradients inside backward
        optimizer.step()
        if step >= args.warmup:
            times.append(time.perf_counter() - started)
    median = torch.tensor([statistics.median(times)])
    torch_distributed.all_reduce(median, op=torch_distributed.ReduceOp.MAX)
    torch_distributed.destroy_process_group()
    return {"total": float(median), "world_size": size} if rank == 0 else None


def torch_model(name, nn):
    """PyTorch twins of minigrad.models' mlp and lenet for 3x32x32 inputs."""
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 256), nn.ReLU(), nn.Linear(256, NUM_CLASSES))
    return nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                         nn.ReLU(), nn.Linear(84, NUM_CLASSES))


# ----------------------------------------------------------------------------- the driver
def launch(num_ranks, worker_arguments):
    """``mpiexec -n num_ranks`` this script as a worker (num_ranks None: plain python, no MPI)."""
    environment = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, os.path.abspath(__file__), "--worker", *worker_arguments]
    if num_ranks is not None:
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        command = [mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n", str(num_ranks), *command]
    else:
        environment = {k: v for k, v in environment.items() if k not in ("PMI_SIZE", "PMI_RANK")}
    result = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{result.stderr}")
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines else None


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def idle_share_of_cores(seconds=1.0):
    """Share of all cores left idle over ``seconds`` (Linux /proc/stat): the benchmark's honesty
    on a shared machine, where other processes' load makes wall-clock ratios meaningless."""
    def idle_and_total():
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
        return ticks[3] + ticks[4], sum(ticks)
    try:
        idle_start, total_start = idle_and_total()
        time.sleep(seconds)
        idle_end, total_end = idle_and_total()
    except OSError:
        return None
    return (idle_end - idle_start) / max(1, total_end - total_start)


def measure(args):
    common = ["--model", args.model, "--batch-size", str(args.batch_size), "--steps", str(args.steps),
              "--warmup", str(args.warmup)]
    load_before, idle_before = os.getloadavg(), idle_share_of_cores()
    plain = launch(None, ["minigrad", *common])
    minigrad_runs = {p: launch(p, ["minigrad", *common]) for p in (1, 2)}
    torch_runs = {p: launch(p, ["torch", *common, "--port", str(free_port())]) for p in (1, 2)} if args.torch else {}
    saved = {}
    for p in (None, 2, 3):
        path = os.path.join(args.scratch, f"parameters_{p or 'plain'}.npy")
        launch(p, ["parameters", "--save", path])
        saved[p] = path
    import numpy as np
    reference = np.load(saved[None])
    drift = {p: float(np.abs(np.load(saved[p]) - reference).max()) for p in (2, 3)}
    return dict(model=args.model, batch_size=args.batch_size, load_average_before=load_before, idle_before=idle_before,
                load_average_after=os.getloadavg(), cpus=os.cpu_count(), plain=plain, minigrad=minigrad_runs,
                torch=torch_runs, max_parameter_difference=drift)


def report(results):
    m, t = results["minigrad"], results["torch"]
    one = m[1]
    print(f"{results['model']}, global batch {results['batch_size']}, one BLAS thread per rank, "
          f"{results['cpus']} cores, load average before {results['load_average_before'][0]:.2f}, "
          f"after {results['load_average_after'][0]:.2f}; "
          f"cores idle before: {100 * (results['idle_before'] or 0):.0f}%")
    print(f"parameters: {one['parameters']:,}; bytes through Allreduce per step and rank: {one['bytes']:,} "
          f"(the flat buffer: gradients, one flag per parameter tensor, the loss; and the 8-byte normaliser)")
    print(f"{'p':>2} {'step ms':>8} {'compute':>8} {'comm':>8} {'other':>8} {'allreduce ms':>12} "
          f"{'efficiency':>10} {'torch DDP ms':>12} {'torch eff.':>10}")
    for p, run in sorted(m.items(), key=lambda item: int(item[0])):
        efficiency = one["total"] / (int(p) * run["total"])
        torch_run = t.get(p)
        torch_ms = f"{1000 * torch_run['total']:12.2f}" if torch_run else f"{'-':>12}"
        torch_efficiency = (f"{t[1]['total'] / (int(p) * torch_run['total']):10.2f}" if torch_run else f"{'-':>10}")
        print(f"{p:>2} {1000 * run['total']:8.2f} {1000 * run['compute']:8.2f} {1000 * run['communication']:8.2f} "
              f"{1000 * run['other']:8.2f} {1000 * run['allreduce_s']:12.3f} {efficiency:10.2f} {torch_ms} "
              f"{torch_efficiency}")
    plain = results["plain"]
    print(f"distributed path at p = 1 vs plain one process: {1000 * one['total']:.2f} / "
          f"{1000 * plain['total']:.2f} ms = {one['total'] / plain['total']:.3f}x")
    if t:
        print(f"step time minigrad / torch DDP: p=1 {m[1]['total'] / t[1]['total']:.2f}, "
              f"p=2 {m[2]['total'] / t[2]['total']:.2f}")
    drift = results["max_parameter_difference"]
    print(f"max |parameter difference| vs one process after 2 float64 epochs: "
          f"2 ranks {drift[2]:.1e}, 3 ranks {drift[3]:.1e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=("minigrad", "torch", "parameters"), help=argparse.SUPPRESS)
    parser.add_argument("--model", choices=("lenet", "mlp"), default="lenet")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-torch", dest="torch", action="store_false", help="skip the PyTorch DDP reference")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default="/tmp", help="where the workers leave parameter files")
    args = parser.parse_args()
    if args.worker:
        result = {"minigrad": minigrad_timing, "torch": torch_timing,
                  "parameters": minigrad_parameters_after_training}[args.worker](args)
        if result is not None:
            print(json.dumps(result))
        return
    results = measure(args)
    if args.json:
        print(json.dumps(results, indent=1))
    report(json.loads(json.dumps(results), object_hook=lambda d: {int(k) if k.isdigit() else k: v
                                                                    for k, v in d.items()}))


if __name__ == "__main__":
    main()
