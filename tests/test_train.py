"""The training loop: learns, steps once per batch, stops on NaN/inf naming where, evaluates."""
import numpy as np
import pytest
import torch

import minigrad as mg
import minigrad.nn as nn
from minigrad import optim, train
from minigrad.data import DataLoader, TensorDataset


def separable_problem(n=48, seed=0, dtype=np.float32):
    """Two Gaussian blobs, labels 0/1: a linear classifier separates them."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    inputs = rng.normal(size=(n, 2)) * 0.5 + (labels[:, None] * 2 - 1) * 1.5
    return inputs.astype(dtype), labels


def classifier(dropout=0.0, dtype=mg.float32, device="cpu", num_classes=2):
    mg.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(8, num_classes)).to(dtype).to(device)


def test_fit_decreases_the_loss_on_a_separable_problem(device):
    inputs, labels = separable_problem()
    model = classifier(device=device)
    train_loader = DataLoader(TensorDataset(inputs, labels), 8, shuffle=True, seed=0, device=device)
    test_loader = DataLoader(TensorDataset(inputs, labels), 16, device=device)
    history = train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
                        train_loader, epochs=5, micro_batch_size=3, test_loader=test_loader)
    assert [record["epoch"] for record in history] == [0, 1, 2, 3, 4]
    assert history[-1]["train"]["loss"] < 0.5 * history[0]["train"]["loss"]
    assert history[-1]["test"]["accuracy"] >= 0.95
    assert history[0]["train"]["steps"] == 6 and history[0]["train"]["images_per_second"] > 0


def test_one_optimizer_step_per_batch_not_per_micro_batch():
    inputs, labels = separable_problem(n=10)
    model = classifier()
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    calls = []
    stats = train.train_one_epoch(model, nn.CrossEntropyLoss(), optimizer, DataLoader(TensorDataset(inputs, labels), 4),
                                  micro_batch_size=1, on_step=lambda *args: calls.append(args))
    assert stats["steps"] == 3 and [state["step"] for state in optimizer.state.values()] == [3] * 4
    assert [(step, batch_size) for step, _, batch_size in calls] == [(0, 4), (1, 4), (2, 2)]
    mean_loss = sum(loss * batch_size for _, loss, batch_size in calls) / 10
    assert stats["loss"] == pytest.approx(mean_loss, rel=1e-12)


def test_training_with_micro_batches_follows_the_same_trajectory_dropout_included():
    """float64, dropout on: fit with micro-batches of 3 ends where fit without them ends."""
    inputs, labels = separable_problem(n=20, dtype=np.float64)
    finals = []
    for micro_batch_size in (None, 3, [1, 2, 2, 3]):
        model = classifier(dropout=0.5, dtype=mg.float64)
        loader = DataLoader(TensorDataset(inputs, labels), 8, shuffle=True, seed=1, drop_last=True)
        mg.manual_seed(123)  # the per-batch dropout seeds come from here
        train.fit(model, nn.CrossEntropyLoss(), optim.AdamW(model.parameters(), lr=0.01), loader, 3, micro_batch_size)
        finals.append([p.numpy() for p in model.parameters()])
    for other in finals[1:]:
        for a, b in zip(finals[0], other):
            np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_divergence_stops_training_naming_epoch_and_step():
    """y = 2x regression with lr=1e30: step 0 is finite, the weights explode, step 1's loss overflows."""
    x = np.linspace(-1, 1, 10, dtype=np.float32)[:, None]
    mg.manual_seed(0)
    model = nn.Linear(1, 1)
    loader = DataLoader(TensorDataset(x, 2 * x), batch_size=3)
    with pytest.raises(train.TrainingDiverged, match=r"training diverged at epoch 4, step 1 \(0-based\): "
                                                     r"the loss is (inf|nan); lower the learning rate"):
        train.train_one_epoch(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=1e30), loader, epoch=4)
    assert issubclass(train.TrainingDiverged, FloatingPointError)


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_fit_reports_divergence_in_a_later_epoch():
    x = np.linspace(-1, 1, 4, dtype=np.float32)[:, None]
    mg.manual_seed(0)
    model = nn.Linear(1, 1)
    loader = DataLoader(TensorDataset(x, 2 * x), batch_size=4)  # one step per epoch
    with pytest.raises(FloatingPointError, match=r"epoch 1, step 0"):
        train.fit(model, nn.MSELoss(), optim.SGD(model.parameters(), lr=1e30), loader, epochs=3)


def test_evaluate_matches_torch_loss_and_counts_accuracy_per_class(device):
    rng = np.random.default_rng(0)
    inputs, labels = rng.normal(size=(11, 2)), np.array([0, 1, 2, 2, 1, 0, -100, 2, 1, 1, 0])
    model = classifier(dtype=mg.float64, device=device, num_classes=3)
    criterion = nn.CrossEntropyLoss(label_smoothing=0.1)
    stats = train.evaluate(model, criterion, DataLoader(TensorDataset(inputs, labels), 4, device=device))
    with mg.no_grad():
        logits = model(mg.tensor(inputs, device=device)).numpy()
    expected = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels),
                                                 label_smoothing=0.1).item()
    assert stats["loss"] == pytest.approx(expected, rel=1e-10)
    predicted = logits.argmax(axis=1)
    counted = labels != -100
    assert stats["accuracy"] == pytest.approx((predicted == labels)[counted].mean())
    per_class = [(predicted[labels == c] == c).mean() for c in range(3)]
    np.testing.assert_allclose(stats["per_class_accuracy"], per_class)
    assert all(p.grad is None for p in model.parameters()) and model.training  # no graph, mode restored


def test_evaluate_regression_has_no_accuracy_and_marks_empty_classes_nan():
    x = np.linspace(-1, 1, 6)[:, None]
    mg.manual_seed(0)
    model = nn.Linear(1, 1).to(mg.float64)
    stats = train.evaluate(model, nn.MSELoss(), DataLoader(TensorDataset(x, 2 * x), 4))
    with mg.no_grad():
        expected = ((model(mg.tensor(x)).numpy() - 2 * x) ** 2).mean()
    assert stats["loss"] == pytest.approx(expected, rel=1e-12)
    assert stats["accuracy"] is None and stats["per_class_accuracy"] is None

    labels = np.array([0, 0, 1, 1])
    stats = train.evaluate(classifier(), nn.CrossEntropyLoss(), DataLoader(TensorDataset(np.ones((4, 2), np.float32),
                                                                                          labels), 4), num_classes=3)
    assert len(stats["per_class_accuracy"]) == 3 and np.isnan(stats["per_class_accuracy"][2])


def test_accuracy_skips_targets_equal_to_an_ignore_index_that_is_a_class_number(device):
    # ignore_index=0 is also class 0's number: samples labelled 0 are ignored, by the loss and the accuracy.
    counter = train.AccuracyCounter(nn.CrossEntropyLoss(ignore_index=0))
    outputs = mg.tensor(np.array([[5.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]]), device=device)
    counter.add(outputs, mg.tensor(np.array([0, 1, 2, 0]), device=device))   # predicted 0, 0, 2, 0
    assert counter.accuracy() == 0.5             # samples 1 (wrong) and 2 (right); counting 0 and 3 too: 0.75
    per_class = counter.per_class_accuracy()
    assert np.isnan(per_class[0]) and per_class[1:] == [0.0, 1.0]
