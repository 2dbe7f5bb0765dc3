"""Every op's backward against central differences (float64), independent of PyTorch,
and proof that the checker fails on a deliberately wrong derivative."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.autograd import Function

from strategies import allow_device_fixture
from torch_check import check_gradient


def normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def positive(*shape):
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def away_from_kinks(*shape, kinks=(0.0,), margin=0.05):
    """Values at least ``margin`` from every kink, so a finite difference never straddles one."""
    def draw(rng):
        values = rng.standard_normal(shape) * 1.5
        for kink in kinks:
            too_close = np.abs(values - kink) < margin
            values[too_close] = kink + np.copysign(margin, values[too_close] - kink + 1e-300)
        return values
    return draw


def distinct(*shape):
    """All values different by at least 0.1: a max has one clear winner."""
    return lambda rng: (rng.permutation(int(np.prod(shape))) * 0.1 + rng.uniform(0, 0.01)).reshape(shape)


def labels(num_classes, count, ignored):
    """Class labels, the first one never ``ignored`` (all ignored makes the mean loss 0/0)."""
    counted_classes = [c for c in range(num_classes) if c != ignored]
    return lambda rng: np.concatenate([rng.choice(counted_classes, 1), rng.integers(0, num_classes, count - 1)])


def seeded_dropout(x):
    mg.manual_seed(0)  # the same mask for every finite-difference evaluation
    return F.dropout(x, 0.5, training=True)


# name -> (function of minigrad tensors, makers of its input arrays)
OPS = {
    "add (broadcast)": (lambda a, b: a + b, [normal(2, 3), normal(3)]),
    "sub (broadcast)": (lambda a, b: a - b, [normal(2, 1), normal(1, 3)]),
    "mul (broadcast)": (lambda a, b: a * b, [normal(2, 3), normal(2, 1)]),
    "div (broadcast)": (lambda a, b: a / b, [normal(2, 3), positive(3)]),
    "pow tensor": (lambda a, b: a ** b, [positive(2, 3), normal(2, 3)]),
    "pow scalar": (lambda a: a ** 3, [normal(2, 3)]),
    "pow fractional": (lambda a: a ** 0.5, [positive(2, 3)]),
    "neg": (lambda a: -a, [normal(2, 3)]),
    "exp": (lambda a: a.exp(), [normal(2, 3)]),
    "log": (lambda a: a.log(), [positive(2, 3)]),
    "sqrt": (lambda a: a.sqrt(), [positive(2, 3)]),
    "tanh": (lambda a: a.tanh(), [normal(2, 3)]),
    "sigmoid": (lambda a: a.sigmoid(), [normal(2, 3)]),
    "relu": (lambda a: a.relu(), [away_from_kinks(2, 3)]),
    "abs": (lambda a: a.abs(), [away_from_kinks(2, 3)]),
    "clip": (lambda a: a.clip(-1.0, 1.0), [away_from_kinks(2, 3, kinks=(-1.0, 1.0))]),
    "where": (lambda a, b: mg.where(mg.tensor(np.array([True, False, True]), device=a.device), a, b),
              [normal(2, 3), normal(3)]),
    "matmul (batched, broadcast)": (lambda a, b: a @ b, [normal(2, 1, 2, 3), normal(3, 3, 2)]),
    "matmul (vectors)": (lambda a, b: a @ b, [normal(3), normal(3)]),
    "sum": (lambda a: a.sum(axis=(0, 2)), [normal(2, 3, 2)]),
    "mean": (lambda a: a.mean(axis=1, keepdims=True), [normal(2, 3, 2)]),
    "max": (lambda a: a.max(axis=-1).values, [distinct(3, 4)]),
    "reshape": (lambda a: a.reshape(3, -1), [normal(2, 3, 2)]),
    "permute": (lambda a: a.permute(2, 0, 1), [normal(2, 3, 2)]),
    "flatten": (lambda a: a.flatten(1), [normal(2, 3, 2)]),
    "getitem (slices)": (lambda a: a[1:, ::2], [normal(3, 4)]),
    "getitem (repeated indices)": (lambda a: a[mg.tensor(np.array([2, 0, 2]))], [normal(3, 2)]),
    "concatenate": (lambda a, b: mg.concatenate([a, b], axis=1), [normal(2, 1), normal(2, 3)]),
    "stack": (lambda a, b: mg.stack([a, b], axis=-1), [normal(2, 3), normal(2, 3)]),
    "pad": (lambda a: mg.pad(a, ((1, 0), (0, 2)), 3.0), [normal(2, 3)]),
    "softmax": (lambda a: a.softmax(0), [normal(3, 2)]),
    "log_softmax": (lambda a: a.log_softmax(1), [normal(2, 4)]),
    "linear": (F.linear, [normal(3, 4), normal(2, 4), normal(2)]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1, dilation=(1, 2), groups=2),
               [normal(1, 4, 5, 5), normal(2, 2, 2, 2), normal(2)]),
    "max_pool2d (overlapping)": (lambda x: F.max_pool2d(x, 2, stride=1, padding=1), [distinct(1, 2, 3, 3)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 3, stride=2, padding=1), [normal(1, 2, 4, 5)]),
    "dropout": (seeded_dropout, [normal(3, 4)]),
    "cross_entropy": (lambda x, t: F.cross_entropy(x, t, weight=mg.tensor(np.array([0.5, 2.0, 1.0]), device=x.device),
                                                   ignore_index=1, label_smoothing=0.2),
                      [normal(4, 3), labels(3, 4, ignored=1)]),
    "mse_loss": (F.mse_loss, [normal(2, 3), normal(2, 3)]),
}


@pytest.mark.parametrize("name", OPS)
@allow_device_fixture
@given(seed=st.integers(0, 2**32 - 1))
def test_backward_matches_central_differences(name, device, seed):
    fn, makers = OPS[name]
    rng = np.random.default_rng(seed)
    check_gradient(fn, *(make(rng) for make in makers), device=device)


class SquareWithWrongDerivative(Function):
    """forward a^2, backward claims a (the factor 2 is missing): the checker must notice."""

    def forward(self, a):
        self.save_for_backward(a)
        return a * a

    def backward(self, grad):  # WRONG on purpose: d(a^2)/da is 2a
        (a,) = self.saved
        return grad * a


class SquareWithRightDerivative(SquareWithWrongDerivative):
    def backward(self, grad):  # d(a^2)/da = 2a
        (a,) = self.saved
        return grad * 2 * a


def test_the_checker_passes_a_correct_backward():
    check_gradient(SquareWithRightDerivative.apply, np.array([0.5, -1.5, 2.0]))


def test_the_checker_fails_a_wrong_backward():
    with pytest.raises(AssertionError, match="central differences"):
        check_gradient(SquareWithWrongDerivative.apply, np.array([0.5, -1.5, 2.0]))


def test_the_torch_comparison_fails_a_wrong_backward_too():
    import torch
    from torch_check import check_against_torch
    with pytest.raises(AssertionError, match="gradient of input 0"):
        check_against_torch(SquareWithWrongDerivative.apply, torch.square, np.array([0.5, -1.5, 2.0]))
