"""disttrain.onnx.export: trace a model's forward in eval mode, convert every recorded call with
its registered converter, and write the ONNX model (checked by onnx.checker)."""

from __future__ import annotations

import os

import numpy

from disttrain.backend import asnumpy
from disttrain.nn.module import Module
from disttrain.onnx import registry
from disttrain.onnx.dynamic import pair_second_trace, twin_shapes
from disttrain.onnx.graph import ExportError, GraphBuilder
from disttrain.onnx.trace import flatten_tensors, trace
from disttrain.tensor import Tensor

MIN_OPSET = 13


def export(model: Module, args, f, export_params: bool = True, verbose: bool = False,
           input_names=None, output_names=None, opset_version: int = 17,
           do_constant_folding: bool = True, dynamic_axes=None, *, kwargs=None):
    """Exports `model` to ONNX, as torch.onnx.export (the TorchScript exporter's signature).

    The forward runs once in eval mode (each module's mode is restored after) on `args`; every
    primitive op it applies becomes ONNX nodes, parameters and buffers become initializers
    named by their state_dict names, and the result is checked with onnx.checker.

    Args:
        model: the Module to export.
        args: the example input: a Tensor or a tuple of forward's positional arguments (a
            trailing dict is taken as keyword arguments, as torch).
        f: a path (str or os.PathLike) or a binary file object the model is written to.
        export_params: must be True (weights are stored in the file).
        verbose: print the graph (onnx.printer's text form) after export.
        input_names, output_names: names of the graph's inputs (the Tensors of args, in
            order) and outputs (the Tensors of the result, flattened); default input_0.. and
            output_0.. (input / output when there is one).
        opset_version: the ONNX opset, 13 up to what the installed onnx knows (default 17).
        do_constant_folding: compute ops whose inputs are all constants at export time.
        dynamic_axes: {name: {axis: dim_name}} or {name: [axis, ...]} for inputs and outputs
            whose size may change at run time (typically the batch axis 0). The forward then
            runs a second time on inputs one larger along those axes: the dims that change
            are the dynamic ones (reshapes copy (0) or infer (-1) exactly those), and a
            constant that changes raises instead of fixing the size in the file.
        kwargs: keyword arguments for forward (torch's newer spelling).

    As torch's tracer, the export records one run: Python control flow and values computed
    outside disttrain's ops (numpy on `.array`, `.item()`, `.tolist()`) are fixed constants of
    the file. Comparisons, argmax and logical ops on Tensors are exported as ops.

    Returns:
        the onnx.ModelProto written.

    Raises:
        ExportError: an op or module has no converter (naming it and the module it ran in),
            or an argument is invalid.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
        >>> dt.onnx.export(model, dt.randn(2, 4), "mlp.onnx", input_names=["x"],
        ...                output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": [0]})
    """
    import onnx

    _check_args(model, f, export_params, opset_version, onnx)
    args, kwargs = _split_args(args, kwargs)
    inputs = flatten_tensors(list(args) + list(kwargs.values()))
    input_names = _names("input_names", input_names, len(inputs), "input")
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with trace(model) as calls:
            result = model(*args, **kwargs)
        outputs = flatten_tensors(result)
        if not outputs:
            raise ExportError("onnx.export: the model returned no Tensor to export (got "
                              f"{type(result).__name__})")
        output_names = _names("output_names", output_names, len(outputs), "output")
        dynamic = _dynamic(dynamic_axes, inputs, input_names, outputs, output_names)
        pair_second_trace(model, args, kwargs, dict(zip(input_names, inputs)), dynamic, calls)
    finally:
        for module, mode in modes:
            module.training = mode
    g = GraphBuilder(opset_version, _leaf_names(model))
    g.consumers = _consumers(calls)
    for tensor, name in zip(inputs, input_names):
        g.fresh(name)
        g.bind(tensor, name)
    live = _live(calls, outputs)
    g.produced = {id(t) for call in live for t in call.outputs}
    for call in live:
        _convert(g, call, do_constant_folding)
    g.call = None
    proto = _build(onnx, g, model, inputs, input_names, outputs, output_names, dynamic)
    onnx.checker.check_model(proto)
    if verbose:
        print(onnx.printer.to_text(proto.graph))
    onnx.save_model(proto, os.fspath(f) if isinstance(f, (str, os.PathLike)) else f)
    return proto


def _check_args(model, f, export_params, opset_version, onnx) -> None:
    if not isinstance(model, Module):
        raise TypeError(f"onnx.export: model must be a disttrain.nn.Module, got "
                        f"{type(model).__name__}")
    if not isinstance(f, (str, os.PathLike)) and not hasattr(f, "write"):
        raise TypeError(f"onnx.export: f must be a path or a binary file object, got "
                        f"{type(f).__name__}")
    if export_params is not True:
        raise ValueError("onnx.export: export_params=False is not supported; the weights are "
                         "always stored in the file (pass export_params=True)")
    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset_version, int) or not MIN_OPSET <= opset_version <= newest:
        raise ValueError(f"onnx.export: opset_version must be an int in [{MIN_OPSET}, "
                         f"{newest}], got {opset_version!r}")


def _split_args(args, kwargs) -> tuple[tuple, dict]:
    kwargs = dict(kwargs or {})
    if isinstance(args, (Tensor, numpy.ndarray)) or not isinstance(args, (tuple, list)):
        args = (args,)
    args = tuple(args)
    if args and isinstance(args[-1], dict):
        args, kwargs = args[:-1], {**args[-1], **kwargs}
    args = tuple(Tensor(a) if isinstance(a, numpy.ndarray) else a for a in args)
    if not any(isinstance(a, Tensor) for a in (*args, *kwargs.values())):
        raise ExportError("onnx.export: args must hold at least one Tensor input, got "
                          f"{tuple(type(a).__name__ for a in args)}")
    return args, kwargs


def _names(what: str, names, count: int, default: str) -> list[str]:
    if names is None:
        return [default] if count == 1 else [f"{default}_{i}" for i in range(count)]
    names = list(names)
    if len(names) > count or len(set(names)) != len(names) or \
            not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"onnx.export: {what} must be at most {count} distinct non-empty "
                         f"strings (one per Tensor), got {names}")
    return names + [f"{default}_{i}" for i in range(len(names), count)]


def _leaf_names(model: Module) -> dict:
    leaves = dict(model.named_buffers())
    leaves.update(model.named_parameters())
    return {id(t.array): name for name, t in leaves.items() if t is not None}


def _consumers(calls) -> dict:
    """{id(tensor): [call, ...]}: who reads each traced Tensor (for peepholes like Expand)."""
    consumers: dict = {}
    for call in calls:
        for tensor in call.inputs:
            consumers.setdefault(id(tensor), []).append(call)
    return consumers


def _ids(value) -> list[int]:
    """ids by which a later call may refer to `value`: the Tensor, its array, and for arrays
    (an index, a condition) the arrays they are views of."""
    ids, array = [id(value)], getattr(value, "array", value)
    while hasattr(array, "strides") and hasattr(array, "base"):  # numpy/cupy arrays only
        ids.append(id(array))
        array = array.base
    return ids


def _live(calls, outputs) -> list:
    """The calls the outputs depend on, in order: a traced op nobody reads (a loss, a
    shape check) is neither converted nor required to have a converter."""
    needed = {i for t in outputs for i in _ids(t)}
    live = []
    for call in reversed(calls):
        if not any(i in needed for t in call.outputs for i in (id(t), id(t.array))):
            continue
        live.append(call)
        for value in [*call.inputs, *call.params.values(), *call.arguments.values()]:
            for item in value if isinstance(value, (tuple, list)) else (value,):
                needed.update(_ids(item))
    return live[::-1]


def _convert(g: GraphBuilder, call, fold: bool) -> None:
    g.call, g.twin_shapes = call, twin_shapes(call)
    if fold and _foldable(g, call):
        for i, tensor in enumerate(call.outputs):
            name = g.initializer(asnumpy(tensor.array), "folded")
            if call.twin is not None:
                g.twin_shapes[id(tensor)] = call.twin.outputs[i].shape
                g.note_constant(tensor, name)
            g.bind(tensor, name)
        return
    if call.kind == "function":
        converter = registry.function_converter(type(call.target))
        if converter is None:
            raise g.error(f"cannot export Function '{type(call.target).__name__}': no ONNX "
                          "converter is registered for it (see "
                          "disttrain.onnx.register_function_converter)")
        names = converter(g, [g.value(t) for t in call.inputs], call)
    elif call.kind == "module":
        names = call.params["converter"](g, call.target, call)
    else:
        names = call.params["converter"](g, call)
    names = [names] if isinstance(names, str) else list(names)
    if len(names) != len(call.outputs):
        raise g.error(f"the converter of {_label(call)} returned {len(names)} values for "
                      f"{len(call.outputs)} output Tensors")
    for tensor, name in zip(call.outputs, names):
        g.bind(tensor, name)


def _label(call) -> str:
    if call.kind == "function":
        return f"Function '{type(call.target).__name__}'"
    target = call.target if isinstance(call.target, str) else type(call.target).__name__
    return f"{call.kind} '{target}'"


def _foldable(g: GraphBuilder, call) -> bool:
    """All inputs constant, and the output no larger than them (an Expand to the traced batch
    size must stay an op, so the batch can change)."""
    if not call.inputs or not all(g.is_constant(t) for t in call.inputs):
        return False
    size_in = sum(t.array.size for t in call.inputs)
    return sum(t.array.size for t in call.outputs) <= max(size_in, 1)


def _dynamic(dynamic_axes, inputs, input_names, outputs, output_names) -> dict:
    """{value name: {axis: dim name}} from torch's dynamic_axes forms, validated."""
    if dynamic_axes is None:
        return {}
    ranks = {n: t.ndim for n, t in zip(input_names + output_names, inputs + outputs)}
    out = {}
    for name, axes in dict(dynamic_axes).items():
        if name not in ranks:
            raise ValueError(f"onnx.export: dynamic_axes names {name!r}, which is not an input "
                             f"or output name (inputs {input_names}, outputs {output_names})")
        axes = dict(axes) if isinstance(axes, dict) else \
            {a: f"{name}_dynamic_axes_{i + 1}" for i, a in enumerate(axes)}
        for axis in axes:
            if not isinstance(axis, int) or not -ranks[name] <= axis < ranks[name]:
                raise ValueError(f"onnx.export: dynamic_axes[{name!r}] has axis {axis!r}, "
                                 f"expected an int in [0, {ranks[name]}) for that "
                                 f"{ranks[name]}-D value")
        out[name] = {a % ranks[name]: str(d) for a, d in axes.items()}
    return out


def _value_info(onnx, name, tensor, dynamic):
    dims = [dynamic.get(name, {}).get(i, d) for i, d in enumerate(tensor.shape)]
    elem = onnx.helper.np_dtype_to_tensor_dtype(numpy.dtype(tensor.dtype))
    return onnx.helper.make_tensor_value_info(name, elem, dims)


def _build(onnx, g, model, inputs, input_names, outputs, output_names, dynamic):
    node_outputs = {o for _, _, outs, _ in g.nodes for o in outs}
    rename = {}
    for tensor, name in zip(outputs, output_names):
        value = g.value(tensor)
        if value in node_outputs and value not in rename:
            rename[value] = name
        else:
            g.nodes.append(("Identity", [value], [name], {}))
    nodes = _live_nodes(g.nodes, set(rename.values()) | set(output_names), rename)
    used = {i for _, ins, _, _ in nodes for i in ins}
    for name in sorted(used & set(g.varying)):
        shape, g.call = g.varying[name]
        raise g.error(f"a constant of shape {shape} would fix a dynamic axis: it changes "
                      "size with the dynamic input axes but is computed outside disttrain's "
                      "ops (numpy on .array, a Tensor made from a shape); compute it with "
                      "Tensor ops from the input, or leave that axis static")
    helper = onnx.helper
    graph = helper.make_graph(
        [helper.make_node(op, ins, outs, **attrs) for op, ins, outs, attrs in nodes],
        type(model).__name__,
        [_value_info(onnx, n, t, dynamic) for n, t in zip(input_names, inputs)],
        [_value_info(onnx, n, t, dynamic) for n, t in zip(output_names, outputs)],
        [onnx.numpy_helper.from_array(a, n) for n, a in g.initializers.items() if n in used])
    opsets = [helper.make_opsetid("", g.opset)]
    return helper.make_model(graph, opset_imports=opsets, producer_name="disttrain",
                             ir_version=helper.find_min_ir_version_for(opsets))


def _live_nodes(nodes, needed: set, rename: dict) -> list:
    """The nodes the outputs depend on, in order, with `rename` applied to value names."""
    kept = []
    for op, ins, outs, attrs in reversed(_topological(nodes)):
        outs = [rename.get(o, o) for o in outs]
        if any(o in needed for o in outs):
            ins = [rename.get(i, i) for i in ins]
            needed.update(i for i in ins if i)
            kept.append((op, ins, outs, attrs))
    return kept[::-1]


def _topological(nodes: list) -> list:
    """`nodes` with each after the producers of its inputs (a converter may refer to a value
    produced later in the trace, see GraphBuilder.value_later); otherwise in order."""
    producer = {o: i for i, node in enumerate(nodes) for o in node[2]}
    done, order = set(), []
    for root in range(len(nodes)):
        stack = [(root, False)]
        while stack:
            i, ready = stack.pop()
            if i in done:
                continue
            if ready:
                done.add(i)
                order.append(nodes[i])
                continue
            stack.append((i, True))
            stack.extend((producer[name], False) for name in reversed(nodes[i][1])
                         if producer.get(name, i) != i and producer[name] not in done)
    return order
