"""``minigrad.nn.functional``: the stateless ops that layers call, under PyTorch's names.

Read next: ``optim/optimizer.py`` (what happens to the gradients).
"""
from __future__ import annotations

from ..dtypes import check_same_dtype
from ..ops.conv import conv2d  # noqa: F401
from ..ops.dropout import dropout  # noqa: F401
from ..ops.elementwise import relu, sigmoid, tanh  # noqa: F401
from ..ops.layout import is_integer, pair  # noqa: F401
from ..ops.loss import (REDUCTIONS, binary_cross_entropy, binary_cross_entropy_with_logits,  # noqa: F401
                        check_reduction, cross_entropy, cross_entropy_normalizer, mse_loss, nll_loss,
                        summarize_targets)
from ..ops.pool import avg_pool2d, max_pool2d  # noqa: F401
from ..ops.shape import pad  # noqa: F401
from ..ops.softmax import log_softmax, softmax  # noqa: F401
from ..tensor import check_is_tensor


def linear(x, weight, bias=None):
    """x W^T + b; W has shape (out_features, in_features) as in PyTorch."""
    check_is_tensor(x, "input")
    check_is_tensor(weight, "weight")
    check_same_dtype("linear", x, weight, "input", "weight")
    if bias is not None:
        check_is_tensor(bias, "bias")
        check_same_dtype("linear", weight, bias, "weight", "bias")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input features: expected {weight.shape[1]} (weight {weight.shape}), "
                         f"got {x.shape[-1]} (input {x.shape})")
    out = x @ weight.T
    return out if bias is None else out + bias
