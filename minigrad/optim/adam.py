"""Adam and AdamW, with PyTorch's exact formulas.

For each parameter p with gradient g, at step t = 1, 2, ...:

    g = g + weight_decay * p                  # Adam: L2 penalty inside the gradient
    p = p * (1 - lr * weight_decay)           # AdamW instead: decay decoupled from g
    m = beta1 * m + (1 - beta1) * g           # first moment (mean of g)
    v = beta2 * v + (1 - beta2) * g * g       # second moment (uncentred variance of g)
    v_max = max(v_max, v)                     # amsgrad only; then v_max replaces v below
    denom = sqrt(v) / sqrt(1 - beta2**t) + eps   # eps is added AFTER the bias correction
    p = p - lr / (1 - beta1**t) * m / denom

m and v start at zero, so early averages are biased towards zero; dividing by
(1 - beta**t) removes that bias.

Read next: ``optim/rmsprop.py``, ``optim/adagrad.py``, ``optim/adadelta.py`` (the same
pattern), then ``optim/lr_scheduler.py``; or straight on to ``data/dataset.py``.
"""
from __future__ import annotations

import math
import numbers

from .. import backend
from .optimizer import Optimizer


class Adam(Optimizer):
    NON_NEGATIVE = ("lr", "eps", "weight_decay")

    decoupled_weight_decay = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def check_hyperparameters(self, group):
        super().check_hyperparameters(group)
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2 or \
                not all(isinstance(b, numbers.Real) and 0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas: expected two numbers in [0, 1), got {betas!r}")

    def state_keys(self, group):
        return ("step", "exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())

    def update(self, param, grad, state, group):
        xp = backend.xp_of(param)
        beta1, beta2 = group["betas"]
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        if not state:
            state.update(step=0, exp_avg=xp.zeros_like(param), exp_avg_sq=xp.zeros_like(param))
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(param)
        state["step"] += 1
        if weight_decay != 0:
            if self.decoupled_weight_decay:
                param *= 1 - lr * weight_decay
            else:
                grad = grad + weight_decay * param
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg += (1 - beta1) * (grad - exp_avg)       # = beta1 * m + (1 - beta1) * g (torch's lerp)
        exp_avg_sq *= beta2
        exp_avg_sq += (1 - beta2) * grad * grad
        if group["amsgrad"]:
            xp.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            exp_avg_sq = state["max_exp_avg_sq"]
        bias_correction1 = 1 - beta1 ** state["step"]
        bias_correction2 = 1 - beta2 ** state["step"]
        denom = xp.sqrt(exp_avg_sq) / math.sqrt(bias_correction2) + eps
        param -= (lr / bias_correction1) * exp_avg / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p shrinks by lr*weight_decay
    each step, independently of the gradient's scaling by the moments."""

    decoupled_weight_decay = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
