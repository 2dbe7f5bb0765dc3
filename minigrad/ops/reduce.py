"""Reductions: sum, mean, max over all axes or chosen ones, with or without keepdims.

Read next: ``ops/linalg.py`` (the matrix product).
"""
from __future__ import annotations

import numbers
from collections import namedtuple

from .. import backend
from ..autograd import Function
from ..tensor import Tensor


# What ``max(x, dim)`` / ``min(x, dim)`` return, as ``torch.return_types.max``: unpacks as a pair.
ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def normalize_axis(axis, ndim, argument="axis"):
    """One axis in [-ndim, ndim) -> its non-negative form; anything else is a clear error.

    Checked before taking the modulo, so an axis out of range never silently wraps. Python and
    NumPy integers are accepted alike; a 0-d tensor accepts axis 0 / -1, as in PyTorch.
    """
    bound = ndim if ndim else 1  # no builtin max here: this module's max() shadows it
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) or not -bound <= axis < bound:
        raise ValueError(f"{argument}: expected an axis in [{-bound}, {bound - 1}] for a "
                         f"{ndim}-d tensor, got {axis!r}")
    return int(axis) % bound


def normalize_axes(axis, ndim, argument="axis"):
    """``None`` -> all axes; an int or a tuple -> a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) else tuple(axis)
    try:
        normalized = [normalize_axis(a, ndim, argument) for a in axes]
    except ValueError:  # name the whole request, not just the one bad axis in it
        bound = ndim if ndim else 1
        raise ValueError(f"{argument}: expected an axis in [{-bound}, {bound - 1}] for a "
                         f"{ndim}-d tensor, got {axis!r}") from None
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{argument}: repeated axis in {axis!r}")
    if ndim == 0:
        return ()  # axis 0 of a 0-d tensor names the tensor itself: nothing to reduce
    return tuple(sorted(normalized))


def _resolve(axis, keepdims, dim, keepdim):
    """Accept PyTorch's ``dim``/``keepdim`` spelling as aliases of ``axis``/``keepdims``."""
    if dim is not None:
        if axis is not None:
            raise TypeError("pass either axis= or dim=, not both")
        axis = dim
    if keepdim is not None:
        keepdims = keepdim
    return axis, bool(keepdims)


def _expand_reduced(grad, input_shape, axes, keepdims):
    """Re-insert the reduced axes (size 1) so ``grad`` broadcasts against the input."""
    if keepdims or not input_shape:
        return grad
    shape = [1 if axis in axes else size for axis, size in enumerate(input_shape)]
    return grad.reshape(shape)


def _check_not_empty(name, a, axes):
    if any(a.shape[axis] == 0 for axis in axes):
        raise ValueError(f"{name}: expected a non-empty tensor along the reduced axes, got shape {a.shape}")


# ----------------------------------------------------------------------------- sum and mean
class Sum(Function):
    def forward(self, a, axes, keepdims):
        self.input_shape, self.axes, self.keepdims = a.shape, axes, keepdims
        return a.sum(axis=axes, keepdims=keepdims)

    def backward(self, grad):  # d(sum a)/da_i = 1: every element receives the output's gradient
        xp = backend.xp_of(grad)
        grad = _expand_reduced(grad, self.input_shape, self.axes, self.keepdims)
        return xp.broadcast_to(grad, self.input_shape)


def sum(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """The sum over ``axis`` (all axes by default): every input value gets the output's gradient.

    >>> import minigrad as mg
    >>> x = mg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = mg.sum(x, axis=0)
    >>> (y * mg.tensor([1.0, 10.0])).sum().backward()
    >>> y
    tensor([4., 6.], grad_fn=<SumBackward>)
    >>> x.grad
    tensor([[ 1., 10.],
            [ 1., 10.]])
    """
    axis, keepdims = _resolve(axis, keepdims, dim, keepdim)
    return Sum.apply(a, axes=normalize_axes(axis, a.ndim), keepdims=keepdims)


class Mean(Function):
    def forward(self, a, axes, keepdims):
        self.input_shape, self.axes, self.keepdims = a.shape, axes, keepdims
        self.count = 1
        for axis in axes:
            self.count *= a.shape[axis]
        return a.mean(axis=axes, keepdims=keepdims)

    def backward(self, grad):  # d(mean a)/da_i = 1/n
        xp = backend.xp_of(grad)
        grad = _expand_reduced(grad, self.input_shape, self.axes, self.keepdims)
        return xp.broadcast_to(grad / self.count, self.input_shape)


def mean(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """The mean over ``axis`` (all axes by default): d(mean)/da_i = 1/n.

    >>> import minigrad as mg
    >>> x = mg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    >>> y = x.mean()
    >>> y.backward()
    >>> y
    tensor(2.5000, grad_fn=<MeanBackward>)
    >>> x.grad
    tensor([[0.2500, 0.2500],
            [0.2500, 0.2500]])
    """
    if a.dtype.kind != "f":  # PyTorch refuses too: the mean of integers is not an integer
        raise TypeError(f"mean: expected a floating-point tensor, got dtype {a.dtype}; "
                        f"cast first, e.g. t.float().mean()")
    axis, keepdims = _resolve(axis, keepdims, dim, keepdim)
    return Mean.apply(a, axes=normalize_axes(axis, a.ndim), keepdims=keepdims)


# ----------------------------------------------------------------------------- max and min
class AMax(Function):
    """amax / amin over several axes at once (``largest`` picks which)."""

    def forward(self, a, axes, keepdims, largest, nan_is_extreme=False):
        out = a.max(axis=axes, keepdims=True) if largest else a.min(axis=axes, keepdims=True)
        self.save_for_backward(a, out)
        self.axes, self.keepdims, self.nan_is_extreme = axes, keepdims, nan_is_extreme
        return out if keepdims else out.reshape([s for i, s in enumerate(a.shape) if i not in axes])

    def backward(self, grad):
        # d(amax a)/da_i = 1/k for each of the k tied extremes, 0 elsewhere (PyTorch's amax rule;
        # also torch.max(x) with no dim).
        a, out = self.saved
        xp = backend.xp_of(a)
        grad = _expand_reduced(grad, a.shape, self.axes, self.keepdims)
        is_extreme = a == out
        if self.nan_is_extreme:
            # torch.max(x) with no dim: a NaN maximum came from the NaNs, which share the gradient.
            # (amax has no such rule in PyTorch: no element equals NaN, so its gradient is NaN.)
            is_extreme |= xp.isnan(a) & xp.isnan(out)
        count = is_extreme.sum(axis=self.axes, keepdims=True)
        with backend.np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN, as in PyTorch
            if self.nan_is_extreme:
                # torch.max(x)'s gradient is written into zeros at the extremes: the others stay 0
                # even when grad is inf or NaN. amax's is PyTorch's product, NaN there as well.
                return xp.where(is_extreme, grad / count, 0)
            return grad * is_extreme / count


def amax(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Largest value over ``axis`` (int or tuple); tied maxima share the gradient equally.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 3.0, 3.0], requires_grad=True)
    >>> mg.amax(x).backward()   # two tied maxima: half each
    >>> x.grad
    tensor([0.0000, 0.5000, 0.5000])
    """
    axis, keepdims = _resolve(axis, keepdims, dim, keepdim)
    axes = normalize_axes(axis, a.ndim)
    _check_not_empty("amax", a, axes)
    return AMax.apply(a, axes=axes, keepdims=keepdims, largest=True)


def amin(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Smallest value over ``axis`` (int or tuple); tied minima share the gradient equally."""
    axis, keepdims = _resolve(axis, keepdims, dim, keepdim)
    axes = normalize_axes(axis, a.ndim)
    _check_not_empty("amin", a, axes)
    return AMax.apply(a, axes=axes, keepdims=keepdims, largest=False)


class TakeAlongAxis(Function):
    """The values at ``index`` along one axis: ``torch.max(x, dim).values`` once the index is known."""

    def forward(self, a, index, axis, keepdims):
        self.save_for_backward(index)
        self.input_shape, self.axis, self.keepdims = a.shape, axis, keepdims
        values = backend.xp_of(a).take_along_axis(a, index, axis=axis)
        return values if keepdims else values.squeeze(axis)

    def backward(self, grad):
        # d(a[index])/da_i = 1 at the index only (ties: the first occurrence takes it all)
        (index,) = self.saved
        xp = backend.xp_of(grad)
        grad = grad if self.keepdims else xp.expand_dims(grad, self.axis)
        position_shape = [-1 if i == self.axis else 1 for i in range(len(self.input_shape))]
        positions = xp.arange(self.input_shape[self.axis]).reshape(position_shape)
        # Selected, not multiplied: the other positions get exactly 0 even when grad is inf or NaN
        # (x.max(1).values.sqrt() at a maximum of 0), as PyTorch's scatter into zeros.
        return xp.where(positions == index, grad, 0)


def _extreme(name, a, axis, keepdims, dim, keepdim, largest):
    """``torch.max`` / ``torch.min``: no axis -> the scalar; one axis -> (values, indices)."""
    axis, keepdims = _resolve(axis, keepdims, dim, keepdim)
    if axis is None:
        _check_not_empty(name, a, tuple(range(a.ndim)))
        return AMax.apply(a, axes=normalize_axes(None, a.ndim), keepdims=keepdims, largest=largest,
                          nan_is_extreme=True)
    axis = normalize_axis(axis, a.ndim, "dim")
    if a.ndim == 0:  # a 0-d tensor is its own max along axis 0, found at index 0
        values, indices = _extreme(name, a.reshape(1), 0, keepdims, None, None, largest)
        return ValuesIndices(values.reshape(()), indices.reshape(()))
    index = _arg_extreme(name, a, axis, True, None, None, largest)      # the reduced axis kept, size 1
    values = TakeAlongAxis.apply(a, index=index.array, axis=axis, keepdims=keepdims)
    return ValuesIndices(values, index if keepdims else Tensor._wrap(index.array.squeeze(axis)))


def max(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """PyTorch's ``max``: ``max(x)`` is the largest value (ties share the gradient);
    ``max(x, dim)`` is ``(values, indices)`` and the gradient goes to the index (first occurrence).

    >>> import minigrad as mg
    >>> x = mg.tensor([[1.0, 5.0], [7.0, 2.0]], requires_grad=True)
    >>> values, indices = mg.max(x, dim=1)
    >>> values.sum().backward()
    >>> values
    tensor([5., 7.], grad_fn=<TakeAlongAxisBackward>)
    >>> indices
    tensor([1, 0])
    >>> x.grad
    tensor([[0., 1.],
            [1., 0.]])
    """
    return _extreme("max", a, axis, keepdims, dim, keepdim, largest=True)


def min(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """PyTorch's ``min``: the mirror of ``max``."""
    return _extreme("min", a, axis, keepdims, dim, keepdim, largest=False)


# ----------------------------------------------------------------------------- argmax and argmin (no gradient)
def _arg_extreme(name, a, axis, keepdims, dim, keepdim, largest):
    axis, keepdims = _resolve(axis, keepdims, dim, keepdim)
    xp = backend.xp_of(a.array)
    data = a.array
    if axis is None or a.ndim == 0:
        if axis is not None:
            normalize_axis(axis, a.ndim, "dim")
        _check_not_empty(name, a, tuple(range(a.ndim)))
        data, axis = data.reshape(-1), 0
        keepdims = False  # the index into the flattened tensor is one number, as in PyTorch
    else:
        axis = normalize_axis(axis, a.ndim, "dim")
        _check_not_empty(name, a, (axis,))
    index = data.argmax(axis=axis) if largest else data.argmin(axis=axis)
    index = xp.asarray(index, dtype=backend.int64)
    return Tensor._wrap(xp.expand_dims(index, axis) if keepdims else index)


def argmax(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Index of the first largest value (over the flattened tensor when ``axis`` is None)."""
    return _arg_extreme("argmax", a, axis, keepdims, dim, keepdim, largest=True)


def argmin(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Index of the first smallest value (over the flattened tensor when ``axis`` is None)."""
    return _arg_extreme("argmin", a, axis, keepdims, dim, keepdim, largest=False)
