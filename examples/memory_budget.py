"""Where training memory goes, for LeNet on CIFAR-10-sized images (SPEC section 6).

For SGD with momentum and for Adam, and for a batch of 32, a batch of 256, and a batch of 256
in micro-batches of 32, this prints the four parts of training memory:

    1. parameters + gradients   2. optimizer state   3. the data batch   4. saved activations

Read the last lines: the optimizer decides part 2 (Adam keeps twice what momentum keeps), the
batch size decides parts 3 and 4, and gradient accumulation brings part 4 back to what one
micro-batch needs while the gradient stays the full batch's.

    python examples/memory_budget.py            # batches 32 / 256 / 256 in micro-batches of 32
    python examples/memory_budget.py --quick    # batches 4 / 16 / 16 in micro-batches of 4
"""
import argparse

import minigrad as mg
import minigrad.nn as nn
from minigrad import memory, optim, train


def lenet(num_classes=10):
    """LeNet-5 as in the PyTorch CIFAR-10 tutorial, as one nn.Sequential (so its activations
    can also be predicted from shapes)."""
    return nn.Sequential(
        nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2),       # (N, 6, 14, 14)
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),      # (N, 16, 5, 5)
        nn.Flatten(),                                         # (N, 400)
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes))


def random_cifar_batch(batch_size):
    """Random images and labels of CIFAR-10's shape: memory depends on shapes, not on values."""
    images = mg.randn(batch_size, 3, 32, 32)
    labels = mg.tensor((mg.randn(batch_size).numpy() * 3 + 5).clip(0, 9).astype("int64"))
    return images, labels


def one_budget(make_optimizer, batch_size, micro_batch_size):
    model = lenet()
    optimizer = make_optimizer(model.parameters())
    criterion = nn.CrossEntropyLoss()
    images, labels = random_cifar_batch(batch_size)
    # One real step first, so that the optimizer's state exists and is measured too.
    train.accumulate(model, criterion, images, labels, micro_batch_size)
    optimizer.step()
    return memory.budget(model, optimizer, images, labels, criterion, micro_batch_size)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny batches, for a smoke test")
    args = parser.parse_args()
    small, large, micro = (4, 16, 4) if args.quick else (32, 256, 32)
    mg.manual_seed(0)
    optimizers = {"SGD(momentum=0.9)": lambda params: optim.SGD(params, lr=0.01, momentum=0.9),
                  "Adam": lambda params: optim.Adam(params, lr=1e-3)}
    activations = {}
    for name, make_optimizer in optimizers.items():
        for batch_size, micro_batch_size in ((small, None), (large, None), (large, micro)):
            report = one_budget(make_optimizer, batch_size, micro_batch_size)
            print(f"\n== {name}, batch {batch_size}"
                  + (f", micro-batches of {micro_batch_size}" if micro_batch_size else "") + " ==")
            print(report.table())
            activations[batch_size, micro_batch_size] = report.activations
    print(f"\nActivations: batch {small}: {memory.mib(activations[small, None])} MiB, "
          f"batch {large}: {memory.mib(activations[large, None])} MiB, "
          f"batch {large} in micro-batches of {micro}: {memory.mib(activations[large, micro])} MiB "
          f"-- accumulation caps them at one micro-batch.")


if __name__ == "__main__":
    main()
