"""The same training run in PyTorch, for comparing accuracy with ``python -m minigrad train``.

Same data (minigrad's loader, the official train/test split, standardised the same way), same batches in the same order
(the DataLoader's seeded per-epoch order), same model (minigrad's LeNet/MLP/CNN, its seeded
initial weights copied into an identical torch module), same optimizer and hyper-parameters.
So the two runs differ only in floating-point arithmetic, and their test accuracies should
agree to well within a point.

    python -m minigrad train --dataset fashion-mnist --model lenet --epochs 5 --batch-size 64 --out runs/fm
    python benchmarks/torch_fashion_mnist.py --dataset fashion-mnist --model lenet --epochs 5 --batch-size 64 \
        --compare runs/fm/metrics.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as tnn
import torch.nn.functional as TF

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # run from a clone, uninstalled
import minigrad as mg  # noqa: E402
from minigrad.data import DataLoader, TensorDataset, load_dataset  # noqa: E402
from minigrad.models import build_model  # noqa: E402


class TorchLeNet(tnn.Module):
    def __init__(self, reference):
        super().__init__()
        self.conv1 = tnn.Conv2d(reference.conv1.in_channels, 6, 5, padding=reference.padding)
        self.conv2 = tnn.Conv2d(6, 16, 5)
        self.fc1 = tnn.Linear(reference.fc1.in_features, 120)
        self.fc2 = tnn.Linear(120, 84)
        self.fc3 = tnn.Linear(84, reference.fc3.out_features)

    def forward(self, x):
        x = TF.max_pool2d(TF.relu(self.conv1(x)), 2)
        x = TF.max_pool2d(TF.relu(self.conv2(x)), 2)
        x = TF.relu(self.fc1(x.flatten(1)))
        return self.fc3(TF.relu(self.fc2(x)))


class TorchMLP(tnn.Module):
    def __init__(self, reference):
        super().__init__()
        self.fc1 = tnn.Linear(reference.fc1.in_features, reference.fc1.out_features)
        self.dropout = tnn.Dropout(reference.dropout.p)
        self.fc2 = tnn.Linear(reference.fc2.in_features, reference.fc2.out_features)

    def forward(self, x):
        return self.fc2(self.dropout(TF.relu(self.fc1(x.flatten(1)))))


class TorchCNN(tnn.Module):
    def __init__(self, reference):
        super().__init__()
        self.conv1 = tnn.Conv2d(reference.conv1.in_channels, 32, 3, padding=1)
        self.conv2 = tnn.Conv2d(32, 64, 3, padding=1)
        self.fc1 = tnn.Linear(reference.fc1.in_features, 128)
        self.dropout = tnn.Dropout(reference.dropout.p)
        self.fc2 = tnn.Linear(128, reference.fc2.out_features)

    def forward(self, x):
        x = TF.max_pool2d(TF.relu(self.conv1(x)), 2)
        x = TF.max_pool2d(TF.relu(self.conv2(x)), 2)
        return self.fc2(self.dropout(TF.relu(self.fc1(x.flatten(1)))))


TORCH_MODELS = {"lenet": TorchLeNet, "mlp": TorchMLP, "cnn": TorchCNN}


def torch_twin(name, reference):
    """A torch module with the architecture and the exact initial weights of a minigrad model."""
    model = TORCH_MODELS[name](reference)
    weights = {key: torch.from_numpy(value.numpy().copy()) for key, value in reference.state_dict().items()}
    model.load_state_dict(weights)
    return model


def make_optimizer(args, parameters):
    extra = {} if args.weight_decay is None else {"weight_decay": args.weight_decay}
    if args.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=args.lr, momentum=args.momentum, **extra)
    optimizer_class = torch.optim.Adam if args.optimizer == "adam" else torch.optim.AdamW
    return optimizer_class(parameters, lr=args.lr, **extra)


def test_accuracy(model, images, labels):
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(torch.from_numpy(images[start:start + 1000])).argmax(1)
                                 for start in range(0, len(images), 1000)])
    model.train()
    return float((predictions.numpy() == labels).mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", choices=sorted(TORCH_MODELS), default="lenet")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--optimizer", choices=("sgd", "adam", "adamw"), default="adam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-normalize", dest="normalize", action="store_false",
                        help="as the minigrad command's flag: keep the [0, 1] pixels")
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--limit-test", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--compare", default=None, metavar="METRICS_JSON",
                        help="a minigrad run's metrics.json: print its accuracy beside torch's")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    mg.manual_seed(args.seed)  # as the minigrad command does: seed, then data, then the model
    split = load_dataset(args.dataset, args.data_dir).limited(args.limit_train, args.limit_test)
    if args.normalize:
        split = split.standardized()  # the same numbers the minigrad command feeds its model
    reference = build_model(args.model, split.image_shape, split.num_classes)
    model = torch_twin(args.model, reference)
    optimizer = make_optimizer(args, model.parameters())
    order = DataLoader(TensorDataset(split.train_labels), batch_size=args.batch_size, shuffle=True, seed=args.seed)
    torch.manual_seed(args.seed)
    print(f"torch {torch.__version__}: {args.model} on {split.name}, {args.optimizer} lr {args.lr}, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads")
    accuracy = None
    for epoch in range(args.epochs):
        started = time.perf_counter()
        indices = order.epoch_order(epoch)  # the minigrad DataLoader's order for this epoch
        for start in range(0, len(indices), args.batch_size):
            batch = indices[start:start + args.batch_size]
            optimizer.zero_grad()
            loss = TF.cross_entropy(model(torch.from_numpy(split.train_images[batch])),
                                    torch.from_numpy(split.train_labels[batch]))
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - started
        accuracy = test_accuracy(model, split.test_images, split.test_labels)
        print(f"epoch {epoch + 1}/{args.epochs}: test accuracy {100 * accuracy:.2f}%, "
              f"{len(indices) / seconds:,.0f} img/s")
    print(f"torch test accuracy: {100 * accuracy:.2f}%")
    if args.compare:
        theirs = json.load(open(args.compare))["epochs"][-1]["test_accuracy"]
        print(f"minigrad test accuracy: {100 * theirs:.2f}% (difference {100 * (theirs - accuracy):+.2f} points)")


if __name__ == "__main__":
    main()
