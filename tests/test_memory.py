"""minigrad.memory: the four parts of training memory (SPEC section 6), each checked against a
count made without it: PyTorch's parameters, optimizer state and saved tensors, or by hand."""
import gc
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
import torch

import minigrad as mg
import minigrad.nn as nn
from minigrad import memory, optim, random

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PARTS = ("1. parameters + gradients", "2. optimizer state", "3. data batch", "4. activations")


# ----------------------------------------------------------------------------- models and data
def small_lenet(device="cpu", dtype=mg.float32):
    """LeNet's layer pattern on 12x12 images, small enough to run in milliseconds."""
    mg.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2),      # (N, 4, 5, 5)
                         nn.Conv2d(4, 6, 2), nn.ReLU(), nn.MaxPool2d(2),      # (N, 6, 2, 2)
                         nn.Flatten(), nn.Linear(24, 10), nn.ReLU(), nn.Linear(10, 3)).to(dtype).to(device)


def image_batch(batch_size, device="cpu", dtype="float32", num_classes=3, side=12):
    rng = np.random.default_rng(batch_size)
    images = mg.tensor(rng.standard_normal((batch_size, 3, side, side)).astype(dtype), device=device)
    labels = mg.tensor(rng.integers(0, num_classes, batch_size), device=device)
    return images, labels


def torch_twin(model):
    """The same layers in PyTorch (values do not matter: memory depends on shapes)."""
    layers = []
    for layer in model:
        if isinstance(layer, nn.Linear):
            layers.append(torch.nn.Linear(layer.in_features, layer.out_features))
        elif isinstance(layer, nn.Conv2d):
            layers.append(torch.nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                          layer.stride, layer.padding, layer.dilation, layer.groups))
        elif isinstance(layer, nn.AvgPool2d):  # before MaxPool2d: minigrad's AvgPool2d subclasses it
            layers.append(torch.nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding))
        elif isinstance(layer, nn.MaxPool2d):
            layers.append(torch.nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding))
        else:
            layers.append({nn.ReLU: torch.nn.ReLU, nn.Tanh: torch.nn.Tanh, nn.Sigmoid: torch.nn.Sigmoid,
                           nn.Flatten: torch.nn.Flatten}[type(layer)]())
    return torch.nn.Sequential(*layers)


def torch_saved_bytes(model, criterion, inputs, targets):
    """Bytes of the distinct storages PyTorch's autograd saves for backward (parameters and the
    batch excluded), seen through saved_tensors_hooks."""
    excluded = {p.untyped_storage().data_ptr() for p in model.parameters()}
    excluded |= {inputs.untyped_storage().data_ptr(), targets.untyped_storage().data_ptr()}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = criterion(model(inputs), targets)
    assert loss.requires_grad
    return sum(storages.values())


# ----------------------------------------------------------------------------- 1-3
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parameter_part_is_parameters_plus_gradients_as_pytorch_counts_them(device, dtype):
    model = small_lenet(device, dtype)
    images, labels = image_batch(4, device, dtype)
    report = memory.budget(model, None, images, labels, nn.CrossEntropyLoss())
    twin = torch_twin(model).to(getattr(torch, dtype))
    parameter_bytes = sum(p.numel() * p.element_size() for p in twin.parameters())
    assert report.parameters == 2 * parameter_bytes
    assert report.parameter_count == sum(p.numel() for p in twin.parameters()) == 4 * 27 + 4 + 6 * 16 + 6 + 250 + 33


@pytest.mark.parametrize("make_optimizers, arrays_per_parameter", [
    (lambda ours, theirs: (optim.SGD(ours, lr=0.1), torch.optim.SGD(theirs, lr=0.1)), 0),
    (lambda ours, theirs: (optim.SGD(ours, lr=0.1, momentum=0.9), torch.optim.SGD(theirs, lr=0.1, momentum=0.9)), 1),
    (lambda ours, theirs: (optim.Adam(ours), torch.optim.Adam(theirs)), 2),
    (lambda ours, theirs: (optim.AdamW(ours), torch.optim.AdamW(theirs)), 2),
    (lambda ours, theirs: (optim.Adam(ours, amsgrad=True), torch.optim.Adam(theirs, amsgrad=True)), 3),
], ids=["sgd", "momentum", "adam", "adamw", "amsgrad"])
def test_optimizer_state_is_0_1_2_3_parameter_sizes_as_in_pytorch(make_optimizers, arrays_per_parameter):
    model = small_lenet()
    twin = torch_twin(model)
    optimizer, torch_optimizer = make_optimizers(model.parameters(), twin.parameters())
    images, labels = image_batch(4)
    before = memory.budget(model, optimizer, images, labels, nn.CrossEntropyLoss())
    for parameter in model.parameters():  # one step, so that the state exists in both
        parameter.grad = mg.ones(*parameter.shape)
    optimizer.step()
    for parameter in twin.parameters():
        parameter.grad = torch.ones_like(parameter)
    torch_optimizer.step()
    after = memory.budget(model, optimizer, images, labels, nn.CrossEntropyLoss())
    torch_state_bytes = sum(value.numel() * value.element_size() for state in torch_optimizer.state.values()
                            for value in state.values() if torch.is_tensor(value) and value.ndim > 0)
    parameter_bytes = sum(p.array.nbytes for p in model.parameters())
    assert before.optimizer_state == after.optimizer_state == arrays_per_parameter * parameter_bytes
    assert before.optimizer_state_measured is None
    assert after.optimizer_state_measured == torch_state_bytes == arrays_per_parameter * parameter_bytes


def test_optimizer_state_of_no_optimizer_is_zero():
    images, labels = image_batch(2)
    report = memory.budget(small_lenet(), None, images, labels, nn.CrossEntropyLoss())
    assert report.optimizer_state == 0 and report.optimizer_state_measured is None


def test_batch_part_is_inputs_plus_targets():
    images, labels = image_batch(6)
    report = memory.budget(small_lenet(), None, images, labels, nn.CrossEntropyLoss(), micro_batch_size=2)
    assert report.batch == 6 * 3 * 12 * 12 * 4 + 6 * 8  # float32 images, int64 labels: the whole batch
    assert report.values_per_sample == 3 * 12 * 12 and report.batch_size == 6


# ----------------------------------------------------------------------------- 4. measured
def test_measured_activations_of_one_linear_layer_equal_a_hand_count(device):
    """Linear(5, 3) + cross-entropy, float64, 4 samples. The matmul saves its input (the batch,
    part 3) and the weight (part 1); cross-entropy saves the log-probabilities and the target
    distribution q, both (4, 3): 2 * 4 * 3 * 8 bytes, and which of the 4 targets count (4 bools)."""
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3)).to(mg.float64).to(device)
    inputs = mg.tensor(np.ones((4, 5)), device=device)
    targets = mg.tensor([0, 1, 2, 0], device=device)
    report = memory.budget(model, None, inputs, targets, nn.CrossEntropyLoss())
    assert report.activations == 2 * 4 * 3 * 8 + 4
    # Besides the saved arrays the graph keeps only the loss (8 bytes): the outputs of x @ W^T
    # and of + b were not saved by any op, so they are already freed.
    assert report.graph_held == report.activations + 8


def test_measured_activations_with_mse_count_the_squared_difference(device):
    """(output - target) ** 2 saves the difference (4, 3); mean saves nothing."""
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 3)).to(mg.float64).to(device)
    inputs, targets = mg.tensor(np.ones((4, 5)), device=device), mg.tensor(np.zeros((4, 3)), device=device)
    assert memory.budget(model, None, inputs, targets, nn.MSELoss()).activations == 4 * 3 * 8


def test_saved_arrays_are_counted_once_by_the_memory_they_own():
    """ReLU saves its output and the next matmul saves the same array: counted once. A view
    of an array counts the whole array it keeps alive."""
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 2))
    x = mg.randn(3, 5)
    loss = model(x).sum()
    assert memory.saved_activation_bytes(loss, batch=[x]) == 3 * 7 * 4
    owner = np.zeros((4, 6))
    assert memory.memory_owner(owner[1:, ::2].T) is owner
    assert memory.memory_owner(np.lib.stride_tricks.sliding_window_view(owner, 2, axis=0)) is owner
    assert memory.unique_bytes([owner[:1], owner.T, np.ones(3)], already_counted=set()) == 4 * 6 * 8 + 3 * 8


def test_graph_held_is_what_stays_allocated_after_the_forward_pass():
    """An independent check with tracemalloc (which sees NumPy's allocations): after the forward
    pass, what is still allocated is the saved arrays and the loss, nothing more: the graph
    links Functions, not tensors, so unsaved layer outputs are gone. Python's node objects
    add a little. One forward pass runs first: the first one also makes what lives for the whole
    process (the first BLAS hold imports threadpoolctl and scans the BLAS libraries: ~210 KB;
    this test alone saw 275 KB more than the graph)."""
    model, (images, labels) = small_lenet(), image_batch(128)
    nn.CrossEntropyLoss()(model(images), labels)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        loss = nn.CrossEntropyLoss()(model(images), labels)
        gc.collect()
        alive = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    held = memory.graph_held_bytes(loss, batch=[images, labels])
    saved = memory.saved_activation_bytes(loss, batch=[images, labels])
    assert held <= alive <= held * 1.05
    assert saved <= held


def test_accumulation_caps_activations_at_one_micro_batch(device):
    images, labels = image_batch(12, device)
    model = small_lenet(device)
    criterion = nn.CrossEntropyLoss()
    whole = memory.budget(model, None, images, labels, criterion)
    micro = memory.budget(model, None, images, labels, criterion, micro_batch_size=4)
    uneven = memory.budget(model, None, images, labels, criterion, micro_batch_size=[2, 4, 3, 3])
    four = memory.budget(model, None, images[:4], labels[:4], criterion)
    assert micro.activations == uneven.activations == four.activations  # the largest micro-batch: 4
    assert micro.activations_predicted == four.activations_predicted
    assert micro.activations * 3 == pytest.approx(whole.activations, rel=0.01)  # proportional to size
    assert micro.batch == whole.batch and micro.parameters == whole.parameters
    assert micro.peak < whole.peak
    assert whole.peak >= whole.activations  # the saved arrays are all alive at the end of the forward


def test_budget_leaves_gradients_and_the_random_state_as_they_were():
    model = small_lenet()
    images, labels = image_batch(4)
    first = next(model.parameters())
    first.grad = mg.ones(*first.shape)
    mg.manual_seed(7)
    state = random.get_state()
    memory.budget(model, None, images, labels, nn.CrossEntropyLoss(), micro_batch_size=2)
    assert random.get_state() == state
    np.testing.assert_array_equal(first.grad.numpy(), np.ones(first.shape, dtype=np.float32))
    assert all(p.grad is None for p in list(model.parameters())[1:])


# ----------------------------------------------------------------------------- 4. predicted
@pytest.mark.parametrize("build_model, input_shape, criterion", [
    (lambda: small_lenet(), (3, 3, 12, 12), nn.CrossEntropyLoss()),
    (lambda: nn.Sequential(nn.Conv2d(3, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                           nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84),
                           nn.ReLU(), nn.Linear(84, 10)), (2, 3, 32, 32), nn.CrossEntropyLoss(reduction="sum")),
    (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1, dilation=2), nn.Tanh(), nn.AvgPool2d(2, padding=1),
                           nn.Conv2d(3, 4, 1), nn.Sigmoid(), nn.Flatten(), nn.Linear(36, 5)),
     (3, 2, 9, 9), nn.MSELoss()),
    (lambda: nn.Sequential(nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 4), nn.ReLU(),
                           nn.Linear(4, 3)), (5, 2, 4, 4), nn.CrossEntropyLoss(ignore_index=1)),
], ids=["small-lenet", "lenet", "strided-tanh-avgpool-mse", "no-grad-before-first-linear"])
def test_predicted_activations_equal_what_pytorch_saves(build_model, input_shape, criterion):
    model = build_model()
    twin = torch_twin(model)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(input_shape, generator=generator)
    num_outputs = twin(inputs).shape[1]
    if isinstance(criterion, nn.MSELoss):
        targets, torch_criterion = torch.randn(input_shape[0], num_outputs, generator=generator), torch.nn.MSELoss()
    else:
        targets = torch.randint(0, num_outputs, (input_shape[0],), generator=generator)
        torch_criterion = torch.nn.CrossEntropyLoss(reduction=criterion.reduction, ignore_index=criterion.ignore_index)
    expected = torch_saved_bytes(twin, torch_criterion, inputs, targets)
    assert memory.predict_activation_bytes(model, input_shape, "float32", criterion) == expected


def test_predicted_activations_of_a_tiny_model_by_hand():
    """Linear(4, 8) saves its input (the batch: part 3), ReLU its output (5 x 8), which the
    second Linear saves too (counted once); cross-entropy keeps the log-probabilities (5 x 3)
    and one total weight. float32: (40 + 15 + 1) * 4 bytes."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    assert memory.predict_activation_bytes(model, (5, 4), "float32", nn.CrossEntropyLoss()) == (40 + 15 + 1) * 4
    assert memory.predict_activation_bytes(model, (5, 4), "float64") == 40 * 8  # no loss


def test_prediction_names_what_it_does_not_know():
    with pytest.raises(TypeError, match="layer: expected Linear, .* got Dropout"):
        memory.predict_activation_bytes(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), (3, 2))
    with pytest.raises(TypeError, match="model: expected an nn.Sequential .* got Linear"):
        memory.predict_activation_bytes(nn.Linear(2, 2), (3, 2))
    with pytest.raises(TypeError, match="criterion: expected CrossEntropyLoss .* got CrossEntropyLoss"):
        memory.predict_activation_bytes(nn.Sequential(nn.Linear(2, 2)), (3, 2), criterion=nn.CrossEntropyLoss(
            label_smoothing=0.1))
    images = mg.randn(3, 2)
    report = memory.budget(nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)), None, images)
    assert report.activations_predicted is None and "n/a" in report.table()
    assert report.activations == 3 * 2 * 4  # measured all the same: the dropout mask


# ----------------------------------------------------------------------------- the report
def test_table_shows_the_four_parts_in_mib_with_their_formulas():
    model = small_lenet()
    optimizer = optim.Adam(model.parameters())
    images, labels = image_batch(8)
    report = memory.budget(model, optimizer, images, labels, nn.CrossEntropyLoss(), micro_batch_size=4)
    table = str(report)
    for part, size in zip(PARTS, (report.parameters, report.optimizer_state, report.batch, report.activations)):
        line = next(line for line in table.splitlines() if line.startswith(part))
        assert f"{size / 2 ** 20:.3f}" in line
    assert "x 2: Adam's m and v" in table and "micro-batch 4" in table and "tracemalloc" in table
    assert report.total == report.parameters + report.optimizer_state + report.batch + report.activations


def test_example_runs_quick_and_prints_the_four_parts():
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, os.path.join(REPO, "examples", "memory_budget.py"), "--quick"],
                            capture_output=True, text=True, timeout=120, env=env, cwd=REPO)
    assert result.returncode == 0, result.stderr
    for part in PARTS:
        assert result.stdout.count(part) == 6  # two optimizers x three batch set-ups
    assert "accumulation caps them at one micro-batch" in result.stdout


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("micro_batch_size, message", [
    (0, "micro_batch_size: expected a positive int, got 0"),
    (-2, "micro_batch_size: expected a positive int, got -2"),
    ([2, 2], r"micro_batch_size: expected .* summing to the batch size 6, got \[2, 2\]"),
])
def test_bad_micro_batch_size_is_rejected_with_its_value(micro_batch_size, message):
    images, labels = image_batch(6)
    with pytest.raises(ValueError, match=message):
        memory.budget(small_lenet(), None, images, labels, nn.CrossEntropyLoss(), micro_batch_size)


def test_bad_arguments_are_named():
    model, (images, labels) = small_lenet(), image_batch(4)
    criterion = nn.CrossEntropyLoss()
    with pytest.raises(TypeError, match="model: expected an nn.Module, got function"):
        memory.budget(lambda x: x, None, images, labels, criterion)
    with pytest.raises(TypeError, match="optimizer: expected a minigrad.optim optimizer or None, got SGD"):
        memory.budget(model, torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), images, labels, criterion)
    with pytest.raises(ValueError, match="targets and criterion: expected both or neither"):
        memory.budget(model, None, images, labels)
    with pytest.raises(ValueError, match=r"targets: expected 4 samples like inputs \(4, 3, 12, 12\), got shape \(3,\)"):
        memory.budget(model, None, images, labels[:3], criterion)
    with pytest.raises(ValueError, match=r"inputs: expected a batch with at least one sample, got shape \(0, 3, 12"):
        memory.budget(model, None, images[:0], labels[:0], criterion)
    with pytest.raises(TypeError, match="inputs: expected a Tensor or an array, got list"):
        memory.budget(model, None, [[1.0]], labels, criterion)
    with pytest.raises(RuntimeError, match="outside mg.no_grad"):
        with mg.no_grad():
            memory.budget(model, None, images, labels, criterion)


def test_an_optimizer_whose_state_it_cannot_predict_is_named():
    class SignDescent(optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, dict(lr=0.1))

        def update(self, param, grad, state, group):
            param -= group["lr"] * np.sign(grad)

    model, (images, labels) = small_lenet(), image_batch(2)
    with pytest.raises(TypeError, match="optimizer: expected SGD, Adam or AdamW to predict its state, got SignDescent"):
        memory.budget(model, SignDescent(model.parameters()), images, labels, nn.CrossEntropyLoss())
