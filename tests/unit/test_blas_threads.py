"""BLAS threads per rank: the one threads-per-rank rule (disttrain.env, shared by the
launcher and dist.init()), a pure function of cores, ranks on the node and the environment,
and how dist.init() applies it (no MPI needed)."""

from __future__ import annotations

import os
import types

import pytest

from disttrain.distributed import comm as comm_module
from disttrain.env import BLAS_THREAD_VARS as BLAS_VARS
from disttrain.env import blas_threads_per_rank, threads_per_rank


@pytest.mark.parametrize("cores, local_size, expected", [
    (2, 1, 2),
    (2, 2, 1),
    (2, 3, 1),  # oversubscribed: never 0
    (16, 4, 4),
    (16, 3, 5),  # rounds down
    (16, 16, 1),
    (1, 1, 1),
    (8, 0, 8),  # a nonsense local size counts as one rank
])
def test_cores_divided_by_ranks_on_the_node(cores, local_size, expected):
    assert blas_threads_per_rank(cores, local_size, {}) == expected
    assert threads_per_rank(cores, local_size) == expected


@pytest.mark.parametrize("var", BLAS_VARS)
@pytest.mark.parametrize("value", ["1", "4"])
def test_user_setting_wins(var, value):
    assert blas_threads_per_rank(16, 2, {var: value}) is None


def test_unrelated_variables_ignored():
    environ = {"OMP_PROC_BIND": "true", "OMPI_COMM_WORLD_SIZE": "2", "GOTO_NUM_THREADS": "3"}
    assert blas_threads_per_rank(8, 2, environ) == 4


@pytest.fixture
def no_blas_env(monkeypatch):
    """No BLAS variables set; the ones dist.init() sets are removed again after the test."""
    for var in BLAS_VARS:
        monkeypatch.delenv(var, raising=False)
    limits = []
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", limits.append)
    return limits


def test_set_blas_threads_uses_the_node_cores_not_the_binding(monkeypatch, no_blas_env):
    """mpirun may bind a rank to one core; the node's cores are what the ranks share."""
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    comm_module._set_blas_threads(types.SimpleNamespace(local_size=2))
    assert [os.environ[v] for v in BLAS_VARS] == ["4"] * 3
    assert no_blas_env == [4]


def test_set_blas_threads_leaves_user_choice(monkeypatch, no_blas_env):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    comm_module._set_blas_threads(types.SimpleNamespace(local_size=2))
    assert "OMP_NUM_THREADS" not in os.environ and "MKL_NUM_THREADS" not in os.environ
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3"
    assert no_blas_env == []
