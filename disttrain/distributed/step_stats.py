"""DataParallel's per-step bookkeeping of the gradient exchange (watchdog heartbeats and
timings), kept out of the reduction code in reducer.py."""

from __future__ import annotations

import time

from disttrain.distributed.watchdog import heartbeat


class StepStats:
    """Bookkeeping of the gradient exchange, kept out of the reduction code: watchdog
    heartbeats and per-step timings, published at the end of each synchronised backward.

    comm_s: time inside the comm hook (its collectives), on either thread; wait_s: time
    backward was blocked by the exchange; bytes: gradient bytes handed to the hook per step.
    """

    def __init__(self, nbytes: int):
        self.nbytes, self.comm_s, self.wait_s = nbytes, 0.0, 0.0
        self.last = {"comm_s": 0.0, "wait_s": 0.0, "bytes": 0}

    def start(self) -> None:
        heartbeat("backward")
        self.comm_s = self.wait_s = 0.0

    def timed(self, exchange):
        """`exchange`, adding its time to comm_s (it runs on one thread at a time)."""
        def run(bucket) -> None:
            start = time.perf_counter()
            try:
                exchange(bucket)
            finally:
                self.comm_s += time.perf_counter() - start
        return run

    def blocking(self, wait, *args) -> None:
        """Runs `wait(*args)`, which blocks backward on the exchange, adding its time to
        wait_s."""
        heartbeat("all-reduce")
        start = time.perf_counter()
        try:
            wait(*args)
        finally:
            self.wait_s += time.perf_counter() - start

    def inline(self, exchange, bucket) -> None:
        """Runs `exchange(bucket)` in backward's own thread: its time is both comm_s and
        wait_s (one clock read either side: this is the hot path without a comm thread)."""
        heartbeat("all-reduce")
        start = time.perf_counter()
        try:
            exchange(bucket)
        finally:
            elapsed = time.perf_counter() - start
            self.comm_s += elapsed
            self.wait_s += elapsed

    def finish(self) -> None:
        self.last = {"comm_s": self.comm_s, "wait_s": self.wait_s, "bytes": self.nbytes}
