"""The dtype table in minigrad/dtypes.py: every row checked against NumPy, PyTorch and minigrad."""
import numpy as np
import pytest
import torch

import minigrad as mg
from minigrad import dtypes


def ints(lib):
    return lib.asarray([1, 2], dtype=lib.int64) if lib is np else lib.tensor([1, 2], dtype=lib.int64)


def floats32(lib):
    return lib.asarray([1.0, 2.0], dtype=lib.float32) if lib is np else lib.tensor([1.0, 2.0], dtype=lib.float32)


def floats64(lib):
    return lib.asarray([1.0, 2.0], dtype=lib.float64) if lib is np else lib.tensor([1.0, 2.0], dtype=lib.float64)


# One computation per row of dtypes.PYTORCH_VS_NUMPY, written once for all three libraries.
CASES = {
    "python float data": lambda lib: lib.asarray([0.5]) if lib is np else lib.tensor([0.5]),
    "factory without dtype": lambda lib: lib.zeros(3),
    "int64 tensor * float32 tensor": lambda lib: ints(lib) * floats32(lib),
    "int64 tensor / int64 tensor": lambda lib: ints(lib) / ints(lib),
    "int64 tensor * python float": lambda lib: ints(lib) * 0.5,
    "int64 tensor ** python float": lambda lib: ints(lib) ** 0.5,
    "exp of an int64 tensor": lambda lib: lib.exp(ints(lib)),
    "float32 @ float64": lambda lib: floats32(lib) @ floats64(lib),
}


def dtype_name(compute, lib):
    try:
        result = compute(lib)
    except (TypeError, RuntimeError):
        return "error"
    return str(result.dtype).replace("torch.", "")


def test_the_table_has_one_checked_case_per_row():
    assert sorted(case for case, _, _ in dtypes.PYTORCH_VS_NUMPY) == sorted(CASES)


@pytest.mark.parametrize("case, numpy_gives, pytorch_gives", dtypes.PYTORCH_VS_NUMPY)
def test_each_row_is_what_numpy_and_pytorch_give_and_minigrad_follows_pytorch(case, numpy_gives, pytorch_gives):
    compute = CASES[case]
    assert dtype_name(compute, np) == numpy_gives
    assert dtype_name(compute, torch) == pytorch_gives
    assert dtype_name(compute, mg) == pytorch_gives
