"""Datasets: anything with a length that returns sample ``i`` as a tuple (input, target, ...).

Read next: ``data/loader.py`` (batches in a seeded order).
"""
from __future__ import annotations

from ..backend import np
from ..tensor import Tensor


class Dataset:
    """Subclass and define ``__len__`` and ``__getitem__(i) -> tuple of arrays or numbers``."""

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__")

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


class TensorDataset(Dataset):
    """Samples are rows of equally long arrays: ``TensorDataset(images, labels)[i] == (images[i], labels[i])``.

    The arrays are kept on the host; ``DataLoader`` cuts a whole batch out of each with one
    fancy-indexing call and moves it to the model's device.
    """

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: expected at least one array or tensor, got none")
        self.arrays = tuple(a.numpy() if isinstance(a, Tensor) else np.asarray(a) for a in arrays)
        shapes = [a.shape for a in self.arrays]
        if any(len(shape) == 0 for shape in shapes) or len({shape[0] for shape in shapes}) != 1:
            raise ValueError(f"TensorDataset: all arrays must have the same first dimension "
                             f"(the number of samples), got shapes {shapes}")

    def __len__(self):
        return self.arrays[0].shape[0]

    def __getitem__(self, index):
        return tuple(array[index] for array in self.arrays)
