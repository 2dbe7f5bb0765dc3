"""Layers and losses (``minigrad.nn``) and their functional forms (``minigrad.nn.functional``)."""
from . import functional, init  # noqa: F401
from .layers import (AvgPool2d, Conv2d, CrossEntropyLoss, Dropout, Flatten, Identity, Linear,  # noqa: F401
                     LogSoftmax, MaxPool2d, ModuleList, MSELoss, ReLU, Sequential, Sigmoid, Softmax, Tanh)
from .module import IncompatibleKeys, Module, Parameter, StateDictMismatch  # noqa: F401
