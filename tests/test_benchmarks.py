"""The benchmark drivers hand their settings to the worker processes they time.

A worker that silently ignores ``--threads`` times another configuration than the one the
table names (bench_lenet.py once ran PyTorch on two threads under ``--threads 1``). The
workers themselves are not run here (that is what the benchmarks are for): ``spawn`` is
replaced by a recorder, so these tests take milliseconds.
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


@pytest.mark.parametrize("threads", [1, 3])
def test_bench_lenet_gives_every_worker_the_thread_count_of_the_run(monkeypatch, threads):
    bench = load("bench_lenet")
    calls = []

    def recording_spawn(arguments, spawn_threads):
        calls.append((arguments, spawn_threads))
        if arguments[1] == "gemm":
            return {"gemm_gflops": 100.0, "numpy_blas": "test"}
        return {"images_per_s": 1000.0, "peak_rss_mib": 10.0, "median_cpu_s_per_step": 0.01}
    monkeypatch.setattr(bench, "spawn", recording_spawn)
    monkeypatch.setattr(bench, "cpu_idle_fraction", lambda seconds=1.0: 1.0)   # no 1 s samples of /proc/stat
    args = bench.parse_args(["--batch-sizes", "8,16", "--threads", str(threads), "--steps", "10", "--repeats", "2"])
    report = bench.measure(args)
    workers = [arguments for arguments, _ in calls if arguments[1] in ("torch", "minigrad")]
    assert len(workers) == 2 * 2 * 2 and report["threads"] == threads
    for arguments in workers:
        worker_args = bench.parse_args(arguments)           # what the worker process will see
        assert worker_args.threads == threads, arguments
    assert all(spawn_threads == threads for _, spawn_threads in calls)
