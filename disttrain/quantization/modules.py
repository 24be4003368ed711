"""The layers of a statically quantized model (what convert() builds): Quantize, DeQuantize,
QuantizedLinear and QuantizedConv2d (int8 x int8 -> int32, requantized to uint8, optionally
with the fused ReLU), QuantizedPassThrough (pooling/flatten on the integers), FloatFallback,
and QuantizedSequential, the inference-only container. Imports disttrain.nn and siblings."""

from __future__ import annotations

import numpy

from disttrain.nn import Flatten, ReLU
from disttrain.nn.module import Module
from disttrain.quantization import kernels
from disttrain.quantization.qtypes import QTensor, quint8
from disttrain.tensor import Tensor, no_grad


def _expect_qtensor(module: Module, x) -> QTensor:
    if not isinstance(x, QTensor):
        raise TypeError(f"{type(module).__name__}: expected a QTensor (the output of a "
                        f"Quantize layer), got {type(x).__name__}; run the whole converted "
                        "model, which quantizes its input first")
    return x


class _Requantized(Module):
    """Holds the output quantization parameters (buffers `scale`, `zero_point`)."""

    def __init__(self, scale: float, zero_point: int):
        super().__init__()
        self.register_buffer("scale", numpy.array(scale, numpy.float32))
        self.register_buffer("zero_point", numpy.array(zero_point, numpy.int64))

    @property
    def qparams(self) -> tuple:
        return float(self.scale.array), int(self.zero_point.array)

    def extra_repr(self) -> str:
        scale, zero_point = self.qparams
        return f"scale={scale:.6g}, zero_point={zero_point}"


class Quantize(_Requantized):
    """Float Tensor -> QTensor (uint8) with the scale and zero point observed at the input."""

    def forward(self, x: Tensor) -> QTensor:
        return QTensor.quantize(x, *self.qparams)


class DeQuantize(Module):
    """QTensor -> float32 Tensor."""

    def forward(self, x: QTensor) -> Tensor:
        return _expect_qtensor(self, x).dequantize()


class _QuantizedWeighted(_Requantized):
    """What QuantizedLinear and QuantizedConv2d share: int8 per-output-channel weights
    (buffers `weight` int8, `weight_scale` float32), a float32 `bias`, the output qparams,
    and whether the ReLU is fused (the clamp at the output zero point)."""

    def __init__(self, weight_q, weight_scale, bias, scale, zero_point, relu: bool):
        super().__init__(scale, zero_point)
        self.register_buffer("weight", numpy.ascontiguousarray(weight_q, numpy.int8))
        self.register_buffer("weight_scale", numpy.asarray(weight_scale, numpy.float32))
        if bias is not None:
            self.register_buffer("bias", numpy.asarray(bias, numpy.float32))
        else:
            self.bias = None
        self.relu = relu

    def _requantization(self, x: QTensor) -> tuple:
        """(int32 bias or None, per-channel multiplier, lowest output integer) for input x."""
        scale, zero_point = self.qparams
        weight_scale = self.weight_scale.array
        bias_q = None
        if self.bias is not None:
            bias_q = kernels.bias_int32(self.bias.array, x.scale, weight_scale)
        multiplier = numpy.float32(x.scale) * weight_scale / numpy.float32(scale)
        qmin = zero_point if self.relu else quint8.qmin  # NOTE: ReLU = clamp at real 0
        return bias_q, multiplier, qmin

    def extra_repr(self) -> str:
        features = "" if self.weight.ndim != 2 else (
            f"in_features={self.weight.shape[1]}, out_features={self.weight.shape[0]}, ")
        return f"{features}{super().extra_repr()}, relu={self.relu}"


class QuantizedLinear(_QuantizedWeighted):
    """y = requantize(x_q W_q^T + bias): uint8 input (N, *, in_features) -> uint8 output."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._weight_cache = kernels.WeightCache()

    def forward(self, x: QTensor) -> QTensor:
        x = _expect_qtensor(self, x)
        lead, k = x.shape[:-1], x.shape[-1]
        if k != self.weight.shape[1]:
            raise ValueError(f"QuantizedLinear: input has {k} features, the layer expects "
                             f"{self.weight.shape[1]} (input shape {x.shape})")
        weight_kn, row_sums = self._weight_cache.get(self.weight.array)
        bias_q, multiplier, qmin = self._requantization(x)
        acc = kernels.int8_linear(x.int_repr.reshape(-1, k), x.zero_point, weight_kn, row_sums,
                                  bias_q)
        out = kernels.requantize(acc, multiplier, self.qparams[1], qmin)
        return QTensor(out.reshape(*lead, -1), *self.qparams)


class QuantizedConv2d(_QuantizedWeighted):
    """A uint8 (N, C, H, W) -> uint8 (N, O, OH, OW) convolution with int8 weights (im2col
    over the integers, exact float32 GEMM; see disttrain.quantization.kernels)."""

    def __init__(self, weight_q, weight_scale, bias, scale, zero_point, relu: bool, *,
                 stride, padding, dilation, groups: int):
        super().__init__(weight_q, weight_scale, bias, scale, zero_point, relu)
        self.stride, self.padding = tuple(stride), tuple(padding)
        self.dilation, self.groups = tuple(dilation), groups

    def forward(self, x: QTensor) -> QTensor:
        x = _expect_qtensor(self, x)
        if len(x.shape) != 4 or x.shape[1] != self.weight.shape[1] * self.groups:
            raise ValueError(f"QuantizedConv2d: expected input (N, "
                             f"{self.weight.shape[1] * self.groups}, H, W), got {x.shape}")
        n, _, h, w = x.shape
        oh, ow = kernels.conv_output_size((h + 2 * self.padding[0], w + 2 * self.padding[1]),
                                          self.weight.shape[2:], self.stride, self.dilation)
        bias_q, multiplier, qmin = self._requantization(x)
        out = numpy.empty((n * oh * ow, self.weight.shape[0]), numpy.uint8)
        og = self.weight.shape[0] // self.groups
        for rows, g, acc in kernels.conv_chunks(x.int_repr, x.zero_point, self.weight.array,
                                                self.stride, self.padding, self.dilation,
                                                self.groups, bias_q):
            cols = slice(g * og, (g + 1) * og)
            out[rows, cols] = kernels.requantize(acc, multiplier[cols], self.qparams[1], qmin)
        # NOTE: channels-last in memory, as disttrain's float Conv2d output
        return QTensor(out.reshape(n, oh, ow, -1).transpose(0, 3, 1, 2), *self.qparams)

    def extra_repr(self) -> str:
        return (f"{self.weight.shape[1] * self.groups}, {self.weight.shape[0]}, kernel_size="
                f"{tuple(self.weight.shape[2:])}, stride={self.stride}, padding={self.padding}"
                f", {super().extra_repr()}")


class QuantizedPassThrough(Module):
    """Runs a float module that only selects or moves values (MaxPool2d, Flatten, Dropout in
    eval, Identity, ReLU) on the integers: it commutes with the monotonic affine map, so the
    output keeps the input's scale and zero point. A ReLU clamps at the zero point."""

    def __init__(self, module: Module):
        super().__init__()
        self.module = module.eval()

    def forward(self, x: QTensor) -> QTensor:
        x = _expect_qtensor(self, x)
        if isinstance(self.module, ReLU):
            return QTensor(numpy.maximum(x.int_repr, numpy.uint8(x.zero_point)), x.scale,
                           x.zero_point)
        if isinstance(self.module, Flatten):  # NOTE: a reshape: skip the Tensor round trip
            start, end = (d % len(x.shape) for d in (self.module.start_dim,
                                                     self.module.end_dim))
            shape = x.shape[:start] + (-1,) + x.shape[end + 1:]
            return QTensor(x.int_repr.reshape(shape), x.scale, x.zero_point)
        with no_grad():
            out = self.module(Tensor(x.int_repr))
        return QTensor(out.array, x.scale, x.zero_point)


class FloatFallback(_Requantized):
    """A module with no quantized kernel, run in float32 between a dequantize and a quantize
    with the scale and zero point observed at its output."""

    def __init__(self, module: Module, scale: float, zero_point: int):
        super().__init__(scale, zero_point)
        self.module = module.eval()

    def forward(self, x: QTensor) -> QTensor:
        with no_grad():
            out = self.module(_expect_qtensor(self, x).dequantize())
        return QTensor.quantize(out, *self.qparams)


class QuantizedSequential(Module):
    """A converted model: Quantize, the quantized layers in order, DeQuantize (a nested
    Sequential becomes a QuantizedSequential of its layers only, QTensor in and out).
    Inference only: it has no Parameters, its output has no gradient, and train() raises."""

    def __init__(self, modules: dict):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        object.__setattr__(self, "training", False)

    def forward(self, x):
        if isinstance(x, Tensor) and x.requires_grad:
            x = x.detach()
        for module in self._modules.values():
            x = module(x)
        return x

    def train(self, mode: bool = True) -> Module:
        if mode:
            raise RuntimeError("QuantizedSequential: a quantized model runs inference only "
                               "(int8 weights have no gradient); train the float model, then "
                               "prepare/calibrate/convert it again")
        return super().train(False)

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())
