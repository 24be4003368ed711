"""Tensor creation, dtypes, shape ops, reductions, type promotion, randomness and repr."""

import operator

import numpy
import pytest

import disttrain as dt

try:
    import torch
except ImportError:  # the torch comparisons below skip; the hard-coded tables still run
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def close(t, expected, **kw):
    numpy.testing.assert_allclose(numpy.asarray(t.tolist()), expected, **kw)


# ---------------------------------------------------------------- factories
@pytest.mark.parametrize("factory, args, dtype, shape", [
    (dt.zeros, (2, 3), "float32", (2, 3)),
    (dt.zeros, ((2, 3),), "float32", (2, 3)),
    (dt.ones, (4,), "float32", (4,)),
    (dt.empty, (1, 2), "float32", (1, 2)),
    (dt.randn, (3, 2), "float32", (3, 2)),
    (dt.rand, (5,), "float32", (5,)),
    (dt.arange, (5,), "int64", (5,)),
    (dt.arange, (1, 7, 2), "int64", (3,)),
    (dt.arange, (0.0, 1.0, 0.25), "float32", (4,)),
    (dt.full, ((2, 2), 3), "int64", (2, 2)),
    (dt.full, ((2, 2), 3.0), "float32", (2, 2)),
    (dt.full, ((2,), True), "bool", (2,)),
    (dt.linspace, (0, 1, 5), "float32", (5,)),
    (dt.eye, (3,), "float32", (3, 3)),
    (dt.randint, (0, 10, (4,)), "int64", (4,)),
    (dt.randperm, (6,), "int64", (6,)),
])  # fmt: skip
def test_factory_dtypes_and_shapes(factory, args, dtype, shape):
    t = factory(*args)
    assert t.dtype == numpy.dtype(dtype) and t.shape == shape and not t.requires_grad
    if torch is not None:
        ref = getattr(torch, factory.__name__)(*args)
        assert str(ref.dtype) == f"torch.{dtype}" and tuple(ref.shape) == shape


def test_factories_take_dtype_and_requires_grad():
    t = dt.zeros(2, dtype=dt.float64, requires_grad=True)
    assert t.dtype == dt.float64 and t.requires_grad and t.is_leaf
    assert dt.ones(3, dtype=dt.int64).tolist() == [1, 1, 1]
    assert dt.randn(2, requires_grad=True).requires_grad


def test_like_factories():
    base = dt.ones(2, 3, dtype=dt.float64)
    assert dt.zeros_like(base).dtype == dt.float64 and dt.zeros_like(base).shape == (2, 3)
    assert dt.ones_like(base, dtype=dt.int64).tolist() == [[1, 1, 1]] * 2
    assert dt.full_like(base, 7).tolist() == [[7.0] * 3] * 2


def test_factory_values():
    assert dt.arange(1, 7, 2).tolist() == [1, 3, 5]
    assert dt.eye(2).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert sorted(dt.randperm(5).tolist()) == [0, 1, 2, 3, 4]
    r = dt.rand(1000)
    assert 0.0 <= r.numpy().min() and r.numpy().max() < 1.0


# ---------------------------------------------------------------- dt.tensor dtype inference
TENSOR_CASES = [
    (1, "int64"),
    (1.5, "float32"),
    (True, "bool"),
    ([1, 2], "int64"),
    ([1.0, 2], "float32"),
    ([1, 2.5], "float32"),
    ([True, False], "bool"),
    ([[1, 2], [3, 4]], "int64"),
    ([[1.0], [2.0]], "float32"),
    (numpy.float64(1.0), "float64"),
    (numpy.float32(2.0), "float32"),
    (numpy.int32(3), "int32"),
    (numpy.bool_(True), "bool"),
    (numpy.array([1, 2], numpy.int32), "int32"),
    (numpy.array([1, 2], numpy.int16), "int16"),
    (numpy.array([1, 2], numpy.uint8), "uint8"),
    (numpy.array([1.0, 2.0]), "float64"),
    (numpy.array([1.0, 2.0], numpy.float16), "float16"),
    (numpy.array(3.0), "float64"),
    (numpy.array([True]), "bool"),
]
TENSOR_IDS = [f"{type(c).__name__}-{c!r}"[:40] for c, _ in TENSOR_CASES]


@pytest.mark.parametrize("data, dtype", TENSOR_CASES, ids=TENSOR_IDS)
def test_tensor_infers_dtype(data, dtype):
    t = dt.tensor(data)
    assert t.dtype == numpy.dtype(dtype)
    assert t.tolist() == numpy.asarray(data).tolist()


@needs_torch
@pytest.mark.parametrize("data, dtype", TENSOR_CASES, ids=TENSOR_IDS)
def test_tensor_dtype_matches_torch(data, dtype):
    assert str(torch.tensor(data).dtype) == f"torch.{dt.tensor(data).dtype}"


def test_tensor_from_list_of_numpy_scalars_keeps_their_dtype():
    assert dt.tensor([numpy.float64(1.0), numpy.float64(2.0)]).dtype == dt.float64


def test_tensor_copies_its_input_and_takes_dtype():
    a = numpy.ones(3, numpy.float32)
    t = dt.tensor(a)
    a[0] = 5
    assert t.tolist() == [1.0, 1.0, 1.0]
    assert dt.tensor([1, 2], dtype=dt.float64).dtype == dt.float64
    assert dt.tensor(dt.tensor([1.0])).dtype == dt.float32


def test_tensor_rejects_non_numbers():
    with pytest.raises(TypeError, match="tensor"):
        dt.tensor(["a", "b"])


# ---------------------------------------------------------------- properties and conversion
def test_shape_ndim_size_numel():
    t = dt.zeros(2, 3, 4)
    assert t.shape == (2, 3, 4) and t.ndim == 3 and t.dim() == 3
    assert t.size() == (2, 3, 4) and t.size(1) == 3 and t.size(-1) == 4
    assert t.numel() == 24 and len(t) == 2 and t.device == "cpu"


def test_item_tolist_numpy():
    assert dt.tensor(3.5).item() == 3.5 and isinstance(dt.tensor(3).item(), int)
    assert dt.tensor([[7]]).item() == 7
    with pytest.raises(ValueError, match=r"item.*\(2,\)"):
        dt.tensor([1, 2]).item()
    t = dt.tensor([[1, 2], [3, 4]])
    assert t.tolist() == [[1, 2], [3, 4]]
    a = t.numpy()
    assert isinstance(a, numpy.ndarray) and a.dtype == numpy.int64
    assert numpy.shares_memory(a, t.array)  # as torch: numpy() shares storage


def test_numpy_on_requires_grad_raises_like_torch():
    t = dt.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
        t.numpy()
    assert t.detach().numpy().tolist() == [1.0, 1.0]
    if torch is not None:
        with pytest.raises(RuntimeError, match=r"detach\(\)\.numpy\(\)"):
            torch.ones(2, requires_grad=True).numpy()


# ---------------------------------------------------------------- shape ops
def test_reshape_and_view_with_minus_one():
    t = dt.arange(12)
    assert t.reshape(3, -1).shape == (3, 4) and t.view(-1, 6).shape == (2, 6)
    assert t.reshape((2, 2, 3)).shape == (2, 2, 3) and t.view(12).shape == (12,)
    assert t.reshape(3, 4).tolist() == numpy.arange(12).reshape(3, 4).tolist()


def test_flatten():
    t = dt.zeros(2, 3, 4)
    assert t.flatten().shape == (24,) and dt.flatten(t, 1).shape == (2, 12)
    assert t.flatten(0, 1).shape == (6, 4) and dt.tensor(5).flatten().shape == (1,)


def test_permute_transpose_t():
    a = numpy.arange(24).reshape(2, 3, 4)
    t = dt.tensor(a)
    assert t.permute(2, 0, 1).tolist() == a.transpose(2, 0, 1).tolist()
    assert t.transpose(0, 2).tolist() == a.swapaxes(0, 2).tolist()
    assert t.T.tolist() == a.T.tolist()
    m = dt.tensor([[1, 2, 3]])
    assert m.T.shape == (3, 1) and m.t().shape == (3, 1)


def test_unsqueeze_squeeze():
    t = dt.zeros(2, 3)
    assert t.unsqueeze(0).shape == (1, 2, 3) and t.unsqueeze(-1).shape == (2, 3, 1)
    assert dt.zeros(1, 2, 1).squeeze().shape == (2,)
    assert dt.zeros(1, 2, 1).squeeze(0).shape == (2, 1)
    assert dt.zeros(1, 2, 1).squeeze(1).shape == (1, 2, 1)  # size != 1: unchanged, as torch


def test_expand():
    t = dt.tensor([[1], [2]])
    assert t.expand(2, 3).tolist() == [[1, 1, 1], [2, 2, 2]]
    assert t.expand(-1, 2).shape == (2, 2) and t.expand(4, 2, 3).shape == (4, 2, 3)
    with pytest.raises(ValueError, match="expand"):
        t.expand(3, 3)


def test_indexing():
    a = numpy.arange(12.0).reshape(3, 4).astype(numpy.float32)
    t = dt.tensor(a)
    assert t[1].tolist() == a[1].tolist() and t[0, 1].item() == a[0, 1]
    assert t[:, 1].tolist() == a[:, 1].tolist() and t[..., -1].tolist() == a[..., -1].tolist()
    assert t[:, ::2].tolist() == a[:, ::2].tolist() and t[None].shape == (1, 3, 4)
    assert t[[0, 2]].tolist() == a[[0, 2]].tolist()
    assert t[dt.tensor([2, 0])].tolist() == a[[2, 0]].tolist()
    assert t[t > 5].tolist() == a[a > 5].tolist()


def test_indexing_gradient_scatters_back():
    x = dt.ones(4, requires_grad=True)
    x[dt.tensor([0, 0, 3])].sum().backward()
    assert x.grad.tolist() == [2.0, 0.0, 0.0, 1.0]


# ---------------------------------------------------------------- comparisons
@pytest.mark.parametrize("op", [operator.eq, operator.ne, operator.lt, operator.le, operator.gt,
                                operator.ge])
def test_comparisons_give_bool_tensors_without_grad(op):
    x = dt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    out = op(x, 2.0)
    assert out.dtype == dt.bool and not out.requires_grad and out.grad_fn is None
    assert out.tolist() == op(numpy.array([1.0, 2.0, 3.0]), 2.0).tolist()
    assert op(x, dt.tensor([3.0, 2.0, 1.0])).dtype == dt.bool


# ---------------------------------------------------------------- reductions
A = numpy.array([[1.0, 5.0, 3.0], [4.0, 2.0, 6.0]], numpy.float32)


def test_sum_and_mean():
    t = dt.tensor(A)
    assert t.sum().item() == 21.0 and t.sum(0).tolist() == [5.0, 7.0, 9.0]
    assert t.sum(1, keepdim=True).shape == (2, 1) and t.sum((0, 1)).item() == 21.0
    assert t.mean().item() == 3.5 and t.mean(0).tolist() == [2.5, 3.5, 4.5]
    assert dt.tensor([1, 2]).sum().dtype == dt.int64
    assert dt.tensor([True, True]).sum().dtype == dt.int64


def test_max_with_dim_returns_values_and_indices():
    t = dt.tensor(A)
    out = t.max(1)
    assert out._fields == ("values", "indices")
    values, indices = out
    assert values.tolist() == [5.0, 6.0] and indices.tolist() == [1, 2]
    assert out.values is values and indices.dtype == dt.int64
    values, indices = dt.max(t, 0)
    assert values.tolist() == [4.0, 5.0, 6.0] and indices.tolist() == [1, 0, 1]
    assert t.max().item() == 6.0 and dt.max(t).item() == 6.0
    assert t.max(1, keepdim=True).values.shape == (2, 1)


def test_min_and_argmax():
    t = dt.tensor(A)
    values, indices = t.min(0)
    assert values.tolist() == [1.0, 2.0, 3.0] and indices.tolist() == [0, 1, 0]
    assert dt.min(t).item() == 1.0
    assert t.argmax().item() == 5 and t.argmax(1).tolist() == [1, 2]
    assert t.argmin(1).tolist() == [0, 1] and dt.argmax(t, 0).tolist() == [1, 0, 1]
    assert t.argmax(1, keepdim=True).shape == (2, 1) and t.argmax().dtype == dt.int64


def test_var_std_against_numpy():
    t = dt.tensor(A)
    close(t.var(), A.var(ddof=1), rtol=1e-6)
    close(t.var(0), A.var(0, ddof=1), rtol=1e-6)
    close(t.var(1, unbiased=False), A.var(1), rtol=1e-6)
    close(t.var(1, correction=0, keepdim=True), A.var(1, keepdims=True), rtol=1e-6)
    close(t.std(), A.std(ddof=1), rtol=1e-6)
    close(t.std(1), A.std(1, ddof=1), rtol=1e-6)
    close(dt.std(t, 0), A.std(0, ddof=1), rtol=1e-6)


def test_elementwise_math():
    t = dt.tensor([1.0, 4.0])
    close(t.exp(), numpy.exp([1.0, 4.0]), rtol=1e-6)
    close(t.log(), numpy.log([1.0, 4.0]), rtol=1e-6)
    assert t.sqrt().tolist() == [1.0, 2.0] and (-t).abs().tolist() == [1.0, 4.0]
    assert t.pow(2).tolist() == [1.0, 16.0] and (t**0.5).tolist() == [1.0, 2.0]


def test_clamp():
    t = dt.tensor([-2.0, 0.5, 3.0])
    assert t.clamp(-1, 1).tolist() == [-1.0, 0.5, 1.0]
    assert t.clamp(min=0).tolist() == [0.0, 0.5, 3.0]
    assert t.clamp(max=0).tolist() == [-2.0, 0.0, 0.0]
    assert dt.clamp(t, 0, 1).tolist() == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="clamp"):
        t.clamp()


def test_where():
    t = dt.tensor(A)
    assert dt.where(t > 3, t, dt.zeros(2, 3)).tolist() == numpy.where(A > 3, A, 0).tolist()
    assert dt.where(t > 3, t, 0.0).dtype == dt.float32
    # regression: a python scalar `input` with a Tensor `other` swapped the two branches
    assert dt.where(t > 3, 1.0, t).tolist() == numpy.where(A > 3, 1.0, A).tolist()
    x = dt.tensor([1.0, 3.0], requires_grad=True)
    dt.where(x > 2, 0.0, x).sum().backward()
    assert x.grad.tolist() == [1.0, 0.0]
    out = dt.where(dt.tensor([True, False]), 1.0, 0.0)
    assert out.tolist() == [1.0, 0.0] and out.dtype == dt.float32  # as torch.where
    assert dt.where(dt.tensor([True, False]), 1, 0).dtype == dt.int64


def test_cat_and_stack():
    a, b = dt.ones(2, 3), dt.zeros(1, 3)
    assert dt.cat([a, b]).shape == (3, 3) and dt.cat([a, a], 1).shape == (2, 6)
    assert dt.cat([a, b], dim=-2).tolist() == [[1.0] * 3, [1.0] * 3, [0.0] * 3]
    assert dt.stack([a, a]).shape == (2, 2, 3) and dt.stack([a, a], 2).shape == (2, 3, 2)
    assert dt.stack([a, a], -1).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="stack"):
        dt.stack([a, b])
    with pytest.raises(ValueError, match="cat"):
        dt.cat([a, dt.ones(2, 2)])


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3,), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3,)),
    ((2, 3), (3, 4)),
    ((5, 2, 3), (5, 3, 4)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((3,), (5, 3, 4)),
    ((5, 2, 3), (3,)),
    ((2, 1, 2, 3), (5, 3, 4)),
])  # fmt: skip
def test_matmul_against_numpy(shape_a, shape_b):
    rng = numpy.random.default_rng(0)
    a, b = rng.standard_normal(shape_a), rng.standard_normal(shape_b)
    expected = a @ b
    got = dt.tensor(a) @ dt.tensor(b)
    assert got.shape == expected.shape
    numpy.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    numpy.testing.assert_allclose(dt.matmul(dt.tensor(a), dt.tensor(b)).numpy(), expected)


# ---------------------------------------------------------------- type promotion
def test_type_promotion_rules():
    f32, f64, i64 = dt.ones(2), dt.ones(2, dtype=dt.float64), dt.tensor([1, 2])
    assert (f32 * 1.5).dtype == dt.float32 and (2.5 * f32).dtype == dt.float32
    assert (f32 + f64).dtype == dt.float64
    assert (i64 / 2).dtype == dt.float32 and (i64 / i64).dtype == dt.float32
    assert (i64 * 1.5).dtype == dt.float32 and (i64 + 1).dtype == dt.int64
    assert (f32 + dt.tensor(1.0, dtype=dt.float64)).dtype == dt.float32  # 0-d does not upcast
    assert (i64 + dt.tensor(1.0, dtype=dt.float64)).dtype == dt.float64  # higher category
    assert (f32 + i64).dtype == dt.float32


OPERANDS = {
    "f32": lambda m: m.ones(2),
    "f64": lambda m: m.ones(2, dtype=m.float64),
    "i64": lambda m: m.ones(2, dtype=m.int64),
    "i32": lambda m: m.ones(2, dtype=m.int32),
    "bool": lambda m: m.ones(2, dtype=m.bool),
    "f64_0d": lambda m: m.tensor(1.0, dtype=m.float64),
    "i64_0d": lambda m: m.tensor(1),
    "py_float": lambda m: 1.5,
    "py_int": lambda m: 2,
    "py_bool": lambda m: True,
}


@needs_torch
@pytest.mark.parametrize("op", [operator.add, operator.mul, operator.truediv])
@pytest.mark.parametrize("lhs", ["f32", "f64", "i64", "i32", "bool", "f64_0d", "i64_0d"])
def test_type_promotion_matches_torch(op, lhs):
    for rhs, make in OPERANDS.items():
        got = op(OPERANDS[lhs](dt), make(dt)).dtype
        expected = op(OPERANDS[lhs](torch), make(torch)).dtype
        assert f"torch.{got}" == str(expected), (lhs, rhs)


# ---------------------------------------------------------------- randomness
def test_manual_seed_reproduces_samples():
    dt.manual_seed(1234)
    first = (dt.randn(4).tolist(), dt.rand(3).tolist(), dt.randint(0, 100, (5,)).tolist())
    dt.manual_seed(1234)
    second = (dt.randn(4).tolist(), dt.rand(3).tolist(), dt.randint(0, 100, (5,)).tolist())
    assert first == second
    dt.manual_seed(1235)
    assert dt.randn(4).tolist() != first[0]


def test_get_and_set_rng_state():
    dt.manual_seed(7)
    state = dt.get_rng_state()
    a = dt.randn(5).tolist()
    dt.set_rng_state(state)
    assert dt.randn(5).tolist() == a


def test_explicit_generator_does_not_touch_the_default():
    dt.manual_seed(3)
    expected = dt.randn(3).tolist()
    dt.manual_seed(3)
    dt.randn(2, generator=numpy.random.default_rng(0))
    assert dt.randn(3).tolist() == expected


# ---------------------------------------------------------------- repr
def test_repr_shows_values_dtype_and_grad_fn():
    assert repr(dt.tensor([1.5, 2.5])) == "tensor([1.5000, 2.5000])"  # torch's 4 decimals
    assert repr(dt.tensor([1, 2])) == "tensor([1, 2])"
    assert "dtype=float64" in repr(dt.tensor([1.0], dtype=dt.float64))
    x = dt.tensor([1.0, 2.0], requires_grad=True)
    assert repr(x) == "tensor([1., 2.], requires_grad=True)"
    r = repr(x * 2)
    assert "2., 4." in r and "grad_fn=<MulBackward" in r
    assert "grad_fn=<SumBackward" in repr(x.sum())
