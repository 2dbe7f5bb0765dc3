"""cross_entropy and mse_loss against PyTorch: class weights, ignore_index, reductions, label smoothing."""
import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn.functional as F

from strategies import allow_device_fixture, cross_entropy_cases, float64_arrays, small_shapes
from torch_check import check_against_torch


def cross_entropy_pair(case):
    """The minigrad and torch calls for one case; the weight is a constant, not a differentiated input."""
    options = dict(ignore_index=case["ignore_index"], reduction=case["reduction"],
                   label_smoothing=case["label_smoothing"])
    weight = case["weight"]

    def mg_fn(logits, target):
        mg_weight = None if weight is None else mg.tensor(weight, device=logits.device)
        return F.cross_entropy(logits, target, weight=mg_weight, **options)

    def torch_fn(logits, target):
        torch_weight = None if weight is None else torch.tensor(weight)
        return torch_F.cross_entropy(logits, target, weight=torch_weight, **options)

    return mg_fn, torch_fn


@allow_device_fixture
@given(case=cross_entropy_cases())
def test_cross_entropy_matches_torch(device, case):
    mg_fn, torch_fn = cross_entropy_pair(case)
    check_against_torch(mg_fn, torch_fn, case["logits"], case["target"], device=device)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_with_every_target_ignored_matches_torch(device, reduction, weighted):
    # mean over zero counted targets is 0/0: PyTorch returns nan, and so must we (not a silent 0).
    case = dict(logits=np.random.default_rng(0).standard_normal((3, 4)), target=np.full(3, -100),
                weight=np.array([0.5, 1.0, 2.0, 1.5]) if weighted else None, ignore_index=-100,
                reduction=reduction, label_smoothing=0.0)
    mg_fn, torch_fn = cross_entropy_pair(case)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = check_against_torch(mg_fn, torch_fn, case["logits"], case["target"], device=device)
    if reduction == "mean":
        assert np.isnan(out.item())


def test_cross_entropy_of_a_known_case_equals_the_formula(device):
    # Two classes with equal logits: p = 1/2, loss = log 2; d loss/d logits = p - onehot = (-1/2, 1/2).
    logits = mg.tensor(np.zeros((1, 2)), requires_grad=True, device=device)
    loss = F.cross_entropy(logits, mg.tensor(np.array([0]), device=device))
    loss.backward()
    np.testing.assert_allclose(loss.item(), np.log(2), rtol=1e-15)
    np.testing.assert_allclose(logits.grad.numpy(), [[-0.5, 0.5]], rtol=1e-15)


def test_cross_entropy_is_stable_for_huge_logits(device):
    logits = np.array([[1000.0, -1000.0, 0.0], [0.0, 1e4, -1e4]])
    target = np.array([1, 2])
    out = check_against_torch(lambda x, t: F.cross_entropy(x, t), lambda x, t: torch_F.cross_entropy(x, t),
                              logits, target, device=device)
    assert np.isfinite(out.item())


def test_cross_entropy_normalizer_counts_weights_of_counted_targets():
    target = mg.tensor(np.array([0, 2, -100, 2]))
    weight = mg.tensor(np.array([0.5, 1.0, 2.0]))
    assert F.cross_entropy_normalizer(target) == 3.0
    assert F.cross_entropy_normalizer(target, weight) == 0.5 + 2.0 + 2.0


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@allow_device_fixture
@given(data=st.data())
def test_mse_loss_matches_torch(reduction, device, data):
    shape = data.draw(small_shapes(), label="shape")
    prediction, target = data.draw(float64_arrays(shape), label="input"), data.draw(float64_arrays(shape), label="target")
    check_against_torch(lambda x, y: F.mse_loss(x, y, reduction=reduction),
                        lambda x, y: torch_F.mse_loss(x, y, reduction=reduction), prediction, target, device=device)
