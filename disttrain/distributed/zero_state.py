"""ZeroRedundancyOptimizer's state_dict: the shards' optimizer state consolidated into the plain
optimizer's format (so it loads at any world size, or into the unsharded optimizer), and back.

Element-wise state (Adam's exp_avg, ...) is laid out like the parameters, in the flat buffer:
one in-place all-gather (or gather) per state name, over MPI buffers. Per-parameter scalars
("step") are small Python objects, gathered as such.
"""

from __future__ import annotations

import copy

import numpy

from disttrain.tensor import Tensor

_SCALAR_STATE = frozenset({"step", "mu_product"})


def _order(array) -> str:
    return "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"


def _is_elementwise(name: str, value, piece) -> bool:
    return (name not in _SCALAR_STATE and hasattr(value, "shape")
            and tuple(value.shape) == tuple(piece.shape) and value.ndim == 1)


def _local_state(zero) -> dict:
    """layout index -> (element-wise state names, {scalar name: value}) of this rank's pieces."""
    local: dict = {}
    for piece, index, _, _ in zero._pieces:
        for name, value in zero.optim.state.get(piece, {}).items():
            names, scalars = local.setdefault(index, (set(), {}))
            if _is_elementwise(name, value, piece):
                names.add(name)
            elif hasattr(value, "shape") and value.size > 1:
                raise ValueError(f"ZeroRedundancyOptimizer.state_dict (rank {zero.comm.rank}): "
                                 f"state '{name}' of {zero.optimizer_class.__name__} has shape "
                                 f"{tuple(value.shape)}, not the parameter's; only element-wise "
                                 "optimizers can be sharded")
            else:
                scalars[name] = value.item() if hasattr(value, "item") else copy.deepcopy(value)
    return local


def consolidate(zero, root: int | None) -> dict | None:
    """The full state_dict on `root` (None: on every rank); None on the other ranks."""
    everyone = zero.comm.allgather_obj(_local_state(zero))
    merged: dict = {}
    for local in everyone:
        for index, (names, scalars) in local.items():
            entry = merged.setdefault(index, (set(), {}))
            entry[0].update(names)
            entry[1].update(scalars)
    names = sorted({n for entry_names, _ in merged.values() for n in entry_names})
    full = {}
    for name in names:  # NOTE: one collective per name, in the same order on every rank
        flat = numpy.zeros_like(zero._flat)
        for piece, index, first, last in zero._pieces:
            value = zero.optim.state.get(piece, {}).get(name)
            if value is not None:
                start = zero._offsets[index]
                flat[start + first:start + last] = value
        full[name] = zero.comm.allgather_v_(flat, zero._counts, root=root)
    if root is not None and zero.comm.rank != root:
        return None
    return _plain_state_dict(zero, merged, full)


def _plain_state_dict(zero, merged: dict, full: dict) -> dict:
    layout = {id(p): i for i, p in enumerate(zero._order)}
    state, param_groups, position = {}, [], 0
    for group in zero.param_groups:
        packed = {k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
        packed["params"] = list(range(position, position + len(group["params"])))
        param_groups.append(packed)
        for p in group["params"]:
            index = layout[id(p)]
            if index in merged:
                names, scalars = merged[index]
                start, n = zero._offsets[index], zero._sizes[index]
                entry = {name: full[name][start:start + n].reshape(p.shape, order=_order(p.array))
                         .copy() for name in sorted(names)}
                entry.update(copy.deepcopy(scalars))
                state[position] = entry
            position += 1
    return {"state": state, "param_groups": param_groups}


def load(zero, state_dict: dict) -> None:
    """Gives each rank's shard optimizer its part of a full (plain-format) state_dict."""
    where = f"ZeroRedundancyOptimizer.load_state_dict (rank {zero.comm.rank})"
    missing = {"state", "param_groups"} - set(state_dict)
    if missing:
        raise ValueError(f"{where}: state_dict is missing {sorted(missing)}; expected the dict "
                         "returned by state_dict() (this class's or the plain optimizer's)")
    saved_groups = state_dict["param_groups"]
    sizes = [len(g["params"]) for g in zero.param_groups]
    saved_sizes = [len(g["params"]) for g in saved_groups]
    if sizes != saved_sizes:
        raise ValueError(f"{where}: the state_dict has param groups of {saved_sizes} "
                         f"parameters, this optimizer {sizes}")
    saved_index, layout = {}, {id(p): i for i, p in enumerate(zero._order)}
    for group, saved in zip(zero.param_groups, saved_groups):
        for p, key in zip(group["params"], saved["params"]):
            saved_index[layout[id(p)]] = key
        group.update({k: copy.deepcopy(v) for k, v in saved.items() if k != "params"})
    states = {int(k): v for k, v in state_dict["state"].items()}
    inner_index = {id(p): i for i, p in enumerate(
        p for group in zero.optim.param_groups for p in group["params"])}
    inner_state = {}
    for piece, index, first, last in zero._pieces:
        saved = states.get(saved_index[index])
        if saved:
            inner_state[inner_index[id(piece)]] = _slice_state(zero._order[index], saved,
                                                               first, last)
    inner_groups = [{k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
                    | {"params": [inner_index[id(p)] for p in shard_group["params"]]}
                    for group, shard_group in zip(zero.param_groups, zero.optim.param_groups)]
    zero.optim.load_state_dict({"state": inner_state, "param_groups": inner_groups})
    zero._consolidated = None


def _slice_state(param, saved: dict, first: int, last: int) -> dict:
    """The part [first, last) (of the parameter's flat memory order) of its saved state."""
    entry = {}
    for name, value in saved.items():
        value = value.array if isinstance(value, Tensor) else value
        if (name not in _SCALAR_STATE and hasattr(value, "shape")
                and tuple(value.shape) == tuple(param.shape)):
            entry[name] = numpy.asarray(value).reshape(-1, order=_order(param.array))[first:last]
        else:
            entry[name] = value
    return entry
