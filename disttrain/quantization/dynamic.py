"""Dynamic quantization (torch.ao.quantization.quantize_dynamic): Linear, LSTM and GRU with
int8 per-output-channel weights; their float inputs are quantized to uint8 per batch at run
time (the range of each call's input), so no calibration is needed. Float in, float out.
Imports disttrain.nn and siblings only."""

from __future__ import annotations

import copy

import numpy

from disttrain.backend import asnumpy
from disttrain.nn import GRU, LSTM, Linear
from disttrain.nn.module import Module
from disttrain.quantization import kernels
from disttrain.quantization.observers import PerChannelMinMaxObserver
from disttrain.quantization.qtypes import QDType, calculate_qparams, qint8, quantize_array, quint8
from disttrain.tensor import Tensor


def quantize_weight(weight) -> tuple:
    """(int8 weight, float32 per-output-channel scales), symmetric (zero point 0)."""
    weight = asnumpy(weight.array if isinstance(weight, Tensor) else weight)
    observer = PerChannelMinMaxObserver(ch_axis=0, dtype=qint8, symmetric=True)
    observer(weight)
    scale, _ = observer.calculate_qparams()
    return quantize_array(weight, scale, 0, qint8, axis=0), scale


def dynamic_linear(x, weight_kn, row_sums, weight_scale, bias=None):
    """Float32 x (M, K) @ int8 W^T with x quantized to uint8 over its own range (per call).
    weight_kn, row_sums: kernels.weight_matrix of the int8 weight."""
    scale, zero_point = calculate_qparams(x.min(initial=0.0), x.max(initial=0.0), quint8,
                                          symmetric=False)
    x_q = quantize_array(x, scale, zero_point, quint8)
    acc = kernels.int8_linear(x_q, int(zero_point), weight_kn, row_sums)
    out = acc.astype(numpy.float32)
    out *= scale * weight_scale
    if bias is not None:
        out += bias
    return out


class DynamicQuantizedLinear(Module):
    """Linear with int8 weights (buffers `weight`, `weight_scale`, float `bias`), inputs
    quantized per call. Shape: (N, *, in_features) -> (N, *, out_features), float32."""

    def __init__(self, weight_q, weight_scale, bias):
        super().__init__()
        self.out_features, self.in_features = weight_q.shape
        self.register_buffer("weight", numpy.ascontiguousarray(weight_q, numpy.int8))
        self.register_buffer("weight_scale", numpy.asarray(weight_scale, numpy.float32))
        if bias is not None:
            self.register_buffer("bias", numpy.asarray(bias, numpy.float32))
        else:
            self.bias = None
        self._weight_cache = kernels.WeightCache()

    @classmethod
    def from_float(cls, linear: Linear) -> DynamicQuantizedLinear:
        weight_q, scale = quantize_weight(linear.weight)
        return cls(weight_q, scale, None if linear.bias is None else linear.bias.detach().numpy())

    def forward(self, x: Tensor) -> Tensor:
        array = asnumpy(x.array).astype(numpy.float32, copy=False)
        if array.shape[-1] != self.in_features:
            raise ValueError(f"DynamicQuantizedLinear: input has {array.shape[-1]} features, "
                             f"the layer expects {self.in_features} (input {array.shape})")
        weight_kn, row_sums = self._weight_cache.get(self.weight.array)
        bias = None if self.bias is None else self.bias.array
        out = dynamic_linear(array.reshape(-1, self.in_features), weight_kn, row_sums,
                             self.weight_scale.array, bias)
        return Tensor(out.reshape(*array.shape[:-1], self.out_features))

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"dtype=qint8, bias={self.bias is not None}")


def _swap_map() -> dict:
    from disttrain.quantization.dynamic_rnn import DynamicQuantizedGRU, DynamicQuantizedLSTM
    return {Linear: DynamicQuantizedLinear, LSTM: DynamicQuantizedLSTM, GRU: DynamicQuantizedGRU}


def quantize_dynamic(model: Module, qconfig_spec=None, dtype: QDType = qint8,
                     mapping=None, inplace: bool = False) -> Module:
    """A copy of `model` whose Linear/LSTM/GRU layers hold int8 weights (per-output-channel
    symmetric scales) and quantize their inputs to uint8 per call (dynamic range).

    Args:
        model: any float module (eval mode is set on the result).
        qconfig_spec: the layer types to quantize ({nn.Linear, nn.LSTM, nn.GRU} by default),
            or a set of dotted sub-module names.
        dtype: disttrain.qint8 (the only weight dtype supported).
        mapping: {float type: quantized type with from_float}, replacing the default one.
        inplace: swap the layers of `model` itself instead of a copy.

    Example:
        >>> import disttrain as dt, disttrain.nn as nn
        >>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
        >>> qmodel = quantize_dynamic(model, {nn.Linear}, dtype=dt.qint8)
        >>> type(qmodel[0]).__name__, qmodel(dt.randn(2, 8)).shape
        ('DynamicQuantizedLinear', (2, 4))
    """
    if dtype is not qint8:
        raise ValueError(f"quantize_dynamic: dtype must be disttrain.qint8, got {dtype!r}")
    mapping = _swap_map() if mapping is None else mapping
    spec = set(qconfig_spec) if qconfig_spec is not None else {Linear, LSTM, GRU}
    for item in spec:
        if isinstance(item, type) and item not in mapping:
            raise ValueError(f"quantize_dynamic: no dynamic quantized version of "
                             f"{item.__name__}; supported: "
                             f"{', '.join(t.__name__ for t in mapping)}")
    model = model if inplace else copy.deepcopy(model)
    swapped = _swap(model, "", spec, mapping)
    return swapped.eval()


def _swap(module: Module, name: str, spec: set, mapping: dict) -> Module:
    if (type(module) in spec or name in spec) and type(module) in mapping:
        return mapping[type(module)].from_float(module)
    for child_name, child in list(module.named_children()):
        full = f"{name}.{child_name}" if name else child_name
        setattr(module, child_name, _swap(child, full, spec, mapping))
    return module
