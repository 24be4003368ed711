"""Static post-training quantization (eager mode, as torch.ao.quantization): prepare() fuses
and inserts observers, the user calibrates, convert() builds the int8 QuantizedSequential.
Imports disttrain.nn and siblings only."""

from __future__ import annotations

import copy
from collections import OrderedDict

from disttrain.nn import (
    Conv2d,
    Dropout,
    Dropout1d,
    Dropout2d,
    Flatten,
    Identity,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
    Unflatten,
)
from disttrain.nn.module import Module
from disttrain.quantization.fuse import ConvReLU2d, LinearReLU, fuse_modules, fusion_groups
from disttrain.quantization.modules import (
    DeQuantize,
    FloatFallback,
    Quantize,
    QuantizedConv2d,
    QuantizedLinear,
    QuantizedPassThrough,
    QuantizedSequential,
)
from disttrain.quantization.observers import QConfig, default_qconfig
from disttrain.quantization.qtypes import qint8, quantize_array, quint8

_WEIGHTED = (Linear, Conv2d, LinearReLU, ConvReLU2d)
# NOTE: these only select or move values, so they run on the uint8 integers unchanged
_PASS_THROUGH = (MaxPool2d, Flatten, Unflatten, Identity, Dropout, Dropout1d, Dropout2d, ReLU)


class InputObserver(Module):
    """The first layer of a prepared model: observes the float input (becomes Quantize)."""

    def __init__(self, observer: Module):
        super().__init__()
        self.observer = observer

    def forward(self, x):
        return self.observer(x)


class Observed(Module):
    """A float layer whose output is observed during calibration; `weight_observer` (for
    Linear/Conv2d) picks the per-channel weight scales at convert()."""

    def __init__(self, module: Module, observer: Module, weight_observer: Module | None):
        super().__init__()
        self.module, self.observer = module, observer
        if weight_observer is not None:
            self.weight_observer = weight_observer

    def forward(self, x):
        return self.observer(self.module(x))


def prepare(model: Sequential, qconfig: QConfig | None = None, inplace: bool = False,
            fuse: bool = True) -> Sequential:
    """A copy of the float `model` (eval mode) with Conv2d/Linear [+ BatchNorm] [+ ReLU]
    fused and an observer at the input and after every layer, ready for calibration.

    Eager mode, as torch: the model is an nn.Sequential (nested Sequentials too) whose every
    op is a module (ReLU as nn.ReLU, flatten as nn.Flatten); write a model that uses
    functional calls in forward as a Sequential first (see examples/quantize.py). Linear and
    Conv2d become int8 layers; MaxPool2d/Flatten/Dropout/Identity/ReLU run on the integers;
    any other module runs in float32 between a dequantize and a quantize.

    Args:
        model: the trained float nn.Sequential.
        qconfig: the observers; None = default_qconfig: HistogramObserver (L2-optimal range)
            for uint8 asymmetric activations, PerChannelMinMaxObserver for int8 symmetric
            per-output-channel weights (torch's x86 default; ONNX Runtime's u8s8 kernels).
        inplace: fuse and observe `model` itself instead of a copy.
        fuse: fuse the Conv2d/Linear [+ BatchNorm] [+ ReLU] runs automatically.

    Example:
        >>> import disttrain as dt, disttrain.nn as nn
        >>> float_model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> prepared = prepare(float_model)
        >>> _ = prepared(dt.randn(16, 4))          # calibration batches
        >>> quantized = convert(prepared)
        >>> quantized(dt.randn(3, 4)).shape
        (3, 2)
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"prepare: expected an nn.Sequential (eager-mode quantization needs "
                        f"every op as a module, in order), got {type(model).__name__}; "
                        "rewrite its forward as nn.Sequential(...) (see examples/quantize.py)")
    qconfig = default_qconfig if qconfig is None else qconfig
    model = (model if inplace else copy.deepcopy(model)).eval()
    layers = OrderedDict(quant=InputObserver(qconfig.activation()))
    layers.update(_observed_layers(model, qconfig, fuse))
    return Sequential(layers).eval()


def _observed_layers(model: Sequential, qconfig: QConfig, fuse: bool) -> OrderedDict:
    """The children of `model` fused and observed; nested Sequentials recursively."""
    if fuse:
        fuse_modules(model, fusion_groups(model), inplace=True)
    layers = OrderedDict()
    for name, child in model.named_children():
        if isinstance(child, Sequential):
            layers[name] = Sequential(_observed_layers(child, qconfig, fuse))
        elif isinstance(child, _PASS_THROUGH):
            layers[name] = child
        else:
            weight_observer = qconfig.weight() if isinstance(child, _WEIGHTED) else None
            layers[name] = Observed(child, qconfig.activation(), weight_observer)
    return layers


def convert(model: Sequential, inplace: bool = False) -> QuantizedSequential:
    """The int8 model of a prepared and calibrated `model` (see prepare): a
    QuantizedSequential that quantizes its float input, runs Linear/Conv2d as int8 x int8 ->
    int32 with per-channel weight scales and requantizes to uint8 between layers (per-tensor
    scale and zero point), and dequantizes the output. Inference only.

    Args:
        model: what prepare() returned, after calibration batches ran through it.
        inplace: ignored for the layers (the converted model is a new container); kept for
            torch's signature.
    """
    del inplace  # NOTE: the quantized layers are new objects either way
    children = list(model.named_children()) if isinstance(model, Sequential) else []
    if not children or not isinstance(children[0][1], InputObserver):
        raise TypeError(f"convert: expected the model returned by prepare(), got "
                        f"{type(model).__name__}; call prepare(model), run calibration "
                        "batches through it, then convert the prepared model")
    layers = OrderedDict(quant=Quantize(*_activation_qparams(children[0][1].observer)))
    for name, child in children[1:]:
        layers[name] = _convert_layer(name, child)
    layers["dequant"] = DeQuantize()
    return QuantizedSequential(layers)


def _convert_layer(name: str, child: Module) -> Module:
    if isinstance(child, Sequential):  # NOTE: a nested block: QTensor in, QTensor out
        return QuantizedSequential(OrderedDict(
            (n, _convert_layer(f"{name}.{n}", c)) for n, c in child.named_children()))
    if isinstance(child, Identity):  # NOTE: what fusion left: passes QTensors as they are
        return Identity()
    if not isinstance(child, Observed):
        return QuantizedPassThrough(child)
    scale, zero_point = _activation_qparams(child.observer, name)
    if not isinstance(child.module, _WEIGHTED):
        return FloatFallback(child.module, scale, zero_point)
    relu = isinstance(child.module, (LinearReLU, ConvReLU2d))
    layer = child.module.layer if relu else child.module
    weight_q, weight_scale = _quantize_weight(name, layer, child.weight_observer)
    bias = None if layer.bias is None else layer.bias.detach().numpy()
    if isinstance(layer, Linear):
        return QuantizedLinear(weight_q, weight_scale, bias, scale, zero_point, relu)
    return QuantizedConv2d(weight_q, weight_scale, bias, scale, zero_point, relu,
                           stride=layer.stride, padding=_int_padding(name, layer),
                           dilation=layer.dilation, groups=layer.groups)


def _activation_qparams(observer: Module, name: str = "quant") -> tuple:
    if getattr(observer, "dtype", None) is not quint8:
        raise ValueError(f"convert: layer '{name}': activations must be observed as "
                         f"disttrain.quint8, got {getattr(observer, 'dtype', None)!r}")
    scale, zero_point = observer.calculate_qparams()
    return float(scale), int(zero_point)


def _quantize_weight(name: str, layer: Module, observer: Module) -> tuple:
    """(int8 weight, per-output-channel float32 scales) from the qconfig's weight observer."""
    weight = layer.weight.detach().numpy()
    observer(weight)
    scale, zero_point = observer.calculate_qparams()
    if observer.dtype is not qint8 or zero_point.ndim != 1 or zero_point.any():
        raise ValueError(f"convert: layer '{name}': the int8 kernels need per-channel "
                         "symmetric qint8 weights (PerChannelMinMaxObserver(ch_axis=0)), got "
                         f"{type(observer).__name__}(dtype={observer.dtype!r}) with zero "
                         f"points {zero_point.tolist()}")
    return quantize_array(weight, scale, 0, qint8, axis=0), scale


def _int_padding(name: str, conv: Conv2d) -> tuple:
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        if any(t % 2 for t in total):
            raise ValueError(f"convert: layer '{name}': padding='same' with an even "
                             f"kernel extent {total} pads unevenly; use integer padding")
        return tuple(t // 2 for t in total)
    return tuple(conv.padding)
