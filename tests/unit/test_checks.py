"""disttrain.checks.check_int: the one integer validator, and its messages (where, name,
expected range, actual value and type)."""

from __future__ import annotations

import numpy
import pytest

from disttrain.checks import check_int
from disttrain.data import DataLoader, DistributedSampler
from disttrain.distributed.grid import grid_coords
from disttrain.distributed.pipeline.schedule import gpipe


@pytest.mark.parametrize("value, minimum, maximum", [
    (0, 0, None), (5, 1, None), (3, None, 3), (-7, None, None), (2, 2, 2),
])  # fmt: skip
def test_accepts_integers_in_range(value, minimum, maximum):
    assert check_int("f", "n", value, minimum, maximum) == value


def test_numpy_integers_become_python_ints():
    out = check_int("f", "n", numpy.int64(4), minimum=1)
    assert out == 4 and type(out) is int


@pytest.mark.parametrize("value, minimum, maximum, error, message", [
    (True, 0, None, TypeError, "f: n must be an int, got bool True"),
    (1.0, 0, None, TypeError, "f: n must be an int, got float 1.0"),
    ("2", 0, None, TypeError, "f: n must be an int, got str '2'"),
    (None, 0, None, TypeError, "f: n must be an int, got NoneType None"),
    (0, 1, None, ValueError, "f: n must be >= 1, got 0"),
    (9, None, 8, ValueError, "f: n must be <= 8, got 9"),
    (-1, 0, 3, ValueError, "f: n must be in [0, 3], got -1"),
    (4, 0, 3, ValueError, "f: n must be in [0, 3], got 4"),
])  # fmt: skip
def test_messages(value, minimum, maximum, error, message):
    with pytest.raises(error) as info:
        check_int("f", "n", value, minimum, maximum)
    assert str(info.value) == message


@pytest.mark.parametrize("call, error, message", [
    (lambda: grid_coords(0, 2, False), TypeError, "grid_coords: pp must be an int, got bool False"),
    (lambda: gpipe(2, 0), ValueError, "gpipe: n_microbatches must be >= 1, got 0"),
    (lambda: DistributedSampler(range(4), 2, 0, seed=-1), ValueError,
     "DistributedSampler: seed must be >= 0, got -1"),
    (lambda: DataLoader(range(4), seed=1.5), TypeError,
     "DataLoader: seed must be an int, got float 1.5"),
])  # fmt: skip
def test_callers_share_the_messages(call, error, message):
    """The grid, the schedules and the data pipeline all validate through check_int."""
    with pytest.raises(error) as info:
        call()
    assert str(info.value) == message
