"""The memory budget *predicted* from shapes alone: parameters and gradients, optimizer state
(from its hyper-parameters) and the activations PyTorch's autograd would save for the same
layers, without running anything.

Read next: ``memory/measure.py`` (the same quantities measured on a real step).
"""
from __future__ import annotations

from .. import backend, nn, optim
from ..ops.layout import output_size, pair

INDEX_BYTES = 8  # PyTorch keeps max-pool arg-max indices as int64


# ----------------------------------------------------------------------------- 1-3: from shapes
def parameter_and_gradient_bytes(model):
    """Each parameter's values, and its gradient's (same shape and dtype) if it is trained."""
    return sum(p.array.nbytes * (2 if p.requires_grad else 1) for p in model.parameters())


def state_arrays_per_parameter(optimizer, group):
    """How many parameter-sized arrays the optimizer keeps for each parameter of ``group``."""
    if isinstance(optimizer, optim.SGD):
        return 1 if group["momentum"] != 0 else 0  # the momentum buffer
    if isinstance(optimizer, optim.Adam):       # AdamW too
        return 2 + (1 if group["amsgrad"] else 0)  # m and v, + the running max of v
    raise TypeError(f"optimizer: expected SGD, Adam or AdamW to predict its state, got {type(optimizer).__name__}")


def predicted_optimizer_state_bytes(optimizer):
    if optimizer is None:
        return 0
    return sum(state_arrays_per_parameter(optimizer, group) * sum(p.array.nbytes for p in group["params"])
               for group in optimizer.param_groups)


STATE_WORDS = {0: "x 0: plain SGD keeps nothing", 1: "x 1: the momentum buffer",
               2: "x 2: Adam's m and v", 3: "x 3: Adam's m, v and amsgrad's max of v"}


def optimizer_words(optimizer):
    if optimizer is None:
        return "x 0: no optimizer"
    multiples = {state_arrays_per_parameter(optimizer, group) for group in optimizer.param_groups}
    return STATE_WORDS[multiples.pop()] if len(multiples) == 1 else "x 0 to 3, per parameter group"


# ----------------------------------------------------------------------------- 4. activations
class NotPredictable(TypeError):
    """The model or loss holds something whose saved tensors ``predict_activation_bytes`` does not know."""


def sequential_layers(model):
    """The layers of an nn.Sequential, nested ones flattened, in the order they run."""
    if not isinstance(model, nn.Sequential):
        raise NotPredictable(f"model: expected an nn.Sequential to predict from shapes, got {type(model).__name__}")
    for layer in model:
        yield from sequential_layers(layer) if isinstance(layer, nn.Sequential) else (layer,)


def layer_output_shape(layer, shape):
    """The shape ``layer`` turns an input of ``shape`` into."""
    if isinstance(layer, nn.Linear):
        return (*shape[:-1], layer.out_features)
    if isinstance(layer, nn.Conv2d):
        padded = (size + before + after for size, (before, after) in zip(shape[2:], layer.padding_amounts()))
        sizes = zip(padded, layer.kernel_size, layer.stride, layer.dilation)
        return (shape[0], layer.out_channels, *(output_size(size, k, s, 0, d) for size, k, s, d in sizes))
    if isinstance(layer, nn.layers._Pool2d):  # MaxPool2d and AvgPool2d
        kernel = pair(layer.kernel_size, "kernel_size")
        stride = kernel if layer.stride is None else pair(layer.stride, "stride")
        sizes = zip(shape[2:], kernel, stride, pair(layer.padding, "padding"))
        return (*shape[:2], *(output_size(size, k, s, p, 1) for size, k, s, p in sizes))
    if isinstance(layer, nn.Flatten):
        start, end = layer.start_dim % len(shape), layer.end_dim % len(shape)
        return (*shape[:start], numel(shape[start:end + 1]), *shape[end + 1:])
    if isinstance(layer, (nn.ReLU, nn.Tanh, nn.Sigmoid)):
        return shape
    raise NotPredictable(f"layer: expected Linear, Conv2d, MaxPool2d, AvgPool2d, Flatten, ReLU, Tanh or "
                         f"Sigmoid to predict from shapes, got {type(layer).__name__}")


def numel(shape):
    count = 1
    for size in shape:
        count *= size
    return count


def predict_activation_bytes(model, input_shape, dtype="float32", criterion=None):
    """Bytes PyTorch's autograd saves for backward in one forward pass (and loss) on a batch of
    ``input_shape``, for an nn.Sequential of Linear, Conv2d, Max/AvgPool2d, Flatten, ReLU,
    Tanh, Sigmoid, with CrossEntropyLoss (no class weights or smoothing) or MSELoss.

    What each layer saves, if a gradient flows through it:
      Linear, Conv2d: its input (for dW)  | ReLU, Tanh, Sigmoid: its output
      MaxPool2d: its input + int64 arg-max indices | AvgPool2d: its input | Flatten: nothing (a view)
      CrossEntropyLoss: the log-probabilities + the total weight (one value) | MSELoss: its input
    A value is counted once however many layers save it (ReLU's output is the next layer's
    input); the batch is part 3; and layers before the first one with trained parameters save
    nothing, since no gradient flows through them.
    """
    itemsize = backend.parse_dtype(dtype).itemsize
    shape, value, needs_grad = tuple(input_shape), 0, False  # value 0 is the batch
    saved_values, other_bytes = {}, 0  # value number -> its bytes; arrays that are no layer's output

    def save(value_number, value_shape):
        if value_number != 0:
            saved_values[value_number] = numel(value_shape) * itemsize

    for layer in sequential_layers(model):
        output = layer_output_shape(layer, shape)
        if isinstance(layer, nn.Flatten):
            shape = output  # a view of the same value
            continue
        values, index_bytes = layer_saved_values(layer, value, shape, output, needs_grad)
        for value_number, value_shape in values:
            save(value_number, value_shape)
        other_bytes += index_bytes
        needs_grad = needs_grad or any(p.requires_grad for p in layer.parameters())
        shape, value = output, value + 1
    if criterion is not None and needs_grad:
        other_bytes += loss_saved_bytes(criterion, shape, itemsize, save, value)
    return sum(saved_values.values()) + other_bytes


def layer_saved_values(layer, value, shape, output, needs_grad):
    """What ``layer`` (input: value number ``value`` of ``shape``) saves for backward:
    ([(value number, shape), ...], bytes of saved arg-max indices)."""
    if isinstance(layer, (nn.Linear, nn.Conv2d)) and layer.weight.requires_grad:
        return [(value, shape)], 0  # its input, for dW
    if not needs_grad:  # no gradient flows back through here
        return [], 0
    if isinstance(layer, (nn.ReLU, nn.Tanh, nn.Sigmoid)):
        return [(value + 1, output)], 0  # its output
    if isinstance(layer, nn.MaxPool2d):
        return [(value, shape)], numel(output) * INDEX_BYTES
    if isinstance(layer, nn.AvgPool2d):
        return [(value, shape)], 0
    return [], 0


def loss_saved_bytes(criterion, shape, itemsize, save, value):
    """Bytes the loss saves that are no layer's output (and ``save``s the ones that are)."""
    if isinstance(criterion, nn.CrossEntropyLoss) and criterion.weight is None and not criterion.label_smoothing:
        return (numel(shape) + 1) * itemsize  # log_softmax's output, nll_loss's total weight
    if isinstance(criterion, nn.MSELoss):
        save(value, shape)
        return 0
    raise NotPredictable(f"criterion: expected CrossEntropyLoss (no weight, no label smoothing) or MSELoss "
                         f"to predict from shapes, got {criterion!r}")


def predicted_or_none(model, input_shape, dtype, criterion):
    try:
        return predict_activation_bytes(model, input_shape, dtype, criterion)
    except NotPredictable:  # the measurement alone is reported
        return None
