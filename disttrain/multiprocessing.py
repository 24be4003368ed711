"""`dt.multiprocessing`: the standard library's multiprocessing (all its public names) plus
torch.multiprocessing's `spawn` / `start_processes`, which run fn(i, *args) in `nprocs`
processes and re-raise a child's exception in the parent, naming the process index and
carrying the child's traceback. Imports the standard library (and, when a non-fork start is asked
for, Tensor and Module: to refuse sending shared-memory tensors to processes that would get
copies)."""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import signal
import sys
import traceback
from multiprocessing import *  # noqa: F403

__all__ = [*multiprocessing.__all__, "spawn", "start_processes", "ProcessContext",
           "ProcessException", "ProcessRaisedException", "ProcessExitedException"]


class ProcessException(Exception):
    """A spawned process failed: `error_index` is its index i, `pid` its process id."""

    def __init__(self, msg: str, error_index: int, pid: int):
        super().__init__(msg)
        self.msg, self.error_index, self.pid = msg, error_index, pid

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid)


class ProcessRaisedException(ProcessException):
    """A spawned process raised; the message holds its traceback."""


class ProcessExitedException(ProcessException):
    """A spawned process exited with a non-zero code or was killed by a signal."""

    def __init__(self, msg: str, error_index: int, pid: int, exit_code: int,
                 signal_name: str | None = None):
        super().__init__(msg, error_index, pid)
        self.exit_code, self.signal_name = exit_code, signal_name

    def __reduce__(self):
        return type(self), (self.msg, self.error_index, self.pid, self.exit_code,
                            self.signal_name)


def _wrap(fn, i: int, args: tuple, error_queue) -> None:
    try:
        fn(i, *args)
    except KeyboardInterrupt:
        pass  # NOTE: the parent's SIGINT reached the child too; the parent reports it
    except Exception:
        error_queue.put(traceback.format_exc())
        sys.exit(1)


class ProcessContext:
    """The processes `start_processes(join=False)` started; `join()` until it returns True."""

    def __init__(self, processes: list, error_queues: list):
        self.processes, self.error_queues = processes, error_queues
        self.sentinels = {p.sentinel: i for i, p in enumerate(processes)}

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def join(self, timeout: float | None = None) -> bool:
        """Waits up to `timeout` s for a process to end; True when all ended successfully.
        When one failed, terminates the others and raises ProcessRaisedException (it raised)
        or ProcessExitedException (it exited non-zero or was killed)."""
        if not self.sentinels:
            return True
        failed = None
        for sentinel in multiprocessing.connection.wait(list(self.sentinels), timeout=timeout):
            index = self.sentinels.pop(sentinel)
            self.processes[index].join()
            if self.processes[index].exitcode != 0:
                failed = index
                break
        if failed is None:
            return not self.sentinels
        for p in self.processes:
            if p.is_alive():
                p.terminate()
            p.join()
        raise self._error(failed)

    def _error(self, index: int) -> ProcessException:
        process, queue = self.processes[index], self.error_queues[index]
        if not queue.empty():
            msg = f"\n\n-- Process {index} terminated with the following error:\n{queue.get()}"
            return ProcessRaisedException(msg, index, process.pid)
        code = process.exitcode
        if code < 0:
            name = signal.Signals(-code).name
            return ProcessExitedException(f"process {index} terminated with signal {name}",
                                          index, process.pid, code, name)
        return ProcessExitedException(f"process {index} terminated with exit code {code}",
                                      index, process.pid, code)


def start_processes(fn, args: tuple = (), nprocs: int = 1, join: bool = True,
                    daemon: bool = False, start_method: str = "spawn"):
    """Starts `nprocs` processes running fn(i, *args) for i in range(nprocs) (torch's
    start_processes); see spawn. Returns None when `join`, else a ProcessContext."""
    if not callable(fn):
        raise TypeError(f"start_processes: fn must be callable, got {fn!r}")
    if not isinstance(nprocs, int) or nprocs < 1:
        raise ValueError(f"start_processes: nprocs must be a positive int, got {nprocs!r}")
    if start_method != "fork":
        _refuse_shared(args, start_method)
    ctx = multiprocessing.get_context(start_method)
    processes, error_queues = [], []
    for i in range(nprocs):
        error_queue = ctx.SimpleQueue()
        process = ctx.Process(target=_wrap, args=(fn, i, args, error_queue), daemon=daemon)
        process.start()
        processes.append(process)
        error_queues.append(error_queue)
    context = ProcessContext(processes, error_queues)
    if not join:
        return context
    while not context.join():
        pass
    return None


def spawn(fn, args: tuple = (), nprocs: int = 1, join: bool = True, daemon: bool = False,
          start_method: str = "spawn"):
    """Runs fn(i, *args) in `nprocs` new processes, i = 0 .. nprocs - 1, as torch.mp.spawn.

    Args:
        fn: a picklable (module-level) function; its first argument is the process index.
        args: the remaining arguments of fn (pickled for "spawn"/"forkserver").
        nprocs: how many processes.
        join: wait for all of them (an exception in one terminates the others and raises
            ProcessRaisedException in the parent with the child's traceback); else return a
            ProcessContext to join.
        daemon: start them as daemonic processes.
        start_method: "spawn", "fork" or "forkserver".

    Example:
        >>> dt.multiprocessing.spawn(print, args=("started",), nprocs=2)  # doctest: +SKIP
    """
    return start_processes(fn, args, nprocs, join, daemon, start_method)


def _refuse_shared(args: tuple, start_method: str) -> None:
    """Raises when an argument holds tensors in shared memory that a non-fork start would
    pickle, handing the child a private copy where the caller expects sharing."""
    for i, arg in enumerate(args):
        if _holds_shared(arg):
            raise RuntimeError(
                f"start_processes: args[{i}] ({arg.__class__.__name__}) holds tensors in shared "
                f"memory, which start_method={start_method!r} would copy into each child "
                "(they are shared only with forked processes); use start_method='fork'")


def _holds_shared(arg) -> bool:
    # NOTE: imported here so that importing this module loads neither numpy nor the nn stack
    from disttrain.nn.module import Module
    from disttrain.tensor import Tensor

    if isinstance(arg, Tensor):
        return arg.is_shared()
    if isinstance(arg, Module):
        return any(t.is_shared() for t in [*arg.parameters(), *arg.buffers()])
    return False
