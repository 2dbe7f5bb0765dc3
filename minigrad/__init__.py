"""minigrad: a small, exact deep-learning stack on NumPy (CPU) and CuPy (CUDA).

The reading path (the README's code tour gives the same; every module ends its docstring
with the next stop):

1. ``examples/y_equals_2x.py``   a whole training run in one short script
2. ``autograd.py``               ``Function`` (one op, one graph node) and the backward walk
3. ``ops/elementwise.py``        the simplest ops: forward and backward side by side
4. ``tensor.py``                 ``Tensor``: PyTorch's operator names over the ops
5. ``ops/reduce.py``, ``ops/linalg.py``, ``ops/shape.py``   sum/mean/max, matmul and linear, reshape
6. ``ops/softmax.py``, ``ops/loss.py``   log_softmax; cross-entropy and its normaliser
7. ``nn/``                       Module, initialisation, layers, functional
8. ``optim/``                    the update rules, PyTorch's exactly
9. ``data/``                     datasets, the DataLoader, real data and downloads
10. ``train.py``                 micro-batches and gradient accumulation, the loop
11. ``ops/conv_reference.py``, then ``ops/conv.py``, ``ops/pool.py``, ``ops/layout.py``,
    ``parallel.py``: convolution and pooling the obvious way, then the fast way
12. last: ``backend.py`` (NumPy/CuPy), ``memory/``, ``cli.py``, ``report.py``,
    ``checkpoint.py``, ``files.py``, ``distributed.py``

Side trips: ``dtypes.py`` (which dtype a result gets), ``creation.py`` (factories),
``random.py`` and ``ops/dropout.py`` (seeding), ``models.py`` (ready-made networks).

The one import cycle (tensor <-> autograd <-> ops) is closed at the end of ``tensor.py``,
which is why ``tensor`` is imported first below.
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
from .serialization import load, save  # noqa: E402,F401
