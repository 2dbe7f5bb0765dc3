"""The dtype rules, in one place: which dtype each result gets.

minigrad computes with NumPy (or CuPy) but promises PyTorch's dtypes, so wherever the two
libraries disagree, the rule is made explicit here before NumPy sees the operands. Everywhere
else NumPy's answer already is PyTorch's (float32 + float64 -> float64, int32 + int64 -> int64,
``float32 tensor * 0.5`` -> float32 under NumPy 2's NEP 50) and nothing needs doing.

Where PyTorch's rule (minigrad's) differs from NumPy's, one row per rule; tests/test_dtypes.py
checks every row against both libraries and against minigrad:

=====================================  ==========================  ==========================
case                                   NumPy gives                 PyTorch (and minigrad) gives
=====================================  ==========================  ==========================
Python floats as data: ``[0.5]``       float64                     float32 (the default float)
a factory without dtype: ``zeros(3)``  float64                     float32
int tensor op float tensor             the wider one, e.g.         the float's dtype:
(``int64 * float32``)                  float64                     float32
int tensor / int tensor                float64                     float32
int tensor op Python float             float64                     float32
(``int64 * 0.5``, ``int64 ** 0.5``)
exp, log, sqrt, ... of an int tensor   float64                     float32
float32 @ float64 (matmul, linear)     float64                     an error: one dtype wanted
=====================================  ==========================  ==========================

Read next: ``tensor.py``, the next stop on the path (this module is a side trip from
``ops/elementwise.py``).
"""
from __future__ import annotations

import numbers

from . import backend
from .backend import np

# Where PyTorch's rule differs from NumPy's: (case, what NumPy gives, what PyTorch gives).
# The same rows as the table above, as data for the test that checks them.
PYTORCH_VS_NUMPY = (
    ("python float data", "float64", "float32"),
    ("factory without dtype", "float64", "float32"),
    ("int64 tensor * float32 tensor", "float64", "float32"),
    ("int64 tensor / int64 tensor", "float64", "float32"),
    ("int64 tensor * python float", "float64", "float32"),
    ("int64 tensor ** python float", "float64", "float32"),
    ("exp of an int64 tensor", "float64", "float32"),
    ("float32 @ float64", "float64", "error"),
)


def from_python_data(data, dtype=None):
    """A NumPy array of ``data`` (scalars, nested lists, arrays) with PyTorch's dtype for it.

    Arrays keep their dtype; Python floats become float32 and Python ints int64 (NumPy: float64,
    and the platform's int), unless ``dtype`` says otherwise.
    """
    from_python = not isinstance(data, (np.ndarray, np.generic))
    array = np.asarray(data)
    if from_python:  # Python ints become int64 unless dtype says otherwise
        check_python_ints_fit(data, array, backend.int64 if dtype is None else dtype)
    backend.check_tensor_dtype(array.dtype, "tensor")  # before any cast: '1' must not become 1.0
    if dtype is not None:
        return array.astype(dtype, copy=False)
    return as_pytorch_default(array) if from_python else array


def check_python_ints_fit(data, array, dtype):
    """Python integers that an integer ``dtype`` cannot hold are refused, as PyTorch does: NumPy's
    cast would wrap them around (300 becomes 44 in uint8, 2**63 becomes -2**63 in int64).
    NumPy holds ints beyond int64 as objects, or as float64 beside small ones: those are read
    again one by one (when every value is an int; a float among them makes the data floats)."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "iu" or not array.size:
        return
    if array.dtype.kind in "iu":
        refuse_integers_outside(dtype, int(array.min()), int(array.max()))
    elif array.dtype == object or (array.dtype.kind == "f" and float(np.abs(array).max()) >= 2.0 ** 63):
        values = np.asarray(data, dtype=object).ravel()
        if all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in values):
            refuse_integers_outside(dtype, min(values), max(values))


def refuse_integers_outside(dtype, low, high):
    smallest, largest = integer_range(dtype)
    if low < smallest or high > largest:
        raise ValueError(f"data: expected integers in [{smallest}, {largest}] for dtype {dtype}, "
                         f"got {low if low < smallest else high}")


def integer_range(dtype):
    """The smallest and largest value an integer ``dtype`` holds, as Python ints."""
    limits = np.iinfo(dtype)
    return int(limits.min), int(limits.max)


def as_pytorch_default(array):
    """An array made from Python numbers, in PyTorch's dtype: floats float32, integers int64."""
    if array.dtype == np.float64:
        return array.astype(backend.float32)
    if array.dtype.kind in "iu":
        return array.astype(backend.int64)
    return array


def float_or_default(dtype):
    """A factory's dtype: the one asked for, else PyTorch's default float32 (NumPy's: float64)."""
    return backend.float32 if dtype is None else backend.parse_dtype(dtype)


def scalar_dtype(tensor_dtype, scalar):
    """The dtype a Python (or NumPy) number takes beside a tensor of ``tensor_dtype``.

    The tensor's own dtype, so ``x32 * 0.5`` stays float32; but a fractional number next to an
    integer or bool tensor is float32, and an int next to a bool tensor is int64.
    """
    # a NumPy or CuPy 0-d array counts by its dtype's kind (np.float32 scalars are not Integral)
    integral = scalar.dtype.kind in "biu" if hasattr(scalar, "dtype") else isinstance(scalar, numbers.Integral)
    if tensor_dtype.kind != "f" and not integral:
        return backend.float32
    if tensor_dtype == bool and not isinstance(scalar, (bool, np.bool_)):  # bool + 2 -> int64
        return backend.int64
    return tensor_dtype


def operand_dtypes(a, b, true_division=False):
    """The dtypes two tensors of dtypes ``a`` and ``b`` enter a binary op with (PyTorch's promotion).

    A float wins over an integer (or bool) whatever their sizes; two floats or two integers are
    left to NumPy, which agrees with PyTorch (the wider one); ``int / int`` is float32.
    """
    a_float, b_float = a.kind == "f", b.kind == "f"
    if a_float and not b_float:
        return a, a
    if b_float and not a_float:
        return b, b
    if not a_float and true_division:
        return backend.float32, backend.float32
    return a, b


def math_dtype(dtype):
    """The dtype exp, log, sqrt, sin, ... compute in: floats keep theirs, the rest get float32."""
    return dtype if dtype.kind == "f" else backend.float32


def pow_base_dtype(base, exponent):
    """``base ** exponent`` with a number as exponent: a fractional one lifts an integer base to float32."""
    return backend.float32 if base.kind != "f" and isinstance(exponent, float) else base


def check_same_dtype(op_name, first, second, first_name, second_name):
    """Refuse mixed dtypes as PyTorch does: NumPy would quietly run the whole product in float64."""
    if first.dtype != second.dtype:
        raise TypeError(f"{op_name}: expected {first_name} and {second_name} to have the same dtype, "
                        f"got {first.dtype} and {second.dtype}")
