"""Losses: cross-entropy (fused with log_softmax), negative log-likelihood, binary
cross-entropy with logits, and mean squared error.

Every loss has one *normaliser*: the number the summed loss is divided by for
``reduction="mean"``. ``summarize_targets`` computes it on its own because gradient
accumulation must fix it for the whole batch before looking at any micro-batch.

Reading a value back from a GPU is a host synchronisation (the CPU waits for the device), so
the class-target losses read their targets' facts once: the normaliser and the smallest and
largest counted class come back in one copy (``summarize_targets``), and the range check and
the 'mean' division then use those host numbers.

Read next: ``nn/module.py`` (how layers hold parameters).
"""
from __future__ import annotations

from collections import namedtuple

from .. import backend
from ..autograd import Function
from ..tensor import Tensor, check_floating_input, check_is_tensor, check_same_device
from .softmax import log_softmax_array

REDUCTIONS = ("none", "sum", "mean")


def counted_target_weights(target, weight, ignore_index):
    """Per-sample weight in the loss: w[target] (1 without class weights), 0 where ignored.

    Also returns the targets with ignored entries replaced by class 0, safe for indexing, and
    the mask of the counted (not ignored) targets.
    """
    xp = backend.xp_of(target)
    counted = target != ignore_index
    safe_target = xp.where(counted, target, 0)
    if weight is None:
        return counted.astype(backend.float64), safe_target, counted
    return weight[safe_target] * counted, safe_target, counted


def target_log_probs(log_probs, safe_target, counted):
    """log p_i[t_i] for each sample, exactly 0 where the target is ignored: its stand-in class 0
    may have log p = -inf, and a weight of 0 times -inf would be NaN (PyTorch skips those samples)."""
    xp = backend.xp_of(log_probs)
    return xp.where(counted, log_probs[xp.arange(log_probs.shape[0]), safe_target], 0)


# normalizer: sum of the counted targets' weights; count: how many targets are counted;
# smallest/largest: the extreme counted classes (meaningless when count is 0).
TargetSummary = namedtuple("TargetSummary", ["normalizer", "count", "smallest", "largest"])


def summarize_targets(target, weight=None, ignore_index=-100):
    """The targets' normaliser and class range, read back from the device in ONE copy.

    Targets equal to ``ignore_index`` count 0; with class weights each target counts w[target].
    Host (NumPy) targets have no copy to save: when none is ignored and there are no class
    weights (a usual training batch) each counts 1, and a compare and two reductions say
    everything (``summarize_in_one_copy`` makes about ten calls, 125 us of a LeNet step at batch 32).
    """
    target = target.array if isinstance(target, Tensor) else target  # also a bare array
    weight = weight.array if isinstance(weight, Tensor) else weight
    if target.dtype.kind not in "iu":  # asked before the loss's own checks (train.summarize_batch)
        raise TypeError(f"target must hold integer class indices, got dtype {target.dtype}")
    if target.size == 0:
        return TargetSummary(0.0, 0, 0, 0)
    if weight is None and backend.xp_of(target) is backend.np and (target != ignore_index).all():
        return TargetSummary(float(target.size), target.size, int(target.min()), int(target.max()))
    return summarize_in_one_copy(target, weight, ignore_index)


def summarize_in_one_copy(target, weight, ignore_index):
    """``summarize_targets`` of a non-empty target array, its four numbers read back in one copy.
    (The classes travel as float64: exact for any class index below 2**53.)"""
    xp = backend.xp_of(target)
    counted = target != ignore_index
    if weight is None:
        sample_weights = counted.astype(backend.float64)
    else:  # an out-of-range class looks up class 0 here; the range check refuses it afterwards
        lookup = xp.where(counted & (target >= 0) & (target < weight.shape[0]), target, 0)
        sample_weights = weight[lookup] * counted
    # Ignored targets stand in as the targets' own dtype's extremes (int64's wrap around to -1 in
    # int32), as typed scalars (CuPy takes no Python int above 2^63 - 1, uint64's maximum).
    limits = xp.iinfo(target.dtype)
    highest, lowest = target.dtype.type(limits.max), target.dtype.type(limits.min)
    facts = xp.stack([sample_weights.sum().astype(backend.float64), counted.sum().astype(backend.float64),
                      xp.where(counted, target, highest).min().astype(backend.float64),
                      xp.where(counted, target, lowest).max().astype(backend.float64)])
    normalizer, count, smallest, largest = backend.to_host(facts).tolist()
    return TargetSummary(normalizer, int(count), int(smallest), int(largest))


def cross_entropy_normalizer(target, weight=None, ignore_index=-100):
    """Sum of the counted targets' weights: how many targets a 'mean' loss averages over."""
    return summarize_targets(target, weight, ignore_index).normalizer


def check_target_range(name, summary, num_classes, ignore_index):
    """Every counted target must be a class index: CuPy would wrap a bad one around silently."""
    if summary.count and (summary.smallest < 0 or summary.largest >= num_classes):
        bad = summary.smallest if summary.smallest < 0 else summary.largest
        raise ValueError(f"{name}: target: expected class indices in [0, {num_classes - 1}] "
                         f"(or ignore_index={ignore_index}), got {bad}")


def checked_summary(name, logits, target, weight, ignore_index, summary):
    """The targets' summary (read here unless given) after checking their range.

    A given ``summary`` may be that of a whole batch containing ``target`` (``train.accumulate``
    reads it once per batch and passes it to each micro-batch's reduction='sum' loss): its range
    covers these targets; its normaliser is used only by reduction='mean', so it must then be theirs.
    """
    if summary is None:
        summary = summarize_targets(target, weight, ignore_index)
    check_target_range(name, summary, logits.shape[1], ignore_index)
    return summary


class CrossEntropy(Function):
    """loss_i = w[t_i] * (1-eps) * (-log p_i[t_i]) + (eps/C) * sum_c w[c] * (-log p_i[c]).

    This is PyTorch's formula, label smoothing included; ignored samples contribute 0 and
    ``mean`` divides by ``normalizer``, the sum of w[t_i] over counted i (a host number, from
    ``summarize_targets``: testing a device value for zero would be a host synchronisation).
    """

    def forward(self, logits, target, weight, ignore_index, reduction, label_smoothing, normalizer):
        xp = backend.xp_of(logits)
        n, num_classes = logits.shape
        log_probs = log_softmax_array(logits, axis=1)                         # (N, C)
        sample_weights, safe_target, counted = counted_target_weights(target, weight, ignore_index)
        sample_weights = sample_weights.astype(logits.dtype, copy=False)      # w[t_i], 0 if ignored
        # q[i, c] = d loss_i / d(-log p_i[c]): the target distribution the loss pulls towards
        q = xp.zeros_like(log_probs)
        q[xp.arange(n), safe_target] = (1 - label_smoothing) * sample_weights
        # loss_i = sum_c q_ic * (-log p_ic), but not as (q * log p).sum(): a class that cannot be
        # (a logit of -inf, a masked class) has log p = -inf, and its q of 0 times -inf would make
        # the loss NaN. The target's term is gathered and the smoothing term summed on its own:
        # without smoothing the loss stays finite; with it, it is +inf, as PyTorch's. Ignored
        # samples count exactly 0 whatever their logits.
        per_sample = -(1 - label_smoothing) * sample_weights * target_log_probs(log_probs, safe_target, counted)
        if label_smoothing:
            class_weights = xp.ones(num_classes, dtype=logits.dtype) if weight is None else weight
            q += (label_smoothing / num_classes) * class_weights[None, :] * counted[:, None]
            smoothing = -(class_weights[None, :] * log_probs).sum(axis=1)       # every class counts here
            per_sample = per_sample + (label_smoothing / num_classes) * xp.where(counted, smoothing, 0)
        self.save_for_backward(log_probs, q, counted)
        self.reduction, self.normalizer = reduction, normalizer
        return reduce_per_sample(per_sample, reduction, self.normalizer)

    def backward(self, grad):
        # d loss_i / d logits_i = sum_c q_ic * softmax_i - q_i   (through log_softmax)
        log_probs, q, counted = self.saved
        xp = backend.xp_of(grad)
        grad_logits = xp.exp(log_probs) * q.sum(axis=1, keepdims=True) - q
        # Ignored rows are exactly 0 even when their upstream gradient is inf or NaN (as PyTorch's);
        # their 0 * inf, computed and then discarded, is no warning.
        with backend.np.errstate(invalid="ignore"):
            scaled = grad_logits * per_sample_scale(grad, self.reduction, self.normalizer)
        return xp.where(counted[:, None], scaled, 0)


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0, *,
                  summary=None):
    """Softmax cross-entropy of ``logits`` (N, C) against integer class ``target`` (N,).
    ``summary``: the targets' ``summarize_targets`` if already read (see ``checked_summary``).

    >>> import minigrad as mg, minigrad.nn.functional as F
    >>> logits = mg.tensor([[2.0, 0.0], [0.0, 0.0]], requires_grad=True)
    >>> loss = F.cross_entropy(logits, mg.tensor([0, 1]))
    >>> loss.backward()   # (softmax(logits) - one_hot(target)) / N
    >>> loss
    tensor(0.4100, grad_fn=<CrossEntropyBackward>)
    >>> logits.grad
    tensor([[-0.0596,  0.0596],
            [ 0.2500, -0.2500]])
    """
    check_class_target_arguments("cross_entropy", logits, target, weight, ignore_index, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing}")
    summary = checked_summary("cross_entropy", logits, target, weight, ignore_index, summary)
    return CrossEntropy.apply(logits, target=target.array, weight=None if weight is None else weight.array,
                              ignore_index=ignore_index, reduction=reduction,
                              label_smoothing=float(label_smoothing), normalizer=summary.normalizer)


def check_class_target_arguments(name, logits, target, weight, ignore_index, reduction):
    """The checks cross_entropy and nll_loss share: (N, C) scores, (N,) class indices (their range
    is checked from the targets' summary, ``checked_summary``)."""
    check_is_tensor(logits, "input")
    check_is_tensor(target, "target")
    if weight is not None:
        check_is_tensor(weight, "weight")
    if logits.ndim != 2:
        raise ValueError(f"{name}: input must be 2-d (N, C), got shape {logits.shape}; minigrad has no "
                         f"(N, C, d1, ...) form: move the class axis last and reshape to (-1, C)")
    check_floating_input(name, logits)
    if target.dtype.kind not in "iu":
        raise TypeError(f"{name}: target must hold integer class indices, got dtype {target.dtype}")
    if target.shape != logits.shape[:1]:
        raise ValueError(f"{name}: target must have shape ({logits.shape[0]},) to match input "
                         f"{logits.shape}, got {target.shape}")
    check_reduction(reduction)
    check_same_device(name, (logits, target) if weight is None else (logits, target, weight))
    num_classes = logits.shape[1]
    if weight is not None and weight.shape != (num_classes,):
        raise ValueError(f"{name}: weight must have shape ({num_classes},), got {weight.shape}")
    if weight is not None and weight.dtype != logits.dtype:  # it was cast to the input's dtype silently
        raise TypeError(f"{name}: weight: expected the input's dtype {logits.dtype}, got {weight.dtype}")


def mse_loss(input, target, reduction="mean"):
    """Mean squared error; input and target must have the same shape (no silent broadcast).

    >>> import minigrad as mg, minigrad.nn.functional as F
    >>> x = mg.tensor([1.0, 2.0], requires_grad=True)
    >>> loss = F.mse_loss(x, mg.tensor([0.0, 4.0]))   # ((1-0)^2 + (2-4)^2) / 2
    >>> loss.backward()                               # 2 (x - target) / N
    >>> loss
    tensor(2.5000, grad_fn=<MeanBackward>)
    >>> x.grad
    tensor([ 1., -2.])
    """
    check_is_tensor(input, "input")
    check_is_tensor(target, "target")
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: target shape must equal input shape {input.shape}, got {target.shape}")
    check_reduction(reduction)
    squared = (input - target) ** 2  # d/dinput: 2 (input - target)
    if reduction == "none":
        return squared
    return squared.sum() if reduction == "sum" else squared.mean()


def check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")


# ----------------------------------------------------------------------------- negative log-likelihood
class NLLLoss(Function):
    """loss_i = -w[t_i] * input_i[t_i]: the loss on log-probabilities (cross-entropy without its
    log_softmax). Ignored samples contribute 0; ``mean`` divides by ``normalizer`` (as CrossEntropy)."""

    def forward(self, log_probs, target, weight, ignore_index, reduction, normalizer):
        sample_weights, safe_target, counted = counted_target_weights(target, weight, ignore_index)
        sample_weights = sample_weights.astype(log_probs.dtype, copy=False)   # w[t_i], 0 if ignored
        per_sample = -sample_weights * target_log_probs(log_probs, safe_target, counted)
        self.save_for_backward(sample_weights, safe_target, counted)
        self.input_shape, self.reduction, self.normalizer = log_probs.shape, reduction, normalizer
        return reduce_per_sample(per_sample, reduction, self.normalizer)

    def backward(self, grad):
        # d loss_i / d input_ic = -w[t_i] where c = t_i, 0 elsewhere: written at the targets only,
        # so the other entries and ignored rows stay exactly 0 even for an inf or NaN upstream
        # gradient (as PyTorch's; a product with the zeros would make them NaN).
        sample_weights, safe_target, counted = self.saved
        xp = backend.xp_of(grad)
        scale = per_sample_scale(grad, self.reduction, self.normalizer)
        with backend.np.errstate(invalid="ignore"):    # an ignored row's 0 * inf, discarded below
            values = -sample_weights * (scale[:, 0] if scale.ndim == 2 else scale)
        grad_input = xp.zeros(self.input_shape, dtype=grad.dtype)
        grad_input[xp.arange(self.input_shape[0]), safe_target] = xp.where(counted, values, 0)
        return grad_input


def reduce_per_sample(per_sample, reduction, normalizer):
    """'none' / 'sum' / 'mean' of per-sample losses; a mean over nothing counted is NaN (as PyTorch)."""
    if reduction == "none":
        return per_sample
    total = per_sample.sum()
    if reduction == "sum":
        return total
    if not normalizer:  # 0/0 without NumPy's divide warning
        return backend.xp_of(total).full_like(total, float("nan"))
    return total / normalizer


def reduce_per_element(per_element, reduction):
    """'none' / 'sum' / 'mean' of element-wise losses: the binary losses' mean counts elements,
    whatever their weights (as PyTorch)."""
    if reduction == "none":
        return per_element
    total = per_element.sum()
    return total if reduction == "sum" else total / per_element.size


def per_sample_scale(grad, reduction, normalizer):
    """How the upstream gradient reaches each sample's row: itself ('none', as a column), shared
    ('sum'), divided by the normaliser ('mean'; 0 when nothing counted: PyTorch's gradient when
    every target is ignored; with counted targets whose class weights are all 0, PyTorch's is NaN)."""
    if reduction == "none":
        return grad[:, None]
    if reduction == "sum":
        return grad
    return grad / normalizer if normalizer else grad * 0


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean", *, summary=None):
    """Negative log-likelihood of log-probabilities ``input`` (N, C) (e.g. ``F.log_softmax``
    output) against class ``target`` (N,); ``nll_loss(log_softmax(x, 1), t) == cross_entropy(x, t)``.
    PyTorch also takes (N, C, d1, ...) inputs; minigrad takes (N, C) and says so otherwise.
    ``summary``: as in ``cross_entropy``."""
    check_class_target_arguments("nll_loss", input, target, weight, ignore_index, reduction)
    summary = checked_summary("nll_loss", input, target, weight, ignore_index, summary)
    return NLLLoss.apply(input, target=target.array, weight=None if weight is None else weight.array,
                         ignore_index=ignore_index, reduction=reduction, normalizer=summary.normalizer)


# ----------------------------------------------------------------------------- binary cross-entropy
class BinaryCrossEntropyWithLogits(Function):
    """Per element, with s(x) = log(1 + e^-x) = -log sigmoid(x) computed stably:

        loss = w * [(1 - y) x + (1 + (p - 1) y) s(x)]       (p: pos_weight, w: weight)

    which is w * -[p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], PyTorch's formula.
    ``mean`` divides by the number of elements, whatever the weights (as PyTorch).
    """

    def forward(self, x, y, weight, pos_weight, reduction):
        xp = backend.xp_of(x)
        softplus = xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)          # s(x) = -log sigmoid(x)
        unweighted = (1 - y) * x + (1 + (pos_weight - 1) * y) * softplus
        self.save_for_backward(x, y, weight, pos_weight, softplus, unweighted)
        self.reduction, self.count = reduction, unweighted.size
        return reduce_per_element(weight * unweighted, reduction)

    def backward(self, grad):
        x, y, weight, pos_weight, softplus, unweighted = self.saved
        xp = backend.xp_of(grad)
        scale = grad / self.count if self.reduction == "mean" else grad
        sigmoid = xp.exp(-softplus)
        needs = self.needs_input_grad
        # d/dx = w [sigmoid(x) (1 + (p - 1) y) - p y];  d/dy = w [(p - 1) s(x) - x]
        # d/dw = the unweighted loss;                   d/dp = w y s(x)
        return (weight * (sigmoid * (1 + (pos_weight - 1) * y) - pos_weight * y) * scale if needs[0] else None,
                weight * ((pos_weight - 1) * softplus - x) * scale if needs[1] else None,
                unweighted * scale if needs[2] else None,
                weight * y * softplus * scale if needs[3] else None)


BCE_EPSILON = float(backend.np.float32(1e-12))  # 9.99999996e-13: PyTorch stores its 1e-12 as a float


class BinaryCrossEntropy(Function):
    """Per element, on probabilities x: loss = -w [y log x + (1 - y) log(1 - x)], each log clamped
    at -100 as PyTorch does (so x = 0 or 1 gives a large finite loss, not inf)."""

    def forward(self, x, y, weight, reduction):
        xp = backend.xp_of(x)
        with backend.np.errstate(divide="ignore"):  # log(0) = -inf, clamped next
            log_x, log_1mx = xp.maximum(xp.log(x), -100), xp.maximum(xp.log1p(-x), -100)
        unweighted = -(y * log_x + (1 - y) * log_1mx)
        self.save_for_backward(x, y, weight, log_x, log_1mx)
        self.reduction, self.count = reduction, unweighted.size
        return reduce_per_element(weight * unweighted, reduction)

    def backward(self, grad):
        x, y, weight, log_x, log_1mx = self.saved
        xp = backend.xp_of(grad)
        count = self.count if self.reduction == "mean" else 1
        scale = grad / count
        # d/dx = w (x - y) / (x (1 - x)), the denominator kept >= PyTorch's EPSILON (1e-12 rounded to
        # float32, so the huge values at x = 0 or 1 agree with PyTorch's)
        # d/dy = w [log(1 - x) - log(x)], with the logs NOT clamped (PyTorch's: +-inf at x = 0 or 1)
        needs = self.needs_input_grad
        if needs[1]:
            with backend.np.errstate(divide="ignore"):
                logit_gap = xp.log1p(-x) - xp.log(x)
        return (grad * (x - y) / xp.maximum((1 - x) * x, BCE_EPSILON) * weight / count if needs[0] else None,
                weight * logit_gap * scale if needs[1] else None,
                -(y * log_x + (1 - y) * log_1mx) * scale if needs[2] else None)


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross-entropy of probabilities ``input`` (after a sigmoid) against ``target`` in
    [0, 1], same shapes; ``weight`` broadcasts against them. Prefer
    ``binary_cross_entropy_with_logits`` on the logits: it is stable where the sigmoid saturates."""
    check_is_tensor(input, "input")
    check_is_tensor(target, "target")
    if input.shape != target.shape:
        raise ValueError(f"binary_cross_entropy: target shape must equal input shape {input.shape}, got {target.shape}")
    check_floating_input("binary_cross_entropy", input)
    check_reduction(reduction)
    values = input.array
    if values.size and (float(values.min()) < 0 or float(values.max()) > 1):
        raise ValueError("binary_cross_entropy: input: expected probabilities in [0, 1] (apply sigmoid first, "
                         "or use binary_cross_entropy_with_logits on the logits)")
    weight = loss_weight("binary_cross_entropy", "weight", weight, input)
    check_same_device("binary_cross_entropy", (input, target, weight))
    return BinaryCrossEntropy.apply(input, target.to(input.dtype), weight, reduction=reduction)


def loss_weight(name, argument, value, input):
    """An optional per-element weight as a tensor broadcasting to ``input`` (a constant 1 when None)."""
    if value is None:
        return Tensor._wrap(backend.xp_of(input.array).ones((), dtype=input.dtype))
    check_is_tensor(value, argument)
    if not broadcasts_to(value.shape, input.shape):
        raise ValueError(f"{name}: {argument} must broadcast to the input's shape {input.shape}, got {value.shape}")
    return value if value.dtype == input.dtype else value.to(input.dtype)   # PyTorch's loss keeps the input's dtype


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Sigmoid + binary cross-entropy in one stable op; ``target`` holds probabilities in [0, 1]
    with ``input``'s shape; ``weight`` (per element) and ``pos_weight`` (per class, the last axis)
    broadcast against it."""
    check_is_tensor(input, "input")
    check_is_tensor(target, "target")
    if input.shape != target.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: target shape must equal input shape {input.shape}, "
                         f"got {target.shape}")
    check_floating_input("binary_cross_entropy_with_logits", input)
    check_reduction(reduction)
    extras = [loss_weight("binary_cross_entropy_with_logits", argument, value, input)
              for argument, value in (("weight", weight), ("pos_weight", pos_weight))]
    check_same_device("binary_cross_entropy_with_logits", (input, target, *extras))
    return BinaryCrossEntropyWithLogits.apply(input, target.to(input.dtype), *extras, reduction=reduction)


def broadcasts_to(shape, target_shape):
    """True when ``shape`` broadcasts to ``target_shape`` without enlarging it."""
    if len(shape) > len(target_shape):
        return False
    return all(size in (1, target) for size, target in zip(reversed(shape), reversed(target_shape)))
