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
the arrays its ops saved, walking the graph from the loss: ``memory/measure.py``) and
*predicted* from shapes (what PyTorch's autograd saves for the same layers:
``memory/predict.py``). This file puts the two side by side in one report. The two differ
in their details: e.g. PyTorch's max-pool keeps int64 arg-max indices where minigrad's keeps
its output, and minigrad's conv keeps a batch-last copy of its input.

Gradient accumulation runs forward and backward one micro-batch at a time, and backward frees
what the micro-batch saved before the next one starts: part 4 scales with the micro-batch
size, not with the batch size, while parts 1-3 stay the same.

Read next: ``memory/predict.py`` (from shapes), ``memory/measure.py`` (from a real step), then
``cli.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import backend, nn, optim
from ..autograd import is_grad_enabled
from ..tensor import Tensor
from ..train import micro_batch_slices
from .measure import (graph_held_bytes, measure_activations, measured_optimizer_state_bytes,  # noqa: F401
                      memory_owner, saved_activation_bytes, unique_bytes)
from .predict import (NotPredictable, layer_output_shape, optimizer_words, parameter_and_gradient_bytes,  # noqa: F401
                      predict_activation_bytes, predicted_optimizer_state_bytes, predicted_or_none)

MIB = 2 ** 20


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
