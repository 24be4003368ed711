"""CheckpointManager: crash-safe, verifiable checkpoints for every rank, and bit-exact resume.

Layout of `dir`:
    step-00000100/manifest.json           format version, world layout, size + sha256 per file
    step-00000100/shard-00000.safetensors  model/optimizer/scheduler tensors of pipeline stage 0
                                           (written once per stage: by data-parallel rank 0)
    step-00000100/rank-00003.json          rank 3's own state: RNGs, data position, user dicts
    latest                                 "step-00000100", replaced atomically after commit
Commit protocol: write into step-N.tmp/, fsync every file, rank 0 writes the manifest last,
renames the directory, fsyncs the parent, then replaces `latest`; old checkpoints are removed
only after that. Tensors go in safetensors files, everything else in JSON; never pickle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import warnings
from pathlib import Path

import numpy

from disttrain import random as _random
from disttrain import serialization
from disttrain.data import DataLoader, Sampler
from disttrain.distributed.comm import Communicator, init
from disttrain.distributed.watchdog import heartbeat
from disttrain.files import fsync_dir, write_text_atomic

FORMAT_VERSION = 1
_PREFIX = "step-"


def _write_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _step_dir(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


def _is_rank_state(obj) -> bool:
    """State that differs per rank (kept in rank-R.json) rather than per stage (in a shard)."""
    return isinstance(obj, (DataLoader, Sampler, numpy.random.Generator, dict))


def _shard_of(stateful: dict, rank: int) -> tuple[int, bool]:
    """(shard index, whether this rank writes it): a Pipeline's stage, written by its
    data-parallel rank 0; DataParallel replicas share shard 0, written by rank 0; anything else
    (a plain model, or a user object that merely has `.grid` or `.no_sync`) is this rank's own.

    NOTE: decided by type, not by attributes: a user object with a `.grid` must not silently
    change where its state is written. Imported here: pipeline and data_parallel import much.
    """
    from disttrain.distributed.data_parallel import DataParallel
    from disttrain.distributed.pipeline import Pipeline

    for obj in stateful.values():
        if isinstance(obj, Pipeline):
            return obj.grid.stage_index, obj.grid.dp_rank == 0
        if isinstance(obj, DataParallel):
            return 0, obj.comm.rank == 0
    return rank, True


class CheckpointManager:
    """Saves and restores model, optimizer, scheduler, data position, RNGs and user dicts.

    Args:
        dir: the checkpoint directory (shared by all ranks).
        comm: the world Communicator (default: dist.init()).
        keep_last: committed checkpoints to keep; older ones are deleted after a commit.
        async_save: snapshot on the host, then write and commit in a background thread.

    Example:
        >>> ckpt = dist.CheckpointManager("ckpt", comm, keep_last=3)
        >>> start = ckpt.restore(model=dp, optimizer=opt, loader=loader)  # 0 on a fresh run
        >>> for step in range(start, total):
        ...     train_one_step()
        ...     if (step + 1) % 100 == 0:
        ...         ckpt.save(step + 1, model=dp, optimizer=opt, loader=loader)
    """

    def __init__(self, dir, comm: Communicator | None = None, keep_last: int = 3,
                 async_save: bool = False):
        if keep_last < 1:
            raise ValueError(f"CheckpointManager: keep_last must be >= 1, got {keep_last}")
        self.dir, self.keep_last, self.async_save = Path(dir), keep_last, async_save
        self.comm = comm if comm is not None else init()
        # NOTE: a communicator of its own, so a background save's collectives never interleave
        # with training's (MPI_THREAD_MULTIPLE allows threads on different communicators)
        self._ckpt_comm = self.comm.split(0)
        self._pending: threading.Thread | None = None
        self._error: BaseException | None = None
        if self.comm.rank == 0:
            self.dir.mkdir(parents=True, exist_ok=True)
        self.comm.barrier()

    # ---------------------------------------------------------------- save
    def save(self, step: int, **stateful) -> None:
        """Writes a checkpoint of `stateful` (name=object) for `step`, committed atomically."""
        heartbeat("checkpoint", step)
        self.wait()
        stage, writes_shard = _shard_of(stateful, self.comm.rank)
        shard, rank_state = {}, {"rng": {"default": _random.get_rng_state()}}
        for name, obj in stateful.items():
            if isinstance(obj, numpy.random.Generator):
                rank_state["rng"][name] = obj.bit_generator.state
            elif isinstance(obj, dict):
                try:  # NOTE: a copy (a background save must not see later changes)
                    rank_state.setdefault("dicts", {})[name] = json.loads(json.dumps(obj))
                except (TypeError, ValueError) as e:
                    raise TypeError(f"CheckpointManager.save: dict '{name}' must be JSON "
                                    f"serialisable ({e}); put arrays in a module") from None
            elif not hasattr(obj, "state_dict"):
                raise TypeError(f"CheckpointManager.save: '{name}' ({type(obj).__name__}) has no "
                                "state_dict(); pass models, optimizers, schedulers, loaders, "
                                "samplers, numpy Generators or dicts")
            elif _is_rank_state(obj):
                rank_state.setdefault("data", {})[name] = obj.state_dict()
            else:
                shard[name] = obj.state_dict()  # NOTE: host copies: safe to write later
        args = (step, stage, shard if writes_shard and shard else None, rank_state)
        if self.async_save:
            self._pending = threading.Thread(target=self._write_and_commit_safely, args=args,
                                             name="disttrain-checkpoint", daemon=True)
            self._pending.start()
        else:
            self._write_and_commit(*args)

    def wait(self) -> None:
        """Blocks until a background save has committed; re-raises its error."""
        if self._pending is not None:
            self._pending.join()
            self._pending = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError(f"rank {self.comm.rank}: background checkpoint failed: "
                               f"{error}") from error

    def _write_and_commit_safely(self, *args) -> None:
        try:
            self._write_and_commit(*args)
        except BaseException as e:  # NOTE: surfaced by the next save() or wait()
            self._error = e

    def _write_and_commit(self, step: int, stage: int, shard, rank_state) -> None:
        comm, rank = self._ckpt_comm, self._ckpt_comm.rank
        tmp = self.dir / (_step_dir(step) + ".tmp")
        if rank == 0:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        comm.barrier()
        written = []
        if shard is not None:
            path = tmp / f"shard-{stage:05d}.safetensors"
            serialization.save(shard, path)  # NOTE: atomic and fsynced
            written.append(path)
        path = tmp / f"rank-{rank:05d}.json"
        _write_json(path, rank_state)
        written.append(path)
        files = {p.name: {"size": p.stat().st_size, "sha256": _sha256(p), "rank": rank}
                 for p in written}
        everyone = comm.allgather_obj(files)
        if rank == 0:
            manifest = {"format_version": FORMAT_VERSION, "step": step, "world_size": comm.size,
                        "files": {k: v for ranks in everyone for k, v in ranks.items()}}
            _write_json(tmp / "manifest.json", manifest)
            final = self.dir / _step_dir(step)
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            fsync_dir(self.dir)
            write_text_atomic(self.dir / "latest", _step_dir(step) + "\n")
            self._retain()
        comm.barrier()

    def _retain(self) -> None:
        for old in self.committed_steps()[:-self.keep_last]:
            shutil.rmtree(self.dir / _step_dir(old), ignore_errors=True)

    def committed_steps(self) -> list[int]:
        """Steps with a committed directory (manifest present), oldest first."""
        steps = []
        for entry in self.dir.glob(_PREFIX + "*"):
            name = entry.name[len(_PREFIX):]
            if name.isdigit() and (entry / "manifest.json").is_file():
                steps.append(int(name))
        return sorted(steps)

    # ---------------------------------------------------------------- restore
    def restore(self, **stateful) -> int:
        """Loads the newest checkpoint that every rank can verify into `stateful`; returns its
        step, or 0 when there is none. A corrupted newest checkpoint is skipped with a warning
        naming the file and rank."""
        heartbeat("restore")
        self.wait()
        candidates = self.comm.bcast_obj(self.committed_steps()[::-1] if self.comm.rank == 0
                                         else None)
        stage, _ = _shard_of(stateful, self.comm.rank)
        rejected = []
        for step in candidates:
            problem = self._verify(step, stage, wants_shard=any(
                not _is_rank_state(o) and hasattr(o, "state_dict") for o in stateful.values()))
            problems = self.comm.allgather_obj(problem)
            if not any(problems):
                self._load(step, stage, stateful)
                return step
            reasons = "; ".join(p for p in problems if p)
            rejected.append(f"step {step}: {reasons}")
            if self.comm.rank == 0:
                warnings.warn(f"CheckpointManager: skipping checkpoint {_step_dir(step)}: "
                              f"{reasons}", RuntimeWarning, stacklevel=2)
        if rejected:
            raise RuntimeError("CheckpointManager: no checkpoint in "
                               f"{self.dir} is intact; refusing to start over silently:\n  "
                               + "\n  ".join(rejected))
        return 0

    def _verify(self, step: int, stage: int, wants_shard: bool) -> str | None:
        """Why this rank cannot use checkpoint `step` (None when it can)."""
        rank, folder = self.comm.rank, self.dir / _step_dir(step)
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
        except (OSError, ValueError) as e:
            return f"rank {rank}: {folder / 'manifest.json'} unreadable ({e})"
        if manifest.get("format_version") != FORMAT_VERSION:
            return f"rank {rank}: {folder} has format_version {manifest.get('format_version')}"
        if manifest.get("world_size") != self.comm.size:
            return (f"rank {rank}: {folder} was written by {manifest.get('world_size')} ranks, "
                    f"this job has {self.comm.size}")
        needed = [f"rank-{rank:05d}.json"] + ([f"shard-{stage:05d}.safetensors"]
                                              if wants_shard else [])
        for name in needed:
            entry, path = manifest["files"].get(name), folder / name
            if entry is None or not path.is_file():
                return f"rank {rank}: {path} is missing"
            if path.stat().st_size != entry["size"]:
                return (f"rank {rank}: {path} has {path.stat().st_size} bytes, the manifest "
                        f"says {entry['size']}")
            if _sha256(path) != entry["sha256"]:
                return f"rank {rank}: {path} fails its sha256 check (corrupted)"
        return None

    def _load(self, step: int, stage: int, stateful: dict) -> None:
        folder = self.dir / _step_dir(step)
        rank_state = json.loads((folder / f"rank-{self.comm.rank:05d}.json").read_text())
        shard_path = folder / f"shard-{stage:05d}.safetensors"
        shard = serialization.load(shard_path) if shard_path.is_file() else {}
        _random.set_rng_state(rank_state["rng"]["default"])
        for name, obj in stateful.items():
            if isinstance(obj, numpy.random.Generator):
                obj.bit_generator.state = rank_state["rng"][name]
            elif isinstance(obj, dict):
                obj.clear()
                obj.update(rank_state.get("dicts", {})[name])
            elif _is_rank_state(obj):
                obj.load_state_dict(rank_state["data"][name])
            else:
                if name not in shard:
                    raise KeyError(f"CheckpointManager: {shard_path} holds no '{name}' "
                                   f"(it has {sorted(shard)})")
                obj.load_state_dict(shard[name])
