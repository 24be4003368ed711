"""CheckpointManager: crash-safe, verifiable checkpoints for every rank, and bit-exact resume.

Layout of `dir`:
    step-00000100/manifest.json           format version, world layout, size + sha256 per file
    step-00000100/shard-00000.safetensors  model/optimizer/scheduler tensors of pipeline stage 0
                                           (written once per stage: by data-parallel rank 0)
    step-00000100/zero-optimizer-00000-00003.safetensors  rank 3's range of the state of the
                      ZeroRedundancyOptimizer `optimizer=` in stage 0 (each rank its own)
    step-00000100/rank-00003.json          rank 3's own state: RNGs, data position, user dicts
    latest                                 "step-00000100", replaced atomically after commit
    lock                                   flock'd by world rank 0: one job per directory
    previous-20240101T000000Z/             earlier checkpoints a fresh start moved aside
Commit protocol: write into step-N.tmp/, fsync every file, rank 0 writes the manifest last,
renames the directory, fsyncs the parent, then replaces `latest`; old checkpoints are removed
only after that, and only those of this run's lineage (an id in the manifest, carried on by
restores). Saved work is never deleted nor silently started over: see `restore`. Tensors go in
safetensors files, everything else in JSON; never pickle.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import warnings
import weakref
from pathlib import Path

import numpy

from disttrain import env, serialization
from disttrain import random as _random
from disttrain.data import DataLoader, Sampler
from disttrain.distributed import zero_checkpoint
from disttrain.distributed.checkpoint_lock import lock_collectively
from disttrain.distributed.checkpoint_store import (
    FORMAT_VERSION,
    LATEST,
    MANIFEST,
    PREFIX,
    CheckpointRefusedError,
    describe,
    file_problem,
    lineage_of,
    move_aside,
    new_lineage,
    read_manifest,
    saved_work_names,
    scan,
    sha256_of,
    step_dir,
    write_json,
)
from disttrain.distributed.comm import Communicator, init
from disttrain.distributed.watchdog import heartbeat
from disttrain.files import fsync_dir, write_text_atomic


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

    World rank 0 holds an exclusive lock on `dir` from construction to `close()` (or the end of
    the process), so a second job on the same directory is refused on every rank, naming the
    holder. Also a context manager (`with CheckpointManager(...) as ckpt:`).

    Args:
        dir: the checkpoint directory (shared by all ranks).
        comm: the world Communicator (default: dist.init()).
        keep_last: committed checkpoints of this run to keep; older ones are deleted after a
            commit (checkpoints other runs wrote are never deleted).
        async_save: snapshot on the host, then write and commit in a background thread.
        start_fresh: the first `restore()` moves existing checkpoints intact into
            `dir/previous-<UTC time>/` and returns 0 instead of resuming; None reads
            DISTTRAIN_START_FRESH (set by `disttrain-launch --start-fresh`, first attempt only).

    Example:
        >>> ckpt = dist.CheckpointManager("ckpt", comm, keep_last=3)
        >>> start = ckpt.restore(model=dp, optimizer=opt, loader=loader)  # 0 on a fresh run
        >>> for step in range(start, total):
        ...     train_one_step()
        ...     if (step + 1) % 100 == 0:
        ...         ckpt.save(step + 1, model=dp, optimizer=opt, loader=loader)
        >>> ckpt.close()
    """

    def __init__(self, dir, comm: Communicator | None = None, keep_last: int = 3,
                 async_save: bool = False, start_fresh: bool | None = None):
        if keep_last < 1:
            raise ValueError(f"CheckpointManager: keep_last must be >= 1, got {keep_last}")
        self.dir, self.keep_last, self.async_save = Path(dir), keep_last, async_save
        self.comm = comm if comm is not None else init()
        self._start_fresh = env.start_fresh() if start_fresh is None else bool(start_fresh)
        self._lineage: str | None = None  # NOTE: used by rank 0 alone (it writes manifests)
        lock = lock_collectively(self.dir, self.comm)
        # NOTE: released by close(), or when the manager is collected (or the process ends)
        self._release = weakref.finalize(self, lock.release) if lock is not None else None
        # NOTE: a communicator of its own, so a background save's collectives never interleave
        # with training's (MPI_THREAD_MULTIPLE allows threads on different communicators)
        self._ckpt_comm = self.comm.split(0)
        self._pending: threading.Thread | None = None
        self._error: BaseException | None = None
        self._closed = False

    def close(self) -> None:
        """Waits for a background save, then releases the directory lock. Idempotent; not a
        collective."""
        try:
            self.wait()
        finally:
            self._closed = True
            if self._release is not None:
                self._release()

    def __enter__(self) -> CheckpointManager:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _check_open(self, op: str) -> None:
        if self._closed:
            raise RuntimeError(f"CheckpointManager.{op}: rank {self.comm.rank}: the manager of "
                               f"{self.dir} is closed; create a new one")

    # ---------------------------------------------------------------- save
    def save(self, step: int, **stateful) -> None:
        """Writes a checkpoint of `stateful` (name=object) for `step`, committed atomically."""
        heartbeat("checkpoint", step)
        self._check_open("save")
        self.wait()
        stage, writes_shard = _shard_of(stateful, self.comm.rank)
        zero = zero_checkpoint.snapshot(stateful, self.comm.rank, self.comm.size)
        shard, rank_state = {}, {"rng": {"default": _random.get_rng_state()}}
        for name, obj in stateful.items():
            if name in zero:
                continue  # NOTE: ZeroRedundancyOptimizers: a file per rank, never consolidated
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
        args = (step, stage, shard if writes_shard and shard else None, rank_state, zero)
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

    def _write_and_commit(self, step: int, stage: int, shard, rank_state, zero) -> None:
        comm, rank = self._ckpt_comm, self._ckpt_comm.rank
        tmp = self.dir / (step_dir(step) + ".tmp")
        refusal = self._prepare(step, tmp) if rank == 0 else None
        refusal = comm.bcast_obj(refusal)
        if refusal is not None:
            raise CheckpointRefusedError(f"CheckpointManager.save: rank {rank}: {refusal}")
        written = zero_checkpoint.write(tmp, zero)
        if shard is not None:
            path = tmp / f"shard-{stage:05d}.safetensors"
            serialization.save(shard, path)  # NOTE: atomic and fsynced
            written.append(path)
        path = tmp / f"rank-{rank:05d}.json"
        write_json(path, rank_state)
        written.append(path)
        files = {p.name: {"size": p.stat().st_size, "sha256": sha256_of(p), "rank": rank}
                 for p in written}
        everyone = comm.allgather_obj(files)
        if rank == 0:
            manifest = {"format_version": FORMAT_VERSION, "step": step, "world_size": comm.size,
                        "lineage": self._lineage,
                        "files": {k: v for ranks in everyone for k, v in ranks.items()}}
            write_json(tmp / MANIFEST, manifest)
            final = self.dir / step_dir(step)
            shutil.rmtree(final, ignore_errors=True)  # NOTE: this run's own (see _prepare)
            os.replace(tmp, final)
            fsync_dir(self.dir)
            write_text_atomic(self.dir / LATEST, step_dir(step) + "\n")
            self._retain()
        comm.barrier()

    def _prepare(self, step: int, tmp: Path) -> str | None:
        """Rank 0: an empty `tmp`, or why this save must not happen: `step`'s directory exists
        and this run did not write it (another run's work is never overwritten)."""
        if self._lineage is None:  # NOTE: save() without restore(): a run of its own
            self._lineage = new_lineage()
        final = self.dir / step_dir(step)
        theirs = lineage_of(final, step) if final.exists() else self._lineage
        if theirs != self._lineage:
            owner = (f"its manifest names lineage {theirs!r}" if theirs is not None
                     else "it has no valid manifest naming a lineage")
            return (f"{final} exists and this run did not write it ({owner}; this run's "
                    f"lineage is {self._lineage!r}); refusing to overwrite it. Call restore() "
                    "before saving to continue from it, pass start_fresh=True to move old "
                    "checkpoints aside, or use another directory")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        except OSError as e:
            return f"cannot create {tmp} ({e})"
        return None

    def _retain(self) -> None:
        """Deletes this run's committed checkpoints beyond keep_last; no other run's."""
        mine = [s for s in self.committed_steps()
                if lineage_of(self.dir / step_dir(s), s) == self._lineage]
        for old in mine[:-self.keep_last]:
            shutil.rmtree(self.dir / step_dir(old), ignore_errors=True)

    def committed_steps(self) -> list[int]:
        """Steps with a committed directory (manifest present), oldest first."""
        steps = []
        for entry in self.dir.glob(PREFIX + "*"):
            name = entry.name[len(PREFIX):]
            if name.isdigit() and (entry / MANIFEST).is_file():
                steps.append(int(name))
        return sorted(steps)

    # ---------------------------------------------------------------- restore
    def restore(self, **stateful) -> int:
        """Loads the newest checkpoint that every rank can verify into `stateful`; returns its
        step, or 0 when `dir` holds none. A corrupted checkpoint (a file failing its size or
        sha256, a missing or malformed manifest) is skipped with a warning naming the file
        and rank; skipped checkpoints newer than the one loaded are moved intact into
        `dir/rejected-<UTC time>/`, so this run never overwrites them. When `dir` holds saved
        work (`latest` or a `step-N` directory) but nothing is restorable, raises on every
        rank naming what it found, unless `start_fresh` was given. At another world size,
        models, schedulers and optimizers restore (ZeroRedundancyOptimizer state re-sliced),
        per-rank state (RNGs, loaders, samplers, dicts) does not."""
        heartbeat("restore")
        self._check_open("restore")
        self.wait()
        plan = self.comm.bcast_obj(self._plan() if self.comm.rank == 0 else None)
        self._start_fresh = False  # NOTE: a later restore() resumes this run's own work
        if "error" in plan:
            raise RuntimeError(f"CheckpointManager.restore: rank {self.comm.rank}: "
                               f"{plan['error']}")
        self._lineage = plan["lineage"]
        if plan["moved_to"] is not None and self.comm.rank == 0:
            warnings.warn(f"CheckpointManager: starting fresh at step 0 as asked; the earlier "
                          f"checkpoints of {self.dir} ({plan['found']}) were moved intact to "
                          f"{plan['moved_to']}", RuntimeWarning, stacklevel=2)
        if plan["fresh"]:
            return 0
        step, rejected = self._restore_newest(plan["steps"], stateful)
        if step is None and (plan["steps"] or plan["latest"] is not None):
            raise CheckpointRefusedError(
                f"CheckpointManager: rank {self.comm.rank}: no checkpoint in {self.dir} is "
                "intact; refusing to start over silently at step 0 over saved work.\n  "
                + "\n  ".join(f"step {s}: {why}" for s, why in rejected)
                + f"\n  found: {plan['found']}\nTo resume, repair or restore those files (or "
                "use the right directory); to start fresh, pass start_fresh=True "
                "(disttrain-launch --start-fresh), which moves them intact into "
                f"{self.dir}/previous-<UTC time>/.")
        return 0 if step is None else step

    def _plan(self) -> dict:
        """Rank 0: what `dir` holds and, on a fresh start, where its checkpoints went."""
        try:
            contents = scan(self.dir)
            found = describe(self.dir, contents)
            moved_to = None
            if self._start_fresh and contents.holds_saved_work():
                moved_to = str(move_aside(self.dir, saved_work_names(self.dir), "previous"))
        except OSError as e:
            return {"error": f"cannot read or move the checkpoints in {self.dir} ({e})"}
        return {"fresh": self._start_fresh, "moved_to": moved_to, "steps": contents.steps,
                "latest": contents.latest, "found": found, "lineage": new_lineage()}

    def _restore_newest(self, steps: list[int], stateful: dict
                        ) -> tuple[int | None, list[tuple[int, str]]]:
        """(the newest of `steps` every rank verifies, loaded into `stateful`, or None; and
        (step, why) for each step skipped). Skipped newer steps are moved aside."""
        stage, _ = _shard_of(stateful, self.comm.rank)
        zeros = zero_checkpoint.zero_optimizers(stateful)
        wants_shard = any(not _is_rank_state(o) and hasattr(o, "state_dict")
                          for name, o in stateful.items() if name not in zeros)
        rejected = []
        for step in steps:
            problems = self.comm.allgather_obj(self._verify(step, stage, wants_shard, stateful))
            if any(problems):
                rejected.append((step, "; ".join(p for p in problems if p)))
                continue
            self._load(step, stage, stateful)
            if self.comm.rank == 0:
                self._lineage = lineage_of(self.dir / step_dir(step), step) or self._lineage
            self._warn_skipped(rejected, self._move_rejected(rejected) if rejected else None)
            return step, rejected
        self._warn_skipped(rejected, None)
        return None, rejected

    def _warn_skipped(self, rejected: list[tuple[int, str]], moved_to: str | None) -> None:
        if self.comm.rank == 0:
            for step, reasons in rejected:
                where = f"; moved intact to {moved_to}/" if moved_to else ""
                warnings.warn(f"CheckpointManager: skipping checkpoint {step_dir(step)}: "
                              f"{reasons}{where}", RuntimeWarning, stacklevel=4)

    def _move_rejected(self, rejected: list[tuple[int, str]]) -> str:
        """Rank 0 moves the skipped checkpoints newer than the one restored aside, so saving
        those steps again never overwrites them; a failure raises on every rank."""
        moved, error = None, None
        if self.comm.rank == 0:
            try:
                moved = str(move_aside(self.dir, [step_dir(s) for s, _ in rejected], "rejected"))
            except OSError as e:
                error = f"cannot move the skipped checkpoints of {self.dir} aside ({e})"
        moved, error = self.comm.bcast_obj((moved, error))
        if error is not None:
            raise RuntimeError(f"CheckpointManager.restore: rank {self.comm.rank}: {error}")
        return moved

    def _verify(self, step: int, stage: int, wants_shard: bool, stateful: dict) -> str | None:
        """Why this rank cannot use checkpoint `step` (None when it can)."""
        rank, folder = self.comm.rank, self.dir / step_dir(step)
        manifest, problem = read_manifest(folder, step)
        if problem is not None:
            return f"rank {rank}: {problem}"
        same_size = manifest["world_size"] == self.comm.size
        per_rank = sorted(name for name, obj in stateful.items() if _is_rank_state(obj))
        if not same_size and per_rank:  # NOTE: RNGs and data positions are per rank
            return (f"rank {rank}: {folder} was written by {manifest['world_size']} ranks, "
                    f"this job has {self.comm.size}; per-rank state ({', '.join(per_rank)}) "
                    "restores only at the same world size: restore models, schedulers and "
                    "optimizers alone (ZeroRedundancyOptimizer shards are re-sliced)")
        shard = f"shard-{stage:05d}.safetensors"
        needed = dict.fromkeys(([f"rank-{rank:05d}.json"] if same_size else [])
                               + ([shard] if wants_shard else [])
                               + zero_checkpoint.files_to_verify(manifest, stateful, shard))
        problems = (file_problem(folder / name, manifest["files"].get(name)) for name in needed)
        return next((f"rank {rank}: {p}" for p in problems if p is not None), None)

    def _load(self, step: int, stage: int, stateful: dict) -> None:
        folder = self.dir / step_dir(step)
        manifest, _ = read_manifest(folder, step)
        rank_state = {}  # NOTE: another world size: no per-rank state (see _verify)
        if manifest["world_size"] == self.comm.size:
            rank_state = json.loads((folder / f"rank-{self.comm.rank:05d}.json").read_text())
            _random.set_rng_state(rank_state["rng"]["default"])
        shard_path = folder / f"shard-{stage:05d}.safetensors"
        shard = serialization.load(shard_path) if shard_path.is_file() else {}
        loaded = zero_checkpoint.load(folder, manifest, stateful)
        for name, obj in stateful.items():
            if name in loaded:
                continue
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
