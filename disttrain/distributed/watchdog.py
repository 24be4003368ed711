"""Per-rank heartbeats for the launcher's watchdog (`disttrain-launch --timeout S`).

`heartbeat(phase, step)` only stores (phase, step, time.time()) in memory, so it is cheap
enough for the hot path. When the launcher set a heartbeat directory (disttrain.env
.heartbeat_dir()), the first call starts a daemon thread that writes
`<dir>/rank-{rank:05d}.json` atomically (disttrain.files.atomic_write) about every 0.5 s:

    {"rank": 1, "host": "node1", "pid": 4242, "phase": "backward", "step": 17,
     "beat_time": 1767225600.25}

`beat_time` is the time of the last heartbeat() call, not of the write, so a rank stuck in a
collective keeps an old beat_time while its writer thread still runs. Without the variable,
heartbeat() is a no-op apart from the stored tuple. No mpi4py and no numpy here: the rank
comes from the launcher's environment.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time

from disttrain import env
from disttrain.files import atomic_write

INTERVAL_S = 0.5


class _State:
    last: tuple[str, int | None, float] | None = None  # (phase, step, beat_time)
    started = False
    writer: _Writer | None = None


def heartbeat(phase: str, step: int | None = None) -> None:
    """Records that this rank is alive and in `phase` (e.g. "forward", "backward",
    "all-reduce", "send/recv") at `step`. No I/O: a background thread writes the file.

    Example:
        >>> heartbeat("forward", step=3)
    """
    _State.last = (phase, step, time.time())  # one tuple assignment: atomic for the writer
    if not _State.started:
        _start()


def _start() -> None:
    _State.started = True
    directory = env.heartbeat_dir()
    if directory:
        _State.writer = _Writer(directory)
        _State.writer.start()


def _reset() -> None:
    """Stops the writer thread and forgets the state (for tests)."""
    if _State.writer is not None:
        _State.writer.stop()
    _State.last, _State.started, _State.writer = None, False, None


class _Writer(threading.Thread):
    def __init__(self, directory: str):
        super().__init__(name="disttrain-heartbeat", daemon=True)
        self.rank = env.rank_env()[0]
        self.path = os.path.join(directory, f"rank-{self.rank:05d}.json")
        self.host = socket.gethostname()
        self._stop_event = threading.Event()
        os.makedirs(directory, exist_ok=True)

    def run(self) -> None:
        written = None
        while True:
            last = _State.last
            if last is not None and last != written:
                try:
                    self._write(last)
                    written = last
                except OSError:
                    pass  # NOTE: a full or vanished disk must not kill training; retry next tick
            if self._stop_event.wait(INTERVAL_S):
                return

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def _write(self, last: tuple[str, int | None, float]) -> None:
        phase, step, beat_time = last
        record = {"rank": self.rank, "host": self.host, "pid": os.getpid(), "phase": phase,
                  "step": step, "beat_time": beat_time}
        # NOTE: not durable (no fsync): rewritten every 0.5 s and worthless after a crash; the
        # atomic rename alone keeps the launcher from reading a torn file
        with atomic_write(self.path, durable=False) as tmp, open(tmp, "w") as f:
            json.dump(record, f)
