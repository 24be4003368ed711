"""Converters of the convolution, pooling and resampling primitives, of the functionals whose
traced graph would hold data-dependent constants (leaky_relu's condition, embedding's indices),
of layer_norm / global pooling / interpolate (one ONNX op each), and of BatchNorm modules."""

from __future__ import annotations

import numpy

from disttrain import ops
from disttrain.nn.normalization import _BatchNorm
from disttrain.onnx.ops_math import reduce, shape_slice
from disttrain.onnx.registry import register_function_converter as _register
from disttrain.onnx.registry import register_functional_converter as _functional
from disttrain.onnx.registry import register_module_converter


def _onnx_pads(pads) -> list[int]:
    """disttrain's (top, bottom, left, right) as ONNX's (top, left, bottom, right)."""
    top, bottom, left, right = pads
    return [top, left, bottom, right]


def _conv(g, inputs, call):
    p, kernel = call.params, list(call.inputs[1].shape[2:])
    return g.node("Conv", inputs, kernel_shape=kernel, strides=list(p["stride"]),
                  pads=_onnx_pads(p["pads"]), dilations=list(p["dilation"]), group=p["groups"])


def _conv_transpose(g, inputs, call):
    p, kernel = call.params, call.inputs[1].shape[2:]
    pads, size_in = p["pads"], call.inputs[0].shape[2:]
    natural = [(n - 1) * s - (lo + hi) + d * (k - 1) + 1 for n, s, lo, hi, d, k in zip(
        size_in, p["stride"], pads[::2], pads[1::2], p["dilation"], kernel)]
    return g.node("ConvTranspose", inputs, kernel_shape=list(kernel), strides=list(p["stride"]),
                  pads=_onnx_pads(pads), dilations=list(p["dilation"]), group=p["groups"],
                  output_padding=[o - n for o, n in zip(p["out_hw"], natural)])


def _pad_first(g, x, pads, value, dtype):
    """x padded by (top, bottom, left, right) on its last two dims with `value`."""
    top, bottom, left, right = pads
    onnx_pads = g.ints([0, 0, top, left, 0, 0, bottom, right])
    return g.node("Pad", [x, onnx_pads, g.constant(value, dtype)], mode="constant")


def _fits(pads, kernel) -> bool:
    """ONNX Runtime's pooling needs every pad smaller than the kernel."""
    return all(p < k for p, k in zip(pads, (kernel[0], kernel[0], kernel[1], kernel[1])))


def _max_pool(g, inputs, call):
    p, x = call.params, inputs[0]
    pads = p["pads"]
    if not _fits(pads, p["kernel"]):  # NOTE: ceil_mode's overhang: pad with -inf first
        x, pads = _pad_first(g, x, pads, -numpy.inf, call.inputs[0].dtype), (0, 0, 0, 0)
    return g.node("MaxPool", [x], kernel_shape=list(p["kernel"]), strides=list(p["stride"]),
                  pads=_onnx_pads(pads), dilations=list(p["dilation"]))


def _avg_pool(g, inputs, call):
    p, x, dtype = call.params, inputs[0], call.inputs[0].dtype
    kernel, pads, divisor = p["kernel"], p["pads"], p["divisor"]
    window = kernel[0] * kernel[1]
    plain = numpy.ndim(divisor) == 0 and float(divisor) == window and _fits(pads, kernel)
    if not plain and any(pads):
        x, pads = _pad_first(g, x, pads, 0.0, dtype), (0, 0, 0, 0)
    y = g.node("AveragePool", [x], kernel_shape=list(kernel), strides=list(p["stride"]),
               pads=_onnx_pads(pads), count_include_pad=1)
    if plain:
        return y
    # NOTE: torch's divisors (count_include_pad=False, ceil_mode, divisor_override) differ per
    # window: AveragePool divides by the window size, the constant rescales each position
    scale = numpy.asarray(window / numpy.asarray(divisor, numpy.float64), dtype)
    return g.node("Mul", [y, g.constant(scale)])


def _constant_pad(g, inputs, call):
    pads, x = call.params["pads"], inputs[0]
    shape = call.inputs[0].shape
    crops = [(i, max(-lo, 0), max(-hi, 0)) for i, (lo, hi) in enumerate(pads) if lo < 0 or hi < 0]
    if crops:
        x = g.node("Slice", [x, g.ints(c[1] for c in crops),
                             g.ints(shape[i] - hi for i, _, hi in crops),
                             g.ints(i for i, _, _ in crops)])
    positive = [max(lo, 0) for lo, _ in pads] + [max(hi, 0) for _, hi in pads]
    if not any(positive):
        return x if x != inputs[0] else g.node("Identity", inputs)
    value = g.constant(call.params["value"], call.inputs[0].dtype)
    return g.node("Pad", [x, g.ints(positive), value], mode="constant")


def _axis_map(g, inputs, call):
    """A separable resampling along one axis as a MatMul with its dense (n_in, n_out) map."""
    p, x_shape = call.params, call.inputs[0].shape
    axis, (index, weight) = p["axis"], p["table"]
    n_in, n_out = x_shape[axis], call.output.shape[axis]
    dense = numpy.zeros((n_in + 1, n_out), numpy.float64)
    for k in range(index.shape[1]):
        numpy.add.at(dense, (index[:, k], numpy.arange(n_out)),
                     1.0 if weight is None else weight[:, k])
    matrix = g.constant(dense[:n_in].astype(call.inputs[0].dtype), name="resample")
    last = len(x_shape) - 1
    if axis == last:
        return g.node("MatMul", [inputs[0], matrix])
    perm = list(range(len(x_shape)))
    perm[axis], perm[last] = last, axis
    moved = g.node("Transpose", inputs, perm=perm)
    return g.node("Transpose", [g.node("MatMul", [moved, matrix])], perm=perm)


for _cls, _fn in ((ops.Conv2d, _conv), (ops.ConvTranspose2d, _conv_transpose),
                  (ops.MaxPool2d, _max_pool), (ops.AvgPool2d, _avg_pool),
                  (ops.ConstantPad, _constant_pad), (ops.AxisMap, _axis_map)):
    _register(_cls, _fn)


# ---------------------------------------------------------------- functionals
def _arg(g, call, name):
    return g.value(call.arguments[name])


def _leaky_relu(g, call):
    return g.node("LeakyRelu", [_arg(g, call, "input")],
                  alpha=float(call.arguments["negative_slope"]))


def _elu(g, call):
    return g.node("Elu", [_arg(g, call, "input")], alpha=float(call.arguments["alpha"]))


def _softplus(g, call):
    # NOTE: torch's threshold (linear above it) differs from log1p(exp(x)) by < exp(-threshold)
    x, beta = _arg(g, call, "input"), float(call.arguments["beta"])
    if beta == 1.0:
        return g.node("Softplus", [x])
    dtype = call.arguments["input"].dtype
    scaled = g.node("Softplus", [g.node("Mul", [x, g.constant(beta, dtype)])])
    return g.node("Div", [scaled, g.constant(beta, dtype)])


def _hardtanh(g, call):
    dtype = call.arguments["input"].dtype
    return g.node("Clip", [_arg(g, call, "input"), g.constant(call.arguments["min_val"], dtype),
                           g.constant(call.arguments["max_val"], dtype)])


def _embedding(g, call):
    return g.node("Gather", [_arg(g, call, "weight"), _arg(g, call, "input")], axis=0)


def _layer_norm(g, call):
    a, dtype = call.arguments, call.arguments["input"].dtype
    shape = tuple(a["normalized_shape"])
    scale = g.value(a["weight"]) if a["weight"] is not None else \
        g.constant(numpy.ones(shape, dtype))
    bias = g.value(a["bias"]) if a["bias"] is not None else ""
    if g.opset < 17:  # NOTE: LayerNormalization is opset 17: the same maths as four ops
        return _layer_norm_ops(g, _arg(g, call, "input"), len(shape), call, scale, bias)
    return g.node("LayerNormalization", [_arg(g, call, "input"), scale, bias],
                  axis=-len(shape), epsilon=float(a["eps"]))


def _layer_norm_ops(g, x, count, call, scale, bias):
    ndim, dtype = call.arguments["input"].ndim, call.arguments["input"].dtype
    axes = list(range(ndim - count, ndim))
    centred = g.node("Sub", [x, reduce(g, "ReduceMean", x, axes, True, ndim)])
    var = reduce(g, "ReduceMean", g.node("Mul", [centred, centred]), axes, True, ndim)
    eps = g.constant(float(call.arguments["eps"]), dtype)
    out = g.node("Mul", [g.node("Div", [centred, g.node("Sqrt", [g.node("Add", [var, eps])])]),
                         scale])
    return g.node("Add", [out, bias]) if bias else out


def _global_average(g, call):
    return g.node("GlobalAveragePool", [_arg(g, call, "input")])


def _is_global(arguments) -> bool:
    size = arguments["output_size"]
    size = (size, size) if isinstance(size, int) else tuple(size)
    spatial = arguments["input"].shape[-2:]
    return arguments["input"].ndim == 4 and all(
        (s if s is not None else n) == 1 for s, n in zip(size, spatial))


def _interpolate(g, call):
    a, x = call.arguments, _arg(g, call, "input")
    mode = {"nearest": ("nearest", "asymmetric"), "bilinear": (
        "linear", "align_corners" if a["align_corners"] else "pytorch_half_pixel")}[a["mode"]]
    if a["scale_factor"] is not None and not a["recompute_scale_factor"]:
        factor = a["scale_factor"]
        factor = list(factor) if isinstance(factor, (list, tuple)) else [factor] * 2
        scales, sizes = g.constant([1.0, 1.0, *map(float, factor)], numpy.float32), ""
    else:
        leading, scales = shape_slice(g, x, 0, 2), ""
        sizes = g.node("Concat", [leading, g.ints(call.output.shape[2:])], axis=0)
    return g.node("Resize", [x, "", scales, sizes], mode=mode[0],
                  coordinate_transformation_mode=mode[1],
                  nearest_mode="floor" if mode[0] == "nearest" else None)


def _resizable(arguments) -> bool:
    return arguments["input"].ndim == 4 and arguments["mode"] in ("nearest", "bilinear") and \
        not arguments["antialias"]


for _name, _fn, _when in (
        ("leaky_relu", _leaky_relu, None), ("elu", _elu, None), ("softplus", _softplus, None),
        ("hardtanh", _hardtanh, None), ("embedding", _embedding, None),
        ("layer_norm", _layer_norm, None), ("interpolate", _interpolate, _resizable),
        ("adaptive_avg_pool2d", _global_average, _is_global)):
    _functional(_name, _fn, _when)


# ---------------------------------------------------------------- modules
def _batch_norm(g, module, call):
    x = g.value(call.inputs[0])
    dtype = call.inputs[0].dtype
    channels = module.num_features
    scale = g.value(module.weight) if module.weight is not None else \
        g.constant(numpy.ones(channels, dtype))
    bias = g.value(module.bias) if module.bias is not None else \
        g.constant(numpy.zeros(channels, dtype))
    return g.node("BatchNormalization", [x, scale, bias, g.value(module.running_mean),
                                         g.value(module.running_var)],
                  epsilon=float(module.eps))


def _uses_running_stats(module, bound) -> bool:
    return not module.training and module.track_running_stats and \
        module.running_mean is not None


register_module_converter(_BatchNorm, _batch_norm, when=_uses_running_stats)
