"""Tensor factories: zeros, ones, arange, randn (from the global seeded generator)."""
from __future__ import annotations

from . import backend, random
from .backend import np
from .tensor import Tensor


def _make(host_array, device, requires_grad):
    array = backend.to_device(host_array, backend.parse_device(device))
    return Tensor(array, requires_grad=requires_grad)


def _float_dtype(dtype):
    """``dtype=None`` means the default float32, as in PyTorch (NumPy's default would be float64)."""
    return backend.float32 if dtype is None else backend.parse_dtype(dtype)


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _make(np.zeros(_shape(shape), dtype=_float_dtype(dtype)), device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _make(np.ones(_shape(shape), dtype=_float_dtype(dtype)), device, requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    values = random.generator().standard_normal(_shape(shape)).astype(_float_dtype(dtype))
    return _make(values, device, requires_grad)


def arange(start, stop=None, step=1, dtype=None, device=None):
    values = np.arange(start, stop, step) if stop is not None else np.arange(start)
    if dtype is not None:
        values = values.astype(_float_dtype(dtype))
    elif values.dtype.kind == "i":
        values = values.astype(backend.int64)
    else:
        values = values.astype(backend.float32)
    return _make(values, device, False)
