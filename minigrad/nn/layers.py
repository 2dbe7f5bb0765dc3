"""Layers: thin Modules that hold parameters and call ``nn.functional``.

Read next: ``nn/functional.py`` (the stateless forms the layers call), then
``optim/optimizer.py``.
"""
from __future__ import annotations

from collections import OrderedDict

from .. import backend
from ..backend import np
from . import functional as F
from . import init
from .module import Module, Parameter


def _empty_parameter(shape, dtype, device):
    dtype = backend.parse_dtype(dtype if dtype is not None else backend.float32)
    return Parameter(backend.to_device(np.zeros(shape, dtype=dtype), backend.parse_device(device)))


class Linear(Module):
    """y = x W^T + b with W of shape (out_features, in_features)."""

    def __init__(self, in_features, out_features, bias=True, dtype=None, device=None):
        super().__init__()
        in_features = positive_int("Linear", "in_features", in_features)
        out_features = positive_int("Linear", "out_features", out_features)
        self.in_features, self.out_features = in_features, out_features
        self.weight = init.kaiming_uniform_(_empty_parameter((out_features, in_features), dtype, device))
        self.bias = init.bias_uniform_(_empty_parameter((out_features,), dtype, device), self.weight.shape) \
            if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def positive_int(layer, argument, value):
    """A size argument as a Python int; NumPy integers are accepted, as PyTorch accepts them."""
    if not F.is_integer(value) or value <= 0:
        raise ValueError(f"{layer}: {argument}: expected a positive int, got {value!r}")
    return int(value)


PADDING_STRINGS = ("same", "valid")


class Conv2d(Module):
    """Cross-correlation with learned (O, C/groups, KH, KW) filters. ``padding`` is an int, a pair,
    "valid" (no padding) or "same" (output as large as the input; stride 1 only, as in PyTorch).
    stride, padding and dilation are stored as pairs, as PyTorch stores them."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", dtype=None, device=None):
        super().__init__()
        in_channels = positive_int("Conv2d", "in_channels", in_channels)
        out_channels = positive_int("Conv2d", "out_channels", out_channels)
        kernel = F.pair(kernel_size, "kernel_size")
        if min(kernel) <= 0:
            raise ValueError(f"Conv2d: kernel_size: expected positive sizes, got {kernel}")
        if not F.is_integer(groups) or groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups must divide in_channels {in_channels} and out_channels "
                             f"{out_channels}, got {groups}")
        if padding_mode != "zeros":
            raise ValueError(f"Conv2d: padding_mode: expected 'zeros' (the only one minigrad has), "
                             f"got {padding_mode!r}")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel
        self.stride, self.dilation, self.groups = F.pair(stride, "stride"), F.pair(dilation, "dilation"), groups
        self.padding = _checked_padding(padding, self.stride)
        shape = (out_channels, in_channels // groups, *kernel)
        self.weight = init.kaiming_uniform_(_empty_parameter(shape, dtype, device))
        self.bias = init.bias_uniform_(_empty_parameter((out_channels,), dtype, device), shape) if bias else None

    def padding_amounts(self):
        """((top, bottom), (left, right)) zeros added around the input. "same" pads d*(k-1) in
        total per axis; when that is odd the extra row/column goes at the bottom/right, as PyTorch."""
        if self.padding == "valid":
            return (0, 0), (0, 0)
        if self.padding == "same":
            totals = (d * (k - 1) for d, k in zip(self.dilation, self.kernel_size))
            return tuple((total // 2, total - total // 2) for total in totals)
        return tuple((p, p) for p in self.padding)

    def forward(self, x):
        (top, bottom), (left, right) = self.padding_amounts()
        if (top, left) != (bottom, right):  # uneven: conv2d pads both sides alike, so pad first
            x = F.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
            top = left = 0
        return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)

    def extra_repr(self):
        """PyTorch's wording: non-default padding, dilation, groups and bias only."""
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        return text + (", bias=False" if self.bias is None else "")


def _checked_padding(padding, stride):
    if not isinstance(padding, str):
        return F.pair(padding, "padding")
    if padding not in PADDING_STRINGS:
        raise ValueError(f"Conv2d: padding: expected an int, a pair or one of {PADDING_STRINGS}, got {padding!r}")
    if padding == "same" and stride != (1, 1):
        raise ValueError(f"Conv2d: padding='same' needs stride 1 (as in PyTorch), got stride={stride}")
    return padding


class _Pool2d(Module):
    """What max and average pooling share: the window, its stride and padding (and the repr)."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class Identity(Module):
    """Returns its input unchanged (a placeholder, e.g. for a removed layer); ignores any arguments."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Flatten(Module):
    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, x):
        return x.flatten(self.start_dim, self.end_dim)


class Dropout(Module):
    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class Softmax(Module):
    def __init__(self, dim=None):
        super().__init__()
        self.dim = dim

    def forward(self, x):
        return F.softmax(x, _softmax_dim(self.dim, x.ndim))

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    def forward(self, x):
        return F.log_softmax(x, _softmax_dim(self.dim, x.ndim))


def _softmax_dim(dim, ndim):
    """PyTorch's legacy choice when no dim is given: 0 for 0-, 1- and 3-d inputs, else 1."""
    if dim is not None:
        return dim
    return 0 if ndim in (0, 1, 3) else 1


class _ModuleContainer(Module):
    """What Sequential and ModuleList share: numbered, registered modules, len, iteration, append."""

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module):
        setattr(self, str(len(self)), _checked_module(module, "module"))
        return self


class Sequential(_ModuleContainer):
    """Calls its modules in order; they are named "0", "1", ... as in PyTorch (or given names,
    from one OrderedDict argument)."""

    def __init__(self, *modules):
        super().__init__()
        named = modules[0].items() if len(modules) == 1 and isinstance(modules[0], OrderedDict) \
            else ((str(index), module) for index, module in enumerate(modules))
        for name, module in named:
            setattr(self, name, _checked_module(module, f"Sequential: argument {name}"))

    def __getitem__(self, index):
        """One module, or for a slice a Sequential of those modules keeping their names (as PyTorch)."""
        if isinstance(index, slice):
            return type(self)(OrderedDict(list(self._modules.items())[index]))
        return list(self._modules.values())[index]

    def forward(self, x):
        for module in self._modules.values():
            x = module(x)
        return x


class ModuleList(_ModuleContainer):
    """A list whose Modules are registered (their parameters are the owner's), named "0", "1", ...
    It has no forward: the owner decides how to call them."""

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return type(self)(list(self._modules.values())[index])
        return list(self._modules.values())[index]

    def __setitem__(self, index, module):
        names = list(self._modules)
        setattr(self, names[index], _checked_module(module, "module"))

    def extend(self, modules):
        for module in modules:
            self.append(module)
        return self


def _checked_module(value, argument):
    if not isinstance(value, Module):
        raise TypeError(f"{argument}: expected a Module, got {type(value).__name__}")
    return value


class CrossEntropyLoss(Module):
    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__()
        F.check_reduction(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing}")
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction, self.label_smoothing = ignore_index, reduction, label_smoothing

    def forward(self, logits, target):
        return F.cross_entropy(logits, target, self.weight, self.ignore_index, self.reduction,
                               self.label_smoothing)


class NLLLoss(Module):
    """Negative log-likelihood of log-probabilities (put ``LogSoftmax`` before it)."""

    def __init__(self, weight=None, ignore_index=-100, reduction="mean"):
        super().__init__()
        F.check_reduction(reduction)
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, input, target):
        return F.nll_loss(input, target, self.weight, self.ignore_index, self.reduction)


class BCELoss(Module):
    """Binary cross-entropy on probabilities (put ``Sigmoid`` before it; ``BCEWithLogitsLoss`` on
    the logits is the stable choice)."""

    def __init__(self, weight=None, reduction="mean"):
        super().__init__()
        F.check_reduction(reduction)
        self.register_buffer("weight", weight)
        self.reduction = reduction

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.weight, self.reduction)


class BCEWithLogitsLoss(Module):
    """Sigmoid and binary cross-entropy in one stable op (``weight`` per element, ``pos_weight`` per class)."""

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        super().__init__()
        F.check_reduction(reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)
        self.reduction = reduction

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, self.reduction, self.pos_weight)


class MSELoss(Module):
    def __init__(self, reduction="mean"):
        super().__init__()
        F.check_reduction(reduction)
        self.reduction = reduction

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)
