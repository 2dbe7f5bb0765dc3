"""``python -m minigrad train``: options, outputs, and resuming to the same parameters bit for bit.

Runs are tiny (--limit-train/--limit-test) and in-process (``cli.main``), except the one that
checks ``python -m minigrad`` itself starts.
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from minigrad import checkpoint, cli
from test_datasets import write_mnist_files

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--no-progress", "--limit-train", "48", "--limit-test", "30", "--batch-size", "8"]


def run(*args):
    return cli.main(["train", *TINY, *args])


def params_of(directory):
    return checkpoint.load(os.path.join(directory, "checkpoint.npz"))["model"]


def test_help_lists_every_option():
    result = subprocess.run([sys.executable, "-m", "minigrad", "train", "--help"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in ("--dataset", "--data-dir", "--download", "--model", "--epochs", "--batch-size",
                   "--micro-batch-size", "--optimizer", "--lr", "--momentum", "--weight-decay", "--device",
                   "--dtype", "--seed", "--out", "--resume", "--limit-train", "--limit-test", "--no-progress",
                   "--lr-schedule", "--lr-step-size", "--lr-gamma"):
        assert option in result.stdout
    assert "fashion-mnist" in result.stdout and "cifar10" in result.stdout
    assert "(default: None)" not in result.stdout and "(default: False)" not in result.stdout


@pytest.mark.parametrize("arguments, message", [
    (["--lr", "-1"], r"argument --lr: expected a positive number, got -1\.0"),
    (["--micro-batch-size", "0"], r"argument --micro-batch-size: expected a positive int, got 0"),
    (["--batch-size", "-4"], r"argument --batch-size: expected a positive int, got -4"),
    (["--epochs", "0"], r"argument --epochs: expected a positive int, got 0"),
    (["--momentum", "1.5"], r"argument --momentum: expected a number in \[0, 1\), got 1\.5"),
    (["--optimizer", "adam", "--momentum", "0.5"], r"argument --momentum: only SGD uses momentum, got --optimizer adam"),
    (["--weight-decay", "-0.1"], r"argument --weight-decay: expected a number >= 0, got -0\.1"),
    (["--device", "tpu"], r"argument --device: device: expected 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
    (["--dataset", "imagenet"], r"argument --dataset: invalid choice: 'imagenet'"),
    (["--lr", "fast"], r"argument --lr: invalid float value: 'fast'"),
])
def test_invalid_values_get_argparse_errors(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(*arguments)
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_no_command_is_an_error(capsys):
    for argv, message in (([], "the following arguments are required: COMMAND"),
                          (["fit"], "argument COMMAND: invalid choice: 'fit' (choose from 'train')")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_a_run_writes_metrics_checkpoint_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert run("--epochs", "2", "--micro-batch-size", "100", "--out", str(out)) == 0  # micro > batch is fine
    metrics = json.loads((out / "metrics.json").read_text())
    assert [record["epoch"] for record in metrics["epochs"]] == [1, 2]
    last = metrics["epochs"][-1]
    assert len(last["per_class_accuracy"]) == 10 and 0.0 <= last["test_accuracy"] <= 1.0
    assert last["images_per_second"] > 0 and len(last["step_losses"]) == 48 // 8
    assert np.mean(last["step_losses"]) == pytest.approx(last["train_loss"], rel=1e-6)  # equal batches
    assert metrics["config"]["micro_batch_size"] == 100 and metrics["config"]["dataset"] == "digits"
    assert metrics["config"]["normalize"] is True
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = checkpoint.load(out / "checkpoint.npz")
    assert state["epoch"] == 2 and state["loader"]["epoch"] == 2 and state["config"]["model"] == "mlp"
    printed = capsys.readouterr().out
    assert "epoch 2/2" in printed and "test accuracy" in printed and "class  accuracy" in printed
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]


def test_class_names_are_printed_for_fashion_mnist(tmp_path, capsys):
    write_mnist_files(tmp_path, train_count=16, test_count=12)
    assert cli.main(["train", "--no-progress", "--dataset", "fashion-mnist", "--data-dir", str(tmp_path),
                     "--epochs", "1", "--batch-size", "8"]) == 0
    printed = capsys.readouterr().out
    assert "Ankle boot" in printed and "T-shirt/top" in printed and "on 12 images" in printed


def test_missing_data_is_reported_without_a_traceback(tmp_path, capsys):
    assert cli.main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path)]) == 1
    assert "neither train-images-idx3-ubyte nor" in capsys.readouterr().err


@pytest.mark.parametrize("model, extra", [
    ("cnn", ["--micro-batch-size", "3"]),              # dropout + uneven micro-batches
    ("mlp", ["--optimizer", "sgd", "--lr", "0.05", "--dtype", "float64", "--no-normalize"]),
    ("mlp", ["--lr", "0.01", "--lr-schedule", "step", "--lr-step-size", "1", "--lr-gamma", "0.5"]),  # per epoch
])
def test_resume_reaches_the_same_parameters_bit_for_bit(tmp_path, model, extra):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run("--model", model, *extra, "--epochs", "2", "--out", str(straight))
    run("--model", model, *extra, "--epochs", "1", "--out", str(split))
    after_one_epoch = params_of(split)
    assert cli.main(["train", "--no-progress", "--resume", str(split), "--epochs", "2"]) == 0
    expected, actual = params_of(straight), params_of(split)
    assert list(actual) == list(expected)
    for name in expected:
        assert np.array_equal(actual[name], expected[name]), name
    assert not all(np.array_equal(after_one_epoch[name], actual[name]) for name in actual)  # it did train
    straight_metrics = json.loads((straight / "metrics.json").read_text())["epochs"]
    split_metrics = json.loads((split / "metrics.json").read_text())["epochs"]
    assert [r["step_losses"] for r in split_metrics] == [r["step_losses"] for r in straight_metrics]
    assert [r["test_loss"] for r in split_metrics] == [r["test_loss"] for r in straight_metrics]


@pytest.mark.parametrize("schedule, options, per_batch", [
    ("step", ["--lr-step-size", "2", "--lr-gamma", "0.5"], False),
    ("exponential", ["--lr-gamma", "0.7"], False),
    ("cosine", [], False),
    ("onecycle", [], True),
])
def test_lr_schedule_gives_torchs_learning_rates(tmp_path, schedule, options, per_batch):
    import torch

    run("--optimizer", "sgd", "--lr", "0.1", "--epochs", "4", "--lr-schedule", schedule, *options,
        "--out", str(tmp_path))
    recorded = [record["lr"] for record in json.loads((tmp_path / "metrics.json").read_text())["epochs"]]
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    steps_per_epoch = 48 // 8
    scheduler = {
        "step": lambda: torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5),
        "exponential": lambda: torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.7),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=4),
        "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, epochs=4,
                                                                steps_per_epoch=steps_per_epoch),
    }[schedule]()
    expected = []
    for _ in range(4):  # the lr of each epoch's last step
        for step in range(steps_per_epoch):
            optimizer.step()
            if step == steps_per_epoch - 1:
                expected.append(optimizer.param_groups[0]["lr"])
            if per_batch:
                scheduler.step()
        if not per_batch:
            scheduler.step()
    assert recorded == expected
    assert len(set(recorded)) > 1


@pytest.mark.parametrize("schedule", [["--optimizer", "sgd", "--lr-schedule", "onecycle"],  # lr and momentum per batch
                                      ["--lr-schedule", "cosine"], ["--lr-schedule", "exponential"]])
def test_an_interrupted_scheduled_run_resumes_exactly(tmp_path, monkeypatch, schedule):
    straight, split = tmp_path / "straight", tmp_path / "split"
    run("--lr", "0.05", *schedule, "--epochs", "3", "--out", str(straight))
    real_train_epoch, calls = cli.train_epoch, []

    def killed_in_epoch_two(*args, **kwargs):  # the process dies during the second epoch
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_train_epoch(*args, **kwargs)

    monkeypatch.setattr(cli, "train_epoch", killed_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run("--lr", "0.05", *schedule, "--epochs", "3", "--out", str(split))
    monkeypatch.setattr(cli, "train_epoch", real_train_epoch)
    assert cli.main(["train", "--no-progress", "--resume", str(split)]) == 0
    expected, actual = params_of(straight), params_of(split)
    for name in expected:
        assert np.array_equal(actual[name], expected[name]), name
    straight_metrics = json.loads((straight / "metrics.json").read_text())["epochs"]
    split_metrics = json.loads((split / "metrics.json").read_text())["epochs"]
    assert [r["lr"] for r in split_metrics] == [r["lr"] for r in straight_metrics]
    assert len({r["lr"] for r in straight_metrics}) == 3  # the schedule moved the lr
    assert [r["step_losses"] for r in split_metrics] == [r["step_losses"] for r in straight_metrics]


def test_a_schedule_laid_out_over_the_epochs_cannot_be_stretched_on_resume(tmp_path, capsys):
    run("--epochs", "1", "--lr-schedule", "cosine", "--out", str(tmp_path))
    with pytest.raises(SystemExit):
        cli.main(["train", "--resume", str(tmp_path), "--epochs", "2"])
    assert "argument --epochs: the cosine schedule was laid out over 1 epochs" in capsys.readouterr().err


def test_resume_rejects_a_changed_training_setting(tmp_path, capsys):
    run("--epochs", "1", "--out", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--resume", str(tmp_path), "--epochs", "2", "--lr", "0.5"])
    assert exit_info.value.code == 2
    assert "argument --lr: 0.5 differs from the checkpoint's 0.001" in capsys.readouterr().err


def test_resume_rejects_a_checkpoint_of_another_model(tmp_path, capsys):
    run("--epochs", "1", "--out", str(tmp_path))
    path = tmp_path / "checkpoint.npz"
    state = checkpoint.load(path)
    state["config"]["model"] = "cnn"  # the parameters are still the MLP's
    checkpoint.save(path, state)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--resume", str(tmp_path), "--epochs", "2"])
    assert exit_info.value.code == 2
    assert "parameter 'conv1.weight' of the model is missing from the checkpoint" in capsys.readouterr().err


def test_resume_without_a_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--resume", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "argument --resume: " + str(tmp_path / "checkpoint.npz") + ": no checkpoint there" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
def test_a_diverging_run_stops_with_a_message(tmp_path, capsys):
    assert run("--optimizer", "sgd", "--lr", "1e30", "--epochs", "1", "--out", str(tmp_path)) == 1
    assert "training diverged at epoch 0, step" in capsys.readouterr().err


def test_progress_bar_shows_loss_and_throughput(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert cli.main(["train", "--limit-train", "16", "--limit-test", "8", "--batch-size", "8", "--epochs", "1"]) == 0
    bar = capsys.readouterr().err
    assert "epoch 1/1" in bar and "2/2" in bar and "img/s" in bar and "loss=" in bar
