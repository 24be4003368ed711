"""Converters of the Tensor methods autograd does not record but a model's output or a mask
may depend on: comparisons, logical not/and/or, argmax/argmin (registered as Tensor method
converters, so a `dt.where(x > 0, ...)` mask stays computed at run time)."""

from __future__ import annotations

import numpy

from disttrain.onnx.registry import register_tensor_method_converter
from disttrain.tensor import Tensor

_COMPARE = {"__eq__": "Equal", "__ne__": "Equal", "__lt__": "Less", "__le__": "LessOrEqual",
            "__gt__": "Greater", "__ge__": "GreaterOrEqual"}
_ALIASES = {"eq": "__eq__", "ne": "__ne__", "lt": "__lt__", "le": "__le__", "gt": "__gt__",
            "ge": "__ge__", "greater": "__gt__", "greater_equal": "__ge__", "less": "__lt__",
            "less_equal": "__le__", "not_equal": "__ne__"}


def _operands(g, call):
    """ONNX names of self and the other operand, cast to numpy's common dtype."""
    a, b = call.arguments["self"], list(call.arguments.values())[1]
    b_dtype = b.dtype if isinstance(b, Tensor) else numpy.asarray(b).dtype
    dtype = numpy.result_type(a.dtype, b_dtype) if isinstance(b, Tensor) else a.dtype
    names = [g.value(a), g.value(b) if isinstance(b, Tensor) else
             g.constant(numpy.asarray(b, dtype))]
    import onnx

    to = onnx.helper.np_dtype_to_tensor_dtype(numpy.dtype(dtype))
    return [n if d == dtype else g.node("Cast", [n], to=to)
            for n, d in zip(names, (a.dtype, b_dtype))]


def _comparison(name: str):
    op = _COMPARE[name]

    def convert(g, call):
        out = g.node(op, _operands(g, call))
        return g.node("Not", [out]) if name == "__ne__" else out
    return convert


def _comparable(arguments) -> bool:
    other = list(arguments.values())[1]
    return isinstance(other, (Tensor, int, float, bool, numpy.ndarray, numpy.generic))


def _logical(op: str):
    def convert(g, call):
        if call.arguments["self"].dtype != numpy.bool_:
            raise g.error(f"cannot export Tensor.{op.lower()} of a {call.arguments['self'].dtype}"
                          " tensor (only bool tensors)")
        return g.node(op, _operands(g, call))
    return convert


def _invert(g, call):
    if call.arguments["self"].dtype != numpy.bool_:
        raise g.error("cannot export ~ of a non-bool tensor")
    return g.node("Not", [g.value(call.arguments["self"])])


def _arg(op: str):
    def convert(g, call):
        x, dim = g.value(call.arguments["self"]), call.arguments["dim"]
        if dim is None:
            return g.node(op, [g.node("Reshape", [x, g.ints([-1])])], axis=0, keepdims=0)
        return g.node(op, [x], axis=dim, keepdims=int(call.arguments["keepdim"]))
    return convert


for _name in _COMPARE:
    register_tensor_method_converter(_name, _comparison(_name), _comparable)
for _alias, _name in _ALIASES.items():
    register_tensor_method_converter(_alias, _comparison(_name), _comparable)
register_tensor_method_converter("__and__", _logical("And"), _comparable)
register_tensor_method_converter("__or__", _logical("Or"), _comparable)
register_tensor_method_converter("__invert__", _invert)
register_tensor_method_converter("argmax", _arg("ArgMax"))
register_tensor_method_converter("argmin", _arg("ArgMin"))
