"""Every primitive (and composite) of the gradient suite keeps what its backward needs in the
saved-tensor mechanism: backward twice with retain_graph=True gives twice the gradient, and a
second backward without it raises the clear error instead of a TypeError or a wrong gradient.
"""

from __future__ import annotations

import numpy
import pytest
from gradcheck import make_inputs
from test_grad_ops import COMPOSITES, PRIMITIVES

import disttrain as dt


def _graph(fn, shapes, domain):
    tensors = [dt.Tensor(a, requires_grad=True) for a in make_inputs(shapes, domain, numpy)]
    out = fn(*tensors)
    gy = dt.Tensor(numpy.random.default_rng(7).standard_normal(out.shape))
    return tensors, out, gy


def _grads(tensors) -> list:
    return [None if t.grad is None else t.grad.numpy().copy() for t in tensors]


@pytest.mark.parametrize("fn, shapes, domain", PRIMITIVES + COMPOSITES)
def test_backward_twice_with_retain_graph_doubles_the_gradient(fn, shapes, domain):
    tensors, out, gy = _graph(fn, shapes, domain)
    out.backward(gy, retain_graph=True)
    first = _grads(tensors)
    assert any(g is not None for g in first)
    out.backward(gy, retain_graph=True)
    for i, (t, g) in enumerate(zip(tensors, first, strict=True)):
        if g is None:
            assert t.grad is None, f"input {i}"
            continue
        numpy.testing.assert_allclose(t.grad.numpy(), 2 * g, rtol=1e-12, atol=1e-12,
                                      err_msg=f"input {i}")


@pytest.mark.parametrize("fn, shapes, domain", PRIMITIVES + COMPOSITES)
def test_second_backward_without_retain_graph_raises(fn, shapes, domain):
    tensors, out, gy = _graph(fn, shapes, domain)
    out.backward(gy)
    first = _grads(tensors)
    with pytest.raises(RuntimeError, match=r"second time.*retain_graph=True"):
        out.backward(gy)
    for i, (t, g) in enumerate(zip(tensors, first, strict=True)):  # nothing half-accumulated
        if g is not None:
            numpy.testing.assert_array_equal(t.grad.numpy(), g, err_msg=f"input {i}")
