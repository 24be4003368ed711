"""float64 central-difference gradient checks, in the spirit of chainer.gradient_check.

`check_backward` compares every element of the analytic input gradients with a central
difference; `check_directional` compares <grad, v> for one random direction v with the
directional difference (f(x + eps v) - f(x - eps v)) / 2 eps, as Chainer's check_backward does.
Both contract the output with a fixed random upstream gradient `gy`, so backward is exercised
with a non-trivial incoming gradient, not just ones.
"""

from __future__ import annotations

import numpy

import disttrain as dt
from disttrain import backend

ATOL, RTOL, EPS = 1e-6, 1e-5, 1e-6


def make_inputs(shapes, domain: str, xp, seed: int = 0) -> list:
    """float64 arrays on `xp` for each shape, drawn from `domain`:
    "normal": N(0, 1); "positive": U(0.5, 2); "distinct": a shuffled grid 0.1 apart, offset by
    0.03, so no two values tie (max, pooling) and none sits at 0 or at a multiple of 0.05 (the
    kinks of relu, abs and the clamp bounds used here)."""
    rng = numpy.random.default_rng(seed)
    arrays = []
    for shape in shapes:
        n = int(numpy.prod(shape))
        if domain == "normal":
            a = rng.standard_normal(shape)
        elif domain == "positive":
            a = rng.uniform(0.5, 2.0, shape)
        elif domain == "distinct":
            a = (rng.permutation(n) - n // 2) * 0.1 + 0.03
        else:
            raise ValueError(f"make_inputs: unknown domain {domain!r}")
        arrays.append(xp.asarray(numpy.asarray(a, numpy.float64).reshape(shape)))
    return arrays


def _upstream(out: dt.Tensor, seed: int):
    """A fixed random upstream gradient shaped like `out`, on its device."""
    xp = backend.get_array_module(out.array)
    gy = numpy.random.default_rng(seed + 1).standard_normal(out.shape)
    return xp.asarray(gy)


def _objective(fn, gy):
    """x arrays -> sum(fn(x) * gy) as a Python float, without recording a graph."""
    def value(*arrays) -> float:
        with dt.no_grad():
            out = fn(*[dt.Tensor(a) for a in arrays])
        return float((out.array * gy).sum())
    return value


def analytic_grads(fn, inputs, seed: int = 0):
    """(output, [d sum(fn * gy) / d input]) through disttrain's backward; None grads -> 0."""
    tensors = [dt.Tensor(a.copy(), requires_grad=True) for a in inputs]
    out = fn(*tensors)
    assert out.dtype == numpy.float64, f"output dtype {out.dtype}, expected float64"
    gy = _upstream(out, seed)
    out.backward(dt.Tensor(gy))
    grads = []
    for t, a in zip(tensors, inputs, strict=True):
        g = t.grad.array if t.grad is not None else backend.get_array_module(a).zeros_like(a)
        assert g.shape == a.shape, f"grad shape {g.shape} != input shape {a.shape}"
        assert g.dtype == numpy.float64, f"grad dtype {g.dtype}, expected float64"
        grads.append(g)
    return out, gy, grads


def numerical_grads(fn, inputs, gy, eps: float = EPS) -> list:
    """Element-wise central differences of sum(fn(x) * gy) with respect to every input."""
    value = _objective(fn, gy)
    arrays = [a.copy() for a in inputs]
    grads = []
    for a in arrays:
        g = numpy.zeros(a.shape)
        flat, gflat = a.reshape(-1), g.reshape(-1)  # views: writing flat perturbs `a`
        for j in range(flat.size):
            original = float(flat[j])
            flat[j] = original + eps
            plus = value(*arrays)
            flat[j] = original - eps
            minus = value(*arrays)
            flat[j] = original
            gflat[j] = (plus - minus) / (2 * eps)
        grads.append(g)
    return grads


def check_backward(fn, inputs, atol: float = ATOL, rtol: float = RTOL, eps: float = EPS,
                   seed: int = 0) -> None:
    """Asserts every element of each analytic input gradient matches its central difference."""
    _, gy, analytic = analytic_grads(fn, inputs, seed)
    numeric = numerical_grads(fn, inputs, gy, eps)
    for i, (a, n) in enumerate(zip(analytic, numeric, strict=True)):
        numpy.testing.assert_allclose(backend.asnumpy(a), n, atol=atol, rtol=rtol,
                                      err_msg=f"gradient of input {i}")


def check_directional(fn, inputs, atol: float = ATOL, rtol: float = RTOL, eps: float = EPS,
                      seed: int = 0) -> None:
    """Asserts sum_i <grad_i, v_i> equals the directional central difference along v."""
    _, gy, analytic = analytic_grads(fn, inputs, seed)
    rng = numpy.random.default_rng(seed + 2)
    xp = backend.get_array_module(inputs[0])
    directions = [xp.asarray(rng.standard_normal(a.shape)) for a in inputs]
    value = _objective(fn, gy)
    plus = value(*[a + eps * v for a, v in zip(inputs, directions, strict=True)])
    minus = value(*[a - eps * v for a, v in zip(inputs, directions, strict=True)])
    numeric = (plus - minus) / (2 * eps)
    projected = sum(float((g * v).sum()) for g, v in zip(analytic, directions, strict=True))
    numpy.testing.assert_allclose(projected, numeric, atol=atol, rtol=rtol)
