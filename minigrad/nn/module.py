"""``Module`` and ``Parameter``: a tree of layers that owns named, ordered parameters.

Read next: ``nn/init.py`` (how parameters start).
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple
from collections.abc import Mapping

from .. import backend
from ..autograd import zero_gradients
from ..tensor import Tensor


class Parameter(Tensor):
    """A tensor that a Module registers as trainable (``requires_grad=True``)."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data.array if isinstance(data, Tensor) else data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter(" + super().__repr__() + ")"


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])  # torch's name


class StateDictMismatch(ValueError):
    """A state_dict whose names or shapes differ from a module's. It keeps the lists, so a caller
    (the checkpoint loader) can name where the values came from; ``describe`` words the first problem."""

    def __init__(self, missing, unexpected, misshaped):
        self.missing, self.unexpected, self.misshaped = missing, unexpected, misshaped  # misshaped: (name, want, got)
        super().__init__("load_state_dict: " + self.describe("the state_dict"))

    def describe(self, source):
        if self.missing:
            return (f"parameter {self.missing[0]!r} of the model is missing from {source} "
                    f"(missing: {self.missing}, unexpected: {self.unexpected})")
        if self.misshaped:
            name, expected, got = self.misshaped[0]
            return f"parameter {name!r}: expected shape {expected}, got {got}"
        return (f"parameter {self.unexpected[0]!r} in {source} does not exist in the model "
                f"(unexpected: {self.unexpected})")


class Module:
    """Base class of every layer and model.

    Assigning a Parameter or a Module to an attribute registers it, in assignment order
    (ordered dicts, never sets: parameter order must not depend on hashing).
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                                 f"before assigning {name!r}")
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        """``del module.name`` unregisters a parameter, buffer or submodule too (so it leaves
        ``parameters()`` and ``state_dict()``), as in PyTorch."""
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name, tensor):
        """A tensor that moves with the module (``to``) and is saved, but is not trained."""
        object.__setattr__(self, name, tensor)
        if tensor is not None:
            self._buffers[name] = tensor

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ traversal
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (module for _, module in self.named_modules())

    def children(self):
        return iter(self._modules.values())

    def named_parameters(self, prefix=""):
        """(dotted name, Parameter) pairs in registration order; a shared one appears once."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, parameter in module._parameters.items():
                if id(parameter) not in seen:
                    seen.add(id(parameter))
                    yield (f"{module_name}.{name}" if module_name else name), parameter

    def parameters(self):
        return (parameter for _, parameter in self.named_parameters())

    def named_buffers(self):
        for module_name, module in self.named_modules():
            for name, buffer in module._buffers.items():
                yield (f"{module_name}.{name}" if module_name else name), buffer

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Forget every parameter's gradient (``.grad = None``, PyTorch's default), or with
        ``set_to_none=False`` fill existing gradients with zeros in place."""
        zero_gradients(self.parameters(), set_to_none)

    # ------------------------------------------------------------------ device and dtype
    def to(self, target=None, dtype=None, device=None):
        """Move/cast every parameter and buffer in place; the Parameter objects stay the same,
        so an optimizer built before ``to`` still updates them. An optimizer's existing state
        (momentum, moments) stays where it was, as in PyTorch: move the model before the first
        step, or round-trip ``optimizer.load_state_dict(optimizer.state_dict())``, which puts
        the state on each parameter's device and dtype."""
        dtype, device = backend.parse_to_arguments(target, dtype, device)
        for tensor in list(self.parameters()) + [b for _, b in self.named_buffers()]:
            tensor.array = _moved(tensor.array, dtype, device)
            if tensor.grad is not None:
                tensor.grad.array = _moved(tensor.grad.array, dtype, device)
        return self

    def cuda(self, index=0):
        return self.to(f"cuda:{index}")

    def cpu(self):
        return self.to("cpu")

    def double(self):
        return self.to(backend.float64)

    def float(self):
        return self.to(backend.float32)

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """Ordered ``{name: tensor}`` of parameters and buffers (detached, sharing memory)."""
        state = OrderedDict((name, p.detach()) for name, p in self.named_parameters())
        state.update((name, b.detach()) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy values in, all or nothing: every name, type, dtype and shape is checked, and every
        value converted, before the first parameter is written.

        Returns ``IncompatibleKeys(missing_keys, unexpected_keys)`` as PyTorch does. With
        ``strict=True`` any missing or unexpected name raises; a shape mismatch always raises.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"load_state_dict: expected a dict of name -> tensor, got {type(state_dict).__name__}")
        own = OrderedDict(self.named_parameters())
        own.update(self.named_buffers())
        missing = [name for name in own if name not in state_dict]
        unexpected = [name for name in state_dict if name not in own]
        values = {name: _checked_array(name, state_dict[name]) for name in own if name in state_dict}
        misshaped = [(name, own[name].shape, tuple(array.shape)) for name, array in values.items()
                     if tuple(array.shape) != own[name].shape]
        if misshaped or (strict and (missing or unexpected)):
            raise StateDictMismatch(missing if strict else [], unexpected if strict else [], misshaped)
        converted = {name: backend.to_device(backend.xp_of(array).asarray(array), own[name].device).astype(
            own[name].dtype, copy=False) for name, array in values.items()}
        for name, array in converted.items():  # all checks and conversions passed: now change state
            own[name].array[...] = array
            own[name]._bump_version()
        return IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ printing
    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, child in self._modules.items():
            child_lines = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_lines}")
        return lines[0] + (")" if len(lines) == 1 else "\n" + "\n".join(lines[1:]) + "\n)")


def _checked_array(name, value):
    """The array behind a state_dict value, refused with its name unless it holds numbers."""
    array = value.array if isinstance(value, Tensor) else value
    if not (isinstance(array, (backend.np.ndarray, backend.np.generic)) or backend.is_cupy_array(array)):
        raise TypeError(f"load_state_dict: parameter {name!r}: expected a Tensor or an array, "
                        f"got {type(value).__name__}")
    backend.check_tensor_dtype(array.dtype, f"load_state_dict: parameter {name!r}")
    return array


def _moved(array, dtype, device):
    if dtype is not None and array.dtype != dtype and array.dtype.kind == "f":
        array = array.astype(dtype)
    if device is not None:
        array = backend.to_device(array, device)
    return array
