"""The benchmark drivers hand their settings to the worker processes they time.

A worker that silently ignores ``--threads`` times another configuration than the one the
table names (bench_lenet.py once ran PyTorch on two threads under ``--threads 1``). The
workers themselves are not run here (that is what the benchmarks are for): ``spawn`` and
``Worker`` are replaced by recorders, so these tests take milliseconds.
"""
from __future__ import annotations

import importlib.util
import os

import pytest

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


def load(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(BENCHMARKS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordingWorker:
    """Stands in for bench_lenet.Worker: records what it was started with and the turns it ran."""
    started, turns = [], []

    def __init__(self, arguments, threads, batch_size):
        self.arguments, self.framework = arguments, arguments[1]
        RecordingWorker.started.append((arguments, threads))

    def turn(self, steps):
        RecordingWorker.turns.append((self.framework, steps))

    def finish(self):
        return {"images_per_s": 1000.0, "peak_rss_mib": 10.0, "median_cpu_s_per_step": 0.01}


def measure_with_recorders(monkeypatch, argv):
    bench = load("bench_lenet")
    RecordingWorker.started, RecordingWorker.turns = [], []
    spawned = []

    def recording_spawn(arguments, spawn_threads):
        spawned.append(spawn_threads)
        return {"gemm_gflops": 100.0, "numpy_blas": "test"}
    monkeypatch.setattr(bench, "spawn", recording_spawn)
    monkeypatch.setattr(bench, "Worker", RecordingWorker)
    monkeypatch.setattr(bench, "cpu_idle_fraction", lambda seconds=1.0: 1.0)   # no 1 s samples of /proc/stat
    args = bench.parse_args(argv)
    return bench, bench.measure(args), spawned


@pytest.mark.parametrize("threads", [1, 3])
def test_bench_lenet_gives_every_worker_the_thread_count_of_the_run(monkeypatch, threads):
    bench, report, spawned = measure_with_recorders(
        monkeypatch, ["--batch-sizes", "8,16", "--threads", str(threads), "--steps", "10", "--repeats", "2"])
    assert len(RecordingWorker.started) == 2 * 2 * 2 and report["threads"] == threads
    for arguments, worker_threads in RecordingWorker.started:
        worker_args = bench.parse_args(arguments)           # what the worker process will see
        assert worker_args.threads == threads and worker_threads == threads, arguments
    assert spawned == [threads]


def test_bench_lenet_frameworks_take_turns_until_each_has_its_steps(monkeypatch):
    """Turns alternate who goes first, and each framework times exactly --steps steps."""
    measure_with_recorders(monkeypatch, ["--batch-sizes", "8", "--steps", "11", "--steps-per-turn", "4"])
    assert RecordingWorker.turns == [("torch", 4), ("minigrad", 4), ("minigrad", 4), ("torch", 4),
                                     ("torch", 3), ("minigrad", 3)]
