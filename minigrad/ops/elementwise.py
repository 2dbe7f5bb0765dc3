"""Element-wise ops: arithmetic, exp/log, sin/cos, activations, where and clip.

Binary ops may broadcast; their backward returns gradients of the broadcast shape and the
graph walk (``autograd.unbroadcast``) sums them back to each input's shape.

Read next: ``tensor.py`` (the operators that call these ops); the dtype rules applied by
``promote`` are in ``dtypes.py``.
"""
from __future__ import annotations

import numbers

from .. import backend, dtypes, parallel
from ..autograd import Function
from ..tensor import Tensor


# ----------------------------------------------------------------------------- dtype promotion (rules in dtypes.py)
def promote(a, b, true_division=False):
    """PyTorch's type promotion for two tensors (``dtypes.operand_dtypes``), made explicit
    before NumPy sees them. Only integer and bool tensors are ever cast, and they never require
    grad, so the cast needs no graph."""
    if a.dtype == b.dtype and not true_division:
        return a, b  # the common case, and nothing to decide
    a_dtype, b_dtype = dtypes.operand_dtypes(a.dtype, b.dtype, true_division)
    return _as_dtype(a, a_dtype), _as_dtype(b, b_dtype)


def _as_dtype(t, dtype):
    return t if t.dtype == dtype else Tensor._wrap(t.array.astype(dtype))


def as_floating(a):
    """Integer and bool tensors enter exp, log, sin, ... as float32 (``dtypes.math_dtype``)."""
    dtype = dtypes.math_dtype(a.dtype)
    return a if dtype == a.dtype else cast(a, dtype)


# ----------------------------------------------------------------------------- arithmetic
class Add(Function):
    def forward(self, a, b):
        return a + b

    def backward(self, grad):  # d(a+b)/da = 1, d(a+b)/db = 1
        return grad, grad


def add(a, b):
    """``a + b``, broadcasting; each input's gradient is summed back to its shape.

    >>> import minigrad as mg
    >>> a = mg.tensor([1.0, 2.0], requires_grad=True)
    >>> b = mg.tensor([[10.0], [20.0]], requires_grad=True)
    >>> y = a + b        # (2,) + (2, 1) -> (2, 2)
    >>> y.sum().backward()
    >>> a.grad         # each a[j] was used in both rows
    tensor([2., 2.])
    >>> b.grad
    tensor([[2.],
            [2.]])
    """
    return Add.apply(*promote(a, b))


class Sub(Function):
    def forward(self, a, b):
        return a - b

    def backward(self, grad):  # d(a-b)/da = 1, d(a-b)/db = -1
        return grad, -grad


def sub(a, b):
    return Sub.apply(*promote(a, b))


class Mul(Function):
    def forward(self, a, b):
        # Keep only what backward reads (d/da needs b, d/db needs a), as PyTorch: then `w * 3`
        # followed by an in-place change of w is no error, and no unneeded array is held.
        self.save_for_backward(a if self.needs_input_grad[1] else None, b if self.needs_input_grad[0] else None)
        return a * b

    def backward(self, grad):  # d(ab)/da = b, d(ab)/db = a
        a, b = self.saved
        return (grad * b if self.needs_input_grad[0] else None,
                grad * a if self.needs_input_grad[1] else None)


def mul(a, b):
    """``a * b``: d(ab)/da = b, d(ab)/db = a.

    >>> import minigrad as mg
    >>> a = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> b = mg.tensor([4.0, 5.0, 6.0])
    >>> (a * b).sum().backward()
    >>> a.grad
    tensor([4., 5., 6.])
    """
    return Mul.apply(*promote(a, b))


class Div(Function):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return a / b

    def backward(self, grad):  # d(a/b)/da = 1/b, d(a/b)/db = -a/b^2
        a, b = self.saved
        grad_a = grad / b
        return grad_a, (-grad_a * a / b if self.needs_input_grad[1] else None)


def div(a, b):
    """``a / b`` (true division: integers give float32): d(a/b)/db = -a/b^2.

    >>> import minigrad as mg
    >>> b = mg.tensor([1.0, 2.0, 4.0], requires_grad=True)
    >>> (1.0 / b).sum().backward()
    >>> b.grad
    tensor([-1.0000, -0.2500, -0.0625])
    >>> mg.tensor([1, 2]) / mg.tensor([2, 2])
    tensor([0.5000, 1.0000])
    """
    return Div.apply(*promote(a, b, true_division=True))


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, grad):  # d(-a)/da = -1
        return -grad


def neg(a):
    return Neg.apply(a)


class PowScalar(Function):
    def forward(self, a, exponent):
        self.save_for_backward(a)
        self.exponent = exponent
        return a ** exponent

    def backward(self, grad):  # d(a^p)/da = p a^(p-1)
        (a,) = self.saved
        p = self.exponent
        if p == 0:  # a^0 is constant: 0, also at a = 0 where p a^(p-1) would be 0 * inf = nan
            return backend.xp_of(grad).zeros_like(grad)
        return grad * (p * a ** (p - 1))


class Pow(Function):
    def forward(self, a, b):
        out = a ** b
        self.save_for_backward(a, b, out)
        return out

    def backward(self, grad):  # d(a^b)/da = b a^(b-1), d(a^b)/db = a^b log(a)
        a, b, out = self.saved
        xp = backend.xp_of(a)
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            # b = 0: a^0 is constant, so 0 (also at a = 0, where b a^(b-1) is 0 * inf), as PyTorch.
            grad_a = xp.where(b == 0, 0, grad * b * a ** (b - 1))
        if self.needs_input_grad[1]:
            # a = 0, b >= 0: 0^b log(0) tends to 0 (PyTorch's choice); a < 0 stays nan, as in PyTorch.
            limit_is_zero = (a == 0) & (b >= 0)
            grad_b = xp.where(limit_is_zero, 0, grad * out * xp.log(xp.where(limit_is_zero, 1, a)))
        return grad_a, grad_b


def pow(a, exponent):
    """``a ** exponent``; a Python or NumPy number as exponent keeps a's float dtype.

    NumPy scalars become Python numbers first (``x32 ** np.float64(2)`` would be float64), and
    an integer base meets a fractional exponent as float32, as in PyTorch (NumPy: float64).

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x ** 2).sum().backward()   # d(x^2)/dx = 2x
    >>> x.grad
    tensor([2., 4., 6.])
    """
    if isinstance(exponent, numbers.Number):
        exponent = int(exponent) if isinstance(exponent, numbers.Integral) else float(exponent)
        base_dtype = dtypes.pow_base_dtype(a.dtype, exponent)
        if base_dtype != a.dtype:
            a = cast(a, base_dtype)
        return PowScalar.apply(a, exponent=exponent)
    return Pow.apply(*promote(a, a._operand(exponent)))


# ----------------------------------------------------------------------------- exp, log and friends
class Exp(Function):
    def forward(self, a):
        out = backend.xp_of(a).exp(a)
        self.save_for_backward(out)
        return out

    def backward(self, grad):  # d(e^a)/da = e^a
        (out,) = self.saved
        return grad * out


def exp(a):
    """e to the power of each value: d(e^a)/da = e^a.

    >>> import minigrad as mg
    >>> x = mg.tensor([0.0, 1.0], requires_grad=True)
    >>> mg.exp(x).sum().backward()
    >>> x.grad                      # e^x again: exp is its own derivative
    tensor([1.0000, 2.7183])
    """
    return Exp.apply(as_floating(a))


class Log(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return backend.xp_of(a).log(a)

    def backward(self, grad):  # d(log a)/da = 1/a
        (a,) = self.saved
        return grad / a


def log(a):
    """The natural logarithm: d(log a)/da = 1/a.

    >>> import minigrad as mg
    >>> x = mg.tensor([1.0, 2.0, 4.0], requires_grad=True)
    >>> mg.log(x).sum().backward()
    >>> x.grad
    tensor([1.0000, 0.5000, 0.2500])
    """
    return Log.apply(as_floating(a))


class Sqrt(Function):
    def forward(self, a):
        out = backend.xp_of(a).sqrt(a)
        self.save_for_backward(out)
        return out

    def backward(self, grad):  # d(sqrt a)/da = 1 / (2 sqrt a)
        (out,) = self.saved
        return grad / (2 * out)


def sqrt(a):
    return Sqrt.apply(as_floating(a))


class Abs(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return backend.xp_of(a).abs(a)  # not abs(): this module's abs() below shadows the builtin

    def backward(self, grad):  # d|a|/da = sign(a) (0 at 0, as in PyTorch)
        (a,) = self.saved
        return grad * backend.xp_of(a).sign(a)


def abs(a):
    return Abs.apply(a)


class Sin(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return backend.xp_of(a).sin(a)

    def backward(self, grad):  # d(sin a)/da = cos a
        (a,) = self.saved
        return grad * backend.xp_of(a).cos(a)


def sin(a):
    return Sin.apply(as_floating(a))


class Cos(Function):
    def forward(self, a):
        self.save_for_backward(a)
        return backend.xp_of(a).cos(a)

    def backward(self, grad):  # d(cos a)/da = -sin a
        (a,) = self.saved
        return -grad * backend.xp_of(a).sin(a)


def cos(a):
    return Cos.apply(as_floating(a))


# ----------------------------------------------------------------------------- activations
class Tanh(Function):
    def forward(self, a):
        out = backend.xp_of(a).tanh(a)
        self.save_for_backward(out)
        return out

    def backward(self, grad):  # d(tanh a)/da = 1 - tanh(a)^2
        (out,) = self.saved
        return grad * (1 - out * out)


def tanh(a):
    """tanh: d(tanh a)/da = 1 - tanh(a)^2.

    >>> import minigrad as mg
    >>> x = mg.tensor([0.0, 1.0], requires_grad=True)
    >>> mg.tanh(x).sum().backward()
    >>> x.grad
    tensor([1.0000, 0.4200])
    """
    return Tanh.apply(as_floating(a))


class Sigmoid(Function):
    def forward(self, a):
        xp = backend.xp_of(a)
        # 1/(1+e^-a) overflows e^-a for very negative a, and 0.5*(tanh(a/2)+1) rounds the tail
        # to exactly 0 (tanh(-20) is -1 in float32). With e = e^-|a| <= 1 nothing overflows and
        # the tail e/(1+e) keeps its relative precision until e^-|a| itself underflows.
        e = xp.exp(-xp.abs(a))
        out = xp.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)
        self.save_for_backward(out)
        return out

    def backward(self, grad):  # d(sigma a)/da = sigma(a) (1 - sigma(a))
        (out,) = self.saved
        return grad * out * (1 - out)


def sigmoid(a):
    """1 / (1 + e^-a): d(sigma a)/da = sigma(a) (1 - sigma(a)).

    >>> import minigrad as mg
    >>> s = mg.sigmoid(mg.tensor([0.0, 2.0], requires_grad=True))
    >>> s
    tensor([0.5000, 0.8808], grad_fn=<SigmoidBackward>)
    >>> s * (1 - s)                 # what backward sends back for a gradient of ones
    tensor([0.2500, 0.1050], grad_fn=<MulBackward>)
    """
    return Sigmoid.apply(as_floating(a))


class ReLU(Function):
    # Both directions write into ``empty_like`` (which keeps the input's memory layout) because
    # CuPy, unlike NumPy, makes fresh elementwise results C-contiguous: between a conv and a pool
    # that would turn the batch-last layout they share (ops/layout.py) into a transposing copy.
    # ``parallel.elementwise`` runs each pass chunk by chunk in cache, the chunks shared by the threads.
    def forward(self, a):
        xp = backend.xp_of(a)
        out = xp.empty_like(a)
        parallel.elementwise(backend.maximum_with_zero, a, out)
        self.save_for_backward(out)
        return out

    def backward(self, grad):  # d(max(a,0))/da = 0 where a <= 0, else 1 (so 1 at NaN, as PyTorch)
        (out,) = self.saved
        xp = backend.xp_of(grad)
        grad_in = xp.empty_like(out, dtype=grad.dtype)
        # Where the unit is alive (out > 0, or NaN) the gradient passes, elsewhere it is exactly 0.
        # out = max(a, 0) is never negative, so "alive" is out != 0: one comparison, not two passes.
        parallel.elementwise(lambda out, grad, grad_in: keep_where(grad, out != 0, grad_in), out, grad, grad_in)
        return grad_in


def keep_where(values, mask, out):
    """out = values where mask, exactly 0 elsewhere, even where values are inf or NaN (as
    PyTorch's ReLU and max-pool gradients; ``values * mask`` would give 0 * inf = NaN there).

    An AND of the values' bits with an all-ones or all-zeros word per element: exact, and about
    3x faster than copyto(where=) on LeNet's activations (benchmarks/RESULTS.md).
    """
    xp = backend.xp_of(values)
    word, all_ones = ALL_ONES[values.dtype.itemsize]
    xp.bitwise_and(values.view(word), xp.multiply(mask, all_ones, dtype=word), out=out.view(word))
    return out


# Per float width: the unsigned integer as wide as the float, and its all-ones value as a typed
# scalar (2^64-1 is no Python int CuPy takes). Made once: np.iinfo costs microseconds per call.
ALL_ONES = {size: (backend.np.dtype(f"u{size}"), backend.np.dtype(f"u{size}").type(backend.np.iinfo(f"u{size}").max))
            for size in (2, 4, 8)}


def relu(a):
    """max(a, 0): the gradient passes where a > 0 and stops elsewhere.

    >>> import minigrad as mg
    >>> x = mg.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    >>> y = mg.relu(x)
    >>> y.sum().backward()
    >>> y
    tensor([0., 0., 2.], grad_fn=<ReLUBackward>)
    >>> x.grad
    tensor([0., 0., 1.])
    """
    return ReLU.apply(a)


# ----------------------------------------------------------------------------- selection
class Where(Function):
    def forward(self, condition, a, b):
        self.save_for_backward(condition)
        return backend.xp_of(a).where(condition, a, b)

    def backward(self, grad):  # gradient goes to a where condition holds, to b elsewhere
        (condition,) = self.saved
        zero = grad.dtype.type(0)
        xp = backend.xp_of(grad)
        return None, xp.where(condition, grad, zero), xp.where(condition, zero, grad)


def where(condition, a, b):
    """``a`` where ``condition`` holds, else ``b`` (broadcasting all three).

    >>> import minigrad as mg
    >>> a = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> y = mg.where(a > 1.5, a, 0.0)   # the gradient goes where a was chosen
    >>> y.sum().backward()
    >>> y
    tensor([0., 2., 3.], grad_fn=<WhereBackward>)
    >>> a.grad
    tensor([0., 1., 1.])
    """
    if not isinstance(condition, Tensor):
        condition = Tensor(condition)
    if condition.dtype != bool:
        raise TypeError(f"where: condition must be a bool tensor, got dtype {condition.dtype}")
    if not isinstance(a, Tensor):
        a = b._operand(a)
    if not isinstance(b, Tensor):
        b = a._operand(b)
    a, b = promote(a, b)   # int64 beside float32 is float32 (NumPy's where: float64)
    return Where.apply(condition, a, b)


class Clip(Function):
    def forward(self, a, low, high):
        self.save_for_backward(a)
        self.low, self.high = low, high
        return backend.xp_of(a).clip(a, low, high)

    def backward(self, grad):  # 1 inside [low, high] (bounds included, as in PyTorch), 0 outside
        (a,) = self.saved
        inside = True
        if self.low is not None:
            inside = inside & (a >= self.low)
        if self.high is not None:
            inside = inside & (a <= self.high)
        # Selected, not multiplied: outside values get exactly 0 even when grad is inf or NaN there
        # (x.clamp(min=0).sqrt() sends inf back at 0: 0 * inf was NaN; PyTorch's is 0).
        return backend.xp_of(grad).where(inside, grad, 0)


def clip(a, low=None, high=None):
    """Values limited to [low, high]; the gradient is 1 inside (bounds included), 0 outside.

    >>> import minigrad as mg
    >>> x = mg.tensor([-2.0, 0.5, 3.0], requires_grad=True)
    >>> y = mg.clip(x, -1.0, 1.0)
    >>> y.sum().backward()
    >>> y
    tensor([-1.0000,  0.5000,  1.0000], grad_fn=<ClipBackward>)
    >>> x.grad
    tensor([0., 1., 0.])
    """
    if low is None and high is None:
        raise ValueError("clip: expected at least one of min/max, got neither")
    # Bounds are numbers beside the tensor (``dtypes.scalar_dtype``): an integer tensor clipped to
    # 0.5 is float32, and a float64 bound (a NumPy scalar or a 0-d array) does not make float32
    # values float64, as NumPy 2 would.
    dtype = a.dtype
    for bound in (low, high):
        if bound is not None:
            dtype = dtypes.scalar_dtype(dtype, bound)
    low, high = (bound if bound is None or not hasattr(bound, "dtype")
                 else backend.xp_of(a.array).asarray(bound, dtype=dtype) for bound in (low, high))
    return Clip.apply(a if dtype == a.dtype else cast(a, dtype), low=low, high=high)


# ----------------------------------------------------------------------------- dtype and device moves
class Cast(Function):
    def forward(self, a, dtype):
        self.source_dtype = a.dtype
        return a.astype(dtype)

    def backward(self, grad):  # a cast is the identity on values: cast the gradient back
        return grad.astype(self.source_dtype)


def cast(a, dtype):
    return Cast.apply(a, dtype=dtype)


class ToDevice(Function):
    def forward(self, a, device):
        self.source_device = backend.device_of(a)
        return backend.to_device(a, device)

    def backward(self, grad):  # a copy is the identity on values: copy the gradient back
        return backend.to_device(grad, self.source_device)


def move_to_device(a, device):
    """Explicit copy to ``device`` (the only op whose output lives on another device)."""
    return ToDevice.apply(a, device=device)
