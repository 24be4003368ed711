"""The built-in comm hooks and GradBucket, without MPI: a fake communicator plays the other
ranks, whose buffers are given."""

from __future__ import annotations

import numpy
import pytest

from disttrain.distributed.comm_hooks import GradBucket, allreduce_hook, fp16_compress_hook
from disttrain.distributed.reducer import has_spare_core


class FakeComm:
    """Rank 0 of `len(grads)` ranks; the other ranks' buffers are theirs / size, as
    DataParallel stages them."""

    def __init__(self, grads: list):
        self.rank, self.size, self.grads = 0, len(grads), grads

    def _others(self, dtype) -> list:
        scale = self.grads[0].dtype.type(1.0 / self.size)
        return [(g * scale * (self.size if dtype == numpy.float16 else 1)).astype(dtype)
                for g in self.grads[1:]]

    def allreduce_(self, array):
        for other in self._others(array.dtype):
            array += other
        return array

    def allgather(self, array):
        return numpy.stack([array, *self._others(array.dtype)])


def bucket_of(grads: list) -> GradBucket:
    comm = FakeComm(grads)
    bucket = GradBucket(0, ["p"], ["p"], comm, is_last=True)
    bucket._buffer = grads[0] * grads[0].dtype.type(1.0 / comm.size)
    return bucket


def rank_grads(size: int, scale: float, seed: int = 0) -> list:
    rng = numpy.random.default_rng(seed)
    return [(rng.standard_normal(1000) * scale).astype(numpy.float32) for _ in range(size)]


@pytest.mark.parametrize("size", [2, 3])
def test_allreduce_hook_leaves_the_mean(size):
    grads = rank_grads(size, 1.0)
    bucket = bucket_of(grads)
    assert allreduce_hook(None, bucket) is None
    numpy.testing.assert_allclose(bucket.buffer(), numpy.mean(grads, axis=0), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("scale", [1.0, 1e-6])
@pytest.mark.parametrize("size", [2, 3])
def test_fp16_compress_hook_sums_float16_gradients_in_float32(size, scale):
    """The result is the float32 sum of each rank's float16 gradient, divided after: at 1e-6
    (float16 subnormals) casting the pre-divided gradient instead would lose bits."""
    grads = rank_grads(size, scale)
    bucket = bucket_of(grads)
    buffer = bucket.buffer()
    fp16_compress_hook(None, bucket)
    halves = [g.astype(numpy.float16).astype(numpy.float32) for g in grads]
    expected = numpy.sum(halves, axis=0) * numpy.float32(1.0 / size)

    assert bucket.buffer() is buffer and buffer.dtype == numpy.float32
    numpy.testing.assert_allclose(buffer, expected, rtol=1e-6, atol=0)
    rel_error = numpy.abs(buffer - numpy.mean(grads, axis=0)).max() / numpy.abs(grads).max()
    assert rel_error < (1e-3 if scale == 1.0 else 2e-2)


def test_grad_bucket_accessors():
    params = [numpy.zeros(2), numpy.zeros(3)]
    bucket = GradBucket(2, params, ["a", "b"], comm="comm", is_last=False)
    assert (bucket.index(), bucket.is_last(), bucket.names, bucket.comm) == (2, False,
                                                                              ["a", "b"], "comm")
    assert bucket.parameters() == params and bucket.parameters() is not bucket.params
    assert bucket.buffer() is None  # DataParallel fills it before calling the hook


@pytest.mark.parametrize("local_size, cores, spare", [(1, 2, True), (2, 2, False),
                                                      (2, 4, True), (3, 5, False)])
def test_has_spare_core(local_size, cores, spare):
    assert has_spare_core(local_size, cores) is spare
