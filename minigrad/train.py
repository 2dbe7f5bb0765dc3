"""Training: how a batch becomes micro-batches, and the loop around it.

Read top to bottom: ``accumulate`` (one batch, any number of micro-batches, one gradient),
then ``train_one_epoch`` (one optimizer step per batch), ``evaluate`` and ``fit``.

Why not ``loss / accumulation_steps``?  The loss of a batch is a *mean over its counted
targets*. Take a batch of 3 samples with per-sample losses 1, 2 and 6, split into micro-batches
of 2 and 1:

    whole batch:            (1 + 2 + 6) / 3            = 3
    naive recipe:  (mean(1, 2) + mean(6)) / 2 = (1.5 + 6) / 2 = 3.75   (sample 3 weighs 1/2, not 1/3)
    here:          (1 + 2) / 3 + 6 / 3                 = 3

The same goes wrong with equal sizes as soon as targets are masked: with targets
[a, ignored | b, c] the first micro-batch's mean is over 1 target and the second's over 2,
while the batch's mean is over 3. So the normaliser (counted targets in the *whole* batch,
ignore_index excluded, class weights summed) is fixed first, and every micro-batch adds
``sum of its losses / normaliser`` into ``.grad``. The gradients then add up to the batch's.

On a GPU every value read back to the host makes the CPU wait for the device, so a training
step reads two numbers' worth: the batch's target summary (normaliser and label range, one
copy, before anything changes) and its loss (once per batch, summed on the device over the
micro-batches). Accuracy is counted on the device and read once per epoch.

Read next: ``ops/dropout.py`` and ``random.py`` (masks that do not depend on the split), then
``models.py``.
"""
from __future__ import annotations

import math
import numbers
import time

from . import backend, distributed, nn, random
from .autograd import no_grad
from .backend import np
from .nn import functional as F
from .tensor import Tensor


class TrainingDiverged(FloatingPointError):
    """The loss, the test loss or a parameter became NaN or infinite; the message names the epoch
    (and the step, when a batch's loss showed it)."""


def diverged(epoch, what):
    return TrainingDiverged(f"training diverged at epoch {epoch} (0-based): {what}; lower the learning rate "
                            f"or check the data")


def check_finite_parameters(model, epoch):
    """The last step of an epoch has no later loss to show that it broke the weights: look at them.
    One verdict per parameter, read back together (each read from a GPU is a host sync)."""
    named = list(model.named_parameters())
    if not named:
        return
    xp = backend.xp_of(named[0][1].array)
    finite = backend.to_host(xp.stack([xp.isfinite(parameter.array).all() for _, parameter in named]))
    for (name, _), is_finite in zip(named, finite):
        if not is_finite:
            raise diverged(epoch, f"after its last step parameter {name!r} holds non-finite values")


# ----------------------------------------------------------------------------- one batch
def summarize_batch(criterion, targets):
    """``(normaliser, target summary)`` of the WHOLE batch: the number a criterion's 'mean' divides
    the summed loss by, and for class targets the summary that checks every label's range
    (``F.summarize_targets``: one read from the device; None for the other losses)."""
    check_supported(criterion)
    summary = None
    if isinstance(criterion, CLASS_TARGET_LOSSES):  # counted targets (class weights summed)
        summary = F.summarize_targets(targets, criterion.weight, criterion.ignore_index)
    if criterion.reduction == "sum":
        return 1.0, summary
    if summary is not None:
        return summary.normalizer, summary
    return float(targets.numel()), summary  # MSELoss, BCELoss, BCEWithLogitsLoss: the mean runs over every element


def loss_normalizer(criterion, targets):
    """The number a criterion's 'mean' divides the summed loss by, for the WHOLE batch."""
    return summarize_batch(criterion, targets)[0]


def summed_loss(criterion, outputs, targets, summary=None):
    """The criterion's loss with reduction="sum": micro-batch sums add up to the batch's sum.
    ``summary``: the batch's target summary if already read (it checks these targets' range)."""
    if isinstance(criterion, nn.CrossEntropyLoss):
        return F.cross_entropy(outputs, targets, criterion.weight, criterion.ignore_index, "sum",
                               criterion.label_smoothing, summary=summary)
    if isinstance(criterion, nn.NLLLoss):
        return F.nll_loss(outputs, targets, criterion.weight, criterion.ignore_index, "sum", summary=summary)
    if isinstance(criterion, (nn.BCELoss, nn.BCEWithLogitsLoss)):
        weight = criterion.weight
        if weight is not None and weight.ndim == outputs.ndim and weight.shape[0] != 1:
            # a per-sample weight row must travel with its micro-batch: accumulate cannot slice it
            raise ValueError(f"criterion.weight: accumulate needs a weight that broadcasts over the batch "
                             f"axis (shape (1, ...) or fewer axes), got shape {weight.shape}")
        if isinstance(criterion, nn.BCELoss):
            return F.binary_cross_entropy(outputs, targets, weight, "sum")
        return F.binary_cross_entropy_with_logits(outputs, targets, weight, "sum", criterion.pos_weight)
    return F.mse_loss(outputs, targets, "sum")


CLASS_TARGET_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)
SUPPORTED_LOSSES = CLASS_TARGET_LOSSES + (nn.MSELoss, nn.BCELoss, nn.BCEWithLogitsLoss)


def check_supported(criterion):
    if not isinstance(criterion, SUPPORTED_LOSSES):
        names = ", ".join(f"nn.{kind.__name__}" for kind in SUPPORTED_LOSSES)
        raise TypeError(f"criterion: accumulate knows the normaliser of {names}, got {type(criterion).__name__}")
    if criterion.reduction not in ("mean", "sum"):
        raise ValueError(f"criterion.reduction: expected 'mean' or 'sum' (a scalar loss), "
                         f"got {criterion.reduction!r}")


def micro_batch_slices(batch_size, micro_batch_size):
    """``slice``s cutting ``batch_size`` samples into micro-batches.

    ``micro_batch_size`` is an int (the last micro-batch may be smaller; >= batch_size means one
    micro-batch), None (the whole batch), or a list of sizes summing to ``batch_size`` — an
    explicit, possibly uneven partition such as [3, 1, 4].
    """
    if micro_batch_size is None:
        sizes = [batch_size] if batch_size else []  # an empty shard (distributed) has no micro-batch
    elif isinstance(micro_batch_size, numbers.Integral) and not isinstance(micro_batch_size, bool):
        if micro_batch_size <= 0:
            raise ValueError(f"micro_batch_size: expected a positive int, got {micro_batch_size!r}")
        full, rest = divmod(batch_size, int(micro_batch_size))
        sizes = [int(micro_batch_size)] * full + ([rest] if rest else [])
    else:
        sizes = list(micro_batch_size) if isinstance(micro_batch_size, (list, tuple)) else None
        if sizes is None or not all(isinstance(s, numbers.Integral) and s > 0 for s in sizes) \
                or sum(sizes) != batch_size:
            raise ValueError(f"micro_batch_size: expected a positive int or a list of positive ints "
                             f"summing to the batch size {batch_size}, got {micro_batch_size!r}")
    slices, start = [], 0
    for size in sizes:
        slices.append(slice(start, start + int(size)))
        start += int(size)
    return slices


def accumulate(model, criterion, inputs, targets, micro_batch_size=None, on_micro_batch=None, world=None):
    """Forward and backward micro-batch by micro-batch; afterwards every parameter's ``.grad``
    holds exactly what ``criterion(model(inputs), targets).backward()`` would add for the whole
    batch. Returns the whole batch's loss as a float. The optimizer step stays the caller's.

    ``micro_batch_size``: see ``micro_batch_slices`` (an int, None, or a list of sizes).
    ``on_micro_batch(outputs, targets)``: optional, sees each micro-batch's detached outputs
    (the training loop counts correct predictions with it).
    Dropout masks are keyed per sample (``random.per_sample_masks``), so they too are the same
    however the batch is split. Layers that mix samples (batch norm) would break the equality.

    Across processes (``world``, default ``distributed.world()``; under ``mpiexec`` every rank
    passes the same global batch): each rank runs only its shard, the normaliser and the
    gradients are summed over the ranks, and every rank ends with the whole batch's ``.grad``
    and loss, as one process would. ``micro_batch_size`` then cuts each rank's shard.
    """
    inputs, targets = _as_tensor(inputs, "inputs"), _as_tensor(targets, "targets")
    if inputs.shape[:1] != targets.shape[:1]:
        raise ValueError(f"targets: expected {inputs.shape[0]} samples like inputs {inputs.shape}, "
                         f"got shape {targets.shape}")
    world = distributed.world() if world is None else world
    inputs, targets, first_sample = local_shard(world, inputs, targets, micro_batch_size)
    parts = micro_batch_slices(inputs.shape[0], micro_batch_size)
    # Fixed for the whole (global) batch before any micro-batch; across ranks: collective 1.
    local_normalizer, summary = summarize_batch(criterion, targets)
    normalizer = batch_normalizer(criterion, local_normalizer, world)
    parameters = [p for p in model.parameters() if p.requires_grad]
    earlier = set_aside_gradients(parameters) if world.is_distributed else None
    total_loss = None  # summed on the device, read once: each read would be a host synchronisation
    with random.per_sample_masks():  # dropout masks keyed by global sample index, not by split
        for part in parts:
            with random.sample_offset(first_sample + part.start):
                outputs = model(inputs[part])
            # Sum over this micro-batch / the WHOLE batch's normaliser; NOT its mean / len(parts)
            # (that weighs samples unequally, see the module docstring).
            loss = share_of_batch_loss(summed_loss(criterion, outputs, targets[part], summary), normalizer)
            loss.backward()  # adds this micro-batch's share into .grad
            share = loss.detach().to(backend.float64)  # float64, as the host sum of floats it replaces
            total_loss = share if total_loss is None else total_loss + share
            if on_micro_batch is not None:
                on_micro_batch(outputs.detach(), targets[part])
    total_loss = 0.0 if total_loss is None else total_loss.item()  # an empty shard has no micro-batch
    if world.is_distributed:  # collective 2: every rank's shares add up to the batch's gradient and loss
        (total_loss,) = world.sum_gradients(parameters, [total_loss])
        add_back_gradients(parameters, earlier)
    return total_loss if normalizer else float("nan")  # nothing counted: 0/0, as the full batch


def local_shard(world, inputs, targets, micro_batch_size):
    """This rank's slice of the global batch and the global index of its first sample
    (the whole batch and 0 in a single process)."""
    if not world.is_distributed:
        return inputs, targets, 0
    if isinstance(micro_batch_size, (list, tuple)):
        raise ValueError(f"micro_batch_size: a list of sizes partitions one process's batch; with "
                         f"{world.size} ranks give an int or None, got {micro_batch_size!r}")
    mine = world.shard(inputs.shape[0])
    return inputs[mine], targets[mine], mine.start


def batch_normalizer(criterion, local, world):
    """The normaliser of the whole global batch from this rank's ``local`` one: each rank counts
    its own targets and one Allreduce(SUM) adds the counts (a 'sum' loss has none to add up)."""
    return world.sum_normalizer(local) if criterion.reduction == "mean" else local


def set_aside_gradients(parameters):
    """Only this batch's gradient may be summed over ranks: what ``.grad`` held before (a caller
    accumulating over several calls) is set aside, and added back after the reduction."""
    earlier = [p.grad for p in parameters]
    for parameter in parameters:
        parameter.grad = None
    return earlier


def add_back_gradients(parameters, earlier):
    for parameter, grad in zip(parameters, earlier):
        if grad is not None and parameter.grad is not None:
            grad.array += parameter.grad.array  # in place: code holding the old .grad sees the sum
            grad._bump_version()
        parameter.grad = grad if grad is not None else parameter.grad


def share_of_batch_loss(micro_batch_sum, normalizer):
    """``micro_batch_sum / normalizer``; with nothing counted in the whole batch (normaliser 0)
    the full batch's loss is 0/0 = NaN but its gradient is 0, so the share is ``sum * 0``:
    backpropagating ``1/0`` would put 0 * inf = NaN into .grad instead. PyTorch's gradient is 0
    too when every target is ignored; when targets are counted but all their class weights are
    0, PyTorch's is NaN (weight 0 times 1/0, at those targets; cross_entropy spreads it over their
    rows) and minigrad's stays 0."""
    return micro_batch_sum / normalizer if normalizer else micro_batch_sum * 0.0


def _as_tensor(value, name):
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.ndarray):
        return Tensor(value)
    raise TypeError(f"{name}: expected a Tensor or a NumPy array, got {type(value).__name__}")


# ----------------------------------------------------------------------------- the loop
def train_one_epoch(model, criterion, optimizer, loader, micro_batch_size=None, epoch=0, on_step=None, world=None):
    """One pass over ``loader``: per batch, zero_grad, accumulate, check the loss, one step;
    at the end, check that the parameters are finite (``TrainingDiverged`` otherwise).

    Returns dict(loss = mean loss per sample, accuracy (classification; else None),
    images_per_second, steps). ``on_step(step, loss, batch_size)`` is called after each step.
    A batch whose every target is ignored (``ignore_index``) has a NaN loss and a zero gradient,
    as in PyTorch: that is not divergence. It still takes its step (as PyTorch's loop would; with
    momentum that moves the weights), its NaN goes to ``on_step``, and the epoch's mean leaves it out.
    Across processes (``world``, default ``distributed.world()``) every rank iterates the same
    global batches; the ranks first check that they agree on the epoch's plan, and the loss,
    the gradients and the accuracy counts are sums over the ranks, so every rank returns the
    numbers one process would.
    """
    world = distributed.world() if world is None else world
    if world.is_distributed:
        world.check_same_plan(epoch_plan(model, optimizer, loader, micro_batch_size, epoch))
    model.train()
    counter = AccuracyCounter(criterion)
    loss_sum, samples, images, steps = 0.0, 0, 0, 0  # samples: those of batches that count in the mean
    started = time.perf_counter()
    for step, (inputs, targets) in enumerate(loader):
        optimizer.zero_grad()
        loss = accumulate(model, criterion, inputs, targets, micro_batch_size, on_micro_batch=counter.add,
                          world=world)
        # Only a non-finite loss asks again (a host sync on a GPU): a finite mean had targets to count.
        counts_nothing = not math.isfinite(loss) and not loss_normalizer(criterion, _as_tensor(targets, "targets"))
        if not math.isfinite(loss) and not counts_nothing:  # the same on every rank: all stop together
            raise TrainingDiverged(f"training diverged at epoch {epoch}, step {step} (0-based): the loss is "
                                   f"{loss}; lower the learning rate or check the data")
        optimizer.step()  # once per batch, however many micro-batches made its gradient
        if not counts_nothing:
            loss_sum, samples = loss_sum + loss * len(inputs), samples + len(inputs)
        images, steps = images + len(inputs), steps + 1
        if on_step is not None:
            on_step(step, loss, len(inputs))
    counter.sum_over(world)
    check_finite_parameters(model, epoch)
    elapsed = time.perf_counter() - started
    return dict(loss=loss_sum / samples if samples else float("nan"), accuracy=counter.accuracy(), steps=steps,
                images_per_second=images / elapsed if elapsed > 0 else float("inf"))


def epoch_plan(model, optimizer, loader, micro_batch_size, epoch):
    """What all ranks must agree on before an epoch; nothing here depends on the world size.
    (A loader that is not a DataLoader contributes only what it has.)"""
    dataset = getattr(loader, "dataset", None)
    return {"epoch": epoch, "loader epoch": getattr(loader, "epoch", None),
            "samples": len(dataset) if dataset is not None else None,
            "batch_size": getattr(loader, "batch_size", None),
            "steps": len(loader) if hasattr(loader, "__len__") else None,
            "shuffle seed": getattr(loader, "seed", None), "micro_batch_size": micro_batch_size,
            "optimizer": type(optimizer).__name__,
            "hyper-parameters": [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups],
            "parameter shapes": [list(p.shape) for p in model.parameters()],
            "parameter values": distributed.digest_of_arrays(backend.to_host(p.array) for p in model.parameters())}


def evaluate(model, criterion, loader, num_classes=None, world=None):
    """Loss (as the criterion would give on the whole data set), accuracy, and per-class accuracy
    (a list, NaN for a class with no samples; both None for regression), in eval mode, no_grad.
    Across processes each rank evaluates its shard of every batch and the sums are added up."""
    world = distributed.world() if world is None else world
    was_training = model.training
    model.eval()
    counter = AccuracyCounter(criterion, num_classes)
    loss_sum, normalizer = None, 0.0  # the loss is summed on the device and read once
    with no_grad():
        for inputs, targets in loader:
            inputs, targets, _ = local_shard(world, inputs, targets, None)
            if not len(inputs):
                continue  # an empty shard adds nothing to the sums
            outputs = model(inputs)
            normalizer_of_batch, summary = summarize_batch(criterion, targets)
            loss = summed_loss(criterion, outputs, targets, summary).to(backend.float64)
            loss_sum = loss if loss_sum is None else loss_sum + loss
            normalizer += normalizer_of_batch
            counter.add(outputs, targets)
    model.train(was_training)
    loss_sum = 0.0 if loss_sum is None else loss_sum.item()
    loss_sum, normalizer = world.sum([loss_sum, normalizer])  # numerators and counts, never means
    counter.sum_over(world)
    if criterion.reduction == "mean":
        loss_sum = loss_sum / normalizer if normalizer else float("nan")  # nothing counted: NaN, as PyTorch
    return dict(loss=float(loss_sum), accuracy=counter.accuracy(), per_class_accuracy=counter.per_class_accuracy())


def fit(model, criterion, optimizer, train_loader, epochs, micro_batch_size=None, test_loader=None,
        on_step=None, on_epoch_end=None, first_epoch=0, world=None):
    """Train for ``epochs`` epochs; returns one dict per epoch:
    {"epoch", "train": train_one_epoch's dict, "test": evaluate's dict or None}.
    ``on_epoch_end(record)`` (optional) runs after each epoch, e.g. to save a checkpoint;
    ``first_epoch`` numbers the epochs of a resumed run (the loader's state_dict keeps the order).
    ``world``: the processes sharing each batch (default ``distributed.world()``, see there)."""
    history = []
    for epoch in range(first_epoch, first_epoch + epochs):
        train_stats = train_one_epoch(model, criterion, optimizer, train_loader, micro_batch_size,
                                      epoch=epoch, on_step=on_step, world=world)
        test_stats = evaluate(model, criterion, test_loader, world=world) if test_loader is not None else None
        record = {"epoch": epoch, "train": train_stats, "test": test_stats}
        history.append(record)
        if on_epoch_end is not None:
            on_epoch_end(record)
    return history


class AccuracyCounter:
    """Counts correct arg-max predictions per class (classification only; ignore_index skipped).

    The counts stay on the device of the outputs (a one-hot sum per batch: no boolean masks,
    which would read their size back) and come to the host once, when the accuracy is asked for.
    """

    def __init__(self, criterion, num_classes=None):
        self.is_classification = isinstance(criterion, CLASS_TARGET_LOSSES)
        self.ignore_index = getattr(criterion, "ignore_index", None)
        self.num_classes = num_classes
        self.correct = self.total = None  # (num_classes,) int64 arrays, on the device until read

    def add(self, outputs, targets):
        if not self.is_classification:
            return
        xp = backend.xp_of(outputs.array)
        if self.correct is None:
            self.num_classes = self.num_classes or outputs.shape[1]
            self.correct = xp.zeros(self.num_classes, dtype=backend.int64)
            self.total = xp.zeros(self.num_classes, dtype=backend.int64)
        predicted, targets = outputs.array.argmax(axis=1), targets.array
        # (N, classes): sample i's target class, if counted
        is_target_class = targets[:, None] == xp.arange(self.num_classes)
        if self.ignore_index is not None and 0 <= self.ignore_index < self.num_classes:
            is_target_class[:, self.ignore_index] = False   # an ignore_index that is a class's number
        self.total += is_target_class.sum(axis=0)
        self.correct += (is_target_class & (predicted == targets)[:, None]).sum(axis=0)

    def host_counts(self):
        """(correct, total) as host arrays: the one read of the epoch (None before any batch)."""
        if self.total is None:
            return None, None
        if backend.is_cupy_array(self.total):
            self.correct, self.total = backend.to_host(backend.xp_of(self.total).stack([self.correct, self.total]))
        return self.correct, self.total

    def sum_over(self, world):
        """Add every rank's counts (exact integers), so the accuracy is the whole data set's.
        A rank that saw no sample learns the number of classes from the others first."""
        if not world.is_distributed or not self.is_classification:
            return
        num_classes = world.max(self.num_classes or 0)
        if not num_classes:
            return  # no rank saw a sample: nothing counted anywhere, as in one process
        correct, total = self.host_counts()
        if correct is None:  # int64 like every other rank's counts: Allreduce adds raw buffers
            correct, total = np.zeros(num_classes, dtype=backend.int64), np.zeros(num_classes, dtype=backend.int64)
        counts = world.sum(np.concatenate([correct, total]))
        self.num_classes, self.correct, self.total = num_classes, counts[:num_classes], counts[num_classes:]

    def accuracy(self):
        correct, total = self.host_counts()
        if total is None or not total.sum():
            return None
        return float(correct.sum() / total.sum())

    def per_class_accuracy(self):
        correct, total = self.host_counts()
        if total is None:
            return None
        return [float(c / t) if t else float("nan") for c, t in zip(correct, total)]
