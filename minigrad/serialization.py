"""``mg.save`` / ``mg.load``: PyTorch's names for writing and reading tensors, state dicts and
nested containers of them (``torch.save(model.state_dict(), path)``, then
``model.load_state_dict(torch.load(path))``).

The file is minigrad's checkpoint format (``checkpoint.py``): an ``.npz`` archive written
atomically and read without unpickling. So it holds what a state dict holds (tensors, arrays,
numbers, strings, None, lists, tuples, dicts) and not arbitrary Python objects, which PyTorch
pickles: minigrad raises a TypeError naming such a value instead. Files written by
``torch.save`` are PyTorch pickles, which minigrad does not read.

Read next: ``checkpoint.py`` (the file format underneath).
"""
from __future__ import annotations

import os

from . import backend, checkpoint
from .backend import np
from .tensor import Tensor


def save(obj, f):
    """Write ``obj`` to the path ``f`` (tensors are stored as their host arrays)."""
    if not isinstance(f, (str, os.PathLike)):
        raise TypeError(f"f: minigrad.save writes to a file path, got {type(f).__name__} (PyTorch also takes "
                        f"file objects; pass the path instead)")
    checkpoint.save(f, obj)


def load(f, map_location=None, weights_only=True):
    """Read what ``save`` wrote: arrays come back as Tensors on ``map_location`` (default CPU).
    ``weights_only`` is accepted for PyTorch's signature; minigrad never unpickles either way."""
    if not isinstance(f, (str, os.PathLike)):
        raise TypeError(f"f: minigrad.load reads from a file path, got {type(f).__name__}")
    device = backend.parse_device(map_location)
    try:
        state = checkpoint.load(f)
    except ValueError as error:
        raise ValueError(f"{error}; minigrad.load reads files written by minigrad.save, not PyTorch's "
                         f"pickles (torch.save)") from None
    return _as_tensors(state, device)


def _as_tensors(value, device):
    if isinstance(value, np.ndarray):
        return Tensor(value, device=device)
    if isinstance(value, dict):
        return {key: _as_tensors(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_as_tensors(item, device) for item in value)
    return value
