"""Learn y = 2x from 10 samples with batch size 3: what "batch" and "epoch" mean.

Ten samples x = 1..10 in batches of 3 give 4 iterations per epoch: three batches of 3 and a
last batch of 1 (drop_last=False keeps it). Every batch is one optimizer step; one pass over
all 10 samples is one epoch. The loss printed per epoch is the mean over its 10 samples.

    python examples/y_equals_2x.py             # 30 epochs
    python examples/y_equals_2x.py --epochs 2  # a quick look

This is the first stop of the reading path (README, "Reading the code"). Read next:
``minigrad/autograd.py``, the engine behind ``loss.backward()``.
"""
import argparse

import numpy as np

import minigrad as mg
import minigrad.nn as nn
from minigrad import optim
from minigrad.data import DataLoader, TensorDataset


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.01)
    args = parser.parse_args()

    mg.manual_seed(0)
    x = np.arange(1, 11, dtype=np.float32).reshape(10, 1)    # (10, 1): ten samples of one feature
    y = 2 * x
    loader = DataLoader(TensorDataset(x, y), batch_size=3, shuffle=True, seed=0)
    model = nn.Linear(1, 1)                                   # y_hat = w * x + b
    optimizer = optim.SGD(model.parameters(), lr=args.lr)
    criterion = nn.MSELoss()
    print(f"{len(x)} samples, batch size 3 -> {len(loader)} iterations per epoch")

    for epoch in range(1, args.epochs + 1):
        loss_sum = 0.0
        for iteration, (inputs, targets) in enumerate(loader, start=1):
            optimizer.zero_grad()
            loss = criterion(model(inputs), targets)
            loss.backward()
            optimizer.step()                                  # one update per batch
            loss_sum += loss.item() * len(inputs)
            print(f"epoch {epoch} iteration {iteration}: batch size {len(inputs)}, "
                  f"x = {inputs.numpy().ravel().astype(int).tolist()}, loss {loss.item():.4f}")
        print(f"epoch {epoch}: mean loss {loss_sum / len(x):.4f}")

    weight, bias = model.weight.item(), model.bias.item()
    print(f"learned y = {weight:.3f} * x {bias:+.3f}  (target: y = 2 * x)")


if __name__ == "__main__":
    main()
