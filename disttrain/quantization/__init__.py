"""Int8 post-training quantization, eager mode with torch.ao.quantization's names:
quantize_dynamic (int8 weights, activations quantized per batch at run time) and static
prepare -> calibrate -> convert (int8 GEMM/convolution, requantized between layers).

    import disttrain as dt, disttrain.nn as nn
    from disttrain.quantization import quantize_dynamic, prepare, convert
    qmodel = quantize_dynamic(model, {nn.Linear, nn.LSTM}, dtype=dt.qint8)
    prepared = prepare(seq_model)            # nn.Sequential, eval mode
    for x, _ in calibration_batches: prepared(x)
    qmodel = convert(prepared)

Quantized models run inference only, on the CPU (numpy).
"""

from disttrain.quantization import onnx_export as _onnx_export
from disttrain.quantization.dynamic import DynamicQuantizedLinear, quantize_dynamic
from disttrain.quantization.dynamic_rnn import DynamicQuantizedGRU, DynamicQuantizedLSTM
from disttrain.quantization.fuse import ConvReLU2d, LinearReLU, fuse_modules
from disttrain.quantization.modules import (
    DeQuantize,
    FloatFallback,
    Quantize,
    QuantizedConv2d,
    QuantizedLinear,
    QuantizedPassThrough,
    QuantizedSequential,
)
from disttrain.quantization.observers import (
    HistogramObserver,
    MinMaxObserver,
    PerChannelMinMaxObserver,
    QConfig,
    default_qconfig,
    minmax_qconfig,
)
from disttrain.quantization.qtypes import QDType, QTensor, qint8, quint8
from disttrain.quantization.static import convert, prepare

__all__ = [
    "ConvReLU2d", "DeQuantize", "DynamicQuantizedGRU", "DynamicQuantizedLSTM",
    "DynamicQuantizedLinear", "FloatFallback", "HistogramObserver", "LinearReLU",
    "MinMaxObserver", "PerChannelMinMaxObserver", "QConfig", "QDType", "QTensor", "Quantize",
    "QuantizedConv2d", "QuantizedLinear", "QuantizedPassThrough", "QuantizedSequential",
    "convert", "default_qconfig", "fuse_modules", "minmax_qconfig", "prepare", "qint8",
    "quantize_dynamic", "quint8",
]  # fmt: skip

# NOTE: registers the quantized layers' ONNX converters (disttrain.onnx.registry is pure data,
# it does not import the onnx package)
_onnx_export.register()
