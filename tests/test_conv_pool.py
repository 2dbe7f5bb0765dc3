"""conv2d, max_pool2d and avg_pool2d against PyTorch and the plain reference (ops/conv_reference.py)
over drawn geometries, ties in max-pool included."""
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as torch_F
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.nn.functional as F
from minigrad.ops import conv_reference as reference

from strategies import allow_device_fixture, conv_shapes, float64_arrays, pool_configs
from torch_check import check_against_reference, check_against_torch


def conv_arrays(config, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((config["batch"], config["in_channels"], config["height"], config["width"]))
    weight = rng.standard_normal((config["out_channels"], config["in_channels"] // config["groups"],
                                  *config["kernel"]))
    bias = rng.standard_normal(config["out_channels"])
    return (x, weight, bias) if config["bias"] else (x, weight)


@allow_device_fixture
@given(config=conv_shapes(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_matches_torch(device, config, seed):
    geometry = dict(stride=config["stride"], padding=config["padding"], dilation=config["dilation"],
                    groups=config["groups"])
    arrays = conv_arrays(config, seed)
    check_against_torch(partial(F.conv2d, **geometry), partial(torch_F.conv2d, **geometry), *arrays, device=device)
    check_against_reference(partial(F.conv2d, **geometry), partial(reference.conv2d, **geometry), *arrays,
                            device=device)


def pool_input(config, values):
    return values((config["batch"], config["channels"], config["height"], config["width"]))


@pytest.mark.parametrize("pool", ["max_pool2d", "avg_pool2d"])
@allow_device_fixture
@given(config=pool_configs(), data=st.data())
def test_pooling_matches_torch(pool, device, config, data):
    x = data.draw(pool_input(config, float64_arrays), label="x")  # repeated values make ties
    geometry = dict(kernel_size=config["kernel"], stride=config["stride"], padding=config["padding"])
    check_against_torch(partial(getattr(F, pool), **geometry), partial(getattr(torch_F, pool), **geometry), x,
                        device=device)
    check_against_reference(partial(getattr(F, pool), **geometry), partial(getattr(reference, pool), **geometry), x,
                            device=device)


def integer_valued(shape):
    """Few distinct integers: many exact ties inside each window."""
    return float64_arrays(shape, -2, 2).map(np.round)


@allow_device_fixture
@given(config=pool_configs(), data=st.data())
def test_max_pool_gradient_with_exact_ties_equals_torch_exactly(device, config, data):
    x = data.draw(pool_input(config, integer_valued), label="x")
    geometry = dict(kernel_size=config["kernel"], stride=config["stride"], padding=config["padding"])
    out_shape = torch_F.max_pool2d(torch.tensor(x), **geometry).shape
    grad_out = np.asarray(data.draw(float64_arrays(tuple(out_shape), -3, 3), label="grad")).round()
    # Integer values and gradients: every sum is exact, so the gradients must be equal, not close.
    check_against_torch(partial(F.max_pool2d, **geometry), partial(torch_F.max_pool2d, **geometry),
                        x, device=device, grad_out=grad_out, rtol=0, atol=0)
    check_against_reference(partial(F.max_pool2d, **geometry), partial(reference.max_pool2d, **geometry),
                            x, device=device, grad_out=grad_out, rtol=0, atol=0)


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_of_a_constant_input_sends_each_window_gradient_to_its_first_pixel(device, stride):
    x = np.full((1, 1, 4, 4), 7.0)
    side = (4 - 2) // stride + 1
    grad_out = np.arange(1.0, 1.0 + side * side).reshape(1, 1, side, side)
    check_against_torch(lambda t: F.max_pool2d(t, 2, stride), lambda t: torch_F.max_pool2d(t, 2, stride), x,
                        device=device, grad_out=grad_out, rtol=0, atol=0)


def test_conv2d_of_a_known_case_equals_hand_computed_values(device):
    # A 3x3 image of ones and a 2x2 kernel of ones: every output is the sum of 4 ones.
    x = mg.tensor(np.ones((1, 1, 3, 3)), requires_grad=True, device=device)
    w = mg.tensor(np.ones((1, 1, 2, 2)), requires_grad=True, device=device)
    out = F.conv2d(x, w)
    np.testing.assert_array_equal(out.numpy(), np.full((1, 1, 2, 2), 4.0))
    out.sum().backward()
    # d(sum)/dx[i, j] = number of windows covering pixel (i, j): corners 1, edges 2, centre 4.
    np.testing.assert_array_equal(x.grad.numpy()[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])
    np.testing.assert_array_equal(w.grad.numpy(), np.full((1, 1, 2, 2), 4.0))
