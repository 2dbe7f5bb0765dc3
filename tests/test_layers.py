"""Layers against their torch.nn twins (weights copied over, forward and every parameter gradient),
dropout's statistics, and Module's bookkeeping: parameter order, state_dict, train/eval, to, init."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F

from strategies import allow_device_fixture, conv_shapes, float64_arrays, pool_configs, small_shapes
from torch_check import assert_close, check_against_torch


def check_module_against_torch(mg_module, torch_module, *arrays, device):
    """Copy minigrad's parameters into the torch module (float64), run both on the same inputs and
    upstream gradient, then compare outputs, input gradients and every parameter's gradient by name."""
    mg_module.to("float64").to(device)
    torch_module.double()
    mg_names = [name for name, _ in mg_module.named_parameters()]
    assert mg_names == [name for name, _ in torch_module.named_parameters()], "parameter names and order"
    with torch.no_grad():
        for name, parameter in mg_module.named_parameters():
            torch_module.get_parameter(name).copy_(torch.tensor(parameter.numpy()))
    check_against_torch(mg_module, torch_module, *arrays, device=device)
    torch_parameters = dict(torch_module.named_parameters())
    for name, parameter in mg_module.named_parameters():
        assert_close(parameter.grad.numpy(), torch_parameters[name].grad.numpy(), f"gradient of {name}")


@allow_device_fixture
@given(data=st.data(), bias=st.booleans())
def test_linear_layer_matches_torch(device, data, bias):
    in_features, out_features = data.draw(st.integers(1, 5)), data.draw(st.integers(1, 5))
    x = data.draw(float64_arrays((data.draw(st.integers(1, 4)), in_features)), label="x")
    check_module_against_torch(nn.Linear(in_features, out_features, bias=bias),
                               torch.nn.Linear(in_features, out_features, bias=bias), x, device=device)


@allow_device_fixture
@given(config=conv_shapes(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_layer_matches_torch(device, config, seed):
    geometry = dict(kernel_size=config["kernel"], stride=config["stride"], padding=config["padding"],
                    dilation=config["dilation"], groups=config["groups"], bias=config["bias"])
    x = np.random.default_rng(seed).standard_normal(
        (config["batch"], config["in_channels"], config["height"], config["width"]))
    check_module_against_torch(nn.Conv2d(config["in_channels"], config["out_channels"], **geometry),
                               torch.nn.Conv2d(config["in_channels"], config["out_channels"], **geometry),
                               x, device=device)


@pytest.mark.parametrize("layer", ["MaxPool2d", "AvgPool2d"])
@allow_device_fixture
@given(config=pool_configs(), data=st.data())
def test_pooling_layers_match_torch(layer, device, config, data):
    x = data.draw(float64_arrays((config["batch"], config["channels"], config["height"], config["width"])))
    geometry = dict(kernel_size=config["kernel"], stride=config["stride"], padding=config["padding"])
    check_module_against_torch(getattr(nn, layer)(**geometry), getattr(torch.nn, layer)(**geometry), x,
                               device=device)


@pytest.mark.parametrize("layer", ["ReLU", "Flatten", "Dropout"])  # Dropout in eval mode is the identity
@allow_device_fixture
@given(data=st.data())
def test_parameterless_layers_match_torch(layer, device, data):
    x = data.draw(float64_arrays(data.draw(small_shapes(min_dims=2, max_dims=4))), label="x")
    check_module_against_torch(getattr(nn, layer)().eval(), getattr(torch.nn, layer)().eval(), x, device=device)


def small_lenet(framework):
    """The same tiny conv net in either framework: conv, relu, pool, flatten, linear, relu, linear."""
    return framework.Sequential(framework.Conv2d(1, 3, 3, padding=1), framework.ReLU(), framework.MaxPool2d(2),
                                framework.Flatten(), framework.Linear(3 * 3 * 3, 5), framework.ReLU(),
                                framework.Linear(5, 4))


def test_sequential_network_matches_torch(device):
    x = np.random.default_rng(0).standard_normal((2, 1, 6, 6))
    check_module_against_torch(small_lenet(nn), small_lenet(torch.nn), x, device=device)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_cross_entropy_loss_layer_matches_torch(device, reduction):
    rng = np.random.default_rng(1)
    logits, target = rng.standard_normal((5, 3)), np.array([0, 2, 1, -1, 2])
    weight = np.array([0.2, 1.0, 3.0])
    options = dict(ignore_index=-1, reduction=reduction, label_smoothing=0.2)
    criterion = nn.CrossEntropyLoss(weight=mg.tensor(weight, device=device), **options)
    check_module_against_torch(criterion, torch.nn.CrossEntropyLoss(weight=torch.tensor(weight), **options),
                               logits, target, device=device)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_mse_loss_layer_matches_torch(device, reduction):
    rng = np.random.default_rng(2)
    prediction, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    check_module_against_torch(nn.MSELoss(reduction), torch.nn.MSELoss(reduction=reduction), prediction, target,
                               device=device)


# ----------------------------------------------------------------------------- dropout
def test_dropout_with_p_zero_or_in_eval_mode_is_the_identity(device):
    x = np.random.default_rng(3).standard_normal((4, 5))
    check_against_torch(lambda t: F.dropout(t, 0.0, training=True),
                        lambda t: torch.nn.functional.dropout(t, 0.0, training=True), x, device=device)
    check_against_torch(lambda t: F.dropout(t, 0.5, training=False),
                        lambda t: torch.nn.functional.dropout(t, 0.5, training=False), x, device=device)
    layer = nn.Dropout(0.9).eval()
    np.testing.assert_array_equal(layer(mg.tensor(x, device=device)).numpy(), x)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_dropout_zeroes_a_fraction_p_and_scales_survivors_by_one_over_one_minus_p(device, p):
    mg.manual_seed(0)
    out = F.dropout(mg.ones(200, 500, dtype="float64", device=device), p, training=True).numpy()
    dropped = (out == 0).mean()
    five_sigma = 5 * math.sqrt(p * (1 - p) / out.size)  # binomial spread of the dropped fraction
    assert abs(dropped - p) < five_sigma
    np.testing.assert_allclose(out[out != 0], 1 / (1 - p), rtol=1e-15)


def test_dropout_keeps_float32():
    assert F.dropout(mg.ones(10, 10), 0.5, training=True).dtype == mg.float32


def test_dropout_gradient_is_the_mask_times_the_scale(device):
    p = 0.4
    rng = np.random.default_rng(4)
    x_values = rng.uniform(0.5, 2.0, (30, 40))  # no zeros: out == 0 exactly where dropped
    x = mg.tensor(x_values, requires_grad=True, device=device)
    out = F.dropout(x, p, training=True)
    grad_out = rng.standard_normal(x_values.shape)
    out.backward(mg.tensor(grad_out, device=device))
    kept = out.numpy() != 0
    assert 0 < kept.mean() < 1
    np.testing.assert_allclose(out.numpy(), x_values * kept / (1 - p), rtol=1e-15)
    np.testing.assert_allclose(x.grad.numpy(), grad_out * kept / (1 - p), rtol=1e-15)


def test_dropout_with_p_one_drops_everything(device):
    x = mg.tensor(np.ones((3, 3)), requires_grad=True, device=device)
    out = F.dropout(x, 1.0, training=True)
    out.sum().backward()
    np.testing.assert_array_equal(out.numpy(), np.zeros((3, 3)))
    np.testing.assert_array_equal(x.grad.numpy(), np.zeros((3, 3)))


def test_seeded_dropout_masks_repeat():
    masks = []
    for _ in range(2):
        mg.manual_seed(7)
        masks.append(F.dropout(mg.ones(8, 8), 0.5).numpy())
    np.testing.assert_array_equal(masks[0], masks[1])


# ----------------------------------------------------------------------------- Module bookkeeping
class TwoBranches(nn.Module):
    """Attributes assigned out of alphabetical order, a nested Sequential and a shared layer."""

    def __init__(self):
        super().__init__()
        self.zeta = nn.Linear(2, 3)
        self.alpha = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
        self.shared = self.zeta

    def forward(self, x):
        return self.alpha(self.zeta(x))


def test_named_parameters_follow_registration_order_like_torch():
    names = [name for name, _ in TwoBranches().named_parameters()]
    assert names == ["zeta.weight", "zeta.bias", "alpha.0.weight", "alpha.0.bias", "alpha.2.weight", "alpha.2.bias"]
    torch_model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in torch_model.named_parameters()]
    assert list(model.state_dict()) == list(torch_model.state_dict())


def test_state_dict_round_trip_copies_every_value():
    mg.manual_seed(0)
    source = small_lenet(nn)
    mg.manual_seed(1)
    target = small_lenet(nn)
    target.load_state_dict(source.state_dict())
    for (name, theirs), (_, ours) in zip(source.state_dict().items(), target.state_dict().items()):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy(), err_msg=name)
    x = mg.randn(2, 1, 6, 6)
    np.testing.assert_array_equal(target(x).numpy(), source(x).numpy())


def snapshot(model):
    return {name: value.numpy().copy() for name, value in model.state_dict().items()}


def assert_unchanged(model, before):
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), before[name], err_msg=f"{name} changed by a failed load")


def test_load_state_dict_with_a_missing_key_names_it_and_changes_nothing():
    model = small_lenet(nn)
    before = snapshot(model)
    state = {name: value.numpy() + 1 for name, value in model.state_dict().items()}
    del state["4.bias"]
    with pytest.raises(ValueError, match=r"parameter '4\.bias' of the model is missing from the state_dict "
                                         r"\(missing: \['4\.bias'\]"):
        model.load_state_dict(state)
    assert_unchanged(model, before)


def test_load_state_dict_with_an_unexpected_key_names_it_and_changes_nothing():
    model = small_lenet(nn)
    before = snapshot(model)
    state = {name: value.numpy() + 1 for name, value in model.state_dict().items()}
    state["9.weight"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"parameter '9\.weight' in the state_dict does not exist in the model"):
        model.load_state_dict(state)
    assert_unchanged(model, before)


def test_load_state_dict_with_a_misshaped_tensor_names_key_and_shapes_and_changes_nothing():
    model = small_lenet(nn)
    before = snapshot(model)
    state = {name: value.numpy() + 1 for name, value in model.state_dict().items()}
    state["6.weight"] = np.zeros((4, 6))  # the last layer: every earlier key would load fine
    with pytest.raises(ValueError, match=r"6\.weight.*expected shape \(4, 5\), got \(4, 6\)"):
        model.load_state_dict(state)
    assert_unchanged(model, before)


def test_train_and_eval_reach_every_submodule():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.Dropout(0.5), nn.ReLU()))
    assert all(module.training for module in model.modules())
    model.eval()
    assert not any(module.training for module in model.modules())
    x = mg.ones(3, 4)
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())  # no dropout in eval
    model.train()
    assert all(module.training for module in model.modules())


def test_zero_grad_forgets_every_gradient():
    model = small_lenet(nn)
    model(mg.randn(2, 1, 6, 6)).sum().backward()
    assert all(parameter.grad is not None for parameter in model.parameters())
    model.zero_grad()
    assert all(parameter.grad is None for parameter in model.parameters())


def test_to_float64_casts_in_place_and_keeps_each_parameter_object():
    model = small_lenet(nn)
    parameters = list(model.parameters())
    values = [parameter.numpy().astype(np.float64) for parameter in parameters]
    assert model.to("float64") is model
    assert [id(p) for p in model.parameters()] == [id(p) for p in parameters]
    for parameter, value in zip(model.parameters(), values):
        assert parameter.dtype == np.float64
        np.testing.assert_array_equal(parameter.numpy(), value)
    assert model(mg.randn(1, 1, 6, 6, dtype="float64")).dtype == np.float64


def test_layers_default_to_float32():
    assert all(parameter.dtype == np.float32 for parameter in small_lenet(nn).parameters())


@pytest.mark.parametrize("make_layer, fan_in", [
    (lambda framework: framework.Linear(400, 300), 400),
    (lambda framework: framework.Conv2d(16, 300, 3, groups=2), 8 * 3 * 3),
])
def test_default_init_is_kaiming_uniform_bounded_by_one_over_sqrt_fan_in_like_torch(make_layer, fan_in):
    bound = 1 / math.sqrt(fan_in)  # Kaiming-uniform with a = sqrt(5): gain*sqrt(3/fan_in) = 1/sqrt(fan_in)
    mg.manual_seed(0)
    torch.manual_seed(0)  # torch's draw too, so the test is repeatable
    layer, torch_layer = make_layer(nn), make_layer(torch.nn)
    for name in ("weight", "bias"):
        ours = getattr(layer, name).numpy().astype(np.float64)
        theirs = getattr(torch_layer, name).detach().numpy().astype(np.float64)
        # the bound is PyTorch's, not just ours (float32 may round a draw at the edge just past it)
        assert np.abs(theirs).max() <= bound * (1 + 1e-6)
        assert np.abs(ours).max() <= bound * (1 + 1e-6)
        assert np.abs(ours).max() > 0.95 * bound  # hundreds of draws: the extremes reach the bound
        # U(-b, b) has mean 0 and variance b^2/3; allow 5 standard errors.
        count = ours.size
        assert abs(ours.mean()) < 5 * bound / math.sqrt(3 * count)
        assert abs(ours.var() - bound ** 2 / 3) < 5 * bound ** 2 * math.sqrt(4 / 45 / count)


@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("kernel_size, dilation", [(3, 1), (4, 1), ((2, 5), 1), (3, 2), ((4, 3), (1, 3))])
def test_conv2d_string_padding_matches_torch_even_and_odd_kernels(padding, kernel_size, dilation, device):
    """An even total padding d*(k-1) splits evenly; an odd one puts the extra zeros bottom/right."""
    x = np.random.default_rng(0).standard_normal((2, 3, 9, 8))
    geometry = dict(kernel_size=kernel_size, padding=padding, dilation=dilation)
    check_module_against_torch(nn.Conv2d(3, 4, **geometry), torch.nn.Conv2d(3, 4, **geometry), x, device=device)


@pytest.mark.parametrize("arguments", [
    dict(kernel_size=5), dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(2, 3), padding="same"),
    dict(kernel_size=3, dilation=2, groups=2, bias=False), dict(kernel_size=3, padding="valid"),
])
def test_conv2d_repr_is_torchs(arguments):
    assert repr(nn.Conv2d(2, 4, **arguments)) == repr(torch.nn.Conv2d(2, 4, **arguments))


@pytest.mark.parametrize("arguments, error, message", [
    (dict(padding="full"), ValueError, r"padding: expected an int, a pair or one of \('same', 'valid'\), got 'full'"),
    (dict(padding="same", stride=2), ValueError,
     r"padding='same' needs stride 1 \(as in PyTorch\), got stride=\(2, 2\)"),
    (dict(padding_mode="reflect"), ValueError, r"padding_mode: expected 'zeros'.*got 'reflect'"),
    (dict(padding=1.5), TypeError, r"padding: expected an int or a pair of ints, got 1\.5"),
])
def test_conv2d_rejects_bad_padding_naming_it(arguments, error, message):
    with pytest.raises(error, match=message):
        nn.Conv2d(2, 4, 3, **arguments)


def test_avg_pool_is_not_a_max_pool_as_in_torch():
    assert isinstance(torch.nn.AvgPool2d(2), torch.nn.MaxPool2d) is False
    assert isinstance(nn.AvgPool2d(2), nn.MaxPool2d) is False
    assert isinstance(nn.MaxPool2d(2), nn.AvgPool2d) is False
