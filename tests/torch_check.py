"""The one helper every op and layer test goes through: minigrad vs PyTorch, and vs finite differences.

``check_against_torch`` runs a minigrad function and its PyTorch counterpart on the same float64
arrays, sends the same random upstream gradient back through both, and compares the forward
values and the gradient of every floating-point input to rtol 1e-10.

``check_gradient`` compares minigrad's backward with central differences in float64; it is
independent of PyTorch, so it also proves ops PyTorch spells differently.
"""
import numpy as np
import torch

import minigrad as mg

RTOL = 1e-10
ATOL = 1e-12  # round-off on values near zero, where a relative bound means nothing


def to_minigrad(array, device):
    """A leaf on ``device``; floating arrays require grad, integer/bool arrays (targets, masks) don't."""
    return mg.tensor(array, requires_grad=array.dtype.kind == "f", device=device)


def to_torch(array):
    return torch.tensor(array, requires_grad=array.dtype.kind == "f")


def upstream_gradient(shape, seed=0):
    """The random d(loss)/d(output) both frameworks backpropagate (same array for both)."""
    return np.random.default_rng(seed).standard_normal(shape)


def gradient_or_zeros(tensor_grad, shape):
    """An input the output does not depend on gets no gradient; count that as zeros."""
    return np.zeros(shape) if tensor_grad is None else tensor_grad


def assert_close(actual, expected, what, rtol=RTOL, atol=ATOL):
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, PyTorch gives {expected.shape}"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def check_against_torch(mg_fn, torch_fn, *arrays, device="cpu", grad_out=None, rtol=RTOL, atol=ATOL):
    """Assert ``mg_fn(*tensors)`` equals ``torch_fn(*tensors)`` in value and in every input's gradient.

    ``arrays`` are NumPy arrays (floating ones should be float64); ``grad_out`` defaults to a
    random array of the output's shape. Returns the minigrad output for extra checks.
    """
    mg_inputs = [to_minigrad(array, device) for array in arrays]
    torch_inputs = [to_torch(array) for array in arrays]
    mg_out = mg_fn(*mg_inputs)
    torch_out = torch_fn(*torch_inputs)
    assert mg_out.device == mg_inputs[0].device, "the output must stay on the inputs' device"
    assert_close(mg_out.numpy(), torch_out.detach().numpy(), "forward", rtol, atol)
    if not torch_out.requires_grad:
        return mg_out
    grad_out = upstream_gradient(torch_out.shape) if grad_out is None else grad_out
    mg_out.backward(mg.tensor(grad_out, dtype=mg_out.dtype, device=mg_out.device))
    torch_out.backward(torch.tensor(grad_out, dtype=torch_out.dtype))
    for position, (mg_input, torch_input) in enumerate(zip(mg_inputs, torch_inputs)):
        if not torch_input.requires_grad:
            continue
        mg_grad = None if mg_input.grad is None else mg_input.grad.numpy()
        torch_grad = None if torch_input.grad is None else torch_input.grad.numpy()
        assert mg_grad is None or mg_grad.dtype == arrays[position].dtype, f"grad of input {position}: dtype"
        assert_close(gradient_or_zeros(mg_grad, arrays[position].shape),
                     gradient_or_zeros(torch_grad, arrays[position].shape),
                     f"gradient of input {position}", rtol, atol)
    return mg_out


# ----------------------------------------------------------------------------- finite differences
def numerical_gradients(mg_fn, arrays, grad_out, eps=1e-6):
    """d(sum(grad_out * f(x)))/dx by central differences, one float64 element at a time."""
    def weighted_output(*values):
        out = mg_fn(*[mg.tensor(v) for v in values]).numpy()
        return float((grad_out * out).sum())

    gradients = []
    for position, array in enumerate(arrays):
        if array.dtype.kind != "f":
            gradients.append(None)
            continue
        gradient = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            shifted = [a.copy() for a in arrays]
            shifted[position][index] = array[index] + eps
            above = weighted_output(*shifted)
            shifted[position][index] = array[index] - eps
            below = weighted_output(*shifted)
            gradient[index] = (above - below) / (2 * eps)
        gradients.append(gradient)
    return gradients


def check_gradient(mg_fn, *arrays, device="cpu", rtol=1e-5, atol=1e-7, eps=1e-6):
    """Assert minigrad's backward agrees with central differences (float64) for every float input.

    Inputs should stay at least ``eps`` away from kinks (relu at 0, ties of max) where the
    derivative is one-sided.
    """
    mg_inputs = [to_minigrad(array, device) for array in arrays]
    mg_out = mg_fn(*mg_inputs)
    grad_out = upstream_gradient(mg_out.shape, seed=1)
    mg_out.backward(mg.tensor(grad_out, dtype=mg_out.dtype, device=mg_out.device))
    expected = numerical_gradients(mg_fn, arrays, grad_out, eps)
    for position, (mg_input, numerical) in enumerate(zip(mg_inputs, expected)):
        if numerical is None:
            continue
        analytic = gradient_or_zeros(None if mg_input.grad is None else mg_input.grad.numpy(), numerical.shape)
        np.testing.assert_allclose(analytic, numerical, rtol=rtol, atol=atol,
                                   err_msg=f"backward vs central differences, input {position}")


# ----------------------------------------------------------------------------- fast path vs reference
def check_against_reference(fast_fn, reference_fn, *arrays, device="cpu", grad_out=None, rtol=RTOL, atol=ATOL):
    """Assert a fast minigrad kernel equals its plain reference (ops/conv_reference.py) in value and
    in every input's gradient; the reference's backward is autograd's, so the two share no code."""
    fast_inputs = [to_minigrad(array, device) for array in arrays]
    reference_inputs = [to_minigrad(array, device) for array in arrays]
    fast_out, reference_out = fast_fn(*fast_inputs), reference_fn(*reference_inputs)
    assert_close(fast_out.numpy(), reference_out.numpy(), "forward vs reference", rtol, atol)
    grad_out = upstream_gradient(reference_out.shape) if grad_out is None else grad_out
    for out in (fast_out, reference_out):
        out.backward(mg.tensor(grad_out, dtype=out.dtype, device=out.device))
    for position, (fast_input, reference_input) in enumerate(zip(fast_inputs, reference_inputs)):
        if fast_input.requires_grad:
            shape = arrays[position].shape
            assert_close(gradient_or_zeros(None if fast_input.grad is None else fast_input.grad.numpy(), shape),
                         gradient_or_zeros(None if reference_input.grad is None else reference_input.grad.numpy(), shape),
                         f"gradient of input {position} vs reference", rtol, atol)
