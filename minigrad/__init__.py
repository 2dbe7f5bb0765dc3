"""minigrad: a small, exact deep-learning stack on NumPy (CPU) and CuPy (CUDA).

Where to read what:
- ``tensor.py``      the Tensor class and its operators
- ``autograd.py``    Function (one op) and the backward graph walk
- ``ops/``           each family of ops, forward and backward side by side
- ``nn/``            Module, layers, losses, initialisation
- ``backend.py``     NumPy/CuPy, devices, dtypes (the only module importing them)
"""
from . import cuda  # noqa: F401
from .autograd import enable_grad, is_grad_enabled, no_grad  # noqa: F401
from .backend import float32, float64, int64  # noqa: F401
from .ops.elementwise import clip, exp, log, relu, sigmoid, sqrt, tanh, where  # noqa: F401
from .ops.linalg import matmul  # noqa: F401
from .ops.reduce import amax, amin, argmax, argmin, max, mean, min, sum  # noqa: F401
from .ops.shape import cat, concatenate, flatten, pad, permute, reshape, stack, transpose  # noqa: F401
from .ops.softmax import log_softmax, softmax  # noqa: F401
from .random import manual_seed  # noqa: F401
from .tensor import Tensor, tensor  # noqa: F401
from .creation import arange, ones, randn, zeros  # noqa: F401

__version__ = "0.1.0"
