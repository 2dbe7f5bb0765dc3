"""PyTorch's meaning of ``.data``, ``.size()`` and ``.numel()``, each checked against torch doing the
same thing; the raw backend array is ``.array``."""
import numpy as np
import pytest
import torch

import minigrad as mg


def test_data_is_a_detached_tensor_sharing_memory_like_torch():
    values = np.array([1.0, 2.0, 3.0])
    ours = mg.tensor(values, requires_grad=True)
    theirs = torch.tensor(values, requires_grad=True)
    ours_data, theirs_data = ours.data, theirs.data
    assert isinstance(ours_data, mg.Tensor)
    assert ours_data.requires_grad == theirs_data.requires_grad is False
    assert ours_data.is_leaf and theirs_data.is_leaf
    ours_data.array[0] = 10.0  # an in-place write through .data shows in the original, as in torch
    theirs_data[0] = 10.0
    np.testing.assert_array_equal(ours.numpy(), theirs.detach().numpy())


def test_gradient_does_not_flow_through_data():
    ours = mg.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    theirs = torch.tensor([1.0, 2.0], requires_grad=True, dtype=torch.float64)
    (ours * ours.data).sum().backward()
    (theirs * theirs.data).sum().backward()
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())  # d/dx of x*c is c, not 2x


def test_max_over_outputs_data_works_like_the_seed_tutorial():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]])
    ours = mg.tensor(logits, requires_grad=True) * 2
    theirs = torch.tensor(logits, requires_grad=True) * 2
    _, ours_predicted = ours.data.max(dim=1)
    _, theirs_predicted = torch.max(theirs.data, 1)
    np.testing.assert_array_equal(ours_predicted.numpy(), theirs_predicted.numpy())


def test_assigning_data_replaces_the_values_outside_the_graph():
    ours = mg.tensor([1.0, 2.0], requires_grad=True)
    ours.data = mg.tensor([5.0, 6.0])
    np.testing.assert_array_equal(ours.numpy(), [5.0, 6.0])
    assert ours.requires_grad
    with pytest.raises(TypeError, match="data: expected a Tensor, got ndarray"):
        ours.data = np.zeros(2)


def test_array_is_the_backend_array_itself():
    ours = mg.zeros(2, 3)
    assert isinstance(ours.array, np.ndarray) and ours.array.shape == (2, 3)
    ours.array[1, 2] = 7
    assert ours.numpy()[1, 2] == 7


@pytest.mark.parametrize("shape", [(), (4,), (2, 3, 5)])
def test_size_is_the_shape_and_numel_the_count_like_torch(shape):
    ours, theirs = mg.zeros(shape), torch.zeros(shape)
    assert tuple(ours.size()) == tuple(theirs.size()) == shape
    assert ours.numel() == theirs.numel()
    for dim in range(-len(shape), len(shape)):
        assert ours.size(dim) == theirs.size(dim)


@pytest.mark.parametrize("shape, dim", [((), 0), ((2, 3), 2), ((2, 3), -3)])
def test_size_of_a_dim_out_of_range_raises_index_error_like_torch(shape, dim):
    with pytest.raises(IndexError):
        torch.zeros(shape).size(dim)
    with pytest.raises(IndexError, match=f"size: dim {dim} is out of range"):
        mg.zeros(shape).size(dim)
