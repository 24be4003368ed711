"""Hierarchical all-reduce gives what the flat comm.allreduce_ gives, with ranks grouped into
faked 'nodes' (ranks_per_node) so the inter-node path runs on one machine: 1 rank per node (all
inter-node), 2 per node (sharded: every node the same size; leader fallback when the last node
is smaller, e.g. 3 ranks), and all ranks on one node."""

from __future__ import annotations

import numpy
import pytest

import disttrain as dt
from disttrain.distributed.hierarchical import (
    RANKS_PER_NODE_ENV,
    HierarchicalAllreduce,
    hierarchical_allreduce_,
)

PER_NODE = [1, 2, None]  # NOTE: None: by host, i.e. one node here


@pytest.mark.parametrize("per_node", PER_NODE)
@pytest.mark.parametrize("n", [1, 5, 1000, 4099, 40001])  # NOTE: 40001: the ring
def test_sum_equals_flat_allreduce(comm, per_node, n):
    rng = numpy.random.default_rng(comm.rank)
    x = rng.integers(-50, 50, n).astype(numpy.float64)  # NOTE: integers: any order is exact
    flat = comm.allreduce_(x.copy())
    hier = HierarchicalAllreduce(comm, ranks_per_node=per_node)
    out = hier.allreduce_(x)
    hier.free()
    assert out is x
    numpy.testing.assert_array_equal(x, flat)


@pytest.mark.parametrize("per_node", PER_NODE)
def test_float32_tensor_and_fortran_order(comm, per_node):
    rng = numpy.random.default_rng(10 + comm.rank)
    w = numpy.asfortranarray(rng.standard_normal((7, 3)).astype(numpy.float32))
    flat = comm.allreduce_(w.copy(order="F"))
    t = dt.tensor(w)
    t.array = w  # NOTE: keep the Fortran layout (as nn.Linear weights)
    hier = HierarchicalAllreduce(comm, ranks_per_node=per_node)
    out = hier.allreduce_(t)
    hier.free()
    assert out is t and t.array.flags.f_contiguous
    numpy.testing.assert_allclose(t.array, flat, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["max", "min", "prod"])
def test_other_ops_through_the_leaders(comm, op):
    x = numpy.full(4, comm.rank + 1, numpy.int64)
    flat = comm.allreduce_(x.copy(), op=op)
    hierarchical_allreduce_(comm, x, op=op, ranks_per_node=2)
    numpy.testing.assert_array_equal(x, flat)


def test_layout(comm):
    hier = HierarchicalAllreduce(comm, ranks_per_node=2)
    nodes, sharded = hier.nodes, hier.sharded
    local, node = hier.intra.size, hier.node_index
    hier.free()
    assert nodes == (comm.size + 1) // 2 and node == comm.rank // 2
    assert local == min(2, comm.size - 2 * node)
    assert sharded == (comm.size % 2 == 0 or comm.size == 1)
    assert f"nodes={nodes}" in repr(hier)


def test_env_sets_ranks_per_node(comm, monkeypatch):
    monkeypatch.setenv(RANKS_PER_NODE_ENV, "1")
    hier = HierarchicalAllreduce(comm)
    nodes = hier.nodes
    hier.free()
    assert nodes == comm.size


def test_bad_env_names_variable_and_rank(comm, monkeypatch):
    monkeypatch.setenv(RANKS_PER_NODE_ENV, "two")
    with pytest.raises(ValueError, match=rf"rank {comm.rank}\): {RANKS_PER_NODE_ENV} must be "
                                         r"a positive integer, got 'two'"):
        HierarchicalAllreduce(comm)
