"""Shared fixtures and reporting: a seeded default generator for every test; `xp`, the array
module (numpy, plus cupy where it imports and a GPU is present); and, at the end of the run, one
line per skip reason with its count.

tests/mpi is collected only with pytest-mpi's `--with-mpi` (or under an MPI launcher, where
pytest-mpi then says that flag is missing): tests/e2e/test_mpi_suite.py runs it with mpirun at
several sizes, so the plain single-process run leaves it out.
"""

from __future__ import annotations

import functools
import os
import pathlib

import numpy
import pytest
from run_outcomes import write_skip_reasons

import disttrain
from disttrain import env

MPI_TESTS = pathlib.Path(__file__).parent / "mpi"


def pytest_ignore_collect(collection_path, config):
    """Leaves tests/mpi out of runs that are neither `--with-mpi`/`--only-mpi` nor launched by
    MPI (each of its ~150 tests would only skip)."""
    if collection_path != MPI_TESTS:
        return None
    wants_mpi = config.getoption("--with-mpi", False) or config.getoption("--only-mpi", False)
    return None if wants_mpi or env.under_mpi_launcher() else True


def pytest_addoption(parser):
    """tests/e2e/test_chaos.py: how many fault rounds, from which seed, and where to write the
    tally (the 100-round figure in docs/PERFORMANCE.md comes from such a report)."""
    group = parser.getgroup("chaos", "fault-injection rounds of tests/e2e/test_chaos.py")
    group.addoption("--chaos-rounds", type=int, default=6,
                    help="rounds of tests/e2e/test_chaos.py (default 6: each fault kind once)")
    group.addoption("--chaos-seed", type=int, default=None,
                    help="seed of the first round (round i uses seed+i; default: random)")
    group.addoption("--chaos-report", default=None, metavar="PATH",
                    help="write the chaos tally (rounds, faults, outcomes, wall time) as JSON")


def pytest_terminal_summary(terminalreporter):
    """Ends the run with one line per skip reason and its count."""
    write_skip_reasons(terminalreporter)


@functools.cache
def _cupy_skip_reason() -> str | None:
    """None when cupy can run here, else why not (shown in the skip message)."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a CUDA driver error raised at import
        return f"cupy is not importable: {type(e).__name__}: {e}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        return f"cupy imported but CUDA is unusable: {type(e).__name__}: {e}"
    return None if count > 0 else "cupy imported but no GPU is present"


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from `disttrain.manual_seed(0)`, so default-generator draws repeat."""
    disttrain.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_group_left_behind():
    """A single-process test that starts the world group (an example's main() under test calls
    dist.init() for its CheckpointManager) leaves none behind: the group is destroyed after it
    and torchrun's variables that init() exported are restored, so later tests (and the jobs
    they start) see a process with no group. Under mpirun (tests/mpi) the group stays."""
    if env.under_mpi_launcher():
        yield
        return
    saved = {name: os.environ.get(name) for name in env.TORCHRUN_RANK_VARS}
    yield
    if env.process_group() is not None:
        import disttrain.distributed as dist

        dist.destroy_process_group()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(params=["numpy", "cupy"])
def xp(request):
    """The array module under test: numpy always, cupy when usable (skipped with the reason)."""
    if request.param == "numpy":
        return numpy
    reason = _cupy_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    import cupy

    return cupy


@pytest.fixture
def device(xp) -> str:
    """The disttrain device string matching `xp`: "cpu" for numpy, "cuda" for cupy."""
    return "cpu" if xp is numpy else "cuda"
