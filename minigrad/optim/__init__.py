"""Optimizers (``minigrad.optim``): each one's update rule is written out in its module docstring."""
from .adam import Adam, AdamW  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .sgd import SGD  # noqa: F401
