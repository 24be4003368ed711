"""disttrain-launch under faults (issue 9): a second run's report and console never show the
first run's logs, a rank that never starts or hangs before its first heartbeat is killed at the
start-up deadline, a SIGKILLed launcher leaves no process of the job, and an mpirun that fails
before any rank started is reported as such and not restarted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_launcher import finish, job_pids

RAISE_ON_RANK_1 = '''
import disttrain.distributed as dist

comm = dist.init()
print("first run on rank", comm.rank, flush=True)
if comm.rank == 1:
    raise RuntimeError("deliberate failure of the first run")
comm.barrier()
'''
RANK_0_KILLS_ITSELF = '''
import os, signal
import disttrain.distributed as dist

comm = dist.init()
print("second run on rank", comm.rank, flush=True)
if comm.rank == 0:
    os.kill(os.getpid(), signal.SIGKILL)
comm.barrier()
'''
RANK_1_HANGS_IN_STARTUP = '''
import time
from mpi4py import MPI

if MPI.COMM_WORLD.rank == 1:
    time.sleep(10**6)  # "loading data" forever: never reaches dist.init()
import disttrain.distributed as dist

dist.init()
time.sleep(10**6)
'''
LOOP_FOREVER = '''
import time
import disttrain.distributed as dist

comm = dist.init()
print("looping on rank", comm.rank, flush=True)
while True:
    time.sleep(0.1)
'''
RANK_1_STOPS_AT_THE_END = '''
import os, signal, time
import disttrain.distributed as dist
from mpi4py import MPI

if MPI.COMM_WORLD.rank == 1:
    time.sleep(0.3)  # its "init" heartbeat is the newer one
comm = dist.init()
dist.heartbeat("step", 1)
comm.barrier()  # NOTE: MPI's shared-memory segments are mapped by now
with open(f"segments-{comm.rank}.txt", "w") as f:  # what the launcher must clean up
    f.write(" ".join({line.split()[5] for line in open("/proc/self/maps")
                       if len(line.split()) > 5 and line.split()[5].startswith("/dev/shm/")}))
if comm.rank == 1:
    os.kill(os.getpid(), signal.SIGSTOP)  # stopped before its writer thread wrote "step"
time.sleep(0.3)
# rank 0 ends within the writer's 0.5 s period and waits in MPI_Finalize for rank 1
'''
HANGING_AGENT = "#!/bin/sh\n# a remote shell that never answers\nsleep 1000\n"


@pytest.fixture(autouse=True)
def _needs_mpi(mpirun):
    """Every test here starts MPI jobs (the `mpirun` fixture skips where MPI is missing)."""


def start(cwd, script, *options: str, env=None) -> subprocess.Popen:
    command = [sys.executable, "-m", "disttrain.launch", "-n", "2", *options, str(script)]
    return subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, env=env)


def write(path, text: str, mode: int = 0o644):
    path.write_text(text)
    path.chmod(mode)
    return path


def test_second_run_reports_only_its_own_failure(tmp_path):
    first = write(tmp_path / "first_run.py", RAISE_ON_RANK_1)
    proc = start(tmp_path, first)
    out = finish(proc)
    assert proc.returncode != 0 and "deliberate failure of the first run" in out, out
    second = write(tmp_path / "second_run.py", RANK_0_KILLS_ITSELF)
    proc = start(tmp_path, second)
    out = finish(proc)
    assert proc.returncode != 0, out
    assert "rank 0 (host " in out and "signal 9" in out, out
    assert "rank 1 (host " not in out and "deliberate failure" not in out, out
    assert "first run on rank" not in out, out  # the console mirrors this run only
    runs = sorted(p.name for p in (tmp_path / "logs").iterdir() if p.name.startswith("run-"))
    assert len(runs) == 2, runs
    latest = tmp_path / "logs" / "latest"
    assert latest.resolve().name in runs and latest.resolve() != (tmp_path / "logs" / runs[0])
    assert "second run" in (latest / "attempt-0" / "rank-00000.log").read_text()


def test_rank_hung_before_its_first_heartbeat_is_killed_at_the_startup_deadline(tmp_path):
    script = write(tmp_path / "hang_in_startup.py", RANK_1_HANGS_IN_STARTUP)
    begin = time.monotonic()
    proc = start(tmp_path, script, "--startup-timeout", "4")
    out = finish(proc, limit=40)
    assert proc.returncode == 124, out
    assert "rank 1 (host " in out and "sent no heartbeat within the start-up timeout (4 s)" \
        in out, out
    assert "rank 0 (" not in out, out  # rank 0 sent its "init" heartbeat: not blamed
    assert time.monotonic() - begin < 25, out
    time.sleep(0.3)
    assert job_pids(str(script)) == []


def test_rank_stopped_as_a_short_job_ends_is_the_one_blamed(tmp_path):
    """A job shorter than the heartbeat writer's 0.5 s period. dist.init() writes its beats at
    once (else rank 1, stopped a moment later, may have no file and rank 0 is the only one
    judged), and rank 0 writes an "exit" record as it ends (else its file says "init", older
    than rank 1's)."""
    script = write(tmp_path / "stop_at_the_end.py", RANK_1_STOPS_AT_THE_END)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    proc = start(tmp_path, script, "--timeout", "3", env=dict(os.environ, TMPDIR=str(tmpdir)))
    out = finish(proc, limit=60)
    # NOTE: the killed mpirun's session directory is gone too (process.remove_session_dir),
    # and so are the shared-memory segments its ranks had mapped (SIGTERM first: mpirun
    # cleans up; only a SIGKILLed mpirun leaves them)
    assert not list(tmpdir.glob("ompi.*")), list(tmpdir.iterdir())
    segments = {path for r in (0, 1)
                for path in (tmp_path / f"segments-{r}.txt").read_text().split()}
    assert any("segment" in s for s in segments), segments  # Open MPI's sm transport ran
    assert not [s for s in segments if os.path.exists(s)], segments
    assert proc.returncode == 124, out
    assert "attempt 1 failed (exit code 124): rank 1 (host " in out, out
    assert "watchdog timeout 3 s" in out, out
    last = json.loads((tmp_path / "logs" / "latest" / "attempt-0" / "heartbeat"
                       / "rank-00000.json").read_text())
    assert last["phase"] == "exit" and last["step"] == 1, last
    time.sleep(0.3)
    assert job_pids(str(script)) == []


def test_host_whose_remote_shell_hangs_is_killed_at_the_startup_deadline(tmp_path):
    agent = write(tmp_path / "hanging_agent.sh", HANGING_AGENT, 0o755)
    hostfile = write(tmp_path / "hostfile", "127.0.0.1 slots=1\n127.0.0.2 slots=1\n")
    script = write(tmp_path / "never_runs.py", "import disttrain.distributed as d\nd.init()\n")
    begin = time.monotonic()
    proc = start(tmp_path, script, "--hostfile", str(hostfile), "--startup-timeout", "5",
                 "--mpirun-args", f"--mca plm_rsh_agent {agent}")
    out = finish(proc, limit=60)
    assert proc.returncode == 124, out
    assert "never started" in out and "start-up timeout (5 s)" in out, out
    assert "ranks 0, 1 never started" in out or "rank 1 never started" in out, out
    assert time.monotonic() - begin < 30, out
    time.sleep(0.3)
    assert job_pids(str(agent)) == [] and job_pids(str(script)) == []


def test_sigkill_of_the_launcher_leaves_no_process_of_the_job(tmp_path):
    script = write(tmp_path / "loop_forever.py", LOOP_FOREVER)
    proc = start(tmp_path, script)
    logs = tmp_path / "logs" / "latest" / "attempt-0"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        texts = [p.read_text() for p in logs.glob("rank-*.log")] if logs.exists() else []
        if len(texts) == 2 and all("looping" in t for t in texts):
            break
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"the job never started:\n{proc.communicate()[0]}")
    assert len(job_pids(str(script))) >= 2
    proc.kill()  # SIGKILL to the launcher alone: no handler runs, nothing is cleaned up
    proc.communicate()
    deadline = time.monotonic() + 10
    while job_pids(str(script)) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = job_pids(str(script))
    for pid in left:  # NOTE: clean up before failing, so one failure does not leak a job
        os.kill(pid, signal.SIGKILL)
    assert left == [], "processes of the job outlived the SIGKILLed launcher by 10 s"


def test_mpirun_failing_before_any_rank_started_is_not_restarted(tmp_path):
    script = write(tmp_path / "fine.py", "print('hello')\n")
    proc = start(tmp_path, script, "--max-restarts", "2",
                 "--mpirun-args=--no-such-option")
    out = finish(proc)
    assert proc.returncode != 0, out
    assert "mpirun failed before any rank started" in out, out
    assert "--no-such-option" in out.split("failed before any rank started", 1)[1], out
    assert "not restarting" in out and "attempt 2/3" not in out, out
    assert "unknown rank" not in out, out


REFUSES = '''
import disttrain.distributed as dist

comm = dist.init()
if comm.rank == 1:
    raise dist.CheckpointRefusedError("ckpt is in use by another job (a stand-in)")
comm.barrier()
'''


def test_an_error_that_says_a_restart_would_fail_the_same_way_is_not_restarted(tmp_path):
    """A checkpoint directory held by another job (or holding saved work nothing can restore)
    fails every restart the same way: the job ends with env.NO_RESTART_EXIT, reported once."""
    from disttrain import env

    script = write(tmp_path / "refuses.py", REFUSES)
    proc = start(tmp_path, script, "--max-restarts", "2")
    out = finish(proc)
    assert proc.returncode == env.NO_RESTART_EXIT, out
    assert "rank 1" in out and "ckpt is in use by another job" in out, out
    assert "not restarting" in out and "attempt 2/3" not in out, out
    assert "\0" not in out, "the launcher copied prterun's NUL byte to the console"


def test_a_stale_session_dir_under_mpiruns_pid_does_not_stop_it(tmp_path, mpirun):
    """Open MPI 5 fails at start (exit 213, "PMIx server's listener thread failed to start")
    when a killed mpirun of the same pid left its session directory; the launcher's mpirun
    removes one left under its own pid first."""
    from disttrain.launch.process import with_fresh_session_dir

    def stale_dir_for_own_pid():
        path = tmp_path / f"ompi.{os.getpid()}"
        path.mkdir()
        (path / f"pmix.vm.tool.{os.getpid()}").write_text("left by a killed mpirun")
        (path / "pmix.vm.tool").write_text("left by a killed mpirun")

    argv = [mpirun, "-n", "1"] + (["--allow-run-as-root"] if os.geteuid() == 0 else []) + [
        sys.executable, "-c", "pass"]
    env = dict(os.environ, TMPDIR=str(tmp_path))
    done = subprocess.run(with_fresh_session_dir(argv), env=env, capture_output=True,
                          text=True, timeout=60, preexec_fn=stale_dir_for_own_pid)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not list(tmp_path.glob("ompi.*"))
