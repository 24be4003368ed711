"""Converters of the element-wise, movement, reduction and matmul primitives (disttrain.ops)."""

from __future__ import annotations

import numpy

from disttrain import ops
from disttrain.onnx.registry import register_function_converter as _register

INT64_MAX, INT64_MIN = numpy.iinfo(numpy.int64).max, numpy.iinfo(numpy.int64).min


def _simple(op_type: str):
    def convert(g, inputs, call):
        return g.node(op_type, inputs)
    return convert


for _cls, _op in ((ops.Add, "Add"), (ops.Sub, "Sub"), (ops.Mul, "Mul"), (ops.Div, "Div"),
                  (ops.Neg, "Neg"), (ops.Exp, "Exp"), (ops.Log, "Log"), (ops.Sqrt, "Sqrt"),
                  (ops.Abs, "Abs"), (ops.ReLU, "Relu"), (ops.Sigmoid, "Sigmoid"),
                  (ops.Tanh, "Tanh"), (ops.Sin, "Sin"), (ops.Cos, "Cos"), (ops.Erf, "Erf"),
                  (ops.Maximum, "Max"), (ops.Minimum, "Min"), (ops.MatMul, "MatMul"),
                  (ops.Clone, "Identity"), (ops.ToDevice, "Identity")):
    _register(_cls, _simple(_op))
if hasattr(ops, "PowTensor"):  # NOTE: x ** tensor, where the tree has it
    _register(ops.PowTensor, _simple("Pow"))


def _dtype(call, i: int = 0):
    return call.inputs[i].array.dtype


def _pow(g, inputs, call):
    exponent = g.constant(call.params["exponent"], _dtype(call))
    return g.node("Pow", [inputs[0], exponent])


def _log_sigmoid(g, inputs, call):  # -softplus(-x)
    return g.node("Neg", [g.node("Softplus", [g.node("Neg", inputs)])])


def _clamp(g, inputs, call):
    bounds = [("" if call.params[k] is None else g.constant(call.params[k], _dtype(call)))
              for k in ("low", "high")]
    return g.node("Clip", [inputs[0], *bounds])


def compact(array):
    """A broadcast view (zero strides) as the small array it was broadcast from."""
    index = tuple(slice(0, 1) if s == 0 and n > 1 else slice(None)
                  for s, n in zip(array.strides, array.shape))
    return numpy.ascontiguousarray(array[index])


def _where(g, inputs, call):
    array = call.params["condition"]
    if g.known_array(array):
        condition = g.array_value(array)
    else:
        condition = _mask_constant(g, call, "condition")
    return g.node("Where", [condition, inputs[0], inputs[1]])


def _mask_constant(g, call, key: str) -> str:
    """A bool mask parameter as a constant, compacted to the array it broadcasts; it must
    not change size with the dynamic axes (a mask computed from the input's values)."""
    mask = compact(numpy.asarray(call.params[key], bool))
    name = g.constant(mask, name="mask")
    if call.twin is not None:
        g.twin_shapes[id(mask)] = compact(numpy.asarray(call.twin.params[key], bool)).shape
        g.note_constant(mask, name)
    return name


def _cast(g, inputs, call):
    import onnx

    to = onnx.helper.np_dtype_to_tensor_dtype(numpy.dtype(call.params["dtype"]))
    return g.node("Cast", inputs, to=to)


for _cls, _fn in ((ops.Pow, _pow), (ops.LogSigmoid, _log_sigmoid), (ops.Clamp, _clamp),
                  (ops.Where, _where), (ops.Cast, _cast)):
    _register(_cls, _fn)


# ---------------------------------------------------------------- movement
def reshape_target(in_shape, out_shape, twin=None) -> list[int]:
    """ONNX Reshape's shape for in_shape -> out_shape that stays right when dynamic dims
    change at run time. With `twin` (the shapes in a run on larger inputs) the dims that
    changed are the dynamic ones: copied (0) where the input's same dim is that one, else
    inferred (-1). Without, leading dims equal to the input's are copied and the first other
    dim is inferred."""
    if twin is not None:
        target = _twin_target(in_shape, out_shape, *twin)
        if target is not None:
            return target
    target, k = list(out_shape), 0
    while k < min(len(in_shape), len(out_shape)) and in_shape[k] == out_shape[k]:
        target[k], k = 0, k + 1
    if k < len(target):
        target[k] = -1
    return target


def _twin_target(in_shape, out_shape, in_twin, out_twin):
    target, inferred = list(out_shape), 0
    for i, (n, m) in enumerate(zip(out_shape, out_twin)):
        if n == m:
            continue
        if i < len(in_shape) and in_shape[i] == n and in_twin[i] == m:
            target[i] = 0
        else:
            target[i], inferred = -1, inferred + 1
    return target if inferred <= 1 else None


def _reshape(g, inputs, call):
    in_shape, out_shape = call.inputs[0].shape, call.output.shape
    kept_in = [i for i, n in enumerate(in_shape) if n != 1]
    kept_out = [i for i, n in enumerate(out_shape) if n != 1]
    if [in_shape[i] for i in kept_in] == [out_shape[i] for i in kept_out]:
        # NOTE: only size-1 dims added or removed: Squeeze/Unsqueeze need no sizes at all
        x = inputs[0]
        if len(kept_in) < len(in_shape):
            x = g.node("Squeeze", [x, g.ints(i for i in range(len(in_shape)) if i not in
                                             kept_in)])
        if len(kept_out) < len(out_shape):
            x = g.node("Unsqueeze", [x, g.ints(i for i in range(len(out_shape)) if i not in
                                               kept_out)])
        return x if x != inputs[0] else g.node("Identity", inputs)
    twin = None if call.twin is None else (call.twin.inputs[0].shape, call.twin.output.shape)
    return g.node("Reshape", [inputs[0], g.ints(reshape_target(in_shape, out_shape, twin))])


def _permute(g, inputs, call):
    return g.node("Transpose", inputs, perm=list(call.params["order"]))


_BROADCASTING = (ops.Add, ops.Sub, ops.Mul, ops.Div, ops.Maximum, ops.Minimum, ops.Where,
                 ops.MatMul) + \
    ((ops.PowTensor,) if hasattr(ops, "PowTensor") else ())


def _expand(g, inputs, call):
    consumers = g.consumers.get(id(call.output), [])
    if consumers and all(c.kind == "function" and isinstance(c.target, _BROADCASTING)
                         for c in consumers):
        # NOTE: the explicit broadcast of a binary op: ONNX's ops broadcast themselves, and
        # leaving it out keeps a dynamic batch dim dynamic
        return g.node("Identity", inputs)
    in_shape = call.inputs[0].shape
    shape = [1 if a == b else b for a, b in zip(in_shape, call.params["shape"])]
    peer = _cat_peer(g, call, consumers)
    if peer is not None:
        return g.node("Expand", [inputs[0], _shape_like(g, peer, shape)])
    target = g.ints(shape)
    if call.twin is not None and tuple(call.twin.params["shape"]) != tuple(call.params["shape"]):
        g.varying[target] = (tuple(call.params["shape"]), call)
    return g.node("Expand", [inputs[0], target])


def _cat_peer(g, call, consumers):
    """(another input of the Cat this Expand feeds, the Cat's axis), or None."""
    for consumer in consumers:
        if consumer.kind == "function" and isinstance(consumer.target, ops.Cat):
            for other in consumer.inputs:
                if other is call.output or other.ndim != call.output.ndim:
                    continue
                name = g.value_later(other)
                if name is not None and g.const_value(name) is None:
                    return name, consumer.params["axis"]
    return None


def _shape_like(g, peer, shape) -> str:
    """The Expand target of a tensor concatenated with `peer`: peer's run-time shape (its
    batch dim may change), with the static size on the Cat axis and 1 where nothing grows.
    NOTE: e.g. a class token or bias_k expanded to the batch, then concatenated (ViT, MHA)."""
    name, axis = peer
    parts = []
    for i, n in enumerate(shape):
        if n == 1 or i == axis:
            parts.append(g.ints([n if i != axis else 1]))
        else:
            parts.append(shape_slice(g, name, i, i + 1))
    return g.node("Concat", parts, axis=0)


def shape_slice(g, x: str, start: int, end: int) -> str:
    """x's run-time sizes [start, end) as a 1-D int64 value (Shape's start/end are opset 15)."""
    if g.opset >= 15:
        return g.node("Shape", [x], start=start, end=end)
    shape = g.node("Shape", [x])
    return g.node("Slice", [shape, g.ints([start]), g.ints([end]), g.ints([0])])


def _cat(g, inputs, call):
    return g.node("Concat", inputs, axis=call.params["axis"])


def _gather(g, inputs, call):
    index = g.array_value(call.params["index"])
    return g.node("GatherElements", [inputs[0], index], axis=call.params["axis"])


for _cls, _fn in ((ops.Reshape, _reshape), (ops.Permute, _permute), (ops.Expand, _expand),
                  (ops.Cat, _cat), (ops.Gather, _gather)):
    _register(_cls, _fn)


# ---------------------------------------------------------------- indexing
def _entries(index, ndim: int) -> list:
    parts = list(index) if isinstance(index, tuple) else [index]
    if any(p is Ellipsis for p in parts):
        at = parts.index(Ellipsis)
        used = sum(1 for p in parts if p is not None and p is not Ellipsis)
        parts[at:at + 1] = [slice(None)] * (ndim - used)
    used = sum(1 for p in parts if p is not None)
    return parts + [slice(None)] * (ndim - used)


def _index(g, inputs, call):
    x, shape = inputs[0], call.inputs[0].shape
    parts = _entries(call.params["index"], len(shape))
    arrays = [p for p in parts if _is_array(p)]
    if any(getattr(p, "dtype", None) == numpy.bool_ for p in arrays):
        raise g.error("cannot export Function 'Index' with a boolean mask index (its output "
                      "size depends on the data)")
    if len(arrays) > 1 or (arrays and any(_is_int(p) for p in parts)):
        raise g.error("cannot export Function 'Index' with more than one integer-array/int "
                      "index combined (numpy's advanced indexing); index one axis at a time")
    x = _slices(g, x, parts, shape)
    axis_in, unsqueeze, axis_out = 0, [], 0
    takes = []
    for p in parts:
        if p is None:
            unsqueeze.append(axis_out)
            axis_out += 1
            continue
        if _is_int(p) or _is_array(p):
            takes.append((axis_in, p))
            axis_out += 0 if _is_int(p) else numpy.ndim(p)
        else:
            axis_out += 1
        axis_in += 1
    for axis, p in reversed(takes):  # NOTE: highest axis first: lower axes keep their numbers
        index = g.constant(int(p), numpy.int64) if _is_int(p) else g.array_value(p)
        x = g.node("Gather", [x, index], axis=axis)
    if unsqueeze:
        x = g.node("Unsqueeze", [x, g.ints(unsqueeze)])
    return x if x != inputs[0] else g.node("Identity", inputs)


def _is_int(p) -> bool:
    return isinstance(p, (int, numpy.integer)) or (_is_array(p) and numpy.ndim(p) == 0 and
                                                    p.dtype.kind in "iu")


def _is_array(p) -> bool:
    return hasattr(p, "dtype") and hasattr(p, "shape") and not isinstance(p, numpy.integer)


def _slices(g, x, parts, shape):
    starts, ends, axes, steps = [], [], [], []
    axis = 0
    for p in parts:
        if p is None:
            continue
        if isinstance(p, slice):
            start, stop, step = p.indices(shape[axis])
            if not (start == 0 and stop == shape[axis] and step == 1):
                if step > 0 and stop >= shape[axis]:
                    stop = INT64_MAX  # NOTE: "to the end", right for any run-time size
                elif step < 0 and stop < 0:
                    stop = INT64_MIN
                starts.append(start), ends.append(stop), axes.append(axis), steps.append(step)
        axis += 1
    if not axes:
        return x
    return g.node("Slice", [x, g.ints(starts), g.ints(ends), g.ints(axes), g.ints(steps)])


_register(ops.Index, _index)


# ---------------------------------------------------------------- reductions
def reduce(g, op_type: str, x: str, axes, keepdims: bool, ndim: int) -> str:
    """ReduceX over `axes` (None: all), axes as an input (opset >= 18, ReduceSum >= 13) or
    an attribute."""
    axes = list(range(ndim)) if axes is None else \
        [a % ndim for a in ((axes,) if isinstance(axes, int) else axes)]
    if op_type == "ReduceSum" or g.opset >= 18:
        return g.node(op_type, [x, g.ints(axes)], keepdims=int(keepdims))
    return g.node(op_type, [x], axes=axes, keepdims=int(keepdims))


def _sum(g, inputs, call):
    return reduce(g, "ReduceSum", inputs[0], call.params["axis"], call.params["keepdims"],
                  call.inputs[0].ndim)


def _max(g, inputs, call):
    return reduce(g, "ReduceMax", inputs[0], call.params["axis"], call.params["keepdims"],
                  call.inputs[0].ndim)


_register(ops.Sum, _sum)
_register(ops.Max, _max)


# ---------------------------------------------------------------- linear and softmax
def _linear(g, inputs, call):
    x, weight = inputs[0], inputs[1]
    if call.inputs[0].ndim == 2:
        return g.node("Gemm", inputs, transB=1)
    value = g.const_value(weight)
    weight_t = g.initializer(value.T, weight + ".T") if value is not None else \
        g.node("Transpose", [weight], perm=[1, 0])
    y = g.node("MatMul", [x, weight_t])
    return g.node("Add", [y, inputs[2]]) if len(inputs) > 2 else y


def _softmax(g, inputs, call):
    x, axis, keep = inputs[0], call.params.get("axis", -1), call.params.get("keep")
    if keep is not None:
        if compact(numpy.asarray(keep, bool)).shape[0] > 1 and len(call.output.shape) == 4:
            raise g.error("cannot export Function 'Softmax' with a per-sample bool mask "
                          "(key_padding_mask or a batched attn_mask): it is computed outside "
                          "the traced graph; pass a float mask (0 / -inf) as a model input")
        fill = g.constant(-numpy.inf, _dtype(call))
        x = g.node("Where", [_mask_constant(g, call, "keep"), x, fill])
    return g.node("Softmax", [x], axis=axis)


def _log_softmax(g, inputs, call):
    return g.node("LogSoftmax", inputs, axis=call.params["axis"])


_register(ops.Linear, _linear)
_register(ops.Softmax, _softmax)
_register(ops.LogSoftmax, _log_softmax)
