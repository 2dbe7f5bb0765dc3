"""Stochastic gradient descent with momentum, dampening, Nesterov and L2 weight decay.

PyTorch's update, step by step (g is the gradient, p the parameter):

    g = g + weight_decay * p                      # L2 penalty folded into the gradient
    buf = g                    on the first step  # the buffer starts as the first gradient,
    buf = momentum * buf + (1 - dampening) * g    # not as zero (so no warm-up bias)
    g = g + momentum * buf     with nesterov, else g = buf
    p = p - lr * g

Read next: ``optim/adam.py``.
"""
from __future__ import annotations

from .optimizer import Optimizer


class SGD(Optimizer):
    NON_NEGATIVE = ("lr", "momentum", "dampening", "weight_decay")

    def __init__(self, params, lr, momentum=0, dampening=0, weight_decay=0, nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def check_hyperparameters(self, group):
        super().check_hyperparameters(group)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"nesterov: needs momentum > 0 and dampening = 0, got momentum="
                             f"{group['momentum']!r} and dampening={group['dampening']!r}")

    def update(self, param, grad, state, group):
        momentum, weight_decay = group["momentum"], group["weight_decay"]
        if weight_decay != 0:
            grad = grad + weight_decay * param
        if momentum != 0:
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = grad.copy()
            else:
                buffer *= momentum
                # (1 - 0) * grad is grad, bit for bit: without dampening, no product and no temporary
                buffer += (1 - group["dampening"]) * grad if group["dampening"] else grad
            grad = grad + momentum * buffer if group["nesterov"] else buffer
        param -= group["lr"] * grad
