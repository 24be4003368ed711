"""GraphBuilder: the ONNX graph under construction, as the converters see it.

Values are named strings; every Tensor the traced forward touched maps to one (graph inputs,
node outputs, initializers). A Tensor no traced call produced is a leaf: a parameter or buffer
becomes an initializer under its state_dict name, anything else a constant initializer.
"""

from __future__ import annotations

import numpy

from disttrain.backend import asnumpy


class ExportError(RuntimeError):
    """A model or argument disttrain.onnx.export cannot turn into ONNX."""


class GraphBuilder:
    """Nodes, initializers and the Tensor -> value-name map of one export.

    Args:
        opset: the ONNX opset the converters target (read `g.opset` to pick forms).
        leaf_names: {id(array): state_dict name} of the model's parameters and buffers.
    """

    def __init__(self, opset: int, leaf_names: dict):
        self.opset, self.leaf_names = opset, leaf_names
        self.nodes: list = []  # (op_type, inputs, outputs, attrs)
        self.initializers: dict = {}  # name -> numpy array
        self._by_tensor: dict = {}  # id(Tensor) -> name
        self._by_array: dict = {}  # id(array) -> name (a .detach() or .data shares the array)
        self._alive: list = []  # keeps the mapped Tensors alive so no id is reused
        self._used: set = set()
        self._reserved: dict = {}  # id(Tensor) -> name promised by value_later
        self.produced: set = set()  # ids of the Tensors some converted call will produce
        self.call = None  # the Call being converted (for error messages)
        self.twin_shapes: dict = {}  # id(value) -> its shape in the second run (onnx.dynamic)
        self.varying: dict = {}  # constant name -> (shape, Call): it fixes a dynamic size

    # ------------------------------------------------------------------ names
    def fresh(self, hint: str) -> str:
        """A value name not used yet, from `hint`."""
        name, i = hint, 1
        while name in self._used:
            name, i = f"{hint}_{i}", i + 1
        self._used.add(name)
        return name

    def bind(self, tensor, name: str) -> None:
        """Makes `name` the ONNX value of `tensor` (and of its array)."""
        promised = self._reserved.pop(id(tensor), None)
        if promised is not None and promised != name:
            self.nodes.append(("Identity", [name], [promised], {}))
        self._by_tensor[id(tensor)] = name
        self._by_array.setdefault(id(tensor.array), name)
        self._alive.append(tensor)

    def known(self, tensor) -> bool:
        return id(tensor) in self._by_tensor or id(tensor.array) in self._by_array

    def value_later(self, tensor) -> str | None:
        """The name of a Tensor a call later in the trace produces (a forward reference; the
        nodes are sorted topologically when the model is built), or None if none does."""
        if self.known(tensor):
            return self.value(tensor)
        if id(tensor) not in self.produced:
            return None
        if id(tensor) not in self._reserved:
            self._reserved[id(tensor)] = self.fresh("pending")
            self._alive.append(tensor)
        return self._reserved[id(tensor)]

    def known_array(self, array) -> bool:
        """True when `array` (or the array it broadcasts) belongs to a Tensor the trace
        has named."""
        return self._named_base(array) is not None

    def _named_base(self, array):
        """The name of `array`, or of the array it is a broadcast view of (dt.where and
        masked_fill broadcast their condition): ONNX broadcasts it the same way."""
        while array is not None:
            name = self._by_array.get(id(array))
            if name is not None:
                return name
            base = getattr(array, "base", None)
            if not _broadcasts(base, array):
                return None
            array = base
        return None

    def value(self, tensor) -> str:
        """The ONNX name of a Tensor; a leaf becomes an initializer on first use."""
        name = self._by_tensor.get(id(tensor)) or self._by_array.get(id(tensor.array))
        if name is None:
            leaf = self.leaf_names.get(id(tensor.array))
            name = self.initializer(asnumpy(tensor.array), leaf or "const")
            self.note_constant(tensor, name)
            self.bind(tensor, name)
        return name

    def note_constant(self, source, name: str) -> None:
        """Remembers constant `name` (made from the Tensor or array `source`) if its shape
        differs in the second run: the file would fix a dynamic size (an error if used)."""
        shape = tuple(source.shape)
        other = self.twin_shapes.get(id(source))
        if other is not None and tuple(other) != shape:
            self.varying[name] = (shape, self.call)

    def array_value(self, array) -> str:
        """The ONNX name of an array a call got as a keyword argument (an index, a mask): the
        Tensor it belongs to if the trace saw one, else a constant."""
        name = self._named_base(array)
        if name is not None:
            return name
        leaf = self.leaf_names.get(id(array))
        name = self.initializer(asnumpy(array), leaf or "const")
        self.note_constant(array, name)
        return name

    # ------------------------------------------------------------------ constants
    def initializer(self, array, name: str) -> str:
        """Adds `array` as an initializer named `name` (made unique); returns the name."""
        name = self.fresh(name)
        self.initializers[name] = numpy.asarray(asnumpy(array))
        return name

    def constant(self, value, dtype=None, name: str = "const") -> str:
        """A constant initializer from a Python number, list or array."""
        return self.initializer(numpy.asarray(value, dtype=dtype), name)

    def ints(self, values, name: str = "const") -> str:
        """A 1-D int64 constant (shapes, axes, pads)."""
        return self.constant(numpy.asarray(list(values), numpy.int64).reshape(-1), name=name)

    def const_value(self, name: str):
        """The array of a constant value, or None when `name` is computed at run time."""
        return self.initializers.get(name)

    def is_constant(self, tensor) -> bool:
        """True when `tensor` is a leaf that is neither a graph input nor a node output."""
        if self.known(tensor):
            return self.const_value(self.value(tensor)) is not None
        return True

    # ------------------------------------------------------------------ nodes
    def node(self, op_type: str, inputs, outputs: int = 1, name: str | None = None,
             **attrs):
        """Adds a node; returns its output name (or the list of names when outputs > 1).

        Inputs are value names ('' for an omitted optional input); attributes are keywords
        (None values are left out)."""
        hint = name or op_type.lower()
        names = [self.fresh(hint) for _ in range(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        inputs = list(inputs)
        while inputs and not inputs[-1]:  # NOTE: omitted trailing optional inputs are left off
            inputs.pop()
        self.nodes.append((op_type, inputs, names, attrs))
        return names[0] if outputs == 1 else names

    def error(self, message: str) -> ExportError:
        """An ExportError naming where the call being converted ran."""
        where = f" (produced inside {self.call.where()})" if self.call is not None else ""
        return ExportError(f"onnx.export: {message}{where}")


def _broadcasts(base, view) -> bool:
    """True when `view` is numpy's broadcast_to of `base` (same rank, zero strides where a
    size-1 dim was stretched, base's strides elsewhere)."""
    if base is None or getattr(base, "ndim", None) != view.ndim:
        return False
    for a, b, sa, sb in zip(view.shape, base.shape, view.strides, base.strides):
        if not (a == b and (sa == sb or a == 1)) and not (b == 1 and sa == 0):
            return False
    return True
