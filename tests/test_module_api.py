"""PyTorch API that ported code relies on: load_state_dict(strict=False)'s report, zero_grad's
set_to_none, step(closure), ModuleList, Identity, Softmax/LogSoftmax, Sequential slicing and
append, and ``del`` unregistering. Each is checked against torch doing the same thing."""
import contextlib
from collections import OrderedDict

import numpy as np
import pytest
import torch

import minigrad as mg
import minigrad.nn as nn
from minigrad import memory, optim

from torch_check import check_against_torch


def mlp(framework, hidden=5):
    return framework.Sequential(framework.Linear(3, hidden), framework.ReLU(), framework.Linear(hidden, 2))


def copy_weights(model, twin):
    """twin (torch, float64) gets model's parameters, by name."""
    twin.double()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            twin.get_parameter(name).copy_(torch.from_numpy(parameter.numpy()))


# ----------------------------------------------------------------------------- load_state_dict
def test_load_state_dict_non_strict_reports_missing_and_unexpected_keys_like_torch():
    model, twin = mlp(nn), mlp(torch.nn)
    state = {name: value.numpy() + 1 for name, value in model.state_dict().items()}
    del state["2.bias"]
    state["7.weight"] = np.zeros(3)
    result = model.load_state_dict(state, strict=False)
    expected = twin.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}, strict=False)
    assert (result.missing_keys, result.unexpected_keys) == (expected.missing_keys, expected.unexpected_keys)
    assert result == (["2.bias"], ["7.weight"])
    np.testing.assert_array_equal(model[0].weight.numpy(), state["0.weight"])  # the present keys loaded


def test_load_state_dict_strict_returns_empty_keys_and_shapes_are_checked_even_when_not_strict():
    model = mlp(nn)
    result = model.load_state_dict(model.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == [] and isinstance(result, tuple)
    bad = {name: value.numpy() for name, value in model.state_dict().items()}
    bad["2.weight"] = np.zeros((2, 6))
    with pytest.raises(ValueError, match=r"parameter '2\.weight': expected shape \(2, 5\), got \(2, 6\)"):
        model.load_state_dict(bad, strict=False)


# ----------------------------------------------------------------------------- zero_grad, step
def loss_of(model, inputs):
    return (model(inputs) ** 2).sum()


@pytest.mark.parametrize("owner", ["module", "optimizer"])
def test_zero_grad_without_set_to_none_zeroes_the_same_gradient_in_place_like_torch(owner, device):
    model = mlp(nn).to(mg.float64).to(device)
    twin = mlp(torch.nn)
    copy_weights(model, twin)
    inputs = np.random.default_rng(0).standard_normal((4, 3))
    loss_of(model, mg.tensor(inputs, device=device)).backward()
    loss_of(twin, torch.from_numpy(inputs)).backward()
    grads_before = [p.grad for p in model.parameters()]
    clearer = model if owner == "module" else optim.SGD(model.parameters(), lr=0.1)
    clearer.zero_grad(set_to_none=False)
    twin.zero_grad(set_to_none=False)
    for grad, parameter, torch_parameter in zip(grads_before, model.parameters(), twin.parameters()):
        assert parameter.grad is grad
        np.testing.assert_array_equal(parameter.grad.numpy(), torch_parameter.grad.numpy())
        assert not parameter.grad.numpy().any()
    clearer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name, config", [("SGD", dict(lr=0.1, momentum=0.9)), ("Adam", dict(lr=0.05))])
def test_step_with_a_closure_returns_its_loss_and_follows_torch(name, config, device):
    model = mlp(nn).to(mg.float64).to(device)
    twin = mlp(torch.nn)
    copy_weights(model, twin)
    optimizer, torch_optimizer = getattr(optim, name)(model.parameters(), **config), \
        getattr(torch.optim, name)(twin.parameters(), **config)
    inputs = np.random.default_rng(1).standard_normal((4, 3))

    def closure():
        optimizer.zero_grad()
        loss = loss_of(model, mg.tensor(inputs, device=device))
        loss.backward()
        return loss

    def torch_closure():
        torch_optimizer.zero_grad()
        loss = loss_of(twin, torch.from_numpy(inputs))
        loss.backward()
        return loss

    for _ in range(3):
        loss, torch_loss = optimizer.step(closure), torch_optimizer.step(torch_closure)
        assert loss.item() == pytest.approx(torch_loss.item(), rel=1e-10)
    for parameter, torch_parameter in zip(model.parameters(), twin.parameters()):
        np.testing.assert_allclose(parameter.numpy(), torch_parameter.detach().numpy(), rtol=1e-10, atol=1e-13)
    assert optimizer.step() is None


# ----------------------------------------------------------------------------- containers and layers
def tower(framework):
    """The same small model in minigrad or torch: a ModuleList of Linears with an Identity between."""
    class Tower(framework.Module):
        def __init__(self):
            super().__init__()
            self.blocks = framework.ModuleList([framework.Linear(3, 3) for _ in range(2)])
            self.blocks.append(framework.Linear(3, 2))
            self.skip = framework.Identity()

        def forward(self, x):
            for block in self.blocks:
                x = block(self.skip(x))
            return x
    return Tower()


def test_module_list_registers_its_modules_like_torch(device):
    model, twin = tower(nn), tower(torch.nn)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in twin.named_parameters()]
    assert len(model.blocks) == 3 and isinstance(model.blocks[1:], nn.ModuleList)
    assert [id(m) for m in model.blocks[1:]] == [id(model.blocks[1]), id(model.blocks[2])]
    model.to(mg.float64).to(device)
    copy_weights(model, twin)
    check_against_torch(model, twin, np.random.default_rng(2).standard_normal((4, 3)), device=device)
    model.blocks[0] = nn.Linear(3, 3)
    assert model.blocks[0].weight is next(model.parameters())
    with pytest.raises(TypeError, match="module: expected a Module, got int"):
        model.blocks.append(3)


@pytest.mark.parametrize("layer", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("dim, shape", [(0, (3, 4)), (1, (3, 4)), (-1, (2, 3, 4)), (None, (3, 4)), (None, (2, 3, 4))])
def test_softmax_layers_match_torch(layer, dim, shape, device):
    x = np.random.default_rng(3).standard_normal(shape)
    with pytest.warns(UserWarning) if dim is None else contextlib.nullcontext():  # torch warns: implicit dim
        check_against_torch(getattr(nn, layer)(dim), getattr(torch.nn, layer)(dim), x, device=device)


def test_sequential_slice_is_a_sequential_keeping_names_like_torch(device):
    model, twin = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.Linear(4, 2)), \
        torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    part, torch_part = model[1:3], twin[1:3]
    assert isinstance(part, nn.Sequential) and len(part) == 2
    assert list(part.state_dict()) == list(torch_part.state_dict()) == ["2.weight", "2.bias"]
    assert part[1] is model[2]
    model.append(nn.ReLU())
    twin.append(torch.nn.ReLU())
    assert len(model) == 5 and repr(model) == repr(twin)
    model.to(mg.float64).to(device)
    copy_weights(model, twin)
    check_against_torch(model, twin, np.random.default_rng(4).standard_normal((2, 3)), device=device)


def test_sequential_from_an_ordered_dict_uses_its_names_like_torch():
    layers = OrderedDict(features=nn.Linear(3, 4), act=nn.ReLU(), head=nn.Linear(4, 2))
    torch_layers = OrderedDict(features=torch.nn.Linear(3, 4), act=torch.nn.ReLU(), head=torch.nn.Linear(4, 2))
    assert list(nn.Sequential(layers).state_dict()) == list(torch.nn.Sequential(torch_layers).state_dict())


def test_deleting_an_attribute_unregisters_it_like_torch():
    model, twin = tower(nn), tower(torch.nn)
    model.scale = nn.Parameter(mg.ones(2))
    twin.scale = torch.nn.Parameter(torch.ones(2))
    model.register_buffer("counts", mg.zeros(2))
    twin.register_buffer("counts", torch.zeros(2))
    for name in ("scale", "counts", "skip"):
        delattr(model, name)
        delattr(twin, name)
        assert not hasattr(model, name)
    assert list(model.state_dict()) == list(twin.state_dict())
    assert "skip" not in dict(model.named_modules()) and "counts" not in dict(model.named_buffers())


def test_memory_predicts_a_same_padded_conv_output_shape_like_torch():
    layer, twin = nn.Conv2d(2, 3, (4, 3), padding="same", dilation=(1, 2)), \
        torch.nn.Conv2d(2, 3, (4, 3), padding="same", dilation=(1, 2))
    expected = tuple(twin(torch.zeros(1, 2, 7, 6)).shape)
    assert memory.layer_output_shape(layer, (1, 2, 7, 6)) == expected
