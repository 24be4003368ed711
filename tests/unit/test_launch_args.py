"""disttrain-launch's checks before it starts anything (issue 9 item 6): bad numbers are
argparse errors, bad paths one line each with no traceback and no attempt; plus the run
directory, the start-up verdict, the exported launcher lease and the rank-side watcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from disttrain import env
from disttrain.launch import __main__ as main_
from disttrain.launch import _rank, commands, reports, rundir

FAKE_MPIRUN = "#!/bin/sh\necho 'mpirun (Open MPI) 5.0.0'\n"


def launch(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "disttrain.launch", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def setup(tmp_path):
    fake = tmp_path / "fake-mpirun"
    fake.write_text(FAKE_MPIRUN)
    fake.chmod(0o755)
    (tmp_path / "train.py").write_text("print('hi')\n")
    return tmp_path, ["--mpirun", str(fake)]


@pytest.mark.parametrize("option, value, message", [
    ("-n", "0", r"argument -n/--nprocs: expected an integer >= 1, got 0"),
    ("-n", "-1", r"argument -n/--nprocs: expected an integer >= 1, got -1"),
    ("-n", "two", r"argument -n/--nprocs: expected an integer >= 1, got 'two'"),
    ("--timeout", "0", r"argument --timeout: expected a number of seconds > 0, got 0"),
    ("--timeout", "-5", r"argument --timeout: expected a number of seconds > 0, got -5"),
    ("--startup-timeout", "-1", r"argument --startup-timeout: expected a number of seconds >= 0"),
    ("--startup-timeout", "nan", r"argument --startup-timeout: expected a number of seconds"),
    ("--max-restarts", "-1", r"argument --max-restarts: expected an integer >= 0, got -1"),
])
def test_bad_numbers_are_argparse_errors(setup, option, value, message):
    tmp_path, fake = setup
    args = ["-n", "2", *fake, option, value, "train.py"]
    if option == "-n":
        args = [*fake, option, value, "train.py"]
    done = launch(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert message.replace("\\", "") in done.stderr.replace("\\", ""), done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "logs").exists()


def preflight_error(tmp_path, *args: str) -> str:
    done = launch(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("[disttrain-launch] error: "), done.stderr
    assert "attempt" not in done.stderr and not (tmp_path / "logs").exists()
    return lines[0]


def test_missing_script(setup):
    tmp_path, fake = setup
    line = preflight_error(tmp_path, "-n", "2", *fake, "no_such_script.py")
    assert "script: 'no_such_script.py' is not a file" in line


def test_unreadable_hostfile(setup):
    tmp_path, fake = setup
    line = preflight_error(tmp_path, "-n", "2", *fake, "--hostfile", "missing-hosts",
                           "train.py")
    assert "--hostfile: cannot read 'missing-hosts': No such file or directory" in line


def test_mpirun_that_does_not_exist(setup):
    tmp_path, _ = setup
    line = preflight_error(tmp_path, "-n", "2", "--mpirun", "/nonexistent", "train.py")
    assert "--mpirun: '/nonexistent' does not exist" in line


def test_mpirun_that_is_not_an_mpi(setup):
    tmp_path, _ = setup
    line = preflight_error(tmp_path, "-n", "2", "--mpirun", "/bin/true", "train.py")
    assert "--mpirun: /bin/true: cannot tell which MPI this is" in line


def test_checkpoint_dir_naming_a_file(setup):
    tmp_path, fake = setup
    (tmp_path / "ckpt").write_text("not a directory")
    line = preflight_error(tmp_path, "-n", "2", *fake, "--checkpoint-dir", "ckpt", "train.py")
    assert f"--checkpoint-dir: '{tmp_path / 'ckpt'}' exists and is not a directory" in line


def test_checkpoint_dir_that_cannot_be_written(setup):
    tmp_path, fake = setup
    if os.geteuid() == 0:
        target = "/proc/disttrain-checkpoints"  # NOTE: root writes anywhere else; not /proc
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        target = str(tmp_path / "ro")
    line = preflight_error(tmp_path, "-n", "2", *fake, "--checkpoint-dir", target, "train.py")
    assert f"--checkpoint-dir: '{target}' is not a writable directory: " in line


# ---------------------------------------------------------------- run directories
def test_each_run_gets_its_own_directory_and_latest_points_at_the_newest(tmp_path):
    first = rundir.new_run_dir(str(tmp_path), now=0.0, pid=7)
    second = rundir.new_run_dir(str(tmp_path), now=0.0, pid=7)  # same second, same pid
    assert first != second and os.path.isdir(first) and os.path.isdir(second)
    assert os.path.realpath(tmp_path / "latest") == os.path.realpath(second)
    assert sorted(os.listdir(tmp_path)) == ["latest", "run-19700101T000000Z-7",
                                            "run-19700101T000000Z-7.1"]


def test_lease_is_renewed_while_the_launcher_lives(tmp_path):
    lease = rundir.Lease(str(tmp_path))
    before = os.stat(lease.path).st_mtime_ns
    lease.start()
    time.sleep(rundir.LEASE_INTERVAL_S * 1.5)
    lease.stop()
    assert os.stat(lease.path).st_mtime_ns > before


def test_job_env_exports_the_launcher_lease():
    exported = commands.job_env({}, 2, 2, "/hb", None, 0, "/l", lease_path="/run/lease")
    lease = env.launcher_lease(exported)
    assert lease == env.LauncherLease(os.getpid(), lease.host, "/run/lease") and lease.host
    assert env.launcher_lease(commands.job_env({}, 2, 2, "/hb", None, 0, "/l")) is None


# ---------------------------------------------------------------- the start-up verdict
def test_startup_failure_blames_ranks_that_never_started_first():
    failure = reports.startup_failure(3, {0: {"host": "a", "pid": 1}}, {0: "init"}, 5)
    assert failure.describe().startswith("ranks 1, 2 never started: no process of it reported "
                                         "within the start-up timeout (5 s); rank 0 started")


def test_startup_failure_blames_a_silent_rank_before_one_waiting_in_init():
    started = {0: {"host": "a", "pid": 1}, 1: {"host": "b", "pid": 2}}
    failure = reports.startup_failure(2, started, {0: "init"}, 5)
    assert failure.describe() == ("rank 1 (host b, pid 2) started but sent no heartbeat within "
                                  "the start-up timeout (5 s): hung in start-up (imports or "
                                  "data loading, before dist.init())")
    failure = reports.startup_failure(2, started, {0: "init", 1: "init-done"}, 5)
    assert failure.rank == 0 and "did not finish dist.init()" in failure.reason
    assert reports.startup_failure(2, started, {0: "forward", 1: "init-done"}, 5) is None


def test_before_start_is_not_restartable_and_shows_mpirun_output():
    failure = reports.before_start("x\nUnknown option --bad\n", 213)
    assert not failure.restartable
    assert failure.describe() == ("mpirun failed before any rank started; exit code 213\n"
                                  "    x\n    Unknown option --bad")


def test_before_start_restarts_after_a_passing_pmix_failure():
    output = ("----\nThe PMIx server's listener thread failed to start. We cannot\ncontinue.\n"
              "----\n")
    failure = reports.before_start(output, 213)
    assert failure.restartable
    assert failure.describe().startswith("mpirun failed before any rank started (a passing "
                                         "start-up failure of mpirun); exit code 213\n")


def _beat(directory, rank: int, phase: str, age_s: float) -> None:
    record = {"rank": rank, "host": "h", "pid": 100 + rank, "phase": phase, "step": None,
              "beat_time": time.time() - age_s}
    (directory / f"rank-{rank}.json").write_text(json.dumps(record))


def test_watchdog_leaves_a_rank_waiting_in_init_to_the_startup_deadline(tmp_path):
    """Rank 0 waits in dist.init() while rank 1 still imports (a loaded machine): --timeout 1
    must not kill the job; the start-up deadline (300 s) has not passed."""
    _beat(tmp_path, 0, "init", age_s=10)
    watchdog = main_._Watchdog(str(tmp_path), 2, timeout=1, startup_timeout=300)
    assert watchdog.check() is None
    # both up: from now on --timeout judges every rank, the one that stopped included
    _beat(tmp_path, 1, "init", age_s=0)
    _beat(tmp_path, 0, "forward", age_s=0)
    _beat(tmp_path, 1, "forward", age_s=0)
    assert watchdog.check() is None and watchdog.all_beating
    _beat(tmp_path, 1, "forward", age_s=10)
    failure = watchdog.check()
    assert failure.rank == 1 and "made no progress for 10.0 s (watchdog timeout 1 s" \
        in failure.reason


def test_watchdog_judges_init_once_every_rank_sent_a_heartbeat(tmp_path):
    """Both ranks beat: one stuck in dist.init() is a stall for --timeout (a peer died there)."""
    _beat(tmp_path, 0, "init", age_s=10)
    _beat(tmp_path, 1, "init", age_s=0)
    failure = main_._Watchdog(str(tmp_path), 2, timeout=1, startup_timeout=300).check()
    assert failure.rank == 0 and failure.phase == "init"


def test_watchdog_without_a_startup_deadline_judges_init_by_the_timeout(tmp_path):
    _beat(tmp_path, 0, "init", age_s=10)
    failure = main_._Watchdog(str(tmp_path), 2, timeout=1, startup_timeout=None).check()
    assert failure.rank == 0 and failure.phase == "init"


# ---------------------------------------------------------------- the rank-side watcher
def test_watcher_reports_a_dead_launcher_on_the_same_host(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lease = env.LauncherLease(dead.pid, "here", str(tmp_path / "lease"))
    why = _rank._watch(os.getppid(), "here", lease)
    assert why == f"the launcher (pid {dead.pid} on here) is gone"


def test_watcher_reports_a_lease_that_stopped_changing(tmp_path, monkeypatch):
    monkeypatch.setattr(_rank, "LEASE_STALE_S", 1.5)
    monkeypatch.setattr(_rank, "WATCH_INTERVAL_S", 0.2)
    path = tmp_path / "lease"
    path.write_text("1")
    lease = env.LauncherLease(os.getpid(), "launcher-host", str(path))
    start = time.monotonic()
    why = _rank._watch(os.getppid(), "rank-host", lease)  # another host: lease only
    assert "has not been renewed for 2 s" in why and time.monotonic() - start < 5


def test_watcher_keeps_quiet_while_the_lease_is_renewed(tmp_path, monkeypatch):
    monkeypatch.setattr(_rank, "LEASE_STALE_S", 0.6)
    monkeypatch.setattr(_rank, "WATCH_INTERVAL_S", 0.1)
    path = tmp_path / "lease"
    stop = threading.Event()

    def renew():
        while not stop.wait(0.1):
            path.write_text(str(time.time()))

    threading.Thread(target=renew, daemon=True).start()
    result = []
    watcher = threading.Thread(target=lambda: result.append(_rank._watch(
        os.getppid(), "rank-host", env.LauncherLease(os.getpid(), "h", str(path)))),
        daemon=True)
    watcher.start()
    watcher.join(timeout=2)
    stop.set()
    assert watcher.is_alive() and result == []  # still watching, nothing reported


def test_remove_session_dir_removes_only_that_pids(tmp_path, monkeypatch):
    from disttrain.launch.process import remove_session_dir

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    (tmp_path / "ompi.4242" / "1").mkdir(parents=True)
    (tmp_path / "ompi.4242" / "pmix.vm.tool.4242").write_text("x")
    (tmp_path / "ompi.4243").mkdir()
    remove_session_dir(4242)
    remove_session_dir(9999)  # none there: nothing happens
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ompi.4243"]
