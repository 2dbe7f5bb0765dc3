"""Optimizers against torch.optim: same weights, same batches, 10 steps, equal to rtol 1e-10."""
import inspect
import pickle

import numpy as np
import pytest
import torch

import minigrad as mg
import minigrad.nn as nn
from minigrad import optim

STEPS = 10
RTOL = 1e-10

SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.1, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3),
    dict(lr=0.05, momentum=0.8, nesterov=True),
    dict(lr=0.1, momentum=0.9, weight_decay=0.01),
    dict(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.1),
]
ADAM_CONFIGS = [
    dict(),
    dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6),
    dict(lr=0.01, weight_decay=0.1),
    dict(lr=0.01, amsgrad=True),
    dict(lr=0.02, weight_decay=0.05, amsgrad=True),
]
RMSPROP_CONFIGS = [
    dict(),
    dict(lr=0.005, alpha=0.9, eps=1e-6, weight_decay=0.1),
    dict(lr=0.005, momentum=0.9),
    dict(lr=0.005, centered=True),
    dict(lr=0.002, alpha=0.95, momentum=0.5, centered=True, weight_decay=0.01),
]
ADAGRAD_CONFIGS = [
    dict(),
    dict(lr=0.05, lr_decay=0.1),
    dict(lr=0.05, weight_decay=0.1, initial_accumulator_value=0.5, eps=1e-6),
]
ADADELTA_CONFIGS = [
    dict(),
    dict(lr=0.5, rho=0.8, eps=1e-4),
    dict(weight_decay=0.1),
]
OPTIMIZER_CONFIGS = ([("SGD", c) for c in SGD_CONFIGS] + [("Adam", c) for c in ADAM_CONFIGS]
                     + [("AdamW", c) for c in ADAM_CONFIGS] + [("AdamW", dict(lr=0.01))]
                     + [("RMSprop", c) for c in RMSPROP_CONFIGS] + [("Adagrad", c) for c in ADAGRAD_CONFIGS]
                     + [("Adadelta", c) for c in ADADELTA_CONFIGS])


def config_id(case):
    name, config = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in config.items())


# ----------------------------------------------------------------------------- twin models
def tiny_mlp(device="cpu"):
    mg.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)).to(mg.float64).to(device)


def torch_twin(model):
    """A torch.nn.Sequential with the same Linear weights as the minigrad MLP."""
    layers = []
    for layer in model:
        if isinstance(layer, nn.Linear):
            twin = torch.nn.Linear(layer.in_features, layer.out_features, dtype=torch.float64)
            with torch.no_grad():
                twin.weight.copy_(torch.from_numpy(layer.weight.numpy()))
                twin.bias.copy_(torch.from_numpy(layer.bias.numpy()))
            layers.append(twin)
        else:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)


def batches(count=STEPS, size=6, seed=1):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(size, 3)), rng.integers(0, 2, size=size)) for _ in range(count)]


def minigrad_step(model, optimizer, inputs, targets, device):
    optimizer.zero_grad()
    loss = nn.CrossEntropyLoss()(model(mg.tensor(inputs, device=device)), mg.tensor(targets, device=device))
    loss.backward()
    optimizer.step()


def torch_step(model, optimizer, inputs, targets):
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(torch.from_numpy(inputs)), torch.from_numpy(targets)).backward()
    optimizer.step()


def assert_same_parameters(model, twin):
    for ours, theirs in zip(model.parameters(), twin.parameters()):
        np.testing.assert_allclose(ours.numpy(), theirs.detach().numpy(), rtol=RTOL, atol=1e-14)


# ----------------------------------------------------------------------------- trajectories
@pytest.mark.parametrize("case", OPTIMIZER_CONFIGS, ids=config_id)
def test_trajectory_matches_torch(case, device):
    name, config = case
    model = tiny_mlp(device)
    twin = torch_twin(model)
    optimizer = getattr(optim, name)(model.parameters(), **config)
    torch_optimizer = getattr(torch.optim, name)(twin.parameters(), **config)
    for inputs, targets in batches():
        minigrad_step(model, optimizer, inputs, targets, device)
        torch_step(twin, torch_optimizer, inputs, targets)
    assert_same_parameters(model, twin)
    assert not np.allclose(model[0].weight.numpy(), tiny_mlp()[0].weight.numpy())  # it did move


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "Adadelta"])
def test_default_hyperparameters_are_torchs(name):
    ours, theirs = inspect.signature(getattr(optim, name)), inspect.signature(getattr(torch.optim, name))
    for parameter in ours.parameters.values():
        if parameter.default is not inspect.Parameter.empty:
            assert parameter.default == theirs.parameters[parameter.name].default, parameter.name


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_param_groups_with_their_own_hyperparameters_match_torch(name, device):
    model = tiny_mlp(device)
    twin = torch_twin(model)
    defaults = dict(lr=0.1, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    extra = dict(momentum=0.5) if name == "SGD" else dict(betas=(0.5, 0.9))
    ours = getattr(optim, name)([{"params": model[0].parameters()},
                                 {"params": model[2].parameters(), "lr": 0.001, **extra}], **defaults)
    theirs = getattr(torch.optim, name)([{"params": twin[0].parameters()},
                                         {"params": twin[2].parameters(), "lr": 0.001, **extra}], **defaults)
    for inputs, targets in batches():
        minigrad_step(model, ours, inputs, targets, device)
        torch_step(twin, theirs, inputs, targets)
    assert_same_parameters(model, twin)
    assert [group["lr"] for group in ours.param_groups] == [0.1 if name == "SGD" else 0.01, 0.001]


@pytest.mark.parametrize("case", [OPTIMIZER_CONFIGS[4], ("Adam", ADAM_CONFIGS[4]), ("AdamW", ADAM_CONFIGS[2]),
                                  ("RMSprop", RMSPROP_CONFIGS[4]), ("Adagrad", ADAGRAD_CONFIGS[2]),
                                  ("Adadelta", ADADELTA_CONFIGS[1])], ids=config_id)
def test_state_dict_round_trip_mid_trajectory_continues_identically(case, device):
    name, config = case
    data = batches()
    straight = tiny_mlp(device)
    straight_optimizer = getattr(optim, name)(straight.parameters(), **config)
    for inputs, targets in data:
        minigrad_step(straight, straight_optimizer, inputs, targets, device)

    first_half = tiny_mlp(device)
    optimizer = getattr(optim, name)(first_half.parameters(), **config)
    for inputs, targets in data[:STEPS // 2]:
        minigrad_step(first_half, optimizer, inputs, targets, device)
    saved = pickle.loads(pickle.dumps((first_half.state_dict(), optimizer.state_dict())))

    resumed = tiny_mlp(device)
    resumed.load_state_dict(saved[0])
    resumed_optimizer = getattr(optim, name)(resumed.parameters(), **config)
    resumed_optimizer.load_state_dict(saved[1])
    for inputs, targets in data[STEPS // 2:]:
        minigrad_step(resumed, resumed_optimizer, inputs, targets, device)
    for a, b in zip(straight.parameters(), resumed.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_state_dict_holds_plain_host_arrays_and_numbers(device):
    model = tiny_mlp(device)
    optimizer = optim.Adam(model.parameters(), amsgrad=True)
    minigrad_step(model, optimizer, *batches(1)[0], device)
    state = optimizer.state_dict()
    assert sorted(state["state"]) == [0, 1, 2, 3]
    entry = state["state"][0]
    assert entry["step"] == 1 and isinstance(entry["step"], int)
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        assert type(entry[key]) is np.ndarray and entry[key].shape == (5, 3)
    assert state["param_groups"][0]["params"] == [0, 1, 2, 3]
    assert state["param_groups"][0]["betas"] == (0.9, 0.999)


def test_load_state_dict_restores_hyperparameters_and_checks_shapes():
    model = tiny_mlp()
    optimizer = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    minigrad_step(model, optimizer, *batches(1)[0], "cpu")
    saved = optimizer.state_dict()
    other = optim.SGD(tiny_mlp().parameters(), lr=0.1, momentum=0.9)
    other.load_state_dict(saved)
    assert other.param_groups[0]["lr"] == 0.5

    bad = optimizer.state_dict()
    bad["state"][0]["momentum_buffer"] = np.zeros((2, 2))
    fresh = optim.SGD(tiny_mlp().parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"state\[0\]\['momentum_buffer'\]: expected shape \(5, 3\), got \(2, 2\)"):
        fresh.load_state_dict(bad)
    assert fresh.state == {} and fresh.param_groups[0]["lr"] == 0.1  # nothing changed

    with pytest.raises(ValueError, match=r"hyper-parameters \['dampening', 'momentum', 'nesterov'\] are not Adam's"):
        optim.Adam(tiny_mlp().parameters()).load_state_dict(saved)

    two_groups = optim.SGD([{"params": [model[0].weight]}, {"params": [model[0].bias]}], lr=0.1)
    with pytest.raises(ValueError, match=r"param_groups sizes: expected \[1, 1\], got \[4\]"):
        two_groups.load_state_dict(saved)


# ----------------------------------------------------------------------------- behaviour
def test_updates_are_in_place_keep_dtype_and_skip_parameters_without_grad():
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2))  # float32
    weight_array = model[0].weight.array
    optimizer = optim.Adam(model.parameters(), lr=0.1)
    before_last = model[2].weight.numpy().copy()
    model[0](mg.tensor(np.ones((4, 3), dtype=np.float32))).sum().backward()  # only layer 0 gets grads
    optimizer.step()
    assert model[0].weight.array is weight_array and model[0].weight.dtype == np.float32
    assert model[0].weight.grad.dtype == np.float32
    np.testing.assert_array_equal(model[2].weight.numpy(), before_last)
    optimizer.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_first_sgd_momentum_buffer_is_the_gradient_not_zero():
    weight = nn.Parameter(np.array([1.0, -2.0]))
    optimizer = optim.SGD([weight], lr=0.1, momentum=0.9, dampening=0.5)
    weight.grad = mg.tensor(np.array([0.5, 1.0]))
    optimizer.step()
    np.testing.assert_allclose(weight.numpy(), [1.0 - 0.05, -2.0 - 0.1], rtol=RTOL)  # buf = g, undamped
    optimizer.step()  # buf = 0.9 g + 0.5 g = 1.4 g
    np.testing.assert_allclose(weight.numpy(), [0.95 - 0.1 * 0.7, -2.1 - 0.1 * 1.4], rtol=RTOL)


# ----------------------------------------------------------------------------- bad input
BAD_HYPERPARAMETERS = [
    ("SGD", dict(lr=-0.1), r"lr: expected a number >= 0, got -0.1"),
    ("SGD", dict(lr=0.1, momentum=-0.5), r"momentum: expected a number >= 0, got -0.5"),
    ("SGD", dict(lr=0.1, weight_decay=-1), r"weight_decay: expected a number >= 0, got -1"),
    ("SGD", dict(lr=0.1, dampening=-0.2), r"dampening: expected a number >= 0, got -0.2"),
    ("SGD", dict(lr=0.1, nesterov=True), r"nesterov: needs momentum > 0 and dampening = 0, got momentum=0"),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), r"nesterov: .*dampening=0.1"),
    ("SGD", dict(lr="fast"), r"lr: expected a number >= 0, got 'fast'"),
    ("Adam", dict(lr=-1e-3), r"lr: expected a number >= 0, got -0.001"),
    ("Adam", dict(eps=-1e-8), r"eps: expected a number >= 0, got -1e-08"),
    ("Adam", dict(weight_decay=-0.1), r"weight_decay: expected a number >= 0, got -0.1"),
    ("Adam", dict(betas=(1.0, 0.999)), r"betas: expected two numbers in \[0, 1\), got \(1.0, 0.999\)"),
    ("Adam", dict(betas=(0.9, -0.1)), r"betas: expected two numbers in \[0, 1\), got \(0.9, -0.1\)"),
    ("AdamW", dict(betas=(0.9,)), r"betas: expected two numbers in \[0, 1\), got \(0.9,\)"),
    ("AdamW", dict(weight_decay=-0.01), r"weight_decay: expected a number >= 0, got -0.01"),
]


@pytest.mark.parametrize("name, config, message", BAD_HYPERPARAMETERS)
def test_bad_hyperparameters_are_rejected_with_the_argument_and_value(name, config, message):
    with pytest.raises(ValueError, match=message):
        getattr(optim, name)(tiny_mlp().parameters(), **config)


def test_bad_param_groups_are_rejected():
    model = tiny_mlp()
    with pytest.raises(ValueError, match="params: expected at least one parameter, got an empty list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="appears more than once"):
        optim.SGD([model[0].weight, model[0].weight], lr=0.1)
    with pytest.raises(TypeError, match=r"params\[0\]: expected a Tensor with requires_grad=True"):
        optim.SGD([mg.tensor([1.0])], lr=0.1)
    with pytest.raises(ValueError, match=r"lr: expected a number >= 0, got -2"):
        optim.SGD([{"params": model[0].parameters(), "lr": -2}], lr=0.1)
    with pytest.raises(TypeError, match=r"unknown hyper-parameters \['momentun'\]"):
        optim.SGD([{"params": model[0].parameters(), "momentun": 0.9}], lr=0.1)
    with pytest.raises(TypeError, match="single Parameter; wrap it in a list"):
        optim.SGD(model[0].weight, lr=0.1)
