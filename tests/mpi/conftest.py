"""Fixtures of the multi-rank tests: the world `comm`, the `mpi(min_size=)` marker and a
per-test watchdog.

These tests run on every rank (`mpirun -n N python -m mpi4py -m pytest tests/mpi`, started by
tests/e2e/test_mpi_suite.py). Rules: expectations come from `rank` and `size`; every rank runs
the same collectives in the same order (no branching on rank around a collective); assertions
come after a test's collectives, so a failing rank does not leave the others waiting.
`python -m pytest tests/mpi` without mpirun runs them at size 1 (tests needing more skip).
"""

from __future__ import annotations

import faulthandler
import os
import sys
import tempfile
import threading

import pytest

import disttrain.distributed as dist

# NOTE: a test that hangs (a collective not every rank entered) prints every thread's stack and
# exits, which makes mpirun end the job, instead of waiting for the runner's overall timeout
TEST_TIMEOUT_S = 120


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.addinivalue_line("markers", "mpi(min_size=1): needs at least min_size ranks")
    # NOTE: one temp root per rank; ranks sharing pytest's default root race in its cleanup of
    # old directories (seen: a rank failing at exit on a vanished directory)
    if not config.option.basetemp:
        rank = os.environ.get("OMPI_COMM_WORLD_RANK") or os.environ.get("PMI_RANK") or "0"
        config.option.basetemp = os.path.join(tempfile.gettempdir(),
                                              f"disttrain-mpi-tests-rank{rank}")


@pytest.fixture(scope="session")
def comm():
    """The world Communicator (`dist.init()`)."""
    return dist.init()


@pytest.fixture(autouse=True)
def _mpi_guard(request, comm):
    """Skips tests whose `mpi(min_size=)` exceeds the world size; arms the hang watchdog."""
    marker = request.node.get_closest_marker("mpi")
    min_size = marker.kwargs.get("min_size", 1) if marker is not None else 1
    if comm.size < min_size:
        pytest.skip(f"needs at least {min_size} ranks, running on {comm.size}")
    watchdog = threading.Timer(TEST_TIMEOUT_S, _hung, (request.config, request.node.nodeid,
                                                      comm.rank))
    watchdog.daemon = True
    watchdog.start()
    yield
    comm.barrier()  # NOTE: the next test starts together on every rank
    watchdog.cancel()


def _hung(config, nodeid: str, rank: int) -> None:
    """Prints the test's captured output and every thread's stack, then exits this rank (as
    pytest-timeout's thread method does)."""
    out = err = ""
    capman = config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.suspend_global_capture(in_=True)
        out, err = capman.read_global_capture()
    sys.stderr.write(f"\n[tests/mpi] rank {rank}: {nodeid} still running after "
                     f"{TEST_TIMEOUT_S} s (a collective that not every rank entered?)\n"
                     f"captured stdout:\n{out}\ncaptured stderr:\n{err}\nstacks:\n")
    sys.stderr.flush()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    sys.stderr.flush()
    os._exit(1)
