"""What a CUDA training step costs the host, counted on the CuPy stand-in (``fake_cupy``).

On a GPU each host synchronisation stalls the CPU until the device is done, and each device
call is a kernel launch, so these counts bound a step's speed long before FLOPs do. The
fixture puts the stand-in in CuPy's place for one test, on any machine.
"""
import numpy as np
import pytest

import fake_cupy
import minigrad as mg
import minigrad.nn as nn
from minigrad import backend, models, optim, train
from minigrad.memory import measure
from minigrad.nn import functional as F

MAX_HOST_SYNCS_PER_STEP = 2
MAX_DEVICE_CALLS_PER_LENET_STEP = 350  # batch 512


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(backend, "_cupy", fake_cupy)
    return "cuda"


def lenet_batches(device, batch_size, steps, labels_high=10):
    mg.manual_seed(0)
    model = models.LeNet(1, 10, 28).to(device)
    rng = np.random.default_rng(0)
    batches = [(mg.tensor(rng.standard_normal((batch_size, 1, 28, 28)).astype(np.float32), device=device),
                mg.tensor(rng.integers(0, labels_high, batch_size), device=device)) for _ in range(steps)]
    return model, batches


def test_relu_keeps_the_batch_last_layout_that_conv_hands_to_pool(fake_cuda):
    """CuPy writes elementwise results C-contiguous; the next pool would then pay a transposing copy."""
    x = mg.randn(4, 3, 8, 8, device=fake_cuda)
    conv_out = F.conv2d(x, mg.randn(5, 3, 3, 3, device=fake_cuda))
    assert conv_out.array.transpose(1, 2, 3, 0).flags.c_contiguous  # conv: a view of (C, H, W, N)
    relu_out = F.relu(conv_out)
    assert relu_out.array.transpose(1, 2, 3, 0).flags.c_contiguous
    np.testing.assert_array_equal(relu_out.numpy(), np.maximum(conv_out.numpy(), 0))


def test_relu_backward_keeps_the_layout_of_the_gradient_from_pool(fake_cuda):
    x = mg.randn(4, 3, 8, 8, device=fake_cuda, requires_grad=True)
    conv_out = F.conv2d(x, mg.randn(5, 3, 3, 3, device=fake_cuda))
    conv_out.retain_grad()  # what ReLU's backward hands the conv (retain_grad keeps its layout)
    pooled = F.max_pool2d(F.relu(conv_out), 2)
    (pooled * pooled).sum().backward()
    assert conv_out.grad.array.transpose(1, 2, 3, 0).flags.c_contiguous


def test_a_lenet_step_at_batch_512_makes_at_most_350_device_calls(fake_cuda):
    model, [(inputs, targets)] = lenet_batches(fake_cuda, 512, 1)
    criterion, optimizer = nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    for warm_up in (True, False):  # the first step also creates the momentum buffers
        with fake_cupy.counting() as counted:
            optimizer.zero_grad()
            criterion(model(inputs), targets).backward()
            optimizer.step()
    assert counted.device_calls <= MAX_DEVICE_CALLS_PER_LENET_STEP, counted.calls_by_name


@pytest.mark.parametrize("micro_batch_size", [None, 8])
def test_train_one_epoch_makes_at_most_two_host_syncs_per_step(fake_cuda, micro_batch_size):
    """Per step: the labels' summary (normaliser and range) and the loss; per epoch: the accuracy and
    the check that the last step left finite parameters."""
    model, batches = lenet_batches(fake_cuda, 16, 4)
    criterion, optimizer = nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01)
    syncs = {}
    for steps in (1, 4):
        with fake_cupy.counting() as counted:
            stats = train.train_one_epoch(model, criterion, optimizer, batches[:steps], micro_batch_size)
        syncs[steps] = counted.host_syncs
        assert stats["accuracy"] is not None and stats["steps"] == steps
    per_step = (syncs[4] - syncs[1]) / 3
    assert per_step <= MAX_HOST_SYNCS_PER_STEP, syncs
    assert syncs[1] - per_step <= 2  # once per epoch: the accuracy, and every parameter's finiteness


def test_out_of_range_labels_raise_before_any_state_changes(device):
    """The bad label sits in the last micro-batch: no earlier micro-batch may have added to .grad."""
    mg.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).to(device)
    inputs = mg.tensor(np.ones((4, 4), np.float32), device=device)
    targets = mg.tensor([0, 1, 2, 3], device=device)  # 3 is not a class of 3
    before = [p.numpy().copy() for p in model.parameters()]
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"target: expected class indices in \[0, 2\].*got 3"):
        train.train_one_epoch(model, nn.CrossEntropyLoss(), optimizer, [(inputs, targets)], micro_batch_size=1)
    assert all(p.grad is None for p in model.parameters())
    assert optimizer.state == {}
    for parameter, value in zip(model.parameters(), before):
        np.testing.assert_array_equal(parameter.numpy(), value)


def test_accuracy_counted_on_the_device_equals_a_host_count(device):
    mg.manual_seed(0)
    outputs = mg.randn(50, 4, device=device)
    targets_host = np.random.default_rng(1).integers(-1, 4, 50)  # -1: ignored
    counter = train.AccuracyCounter(nn.CrossEntropyLoss(ignore_index=-1))
    counter.add(outputs, mg.tensor(targets_host, device=device))
    predicted = outputs.numpy().argmax(axis=1)
    counted = targets_host != -1
    assert counter.accuracy() == pytest.approx((predicted == targets_host)[counted].mean(), abs=0)
    expected = [(predicted[targets_host == c] == c).mean() for c in range(4)]
    assert counter.per_class_accuracy() == pytest.approx(expected, abs=0)


def test_cuda_memory_peak_sees_a_block_freed_before_any_sample(fake_cuda):
    """Sampling the pool's used bytes misses whatever an op allocates and frees in between;
    CuPy's memory hooks see every block, so the peak is the true one."""
    xp = backend.xp_for("cuda:0")

    def run(sample):
        sample()
        transient = xp.zeros(250_000, dtype=np.float32)  # 1 MB, gone before the next sample
        del transient
        sample()

    peak, method = measure.measure_peak(run, "cuda:0")
    assert peak == 1_000_000, method
