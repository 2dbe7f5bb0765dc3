"""``minigrad.nn.functional``: the stateless ops that layers call, under PyTorch's names.

Read next: ``optim/optimizer.py`` (what happens to the gradients).
"""
from __future__ import annotations

from ..ops.conv import conv2d  # noqa: F401
from ..ops.dropout import dropout  # noqa: F401
from ..ops.elementwise import relu, sigmoid, tanh  # noqa: F401
from ..ops.layout import is_integer, pair  # noqa: F401
from ..ops.linalg import linear  # noqa: F401
from ..ops.loss import (REDUCTIONS, binary_cross_entropy, binary_cross_entropy_with_logits,  # noqa: F401
                        check_reduction, cross_entropy, cross_entropy_normalizer, mse_loss, nll_loss,
                        summarize_targets)
from ..ops.pool import avg_pool2d, max_pool2d  # noqa: F401
from ..ops.shape import pad  # noqa: F401
from ..ops.softmax import log_softmax, softmax  # noqa: F401
