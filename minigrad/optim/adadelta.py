"""Adadelta, with PyTorch's exact formulas and defaults.

For each parameter p with gradient g, every step:

    g = g + weight_decay * p                                  # L2 penalty inside the gradient
    v = rho * v + (1 - rho) * g * g                           # running mean of g^2
    delta = sqrt(u + eps) / sqrt(v + eps) * g                 # step in the units of p
    u = rho * u + (1 - rho) * delta * delta                   # running mean of delta^2
    p = p - lr * delta                                        # (v and u start at 0; lr = 1 by default)

The ratio of the two running RMS values sets each coordinate's step size, so the units of the
update match those of the parameter (Zeiler, 2012).

Read next: ``optim/lr_scheduler.py``.
"""
from __future__ import annotations

from .. import backend
from .optimizer import Optimizer


class Adadelta(Optimizer):
    NON_NEGATIVE = ("lr", "eps", "weight_decay")

    def __init__(self, params, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay))

    def check_hyperparameters(self, group):
        super().check_hyperparameters(group)
        if not 0.0 <= group["rho"] <= 1.0:
            raise ValueError(f"rho: expected a number in [0, 1], got {group['rho']!r}")

    def state_keys(self, group):
        return ("step", "square_avg", "acc_delta")

    def update(self, param, grad, state, group):
        xp = backend.xp_of(param)
        rho, eps = group["rho"], group["eps"]
        if not state:
            state.update(step=0, square_avg=xp.zeros_like(param), acc_delta=xp.zeros_like(param))
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param
        square_avg, acc_delta = state["square_avg"], state["acc_delta"]
        square_avg *= rho
        square_avg += (1 - rho) * grad * grad
        delta = xp.sqrt(acc_delta + eps) / xp.sqrt(square_avg + eps) * grad
        acc_delta *= rho
        acc_delta += (1 - rho) * delta * delta
        param -= group["lr"] * delta
