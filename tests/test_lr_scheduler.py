"""Learning-rate schedulers against torch.optim.lr_scheduler: the same lr (and momentum, for
OneCycleLR) at every step of a long trajectory, two param groups, equal to the last bit; and a
schedule saved mid-way (through a checkpoint file) continues exactly like an uninterrupted one."""
import math
import pickle

import numpy as np
import pytest
import torch

import minigrad as mg
from minigrad import checkpoint, optim
from minigrad.optim import lr_scheduler

STEPS = 40

# name -> keyword arguments (the same for both frameworks)
SCHEDULES = [
    ("StepLR", dict(step_size=7)),
    ("StepLR", dict(step_size=3, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[5, 12, 12, 30], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.93)),
    ("CosineAnnealingLR", dict(T_max=10)),
    ("CosineAnnealingLR", dict(T_max=7, eta_min=0.001)),
    ("LambdaLR", dict(lr_lambda=lambda step: 1 / (1 + step) ** 0.5)),
    ("LambdaLR", dict(lr_lambda=[lambda step: 0.9 ** step, lambda step: min(1.0, (step + 1) / 10)])),
    ("OneCycleLR", dict(max_lr=0.5, total_steps=STEPS)),
    ("OneCycleLR", dict(max_lr=[0.5, 0.05], epochs=4, steps_per_epoch=10, pct_start=0.25,
                        anneal_strategy="linear", div_factor=10.0, final_div_factor=100.0)),
    ("OneCycleLR", dict(max_lr=0.3, total_steps=STEPS, three_phase=True, base_momentum=0.8)),
]


def schedule_id(case):
    name, options = case
    return name + "-" + "-".join(f"{k}={v}" for k, v in options.items() if k != "lr_lambda")


def two_groups(lib, optimizer_name):
    """An optimizer over two parameter groups with different lrs (and momenta / betas)."""
    first, second = (lib.zeros(2, requires_grad=True) for _ in range(2))
    groups = [{"params": [first]}, {"params": [second], "lr": 0.02}]
    if optimizer_name == "SGD":
        return getattr(lib.optim, "SGD")(groups, lr=0.1, momentum=0.9)
    return getattr(lib.optim, "Adam")(groups, lr=0.1, betas=(0.9, 0.99))


def momenta(optimizer):
    return [group.get("momentum", group.get("betas", (None,))[0]) for group in optimizer.param_groups]


def trajectory(lib, name, options, optimizer_name, steps=STEPS):
    """(lrs, momenta) after construction and after each step."""
    optimizer = two_groups(lib, optimizer_name)
    scheduler = getattr(lib.optim.lr_scheduler, name)(optimizer, **options)
    history = [(scheduler.get_last_lr(), momenta(optimizer))]
    for _ in range(steps - 1 if name == "OneCycleLR" else steps):
        optimizer.step()
        scheduler.step()
        history.append((scheduler.get_last_lr(), momenta(optimizer)))
    return history


@pytest.mark.parametrize("optimizer_name", ["SGD", "Adam"])
@pytest.mark.parametrize("case", SCHEDULES, ids=schedule_id)
def test_lr_trajectory_equals_torch(case, optimizer_name):
    name, options = case
    ours = trajectory(mg, name, options, optimizer_name)
    theirs = trajectory(torch, name, options, optimizer_name)
    assert ours == theirs  # exactly: the same recurrences in the same order
    assert len({tuple(lrs) for lrs, _ in ours}) > 1  # the schedule did change the lr


@pytest.mark.parametrize("case", SCHEDULES, ids=schedule_id)
def test_state_dict_mid_schedule_resumes_exactly_through_a_checkpoint(case, tmp_path):
    name, options = case
    uninterrupted = trajectory(mg, name, options, "SGD")

    optimizer = two_groups(mg, "SGD")
    scheduler = getattr(lr_scheduler, name)(optimizer, **options)
    for _ in range(STEPS // 2):
        optimizer.step()
        scheduler.step()
    path = checkpoint.save(tmp_path / "schedule.npz", {"optimizer": optimizer.state_dict(),
                                                         "scheduler": scheduler.state_dict()})
    saved = checkpoint.load(path)

    resumed_optimizer = two_groups(mg, "SGD")  # rebuilt as at the start, then loaded (PyTorch's order)
    resumed = getattr(lr_scheduler, name)(resumed_optimizer, **options)
    resumed_optimizer.load_state_dict(saved["optimizer"])
    resumed.load_state_dict(pickle.loads(pickle.dumps(saved["scheduler"])))
    history = [(resumed.get_last_lr(), momenta(resumed_optimizer))]
    for _ in range(STEPS // 2 - (name == "OneCycleLR")):
        resumed_optimizer.step()
        resumed.step()
        history.append((resumed.get_last_lr(), momenta(resumed_optimizer)))
    assert history == uninterrupted[STEPS // 2:]


def test_lr_changes_the_parameter_updates_like_torch():
    # The scheduler's lr is the one the optimizer uses: 8 SGD steps on f(w) = w^2 / 2 (g = w).
    results = []
    for lib in (mg, torch):
        weight = lib.tensor([1.0, -2.0], dtype=lib.float64, requires_grad=True)
        optimizer = lib.optim.SGD([weight], lr=0.4)
        scheduler = lib.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        for _ in range(8):
            optimizer.zero_grad()
            (weight * weight / 2).sum().backward()
            optimizer.step()
            scheduler.step()
        results.append(weight.detach().numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-14)  # SGD itself rounds its last bit differently


def test_cosine_annealing_follows_its_closed_form():
    # An independent check of the recurrence: eta_min + (base - eta_min)(1 + cos(pi t/T))/2.
    optimizer = optim.SGD([mg.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = lr_scheduler.CosineAnnealingLR(optimizer, T_max=10, eta_min=0.01)
    for t in range(1, 11):
        optimizer.step()
        scheduler.step()
        expected = 0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * t / 10)) / 2
        assert scheduler.get_last_lr()[0] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_lambda_lr_state_leaves_the_functions_out_like_torch():
    optimizer = optim.SGD([mg.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)
    assert "lr_lambdas" not in scheduler.state_dict()
    assert scheduler.state_dict()["base_lrs"] == [0.1]


def test_bad_scheduler_arguments_are_rejected_with_the_argument():
    optimizer = optim.SGD([mg.zeros(1, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="step_size: expected a positive int, got 0"):
        lr_scheduler.StepLR(optimizer, step_size=0)
    with pytest.raises(ValueError, match="T_max: expected a positive int, got -1"):
        lr_scheduler.CosineAnnealingLR(optimizer, T_max=-1)
    with pytest.raises(ValueError, match="total_steps: expected total_steps, or epochs and steps_per_epoch"):
        lr_scheduler.OneCycleLR(optimizer, max_lr=0.1)
    with pytest.raises(ValueError, match="cycle_momentum: Adagrad has no momentum or betas"):
        lr_scheduler.OneCycleLR(optim.Adagrad([mg.zeros(1, requires_grad=True)]), max_lr=0.1, total_steps=5)
    with pytest.raises(ValueError, match="last_epoch: expected -1"):
        lr_scheduler.StepLR(optimizer, step_size=2, last_epoch=3)
    with pytest.raises(TypeError, match=r"step\(epoch\) is deprecated in PyTorch and not supported"):
        lr_scheduler.StepLR(optimizer, step_size=2).step(5)
    with pytest.raises(TypeError, match="optimizer: expected a minigrad Optimizer"):
        lr_scheduler.StepLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), step_size=2)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=2)
    with pytest.raises(ValueError, match="state_dict: expected StepLR's keys"):
        scheduler.load_state_dict(lr_scheduler.ExponentialLR(optimizer, gamma=0.5).state_dict())
    with pytest.raises(ValueError, match=r"OneCycleLR: tried to step 4 times; total_steps is 3"):
        one_cycle = lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=3)
        for _ in range(4):
            one_cycle.step()
