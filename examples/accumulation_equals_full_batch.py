"""Gradient accumulation done right gives the same training as the full batch.

Three copies of one small classifier start from the same weights and see the same batches of 64:

1. plain:        loss = criterion(model(batch)); loss.backward(); step
2. accumulated:  train.accumulate(model, criterion, batch, micro_batch_size=24), then step:
                 micro-batches of 24, 24 and 16 samples, each adding its share to .grad
3. naive:        for each micro-batch: (mean loss / number of micro-batches).backward(), then step

After training, 1 and 2 have the same parameters up to float64 round-off, while 3 has drifted:
with micro-batches of unequal size, "mean / number of micro-batches" weighs the 16 samples of
the last micro-batch more than the 24 of the others. The right normaliser is the number of
samples in the whole batch, fixed before the first micro-batch (see minigrad/train.py).

    python examples/accumulation_equals_full_batch.py            # 20 epochs
    python examples/accumulation_equals_full_batch.py --epochs 2
"""
import argparse

import numpy as np

import minigrad as mg
import minigrad.nn as nn
from minigrad import optim, train
from minigrad.data import DataLoader, TensorDataset

BATCH_SIZE, MICRO_BATCH_SIZE = 64, 24


def make_model():
    mg.manual_seed(0)  # every copy starts from the same weights
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 3)).double()


def plain_step(model, criterion, inputs, targets):
    criterion(model(inputs), targets).backward()


def accumulated_step(model, criterion, inputs, targets):
    train.accumulate(model, criterion, inputs, targets, micro_batch_size=MICRO_BATCH_SIZE)


def naive_step(model, criterion, inputs, targets):
    """The classic bug: each micro-batch's MEAN loss divided by the number of micro-batches."""
    starts = range(0, len(inputs), MICRO_BATCH_SIZE)
    for start in starts:
        part = slice(start, start + MICRO_BATCH_SIZE)
        (criterion(model(inputs[part]), targets[part]) / len(starts)).backward()


def train_with(step_rule, features, labels, epochs):
    model, criterion = make_model(), nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = DataLoader(TensorDataset(features, labels), batch_size=BATCH_SIZE, shuffle=True, seed=0)
    for _ in range(epochs):
        for inputs, targets in loader:
            optimizer.zero_grad()
            step_rule(model, criterion, inputs, targets)
            optimizer.step()  # once per batch, whichever way its gradient was made
    return np.concatenate([parameter.numpy().ravel() for parameter in model.parameters()])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    features = rng.standard_normal((512, 20))                     # float64, for exactness
    labels = (features[:, :3] @ rng.standard_normal((3, 3))).argmax(axis=1)
    plain = train_with(plain_step, features, labels, args.epochs)
    accumulated = train_with(accumulated_step, features, labels, args.epochs)
    naive = train_with(naive_step, features, labels, args.epochs)
    steps = args.epochs * (len(features) // BATCH_SIZE)
    print(f"{steps} SGD steps, batch {BATCH_SIZE}, micro-batches of {MICRO_BATCH_SIZE} (sizes 24, 24, 16)")
    print(f"max |plain - accumulated| = {np.abs(plain - accumulated).max():.3e}   (float64 round-off)")
    print(f"max |plain - naive|       = {np.abs(plain - naive).max():.3e}   (mean / number of micro-batches)")


if __name__ == "__main__":
    main()
