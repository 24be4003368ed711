"""backend._erf_numpy (vectorised fdlibm erf) against math.erf."""

import math

import numpy
import pytest

from disttrain.backend import _erf_numpy, erf

EDGES = [
    0.0, 5e-324, 1e-310, 2.848094538889218e-306, 2.0**-28, 1e-8, 0.25, 0.84375, 1.0, 1.25,
    1 / 0.35, 5.9, 6.0, 27.9, 28.0, 1e10, 1e308,
]  # fmt: skip


def _with_neighbours(values):
    values = numpy.array(values, dtype=numpy.float64)
    points = numpy.concatenate(
        [values, numpy.nextafter(values, numpy.inf), numpy.nextafter(values, 0.0)]
    )
    return numpy.concatenate([points, -points])


def test_erf_matches_math_erf_on_dense_grid_and_edges():
    x = numpy.concatenate([numpy.linspace(-10.0, 10.0, 200_001), _with_neighbours(EDGES)])
    expected = numpy.array([math.erf(v) for v in x])
    got = _erf_numpy(x)
    assert got.dtype == numpy.float64 and got.shape == x.shape
    nonzero = expected != 0
    relative = numpy.abs(got[nonzero] - expected[nonzero]) / numpy.abs(expected[nonzero])
    assert relative.max() < 1e-14
    numpy.testing.assert_array_equal(got[~nonzero], expected[~nonzero])


def test_erf_special_values():
    x = numpy.array([numpy.inf, -numpy.inf, numpy.nan, 0.0, -0.0, 1e308, -1e308])
    got = _erf_numpy(x)
    numpy.testing.assert_array_equal(got, [1.0, -1.0, numpy.nan, 0.0, -0.0, 1.0, -1.0])
    assert not numpy.signbit(got[3]) and numpy.signbit(got[4])


def test_erf_is_odd():
    x = numpy.random.default_rng(0).uniform(0, 8, 10_000)
    numpy.testing.assert_array_equal(_erf_numpy(-x), -_erf_numpy(x))


@pytest.mark.parametrize("dtype", [numpy.float16, numpy.float32])
def test_erf_low_precision_keeps_dtype(dtype):
    x = numpy.linspace(-5, 5, 1001).astype(dtype)
    got = _erf_numpy(x)
    assert got.dtype == dtype
    expected = numpy.array([math.erf(v) for v in x.astype(numpy.float64)]).astype(dtype)
    numpy.testing.assert_array_equal(got, expected)  # computed in float64, rounded once


def test_erf_zero_dim_integer_and_public_entry_point():
    assert _erf_numpy(numpy.array(0.5)).shape == ()
    assert float(_erf_numpy(numpy.array(0.5))) == pytest.approx(math.erf(0.5), rel=1e-15)
    got = _erf_numpy(numpy.array([0, 1, -2]))
    assert got.dtype == numpy.float64
    numpy.testing.assert_allclose(got, [math.erf(v) for v in (0, 1, -2)], rtol=1e-15)
    x = numpy.array([[0.1, -2.0], [3.0, 7.0]], dtype=numpy.float32)
    numpy.testing.assert_array_equal(erf(x), _erf_numpy(x))
