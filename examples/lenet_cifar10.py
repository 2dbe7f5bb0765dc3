"""LeNet on CIFAR-10, as in PyTorch's "Training a classifier" tutorial: SGD lr 0.001 momentum 0.9,
batches of 4, two epochs, then the accuracy on the 10000 test images, overall and per class.

CIFAR-10 is read from --cifar-dir (the cifar-10-batches-py directory or the tarball; --download
fetches it, 170 MB, checksum-verified). When it is not there the example says so and runs the
same recipe on Fashion-MNIST (--fashion-dir, e.g. from `apt-get install dataset-fashion-mnist`),
or, failing that, on scikit-learn's 8x8 digits, which need no download.

    python examples/lenet_cifar10.py
    python examples/lenet_cifar10.py --download
    python examples/lenet_cifar10.py --quick      # 200 training images, one epoch: a smoke test
"""
import argparse

import numpy as np

import minigrad as mg
import minigrad.nn as nn
from minigrad import optim
from minigrad.data import DataLoader, TensorDataset, load_cifar10, load_digits, load_mnist
from minigrad.models import LeNet


def load_data(args):
    """CIFAR-10 if it is on disk (or --download), else Fashion-MNIST, else digits."""
    try:
        return load_cifar10(args.cifar_dir, download=args.download)
    except FileNotFoundError as missing:
        print(f"CIFAR-10 is not on disk ({missing}).")
    try:
        split = load_mnist(args.fashion_dir, kind="fashion")
        print("Falling back to Fashion-MNIST: same recipe, 28x28 grey images (padded to 32x32 by LeNet).")
        return split
    except FileNotFoundError:
        print("Fashion-MNIST is not on disk either; falling back to scikit-learn's 8x8 digits.")
        return load_digits()


def train(model, loader, epochs, print_every):
    criterion = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    for epoch in range(1, epochs + 1):
        running_loss = 0.0
        for step, (inputs, labels) in enumerate(loader, start=1):
            optimizer.zero_grad()
            loss = criterion(model(inputs), labels)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()
            if step % print_every == 0:
                print(f"[epoch {epoch}, batch {step:5d}] loss: {running_loss / print_every:.3f}")
                running_loss = 0.0
    print("Finished training")


def per_class_accuracy(model, images, labels, num_classes):
    """Correct predictions per class over the test set (no graph is recorded under no_grad)."""
    correct, total = np.zeros(num_classes), np.zeros(num_classes)
    model.eval()
    with mg.no_grad():
        for start in range(0, len(images), 500):
            predicted = model(mg.tensor(images[start:start + 500])).numpy().argmax(axis=1)
            truth = labels[start:start + 500]
            np.add.at(total, truth, 1)
            np.add.at(correct, truth, predicted == truth)
    return correct, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar-dir", default=None, help="default: ~/.cache/minigrad/cifar10")
    parser.add_argument("--fashion-dir", default=None, help="default: /usr/share/datasets/fashion-mnist")
    parser.add_argument("--download", action="store_true", help="download CIFAR-10 when it is missing")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--print-every", type=int, default=2000, help="batches between loss reports")
    parser.add_argument("--quick", action="store_true", help="200 training and 100 test images, one epoch")
    args = parser.parse_args()
    if args.quick:
        args.epochs, args.print_every = 1, 10

    split = load_data(args)
    if args.quick:
        split = split.limited(train=200, test=100)
    print(f"{split.name}: {len(split.train_labels)} training and {len(split.test_labels)} test images "
          f"of shape {split.image_shape}")
    # The tutorial's transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)): pixels from [0, 1] to [-1, 1].
    train_images, test_images = (split.train_images - 0.5) / 0.5, (split.test_images - 0.5) / 0.5
    mg.manual_seed(0)
    channels, size, _ = split.image_shape
    model = LeNet(channels, split.num_classes, size)
    print(model)
    loader = DataLoader(TensorDataset(train_images, split.train_labels), batch_size=args.batch_size,
                        shuffle=True, seed=0)
    train(model, loader, args.epochs, args.print_every)

    correct, total = per_class_accuracy(model, test_images, split.test_labels, split.num_classes)
    print(f"Accuracy of the network on the {int(total.sum())} test images: {100 * correct.sum() / total.sum():.1f} %")
    for name, hits, count in zip(split.class_names, correct, total):
        shown = f"{100 * hits / count:5.1f} %" if count else "  n/a (no test images)"
        print(f"Accuracy for class {name:12s}: {shown}")


if __name__ == "__main__":
    main()
