"""`disttrain-launch` / `python -m disttrain.launch`: see disttrain/launch/__init__.py."""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import subprocess
import sys
import threading
import time

from disttrain import env
from disttrain.launch import commands, reports
from disttrain.launch.process import kill_session

PREFIX = "[disttrain-launch]"
WATCHDOG_EXIT = 124  # like timeout(1): the job was killed because a rank stalled


def say(text: str) -> None:
    sys.stderr.write(f"{PREFIX} {text}\n")
    sys.stderr.flush()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="disttrain-launch",
        description="Run a script on N MPI ranks; report, kill and restart failed or stalled "
                    "jobs.")
    p.add_argument("-n", "--nprocs", type=int, required=True, help="number of ranks")
    p.add_argument("--hostfile", help="MPI hostfile (Open MPI --hostfile, MPICH -f)")
    p.add_argument("--checkpoint-dir", help=f"exported to the script as {env.CHECKPOINT_DIR}")
    p.add_argument("--max-restarts", type=int, default=0, help="restarts after a failure")
    p.add_argument("--timeout", type=float, default=None,
                   help="kill the job when a rank's last heartbeat is older than this (s)")
    p.add_argument("--log-dir", help="per-rank logs (default <checkpoint-dir or cwd>/logs)")
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


def _read_beats(directory: str) -> list[dict]:
    beats = []
    for path in glob.glob(os.path.join(directory, "rank-*.json")):
        try:
            with open(path) as f:
                beats.append(json.load(f))
        except (OSError, ValueError):
            continue  # NOTE: os.replace makes torn reads unlikely; skip one if it happens
    return beats


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


def run_once(argv: list[str], env: dict[str, str], log_dir: str, heartbeat_dir: str,
             timeout: float | None) -> tuple[int, reports.Failure | None]:
    """Runs mpirun once; (exit code, failure or None)."""
    mpirun_log = open(os.path.join(log_dir, "mpirun.log"), "w")
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    chunks: list[str] = []

    def pump():
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode(errors="replace")
            chunks.append(line)
            mpirun_log.write(line)
            mpirun_log.flush()
            sys.stderr.write(line)
            sys.stderr.flush()

    stop = threading.Event()
    threads = [threading.Thread(target=pump, daemon=True),
               threading.Thread(target=_tail_to_console, daemon=True,
                                args=(os.path.join(log_dir, "rank-00000.log"), stop))]
    for t in threads:
        t.start()
    stalled = None
    try:
        while proc.poll() is None:
            if timeout is not None:
                stale = reports.stale_ranks(_read_beats(heartbeat_dir), time.time(), timeout)
                if stale:
                    stalled = stale[0]
                    break
            time.sleep(0.2)
    finally:
        kill_session(proc)  # always: nothing of the job outlives this attempt
        threads[0].join(timeout=5)
        stop.set()
        threads[1].join(timeout=5)
        mpirun_log.close()
    if stalled is not None:
        age = time.time() - stalled["beat_time"]
        return WATCHDOG_EXIT, reports.Failure(
            rank=stalled.get("rank"), host=stalled.get("host"), pid=stalled.get("pid"),
            phase=stalled.get("phase"),
            reason=f"made no progress for {age:.1f} s (watchdog timeout {timeout:g} s, last "
                   f"step {stalled.get('step')})")
    code = proc.returncode
    if code == 0:
        return 0, None
    code = 128 - code if code < 0 else code
    return code, reports.find_failure(_read_logs(log_dir), "".join(chunks), code)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    mpirun = commands.find_mpirun(args.mpirun)
    flavour = commands.mpi_flavour(mpirun)
    root = os.path.abspath(args.checkpoint_dir) if args.checkpoint_dir else os.getcwd()
    log_root = os.path.abspath(args.log_dir or os.path.join(root, "logs"))
    checkpoint_dir = os.path.abspath(args.checkpoint_dir) if args.checkpoint_dir else None
    if checkpoint_dir:
        os.makedirs(checkpoint_dir, exist_ok=True)
    cores = commands.local_cores()
    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 1
    try:
        for attempt in range(args.max_restarts + 1):
            log_dir = os.path.join(log_root, f"attempt-{attempt}")
            heartbeat_dir = os.path.join(log_dir, "heartbeat")
            os.makedirs(heartbeat_dir, exist_ok=True)
            exported = commands.job_env(os.environ, args.nprocs, cores, heartbeat_dir,
                                        checkpoint_dir, attempt, log_dir)
            job = commands.Job(args.nprocs, args.script, args.script_args, log_dir, exported,
                               args.hostfile, commands.split_passthrough(args.mpirun_args))
            argv_, notes = commands.build_command(flavour, mpirun, job, is_root=os.geteuid() == 0,
                                                  cores=cores)
            if attempt == 0:
                for note in notes:
                    say(note)
            say(f"attempt {attempt + 1}/{args.max_restarts + 1}: {' '.join(argv_)}")
            say(f"per-rank logs in {log_dir}")
            code, failure = run_once(argv_, {**os.environ, **exported}, log_dir, heartbeat_dir,
                                     args.timeout)
            if failure is None:
                say(f"attempt {attempt + 1} finished successfully")
                return 0
            say(f"attempt {attempt + 1} failed (exit code {code}): {failure.describe()}")
            say(f"the job was killed; logs in {log_dir}")
            if attempt < args.max_restarts:
                say(f"restarting ({args.max_restarts - attempt} restart(s) left)"
                    + (f"; the script resumes from {checkpoint_dir}" if checkpoint_dir else ""))
        return code
    except _Terminated as e:
        say(f"got {signal.Signals(e.signum).name}: killed the job")
        return 128 + e.signum
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    sys.exit(main())
