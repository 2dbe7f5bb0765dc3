"""Parameter initialisation, PyTorch's defaults.

``nn.Linear`` and ``nn.Conv2d`` draw weights from Kaiming-uniform with a = sqrt(5), whose
bound gain * sqrt(3 / fan_in) with gain = sqrt(2 / (1 + a^2)) simplifies to 1 / sqrt(fan_in),
and biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

Read next: ``nn/layers.py`` (the layers that use these initialisers).
"""
from __future__ import annotations

import math

from .. import backend, random
from ..autograd import no_grad


def uniform_(tensor, low, high):
    """Fill ``tensor`` in place with U(low, high), drawn in float64 on the host then cast."""
    values = random.generator().uniform(low, high, size=tensor.shape)
    with no_grad():
        tensor.array[...] = backend.to_device(values.astype(tensor.dtype), tensor.device)
    tensor._bump_version()
    return tensor


def fan_in(weight_shape):
    """Inputs feeding one output: in_features for Linear, C/groups * KH * KW for Conv2d."""
    receptive = 1
    for size in weight_shape[2:]:
        receptive *= size
    return weight_shape[1] * receptive


def kaiming_uniform_(tensor, a=math.sqrt(5)):
    gain = math.sqrt(2.0 / (1 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in(tensor.shape))
    return uniform_(tensor, -bound, bound)


def bias_uniform_(bias, weight_shape):
    bound = 1 / math.sqrt(fan_in(weight_shape)) if fan_in(weight_shape) > 0 else 0.0
    return uniform_(bias, -bound, bound)
