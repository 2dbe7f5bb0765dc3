"""The CuPy stand-in enforces CuPy's rules: each test shows NumPy behaving differently, so it
would fail if ``fake_cupy`` quietly behaved like NumPy (the rules are listed in its docstring)."""
import sys

import numpy as np
import pytest

import fake_cupy as fc
import minigrad as mg
from minigrad import backend


def device(values, dtype=np.float32):
    return fc.asarray(np.asarray(values, dtype=dtype))


# ----------------------------------------------------------------------------- the host boundary
def test_device_arrays_are_not_numpy_arrays():
    assert not isinstance(device([1.0]), np.ndarray)
    assert backend.is_cupy_array(device([1.0]))


@pytest.mark.parametrize("convert", [np.asarray, np.array, memoryview, lambda x: np.testing.assert_allclose(x, 1.0)],
                         ids=["np.asarray", "np.array", "buffer protocol", "np.testing"])
def test_implicit_conversion_to_the_host_raises(convert):
    with pytest.raises(TypeError):
        convert(device([1.0, 1.0]))


def test_get_and_asnumpy_copy_to_the_host():
    x = device([1.0, 2.0])
    host = x.get()
    assert isinstance(host, np.ndarray)
    host[0] = 9.0  # a copy: the device array keeps its value
    np.testing.assert_array_equal(fc.asnumpy(x), [1.0, 2.0])


# ----------------------------------------------------------------------------- host operands
@pytest.mark.parametrize("call", [
    lambda x: fc.add(x, np.ones(2, np.float32)),
    lambda x: x + np.ones(2, np.float32),
    lambda x: np.ones(2, np.float32) + x,
    lambda x: x * np.asarray(2.0, np.float32),             # even a 0-d host array (CuPy's _scalar.pyx)
    lambda x: fc.exp([1.0, 2.0]),                          # lists are not accepted by ufuncs either
    lambda x: fc.matmul(x, np.ones(2, np.float32)),
    lambda x: fc.concatenate([x, np.ones(2, np.float32)]),
    lambda x: fc.where(np.array([True, False]), x, x),
], ids=["ufunc", "operator", "reflected operator", "0-d host array", "list", "matmul", "concatenate", "where"])
def test_host_operands_are_rejected(call):
    with pytest.raises(TypeError, match="Unsupported type"):
        call(device([1.0, 2.0]))


def test_scalars_are_accepted_as_operands():
    x = device([1.0, 2.0])
    np.testing.assert_array_equal((x * np.float32(2) + 1).get(), [3.0, 5.0])


def test_host_data_may_be_assigned_into_a_device_array():
    x = device([1.0, 2.0])
    x[...] = np.array([5.0, 6.0])  # CuPy copies host values over in __setitem__
    np.testing.assert_array_equal(x.get(), [5.0, 6.0])


# ----------------------------------------------------------------------------- layout
def test_elementwise_outputs_are_c_contiguous_where_numpy_keeps_the_input_layout():
    host = np.ones((3, 4), np.float32).T
    assert (host + 1).flags.f_contiguous and not (host + 1).flags.c_contiguous  # NumPy keeps 'K'
    x = fc.asarray(np.ones((3, 4), np.float32)).T
    assert (x + 1).flags.c_contiguous
    assert fc.maximum(x, 0).flags.c_contiguous
    assert x.copy(order="K").flags.f_contiguous  # an explicit order is kept, as CuPy's copy does


# ----------------------------------------------------------------------------- reductions
def test_reductions_return_zero_dimensional_device_arrays():
    x = device([1.0, 2.0, 3.0])
    assert isinstance(np.sum(x.get()), np.generic)  # NumPy: a host scalar
    for result in (x.sum(), fc.sum(x), x.max(), x.argmax(), x[1]):
        assert isinstance(result, fc.ndarray) and result.ndim == 0


# ----------------------------------------------------------------------------- counting
@pytest.mark.parametrize("synchronise", [
    bool, int, float, lambda x: x.item(), lambda x: x.get(), lambda x: x.tolist(), repr,
], ids=["bool", "int", "float", "item", "get", "tolist", "repr"])
def test_each_read_back_to_the_host_counts_one_synchronisation(synchronise):
    x = device([2.0]).sum()
    with fc.counting() as counted:
        synchronise(x)
    assert counted.host_syncs == 1


def test_boolean_mask_indexing_counts_a_synchronisation():
    x = device([1.0, -1.0, 2.0])
    with fc.counting() as counted:
        positive = x[x > 0]
        x[x < 0] = 0.0
    assert counted.host_syncs == 2
    np.testing.assert_array_equal(positive.get(), [1.0, 2.0])


def test_device_work_counts_calls_but_not_syncs_and_views_count_nothing():
    x = device(np.ones((2, 3)))
    with fc.counting() as counted:
        y = (x + 1).sum(axis=0)
        x.T, x.reshape(6)[1:]  # views: no kernel
        x.T.reshape(6)  # a transposed array cannot be reshaped flat without a copy: one kernel
    assert (counted.device_calls, counted.host_syncs) == (3, 0)
    assert y.shape == (3,)


# ----------------------------------------------------------------------------- indexing
def test_out_of_bounds_integer_indices_wrap_around_as_in_cupy():
    with pytest.raises(IndexError):
        np.arange(3)[[1, 3]]
    x = fc.asarray(np.arange(3))
    np.testing.assert_array_equal(x[fc.asarray(np.array([1, 3]))].get(), [1, 0])
    x[np.array([1, 3])] = 10  # CuPy's documented example
    np.testing.assert_array_equal(x.get(), [10, 10, 2])


# ----------------------------------------------------------------------------- memory
def test_memory_hooks_see_every_allocation_and_free():
    class Peak(fc.MemoryHook):
        name = "peak"

        def __init__(self):
            self.live = self.peak = 0

        def malloc_postprocess(self, mem_size, **_):
            self.live += mem_size
            self.peak = max(self.peak, self.live)

        def free_postprocess(self, mem_size, **_):
            self.live -= mem_size

    with Peak() as hook:
        a = fc.zeros(1000, dtype=np.float32)
        b = a + 1
        del a, b
    assert hook.peak == 8000 and hook.live == 0


# ----------------------------------------------------------------------------- the backend picks it
def test_backend_loads_the_stand_in_only_when_asked_and_cupy_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # no real CuPy, whatever this machine has
    monkeypatch.setattr(backend, "_cupy", None)
    monkeypatch.delenv("MINIGRAD_FAKE_CUDA", raising=False)
    assert not mg.cuda.is_available()
    monkeypatch.setenv("MINIGRAD_FAKE_CUDA", "1")
    assert mg.cuda.is_available() and backend.xp_for("cuda:0") is fc


def test_an_op_on_a_cupy_array_made_before_minigrad_imported_cupy(monkeypatch):
    """The user's own CuPy array reaches minigrad first: ``xp_of`` must import CuPy, not return None."""
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setenv("MINIGRAD_FAKE_CUDA", "1")
    monkeypatch.setattr(backend, "_cupy", None)
    x = mg.Tensor(device([1.0, 2.0]))
    np.testing.assert_array_equal((x * 2.0).numpy(), [2.0, 4.0])
