"""Distributed training raises the batch size, and changes nothing else.

The seed article's scenario: one process can only hold so many samples at a time, say 32.
Data parallelism runs N processes; each takes its shard of every batch, so a batch of 32 * N
fits while every process still holds 32. Each process sums its shard's losses, divides by the
number of counted targets in the WHOLE batch (one Allreduce before the first micro-batch), and
one Allreduce(SUM) of the gradients gives every process the whole batch's gradient. All take
the same optimizer step.

That is exactly one process training on the whole batch, for any number of processes, even
ones that do not divide the batch (shards then differ by one sample, or are empty). This
script trains on scikit-learn's digits with batches of 96 and, on rank 0, trains again as one
process to show the parameters agree to float64 round-off.

    mpiexec -n 3 python examples/data_parallel.py              # shards of 32 + 32 + 32
    mpiexec -n 2 python examples/data_parallel.py --epochs 2   # shards of 48 + 48
    python examples/data_parallel.py                           # one process: nothing to split
"""
import argparse

import numpy as np

import minigrad as mg
import minigrad.nn as nn
from minigrad import distributed, optim, train
from minigrad.data import DataLoader, TensorDataset, load_digits

BATCH_SIZE = 96


def train_on(world, data, epochs):
    """Train an MLP as the processes of ``world``; returns (parameters, last epoch's record)."""
    (train_x, train_y), (test_x, test_y) = data
    mg.manual_seed(0)  # every process, and the one-process rerun, starts from the same weights
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10)).double()
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_loader = DataLoader(TensorDataset(train_x, train_y), batch_size=BATCH_SIZE, shuffle=True, seed=0)
    test_loader = DataLoader(TensorDataset(test_x, test_y), batch_size=500)
    history = train.fit(model, nn.CrossEntropyLoss(), optimizer, train_loader, epochs, test_loader=test_loader,
                        world=world)
    return np.concatenate([p.numpy().ravel() for p in model.parameters()]), history[-1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    epochs = parser.parse_args().epochs
    split = load_digits()
    data = ((split.train_images.reshape(-1, 64).astype(np.float64), split.train_labels),
            (split.test_images.reshape(-1, 64).astype(np.float64), split.test_labels))
    world = distributed.world()
    num_train = len(data[0][1])
    last_batch = num_train % BATCH_SIZE or BATCH_SIZE
    if world.rank == 0:
        print(f"{world.size} process(es); {num_train} training samples in batches of {BATCH_SIZE} "
              f"(the last has {last_batch})")
        print(f"samples per process in each batch: {distributed.shard_sizes(BATCH_SIZE, world.size)}; "
              f"in the last batch: {distributed.shard_sizes(last_batch, world.size)}")
    parameters, record = train_on(world, data, epochs)
    if world.rank != 0:
        return
    print(f"data parallel over {world.size}: train loss {record['train']['loss']:.6f}, "
          f"test accuracy {100 * record['test']['accuracy']:.2f}%")
    alone, alone_record = train_on(distributed.World(), data, epochs)  # one process, the whole batch
    print(f"one process alone:    train loss {alone_record['train']['loss']:.6f}, "
          f"test accuracy {100 * alone_record['test']['accuracy']:.2f}%")
    print(f"max |parameter difference| after {epochs} epochs: {np.abs(parameters - alone).max():.1e}")


if __name__ == "__main__":
    main()
