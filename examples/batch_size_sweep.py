"""Batch size 1, 32 and 1024 on the same 1000 x 10 data set: noise, speed and the learning rate.

A linear classifier (10 features -> 2 classes) is trained with SGD at lr 0.01 for each batch
size, and the training loss is plotted against the number of samples seen:

- batch 1 takes 1000 small, noisy steps per epoch (stochastic gradient descent);
- batch 32 takes 32 steps per epoch with a much steadier gradient;
- batch 1024 (more than the 1000 samples) takes ONE step per epoch: the gradient is exact,
  but at the same learning rate it barely moves.

The linear scaling rule (Goyal et al., 2017): when the batch grows k times, grow the learning
rate k times, so that an epoch moves the parameters about as far. The fourth curve trains
batch 1024 at lr 0.01 * 1024 / 32 and follows batch 32 much more closely.

    python examples/batch_size_sweep.py                   # 3 epochs, writes batch_size_sweep.png
    python examples/batch_size_sweep.py --epochs 1 --plot /tmp/sweep.png
"""
import argparse

import numpy as np

import minigrad as mg
import minigrad.nn as nn
from minigrad import optim
from minigrad.data import DataLoader, TensorDataset

BASE_LR, BASE_BATCH = 0.01, 32


def make_data(seed=0):
    """1000 samples of 10 standard-normal features; the class is which side of a random plane."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((1000, 10)).astype(np.float32)
    labels = (features @ rng.standard_normal(10) > 0).astype(np.int64)
    return features, labels


def train(features, labels, batch_size, lr, epochs):
    """Returns (samples seen after each step, loss of each step)."""
    mg.manual_seed(0)  # the same initial weights for every run
    model = nn.Linear(10, 2)
    optimizer = optim.SGD(model.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(features, labels), batch_size=batch_size, shuffle=True, seed=0)
    seen, losses = [], []
    for _ in range(epochs):
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()
            seen.append((seen[-1] if seen else 0) + len(inputs))
            losses.append(loss.item())
    return seen, losses


def plot(curves, path):
    import matplotlib
    matplotlib.use("Agg")  # headless: write a file, open no window
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for color, (label, (seen, losses)) in zip(("tab:blue", "tab:orange", "tab:green", "tab:red"), curves.items()):
        if len(losses) > 500:  # batch 1 is too noisy to read: show it faintly, and its running mean
            axes.plot(seen, losses, color=color, alpha=0.15)
            window = 32
            running_mean = np.convolve(losses, np.ones(window) / window, mode="valid")
            axes.plot(seen[window - 1:], running_mean, color=color, label=f"{label} (mean of {window} steps)")
        else:
            axes.plot(seen, losses, color=color, label=label, marker="o" if len(seen) < 20 else None)
    axes.set(xlabel="samples seen", ylabel="training loss (cross-entropy)", title="batch size sweep, SGD")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--plot", default="batch_size_sweep.png", help="where to write the loss curves")
    args = parser.parse_args()

    features, labels = make_data()
    runs = [(1, BASE_LR), (32, BASE_LR), (1024, BASE_LR), (1024, BASE_LR * 1024 / BASE_BATCH)]
    curves = {}
    for batch_size, lr in runs:
        seen, losses = train(features, labels, batch_size, lr, args.epochs)
        label = f"batch {batch_size}, lr {lr:g}"
        curves[label] = (seen, losses)
        print(f"{label:>22}: {len(losses):5d} steps, final loss {losses[-1]:.4f}, "
              f"mean loss of the last epoch {np.mean(losses[-len(losses) // args.epochs:]):.4f}")
    plot(curves, args.plot)
    print(f"loss curves written to {args.plot}")
    print("linear scaling rule: batch x k -> learning rate x k (here lr 0.01 * 1024/32 = 0.32), because a "
          "k-times larger batch takes k times fewer steps per epoch; warm up the lr when k is large.")


if __name__ == "__main__":
    main()
