"""Inverted dropout: zero each value with probability p and scale the survivors by 1/(1-p)."""
from __future__ import annotations

from .. import backend, random
from ..autograd import Function


class Dropout(Function):
    def forward(self, x, mask):
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad):  # d(x * mask)/dx = mask
        (mask,) = self.saved
        return grad * mask


def dropout_mask(shape, p, dtype, device):
    """Keep-mask scaled by 1/(1-p), drawn on the host from the global generator."""
    keep = random.generator().random(shape) >= p
    mask = keep.astype(dtype) / dtype.type(1 - p)
    return backend.to_device(mask, device)


def dropout(x, p=0.5, training=True):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return Dropout.apply(x, mask=dropout_mask(x.shape, p, x.dtype, x.device))
