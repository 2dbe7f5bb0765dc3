"""Bad input fails early with ValueError/TypeError naming the argument, the expected and the actual value."""
import re

import numpy as np
import pytest

import minigrad as mg
import minigrad.nn as nn
import minigrad.nn.functional as F


def images(*shape):
    return mg.tensor(np.zeros(shape), dtype="float32")


# ----------------------------------------------------------------------------- conv and pooling
def test_conv2d_rejects_an_input_that_is_not_4d():
    with pytest.raises(ValueError, match=r"input must be 4-d \(N, C, H, W\), got shape \(3, 5, 5\)"):
        F.conv2d(images(3, 5, 5), images(2, 3, 3, 3))


def test_conv2d_layer_rejects_a_flattened_batch():
    with pytest.raises(ValueError, match=r"input must be 4-d.*got shape \(2, 75\)"):
        nn.Conv2d(3, 4, 3)(images(2, 75))


def test_conv2d_rejects_wrong_input_channels_naming_both_counts():
    with pytest.raises(ValueError, match=r"input channels: expected 3 .*got 1 \(input \(2, 1, 5, 5\)\)"):
        nn.Conv2d(3, 4, 3)(images(2, 1, 5, 5))


def test_conv2d_with_groups_expects_in_channels_over_groups_per_filter():
    with pytest.raises(ValueError, match=r"input channels: expected 4 \(weight \(2, 2, 1, 1\), groups=2\), got 6"):
        F.conv2d(images(1, 6, 3, 3), images(2, 2, 1, 1), groups=2)


@pytest.mark.parametrize("stride", [-1, 0, (1, -2)])
def test_conv2d_rejects_a_non_positive_stride(stride):
    with pytest.raises(ValueError, match=r"stride must be positive, got \("):
        F.conv2d(images(1, 1, 5, 5), images(1, 1, 3, 3), stride=stride)


def test_conv2d_rejects_negative_padding_and_a_kernel_larger_than_the_input():
    with pytest.raises(ValueError, match=r"padding must be non-negative, got \(-1, -1\)"):
        F.conv2d(images(1, 1, 5, 5), images(1, 1, 3, 3), padding=-1)
    with pytest.raises(ValueError, match=r"input height 2 \(padding 0\) is too small for kernel 3"):
        F.conv2d(images(1, 1, 2, 5), images(1, 1, 3, 3))


def test_conv2d_rejects_mixed_dtypes_naming_both():
    with pytest.raises(TypeError, match="input dtype float64 differs from weight dtype float32"):
        F.conv2d(mg.tensor(np.zeros((1, 1, 3, 3))), images(1, 1, 3, 3))


def test_conv2d_rejects_a_stride_that_is_not_an_int_or_pair():
    with pytest.raises(TypeError, match=r"stride: expected an int or a pair of ints, got 1.5"):
        F.conv2d(images(1, 1, 3, 3), images(1, 1, 3, 3), stride=1.5)


@pytest.mark.parametrize("pool", [F.max_pool2d, F.avg_pool2d])
@pytest.mark.parametrize("stride", [-1, 0])
def test_pooling_rejects_a_non_positive_stride(pool, stride):
    with pytest.raises(ValueError, match=rf"stride must be positive, got \({stride}, {stride}\)"):
        pool(images(1, 1, 4, 4), 2, stride=stride)


@pytest.mark.parametrize("layer", [nn.MaxPool2d, nn.AvgPool2d])
def test_pooling_layers_reject_bad_rank_and_oversized_padding(layer):
    with pytest.raises(ValueError, match=r"input must be 4-d \(N, C, H, W\), got shape \(4, 4\)"):
        layer(2)(images(4, 4))
    with pytest.raises(ValueError, match=r"padding must be between 0 and half the kernel \(2, 2\), got \(2, 2\)"):
        layer(2, padding=2)(images(1, 1, 4, 4))


def test_pooling_rejects_a_kernel_larger_than_the_input():
    with pytest.raises(ValueError, match="input height 2 is smaller than kernel 3"):
        F.max_pool2d(images(1, 1, 2, 5), 3)


# ----------------------------------------------------------------------------- matmul and linear
@pytest.mark.parametrize("shape_a, shape_b", [((2, 3), (4, 5)), ((3,), (4,)), ((5, 2, 3), (2, 2))])
def test_matmul_rejects_mismatched_inner_dimensions_naming_both_shapes(shape_a, shape_b):
    inner_a, inner_b = shape_a[-1], shape_b[0] if len(shape_b) == 1 else shape_b[-2]
    message = f"inner dimensions must match, got shapes {shape_a} and {shape_b} ({inner_a} != {inner_b})"
    with pytest.raises(ValueError, match=re.escape(message)):
        images(*shape_a) @ images(*shape_b)


def test_linear_layer_rejects_the_wrong_number_of_features():
    with pytest.raises(ValueError, match=r"input features: expected 4 .*got 3 \(input \(2, 3\)\)"):
        nn.Linear(4, 2)(images(2, 3))


@pytest.mark.parametrize("features", [0, -3, 2.5])
def test_linear_layer_rejects_a_non_positive_size(features):
    with pytest.raises(ValueError, match=rf"in_features: expected a positive int, got {features}"):
        nn.Linear(features, 2)


# ----------------------------------------------------------------------------- losses
def logits(n=3, classes=4):
    return mg.tensor(np.zeros((n, classes)), dtype="float32", requires_grad=True)


@pytest.mark.parametrize("bad_label", [4, 7, -1])
def test_cross_entropy_rejects_labels_out_of_range_naming_the_label(bad_label):
    target = mg.tensor(np.array([0, bad_label, 1]))
    with pytest.raises(ValueError, match=rf"target: expected class indices in \[0, 3\].*got {bad_label}"):
        F.cross_entropy(logits(), target)


def test_cross_entropy_accepts_ignore_index_outside_the_class_range():
    loss = F.cross_entropy(logits(), mg.tensor(np.array([0, -100, 1])))
    np.testing.assert_allclose(loss.item(), np.log(4), rtol=1e-6)


def test_cross_entropy_rejects_float_labels_naming_the_dtype():
    with pytest.raises(TypeError, match="target must hold integer class indices, got dtype float32"):
        F.cross_entropy(logits(), mg.tensor([0.0, 1.0, 2.0]))


def test_cross_entropy_rejects_mismatched_target_and_weight_shapes():
    with pytest.raises(ValueError, match=r"target must have shape \(3,\) to match input \(3, 4\), got \(2,\)"):
        F.cross_entropy(logits(), mg.tensor(np.array([0, 1])))
    with pytest.raises(ValueError, match=r"weight must have shape \(4,\), got \(3,\)"):
        F.cross_entropy(logits(), mg.tensor(np.array([0, 1, 2])), weight=mg.tensor(np.ones(3), dtype="float32"))
    with pytest.raises(ValueError, match=r"input must be 2-d \(N, C\), got shape \(3,\)"):
        F.cross_entropy(mg.tensor(np.zeros(3)), mg.tensor(np.array([0, 1, 2])))


@pytest.mark.parametrize("make_loss", [
    lambda: F.cross_entropy(logits(), mg.tensor(np.array([0, 1, 2])), reduction="avg"),
    lambda: F.mse_loss(logits(), logits(), reduction="avg"),
    lambda: nn.CrossEntropyLoss(reduction="avg"),
    lambda: nn.MSELoss(reduction="avg"),
])
def test_losses_reject_an_unknown_reduction(make_loss):
    with pytest.raises(ValueError, match=r"reduction: expected one of \('none', 'sum', 'mean'\), got 'avg'"):
        make_loss()


def test_cross_entropy_rejects_label_smoothing_outside_zero_one():
    with pytest.raises(ValueError, match=r"label_smoothing: expected a value in \[0, 1\], got 1.5"):
        F.cross_entropy(logits(), mg.tensor(np.array([0, 1, 2])), label_smoothing=1.5)


def test_mse_loss_refuses_to_broadcast_naming_both_shapes():
    with pytest.raises(ValueError, match=r"target shape must equal input shape \(3, 4\), got \(3, 1\)"):
        F.mse_loss(logits(), logits(3, 1))


# ----------------------------------------------------------------------------- other arguments
@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_rejects_p_outside_zero_one(p):
    with pytest.raises(ValueError, match=rf"p must be a probability in \[0, 1\], got {p}"):
        F.dropout(logits(), p)
    with pytest.raises(ValueError, match=rf"p must be a probability in \[0, 1\], got {p}"):
        nn.Dropout(p)


def test_reductions_reject_an_axis_out_of_range():
    with pytest.raises(ValueError, match=r"axis: expected an axis in \[-2, 1\] for a 2-d tensor, got 2"):
        logits().sum(axis=2)
    with pytest.raises(ValueError, match=r"repeated axis in \(0, -2\)"):
        logits().mean(axis=(0, -2))


def test_reshape_rejects_a_shape_with_another_element_count():
    with pytest.raises(ValueError, match=r"cannot view a tensor of shape \(3, 4\) \(12 elements\) as shape \(5, -1\)"):
        logits().reshape(5, -1)


def test_softmax_rejects_a_dim_out_of_range():
    with pytest.raises(ValueError, match=r"dim: expected an axis in \[-2, 1\] for a 2-d tensor, got 2"):
        logits().softmax(2)


def test_requires_grad_on_integers_is_a_type_error():
    with pytest.raises(TypeError, match="only floating-point tensors can require grad, got dtype int64"):
        mg.tensor([1, 2], requires_grad=True)


def test_backward_rejects_an_upstream_gradient_of_the_wrong_shape():
    out = logits() * 2
    with pytest.raises(ValueError, match=r"grad must match the output, shape \(3, 4\) dtype float32; got shape \(4, 3\)"):
        out.backward(np.ones((4, 3), dtype=np.float32))


def test_load_state_dict_errors_name_the_key_and_shapes():
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"missing:? \['bias'\]"):
        model.load_state_dict({"weight": np.zeros((2, 3))})
    with pytest.raises(ValueError, match=r"weight'?: expected shape \(2, 3\), got \(3, 2\)"):
        model.load_state_dict({"weight": np.zeros((3, 2)), "bias": np.zeros(2)})


# ----------------------------------------------------------------------------- review findings
@pytest.mark.parametrize("call, message", [
    (lambda x: x.permute(0, 5), r"dims: expected an axis in \[-2, 1\] for a 2-d tensor, got 5"),
    (lambda x: x.transpose(0, 2), r"dim1: expected an axis in \[-2, 1\] for a 2-d tensor, got 2"),
    (lambda x: x.flatten(5), r"start_dim: expected an axis in \[-2, 1\] for a 2-d tensor, got 5"),
    (lambda x: x.flatten(1, 0), r"start_dim: expected an axis not after end_dim=0 \(axis 0\), got 1"),
    (lambda x: x.sum(axis=np.int64(2)), r"axis: expected an axis in \[-2, 1\] for a 2-d tensor, got np.int64\(2\)"),
])
def test_out_of_range_axes_raise_instead_of_wrapping(call, message):
    with pytest.raises(ValueError, match=message):
        call(logits().reshape(3, 4))


@pytest.mark.parametrize("left, right, dtypes", [
    ("float32", "float64", "float32 and float64"),
    ("int64", "float32", "int64 and float32"),
])
def test_matmul_refuses_mixed_dtypes_naming_both(left, right, dtypes):
    a, b = mg.zeros(2, 3, dtype=left), mg.zeros(3, 2, dtype=right)
    with pytest.raises(TypeError, match=f"matmul: expected input and other to have the same dtype, got {dtypes}"):
        a @ b


def test_a_float32_linear_layer_refuses_a_float64_batch_instead_of_running_in_float64():
    with pytest.raises(TypeError, match="linear: expected input and weight to have the same dtype, got float64 and float32"):
        nn.Linear(3, 2)(mg.tensor(np.zeros((4, 3))))
    with pytest.raises(TypeError, match="linear: expected weight and bias to have the same dtype, got float32 and float64"):
        F.linear(images(4, 3), images(2, 3), mg.zeros(2, dtype="float64"))


@pytest.mark.parametrize("weight_shape, bias_shape, message", [
    ((2, 3), (1,), r"linear: bias: expected shape \(2,\), got \(1,\)"),          # was added to both outputs
    ((2, 3), (2, 1), r"linear: bias: expected shape \(2,\), got \(2, 1\)"),
    ((1, 2, 3), None, r"linear: weight must be 2-d \(out_features, in_features\), got shape \(1, 2, 3\)"),
])
def test_linear_refuses_a_bias_or_weight_of_the_wrong_shape_instead_of_broadcasting_it(weight_shape, bias_shape,
                                                                                       message):
    bias = None if bias_shape is None else images(*bias_shape)
    with pytest.raises(ValueError, match=message):
        F.linear(images(4, 3), images(*weight_shape), bias)


def test_linear_refuses_a_0d_input_naming_it():
    with pytest.raises(ValueError, match=r"linear: input features: expected 3 .* got a 0-d input \(input \(\)\)"):
        F.linear(mg.tensor(np.float32(1.0)), images(2, 3))


def test_conv2d_refuses_a_bias_whose_dtype_differs_from_the_weight():
    with pytest.raises(TypeError, match="bias dtype float64 differs from weight dtype float32"):
        F.conv2d(images(1, 1, 3, 3), images(2, 1, 3, 3), mg.zeros(2, dtype="float64"))


def test_mean_of_an_integer_tensor_is_a_type_error_naming_the_dtype():
    with pytest.raises(TypeError, match="mean: expected a floating-point tensor, got dtype int64"):
        mg.tensor([1, 2, 4]).mean()


FLOATS = np.zeros((3, 4), dtype=np.float32)  # a bare NumPy array where a Tensor belongs
IMAGES = np.zeros((1, 1, 3, 4), dtype=np.float32)


@pytest.mark.parametrize("call, argument", [
    (lambda: F.cross_entropy(logits(), np.array([0, 1, 2])), "target"),
    (lambda: F.cross_entropy(FLOATS, mg.tensor([0, 1, 2])), "input"),
    (lambda: F.mse_loss(logits(), FLOATS), "target"),
    (lambda: F.mse_loss(FLOATS, logits()), "input"),
    (lambda: F.linear(FLOATS, logits()), "input"),
    (lambda: F.conv2d(IMAGES, images(1, 1, 3, 3)), "input"),
    (lambda: F.max_pool2d(IMAGES, 2), "input"),
    (lambda: F.avg_pool2d(IMAGES, 2), "input"),
])
def test_functional_entry_points_refuse_a_numpy_array_naming_the_argument(call, argument):
    with pytest.raises(TypeError, match=f"{argument}: expected a Tensor, got ndarray"):
        call()


def test_cross_entropy_normalizer_accepts_a_plain_numpy_target():
    assert F.cross_entropy_normalizer(np.array([0, 1, -100])) == 2.0  # two counted targets


def test_pad_refuses_a_fractional_value_for_an_integer_tensor():
    with pytest.raises(ValueError, match=r"value: expected a whole number to pad a int64 tensor, got 0.5"):
        mg.pad(mg.tensor([1, 2]), ((1, 1),), 0.5)
    assert mg.pad(mg.tensor([1, 2]), ((1, 0),), 3.0).tolist() == [3, 1, 2]  # a whole float is fine


@pytest.mark.parametrize("move", [lambda target: mg.zeros(2).to(target), lambda target: nn.Linear(2, 2).to(target)],
                         ids=["tensor", "module"])
def test_to_rejects_a_target_that_is_neither_device_nor_dtype_naming_both(move):
    with pytest.raises(TypeError, match=r"to: expected a device \('cpu', 'cuda' or 'cuda:N'\) or a numeric dtype.*'nonsense'"):
        move("nonsense")
    with pytest.raises(TypeError, match=r"to: expected a device .* or a numeric dtype.*str"):
        move(str)
