"""Where training memory goes: ``budget(model, optimizer, inputs, targets, criterion)``.

One training step holds four kinds of arrays (the seed article's list, with its formulas):

1. parameters and their gradients:  number of parameters x bytes per value, and as much again
   for the gradients;
2. optimizer state:                 number of parameters x bytes per value x 0 for plain SGD,
   x 1 with momentum (the buffer), x 2 for Adam/AdamW (m and v), + 1 with amsgrad (max v);
3. the data batch:                  batch size x values per sample x bytes per value, + targets;
4. activations saved for backward:  about the sum over layers of (values the layer keeps for
   its backward) x batch size x bytes per value.

Parts 1-3 follow from shapes alone. Part 4 is both *measured* (run one forward pass and add up
the arrays its ops saved, walking the graph from the loss) and *predicted* from shapes (what
PyTorch's autograd saves for the same layers; see ``predict_activation_bytes``). The two differ
in their details: e.g. PyTorch's max-pool keeps int64 arg-max indices where minigrad's keeps
its output, and minigrad's conv keeps a batch-last copy of its input.

Gradient accumulation runs forward and backward one micro-batch at a time, and backward frees
what the micro-batch saved before the next one starts: part 4 scales with the micro-batch
size, not with the batch size, while parts 1-3 stay the same.
"""
from __future__ import annotations

import contextlib
import tracemalloc
from dataclasses import dataclass

from . import backend, nn, optim, random
from .autograd import is_grad_enabled
from .ops.conv import output_size, pair
from .tensor import Tensor
from .train import micro_batch_slices

MIB = 2 ** 20
INDEX_BYTES = 8  # PyTorch keeps max-pool arg-max indices as int64


# ----------------------------------------------------------------------------- the report
@dataclass(frozen=True)
class MemoryBudget:
    """The four parts in bytes, each prediction next to its measurement."""

    parameters: int                        # 1. parameters + their gradients
    optimizer_state: int                   # 2. predicted from the optimizer's hyper-parameters
    batch: int                             # 3. inputs + targets of the whole batch
    activations: int                       # 4. measured: arrays saved for backward by one micro-batch
    activations_predicted: int | None      # 4. from shapes: what PyTorch saves (None: layers not known)
    graph_held: int                        # all one micro-batch's graph keeps alive (saved + loss)
    optimizer_state_measured: int | None   # from optimizer.state (None before the first step)
    peak: int                              # measured peak of forward + backward over the whole batch
    peak_method: str
    parameter_count: int
    optimizer_words: str                   # e.g. "x 2: Adam's m and v"
    batch_size: int
    micro_batch_size: int                  # the largest micro-batch
    values_per_sample: int
    dtype: str

    @property
    def total(self):
        return self.parameters + self.optimizer_state + self.batch + self.activations

    def table(self):
        """The four parts in MiB, each with the formula that gives it."""
        item = backend.parse_dtype(self.dtype).itemsize
        measured_state = "not measured: no optimizer step yet" if self.optimizer_state_measured is None \
            else f"measured in optimizer.state: {mib(self.optimizer_state_measured)}"
        predicted = "n/a (not an nn.Sequential of known layers)" if self.activations_predicted is None \
            else mib(self.activations_predicted)
        rows = [
            ("1. parameters + gradients", self.parameters,
             f"{self.parameter_count:,} parameters x {item} bytes, and as much again for the gradients"),
            ("2. optimizer state", self.optimizer_state,
             f"parameters x {item} bytes {self.optimizer_words} ({measured_state})"),
            ("3. data batch", self.batch,
             f"batch {self.batch_size} x {self.values_per_sample:,} values x {item} bytes, + targets"),
            (f"4. activations (micro-batch {self.micro_batch_size})", self.activations,
             f"sum over layers of values saved for backward x {self.micro_batch_size} x {item} bytes"),
        ]
        lines = [f"Training memory: {self.parameter_count:,} {self.dtype} parameters, batch {self.batch_size}"
                 f" in micro-batches of {self.micro_batch_size}",
                 f"{'part':<34}{'MiB':>9}  how it is counted"]
        lines += [f"{name:<34}{mib(size):>9}  {formula}" for name, size, formula in rows]
        lines += [f"{'   total of 1-4':<34}{mib(self.total):>9}",
                  f"   activations predicted from shapes (what PyTorch saves): {predicted} MiB",
                  f"   held by minigrad's graph until backward (saved arrays + loss): {mib(self.graph_held)} MiB",
                  f"   measured peak of forward + backward ({self.peak_method}): {mib(self.peak)} MiB"]
        return "\n".join(lines)

    __str__ = table


def mib(num_bytes):
    return f"{num_bytes / MIB:.3f}"


# ----------------------------------------------------------------------------- the entry point
def budget(model, optimizer, inputs, targets=None, criterion=None, micro_batch_size=None):
    """Report the four parts of training memory for one step of ``model`` on this batch.

    ``optimizer`` may be None (no state); ``targets`` and ``criterion`` go together (without
    them the graph ends at ``outputs.sum()``, whose backward saves nothing); ``micro_batch_size``
    is what ``train.accumulate`` takes. The model runs forward and backward on the batch to
    measure part 4 and the peak; its ``.grad``s and the random state are put back afterwards.
    """
    inputs, targets = check_budget_arguments(model, optimizer, inputs, targets, criterion)
    parts = micro_batch_slices(inputs.shape[0], micro_batch_size)
    micro_batch = max(parts, key=lambda part: part.stop - part.start)  # the largest one
    micro_batch_size = micro_batch.stop - micro_batch.start
    optimizer_state = predicted_optimizer_state_bytes(optimizer)  # raises for an unknown optimizer
    activations, graph_held, peak, peak_method = measure_activations(model, criterion, inputs, targets, parts,
                                                                     micro_batch)
    return MemoryBudget(
        parameters=parameter_and_gradient_bytes(model),
        optimizer_state=optimizer_state,
        batch=inputs.array.nbytes + (0 if targets is None else targets.array.nbytes),  # all of it, always
        activations=activations,
        activations_predicted=predicted_or_none(model, (micro_batch_size, *inputs.shape[1:]),
                                                inputs.dtype, criterion),
        graph_held=graph_held,
        optimizer_state_measured=measured_optimizer_state_bytes(optimizer),
        peak=peak, peak_method=peak_method,
        parameter_count=sum(p.numel() for p in model.parameters()),
        optimizer_words=optimizer_words(optimizer),
        batch_size=inputs.shape[0], micro_batch_size=micro_batch_size,
        values_per_sample=inputs.numel() // inputs.shape[0], dtype=str(inputs.dtype))


def measure_activations(model, criterion, inputs, targets, parts, micro_batch):
    """Part 4 from one forward pass on ``micro_batch``, then the peak of the whole accumulation."""
    with scratch_gradients(model):
        loss = loss_of(model, criterion, inputs, targets, micro_batch)
        batch = (inputs, targets)
        activations, graph_held = saved_activation_bytes(loss, batch), graph_held_bytes(loss, batch)
        loss.backward()  # frees the graph before the peak is measured
        model.zero_grad()
        peak, peak_method = measure_peak(lambda sample: forward_backward_all(
            model, criterion, inputs, targets, parts, sample), inputs.device)
    return activations, graph_held, peak, peak_method


def check_budget_arguments(model, optimizer, inputs, targets, criterion):
    """Validate before anything runs; returns inputs and targets as Tensors."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, optim.Optimizer):
        raise TypeError(f"optimizer: expected a minigrad.optim optimizer or None, got {type(optimizer).__name__}")
    inputs = as_tensor(inputs, "inputs")
    if inputs.ndim == 0 or inputs.shape[0] == 0:
        raise ValueError(f"inputs: expected a batch with at least one sample, got shape {inputs.shape}")
    if (targets is None) != (criterion is None):
        raise ValueError(f"targets and criterion: expected both or neither, got targets="
                         f"{'None' if targets is None else 'a tensor'} and criterion={type(criterion).__name__}")
    if targets is not None:
        targets = as_tensor(targets, "targets")
        if targets.shape[:1] != inputs.shape[:1]:
            raise ValueError(f"targets: expected {inputs.shape[0]} samples like inputs {inputs.shape}, "
                             f"got shape {targets.shape}")
    if not is_grad_enabled():
        raise RuntimeError("budget: measuring activations needs a graph; call it outside mg.no_grad()")
    return inputs, targets


def as_tensor(value, name):
    if isinstance(value, Tensor):
        return value
    if isinstance(value, backend.np.ndarray) or backend.is_cupy_array(value):
        return Tensor(value)
    raise TypeError(f"{name}: expected a Tensor or an array, got {type(value).__name__}")


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


def measured_optimizer_state_bytes(optimizer):
    """Bytes of the arrays in ``optimizer.state``; None while it is empty (before the first step)."""
    if optimizer is None or not optimizer.state:
        return None
    return sum(value.nbytes for entry in optimizer.state.values() for value in entry.values()
               if hasattr(value, "shape"))  # arrays only: Adam's step count is a Python int


STATE_WORDS = {0: "x 0: plain SGD keeps nothing", 1: "x 1: the momentum buffer",
               2: "x 2: Adam's m and v", 3: "x 3: Adam's m, v and amsgrad's max of v"}


def optimizer_words(optimizer):
    if optimizer is None:
        return "x 0: no optimizer"
    multiples = {state_arrays_per_parameter(optimizer, group) for group in optimizer.param_groups}
    return STATE_WORDS[multiples.pop()] if len(multiples) == 1 else "x 0 to 3, per parameter group"


# ----------------------------------------------------------------------------- 4. measured
def loss_of(model, criterion, inputs, targets, part):
    """One micro-batch's forward pass and loss (its value does not matter, only its graph)."""
    outputs = model(inputs[part])
    return outputs.sum() if criterion is None else criterion(outputs, targets[part])


def graph_nodes(root):
    """The Functions of the graph behind ``root`` and the leaf tensors it ends in, each once."""
    functions, leaves, seen = [], [], set()
    stack = [root._fn if root._fn is not None else root]
    while stack:  # iterative, like autograd's walk: deep graphs must not hit the recursion limit
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, Tensor):
            leaves.append(node)
        else:
            functions.append(node)
            stack.extend(node.parents)
    return functions, leaves


def memory_owner(array):
    """The array that owns the memory ``array`` looks at (``array`` itself when it owns it).

    Views (slices, transposes, reshapes) point to their owner through ``.base``; NumPy's
    strided views have a non-array helper in between, so the chain is followed to its end.
    """
    owner, link = array, array
    while getattr(link, "base", None) is not None:
        link = link.base
        if hasattr(link, "nbytes") and hasattr(link, "shape"):
            owner = link
    return owner


def unique_bytes(arrays, already_counted):
    """Bytes of the memory behind ``arrays``, each owner once, skipping ``already_counted`` ids."""
    owners = {}
    for array in arrays:
        owner = memory_owner(array)
        if id(owner) not in already_counted:
            owners[id(owner)] = owner.nbytes
    return sum(owners.values())


def saved_arrays(functions):
    return [array for fn in functions for array in fn.saved if hasattr(array, "nbytes")]


def counted_elsewhere(leaves, batch):
    """Memory owners of the parameters (part 1) and of the batch tensors (part 3)."""
    return {id(memory_owner(tensor.array)) for tensor in (*leaves, *batch) if tensor is not None}


def saved_activation_bytes(loss, batch=()):
    """Bytes of the arrays that the ops behind ``loss`` saved for backward (``Function.saved``),
    leaving out the memory of the parameters and of the ``batch`` tensors (parts 1 and 3).

    The batch has to be named: it needs no gradient, so the graph has no link to it."""
    functions, leaves = graph_nodes(loss)
    return unique_bytes(saved_arrays(functions), counted_elsewhere(leaves, batch))


def graph_held_bytes(loss, batch=()):
    """What one forward pass keeps alive until backward: the saved arrays plus ``loss`` itself.

    The graph links Functions, not tensors, so a layer output that no op saved is freed as
    soon as the forward pass moves on (as in PyTorch)."""
    functions, leaves = graph_nodes(loss)
    return unique_bytes(saved_arrays(functions) + [loss.array], counted_elsewhere(leaves, batch))


@contextlib.contextmanager
def scratch_gradients(model):
    """Let the measuring runs write ``.grad`` and draw dropout masks, then put both back."""
    parameters = list(model.parameters())
    kept_grads, kept_random_state = [p.grad for p in parameters], random.get_state()
    model.zero_grad()  # start from no gradients, as the first micro-batch of a step does
    try:
        yield
    finally:
        for parameter, grad in zip(parameters, kept_grads):
            parameter.grad = grad
        random.set_state(kept_random_state)


def forward_backward_all(model, criterion, inputs, targets, parts, sample):
    """Accumulation's memory pattern: forward and backward one micro-batch at a time.

    Each micro-batch's own loss is enough here: only memory is measured, not the gradient.
    ``sample()`` is called where the most is alive: after a forward, and after its backward.
    """
    for part in parts:
        loss = loss_of(model, criterion, inputs, targets, part)
        sample()
        loss.backward()
        sample()


def measure_peak(run, device):
    """Peak bytes allocated by ``run(sample)`` above what was allocated before it.

    NumPy reports its allocations to tracemalloc, so on the CPU the peak is exact. CuPy's pool
    keeps no peak, so on a GPU its used bytes are sampled where ``run`` calls ``sample``.
    """
    if device == "cpu":
        return tracemalloc_peak(run), "tracemalloc"
    pool = backend.xp_for(device).get_default_memory_pool()
    start = peak = pool.used_bytes()

    def sample():
        nonlocal peak
        peak = max(peak, pool.used_bytes())

    run(sample)
    return peak - start, "CuPy memory pool, sampled"


def tracemalloc_peak(run):
    started_here = not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        start, _ = tracemalloc.get_traced_memory()
        run(lambda: None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if started_here:
            tracemalloc.stop()
    return peak - start


# ----------------------------------------------------------------------------- 4. predicted
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
