"""BatchAugment under MPI: each rank augments its DistributedSampler shard with
rank=comm.rank; the augmentation differs between ranks, and a rank's batches equal what one
process computes for that rank (so a rerun on any number of processes gives the same)."""

from __future__ import annotations

import numpy as np
import pytest

import disttrain.distributed as dist
from disttrain.data import DataLoader, TensorDataset
from disttrain.data import transforms as T

IMAGES = np.random.default_rng(1).random((24, 1, 8, 8)).astype(np.float32)


def _augmented(rank: int, size: int, epoch: int) -> np.ndarray:
    dataset = TensorDataset(np.repeat(IMAGES[:1], 24, axis=0), np.arange(24))
    sampler = dist.DistributedSampler(dataset, num_replicas=size, rank=rank, seed=3)
    sampler.set_epoch(epoch)
    aug = T.Compose([T.RandomCrop(8, padding=1), T.RandomRotation(15), T.GaussianNoise()])
    train = T.BatchAugment(DataLoader(dataset, batch_size=4, sampler=sampler), aug, seed=5,
                           rank=rank)
    train.set_epoch(epoch)
    return np.concatenate([x.numpy() for x, _ in train])


@pytest.mark.mpi(min_size=2)
def test_ranks_augment_differently_and_reproducibly(comm):
    mine = _augmented(comm.rank, comm.size, epoch=1)
    gathered = comm.allgather_obj(mine.tobytes())
    again = _augmented(comm.rank, comm.size, epoch=1)
    other_epoch = _augmented(comm.rank, comm.size, epoch=2)
    np.testing.assert_array_equal(mine, again)
    arrays = [np.frombuffer(b, np.float32).reshape(mine.shape) for b in gathered]
    for rank, theirs in enumerate(arrays):
        np.testing.assert_array_equal(theirs, _augmented(rank, comm.size, epoch=1))
        if rank != comm.rank:  # NOTE: every sample is the same image: only augmentation differs
            assert not np.allclose(theirs, mine)
    assert not np.allclose(mine, other_epoch)
