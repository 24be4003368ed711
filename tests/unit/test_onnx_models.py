"""disttrain.onnx.export of whole models: the examples' CNNs and MLP (mnist_cnn.py,
benchmark_core.py), recurrent layers (ONNX LSTM/GRU/RNN ops with torch's gates reordered),
attention and TransformerEncoderLayer, and char_lm's two language models; ONNX Runtime equals
disttrain on random inputs at the traced batch size and at another one."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy
import pytest
from onnx_runtime_check import Lambda, check_export, export_bytes, randn, run_both, session

import disttrain as dt  # noqa: E402
import disttrain.nn as nn  # noqa: E402

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"onnx_test_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mnist_cnn_simple_cnn():
    check_export(_example("mnist_cnn").SimpleCNN(), randn(1, 28, 28), batches=(4, 1, 7))


@pytest.mark.parametrize("kind,shape", [("cnn", (1, 28, 28)), ("mnist_example", (1, 28, 28)),
                                        ("vgg_cifar", (3, 32, 32)), ("mlp", (20,))])
def test_benchmark_core_models(kind, shape):
    model = _example("benchmark_core").build_model(nn, kind, [20, 32, 16, 10])
    check_export(model, randn(*shape), batches=(3, 5))


@pytest.mark.parametrize("cls,kwargs", [
    (nn.LSTM, {}), (nn.LSTM, {"num_layers": 2, "batch_first": True}),
    (nn.LSTM, {"bidirectional": True, "num_layers": 2}), (nn.GRU, {"batch_first": True}),
    (nn.GRU, {"bidirectional": True}), (nn.RNN, {"nonlinearity": "relu", "num_layers": 2}),
    (nn.RNN, {"bias": False}), (nn.LSTM, {"bias": False, "batch_first": True})])
def test_recurrent_layers(cls, kwargs):
    rnn = cls(5, 6, **kwargs)
    batch_first = kwargs.get("batch_first", False)
    axis = 0 if batch_first else 1
    make = (lambda n: dt.randn(n, 4, 5)) if batch_first else (lambda n: dt.randn(4, n, 5))
    # outputs: output (batch on `axis`), h_n (and c_n) with batch on axis 1
    outputs = [axis, 1, 1] if cls is nn.LSTM else [axis, 1]
    check_export(rnn, make, batch_axis=axis, output_axes=outputs)


def test_lstm_with_initial_state():
    lstm = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    model = Lambda(lambda m, x, h, c: m.lstm(x, (h, c)), lstm=lstm)

    def make(n):
        return dt.randn(n, 5, 3), dt.randn(2, n, 4), dt.randn(2, n, 4)
    args = make(2)
    data = export_bytes(model, args, input_names=["x", "h", "c"],
                        dynamic_axes={"x": [0], "h": [1], "c": [1]})
    sess = session(data)
    for n in (2, 3):
        run_both(model, make(n), sess, ["x", "h", "c"])


@pytest.mark.parametrize("cell,state", [(nn.LSTMCell, 2), (nn.GRUCell, 1), (nn.RNNCell, 1),
                                        (nn.LSTMCell, 0), (nn.GRUCell, 0)])
def test_cells_unrolled(cell, state):
    """Two steps of a cell, with the state given or left to the zero default."""
    module = cell(3, 4)

    def step(m, x, *hx):
        hx = (hx if len(hx) > 1 else hx[0]) if hx else None
        for t in range(2):
            hx = m.cell(x[:, t], hx)
        return hx
    model = Lambda(step, cell=module)
    output_axes = [0, 0] if cell is nn.LSTMCell else [0]

    def make(n):
        return (dt.randn(n, 2, 3),) + tuple(dt.randn(n, 4) for _ in range(state))
    check_export(model, make, output_axes=output_axes)


def test_unbatched_gru():
    check_export(nn.GRU(3, 4), lambda n: dt.randn(6, 3), batches=(1,), dynamic=False)


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention(batch_first):
    mha = nn.MultiheadAttention(8, 2, batch_first=batch_first)
    model = Lambda(lambda m, x: m.mha(x, x, x, need_weights=False)[0], mha=mha)
    axis = 0 if batch_first else 1
    make = (lambda n: dt.randn(n, 5, 8)) if batch_first else (lambda n: dt.randn(5, n, 8))
    check_export(model, make, batch_axis=axis)


@pytest.mark.parametrize("norm_first,activation", [(False, "relu"), (True, "gelu")])
def test_transformer_encoder_layer(norm_first, activation):
    layer = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.1, activation=activation,
                                       batch_first=True, norm_first=norm_first)
    check_export(layer, randn(5, 8))


def test_transformer_encoder_with_causal_mask():
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), 2,
                                    enable_nested_tensor=False)
    mask = nn.Transformer.generate_square_subsequent_mask(5)
    model = Lambda(lambda m, x: m.encoder(x, mask=mask), encoder=encoder)
    check_export(model, randn(5, 8))


@pytest.mark.parametrize("batch_first", [True, False])
def test_attention_with_bias_kv(batch_first):
    """bias_k / bias_v are expanded to the batch and concatenated: the expand takes the
    batch from the run-time shape."""
    mha = nn.MultiheadAttention(8, 2, batch_first=batch_first, add_bias_kv=True)
    model = Lambda(lambda m, x: m.mha(x, x, x)[0], mha=mha)
    axis = 0 if batch_first else 1
    make = (lambda n: dt.randn(n, 5, 8)) if batch_first else (lambda n: dt.randn(5, n, 8))
    check_export(model, make, batch_axis=axis)


class ClassToken(nn.Module):
    """ViT's class token: a parameter expanded to the batch, concatenated before the
    (later computed) patch embeddings."""

    def __init__(self):
        super().__init__()
        self.cls = nn.Parameter(dt.randn(1, 1, 8))
        self.embed = nn.Linear(6, 8)

    def forward(self, x):
        return dt.cat([self.cls.expand(x.shape[0], -1, -1), self.embed(x)], dim=1)


@pytest.mark.parametrize("opset", [13, 17])
def test_class_token_expanded_to_the_batch(opset):
    check_export(ClassToken(), randn(4, 6), opset_version=opset)


def test_full_transformer_two_inputs():
    model = nn.Transformer(d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                           dim_feedforward=16, batch_first=True)
    mask = nn.Transformer.generate_square_subsequent_mask(4)
    wrapper = Lambda(lambda m, src, tgt: m.t(src, tgt, tgt_mask=mask), t=model)
    check_export(wrapper, lambda n: (dt.randn(n, 5, 8), dt.randn(n, 4, 8)))


@pytest.mark.parametrize("kind", ["lstm", "gru", "transformer"])
def test_char_lm_models(kind):
    cfg = {"model": kind, "layers": 2, "d_model": 16, "hidden": 24, "heads": 2, "ff": 32,
           "dropout": 0.1, "seq_len": 12}
    model = _example("char_lm").build_model(cfg)
    check_export(model, lambda n: dt.randint(0, 256, (n, 12)), batches=(2, 5))


def test_output_identical_to_input_and_constant_output():
    model = Lambda(lambda m, x: (x, m.w * 1.0))
    model.w = nn.Parameter(dt.randn(3))
    check_export(model, randn(3), batches=(2,), dynamic=False)


def test_weights_survive_a_state_dict_round_trip(tmp_path):
    model = _example("mnist_cnn").SimpleCNN()
    path = tmp_path / "cnn.onnx"
    dt.onnx.export(model, dt.randn(2, 1, 28, 28), str(path))
    import onnx

    proto = onnx.load(str(path))
    weights = {i.name: onnx.numpy_helper.to_array(i) for i in proto.graph.initializer}
    state = model.state_dict()
    for name in ("conv.weight", "fc1.bias", "fc2.weight"):
        numpy.testing.assert_array_equal(weights[name], state[name])


@pytest.mark.parametrize("name", ["transformer", "conv1d_bn"])
def test_without_constant_folding(name):
    if name == "transformer":
        model, make = nn.TransformerEncoderLayer(8, 2, 16, batch_first=True), randn(5, 8)
    else:
        model = nn.Sequential(nn.Conv1d(2, 3, 3), nn.BatchNorm1d(3), nn.Flatten(),
                              nn.Linear(3 * 6, 2))
        make = randn(2, 8)
    args = make(2)
    data = export_bytes(model, args, do_constant_folding=False, dynamic_axes={"input": [0],
                                                                             "output": [0]})
    sess = session(data)
    model.eval()
    for n in (2, 3):
        run_both(model, (make(n),), sess, ["input"])


def test_verbose_prints_the_graph(capsys):
    export_bytes(nn.Linear(3, 2), dt.randn(2, 3), verbose=True)
    assert "Gemm" in capsys.readouterr().out
