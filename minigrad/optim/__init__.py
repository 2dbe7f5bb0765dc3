"""Optimizers (``minigrad.optim``): each one's update rule is written out in its module docstring.

Read next: ``optim/optimizer.py``, then ``optim/sgd.py`` and ``optim/adam.py``.
"""
from . import lr_scheduler  # noqa: F401
from .adadelta import Adadelta  # noqa: F401
from .adagrad import Adagrad  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .rmsprop import RMSprop  # noqa: F401
from .sgd import SGD  # noqa: F401
