"""Adagrad, with PyTorch's exact formulas and defaults.

For each parameter p with gradient g, at step t = 1, 2, ...:

    g = g + weight_decay * p                         # L2 penalty inside the gradient
    clr = lr / (1 + (t - 1) * lr_decay)              # the learning rate, decayed per step
    sum = sum + g * g                                # every squared gradient so far
    p = p - clr * g / (sqrt(sum) + eps)              # (sum starts at initial_accumulator_value)

Each coordinate's step shrinks as its gradients add up: rare features keep larger steps.

Read next: ``optim/adadelta.py``.
"""
from __future__ import annotations

from .. import backend
from .optimizer import Optimizer


class Adagrad(Optimizer):
    NON_NEGATIVE = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")

    def __init__(self, params, lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))

    def state_keys(self, group):
        return ("step", "sum")

    def update(self, param, grad, state, group):
        xp = backend.xp_of(param)
        if not state:
            state.update(step=0, sum=xp.full_like(param, group["initial_accumulator_value"]))
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param
        decayed_lr = group["lr"] / (1 + (state["step"] - 1) * group["lr_decay"])
        state["sum"] += grad * grad
        param -= decayed_lr * (grad / (xp.sqrt(state["sum"]) + group["eps"]))
