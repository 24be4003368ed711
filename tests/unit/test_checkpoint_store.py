"""The checkpoint directory's pure pieces, without MPI: the start-fresh setting, the manifest
schema, the lock holder's description, a directory's contents and moving them aside intact."""

from __future__ import annotations

import os

import pytest

from disttrain import env
from disttrain.distributed.checkpoint_lock import DirectoryLock, describe_holder
from disttrain.distributed.checkpoint_store import (
    describe,
    manifest_problem,
    move_aside,
    saved_work_names,
    scan,
)

GOOD = {"format_version": 1, "step": 3, "world_size": 2, "lineage": "ab12",
        "files": {"rank-00000.json": {"size": 10, "sha256": "0" * 64, "rank": 0}}}


def test_start_fresh_is_off_unless_set_to_1():
    assert (env.start_fresh({}), env.start_fresh({env.START_FRESH: ""}),
            env.start_fresh({env.START_FRESH: "0"}), env.start_fresh({env.START_FRESH: "1"})
            ) == (False, False, False, True)
    assert env.START_FRESH == "DISTTRAIN_START_FRESH"
    with pytest.raises(ValueError, match=r"DISTTRAIN_START_FRESH: expected '0' or '1', got 'y'"):
        env.start_fresh({env.START_FRESH: "y"})


@pytest.mark.parametrize("manifest, problem", [
    (GOOD, None),
    ({k: v for k, v in GOOD.items() if k != "lineage"}, None),  # written before lineages
    ("text", "the manifest is str, not an object"),
    ({**GOOD, "format_version": True}, "format_version is True, this disttrain reads 1"),
    ({**GOOD, "world_size": 0}, "world_size is 0, not a positive integer"),
    ({**GOOD, "files": None}, "files is None, not an object"),
    ({**GOOD, "files": {"a": {"size": -1, "sha256": "0" * 64, "rank": 0}}},
     "files['a'].size is -1, not a byte count"),
    ({**GOOD, "files": {"a": {"size": 1, "sha256": "F" * 64, "rank": 0}}},
     f"files['a'].sha256 is {'F' * 64!r}, not 64 hex digits"),
])  # fmt: skip
def test_manifest_problem(manifest, problem):
    assert manifest_problem(manifest, 3) == problem


def test_describe_holder_tolerates_a_half_written_file():
    assert describe_holder('{"host": "n1", "pid": 7, "started": "T", "command": "python x"}'
                           ) == "pid 7 on host n1, started T, command: python x"
    assert describe_holder('{"host": "n1", "pi') == "a process whose details are not readable yet"


def test_the_lock_is_shared_within_a_process_and_dropped_by_the_last(tmp_path):
    first, second = DirectoryLock(tmp_path), DirectoryLock(tmp_path)
    first.release()
    first.release()  # idempotent: the second user still holds it
    held = set(DirectoryLock._held)
    second.release()
    assert held == {first._key} and not DirectoryLock._held
    assert f"pid {os.getpid()}" in describe_holder((tmp_path / "lock").read_text())


def test_a_directory_made_again_gets_a_lock_of_its_own(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    old = DirectoryLock(folder)
    (folder / "lock").unlink()
    folder.rmdir()
    folder.mkdir()
    new = DirectoryLock(folder)
    keys = set(DirectoryLock._held)
    old.release()
    new.release()
    assert keys == {old._key, new._key} and old._key != new._key


def test_move_aside_keeps_everything_and_scan_sees_saved_work(tmp_path):
    for name in ("step-00000002", "step-00000005", "step-00000006.tmp"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "shard.safetensors").write_bytes(b"x")
    (tmp_path / "step-00000005" / "manifest.json").write_text("{}")
    (tmp_path / "latest").write_text("step-00000005\n")
    contents = scan(tmp_path)
    assert contents.steps == [5, 2] and contents.holds_saved_work()
    assert describe(tmp_path, contents) == ("step-00000005/ (has manifest.json); step-00000002/ "
                                            "(no manifest.json); latest says 'step-00000005'")
    target = move_aside(tmp_path, saved_work_names(tmp_path), "previous")
    assert sorted(os.listdir(target)) == ["latest", "step-00000002", "step-00000005",
                                          "step-00000006.tmp"]
    assert (target / "step-00000002" / "shard.safetensors").read_bytes() == b"x"
    assert not scan(tmp_path).holds_saved_work()
    assert move_aside(tmp_path, [], "previous") != target  # never reuses a directory
