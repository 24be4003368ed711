"""Tracing for disttrain.onnx.export: runs a forward with Function.apply, Module.__call__ and
the registered functionals swapped for recording versions, and returns the list of Calls.

NOTE: nothing here costs the training hot path anything: the class attributes are swapped only
inside `trace()` and put back in a finally, so Function.apply is untouched otherwise. While
tracing nothing builds an autograd graph (the forward runs as under no_grad) and the Function
objects keep their saved arrays for the converters.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect

from disttrain.autograd import Function
from disttrain.nn.module import Module
from disttrain.onnx import registry
from disttrain.onnx.registry import Call
from disttrain.tensor import Tensor

# NOTE: where the functionals are looked up at call time: layers call F.<name> through
# disttrain.nn.functional, composites call each other through their defining module's globals
_FUNCTIONAL_HOMES = ("disttrain.functional", "disttrain.nn.functional", "disttrain.functional_norm",
                     "disttrain.functional_resample", "disttrain.functional_conv",
                     "disttrain.functional_attention")


class _State:
    active = False
    calls: list = []
    stack: list = []  # (path, type name) of the modules running
    suspended = 0  # > 0 inside a module/functional a converter exports whole
    names: dict = {}  # id(module) -> dotted path


def flatten_tensors(value) -> list:
    """The Tensors of a (nested) tuple/list/dict result, depth-first, None and others dropped."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in flatten_tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in flatten_tensors(item)]
    return []


def _where() -> tuple[str, str]:
    return _State.stack[-1] if _State.stack else ("", "")


def _record(kind, target, inputs, result, **extra) -> None:
    path, module_type = _where()
    _State.calls.append(Call(kind, target, inputs, flatten_tensors(result), result=result,
                             path=path, module_type=module_type, **extra))


def _traced_apply(cls, *inputs, **params):
    ctx = cls()
    ctx.needs_input_grad = (False,) * len(inputs)
    out = ctx.forward(*[t.array for t in inputs], **params)
    ctx.shape = out.shape
    result = Tensor._make(out)
    if not _State.suspended:
        _record("function", ctx, list(inputs), result, params=params)
    return result


def _traced_call(original):
    def call(self, *args, **kwargs):
        found = None if _State.suspended else registry.module_converter(type(self))
        path = _State.names.get(id(self), f"{_where()[0]}.?")
        _State.stack.append((path, type(self).__name__))
        try:
            if found is not None:
                converter, when = found
                bound = {"args": args, "kwargs": kwargs}
                if when is None or when(self, bound):
                    return _whole(original, (self, *args), kwargs, "module", self,
                                  converter=converter)
            return original(self, *args, **kwargs)
        finally:
            _State.stack.pop()
    return call


def _whole(fn, args, kwargs, kind, target, converter, arguments=None):
    """Runs fn untraced and records it as one call for `converter`."""
    _State.suspended += 1
    try:
        result = fn(*args, **kwargs)
    finally:
        _State.suspended -= 1
    arguments = arguments if arguments is not None else {"args": args[1:], "kwargs": kwargs}
    inputs = flatten_tensors(list(arguments.values()))
    _record(kind, target, inputs, result, arguments=arguments, params={"converter": converter})
    return result


def _traced_functional(name, original, converter, when, kind="functional"):
    signature = inspect.signature(original)

    def functional(*args, **kwargs):
        if _State.suspended:
            return original(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        if when is not None and not when(bound.arguments):
            return original(*args, **kwargs)
        return _whole(original, args, kwargs, kind, name, converter,
                      arguments=dict(bound.arguments))
    functional.__wrapped__ = original
    return functional


def _functional_patches() -> list:
    """(module, name, original, replacement) for every registered functional, in every module
    that holds it."""
    patches = []
    for name, (converter, when) in registry.functional_converters().items():
        base = getattr(importlib.import_module("disttrain.nn.functional"), name, None)
        if base is None:
            raise ValueError(f"onnx: register_functional_converter names {name!r}, which "
                             "disttrain.nn.functional does not have")
        replacement = _traced_functional(name, base, converter, when)
        for home in _FUNCTIONAL_HOMES:
            module = importlib.import_module(home)
            if getattr(module, name, None) is base:
                patches.append((module, name, base, replacement))
    return patches


def _method_patches() -> list:
    """(Tensor, name, original or None, replacement) for every registered Tensor method."""
    patches = []
    for name, (converter, when) in registry.tensor_method_converters().items():
        original = getattr(Tensor, name)
        replacement = _traced_functional(name, original, converter, when, kind="method")
        patches.append((Tensor, name, Tensor.__dict__.get(name), replacement))
    return patches


@contextlib.contextmanager
def trace(model: Module):
    """Records every Function, registered module and registered functional the forward runs
    inside the block; yields the list the Calls are appended to."""
    if _State.active:
        raise RuntimeError("onnx.export: already exporting (export is not reentrant or "
                           "thread-safe)")
    patches = _functional_patches() + _method_patches()
    original_apply, original_call = Function.__dict__["apply"], Module.__call__
    _State.active, _State.calls, _State.stack, _State.suspended = True, [], [], 0
    _State.names = {id(m): name for name, m in model.named_modules()}
    Function.apply = classmethod(_traced_apply)
    Module.__call__ = _traced_call(original_call)
    for module, name, _, replacement in patches:
        setattr(module, name, replacement)
    try:
        yield _State.calls
    finally:
        Function.apply, Module.__call__ = original_apply, original_call
        for owner, name, base, _ in patches:
            if base is None:  # NOTE: a Tensor method inherited from a mixin: unshadow it
                delattr(owner, name)
            else:
                setattr(owner, name, base)
        _State.active, _State.names, _State.stack = False, {}, []
