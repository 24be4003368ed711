"""Parity with torch for the Tensor methods and dt.* functions ported scripts use (issue 11):
method forms of the operators (alpha, rounding_mode), lerp/addcmul/addcdiv, maximum/minimum
(ties split the gradient), topk/sort/argsort, mm, comparisons, the in-place updates and the
*_like / new_* factories. Forward values, shapes, dtypes and input gradients, one line per case.
"""

from __future__ import annotations

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import helper_test_op, make_inputs  # noqa: E402

import disttrain as dt  # noqa: E402


def both(fn_dt, fn_torch):
    """A case whose disttrain and torch calls differ only in the module (dt.x vs torch.x)."""
    return (lambda m, *xs: fn_dt(*xs)), (lambda m, *xs: fn_torch(*xs))


CASES = [  # (name, shapes, fn, torch_fn or None, domain)
    ("add_alpha", [(3, 4), (3, 4)], lambda m, a, b: a.add(b, alpha=2.5), None, "normal"),
    ("add_alpha_broadcast", [(3, 4), (4,)], lambda m, a, b: a.add(b, alpha=-1), None, "normal"),
    ("add_scalar", [(3, 4)], lambda m, a: a.add(2.0), None, "normal"),
    ("sub_alpha", [(3, 4), (3, 4)], lambda m, a, b: a.sub(b, alpha=0.5), None, "normal"),
    ("mul", [(3, 4), (1, 4)], lambda m, a, b: a.mul(b), None, "normal"),
    ("div", [(3, 4), (3, 4)], lambda m, a, b: a.div(b), None, "positive"),
    ("lerp_scalar", [(3, 4), (3, 4)], lambda m, a, b: a.lerp(b, 0.3), None, "normal"),
    ("lerp_tensor_weight", [(3, 4), (3, 4), (3, 4)], lambda m, a, b, w: a.lerp(b, w), None,
     "normal"),
    ("addcmul", [(3, 4), (3, 4), (3, 4)], lambda m, a, b, c: a.addcmul(b, c, value=0.5), None,
     "normal"),
    ("addcdiv", [(3, 4), (3, 4), (3, 4)], lambda m, a, b, c: a.addcdiv(b, c, value=-2), None,
     "positive"),
    ("maximum_ties", [(4, 5), (4, 5)], lambda m, a, b: a.maximum(b), None, "ties"),
    ("minimum_ties", [(4, 5), (4, 5)], lambda m, a, b: a.minimum(b), None, "ties"),
    ("maximum_broadcast", [(4, 5), (5,)], lambda m, a, b: a.maximum(b), None, "normal"),
    ("max_two_tensors", [(4, 5), (4, 5)], *both(dt.max, torch.max), "ties"),
    ("min_two_tensors", [(4, 5), (4, 5)], *both(dt.min, torch.min), "ties"),
    ("dt_maximum", [(4, 5), (4, 5)], *both(dt.maximum, torch.maximum), "normal"),
    ("max_method_tensor", [(4, 5), (4, 5)], lambda m, a, b: a.max(b), None, "ties"),
    ("max_dim_still_reduces", [(4, 5)], lambda m, a: a.max(1), None, "distinct"),
    ("topk", [(4, 7)], lambda m, a: a.topk(3), None, "distinct"),
    ("topk_smallest_dim0", [(6, 3)], lambda m, a: a.topk(2, dim=0, largest=False), None,
     "distinct"),
    ("topk_3d_middle", [(2, 5, 3)], lambda m, a: a.topk(4, 1), None, "distinct"),
    ("dt_topk", [(4, 7)], *both(lambda a: dt.topk(a, 2), lambda a: torch.topk(a, 2)),
     "distinct"),
    ("sort", [(4, 7)], lambda m, a: a.sort(), None, "distinct"),
    ("sort_descending_dim0", [(5, 3)], lambda m, a: a.sort(dim=0, descending=True), None,
     "distinct"),
    ("sort_stable_ties", [(4, 7)], lambda m, a: a.sort(stable=True), None, "ties"),
    ("sort_stable_descending_ties", [(4, 7)],
     lambda m, a: a.sort(descending=True, stable=True), None, "ties"),
    ("dt_sort", [(4, 7)], *both(lambda a: dt.sort(a, descending=True),
                                lambda a: torch.sort(a, descending=True)), "distinct"),
    ("argsort", [(4, 7)], lambda m, a: a.argsort(descending=True), None, "distinct"),
    ("dt_argsort_stable", [(3, 6)], *both(lambda a: dt.argsort(a, dim=0, stable=True),
                                          lambda a: torch.argsort(a, dim=0, stable=True)),
     "ties"),
    ("mm", [(3, 4), (4, 5)], lambda m, a, b: a.mm(b), None, "normal"),
    ("dt_mm", [(3, 4), (4, 2)], *both(dt.mm, torch.mm), "normal"),
    ("dt_add_alpha", [(3, 4), (3, 4)], *both(lambda a, b: dt.add(a, b, alpha=3),
                                             lambda a, b: torch.add(a, b, alpha=3)), "normal"),
    ("dt_sub_mul_div", [(3, 4), (3, 4)],
     *both(lambda a, b: dt.div(dt.sub(a, b), dt.mul(a, b)),
           lambda a, b: torch.div(torch.sub(a, b), torch.mul(a, b))), "positive"),
    ("dt_sin_cos", [(3, 4)], *both(lambda a: dt.sin(a) * dt.cos(a),
                                   lambda a: torch.sin(a) * torch.cos(a)), "normal"),
    ("dt_tril_triu", [(4, 4)], *both(lambda a: dt.tril(a, -1) + dt.triu(a, 2),
                                     lambda a: torch.tril(a, -1) + torch.triu(a, 2)), "normal"),
    ("dt_lerp", [(3, 4), (3, 4)], *both(lambda a, b: dt.lerp(a, b, 0.75),
                                        lambda a, b: torch.lerp(a, b, 0.75)), "normal"),
]


@pytest.mark.parametrize("shapes, fn, torch_fn, domain",
                         [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_op(shapes, fn, torch_fn, domain):
    helper_test_op(shapes, fn, torch_fn, domain=domain)


FORWARD_ONLY = [  # (name, fn(lib, *tensors)) on integer and float inputs: values and dtypes
    ("eq", lambda m, a, b: a.eq(b)), ("ne", lambda m, a, b: a.ne(b)),
    ("lt", lambda m, a, b: a.lt(b)), ("le", lambda m, a, b: a.le(b)),
    ("gt", lambda m, a, b: a.gt(b)), ("ge", lambda m, a, b: a.ge(b)),
    ("eq_scalar", lambda m, a, b: a.eq(0)), ("gt_scalar", lambda m, a, b: a.gt(1)),
    ("div_floor", lambda m, a, b: a.div(b, rounding_mode="floor")),
    ("div_trunc", lambda m, a, b: a.div(b, rounding_mode="trunc")),
    ("div_trunc_scalar", lambda m, a, b: a.div(-3, rounding_mode="trunc")),
    ("div_floor_scalar", lambda m, a, b: a.div(4, rounding_mode="floor")),
    ("true_div_ints", lambda m, a, b: a.div(b)),
    ("equal", lambda m, a, b: (a.equal(b), a.equal(a))),
]


def _int_pair():
    rng = numpy.random.default_rng(3)
    a = rng.integers(-9, 10, (4, 5))
    b = rng.integers(1, 5, (4, 5)) * numpy.where(rng.random((4, 5)) > 0.5, 1, -1)
    return a, b


@pytest.mark.parametrize("kind", ["int64", "float32"])
@pytest.mark.parametrize("fn", [pytest.param(f, id=n) for n, f in FORWARD_ONLY])
def test_forward_only(fn, kind):
    a, b = (x.astype(kind) for x in _int_pair())
    ours = fn(dt, dt.tensor(a), dt.tensor(b))
    theirs = fn(torch, torch.tensor(a), torch.tensor(b))
    if isinstance(theirs, tuple):
        assert ours == theirs
        return
    assert ours.dtype == numpy.dtype(str(theirs.dtype).removeprefix("torch."))
    numpy.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


INPLACE = [  # (name, fn(x, *others)) run on copies of the same inputs, under no_grad
    ("addcmul_", lambda x, a, b: x.addcmul_(a, b, value=0.3)),
    ("addcdiv_", lambda x, a, b: x.addcdiv_(a, b.abs() + 0.5, value=-1.5)),
    ("lerp_", lambda x, a, b: x.lerp_(a, 0.25)),
    ("lerp_tensor_weight", lambda x, a, b: x.lerp_(a, b.abs() / 4)),
    ("sqrt_", lambda x, a, b: x.sqrt_()),
    ("add_alpha_", lambda x, a, b: x.add_(a, alpha=2)),
]


@pytest.mark.parametrize("fn", [pytest.param(f, id=n) for n, f in INPLACE])
def test_inplace(fn):
    x, a, b = make_inputs([(3, 4)] * 3, "positive")
    ours = [dt.tensor(v) for v in (x, a, b)]
    theirs = [torch.tensor(v) for v in (x, a, b)]
    with dt.no_grad():
        out = fn(*ours)
    with torch.no_grad():
        fn(*theirs)
    assert out is ours[0]
    numpy.testing.assert_allclose(ours[0].numpy(), theirs[0].numpy(), rtol=1e-6, atol=1e-7)


def test_factories_like_dtype_and_shape():
    x = dt.zeros(2, 3, dtype=dt.float64)
    tx = torch.zeros(2, 3, dtype=torch.float64)
    for ours, theirs in [(dt.randn_like(x), torch.randn_like(tx)),
                         (dt.rand_like(x), torch.rand_like(tx)),
                         (dt.rand_like(x, dtype=dt.float32), torch.rand_like(tx,
                                                                            dtype=torch.float32)),
                         (x.new_full((4,), 7), tx.new_full((4,), 7)),
                         (x.new_zeros(1, 2), tx.new_zeros(1, 2)),
                         (x.new_ones((3,)), tx.new_ones((3,))),
                         (x.new_empty(2), tx.new_empty(2)),
                         (x.new_tensor([1, 2]), tx.new_tensor([1, 2])),
                         (dt.as_tensor([1, 2]), torch.as_tensor([1, 2])),
                         (dt.as_tensor([1.5]), torch.as_tensor([1.5]))]:
        assert ours.shape == tuple(theirs.shape)
        assert ours.dtype == numpy.dtype(str(theirs.dtype).removeprefix("torch."))


def test_format_as_torch():
    for value in (0.123456, 3.0, -2.5e-7):
        assert f"{dt.tensor(value):.4f}" == f"{torch.tensor(value):.4f}"
        assert f"{dt.tensor(value):>10.2e}" == f"{torch.tensor(value):>10.2e}"
    assert f"{dt.tensor(7)}" == f"{torch.tensor(7)}" == "7"
    assert f"{dt.tensor(7):03d}" == f"{torch.tensor(7):03d}"
    with pytest.raises(TypeError, match="unsupported format string"):
        f"{dt.ones(2):.4f}"  # noqa: B018
    with pytest.raises(TypeError, match="unsupported format string"):
        f"{torch.ones(2):.4f}"  # noqa: B018
