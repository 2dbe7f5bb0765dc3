"""Data-parallel training over MPI equals one process (SPEC section 8).

The multi-process tests start ``mpiexec -n N`` on ``distributed_worker.py`` (or on
``python -m minigrad train``), each bounded by a timeout, and compare what every rank wrote
with a single-process reference computed here by the plain recipe,
``criterion(model(x), y).backward()`` on the whole batch. One launch runs all cases of one
world size, because a launch costs seconds. The rest are in-process unit tests of the
sharding rule, the plan check and the flat buffer.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
from minigrad import distributed, random
from distributed_cases import NUM_CLASSES, evaluation_setup, gradient_cases, setup
from test_datasets import write_mnist_files

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO_ROOT, "tests", "distributed_worker.py")
LAUNCH_TIMEOUT = 180  # seconds; a hang fails the test instead of blocking CI
RTOL, ATOL = 1e-12, 1e-14


# ----------------------------------------------------------------------------- launching
def mpiexec_path():
    found = shutil.which("mpiexec") or shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    if found is None:
        pytest.fail("mpiexec not found: the test extra installs it (pip install -e '.[test]' brings mpich)")
    return found


def mpiexec(num_ranks, *arguments, timeout=LAUNCH_TIMEOUT, **environment_overrides):
    """Run ``mpiexec -n num_ranks python ARGUMENTS`` from the repository root, one BLAS thread
    per rank; returns the CompletedProcess (a hang raises TimeoutExpired and fails the test)."""
    environment = dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
                       MKL_NUM_THREADS="1")
    environment.update(environment_overrides)
    command = [mpiexec_path(), "-n", str(num_ranks), sys.executable, *arguments]
    return subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=timeout)


def check_ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


@pytest.fixture(scope="module", params=[1, 2, 3])
def gradient_run(request, tmp_path_factory):
    """One launch per world size: every rank's data-parallel gradients for every case, and its
    evaluation of a 23-sample test set. Returns (world size, [per rank results], out_dir)."""
    out_dir = tmp_path_factory.mktemp(f"gradients{request.param}")
    check_ok(mpiexec(request.param, WORKER, "gradients", str(out_dir)))
    return request.param, [dict(np.load(out_dir / f"rank{rank}.npz")) for rank in range(request.param)], out_dir


def full_batch_reference(case):
    """The plain recipe on the whole batch, dropout keyed per sample as accumulate keys it."""
    model, criterion, inputs, targets = setup(case)
    mg.manual_seed(case["seed"])
    with random.per_sample_masks():
        loss = criterion(model(inputs), targets)
    loss.backward()
    return loss.item(), [p.grad.numpy() for p in model.parameters()]


# ----------------------------------------------------------------------------- the gradient
def test_data_parallel_gradient_equals_full_batch_gradient(gradient_run):
    """Every case (loss variants, batch sizes 1, 2, 5, 7, micro-batch sizes None/1/2/3, dropout)
    on every rank: the full batch's gradient and loss, to float64 round-off."""
    world_size, ranks, _ = gradient_run
    assert [int(r["shards"][1]) for r in ranks] == [world_size] * world_size  # really launched N ranks
    for case in gradient_cases():
        expected_loss, expected_grads = full_batch_reference(case)
        for rank, results in enumerate(ranks):
            where = f"{case} on rank {rank} of {world_size}"
            np.testing.assert_allclose(results[case["name"] + "/loss"], expected_loss, rtol=RTOL, err_msg=where)
            for index, expected in enumerate(expected_grads):
                np.testing.assert_allclose(results[f"{case['name']}/grad{index}"], expected, rtol=RTOL, atol=ATOL,
                                           err_msg=f"parameter {index}, {where}")


FAKE_CUPY = os.path.join(REPO_ROOT, "tests", "fake_cupy.py")  # CI's strict CuPy stand-in (issue 10)


@pytest.mark.skipif(not os.path.exists(FAKE_CUPY) and not mg.cuda.is_available(),
                    reason="needs a GPU or the test suite's CuPy stand-in (tests/fake_cupy.py)")
def test_data_parallel_gradient_on_cuda_is_staged_through_the_host(tmp_path):
    """On device 'cuda' (a GPU; without one, the test suite's strict CuPy stand-in, which refuses
    every implicit host conversion) the flat buffer is copied to the host for the Allreduce and
    back, explicitly: 2 ranks, every third case, the same gradients as the CPU reference."""
    result = mpiexec(2, WORKER, "gradients", str(tmp_path), "cuda", MINIGRAD_FAKE_CUDA="1",
                     PYTHONPATH=os.pathsep.join([REPO_ROOT, os.path.join(REPO_ROOT, "tests")]))
    check_ok(result)
    ranks = [dict(np.load(tmp_path / f"rank{rank}.npz")) for rank in range(2)]
    for case in gradient_cases()[::3]:
        _, expected_grads = full_batch_reference(case)
        for rank, results in enumerate(ranks):
            for index, expected in enumerate(expected_grads):
                np.testing.assert_allclose(results[f"{case['name']}/grad{index}"], expected, rtol=RTOL, atol=ATOL,
                                           err_msg=f"parameter {index}, {case} on rank {rank} (cuda)")


def test_cases_cover_unequal_and_empty_shards(gradient_run):
    """The case list really exercises shards the world size does not divide, and empty ones."""
    world_size, ranks, _ = gradient_run
    batch_sizes = {case["batch_size"] for case in gradient_cases()}
    shard_sizes = {size for batch_size in batch_sizes for size in distributed.shard_sizes(batch_size, world_size)}
    assert [int(r["shards"][0]) for r in ranks] == distributed.shard_sizes(5, world_size)
    if world_size > 1:
        assert 0 in shard_sizes and any(b % world_size for b in batch_sizes)


def test_averaging_over_ranks_differs_on_unequal_shards(gradient_run):
    """DDP's recipe (mean over ranks of each rank's mean-loss gradient) is NOT the batch's
    gradient when shards are unequal, as ``loss / accumulation_steps`` is not for micro-batches;
    with equal shards and plain mean cross-entropy it is."""
    world_size, ranks, _ = gradient_run
    if world_size == 1:
        return  # one rank: the average over ranks is the plain mean, nothing to show
    differs = {}
    for case in gradient_cases():
        if case["loss"] != "cross_entropy" or case["dropout"]:
            continue
        _, expected = full_batch_reference(case)
        averaged = [ranks[0][f"{case['name']}/averaged{i}"] for i in range(len(expected))]
        equal_shards = case["batch_size"] % world_size == 0
        close = all(np.allclose(a, e, rtol=1e-9, atol=1e-12) for a, e in zip(averaged, expected))
        differs[case["batch_size"]] = not close
        if equal_shards:
            assert close, f"equal shards of plain mean cross-entropy: averaging is exact ({case})"
    assert differs[5] and differs[7], f"averaging should be wrong on unequal shards: {differs}"


# ----------------------------------------------------------------------------- evaluation
def test_evaluation_on_a_test_set_the_ranks_do_not_divide_is_exact(gradient_run):
    """23 test samples in batches of 11, 11 and 1 (ranks with an empty shard) on 1, 2 or 3 ranks:
    the same accuracy, per-class accuracy and loss as arg-max and cross-entropy computed here on
    the whole set."""
    world_size, _, out_dir = gradient_run
    model, images, labels = evaluation_setup()
    with mg.no_grad():
        logits = model(mg.tensor(images)).numpy()
    predicted = logits.argmax(axis=1)
    log_probabilities = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
        - logits.max(1, keepdims=True)
    expected_loss = -log_probabilities[np.arange(len(labels)), labels].mean()
    for rank in range(world_size):
        with open(out_dir / f"rank{rank}.json") as file:
            stats = json.load(file)
        assert stats["accuracy"] == np.mean(predicted == labels)
        assert stats["per_class_accuracy"] == [np.mean(predicted[labels == c] == c) for c in range(NUM_CLASSES)]
        np.testing.assert_allclose(stats["loss"], expected_loss, rtol=1e-12)


# ----------------------------------------------------------------------------- faults
def test_one_rank_raising_ends_the_job_with_its_message():
    """Rank 1 raises at step 2 while ranks 0 and 2 wait in the gradient Allreduce: mpiexec must
    exit non-zero (the timeout turns a hang into a failure), with rank 1's message."""
    result = mpiexec(3, WORKER, "fail", "1", timeout=60)
    assert result.returncode != 0
    assert "bad sample in the batch of step 2 on rank 1" in result.stderr
    assert "rank 1 of 3 failed" in result.stderr
    assert "finished" not in result.stdout


# ----------------------------------------------------------------------------- single process
def test_a_single_process_never_imports_mpi():
    """Without mpiexec, training runs as before and mpi4py is never imported."""
    code = ("import sys, minigrad as mg, minigrad.nn as nn\n"
            "from minigrad import train, distributed\n"
            "model = nn.Linear(3, 2)\n"
            "train.accumulate(model, nn.CrossEntropyLoss(), mg.randn(4, 3), mg.tensor([0, 1, 1, 0]), 3)\n"
            "assert not distributed.world().is_distributed and distributed.world().size == 1\n"
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'\n")
    environment = {k: v for k, v in os.environ.items() if k not in distributed.LAUNCHER_VARIABLES}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=environment, capture_output=True,
                            text=True, timeout=120)
    check_ok(result)


# ----------------------------------------------------------------------------- the sharding rule
@given(batch_size=st.integers(0, 50), world_size=st.integers(1, 9))
def test_shards_are_array_split_slices(batch_size, world_size):
    """Rank r's shard is np.array_split's r-th piece: contiguous, in rank order, sizes differing
    by at most one, covering the batch exactly once (no padding, no duplicates)."""
    expected = np.array_split(np.arange(batch_size), world_size)
    pieces = [np.arange(batch_size)[distributed.shard(batch_size, rank, world_size)] for rank in range(world_size)]
    for piece, reference in zip(pieces, expected):
        np.testing.assert_array_equal(piece, reference)
    assert distributed.shard_sizes(batch_size, world_size) == [len(p) for p in expected]


def test_shard_rejects_a_rank_outside_the_world():
    with pytest.raises(ValueError, match=r"rank: expected 0 <= rank < world_size = 2, got 2"):
        distributed.shard(5, 2, 2)


# ----------------------------------------------------------------------------- the plan check
def test_differences_name_each_differing_option():
    plans = [{"lr": 0.1, "batch_size": 8, "seed": 0}, {"lr": 0.2, "batch_size": 8, "seed": 0},
             {"lr": 0.1, "batch_size": 8}]
    message = distributed.describe_differences(plans)
    assert "'lr': rank 0 has 0.1, rank 1 has 0.2, rank 2 has 0.1" in message
    assert "'seed': rank 0 has 0, rank 1 has 0, rank 2 has (missing)" in message
    assert "batch_size" not in message


def test_plan_digest_depends_on_values_not_key_order():
    assert distributed.plan_digest({"a": 1, "b": [2, 3]}) == distributed.plan_digest({"b": [2, 3], "a": 1})
    assert distributed.plan_digest({"a": 1}) != distributed.plan_digest({"a": 1.5})


# ----------------------------------------------------------------------------- the flat buffer
def test_flat_buffer_round_trips_gradients_flags_and_extras():
    """pack then unpack (the Allreduce of one rank is the identity) gives the same gradients,
    keeps None for a parameter without one, and returns the extras."""
    weight, bias, unused = (mg.randn(3, 2, dtype=mg.float64, requires_grad=True),
                            mg.randn(2, dtype=mg.float64, requires_grad=True),
                            mg.randn(4, dtype=mg.float64, requires_grad=True))
    weight.grad, bias.grad = mg.tensor(np.arange(6.0).reshape(3, 2).T.copy().T), mg.tensor([7.0, 8.0], dtype=mg.float64)
    flat, device = distributed.pack_gradients([weight, bias, unused], [0.25])
    assert device == "cpu" and flat.shape == (6 + 2 + 4 + 3 + 1,)
    extras = distributed.unpack_gradients([weight, bias, unused], flat, 1)
    np.testing.assert_array_equal(weight.grad.numpy(), np.arange(6.0).reshape(3, 2))
    np.testing.assert_array_equal(bias.grad.numpy(), [7.0, 8.0])
    assert unused.grad is None and extras == [0.25]


def test_flat_buffer_refuses_mixed_dtypes():
    parameters = [mg.randn(2, dtype=mg.float64, requires_grad=True), mg.randn(2, requires_grad=True)]
    with pytest.raises(ValueError, match=r"sum_gradients: parameters must share one dtype and device"):
        distributed.pack_gradients(parameters, [])


def test_one_process_world_has_identity_collectives():
    world = distributed.World()
    assert (world.rank, world.size, world.is_distributed) == (0, 1, False)
    assert world.shard(7) == slice(0, 7) and world.sum_normalizer(2.5) == 2.5
    np.testing.assert_array_equal(world.sum(np.array([1.0, 2.0])), [1.0, 2.0])
    world.check_same_plan({"anything": object()})  # nothing to compare with: no error


# ----------------------------------------------------------------------------- the command line
# MNIST-format files written by the test (100 train, 37 test images): no scikit-learn import
# in every rank. 100 = 6 x 16 + 4: the last batch is short; 37 is prime; the cnn has dropout.
CLI_OPTIONS = ["train", "--no-progress", "--dataset", "mnist", "--batch-size", "16", "--micro-batch-size", "3",
               "--dtype", "float64", "--model", "cnn", "--optimizer", "sgd", "--lr", "0.05"]
TIMING_KEYS = ("images_per_second", "seconds")


@pytest.fixture(scope="module")
def mnist_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("mnist")
    write_mnist_files(directory, train_count=100, test_count=37)
    return str(directory)


@pytest.fixture(scope="module")
def cli_options(mnist_dir):
    return [*CLI_OPTIONS, "--data-dir", mnist_dir]


@pytest.fixture(scope="module")
def without_matplotlib(tmp_path_factory):
    """A PYTHONPATH on which ``import matplotlib`` fails, so the runs skip loss.png: drawing it
    after every epoch cost most of these tests' time, and the plot is not what they check."""
    shadow = tmp_path_factory.mktemp("no_matplotlib")
    (shadow / "matplotlib").mkdir()
    (shadow / "matplotlib" / "__init__.py").write_text("raise ImportError('hidden by test_distributed')\n")
    return os.pathsep.join([REPO_ROOT, str(shadow)])


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory, cli_options, without_matplotlib):
    """3 epochs on one process (in-process), 2 ranks and 3 ranks; and 2 epochs on 2 ranks
    resumed on 3 ranks to 3 epochs. Returns {name: output directory}."""
    root = tmp_path_factory.mktemp("cli")
    runs = {name: root / name for name in ("one", "two", "three", "two_then_three")}
    from minigrad import cli
    saved_matplotlib = sys.modules.get("matplotlib")
    sys.modules["matplotlib"] = None  # import matplotlib raises ImportError: no plot, as in the launches
    try:
        assert cli.main([*cli_options, "--epochs", "3", "--out", str(runs["one"])]) == 0
    finally:
        if saved_matplotlib is None:
            del sys.modules["matplotlib"]
        else:
            sys.modules["matplotlib"] = saved_matplotlib

    def launch(ranks, *options):
        result = mpiexec(ranks, "-m", "minigrad", *options, PYTHONPATH=without_matplotlib)
        check_ok(result)
        return result
    for name, ranks in (("two", 2), ("three", 3)):
        launch(ranks, *cli_options, "--epochs", "3", "--out", str(runs[name]))
    launch(2, *cli_options, "--epochs", "2", "--out", str(runs["two_then_three"]))
    resumed = launch(3, "train", "--no-progress", "--epochs", "3", "--resume", str(runs["two_then_three"]))
    assert "resumed after epoch 2" in resumed.stdout and resumed.stdout.count("epoch 3/3") == 1  # rank 0 only
    return runs


def final_state(directory):
    from minigrad import checkpoint
    state = checkpoint.load(os.path.join(directory, "checkpoint.npz"))
    with open(os.path.join(directory, "metrics.json")) as file:
        return state, json.load(file)


@pytest.mark.parametrize("name", ["two", "three", "two_then_three"])
def test_cli_run_on_any_ranks_ends_like_one_process(cli_runs, name):
    """Same parameters (rtol 1e-10), optimizer state, random state and metrics.json numbers as
    the one-process run; accuracies exactly (they are ratios of integer counts)."""
    (expected_state, expected_metrics), (state, metrics) = final_state(cli_runs["one"]), final_state(cli_runs[name])
    for key, value in expected_state["model"].items():
        np.testing.assert_allclose(state["model"][key], value, rtol=1e-10, atol=1e-14, err_msg=key)
    assert state["rng"] == expected_state["rng"] and state["loader"] == expected_state["loader"]
    assert metrics["config"] == expected_metrics["config"] and len(metrics["epochs"]) == 3
    for epoch, expected in zip(metrics["epochs"], expected_metrics["epochs"]):
        for key, value in expected.items():
            if key in TIMING_KEYS:
                continue
            if "accuracy" in key:
                assert epoch[key] == value, key
            else:
                np.testing.assert_allclose(epoch[key], value, rtol=1e-10, err_msg=key)


def test_ranks_given_different_options_stop_naming_the_option(cli_options):
    """Two ranks launched with different --lr (MPMD syntax): both stop, the message names 'lr'."""
    one_rank = [sys.executable, "-m", "minigrad", *cli_options, "--epochs", "1"]
    command = [mpiexec_path(), "-n", "1", *one_rank, "--lr", "0.05", ":", "-n", "1", *one_rank, "--lr", "0.07"]
    result = subprocess.run(command, cwd=REPO_ROOT, env=dict(os.environ, PYTHONPATH=REPO_ROOT, OMP_NUM_THREADS="1"),
                            capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert result.returncode != 0
    assert "ranks disagree on the training plan: 'lr': rank 0 has 0.05, rank 1 has 0.07" in result.stderr
    assert "epoch 1/1" not in result.stdout


def test_example_data_parallel_equals_one_process():
    result = mpiexec(3, os.path.join(REPO_ROOT, "examples", "data_parallel.py"), "--epochs", "1")
    check_ok(result)
    assert "samples per process in each batch: [32, 32, 32]; in the last batch: [31, 31, 31]" in result.stdout
    difference = float(result.stdout.split("max |parameter difference| after 1 epochs: ")[1].split()[0])
    assert difference < 1e-12


def test_rank_zero_failing_to_write_ends_the_job(cli_options, tmp_path):
    """--out names a file: rank 0, the only writer, refuses it (before training, or at the first
    checkpoint) while the other rank goes on to wait in a collective. The job must end non-zero
    within the timeout, with rank 0's error, instead of hanging."""
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("")
    result = mpiexec(2, "-m", "minigrad", *cli_options, "--epochs", "2", "--out", str(blocker), timeout=120)
    assert result.returncode != 0
    assert "not_a_directory" in result.stderr and "epoch 2/2" not in result.stdout


def test_cuda_without_index_gives_each_local_rank_its_own_gpu(monkeypatch):
    """Under MPI, --device cuda maps local rank r to cuda:(r mod GPUs); cpu and cuda:N are kept."""
    monkeypatch.setattr(mg.backend, "cuda_device_count", lambda: 2)
    world = distributed.World()
    world.comm, world.rank, world.size = object(), 3, 4  # a 4-rank world, seen from rank 3 (no MPI calls here)
    for variable in ("OMPI_COMM_WORLD_LOCAL_RANK", "PMIX_LOCAL_RANK", "SLURM_LOCALID"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MPI_LOCALRANKID", "1")
    assert world.device_for_this_rank("cuda") == "cuda:1"
    monkeypatch.setenv("MPI_LOCALRANKID", "2")
    assert world.device_for_this_rank("CUDA") == "cuda:0"  # round robin past the last GPU
    assert world.device_for_this_rank("cuda:1") == "cuda:1" and world.device_for_this_rank("cpu") == "cpu"
    monkeypatch.delenv("MPI_LOCALRANKID")
    assert world.device_for_this_rank("cuda") == "cuda:1"  # no launcher hint: the global rank, 3 mod 2
    assert distributed.World().device_for_this_rank("cuda") == "cuda"  # one process: untouched


def test_more_ranks_than_samples_is_allowed_and_said():
    """The command line states the shares, and that ranks beyond the batch size idle."""
    from minigrad import cli
    world = distributed.World()
    world.comm, world.rank, world.size = object(), 0, 5  # a 5-rank world seen from rank 0 (no MPI calls)
    text = cli.describe_ranks(3, world)
    assert "data parallel over 5 ranks: samples per rank in each batch [1, 1, 1, 0, 0]" in text
    assert "note: 5 ranks for batches of 3: 2 rank(s) get no sample" in text
    assert "note" not in cli.describe_ranks(5, world) and cli.describe_ranks(3, distributed.World()) == ""
