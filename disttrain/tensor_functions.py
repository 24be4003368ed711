"""The free functions that call a Tensor method of the same name (`dt.exp(x)` is `x.exp()`),
as torch.exp and friends do. Nothing here is an op of its own."""

from __future__ import annotations

from disttrain.tensor import Tensor


def _method(name: str):
    def fn(input: Tensor, *args, **kwargs) -> Tensor:
        return getattr(input, name)(*args, **kwargs)

    fn.__name__ = fn.__qualname__ = name
    fn.__doc__ = f"dt.{name}(x, ...) is x.{name}(...)"
    return fn


__all__ = [
    "exp", "log", "sqrt", "abs", "sum", "mean", "max", "min", "argmax", "argmin", "clamp",
    "flatten", "reshape", "relu", "sigmoid", "tanh", "softmax", "log_softmax", "transpose",
    "permute", "squeeze", "unsqueeze", "var", "std", "pow", "sin", "cos", "tril", "triu",
    "bmm", "baddbmm", "narrow", "masked_fill", "eq", "ne", "lt", "le", "gt", "ge", "equal",
    "add", "sub", "mul", "div", "maximum", "minimum", "lerp", "addcmul", "addcdiv", "mm",
    "topk", "sort", "argsort",
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
