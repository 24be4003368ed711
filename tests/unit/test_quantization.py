"""disttrain.quantization: quantize_dynamic (Linear/LSTM/GRU), static prepare/convert (fusion,
int8 layers, requantization, inference only), and quantized state_dicts in safetensors."""

import numpy
import pytest
from quantization_helpers import logits, small_cnn, static_quantize, trained_digits_cnn

import disttrain as dt
import disttrain.nn as nn
from disttrain.quantization import (
    DynamicQuantizedLinear,
    DynamicQuantizedLSTM,
    FloatFallback,
    QConfig,
    QuantizedConv2d,
    QuantizedLinear,
    convert,
    fuse_modules,
    minmax_qconfig,
    prepare,
    quantize_dynamic,
)
from disttrain.quantization.observers import MinMaxObserver, PerChannelMinMaxObserver


@pytest.fixture(scope="module")
def digits():
    return trained_digits_cnn()


def test_dynamic_linear_is_close_and_leaves_the_float_model_alone():
    dt.manual_seed(1)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 16)).eval()
    before = model[0].weight.detach().numpy().copy()
    qmodel = quantize_dynamic(model, {nn.Linear}, dtype=dt.qint8)
    assert isinstance(qmodel[0], DynamicQuantizedLinear) and isinstance(model[0], nn.Linear)
    assert qmodel[0].weight.dtype == numpy.int8
    assert (model[0].weight.detach().numpy() == before).all()
    x = dt.randn(50, 64)
    ref, out = logits(model, x), logits(qmodel, x)
    assert numpy.linalg.norm(out - ref) / numpy.linalg.norm(ref) < 0.02


def test_dynamic_quantization_keeps_digits_predictions(digits):
    model, images, labels, _ = digits
    qmodel = quantize_dynamic(model)  # default {Linear, LSTM, GRU}: the two Linear layers
    assert [type(m).__name__ for m in qmodel][4] == "DynamicQuantizedLinear"
    ref, out = logits(model, images), logits(qmodel, images)
    assert (ref.argmax(1) == out.argmax(1)).mean() >= 0.99
    assert numpy.abs(out - ref).max() < 0.05 * numpy.abs(ref).max()


@pytest.mark.parametrize("rnn_class", [nn.LSTM, nn.GRU])
@pytest.mark.parametrize("batch_first,bidirectional", [(False, False), (True, True)])
def test_dynamic_rnns_track_the_float_ones(rnn_class, batch_first, bidirectional):
    dt.manual_seed(2)
    rnn = rnn_class(6, 16, num_layers=2, batch_first=batch_first, bidirectional=bidirectional)
    qrnn = quantize_dynamic(nn.Sequential(rnn))[0]
    x = dt.randn(5, 7, 6)
    directions = 2 if bidirectional else 1
    h0 = dt.randn(2 * directions, 5 if batch_first else 7, 16) * 0.5
    hx = (h0, h0 * 0.3) if rnn_class is nn.LSTM else h0
    with dt.no_grad():
        (ref, ref_h), (out, out_h) = rnn(x, hx), qrnn(x, hx)
    assert out.shape == ref.shape
    assert numpy.abs(out.numpy() - ref.numpy()).max() < 0.03
    ref_h = ref_h if rnn_class is nn.GRU else ref_h[1]
    out_h = out_h if rnn_class is nn.GRU else out_h[1]
    assert numpy.abs(out_h.numpy() - ref_h.numpy()).max() < 0.03
    unbatched = qrnn(x[0] if not batch_first else x[:, 0])[0]
    assert unbatched.ndim == 2


def test_dynamic_errors():
    with pytest.raises(ValueError, match=r"dtype must be disttrain.qint8, got disttrain.quint8"):
        quantize_dynamic(nn.Linear(2, 2), dtype=dt.quint8)
    with pytest.raises(ValueError, match=r"no dynamic quantized version of Conv2d"):
        quantize_dynamic(nn.Conv2d(1, 1, 1), {nn.Conv2d})
    qlstm = quantize_dynamic(nn.LSTM(3, 4))
    assert isinstance(qlstm, DynamicQuantizedLSTM)
    with pytest.raises(TypeError, match=r"PackedSequence is not supported"):
        qlstm([dt.randn(2, 3)])
    with pytest.raises(ValueError,
                       match=r"input has 5 features, the layer expects 3 \(input \(4, 5\)\)"):
        quantize_dynamic(nn.Linear(3, 2))(dt.randn(4, 5))


def test_dynamic_by_submodule_name():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    qmodel = quantize_dynamic(model, {"1"})
    assert isinstance(qmodel[0], nn.Linear) and isinstance(qmodel[1], DynamicQuantizedLinear)


def test_static_cnn_keeps_accuracy(digits):
    model, images, labels, calibration = digits
    qmodel = static_quantize(model, calibration)
    assert isinstance(qmodel[1], QuantizedConv2d) and qmodel[1].relu
    assert isinstance(qmodel[5], QuantizedLinear) and not qmodel[7].relu
    ref, out = logits(model, images), logits(qmodel, images)
    float_acc, int8_acc = (ref.argmax(1) == labels).mean(), (out.argmax(1) == labels).mean()
    assert float_acc > 0.8 and int8_acc >= float_acc - 0.01
    assert (ref.argmax(1) == out.argmax(1)).mean() >= 0.98
    minmax = logits(static_quantize(model, calibration, minmax_qconfig), images)
    assert (minmax.argmax(1) == labels).mean() >= float_acc - 0.02


def test_static_layers_requantize_to_uint8_and_fuse_relu(digits):
    model, images, _, calibration = digits
    qmodel = static_quantize(model, calibration)
    x = qmodel[0](images[:4])
    assert x.int_repr.dtype == numpy.uint8
    conv = qmodel[1](x)
    # fused ReLU: the output range starts at real 0 (zero point 0), nothing below it
    assert conv.zero_point == 0 and conv.int_repr.dtype == numpy.uint8
    with dt.no_grad():
        float_conv = model[1](model[0](images[:4])).numpy()
    top = 255 * conv.scale  # the histogram observer's range clips the rare largest values
    inside = float_conv < top - conv.scale
    error = numpy.abs(conv.dequantize().numpy() - float_conv)
    assert inside.mean() > 0.99 and error[inside].max() < 3 * conv.scale
    assert (conv.int_repr[~inside] >= 254).all()


def test_fusion_folds_batch_norm_exactly():
    dt.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 25, 6), nn.BatchNorm1d(6))
    for bn in (model[1], model[5]):  # non-trivial running statistics
        bn.running_mean.array[...] = numpy.linspace(-1, 1, bn.num_features)
        bn.running_var.array[...] = numpy.linspace(0.5, 2, bn.num_features)
    model.eval()
    fused = fuse_modules(model, [["0", "1", "2"], ["4", "5"]])
    assert [type(m).__name__ for m in fused] == ["ConvReLU2d", "Identity", "Identity",
                                                 "Flatten", "Linear", "Identity"]
    x = dt.randn(2, 3, 5, 5)
    assert numpy.allclose(logits(fused, x), logits(model, x), atol=1e-5)
    with pytest.raises(RuntimeError, match=r"call model.eval\(\) first"):
        fuse_modules(model.train(), [["0", "1"]])
    with pytest.raises(ValueError, match=r"cannot fuse \['3', '4'\] of types \['Flatten', "):
        fuse_modules(model.eval(), [["3", "4"]])


def test_static_conv_options_and_float_fallback():
    dt.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=2), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding="same", dilation=2), nn.Sigmoid(),
                          nn.Flatten(), nn.Dropout(0.5), nn.Linear(8 * 16, 5)).eval()
    x = dt.randn(16, 4, 8, 8)
    qmodel = static_quantize(model, x)
    assert isinstance(dict(qmodel.named_children())["3"], FloatFallback)  # the Sigmoid
    ref, out = logits(model, x), logits(qmodel, x)
    assert numpy.abs(out - ref).max() < 0.05 * numpy.abs(ref).max() + 0.02


def test_quantized_model_is_inference_only(digits):
    model, images, _, calibration = digits
    qmodel = static_quantize(model, calibration)
    assert list(qmodel.parameters()) == [] and not qmodel.training
    with pytest.raises(RuntimeError, match=r"a quantized model runs inference only"):
        qmodel.train()
    out = qmodel(images[:2].requires_grad_())
    assert not out.requires_grad
    with pytest.raises(RuntimeError):
        out.sum().backward()
    with pytest.raises(TypeError, match=r"QuantizedLinear: expected a QTensor"):
        qmodel[5](images[:2])


def test_prepare_and_convert_errors():
    with pytest.raises(TypeError, match=r"prepare: expected an nn.Sequential .* got Linear"):
        prepare(nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"convert: expected the model returned by prepare"):
        convert(nn.Sequential(nn.Linear(2, 2)))
    asymmetric = QConfig(activation=MinMaxObserver,
                         weight=lambda: PerChannelMinMaxObserver(symmetric=False))
    prepared = prepare(nn.Sequential(nn.Linear(2, 2)), asymmetric)
    prepared(dt.randn(3, 2))
    with pytest.raises(ValueError, match=r"layer '0': the int8 kernels need per-channel "
                                         r"symmetric qint8 weights"):
        convert(prepared)


def _file_bytes(tmp_path, name, state_dict):
    path = tmp_path / name
    dt.save(state_dict, str(path))
    return path, path.stat().st_size


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
def test_state_dict_is_int8_small_and_loads_back(tmp_path, digits, kind):
    model, images, _, calibration = digits
    if kind == "mlp":
        dt.manual_seed(5)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    qmodel = static_quantize(model.eval(), calibration)
    state = qmodel.state_dict()
    weight_key = "0.weight" if kind == "cnn" else "1.weight"
    assert state[weight_key].dtype == numpy.int8
    assert state[weight_key.replace("weight", "weight_scale")].dtype == numpy.float32
    assert state["quant.zero_point"].dtype == numpy.int64
    _, float_bytes = _file_bytes(tmp_path, "float.safetensors", model.state_dict())
    path, int8_bytes = _file_bytes(tmp_path, "int8.safetensors", state)
    assert int8_bytes <= 0.3 * float_bytes
    # a fresh converted skeleton (no calibration) takes the saved quantized state
    fresh = convert(prepare(small_cnn() if kind == "cnn" else model))
    logits(fresh, images[:2])  # NOTE: fills the weight caches, which the load must refresh
    fresh.load_state_dict(dt.load(str(path)))
    assert (logits(fresh, images) == logits(qmodel, images)).all()
