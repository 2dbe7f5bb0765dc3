"""Layers and losses (``minigrad.nn``) and their functional forms (``minigrad.nn.functional``)."""
from . import functional, init  # noqa: F401
from .layers import (AvgPool2d, Conv2d, CrossEntropyLoss, Dropout, Flatten, Linear, MaxPool2d,  # noqa: F401
                     MSELoss, ReLU, Sequential, Sigmoid, Tanh)
from .module import Module, Parameter  # noqa: F401
