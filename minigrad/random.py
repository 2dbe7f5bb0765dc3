"""The global random state: ``mg.manual_seed(n)`` makes initialisation and dropout repeatable.

Random numbers are drawn on the host with NumPy's PCG64 and copied to the device when
needed, so a seeded model starts from the same weights on the CPU and on a GPU.

Read next: ``models.py`` (the networks the command line trains), then
``ops/conv_reference.py``.
"""
from __future__ import annotations

import contextlib

from .backend import np

_generator = np.random.default_rng(0)


def manual_seed(seed: int):
    """Reseed the global generator used by parameter initialisation and dropout."""
    global _generator
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    _generator = np.random.default_rng(int(seed))
    return _generator


def generator() -> np.random.Generator:
    return _generator


def get_state():
    """The generator's state (a dict), for checkpoints that must resume exactly."""
    return _generator.bit_generator.state


def set_state(state):
    _generator.bit_generator.state = state


# ----------------------------------------------------------------------------- per-sample keys
# Gradient accumulation must give the same gradient however a batch is split, dropout included.
# Drawing masks from the global generator would make sample i's mask depend on how many values
# were drawn before it, i.e. on the split. Inside ``per_sample_masks(seed)`` dropout instead
# draws the mask row of sample i from a key (seed, dropout call index in this forward pass,
# global sample index i), and ``sample_offset(start)`` tells it that the micro-batch running
# now starts at sample ``start`` of the whole batch.
class SampleKeys:
    def __init__(self, seed):
        self.seed = int(seed)
        self.offset = 0      # global index of the first sample in the running (micro-)batch
        self.call_index = 0  # how many dropout calls this forward pass has made so far


_sample_keys = None  # None: dropout uses the global generator (the plain, fast path)


@contextlib.contextmanager
def per_sample_masks(seed=None):
    """Key dropout masks by (seed, call, sample) inside this block; ``seed=None`` draws one
    from the global generator, so ``manual_seed`` still makes the masks repeatable."""
    global _sample_keys
    if seed is None:
        seed = _generator.integers(2**63)
    previous, _sample_keys = _sample_keys, SampleKeys(seed)
    try:
        yield _sample_keys
    finally:
        _sample_keys = previous


@contextlib.contextmanager
def sample_offset(start):
    """The forward pass run inside sees samples ``start, start+1, ...`` of the whole batch.

    Its dropout calls are numbered from 0 again, exactly as in the whole batch's forward pass.
    """
    keys = _sample_keys
    if keys is None:
        raise RuntimeError("sample_offset: only meaningful inside random.per_sample_masks(...)")
    previous = keys.offset, keys.call_index
    keys.offset, keys.call_index = int(start), 0
    try:
        yield
    finally:
        keys.offset, keys.call_index = previous


def next_sample_keys():
    """For one dropout call: (seed, call index, first global sample index), or None outside
    ``per_sample_masks``. Each call advances the call index."""
    keys = _sample_keys
    if keys is None:
        return None
    call_index = keys.call_index
    keys.call_index += 1
    return keys.seed, call_index, keys.offset
