"""Matrix product, batched and broadcasting like ``numpy.matmul`` / ``torch.matmul``, and the
linear layer's ``x W^T + b`` as one op.

Read next: ``ops/shape.py`` (reshape, permute, indexing, concatenation).
"""
from __future__ import annotations

import math

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


class Linear(Function):
    """out = x W^T + b over the last axis of x: the product and the bias add as one node, as
    PyTorch's ``addmm`` (one node instead of a transpose, a product and an add: -2% on a LeNet
    step at batch 32, where each node's bookkeeping counts; benchmarks/RESULTS.md)."""

    def forward(self, x, weight, *bias):
        # dW needs x and dx needs W: each is kept only if the other input wants its gradient.
        self.save_for_backward(x if self.needs_input_grad[1] else None, weight if self.needs_input_grad[0] else None)
        # x stored column by column, as the flattened batch-last output of a conv or pool: dx is
        # then made in that layout too, so the reshape back and that op's batch-last view of dx
        # move nothing (a (128, 400) transposing copy at LeNet's batch 128; benchmarks/RESULTS.md).
        self.input_by_columns = x.ndim == 2 and x.flags.f_contiguous and not x.flags.c_contiguous
        out = parallel.matmul(as_rows(x), weight.T)                  # (batch, in) @ (in, out)
        if bias:
            out += bias[0]                                            # a fresh product: added in place
        return out.reshape(*x.shape[:-1], weight.shape[0])

    def backward(self, grad):
        # out = x W^T + b  =>  dx = dout W,  dW = dout^T x,  db = dout summed over the batch
        x, weight = self.saved
        grad_rows = as_rows(grad)
        products = []                          # dx and dW: two independent products, computed together
        if self.needs_input_grad[0]:           # x by columns: dx^T = W^T dout^T, dx by columns too
            products.append((weight.T, grad_rows.T) if self.input_by_columns else (grad_rows, weight))
        if self.needs_input_grad[1]:
            products.append((grad_rows.T, as_rows(x)))
        results = iter(parallel.matmuls_together(products))
        grad_x = grad_w = grad_b = None
        if self.needs_input_grad[0]:
            grad_x = next(results)
            grad_x = grad_x.T if self.input_by_columns else grad_x.reshape(*grad.shape[:-1], weight.shape[1])
        if self.needs_input_grad[1]:
            grad_w = next(results)
        if len(self.needs_input_grad) > 2 and self.needs_input_grad[2]:
            grad_b = grad_rows.sum(axis=0)
        return grad_x, grad_w, grad_b


def as_rows(array):
    """(*, features) -> (batch, features): one matrix whatever the leading axes (a view when it can be)."""
    return array.reshape(math.prod(array.shape[:-1]), array.shape[-1])


def linear(x, weight, bias=None):
    """x W^T + b; W has shape (out_features, in_features), x has in_features last (as PyTorch).

    >>> import minigrad as mg
    >>> x = mg.tensor([[1.0, 2.0]])
    >>> w = mg.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]], requires_grad=True)   # 2 -> 3 features
    >>> b = mg.tensor([0.5, 0.5, 0.5], requires_grad=True)
    >>> out = linear(x, w, b)
    >>> out.sum().backward()
    >>> out
    tensor([[1.5000, 3.5000, 4.5000]], grad_fn=<LinearBackward>)
    >>> w.grad                         # dW = dout^T x: each row is x
    tensor([[1., 2.],
            [1., 2.],
            [1., 2.]])
    >>> b.grad
    tensor([1., 1., 1.])
    """
    check_is_tensor(x, "input")
    check_is_tensor(weight, "weight")
    check_same_dtype("linear", x, weight, "input", "weight")
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-d (out_features, in_features), got shape {weight.shape}")
    if bias is not None:
        check_is_tensor(bias, "bias")
        check_same_dtype("linear", weight, bias, "weight", "bias")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias: expected shape ({weight.shape[0]},), got {bias.shape} "
                             f"(PyTorch would broadcast it; minigrad adds no bias of another shape)")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input features: expected {weight.shape[1]} (weight {weight.shape}), "
                         f"got {x.shape[-1] if x.ndim else 'a 0-d input'} (input {x.shape})")
    return Linear.apply(x, weight) if bias is None else Linear.apply(x, weight, bias)
