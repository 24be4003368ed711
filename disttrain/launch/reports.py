"""Pure functions that turn what a job left behind (per-rank logs, mpirun's own output,
heartbeat records) into a report: which rank failed, on which host, how, and why."""

from __future__ import annotations

import dataclasses
import re
import signal as _signal

HEADER = re.compile(r"^\[disttrain-launch\] rank (\d+) host (\S+) pid (\d+)$", re.M)
DISTTRAIN_FAIL = re.compile(r"\[disttrain\] rank (\d+) \(host (\S+), pid (\d+)\) failed")
TRACEBACK = "Traceback (most recent call last):"
# Open MPI 4/5: "mpirun|prterun noticed that process rank 1 with PID 17 on node vm exited on
# signal 9 (Killed)." or "... exited with status 3" / "... has exited due to ... status 3"
OMPI_NOTICED = re.compile(
    r"noticed that process rank (\d+) with PID (\d+) on node (\S+) exited on signal (\d+)"
    r"(?: \(([^)]*)\))?")
OMPI_STATUS = re.compile(r"process rank (\d+) with PID (\d+) on node (\S+) (?:has )?exited "
                         r"(?:with status|.*?with status) (\d+)")
OMPI_ABORT = re.compile(r"MPI_ABORT was invoked on rank (\d+) in communicator \S+ "
                        r"(?:with errorcode|Proc: \S+ Errorcode:) (-?\d+)")
# frames of the runners between Python and the user's script, dropped from the report
RUNNER_FRAME = re.compile(r'^\s*File "(<frozen runpy>|.*mpi4py[/\\](run|__main__)\.py)"')
# MPICH/Hydra: "=   RANK 1 PID 17 RUNNING AT host\n=   KILLED BY SIGNAL: 9 (Killed)" or
# "=   EXIT STATUS: 3" / "EXIT CODE: 3"
HYDRA = re.compile(r"RANK (\d+) PID (\d+) RUNNING AT (\S+)\s*=?\s*(?:KILLED BY SIGNAL: (\d+)"
                   r"(?: \(([^)]*)\))?|EXIT (?:STATUS|CODE): (\d+))")
# mpirun's own start-up failures that pass: a restart gets through (Open MPI 5's PMIx server
# loses a race setting up its sockets now and then on a loaded machine)
TRANSIENT_STARTUP = ("The PMIx server's listener thread failed to start",
                     "bind() failed", "Address already in use")


@dataclasses.dataclass
class Failure:
    rank: int | None = None
    host: str | None = None
    pid: int | None = None
    exit_code: int | None = None
    signal: int | None = None
    signal_name: str | None = None
    phase: str | None = None  # set by the watchdog
    traceback: str = ""  # the tail of the rank's traceback, when it printed one
    reason: str = "failed"
    who: str | None = None  # the subject when it is not one rank ("mpirun", "ranks 0, 1")
    restartable: bool = True  # False: the same command would fail the same way again

    def describe(self) -> str:
        who = self.who or (f"rank {self.rank}" if self.rank is not None else "an unknown rank")
        where = ", ".join(x for x in (f"host {self.host}" if self.host else "",
                                      f"pid {self.pid}" if self.pid else "") if x)
        text = f"{who}{f' ({where})' if where else ''} {self.reason}"
        if self.phase is not None:
            text += f" in phase {self.phase!r}"
        if self.signal is not None:
            text += f"; killed by signal {self.signal} ({self.signal_name or _sig(self.signal)})"
        elif self.exit_code is not None:
            text += f"; exit code {self.exit_code}"
        if self.traceback:
            text += "\n" + "\n".join("    " + line for line in self.traceback.splitlines())
        return text


def _sig(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def rank_log_info(text: str, tail_lines: int = 15) -> dict:
    """{rank, host, pid, traceback} from one rank's log (the wrapper's header line, disttrain's
    "[disttrain] rank R (host H, pid P) failed" report, the last Python traceback); the
    traceback is the last `tail_lines` lines of the last traceback, "" when there is none."""
    info: dict = {"rank": None, "host": None, "pid": None, "traceback": ""}
    header = HEADER.search(text)
    if header:
        info.update(rank=int(header[1]), host=header[2], pid=int(header[3]))
    reported = list(DISTTRAIN_FAIL.finditer(text))
    if reported:
        m = reported[-1]
        info.update(rank=int(m[1]), host=m[2], pid=int(m[3]))
    start = text.rfind(TRACEBACK)
    if start >= 0:
        lines = [ln for ln in text[start:].splitlines() if ln.strip()]
        kept, skip_code = [], False
        for ln in lines:
            if RUNNER_FRAME.match(ln):
                skip_code = True
                continue
            if skip_code and ln.startswith("    ") and not ln.lstrip().startswith("File "):
                skip_code = False
                continue
            skip_code = False
            if not ln.startswith("[disttrain-launch]"):
                kept.append(ln)
        lines = kept
        info["traceback"] = "\n".join(lines[-tail_lines:])
    return info


def mpirun_failures(output: str) -> list[Failure]:
    """The ranks that mpirun's own output says died, in the order it says so."""
    flat = " ".join(output.split())  # NOTE: Open MPI wraps its messages at ~72 columns
    found = []
    for m in OMPI_NOTICED.finditer(flat):
        found.append(Failure(rank=int(m[1]), pid=int(m[2]), host=m[3], signal=int(m[4]),
                             signal_name=m[5] or _sig(int(m[4]))))
    for m in OMPI_STATUS.finditer(flat):
        found.append(Failure(rank=int(m[1]), pid=int(m[2]), host=m[3], exit_code=int(m[4])))
    for m in OMPI_ABORT.finditer(flat):
        found.append(Failure(rank=int(m[1]), exit_code=int(m[2]), reason="called MPI_Abort"))
    for m in HYDRA.finditer(flat):
        f = Failure(rank=int(m[1]), pid=int(m[2]), host=m[3])
        if m[4]:
            f.signal, f.signal_name = int(m[4]), m[5] or _sig(int(m[4]))
        else:
            f.exit_code = int(m[6])
        found.append(f)
    return found


def find_failure(rank_logs: dict[int, str], mpirun_output: str, returncode: int | None
                 ) -> Failure:
    """The rank to blame for a failed run. A rank that printed a traceback (disttrain's report
    first) is the cause; the others were aborted because of it. Failing that, the first rank
    mpirun names (a SIGKILLed rank prints nothing: its signal comes from mpirun's message)."""
    infos = {rank: rank_log_info(text) for rank, text in rank_logs.items()}
    noticed = mpirun_failures(mpirun_output)
    by_rank = {}
    for f in noticed:
        by_rank.setdefault(f.rank, f)
    culprit = None
    for rank in sorted(infos):  # disttrain's own report names the failing rank
        if DISTTRAIN_FAIL.search(rank_logs[rank]):
            culprit = rank
            break
    if culprit is None:
        culprit = next((r for r in sorted(infos) if infos[r]["traceback"]), None)
    if culprit is None:
        culprit = next((f.rank for f in noticed if f.signal is not None or f.exit_code), None)
    if culprit is None and noticed:
        culprit = noticed[0].rank
    failure = dataclasses.replace(by_rank[culprit]) if culprit in by_rank else Failure(
        rank=culprit)
    info = infos.get(culprit)
    if info:
        failure.host = failure.host or info["host"]
        failure.pid = failure.pid or info["pid"]
        failure.traceback = info["traceback"]
        if failure.exit_code is None and failure.signal is None and info["traceback"]:
            failure.reason = "raised an exception"
    if failure.exit_code is None and failure.signal is None and returncode:
        failure.exit_code = returncode
    return failure


def stale_ranks(beats: list[dict], now: float, timeout: float) -> list[dict]:
    """The heartbeat records (as the ranks' writer threads wrote them) whose last beat is more
    than `timeout` seconds before `now`, oldest first. A rank that never called heartbeat() has
    no record and is never judged; phase "done" means the rank finished its loop on purpose."""
    stale = [b for b in beats if b.get("phase") != "done"
             and now - float(b.get("beat_time", now)) > timeout]
    return sorted(stale, key=lambda b: b["beat_time"])


def _ranks(ranks: list[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(map(str, ranks))


def startup_failure(nprocs: int, started: dict[int, dict], phases: dict[int, str],
                    timeout: float) -> Failure | None:
    """The start-up deadline's verdict once `timeout` seconds have passed since mpirun started.

    `started` holds the rank wrapper's "started" records by rank, `phases` each rank's last
    heartbeat phase. A rank is up once it sent a heartbeat past dist.init() (phase other than
    "init"). Blamed, most likely cause first: the ranks that never started (mpirun or a host's
    remote shell never got them going), else the first rank that started but sent no heartbeat
    (hung in imports or data loading), else the first one still inside dist.init() (waiting for
    a peer). None when every rank is up.

    Example:
        >>> startup_failure(3, {0: {"host": "a", "pid": 5}}, {}, 300).who
        'ranks 1, 2'
        >>> startup_failure(2, {0: {}, 1: {}}, {0: "init"}, 300).rank
        1
    """
    missing = [r for r in range(nprocs) if r not in started]
    if missing:
        return Failure(who=_ranks(missing), reason=(
            f"never started: no process of it reported within the start-up timeout "
            f"({timeout:g} s); {_ranks(sorted(started)) if started else 'no rank'} started "
            "(a host's remote shell or MPI daemon may not have answered)"))
    silent = [r for r in range(nprocs) if r not in phases]
    in_init = [r for r in range(nprocs) if phases.get(r) == "init"]
    if silent:
        what = "sent no heartbeat"
        why = "hung in start-up (imports or data loading, before dist.init())"
    elif in_init:
        silent, what, why = in_init, "did not finish dist.init()", "waiting for a peer"
    else:
        return None
    first = started[silent[0]]
    others = f" (also: {_ranks(silent[1:])})" if silent[1:] else ""
    return Failure(rank=silent[0], host=first.get("host"), pid=first.get("pid"), reason=(
        f"started but {what} within the start-up timeout ({timeout:g} s): {why}{others}"))


def before_start(mpirun_output: str, returncode: int, tail_lines: int = 10) -> Failure:
    """The report of an mpirun that failed before any rank started: the end of mpirun's own
    output. Not restartable (a bad hostfile, an unreachable host, a missing program fail the
    same way again) unless the output names one of mpirun's known passing start-up failures.

    Example:
        >>> before_start("The PMIx server's listener thread failed to start.", 213).restartable
        True
    """
    tail = "\n".join(line for line in mpirun_output.strip().splitlines()[-tail_lines:])
    transient = any(marker in mpirun_output for marker in TRANSIENT_STARTUP)
    return Failure(who="mpirun", exit_code=returncode, traceback=tail, restartable=transient,
                   reason="failed before any rank started"
                          + (" (a passing start-up failure of mpirun)" if transient else ""))
