"""Data (``minigrad.data``): datasets and the batching ``DataLoader``.

Read next: ``data/dataset.py``, then ``data/loader.py``.
"""
from .dataset import Dataset, TensorDataset  # noqa: F401
from .loader import (DataLoader, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler,  # noqa: F401
                     default_collate)
from .datasets import DatasetSplit, load_cifar10, load_dataset, load_digits, load_mnist  # noqa: F401
