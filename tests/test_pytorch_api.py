"""The PyTorch names ported programs call: method forms of the operators, shape helpers,
comparisons, in-place updates, factories, dtypes, devices, ``grad_fn`` and ``repr`` — each
against torch doing the same thing (values and gradients through ``check_against_torch``)."""
import re

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn as nn

from strategies import away_from_zero_arrays, float64_arrays, positive_arrays, small_shapes
from torch_check import check_against_torch

# ----------------------------------------------------------------------------- method forms
# name -> (the op for both frameworks, left values, right values)
METHOD_FORMS = {
    "add": (lambda a, b: a.add(b), float64_arrays, float64_arrays),
    "add alpha": (lambda a, b: a.add(b, alpha=-2.5), float64_arrays, float64_arrays),
    "sub": (lambda a, b: a.sub(b), float64_arrays, float64_arrays),
    "sub alpha": (lambda a, b: a.sub(b, alpha=3), float64_arrays, float64_arrays),
    "mul": (lambda a, b: a.mul(b), float64_arrays, float64_arrays),
    "div": (lambda a, b: a.div(b), float64_arrays, away_from_zero_arrays),
    "pow": (lambda a, b: a.pow(b), positive_arrays, float64_arrays),
}


@pytest.mark.parametrize("name", METHOD_FORMS)
@given(data=st.data())
def test_method_forms_of_binary_operators_match_torch(name, data):
    op, left, right = METHOD_FORMS[name]
    shape = data.draw(small_shapes(), label="shape")
    check_against_torch(op, op, data.draw(left(shape), label="a"), data.draw(right(shape), label="b"))


UNARY_METHODS = {
    "neg": (lambda x: x.neg(), float64_arrays),
    "pow scalar": (lambda x: x.pow(3), float64_arrays),
    "sin": (lambda x: x.sin(), float64_arrays),
    "cos": (lambda x: x.cos(), float64_arrays),
    "matmul": (lambda x: x.matmul(x.transpose(0, -1)), float64_arrays),
    "flatten": (lambda x: x.flatten(), float64_arrays),
    "unsqueeze 0": (lambda x: x.unsqueeze(0), float64_arrays),
    "unsqueeze -1": (lambda x: x.unsqueeze(-1), float64_arrays),
    "squeeze": (lambda x: x.unsqueeze(1).unsqueeze(0).squeeze(), float64_arrays),
    "squeeze dim": (lambda x: x.unsqueeze(0).squeeze(0), float64_arrays),
    "squeeze dim not 1": (lambda x: x.unsqueeze(0).squeeze(-1), float64_arrays),
    "view_as": (lambda x: x.view_as(x.reshape(-1)), float64_arrays),
}


@pytest.mark.parametrize("name", UNARY_METHODS)
@given(data=st.data())
def test_unary_methods_match_torch(name, data):
    op, values = UNARY_METHODS[name]
    x = data.draw(values(data.draw(small_shapes(min_dims=1, max_dims=2), label="shape")), label="x")
    check_against_torch(op, op, x)


FUNCTIONS = {
    "sin": (mg.sin, torch.sin),
    "cos": (mg.cos, torch.cos),
    "flatten": (mg.flatten, torch.flatten),
    "unsqueeze": (lambda x: mg.unsqueeze(x, 1), lambda x: torch.unsqueeze(x, 1)),
    "cat dim": (lambda x: mg.cat([x, 2 * x], dim=-1), lambda x: torch.cat([x, 2 * x], dim=-1)),
    "stack dim": (lambda x: mg.stack([x, x * x], dim=1), lambda x: torch.stack([x, x * x], dim=1)),
    "max dim values": (lambda x: mg.max(x, 1)[0], lambda x: torch.max(x, 1)[0]),
}


@pytest.mark.parametrize("name", FUNCTIONS)
@given(data=st.data())
def test_functions_match_torch(name, data):
    ours, theirs = FUNCTIONS[name]
    x = data.draw(float64_arrays(data.draw(small_shapes(min_dims=2, max_dims=3), label="shape")), label="x")
    check_against_torch(ours, theirs, x)


def test_sin_and_cos_of_integers_are_float32_like_torch():
    assert mg.tensor([1, 2]).sin().dtype == mg.float32 and torch.tensor([1, 2]).sin().dtype == torch.float32
    np.testing.assert_allclose(mg.cos(mg.tensor([0, 3])).numpy(), torch.cos(torch.tensor([0, 3])).numpy())


@pytest.mark.parametrize("name", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparison_methods_give_bool_tensors_like_torch(name):
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 2.0])
    ours = getattr(mg.tensor(a), name)(mg.tensor(b))
    theirs = getattr(torch.tensor(a), name)(torch.tensor(b))
    assert ours.dtype == mg.bool
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    np.testing.assert_array_equal(getattr(mg.tensor(a), name)(2.0).numpy(), getattr(torch.tensor(a), name)(2.0).numpy())


@pytest.mark.parametrize("dim", [3, -4])
def test_unsqueeze_and_squeeze_refuse_an_axis_out_of_range(dim):
    with pytest.raises(IndexError):
        torch.zeros(2, 3).unsqueeze(dim + (dim > 0))
    with pytest.raises(ValueError, match="dim: expected an axis in"):
        mg.zeros(2, 3).unsqueeze(dim + (dim > 0))
    with pytest.raises(ValueError, match="dim: expected an axis in"):
        mg.zeros(2, 3).squeeze(dim)


def test_index_lets_a_one_element_integer_tensor_index_a_list_like_torch():
    counts = [0, 0, 0]
    labels = mg.tensor([2, 0, 2])
    for i in range(3):
        counts[labels[i]] += 1
    assert counts == [1, 0, 2]
    assert [10, 20, 30][mg.tensor([[1]])] == 20
    with pytest.raises(TypeError, match="only integer tensors of a single element"):
        [1, 2][mg.tensor(1.0)]
    with pytest.raises(TypeError):
        [1, 2][torch.tensor(1.0)]


def test_argmax_and_max_dim_on_data_like_the_seed_tutorial():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5], [1.0, 1.0, 0.0]])
    ours = mg.tensor(logits, requires_grad=True) @ mg.tensor(np.eye(3))
    theirs = torch.tensor(logits, requires_grad=True) @ torch.tensor(np.eye(3))
    np.testing.assert_array_equal(ours.data.argmax(1).numpy(), theirs.data.argmax(1).numpy())
    np.testing.assert_array_equal(mg.argmax(ours.data, dim=1).numpy(), torch.argmax(theirs.data, dim=1).numpy())
    values, indices = mg.max(ours.data, 1)
    theirs_values, theirs_indices = torch.max(theirs.data, 1)
    np.testing.assert_array_equal(values.numpy(), theirs_values.numpy())
    np.testing.assert_array_equal(indices.numpy(), theirs_indices.numpy())
    assert not values.requires_grad


# ----------------------------------------------------------------------------- in place
def test_in_place_methods_write_into_shared_memory_like_torch():
    start = np.array([1.0, -2.0, 3.0])
    ours, theirs = mg.tensor(start), torch.tensor(start)
    ours_alias, theirs_alias = ours.data, theirs.data  # shares memory with the original
    for step in [lambda t: t.add_(2.0), lambda t: t.sub_(t, alpha=0.5), lambda t: t.mul_(3),
                 lambda t: t.div_(2), lambda t: t.pow_(2), lambda t: t.clamp_(max=4.0)]:
        assert step(ours) is ours and step(theirs) is theirs
        np.testing.assert_array_equal(ours_alias.numpy(), theirs_alias.numpy())
    ours += 1
    theirs += 1
    ours *= mg.tensor(start)
    theirs *= torch.tensor(start)
    ours -= 1
    theirs -= 1
    ours /= 4
    theirs /= 4
    np.testing.assert_array_equal(ours_alias.numpy(), theirs_alias.numpy())
    ours.copy_(mg.tensor([7.0, 8.0, 9.0]))
    theirs.copy_(torch.tensor([7.0, 8.0, 9.0]))
    np.testing.assert_array_equal(ours_alias.numpy(), theirs_alias.numpy())
    ours.fill_(5)
    theirs.fill_(5)
    np.testing.assert_array_equal(ours_alias.numpy(), theirs_alias.numpy())
    ours.zero_()
    assert not ours_alias.numpy().any()


def test_manual_sgd_under_no_grad_updates_the_parameter_itself_like_torch():
    # The classic from-scratch tutorial: `w -= lr * w.grad` inside no_grad, then w.grad.zero_().
    x, y = np.array([[1.0], [2.0], [3.0]]), np.array([[2.0], [4.0], [6.0]])
    results = []
    for lib in (mg, torch):
        w = lib.tensor([[0.5]], requires_grad=True, dtype=lib.float64)
        for _ in range(3):
            loss = ((lib.tensor(x) @ w - lib.tensor(y)) ** 2).mean()
            loss.backward()
            with lib.no_grad():
                w -= 0.1 * w.grad
            w.grad.zero_()
        results.append(w.detach().numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-12)


def test_in_place_on_a_leaf_that_requires_grad_raises_like_torch():
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        torch.ones(2, requires_grad=True).add_(1)
    with pytest.raises(RuntimeError, match="a leaf Variable that requires grad"):
        mg.ones(2, requires_grad=True).add_(1)


def test_in_place_on_a_graph_tensor_is_recorded_and_differentiates_like_torch():
    def program(lib, x):
        y = x * x
        y += x        # on a non-leaf: recorded in the graph
        y.mul_(2.0)
        total = lib.zeros(3, dtype=lib.float64)
        total += y    # a fresh tensor joins the graph through an in-place add
        return total

    check_against_torch(lambda x: program(mg, x), lambda x: program(torch, x), np.array([1.0, -2.0, 0.5]))


def test_in_place_refuses_what_torch_refuses():
    with pytest.raises(RuntimeError, match="can't be cast"):
        torch.tensor([1, 2]).add_(0.5)
    with pytest.raises(RuntimeError, match="result type float32 can't be cast to the desired output type int64"):
        mg.tensor([1, 2]).add_(0.5)
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        torch.zeros(3).add_(torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match=r"output with shape \(3,\) doesn't match the broadcast shape"):
        mg.zeros(3).add_(mg.zeros(2, 3))


def test_div_with_a_rounding_mode_says_minigrad_does_not_support_it():
    with pytest.raises(NotImplementedError, match="rounding_mode='floor' is not supported"):
        mg.tensor([3.0]).div(2.0, rounding_mode="floor")


# ----------------------------------------------------------------------------- graph and repr
def test_a_linear_layer_is_one_node_of_the_graph_as_torchs_addmm():
    """x W^T + b is one node (PyTorch's AddmmBackward), not a transpose, a product and an add:
    its inputs' gradients flow straight to x's node and to the two parameters."""
    layer, x = mg.nn.Linear(3, 2), mg.tensor(np.ones((4, 3), np.float32), requires_grad=True).tanh()
    node = layer(x).grad_fn
    assert node.name() == "LinearBackward"
    assert [type(fn).__name__ for fn, _ in node.next_functions] == ["Tanh", "AccumulateGrad", "AccumulateGrad"]
    assert node.next_functions[1][0].variable is layer.weight and node.next_functions[2][0].variable is layer.bias
    assert mg.nn.functional.linear(x, layer.weight).grad_fn.next_functions[1][0].variable is layer.weight


def test_grad_fn_and_next_functions_mirror_torch():
    values = np.array([1.0, 2.0])
    ours_x, theirs_x = mg.tensor(values, requires_grad=True), torch.tensor(values, requires_grad=True)
    ours_c, theirs_c = mg.tensor(values), torch.tensor(values)
    ours, theirs = ((ours_x * ours_c) + 1).exp().sum(), ((theirs_x * theirs_c) + 1).exp().sum()

    def chain(fn):  # the names along the first input's path down to the leaf
        names = []
        while fn is not None:
            names.append(fn.name().split("::")[-1].rstrip("0123456789"))
            fn = fn.next_functions[0][0] if fn.next_functions else None
        return names

    assert chain(ours.grad_fn) == chain(theirs.grad_fn) == ["SumBackward", "ExpBackward", "AddBackward",
                                                            "MulBackward", "AccumulateGrad"]
    mul_ours = ours.grad_fn.next_functions[0][0].next_functions[0][0].next_functions[0][0]
    mul_theirs = theirs.grad_fn.next_functions[0][0].next_functions[0][0].next_functions[0][0]
    assert mul_ours.next_functions[0][0].variable is ours_x
    assert mul_theirs.next_functions[0][0].variable is theirs_x
    assert mul_ours.next_functions[1] == mul_theirs.next_functions[1] == (None, 0)  # the constant
    assert ours_x.grad_fn is None and theirs_x.grad_fn is None


@pytest.mark.parametrize("make", [
    lambda lib: lib.tensor([1.0, 2.0], requires_grad=True),
    lambda lib: lib.tensor([1.0, 2.0], requires_grad=True) * 2,
    lambda lib: lib.tensor([0.1, -2.5]),
    lambda lib: lib.tensor([1, 10]),
    lambda lib: lib.tensor([True, False]),
    lambda lib: lib.tensor(3.0),
    lambda lib: lib.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=lib.float64),
    lambda lib: lib.tensor([1e-5, 1.0]),
    lambda lib: lib.tensor([float("nan"), 1.5, float("inf")]),
    lambda lib: lib.arange(30.0).reshape(3, 10) / 7,
])
def test_repr_looks_like_torch(make):
    # PyTorch numbers its nodes' overloads (MulBackward0); minigrad's nodes have one form each
    theirs = re.sub(r"Backward\d+>", "Backward>", repr(make(torch)).replace("torch.", ""))
    assert repr(make(mg)) == theirs


# ----------------------------------------------------------------------------- factories
@pytest.mark.parametrize("start, end, steps", [(0, 1, 5), (-3.3, 7.1, 11), (1, -1, 100), (2, 3, 1), (0, 1, 0)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_linspace_matches_torch(start, end, steps, dtype):
    ours = mg.linspace(start, end, steps, dtype=dtype)
    theirs = torch.linspace(start, end, steps, dtype=getattr(torch, dtype))
    assert ours.dtype == np.dtype(dtype)
    eps = np.finfo(dtype).eps  # round-off relative to the ends (values near 0 differ in absolute terms)
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=0, atol=4 * eps * max(abs(start), abs(end)))
    if steps:
        assert ours.numpy()[0] == theirs.numpy()[0] and ours.numpy()[-1] == theirs.numpy()[-1]


@pytest.mark.parametrize("fill", [3, 1.5, True])
def test_full_takes_its_dtype_from_the_value_like_torch(fill):
    ours, theirs = mg.full((2, 3), fill), torch.full((2, 3), fill)
    assert str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("name", ["zeros_like", "ones_like", "rand_like", "randn_like"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_like_factories_keep_shape_and_dtype_like_torch(name, dtype):
    ours = getattr(mg, name)(mg.zeros(2, 3, dtype=dtype))
    theirs = getattr(torch, name)(torch.zeros(2, 3, dtype=getattr(torch, dtype)))
    assert ours.shape == tuple(theirs.shape) and str(ours.dtype) == str(theirs.dtype).replace("torch.", "")
    if name in ("zeros_like", "ones_like"):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    full = mg.full_like(mg.zeros(2, dtype=dtype), 7)
    assert full.dtype == np.dtype(dtype) and (full.numpy() == 7).all()


def test_random_factories_have_torchs_shapes_dtypes_and_ranges():
    mg.manual_seed(0)
    assert mg.randn(1000, 10).shape == tuple(torch.randn(1000, 10).shape) == (1000, 10)
    uniform = mg.rand(4000)
    assert uniform.dtype == mg.float32 and 0 <= uniform.numpy().min() and uniform.numpy().max() < 1
    assert abs(uniform.numpy().mean() - 0.5) < 0.03
    labels, theirs = mg.randint(0, 2, (1000,)), torch.randint(0, 2, (1000,))
    assert labels.dtype == mg.int64 and str(theirs.dtype) == "torch.int64"
    assert set(np.unique(labels.numpy())) == {0, 1}
    assert mg.randint(5, (3, 2)).shape == (3, 2) and mg.randint(5, (3, 2)).numpy().max() < 5
    with pytest.raises(ValueError, match="expected integers low < high"):
        mg.randint(3, 3, (2,))


def test_seeded_random_factories_repeat():
    mg.manual_seed(3)
    first = (mg.randn(3).numpy(), mg.rand(3).numpy(), mg.randint(10, (3,)).numpy())
    mg.manual_seed(3)
    second = (mg.randn(3).numpy(), mg.rand(3).numpy(), mg.randint(10, (3,)).numpy())
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_from_numpy_shares_memory_and_keeps_the_dtype_like_torch():
    array = np.array([1.0, 2.0])
    ours, theirs = mg.from_numpy(array), torch.from_numpy(array)
    array[0] = 5.0
    assert ours.dtype == mg.float64 and theirs.dtype == torch.float64
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


# ----------------------------------------------------------------------------- dtypes and devices
def test_dtype_names_are_torchs():
    for name in ["float32", "float64", "int64", "int32", "long", "float", "double", "int", "bool"]:
        assert str(getattr(mg, name)) == str(getattr(torch, name)).replace("torch.", "")
    x = mg.tensor([1.7, -2.2])
    for method in ["long", "int", "float", "double", "bool"]:
        theirs = getattr(torch.tensor([1.7, -2.2]), method)()
        np.testing.assert_array_equal(getattr(x, method)().numpy(), theirs.numpy())
        assert getattr(x, method)().dtype == getattr(mg, method)


def test_device_objects_are_accepted_wherever_a_device_is():
    chosen = mg.device("cuda" if mg.cuda.is_available() else "cpu")  # the tutorials' line
    assert str(mg.device("cpu")) == str(torch.device("cpu")) == "cpu"
    assert repr(mg.device("cuda", 1)) == repr(torch.device("cuda", 1))
    assert str(mg.device("cuda:1")) == str(torch.device("cuda:1"))
    x = mg.tensor([1.0]).to(mg.device("cpu"))
    assert x.device == "cpu"
    model = nn.Linear(2, 1).to(chosen)
    assert model.weight.device == ("cuda:0" if chosen.type == "cuda" else "cpu")
    assert mg.zeros(2, device=mg.device("cpu")).device == "cpu"
    with pytest.raises(ValueError, match="device: expected 'cpu', 'cuda' or 'cuda:N'"):
        mg.device("tpu")


# ----------------------------------------------------------------------------- save and load
def test_save_and_load_a_state_dict_like_the_tutorials(tmp_path):
    # torch.save(net.state_dict(), PATH); net.load_state_dict(torch.load(PATH)), and the same for
    # the optimizer: training then continues exactly as if it had never stopped.
    inputs, targets = mg.tensor(np.random.default_rng(0).normal(size=(6, 3))), mg.tensor([0, 1, 1, 0, 1, 0])

    def make():
        mg.manual_seed(0)
        net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).to(mg.float64)
        return net, mg.optim.Adam(net.parameters(), lr=0.01)

    def train(net, optimizer, steps):
        for _ in range(steps):
            optimizer.zero_grad()
            nn.CrossEntropyLoss()(net(inputs), targets).backward()
            optimizer.step()

    straight, straight_optimizer = make()
    train(straight, straight_optimizer, 4)
    net, optimizer = make()
    train(net, optimizer, 2)
    mg.save(net.state_dict(), tmp_path / "net.pth")
    mg.save({"optimizer": optimizer.state_dict(), "note": "two steps"}, str(tmp_path / "optimizer.pth"))
    loaded = mg.load(tmp_path / "net.pth")
    assert isinstance(loaded["0.weight"], mg.Tensor) and loaded["0.weight"].dtype == mg.float64
    resumed, resumed_optimizer = make()
    resumed.load_state_dict(loaded)
    extra = mg.load(tmp_path / "optimizer.pth", map_location=mg.device("cpu"))
    assert extra["note"] == "two steps"
    resumed_optimizer.load_state_dict(extra["optimizer"])
    train(resumed, resumed_optimizer, 2)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_load_says_it_reads_minigrad_files_not_torch_pickles(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "torch.pth")
    with pytest.raises(ValueError, match="minigrad.load reads files written by minigrad.save, not PyTorch's pickles"):
        mg.load(tmp_path / "torch.pth")
    with pytest.raises(TypeError, match="checkpoint: cannot store a value of type object"):
        mg.save({"thing": object()}, tmp_path / "x.pth")
