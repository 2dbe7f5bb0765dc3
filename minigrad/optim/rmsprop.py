"""RMSprop, with PyTorch's exact formulas and defaults.

For each parameter p with gradient g, every step:

    g = g + weight_decay * p                        # L2 penalty inside the gradient
    v = alpha * v + (1 - alpha) * g * g             # running mean of g^2 (starts at 0)
    m = m + (1 - alpha) * (g - m)                   # centered only: running mean of g
    avg = sqrt(v - m * m) + eps   if centered, else sqrt(v) + eps   # eps outside the sqrt
    buf = momentum * buf + g / avg;  p = p - lr * buf      with momentum > 0 (buf starts at 0)
    p = p - lr * g / avg                                   otherwise

No bias correction (unlike Adam): v starts at zero, so the first steps are large.

Read next: ``optim/adagrad.py``.
"""
from __future__ import annotations

from .. import backend
from .optimizer import Optimizer


class RMSprop(Optimizer):
    NON_NEGATIVE = ("lr", "alpha", "eps", "weight_decay", "momentum")

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def state_keys(self, group):
        return (("step", "square_avg") + (("momentum_buffer",) if group["momentum"] > 0 else ())
                + (("grad_avg",) if group["centered"] else ()))

    def update(self, param, grad, state, group):
        xp = backend.xp_of(param)
        alpha, eps, momentum = group["alpha"], group["eps"], group["momentum"]
        if not state:
            state.update(step=0, square_avg=xp.zeros_like(param))
            if momentum > 0:
                state["momentum_buffer"] = xp.zeros_like(param)
            if group["centered"]:
                state["grad_avg"] = xp.zeros_like(param)
        state["step"] += 1
        if group["weight_decay"] != 0:
            grad = grad + group["weight_decay"] * param
        square_avg = state["square_avg"]
        square_avg *= alpha
        square_avg += (1 - alpha) * grad * grad
        if group["centered"]:
            grad_avg = state["grad_avg"]
            grad_avg += (1 - alpha) * (grad - grad_avg)  # torch's lerp
            avg = xp.sqrt(square_avg - grad_avg * grad_avg) + eps
        else:
            avg = xp.sqrt(square_avg) + eps
        if momentum > 0:
            buffer = state.setdefault("momentum_buffer", xp.zeros_like(param))  # momentum may start later
            buffer *= momentum
            buffer += grad / avg
            param -= group["lr"] * buffer
        else:
            param -= group["lr"] * (grad / avg)
