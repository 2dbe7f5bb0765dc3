"""minigrad: a small, exact deep-learning stack on NumPy (CPU) and CuPy (CUDA).

Where to read what:
- ``tensor.py``      the Tensor class and its operators
- ``autograd.py``    Function (one op) and the backward graph walk
- ``ops/``           each family of ops, forward and backward side by side
- ``nn/``            Module, layers, losses, initialisation
- ``backend.py``     NumPy/CuPy, devices, dtypes (the only module importing them)
"""
from .tensor import Tensor, tensor  # noqa: F401  (first: tensor.py closes the import cycle, see its end)
from . import backend, cuda  # noqa: F401
from .autograd import enable_grad, is_grad_enabled, no_grad  # noqa: F401
from .backend import device, float32, float64, int32, int64  # noqa: F401
from .ops.elementwise import abs, clip, cos, exp, log, relu, sigmoid, sin, sqrt, tanh, where  # noqa: F401
from .ops.linalg import matmul  # noqa: F401
from .ops.reduce import amax, amin, argmax, argmin, max, mean, min, sum  # noqa: F401
from .ops.shape import (cat, concatenate, flatten, pad, permute, reshape, squeeze, stack, transpose,  # noqa: F401
                        unsqueeze)
from .ops.softmax import log_softmax, softmax  # noqa: F401
from .random import manual_seed  # noqa: F401
from .creation import (arange, from_numpy, full, full_like, linspace, ones, ones_like, rand, rand_like,  # noqa: F401
                       randint, randn, randn_like, zeros, zeros_like)

# PyTorch's other names for the dtypes (``torch.long``, ``torch.float``, ``torch.double``).
long, float, double, int, bool = int64, float32, float64, int32, backend.bool_  # noqa: A001

__version__ = "0.1.0"

# As in PyTorch, ``import minigrad as torch`` reaches torch.nn, torch.optim and torch.utils.data.
from . import data, nn, optim, utils  # noqa: E402,F401
