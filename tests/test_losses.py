"""cross_entropy and mse_loss against PyTorch: class weights, ignore_index, reductions, label smoothing."""
import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given, settings
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F

from strategies import allow_device_fixture, cross_entropy_cases, float64_arrays, small_shapes
from torch_check import check_against_torch, check_gradient


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


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_with_masked_classes_matches_torch(device, label_smoothing, reduction, weighted):
    """A logit of -inf (a class masked out) has probability 0: without label smoothing the loss stays
    finite, with it it is +inf, both as PyTorch's; an ignored sample counts exactly 0 whatever its
    logits (0 * -inf had made the loss NaN)."""
    logits = np.array([[0.0, -np.inf, 1.0, 0.5], [2.0, 0.5, -np.inf, -np.inf],
                       [-np.inf, 1.0, 0.0, 0.2], [0.3, 0.1, -0.4, 1.2]])
    case = dict(logits=logits, target=np.array([2, 0, -100, 3]), ignore_index=-100, reduction=reduction,
                weight=np.array([0.5, 1.0, 2.0, 1.5]) if weighted else None, label_smoothing=label_smoothing)
    mg_fn, torch_fn = cross_entropy_pair(case)
    out = check_against_torch(mg_fn, torch_fn, case["logits"], case["target"], device=device)
    values = out.numpy()
    if label_smoothing:      # smoothing puts weight on the masked classes: infinite, in PyTorch too
        assert np.isinf(values).any() and not np.isnan(values).any()
    else:
        assert np.isfinite(values).all()


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_of_an_ignored_sample_whose_stand_in_class_has_zero_probability_is_zero(device, reduction,
                                                                                         weighted):
    """Ignored targets look up class 0 as a stand-in; its log-probability may be -inf."""
    with np.errstate(divide="ignore"):
        log_probs = np.log(np.array([[0.0, 1.0], [0.5, 0.5], [0.0, 1.0]]))
    target = np.array([-100, 1, 1])
    weight = np.array([2.0, 0.5]) if weighted else None

    def mg_fn(x, t):
        return F.nll_loss(x, t, weight=None if weight is None else mg.tensor(weight, device=x.device),
                          reduction=reduction)

    def torch_fn(x, t):
        return torch_F.nll_loss(x, t, weight=None if weight is None else torch.tensor(weight), reduction=reduction)
    out = check_against_torch(mg_fn, torch_fn, log_probs, target, device=device)
    assert np.isfinite(out.numpy()).all()


@pytest.mark.parametrize("loss, reduction", [("nll_loss", "none"), ("nll_loss", "sum"), ("cross_entropy", "none")])
def test_class_loss_gradients_stay_zero_where_nothing_flows_even_for_inf_upstream_gradients(device, loss, reduction):
    """The backward multiplied its whole gradient matrix by the upstream gradient, so an inf or NaN
    there (the log of per-sample losses, which are exactly 0 on ignored rows) made ignored rows and
    non-target entries NaN; PyTorch leaves them exactly 0."""
    logits = np.array([[0.2, -1.0, 0.5], [1.0, 0.0, -0.5], [0.3, 0.3, 0.1], [-0.2, 0.4, 2.0]])
    target = np.array([2, -100, 0, -100])
    upstream = np.array([1.5, np.inf, -0.5, np.nan]) if reduction == "none" else np.array(np.inf)
    ours = mg.tensor(logits, requires_grad=True, device=device)
    getattr(F, loss)(ours, mg.tensor(target, device=device), reduction=reduction).backward(
        mg.tensor(upstream, device=device))
    theirs = torch.tensor(logits, requires_grad=True)
    getattr(torch_F, loss)(theirs, torch.tensor(target), reduction=reduction).backward(torch.tensor(upstream))
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-12, atol=0)
    assert (ours.grad.numpy()[[1, 3]] == 0).all(), "ignored rows get exactly 0"


def test_cross_entropy_normalizer_counts_weights_of_counted_targets():
    target = mg.tensor(np.array([0, 2, -100, 2]))
    weight = mg.tensor(np.array([0.5, 1.0, 2.0]))
    assert F.cross_entropy_normalizer(target) == 3.0
    assert F.cross_entropy_normalizer(target, weight) == 0.5 + 2.0 + 2.0


@pytest.mark.parametrize("dtype", [np.int32, np.int16, np.uint8])
def test_cross_entropy_of_narrow_integer_targets_with_ignored_ones_matches_torch(device, dtype):
    # Ignored targets stand in as the dtype's extremes when the class range is taken: int64's
    # extremes wrapped around to -1 in int32 and refused a valid batch ("got -1").
    ignore_index = 255 if dtype == np.uint8 else -1
    case = dict(logits=np.random.default_rng(0).standard_normal((4, 3)),
                target=np.array([0, ignore_index, 2, 1]).astype(dtype), weight=None, ignore_index=ignore_index,
                reduction="mean", label_smoothing=0.0)
    mg_fn, torch_fn = cross_entropy_pair(case)
    check_against_torch(mg_fn, lambda logits, target: torch_fn(logits, target.long()), case["logits"],
                        case["target"], device=device)


@given(data=st.data(), ignore_index=st.sampled_from([-100, -1, 0, 2, 255]),
       dtype=st.sampled_from([np.int64, np.int32, np.int16, np.uint8, np.uint64]), weighted=st.booleans())
def test_target_summary_of_host_targets_equals_the_one_copy_summary(data, ignore_index, dtype, weighted):
    # The host shortcut (nothing ignored, no class weights) against the general one-copy path, and
    # both against Python's own count, min and max of the counted classes; ignore_index as given,
    # also outside the dtype's range (-100 with uint8 targets: nothing is ignored).
    from minigrad.ops.loss import summarize_in_one_copy
    lowest = 0 if np.dtype(dtype).kind == "u" else -3
    ignored = [ignore_index] if ignore_index >= lowest else []          # a target may equal ignore_index
    classes = data.draw(st.lists(st.sampled_from(ignored) | st.integers(lowest, 6) if ignored else st.integers(lowest, 6),
                                 min_size=1, max_size=12), label="classes")
    target = np.array(classes).astype(dtype)
    weight = np.linspace(0.5, 2.0, 7) if weighted else None
    summary = F.summarize_targets(target, weight, ignore_index)
    assert summary == summarize_in_one_copy(target, weight, ignore_index)
    counted = [c for c in classes if c != ignore_index]
    assert summary.count == len(counted)
    if counted:
        assert (summary.smallest, summary.largest) == (min(counted), max(counted))
    if not weighted:
        assert summary.normalizer == float(len(counted))
    elif all(0 <= c < len(weight) for c in counted):     # (out-of-range classes are refused later)
        assert summary.normalizer == pytest.approx(sum(weight[c] for c in counted), rel=1e-12)


@pytest.mark.parametrize("targets", [[0.0, 1.0], [0.0, -100.0], [True, False]])
def test_target_summary_refuses_targets_that_are_not_integers_naming_the_dtype(device, targets):
    # train.summarize_batch asks for the summary before the loss checks its targets.
    from minigrad import train
    target = mg.tensor(np.array(targets), device=device)
    with pytest.raises(TypeError, match=f"target must hold integer class indices, got dtype {np.array(targets).dtype}"):
        train.summarize_batch(nn.CrossEntropyLoss(), target)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@allow_device_fixture
@given(data=st.data())
def test_mse_loss_matches_torch(reduction, device, data):
    shape = data.draw(small_shapes(), label="shape")
    prediction, target = data.draw(float64_arrays(shape), label="input"), data.draw(float64_arrays(shape), label="target")
    check_against_torch(lambda x, y: F.mse_loss(x, y, reduction=reduction),
                        lambda x, y: torch_F.mse_loss(x, y, reduction=reduction), prediction, target, device=device)


# ----------------------------------------------------------------------------- nll_loss
def nll_pair(case):
    """nll_loss on the case's logits taken as log-probabilities (the loss is linear in them, so any
    values test it), with the case's weight, ignore_index and reduction."""
    options = dict(ignore_index=case["ignore_index"], reduction=case["reduction"])
    weight = case["weight"]

    def mg_fn(log_probs, target):
        mg_weight = None if weight is None else mg.tensor(weight, device=log_probs.device)
        return F.nll_loss(log_probs, target, weight=mg_weight, **options)

    def torch_fn(log_probs, target):
        return torch_F.nll_loss(log_probs, target, weight=None if weight is None else torch.tensor(weight), **options)

    return mg_fn, torch_fn


@allow_device_fixture
@given(case=cross_entropy_cases())
def test_nll_loss_matches_torch(device, case):
    mg_fn, torch_fn = nll_pair(case)
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-ignored mean is NaN in both
        check_against_torch(mg_fn, torch_fn, case["logits"], case["target"], device=device)


def test_nll_loss_of_log_softmax_is_cross_entropy_like_torch(device):
    logits, target = np.random.default_rng(1).standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])
    check_against_torch(lambda x, t: F.nll_loss(F.log_softmax(x, 1), t), lambda x, t: torch_F.cross_entropy(x, t),
                        logits, target, device=device)


@pytest.mark.parametrize("options", [{}, {"ignore_index": 1}, {"reduction": "sum"}, {"reduction": "none"}])
def test_nll_loss_module_matches_torch(options):
    weight = np.array([0.5, 2.0, 1.0])
    logits, target = np.random.default_rng(2).standard_normal((4, 3)), np.array([0, 1, 2, 1])
    ours = mg.nn.NLLLoss(weight=mg.tensor(weight), **options)
    theirs = torch.nn.NLLLoss(weight=torch.tensor(weight), **options)
    check_against_torch(ours, theirs, logits, target)


# ----------------------------------------------------------------------------- BCE with logits
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weight_shape", [None, (3,), (4, 3), (4, 1)])
@pytest.mark.parametrize("pos_weight", [False, True])
@settings(max_examples=5)  # 24 combinations already
@given(data=st.data())
def test_binary_cross_entropy_with_logits_matches_torch(reduction, weight_shape, pos_weight, data):
    # logits and targets are differentiated; weight and pos_weight are constants, since PyTorch
    # refuses them with requires_grad (minigrad's gradients for them are checked below).
    logits = data.draw(float64_arrays((4, 3), low=-30.0, high=30.0), label="logits")
    targets = data.draw(float64_arrays((4, 3), low=0.0, high=1.0), label="targets")
    weight = None if weight_shape is None else data.draw(float64_arrays(weight_shape, low=0.1, high=3.0))
    positive = data.draw(float64_arrays((3,), low=0.1, high=3.0)) if pos_weight else None

    def call(binary_cross_entropy, make_tensor):
        def loss(x, y):
            return binary_cross_entropy(x, y, weight=None if weight is None else make_tensor(weight),
                                        reduction=reduction,
                                        pos_weight=None if positive is None else make_tensor(positive))
        return loss

    check_against_torch(call(F.binary_cross_entropy_with_logits, mg.tensor),
                        call(torch_F.binary_cross_entropy_with_logits, torch.tensor), logits, targets)


def test_bce_with_logits_weight_gradients_agree_with_central_differences():
    # PyTorch does not differentiate weight and pos_weight; minigrad does.
    rng = np.random.default_rng(3)
    check_gradient(lambda x, y, w, p: F.binary_cross_entropy_with_logits(x, y, weight=w, pos_weight=p),
                   rng.normal(size=(4, 3)), rng.random((4, 3)), rng.random((1, 3)) + 0.5, rng.random(3) + 0.5)


def test_bce_with_logits_module_is_stable_for_huge_logits_like_torch():
    logits, targets = np.array([[800.0, -800.0, 0.0]]), np.array([[0.0, 1.0, 1.0]])
    out = check_against_torch(mg.nn.BCEWithLogitsLoss(), torch.nn.BCEWithLogitsLoss(), logits, targets)
    assert np.isfinite(out.item())


def test_bce_with_logits_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match=r"target shape must equal input shape \(2, 3\), got \(2,\)"):
        F.binary_cross_entropy_with_logits(mg.zeros(2, 3), mg.zeros(2))
    with pytest.raises(ValueError, match=r"pos_weight must broadcast to the input's shape \(2, 3\), got \(4,\)"):
        F.binary_cross_entropy_with_logits(mg.zeros(2, 3), mg.zeros(2, 3), pos_weight=mg.ones(4))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weight_shape", [None, (3,), (4, 1)])
@settings(max_examples=5)
@given(data=st.data())
def test_binary_cross_entropy_matches_torch(reduction, weight_shape, data):
    # probabilities and targets differentiated; the weight a constant (PyTorch refuses its gradient)
    probabilities = data.draw(float64_arrays((4, 3), low=0.01, high=0.99), label="probabilities")
    targets = data.draw(float64_arrays((4, 3), low=0.0, high=1.0), label="targets")
    weight = None if weight_shape is None else data.draw(float64_arrays(weight_shape, low=0.1, high=3.0))

    def call(binary_cross_entropy, make_tensor):
        return lambda x, y: binary_cross_entropy(x, y, weight=None if weight is None else make_tensor(weight),
                                                 reduction=reduction)

    check_against_torch(call(F.binary_cross_entropy, mg.tensor), call(torch_F.binary_cross_entropy, torch.tensor),
                        probabilities, targets)


def test_binary_cross_entropy_clamps_its_logs_like_torch():
    # x = 0 and x = 1 give PyTorch's clamped log (-100) and its bounded gradient, not inf or nan.
    probabilities, targets = np.array([[0.0, 1.0, 0.0, 1.0, 0.5]]), np.array([[1.0, 0.0, 0.0, 1.0, 0.5]])
    out = check_against_torch(mg.nn.BCELoss(), torch.nn.BCELoss(), probabilities, targets)
    assert np.isfinite(out.item())
    with pytest.raises(ValueError, match=r"expected probabilities in \[0, 1\]"):
        F.binary_cross_entropy(mg.tensor([1.5]), mg.tensor([1.0]))
