"""disttrain.files.atomic_write: the one crash-safe write (serialization, checkpoints and
heartbeats use it): the old file or the new one, never a torn one, and no temporary left."""

from __future__ import annotations

import os

import pytest

from disttrain import files


def test_replaces_the_file_in_one_rename(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    with files.atomic_write(path) as tmp:
        with open(tmp, "w") as f:
            f.write("new")
        assert path.read_text() == "old"  # readers see the old file until the rename
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["state.json"]


def test_an_error_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with files.atomic_write(path) as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["state.json"]


def test_an_error_before_anything_was_written(tmp_path):
    with pytest.raises(ValueError):
        with files.atomic_write(tmp_path / "x"):
            raise ValueError
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("durable", [True, False])
def test_durable_fsyncs_file_and_directory(tmp_path, monkeypatch, durable):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    files.write_text_atomic(tmp_path / "latest", "step-00000001\n", durable=durable)
    assert (tmp_path / "latest").read_text() == "step-00000001\n"
    assert len(synced) == (2 if durable else 0)  # the file, then its directory


def test_temporary_names_differ_per_thread(tmp_path):
    """A background checkpoint thread and the training thread may write at the same time."""
    import threading

    names, both_inside = [], threading.Barrier(2, timeout=10)

    def write():
        with files.atomic_write(tmp_path / "f") as tmp:
            names.append(tmp)
            open(tmp, "w").close()
            both_inside.wait()  # NOTE: both alive at once, so thread ids cannot be reused

    threads = [threading.Thread(target=write) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 2 and all(str(os.getpid()) in n for n in names)
