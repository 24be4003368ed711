"""`disttrain-launch` / `python -m disttrain.launch`: see disttrain/launch/__init__.py."""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

from disttrain import env
from disttrain.launch import commands, preflight, reports, rundir
from disttrain.launch.process import (
    die_with_launcher,
    kill_session,
    remove_session_dir,
    with_fresh_session_dir,
)

PREFIX = "[disttrain-launch]"
WATCHDOG_EXIT = 124  # like timeout(1): the job was killed because a rank stalled
NO_RESTART_EXIT = env.NO_RESTART_EXIT  # a rank's error said: restarting would not help
USAGE_EXIT = 2  # like argparse: the arguments cannot work, nothing was started
STARTUP_TIMEOUT_S = 300.0


def say(text: str) -> None:
    sys.stderr.write(f"{PREFIX} {text}\n")
    sys.stderr.flush()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="disttrain-launch",
        description="Run a script on N MPI ranks; report, kill and restart failed or stalled "
                    "jobs.")
    p.add_argument("-n", "--nprocs", type=preflight.positive_int, required=True,
                   help="number of ranks (>= 1)")
    p.add_argument("--hostfile", help="MPI hostfile (Open MPI --hostfile, MPICH -f)")
    p.add_argument("--checkpoint-dir", help=f"exported to the script as {env.CHECKPOINT_DIR}")
    p.add_argument("--max-restarts", type=preflight.nonnegative_int, default=0,
                   help="restarts after a failure (>= 0)")
    p.add_argument("--timeout", type=preflight.positive_seconds, default=None,
                   help="kill the job when a rank's last heartbeat is older than this (s > 0); "
                        "judged from a rank's first heartbeat on (dist.init() sends one), "
                        "except that a rank waiting in dist.init() for a peer that has sent "
                        "none is left to --startup-timeout")
    p.add_argument("--startup-timeout", type=preflight.nonnegative_seconds,
                   default=STARTUP_TIMEOUT_S,
                   help="kill the job when a rank has sent no heartbeat this long after mpirun "
                        f"started (s; default {STARTUP_TIMEOUT_S:g}; 0: no deadline)")
    p.add_argument("--log-dir", help="each run's logs go to LOG_DIR/run-<UTC time>-<pid>/, and "
                                     "LOG_DIR/latest points at it (default <checkpoint-dir or "
                                     "cwd>/logs)")
    p.add_argument("--mpirun", help="the mpirun/mpiexec to use (default: next to this Python, "
                                    "else on PATH)")
    p.add_argument("--mpirun-args", action="append", default=[], metavar="ARGS",
                   help="extra mpirun options, one shell-quoted string, repeatable")
    p.add_argument("script")
    p.add_argument("script_args", nargs=argparse.REMAINDER)
    return p.parse_args(argv)


class _Terminated(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    raise _Terminated(signum)


def _tail_to_console(path: str, stop: threading.Event) -> None:
    """Copies rank 0's log to stdout as it grows (without the wrapper's header line)."""
    while not os.path.exists(path):
        if stop.wait(0.05):
            return
    with open(path, errors="replace") as f:
        while True:
            line = f.readline()
            if line:
                if not line.startswith(PREFIX):
                    sys.stdout.write(line)
                    sys.stdout.flush()
                continue
            if stop.is_set():
                return
            time.sleep(0.05)


def _read_records(pattern: str) -> list[dict]:
    records = []
    for path in glob.glob(pattern):
        try:
            with open(path) as f:
                records.append(json.load(f))
        except (OSError, ValueError):
            continue  # NOTE: os.replace makes torn reads unlikely; skip one if it happens
    return records


def _read_beats(directory: str) -> list[dict]:
    """The ranks' heartbeat records (disttrain/distributed/watchdog.py)."""
    return _read_records(os.path.join(directory, "rank-*.json"))


def _read_started(directory: str) -> dict[int, dict]:
    """{rank: record} of the ranks whose wrapper (_rank.py) started: the "started" beats."""
    return {r["rank"]: r for r in _read_records(os.path.join(directory, "rank-*.started"))
            if isinstance(r, dict) and isinstance(r.get("rank"), int)}


def _read_logs(log_dir: str) -> dict[int, str]:
    logs = {}
    for path in glob.glob(os.path.join(log_dir, "rank-*.log")):
        try:
            rank = int(os.path.basename(path)[5:-4])
            with open(path, errors="replace") as f:
                logs[rank] = f.read()
        except (OSError, ValueError):
            continue
    return logs


class _Watchdog:
    """The two deadlines of one attempt: every rank's first heartbeat within startup_timeout
    seconds of mpirun's start (None: no deadline), then no heartbeat older than timeout."""

    def __init__(self, heartbeat_dir: str, nprocs: int, timeout: float | None,
                 startup_timeout: float | None):
        self.heartbeat_dir, self.nprocs = heartbeat_dir, nprocs
        self.timeout, self.startup_timeout = timeout, startup_timeout
        self.all_beating = not startup_timeout
        self.start = time.monotonic()

    def check(self) -> reports.Failure | None:
        beats = _read_beats(self.heartbeat_dir)
        if not self.all_beating:
            failure = self._check_startup(beats)
            if failure is not None:
                return failure
        if self.timeout is not None:
            if not self.all_beating and len({b.get("rank") for b in beats}) < self.nprocs:
                # NOTE: a rank waiting in dist.init() for a peer that has not sent a heartbeat
                # yet (still importing on a loaded machine) is the start-up deadline's business
                beats = [b for b in beats if b.get("phase") != "init"]
            stale = reports.stale_ranks(beats, time.time(), self.timeout)
            if stale:
                return self._stalled(stale[0])
        return None

    def _check_startup(self, beats: list[dict]) -> reports.Failure | None:
        phases = {b.get("rank"): b.get("phase") for b in beats}
        # NOTE: "init" is the beat dist.init() sends before its first collective (comm.py)
        if all(phases.get(r, "init") != "init" for r in range(self.nprocs)):
            self.all_beating = True
            return None
        if time.monotonic() - self.start <= self.startup_timeout:
            return None
        return reports.startup_failure(self.nprocs, _read_started(self.heartbeat_dir), phases,
                                       self.startup_timeout)

    def _stalled(self, beat: dict) -> reports.Failure:
        age = time.time() - beat["beat_time"]
        return reports.Failure(
            rank=beat.get("rank"), host=beat.get("host"), pid=beat.get("pid"),
            phase=beat.get("phase"),
            reason=f"made no progress for {age:.1f} s (watchdog timeout {self.timeout:g} s, "
                   f"last step {beat.get('step')})")


def _start_mirrors(proc: subprocess.Popen, mpirun_log, log_dir: str, chunks: list[str],
                   stop: threading.Event) -> list[threading.Thread]:
    """Threads copying mpirun's output to stderr and mpirun.log, and rank 0's log to stdout."""
    def pump():
        for raw in iter(proc.stdout.readline, b""):
            # NOTE: prterun ends its abort message with a NUL byte, which makes the console
            # log "binary" to grep
            line = raw.decode(errors="replace").replace("\0", "")
            chunks.append(line)
            mpirun_log.write(line)
            mpirun_log.flush()
            sys.stderr.write(line)
            sys.stderr.flush()

    threads = [threading.Thread(target=pump, daemon=True),
               threading.Thread(target=_tail_to_console, daemon=True,
                                args=(os.path.join(log_dir, "rank-00000.log"), stop))]
    for t in threads:
        t.start()
    return threads


def run_once(argv: list[str], env: dict[str, str], log_dir: str, watchdog: _Watchdog
             ) -> tuple[int, reports.Failure | None]:
    """Runs mpirun once; (exit code, failure or None)."""
    mpirun_log = open(os.path.join(log_dir, "mpirun.log"), "w")
    # NOTE: its own session, so kill_session finds the whole job; PR_SET_PDEATHSIG so even a
    # SIGKILLed launcher takes mpirun along (the ranks' watchers in _rank.py do the rest)
    proc = subprocess.Popen(with_fresh_session_dir(argv), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, preexec_fn=die_with_launcher())
    chunks: list[str] = []
    stop = threading.Event()
    threads = _start_mirrors(proc, mpirun_log, log_dir, chunks, stop)
    failure = None
    try:
        while proc.poll() is None and failure is None:
            failure = watchdog.check()
            time.sleep(0.2)
    finally:
        kill_session(proc)  # always: nothing of the job outlives this attempt
        remove_session_dir(proc.pid)  # NOTE: a killed mpirun leaves it (process.py)
        threads[0].join(timeout=5)
        stop.set()
        threads[1].join(timeout=5)
        mpirun_log.close()
    if failure is not None:
        return WATCHDOG_EXIT, failure
    code = proc.returncode
    if code == 0:
        return 0, None
    code = 128 - code if code < 0 else code
    if not _read_started(watchdog.heartbeat_dir):
        return code, reports.before_start("".join(chunks), code)
    failure = reports.find_failure(_read_logs(log_dir), "".join(chunks), code)
    if code == NO_RESTART_EXIT:  # NOTE: a rank said a restart would fail the same way
        failure = dataclasses.replace(failure, restartable=False)
    return code, failure


def _preflight(args: argparse.Namespace) -> tuple[str, str, str | None, str]:
    """(mpirun, its flavour, checkpoint dir, log root) after checking every path argument;
    raises preflight.PreflightError with a one-line message."""
    preflight.check_script(args.script)
    preflight.check_hostfile(args.hostfile)
    try:
        mpirun = commands.find_mpirun(args.mpirun)
    except FileNotFoundError as e:
        raise preflight.PreflightError(f"--mpirun: {e}; install Open MPI or MPICH, or pass "
                                       "--mpirun PATH") from None
    preflight.check_mpirun(mpirun)
    try:
        flavour = commands.mpi_flavour(mpirun)
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        message = " ".join(str(e).split())
        raise preflight.PreflightError(f"--mpirun: {mpirun}: {message}") from None
    checkpoint_dir = os.path.abspath(args.checkpoint_dir) if args.checkpoint_dir else None
    if checkpoint_dir:
        preflight.check_writable_dir("--checkpoint-dir", checkpoint_dir)
    log_root = os.path.abspath(args.log_dir or os.path.join(checkpoint_dir or os.getcwd(),
                                                            "logs"))
    preflight.check_writable_dir("--log-dir", log_root)
    return mpirun, flavour, checkpoint_dir, log_root


def _attempt(args, attempt: int, mpirun: str, flavour: str, checkpoint_dir: str | None,
             run_dir: str, lease_path: str) -> tuple[int, reports.Failure | None, str]:
    """Runs attempt number `attempt` (0-based); (exit code, failure or None, its log dir)."""
    log_dir = os.path.join(run_dir, f"attempt-{attempt}")
    heartbeat_dir = os.path.join(log_dir, "heartbeat")
    os.makedirs(heartbeat_dir, exist_ok=True)
    cores = commands.local_cores()
    exported = commands.job_env(os.environ, args.nprocs, cores, heartbeat_dir, checkpoint_dir,
                                attempt, log_dir, lease_path=lease_path)
    job = commands.Job(args.nprocs, args.script, args.script_args, log_dir, exported,
                       args.hostfile, commands.split_passthrough(args.mpirun_args))
    argv_, notes = commands.build_command(flavour, mpirun, job, is_root=os.geteuid() == 0,
                                          cores=cores)
    if attempt == 0:
        for note in notes:
            say(note)
    say(f"attempt {attempt + 1}/{args.max_restarts + 1}: {' '.join(argv_)}")
    say(f"per-rank logs in {log_dir}")
    watchdog = _Watchdog(heartbeat_dir, args.nprocs, args.timeout, args.startup_timeout or None)
    code, failure = run_once(argv_, {**os.environ, **exported}, log_dir, watchdog)
    return code, failure, log_dir


def _run_attempts(args, mpirun: str, flavour: str, checkpoint_dir: str | None, run_dir: str,
                  lease_path: str) -> int:
    code = 1
    for attempt in range(args.max_restarts + 1):
        code, failure, log_dir = _attempt(args, attempt, mpirun, flavour, checkpoint_dir,
                                          run_dir, lease_path)
        if failure is None:
            say(f"attempt {attempt + 1} finished successfully")
            return 0
        say(f"attempt {attempt + 1} failed (exit code {code}): {failure.describe()}")
        say(f"the job was killed; logs in {log_dir}")
        if not failure.restartable:
            say("not restarting: a restart would fail the same way")
            return code
        if attempt < args.max_restarts:
            say(f"restarting ({args.max_restarts - attempt} restart(s) left)"
                + (f"; the script resumes from {checkpoint_dir}" if checkpoint_dir else ""))
    return code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        mpirun, flavour, checkpoint_dir, log_root = _preflight(args)
    except preflight.PreflightError as e:
        say(f"error: {e}")
        return USAGE_EXIT
    run_dir = rundir.new_run_dir(log_root)
    say(f"logs of this run in {run_dir} (also {os.path.join(log_root, rundir.LATEST)})")
    lease = rundir.Lease(run_dir)
    lease.start()
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        return _run_attempts(args, mpirun, flavour, checkpoint_dir, run_dir, lease.path)
    except _Terminated as e:
        say(f"got {signal.Signals(e.signum).name}: killed the job")
        return 128 + e.signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        lease.stop()


if __name__ == "__main__":
    sys.exit(main())
