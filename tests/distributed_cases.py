"""The cases the multi-process tests run, shared by the MPI worker and the tests (no torch here:
every rank imports this, and importing torch three times on two cores costs seconds).

Each case is one global batch: a tiny float64 model, data, a loss variant and a micro-batch
size. The batch sizes include 1 and 2 (a rank with an empty shard on 2 or 3 ranks) and 5 and 7
(sizes that 2 and 3 do not divide).
"""
import itertools

import numpy as np

import minigrad as mg
import minigrad.nn as nn

NUM_CLASSES = 3
IGNORE_INDEX = -1
BATCH_SIZES = (1, 2, 5, 7)
MICRO_BATCH_SIZES = (None, 1, 2, 3)
LOSSES = ("cross_entropy", "ignore_index", "class_weights", "label_smoothing", "all_three",
          "cross_entropy_sum", "mse", "mse_sum")


def gradient_cases():
    """Every loss x batch size x micro-batch size; model kind and dropout alternate."""
    cases = []
    for index, (loss, batch_size, micro) in enumerate(itertools.product(LOSSES, BATCH_SIZES, MICRO_BATCH_SIZES)):
        cases.append(dict(name=f"case{index}", loss=loss, batch_size=batch_size, micro_batch_size=micro,
                          model_kind="conv" if index % 4 == 0 else "mlp", dropout=0.5 if index % 2 else 0.0,
                          seed=index))
    return cases


def make_criterion(loss):
    weight = mg.tensor([0.5, 2.0, 1.25], dtype=mg.float64)
    return {"cross_entropy": lambda: nn.CrossEntropyLoss(),
            "ignore_index": lambda: nn.CrossEntropyLoss(ignore_index=IGNORE_INDEX),
            "class_weights": lambda: nn.CrossEntropyLoss(weight=weight),
            "label_smoothing": lambda: nn.CrossEntropyLoss(label_smoothing=0.2),
            "all_three": lambda: nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX, label_smoothing=0.2),
            "cross_entropy_sum": lambda: nn.CrossEntropyLoss(reduction="sum"),
            "mse": lambda: nn.MSELoss(),
            "mse_sum": lambda: nn.MSELoss(reduction="sum")}[loss]()


def make_model(kind, dropout):
    """Two dropout layers, so masks drawn in sequence could not line up with a split by luck."""
    mg.manual_seed(0)
    if kind == "mlp":
        layers = [nn.Dropout(dropout), nn.Linear(4, 5), nn.Tanh(), nn.Dropout(dropout), nn.Linear(5, NUM_CLASSES)]
    else:
        layers = [nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Dropout(dropout), nn.MaxPool2d(2),
                  nn.Dropout(dropout), nn.Flatten(), nn.Linear(3 * 3 * 3, NUM_CLASSES)]
    return nn.Sequential(*layers).to(mg.float64)


def make_data(case, device="cpu"):
    rng = np.random.default_rng(case["seed"])
    batch_size = case["batch_size"]
    inputs = rng.normal(size=(batch_size, 4) if case["model_kind"] == "mlp" else (batch_size, 2, 6, 6))
    if case["loss"].startswith("mse"):
        targets = rng.normal(size=(batch_size, NUM_CLASSES))
    else:
        targets = rng.integers(0, NUM_CLASSES, size=batch_size)
        if case["loss"] in ("ignore_index", "all_three"):
            targets[rng.random(batch_size) < 0.5] = IGNORE_INDEX
            targets[0] = IGNORE_INDEX  # the first rank's shard starts with an ignored target
            targets[-1] = rng.integers(NUM_CLASSES)  # at least one counted target
    return mg.tensor(inputs, device=device), mg.tensor(targets, device=device)


def setup(case, device="cpu"):
    """(model, criterion, inputs, targets), built the same way in every process."""
    model, criterion = make_model(case["model_kind"], case["dropout"]), make_criterion(case["loss"])
    return model.to(device), criterion.to(device), *make_data(case, device)


def evaluation_setup(num_samples=23):
    """A classifier and a test set of 23 samples (a prime: neither 2 nor 3 ranks divide it)."""
    model = make_model("mlp", 0.0)
    rng = np.random.default_rng(99)
    return model, rng.normal(size=(num_samples, 4)), rng.integers(0, NUM_CLASSES, size=num_samples)
