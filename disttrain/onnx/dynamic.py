"""The second trace of an export with dynamic axes: the forward again on inputs one larger
along every dynamic axis, paired call by call with the first (`call.twin`). What differs
between the twins is what depends on those axes: a Reshape target's dims (so it can use 0 / -1
exactly where needed) and constants that would fix a dynamic size (an error, not a wrong file).
"""

from __future__ import annotations

import numpy

from disttrain.backend import get_array_module
from disttrain.onnx.trace import trace
from disttrain.tensor import Tensor


def _grow(tensor: Tensor, axes) -> Tensor:
    """`tensor` one larger along each of `axes` (its first slice repeated: ids stay valid)."""
    array = tensor.array
    xp = get_array_module(array)
    for axis in axes:
        array = xp.concatenate([array, xp.take(array, [0], axis=axis)], axis=axis)
    return Tensor._make(array)


def _key(call):
    target = call.target if call.kind != "function" else type(call.target)
    return call.kind, target if isinstance(target, (str, type)) else id(target)


def pair_second_trace(model, args: tuple, kwargs: dict, named_inputs: dict, dynamic: dict,
                      calls: list) -> bool:
    """Runs the forward on grown inputs and sets each call's `twin`; False (and no twins)
    when there is no dynamic input axis, or the second run fails or takes another path."""
    grown = {id(t): _grow(t, sorted(dynamic[name])) for name, t in named_inputs.items()
             if dynamic.get(name)}
    if not grown:
        return False
    swap = lambda v: grown.get(id(v), v) if isinstance(v, Tensor) else v  # noqa: E731
    try:
        with trace(model) as second:
            model(*[swap(a) for a in args], **{k: swap(v) for k, v in kwargs.items()})
    except Exception:  # NOTE: e.g. a position table too short for the longer input
        return False
    if len(second) != len(calls) or any(_key(a) != _key(b) or len(a.outputs) !=
                                        len(b.outputs) for a, b in zip(calls, second)):
        return False
    for a, b in zip(calls, second):
        a.twin = b
    return True


def twin_shapes(call) -> dict:
    """{id(value): shape in the second run} for the call's input Tensors and array
    parameters (what a converter may turn into constants)."""
    twin = call.twin
    if twin is None:
        return {}
    shapes = {id(a): numpy.shape(b.array) for a, b in zip(call.inputs, twin.inputs)
              if len(call.inputs) == len(twin.inputs)}
    for key, value in call.params.items():
        other = twin.params.get(key)
        if hasattr(value, "shape") and hasattr(other, "shape"):
            shapes[id(value)] = tuple(other.shape)
    return shapes
