"""The graph walk itself: reuse, no_grad, detach, accumulation, deep graphs, freed memory, dtypes."""
import gc
import weakref

import numpy as np
import pytest
import torch

import minigrad as mg
import minigrad.nn as nn

from torch_check import check_against_torch


def test_a_tensor_used_several_times_sums_the_gradients_of_each_use(device):
    x = np.array([0.5, -1.0, 2.0])

    def diamond(t):  # x feeds several branches that meet again in one output
        cube = t * t * t
        return t * t + t + cube.exp() + t.exp() / (t * t + 1)

    check_against_torch(diamond, diamond, x, device=device)
    leaf = mg.tensor(x, requires_grad=True, device=device)
    (leaf * leaf + leaf).sum().backward()
    np.testing.assert_allclose(leaf.grad.numpy(), 2 * x + 1, rtol=1e-15)


def test_no_grad_records_no_graph(device):
    x = mg.tensor(np.ones(3), requires_grad=True, device=device)
    with mg.no_grad():
        y = (x * 2).exp().sum()
    assert not y.requires_grad and y._fn is None
    assert mg.is_grad_enabled()  # restored on exit
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_no_grad_is_restored_after_an_exception():
    with pytest.raises(ZeroDivisionError):
        with mg.no_grad():
            1 / 0
    assert mg.is_grad_enabled()


def test_detach_stops_the_gradient(device):
    x = mg.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True, device=device)
    frozen = x.detach()
    assert not frozen.requires_grad and frozen._fn is None
    (frozen * x).sum().backward()  # d/dx (c * x) with c a constant copy of x: c, not 2x
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0, 3.0])


def test_two_backward_calls_add_into_grad(device):
    x = mg.tensor(np.array([1.0, -2.0]), requires_grad=True, device=device)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), 3 + 2 * np.array([1.0, -2.0]))


def test_accumulated_grads_do_not_share_memory_between_tensors(device):
    a = mg.tensor(np.ones(2), requires_grad=True, device=device)
    b = mg.tensor(np.ones(2), requires_grad=True, device=device)
    (a + b).sum().backward()  # Add hands the same array to both inputs
    a.grad.array += 10
    np.testing.assert_array_equal(b.grad.numpy(), [1.0, 1.0])


def test_a_ten_thousand_op_chain_backpropagates_without_recursion_error(device):
    x = mg.tensor(np.array([1.0]), requires_grad=True, device=device)
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [1.0001 ** 10_000], rtol=1e-10)


def test_backward_frees_saved_arrays_and_a_second_walk_needs_retain_graph(device):
    x = mg.tensor(np.array([1.0, 2.0]), requires_grad=True, device=device)
    doubled, tripled = x * 2, x * 3
    product = doubled * tripled
    loss = product.sum()
    fn = product._fn
    saved_refs = [weakref.ref(array) for array in fn.saved]
    assert len(saved_refs) == 2
    del doubled, tripled  # now only the graph holds the intermediate arrays
    loss.backward()
    gc.collect()
    assert fn.released and fn.saved == () and fn.parents == ()
    assert all(ref() is None for ref in saved_refs), "saved activations outlived backward"
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        loss.backward()


def test_retain_graph_allows_a_second_backward_that_accumulates(device):
    x = mg.tensor(np.array([1.0, 2.0]), requires_grad=True, device=device)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), 2 * 2 * np.array([1.0, 2.0]))


def test_backward_of_a_non_scalar_needs_an_explicit_grad():
    x = mg.tensor(np.ones(3), requires_grad=True)
    with pytest.raises(RuntimeError, match=r"shape \(3,\)"):
        (x * 2).backward()


# ----------------------------------------------------------------------------- dtypes
SCALAR_EXPRESSIONS = {
    "t + s": lambda t: t + 0.1, "s + t": lambda t: 0.1 + t, "t - s": lambda t: t - 0.1, "s - t": lambda t: 0.1 - t,
    "t * s": lambda t: t * 0.1, "s * t": lambda t: 0.1 * t, "t / s": lambda t: t / 0.1, "s / t": lambda t: 0.1 / t,
    "t ** s": lambda t: t ** 0.5, "s ** t": lambda t: 0.5 ** t, "t * int": lambda t: t * 3,
    "int - t": lambda t: 3 - t,
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("expression", SCALAR_EXPRESSIONS)
def test_a_python_scalar_never_changes_the_tensor_dtype(device, dtype, expression):
    x = mg.tensor(np.array([1.0, 2.0]), dtype=dtype, requires_grad=True, device=device)
    out = SCALAR_EXPRESSIONS[expression](x)
    assert out.dtype == np.dtype(dtype)
    assert torch.tensor([1.0, 2.0], dtype=getattr(torch, dtype)).dtype == SCALAR_EXPRESSIONS[expression](
        torch.tensor([1.0, 2.0], dtype=getattr(torch, dtype))).dtype  # the rule is PyTorch's
    out.sum().backward()
    assert x.grad.dtype == np.dtype(dtype)


def test_python_floats_default_to_float32_and_ints_to_int64():
    assert mg.tensor(1.5).dtype == np.float32
    assert mg.tensor([[1.0, 2.0]]).dtype == np.float32
    assert mg.tensor([1, 2]).dtype == np.int64
    assert mg.tensor(np.zeros(2)).dtype == np.float64  # an explicit float64 array keeps its dtype
    assert mg.randn(2, 2).dtype == mg.zeros(2).dtype == mg.ones(1).dtype == np.float32


def test_ops_keep_float32_end_to_end():
    x = mg.randn(2, 3, requires_grad=True)
    out = (x.sigmoid() * 0.5 + x.tanh() - x.exp() / 3).softmax(1).log_softmax(1).mean()
    assert out.dtype == np.float32
    out.backward()
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("reduction", ["sum", "mean", "amax", "amin"])
def test_dim_and_keepdim_are_aliases_of_axis_and_keepdims(reduction):
    values = np.random.default_rng(0).standard_normal((2, 3, 4))
    x = mg.tensor(values)
    torch_name = reduction
    aliased = getattr(x, reduction)(dim=1, keepdim=True)
    expected = getattr(torch.tensor(values), torch_name)(dim=1, keepdim=True).numpy()
    np.testing.assert_allclose(aliased.numpy(), expected, rtol=1e-15)
    np.testing.assert_array_equal(aliased.numpy(), getattr(x, reduction)(axis=1, keepdims=True).numpy())
    assert getattr(mg, reduction)(x, dim=(0, 2)).shape == (3,)
    with pytest.raises(TypeError, match="either axis= or dim="):
        getattr(x, reduction)(axis=1, dim=1)


def test_a_float32_network_and_its_losses_stay_float32_through_backward():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.MaxPool2d(2, stride=1),
                          nn.Flatten(), nn.Dropout(0.3), nn.Linear(2, 3))
    out = model(mg.randn(4, 1, 4, 4))
    losses = [nn.CrossEntropyLoss(label_smoothing=0.1)(out, mg.tensor(np.array([0, 1, 2, 1]))),
              nn.MSELoss()(out, mg.zeros(4, 3))]
    for loss in losses:
        assert loss.dtype == np.float32
        loss.backward(retain_graph=True)  # both losses share the network's graph
    assert all(parameter.grad.dtype == np.float32 for parameter in model.parameters())


@pytest.mark.parametrize("left, right", [
    (np.array([1, 2], dtype=np.int64), 0.5),
    (np.array([1, 2], dtype=np.int64), 2),
    (np.array([1.0, 2.0], dtype=np.float32), np.array([1, 2], dtype=np.int64)),
    (np.array([1, 2], dtype=np.int64), np.array([1.0, 2.0], dtype=np.float64)),
    (np.array([1.0, 2.0], dtype=np.float32), np.array([1.0, 2.0], dtype=np.float64)),
])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "truediv"])
def test_binary_ops_promote_dtypes_as_pytorch_does(left, right, op):
    """A float tensor wins over an integer one whatever their sizes; int / int gives float32."""
    import operator

    def wrap(value, make):
        return make(value) if isinstance(value, np.ndarray) else value

    apply = getattr(operator, op)
    ours = apply(wrap(left, mg.tensor), wrap(right, mg.tensor))
    theirs = apply(wrap(left, torch.tensor), wrap(right, torch.tensor))
    assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-7)


@pytest.mark.parametrize("scalar", [2, 2.5, True])
@pytest.mark.parametrize("op", ["add", "mul"])
def test_bool_tensor_with_a_python_scalar_promotes_as_pytorch_does(scalar, op):
    """bool + 2 is int64 and bool + 2.5 is float32 (the scalar must not be cast to bool)."""
    import operator

    ours = getattr(operator, op)(mg.tensor([True, False]), scalar)
    theirs = getattr(operator, op)(torch.tensor([True, False]), scalar)
    assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
    assert ours.tolist() == theirs.tolist()
