"""Learning-rate schedules (``minigrad.optim.lr_scheduler``), with PyTorch's exact recurrences.

A scheduler changes ``group["lr"]`` of an optimizer's parameter groups each time ``step()`` is
called (after ``optimizer.step()``, once per epoch or once per batch, as the schedule means).
Building one already sets the learning rate of step 0. ``last_epoch`` counts the steps taken.

Most schedules are written as PyTorch writes them: the *next* lr from the *current* one
(``lr * gamma``), not from a closed form (``base_lr * gamma ** (epoch // step_size)``). The two
agree mathematically but round differently, and the recurrence is what PyTorch runs, so the
trajectories here equal PyTorch's to the last bit. It also means a schedule composes with
anything else that changes ``group["lr"]`` in between, as in PyTorch.

``state_dict()`` holds plain numbers and lists (the optimizer is not part of it, and a
``LambdaLR``'s functions are not saved: rebuild the scheduler with them, then load the state).

Read next: ``data/dataset.py`` (where batches come from).
"""
from __future__ import annotations

import math
import numbers

from .optimizer import Optimizer


class LRScheduler:
    def __init__(self, optimizer, last_epoch=-1):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected a minigrad Optimizer, got {type(optimizer).__name__}")
        if last_epoch != -1:
            raise ValueError(f"last_epoch: expected -1 (a new schedule), got {last_epoch!r}; to resume, build "
                             f"the scheduler and call load_state_dict(saved_state) instead")
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_epoch = -1
        self._step_count = 0
        self._is_initial = True
        self.step()  # step 0: the schedule's first lr
        self._is_initial = False

    def get_lr(self):
        """The lr of each group for step ``last_epoch`` (already advanced), from the current ones."""
        raise NotImplementedError

    def step(self, epoch=None):
        if epoch is not None:
            raise TypeError("step(epoch) is deprecated in PyTorch and not supported by minigrad; call step() "
                            "once per epoch (or per batch) instead")
        self._step_count += 1
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self):
        """The lr of each group as set by the last ``step()``."""
        return list(self._last_lr)

    def _current_lrs(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    # ------------------------------------------------------------------ saving and resuming
    def state_dict(self):
        """Everything but the optimizer: plain numbers and lists, for a checkpoint."""
        return {key: _plain(value) for key, value in self.__dict__.items() if key != "optimizer"}

    def load_state_dict(self, state_dict):
        """Restore a state saved by the same kind of scheduler; checked before anything changes."""
        expected = set(self.state_dict())
        if not isinstance(state_dict, dict) or set(state_dict) != expected:
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"state_dict: expected {type(self).__name__}'s keys {sorted(expected)}, got {keys}")
        groups = len(self.optimizer.param_groups)
        if len(state_dict["base_lrs"]) != groups:
            raise ValueError(f"state_dict: base_lrs: expected {groups} (one per param group), "
                             f"got {len(state_dict['base_lrs'])}")
        self.__dict__.update({key: _plain(value) for key, value in state_dict.items()})


def _plain(value):
    """A copy made of lists, dicts and numbers (so saving, loading and checkpoints share nothing)."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _check_positive_int(name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


def _per_group(name, value, optimizer):
    """One value for every param group (a list of them, or one value repeated), as PyTorch."""
    groups = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(f"{name}: expected {groups} values (one per param group), got {len(value)}")
        return list(value)
    return [value] * groups


# ----------------------------------------------------------------------------- the schedules
class StepLR(LRScheduler):
    """lr = lr * gamma every ``step_size`` steps."""

    def __init__(self, optimizer, step_size, gamma=0.1, last_epoch=-1):
        _check_positive_int("step_size", step_size)
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class MultiStepLR(LRScheduler):
    """lr = lr * gamma at each milestone (a milestone listed twice multiplies by gamma twice)."""

    def __init__(self, optimizer, milestones, gamma=0.1, last_epoch=-1):
        milestones = list(milestones)
        if not all(isinstance(m, numbers.Integral) and not isinstance(m, bool) for m in milestones):
            raise ValueError(f"milestones: expected step numbers (ints), got {milestones!r}")
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        times = self.milestones.count(self.last_epoch)
        if not times:
            return self._current_lrs()
        return [lr * self.gamma ** times for lr in self._current_lrs()]


class ExponentialLR(LRScheduler):
    """lr = lr * gamma every step."""

    def __init__(self, optimizer, gamma, last_epoch=-1):
        self.gamma = gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return self._current_lrs()
        return [lr * self.gamma for lr in self._current_lrs()]


class CosineAnnealingLR(LRScheduler):
    """lr follows eta_min + (base_lr - eta_min) (1 + cos(pi t / T_max)) / 2, and back up after T_max.

    PyTorch's recurrence: each step multiplies the distance to eta_min by the ratio of two
    consecutive cosine terms; past T_max the lr climbs again (a cosine, not a restart).
    """

    def __init__(self, optimizer, T_max, eta_min=0.0, last_epoch=-1):
        _check_positive_int("T_max", T_max)
        self.T_max, self.eta_min = T_max, eta_min
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        t, period = self.last_epoch, self.T_max
        if self._is_initial:
            return self._current_lrs()
        if (t - 1 - period) % (2 * period) == 0:  # the trough: step up from eta_min
            return [lr + (base_lr - self.eta_min) * (1 - math.cos(math.pi / period)) / 2
                    for lr, base_lr in zip(self._current_lrs(), self.base_lrs)]
        ratio = (1 + math.cos(math.pi * t / period)) / (1 + math.cos(math.pi * (t - 1) / period))
        return [ratio * (lr - self.eta_min) + self.eta_min for lr in self._current_lrs()]


class LambdaLR(LRScheduler):
    """lr = base_lr * lr_lambda(step), one function for all groups or one per group."""

    def __init__(self, optimizer, lr_lambda, last_epoch=-1):
        self.lr_lambdas = _per_group("lr_lambda", lr_lambda, optimizer)
        if not all(callable(f) for f in self.lr_lambdas):
            raise TypeError(f"lr_lambda: expected a function of the step (or one per param group), got {lr_lambda!r}")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base_lr * f(self.last_epoch) for f, base_lr in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self):
        """The functions are code, not state: they are left out (rebuild with them, then load)."""
        return {key: _plain(value) for key, value in self.__dict__.items() if key not in ("optimizer", "lr_lambdas")}

    def load_state_dict(self, state_dict):
        lr_lambdas = self.lr_lambdas
        super().load_state_dict(state_dict)
        self.lr_lambdas = lr_lambdas


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin): lr rises from max_lr/div_factor to max_lr over the first
    ``pct_start`` of ``total_steps``, then anneals to max_lr/(div_factor*final_div_factor);
    momentum (SGD's momentum or Adam's beta1) moves the opposite way. Step once per batch.

    Phases (``three_phase=False``), with t the step and a(start, end, pct) the annealing:
        t <= pct_start*T - 1:  lr = a(initial, max, t / (pct_start*T - 1))
        afterwards:            lr = a(max, min, (t - pct_start*T + 1) / (T - pct_start*T))
    where a is cosine, end + (start - end)/2 (1 + cos(pi pct)), or linear.
    """

    def __init__(self, optimizer, max_lr, total_steps=None, epochs=None, steps_per_epoch=None, pct_start=0.3,
                 anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95,
                 div_factor=25.0, final_div_factor=1e4, three_phase=False, last_epoch=-1):
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("total_steps: expected total_steps, or epochs and steps_per_epoch, got neither")
            _check_positive_int("epochs", epochs)
            _check_positive_int("steps_per_epoch", steps_per_epoch)
            total_steps = epochs * steps_per_epoch
        _check_positive_int("total_steps", total_steps)
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"pct_start: expected a float in [0, 1], got {pct_start!r}")
        if anneal_strategy not in ("cos", "linear"):
            raise ValueError(f"anneal_strategy: expected 'cos' or 'linear', got {anneal_strategy!r}")
        self.total_steps, self.anneal_strategy = total_steps, anneal_strategy
        self.phases = self._phases(float(pct_start * total_steps), total_steps, three_phase)
        max_lrs = _per_group("max_lr", max_lr, optimizer)
        # Per group, the values the phases move between (PyTorch keeps them in the param groups).
        self.group_values = [dict(initial_lr=m / div_factor, max_lr=m, min_lr=m / div_factor / final_div_factor)
                             for m in max_lrs]
        self.cycle_momentum = cycle_momentum
        if cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(f"cycle_momentum: {type(optimizer).__name__} has no momentum or betas to cycle; "
                                 f"pass cycle_momentum=False")
            self.use_beta1 = "betas" in optimizer.defaults
            for values, group, high, low in zip(self.group_values, optimizer.param_groups,
                                                _per_group("max_momentum", max_momentum, optimizer),
                                                _per_group("base_momentum", base_momentum, optimizer)):
                values.update(max_momentum=high, base_momentum=low)
                self._set_momentum(group, high)
        for group, values in zip(optimizer.param_groups, self.group_values):
            group["lr"] = values["initial_lr"]
        super().__init__(optimizer, last_epoch)

    @staticmethod
    def _phases(warmup_end, total_steps, three_phase):
        """(end step, lr from, lr to, momentum from, momentum to) of each phase."""
        if three_phase:
            return [[warmup_end - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                    [2 * warmup_end - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"],
                    [total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"]]
        return [[warmup_end - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"],
                [total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"]]

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def _set_momentum(self, group, momentum):
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum

    def get_lr(self):
        t = self.last_epoch
        if t > self.total_steps:
            raise ValueError(f"OneCycleLR: tried to step {t} times; total_steps is {self.total_steps}")
        lrs = []
        for group, values in zip(self.optimizer.param_groups, self.group_values):
            start_step = 0.0
            for index, (end_step, lr_from, lr_to, momentum_from, momentum_to) in enumerate(self.phases):
                if t <= end_step or index == len(self.phases) - 1:
                    pct = (t - start_step) / (end_step - start_step)
                    lrs.append(self._anneal(values[lr_from], values[lr_to], pct))
                    if self.cycle_momentum:
                        self._set_momentum(group, self._anneal(values[momentum_from], values[momentum_to], pct))
                    break
                start_step = end_step
        return lrs
