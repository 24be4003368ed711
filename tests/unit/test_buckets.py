"""assign_buckets: exact index lists (as torch DDP's `_compute_bucket_assignment_by_size`
tests), and the invariants DataParallel relies on."""

from __future__ import annotations

import numpy
import pytest

from disttrain.distributed.buckets import assign_buckets

F4, F8, F2 = "float32", "float64", "float16"


@pytest.mark.parametrize("sizes, cap, expected", [
    ([4, 4, 4, 4], 8, [[0, 1], [2, 3]]),  # the docstring's example
    ([4, 4], 8, [[0, 1]]),  # exactly at the cap: stays open
    ([4, 5], 8, [[0], [1]]),  # one byte over: closes before the second
    ([3, 3, 3, 3, 3], 9, [[0, 1, 2], [3, 4]]),
    ([1, 1, 1], 100, [[0, 1, 2]]),  # everything fits one bucket
    ([8, 8, 8], 8, [[0], [1], [2]]),  # every tensor fills its own
], ids=["docstring", "at-cap", "over-cap", "threes", "one-bucket", "each-full"])
def test_single_dtype(sizes, cap, expected):
    assert assign_buckets(sizes, [F4] * len(sizes), cap_bytes=cap) == expected


@pytest.mark.parametrize("sizes, expected", [
    ([100], [[0]]),
    ([4, 100, 4], [[1], [0, 2]]),  # gets its own and leaves the open bucket open
    ([100, 100], [[0], [1]]),
    ([100, 4, 4], [[0], [1, 2]]),  # a new bucket after the big one
], ids=["alone", "between", "two-big", "big-first"])
def test_tensor_bigger_than_cap_gets_its_own_bucket(sizes, expected):
    assert assign_buckets(sizes, [F4] * len(sizes), cap_bytes=8) == expected


def test_mixed_dtypes_go_to_separate_buckets():
    # float32 tensors 0, 2, 4 and float64 tensors 1, 3, each 4 bytes, cap 8
    assert assign_buckets([4] * 5, [F4, F8, F4, F8, F4], cap_bytes=8) == [[0, 2], [1, 3], [4]]
    # one open bucket per dtype: a float16 tensor does not close the float32 bucket
    assert assign_buckets([4, 2, 4], [F4, F2, F4], cap_bytes=8) == [[1], [0, 2]]


def test_buckets_ordered_by_last_index():
    """A bucket started early but completed late comes after those completed before it: the
    launch order every rank uses."""
    buckets = assign_buckets([2, 6, 6, 6], [F8, F4, F4, F8], cap_bytes=8)
    assert buckets == [[1], [2], [0, 3]]


def test_small_tensors_between_big_ones_share_a_bucket():
    """The deep MLP in ready order: bias, 16 MB weight, bias, 16 MB weight, bias, 6 MB
    weight; the three biases share one bucket, completed with the last bias."""
    mb = 2**20
    sizes = [40, 16 * mb, 8192, 16 * mb, 8192, 6 * mb + 1 * mb // 8]
    assert assign_buckets(sizes, [F4] * 6, cap_bytes=4 * mb) == [[1], [3], [0, 2, 4], [5]]


def test_numpy_dtype_objects_group_like_their_names():
    dtypes = [numpy.dtype(F4), numpy.dtype(F8), numpy.dtype(F4)]
    assert assign_buckets([4, 4, 4], dtypes, cap_bytes=8) == [[1], [0, 2]]


@pytest.mark.parametrize("first, expected", [
    (4, [[0], [1, 2, 3], [4, 5]]),
    (8, [[0, 1], [2, 3, 4], [5]]),
    (1, [[0], [1, 2, 3], [4, 5]]),  # smaller than any tensor: the first holds one
    (None, [[0, 1, 2], [3, 4, 5]]),  # default: cap_bytes
    (100, [[0, 1, 2, 3, 4, 5]]),  # larger first cap is honoured too
])
def test_first_bucket_cap(first, expected):
    assert assign_buckets([4] * 6, [F4] * 6, cap_bytes=12, first_cap_bytes=first) == expected


def test_first_cap_applies_to_the_first_bucket_of_each_dtype():
    assert assign_buckets([4, 4, 4, 4, 4, 4], [F4, F8] * 3, cap_bytes=8,
                          first_cap_bytes=4) == [[0], [1], [2, 4], [3, 5]]


def test_ddp_style_model_in_reverse_registration_order():
    """An MLP 784-500-10's gradients in ready order (fc2.bias, fc2.weight, fc1.bias,
    fc1.weight), float32, 1 MB first bucket and 4 MB cap (DataParallel's defaults)."""
    sizes = [10 * 4, 500 * 10 * 4, 500 * 4, 784 * 500 * 4]
    assert assign_buckets(sizes, [F4] * 4, cap_bytes=4 * 2**20,
                          first_cap_bytes=2**20) == [[0, 1, 2], [3]]


def test_empty_input():
    assert assign_buckets([], [], cap_bytes=8) == []
    assert assign_buckets([], [], cap_bytes=8, first_cap_bytes=1) == []


@pytest.mark.parametrize("seed", range(5))
def test_invariants_on_random_inputs(seed):
    rng = numpy.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    sizes = rng.integers(1, 50, n).tolist()
    dtypes = rng.choice([F4, F8, F2], n).tolist()
    cap, first = int(rng.integers(1, 120)), int(rng.integers(1, 120))
    buckets = assign_buckets(sizes, dtypes, cap_bytes=cap, first_cap_bytes=first)
    assert sorted(i for b in buckets for i in b) == list(range(n))  # each tensor exactly once
    assert [b[-1] for b in buckets] == sorted(b[-1] for b in buckets)  # launch order
    for b in buckets:
        assert b == sorted(b)
        assert len({dtypes[i] for i in b}) == 1
        assert len(b) == 1 or sum(sizes[i] for i in b) <= max(cap, first)
    assert assign_buckets(sizes, dtypes, cap_bytes=cap, first_cap_bytes=first) == buckets


def test_errors():
    with pytest.raises(ValueError, match=r"assign_buckets: 2 sizes but 1 dtypes"):
        assign_buckets([4, 4], [F4], cap_bytes=8)
    with pytest.raises(ValueError, match=r"assign_buckets: cap_bytes must be positive, got 0"):
        assign_buckets([4], [F4], cap_bytes=0)
    with pytest.raises(ValueError, match=r"assign_buckets: cap_bytes must be positive, got -1"):
        assign_buckets([4], [F4], cap_bytes=-1)


def test_tensors_of_direct_bytes_or_more_get_a_bucket_of_their_own():
    mb = 2**20
    sizes = [4, mb, 8, 2 * mb, mb - 1, 4]
    assert assign_buckets(sizes, [F4] * 6, cap_bytes=8 * mb, direct_bytes=mb) == [
        [1], [3], [0, 2, 4, 5]]
    assert assign_buckets(sizes, [F4] * 6, cap_bytes=8 * mb) == [[0, 1, 2, 3, 4, 5]]
