"""CheckpointManager's sharded files for ZeroRedundancyOptimizer: every rank writes its own range
of the optimizer state (`zero-<name>-<stage>-<rank>.safetensors`: the arrays as safetensors
tensors, layout, scalars and param_groups as JSON in its header), and a restore at any world
size re-slices them, reading from each file only the bytes its range needs.

Pure file work, no collective: checkpoint.py calls it and makes the collective decisions. A
checkpoint without these files (written before them) holds the consolidated state in the stage's
shard, which CheckpointManager still loads.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy
from safetensors import safe_open
from safetensors.numpy import save_file

from disttrain.files import atomic_write

METADATA_KEY = "disttrain.zero"  # the safetensors __metadata__ key holding the JSON part


def file_name(name: str, stage: int, rank: int) -> str:
    """The file of ZeRO rank `rank`'s shard of optimizer `name` (a keyword of save()) in
    pipeline stage `stage` (0 without a pipeline): `zero-optimizer-00000-00003.safetensors`."""
    return f"zero-{name}-{stage:05d}-{rank:05d}.safetensors"


def zero_optimizers(stateful: dict) -> dict:
    """The ZeroRedundancyOptimizers among save()'s or restore()'s keyword arguments.
    NOTE: imported here, so importing CheckpointManager does not import DataParallel."""
    from disttrain.distributed.zero import ZeroRedundancyOptimizer

    return {k: v for k, v in stateful.items() if isinstance(v, ZeroRedundancyOptimizer)}


def _pipeline_stage(stateful: dict) -> int | None:
    """The stage of the Pipeline in `stateful` (the optimizers then span its data-parallel
    group), None without one. NOTE: imported here, as in checkpoint.py: pipeline imports much."""
    from disttrain.distributed.pipeline import Pipeline

    stages = [obj.grid.stage_index for obj in stateful.values() if isinstance(obj, Pipeline)]
    return stages[0] if stages else None


def _stage_of(stateful: dict) -> int:
    stage = _pipeline_stage(stateful)
    return 0 if stage is None else stage


def snapshot(stateful: dict, rank: int, size: int) -> dict[str, tuple[str, dict, str]]:
    """name -> (file name, tensors, JSON header) of this rank's shard of each
    ZeroRedundancyOptimizer in `stateful`: host copies, safe to write later. No collective.

    Raises ValueError (on every rank alike) for an optimizer over part of the `size` ranks of
    the manager (`rank` is this rank there) outside a pipeline: its files would collide."""
    stage, out = _pipeline_stage(stateful), {}
    for name, zero in zero_optimizers(stateful).items():
        if stage is None and zero.comm.size != size:
            raise ValueError(f"CheckpointManager.save: rank {rank}: ZeroRedundancyOptimizer "
                             f"'{name}' spans {zero.comm.size} of the manager's {size} ranks; "
                             "give both the same communicator (or save it through a Pipeline "
                             "of its data-parallel group)")
        shard = zero.sharded_state_dict()
        header = json.dumps({k: shard[k] for k in ("layout", "params", "param_groups")},
                            default=_jsonable, separators=(",", ":"))
        out[name] = (file_name(name, stage or 0, zero.comm.rank), shard["state"], header)
    return out


def _jsonable(value):
    if isinstance(value, numpy.generic):
        return value.item()
    raise TypeError(f"a param_groups or state value {value!r} ({type(value).__name__}) is not "
                    "JSON serialisable; use numbers, strings, lists or None")


def write(folder: Path, snapshots: dict[str, tuple[str, dict, str]]) -> list[Path]:
    """Writes each snapshot's file into `folder` (atomic and fsynced); returns their paths."""
    written = []
    for file, tensors, header in snapshots.values():
        with atomic_write(folder / file) as tmp:
            save_file(tensors, tmp, metadata={METADATA_KEY: header})
        written.append(folder / file)
    return written


def saved_files(manifest: dict, name: str, stage: int) -> list[str]:
    """The sharded files of optimizer `name` a manifest lists, by saved rank ([] when it has
    none: a consolidated checkpoint). A rank missing from the manifest keeps its name here,
    so the verification reports it missing."""
    pattern = re.compile(re.escape(f"zero-{name}-{stage:05d}-") + r"(\d{5})\.safetensors")
    ranks = [int(m.group(1)) for m in map(pattern.fullmatch, manifest["files"]) if m]
    return [file_name(name, stage, r) for r in range(max(ranks) + 1)] if ranks else []


def files_to_verify(manifest: dict, stateful: dict, shard_file: str) -> list[str]:
    """The files this rank verifies for the ZeroRedundancyOptimizers in `stateful`: saved rank
    r's by rank r % size of the optimizer's group (at the same world size: its own), so each
    file is read and hashed once in all, not once per rank, and a rank that loads a file
    another verified learns of its problem from restore's collective check. An optimizer
    saved consolidated (an older checkpoint) needs the stage's `shard_file` instead."""
    needed, stage = [], _stage_of(stateful)
    for name, zero in zero_optimizers(stateful).items():
        files = saved_files(manifest, name, stage)
        needed += files[zero.comm.rank::zero.comm.size] if files else [shard_file]
    return needed


def load(folder: Path, manifest: dict, stateful: dict) -> set[str]:
    """Loads each ZeroRedundancyOptimizer of `stateful` that `manifest` has sharded files of
    (resharding when the world size changed); returns their names (the others were saved
    consolidated, in the stage's shard)."""
    loaded, stage = set(), _stage_of(stateful)
    for name, zero in zero_optimizers(stateful).items():
        files = saved_files(manifest, name, stage)
        if files:
            with contextlib.ExitStack() as stack:
                zero.load_sharded_state_dict(_FileShards(folder, files, stack))
            loaded.add(name)
    return loaded


class _FileShards(Sequence):
    """The saved shards as load_sharded_state_dict takes them: a file is opened when first
    indexed (its header only), and its arrays are safetensors slices, read when sliced."""

    def __init__(self, folder: Path, files: list[str], stack: contextlib.ExitStack):
        self._folder, self._files, self._stack, self._open = folder, files, stack, {}

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, r: int) -> dict:
        if r not in self._open:
            path = self._folder / self._files[r]
            f = self._stack.enter_context(safe_open(str(path), framework="numpy"))
            header = json.loads(f.metadata()[METADATA_KEY])
            self._open[r] = header | {"state": {k: f.get_slice(k) for k in f.keys()}}
        return self._open[r]
