"""disttrain-launch's failure reports and watchdog decision, from log text and heartbeat
records (no MPI needed)."""

from __future__ import annotations

from disttrain.launch.reports import find_failure, mpirun_failures, rank_log_info, stale_ranks

HEAD1 = "[disttrain-launch] rank 1 host node2 pid 4242\n"
TB = '''Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
  File "/v/site-packages/mpi4py/run.py", line 53, in run_command_line
    run_path(sys.argv[0], run_name="__main__")
  File "train.py", line 6, in <module>
    raise RuntimeError("deliberate failure")
RuntimeError: deliberate failure
'''
OMPI_KILL = """--------------------------------------------------------------------------
prterun noticed that process rank 1 with PID 4242 on node node2 exited on
signal 9 (Killed).
--------------------------------------------------------------------------
"""
HYDRA_KILL = """===================================================================================
=   BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES
=   RANK 1 PID 4242 RUNNING AT node2
=   KILLED BY SIGNAL: 9 (Killed)
===================================================================================
"""


def test_rank_log_info_drops_runner_frames():
    info = rank_log_info(HEAD1 + "step 1\n" + TB)
    assert (info["rank"], info["host"], info["pid"]) == (1, "node2", 4242)
    assert "runpy" not in info["traceback"] and "mpi4py" not in info["traceback"]
    assert info["traceback"].splitlines()[-1] == "RuntimeError: deliberate failure"
    assert 'File "train.py", line 6' in info["traceback"]


def test_disttrain_report_names_the_rank_over_the_header():
    text = HEAD1 + "[disttrain] rank 3 (host h9, pid 7) failed; aborting all 4 ranks:\n" + TB
    assert rank_log_info(text)["rank"] == 3
    failure = find_failure({0: "[disttrain-launch] rank 0 host a pid 1\n", 3: text}, "", 1)
    assert (failure.rank, failure.host, failure.exit_code) == (3, "h9", 1)
    assert "deliberate failure" in failure.describe()


def test_openmpi_signal_message_wrapped_over_lines():
    (f,) = mpirun_failures(OMPI_KILL)
    assert (f.rank, f.pid, f.host, f.signal, f.signal_name) == (1, 4242, "node2", 9, "Killed")


def test_hydra_signal_and_exit_code():
    (f,) = mpirun_failures(HYDRA_KILL)
    assert (f.rank, f.host, f.signal) == (1, "node2", 9)
    (g,) = mpirun_failures(HYDRA_KILL.replace("KILLED BY SIGNAL: 9 (Killed)", "EXIT CODE: 3"))
    assert (g.rank, g.exit_code, g.signal) == (1, 3, None)


def test_openmpi_abort_message():
    text = ("MPI_ABORT was invoked on rank 2 in communicator MPI_COMM_WORLD\n"
            "  Proc: [[11509,1],2]\n  Errorcode: 5\n")
    (f,) = mpirun_failures(text)
    assert (f.rank, f.exit_code) == (2, 5)


def test_sigkilled_rank_is_named_from_mpirun_output():
    logs = {0: "[disttrain-launch] rank 0 host node1 pid 1\nstep 1\n",
            1: HEAD1 + "step 1\n"}
    failure = find_failure(logs, OMPI_KILL, 137)
    assert (failure.rank, failure.host, failure.signal) == (1, "node2", 9)
    assert "rank 1" in failure.describe() and "signal 9 (Killed)" in failure.describe()


def test_traceback_rank_beats_ranks_killed_after_it():
    logs = {0: "[disttrain-launch] rank 0 host a pid 1\n", 1: HEAD1 + TB}
    out = OMPI_KILL.replace("rank 1 with PID 4242", "rank 0 with PID 1").replace("9 (K", "15 (T")
    failure = find_failure(logs, out, 1)
    assert failure.rank == 1 and failure.traceback.endswith("deliberate failure")


def test_stale_ranks():
    beats = [{"rank": 0, "phase": "forward", "step": 5, "beat_time": 99.0},
             {"rank": 1, "phase": "all-reduce", "step": 4, "beat_time": 90.0},
             {"rank": 2, "phase": "done", "step": 9, "beat_time": 10.0}]
    assert stale_ranks(beats, now=100.0, timeout=3) == [beats[1]]
    assert stale_ranks(beats, now=100.0, timeout=20) == []
    assert [b["rank"] for b in stale_ranks(beats, now=200.0, timeout=3)] == [1, 0]
    assert stale_ranks([], now=1e9, timeout=1) == []
