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
    """Stands in for bench_lenet.Worker: records what it was started with, the turns it ran and
    which workers were closed; ``failing`` names a framework whose turns raise."""
    started, turns, closed, failing = [], [], [], None

    def __init__(self, arguments, threads, batch_size):
        self.arguments, self.framework = arguments, arguments[1]
        RecordingWorker.started.append((arguments, threads))

    def turn(self, steps):
        if self.framework == RecordingWorker.failing:
            raise RuntimeError(f"{self.framework} worker failed")
        RecordingWorker.turns.append((self.framework, steps))

    def finish(self):
        return {"images_per_s": 1000.0, "peak_rss_mib": 10.0, "median_cpu_s_per_step": 0.01}

    def close(self):
        RecordingWorker.closed.append(self.framework)


def measure_with_recorders(monkeypatch, argv):
    bench = load("bench_lenet")
    RecordingWorker.started, RecordingWorker.turns, RecordingWorker.closed = [], [], []
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


def test_bench_lenet_closes_both_workers_when_one_fails(monkeypatch):
    monkeypatch.setattr(RecordingWorker, "failing", "minigrad")
    with pytest.raises(RuntimeError, match="minigrad worker failed"):
        measure_with_recorders(monkeypatch, ["--batch-sizes", "8", "--steps", "10"])
    assert sorted(RecordingWorker.closed) == ["minigrad", "torch"], "no process is left waiting on its stdin"


def test_bench_lenet_worker_answers_each_turn_with_its_step_times(monkeypatch, capsys):
    """The worker side of the pipe protocol, in-process with a stand-in step: a line "N" runs one
    untimed and N timed steps, "done" reports the peak RSS."""
    import io
    import json
    bench = load("bench_lenet")
    steps = []
    monkeypatch.setattr(bench, "minigrad_step_fn", lambda batch_size, device: lambda: steps.append(batch_size))
    monkeypatch.setattr("sys.stdin", io.StringIO("2\n1\ndone\n"))
    bench.serve_worker("minigrad", 4, "cpu", 1, warmup=3)
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert answers[0] == {"ready": True}
    assert [len(answer["seconds"]) for answer in answers[1:3]] == [2, 1]
    assert [len(answer["cpu_seconds"]) for answer in answers[1:3]] == [2, 1]
    assert answers[3]["peak_rss_mib"] > 0 and len(answers) == 4
    assert len(steps) == 3 + (1 + 2) + (1 + 1), "warm-up, then one untimed step before each turn"


def test_bench_lenet_raises_a_failed_workers_own_error():
    """A real worker process that fails at start: its stderr reaches the caller."""
    bench = load("bench_lenet")
    arguments = ["--worker", "minigrad", "--batch-size", "2", "--device", "no-such-device", "--threads", "1",
                 "--warmup", "1"]
    with pytest.raises(RuntimeError, match="(?s)failed.*no-such-device"):
        bench.Worker(arguments, 1, 2)
