"""Optimizer base class: param groups, per-parameter state and state_dict (PyTorch semantics).

Imports backend and tensor only; never `disttrain.distributed` or mpi4py.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy

from disttrain.backend import asnumpy, get_array_module, is_cupy_array, to_device
from disttrain.tensor import Tensor, enable_grad


class _RequiredParameter:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()  # a default that every param group must override
_SET_ERROR = ("optimizer parameters need to be organized in ordered collections, but the ordering "
              "of tensors in sets will change between runs. Please use a list instead.")


class Optimizer:
    """Base class of all optimizers: keeps `param_groups` and per-parameter `state`.

    A subclass passes its hyper-parameter `defaults` and implements `_update(param, grad, state,
    group)`, which changes the arrays `param` (and `state`) in place for one parameter. A
    torch-style subclass may instead override `step()` itself and keep its own per-parameter
    state in `self.state[p]`: `state` is a `defaultdict(dict)` keyed by parameter, as torch's.

    Args:
        params: an iterable of Parameters, or of dicts (param groups) each with a "params" entry
            and optional per-group hyper-parameters overriding `defaults`.
        defaults: hyper-parameters used by groups that do not set them.

    Example:
        >>> import disttrain.nn as nn, disttrain.optim as optim
        >>> w, b = nn.Parameter(dt.zeros(3, 2)), nn.Parameter(dt.zeros(3))
        >>> opt = optim.SGD([{"params": [w]}, {"params": [b], "lr": 0.1}], lr=0.01)
        >>> [g["lr"] for g in opt.param_groups]
        [0.01, 0.1]
    """

    # NOTE: built-in optimizers keep state as raw arrays (updated with `out=`); a torch-style
    # subclass keeps Tensors, so load_state_dict() gives its state back as Tensors.
    _array_state = False

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], defaults: dict[str, Any]):
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of "
                            f"Tensors or dicts, but got {type(params).__name__}; wrap it in a list")
        if isinstance(params, set):
            raise TypeError(_SET_ERROR)
        self.defaults = defaults
        # NOTE: a defaultdict, as torch: custom optimizers do `state = self.state[p]` and test
        # `len(state) == 0`; state_dict() leaves the empty entries out.
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params"]
        return "\n".join(lines + [")"])

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (with optional per-group hyper-parameters) to optimize."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError(_SET_ERROR)
        param_group["params"] = params = list(params)
        seen: set[int] = set()
        for i, param in enumerate(params):
            if not isinstance(param, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params "
                                f"(index {i}) is {type(param).__name__}")
            if not param.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
            if id(param) in seen:
                raise ValueError(f"optimizer got a duplicate parameter (index {i} in its group, "
                                 f"shape {param.shape}); pass each parameter once")
            seen.add(id(param))
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError("parameter group didn't specify a value of required "
                                 f"optimization parameter {name}")
            param_group.setdefault(name, default)
        for group in self.param_groups:
            if any(id(p) in seen for p in group["params"]):
                raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's `.grad`: to None (default), or zero its array in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.array.fill(0)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a `.grad`; returns `closure()` if one is given.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss; it is
                called before the update (with gradient recording enabled).
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                param, grad = p.array, p.grad.array
                if grad.shape != param.shape:
                    raise ValueError(f"{type(self).__name__}.step: parameter of shape "
                                     f"{param.shape} has a gradient of shape {grad.shape}")
                self._update(param, grad, self.state[p], group)
        return loss

    def _update(self, param, grad, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _update")

    def state_dict(self) -> dict[str, Any]:
        """The optimizer state in PyTorch's layout, with parameters named by integer position.

        `{"state": {index: {name: numpy array or number}}, "param_groups": [{hyper-parameters,
        "params": [index, ...]}]}`; indices count parameters across groups in order. Arrays
        (and Tensors) are host numpy copies, so the result never aliases live state or holds GPU
        memory. "step" is a Python float (torch keeps a one-element tensor); `load_state_dict`
        takes either.
        """
        index: dict[int, int] = {}
        param_groups = []
        for group in self.param_groups:
            packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            param_groups.append(packed)
        state = {
            index[id(p)]: {name: _to_host(value) for name, value in s.items()}
            for p, s in self.state.items()
            if s and id(p) in index  # NOTE: like torch, params without state are left out
        }
        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a `state_dict()`: hyper-parameters per group and state onto each param's device.

        Raises:
            ValueError: if the number of groups or of parameters in a group differs.
        """
        missing = {"state", "param_groups"} - set(state_dict)
        if missing:
            raise ValueError(f"load_state_dict: state_dict is missing {sorted(missing)}; expected "
                             "the dict returned by Optimizer.state_dict()")
        saved_groups = state_dict["param_groups"]
        if len(self.param_groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups: "
                             f"{len(saved_groups)} in state_dict, {len(self.param_groups)} in "
                             "the optimizer")
        for i, (group, saved) in enumerate(zip(self.param_groups, saved_groups, strict=True)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't "
                                 f"match the size of optimizer's group: group {i} has "
                                 f"{len(saved['params'])} params in state_dict, "
                                 f"{len(group['params'])} in the optimizer")
        id_map = {
            saved_id: p
            for group, saved in zip(self.param_groups, saved_groups, strict=True)
            for saved_id, p in zip(saved["params"], group["params"], strict=True)
        }
        new_state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        for key, values in state_dict["state"].items():
            key = int(key)  # NOTE: JSON round trips turn int keys into strings
            if key not in id_map:
                raise ValueError(f"load_state_dict: state for parameter index {key} does not "
                                 f"belong to any param group (indices {sorted(id_map)})")
            param = id_map[key]
            new_state[param] = {name: _to_param(param, name, v, not self._array_state)
                                for name, v in values.items()}
        self.state = new_state
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups, strict=True):
            new_group = {k: copy.deepcopy(v) for k, v in saved.items() if k != "params"}
            new_group["params"] = group["params"]
            new_groups.append(new_group)
        self.param_groups = new_groups


# NOTE: per-parameter scalars that torch keeps as one-element tensors; built-in optimizers keep
# Python floats (exact, and cheap to update), whatever a loaded state_dict holds.
_SCALAR_STATE = frozenset({"step", "mu_product"})


def check_hyperparameters(*, betas=None, **values) -> None:
    """Raises torch's ValueError for a negative (or NaN) hyper-parameter, e.g. "Invalid
    learning rate: -0.1", or a beta outside [0, 1): "Invalid beta parameter at index 1: 1.0"."""
    for name, value in values.items():
        if not 0.0 <= value:
            label = {"lr": "learning rate", "eps": "epsilon value"}.get(name, f"{name} value")
            raise ValueError(f"Invalid {label}: {value}")
    for index, beta in enumerate(betas or ()):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {index}: {beta}")


def _to_host(value):
    """A host copy of one state value: arrays and Tensors become numpy arrays."""
    if isinstance(value, Tensor):
        value = value.array
    if isinstance(value, numpy.ndarray):
        return value.copy()
    if is_cupy_array(value):
        return to_device(value, "cpu")
    if isinstance(value, (list, tuple)):  # NOTE: LBFGS keeps lists of history arrays
        return type(value)(_to_host(v) for v in value)
    return copy.deepcopy(value)


def _to_param(param: Tensor, name: str, value, as_tensor: bool):
    """A state value moved to `param`'s device (and float dtype); always a fresh copy.

    Arrays become Tensors when `as_tensor` (a torch-style optimizer that keeps Tensors)."""
    if isinstance(value, Tensor):
        value = value.array
    if name in _SCALAR_STATE and not as_tensor:  # NOTE: torch holds a tensor, safetensors 0-d
        return float(asnumpy(value).reshape(()) if hasattr(value, "shape") else value)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_param(param, "", v, as_tensor) for v in value)
    if not hasattr(value, "shape"):
        return copy.deepcopy(value)
    array = to_device(value if is_cupy_array(value) else numpy.asarray(value), param.device)
    dtype = param.dtype if param.dtype.kind == "f" else array.dtype
    array = array.astype(dtype, copy=True)
    return Tensor(array) if as_tensor else array


_CHUNK_BYTES = 1 << 18


def chunk_arrays(param, *arrays, scratches: int = 1) -> list[tuple]:
    """(param, *arrays, *scratch) split into matching cache-sized flat pieces, for an update.

    NOTE: an update is ~10 elementwise passes over param-sized arrays; running them chunk by
    chunk keeps every operand in L2 between passes, which makes large CPU updates ~1.5x faster
    (numpy has no fused kernels). GPU, small or non-contiguous arrays come back whole. `None`
    entries in `arrays` (absent state) stay None. Each of the `scratches` trailing entries is a
    fresh array to write into (one allocation per step, shared by the chunks).
    """
    xp = get_array_module(param)
    size, step = param.size, max(1, _CHUNK_BYTES // param.itemsize)
    if size < 2 * step:  # NOTE: the common small-tensor case, before any flag checks
        return [(param, *arrays, *(xp.empty_like(param) for _ in range(scratches)))]
    present = [a for a in (param, *arrays) if a is not None]
    # NOTE: any one memory order shared by all operands will do (nn.Linear weights are
    # column-major); ravel("K") then flattens each of them without a copy, in the same order.
    same_order = all(a.flags.c_contiguous for a in present) or all(
        a.flags.f_contiguous for a in present)
    if not isinstance(param, numpy.ndarray) or not same_order:
        return [(param, *arrays, *(xp.empty_like(param) for _ in range(scratches)))]
    flat = [None if a is None else a.ravel(order="K") for a in (param, *arrays)]
    buffers = [numpy.empty(step, param.dtype) for _ in range(scratches)]
    return [
        (*(None if a is None else a[i : i + step] for a in flat),
         *(b[: min(step, size - i)] for b in buffers))
        for i in range(0, size, step)
    ]


def grad_with_decay(param, grad, weight_decay: float, maximize: bool):
    """(-)grad + weight_decay * param, as a new array when it differs from `grad`.

    NOTE: `grad` is never written to: gradients may be shared or viewed elsewhere (buckets).
    """
    if weight_decay == 0:
        return -grad if maximize else grad
    out = get_array_module(param).multiply(param, weight_decay)
    if maximize:
        out -= grad
    else:
        out += grad
    return out
