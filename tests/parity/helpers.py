"""Parity helpers against torch (tinygrad's helper_test_op): the same float32 inputs go to
disttrain and torch; forward values, shapes and dtypes, then input and parameter gradients,
must agree. Import after `pytest.importorskip("torch")`.

A case function takes a library namespace `m` first (`DT(device)` or `TORCH`) so that one
lambda drives both libraries where their APIs match: `m.F` is nn.functional, `m.nn` the
modules, `m.cat`/`m.stack`/`m.where`/`m.matmul` the free functions, `m.float64` a dtype and
`m.const(array)` a constant tensor (float arrays become float32, as the inputs).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy
import torch

import disttrain as dt
import disttrain.nn  # noqa: F401  NOTE: `import disttrain` does not load disttrain.nn
from disttrain import backend

FORWARD_TOL = dict(atol=1e-6, rtol=1e-3)
GRAD_TOL = dict(atol=1e-4, rtol=1e-3)


def _const_array(value) -> numpy.ndarray:
    a = numpy.array(value, order="C")
    return a.astype(numpy.float32) if a.dtype.kind == "f" else a


def DT(device: str = "cpu") -> SimpleNamespace:
    return SimpleNamespace(
        name="disttrain", F=dt.nn.functional, nn=dt.nn, cat=dt.cat, stack=dt.stack,
        where=dt.where, matmul=dt.matmul, float64=dt.float64, float32=dt.float32,
        const=lambda v: dt.tensor(_const_array(v), device=device))


TORCH = SimpleNamespace(
    name="torch", F=torch.nn.functional, nn=torch.nn, cat=torch.cat, stack=torch.stack,
    where=torch.where, matmul=torch.matmul, float64=torch.float64, float32=torch.float32,
    const=lambda v: torch.tensor(_const_array(v)))


def make_inputs(shapes, domain: str = "normal", seed: int = 0) -> list[numpy.ndarray]:
    """float32 arrays: "normal" N(0, 1); "positive" U(0.5, 2); "distinct" a shuffled grid
    0.1 apart (no ties, none at 0 or at a clamp bound); "ties" multiples of 0.5 in [-1, 1]
    (zeros and ties on purpose, to compare the subgradient choices with torch)."""
    rng = numpy.random.default_rng(seed)
    arrays = []
    for shape in shapes:
        n = int(numpy.prod(shape))
        if domain == "normal":
            a = rng.standard_normal(shape)
        elif domain == "positive":
            a = rng.uniform(0.5, 2.0, shape)
        elif domain == "distinct":
            a = ((rng.permutation(n) - n // 2) * 0.1 + 0.03).reshape(shape)
        elif domain == "ties":
            a = rng.integers(-2, 3, shape) * 0.5
        else:
            raise ValueError(f"make_inputs: unknown domain {domain!r}")
        arrays.append(numpy.asarray(a, numpy.float32))
    return arrays


def torch_dtype(t: torch.Tensor) -> numpy.dtype:
    return numpy.dtype(str(t.dtype).removeprefix("torch."))


def to_numpy(x) -> numpy.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().numpy()
    return backend.asnumpy(x.array if isinstance(x, dt.Tensor) else x)


def assert_same(ours, theirs, what: str, tol: dict) -> None:
    """Shape, dtype and values of a disttrain tensor/array against a torch tensor."""
    assert tuple(ours.shape) == tuple(theirs.shape), \
        f"{what}: shape {tuple(ours.shape)} != torch {tuple(theirs.shape)}"
    assert numpy.dtype(ours.dtype) == torch_dtype(theirs), \
        f"{what}: dtype {ours.dtype} != torch {theirs.dtype}"
    numpy.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), err_msg=what, **tol)


def _outputs(out) -> list:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _backward(outs, grads_out) -> None:
    """Backpropagates the same upstream gradients through every float output."""
    pairs = [(o, g) for o, g in zip(outs, grads_out, strict=True)
             if g is not None and o.requires_grad]
    if not pairs:
        return
    if len(pairs) == 1:
        o, g = pairs[0]
        o.backward(g)
        return
    total = sum((o * g).sum() for o, g in pairs)
    total.backward()


def compare_outputs_and_backward(ours, theirs, seed: int = 1, forward_tol=None,
                                 backward: bool = True) -> None:
    """Compares each output, then runs backward on both with one random upstream gradient per
    float output (not `.sum()`, which would hide errors that cancel)."""
    ours, theirs = _outputs(ours), _outputs(theirs)
    assert len(ours) == len(theirs), f"{len(ours)} outputs, torch has {len(theirs)}"
    for i, (o, t) in enumerate(zip(ours, theirs, strict=True)):
        assert_same(o, t, f"forward output {i}", forward_tol or FORWARD_TOL)
    if not backward:
        return
    rng = numpy.random.default_rng(seed)
    gys = [rng.standard_normal(t.shape).astype(torch_dtype(t)) if t.dtype.is_floating_point
           else None for t in theirs]
    _backward(ours, [None if g is None else dt.tensor(g, device=o.device)
                     for o, g in zip(ours, gys, strict=True)])
    _backward(theirs, [None if g is None else torch.from_numpy(g) for g in gys])


def assert_grads(ours: dict, theirs: dict, tol=None) -> None:
    """{name: disttrain tensor} vs {name: torch tensor}: the same names, and equal .grad."""
    assert list(ours) == list(theirs), f"names {list(ours)} != torch {list(theirs)}"
    for name in ours:
        g, tg = ours[name].grad, theirs[name].grad
        assert (g is None) == (tg is None), \
            f"grad of {name}: {'None' if g is None else 'set'}, torch {tg!r}"
        if g is not None:
            assert_same(g, tg, f"grad of {name}", tol or GRAD_TOL)


def helper_test_op(shapes, fn, torch_fn=None, *, domain: str = "normal", device: str = "cpu",
                   forward_tol=None, grad_tol=None, backward: bool = True) -> None:
    """Runs fn(DT, *x) and (torch_fn or fn)(TORCH, *x) on the same float32 inputs, each a
    leaf requiring grad, and compares outputs (shape, dtype, values) and input gradients."""
    arrays = make_inputs(shapes, domain)
    ours = [dt.tensor(a, device=device, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out, torch_out = fn(DT(device), *ours), (torch_fn or fn)(TORCH, *theirs)
    compare_outputs_and_backward(out, torch_out, forward_tol=forward_tol, backward=backward)
    if backward:
        assert_grads({f"input {i}": t for i, t in enumerate(ours)},
                     {f"input {i}": t for i, t in enumerate(theirs)}, grad_tol)


def state_layout(module) -> list[tuple[str, tuple, numpy.dtype]]:
    """[(state_dict key, shape, dtype)] of a disttrain or torch module."""
    return [(k, tuple(v.shape), numpy.dtype(v.dtype) if isinstance(v, numpy.ndarray)
             else torch_dtype(v)) for k, v in module.state_dict().items()]


def assert_same_state(ours, theirs, tol=None) -> None:
    """Every state_dict entry (parameters and buffers, e.g. BatchNorm running stats)."""
    sd, torch_sd = ours.state_dict(), theirs.state_dict()
    assert list(sd) == list(torch_sd), f"state_dict keys {list(sd)} != torch {list(torch_sd)}"
    for key in sd:
        assert_same(sd[key], torch_sd[key], f"state_dict[{key!r}]", tol or FORWARD_TOL)


def _layer_inputs(shapes, domain, seed, int_high, device):
    if int_high is not None:  # integer inputs (Embedding): no gradient
        rng = numpy.random.default_rng(seed)
        arrays = [rng.integers(0, int_high, shape) for shape in shapes]
        return [dt.tensor(a, device=device) for a in arrays], [torch.tensor(a) for a in arrays]
    arrays = make_inputs(shapes, domain, seed)
    return ([dt.tensor(a, device=device, requires_grad=True) for a in arrays],
            [torch.tensor(a, requires_grad=True) for a in arrays])


def helper_test_layer(make, shapes, *, domain: str = "normal", training: bool = True,
                      steps: int = 1, then_eval: bool = False, int_high: int | None = None,
                      device: str = "cpu", forward_tol=None, grad_tol=None) -> None:
    """Builds `make(dt.nn)` and `make(torch.nn)`, checks their state_dict layouts agree, copies
    disttrain's state into torch, then for each of `steps` steps (new inputs each) compares the
    output, input and parameter gradients and the whole state (running stats included);
    `then_eval` repeats one step in eval mode."""
    ours, theirs = make(dt.nn), make(torch.nn)
    layout, torch_layout = state_layout(ours), state_layout(theirs)
    assert layout == torch_layout, f"state_dict layout {layout} != torch {torch_layout}"
    theirs.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    ours.to(device)
    modes = [training] * steps + ([False] if then_eval else [])
    for step, mode in enumerate(modes):
        ours.train(mode), theirs.train(mode)
        xs, txs = _layer_inputs(shapes, domain, step, int_high, device)
        compare_outputs_and_backward(ours(*xs), theirs(*txs), seed=100 + step,
                                     forward_tol=forward_tol)
        assert_grads({f"input {i}": x for i, x in enumerate(xs)},
                     {f"input {i}": x for i, x in enumerate(txs)}, grad_tol)
        assert_grads(dict(ours.named_parameters()), dict(theirs.named_parameters()), grad_tol)
        assert_same_state(ours, theirs)
        ours.zero_grad(), theirs.zero_grad()
