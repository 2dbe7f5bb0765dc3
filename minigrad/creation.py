"""Tensor factories under PyTorch's names: zeros, ones, full, arange, linspace, the random ones
(from minigrad's global seeded generator) and their ``*_like`` forms.

Read next: ``ops/reduce.py``, the next stop on the path (a side trip from ``tensor.py``).
"""
from __future__ import annotations

import numbers

from . import backend, dtypes, random
from .backend import np
from .tensor import Tensor


def _make(host_array, device, requires_grad):
    array = backend.to_device(host_array, backend.parse_device(device))
    return Tensor(array, requires_grad=requires_grad)


def _shape(shape):
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _make(np.zeros(_shape(shape), dtype=dtypes.float_or_default(dtype)), device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _make(np.ones(_shape(shape), dtype=dtypes.float_or_default(dtype)), device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    """``fill_value`` everywhere; without a dtype, PyTorch's: bool, int64 for ints, else float32."""
    if dtype is None:
        dtype = Tensor(fill_value).dtype  # Python data -> PyTorch's default dtype for it
    return _make(np.full(_shape((size,)), fill_value, dtype=backend.parse_dtype(dtype)), device, requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    """Standard normal samples. minigrad's generator is NumPy's PCG64: the same seed gives
    other numbers than PyTorch's (the distribution is the same)."""
    values = random.generator().standard_normal(_shape(shape)).astype(dtypes.float_or_default(dtype))
    return _make(values, device, requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) (other numbers than PyTorch's for the same seed, see ``randn``)."""
    values = random.generator().random(_shape(shape)).astype(dtypes.float_or_default(dtype))
    return _make(values, device, requires_grad)


def randint(*args, size=None, dtype=None, device=None):
    """``randint(high, size)`` or ``randint(low, high, size)``: integers in [low, high), int64."""
    if size is None and args and isinstance(args[-1], (tuple, list)):
        *args, size = args
    if size is None or len(args) not in (1, 2):
        raise TypeError(f"randint: expected (high, size) or (low, high, size), got {args!r} and size={size!r}")
    low, high = (0, args[0]) if len(args) == 1 else args
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in (low, high)) or low >= high:
        raise ValueError(f"randint: expected integers low < high, got low={low!r}, high={high!r}")
    dtype = backend.int64 if dtype is None else backend.parse_dtype(dtype)
    if dtype.kind in "iu":  # the cast below would wrap values the dtype cannot hold (300 -> 44 in uint8)
        smallest, largest = dtypes.integer_range(dtype)
        if low < smallest or high - 1 > largest:
            raise ValueError(f"randint: expected low and high - 1 in [{smallest}, {largest}] for dtype {dtype}, "
                             f"got low={low}, high={high}")
    values = random.generator().integers(low, high, size=tuple(size))
    return _make(values.astype(dtype), device, False)


def arange(start, stop=None, step=1, dtype=None, device=None):
    values = np.arange(start, stop, step) if stop is not None else np.arange(start)
    values = dtypes.as_pytorch_default(values) if dtype is None else values.astype(backend.parse_dtype(dtype))
    return _make(values, device, False)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    """``steps`` evenly spaced values from ``start`` to ``end`` (both included).

    PyTorch's recipe, so both ends are exact: the first half counts up from ``start`` and the
    second half counts down from ``end``, in the tensor's dtype (values agree with PyTorch's to
    round-off; its vectorised kernel may round the middle elements differently).
    """
    if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps: expected a non-negative int, got {steps!r}")
    dtype = dtypes.float_or_default(dtype)
    start, end = dtype.type(start), dtype.type(end)
    step = (end - start) / dtype.type(steps - 1) if steps > 1 else dtype.type(0)
    index = np.arange(steps)
    counting_up = start + step * index.astype(dtype)
    counting_down = end - step * (steps - 1 - index).astype(dtype)
    values = np.where(index < steps // 2, counting_up, counting_down) if steps > 1 else counting_up
    return _make(values.astype(dtype), device, requires_grad)


# ----------------------------------------------------------------------------- *_like
def _like(fill, template, dtype, device, requires_grad):
    """A factory's result with ``template``'s shape, dtype and device unless given."""
    dtype = template.dtype if dtype is None else dtype
    device = template.device if device is None else device
    return fill(template.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def zeros_like(input, dtype=None, device=None, requires_grad=False):
    return _like(zeros, input, dtype, device, requires_grad)


def ones_like(input, dtype=None, device=None, requires_grad=False):
    return _like(ones, input, dtype, device, requires_grad)


def full_like(input, fill_value, dtype=None, device=None, requires_grad=False):
    return _like(lambda shape, **kw: full(shape, fill_value, **kw), input, dtype, device, requires_grad)


def randn_like(input, dtype=None, device=None, requires_grad=False):
    return _like(randn, input, dtype, device, requires_grad)


def rand_like(input, dtype=None, device=None, requires_grad=False):
    return _like(rand, input, dtype, device, requires_grad)


def from_numpy(array):
    """A tensor sharing ``array``'s memory and keeping its dtype (float64 stays float64), as PyTorch."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)
