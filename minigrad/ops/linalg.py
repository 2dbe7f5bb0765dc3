"""Matrix product, batched and broadcasting like ``numpy.matmul`` / ``torch.matmul``.

Read next: ``ops/shape.py`` (reshape, permute, indexing, concatenation).
"""
from __future__ import annotations

from .. import backend, parallel
from ..autograd import Function
from ..dtypes import check_same_dtype
from ..tensor import check_is_tensor


class MatMul(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return parallel.matmul(a, b)

    def backward(self, grad):
        # C = A B  =>  dA = dC B^T,  dB = A^T dC  (1-d operands are lifted to matrices first)
        a, b = self.saved
        xp = backend.xp_of(grad)
        a2 = a[None, :] if a.ndim == 1 else a          # vector a is a (1, n) row
        b2 = b[:, None] if b.ndim == 1 else b          # vector b is an (n, 1) column
        g2 = grad  # restore the axes the lifting added: the column of b first, then the row of a
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)  # after b's axis, so vector @ vector (a 0-d grad) works
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = parallel.matmul(g2, xp.swapaxes(b2, -1, -2))
            if a.ndim == 1:
                grad_a = grad_a.reshape(-1, a.shape[0]).sum(axis=0)
        if self.needs_input_grad[1]:
            grad_b = parallel.matmul(xp.swapaxes(a2, -1, -2), g2)
            if b.ndim == 1:
                grad_b = grad_b.reshape(-1, b.shape[0]).sum(axis=0)
        return grad_a, grad_b  # batch axes that were broadcast are summed by unbroadcast


def matmul(a, b):
    """The matrix product ``a @ b``: dA = dC B^T, dB = A^T dC.

    >>> import minigrad as mg
    >>> a = mg.tensor([[1.0, 2.0]], requires_grad=True)           # (1, 2)
    >>> b = mg.tensor([[3.0, 4.0], [5.0, 6.0]], requires_grad=True)  # (2, 2)
    >>> c = a @ b
    >>> c.sum().backward()
    >>> c
    tensor([[13., 16.]], grad_fn=<MatMulBackward>)
    >>> a.grad
    tensor([[ 7., 11.]])
    >>> b.grad
    tensor([[1., 1.],
            [2., 2.]])
    """
    check_is_tensor(a, "input")
    check_is_tensor(b, "other")
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: expected tensors with at least 1 dimension, got shapes {a.shape} and {b.shape}")
    inner_a = a.shape[-1]
    inner_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if inner_a != inner_b:
        raise ValueError(f"matmul: inner dimensions must match, got shapes {a.shape} and {b.shape} "
                         f"({inner_a} != {inner_b})")
    check_same_dtype("matmul", a, b, "input", "other")
    return MatMul.apply(a, b)
