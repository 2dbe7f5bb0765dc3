"""The define-by-run graph: ``Function`` (one op) and ``backward`` (the graph walk).

Every op is a subclass of ``Function`` with a ``forward`` and a ``backward`` on raw arrays,
written side by side. ``Function.apply`` runs forward on the tensors' arrays and, when
gradients are wanted, links the output to where its inputs' gradients must go, so that
``backward`` can walk the graph later.

Shared mechanics live here, once:
- undoing a broadcast: ``backward`` may return a gradient of the broadcast shape; ``apply``'s
  bookkeeping reduces it back to each input's shape (``unbroadcast``), so ops never do.
- a tensor used several times: gradients from each use are summed before they flow on.
- memory: after a node's backward ran, its saved arrays and links to inputs are dropped.
- in-place writes: each tensor has a version counter that every in-place write bumps; ``apply``
  notes the version of each tensor whose memory an op saved, and backward refuses to run the
  op if it changed since (PyTorch's check), instead of returning a wrong gradient.

Read next: ``ops/elementwise.py`` (the simplest ops built on ``Function``), then ``tensor.py``.
"""
from __future__ import annotations

import contextlib

from . import backend, parallel
from .tensor import Tensor, check_same_device  # the import cycle is closed at the end of tensor.py


_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record no graph (evaluation, optimizer updates)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, False
    try:
        yield
    finally:
        _grad_enabled = previous


@contextlib.contextmanager
def enable_grad():
    """Record the graph again inside a ``no_grad`` block (e.g. an optimizer's closure)."""
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, True
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled() -> bool:
    return _grad_enabled


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``.

    Broadcasting copies a value to many outputs, so its gradient is the sum over those copies.
    """
    if grad.shape == tuple(shape):
        return grad
    extra_leading = grad.ndim - len(shape)
    if extra_leading:
        grad = grad.sum(axis=tuple(range(extra_leading)))
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1 and grad.shape[axis] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


# ----------------------------------------------------------------------------- the graph: one node per op
class Function:
    """One differentiable op, and one node of the graph.

    Subclasses define ``forward(self, *arrays, **params) -> array`` and
    ``backward(self, grad) -> gradient for each array input`` (a tuple, or one array when
    there is a single input; ``None`` for an input that needs no gradient).
    ``self.save_for_backward(...)`` keeps what backward needs and nothing more;
    ``self.needs_input_grad[i]`` tells backward whether input ``i`` wants a gradient at all.

    The graph links nodes, not tensors: ``parents[i]`` is the Function that produced input
    ``i``, or the input itself when it is a leaf (a parameter), or None when it needs no
    gradient. So an intermediate output is freed as soon as user code drops it, unless an op
    saved it for backward — the graph holds exactly the saved arrays, as PyTorch's does.
    """

    def __init__(self):
        self.saved = ()
        self.parents = ()
        self.input_shapes = ()
        self.needs_input_grad = ()
        self.retained_output = None  # weak reference to the output when it called retain_grad()
        self.released = False        # True once backward ran and the saved arrays were freed
        self.saved_versions = ()     # (counter, its value when saved, position, array): see saved_versions

    def save_for_backward(self, *arrays):
        self.saved = arrays

    # What a learner sees of the graph: ``y.grad_fn`` is the Function that made y, named after
    # its op like PyTorch's nodes (``MulBackward``; PyTorch adds an overload number, MulBackward0),
    # and ``next_functions`` are the nodes its gradient flows to, as ``(node, 0)`` pairs.
    def name(self):
        return f"{type(self).__name__}Backward"

    def __repr__(self):
        return f"<{self.name()} object at {id(self):#x}>"

    @property
    def next_functions(self):
        """One ``(node, 0)`` per input: its Function, ``AccumulateGrad`` for a leaf that wants a
        gradient, or ``None``. Empty once backward has freed the graph (``retain_graph=False``)."""
        return tuple((AccumulateGrad(parent) if parent is not None and not isinstance(parent, Function)
                      else parent, 0) for parent in self.parents)

    def forward(self, *arrays, **params):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        check_same_device(cls.__name__, inputs)
        fn = cls()
        fn.needs_input_grad = tuple(t.requires_grad for t in inputs)
        out_data = fn.forward(*(t.array for t in inputs), **params)
        requires_grad = _grad_enabled and any(fn.needs_input_grad)
        out = Tensor._wrap(out_data, requires_grad=requires_grad)
        share_version_with_viewed_input(out, inputs)
        if requires_grad:
            fn.parents = tuple(gradient_destination(t) for t in inputs)
            fn.input_shapes = tuple(t.shape for t in inputs)
            fn.saved_versions = saved_versions(fn.saved, inputs, out)
            out._fn = fn
        else:
            fn.saved = ()  # nothing will call backward: let the arrays go now
        return out


def gradient_destination(tensor):
    """Where a gradient for ``tensor`` goes: the Function that made it, the leaf itself, or None."""
    if not tensor.requires_grad:
        return None
    return tensor._fn if tensor._fn is not None else tensor


# ----------------------------------------------------------------------------- the walk
def topological_order(root):
    """Nodes that lead to ``root``, each after all of its parents (iterative DFS, no recursion).

    A node is a Function, or a leaf Tensor (which has no parents). The one walk over the graph:
    ``backward`` runs it in reverse, and ``memory`` adds up what its Functions saved.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        for parent in getattr(node, "parents", ()):
            if parent is not None and id(parent) not in visited:
                stack.append((parent, False))
    return order


def backward(root, grad=None, retain_graph=False):
    """Send ``grad`` (d root / d root, default 1 for a scalar) back through the graph.

    Leaves (tensors with ``requires_grad`` made by the user, e.g. parameters) receive their
    gradient in ``.grad`` with ``+=`` semantics, so calling backward on several losses (or
    micro-batches) adds their gradients up — the basis of gradient accumulation.
    """
    root_node = gradient_destination(root)
    if root_node is None:
        raise RuntimeError("backward: the tensor does not require grad and has no graph "
                           "(was it computed under no_grad, or from tensors without requires_grad?)")
    pending = {id(root_node): initial_gradient(root, grad)}  # gradients still to flow on, per node
    # BLAS held to one thread once for the whole walk, not once per kernel (parallel.py says why
    # minigrad's kernels hold it; each hold costs 20-50 us inside a step, RESULTS.md).
    with parallel.one_blas_thread() if backend.xp_of(root.array) is backend.np else contextlib.nullcontext():
        for node in reversed(topological_order(root_node)):
            node_grad = pending.pop(id(node), None)
            if node_grad is None:
                continue
            if isinstance(node, Function):
                send_to_parents(node, node_grad, pending, retain_graph)
            else:  # a leaf tensor: accumulate into .grad
                node._accumulate_grad(node_grad)


def initial_gradient(root, grad):
    """d root / d root: ones for a scalar, else the caller's ``grad`` (same shape, dtype, device)."""
    if grad is None:
        if root.array.size != 1:
            raise RuntimeError(f"backward: grad can be implicit only for a scalar output, "
                               f"got shape {root.shape}; pass grad= of that shape")
        return backend.xp_of(root.array).ones_like(root.array)
    grad = grad if isinstance(grad, Tensor) else Tensor(grad, dtype=root.dtype, device=root.device)
    check_same_device("backward", (root, grad))
    if grad.shape != root.shape or grad.dtype != root.dtype:
        raise ValueError(f"backward: grad must match the output, shape {root.shape} dtype {root.dtype}; "
                         f"got shape {grad.shape} dtype {grad.dtype}")
    return grad.array


def send_to_parents(node, grad, pending, retain_graph):
    """Run one node's backward and add each input's gradient (reduced to its shape) to ``pending``."""
    before_backward(node, grad)  # PyTorch's checks and retain_grad(): see the end of this file
    if type(node).__module__.startswith("minigrad."):
        input_grads = node.backward(grad)
    else:  # an op defined outside minigrad: its NumPy calls keep the caller's BLAS threads
        with parallel.callers_blas_threads():
            input_grads = node.backward(grad)
    if not isinstance(input_grads, tuple):
        input_grads = (input_grads,)
    for parent, shape, parent_grad in zip(node.parents, node.input_shapes, input_grads):
        if parent is None or parent_grad is None:
            continue
        parent_grad = unbroadcast(parent_grad, shape)
        key = id(parent)
        # Out of place on purpose: one array may be handed to several inputs (add, stack).
        pending[key] = parent_grad if key not in pending else pending[key] + parent_grad
    if not retain_graph:
        release(node)  # free the saved activations as soon as they are used


# ------------------------------------------------- PyTorch's bookkeeping (not needed to follow the walk)
def before_backward(node, grad):
    """What PyTorch checks and keeps before a node's backward runs: refuse a graph whose saved
    arrays were already freed, refuse saved values written in place since, and give ``grad`` to
    an output that called ``retain_grad()`` (only leaves keep ``.grad`` otherwise)."""
    if node.released:
        raise RuntimeError("backward: this graph was already walked and its saved arrays freed; "
                           "pass retain_graph=True to the first backward to walk it twice")
    check_saved_versions(node)
    output = node.retained_output() if node.retained_output is not None else None
    if output is not None:
        output._accumulate_grad(grad)


def release(node):
    """Drop what ``node`` saved and its links once its backward ran; ``before_backward`` then
    refuses a second walk with a clear message instead of failing inside an op."""
    node.saved, node.parents, node.saved_versions = (), (), ()
    node.released = True


def check_saved_versions(node):
    """Raise if a value ``node`` saved for backward was written in place after it was saved."""
    for counter, saved_version, position, array in node.saved_versions:
        if counter.value != saved_version:
            role = f"input {position}" if position < len(node.input_shapes) else "output"
            raise RuntimeError(
                f"backward: one of the variables needed for gradient computation has been modified by an "
                f"inplace operation: the {role} of {type(node).__name__} (shape {array.shape}, {array.dtype}) is "
                f"at version {counter.value}; expected version {saved_version}. An optimizer step or an "
                f"in-place op ran between forward and backward: call backward before step(), or compute "
                f"the forward again")


def saved_versions(saved, inputs, output):
    """(version counter, its value now, position among the inputs (or after them: the output), the
    tensor's array) for every input or output whose memory (the array itself or a view of it)
    the op saved for backward (its memory is kept alive by the op anyway). The message is made
    only when a check fails: making it for every node cost ~3 us a node."""
    if not saved:
        return ()
    tensors = (*inputs, output)
    owners = [memory_owner(tensor.array) for tensor in tensors]
    records = []
    for array in saved:
        owner = memory_owner(array)
        for position, (tensor, candidate_owner) in enumerate(zip(tensors, owners)):
            if candidate_owner is owner:
                counter = tensor._version_counter
                records.append((counter, counter.value, position, tensor.array))
    return tuple(records)


def share_version_with_viewed_input(out, inputs):
    """An output that is a view of an input (reshape, transpose, slicing) shares its memory,
    so it shares its version counter too: a write through either is a write to both."""
    owner = memory_owner(out.array)
    for tensor in inputs:
        if memory_owner(tensor.array) is owner:
            out._version_counter = tensor._version_counter
            return


def memory_owner(array):
    """The array that owns the memory ``array`` looks at (``array`` itself when it owns it).

    Views (slices, transposes, reshapes) point to their owner through ``.base``; NumPy's
    strided views have a non-array helper in between, so the chain is followed to its end.
    Used for version counters here and by ``memory/measure.py`` to count each block once.
    """
    owner, link = array, array
    while getattr(link, "base", None) is not None:
        link = link.base
        if hasattr(link, "nbytes") and hasattr(link, "shape"):
            owner = link
    return owner


class AccumulateGrad:
    """The node at a leaf in ``next_functions``: backward adds the gradient into ``variable.grad``."""

    next_functions = ()

    def __init__(self, variable):
        self.variable = variable

    def name(self):
        return "AccumulateGrad"

    def __repr__(self):
        return f"<AccumulateGrad object at {id(self):#x}>"


# ----------------------------------------------------------------------------- for nn and optim
def zero_gradients(parameters, set_to_none):
    """``.grad = None`` (the next backward allocates afresh), or zeros written into the existing
    arrays (keeps their memory, e.g. for code holding a reference to ``.grad``)."""
    for parameter in parameters:
        if set_to_none:
            parameter.grad = None
        elif parameter.grad is not None:
            parameter.grad.array[...] = 0
            parameter.grad._bump_version()
