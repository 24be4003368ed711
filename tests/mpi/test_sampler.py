"""DistributedSampler with num_replicas=size, rank=rank: the ranks' shares, gathered, cover
the dataset exactly once per epoch (torch's padding and drop_last rules otherwise)."""

from __future__ import annotations

import collections

import pytest

import disttrain.distributed as dist


def gathered(comm, n: int, epoch: int = 0, **kwargs) -> list[list[int]]:
    sampler = dist.DistributedSampler(range(n), num_replicas=comm.size, rank=comm.rank, **kwargs)
    sampler.set_epoch(epoch)
    shares = comm.allgather_obj(list(sampler))
    assert len(shares[comm.rank]) == len(sampler)
    return shares


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("drop_last", [True, False])
def test_divisible_dataset_covered_exactly_once(comm, shuffle, drop_last):
    n = 12 * comm.size
    shares = gathered(comm, n, shuffle=shuffle, drop_last=drop_last)
    assert [len(s) for s in shares] == [12] * comm.size
    assert sorted(i for s in shares for i in s) == list(range(n))


@pytest.mark.parametrize("shuffle", [True, False])
def test_drop_last_covers_each_index_at_most_once(comm, shuffle):
    n = 12 * comm.size + comm.size - 1  # a tail of size - 1 that drop_last removes
    shares = gathered(comm, n, shuffle=shuffle, drop_last=True)
    union = [i for s in shares for i in s]
    assert [len(s) for s in shares] == [12] * comm.size
    assert len(set(union)) == len(union) == 12 * comm.size
    assert set(union) <= set(range(n))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("shuffle", [True, False])
def test_padding_repeats_from_the_start(comm, shuffle):
    """Without drop_last, the tail is padded with the first indices of the epoch's order."""
    n = 12 * comm.size + 1
    shares = gathered(comm, n, shuffle=shuffle, seed=5)
    per_rank = 13
    assert [len(s) for s in shares] == [per_rank] * comm.size
    # rank r holds positions r, r + size, ... of the padded order
    order = [shares[p % comm.size][p // comm.size] for p in range(per_rank * comm.size)]
    assert sorted(order[:n]) == list(range(n))
    assert order[n:] == order[:per_rank * comm.size - n]
    counts = collections.Counter(order)
    assert sum(c - 1 for c in counts.values()) == per_rank * comm.size - n


def test_set_epoch_changes_the_order_not_the_coverage(comm):
    n = 8 * comm.size
    epoch0, again, epoch1 = (gathered(comm, n, epoch=e, seed=3) for e in (0, 0, 1))
    assert epoch0 == again
    assert epoch0 != epoch1
    for shares in (epoch0, epoch1):
        assert sorted(i for s in shares for i in s) == list(range(n))

