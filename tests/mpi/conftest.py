"""Fixtures of the multi-rank tests: the world `comm`, the `mpi(min_size=)` marker and a
per-test watchdog.

These tests run on every rank (`mpirun -n N python -m mpi4py -m pytest tests/mpi`, started by
tests/e2e/test_mpi_suite.py). Rules: expectations come from `rank` and `size`; every rank runs
the same collectives in the same order (no branching on rank around a collective); assertions
come after a test's collectives, so a failing rank does not leave the others waiting.
"""

from __future__ import annotations

import faulthandler
import sys

import numpy
import pytest

import disttrain.distributed as dist

# NOTE: a test that hangs (mismatched collectives) dumps every thread's stack and exits, which
# makes mpirun end the job, instead of waiting for the runner's overall timeout
TEST_TIMEOUT_S = 120


def pytest_configure(config):
    config.addinivalue_line("markers", "mpi(min_size=1): needs at least min_size ranks")


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
    faulthandler.dump_traceback_later(TEST_TIMEOUT_S, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()
    comm.barrier()  # NOTE: the next test starts together on every rank


def gather_equal(comm, array) -> bool:
    """Whether `array` has the same bytes on every rank (a collective)."""
    rows = comm.allgather(numpy.ascontiguousarray(array))
    return all(rows[i].tobytes() == rows[0].tobytes() for i in range(comm.size))
