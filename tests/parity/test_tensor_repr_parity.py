"""Tensors print as PyTorch's do (disttrain/tensor_str.py): the same text for the same values,
one case per formatting rule (4 decimals, integer-valued floats, scientific notation, non-finite
values, alignment, line wrapping at 80 columns, the summary of more than 1,000 elements)."""

from __future__ import annotations

import numpy
import pytest

torch = pytest.importorskip("torch")

import disttrain as dt  # noqa: E402

RNG = numpy.random.default_rng(0)
F32 = numpy.float32
CASES = {
    "decimals": numpy.array([1.0, 2.5, 3.0], F32),
    "integer_valued": numpy.full((2, 3), 2.0, F32),
    "int64": numpy.array([[1, 2], [3, 4]]),
    "negative_ints": numpy.array([-5, 10, 300]),
    "int32": numpy.array([1, 2], numpy.int32),
    "uint8": numpy.array([[0, 255]], numpy.uint8),
    "bool": numpy.array([True, False]),
    "scalar": numpy.array(3.14159, F32),
    "scalar_nan": numpy.array(numpy.nan, F32),
    "randn_2d": RNG.standard_normal((3, 4)).astype(F32),
    "sci_small": numpy.array([1e-5, 1.0, 3.0], F32),
    "sci_integer_valued": numpy.array([1.0, 1e6], F32),
    "sci_huge": numpy.array([1e9, 2.0], F32),
    "sci_negative": numpy.array([-1e-7, 5.0], F32),
    "non_finite": numpy.array([numpy.nan, 1.0, numpy.inf, -numpy.inf], F32),
    "zeros": numpy.zeros(2, F32),
    "negative_zero": numpy.array([-0.0, 1.0], F32),
    "mixed_widths": numpy.array([-1.5, 2.25, -300.125], F32),
    "wrapped_rows": RNG.standard_normal((5, 30)).astype(F32),
    "wrapped_vector": RNG.standard_normal(100).astype(F32),
    "wide_values": (RNG.standard_normal((8, 8)) * 1000).astype(F32),
    "three_d": RNG.standard_normal((2, 3, 4)).astype(F32),
    "summarized_2d": RNG.standard_normal((40, 50)).astype(F32),
    "summarized_3d": RNG.standard_normal((4, 30, 30)).astype(F32),
    "summarized_ints": numpy.arange(2000),
    "float64": numpy.array([1.5, 2.0]),
    "float16": numpy.array([1.5, 2.0, 3.25], numpy.float16),
    "empty": numpy.zeros(0, F32),
    "empty_2d": numpy.zeros((0, 3), F32),
}


@pytest.mark.parametrize("name", list(CASES))
def test_repr_matches_torch(name):
    array = CASES[name]
    theirs = repr(torch.from_numpy(array.copy())).replace("dtype=torch.", "dtype=")
    assert repr(dt.tensor(array)) == theirs


def test_requires_grad_suffix_matches_torch():
    ours = dt.tensor(numpy.array([1.0, 2.0], F32), requires_grad=True)
    theirs = torch.tensor([1.0, 2.0], requires_grad=True)
    assert repr(ours) == repr(theirs) and str(ours) == str(theirs)
