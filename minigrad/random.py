"""The global random state: ``mg.manual_seed(n)`` makes initialisation and dropout repeatable.

Random numbers are drawn on the host with NumPy's PCG64 and copied to the device when
needed, so a seeded model starts from the same weights on the CPU and on a GPU.
"""
from __future__ import annotations

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
