"""Every element-wise, reduction, shape, matmul and softmax op against PyTorch.

Each test draws shapes and float64 values with Hypothesis and hands them to
``check_against_torch``: same inputs, same random upstream gradient, forward values and every
input's gradient equal to rtol 1e-10. Most ops are written once as a lambda that both
frameworks understand (``a + b``, ``x.exp()``), so the two sides cannot drift apart.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given
from hypothesis import strategies as st
import hypothesis.extra.numpy as hnp

import minigrad as mg
import minigrad.nn.functional as F

from strategies import (allow_device_fixture, away_from_zero_arrays, basic_indices, broadcastable_shape_pairs,
                        flatten_cases, float64_arrays, integer_array_indices, matmul_shape_pairs, pad_widths,
                        positive_arrays, reduction_cases, reshape_cases, small_shapes)
from torch_check import check_against_torch

# ----------------------------------------------------------------------------- element-wise
# name -> (the op, written so that minigrad and torch tensors both accept it, left values, right values)
BINARY_OPS = {
    "add": (lambda a, b: a + b, float64_arrays, float64_arrays),
    "sub": (lambda a, b: a - b, float64_arrays, float64_arrays),
    "mul": (lambda a, b: a * b, float64_arrays, float64_arrays),
    "div": (lambda a, b: a / b, float64_arrays, away_from_zero_arrays),
    "pow": (lambda a, b: a ** b, positive_arrays, float64_arrays),
}


@pytest.mark.parametrize("name", BINARY_OPS)
@allow_device_fixture
@given(data=st.data())
def test_binary_op_broadcasts_and_reduces_gradients_like_torch(name, device, data):
    op, left_values, right_values = BINARY_OPS[name]
    shape_a, shape_b = data.draw(broadcastable_shape_pairs(), label="shapes")
    a, b = data.draw(left_values(shape_a), label="a"), data.draw(right_values(shape_b), label="b")
    check_against_torch(op, op, a, b, device=device)


def test_pow_follows_torch_where_calculus_breaks_down(device):
    # 0^b with b >= 0 has d/db 0 (the limit); a^0 has d/da 0 even at a = 0; a < 0 has d/db nan.
    base, exponent = np.array([-2.0, 0.0, 0.0, 0.0, 3.0]), np.array([2.0, 2.0, 0.0, -1.0, 1.5])
    with np.errstate(divide="ignore", invalid="ignore"):
        check_against_torch(lambda a, b: a ** b, lambda a, b: a ** b, base, exponent, device=device)


# Python scalars on either side of every binary op (the tensor side is always a tensor).
SCALAR_OPS = {
    "tensor + scalar": lambda x: x + 1.5, "scalar + tensor": lambda x: 1.5 + x,
    "tensor - scalar": lambda x: x - 1.5, "scalar - tensor": lambda x: 1.5 - x,
    "tensor * scalar": lambda x: x * -2.5, "scalar * tensor": lambda x: -2.5 * x,
    "tensor / scalar": lambda x: x / 4.0, "scalar / tensor": lambda x: 4.0 / x,
    "scalar ** tensor": lambda x: 2.0 ** x, "tensor ** int": lambda x: x ** 3,
}


@pytest.mark.parametrize("name", SCALAR_OPS)
@allow_device_fixture
@given(data=st.data())
def test_binary_op_with_python_scalar_matches_torch(name, device, data):
    x = data.draw(away_from_zero_arrays(data.draw(small_shapes())), label="x")
    check_against_torch(SCALAR_OPS[name], SCALAR_OPS[name], x, device=device)


# name -> (the op for both frameworks, input values)
UNARY_OPS = {
    "neg": (lambda x: -x, float64_arrays),
    "exp": (lambda x: x.exp(), float64_arrays),
    "log": (lambda x: x.log(), positive_arrays),
    "sqrt": (lambda x: x.sqrt(), positive_arrays),
    "tanh": (lambda x: x.tanh(), float64_arrays),
    "sigmoid": (lambda x: x.sigmoid(), float64_arrays),
    "relu": (lambda x: x.relu(), float64_arrays),
    "abs": (lambda x: x.abs(), float64_arrays),
    "pow 2": (lambda x: x ** 2, float64_arrays),
    "pow 3": (lambda x: x ** 3, float64_arrays),
    "pow 1": (lambda x: x ** 1, float64_arrays),
    "pow 0": (lambda x: x ** 0, float64_arrays),
    "pow 0.5": (lambda x: x ** 0.5, positive_arrays),
    "pow 1.5": (lambda x: x ** 1.5, positive_arrays),
    "pow -1": (lambda x: x ** -1, away_from_zero_arrays),
    "pow -2": (lambda x: x ** -2, away_from_zero_arrays),
    "clip both": (lambda x: x.clamp(-1.0, 1.0), float64_arrays),
    "clip min": (lambda x: x.clamp(min=-0.5), float64_arrays),
    "clip max": (lambda x: x.clamp(max=0.5), float64_arrays),
}


@pytest.mark.parametrize("name", UNARY_OPS)
@allow_device_fixture
@given(data=st.data())
def test_unary_op_matches_torch(name, device, data):
    op, values = UNARY_OPS[name]
    x = data.draw(values(data.draw(small_shapes(), label="shape")), label="x")
    check_against_torch(op, op, x, device=device)


@allow_device_fixture
@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3), data=st.data())
def test_where_matches_torch(device, shapes, data):
    condition_shape, a_shape, b_shape = shapes.input_shapes
    condition = data.draw(hnp.arrays(np.bool_, condition_shape), label="condition")
    a, b = data.draw(float64_arrays(a_shape), label="a"), data.draw(float64_arrays(b_shape), label="b")
    check_against_torch(mg.where, torch.where, condition, a, b, device=device)


# ----------------------------------------------------------------------------- matmul
@allow_device_fixture
@given(shapes=matmul_shape_pairs(), data=st.data())
def test_matmul_matches_torch_for_vectors_matrices_and_broadcast_batches(device, shapes, data):
    a, b = (data.draw(float64_arrays(shape)) for shape in shapes)
    check_against_torch(lambda x, y: x @ y, lambda x, y: x @ y, a, b, device=device)


@allow_device_fixture
@given(data=st.data(), bias=st.booleans())
def test_linear_matches_torch(device, data, bias):
    batch_shape = data.draw(small_shapes(min_dims=0, max_dims=2), label="batch")
    in_features, out_features = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    x = data.draw(float64_arrays((*batch_shape, in_features)), label="x")
    weight = data.draw(float64_arrays((out_features, in_features)), label="weight")
    arrays = (x, weight) + ((data.draw(float64_arrays((out_features,)), label="bias"),) if bias else ())
    check_against_torch(F.linear, torch_F.linear, *arrays, device=device)


@pytest.mark.parametrize("trained", [("input",), ("weight",), ("bias",), ("input", "bias")])
@pytest.mark.parametrize("input_shape", [(5, 3), (2, 0, 3), (3,), (2, 4, 3)], ids=["2d", "empty-batch", "1d", "3d"])
def test_linear_gradients_of_only_the_inputs_that_want_them_match_torch(device, trained, input_shape):
    """One op for x W^T + b: it keeps x only when W is trained and W only when x wants a
    gradient, and each wanted gradient still equals PyTorch's (a frozen layer, a first layer)."""
    rng = np.random.default_rng(9)
    arrays = {"input": rng.standard_normal(input_shape), "weight": rng.standard_normal((2, 3)),
              "bias": rng.standard_normal(2)}
    ours = {name: mg.tensor(a, requires_grad=name in trained, device=device) for name, a in arrays.items()}
    theirs = {name: torch.tensor(a, requires_grad=name in trained) for name, a in arrays.items()}
    out, torch_out = F.linear(*ours.values()), torch_F.linear(*theirs.values())
    saved = [a for a in out.grad_fn.saved if a is not None]
    assert len(saved) == ("weight" in trained) + ("input" in trained)
    grad = rng.standard_normal(torch_out.shape)
    out.backward(mg.tensor(grad, device=device))
    torch_out.backward(torch.tensor(grad))
    np.testing.assert_allclose(out.numpy(), torch_out.detach().numpy(), rtol=1e-12, atol=1e-12)
    for name in arrays:
        if name in trained:
            np.testing.assert_allclose(ours[name].grad.numpy(), theirs[name].grad.numpy(), rtol=1e-12, atol=1e-12)
        else:
            assert ours[name].grad is None


def test_linear_notices_its_input_written_in_place_even_when_the_input_is_not_contiguous():
    """The op keeps x itself (not a reshaped copy), so an in-place write between forward and
    backward is refused as for any saved input, as PyTorch does."""
    x = mg.tensor(np.ones((3, 4)), requires_grad=False).T                 # (4, 3), not contiguous
    out = F.linear(x, mg.tensor(np.ones((2, 3)), requires_grad=True))
    x.add_(1.0)
    with pytest.raises(RuntimeError, match="input 0 of Linear"):
        out.sum().backward()


# ----------------------------------------------------------------------------- reductions
@pytest.mark.parametrize("reduction", ["sum", "mean", "amax", "amin"])
@allow_device_fixture
@given(case=reduction_cases(), data=st.data())
def test_reduction_matches_torch(reduction, device, case, data):
    shape, axis, keepdims = case
    x = data.draw(float64_arrays(shape), label="x")  # repeated values: amax's ties share the gradient
    torch_name = reduction

    def mg_fn(t):
        return getattr(t, reduction)(axis=axis, keepdims=keepdims)

    def torch_fn(t):
        if axis is None and t.ndim == 0:
            return getattr(t, torch_name)()
        # torch spells 'all axes' as an explicit tuple (dim=None is not accepted everywhere)
        return getattr(t, torch_name)(dim=tuple(range(t.ndim)) if axis is None else axis, keepdim=keepdims)

    check_against_torch(mg_fn, torch_fn, x, device=device)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@allow_device_fixture
@given(data=st.data())
def test_softmax_and_log_softmax_match_torch(name, device, data):
    shape = data.draw(small_shapes(min_dims=1), label="shape")
    dim = data.draw(st.integers(-len(shape), len(shape) - 1), label="dim")
    x = data.draw(float64_arrays(shape, -10, 10), label="x")
    check_against_torch(lambda t: getattr(t, name)(dim), lambda t: getattr(t, name)(dim), x, device=device)


def test_log_softmax_is_stable_for_huge_logits(device):
    x = np.array([[1000.0, 0.0, -1000.0], [-1e4, -1e4, -1e4]])
    out = check_against_torch(lambda t: mg.log_softmax(t, 1), lambda t: t.log_softmax(1), x, device=device)
    assert np.isfinite(out.numpy()).all()


# ----------------------------------------------------------------------------- shape ops
@allow_device_fixture
@given(case=reshape_cases(), data=st.data())
def test_reshape_matches_torch(device, case, data):
    shape, new_shape = case
    x = data.draw(float64_arrays(shape), label="x")
    check_against_torch(lambda t: t.reshape(new_shape), lambda t: t.reshape(new_shape), x, device=device)


@allow_device_fixture
@given(data=st.data())
def test_transpose_of_two_axes_matches_torch(device, data):
    shape = data.draw(small_shapes(min_dims=1, max_dims=4), label="shape")
    i, j = (data.draw(st.integers(-len(shape), len(shape) - 1)) for _ in range(2))
    x = data.draw(float64_arrays(shape), label="x")
    check_against_torch(lambda t: t.transpose(i, j), lambda t: t.transpose(i, j), x, device=device)


@allow_device_fixture
@given(data=st.data())
def test_permute_matches_torch(device, data):
    shape = data.draw(small_shapes(min_dims=1, max_dims=4), label="shape")
    order = tuple(data.draw(st.permutations(range(len(shape))), label="order"))
    x = data.draw(float64_arrays(shape), label="x")
    check_against_torch(lambda t: t.permute(*order), lambda t: t.permute(*order), x, device=device)


@allow_device_fixture
@given(case=flatten_cases(), data=st.data())
def test_flatten_matches_torch(device, case, data):
    shape, start, end = case
    x = data.draw(float64_arrays(shape), label="x")
    check_against_torch(lambda t: t.flatten(start, end), lambda t: t.flatten(start, end), x, device=device)


@allow_device_fixture
@given(data=st.data())
def test_basic_slicing_matches_torch(device, data):
    shape = data.draw(small_shapes(min_dims=1, max_dims=3), label="shape")
    index = data.draw(basic_indices(shape), label="index")
    x = data.draw(float64_arrays(shape), label="x")
    check_against_torch(lambda t: t[index], lambda t: t[index], x, device=device)


@pytest.mark.parametrize("where", ["first axis", "second axis"])
@allow_device_fixture
@given(data=st.data())
def test_integer_array_indexing_with_repeats_sums_gradients_like_torch(where, device, data):
    shape = data.draw(small_shapes(min_dims=2, max_dims=3), label="shape")
    axis = 0 if where == "first axis" else 1
    positions = data.draw(integer_array_indices(shape[axis]), label="positions")
    x = data.draw(float64_arrays(shape), label="x")
    if axis == 0:
        check_against_torch(lambda t, i: t[i], lambda t, i: t[i], x, positions, device=device)
    else:
        check_against_torch(lambda t, i: t[:, i], lambda t, i: t[:, i], x, positions, device=device)


@allow_device_fixture
@given(data=st.data())
def test_boolean_mask_indexing_matches_torch(device, data):
    shape = data.draw(small_shapes(min_dims=1, max_dims=3), label="shape")
    mask = data.draw(hnp.arrays(np.bool_, shape), label="mask")
    x = data.draw(float64_arrays(shape), label="x")
    check_against_torch(lambda t, m: t[m], lambda t, m: t[m], x, mask, device=device)


def test_a_repeated_index_receives_the_sum_of_its_gradients(device):
    x = mg.tensor(np.arange(3.0), requires_grad=True, device=device)
    x[mg.tensor(np.array([2, 0, 2, 2]), device=device)].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 0.0, 3.0])


@pytest.mark.parametrize("join", ["concatenate", "stack"])
@allow_device_fixture
@given(data=st.data())
def test_concatenate_and_stack_match_torch(join, device, data):
    shape = data.draw(small_shapes(min_dims=1, max_dims=3), label="shape")
    count = data.draw(st.integers(1, 3), label="count")
    if join == "concatenate":
        axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
        sizes = data.draw(st.lists(st.integers(1, 3), min_size=count, max_size=count), label="sizes")
        shapes = [shape[:axis % len(shape)] + (size,) + shape[axis % len(shape) + 1:] for size in sizes]
        mg_fn, torch_fn = (lambda *ts: mg.concatenate(ts, axis=axis)), (lambda *ts: torch.cat(ts, dim=axis))
    else:
        axis = data.draw(st.integers(-len(shape) - 1, len(shape)), label="axis")
        shapes = [shape] * count
        mg_fn, torch_fn = (lambda *ts: mg.stack(ts, axis=axis)), (lambda *ts: torch.stack(ts, dim=axis))
    arrays = [data.draw(float64_arrays(s)) for s in shapes]
    check_against_torch(mg_fn, torch_fn, *arrays, device=device)


@allow_device_fixture
@given(data=st.data(), value=st.sampled_from([0.0, -1.5]))
def test_constant_pad_matches_torch(device, data, value):
    shape = data.draw(small_shapes(min_dims=1, max_dims=3), label="shape")
    widths = data.draw(pad_widths(len(shape)), label="widths")
    torch_widths = tuple(size for pair in reversed(widths) for size in pair)  # last axis first
    x = data.draw(float64_arrays(shape), label="x")
    check_against_torch(lambda t: mg.pad(t, widths, value), lambda t: torch_F.pad(t, torch_widths, value=value),
                        x, device=device)


# ----------------------------------------------------------------------------- max / min as PyTorch
TIES = np.array([[1.0, 3.0, 3.0, -2.0], [2.0, 2.0, 0.0, 2.0], [-1.0, -1.0, -1.0, -1.0]])


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_and_min_along_a_dim_return_values_and_first_indices_like_torch(name, dim, keepdim, device):
    def values(t):
        return getattr(t, name)(dim=dim, keepdim=keepdim).values

    out = check_against_torch(values, values, TIES, device=device)  # gradient: to the index only
    mg_values, mg_indices = getattr(mg.tensor(TIES, device=device), name)(dim, keepdim=keepdim)
    expected = getattr(torch.tensor(TIES), name)(dim, keepdim=keepdim)
    np.testing.assert_array_equal(mg_indices.numpy(), expected.indices.numpy())
    assert mg_indices.dtype == np.int64 and out.shape == expected.values.shape


@pytest.mark.parametrize("name", ["max", "min", "amax", "amin"])
def test_max_without_a_dim_splits_the_gradient_among_ties_like_torch(name, device):
    check_against_torch(lambda t: getattr(t, name)(), lambda t: getattr(t, name)(), TIES, device=device)
    check_against_torch(lambda t: getattr(mg, name)(t), lambda t: getattr(torch, name)(t), TIES, device=device)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("dim, keepdim", [(None, False), (0, False), (1, True), (np.int64(-1), False)])
def test_argmax_and_argmin_pick_the_first_occurrence_like_torch(name, dim, keepdim):
    actual = getattr(mg.tensor(TIES), name)(dim=dim, keepdim=keepdim)
    expected = getattr(torch.tensor(TIES), name)(dim=None if dim is None else int(dim), keepdim=keepdim)
    np.testing.assert_array_equal(actual.numpy(), expected.numpy())
    np.testing.assert_array_equal(getattr(mg, name)(mg.tensor(TIES), dim, keepdim).numpy(), expected.numpy())


def test_max_of_a_0d_tensor_along_dim_0_is_itself_at_index_0(device):
    result = mg.tensor(5.0, device=device).max(0)
    expected = torch.tensor(5.0).max(0)
    assert result.values.item() == expected.values.item() and result.indices.item() == expected.indices.item()


def test_numpy_integer_axes_are_accepted_like_python_ints():
    x = np.arange(24.0).reshape(2, 3, 4)
    t, expected = mg.tensor(x), torch.tensor(x)
    axis = np.int64(1)
    np.testing.assert_array_equal(t.sum(axis=axis).numpy(), expected.sum(1).numpy())
    np.testing.assert_array_equal(t.transpose(axis, np.int64(2)).numpy(), expected.transpose(1, 2).numpy())
    np.testing.assert_array_equal(t.flatten(axis).numpy(), expected.flatten(1).numpy())
    np.testing.assert_array_equal(t.softmax(axis).numpy(), expected.softmax(1).numpy())


# ----------------------------------------------------------------------------- tails and 0-d
@pytest.mark.parametrize("dtype, tails", [
    ("float32", [-20.0, -40.0, -87.0, 20.0, 0.0]),
    ("float64", [-40.0, -700.0, 40.0, 0.0]),
])
def test_sigmoid_keeps_its_tails_instead_of_rounding_them_to_zero(dtype, tails, device):
    values = np.array(tails, dtype=dtype)
    actual = mg.tensor(values, device=device, requires_grad=True)
    expected = torch.tensor(values, requires_grad=True)
    out, torch_out = actual.sigmoid(), expected.sigmoid()
    assert out.dtype == dtype
    np.testing.assert_allclose(out.numpy(), torch_out.detach().numpy(), rtol=1e-6 if dtype == "float32" else 1e-12)
    out.sum().backward()
    torch_out.sum().backward()
    np.testing.assert_allclose(actual.grad.numpy(), expected.grad.numpy(), rtol=1e-5 if dtype == "float32" else 1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_and_log_softmax_keep_far_tails_like_torch(name, dtype, device):
    values = np.array([[0.0, -30.0, -80.0, 50.0], [1e4, -1e4, 0.0, 1e4]], dtype=dtype)
    actual = getattr(mg.tensor(values, device=device), name)(1).numpy()
    expected = getattr(torch.tensor(values), name)(1).numpy()
    np.testing.assert_allclose(actual, expected, rtol=1e-6 if dtype == "float32" else 1e-12, atol=0)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [0, -1])
def test_softmax_of_a_0d_tensor_accepts_dim_0_like_torch(name, dim, device):
    check_against_torch(lambda t: getattr(t, name)(dim), lambda t: getattr(t, name)(dim), np.array(3.0), device=device)


# ----------------------------------------------------------------------------- no float64 leaks
def test_numpy_scalars_act_like_python_numbers_and_keep_float32(device):
    x = mg.tensor(np.array([1.5, -2.0], dtype=np.float32), device=device)
    expected = torch.tensor([1.5, -2.0])
    for actual, torch_result in [(x ** np.float64(2), expected ** np.float64(2)),
                                 (x * np.float64(2), expected * np.float64(2)),
                                 (mg.tensor([1, 3]) * np.float32(2.5), torch.tensor([1, 3]) * np.float32(2.5))]:
        assert actual.dtype == torch_result.numpy().dtype
        np.testing.assert_array_equal(actual.numpy(), torch_result.numpy())


def test_an_integer_tensor_to_a_fractional_power_is_float32_like_torch():
    actual, expected = mg.tensor([1, 4, 9]) ** 0.5, torch.tensor([1, 4, 9]) ** 0.5
    assert actual.dtype == expected.numpy().dtype == np.float32
    np.testing.assert_array_equal(actual.numpy(), expected.numpy())


@pytest.mark.parametrize("factory", ["zeros", "ones", "randn"])
def test_factories_with_dtype_none_give_float32_like_torch(factory):
    assert getattr(mg, factory)(2, 3, dtype=None).dtype == np.float32
    assert getattr(torch, factory)(2, 3, dtype=None).dtype == torch.float32


def test_any_and_all_return_bool_tensors_like_torch(device):
    t = mg.tensor([0.0, 2.0], device=device)
    for name in ("any", "all"):
        result = getattr(t, name)()
        assert isinstance(result, mg.Tensor) and result.dtype == bool and result.shape == ()
        assert bool(result) == bool(getattr(torch.tensor([0.0, 2.0]), name)())
