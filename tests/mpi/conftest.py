"""Fixtures of the multi-rank tests: the world `comm`, a per-test hang watchdog and a barrier
between tests. The `mpi(min_size=)` marker, `--with-mpi` and `mpi_tmp_path` (one directory
shared by every rank) come from pytest-mpi.

These tests run on every rank (`mpirun -n N python -m mpi4py -m pytest --with-mpi tests/mpi`,
started by tests/e2e/test_mpi_suite.py at several sizes). Rules: expectations come from `rank`
and `size`; every rank runs the same collectives in the same order (no branching on rank around
a collective); assertions come after a test's collectives, so a failing rank does not leave the
others waiting. `python -m pytest --with-mpi tests/mpi` without mpirun runs them at size 1
(tests marked `mpi(min_size=2)` or more skip, saying so); without `--with-mpi` every test here
skips (pytest-mpi: "need --with-mpi option to run").
"""

from __future__ import annotations

import faulthandler
import os
import pathlib
import sys
import tempfile
import threading

import pytest

import disttrain.distributed as dist
from disttrain import env

HERE = pathlib.Path(__file__).parent
# NOTE: a test that hangs (a collective not every rank entered) prints every thread's stack and
# exits, which makes mpirun end the job, instead of waiting for the runner's overall timeout
TEST_TIMEOUT_S = 120


def _launcher_rank() -> str:
    """This process's world rank as the MPI launcher exported it ("0" when not launched)."""
    return str(env.rank_env()[0])


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    rank = _launcher_rank()
    # NOTE: one temp root per rank; ranks sharing pytest's default root race in its cleanup of
    # old directories (seen: a rank failing at exit on a vanished directory)
    if not config.option.basetemp:
        config.option.basetemp = os.path.join(tempfile.gettempdir(),
                                              f"disttrain-mpi-tests-rank{rank}")
    # NOTE: every rank gets the same --junitxml path; rank 0 alone writes it (the outcomes are
    # the same on every rank, and N writers of one file would race). tryfirst: before junitxml
    # reads the option in its own pytest_configure.
    if rank != "0":
        config.option.xmlpath = None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Every test in tests/mpi is an MPI test: marked `mpi` for pytest-mpi (tryfirst, so its
    own hook, which skips `mpi` tests without --with-mpi, sees the mark)."""
    for item in items:
        if HERE in item.path.parents and item.get_closest_marker("mpi") is None:
            item.add_marker(pytest.mark.mpi)


@pytest.fixture(scope="session")
def comm():
    """The world Communicator (`dist.init()`)."""
    return dist.init()


@pytest.fixture(autouse=True)
def _mpi_guard(request, comm):
    """Arms the hang watchdog; after the test, waits for every rank (a barrier), so the next
    test starts together. (pytest-mpi has already skipped tests whose min_size exceeds the
    world size, before any fixture ran: on every rank alike.)"""
    watchdog = threading.Timer(TEST_TIMEOUT_S, _hung, (request.config, request.node.nodeid,
                                                      comm.rank))
    watchdog.daemon = True
    watchdog.start()
    yield
    comm.barrier()
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
