"""DataLoader: batch counts, every sample once per epoch, seeded order per epoch, resuming."""
import math
import os
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn as nn
from minigrad import optim, train
from minigrad import backend
from minigrad.data import DataLoader, Dataset, RandomSampler, SequentialSampler, TensorDataset, default_collate


def indexed_dataset(n):
    """Inputs whose first column is the sample's index, so a batch says which samples it holds."""
    inputs = np.stack([np.arange(n), np.ones(n)], axis=1).astype(np.float32)
    return TensorDataset(inputs, np.arange(n) % 3)


def served_indices(loader):
    """The sample indices of one epoch, in the order the loader serves them."""
    return [int(i) for inputs, _ in loader for i in inputs.numpy()[:, 0]]


@given(n=st.integers(1, 40), batch_size=st.integers(1, 50), drop_last=st.booleans(), shuffle=st.booleans())
def test_batch_count_and_every_sample_once_per_epoch(n, batch_size, drop_last, shuffle):
    loader = DataLoader(indexed_dataset(n), batch_size, shuffle=shuffle, drop_last=drop_last, seed=7)
    expected_batches = n // batch_size if drop_last else math.ceil(n / batch_size)
    for _ in range(2):
        batches = list(loader)
        assert len(loader) == len(batches) == expected_batches
        sizes = [len(inputs) for inputs, _ in batches]
        assert all(size == batch_size for size in sizes[:-1])
        seen = [int(i) for inputs, _ in batches for i in inputs.numpy()[:, 0]]
        assert len(seen) == len(set(seen)) == (expected_batches * batch_size if drop_last else n)
        if not drop_last:
            assert sorted(seen) == list(range(n))


def test_shuffled_order_is_the_documented_seeded_permutation_of_each_epoch():
    loader = DataLoader(indexed_dataset(10), batch_size=3, shuffle=True, seed=42)
    for epoch in range(3):
        assert served_indices(loader) == list(np.random.default_rng([42, epoch]).permutation(10))


def test_order_is_reproducible_per_seed_and_different_per_epoch_and_per_seed():
    first = DataLoader(indexed_dataset(20), batch_size=4, shuffle=True, seed=3)
    second = DataLoader(indexed_dataset(20), batch_size=4, shuffle=True, seed=3)
    other_seed = DataLoader(indexed_dataset(20), batch_size=4, shuffle=True, seed=4)
    epochs = [served_indices(first) for _ in range(3)]
    assert epochs == [served_indices(second) for _ in range(3)]
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != epochs[2]
    assert served_indices(other_seed) != epochs[0]
    assert served_indices(DataLoader(indexed_dataset(20), 4)) == list(range(20))  # no shuffle: in order


def test_without_a_seed_manual_seed_makes_the_order_reproducible():
    mg.manual_seed(11)
    a = served_indices(DataLoader(indexed_dataset(20), 5, shuffle=True))
    mg.manual_seed(11)
    b = served_indices(DataLoader(indexed_dataset(20), 5, shuffle=True))
    assert a == b and a != list(range(20))
    mg.manual_seed(11)
    DataLoader(indexed_dataset(20), 5)  # an unshuffled loader draws nothing from the global generator
    assert served_indices(DataLoader(indexed_dataset(20), 5, shuffle=True)) == a


class RecordingModel(nn.Module):
    """A linear model that remembers which samples (first input column) it was shown, in order."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 3)
        self.seen = []

    def forward(self, x):
        self.seen.extend(int(i) for i in x.numpy()[:, 0])
        return self.linear(x)


def test_order_does_not_depend_on_batch_size_or_micro_batch_size():
    """Same seed and epoch: the same sample sequence whether it is cut into batches of 2 or 7, and
    the model sees the samples in that order whatever the micro-batch size."""
    assert served_indices(DataLoader(indexed_dataset(15), 2, shuffle=True, seed=5)) == \
        served_indices(DataLoader(indexed_dataset(15), 7, shuffle=True, seed=5))
    sequences = []
    for micro_batch_size in (None, 1, 3):
        model = RecordingModel()
        loader = DataLoader(indexed_dataset(15), 4, shuffle=True, seed=5)
        train.train_one_epoch(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), loader,
                              micro_batch_size)
        sequences.append(model.seen)
    assert sequences[0] == sequences[1] == sequences[2]
    assert sequences[0] == list(np.random.default_rng([5, 0]).permutation(15))


def test_resuming_from_state_dict_continues_with_the_same_order():
    mg.manual_seed(1)
    original = DataLoader(indexed_dataset(12), 5, shuffle=True)  # seed drawn from the global generator
    for _ in range(2):
        served_indices(original)
    saved = original.state_dict()
    assert saved["epoch"] == 2
    mg.manual_seed(99)  # a new process would not draw the same seed again
    resumed = DataLoader(indexed_dataset(12), 5, shuffle=True)
    resumed.load_state_dict(saved)
    assert [served_indices(resumed) for _ in range(2)] == [served_indices(original) for _ in range(2)]
    resumed.set_epoch(0)
    assert served_indices(resumed) == list(np.random.default_rng([original.seed, 0]).permutation(12))


def test_batches_are_minigrad_tensors_on_the_device_with_dtypes_kept(device):
    images = np.random.default_rng(0).normal(size=(5, 2, 3, 3)).astype(np.float32)
    loader = DataLoader(TensorDataset(images, np.arange(5)), batch_size=2, device=device)
    inputs, labels = next(iter(loader))
    assert isinstance(inputs, mg.Tensor) and isinstance(labels, mg.Tensor)
    assert inputs.device == labels.device == mg.tensor([0.0], device=device).device
    assert inputs.dtype == np.float32 and labels.dtype == np.int64 and inputs.shape == (2, 2, 3, 3)
    np.testing.assert_array_equal(inputs.numpy(), images[:2])


class ListDataset(Dataset):
    """A plain Dataset (not a TensorDataset): served through the per-sample path."""

    def __init__(self, inputs, labels):
        self.inputs, self.labels = inputs, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.inputs[index], int(self.labels[index])


def test_a_plain_dataset_gives_the_same_batches_as_a_tensor_dataset():
    inputs, labels = np.random.default_rng(0).normal(size=(7, 3)), np.arange(7) % 2
    fast = list(DataLoader(TensorDataset(inputs, labels), 3, shuffle=True, seed=1))
    slow = list(DataLoader(ListDataset(inputs, labels), 3, shuffle=True, seed=1))
    for (fast_x, fast_y), (slow_x, slow_y) in zip(fast, slow):
        np.testing.assert_array_equal(fast_x.numpy(), slow_x.numpy())
        np.testing.assert_array_equal(fast_y.numpy(), slow_y.numpy())


def test_tensor_dataset_accepts_tensors_and_returns_rows():
    dataset = TensorDataset(mg.tensor([[1.0, 2.0], [3.0, 4.0]]), np.array([0, 1]))
    assert len(dataset) == 2
    row, label = dataset[1]
    np.testing.assert_array_equal(row, [3.0, 4.0])
    assert label == 1


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("batch_size", [0, -3, 2.5, True, "8"])
def test_bad_batch_size_is_rejected(batch_size):
    with pytest.raises(ValueError, match=f"batch_size: expected a positive int, got {batch_size!r}"):
        DataLoader(indexed_dataset(4), batch_size)


def test_bad_seed_and_epoch_are_rejected():
    with pytest.raises(ValueError, match=r"seed: expected a non-negative int or None, got -1"):
        DataLoader(indexed_dataset(4), 2, seed=-1)
    loader = DataLoader(indexed_dataset(4), 2)
    with pytest.raises(ValueError, match=r"epoch: expected a non-negative int, got -2"):
        loader.set_epoch(-2)
    with pytest.raises(ValueError, match=r"state: expected a dict with key 'epoch', got \{'seed': 1\}"):
        loader.load_state_dict({"seed": 1})


def test_tensor_dataset_with_mismatched_lengths_names_the_shapes():
    with pytest.raises(ValueError, match=r"same first dimension \(the number of samples\), "
                                         r"got shapes \[\(10, 3\), \(9,\)\]"):
        TensorDataset(np.zeros((10, 3)), np.zeros(9))
    with pytest.raises(ValueError, match="expected at least one array or tensor, got none"):
        TensorDataset()


# ----------------------------------------------------------------------------- PyTorch's options
class SquaresWithPid(Dataset):
    """A dataset whose __getitem__ does work and says which process did it."""

    def __len__(self):
        return 23

    def __getitem__(self, index):
        return np.full(3, float(index) ** 2), index % 4, os.getpid()


def batches_without_pids(loader):
    return [(x.numpy(), y.numpy()) for x, y, _ in loader]


@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("persistent_workers", [False, True])
def test_worker_processes_build_exactly_the_batches_of_the_main_process_in_order(shuffle, persistent_workers):
    main = DataLoader(SquaresWithPid(), batch_size=4, shuffle=shuffle, seed=5)
    workers = DataLoader(SquaresWithPid(), batch_size=4, shuffle=shuffle, seed=5, num_workers=2,
                         persistent_workers=persistent_workers, prefetch_factor=1)
    for _ in range(2):  # two epochs: persistent workers serve both
        expected, served = batches_without_pids(main), list(workers)
        assert len(served) == len(expected) == 6
        for (x, y, pids), (expected_x, expected_y) in zip(served, expected):
            np.testing.assert_array_equal(x.numpy(), expected_x)
            np.testing.assert_array_equal(y.numpy(), expected_y)
            assert os.getpid() not in set(pids.numpy().tolist())  # built in another process
    assert {int(p) for _, _, pids in main for p in pids.numpy()} == {os.getpid()}


def finishes_within(seconds, work):
    """What ``work()`` returned or raised, run in a thread: a hang fails the test instead of stalling the suite."""
    import threading
    outcome = {}

    def run():
        try:
            outcome["value"] = work()
        except BaseException as error:
            outcome["error"] = error
    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    runner.join(timeout=seconds)
    assert not runner.is_alive(), f"still waiting after {seconds} s: the loader hung"
    return outcome


class Broken(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        raise KeyError(f"sample {index} is missing")


@pytest.mark.parametrize("start_method", ["spawn", "forkserver"])
def test_workers_started_another_way_build_the_same_batches_and_errors(start_method):
    import multiprocessing
    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{start_method!r} is not a start method on this OS")
    expected = batches_without_pids(DataLoader(SquaresWithPid(), batch_size=4, shuffle=True, seed=5))
    for context in (start_method, multiprocessing.get_context(start_method)):
        loader = DataLoader(SquaresWithPid(), batch_size=4, shuffle=True, seed=5, num_workers=2,
                            multiprocessing_context=context)
        served = batches_without_pids(loader)
        assert len(served) == len(expected)
        for (x, y), (expected_x, expected_y) in zip(served, expected):
            np.testing.assert_array_equal(x, expected_x)
            np.testing.assert_array_equal(y, expected_y)
    with pytest.raises(KeyError, match="sample 0 is missing"):
        list(DataLoader(Broken(), batch_size=2, num_workers=1, multiprocessing_context=start_method))


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_idle_persistent_workers_stay_while_the_main_process_lives(start_method, monkeypatch):
    import multiprocessing
    import time
    from minigrad.data import workers
    if start_method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"{start_method!r} is not a start method on this OS")
    monkeypatch.setattr(workers, "PARENT_CHECK_S", 0.05)  # idle workers look for their parent every 50 ms
    loader = DataLoader(SquaresWithPid(), batch_size=4, num_workers=2, persistent_workers=True,
                        multiprocessing_context=start_method)
    first = {int(p) for _, _, pids in loader for p in pids.numpy()}
    time.sleep(0.5)  # idle: each worker checks ~10 times (under forkserver its parent is the server)
    second = {int(p) for _, _, pids in loader for p in pids.numpy()}
    assert len(first) == 2 and first == second


def test_an_error_in_a_worker_reaches_the_main_process_with_the_workers_traceback():
    with pytest.raises(KeyError, match="sample 0 is missing") as raised:
        list(DataLoader(Broken(), batch_size=2, num_workers=1))
    cause = str(raised.value.__cause__)
    assert re.search(r"in DataLoader worker process 0 \(pid \d+\)", cause) and "in __getitem__" in cause


def test_stopping_the_workers_after_an_error_never_hangs():
    # The main process stops the workers while the last one may still be sending its answer.
    # multiprocessing.Pool hung here (within 300 tries in each of three runs): a worker terminated in the
    # middle of writing to the queue the workers share leaves its lock taken, and the Pool waits on it.
    def fail_500_times():
        for _ in range(500):
            with pytest.raises(KeyError):
                list(DataLoader(Broken(), batch_size=2, num_workers=1))
    outcome = finishes_within(120, fail_500_times)
    assert "error" not in outcome, outcome.get("error")


def test_batches_too_big_for_a_pipe_in_both_directions_do_not_deadlock():
    # 50_000 indices (400 kB) outgrow a pipe's buffer: handed out as index lists, the main process
    # would block writing to a worker that is itself blocked writing its previous batch back.
    data = indexed_dataset(200_000)
    def both():
        return [[x.numpy() for x, _ in DataLoader(data, 50_000, shuffle=True, seed=1, num_workers=workers)]
                for workers in (0, 2)]
    outcome = finishes_within(60, both)
    in_main, in_workers = outcome["value"]
    assert len(in_main) == len(in_workers) == 4
    for a, b in zip(in_main, in_workers):
        np.testing.assert_array_equal(a, b)


class UnpicklableError(Exception):
    def __init__(self, sample, reason):  # pickle rebuilds an exception from its message alone: this fails
        super().__init__(f"sample {sample}: {reason}")


class RaisesUnpicklable(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, index):
        raise UnpicklableError(index, "corrupt file")


def test_an_error_that_cannot_travel_back_arrives_as_a_runtime_error_with_its_type_and_message():
    with pytest.raises(RuntimeError, match="UnpicklableError: sample 0: corrupt file"):
        list(DataLoader(RaisesUnpicklable(), batch_size=2, num_workers=1))


class Sleeps(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        import time
        time.sleep(30 if index >= 2 else 0)
        return np.float32(index)


def test_timeout_bounds_the_wait_for_a_workers_batch_like_torch():
    served = []
    loader = DataLoader(Sleeps(), batch_size=2, num_workers=1, timeout=3)
    outcome = finishes_within(20, lambda: [served.append(batch.numpy().tolist()) for batch in loader])
    assert served == [[0.0, 1.0]]  # the first batch came; the second (30 s) did not within 3 s
    assert re.search(r"DataLoader timed out after 3\.0 seconds \(timeout=3\.0\): worker process 0 \(pid \d+\) "
                     r"has not sent its batch", str(outcome.get("error")))


def test_a_stuck_persistent_worker_is_replaced_after_the_timeout_when_the_next_epoch_starts():
    loader = DataLoader(Sleeps(), batch_size=2, num_workers=1, timeout=3, persistent_workers=True)

    def first_batch():
        for batch in loader:
            return batch.numpy().tolist()  # a break: the second batch stays owed, its worker asleep
    for _ in range(2):  # the second epoch's start waits 3 s for what is owed, then starts a new worker
        stuck = loader._workers
        outcome = finishes_within(30, first_batch)
        assert outcome.get("value") == [0.0, 1.0]
        assert stuck is None or (stuck.stopped and loader._workers is not stuck)


def test_a_ctrl_c_while_dropping_the_owed_batches_stops_the_workers(monkeypatch):
    loader = DataLoader(SquaresWithPid(), batch_size=4, num_workers=2, persistent_workers=True)
    batches = iter(loader)
    next(batches)
    workers = loader._workers
    pids = [process.pid for process in workers.processes]

    def interrupted():
        raise KeyboardInterrupt
    monkeypatch.setattr(workers, "_receive", interrupted)
    del batches  # a break: the owed batches are dropped when the next epoch starts, where a Ctrl-C is raised
    with pytest.raises(KeyboardInterrupt):
        list(loader)
    assert workers.stopped and loader._workers is None
    assert_all_exit(pids, within_s=10)
    assert len(list(loader)) == 6  # and the next epoch starts new ones


def test_a_forked_child_uses_workers_of_its_own_and_leaves_the_parents_alone():
    import multiprocessing
    loader = DataLoader(SquaresWithPid(), batch_size=4, num_workers=2, persistent_workers=True)
    expected = [x.tolist() for x, _ in batches_without_pids(DataLoader(SquaresWithPid(), batch_size=4))]
    for _ in loader:
        break  # the parent's workers owe batches when the child is forked
    parents = {p.pid for p in loader._workers.processes}
    results = multiprocessing.get_context("fork").SimpleQueue()

    def in_the_child():
        served = list(loader)
        results.put(([x.numpy().tolist() for x, _, _ in served], {int(p) for _, _, ps in served for p in ps.numpy()}))
    child = multiprocessing.get_context("fork").Process(target=in_the_child)
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    child_batches, child_pids = results.get()
    assert child_batches == expected and child_pids.isdisjoint(parents)
    served = list(loader)  # the parent's workers, untouched by the child
    assert [x.numpy().tolist() for x, _, _ in served] == expected
    assert {int(p) for _, _, ps in served for p in ps.numpy()} == parents


class ForksAHelper(Dataset):
    """Each worker forks a helper process that outlives it (and writes the helper's pid down)."""

    def __init__(self, parent_pid, helpers):
        self.parent_pid, self.helpers = parent_pid, helpers

    def __len__(self):
        return 200_000  # the order of an epoch, 1.6 MB, outgrows the pipe's buffer

    def __getitem__(self, index):
        if os.getpid() != self.parent_pid and index < 2:
            helper = os.fork()
            if helper == 0:
                import time
                time.sleep(600)  # (killed by the test)
                os._exit(0)
            with open(self.helpers, "a") as file:
                file.write(f"{helper}\n")
        return np.float32(index)


def test_a_dead_workers_pipe_breaks_even_when_a_process_it_forked_lives_on(tmp_path):
    import signal
    helpers = tmp_path / "helpers"
    loader = DataLoader(ForksAHelper(os.getpid(), helpers), batch_size=100_000, num_workers=1,
                        persistent_workers=True)
    try:
        assert len(list(loader)) == 2
        worker = loader._workers.processes[0]
        killed = worker.pid
        os.kill(killed, signal.SIGKILL)
        worker.join()
        outcome = finishes_within(20, lambda: list(loader))  # sending the 1.6 MB order to the dead worker
        assert re.search(rf"DataLoader worker process \(pid \[{killed}\]\) exited unexpectedly "
                         r"\(killed by SIGKILL\)", str(outcome.get("error")))
    finally:
        for pid in helpers.read_text().split():
            os.kill(int(pid), signal.SIGKILL)


def test_persistent_workers_survive_a_break_and_serve_the_next_epochs_in_order():
    loader = DataLoader(SquaresWithPid(), batch_size=4, num_workers=2, persistent_workers=True, prefetch_factor=2)
    expected = batches_without_pids(DataLoader(SquaresWithPid(), batch_size=4))
    for batch in loader:
        pids = set(batch[2].numpy().tolist())
        break  # 4 batches still owed by the workers: dropped, not served in the next epoch
    for _ in range(2):
        served = list(loader)
        assert len(served) == len(expected)
        for (x, y, batch_pids), (expected_x, expected_y) in zip(served, expected):
            np.testing.assert_array_equal(x.numpy(), expected_x)
            np.testing.assert_array_equal(y.numpy(), expected_y)
            pids |= set(batch_pids.numpy().tolist())
    assert len(pids) == 2 and os.getpid() not in pids  # the same two workers all along


def test_a_second_loop_over_a_loader_with_busy_persistent_workers_gets_its_own():
    loader = DataLoader(SquaresWithPid(), batch_size=4, num_workers=2, persistent_workers=True)
    expected = batches_without_pids(DataLoader(SquaresWithPid(), batch_size=4))
    outer_pids, inner_pids = set(), set()
    for k, (x, _, pids) in enumerate(loader):
        np.testing.assert_array_equal(x.numpy(), expected[k][0])
        outer_pids |= set(pids.numpy().tolist())
        if k == 0:
            inner = list(loader)
            assert [b[0].numpy().tolist() for b in inner] == [e[0].tolist() for e in expected]
            inner_pids = {p for b in inner for p in b[2].numpy().tolist()}
    assert inner_pids and outer_pids.isdisjoint(inner_pids)


class DiesInWorkers(Dataset):
    """A dataset whose worker process exits in the middle of a batch (a crash, the OOM killer)."""

    def __init__(self, parent_pid):
        self.parent_pid = parent_pid

    def __len__(self):
        return 4

    def __getitem__(self, index):
        if os.getpid() != self.parent_pid:
            os._exit(3)
        return np.float32(index)


@pytest.mark.parametrize("num_workers", [1, 2])
def test_a_worker_that_dies_raises_instead_of_hanging(num_workers):
    loader = DataLoader(DiesInWorkers(os.getpid()), batch_size=2, num_workers=num_workers)
    outcome = finishes_within(60, lambda: list(loader))
    assert re.search(r"DataLoader worker process \(pid \[\d+\]\) exited unexpectedly \(exit code 3\)",
                     str(outcome.get("error")))


def test_a_persistent_worker_killed_between_epochs_raises_and_the_next_epoch_starts_new_ones():
    import signal
    loader = DataLoader(SquaresWithPid(), batch_size=4, num_workers=2, persistent_workers=True)
    expected = batches_without_pids(DataLoader(SquaresWithPid(), batch_size=4))
    list(loader)
    killed = loader._workers.processes[1].pid
    os.kill(killed, signal.SIGKILL)
    loader._workers.processes[1].join()  # dead, its pipe closed: the next epoch's first send finds it broken
    outcome = finishes_within(60, lambda: list(loader))
    assert re.search(rf"DataLoader worker process \(pid \[{killed}\]\) exited unexpectedly \(killed by SIGKILL\)",
                     str(outcome.get("error")))
    served = list(loader)
    assert [x.numpy().tolist() for x, _, _ in served] == [x.tolist() for x, _ in expected]
    assert killed not in {int(p) for _, _, pids in served for p in pids.numpy()}


WORKERS_OF_A_KILLED_PROCESS = """
import time
import numpy as np
from minigrad.data import DataLoader, TensorDataset
idle = DataLoader(TensorDataset(np.arange(8.0)), batch_size=2, num_workers=2, persistent_workers=True)
list(idle)  # its workers wait for the next epoch
busy = DataLoader(TensorDataset(np.zeros((400_000, 8))), batch_size=100_000, num_workers=2, persistent_workers=True)
batches = iter(busy)
next(batches)  # its workers are stuck sending 6 MB batches that nobody reads yet
print(*[process.pid for loader in (idle, busy) for process in loader._workers.processes], flush=True)
time.sleep(60)
"""


def pids_printed_before_a_kill(script):
    """Run ``script`` in a new Python, read the pids it prints, then SIGKILL it: no clean-up
    runs, so its workers must notice by themselves."""
    import signal
    import subprocess
    import sys
    main = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        return [int(pid) for pid in main.stdout.readline().split()]
    finally:
        main.send_signal(signal.SIGKILL)
        main.wait(timeout=30)


def test_workers_exit_when_the_main_process_is_killed():
    workers = pids_printed_before_a_kill(WORKERS_OF_A_KILLED_PROCESS)
    assert len(workers) == 4
    assert_all_exit(workers)


def assert_all_exit(pids, within_s=30):
    """Every process in ``pids`` exits within ``within_s`` (any still running is killed, then the test fails)."""
    import signal
    import time

    def alive(pid):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
    deadline = time.monotonic() + within_s
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in pids if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running {within_s} s after the main process died: {left}"


IDLE_WORKERS_AND_A_PROCESS_HOLDING_THEIR_PIPES = """
import os, subprocess, time
import numpy as np
from minigrad.data import DataLoader, TensorDataset, workers
workers.PARENT_CHECK_S = 0.1
idle = DataLoader(TensorDataset(np.arange(8.0)), batch_size=2, num_workers=2, persistent_workers=True)
list(idle)
for pipe in idle._workers.pipes:  # another program that inherits the main ends keeps the pipes open
    os.set_inheritable(pipe.fileno(), True)
holder = subprocess.Popen(["sleep", "60"], close_fds=False)
print(holder.pid, *[process.pid for process in idle._workers.processes], flush=True)
time.sleep(60)
"""


def test_idle_workers_notice_a_killed_main_process_even_when_its_pipes_stay_open():
    import signal
    holder, *workers = pids_printed_before_a_kill(IDLE_WORKERS_AND_A_PROCESS_HOLDING_THEIR_PIPES)
    try:
        assert len(workers) == 2
        assert_all_exit(workers)
    finally:
        os.kill(holder, signal.SIGKILL)


LOADERS_LEFT_MID_EPOCH_AT_EXIT = """
import gc
import numpy as np
from minigrad.data import DataLoader, TensorDataset
data = TensorDataset(np.arange(40.0))
at_exit = DataLoader(data, batch_size=2, num_workers=2, persistent_workers=True)
left = iter(at_exit)
next(left)  # a started epoch that the interpreter's exit closes
in_a_cycle = DataLoader(data, batch_size=2, num_workers=2, persistent_workers=True)
batches = iter(in_a_cycle)
next(batches)
in_a_cycle.cycle = batches  # loader -> generator -> loader: only the garbage collector frees them
del in_a_cycle, batches
gc.collect()
print("collected", flush=True)
"""


def test_a_loader_left_in_the_middle_of_an_epoch_lets_the_garbage_collector_and_the_interpreter_finish():
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", LOADERS_LEFT_MID_EPOCH_AT_EXIT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout == "collected\n", done.stderr


def test_collate_fn_receives_the_list_of_samples_like_torch():
    def pad_and_count(samples):
        return np.stack([s[0] for s in samples]), len(samples)

    for num_workers in (0, 1):
        loader = DataLoader(SquaresWithPid(), batch_size=10, collate_fn=pad_and_count, num_workers=num_workers)
        served = list(loader)
        assert [count for _, count in served] == [10, 10, 3]
        np.testing.assert_array_equal(served[2][0].numpy()[:, 0], [400.0, 441.0, 484.0])


def test_default_collate_stacks_fields_like_torch():
    import torch
    from torch.utils.data import default_collate as torch_collate

    samples = [(np.array([1.0, 2.0]), 3, 0.5, np.uint8(7), np.float32(0.25), np.int32(-2), True,
                np.bool_(True), np.float16(1.5), np.array(4, np.int16)),
               (np.array([4.0, 5.0]), 6, 1.5, np.uint8(9), np.float32(0.75), np.int32(5), False,
                np.bool_(False), np.float16(-2.0), np.array(7, np.int16))]
    ours, theirs = default_collate(samples), torch_collate(samples)
    assert len(ours) == len(theirs) == 10
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b.numpy())
        assert str(a.dtype) == str(b.dtype).replace("torch.", "")
    dicts = [{"x": np.ones(2), "y": 1}, {"x": np.zeros(2), "y": 2}]
    np.testing.assert_array_equal(default_collate(dicts)["x"], torch_collate(dicts)["x"].numpy())
    assert isinstance(torch.tensor(0), torch.Tensor)


def test_a_sampler_sets_the_order_like_torch():
    from torch.utils.data import DataLoader as TorchLoader

    order = [5, 0, 7, 7, 2]
    ours = DataLoader(indexed_dataset(10), batch_size=2, sampler=order)
    theirs = TorchLoader(list(range(10)), batch_size=2, sampler=order)
    assert len(ours) == len(theirs) == 3
    assert served_indices(ours) == [int(i) for batch in theirs for i in batch] == order
    assert served_indices(DataLoader(indexed_dataset(4), 3, sampler=SequentialSampler(range(4)))) == [0, 1, 2, 3]
    mg.manual_seed(0)
    assert sorted(served_indices(DataLoader(indexed_dataset(6), 4, sampler=RandomSampler(range(6))))) == list(range(6))
    with pytest.raises(ValueError, match="sampler: the sampler sets the order, so shuffle must be False"):
        DataLoader(indexed_dataset(4), 2, shuffle=True, sampler=order)


def test_pin_memory_on_the_cpu_gives_the_same_batches():
    plain = [x.numpy() for x, _ in DataLoader(indexed_dataset(7), 3)]
    pinned = [x.numpy() for x, _ in DataLoader(indexed_dataset(7), 3, pin_memory=True)]
    for a, b in zip(plain, pinned):
        np.testing.assert_array_equal(a, b)


def test_pin_memory_stages_cuda_batches_in_pinned_host_memory(monkeypatch):
    # No GPU here: a stand-in for CuPy's pinned allocator, and the copy to the device recorded.
    class PinnedBuffer(bytearray):
        pass

    allocated, copied = [], []

    class FakeCupy:
        class cuda:
            @staticmethod
            def alloc_pinned_memory(size):
                allocated.append(PinnedBuffer(size))
                return allocated[-1]

    monkeypatch.setattr(backend, "_cupy", FakeCupy)
    loader = DataLoader(indexed_dataset(5), batch_size=2, pin_memory=True)
    loader.device = "cuda:0"  # as if asked for on a CUDA machine
    monkeypatch.setattr(backend, "to_device", lambda array, device: copied.append(array) or array)
    monkeypatch.setattr(backend, "parse_device", lambda device: "cpu" if device is None else device)
    batches = list(loader)
    assert len(allocated) == len(copied) == 6  # every field of every batch went through pinned memory
    def memory_owner(array):
        while isinstance(array, np.ndarray) and array.base is not None:
            array = array.base
        return array.obj if isinstance(array, memoryview) else array

    assert all(isinstance(memory_owner(array), PinnedBuffer) for array in copied)
    np.testing.assert_array_equal(batches[2][0].numpy(), [[4.0, 1.0]])


@pytest.mark.cuda  # selected with the device tests' CUDA half (-m cuda): on a GPU or the stand-in
def test_pin_memory_on_a_real_gpu_gives_the_same_batches():
    if not mg.cuda.is_available():
        pytest.skip("CUDA backend not available here (CuPy not installed or no GPU visible)")
    plain = [x.numpy() for x, _ in DataLoader(indexed_dataset(7), 3, device="cuda")]
    pinned = [x for x, _ in DataLoader(indexed_dataset(7), 3, device="cuda", pin_memory=True)]
    assert all(x.device == "cuda:0" for x in pinned)
    for a, b in zip(plain, pinned):
        np.testing.assert_array_equal(a, b.numpy())


def test_bad_worker_options_are_rejected_like_torch():
    with pytest.raises(ValueError, match="num_workers: expected an int >= 0, got -1"):
        DataLoader(indexed_dataset(4), num_workers=-1)
    with pytest.raises(ValueError, match="persistent_workers: needs num_workers > 0"):
        DataLoader(indexed_dataset(4), persistent_workers=True)
    with pytest.raises(TypeError, match="collate_fn: expected a function"):
        DataLoader(indexed_dataset(4), collate_fn=3)
    for timeout in (-1, True, float("nan"), float("inf"), "5"):
        with pytest.raises(ValueError, match=r"timeout: expected finite seconds >= 0 \(0: wait as long as it "
                                             r"takes\), got"):
            DataLoader(indexed_dataset(4), num_workers=1, timeout=timeout)
    with pytest.raises(ValueError, match=r"multiprocessing_context: expected None, one of \[.*'spawn'.*\] or a "
                                         r"multiprocessing context, got 'threads'"):
        DataLoader(indexed_dataset(4), num_workers=1, multiprocessing_context="threads")
    with pytest.raises(TypeError, match="multiprocessing_context: expected None, a start method's name or a "
                                        "multiprocessing context, got int"):
        DataLoader(indexed_dataset(4), num_workers=1, multiprocessing_context=3)
    with pytest.raises(ValueError, match=r"multiprocessing_context: starts worker processes, so it needs "
                                         r"num_workers > 0 \(as PyTorch\), got 'spawn' with num_workers=0"):
        DataLoader(indexed_dataset(4), multiprocessing_context="spawn")
    for prefetch_factor in (0, 65, True, 2.0):
        with pytest.raises(ValueError, match=r"prefetch_factor: expected an int from 1 to 64 \(a worker's batches "
                                             rf"in flight wait in its pipe\), got {prefetch_factor!r}"):
            DataLoader(indexed_dataset(4), num_workers=1, prefetch_factor=prefetch_factor)
    with pytest.raises(ValueError, match="timeout: limits the wait for a worker process's batch, so it needs "
                                         "num_workers > 0, got timeout=5 with num_workers=0"):
        DataLoader(indexed_dataset(4), timeout=5)
