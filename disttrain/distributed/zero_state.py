"""ZeroRedundancyOptimizer's state_dict: the shards' optimizer state consolidated into the plain
optimizer's format (so it loads at any world size, or into the unsharded optimizer), and back;
and the sharded form (each rank's own range, no collective), loadable at any world size.

Element-wise state (Adam's exp_avg, ...) is laid out like the parameters, in the flat buffer:
one in-place all-gather (or gather) per state name, over MPI buffers. Per-parameter scalars
("step") are small Python objects, gathered as such.
"""

from __future__ import annotations

import copy

import numpy

from disttrain.distributed.zero_layout import shard_ranges
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
    state, position = {}, 0
    for group in zero.param_groups:
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
    return {"state": state, "param_groups": _packed_groups(zero)}


def _packed_groups(zero) -> list[dict]:
    """param_groups with parameters as positions (0, 1, ... across groups), as state_dict's."""
    packed, position = [], 0
    for group in zero.param_groups:
        packed.append({k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
                      | {"params": list(range(position, position + len(group["params"])))})
        position += len(group["params"])
    return packed


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
    inner_state = []
    for piece, index, first, last in zero._pieces:
        saved = states.get(saved_index[index])
        if saved:
            inner_state.append((piece, _slice_state(zero._order[index], saved, first, last)))
    _load_inner(zero, inner_state)


def _load_inner(zero, inner_state: list[tuple]) -> None:
    """Loads (piece, its state) pairs and the full groups' hyper-parameters into the shard
    optimizer."""
    inner_index = {id(p): i for i, p in enumerate(
        p for group in zero.optim.param_groups for p in group["params"])}
    inner_groups = [{k: copy.deepcopy(v) for k, v in group.items() if k != "params"}
                    | {"params": [inner_index[id(p)] for p in shard_group["params"]]}
                    for group, shard_group in zip(zero.param_groups, zero.optim.param_groups)]
    zero.optim.load_state_dict({"state": {inner_index[id(piece)]: entry
                                          for piece, entry in inner_state},
                                "param_groups": inner_groups})
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


# ---------------------------------------------------------------- sharded form
def sharded(zero) -> dict:
    """This rank's own state, no collective: element-wise state as flat arrays over its range
    [lo, hi) of the flat buffer, per-parameter state names and scalars (by position, as the
    plain state_dict), the param_groups and the layout (see ZeroRedundancyOptimizer's
    `sharded_state_dict`)."""
    lo, hi = zero._ranges[zero.comm.rank]
    local, position = _local_state(zero), _positions(zero)
    state = {}
    for name in sorted({n for names, _ in local.values() for n in names}):
        flat = numpy.zeros(hi - lo, zero._flat.dtype)  # NOTE: a copy: safe to write later
        for piece, index, first, last in zero._pieces:
            value = zero.optim.state.get(piece, {}).get(name)
            if value is not None:
                start = zero._offsets[index] + first - lo
                flat[start:start + last - first] = value
        state[name] = flat
    params = {position[index]: {"names": sorted(names), "scalars": scalars}
              for index, (names, scalars) in sorted(local.items())}
    return {"layout": _layout(zero), "state": state, "params": params,
            "param_groups": _packed_groups(zero)}


def _positions(zero) -> list[int]:
    """Layout index (bucket order, the flat buffer's) -> position in the param_groups."""
    layout = {id(p): i for i, p in enumerate(zero._order)}
    position = [0] * len(zero._order)
    for pos, p in enumerate(zero._user_params()):
        position[layout[id(p)]] = pos
    return position


def _layout(zero) -> dict:
    """World size, this rank's range, the flat size; offset, size, shape and memory order of
    each parameter, by position."""
    by_position = sorted(range(len(zero._order)), key=_positions(zero).__getitem__)
    rank = zero.comm.rank
    return {"world_size": zero.comm.size, "rank": rank, "range": list(zero._ranges[rank]),
            "flat_size": len(zero._flat),
            "offsets": [zero._offsets[i] for i in by_position],
            "sizes": [zero._sizes[i] for i in by_position],
            "shapes": [list(zero._order[i].shape) for i in by_position],
            "orders": [_order(zero._order[i].array) for i in by_position]}


def load_sharded(zero, shards) -> None:
    """Gives this rank's shard optimizer its range, re-sliced from the saved `shards` (one per
    rank of the saved run, in rank order, any world size) that overlap it; the other shards
    are never indexed, so a lazy sequence reads only those."""
    where = f"ZeroRedundancyOptimizer.load_sharded_state_dict (rank {zero.comm.rank})"
    if len(shards) == 0:
        raise ValueError(f"{where}: got no shards; pass the sharded_state_dict() of every rank "
                         "of the saved run, in rank order")
    saved_ranges = shard_ranges(len(zero._flat), len(shards))
    lo, hi = zero._ranges[zero.comm.rank]
    reference = _checked(zero, shards, (_overlapping(saved_ranges, [(lo, hi)]) or [0])[0],
                         saved_ranges, where)
    offsets, position = reference["layout"]["offsets"], _positions(zero)
    spans = [(offsets[position[index]] + first, offsets[position[index]] + last)
             for _, index, first, last in zero._pieces]
    opened = {r: _checked(zero, shards, r, saved_ranges, where)
              for r in _overlapping(saved_ranges, spans)}
    params = {r: {int(k): v for k, v in shard["params"].items()} for r, shard in opened.items()}
    inner_state = []
    for (piece, index, _, _), (start, end) in zip(zero._pieces, spans):
        owners = [r for r in opened if saved_ranges[r][0] < end and start < saved_ranges[r][1]]
        entry = params[owners[0]].get(position[index])
        if entry is not None:
            state = {name: _gather(opened, saved_ranges, owners, name, (start, end), where)
                     for name in entry["names"]}
            inner_state.append((piece, state | copy.deepcopy(entry["scalars"])))
    _update_groups(zero, reference["param_groups"])
    _load_inner(zero, inner_state)


def _overlapping(ranges: list, spans: list) -> list[int]:
    """Indices of `ranges` that overlap any of `spans` (all [start, end))."""
    return [r for r, (a, b) in enumerate(ranges) if any(s < b and a < e for s, e in spans)]


def _gather(opened: dict, saved_ranges: list, owners: list[int], name: str,
            span: tuple[int, int], where: str):
    """Elements [start, end) of the saved flat state `name`, sliced from the shards holding
    them (a safetensors slice reads only those bytes)."""
    parts = []
    for r in owners:
        (a, b), state = saved_ranges[r], opened[r]["state"]
        if name not in state:
            raise ValueError(f"{where}: saved shard {r} has no state '{name}' (it has "
                             f"{sorted(state)}); the shards are not of one checkpoint")
        parts.append(numpy.asarray(state[name][max(span[0], a) - a:min(span[1], b) - a]))
    return parts[0] if len(parts) == 1 else numpy.concatenate(parts)


def _checked(zero, shards, r: int, saved_ranges: list, where: str) -> dict:
    """shards[r], once its layout is checked against this optimizer's."""
    shard, mine = shards[r], _layout(zero)
    saved = shard["layout"]
    if (saved["world_size"], saved["rank"]) != (len(shards), r):
        raise ValueError(f"{where}: shards[{r}] is rank {saved['rank']}'s of a "
                         f"{saved['world_size']}-rank run, expected rank {r}'s of "
                         f"{len(shards)}; pass every saved rank's shard, in rank order")
    problem = _layout_problem(saved, mine, shard["param_groups"], zero.param_groups)
    if problem is None and list(saved["range"]) != list(saved_ranges[r]):
        problem = f"shard {r} holds range {saved['range']}, expected {list(saved_ranges[r])}"
    if problem is not None:
        raise ValueError(f"{where}: the saved layout does not match this optimizer's: "
                         f"{problem}. Build the optimizer over the same model (same "
                         "parameters, shapes and param groups) as the saved run")
    return shard


def _layout_problem(saved: dict, mine: dict, saved_groups: list, groups: list) -> str | None:
    if len(saved["shapes"]) != len(mine["shapes"]):
        return (f"the checkpoint has {len(saved['shapes'])} parameters (flat size "
                f"{saved['flat_size']}), this optimizer {len(mine['shapes'])} (flat size "
                f"{mine['flat_size']})")
    for i, (theirs, ours) in enumerate(zip(saved["shapes"], mine["shapes"])):
        if list(theirs) != ours:
            return (f"parameter {i} has shape {tuple(theirs)} in the checkpoint, {tuple(ours)} "
                    "here")
    if list(saved["orders"]) != mine["orders"] or saved["flat_size"] != mine["flat_size"]:
        return (f"memory orders {saved['orders']} (flat size {saved['flat_size']}) in the "
                f"checkpoint, {mine['orders']} (flat size {mine['flat_size']}) here")
    sizes = [len(g["params"]) for g in groups]
    if [len(g["params"]) for g in saved_groups] != sizes:
        return (f"param groups of {[len(g['params']) for g in saved_groups]} parameters in "
                f"the checkpoint, {sizes} here")
    return None


def _update_groups(zero, saved_groups: list) -> None:
    """The saved hyper-parameters into param_groups; NOTE: JSON has no tuples, so a value
    that is a tuple here (betas) stays one."""
    for group, saved in zip(zero.param_groups, saved_groups):
        for key, value in saved.items():
            if key != "params":
                keep_tuple = isinstance(group.get(key), tuple) and isinstance(value, list)
                group[key] = tuple(value) if keep_tuple else copy.deepcopy(value)
