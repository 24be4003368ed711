"""The converter registries of disttrain.onnx.export: the extension point other modules use to
export their own Function and Module classes (e.g. disttrain.quantization's int8 layers).

Three kinds of converter, each looked up while the exporter walks what the traced forward did:

- function converters, per Function class: `fn(g, inputs, call) -> str`, the ONNX name of the
  one output. `inputs` are the ONNX names of `call.inputs` (the Tensors given to apply).
- module converters, per Module class (subclasses too: the nearest registered class in the
  MRO wins): the module is run untraced and `fn(g, module, call)` emits nodes for the whole
  call; it returns the ONNX names of `call.outputs` (the Tensors of the result, flattened in
  order: tuples and lists depth-first, None dropped), a str for a single one.
- functional converters, per function of disttrain.functional (by name): like module
  converters for composites whose graph holds data-dependent constants (leaky_relu's condition,
  embedding's indices). `fn(g, call)`; `call.arguments` holds the bound arguments.
- Tensor method converters, per method name, for results autograd does not record
  (comparisons, argmax): `fn(g, call)` as functional converters, "self" the first argument.

`g` is the GraphBuilder (disttrain.onnx.graph): `g.value(tensor)` names any Tensor,
`g.node(op_type, inputs, **attrs)` adds a node, `g.constant(array)` an initializer,
`g.initializer(array, name)` a named one, `g.const_value(name)` reads a constant back.
Importing this module does not import the onnx package.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_FUNCTIONS: dict = {}
_MODULES: dict = {}
_FUNCTIONALS: dict = {}
_METHODS: dict = {}


@dataclass
class Call:
    """One recorded step of the traced forward.

    kind: "function", "module" or "functional"; target: the Function instance (after its
    forward ran: attributes it set are there), the Module, or the function's name; inputs: the
    Tensors given (function calls) or found in the arguments; params: the keyword arguments of
    Function.apply; arguments: the bound arguments of a module's or functional's call;
    outputs: the result's Tensors, flattened; result: the result as returned; path: the dotted
    module path it ran in ('' is the exported model), module_type: that module's class name;
    twin: with dynamic axes, this call in a second run on inputs one larger along them.
    """

    kind: str
    target: object
    inputs: list
    outputs: list
    params: dict = field(default_factory=dict)
    arguments: dict = field(default_factory=dict)
    result: object = None
    path: str = ""
    module_type: str = ""
    twin: object = None  # the same call in the export's second run (see onnx.dynamic)

    @property
    def output(self):
        return self.outputs[0]

    def where(self) -> str:
        """'module 'features.3' (Conv2d)': where the call happened, for error messages."""
        return f"module '{self.path or '<root>'}' ({self.module_type})"


def register_function_converter(function_class: type, converter) -> None:
    """Exports every `function_class.apply(...)` of a traced forward with `converter`.

    Args:
        function_class: a disttrain.autograd.Function subclass.
        converter: `fn(g, inputs: list[str], call: Call) -> str`: adds the nodes computing the
            output from the ONNX values `inputs` and returns the output's ONNX name.

    Example:
        >>> def scale(g, inputs, call):
        ...     factor = g.constant(numpy.float32(call.params["factor"]))
        ...     return g.node("Mul", [inputs[0], factor])
        >>> register_function_converter(MyScale, scale)
    """
    _check_class("register_function_converter", function_class, "function_class")
    _FUNCTIONS[function_class] = _checked(converter)


def register_module_converter(module_class: type, converter, when=None) -> None:
    """Exports every call of a `module_class` module (and subclasses) with `converter` instead
    of tracing inside it.

    Args:
        module_class: a disttrain.nn.Module subclass (e.g. quantization's QuantizedLinear).
        converter: `fn(g, module, call: Call) -> str | list[str]`: ONNX names of call.outputs.
        when: optional `fn(module, call) -> bool`; False traces inside the module instead.

    Example:
        >>> def qlinear(g, module, call):
        ...     w = g.initializer(module.weight_int8, call.path + ".weight")
        ...     ...
        ...     return g.node("MatMulInteger", [x, w])
        >>> register_module_converter(QuantizedLinear, qlinear)
    """
    _check_class("register_module_converter", module_class, "module_class")
    _MODULES[module_class] = (_checked(converter), when)


def register_functional_converter(name: str, converter, when=None) -> None:
    """Exports calls of the disttrain.functional function `name` (also reached as
    disttrain.nn.functional.<name>) with `converter(g, call)`; `when(call.arguments) -> bool`
    may decline (the call is then traced)."""
    if not isinstance(name, str):
        raise TypeError(f"register_functional_converter: name must be a str, got {name!r}")
    _FUNCTIONALS[name] = (_checked(converter), when)


def register_tensor_method_converter(name: str, converter, when=None) -> None:
    """Exports calls of the Tensor method `name` whose result autograd does not record
    (comparisons, argmax, logical ops) with `converter(g, call)`; `call.arguments` holds the
    bound arguments, "self" first. `when(call.arguments) -> bool` may decline (the result is
    then a constant of the export)."""
    if not isinstance(name, str):
        raise TypeError(f"register_tensor_method_converter: name must be a str, got {name!r}")
    _METHODS[name] = (_checked(converter), when)


def tensor_method_converters() -> dict:
    return dict(_METHODS)


def function_converter(function_class: type):
    for cls in function_class.__mro__:
        if cls in _FUNCTIONS:
            return _FUNCTIONS[cls]
    return None


def module_converter(module_class: type):
    """(converter, when) of the nearest registered class in the MRO, or None."""
    for cls in module_class.__mro__:
        if cls in _MODULES:
            return _MODULES[cls]
    return None


def functional_converters() -> dict:
    return dict(_FUNCTIONALS)


def _check_class(op: str, value, name: str) -> None:
    if not isinstance(value, type):
        raise TypeError(f"{op}: {name} must be a class, got {value!r}")


def _checked(converter):
    if not callable(converter):
        raise TypeError(f"onnx: a converter must be callable, got {converter!r}")
    return converter
