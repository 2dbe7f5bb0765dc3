"""Ops that move values around without changing them: reshape, permute, index, join, pad.

Read next: ``ops/softmax.py``, then ``ops/loss.py``.
"""
from __future__ import annotations

import numbers

from .. import backend, dtypes
from ..autograd import Function
from ..tensor import Tensor
from .reduce import normalize_axis


def _shape_from_args(args):
    return tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list)) else tuple(args)


def _is_basic_index(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, slice)) or p is None or p is Ellipsis for p in parts)


def _axis_or_dim(axis, dim):
    """``dim=`` is PyTorch's spelling of ``axis=``."""
    if dim is not None:
        if axis not in (None, 0):
            raise TypeError("pass either axis= or dim=, not both")
        return dim
    return 0 if axis is None else axis


class Reshape(Function):
    def forward(self, a, shape):
        self.input_shape = a.shape
        return a.reshape(shape)

    def backward(self, grad):  # values are only relabelled: reshape the gradient back
        return grad.reshape(self.input_shape)


def reshape(a, *shape):
    """The same values under another shape (one size may be -1); the gradient is reshaped back.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    >>> y = x.reshape(2, 2)
    >>> (y * mg.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    >>> y
    tensor([[1., 2.],
            [3., 4.]], grad_fn=<ReshapeBackward>)
    >>> x.grad
    tensor([1., 2., 3., 4.])
    """
    shape = _shape_from_args(shape)
    known = 1
    for size in shape:
        if size != -1:
            known *= size
    if shape.count(-1) > 1 or (-1 not in shape and known != a.numel()) or \
            (-1 in shape and (known == 0 or a.numel() % known)):
        raise ValueError(f"reshape: cannot view a tensor of shape {a.shape} ({a.numel()} elements) "
                         f"as shape {shape}")
    return Reshape.apply(a, shape=shape)


def flatten(a, start_dim=0, end_dim=-1):
    """Merge axes ``start_dim..end_dim`` into one (``nn.Flatten`` uses start_dim=1)."""
    start = normalize_axis(start_dim, a.ndim, "start_dim")
    end = normalize_axis(end_dim, a.ndim, "end_dim")
    if start > end:
        raise ValueError(f"start_dim: expected an axis not after end_dim={end_dim} (axis {end}), "
                         f"got {start_dim} (axis {start})")
    if a.ndim == 0:
        return reshape(a, 1)
    merged = 1
    for size in a.shape[start:end + 1]:
        merged *= size
    return reshape(a, *a.shape[:start], merged, *a.shape[end + 1:])


def unsqueeze(a, dim):
    """A new axis of size 1 at ``dim`` in [-ndim-1, ndim] (a reshape: no values move)."""
    dim = normalize_axis(dim, a.ndim + 1, "dim")
    return reshape(a, *a.shape[:dim], 1, *a.shape[dim:])


def squeeze(a, dim=None):
    """Drop axes of size 1: all of them, or only ``dim`` (an int or tuple; a no-op where the size
    is not 1, as PyTorch)."""
    if dim is None:
        axes = range(a.ndim)
    else:
        axes = [normalize_axis(d, a.ndim, "dim") for d in (dim if isinstance(dim, (tuple, list)) else (dim,))]
    dropped = {axis for axis in axes if a.ndim and a.shape[axis] == 1}
    return reshape(a, *[size for axis, size in enumerate(a.shape) if axis not in dropped])


class Permute(Function):
    def forward(self, a, axes):
        self.axes = axes
        return a.transpose(axes)

    def backward(self, grad):  # apply the inverse permutation
        inverse = [0] * len(self.axes)
        for position, axis in enumerate(self.axes):
            inverse[axis] = position
        return grad.transpose(inverse)


def permute(a, *axes):
    axes = _shape_from_args(axes)
    normalized = tuple(normalize_axis(axis, a.ndim, "dims") for axis in axes)
    if sorted(normalized) != list(range(a.ndim)):
        raise ValueError(f"dims: expected a permutation of {a.ndim} axes, got {axes}")
    return Permute.apply(a, axes=normalized)


def transpose(a, *axes):
    """``transpose()`` reverses all axes; ``transpose(i, j)`` swaps two (PyTorch's meaning).

    >>> import minigrad as mg
    >>> x = mg.tensor([[1.0, 2.0, 3.0]])
    >>> x.transpose(0, 1).shape
    (3, 1)
    """
    axes = _shape_from_args(axes)
    if not axes:
        return permute(a, *reversed(range(a.ndim)))
    if len(axes) == 2:
        i, j = normalize_axis(axes[0], a.ndim, "dim0"), normalize_axis(axes[1], a.ndim, "dim1")
        order = list(range(a.ndim))
        if a.ndim:  # a 0-d tensor's only axis (0 / -1) swapped with itself: nothing moves
            order[i], order[j] = order[j], order[i]
        return permute(a, *order)
    return permute(a, *axes)


class GetItem(Function):
    def forward(self, a, index):
        self.input_shape, self.index = a.shape, index
        return a[index]

    def backward(self, grad):
        # Each selected element receives its gradient; an element picked several times
        # (repeated integer indices) receives the sum, hence add.at rather than assignment.
        xp = backend.xp_of(grad)
        full = xp.zeros(self.input_shape, dtype=grad.dtype)
        if _is_basic_index(self.index):
            full[self.index] = grad  # a basic slice is a view: each element at most once
        else:
            xp.add.at(full, self.index, grad)
        return full


def getitem(a, index):
    """Basic slicing and integer-array indexing; tensors used as indices are unwrapped.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> x[[0, 0, 2]].sum().backward()   # x[0] picked twice: its gradient adds up
    >>> x.grad
    tensor([2., 0., 1.])
    """
    if isinstance(index, Tensor):
        index = index.array
    elif isinstance(index, tuple):
        index = tuple(i.array if isinstance(i, Tensor) else i for i in index)
    elif isinstance(index, list):
        index = backend.xp_of(a.array).asarray(index)
    return GetItem.apply(a, index=index)


class Concatenate(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        return backend.xp_of(arrays[0]).concatenate(arrays, axis=axis)

    def backward(self, grad):  # each input gets back its own slab of the gradient
        xp = backend.xp_of(grad)
        boundaries = [sum(self.sizes[:i + 1]) for i in range(len(self.sizes) - 1)]
        return tuple(xp.split(grad, boundaries, axis=self.axis))


def concatenate(tensors, axis=None, *, dim=None):
    """Join tensors along an existing axis; each input gets back its own slab of the gradient.

    >>> import minigrad as mg
    >>> a = mg.tensor([1.0, 2.0], requires_grad=True)
    >>> b = mg.tensor([3.0], requires_grad=True)
    >>> y = mg.cat([a, b])
    >>> (y * mg.tensor([1.0, 2.0, 3.0])).sum().backward()
    >>> y
    tensor([1., 2., 3.], grad_fn=<ConcatenateBackward>)
    >>> a.grad
    tensor([1., 2.])
    >>> b.grad
    tensor([3.])
    """
    axis = _axis_or_dim(axis, dim)
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate: expected at least one tensor, got none")
    return Concatenate.apply(*tensors, axis=normalize_axis(axis, tensors[0].ndim, "dim"))


cat = concatenate


class Stack(Function):
    def forward(self, *arrays, axis):
        self.axis = axis
        return backend.xp_of(arrays[0]).stack(arrays, axis=axis)

    def backward(self, grad):  # input i gets slice i along the new axis
        xp = backend.xp_of(grad)
        return tuple(xp.take(grad, i, axis=self.axis) for i in range(grad.shape[self.axis]))


def stack(tensors, axis=None, *, dim=None):
    """Join tensors of one shape along a new axis; input i gets slice i of the gradient.

    >>> import minigrad as mg
    >>> a, b = mg.tensor([1.0, 2.0]), mg.tensor([3.0, 4.0])
    >>> mg.stack([a, b], dim=1)
    tensor([[1., 3.],
            [2., 4.]])
    """
    axis = _axis_or_dim(axis, dim)
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected at least one tensor, got none")
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        raise ValueError(f"stack: expected tensors of one shape, got shapes {sorted(shapes)}")
    return Stack.apply(*tensors, axis=normalize_axis(axis, tensors[0].ndim + 1, "dim"))


class Pad(Function):
    def forward(self, a, pad_width, value):
        self.slices = tuple(slice(before, before + size) for (before, _), size in zip(pad_width, a.shape))
        return backend.xp_of(a).pad(a, pad_width, constant_values=value)

    def backward(self, grad):  # the padding is constant: only the original region gets gradient
        return grad[self.slices]


def pad(a, pad_width, value=0.0):
    """Constant padding; ``pad_width`` is NumPy's: one (before, after) pair per axis."""
    pad_width = tuple((int(before), int(after)) for before, after in pad_width)
    if len(pad_width) != a.ndim or any(before < 0 or after < 0 for before, after in pad_width):
        raise ValueError(f"pad_width: expected {a.ndim} non-negative (before, after) pairs, got {pad_width}")
    if not isinstance(value, numbers.Real):
        raise TypeError(f"value: expected a real number, got {value!r}")
    if a.dtype.kind != "f" and value != int(value):  # NumPy would silently truncate it
        raise ValueError(f"value: expected a whole number to pad a {a.dtype} tensor, got {value!r}")
    if a.dtype.kind in "iu":  # NumPy would wrap it around (-1 pads uint8 with 255)
        low, high = dtypes.integer_range(a.dtype)
        if not low <= value <= high:
            raise ValueError(f"value: expected a number in [{low}, {high}] to pad a {a.dtype} tensor, got {value!r}")
    return Pad.apply(a, pad_width=pad_width, value=value)
