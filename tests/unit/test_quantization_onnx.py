"""Quantized models through disttrain.onnx.export: the QDQ graph of a statically quantized
CNN and the dynamic form of DynamicQuantizedLinear run in ONNX Runtime and agree with
disttrain; what cannot be exported raises naming the module."""

from __future__ import annotations

import io
from collections import OrderedDict

import numpy
import pytest
from quantization_helpers import logits, static_quantize, trained_digits_cnn

import disttrain as dt
import disttrain.nn as nn
from disttrain.quantization import QuantizedConv2d, quantize_dynamic

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from disttrain.onnx import ExportError, export  # noqa: E402


def _session(model, example, name="x"):
    buffer = io.BytesIO()
    export(model, example, buffer, input_names=[name], output_names=["y"],
           dynamic_axes={name: {0: "batch"}, "y": {0: "batch"}})
    options = ort.SessionOptions()
    options.log_severity_level = 3
    data = buffer.getvalue()
    return onnx.load_from_string(data), ort.InferenceSession(
        data, options, providers=["CPUExecutionProvider"])


def test_static_cnn_in_onnx_runtime_agrees_with_disttrain():
    model, images, _, calibration = trained_digits_cnn()
    qmodel = static_quantize(model, calibration)
    proto, session = _session(qmodel, images[:2])  # traced at batch 2, run at 359
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("QuantizeLinear") == 4 and ops.count("DequantizeLinear") >= 9
    assert {"Conv", "Gemm", "MaxPool", "Flatten"} <= set(ops)
    weights = {i.name: i for i in proto.graph.initializer}
    assert weights["0.weight"].data_type == onnx.TensorProto.INT8
    assert weights["0.bias_int32"].data_type == onnx.TensorProto.INT32
    expected = logits(qmodel, images)
    got = session.run(None, {"x": images.numpy()})[0]
    # NOTE: ORT runs the same int32 sums and requantization; a rounding tie broken the other
    # way moves one output by one step, so the stated tolerance is 2 output scales
    output_scale = qmodel[-2].qparams[0]
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.99
    assert numpy.abs(got - expected).max() <= 2 * output_scale


def test_conv_options_pooling_and_relu_layers_in_onnx_runtime():
    dt.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.ReLU(),
                          nn.Conv2d(8, 6, 3, padding="same", dilation=2, bias=False),
                          nn.MaxPool2d(3, stride=2, padding=1), nn.ReLU(), nn.Dropout(0.2),
                          nn.Flatten(), nn.Linear(6 * 4 * 4, 5)).eval()
    x = dt.randn(24, 4, 15, 15)
    qmodel = static_quantize(model, x)
    _, session = _session(qmodel, x[:3])
    expected, got = logits(qmodel, x), session.run(None, {"x": x.numpy()})[0]
    assert got.shape == (24, 5)
    assert numpy.abs(got - expected).max() <= 2 * qmodel[-2].qparams[0]


def test_nested_sequentials_quantize_and_export():
    dt.manual_seed(8)
    model = nn.Sequential(OrderedDict(
        features=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                               nn.MaxPool2d(2)),
        flatten=nn.Flatten(),
        classifier=nn.Sequential(nn.Linear(8 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, 4)))).eval()
    x = dt.randn(32, 3, 16, 16)
    qmodel = static_quantize(model, x)
    assert isinstance(qmodel.features[0], QuantizedConv2d) and qmodel.features[0].relu
    assert "classifier.2.weight" in qmodel.state_dict()
    expected = logits(qmodel, x)
    assert numpy.abs(expected - logits(model, x)).max() < 0.05 * numpy.abs(expected).max()
    _, session = _session(qmodel, x[:2])
    got = session.run(None, {"x": x.numpy()})[0]
    assert numpy.abs(got - expected).max() <= 2 * qmodel.classifier[-1].qparams[0]


def test_dynamic_linear_in_onnx_runtime_agrees_with_disttrain():
    dt.manual_seed(6)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5)).eval()
    qmodel = quantize_dynamic(model, {nn.Linear})
    x = dt.randn(33, 20)
    proto, session = _session(qmodel, x[:4])
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("DynamicQuantizeLinear") == 2 and ops.count("MatMulInteger") == 2
    got = session.run(None, {"x": x.numpy()})[0]
    assert numpy.allclose(got, logits(qmodel, x), rtol=1e-5, atol=1e-5)


def test_unexportable_quantized_layers_raise_naming_the_module():
    lstm = nn.Sequential(nn.LSTM(3, 4))
    with pytest.raises(ExportError, match=r"cannot export '0' \(DynamicQuantizedLSTM\)"):
        export(quantize_dynamic(lstm), dt.randn(2, 1, 3), io.BytesIO())
    qmodel = static_quantize(nn.Sequential(nn.Linear(3, 4), nn.Sigmoid()).eval(), dt.randn(8, 3))
    with pytest.raises(ExportError, match=r"cannot export FloatFallback '1' \(FloatFallback\)"):
        export(qmodel, dt.randn(2, 3), io.BytesIO())
    qmodel = static_quantize(nn.Sequential(nn.Linear(3, 4)).eval(), dt.randn(8, 5, 3))
    with pytest.raises(ExportError, match=r"QuantizedLinear '0' on a 3-D input"):
        export(qmodel, dt.randn(2, 5, 3), io.BytesIO())
