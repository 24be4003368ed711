"""Shared fixtures: a seeded default generator for every test, and `xp`, the array module
(numpy, plus cupy where it imports and a GPU is present).

tests/mpi runs only under an MPI launcher (tests/e2e/test_mpi_suite.py starts it with mpirun at
several sizes); the plain single-process run does not collect it.
"""

from __future__ import annotations

import functools
import os

import numpy
import pytest

import disttrain

# NOTE: set by Open MPI (OMPI_*), MPICH/Hydra and Slurm (PMI_*), and by our own runner
MPI_LAUNCH_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "DISTTRAIN_MPI_TESTS")
collect_ignore = [] if any(v in os.environ for v in MPI_LAUNCH_VARS) else ["mpi"]


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
