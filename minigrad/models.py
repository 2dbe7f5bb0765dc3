"""Ready-made models for the command line and the examples: ``mlp``, ``lenet``, ``cnn``.

Each takes the image shape (C, H, W) and the number of classes, so the same name works on
8x8 digits, 28x28 (Fashion-)MNIST and 32x32 CIFAR-10.

Read next: ``ops/conv_reference.py`` (convolution and pooling the obvious way).
"""
from __future__ import annotations

from . import nn
from .nn import functional as F

MODEL_NAMES = ("mlp", "lenet", "cnn")


class MLP(nn.Module):
    """Flatten, then Linear -> ReLU -> (Dropout) -> Linear: the simplest image classifier."""

    def __init__(self, in_features, num_classes, hidden_features=256, dropout=0.0):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_features, num_classes)

    def forward(self, x):
        x = x.flatten(1)                          # (N, C, H, W) -> (N, C*H*W)
        return self.fc2(self.dropout(F.relu(self.fc1(x))))


class LeNet(nn.Module):
    """LeNet-5 as in the PyTorch CIFAR-10 tutorial (the seed article):
    conv 5x5 -> 6, relu, maxpool 2, conv 5x5 -> 16, relu, maxpool 2, then 120 -> 84 -> classes.

    LeNet-5 was built for 32x32 inputs; smaller images are zero-padded up to 32x32 by the first
    convolution, as LeCun padded 28x28 MNIST digits (padding 2). So the flattened size is
    16 * 5 * 5 = 400 for 8x8, 28x28 and 32x32 inputs alike.
    """

    def __init__(self, in_channels=3, num_classes=10, image_size=32):
        super().__init__()
        self.padding = max(0, (32 - image_size) // 2)
        self.conv1 = nn.Conv2d(in_channels, 6, 5, padding=self.padding)
        self.conv2 = nn.Conv2d(6, 16, 5)
        side = ((image_size + 2 * self.padding - 4) // 2 - 4) // 2  # two (conv 5x5, pool 2) stages
        if side < 1:
            raise ValueError(f"image_size: LeNet needs images of at least 28x28 after padding, got {image_size}")
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)   # (N, 6, 14, 14) for 32x32 inputs
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)   # (N, 16, 5, 5)
        x = x.flatten(1)                             # (N, 400)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class CNN(nn.Module):
    """A wider network for CIFAR-10: two (conv 3x3 same-padding, relu, maxpool 2) stages with
    32 and 64 channels, then Linear 128 with dropout. Dropout also makes it the model whose
    resumed runs prove that the random state is restored."""

    def __init__(self, in_channels=3, num_classes=10, image_size=32, dropout=0.25):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        side = image_size // 4                       # two pools of 2
        if side < 1:
            raise ValueError(f"image_size: CNN needs images of at least 4x4, got {image_size}")
        self.fc1 = nn.Linear(64 * side * side, 128)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)   # (N, 32, H/2, W/2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)   # (N, 64, H/4, W/4)
        x = self.dropout(F.relu(self.fc1(x.flatten(1))))
        return self.fc2(x)


def build_model(name, image_shape, num_classes):
    """One of MODEL_NAMES for images of shape (C, H, W)."""
    if len(image_shape) != 3 or image_shape[1] != image_shape[2]:
        raise ValueError(f"image_shape: expected square images (C, H, H), got {tuple(image_shape)}")
    channels, size, _ = image_shape
    if name == "mlp":
        return MLP(channels * size * size, num_classes)
    if name == "lenet":
        return LeNet(channels, num_classes, size)
    if name == "cnn":
        return CNN(channels, num_classes, size)
    raise ValueError(f"model: expected one of {MODEL_NAMES}, got {name!r}")
