"""Reductions: sum, mean, max over all axes or chosen ones, with or without keepdims."""
from __future__ import annotations

from .. import backend
from ..autograd import Function


def normalize_axes(axis, ndim, argument="axis"):
    """``None`` -> all axes; an int or a tuple -> a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    bound = ndim if ndim else 1  # a 0-d tensor accepts axis 0 / -1, as in PyTorch (no builtin max here:
    normalized = []              # this module's max() shadows it)
    for a in axes:
        if not isinstance(a, int) or not -bound <= a < bound:
            raise ValueError(f"{argument}: expected an axis in [{-bound}, {bound - 1}] for a "
                             f"{ndim}-d tensor, got {axis!r}")
        normalized.append(a % bound)
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{argument}: repeated axis in {axis!r}")
    if ndim == 0:
        return ()  # axis 0 of a 0-d tensor names the tensor itself: nothing to reduce
    return tuple(sorted(normalized))


def _expand_reduced(grad, input_shape, axes, keepdims):
    """Re-insert the reduced axes (size 1) so ``grad`` broadcasts against the input."""
    if keepdims or not input_shape:
        return grad
    shape = [1 if axis in axes else size for axis, size in enumerate(input_shape)]
    return grad.reshape(shape)


class Sum(Function):
    def forward(self, a, axes, keepdims):
        self.input_shape, self.axes, self.keepdims = a.shape, axes, keepdims
        return a.sum(axis=axes, keepdims=keepdims)

    def backward(self, grad):  # d(sum a)/da_i = 1: every element receives the output's gradient
        xp = backend.xp_of(grad)
        grad = _expand_reduced(grad, self.input_shape, self.axes, self.keepdims)
        return xp.broadcast_to(grad, self.input_shape)


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


class Max(Function):
    def forward(self, a, axes, keepdims):
        out = a.max(axis=axes, keepdims=True)
        self.save_for_backward(a, out)
        self.axes, self.keepdims = axes, keepdims
        return out if keepdims else out.reshape([s for i, s in enumerate(a.shape) if i not in axes])

    def backward(self, grad):
        # d(max a)/da_i = 1 for the arg-max, 0 elsewhere; ties share the gradient equally,
        # which is what PyTorch's full and multi-axis max do (its amax rule).
        a, out = self.saved
        grad = _expand_reduced(grad, a.shape, self.axes, self.keepdims)
        is_max = a == out
        count = is_max.sum(axis=self.axes, keepdims=True)
        return grad * is_max / count


def _resolve(axis, keepdims, dim, keepdim):
    """Accept PyTorch's ``dim``/``keepdim`` spelling as aliases of ``axis``/``keepdims``."""
    if dim is not None:
        if axis is not None:
            raise TypeError("pass either axis= or dim=, not both")
        axis = dim
    if keepdim is not None:
        keepdims = keepdim
    return axis, bool(keepdims)


def sum(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    axis, keepdims = _resolve(axis, keepdims, dim, keepdim)
    return Sum.apply(a, axes=normalize_axes(axis, a.ndim), keepdims=keepdims)


def mean(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    axis, keepdims = _resolve(axis, keepdims, dim, keepdim)
    return Mean.apply(a, axes=normalize_axes(axis, a.ndim), keepdims=keepdims)


def max(a, axis=None, keepdims=False, *, dim=None, keepdim=None):
    """Largest value over ``axis``. Unlike ``torch.max(x, dim)`` this returns values only."""
    axis, keepdims = _resolve(axis, keepdims, dim, keepdim)
    if a.size == 0:
        raise ValueError(f"max: expected a non-empty tensor, got shape {a.shape}")
    return Max.apply(a, axes=normalize_axes(axis, a.ndim), keepdims=keepdims)
