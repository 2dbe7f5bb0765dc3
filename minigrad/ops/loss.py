"""Losses: cross-entropy (fused with log_softmax) and mean squared error.

Every loss has one *normaliser*: the number the summed loss is divided by for
``reduction="mean"``. ``cross_entropy_normalizer`` computes it on its own because gradient
accumulation must fix it for the whole batch before looking at any micro-batch.
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function
from ..tensor import Tensor, check_is_tensor, check_same_device
from .softmax import log_softmax_array

REDUCTIONS = ("none", "sum", "mean")


def counted_target_weights(target, weight, ignore_index):
    """Per-sample weight in the loss: w[target] (1 without class weights), 0 where ignored.

    Also returns the targets with ignored entries replaced by class 0, safe for indexing.
    """
    xp = backend.xp_of(target)
    counted = target != ignore_index
    safe_target = xp.where(counted, target, 0)
    if weight is None:
        return counted.astype(backend.float64), safe_target
    return weight[safe_target] * counted, safe_target


def cross_entropy_normalizer(target, weight=None, ignore_index=-100):
    """Sum of the counted targets' weights: how many targets a 'mean' loss averages over.

    Targets equal to ``ignore_index`` count 0; with class weights each target counts w[target].
    """
    target_array = target.array if isinstance(target, Tensor) else target  # also a bare array
    weight_array = weight.array if isinstance(weight, Tensor) else weight
    sample_weights, _ = counted_target_weights(target_array, weight_array, ignore_index)
    return float(sample_weights.sum())


class CrossEntropy(Function):
    """loss_i = w[t_i] * (1-eps) * (-log p_i[t_i]) + (eps/C) * sum_c w[c] * (-log p_i[c]).

    This is PyTorch's formula, label smoothing included; ignored samples contribute 0 and
    ``mean`` divides by ``cross_entropy_normalizer`` (the sum of w[t_i] over counted i).
    """

    def forward(self, logits, target, weight, ignore_index, reduction, label_smoothing):
        xp = backend.xp_of(logits)
        n, num_classes = logits.shape
        log_probs = log_softmax_array(logits, axis=1)                         # (N, C)
        sample_weights, safe_target = counted_target_weights(target, weight, ignore_index)
        sample_weights = sample_weights.astype(logits.dtype, copy=False)      # w[t_i], 0 if ignored
        # q[i, c] = d loss_i / d(-log p_i[c]): the target distribution the loss pulls towards
        q = xp.zeros_like(log_probs)
        q[xp.arange(n), safe_target] = (1 - label_smoothing) * sample_weights
        if label_smoothing:
            class_weights = xp.ones(num_classes, dtype=logits.dtype) if weight is None else weight
            counted = target != ignore_index
            q += (label_smoothing / num_classes) * class_weights[None, :] * counted[:, None]
        per_sample = -(q * log_probs).sum(axis=1)                             # (N,)
        self.save_for_backward(log_probs, q)
        self.reduction = reduction
        self.normalizer = sample_weights.sum()
        if reduction == "none":
            return per_sample
        total = per_sample.sum()
        if reduction == "sum":
            return total
        if not self.normalizer:  # every target ignored: 0/0 is NaN, as in PyTorch (minus NumPy's warning)
            return xp.full_like(total, xp.nan)
        return total / self.normalizer

    def backward(self, grad):
        # d loss_i / d logits_i = sum_c q_ic * softmax_i - q_i   (through log_softmax)
        log_probs, q = self.saved
        xp = backend.xp_of(grad)
        if self.reduction == "none":
            scale = grad[:, None]
        elif self.reduction == "sum":
            scale = grad
        elif self.normalizer:
            scale = grad / self.normalizer
        else:  # every target ignored: the loss is 0/0 = nan, but no logit affects it (PyTorch: grad 0)
            scale = grad * 0
        grad_logits = xp.exp(log_probs) * q.sum(axis=1, keepdims=True) - q
        return grad_logits * scale


def cross_entropy(logits, target, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of ``logits`` (N, C) against integer class ``target`` (N,)."""
    check_cross_entropy_arguments(logits, target, weight, ignore_index, reduction, label_smoothing)
    return CrossEntropy.apply(logits, target=target.array, weight=None if weight is None else weight.array,
                              ignore_index=ignore_index, reduction=reduction,
                              label_smoothing=float(label_smoothing))


def check_cross_entropy_arguments(logits, target, weight, ignore_index, reduction, label_smoothing):
    check_is_tensor(logits, "input")
    check_is_tensor(target, "target")
    if weight is not None:
        check_is_tensor(weight, "weight")
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: input must be 2-d (N, C), got shape {logits.shape}")
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class indices, got dtype {target.dtype}")
    if target.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: target must have shape ({logits.shape[0]},) to match input "
                         f"{logits.shape}, got {target.shape}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing: expected a value in [0, 1], got {label_smoothing}")
    check_same_device("cross_entropy", (logits, target) if weight is None else (logits, target, weight))
    num_classes = logits.shape[1]
    if weight is not None and weight.shape != (num_classes,):
        raise ValueError(f"cross_entropy: weight must have shape ({num_classes},), got {weight.shape}")
    counted = target.array[target.array != ignore_index]
    if counted.size and (int(counted.min()) < 0 or int(counted.max()) >= num_classes):
        bad = int(counted.min()) if int(counted.min()) < 0 else int(counted.max())
        raise ValueError(f"cross_entropy: target: expected class indices in [0, {num_classes - 1}] "
                         f"(or ignore_index={ignore_index}), got {bad}")


def mse_loss(input, target, reduction="mean"):
    """Mean squared error; input and target must have the same shape (no silent broadcast)."""
    check_is_tensor(input, "input")
    check_is_tensor(target, "target")
    if input.shape != target.shape:
        raise ValueError(f"mse_loss: target shape must equal input shape {input.shape}, got {target.shape}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    squared = (input - target) ** 2  # d/dinput: 2 (input - target)
    if reduction == "none":
        return squared
    return squared.sum() if reduction == "sum" else squared.mean()
