"""The checkpoint directory's layout, read without MPI: step directory names, the manifest's
schema, what a directory holds, and moving old checkpoints aside (never deleting them).

Stdlib only; CheckpointManager (checkpoint.py) makes the collective decisions on top of it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import NamedTuple

from disttrain.files import fsync_dir, write_text_atomic

FORMAT_VERSION = 1
PREFIX = "step-"
MANIFEST = "manifest.json"
LATEST = "latest"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CheckpointRefusedError(RuntimeError):
    """The checkpoint directory's state forbids going on: another job holds it, it holds saved
    work nothing can restore, or a save would replace another run's checkpoint. Restarting
    the same command would fail the same way, so `restartable` is False: dist.init()'s abort
    hook then ends the job with env.NO_RESTART_EXIT, and disttrain-launch does not restart it.
    """

    restartable = False


def step_dir(step: int) -> str:
    """The directory name of checkpoint `step`: `step_dir(100) == 'step-00000100'`."""
    return f"{PREFIX}{step:08d}"


def write_json(path: Path, obj) -> None:
    """Writes `obj` as JSON to `path` atomically and durably."""
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def sha256_of(path: Path) -> str:
    """The hex sha256 of the file at `path`, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_problem(path: Path, entry: dict | None) -> str | None:
    """Why the file at `path` does not match its manifest `entry` (None: it does): missing,
    another size or another sha256."""
    if entry is None or not path.is_file():
        return f"{path} is missing"
    if path.stat().st_size != entry["size"]:
        return f"{path} has {path.stat().st_size} bytes, the manifest says {entry['size']}"
    if sha256_of(path) != entry["sha256"]:
        return f"{path} fails its sha256 check (corrupted)"
    return None


def new_lineage() -> str:
    """A fresh id for a run's checkpoints; restores carry it on, so retention and `save` touch
    only the directories this run wrote. NOTE: os.urandom, not the seeded generators, so
    drawing it never changes a run's random stream."""
    return uuid.uuid4().hex[:16]


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _file_entry_problem(name, entry) -> str | None:
    if not isinstance(entry, dict):
        return f"files[{name!r}] is {type(entry).__name__}, not an object"
    if not _is_int(entry.get("size")) or entry["size"] < 0:
        return f"files[{name!r}].size is {entry.get('size')!r}, not a byte count"
    if not isinstance(entry.get("sha256"), str) or not _SHA256.fullmatch(entry["sha256"]):
        return f"files[{name!r}].sha256 is {entry.get('sha256')!r}, not 64 hex digits"
    if not _is_int(entry.get("rank")):
        return f"files[{name!r}].rank is {entry.get('rank')!r}, not an integer"
    return None


def manifest_problem(manifest, step: int) -> str | None:
    """Why `manifest` (parsed JSON) is not a valid manifest of checkpoint `step`, or None.

    Example:
        >>> manifest_problem([], 3)
        'the manifest is list, not an object'
    """
    if not isinstance(manifest, dict):
        return f"the manifest is {type(manifest).__name__}, not an object"
    if manifest.get("format_version") != FORMAT_VERSION or not _is_int(
            manifest.get("format_version")):
        return (f"format_version is {manifest.get('format_version')!r}, this disttrain reads "
                f"{FORMAT_VERSION}")
    if not _is_int(manifest.get("step")) or manifest["step"] != step:
        return f"step is {manifest.get('step')!r}, the directory says {step}"
    if not _is_int(manifest.get("world_size")) or manifest["world_size"] < 1:
        return f"world_size is {manifest.get('world_size')!r}, not a positive integer"
    if not isinstance(manifest.get("lineage", ""), str):
        return f"lineage is {manifest['lineage']!r}, not a string"
    if "files" not in manifest:
        return "files is missing"
    files = manifest["files"]
    if not isinstance(files, dict):
        return f"files is {files!r}, not an object"
    for name, entry in files.items():
        problem = _file_entry_problem(name, entry)
        if problem is not None:
            return problem
    return None


def read_manifest(folder: Path, step: int) -> tuple[dict | None, str | None]:
    """(manifest, None) when `folder/manifest.json` is a valid manifest of `step`, else
    (None, why not), naming the file."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None, f"{path} is missing"
    except (OSError, ValueError) as e:
        return None, f"{path} unreadable ({e})"
    problem = manifest_problem(manifest, step)
    if problem is not None:
        return None, f"{path} is not a valid manifest: {problem}"
    return manifest, None


def lineage_of(folder: Path, step: int) -> str | None:
    """The lineage a valid manifest in `folder` names, None when there is none."""
    manifest, _ = read_manifest(folder, step)
    return None if manifest is None else manifest.get("lineage")


class Contents(NamedTuple):
    """What a checkpoint directory holds: step numbers of its `step-N` directories (newest
    first, manifest or not) and what `latest` says (None when absent)."""

    steps: list[int]
    latest: str | None

    def holds_saved_work(self) -> bool:
        return bool(self.steps) or self.latest is not None


def scan(dir: Path) -> Contents:
    """The `step-N` directories (not `step-N.tmp`) and `latest` of `dir`."""
    steps = [int(e.name[len(PREFIX):]) for e in dir.glob(PREFIX + "*")
             if e.name[len(PREFIX):].isdigit() and e.is_dir()]
    try:
        latest = (dir / LATEST).read_text().strip()
    except FileNotFoundError:
        latest = None
    return Contents(sorted(steps, reverse=True), latest)


def describe(dir: Path, contents: Contents) -> str:
    """One line per step directory (with or without a manifest) and what `latest` says."""
    lines = [f"{step_dir(s)}/ ({'has' if (dir / step_dir(s) / MANIFEST).is_file() else 'no'} "
             f"{MANIFEST})" for s in contents.steps]
    lines.append(f"{LATEST} says {contents.latest!r}" if contents.latest is not None
                 else f"no {LATEST} file")
    return "; ".join(lines)


def move_aside(dir: Path, names: list[str], kind: str) -> Path:
    """Moves the entries `names` of `dir` intact into a new `dir/<kind>-<UTC time>/` and
    returns it. NOTE: renames only (same file system), so nothing is copied or deleted."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target, n = dir / f"{kind}-{stamp}", 1
    while target.exists():
        n += 1
        target = dir / f"{kind}-{stamp}-{n}"
    target.mkdir()
    for name in names:
        if os.path.lexists(dir / name):
            os.replace(dir / name, target / name)
    fsync_dir(target)
    fsync_dir(dir)
    return target


def saved_work_names(dir: Path) -> list[str]:
    """The entries of `dir` a fresh start moves aside: `latest` and every `step-*` (unfinished
    ones too); the lock file and earlier `previous-*` directories stay."""
    return [LATEST] + sorted(e.name for e in dir.glob(PREFIX + "*"))
