"""softmax and log_softmax along one axis, computed stably (shifted by the max).

Read next: ``ops/loss.py`` (cross-entropy fuses log_softmax with the loss).
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..tensor import check_floating_input, check_is_tensor
from .reduce import normalize_axis


def log_softmax_array(x, axis):
    """log softmax(x) = x - max - log(sum(exp(x - max))); the shift keeps exp from overflowing."""
    xp = backend.xp_of(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    def forward(self, x, axis):
        out = log_softmax_array(x, axis)
        self.save_for_backward(out)
        self.axis = axis
        return out

    def backward(self, grad):  # d(log_softmax)/dx: g - softmax(x) * sum(g)
        (out,) = self.saved
        xp = backend.xp_of(grad)
        return grad - xp.exp(out) * grad.sum(axis=self.axis, keepdims=True)


def log_softmax(x, dim=-1):
    """log(softmax(x)) along ``dim``, computed without taking the log of a tiny probability.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = mg.log_softmax(x, dim=0)
    >>> y[0].backward()   # d y_0 / d x = one_hot(0) - softmax(x)
    >>> y
    tensor([-2.4076, -1.4076, -0.4076], grad_fn=<LogSoftmaxBackward>)
    >>> x.grad
    tensor([ 0.9100, -0.2447, -0.6652])
    """
    check_is_tensor(x, "input")
    check_floating_input("log_softmax", x)  # NumPy: float64, PyTorch refuses
    axis = normalize_axis(dim, x.ndim, "dim")
    if x.ndim == 0:  # one value along its only axis (PyTorch accepts dim 0 / -1): log 1 = 0
        return LogSoftmax.apply(x.reshape(1), axis=0).reshape(())
    return LogSoftmax.apply(x, axis=axis)


class Softmax(Function):
    def forward(self, x, axis):
        xp = backend.xp_of(x)
        exps = xp.exp(x - x.max(axis=axis, keepdims=True))
        out = exps / exps.sum(axis=axis, keepdims=True)
        self.save_for_backward(out)
        self.axis = axis
        return out

    def backward(self, grad):  # d(softmax)/dx: s * (g - sum(g * s))
        (out,) = self.saved
        return out * (grad - (grad * out).sum(axis=self.axis, keepdims=True))


def softmax(x, dim=-1):
    """e^x / sum(e^x) along ``dim``, shifted by the max so nothing overflows.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> p = mg.softmax(x, dim=0)
    >>> p[2].backward()   # d p_k / d x_i = p_k (1[i == k] - p_i)
    >>> p
    tensor([0.0900, 0.2447, 0.6652], grad_fn=<SoftmaxBackward>)
    >>> x.grad
    tensor([-0.0599, -0.1628,  0.2227])
    """
    check_is_tensor(x, "input")
    check_floating_input("softmax", x)  # NumPy: float64, PyTorch refuses
    axis = normalize_axis(dim, x.ndim, "dim")
    if x.ndim == 0:  # one value along its only axis: probability 1
        return Softmax.apply(x.reshape(1), axis=0).reshape(())
    return Softmax.apply(x, axis=axis)
