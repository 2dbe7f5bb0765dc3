"""``Tensor``: an array (NumPy or CuPy) plus what autograd needs to send gradients back.

The arithmetic lives in ``minigrad/ops``; this class only gives it PyTorch's names
(``x + y``, ``x @ w``, ``x.sum(axis=1)``) and holds ``.grad``.

Read next: ``ops/reduce.py`` (sum, mean, max), then ``ops/linalg.py``; the factories
(``zeros``, ``randn``) are in ``creation.py``.
"""
from __future__ import annotations

import numbers
import weakref

from . import backend, dtypes
from .backend import np


def check_is_tensor(value, argument):
    """Public ops take Tensors: a NumPy array would slip past dtype and device checks (and its
    ``.data`` is a memoryview, so duck typing misfires). Wrap it with ``mg.tensor`` first."""
    if not isinstance(value, Tensor):
        raise TypeError(f"{argument}: expected a Tensor, got {type(value).__name__}")


def check_floating_input(op_name, tensor):
    """Ops whose math needs fractions refuse integer and bool inputs, naming the dtype: NumPy
    would wrap their sums around or compute in float64, where PyTorch refuses too."""
    if tensor.dtype.kind != "f":
        raise TypeError(f"{op_name}: input must be floating point, got dtype {tensor.dtype}")


def check_same_device(op_name, tensors):
    """Raise if an op's inputs live on different devices: nothing is copied implicitly."""
    if len(tensors) < 2:
        return
    first = tensors[0].device
    for other in tensors[1:]:
        if other.device != first:
            raise RuntimeError(f"{op_name}: inputs are on different devices, {first} and {other.device}; "
                               f"move one with .to({first!r}) or .to({other.device!r})")


class VersionCounter:
    """How many in-place writes a tensor's memory has seen; shared by tensors that share memory
    (``detach()``, views made by ops), as PyTorch's version counter is."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = 0


class Tensor:
    """A multi-dimensional array that can remember how it was computed.

    ``requires_grad=True`` marks a leaf whose gradient should be kept in ``.grad``.
    ``_fn`` is the ``Function`` that produced this tensor (None for leaves and for tensors
    computed without a graph).
    """

    __array_priority__ = 1000  # make `ndarray + Tensor` call Tensor.__radd__
    __slots__ = ("array", "requires_grad", "_grad", "_fn", "_version_counter", "__weakref__")

    def __init__(self, data, requires_grad=False, dtype=None, device=None):
        if isinstance(data, Tensor):
            data = data.array
        dtype = backend.parse_dtype(dtype) if dtype is not None else None
        if backend.is_cupy_array(data):
            array = data if dtype is None else data.astype(dtype, copy=False)
            if device is not None:
                array = backend.to_device(array, backend.parse_device(device))
        else:
            array = dtypes.from_python_data(data, dtype)
            device = backend.parse_device(device)
            if device != "cpu":
                array = backend.to_device(array, device)
        if requires_grad and array.dtype.kind != "f":
            raise TypeError(f"requires_grad: only floating-point tensors can require grad, got dtype {array.dtype}")
        self.array = array
        self.requires_grad = bool(requires_grad)
        self._grad = None
        self._fn = None
        self._version_counter = VersionCounter()

    @classmethod
    def _wrap(cls, array, requires_grad=False):
        """Fast path for ops: wrap an array that already has the right dtype and device."""
        tensor = cls.__new__(cls)
        tensor.array = array
        tensor.requires_grad = requires_grad
        tensor._grad = None
        tensor._fn = None
        tensor._version_counter = VersionCounter()
        return tensor

    # ------------------------------------------------------------------ description
    @property
    def shape(self):
        return self.array.shape

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def device(self):
        return backend.device_of(self.array)

    @property
    def ndim(self):
        return self.array.ndim

    def size(self, dim=None):
        """The shape, as PyTorch's ``size()``; ``size(dim)`` is one side (the element count is ``numel()``)."""
        if dim is None:
            return self.array.shape
        if not isinstance(dim, numbers.Integral) or isinstance(dim, bool):
            raise TypeError(f"size: dim must be an integer, got {type(dim).__name__}")
        if not -self.ndim <= dim < self.ndim:
            raise IndexError(f"size: dim {dim} is out of range for a tensor with {self.ndim} dimensions")
        return self.array.shape[dim]

    def numel(self):
        """The number of elements (NumPy's ``.size``)."""
        return self.array.size

    @property
    def data(self):
        """As PyTorch: a tensor that shares this tensor's memory and is detached from the graph.

        The raw backend array (NumPy or CuPy) is ``.array``, Chainer's name.
        """
        return Tensor._wrap(self.array)

    @data.setter
    def data(self, value):
        """``t.data = other`` swaps the array underneath, outside the graph (as PyTorch)."""
        if not isinstance(value, Tensor):
            raise TypeError(f"data: expected a Tensor, got {type(value).__name__} (assign an array to .array)")
        self.array = value.array

    @property
    def is_leaf(self):
        return self._fn is None

    def dim(self):
        return self.array.ndim

    def __len__(self):
        return len(self.array)

    def __repr__(self):
        """PyTorch's layout: ``tensor([1., 2.], requires_grad=True)``, ``grad_fn=<MulBackward>``."""
        extras = []
        if self.device != "cpu":
            extras.append(f"device='{self.device}'")
        if self.dtype not in (backend.float32, backend.int64, backend.bool_):  # PyTorch's defaults go unsaid
            extras.append(f"dtype={self.dtype}")
        if self._fn is not None:
            extras.append(f"grad_fn=<{self._fn.name()}>")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return "tensor(" + ", ".join([_format_values(self.array)] + extras) + ")"

    @property
    def grad_fn(self):
        """The Function that made this tensor (its ``next_functions`` lead on); None for a leaf."""
        return self._fn

    # ------------------------------------------------------------------ autograd
    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        """Refuse a gradient that ``step()`` would broadcast or cast silently (as PyTorch does)."""
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"grad: expected a Tensor or None, got {type(value).__name__}")
            if value.shape != self.shape:
                raise RuntimeError(f"grad: cannot assign a gradient of shape {value.shape} to a tensor "
                                   f"of shape {self.shape}")
            if value.dtype != self.dtype:
                raise RuntimeError(f"grad: cannot assign a gradient with dtype {value.dtype} to a tensor "
                                   f"with dtype {self.dtype}")
            if value.device != self.device:
                raise RuntimeError(f"grad: cannot assign a gradient on {value.device} to a tensor on {self.device}")
        self._grad = value

    @property
    def _version(self):
        """How many times this tensor's memory was written in place (PyTorch's ``_version``)."""
        return self._version_counter.value

    def _bump_version(self):
        """Call after every in-place write: backward then refuses values saved before it."""
        self._version_counter.value += 1

    def backward(self, grad=None, retain_graph=False):
        autograd.backward(self, grad, retain_graph=retain_graph)

    def _accumulate_grad(self, grad):
        """``.grad += grad``: gradients of several backward calls add up."""
        if grad.dtype != self.dtype:
            grad = grad.astype(self.dtype)
        if self.grad is None:
            # Copy: the same array may also be another tensor's gradient; in-place += later
            # must not change both.
            self._grad = Tensor._wrap(grad.copy(order="K"))  # "K": keep the layout, no transposing copy
        else:
            self._grad.array += grad
            self._grad._bump_version()

    def retain_grad(self):
        """Keep ``.grad`` for this non-leaf tensor too (leaves always keep theirs)."""
        if self._fn is not None:
            self._fn.retained_output = weakref.ref(self)
        return self

    def detach(self):
        """The same array with no history: gradients stop here. It shares the version counter
        (as in PyTorch), so an in-place write through it is still seen by backward."""
        detached = Tensor._wrap(self.array)
        detached._version_counter = self._version_counter
        return detached

    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.dtype.kind != "f":
            raise TypeError(f"requires_grad: only floating-point tensors can require grad, got dtype {self.dtype}")
        self.requires_grad = requires_grad
        return self

    # ------------------------------------------------------------------ conversion
    def numpy(self):
        """A NumPy array: a host copy for a CUDA tensor, the array itself on the CPU."""
        return backend.to_host(self.array)

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item: only a one-element tensor converts to a Python number, got shape {self.shape}")
        return self.array.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def to(self, target=None, dtype=None, device=None):
        """``t.to("cuda")``, ``t.to("float64")``, ``t.to(device=..., dtype=...)``.

        Both are recorded in the graph like any op: a cast's gradient is cast back, a copy's
        gradient is copied back to the source device. The only way to move data between devices.
        """
        dtype, device = backend.parse_to_arguments(target, dtype, device)
        out = self
        if dtype is not None and dtype != self.dtype:
            out = elementwise.cast(out, dtype)
        if device is not None and device != out.device:
            out = elementwise.move_to_device(out, device)
        return out

    def cpu(self):
        return self.to("cpu")

    def cuda(self, index=0):
        return self.to(f"cuda:{index}")

    def float(self):
        return self.to(backend.float32)

    def double(self):
        return self.to(backend.float64)

    def long(self):
        return self.to(backend.int64)

    def int(self):
        return self.to(backend.int32)

    def bool(self):
        return self.to(backend.bool_)

    def astype(self, dtype):
        return self.to(dtype=dtype)

    # ------------------------------------------------------------------ operators
    def _operand(self, other):
        """Turn the other side of a binary op into a Tensor without promoting our dtype.

        A Python scalar takes this tensor's dtype (so ``x32 * 0.5`` stays float32); anything
        else must already be a tensor or array on this tensor's device.
        """
        if isinstance(other, Tensor):
            return other
        if isinstance(other, numbers.Number):
            xp = backend.xp_of(self.array)
            return Tensor._wrap(xp.asarray(other, dtype=dtypes.scalar_dtype(self.dtype, other)))
        if backend.is_cupy_array(other):
            return Tensor._wrap(other)
        return Tensor(other)

    def __add__(self, other):
        return elementwise.add(self, self._operand(other))

    def __radd__(self, other):
        return elementwise.add(self._operand(other), self)

    def __sub__(self, other):
        return elementwise.sub(self, self._operand(other))

    def __rsub__(self, other):
        return elementwise.sub(self._operand(other), self)

    def __mul__(self, other):
        return elementwise.mul(self, self._operand(other))

    def __rmul__(self, other):
        return elementwise.mul(self._operand(other), self)

    def __truediv__(self, other):
        return elementwise.div(self, self._operand(other))

    def __rtruediv__(self, other):
        return elementwise.div(self._operand(other), self)

    def __neg__(self):
        return elementwise.neg(self)

    def __pow__(self, exponent):
        return elementwise.pow(self, exponent)

    def __rpow__(self, base):
        return elementwise.pow(self._operand(base), self)

    def __matmul__(self, other):
        return linalg.matmul(self, self._operand(other))

    def __rmatmul__(self, other):
        return linalg.matmul(self._operand(other), self)

    def __getitem__(self, index):
        return shape.getitem(self, index)

    # Comparisons give boolean tensors without a graph (they have no gradient).
    def _compare(self, other, op):
        other = self._operand(other)
        check_same_device("comparison", (self, other))
        return Tensor._wrap(op(self.array, other.array))

    def __eq__(self, other):
        return self._compare(other, lambda a, b: a == b)

    def __ne__(self, other):
        return self._compare(other, lambda a, b: a != b)

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    __hash__ = object.__hash__  # tensors are used as dict keys by identity, like PyTorch's

    def __bool__(self):
        if self.array.size != 1:
            raise ValueError(f"bool: a tensor of shape {self.shape} is ambiguous; use .any() or .all()")
        return bool(self.array)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        """A one-element integer tensor can index a list (``class_correct[label]``), as in PyTorch."""
        if self.dtype.kind not in "iu" or self.array.size != 1:
            raise TypeError(f"__index__: only integer tensors of a single element can be converted to an "
                            f"index, got dtype {self.dtype} and shape {self.shape}")
        return int(self.item())

    # ------------------------------------------------------------------ method forms of the operators
    def add(self, other, *, alpha=1):
        """``x.add(y, alpha=a)`` is ``x + a * y``, as PyTorch."""
        return self + (other if alpha == 1 else self._operand(other) * alpha)

    def sub(self, other, *, alpha=1):
        return self - (other if alpha == 1 else self._operand(other) * alpha)

    def mul(self, other):
        return self * other

    def div(self, other, *, rounding_mode=None):
        if rounding_mode is not None:
            raise NotImplementedError(f"div: rounding_mode={rounding_mode!r} is not supported by minigrad "
                                      f"(only true division); round the quotient yourself")
        return self / other

    def pow(self, exponent):
        return self ** exponent

    def matmul(self, other):
        return self @ other

    def neg(self):
        return -self

    def eq(self, other):
        return self == other

    def ne(self, other):
        return self != other

    def lt(self, other):
        return self < other

    def le(self, other):
        return self <= other

    def gt(self, other):
        return self > other

    def ge(self, other):
        return self >= other

    # ------------------------------------------------------------------ in place
    # PyTorch's in-place forms. On tensors outside any graph (buffers, ``p.data``, parameters
    # under no_grad) they write into the array itself, so every tensor sharing it sees the
    # change. On a tensor in a graph the result is computed out of place and this Tensor object
    # takes it over, with the op recorded: the old array stays intact for the backward of ops
    # that saved it (PyTorch would instead raise at backward). A leaf that requires grad cannot
    # be changed in place while gradients are recorded: the error PyTorch raises.
    def _in_place(self, name, result_of):
        if autograd.is_grad_enabled() and self.requires_grad and self._fn is None:
            raise RuntimeError(f"{name}: a leaf Variable that requires grad is being used in an in-place "
                               f"operation; wrap the update in `with mg.no_grad():` or change `.data`")
        result = result_of()
        if result.shape != self.shape:
            raise RuntimeError(f"{name}: output with shape {self.shape} doesn't match the broadcast shape "
                               f"{result.shape}")
        if result.dtype != self.dtype and result.dtype.kind == "f" and self.dtype.kind != "f":
            raise RuntimeError(f"{name}: result type {result.dtype} can't be cast to the desired output "
                               f"type {self.dtype}")
        if result.requires_grad:  # in a graph: take over the result (a cast back is recorded too)
            result = result.to(self.dtype)
            self.array, self._fn, self.requires_grad = result.array, result._fn, True
            self._version_counter = result._version_counter  # new memory: the old array's savers are safe
        else:
            self.array[...] = result.array
            self._bump_version()  # a graph that saved this memory must not use the new values
        return self

    def add_(self, other, *, alpha=1):
        return self._in_place("add_", lambda: self.add(other, alpha=alpha))

    def sub_(self, other, *, alpha=1):
        return self._in_place("sub_", lambda: self.sub(other, alpha=alpha))

    def mul_(self, other):
        return self._in_place("mul_", lambda: self * other)

    def div_(self, other):
        return self._in_place("div_", lambda: self / other)

    def pow_(self, exponent):
        return self._in_place("pow_", lambda: self ** exponent)

    def clamp_(self, min=None, max=None):
        return self._in_place("clamp_", lambda: self.clamp(min, max))

    def copy_(self, source):
        return self._in_place("copy_", lambda: self._operand(source) + self.new_zeros(self.shape))

    def fill_(self, value):
        return self._in_place("fill_", lambda: self.new_zeros(self.shape) + value)

    def zero_(self):
        return self.fill_(0)

    __iadd__, __isub__, __imul__, __itruediv__ = add_, sub_, mul_, div_

    def new_zeros(self, *shape):
        """Zeros of this tensor's dtype and device (PyTorch's ``new_zeros``)."""
        xp = backend.xp_of(self.array)
        return Tensor._wrap(xp.zeros(shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list))
                                     else shape, dtype=self.dtype))

    # ------------------------------------------------------------------ methods
    # Ops whose method form adds nothing to the function (exp, log, ..., relu; sum, mean, max,
    # ..., argmin) are attached at the end of this file, after the import seam: ``x.exp()`` is
    # ``mg.exp(x)`` and ``x.sum(dim=1)`` is ``mg.sum(x, dim=1)``, the very same function.
    def clip(self, min=None, max=None):
        return elementwise.clip(self, min, max)

    clamp = clip

    def any(self):
        """A 0-d bool tensor, as PyTorch (``if t.any():`` still works through ``__bool__``)."""
        return Tensor._wrap(backend.xp_of(self.array).asarray(self.array.any()))

    def all(self):
        return Tensor._wrap(backend.xp_of(self.array).asarray(self.array.all()))

    def reshape(self, *new_shape):
        return shape.reshape(self, *new_shape)

    view = reshape

    def view_as(self, other):
        return shape.reshape(self, other.shape)

    reshape_as = view_as

    def contiguous(self):
        """Values never depend on the memory layout in minigrad: the tensor itself."""
        return self

    def unsqueeze(self, dim):
        return shape.unsqueeze(self, dim)

    def squeeze(self, dim=None):
        return shape.squeeze(self, dim)

    def flatten(self, start_dim=0, end_dim=-1):
        return shape.flatten(self, start_dim, end_dim)

    def transpose(self, *axes):
        return shape.transpose(self, *axes)

    def permute(self, *axes):
        return shape.permute(self, *axes)

    @property
    def T(self):
        return shape.permute(self, *reversed(range(self.ndim)))

    def softmax(self, dim=-1):
        return softmax_ops.softmax(self, dim)

    def log_softmax(self, dim=-1):
        return softmax_ops.log_softmax(self, dim)


def _format_values(array):
    """Values as PyTorch prints them: whole floats as ``1.``, others with 4 decimals, every element
    padded to one width, long tensors summarised with ``...`` (PyTorch wraps lines at 80 columns
    after the ``tensor(`` prefix, hence 87)."""
    host = backend.to_host(array)
    options = dict(separator=", ", prefix="tensor(", max_line_width=87, threshold=1000, edgeitems=3)
    if host.dtype.kind == "f":
        finite = host[np.isfinite(host)]
        whole = bool((finite == np.round(finite)).all())
        options.update(precision=4, floatmode="maxprec" if whole else "fixed")
    return np.array2string(host, **options)


def tensor(data, requires_grad=False, dtype=None, device=None):
    """Make a tensor from Python data or an array (always a new leaf, like ``torch.tensor``)."""
    if isinstance(data, Tensor):
        data = data.array
    if isinstance(data, np.ndarray) or backend.is_cupy_array(data):
        data = data.copy()  # a new tensor never shares memory with the caller's array
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, device=device)


# ----------------------------------------------------------------------------- the import seam
# minigrad's one import cycle, closed here and nowhere else: Tensor's methods call autograd and
# the ops, which build Tensors. Every other import in the package sits at the top of its module;
# these run last, once Tensor exists, so autograd and the ops can import it at their top.
from . import autograd  # noqa: E402
from .ops import elementwise, linalg, reduce, shape  # noqa: E402
from .ops import softmax as softmax_ops  # noqa: E402

# The ops as methods (see "methods" in the class): each is the op's own function, so
# ``x.max(dim)`` takes exactly ``mg.max``'s arguments and ``help(x.exp)`` shows its example.
for _name in ("exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "relu", "abs"):
    setattr(Tensor, _name, getattr(elementwise, _name))
for _name in ("sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin"):
    setattr(Tensor, _name, getattr(reduce, _name))
del _name
