"""ONNX converters of the quantized modules, registered into disttrain.onnx's registry, so
disttrain.onnx.export writes a quantized model in the standard QDQ form.

A QuantizedSequential becomes: QuantizeLinear of the float input to uint8; per Linear/Conv2d a
DequantizeLinear of the uint8 activation, the int8 weight (per output channel, axis 0) and the
int32 bias (scale input_scale * weight_scale, as ONNX's QLinearConv bias), the float
Conv/Gemm, Relu when fused, and QuantizeLinear to the layer's output scale and zero point;
MaxPool/Flatten run on the uint8 tensor itself; a final DequantizeLinear. ONNX Runtime fuses
each DequantizeLinear -> Conv/Gemm -> QuantizeLinear group into its int8 kernels
(QLinearConv, QGemm), which compute the same int32 sums as disttrain.

DynamicQuantizedLinear becomes DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul (input
scale * weight scales) -> Add (bias). The dynamically quantized LSTM/GRU and FloatFallback
layers are not exportable and raise naming the module. Imports disttrain.onnx.registry only
(not the onnx package).
"""

from __future__ import annotations

import numpy

from disttrain.nn import Dropout, Dropout1d, Dropout2d, Flatten, Identity, MaxPool2d, ReLU
from disttrain.onnx import registry
from disttrain.quantization.dynamic import DynamicQuantizedLinear
from disttrain.quantization.dynamic_rnn import DynamicQuantizedGRU, DynamicQuantizedLSTM
from disttrain.quantization.kernels import bias_int32
from disttrain.quantization.modules import (
    DeQuantize,
    FloatFallback,
    Quantize,
    QuantizedConv2d,
    QuantizedLinear,
    QuantizedPassThrough,
    QuantizedSequential,
)


def _qparams(g, scale: float, zero_point: int, name: str) -> tuple:
    return (g.constant(numpy.float32(scale), name=f"{name}.scale"),
            g.constant(numpy.uint8(zero_point), name=f"{name}.zero_point"))


def _weighted(g, module, x: str, qparams: tuple, name: str) -> tuple:
    """DQ(x) -> Conv/Gemm with DQ'd int8 weight and int32 bias -> [Relu] -> Q; returns the
    output value and its (scale, zero_point)."""
    in_scale, in_zero = qparams
    weight_scale = module.weight_scale.array
    x_dq = g.node("DequantizeLinear", [x, *_qparams(g, in_scale, in_zero, f"{name}.input")])
    zeros = numpy.zeros(len(weight_scale), numpy.int8)
    weight = g.node("DequantizeLinear", [
        g.initializer(module.weight.array, f"{name}.weight"),
        g.initializer(weight_scale, f"{name}.weight_scale"),
        g.initializer(zeros, f"{name}.weight_zero_point")], axis=0)
    inputs = [x_dq, weight]
    if module.bias is not None:
        step = (numpy.float32(in_scale) * weight_scale).astype(numpy.float32)
        inputs.append(g.node("DequantizeLinear", [
            g.initializer(bias_int32(module.bias.array, in_scale, weight_scale),
                          f"{name}.bias_int32"),
            g.initializer(step, f"{name}.bias_scale"),
            g.initializer(zeros.astype(numpy.int32), f"{name}.bias_zero_point")], axis=0))
    if isinstance(module, QuantizedLinear):
        y = g.node("Gemm", inputs, transB=1)
    else:
        y = g.node("Conv", inputs, strides=list(module.stride), dilations=list(module.dilation),
                   pads=list(module.padding) * 2, group=module.groups,
                   kernel_shape=list(module.weight.shape[2:]))
    if module.relu:
        y = g.node("Relu", [y])
    out_qparams = module.qparams
    return g.node("QuantizeLinear", [y, *_qparams(g, *out_qparams, f"{name}.output")]), \
        out_qparams


def _pass_through(g, module, x: str, qparams: tuple, where: str) -> str:
    inner = module.module
    if isinstance(inner, (Identity, Dropout, Dropout1d, Dropout2d)):
        return x
    if isinstance(inner, ReLU):
        return g.node("Max", [x, g.constant(numpy.uint8(qparams[1]), name="relu_zero_point")])
    if isinstance(inner, Flatten) and inner.end_dim == -1:
        return g.node("Flatten", [x], axis=inner.start_dim)
    if isinstance(inner, MaxPool2d) and not inner.ceil_mode:
        pair = lambda v: list(v) if isinstance(v, (tuple, list)) else [v, v]  # noqa: E731
        stride = inner.stride if inner.stride is not None else inner.kernel_size
        return g.node("MaxPool", [x], kernel_shape=pair(inner.kernel_size),
                      strides=pair(stride), pads=pair(inner.padding) * 2,
                      dilations=pair(inner.dilation))
    raise g.error(f"cannot export the quantized pass-through layer '{where}' "
                  f"({inner!r}): no ONNX form on uint8 tensors is written for it")


def convert_quantized_sequential(g, model: QuantizedSequential, call) -> str:
    """The module converter of QuantizedSequential (see the module docstring)."""
    prefix = f"{call.path}." if call.path else ""
    x, _, _ = _emit_layers(g, model, (g.value(call.inputs[0]), None, call.inputs[0].ndim),
                           prefix)
    return x


def _emit_layers(g, model: QuantizedSequential, state: tuple, prefix: str) -> tuple:
    """Nodes of model's layers from state = (value, its (scale, zero_point), its rank)."""
    for child_name, module in model.named_children():
        state = _emit_layer(g, module, state, prefix + child_name)
    return state


def _emit_layer(g, module, state: tuple, name: str) -> tuple:
    x, qparams, rank = state
    if isinstance(module, Quantize):
        return g.node("QuantizeLinear", [x, *_qparams(g, *module.qparams, name)]), \
            module.qparams, rank
    if isinstance(module, DeQuantize):
        return g.node("DequantizeLinear", [x, *_qparams(g, *qparams, name)]), None, rank
    if isinstance(module, QuantizedSequential):
        return _emit_layers(g, module, state, f"{name}.")
    if isinstance(module, (QuantizedLinear, QuantizedConv2d)):
        if isinstance(module, QuantizedLinear) and rank != 2:  # NOTE: Gemm takes 2-D input
            raise g.error(f"cannot export QuantizedLinear '{name}' on a {rank}-D input: the "
                          "QDQ Gemm takes (N, in_features); flatten before it")
        return (*_weighted(g, module, x, qparams, name), rank)
    if isinstance(module, QuantizedPassThrough):
        flattens = isinstance(module.module, Flatten)
        return _pass_through(g, module, x, qparams, name), qparams, 2 if flattens else rank
    if isinstance(module, Identity):
        return state
    kind = "FloatFallback" if isinstance(module, FloatFallback) else "layer"
    raise g.error(f"cannot export {kind} '{name}' ({type(module).__name__}) of a quantized "
                  "model; quantize only Linear/Conv2d/MaxPool2d/Flatten/ReLU/Dropout layers "
                  "to export it")


def convert_dynamic_linear(g, module: DynamicQuantizedLinear, call) -> str:
    """DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul -> Add (ONNX's dynamic form)."""
    name = call.path or "linear"
    x_q, x_scale, x_zero = g.node("DynamicQuantizeLinear", [g.value(call.inputs[0])], outputs=3)
    weight_kn = numpy.ascontiguousarray(module.weight.array.T)
    acc = g.node("MatMulInteger", [
        x_q, g.initializer(weight_kn, f"{name}.weight"), x_zero,
        g.initializer(numpy.zeros(module.out_features, numpy.int8), f"{name}.weight_zp")])
    step = g.node("Mul", [x_scale, g.initializer(module.weight_scale.array,
                                                 f"{name}.weight_scale")])
    y = g.node("Mul", [g.node("Cast", [acc], to=1), step])  # NOTE: to=1 is FLOAT
    if module.bias is not None:
        y = g.node("Add", [y, g.initializer(module.bias.array, f"{name}.bias")])
    return y


def _refuse(g, module, call):
    raise g.error(f"cannot export '{call.path or '<root>'}' ({type(module).__name__}): ONNX's "
                  "LSTM/GRU take float weights; export the float model, or quantize only "
                  "nn.Linear with quantize_dynamic")


def register() -> None:
    """Registers the converters with disttrain.onnx (done on import of
    disttrain.quantization)."""
    registry.register_module_converter(QuantizedSequential, convert_quantized_sequential)
    registry.register_module_converter(DynamicQuantizedLinear, convert_dynamic_linear)
    for rnn in (DynamicQuantizedLSTM, DynamicQuantizedGRU):
        registry.register_module_converter(rnn, _refuse)
