"""The free functions that call a Tensor method of the same name (`dt.exp(x)` is `x.exp()`),
as torch.exp and friends do. Nothing here is an op of its own."""

from __future__ import annotations

from disttrain.tensor import Tensor
from disttrain.tensor import matmul as _matmul


def _method(name: str):
    def fn(input: Tensor, *args, out: Tensor | None = None, **kwargs) -> Tensor:
        return write_out(name, getattr(input, name)(*args, **kwargs), out)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"dt.{name}(x, ..., out=None) is x.{name}(...) (written into `out` if given)"
    return fn


def write_out(name: str, result: Tensor, out: Tensor | None) -> Tensor:
    """torch's `out=`: the result is stored in `out` (resized as needed), which is returned."""
    if out is None:
        return result
    if not isinstance(out, Tensor):
        raise TypeError(f"{name}(): out should be a Tensor, got {type(out).__name__}")
    if result.requires_grad or out.requires_grad:
        raise RuntimeError(f"{name}(): functions with out=... arguments don't support automatic "
                           "differentiation, but one of the arguments requires grad")
    out.array = result.array if out.dtype == result.dtype else result.array.astype(out.dtype)
    return out


def matmul(input: Tensor, other: Tensor, *, out: Tensor | None = None) -> Tensor:
    """dt.matmul(a, b, out=None): a @ b with torch's rules (1-d, batched, broadcast)."""
    return write_out("matmul", _matmul(input, other), out)


__all__ = [
    "exp", "log", "sqrt", "abs", "sum", "mean", "max", "min", "argmax", "argmin", "clamp",
    "flatten", "reshape", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "transpose",
    "permute", "squeeze", "unsqueeze", "var", "std", "pow", "sin", "cos", "tril", "triu",
    "bmm", "baddbmm", "narrow", "masked_fill", "eq", "ne", "lt", "le", "gt", "ge", "equal",
    "add", "sub", "mul", "div", "maximum", "minimum", "lerp", "addcmul", "addcdiv", "mm",
    "topk", "sort", "argsort", "matmul", "norm", "neg", "floor", "ceil", "round", "trunc",
    "reciprocal", "rsqrt", "square", "sign", "amax", "amin", "prod", "cumsum", "logsumexp",
    "any", "all",
]  # fmt: skip

exp, log, sqrt, abs, sum, mean, max, min = (  # noqa: A001
    _method(n) for n in ("exp", "log", "sqrt", "abs", "sum", "mean", "max", "min"))
argmax, argmin, clamp, flatten, reshape, relu = (
    _method(n) for n in ("argmax", "argmin", "clamp", "flatten", "reshape", "relu"))
sigmoid, tanh, softmax, log_softmax, transpose, permute = (
    _method(n) for n in ("sigmoid", "tanh", "softmax", "log_softmax", "transpose", "permute"))
squeeze, unsqueeze, var, std, pow = (
    _method(n) for n in ("squeeze", "unsqueeze", "var", "std", "pow"))
sin, cos, tril, triu, bmm, baddbmm, narrow, masked_fill = (
    _method(n) for n in ("sin", "cos", "tril", "triu", "bmm", "baddbmm", "narrow", "masked_fill"))
eq, ne, lt, le, gt, ge, equal = (
    _method(n) for n in ("eq", "ne", "lt", "le", "gt", "ge", "equal"))
add, sub, mul, div, maximum, minimum, lerp = (
    _method(n) for n in ("add", "sub", "mul", "div", "maximum", "minimum", "lerp"))
addcmul, addcdiv, mm, topk, sort, argsort = (
    _method(n) for n in ("addcmul", "addcdiv", "mm", "topk", "sort", "argsort"))
norm, neg, floor, ceil, round, trunc, reciprocal = (  # noqa: A001
    _method(n) for n in ("norm", "neg", "floor", "ceil", "round", "trunc", "reciprocal"))
rsqrt, square, sign, amax, amin, prod, cumsum = (
    _method(n) for n in ("rsqrt", "square", "sign", "amax", "amin", "prod", "cumsum"))
logsumexp, any, all = (_method(n) for n in ("logsumexp", "any", "all"))  # noqa: A001
