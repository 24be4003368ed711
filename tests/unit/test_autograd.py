"""The backward engine: deep graphs, broadcasting, accumulation, graph freeing, grad modes,
detach/.data, hooks and gradient ownership."""

import gc
import sys
import weakref

import numpy
import pytest

import disttrain as dt
import disttrain.nn as nn


def leaf(values, dtype=None):
    return dt.tensor(values, dtype=dtype, requires_grad=True)


# ---------------------------------------------------------------- deep graphs
def test_10000_op_chain_has_no_recursion_limit_and_exact_gradient():
    x = leaf(1.0, dt.float64)
    y = x
    for _ in range(10_000):
        y = y * 1.0001 + 0.0  # 20,000 graph nodes in one chain
    assert 20_000 > sys.getrecursionlimit()
    y.backward()
    assert y.item() == pytest.approx(1.0001**10_000, rel=1e-12)
    assert x.grad.item() == pytest.approx(1.0001**10_000, rel=1e-12)
    del y
    gc.collect()  # tearing down the deep graph must not overflow the stack either


def test_10000_additions_of_one_leaf_accumulate():
    x = leaf([1.0, 2.0])
    y = x
    for _ in range(10_000):
        y = y + x
    y.sum().backward()
    assert x.grad.tolist() == [10_001.0, 10_001.0]


# ---------------------------------------------------------------- broadcasting
def test_broadcast_column_plus_row_reduces_gradients():
    a, b = leaf(numpy.ones((3, 1))), leaf(numpy.ones((1, 4)))
    (a + b).sum().backward()
    assert a.grad.shape == (3, 1) and b.grad.shape == (1, 4)
    assert a.grad.tolist() == [[4.0]] * 3
    assert b.grad.tolist() == [[3.0] * 4]


def test_broadcast_0d_tensor_times_matrix():
    s, m = leaf(2.0), leaf(numpy.full((2, 3), 5.0, numpy.float32))
    (s * m).sum().backward()
    assert s.grad.shape == () and s.grad.item() == 30.0
    assert m.grad.tolist() == [[2.0] * 3] * 2


def test_broadcast_python_scalars_on_both_sides():
    x = leaf([1.0, 2.0])
    y = 3.0 * x + 1 - x / 2.0 + 2 / (x * 0 + 1)
    y.sum().backward()
    numpy.testing.assert_allclose(x.grad.numpy(), [2.5, 2.5])
    assert x.grad.dtype == dt.float32


def test_broadcast_int_tensor_plus_float_tensor():
    ints, x = dt.tensor([[1], [2]]), leaf([0.5, 0.25, 0.125])
    y = ints + x
    assert y.dtype == dt.float32 and y.shape == (2, 3)
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0]


def test_promoted_gradient_comes_back_in_the_leaf_dtype():
    x32, x64 = leaf([1.0, 2.0]), leaf([3.0, 4.0], dt.float64)
    y = x32 * x64
    assert y.dtype == dt.float64
    y.sum().backward()
    assert x32.grad.dtype == dt.float32 and x64.grad.dtype == dt.float64
    assert x32.grad.tolist() == [3.0, 4.0] and x64.grad.tolist() == [1.0, 2.0]


# ---------------------------------------------------------------- accumulation and roots
def test_gradients_accumulate_across_backward_calls():
    x = leaf([1.0, -2.0])
    (x * x).sum().backward()
    first = x.grad.tolist()
    (x * x).sum().backward()
    assert x.grad.tolist() == [2 * g for g in first]


def test_leaf_used_twice_accumulates():
    x = leaf([1.0, 2.0])
    (x * x + x).sum().backward()
    assert x.grad.tolist() == [3.0, 5.0]


def test_backward_on_non_scalar_needs_gradient():
    x = leaf(numpy.ones((2, 3)))
    with pytest.raises(RuntimeError, match=r"scalar.*\(2, 3\)"):
        (x * 2).backward()


def test_backward_with_explicit_gradient():
    x = leaf([1.0, 2.0, 3.0])
    (x * 2).backward(dt.tensor([1.0, 10.0, 100.0]))
    assert x.grad.tolist() == [2.0, 20.0, 200.0]
    with pytest.raises(RuntimeError, match=r"gradient shape \(2,\).*\(3,\)"):
        (x * 2).backward(dt.tensor([1.0, 1.0]))


def test_explicit_gradient_is_not_aliased_into_grad():
    # regression: the caller's gradient array became the leaf's .grad, so the next
    # accumulation (+=) wrote into the caller's tensor; torch clones it
    x, g = leaf([3.0]), dt.tensor([1.0])
    x.backward(g)
    x.backward(g)
    assert g.tolist() == [1.0] and x.grad.tolist() == [2.0]
    m, g4 = leaf(numpy.ones((2, 2))), dt.ones(4)
    m.reshape(4).backward(g4)  # Reshape's backward hands the leaf a view of g4
    m.grad.add_(1)
    assert g4.tolist() == [1.0] * 4 and not numpy.shares_memory(m.grad.array, g4.array)
    a, b = leaf([1.0, 1.0]), leaf([1.0, 1.0])
    (a + b).backward(dt.ones(2))
    assert not numpy.shares_memory(a.grad.array, b.grad.array)


def test_backward_on_tensor_without_grad_raises():
    with pytest.raises(RuntimeError, match="does not require grad"):
        dt.tensor([1.0]).sum().backward()


# ---------------------------------------------------------------- freeing the graph
def test_second_backward_through_freed_graph_raises():
    x = leaf([1.0, 2.0])
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time.*retain_graph=True"):
        loss.backward()


def test_retain_graph_allows_a_second_backward():
    x = leaf([1.0, 2.0])
    loss = (x * x).exp().sum()
    loss.backward(retain_graph=True)
    assert loss.grad_fn.saved is not None
    first = x.grad.numpy().copy()
    loss.backward()
    numpy.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-6)


def test_saved_arrays_are_freed_after_backward():
    x = leaf(numpy.ones((2, 3)))
    h1 = x * 3.0
    h2 = h1.exp()
    h3 = h2 @ dt.ones(3, 4)
    loss = h3.log().sum()
    assert h1.grad_fn.saved is not None
    loss.backward()
    for t in (h1, h2, h3, loss):
        assert t.grad_fn.saved is None, t.grad_fn


def test_saved_activations_are_released_by_backward():
    x = leaf(numpy.ones((2, 3)))
    hidden = (x * 3.0).exp()
    saved = weakref.ref(hidden.grad_fn.saved[0])  # Exp keeps its output for backward
    loss = (hidden * 2.0).sum()
    del hidden
    gc.collect()
    assert saved() is not None  # still needed: the graph holds it until backward
    loss.backward()
    gc.collect()
    assert saved() is None  # freed although `loss` (and so the graph) is still alive


def test_no_saved_arrays_without_grad():
    y = dt.ones(3) * dt.ones(3)
    assert y.grad_fn is None and not y.requires_grad


# ---------------------------------------------------------------- grad modes
def test_no_grad_context():
    x = leaf([1.0])
    with dt.no_grad():
        assert not dt.is_grad_enabled()
        y = x * 2
    assert dt.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None


def test_no_grad_decorator():
    @dt.no_grad()
    def double(t):
        return t * 2

    y = double(leaf([1.0]))
    assert not y.requires_grad and y.grad_fn is None
    assert dt.is_grad_enabled()


def test_no_grad_restores_mode_after_an_exception():
    with pytest.raises(ZeroDivisionError), dt.no_grad():
        1 / 0  # noqa: B018
    assert dt.is_grad_enabled()


def test_enable_grad_inside_no_grad():
    x = leaf([1.0])
    with dt.no_grad():
        with dt.enable_grad():
            y = x * 2
        z = x * 2
    assert y.requires_grad and y.grad_fn is not None
    assert not z.requires_grad


# ---------------------------------------------------------------- detach and .data
def test_detach_shares_storage_and_cuts_the_graph():
    x = leaf([1.0, 2.0])
    y = x * 2
    d = y.detach()
    assert numpy.shares_memory(d.array, y.array)
    assert not d.requires_grad and d.grad_fn is None and d.is_leaf
    d.array[0] = 7.0
    assert y.tolist()[0] == 7.0
    z = (d * 3).requires_grad_()
    z.sum().backward()
    assert x.grad is None


def test_data_is_a_detached_view_of_the_parameter():
    p = nn.Parameter(dt.tensor([1.0, 2.0]))
    data = p.data
    assert isinstance(data, dt.Tensor) and not data.requires_grad and data.grad_fn is None
    assert numpy.shares_memory(data.array, p.array)
    data.mul_(10)  # allowed: .data does not require grad
    assert p.tolist() == [10.0, 20.0] and p.requires_grad


def test_assigning_data_replaces_the_storage():
    p = nn.Parameter(dt.tensor([1.0, 2.0]))
    new = dt.tensor([5.0, 6.0])
    p.data = new
    assert p.tolist() == [5.0, 6.0] and p.requires_grad and p.is_leaf
    (p * p).sum().backward()
    assert p.grad.tolist() == [10.0, 12.0]


# ---------------------------------------------------------------- hooks
def test_register_hook_sees_and_replaces_the_gradient():
    x = leaf([1.0, 2.0])
    seen = []

    def hook(grad):
        seen.append(grad.tolist())
        return grad * 10

    handle = x.register_hook(hook)
    (x * 3).sum().backward()
    assert seen == [[3.0, 3.0]] and x.grad.tolist() == [30.0, 30.0]
    handle.remove()
    x.grad = None
    (x * 3).sum().backward()
    assert len(seen) == 1 and x.grad.tolist() == [3.0, 3.0]


def test_hook_on_intermediate_changes_what_flows_upstream():
    x = leaf([1.0, 2.0])
    y = x * 2
    y.register_hook(lambda grad: grad * 0.5)
    (y * y).sum().backward()
    assert x.grad.tolist() == [4.0, 8.0]  # 2 * (2y * 0.5) = 2y


def test_hook_returning_none_keeps_the_gradient():
    x = leaf([1.0])
    x.register_hook(lambda grad: None)
    (x * 4).sum().backward()
    assert x.grad.tolist() == [4.0]


def test_register_hook_needs_requires_grad():
    with pytest.raises(RuntimeError, match="require"):
        dt.tensor([1.0]).register_hook(lambda g: g)


def test_post_accumulate_grad_hook_runs_after_accumulation():
    x = leaf([1.0, 2.0])
    seen = []
    handle = x.register_post_accumulate_grad_hook(lambda t: seen.append(t.grad.tolist()))
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    assert seen == [[3.0, 3.0], [6.0, 6.0]]
    handle.remove()
    (x * 3).sum().backward()
    assert len(seen) == 2
    with pytest.raises(RuntimeError, match="leaf"):
        (x * 2).register_post_accumulate_grad_hook(lambda t: None)


def test_retain_grad_on_a_non_leaf():
    x = leaf([1.0, 2.0])
    y, z = x * 2, x * 3
    y.retain_grad()
    (y * y + z).sum().backward()
    assert y.grad.tolist() == [4.0, 8.0]
    assert z.grad is None
    assert x.grad.tolist() == [11.0, 19.0]


# ---------------------------------------------------------------- gradient ownership
def test_add_gives_each_input_its_own_gradient_array():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    (a + b).sum().backward()
    assert not numpy.shares_memory(a.grad.array, b.grad.array)
    a.grad.mul_(5)
    assert a.grad.tolist() == [5.0, 5.0] and b.grad.tolist() == [1.0, 1.0]


def test_gradient_of_a_sum_is_a_writable_owned_array():
    x = leaf(numpy.ones((2, 2)))
    x.sum().backward()  # Sum's backward is a read-only broadcast view
    assert x.grad.array.flags.writeable and x.grad.array.flags.owndata
    x.grad.add_(1)
    assert x.grad.tolist() == [[2.0, 2.0], [2.0, 2.0]]


def test_retained_non_leaf_and_leaf_do_not_share_a_gradient():
    x = leaf([1.0, 2.0])
    y = x.clone()  # Clone passes the gradient through unchanged
    y.retain_grad()
    y.sum().backward()
    assert not numpy.shares_memory(x.grad.array, y.grad.array)


# ---------------------------------------------------------------- in-place and dtypes
def test_in_place_on_a_leaf_that_requires_grad_raises():
    x = leaf([1.0, 2.0])
    with pytest.raises(RuntimeError, match="in-place"):
        x.add_(1)
    with pytest.raises(RuntimeError, match="in-place"):
        x[0] = 5.0
    with pytest.raises(RuntimeError, match="in-place"):
        x *= 2
    assert x.tolist() == [1.0, 2.0]


def test_in_place_on_a_leaf_is_allowed_under_no_grad():
    x = leaf([1.0, 2.0])
    with dt.no_grad():
        x.add_(1)
        x.mul_(2)
        x[0] = 0.0
    assert x.tolist() == [0.0, 6.0] and x.requires_grad and x.is_leaf


def test_requires_grad_on_int_tensor_raises():
    with pytest.raises(RuntimeError, match="floating point.*int64"):
        dt.tensor([1, 2], requires_grad=True)
    with pytest.raises(RuntimeError, match="floating point"):
        dt.arange(3).requires_grad_()


def test_requires_grad_cannot_be_switched_off_on_a_non_leaf():
    y = leaf([1.0]) * 2
    with pytest.raises(RuntimeError, match="leaf"):
        y.requires_grad = False
