"""Per-rank heartbeats for the launcher's watchdog (`disttrain-launch --timeout S`).

`heartbeat(phase, step)` only stores (phase, step, time.time()) in memory, so it is cheap
enough for the hot path. When the launcher set a heartbeat directory (disttrain.env
.heartbeat_dir()), the first call starts a daemon thread that writes
`<dir>/rank-{rank:05d}.json` atomically (disttrain.files.atomic_write) about every 0.5 s:

    {"rank": 1, "host": "node1", "pid": 4242, "phase": "backward", "step": 17,
     "beat_time": 1767225600.25}

`beat_time` is the time of the last heartbeat() call, not of the write, so a rank stuck in a
collective keeps an old beat_time while its writer thread still runs. As the script ends
(atexit, before mpi4py's MPI_Finalize) the writer stops and one last record is written at
once, phase "exit": a job of a few hundred milliseconds otherwise leaves only its "init"
records behind, and a rank that finished and waits in MPI_Finalize for a stopped peer would
look older than that peer. Without the variable,
heartbeat() is a no-op apart from the stored tuple. No mpi4py and no numpy here: the rank
comes from the launcher's environment.
"""

from __future__ import annotations

import atexit
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
        atexit.register(_last_beat)


def write_now() -> None:
    """Writes the last heartbeat at once instead of at the writer's next tick. dist.init() calls
    it for its two beats: a rank SIGSTOPped (or hung with the GIL held) a moment after
    dist.init() would otherwise have no record, or only "init", for the launcher to judge."""
    if _State.writer is not None:
        _State.writer.write_latest()


def _last_beat() -> None:
    """atexit: stops the writer and writes phase "exit" at once (the daemon thread cannot run
    once the interpreter finalizes, and MPI_Finalize may wait for a peer)."""
    writer = _State.writer
    if writer is None or not writer.is_alive():
        return
    writer.stop()
    phase, step, _ = _State.last or (None, None, None)
    if phase != "done":  # NOTE: "done" (the rank finished on purpose) is never judged: keep it
        heartbeat("exit", step)
    writer.write_latest()


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
        self._lock = threading.Lock()
        self._written: tuple[str, int | None, float] | None = None
        os.makedirs(directory, exist_ok=True)

    def run(self) -> None:
        while True:
            self.write_latest()
            if self._stop_event.wait(INTERVAL_S):
                return

    def write_latest(self) -> None:
        """Writes _State.last unless written already; under a lock, so the thread and
        write_now() never put an older record over a newer one."""
        with self._lock:
            last = _State.last
            if last is not None and last != self._written:
                try:
                    self._write(last)
                    self._written = last
                except OSError:
                    pass  # NOTE: a full or vanished disk must not kill training; retry next tick

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
