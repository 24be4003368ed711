"""disttrain-launch with a real mpirun on 2 ranks: a raising rank is named with its exception,
a SIGKILLed rank is named with its signal and the job restarts and finishes, a stalled rank is
reported by the watchdog, and no process of the job outlives the launcher (SIGTERM included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

RAISE = '''
import numpy
import disttrain.distributed as dist

comm = dist.init()
if comm.rank == 1:
    raise RuntimeError("deliberate failure on the second rank")
comm.allreduce_(numpy.zeros(4))
'''
KILL_FIRST_ATTEMPT = '''
import os, pathlib, signal, time
from mpi4py import MPI
from disttrain import env

comm = MPI.COMM_WORLD
marker = pathlib.Path(env.checkpoint_dir()) / "attempted"
comm.Barrier()
first = not marker.exists()
comm.Barrier()
if comm.rank == 0 and first:
    marker.write_text("1")
if comm.rank == 1 and first:
    os.kill(os.getpid(), signal.SIGKILL)
comm.Barrier()
print("finished on rank", comm.rank, flush=True)
'''
STALL = '''
import time
from mpi4py import MPI
from disttrain.distributed.watchdog import heartbeat

rank = MPI.COMM_WORLD.rank
if rank == 1:
    heartbeat("all-reduce", 3)
    time.sleep(10**6)
for i in range(10**6):
    heartbeat("forward", i)
    time.sleep(0.2)
'''
SLEEP = '''
import time
from mpi4py import MPI
print("rank", MPI.COMM_WORLD.rank, "sleeping", flush=True)
time.sleep(10**6)
'''


@pytest.fixture(autouse=True)
def _needs_mpi(mpirun):
    """Every test here starts MPI jobs (the `mpirun` fixture skips where MPI is missing)."""


def job_pids(marker: str) -> list[int]:
    """Live (non-zombie) processes whose command line mentions `marker`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state not in ("Z", "X"):
            found.append(int(name))
    return found


def launch(tmp_path, source: str, *options: str, name: str = "job.py"):
    script = tmp_path / name
    script.write_text(source)
    command = [sys.executable, "-m", "disttrain.launch", "-n", "2", "--checkpoint-dir",
               str(tmp_path / "ckpt"), *options, str(script)]
    return script, subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)


def finish(proc, limit=60) -> str:
    try:
        return proc.communicate(timeout=limit)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the launcher hung; output:\n{proc.communicate()[0]}")


def assert_no_survivors(script):
    time.sleep(0.3)
    assert job_pids(str(script)) == [], "processes of the job outlived the launcher"


def test_raising_rank_is_named_with_its_exception(tmp_path):
    script, proc = launch(tmp_path, RAISE, name="raise_job.py")
    out = finish(proc)
    assert proc.returncode != 0, out
    assert "failed (exit code" in out and "rank 1 (host " in out, out
    assert "RuntimeError: deliberate failure on the second rank" in out, out
    assert (tmp_path / "ckpt" / "logs" / "latest" / "attempt-0" / "rank-00001.log").exists()
    assert_no_survivors(script)


def test_sigkilled_rank_is_named_and_the_job_restarts(tmp_path):
    script, proc = launch(tmp_path, KILL_FIRST_ATTEMPT, "--max-restarts", "2",
                          name="kill_job.py")
    out = finish(proc)
    assert proc.returncode == 0, out
    assert "attempt 1 failed" in out and "rank 1 (host " in out, out
    assert "signal 9" in out, out
    assert "attempt 2 finished successfully" in out, out
    assert "finished on rank 0" in out, out  # rank 0 streams to the console
    assert_no_survivors(script)


def test_watchdog_reports_stalled_rank_and_phase(tmp_path):
    start = time.monotonic()
    script, proc = launch(tmp_path, STALL, "--timeout", "3", name="stall_job.py")
    out = finish(proc, limit=30)
    elapsed = time.monotonic() - start
    assert proc.returncode != 0, out
    assert "rank 1 (host " in out and "phase 'all-reduce'" in out, out
    assert "made no progress" in out and "rank 0 (" not in out, out
    assert elapsed < 15, out
    assert_no_survivors(script)


def test_sigterm_to_launcher_leaves_no_process(tmp_path):
    script, proc = launch(tmp_path, SLEEP, name="sleep_job.py")
    logs = tmp_path / "ckpt" / "logs" / "latest" / "attempt-0"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        texts = [p.read_text() for p in logs.glob("rank-*.log")] if logs.exists() else []
        if len(texts) == 2 and all("sleeping" in t for t in texts):
            break
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the job never started:\n{proc.communicate()[0]}")
    assert len(job_pids(str(script))) >= 2
    proc.send_signal(signal.SIGTERM)
    out = finish(proc, limit=20)
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "SIGTERM" in out, out
    assert_no_survivors(script)
