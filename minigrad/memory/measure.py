"""Part 4 of the memory budget *measured*: what one forward pass really saves for backward,
and the peak of a whole accumulated step.

The saved arrays are found by walking the graph from the loss (``autograd.topological_order``,
the same walk ``backward`` makes) and adding up each Function's ``saved`` arrays, each block of
memory once. The peak comes from tracemalloc on the CPU and CuPy's memory pool on a GPU.

Read next: ``cli.py`` (the command line that trains with all of the above).
"""
from __future__ import annotations

import contextlib
import tracemalloc

from .. import backend, random
from ..autograd import Function, memory_owner, topological_order
from ..tensor import Tensor


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


def measured_optimizer_state_bytes(optimizer):
    """Bytes of the arrays in ``optimizer.state``; None while it is empty (before the first step)."""
    if optimizer is None or not optimizer.state:
        return None
    return sum(value.nbytes for entry in optimizer.state.values() for value in entry.values()
               if hasattr(value, "shape"))  # arrays only: Adam's step count is a Python int


def loss_of(model, criterion, inputs, targets, part):
    """One micro-batch's forward pass and loss (its value does not matter, only its graph)."""
    outputs = model(inputs[part])
    return outputs.sum() if criterion is None else criterion(outputs, targets[part])


def graph_nodes(root):
    """The Functions of the graph behind ``root`` and the leaf tensors it ends in, each once."""
    nodes = topological_order(root._fn if root._fn is not None else root)
    return ([node for node in nodes if isinstance(node, Function)],
            [node for node in nodes if isinstance(node, Tensor)])


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

    NumPy reports its allocations to tracemalloc, and CuPy's memory pool to its memory hooks,
    so the peak is exact on both (``sample`` is a no-op kept for callers that mark points).
    """
    if device == "cpu":
        return tracemalloc_peak(run), "tracemalloc"
    return backend.cuda_memory_peak(lambda: run(lambda: None)), "CuPy memory hook"


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
