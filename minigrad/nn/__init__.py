"""Layers and losses (``minigrad.nn``) and their functional forms (``minigrad.nn.functional``).

Read next: ``nn/module.py``, then ``nn/init.py``, ``nn/layers.py`` and ``nn/functional.py``.
"""
from . import functional, init  # noqa: F401
from .layers import (AvgPool2d, BCELoss, BCEWithLogitsLoss, Conv2d, CrossEntropyLoss, Dropout, Flatten,  # noqa: F401
                     Identity, Linear, LogSoftmax, MaxPool2d, ModuleList, MSELoss, NLLLoss, ReLU, Sequential,
                     Sigmoid, Softmax, Tanh)
from .module import IncompatibleKeys, Module, Parameter, StateDictMismatch  # noqa: F401
