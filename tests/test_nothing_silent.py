"""Nothing silent: each case where bad input or a fault once gave a wrong result, lost work or a
vague error, one test per case, compared with PyTorch where PyTorch has a behaviour.

Silent wrong results
- test_optimizer_step_between_forward_and_backward_raises_naming_the_op
- test_in_place_write_to_an_op_output_saved_for_backward_raises
- test_in_place_operator_under_no_grad_on_a_saved_tensor_raises_as_torch
- test_unchanged_saved_values_pass_the_version_check
- test_every_in_place_write_of_minigrad_bumps_the_version
- test_grad_of_the_wrong_shape_is_refused_on_assignment
- test_grad_of_the_wrong_dtype_or_type_is_refused_on_assignment
- test_string_and_object_data_are_refused_naming_the_dtype
- test_relu_gradient_at_nan_is_one_as_torch
- test_max_gradient_goes_to_the_nan_as_torch
- test_module_load_state_dict_changes_nothing_when_any_entry_is_bad

Vague errors
- test_linear_accepts_numpy_integers
- test_conv2d_rejects_a_non_positive_kernel_or_negative_channels_naming_them
- test_optimizer_load_state_dict_checks_the_structure_first
- test_module_load_state_dict_given_a_list_names_the_type
"""
import numpy as np
import pytest
import torch

import minigrad as mg
import minigrad.nn as nn
import minigrad.optim as optim
from torch_check import check_against_torch


def two_layer_net():
    mg.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


# ----------------------------------------------------------------------------- in-place changes
def test_optimizer_step_between_forward_and_backward_raises_naming_the_op():
    model = two_layer_net()
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = mg.tensor(np.random.default_rng(0).standard_normal((5, 3)), dtype="float32")
    (model(x) ** 2).sum().backward()          # gradients exist, so step() changes the weights
    loss = (model(x) ** 2).sum()
    opt.step()
    opt.zero_grad()
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation.*MatMul.*version 2; expected version 1"):
        loss.backward()


def test_in_place_write_to_an_op_output_saved_for_backward_raises():
    x = mg.tensor([0.5, 1.0], requires_grad=True)
    y = x.exp()                               # Exp saves its output
    y.array[...] = 0
    y._bump_version()                         # what every in-place op of minigrad does
    with pytest.raises(RuntimeError, match=r"output of Exp.*version 1; expected version 0"):
        y.sum().backward()


@pytest.mark.parametrize("method, args", [("mul_", (2.0,)), ("zero_", ()), ("add_", (1.0,))])
def test_in_place_operator_under_no_grad_on_a_saved_tensor_raises_as_torch(method, args):
    for lib in (mg, torch):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        x = lib.tensor([3.0, 4.0], requires_grad=True)
        loss = (w * x).sum()                  # Mul saved both
        with lib.no_grad():
            getattr(w, method)(*args)
        with pytest.raises(RuntimeError, match=r"modified by an inplace operation"):
            loss.backward()


def test_unchanged_saved_values_pass_the_version_check():
    model = two_layer_net()
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = mg.tensor(np.random.default_rng(0).standard_normal((5, 3)), dtype="float32")
    for _ in range(2):                        # step after backward, as a training loop does
        opt.zero_grad()
        (model(x) ** 2).sum().backward()
        opt.step()
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    z = w * 3                                 # only the constant is saved, not w: no error (as torch)
    w.array += 1
    w._bump_version()
    z.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [3.0, 3.0])


def test_every_in_place_write_of_minigrad_bumps_the_version():
    layer = nn.Linear(2, 2)
    weight = layer.weight
    start = weight._version
    assert start > 0, "init writes the parameter in place"
    layer.load_state_dict(layer.state_dict())
    assert weight._version == start + 1
    opt = optim.Adam(layer.parameters())
    layer(mg.ones((1, 2))).sum().backward()
    grad = weight.grad
    layer(mg.ones((1, 2))).sum().backward()   # accumulation writes .grad in place
    assert grad._version == 1
    opt.step()
    assert weight._version == start + 2
    opt.zero_grad(set_to_none=False)
    assert grad._version == 2
    assert weight.detach()._version == weight._version, "detach shares the counter, as in torch"


# ----------------------------------------------------------------------------- .grad assignment
def test_grad_of_the_wrong_shape_is_refused_on_assignment():
    layer = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match=r"assign a gradient of shape \(3,\) to a tensor of shape \(2, 3\)"):
        layer.weight.grad = mg.ones(3)
    assert layer.weight.grad is None
    with pytest.raises(RuntimeError):   # torch refuses it too
        torch.nn.Linear(3, 2).weight.grad = torch.ones(3)


def test_grad_of_the_wrong_dtype_or_type_is_refused_on_assignment():
    weight = nn.Linear(3, 2).weight
    with pytest.raises(RuntimeError, match=r"gradient with dtype float64 to a tensor with dtype float32"):
        weight.grad = mg.ones((2, 3), dtype="float64")
    with pytest.raises(TypeError, match=r"expected a Tensor or None, got ndarray"):
        weight.grad = np.ones((2, 3), dtype=np.float32)
    weight.grad = mg.ones((2, 3))
    weight.grad = None


# ----------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("data, kind", [(["1", "2"], "<U1"), (np.array([object(), 1], dtype=object), "object"),
                                        ([1 + 2j], "complex128")])
def test_string_and_object_data_are_refused_naming_the_dtype(data, kind):
    with pytest.raises(TypeError, match=rf"expected bool, integer or floating-point data, got dtype {kind}"):
        mg.tensor(data)
    with pytest.raises((TypeError, ValueError)):  # torch refuses strings and objects as well
        if kind != "complex128":
            torch.tensor(data)
        else:
            raise TypeError


# ----------------------------------------------------------------------------- NaN as PyTorch
def test_relu_gradient_at_nan_is_one_as_torch():
    x = np.array([1.0, np.nan, -1.0, 0.0])
    check_against_torch(lambda t: t.relu(), torch.relu, x, grad_out=np.array([2.0, 3.0, np.nan, 5.0]))


@pytest.mark.parametrize("largest", [True, False])
def test_max_gradient_goes_to_the_nan_as_torch(largest):
    x = np.array([[1.0, np.nan], [3.0, np.nan]])
    if largest:
        check_against_torch(lambda t: t.max(), lambda t: t.max(), x)
        check_against_torch(lambda t: t.amax(axis=1), lambda t: t.amax(1), x)  # amax: NaN grads, as torch
    else:
        check_against_torch(lambda t: t.min(), lambda t: t.min(), x)


# ----------------------------------------------------------------------------- load_state_dict
@pytest.mark.parametrize("bad_bias", [np.array(["a", "b"]), [0.0, 0.0], None])
def test_module_load_state_dict_changes_nothing_when_any_entry_is_bad(bad_bias):
    model = nn.Linear(3, 2)
    before = {name: value.numpy().copy() for name, value in model.state_dict().items()}
    state = {"weight": np.ones((2, 3)), "bias": bad_bias}  # the weight comes first and is fine
    with pytest.raises((TypeError, ValueError), match=r"'bias'"):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), before[name])


def test_module_load_state_dict_given_a_list_names_the_type():
    with pytest.raises(TypeError, match=r"parameter 'weight': expected a Tensor or an array, got list"):
        nn.Linear(3, 2).load_state_dict({"weight": [[0.0] * 3] * 2, "bias": np.zeros(2)})


# ----------------------------------------------------------------------------- vague errors
def test_linear_accepts_numpy_integers():
    layer = nn.Linear(np.int64(4), np.int32(3))
    assert layer.weight.shape == torch.nn.Linear(np.int64(4), np.int32(3)).weight.shape == (3, 4)
    assert type(layer.in_features) is int


@pytest.mark.parametrize("args, message", [
    ((1, 2, 0), r"kernel_size: expected positive sizes, got \(0, 0\)"),
    ((1, 2, -3), r"kernel_size: expected positive sizes, got \(-3, -3\)"),
    ((-1, 2, 3), r"in_channels: expected a positive int, got -1"),
    ((1, -2, 3), r"out_channels: expected a positive int, got -2"),
])
def test_conv2d_rejects_a_non_positive_kernel_or_negative_channels_naming_them(args, message):
    with pytest.raises(ValueError, match=message):
        nn.Conv2d(*args)


def test_optimizer_load_state_dict_checks_the_structure_first():
    model = two_layer_net()
    opt = optim.Adam(model.parameters())
    (model(mg.ones((1, 3))) ** 2).sum().backward()
    opt.step()
    saved = opt.state_dict()
    no_params = {"state": saved["state"], "param_groups": [{k: v for k, v in saved["param_groups"][0].items()
                                                            if k != "params"}]}
    with pytest.raises(ValueError, match=r"param_groups\[0\]: expected a dict with a 'params' list"):
        optim.Adam(model.parameters()).load_state_dict(no_params)
    no_step = {"state": {0: {k: v for k, v in saved["state"][0].items() if k != "step"}},
               "param_groups": saved["param_groups"]}
    with pytest.raises(ValueError, match=r"state\[0\]: missing 'step'"):
        optim.Adam(model.parameters()).load_state_dict(no_step)
