"""Nothing silent: each case where bad input or a fault once gave a wrong result, lost work or a
vague error, one test per case, compared with PyTorch where PyTorch has a behaviour.

Silent wrong results
- test_optimizer_step_between_forward_and_backward_raises_naming_the_op
- test_in_place_write_to_an_op_output_saved_for_backward_raises
- test_in_place_operator_under_no_grad_on_a_saved_tensor_raises_as_torch
- test_unchanged_saved_values_pass_the_version_check
- test_every_in_place_write_of_minigrad_bumps_the_version
- test_grad_of_the_wrong_shape_is_refused_on_assignment
- test_grad_of_the_wrong_dtype_or_type_is_refused_on_assignment
- test_string_and_object_data_are_refused_naming_the_dtype
- test_relu_gradient_at_nan_is_one_as_torch
- test_relu_gradient_is_exactly_torchs_for_inf_and_nan_gradients_on_a_batch_last_view
- test_max_gradient_goes_to_the_nan_as_torch
- test_max_pool_sends_nothing_but_zeros_to_losers_even_for_inf_and_nan_gradients
- test_selecting_ops_send_exact_zeros_elsewhere_even_for_inf_and_nan_gradients
- test_module_load_state_dict_changes_nothing_when_any_entry_is_bad
- test_ops_that_need_floats_refuse_integer_inputs_naming_the_dtype_as_torch
- test_class_losses_refuse_a_weight_of_another_dtype_as_torch
- test_pad_refuses_a_value_its_integer_dtype_cannot_hold_as_torch
- test_python_integers_that_do_not_fit_the_dtype_are_refused_as_torch
- test_randint_refuses_a_range_its_integer_dtype_cannot_hold_as_torch
- test_results_take_pytorchs_dtype_where_numpy_would_widen_to_float64
- test_clip_bounds_given_as_numpy_numbers_keep_the_tensors_dtype_as_torchs_python_numbers

Training runs that lose work
- test_a_run_diverging_in_its_last_step_keeps_the_last_good_checkpoint
- test_an_out_path_that_is_a_file_is_refused_before_training
- test_an_unwritable_out_path_is_refused_before_training
- test_train_and_test_images_of_different_shapes_are_refused_before_training
- test_a_failed_checkpoint_write_names_the_file_and_keeps_the_previous_one
- test_a_run_removes_its_own_stale_temporary_files
- test_resume_with_nothing_left_to_do_says_so_and_writes_nothing
- test_the_loss_plot_is_not_claimed_without_matplotlib
- test_an_all_ignored_batch_is_not_divergence_and_steps_as_torch

Vague errors
- test_linear_accepts_numpy_integers
- test_conv2d_rejects_a_non_positive_kernel_or_negative_channels_naming_them
- test_optimizer_load_state_dict_checks_the_structure_first
- test_module_load_state_dict_given_a_list_names_the_type
- test_a_checkpoint_missing_an_entry_names_the_file_and_the_entry
- test_checkpoint_metadata_without_its_state_names_the_file
- test_an_idx_header_promising_more_data_than_the_file_holds_names_the_file
"""
import errno
import gzip
import os
import re
import sys

import numpy as np
import pytest
import torch

import minigrad as mg
import minigrad.nn as nn
import minigrad.optim as optim
from minigrad import checkpoint, cli, train
from minigrad.data import DataLoader, TensorDataset
from minigrad.data.datasets import IDX_IMAGES_MAGIC, read_idx
from test_datasets import idx_bytes, write_mnist_files
from torch_check import check_against_torch


def two_layer_net():
    mg.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


# ----------------------------------------------------------------------------- in-place changes
def test_optimizer_step_between_forward_and_backward_raises_naming_the_op():
    model = two_layer_net()
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = mg.tensor(np.random.default_rng(0).standard_normal((5, 3)), dtype="float32")
    (model(x) ** 2).sum().backward()          # gradients exist, so step() changes the weights
    loss = (model(x) ** 2).sum()
    opt.step()
    opt.zero_grad()
    with pytest.raises(RuntimeError, match=r"modified by an inplace operation.*input 1 of Linear .*version 2; expected version 1"):
        loss.backward()


def test_in_place_write_to_an_op_output_saved_for_backward_raises():
    x = mg.tensor([0.5, 1.0], requires_grad=True)
    y = x.exp()                               # Exp saves its output
    y.array[...] = 0
    y._bump_version()                         # what every in-place op of minigrad does
    with pytest.raises(RuntimeError, match=r"output of Exp.*version 1; expected version 0"):
        y.sum().backward()


@pytest.mark.parametrize("method, args", [("mul_", (2.0,)), ("zero_", ()), ("add_", (1.0,))])
def test_in_place_operator_under_no_grad_on_a_saved_tensor_raises_as_torch(method, args):
    for lib in (mg, torch):
        w = lib.tensor([1.0, 2.0], requires_grad=True)
        x = lib.tensor([3.0, 4.0], requires_grad=True)
        loss = (w * x).sum()                  # Mul saved both
        with lib.no_grad():
            getattr(w, method)(*args)
        with pytest.raises(RuntimeError, match=r"modified by an inplace operation"):
            loss.backward()


def test_unchanged_saved_values_pass_the_version_check():
    model = two_layer_net()
    opt = optim.SGD(model.parameters(), lr=0.1)
    x = mg.tensor(np.random.default_rng(0).standard_normal((5, 3)), dtype="float32")
    for _ in range(2):                        # step after backward, as a training loop does
        opt.zero_grad()
        (model(x) ** 2).sum().backward()
        opt.step()
    w = mg.tensor([1.0, 2.0], requires_grad=True)
    z = w * 3                                 # only the constant is saved, not w: no error (as torch)
    w.array += 1
    w._bump_version()
    z.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [3.0, 3.0])


def test_every_in_place_write_of_minigrad_bumps_the_version():
    layer = nn.Linear(2, 2)
    weight = layer.weight
    start = weight._version
    assert start > 0, "init writes the parameter in place"
    layer.load_state_dict(layer.state_dict())
    assert weight._version == start + 1
    opt = optim.Adam(layer.parameters())
    layer(mg.ones((1, 2))).sum().backward()
    grad = weight.grad
    layer(mg.ones((1, 2))).sum().backward()   # accumulation writes .grad in place
    assert grad._version == 1
    opt.step()
    assert weight._version == start + 2
    opt.zero_grad(set_to_none=False)
    assert grad._version == 2
    assert weight.detach()._version == weight._version, "detach shares the counter, as in torch"


# ----------------------------------------------------------------------------- .grad assignment
def test_grad_of_the_wrong_shape_is_refused_on_assignment():
    layer = nn.Linear(3, 2)
    with pytest.raises(RuntimeError, match=r"assign a gradient of shape \(3,\) to a tensor of shape \(2, 3\)"):
        layer.weight.grad = mg.ones(3)
    assert layer.weight.grad is None
    with pytest.raises(RuntimeError):   # torch refuses it too
        torch.nn.Linear(3, 2).weight.grad = torch.ones(3)


def test_grad_of_the_wrong_dtype_or_type_is_refused_on_assignment():
    weight = nn.Linear(3, 2).weight
    with pytest.raises(RuntimeError, match=r"gradient with dtype float64 to a tensor with dtype float32"):
        weight.grad = mg.ones((2, 3), dtype="float64")
    with pytest.raises(TypeError, match=r"expected a Tensor or None, got ndarray"):
        weight.grad = np.ones((2, 3), dtype=np.float32)
    weight.grad = mg.ones((2, 3))
    weight.grad = None


# ----------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("data, kind", [(["1", "2"], "<U1"), (np.array([object(), 1], dtype=object), "object"),
                                        ([1 + 2j], "complex128")])
def test_string_and_object_data_are_refused_naming_the_dtype(data, kind):
    with pytest.raises(TypeError, match=rf"expected bool, integer or floating-point data, got dtype {kind}"):
        mg.tensor(data)
    with pytest.raises((TypeError, ValueError)):  # torch refuses strings and objects as well
        if kind != "complex128":
            torch.tensor(data)
        else:
            raise TypeError


# ----------------------------------------------------------------------------- NaN as PyTorch
def test_relu_gradient_at_nan_is_one_as_torch():
    x = np.array([1.0, np.nan, -1.0, 0.0])
    check_against_torch(lambda t: t.relu(), torch.relu, x, grad_out=np.array([2.0, 3.0, np.nan, 5.0]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_gradient_is_exactly_torchs_for_inf_and_nan_gradients_on_a_batch_last_view(dtype):
    """ReLU's backward clears bits with a mask: an inf or NaN gradient at a dead unit must still
    become 0 and a live NaN unit must pass its gradient, in any memory layout and float width."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 2)).astype(dtype).transpose(3, 0, 1, 2)  # batch-last memory
    x[0, 0, 0, :4] = [0.0, -1.0, np.nan, 2.0]
    grad_out = rng.standard_normal(x.shape).astype(dtype)
    grad_out[0, 0, 0, :4] = [np.inf, np.nan, -np.inf, np.nan]
    ours = mg.tensor(x, requires_grad=True)
    ours.relu().backward(mg.tensor(grad_out))
    theirs = torch.tensor(x, requires_grad=True)
    theirs.relu().backward(torch.tensor(grad_out))
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())


@pytest.mark.parametrize("largest", [True, False])
def test_max_gradient_goes_to_the_nan_as_torch(largest):
    x = np.array([[1.0, np.nan], [3.0, np.nan]])
    if largest:
        check_against_torch(lambda t: t.max(), lambda t: t.max(), x)
        check_against_torch(lambda t: t.amax(axis=1), lambda t: t.amax(1), x)  # amax: NaN grads, as torch
    else:
        check_against_torch(lambda t: t.min(), lambda t: t.min(), x)


@pytest.mark.parametrize("chunk_elements", [None, 2], ids=["one-chunk", "chunk-per-channel"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel, stride", [(2, 2), (3, 2), (2, 1)], ids=["tiling", "overlapping", "stride-1"])
@pytest.mark.parametrize("size", [8, 7], ids=["windows-cover-input", "last-row-unused"])
def test_max_pool_sends_nothing_but_zeros_to_losers_even_for_inf_and_nan_gradients(device, monkeypatch, dtype,
                                                                                   kernel, stride, chunk_elements, size):
    """The gradient was routed as grad * is_winner, so an inf or NaN gradient made every losing
    pixel of its window NaN (0 * inf); PyTorch leaves them exactly 0. With a chunk per channel
    (per row of output when 2x2 windows cover the 8x8 input), chunks with a finite gradient take
    the product (or, covering windows, the routing by remainder) while the others take the exact mask."""
    if chunk_elements is not None:
        monkeypatch.setattr(mg.backend, "chunk_elements", lambda xp: chunk_elements)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, size, size)).astype(dtype)
    x[0, 0, 0, :3] = [np.nan, 1.0, np.nan]                          # NaN windows route separately
    out_shape = torch.nn.functional.max_pool2d(torch.tensor(x), kernel, stride).shape
    grad_out = rng.standard_normal(out_shape).astype(dtype)
    grad_out[0, 0, 0, :3] = [np.inf, np.nan, -np.inf]
    grad_out[1, 2, -1, -2:] = [np.nan, np.inf]
    ours = mg.tensor(x, requires_grad=True, device=device)
    mg.nn.functional.max_pool2d(ours, kernel, stride).backward(mg.tensor(grad_out, device=device))
    theirs = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(theirs, kernel, stride).backward(torch.tensor(grad_out))
    # Same inf, NaN and exact zeros; a pixel that wins several overlapping windows sums their
    # gradients in another order than PyTorch, hence rtol (atol 0 keeps zeros exact).
    rtol = 1e-5 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=rtol, atol=0)


@pytest.mark.parametrize("op", ["clamp-min", "clamp-max", "max-dim", "max-all", "min-dim"])
def test_selecting_ops_send_exact_zeros_elsewhere_even_for_inf_and_nan_gradients(device, op):
    """clamp and max/min (with or without dim) multiplied the gradient by their 0/1 mask, so an inf
    or NaN gradient (sqrt or log of a clamped 0, of a maximum of 0) made the unselected values NaN;
    PyTorch selects: they get exactly 0."""
    x = np.array([[-1.0, 0.0, 2.0], [0.0, -3.0, -0.5]])
    grad_out = {"clamp-min": [[1.0, np.inf, 2.0], [np.nan, 1.0, -np.inf]],
                "clamp-max": [[np.inf, 1.0, np.nan], [1.0, -np.inf, 2.0]],
                "max-dim": [np.inf, np.nan], "max-all": np.inf, "min-dim": [-np.inf, np.nan]}[op]

    def apply(module, t):
        if op == "clamp-min":
            return t.clamp(min=0.0)
        if op == "clamp-max":
            return t.clamp(max=0.0)
        if op == "max-all":
            return t.max()
        values = (t.max(1) if op == "max-dim" else t.min(1))
        return values[0] if module is torch else values.values
    ours = mg.tensor(x, requires_grad=True, device=device)
    apply(mg, ours).backward(mg.tensor(np.array(grad_out), device=device))
    theirs = torch.tensor(x, requires_grad=True)
    apply(torch, theirs).backward(torch.tensor(np.array(grad_out)))
    np.testing.assert_array_equal(ours.grad.numpy(), theirs.grad.numpy())
    assert (ours.grad.numpy() == 0).any(), "the unselected values get exactly 0"


# ----------------------------------------------------------------------------- load_state_dict
@pytest.mark.parametrize("bad_bias", [np.array(["a", "b"]), [0.0, 0.0], None])
def test_module_load_state_dict_changes_nothing_when_any_entry_is_bad(bad_bias):
    model = nn.Linear(3, 2)
    before = {name: value.numpy().copy() for name, value in model.state_dict().items()}
    state = {"weight": np.ones((2, 3)), "bias": bad_bias}  # the weight comes first and is fine
    with pytest.raises((TypeError, ValueError), match=r"'bias'"):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), before[name])


def test_module_load_state_dict_given_a_list_names_the_type():
    with pytest.raises(TypeError, match=r"parameter 'weight': expected a Tensor or an array, got list"):
        nn.Linear(3, 2).load_state_dict({"weight": [[0.0] * 3] * 2, "bias": np.zeros(2)})


# ----------------------------------------------------------------------------- dtypes
INTEGER_INPUT_CASES = {   # op: (minigrad call, the same call in PyTorch), on an integer input
    "avg_pool2d": (lambda x: mg.nn.functional.avg_pool2d(x, 2), lambda x: torch.nn.functional.avg_pool2d(x, 2)),
    "dropout": (lambda x: mg.nn.functional.dropout(x, 0.5), lambda x: torch.nn.functional.dropout(x, 0.5)),
    "softmax": (lambda x: mg.softmax(x, 1), lambda x: torch.softmax(x, 1)),
    "log_softmax": (lambda x: mg.log_softmax(x, 1), lambda x: torch.log_softmax(x, 1)),
    "cross_entropy": (lambda x: mg.nn.functional.cross_entropy(x[:, :, 0, 0], mg.tensor([0, 1])),
                      lambda x: torch.nn.functional.cross_entropy(x[:, :, 0, 0], torch.tensor([0, 1]))),
}


@pytest.mark.parametrize("op", sorted(INTEGER_INPUT_CASES))
@pytest.mark.parametrize("dtype", [np.uint8, np.int64])
def test_ops_that_need_floats_refuse_integer_inputs_naming_the_dtype_as_torch(op, dtype):
    # avg_pool2d summed four 200s in uint8 (800 wraps to 32: a mean of 8.0), dropout scaled by
    # int(1/(1-p)) = 0 (inf and nan), softmax and the loss gave float64.
    mg_call, torch_call = INTEGER_INPUT_CASES[op]
    values = np.full((2, 3, 2, 2), 200, dtype=dtype)
    if (op, dtype) == ("avg_pool2d", np.int64):   # PyTorch averages int64 into int64, truncating
        assert torch_call(torch.tensor(values)).dtype == torch.int64
    else:
        with pytest.raises((RuntimeError, NotImplementedError)):
            torch_call(torch.tensor(values))
    with pytest.raises(TypeError, match=f"{op}: input must be floating point, got dtype {np.dtype(dtype)}"):
        mg_call(mg.tensor(values))


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_class_losses_refuse_a_weight_of_another_dtype_as_torch(loss):
    # A float64 weight was cast to the float32 input's dtype without a word.
    logits, target, weight = np.zeros((2, 3), np.float32), np.array([0, 1]), np.ones(3)
    with pytest.raises(RuntimeError, match="expected scalar type Float but found Double"):
        getattr(torch.nn.functional, loss)(torch.tensor(logits), torch.tensor(target), weight=torch.tensor(weight))
    with pytest.raises(TypeError, match=f"{loss}: weight: expected the input's dtype float32, got float64"):
        getattr(mg.nn.functional, loss)(mg.tensor(logits), mg.tensor(target), weight=mg.tensor(weight))


@pytest.mark.parametrize("dtype, value, limits", [(np.uint8, -1, "0, 255"), (np.uint8, 256, "0, 255"),
                                                  (np.int32, 1e20, "-2147483648, 2147483647")])
def test_pad_refuses_a_value_its_integer_dtype_cannot_hold_as_torch(dtype, value, limits):
    # -1 padded a uint8 tensor with 255; 1e20 in int32 was NumPy's OverflowError about a C long.
    with pytest.raises(RuntimeError, match="without overflow"):
        torch.nn.functional.pad(torch.zeros(2, dtype=torch.from_numpy(np.zeros(1, dtype)).dtype), (1, 1), value=value)
    with pytest.raises(ValueError, match=re.escape(f"value: expected a number in [{limits}] to pad a")):
        mg.pad(mg.tensor(np.zeros(2, dtype)), ((1, 1),), value=value)
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max                  # the dtype's own limits still pad
    assert mg.pad(mg.tensor(np.zeros(1, dtype)), ((1, 1),), value=low).numpy().tolist() == [low, 0, low]
    assert mg.pad(mg.tensor(np.zeros(1, dtype)), ((1, 1),), value=high).numpy().tolist() == [high, 0, high]


@pytest.mark.parametrize("data, dtype, bad", [([2**63], None, 2**63), ([0, 300], "uint8", 300),
                                              ([-129, 0], "int8", -129), ([0, 2**63], None, 2**63),
                                              ([1, 2**63], "int64", 2**63), ([[2**64]], None, 2**64)])
def test_python_integers_that_do_not_fit_the_dtype_are_refused_as_torch(data, dtype, bad):
    # [2**63] became -2**63 in int64, [0, 300] became [0, 44] in uint8; NumPy holds [0, 2**63]
    # as float64 (a float32 tensor, or -2**63 as int64) and [2**64] as objects.
    with pytest.raises((RuntimeError, ValueError), match="overflow|Overflow"):
        torch.tensor(data, dtype=None if dtype is None else getattr(torch, dtype))
    with pytest.raises(ValueError, match=rf"data: expected integers in \[.*\] for dtype {dtype or 'int64'}, got {bad}"):
        mg.tensor(data, dtype=dtype)
    assert mg.tensor([0.5, 2**63]).dtype == torch.tensor([0.5, 2**63]).numpy().dtype  # beside a float: floats
    assert mg.tensor([2**63 - 1]).numpy().tolist() == [2**63 - 1]      # the largest int64 still fits


PROMOTION_CASES = {   # case: a function of (module of functions, tensor maker) run by both frameworks
    "where(int64, 0.5)": lambda F, T: F["where"](T([True, False]), T([1, 2]), 0.5),
    "where(float32, int64)": lambda F, T: F["where"](T([True, False]), T([1.5, 2.5]), T([1, 2])),
    "clip(int64, 0.5, 2.5)": lambda F, T: F["clip"](T([1, 2, 3]), 0.5, 2.5),
    "clip(float32, float64 scalars)": lambda F, T: F["clip"](T([0.2, 0.7, 3.0]), np.float64(0), np.float64(1)),
    "bce_with_logits(float32, int64 weight)": lambda F, T: F["bce_logits"](T([0.5, -1.0]), T([0.0, 1.0]),
                                                                            weight=T([1, 2])),
    "bce_with_logits(float32, float64 pos_weight)": lambda F, T: F["bce_logits"](
        T([0.5, -1.0]), T([0.0, 1.0]), pos_weight=T(np.array([2.0, 3.0]))),
    "bce(float32, float64 weight)": lambda F, T: F["bce"](T([0.3, 0.6]), T([0.0, 1.0]), weight=T(np.ones(2))),
}
MG_FUNCTIONS = {"where": mg.where, "clip": mg.clip, "bce": mg.nn.functional.binary_cross_entropy,
                "bce_logits": mg.nn.functional.binary_cross_entropy_with_logits}
TORCH_FUNCTIONS = {"where": torch.where, "clip": torch.clamp, "bce": torch.nn.functional.binary_cross_entropy,
                   "bce_logits": torch.nn.functional.binary_cross_entropy_with_logits}


@pytest.mark.parametrize("case", sorted(PROMOTION_CASES))
def test_results_take_pytorchs_dtype_where_numpy_would_widen_to_float64(case):
    # NumPy's where, clip and products gave float64 here (an int64 array beside a float32 one, or
    # a NumPy float64 scalar under NumPy 2's rules); PyTorch keeps float32.
    expected = PROMOTION_CASES[case](TORCH_FUNCTIONS, torch.tensor)
    result = PROMOTION_CASES[case](MG_FUNCTIONS, mg.tensor)
    assert str(result.dtype) == str(expected.dtype).removeprefix("torch.") == "float32"
    np.testing.assert_allclose(result.numpy(), expected.numpy(), rtol=1e-6)


@pytest.mark.parametrize("low, high", [(0, 300), (-1, 5)])
def test_randint_refuses_a_range_its_integer_dtype_cannot_hold_as_torch(low, high):
    # randint(0, 300, dtype=uint8) drew int64 values and cast them: 300 wrapped around to 44.
    with pytest.raises(RuntimeError, match="out of bounds"):
        torch.randint(low, high, (4,), dtype=torch.uint8)
    with pytest.raises(ValueError, match=rf"randint: expected low and high - 1 in \[0, 255\] for dtype uint8, "
                                         rf"got low={low}, high={high}"):
        mg.randint(low, high, (4,), dtype="uint8")
    assert set(mg.randint(0, 256, (4000,), dtype="uint8").numpy().tolist()) <= set(range(256))


@pytest.mark.parametrize("values, low, high", [([1, 7, -3], np.array(0), np.array(5)), ([1, 7, -3], np.int32(0), 5),
                                              ([0.2, 7.0, -3.0], np.array(0.0), np.array(5.0))])
def test_clip_bounds_given_as_numpy_numbers_keep_the_tensors_dtype_as_torchs_python_numbers(values, low, high):
    # A 0-d array bound counts by its dtype: an int64 tensor clipped to np.array(5) stays int64
    # (it became float32), a float32 one clipped to np.array(5.0) stays float32 (NumPy 2: float64).
    expected = torch.clamp(torch.tensor(values), low.item(), high if isinstance(high, int) else high.item())
    result = mg.clip(mg.tensor(values), low, high)
    assert str(result.dtype) == str(expected.dtype).removeprefix("torch.")
    np.testing.assert_array_equal(result.numpy(), expected.numpy())


# ----------------------------------------------------------------------------- vague errors
def test_linear_accepts_numpy_integers():
    layer = nn.Linear(np.int64(4), np.int32(3))
    assert layer.weight.shape == torch.nn.Linear(np.int64(4), np.int32(3)).weight.shape == (3, 4)
    assert type(layer.in_features) is int


@pytest.mark.parametrize("args, message", [
    ((1, 2, 0), r"kernel_size: expected positive sizes, got \(0, 0\)"),
    ((1, 2, -3), r"kernel_size: expected positive sizes, got \(-3, -3\)"),
    ((-1, 2, 3), r"in_channels: expected a positive int, got -1"),
    ((1, -2, 3), r"out_channels: expected a positive int, got -2"),
])
def test_conv2d_rejects_a_non_positive_kernel_or_negative_channels_naming_them(args, message):
    with pytest.raises(ValueError, match=message):
        nn.Conv2d(*args)


@pytest.mark.parametrize("make", [optim.Adam, lambda p: optim.RMSprop(p, momentum=0.9, centered=True),
                                  optim.Adagrad, optim.Adadelta])
def test_optimizer_load_state_dict_checks_the_structure_first(make):
    model = two_layer_net()
    opt = make(model.parameters())
    (model(mg.ones((1, 3))) ** 2).sum().backward()
    opt.step()
    saved = opt.state_dict()
    no_params = {"state": saved["state"], "param_groups": [{k: v for k, v in saved["param_groups"][0].items()
                                                            if k != "params"}]}
    with pytest.raises(ValueError, match=r"param_groups\[0\]: expected a dict with a 'params' list"):
        make(model.parameters()).load_state_dict(no_params)
    no_step = {"state": {0: {k: v for k, v in saved["state"][0].items() if k != "step"}},
               "param_groups": saved["param_groups"]}
    with pytest.raises(ValueError, match=r"state\[0\]: missing 'step'"):
        make(model.parameters()).load_state_dict(no_step)


# ----------------------------------------------------------------------------- training runs
TINY = ["--no-progress", "--limit-train", "48", "--limit-test", "30", "--batch-size", "8"]  # 6 steps an epoch


def run_cli(*args):
    return cli.main(["train", *TINY, *args])


def files_in(directory):
    """{name: bytes} of everything in ``directory`` (temporary files included)."""
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def poison_step(monkeypatch, value, at_call):
    """Make the optimizer's ``at_call``-th step (1-based) write ``value`` into the first parameter."""
    calls = []
    original = optim.Adam.step

    def step(self, closure=None):
        result = original(self, closure)
        calls.append(1)
        if len(calls) == at_call:
            self.param_groups[0]["params"][0].array[...] = value
        return result
    monkeypatch.setattr(optim.Adam, "step", step)


@pytest.mark.filterwarnings("ignore:overflow encountered", "ignore:invalid value encountered")
@pytest.mark.parametrize("value, what", [(np.inf, r"parameter '\S+' holds non-finite values"),
                                         (1e38, r"the test loss is (nan|inf)")])
def test_a_run_diverging_in_its_last_step_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys, value, what):
    assert run_cli("--epochs", "1", "--out", str(tmp_path)) == 0
    good = files_in(tmp_path)
    poison_step(monkeypatch, value, at_call=6)   # the last step of epoch 2: every batch loss stays finite
    assert run_cli("--resume", str(tmp_path), "--epochs", "2") == 1
    err = capsys.readouterr().err
    assert re.search(r"training diverged at epoch 1 \(0-based\).*" + what, err), err
    assert "checkpoint.npz in " + str(tmp_path) + " still holds epoch 1" in err
    assert files_in(tmp_path) == good            # checkpoint, metrics and plot untouched; no .tmp


def test_an_out_path_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    out = tmp_path / "results"
    out.write_text("not a directory")
    with pytest.raises(SystemExit) as exit_info:
        run_cli("--epochs", "1", "--out", str(out))
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert f"argument --out: {out} is a file, not a directory" in captured.err
    assert captured.out == "" and out.read_text() == "not a directory"   # nothing trained, nothing written
    with pytest.raises(SystemExit):
        run_cli("--epochs", "1", "--out", str(out / "inside"))
    assert f"argument --out: {out} is a file, not a directory" in capsys.readouterr().err


def test_an_unwritable_out_path_is_refused_before_training(capsys):
    with pytest.raises(SystemExit) as exit_info:   # /proc refuses new files, even to root
        run_cli("--epochs", "1", "--out", "/proc/minigrad-run")
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "argument --out: cannot write in /proc" in captured.err and captured.out == ""


def test_train_and_test_images_of_different_shapes_are_refused_before_training(tmp_path, capsys):
    write_mnist_files(tmp_path, train_count=16, test_count=4)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as file:
        file.write(idx_bytes(np.zeros((4, 14, 14), dtype=np.uint8)))
    assert cli.main(["train", "--no-progress", "--dataset", "mnist", "--data-dir", str(tmp_path),
                     "--epochs", "1", "--batch-size", "8"]) == 1
    captured = capsys.readouterr()
    assert "test images are (1, 14, 14) but train images are (1, 28, 28)" in captured.err
    assert "epoch" not in captured.out


def test_a_failed_checkpoint_write_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch, capsys):
    assert run_cli("--epochs", "1", "--out", str(tmp_path)) == 0
    good = files_in(tmp_path)

    def disk_full(file, **arrays):
        file.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(checkpoint.np, "savez", disk_full)
    assert run_cli("--resume", str(tmp_path), "--epochs", "2") == 1
    err = capsys.readouterr().err
    path = tmp_path / "checkpoint.npz"
    assert f"could not write {path} (No space left on device); the previous checkpoint there is intact" in err
    assert "Traceback" not in err and files_in(tmp_path) == good


def test_a_run_removes_its_own_stale_temporary_files(tmp_path):
    stale = [".checkpoint.npz.k2j3h4.tmp", ".metrics.json.x8d7.tmp", ".loss.png.a1.tmp"]
    for name in stale + [".notes.txt.tmp", "checkpoint.npz.tmp"]:
        (tmp_path / name).write_bytes(b"left by a killed run")
    assert run_cli("--epochs", "1", "--out", str(tmp_path)) == 0
    left = set(os.listdir(tmp_path))
    assert not left & set(stale)
    assert {".notes.txt.tmp", "checkpoint.npz.tmp"} <= left   # not the run's own: kept


@pytest.mark.parametrize("epochs", ["1", "2"])
def test_resume_with_nothing_left_to_do_says_so_and_writes_nothing(tmp_path, capsys, epochs):
    assert run_cli("--epochs", "2", "--out", str(tmp_path)) == 0
    (tmp_path / ".checkpoint.npz.old.tmp").write_bytes(b"")
    before = files_in(tmp_path)
    capsys.readouterr()
    assert cli.main(["train", "--no-progress", "--resume", str(tmp_path), "--epochs", epochs]) == 0
    printed = capsys.readouterr().out
    assert f"nothing to do: {tmp_path / 'checkpoint.npz'} has already trained 2 epochs (--epochs {epochs})" in printed
    assert "wrote" not in printed and files_in(tmp_path) == before


def test_the_loss_plot_is_not_claimed_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # `import matplotlib` raises ImportError
    assert run_cli("--epochs", "1", "--out", str(tmp_path)) == 0
    printed = capsys.readouterr().out
    assert f"wrote metrics.json and checkpoint.npz to {tmp_path} (no loss.png: matplotlib is not installed)" in printed
    assert not (tmp_path / "loss.png").exists()


def test_an_all_ignored_batch_is_not_divergence_and_steps_as_torch():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((12, 3)).astype(np.float32)
    labels = rng.integers(0, 2, size=12)
    labels[4:8] = -100                                  # the second batch of 4 counts nothing
    mg.manual_seed(0)
    model = nn.Linear(3, 2)
    twin = torch.nn.Linear(3, 2)
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(model.weight.numpy()))
        twin.bias.copy_(torch.from_numpy(model.bias.numpy()))
    opt, twin_opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9), torch.optim.SGD(twin.parameters(), lr=0.5,
                                                                                          momentum=0.9)
    stats = train.train_one_epoch(model, nn.CrossEntropyLoss(), opt, DataLoader(TensorDataset(images, labels),
                                                                                batch_size=4))
    losses = []
    for start in range(0, 12, 4):                       # PyTorch's loop: NaN loss, zero gradient, steps on
        twin_opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(images[start:start + 4])),
                                                 torch.from_numpy(labels[start:start + 4]))
        loss.backward()
        twin_opt.step()
        losses.append(loss.item())
    assert np.isnan(losses[1])
    np.testing.assert_allclose(model.weight.numpy(), twin.weight.detach().numpy(), rtol=1e-5, atol=1e-6)
    assert stats["loss"] == pytest.approx((losses[0] + losses[2]) / 2, rel=1e-5)  # the NaN batch is skipped
    assert stats["steps"] == 3


# ----------------------------------------------------------------------------- vague errors (files)
@pytest.mark.parametrize("entry", ["rng", "config", "model"])
def test_a_checkpoint_missing_an_entry_names_the_file_and_the_entry(tmp_path, capsys, entry):
    assert run_cli("--epochs", "1", "--out", str(tmp_path)) == 0
    path = tmp_path / "checkpoint.npz"
    state = checkpoint.load(path)
    checkpoint.save(path, {key: value for key, value in state.items() if key != entry})
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--resume", str(tmp_path), "--epochs", "2"])
    assert exit_info.value.code == 2
    assert f"argument --resume: {path}: the checkpoint has no {entry!r} entry" in capsys.readouterr().err
    del state["config"]["lr"]
    checkpoint.save(path, state)
    with pytest.raises(SystemExit):
        cli.main(["train", "--resume", str(tmp_path), "--epochs", "2"])
    assert f"{path}: the checkpoint's config has no 'lr' entry" in capsys.readouterr().err


def test_checkpoint_metadata_without_its_state_names_the_file(tmp_path):
    path = tmp_path / "checkpoint.npz"
    meta = np.frombuffer(b'{"format": "minigrad-checkpoint", "version": 1}', dtype=np.uint8)
    np.savez(path, __meta__=meta)
    with pytest.raises(ValueError, match=rf"{path}: corrupt checkpoint metadata: no 'state' entry"):
        checkpoint.load(path)


def test_an_idx_header_promising_more_data_than_the_file_holds_names_the_file(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    header = IDX_IMAGES_MAGIC.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in (2 ** 31, 2 ** 31, 4))
    path.write_bytes(header)                            # 2^64 pixels promised (NumPy's int64 product: 0)
    with pytest.raises(ValueError, match=rf"{path}: IDX size mismatch: header says shape \(2147483648, "
                                         rf"2147483648, 4\), i.e. 18446744073709551632 bytes, but the file has 16"):
        read_idx(str(path), IDX_IMAGES_MAGIC)
