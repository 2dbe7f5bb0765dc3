"""``Optimizer``: the bookkeeping every optimizer shares.

An optimizer holds *parameter groups* (lists of parameters that share hyper-parameters, e.g. a
smaller ``lr`` for a pretrained backbone) and a *state* per parameter (momentum buffer, Adam's
moments). Subclasses write only the update rule, in ``update(parameter, grad, state, group)``;
this class loops over groups, skips parameters without a gradient, runs the update under
``no_grad``, and saves/restores everything as plain host NumPy arrays.

Read next: ``optim/sgd.py`` (the first update rule).
"""
from __future__ import annotations

import copy
import numbers

from .. import backend
from ..autograd import enable_grad, no_grad, zero_gradients
from ..backend import np
from ..tensor import Tensor


class Optimizer:
    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self.state = {}  # id(parameter) -> {"name": host-or-device array or number}
        if isinstance(params, Tensor):
            raise TypeError(f"params: expected an iterable of Parameters or of dicts, got a single "
                            f"{type(params).__name__}; wrap it in a list")
        groups = list(params)
        if not groups:
            raise ValueError("params: expected at least one parameter, got an empty list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # ------------------------------------------------------------------ groups
    def add_param_group(self, group):
        """Add a dict ``{"params": [...], "lr": ...}``; missing hyper-parameters take the defaults."""
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"param group: expected a dict with a 'params' key, got {group!r}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        for index, parameter in enumerate(params):
            if not isinstance(parameter, Tensor) or not parameter.requires_grad:
                raise TypeError(f"params[{index}]: expected a Tensor with requires_grad=True "
                                f"(a Parameter), got {type(parameter).__name__}")
        seen = {id(p) for existing in self.param_groups for p in existing["params"]}
        if len({id(p) for p in params}) != len(params) or any(id(p) in seen for p in params):
            raise ValueError("params: a parameter appears more than once; each may be in one group only")
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise TypeError(f"param group: unknown hyper-parameters {sorted(unknown)}; "
                            f"expected some of {sorted(self.defaults)}")
        full_group = {**self.defaults, **group, "params": params}
        self.check_hyperparameters(full_group)
        self.param_groups.append(full_group)

    NON_NEGATIVE = ("lr",)  # hyper-parameters that must be >= 0; each optimizer names its own

    def check_hyperparameters(self, group):
        """Raise ValueError naming the argument when a value is out of range (subclasses extend)."""
        for name in self.NON_NEGATIVE:
            check_non_negative(name, group[name])

    # ------------------------------------------------------------------ the update
    def zero_grad(self, set_to_none=True):
        """Forget every gradient (``.grad = None``, PyTorch's default), or with
        ``set_to_none=False`` fill existing gradients with zeros in place."""
        zero_gradients(self._all_params(), set_to_none)

    def step(self, closure=None):
        """Apply one update to every parameter that has a gradient, in place on ``p.array``.

        ``closure`` (optional, as in PyTorch): a function that zeroes the gradients, recomputes
        the loss, calls backward and returns the loss; it runs first and its loss is returned.
        """
        loss = None
        if closure is not None:
            with enable_grad():  # its backward needs a graph, even if step() runs under no_grad
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                for parameter in group["params"]:
                    if parameter.grad is None:
                        continue
                    state = self.state.setdefault(id(parameter), {})
                    self.update(parameter.array, parameter.grad.array, state, group)
                    parameter._bump_version()  # a graph that saved the old value must not use it
        return loss

    def update(self, param, grad, state, group):
        """Change the array ``param`` in place, given its gradient array and its state dict."""
        raise NotImplementedError

    # ------------------------------------------------------------------ saving and resuming
    def _all_params(self):
        return [parameter for group in self.param_groups for parameter in group["params"]]

    def state_dict(self):
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}``.

        Parameters are named by their position across the groups (as in PyTorch); arrays are
        host NumPy copies, so the dict pickles and loads on any device.
        """
        indices = {id(p): index for index, p in enumerate(self._all_params())}
        state = {indices[key]: {name: _to_host_value(value) for name, value in entry.items()}
                 for key, entry in self.state.items() if key in indices}
        groups = [{**{k: v for k, v in group.items() if k != "params"},
                   "params": [indices[id(p)] for p in group["params"]]} for group in self.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore hyper-parameters and state exactly; everything is checked before anything changes."""
        params = self._all_params()
        new_groups, new_state = self._checked_state(state_dict, params)
        for group, saved in zip(self.param_groups, new_groups):
            group.update(saved)
        self.state = new_state

    def state_keys(self, group):
        """Keys a parameter's saved state must have once it has any (subclasses that need some)."""
        return ()

    def _checked_state(self, state_dict, params):
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"state_dict: expected a dict with keys 'state' and 'param_groups', "
                             f"got {type(state_dict).__name__} with keys {sorted(getattr(state_dict, 'keys', list)())}")
        saved_groups = state_dict["param_groups"]
        if not isinstance(saved_groups, (list, tuple)):
            raise ValueError(f"state_dict: param_groups: expected a list, got {type(saved_groups).__name__}")
        for index, saved in enumerate(saved_groups):
            if not isinstance(saved, dict) or not isinstance(saved.get("params"), (list, tuple)):
                raise ValueError(f"state_dict: param_groups[{index}]: expected a dict with a 'params' list, "
                                 f"got {saved!r}")
        own_sizes = [len(g["params"]) for g in self.param_groups]
        saved_sizes = [len(g["params"]) for g in saved_groups]
        if own_sizes != saved_sizes:
            raise ValueError(f"state_dict: param_groups sizes: expected {own_sizes}, got {saved_sizes}")
        new_groups = []
        for saved in saved_groups:
            hyper = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            if set(hyper) - set(self.defaults):
                raise ValueError(f"state_dict: param group hyper-parameters {sorted(set(hyper) - set(self.defaults))} "
                                 f"are not {type(self).__name__}'s (expected some of {sorted(self.defaults)})")
            self.check_hyperparameters({**self.defaults, **hyper})
            new_groups.append(hyper)
        group_of = [{**own, **hyper} for own, hyper in zip(self.param_groups, new_groups) for _ in own["params"]]
        return new_groups, self._checked_parameter_states(state_dict["state"], params, group_of)

    def _checked_parameter_states(self, saved_state, params, group_of):
        """Each saved per-parameter state, on its parameter's device and dtype, checked for its keys."""
        if not isinstance(saved_state, dict):
            raise ValueError(f"state_dict: state: expected a dict of parameter index -> dict, "
                             f"got {type(saved_state).__name__}")
        new_state = {}
        for index, entry in saved_state.items():
            if not isinstance(index, numbers.Integral) or not 0 <= index < len(params):
                raise ValueError(f"state_dict: state key: expected a parameter index in [0, {len(params) - 1}], "
                                 f"got {index!r}")
            if not isinstance(entry, dict):
                raise ValueError(f"state_dict: state[{index}]: expected a dict, got {type(entry).__name__}")
            required = self.state_keys(group_of[index])
            missing = [key for key in required if key not in entry]
            if entry and missing:
                raise ValueError(f"state_dict: state[{index}]: missing {missing[0]!r} ({type(self).__name__} "
                                 f"keeps {list(required)} for each parameter it has updated)")
            new_state[id(params[index])] = {name: _to_param_value(value, params[index], f"state[{index}][{name!r}]")
                                            for name, value in entry.items()}
        return new_state


def _to_host_value(value):
    """Arrays become host NumPy copies (picklable, device-independent); numbers stay numbers."""
    if backend.is_cupy_array(value) or isinstance(value, np.ndarray):
        return backend.to_host(value).copy()
    return value


def _to_param_value(value, parameter, where):
    """A saved array (or Tensor, as ``mg.load`` gives) back on the parameter's device and dtype,
    shape checked; numbers unchanged."""
    if isinstance(value, Tensor):
        value = value.array
    if not hasattr(value, "shape"):
        return value
    if tuple(value.shape) != parameter.shape:
        raise ValueError(f"state_dict: {where}: expected shape {parameter.shape}, got {tuple(value.shape)}")
    return backend.to_device(np.array(backend.to_host(value), dtype=parameter.dtype), parameter.device)


def check_non_negative(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not value >= 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
