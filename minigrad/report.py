"""What a training run shows and writes: the progress bar, one record per epoch, the printed
report (accuracy overall and per class), ``metrics.json``, the loss plot and the checkpoint.

``cli.py`` parses the options and runs the loop; everything the user sees or finds on disk
afterwards is made here. Files are written atomically (``files.atomic_write``), so an
interrupted run never leaves half a ``metrics.json`` or checkpoint.

Read next: ``checkpoint.py`` (what the checkpoint holds).
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time

from . import checkpoint
from .files import atomic_write, failed_write, remove_stale_temporaries

CHECKPOINT_FILE = "checkpoint.npz"
METRICS_FILE = "metrics.json"
PLOT_FILE = "loss.png"


# ----------------------------------------------------------------------------- while training
def progress_bar(total, description, enabled):
    """A tqdm bar on stderr when wanted and available; otherwise None."""
    if not enabled or not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=description, unit="batch", leave=True, dynamic_ncols=True)


def step_reporter(bar, step_losses):
    """``on_step`` for train_one_epoch: remembers each step's loss and moves the bar."""
    started = time.perf_counter()
    images = 0

    def on_step(step, loss, batch_size):
        nonlocal images
        step_losses.append(loss)
        images += batch_size
        if bar is not None:
            rate = images / max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(f"loss={loss:.4f} {rate:,.0f} img/s", refresh=False)
            bar.update(1)
    return on_step


# ----------------------------------------------------------------------------- after each epoch
def finite_or_none(value):
    """JSON has no NaN: a class with no test samples is recorded as null."""
    return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else value


def epoch_record(epoch, train_stats, test_stats, step_losses, seconds):
    """One epoch's metrics; a NaN step loss (a batch whose targets were all ignored) becomes null."""
    return {"epoch": epoch, "train_loss": finite_or_none(train_stats["loss"]),
            "train_accuracy": train_stats["accuracy"],
            "test_loss": test_stats["loss"], "test_accuracy": test_stats["accuracy"],
            "per_class_accuracy": [finite_or_none(value) for value in test_stats["per_class_accuracy"] or []],
            "images_per_second": train_stats["images_per_second"], "seconds": seconds,
            "step_losses": [finite_or_none(loss) for loss in step_losses]}


# ----------------------------------------------------------------------------- the run's files
def check_output_dir(out_dir):
    """Raise ValueError now, before any training, if ``out_dir`` cannot receive the run's files:
    it (or the nearest part of its path that exists) must be a directory we can write in."""
    existing = os.path.abspath(out_dir)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{existing} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=existing):  # a real probe: permissions, read-only mounts
            pass
    except OSError as error:
        raise ValueError(f"cannot write in {existing} ({error.strerror or error})") from None


def remove_stale_outputs(out_dir):
    """Temporary files that a killed run left beside its checkpoint, metrics and plot."""
    for name in (CHECKPOINT_FILE, METRICS_FILE, PLOT_FILE):
        remove_stale_temporaries(os.path.join(out_dir, name))


def write_outputs(out_dir, config, class_names, history, state):
    """Checkpoint, then metrics.json, then the plot; returns the names written (no plot without
    matplotlib). The metrics are serialised first, so a value JSON cannot hold fails before
    any file changes, and checkpoint and metrics.json stay at the same epoch."""
    metrics_text = json.dumps({"config": config, "class_names": list(class_names), "epochs": history},
                              indent=1, allow_nan=False)
    os.makedirs(out_dir, exist_ok=True)
    checkpoint.save(os.path.join(out_dir, CHECKPOINT_FILE), state)
    metrics_path = os.path.join(out_dir, METRICS_FILE)
    try:
        with atomic_write(metrics_path, mode="w") as file:
            file.write(metrics_text)
    except OSError as error:
        raise failed_write(metrics_path, error, METRICS_FILE) from error
    written = [METRICS_FILE, CHECKPOINT_FILE]
    if plot_losses(os.path.join(out_dir, PLOT_FILE), history, config):
        written.append(PLOT_FILE)
    return written


def describe_written(out_dir, written):
    """"wrote metrics.json, checkpoint.npz and loss.png to DIR", naming only what was written."""
    names = ", ".join(written[:-1]) + " and " + written[-1]
    missing = "" if PLOT_FILE in written else f" (no {PLOT_FILE}: matplotlib is not installed)"
    return f"wrote {names} to {out_dir}{missing}"


def plot_losses(path, history, config):
    """Per-step training loss, per-epoch test loss, and test accuracy; headless (Agg).
    Returns False (and draws nothing) when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, (loss_axes, accuracy_axes) = plt.subplots(1, 2, figsize=(10, 4))
    for record in history:
        steps = len(record["step_losses"])
        x = [record["epoch"] - 1 + (i + 1) / steps for i in range(steps)]
        loss_axes.plot(x, record["step_losses"], color="tab:blue", alpha=0.3, linewidth=0.8)
    epochs = [record["epoch"] for record in history]
    loss_axes.plot(epochs, [r["train_loss"] for r in history], "o-", color="tab:blue", label="train (epoch mean)")
    loss_axes.plot(epochs, [r["test_loss"] for r in history], "s-", color="tab:orange", label="test")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log",
                  title=f"{config['model']} on {config['dataset']}")
    loss_axes.legend()
    accuracy_axes.plot(epochs, [100 * (r["test_accuracy"] or 0) for r in history], "s-", color="tab:green")
    accuracy_axes.set(xlabel="epoch", ylabel="test accuracy (%)", title="test accuracy")
    figure.tight_layout()
    try:
        with atomic_write(path) as file:
            figure.savefig(file, format="png", dpi=100)
    except OSError as error:
        raise failed_write(path, error, PLOT_FILE) from error
    finally:
        plt.close(figure)
    return True


def print_report(record, class_names, test_count):
    """Test accuracy overall and per class, as a table."""
    print(f"\ntest accuracy: {100 * record['test_accuracy']:.2f}% on {test_count} images "
          f"(test loss {record['test_loss']:.4f})")
    width = max(len(name) for name in ("class", *class_names))
    print(f"{'class':<{width}}  accuracy")
    for name, accuracy in zip(class_names, record["per_class_accuracy"]):
        shown = "   n/a" if accuracy is None else f"{100 * accuracy:6.2f}%"
        print(f"{name:<{width}}  {shown}")


def print_epoch(record, epochs):
    """One line per finished epoch."""
    print(f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}, test loss "
          f"{record['test_loss']:.4f}, test accuracy {100 * record['test_accuracy']:.2f}%, "
          f"{record['images_per_second']:,.0f} img/s, {record['seconds']:.1f} s")
