"""Gradient accumulation: a batch cut into micro-batches of ANY sizes gives the full batch's .grad.

The reference is always the plain full-batch recipe, ``criterion(model(x), y).backward()``;
the accumulated gradient must equal it to float64 round-off (rtol 1e-10), for drawn models,
data, batch sizes, uneven partitions, loss variants and dropout.
"""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn as nn
from minigrad import backend, optim, random, train

RTOL, ATOL = 1e-10, 1e-13
NUM_CLASSES = 3
IGNORE_INDEX = -1

# The `device` fixture only names a device, so sharing it across Hypothesis examples is safe.
def with_device(**overrides):
    return settings(suppress_health_check=list(settings.default.suppress_health_check)
                    + [HealthCheck.function_scoped_fixture], **overrides)


# ----------------------------------------------------------------------------- strategies
@st.composite
def uneven_partitions(draw, total):
    """A list of positive micro-batch sizes summing to ``total``, e.g. [3, 1, 4] for 8."""
    cuts = draw(st.sets(st.integers(1, total - 1), max_size=total - 1)) if total > 1 else set()
    edges = [0, *sorted(cuts), total]
    return [stop - start for start, stop in zip(edges, edges[1:])]


def class_weights(draw):
    """None, or one positive float64 weight per class."""
    if not draw(st.booleans()):
        return None
    return mg.tensor(draw(st.lists(st.floats(0.1, 3.0), min_size=NUM_CLASSES, max_size=NUM_CLASSES)),
                     dtype=mg.float64)


@st.composite
def loss_setups(draw):
    """A criterion and the kind of targets it takes: CE or NLL with drawn ignore_index / class
    weights / label smoothing (CE) / reduction, MSE, BCE with a drawn weight, or BCE with logits
    with drawn weight and pos_weight."""
    kind = draw(st.sampled_from(["ce", "ce", "nll", "mse", "bce", "bce logits"]))
    reduction = draw(st.sampled_from(["mean", "mean", "sum"]))
    if kind == "mse":
        return nn.MSELoss(reduction=reduction), False
    if kind == "bce":
        return nn.BCELoss(weight=class_weights(draw), reduction=reduction), False
    if kind == "bce logits":
        return nn.BCEWithLogitsLoss(weight=class_weights(draw), reduction=reduction,
                                    pos_weight=class_weights(draw)), False
    if kind == "nll":
        criterion = nn.NLLLoss(weight=class_weights(draw), ignore_index=IGNORE_INDEX, reduction=reduction)
        return criterion, draw(st.booleans())
    criterion = nn.CrossEntropyLoss(weight=class_weights(draw), ignore_index=IGNORE_INDEX, reduction=reduction,
                                    label_smoothing=draw(st.sampled_from([0.0, 0.0, 0.25])))
    return criterion, draw(st.booleans())  # second: whether some targets are ignore_index


@st.composite
def accumulation_cases(draw):
    """(model kind, dropout p, batch size, partition, criterion, uses ignore_index, data seed)."""
    batch_size = draw(st.integers(1, 9))
    criterion, with_ignored = draw(loss_setups())
    return dict(model_kind=draw(st.sampled_from(["mlp", "conv"])), dropout=draw(st.sampled_from([0.0, 0.5])),
                batch_size=batch_size, partition=draw(uneven_partitions(batch_size)), criterion=criterion,
                with_ignored=with_ignored, seed=draw(st.integers(0, 2**16)))


# ----------------------------------------------------------------------------- models and data
def make_model(kind, dropout, device, seed=0):
    """A tiny float64 MLP, or a conv net with pooling, on 2x6x6 inputs.

    Two dropout layers: with one, masks drawn in sequence from one global stream would
    happen to line up with the split (rows are consecutive draws); with two they do not.
    """
    mg.manual_seed(seed)
    if kind == "mlp":
        layers = [nn.Dropout(dropout), nn.Linear(4, 5), nn.ReLU(), nn.Dropout(dropout), nn.Linear(5, NUM_CLASSES)]
    else:
        layers = [nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Dropout(dropout), nn.MaxPool2d(2),
                  nn.Dropout(dropout), nn.Flatten(), nn.Linear(3 * 3 * 3, NUM_CLASSES)]
    return nn.Sequential(*layers).to(mg.float64).to(device)


def make_data(kind, criterion, batch_size, with_ignored, seed, device):
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(batch_size, 4) if kind == "mlp" else (batch_size, 2, 6, 6))
    if isinstance(criterion, nn.MSELoss):
        targets = rng.normal(size=(batch_size, NUM_CLASSES))
    elif isinstance(criterion, (nn.BCELoss, nn.BCEWithLogitsLoss)):
        targets = rng.random(size=(batch_size, NUM_CLASSES))  # probabilities, not only 0 and 1
    else:
        targets = rng.integers(0, NUM_CLASSES, size=batch_size)
        if with_ignored:
            targets[rng.random(batch_size) < 0.5] = IGNORE_INDEX
            targets[rng.integers(batch_size)] = rng.integers(NUM_CLASSES)  # at least one counted target
    return mg.tensor(inputs, device=device), mg.tensor(targets, device=device)


def full_batch_gradients(model, criterion, inputs, targets, seed=0):
    """The reference: one forward/backward on the whole batch (dropout keyed per sample as accumulate does)."""
    model.zero_grad()
    mg.manual_seed(seed)
    with random.per_sample_masks():
        loss = criterion(model(inputs), targets)
        loss.backward()
    return loss.item(), [p.grad.numpy().copy() for p in model.parameters()]


def accumulated_gradients(model, criterion, inputs, targets, micro_batch_size, seed=0):
    model.zero_grad()
    mg.manual_seed(seed)
    loss = train.accumulate(model, criterion, inputs, targets, micro_batch_size)
    return loss, [p.grad.numpy().copy() for p in model.parameters()]


def assert_same_gradients(actual, expected):
    for index, (a, e) in enumerate(zip(actual, expected)):
        np.testing.assert_allclose(a, e, rtol=RTOL, atol=ATOL, err_msg=f"parameter {index}")


# ----------------------------------------------------------------------------- the property
@with_device()
@given(case=accumulation_cases())
def test_accumulated_gradient_equals_full_batch(case, device):
    case["criterion"].to(device)  # class weights live with the data
    model = make_model(case["model_kind"], case["dropout"], device)
    if isinstance(case["criterion"], nn.NLLLoss):  # NLL takes log-probabilities
        model = nn.Sequential(model, nn.LogSoftmax(dim=1))
    if isinstance(case["criterion"], nn.BCELoss):  # BCE takes probabilities
        model = nn.Sequential(model, nn.Sigmoid())
    inputs, targets = make_data(case["model_kind"], case["criterion"], case["batch_size"], case["with_ignored"],
                                case["seed"], device)
    full_loss, expected = full_batch_gradients(model, case["criterion"], inputs, targets)
    loss, actual = accumulated_gradients(model, case["criterion"], inputs, targets, case["partition"])
    assert_same_gradients(actual, expected)
    assert loss == pytest.approx(full_loss, rel=RTOL, abs=ATOL)


@with_device(max_examples=10)
@given(batch_size=st.integers(1, 9), micro_batch_size=st.integers(1, 12), seed=st.integers(0, 1000))
def test_integer_micro_batch_size_with_smaller_last_or_larger_than_batch(batch_size, micro_batch_size, seed, device):
    criterion = nn.CrossEntropyLoss()
    model = make_model("mlp", 0.5, device)
    inputs, targets = make_data("mlp", criterion, batch_size, False, seed, device)
    _, expected = full_batch_gradients(model, criterion, inputs, targets)
    _, actual = accumulated_gradients(model, criterion, inputs, targets, micro_batch_size)
    assert_same_gradients(actual, expected)


def test_micro_batches_with_no_counted_target_add_nothing_but_keep_the_normaliser(device):
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX, label_smoothing=0.1)
    model = make_model("mlp", 0.0, device)
    inputs, _ = make_data("mlp", criterion, 6, False, 0, device)
    targets = mg.tensor(np.array([IGNORE_INDEX, IGNORE_INDEX, 2, 0, IGNORE_INDEX, 1]), device=device)
    _, expected = full_batch_gradients(model, criterion, inputs, targets)
    _, actual = accumulated_gradients(model, criterion, inputs, targets, [2, 3, 1])  # first one: none counted
    assert_same_gradients(actual, expected)


@pytest.mark.parametrize("with_weight", [False, True])
def test_a_batch_with_every_target_ignored_gives_nan_loss_and_zero_gradient_like_torch(with_weight, device):
    """Normaliser 0: the full batch's mean is 0/0 = NaN and its gradient 0 (torch agrees);
    accumulation must not backprop 0 * (1/0) = NaN into .grad."""
    weight = mg.tensor([0.5, 2.0, 1.5], dtype=mg.float64, device=device) if with_weight else None
    criterion = nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX)
    model = make_model("mlp", 0.0, device)
    inputs, _ = make_data("mlp", criterion, 5, False, 0, device)
    targets = mg.tensor(np.full(5, IGNORE_INDEX), device=device)
    full_loss, expected = full_batch_gradients(model, criterion, inputs, targets)
    loss, actual = accumulated_gradients(model, criterion, inputs, targets, [2, 3])
    torch_logits = torch.tensor(model(inputs).numpy(), requires_grad=True)  # torch's rule on the loss input
    torch_loss = torch.nn.functional.cross_entropy(
        torch_logits, torch.tensor(targets.numpy()), None if weight is None else torch.tensor(weight.numpy()),
        ignore_index=IGNORE_INDEX)
    torch_loss.backward()
    assert np.isnan(torch_loss.item()) and not torch_logits.grad.any()
    assert np.isnan(full_loss) and np.isnan(loss)
    assert all(not g.any() for g in expected)
    assert_same_gradients(actual, expected)


def test_evaluate_on_data_with_every_target_ignored_gives_nan_loss_and_no_accuracy(device):
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    model = make_model("mlp", 0.0, device)
    inputs, _ = make_data("mlp", criterion, 5, False, 0, device)
    targets = mg.tensor(np.full(5, IGNORE_INDEX), device=device)
    stats = train.evaluate(model, criterion, [(inputs, targets)])
    assert np.isnan(stats["loss"]) and stats["accuracy"] is None


def test_dropout_masks_do_not_depend_on_the_split_but_do_on_the_seed(device):
    """Guards the dropout variant of the property: masks really differ between seeds, so the
    equality above is not vacuous, and keyed rows are the same whatever the offset split."""
    criterion = nn.CrossEntropyLoss()
    model = make_model("conv", 0.5, device)
    inputs, targets = make_data("conv", criterion, 7, False, 0, device)
    _, seed0 = accumulated_gradients(model, criterion, inputs, targets, [4, 3], seed=0)
    _, seed1 = accumulated_gradients(model, criterion, inputs, targets, [4, 3], seed=1)
    assert not np.allclose(seed0[0], seed1[0])
    with random.per_sample_masks(seed=5):
        whole = mg.nn.functional.dropout(mg.ones(7, 10, dtype=mg.float64), 0.5).numpy()
    pieces = []
    with random.per_sample_masks(seed=5):
        for start, size in [(0, 2), (2, 5)]:
            with random.sample_offset(start):
                pieces.append(mg.nn.functional.dropout(mg.ones(size, 10, dtype=mg.float64), 0.5).numpy())
    np.testing.assert_array_equal(np.concatenate(pieces), whole)
    assert 0 < (whole == 0).sum() < whole.size and set(np.unique(whole)) == {0.0, 2.0}


def naive_accumulation(model, criterion, inputs, targets, partition):
    """The classic bug: each micro-batch's MEAN loss divided by the number of micro-batches."""
    model.zero_grad()
    start = 0
    for size in partition:
        part = slice(start, start + size)
        (criterion(model(inputs[part]), targets[part]) / len(partition)).backward()
        start += size
    return [p.grad.numpy().copy() for p in model.parameters()]


@pytest.mark.parametrize("with_ignored", [False, True])
def test_naive_loss_over_accumulation_steps_gives_a_different_gradient(with_ignored, device):
    """So the property above can fail: the textbook recipe breaks on an uneven (or masked) split."""
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    model = make_model("mlp", 0.0, device)
    inputs, targets = make_data("mlp", criterion, 8, False, 3, device)
    partition = [4, 4] if with_ignored else [5, 3]  # masked targets make even sizes uneven in counts
    if with_ignored:
        targets = mg.tensor(np.array([0, 1, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 2, 1, 0]), device=device)
    _, expected = full_batch_gradients(model, criterion, inputs, targets)
    naive = naive_accumulation(model, criterion, inputs, targets, partition)
    relative_error = max(np.abs(n - e).max() / np.abs(e).max() for n, e in zip(naive, expected))
    assert relative_error > 1e-3
    _, ours = accumulated_gradients(model, criterion, inputs, targets, partition)
    assert_same_gradients(ours, expected)


# ----------------------------------------------------------------------------- optimizer steps
OPTIMIZER_CHOICES = [
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.5)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
]


@with_device(max_examples=15)
@given(choice=st.sampled_from(OPTIMIZER_CHOICES), steps=st.integers(1, 3), batch_size=st.integers(2, 7),
       data=st.data())
def test_k_steps_with_accumulation_equal_k_full_batch_steps(choice, steps, batch_size, data, device):
    name, config = choice
    criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX)
    batches = [make_data("mlp", criterion, batch_size, True, seed, device) for seed in range(steps)]
    partitions = [data.draw(uneven_partitions(batch_size)) for _ in range(steps)]
    trained = []
    for accumulated in (False, True):
        model = make_model("mlp", 0.5, device)
        optimizer = getattr(optim, name)(model.parameters(), **config)
        for step, ((inputs, targets), partition) in enumerate(zip(batches, partitions)):
            if accumulated:
                accumulated_gradients(model, criterion, inputs, targets, partition, seed=step)
            else:
                full_batch_gradients(model, criterion, inputs, targets, seed=step)
            optimizer.step()  # once per batch: Adam's step count and weight decay act once
        trained.append([p.numpy() for p in model.parameters()] + optimizer_state_arrays(optimizer, model))
        if name != "SGD":  # Adam's step count: one per batch, not one per micro-batch
            assert [optimizer.state[id(p)]["step"] for p in model.parameters()] == [steps] * 4
    assert_same_gradients(trained[1], trained[0])  # parameters, and SGD's momentum / Adam's moments


def optimizer_state_arrays(optimizer, model):
    """Every state array (momentum buffer, Adam's moments), in parameter order, so two runs compare."""
    states = [optimizer.state[id(p)] for p in model.parameters()]
    assert all(states), "every parameter has optimizer state after a step"
    return [backend.to_host(value) for state in states for key, value in sorted(state.items()) if key != "step"]


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("micro_batch_size, message", [
    (0, r"micro_batch_size: expected a positive int, got 0"),
    (-2, r"micro_batch_size: expected a positive int, got -2"),
    ([2, 2], r"list of positive ints summing to the batch size 5, got \[2, 2\]"),
    ([5, 0], r"summing to the batch size 5, got \[5, 0\]"),
    (2.5, r"summing to the batch size 5, got 2.5"),
    (True, r"summing to the batch size 5, got True"),
])
def test_bad_micro_batch_size_is_rejected(micro_batch_size, message):
    criterion = nn.CrossEntropyLoss()
    model = make_model("mlp", 0.0, "cpu")
    inputs, targets = make_data("mlp", criterion, 5, False, 0, "cpu")
    with pytest.raises(ValueError, match=message):
        train.accumulate(model, criterion, inputs, targets, micro_batch_size)
    assert all(p.grad is None for p in model.parameters())  # rejected before any backward


def test_unsupported_criteria_are_rejected():
    model = make_model("mlp", 0.0, "cpu")
    inputs, targets = make_data("mlp", nn.CrossEntropyLoss(), 5, False, 0, "cpu")
    with pytest.raises(TypeError, match="criterion: accumulate knows the normaliser of nn.CrossEntropyLoss, "
                                        "nn.NLLLoss, nn.MSELoss, nn.BCELoss, nn.BCEWithLogitsLoss, got function"):
        train.accumulate(model, lambda out, t: out.sum(), inputs, targets, 2)
    with pytest.raises(ValueError, match=r"criterion.reduction: expected 'mean' or 'sum' .*got 'none'"):
        train.accumulate(model, nn.CrossEntropyLoss(reduction="none"), inputs, targets, 2)
    with pytest.raises(ValueError, match=r"targets: expected 5 samples like inputs \(5, 4\), got shape \(4,\)"):
        train.accumulate(model, nn.CrossEntropyLoss(), inputs, targets[:4], 2)
