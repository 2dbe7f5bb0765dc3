"""The define-by-run graph: ``Function`` (one op) and ``backward`` (the graph walk).

Every op is a subclass of ``Function`` with a ``forward`` and a ``backward`` on raw arrays,
written side by side. ``Function.apply`` runs forward on the tensors' arrays and, when
gradients are wanted, remembers the inputs so that ``backward`` can walk the graph later.

Shared mechanics live here, once:
- undoing a broadcast: ``backward`` may return a gradient of the broadcast shape; ``apply``'s
  bookkeeping reduces it back to each input's shape (``unbroadcast``), so ops never do.
- a tensor used several times: gradients from each use are summed before they flow on.
- memory: after a node's backward ran, its saved arrays and links to inputs are dropped.
"""
from __future__ import annotations

import contextlib

from . import backend

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


class Function:
    """One differentiable op.

    Subclasses define ``forward(self, *arrays, **params) -> array`` and
    ``backward(self, grad) -> gradient for each array input`` (a tuple, or one array when
    there is a single input; ``None`` for an input that needs no gradient).
    ``self.save_for_backward(...)`` keeps what backward needs and nothing more;
    ``self.needs_input_grad[i]`` tells backward whether input ``i`` wants a gradient at all.
    """

    def __init__(self):
        self.saved = ()
        self.inputs = ()
        self.needs_input_grad = ()
        self.released = False  # True once backward ran and the saved arrays were freed

    def save_for_backward(self, *arrays):
        self.saved = arrays

    def forward(self, *arrays, **params):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        from .tensor import Tensor, check_same_device

        check_same_device(cls.__name__, inputs)
        fn = cls()
        fn.needs_input_grad = tuple(t.requires_grad for t in inputs)
        out_data = fn.forward(*(t.data for t in inputs), **params)
        requires_grad = _grad_enabled and any(fn.needs_input_grad)
        out = Tensor._wrap(out_data, requires_grad=requires_grad)
        if requires_grad:
            fn.inputs = inputs
            out._fn = fn
        else:
            fn.saved = ()  # nothing will call backward: let the arrays go now
        return out


def _topological_order(root):
    """Nodes that lead to ``root``, each after all of its inputs (iterative DFS, no recursion)."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._fn is not None:
            for parent in node._fn.inputs:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def backward(root, grad=None, retain_graph=False):
    """Send ``grad`` (d root / d root, default 1 for a scalar) back through the graph.

    Leaves (tensors with ``requires_grad`` made by the user, e.g. parameters) receive their
    gradient in ``.grad`` with ``+=`` semantics, so calling backward on several losses (or
    micro-batches) adds their gradients up — the basis of gradient accumulation.
    """
    if not root.requires_grad:
        raise RuntimeError("backward: the tensor does not require grad and has no graph "
                           "(was it computed under no_grad, or from tensors without requires_grad?)")
    xp = backend.xp_of(root.data)
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(f"backward: grad can be implicit only for a scalar output, "
                               f"got shape {root.shape}; pass grad= of that shape")
        grad = xp.ones_like(root.data)
    else:
        grad = grad.data if hasattr(grad, "_fn") else xp.asarray(grad, dtype=root.dtype)
        if grad.shape != root.shape:
            raise ValueError(f"backward: grad must have the output's shape {root.shape}, got {grad.shape}")

    pending = {id(root): grad}  # gradients that arrived at a node and still have to flow on
    for node in reversed(_topological_order(root)):
        node_grad = pending.pop(id(node), None)
        if node_grad is None:
            continue
        if node._fn is None:  # a leaf: accumulate into .grad
            node._accumulate_grad(node_grad)
            continue
        if node._fn.released:
            raise RuntimeError("backward: this graph was already walked and its saved arrays freed; "
                               "pass retain_graph=True to the first backward to walk it twice")
        if node._retains_grad:
            node._accumulate_grad(node_grad)
        fn = node._fn
        input_grads = fn.backward(node_grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for parent, parent_grad in zip(fn.inputs, input_grads):
            if parent_grad is None or not parent.requires_grad:
                continue
            parent_grad = unbroadcast(parent_grad, parent.shape)
            key = id(parent)
            # Out of place on purpose: one array may be handed to several inputs (add, stack).
            pending[key] = parent_grad if key not in pending else pending[key] + parent_grad
        if not retain_graph:
            fn.saved, fn.inputs = (), ()  # free the saved activations as soon as they are used
            fn.released = True
