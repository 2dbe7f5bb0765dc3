"""Checkpoints: a nested dict of arrays and plain values, written atomically, loaded with checks.

The file is a NumPy ``.npz``: every array (model parameters, optimizer moments, scalars such as
NumPy integers) is one entry, and ``__meta__`` holds everything else as JSON, with references
to those entries. Loading never unpickles (``allow_pickle=False``), so a checkpoint from
someone else cannot run code. JSON keeps Python ints of any size (the random generator's
128-bit state) and floats exactly (shortest repr round-trips), so a resumed run continues
bit for bit.

Writing goes through ``files.atomic_write`` (a temporary file in the same directory, synced,
then ``os.replace``): a crash mid-save leaves the previous checkpoint intact, never a
half-written one.

Read next: ``files.py`` (the atomic writer), then ``distributed.py``.
"""
from __future__ import annotations

import json
import os
import zipfile

from . import backend, nn
from .backend import np
from .files import atomic_write, failed_write
from .tensor import Tensor

FORMAT = "minigrad-checkpoint"
VERSION = 1
META_KEY = "__meta__"


# ----------------------------------------------------------------------------- save
def save(path, state):
    """Write ``state`` (dicts, lists, tuples, arrays, Tensors, numbers, strings, None) to ``path``."""
    arrays = {}
    meta = {"format": FORMAT, "version": VERSION, "state": _encode(state, arrays)}
    meta_bytes = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    try:
        with atomic_write(path) as file:
            np.savez(file, **{META_KEY: meta_bytes}, **arrays)
    except OSError as error:  # disk full, permissions: say which file, and that the old one survives
        raise failed_write(path, error, "checkpoint") from error
    return path


def _encode(value, arrays):
    """JSON-ready form of ``value``; arrays go into ``arrays`` and are referenced by key."""
    if isinstance(value, Tensor):
        value = value.array
    if backend.is_cupy_array(value) or isinstance(value, np.ndarray):
        return {"__array__": _store(arrays, backend.to_host(value))}
    if isinstance(value, np.generic):  # kept as a NumPy scalar: np.int64 must not come back as int
        return {"__scalar__": _store(arrays, np.asarray(value))}
    if isinstance(value, dict):
        if all(isinstance(key, str) and not key.startswith("__") for key in value):
            return {key: _encode(item, arrays) for key, item in value.items()}
        # int keys (optimizer state by parameter index) would become strings in JSON: keep pairs
        return {"__items__": [[_encode(key, arrays), _encode(item, arrays)] for key, item in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item, arrays) for item in value]}
    if isinstance(value, list):
        return [_encode(item, arrays) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"checkpoint: cannot store a value of type {type(value).__name__}: {value!r}")


def _store(arrays, array):
    key = f"array_{len(arrays)}"
    arrays[key] = array
    return key


# ----------------------------------------------------------------------------- load
def load(path):
    """Read a checkpoint written by ``save``; arrays come back as host NumPy arrays."""
    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no checkpoint there")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not hasattr(loaded, "files"):  # a bare .npy array, not an .npz archive
            raise ValueError(f"a single {loaded.dtype} array of shape {loaded.shape}, not an .npz archive")
        with loaded as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:  # ValueError: pickled objects inside
        raise ValueError(f"{path}: corrupt or truncated checkpoint ({type(error).__name__}: {error})") from error
    if META_KEY not in arrays:
        raise ValueError(f"{path}: not a minigrad checkpoint (no {META_KEY} entry)")
    try:
        meta = json.loads(arrays.pop(META_KEY).tobytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: corrupt checkpoint metadata ({error})") from error
    format_name = meta.get("format") if isinstance(meta, dict) else None
    if format_name != FORMAT:
        raise ValueError(f"{path}: not a minigrad checkpoint (format: expected {FORMAT!r}, got {format_name!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version: expected {VERSION}, got {meta.get('version')!r}")
    if "state" not in meta:
        raise ValueError(f"{path}: corrupt checkpoint metadata: no 'state' entry")
    return _decode(meta["state"], arrays, path)


def _decode(value, arrays, path):
    if isinstance(value, list):
        return [_decode(item, arrays, path) for item in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value or "__scalar__" in value:
        key = value.get("__array__", value.get("__scalar__"))
        if key not in arrays:
            raise ValueError(f"{path}: corrupt checkpoint: array entry {key!r} is missing")
        return arrays[key] if "__array__" in value else arrays[key][()]
    if "__tuple__" in value:
        return tuple(_decode(item, arrays, path) for item in value["__tuple__"])
    if "__items__" in value:
        return {_decode(key, arrays, path): _decode(item, arrays, path) for key, item in value["__items__"]}
    return {key: _decode(item, arrays, path) for key, item in value.items()}


# ----------------------------------------------------------------------------- into a model
def load_model_state(model, model_state, source="checkpoint"):
    """``model.load_state_dict`` (which checks every name and shape before changing anything, so
    a wrong checkpoint cannot leave a half-loaded model), with errors naming ``source``."""
    try:
        model.load_state_dict(model_state)
    except nn.StateDictMismatch as mismatch:
        raise ValueError(f"{source}: {mismatch.describe('the checkpoint')}; "
                         f"was it saved from a different model?") from None
    return model

