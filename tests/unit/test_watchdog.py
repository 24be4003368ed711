"""disttrain.distributed.watchdog.heartbeat: in-memory on the hot path, an atomic per-rank
JSON file from a background thread when the launcher set a heartbeat directory."""

from __future__ import annotations

import json
import os
import time

import pytest

from disttrain import env
from disttrain.distributed import watchdog


@pytest.fixture(autouse=True)
def _fresh():
    watchdog._reset()
    yield
    watchdog._reset()


def _wait_for(path, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            record = json.loads(path.read_text())
            if predicate(record):
                return record
        time.sleep(0.05)
    raise AssertionError(f"{path} never satisfied the condition")


def test_writes_rank_file_with_last_beat_time(tmp_path, monkeypatch):
    monkeypatch.setenv(env.HEARTBEAT_DIR, str(tmp_path))
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    before = time.time()
    watchdog.heartbeat("forward", 7)
    path = tmp_path / "rank-00003.json"
    record = _wait_for(path, lambda r: r["step"] == 7)
    assert set(record) == {"rank", "host", "pid", "phase", "step", "beat_time"}
    assert (record["rank"], record["pid"], record["phase"]) == (3, os.getpid(), "forward")
    assert before <= record["beat_time"] <= time.time()
    first = record["beat_time"]
    time.sleep(0.7)  # the writer rewrites, but beat_time stays the time of the call
    assert json.loads(path.read_text())["beat_time"] == first
    watchdog.heartbeat("all-reduce", 8)
    record = _wait_for(path, lambda r: r["step"] == 8)
    assert record["phase"] == "all-reduce" and record["beat_time"] > first
    assert os.listdir(tmp_path) == ["rank-00003.json"]  # no temporary file left behind


def test_noop_without_env(tmp_path, monkeypatch):
    monkeypatch.delenv(env.HEARTBEAT_DIR, raising=False)
    monkeypatch.chdir(tmp_path)
    watchdog.heartbeat("forward", 1)
    assert watchdog._State.writer is None and not os.listdir(tmp_path)


def test_hot_path_is_cheap(tmp_path, monkeypatch):
    monkeypatch.setenv(env.HEARTBEAT_DIR, str(tmp_path))
    watchdog.heartbeat("warmup")
    start = time.perf_counter()
    for i in range(10000):
        watchdog.heartbeat("forward", i)
    assert (time.perf_counter() - start) / 10000 < 20e-6  # no I/O in the call


def test_write_now_and_the_exit_record(tmp_path, monkeypatch):
    """write_now() writes in the caller's thread (dist.init() uses it); the atexit hook stops the
    writer and leaves phase "exit" with the last step, newer than the last beat."""
    monkeypatch.setenv(env.HEARTBEAT_DIR, str(tmp_path))
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
    watchdog.heartbeat("init")
    time.sleep(0.1)  # the writer wrote "init" and sleeps its 0.5 s
    watchdog.heartbeat("init-done")
    watchdog.write_now()
    path = tmp_path / "rank-00001.json"
    assert json.loads(path.read_text())["phase"] == "init-done"
    watchdog.heartbeat("step", 5)
    last = watchdog._State.last[2]
    watchdog._last_beat()
    assert not watchdog._State.writer.is_alive()
    record = json.loads(path.read_text())
    assert (record["phase"], record["step"]) == ("exit", 5) and record["beat_time"] > last


def test_exit_record_keeps_a_done_phase(tmp_path, monkeypatch):
    monkeypatch.setenv(env.HEARTBEAT_DIR, str(tmp_path))
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "1")
    watchdog.heartbeat("done", 9)
    watchdog._last_beat()
    record = json.loads((tmp_path / "rank-00000.json").read_text())
    assert (record["phase"], record["step"]) == ("done", 9)
