"""Inverted dropout: zero each value with probability p and scale the survivors by 1/(1-p).

Masks come from one of two sources:
- the plain path: the global generator (``mg.manual_seed``), one draw for the whole tensor;
- the per-sample path, inside ``random.per_sample_masks`` (``train.accumulate`` enters it):
  the mask row of sample i depends only on (seed, dropout call index, global sample index i),
  so a batch split into micro-batches gets exactly the masks of the unsplit batch.

Read next: ``random.py`` (the seeded generator and the per-sample keys).
"""
from __future__ import annotations

import math

from .. import backend, random
from ..autograd import Function
from ..backend import np
from ..tensor import check_floating_input


class Dropout(Function):
    def forward(self, x, mask):
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad):  # d(x * mask)/dx = mask
        (mask,) = self.saved
        return grad * mask


def dropout(x, p=0.5, training=True):
    """Zero each value with probability ``p`` while ``training``, scale the rest by 1/(1-p)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be a probability in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    check_floating_input("dropout", x)  # the 1/(1-p) scale has no integer value
    if p == 1.0:
        return x * 0.0
    return Dropout.apply(x, mask=dropout_mask(x.shape, p, x.dtype, x.device))


def dropout_mask(shape, p, dtype, device):
    """Keep-mask scaled by 1/(1-p), drawn on the host (so CPU and GPU runs share masks)."""
    sample_keys = random.next_sample_keys()
    if sample_keys is None:
        uniforms = random.generator().random(shape)
    else:
        uniforms = per_sample_uniforms(shape, *sample_keys)
    mask = (uniforms >= p).astype(dtype) / dtype.type(1 - p)
    return backend.to_device(mask, device)


# ----------------------------------------------------------------------------- per-sample draws
GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)  # SplitMix64's stream increment


def mix64(z):
    """SplitMix64's finaliser: scrambles uint64 arrays bijectively (arithmetic wraps mod 2**64)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def per_sample_uniforms(shape, seed, call_index, first_sample):
    """Uniforms in [0, 1) whose row i is a function of (seed, call_index, first_sample + i) only.

    Each sample gets its own SplitMix64 stream, seeded by hashing its key: a counter-based
    draw, vectorised over the whole micro-batch (no Python loop over samples).
    """
    if len(shape) == 0:
        raise ValueError("dropout: per-sample masks need a batch axis, got a 0-d input")
    num_samples, row_size = shape[0], math.prod(shape[1:])
    call_key = mix64(mix64(np.array([seed], dtype=np.uint64)) ^ np.uint64(call_index))       # (1,)
    samples = np.arange(first_sample, first_sample + num_samples, dtype=np.uint64)
    row_seeds = mix64(call_key ^ samples)                                                   # (N,)
    stream_steps = np.arange(1, row_size + 1, dtype=np.uint64) * GOLDEN_GAMMA               # (R,)
    bits = mix64(row_seeds[:, None] + stream_steps[None, :])                                # (N, R)
    return ((bits >> np.uint64(11)).astype(np.float64) * 2.0**-53).reshape(shape)  # top 53 bits
