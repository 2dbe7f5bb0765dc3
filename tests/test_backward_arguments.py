"""``backward(grad=...)`` checks the upstream gradient it is handed, like PyTorch."""
import numpy as np
import pytest

import minigrad as mg


def test_explicit_grad_flows_like_a_vector_jacobian_product(device):
    x = mg.tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True, device=device)
    (x * x).backward(mg.tensor(np.array([1.0, 0.5, -1.0]), device=device))
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0, -6.0])


def test_grad_of_the_wrong_shape_is_rejected():
    y = mg.tensor(np.ones(3), requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"grad must match the output, shape \(3,\) dtype float64; "
                                         r"got shape \(2,\) dtype float64"):
        y.backward(np.ones(2))


def test_grad_of_another_dtype_is_rejected_not_cast():
    y = mg.tensor(np.ones(3), requires_grad=True) * 2.0
    with pytest.raises(ValueError, match=r"dtype float64; got shape \(3,\) dtype float32"):
        y.backward(mg.tensor(np.ones(3, dtype=np.float32)))


def test_implicit_grad_needs_a_scalar():
    y = mg.tensor(np.ones(3), requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match=r"only for a scalar output, got shape \(3,\)"):
        y.backward()


def test_backward_without_a_graph_says_why():
    with pytest.raises(RuntimeError, match=r"does not require grad"):
        mg.tensor([1.0]).backward()


def test_enable_grad_records_a_graph_inside_no_grad():
    x = mg.tensor([3.0], requires_grad=True)
    with mg.no_grad():
        assert not (x * 2.0).requires_grad
        with mg.enable_grad():
            y = x * x
    y.backward()
    assert x.grad.tolist() == [6.0]


def test_optimizer_closure_gets_a_graph_even_under_no_grad():
    from minigrad import optim
    w = mg.tensor([1.0], requires_grad=True)
    optimizer = optim.SGD([w], lr=0.5)

    def closure():
        optimizer.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with mg.no_grad():
        loss = optimizer.step(closure)
    assert loss.item() == 1.0 and w.tolist() == [0.0]  # w - 0.5 * 2w
