"""nn.RNN / nn.LSTM / nn.GRU as ONNX's RNN / LSTM / GRU ops, one node per layer: the weights
are stacked per direction and their gates reordered from torch's order to ONNX's."""

from __future__ import annotations

import numpy

from disttrain.backend import asnumpy
from disttrain.nn.rnn import RNNBase
from disttrain.nn.utils.rnn import PackedSequence
from disttrain.onnx.registry import register_function_converter, register_module_converter
from disttrain.ops.rnn import GRULayer, LSTMLayer, RNNLayer

# NOTE: torch's gate blocks in ONNX's order: LSTM i f g o -> i o f c; GRU r z n -> z r h
_ORDER = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN_TANH": (0,), "RNN_RELU": (0,)}
_OP = {"LSTM": "LSTM", "GRU": "GRU", "RNN_TANH": "RNN", "RNN_RELU": "RNN"}


def _reorder(array, mode: str):
    blocks = numpy.split(asnumpy(array), len(_ORDER[mode]), axis=0)
    return numpy.concatenate([blocks[i] for i in _ORDER[mode]], axis=0)


def _layer_weights(g, module, layer: int, path: str) -> list[str]:
    """W, R, B initializers of one layer (all directions stacked)."""
    suffixes = ("", "_reverse")[:2 if module.bidirectional else 1]
    ws, rs, bs = [], [], []
    for suffix in suffixes:
        w_ih, w_hh, b_ih, b_hh = module._layer_weights(layer, suffix)
        ws.append(_reorder(w_ih.array, module.mode))
        rs.append(_reorder(w_hh.array, module.mode))
        if b_ih is not None:
            bs.append(numpy.concatenate([_reorder(b_ih.array, module.mode),
                                         _reorder(b_hh.array, module.mode)]))
    names = [g.initializer(numpy.stack(ws), f"{path}.W_l{layer}"),
             g.initializer(numpy.stack(rs), f"{path}.R_l{layer}")]
    return names + ([g.initializer(numpy.stack(bs), f"{path}.B_l{layer}")] if bs else [""])


def _state_slice(g, state: str, layer: int, directions: int) -> str:
    if not state:
        return ""
    start = layer * directions
    return g.node("Slice", [state, g.ints([start]), g.ints([start + directions]), g.ints([0])])


def _attrs(module) -> dict:
    directions = 2 if module.bidirectional else 1
    attrs = {"hidden_size": module.hidden_size,
             "direction": "bidirectional" if module.bidirectional else "forward"}
    if module.mode == "GRU":
        attrs["linear_before_reset"] = 1  # NOTE: torch's n = tanh(W_in x + r * (W_hn h + b_hn))
    if module.mode.startswith("RNN_"):
        attrs["activations"] = ["Tanh" if module.mode == "RNN_TANH" else "Relu"] * directions
    return attrs


def _states(g, module, call, batched: bool) -> list[str]:
    """The ONNX names of h_0 (and c_0), each (layers * directions, B, H), or ''."""
    hx = call.arguments["args"][1] if len(call.arguments["args"]) > 1 else \
        call.arguments["kwargs"].get("hx")
    count = 2 if module.mode == "LSTM" else 1
    if hx is None:
        return [""] * count
    states = list(hx) if count == 2 else [hx]
    names = [g.value(s) for s in states]
    return names if batched else [g.node("Unsqueeze", [n, g.ints([1])]) for n in names]


def _recurrent(g, module, call):
    args = call.arguments["args"]
    x_tensor = args[0] if args else call.arguments["kwargs"]["input"]
    if isinstance(x_tensor, PackedSequence):
        raise g.error(f"cannot export {type(module).__name__} with a PackedSequence input: "
                      "pass the padded (T, B, F) tensor")
    batched, x = x_tensor.ndim == 3, g.value(x_tensor)
    if not batched:
        x = g.node("Unsqueeze", [x, g.ints([1])])
    elif module.batch_first:
        x = g.node("Transpose", [x], perm=[1, 0, 2])
    states, directions = _states(g, module, call, batched), 2 if module.bidirectional else 1
    finals = [[] for _ in states]
    for layer in range(module.num_layers):
        weights = _layer_weights(g, module, layer, call.path or "rnn")
        initial = [_state_slice(g, s, layer, directions) for s in states]
        outs = g.node(_OP[module.mode], [x, *weights, "", *initial], outputs=1 + len(states),
                      **_attrs(module))
        # Y (T, D, B, H) -> (T, B, D * H)
        y = g.node("Transpose", [outs[0]], perm=[0, 2, 1, 3])
        x = g.node("Reshape", [y, g.ints([0, 0, -1])])
        for kept, final in zip(finals, outs[1:]):
            kept.append(final)
    finals = [f[0] if len(f) == 1 else g.node("Concat", f, axis=0) for f in finals]
    if not batched:
        return [g.node("Squeeze", [v, g.ints([1])]) for v in [x, *finals]]
    if module.batch_first:
        x = g.node("Transpose", [x], perm=[1, 0, 2])
    return [x, *finals]


register_module_converter(RNNBase, _recurrent)


# ---------------------------------------------------------------- the recurrence primitives
# NOTE: what the cells (and any other caller) apply: the input projection xg is already done,
# so ONNX's input weights W are the identity with torch's gate blocks reordered
_LAYER_MODES = {RNNLayer: "RNN", LSTMLayer: "LSTM", GRULayer: "GRU"}


def _constant(g, name: str, what: str):
    value = g.const_value(name)
    if value is None:
        raise g.error(f"cannot export a recurrence whose {what} is computed at run time")
    return value


def _layer_function(g, inputs, call):
    mode = _LAYER_MODES[type(call.target)]
    if call.params.get("lengths") is not None:
        raise g.error(f"cannot export {mode} over padded sequences with lengths "
                      "(PackedSequence): pass the padded tensor")
    if mode == "RNN":
        mode = "RNN_RELU" if call.params.get("nonlinearity") == "relu" else "RNN_TANH"
    states = 2 if mode == "LSTM" else 1
    xg, initial, w_hh = inputs[0], inputs[1:1 + states], inputs[1 + states]
    size = call.inputs[0].shape[-1]
    perm = numpy.concatenate([numpy.split(numpy.arange(size), len(_ORDER[mode]))[i]
                              for i in _ORDER[mode]])
    dtype = call.inputs[0].dtype
    b_hh = _reorder(_constant(g, inputs[2 + states], "b_hh"), mode) if \
        len(inputs) > 2 + states else numpy.zeros(size, dtype)
    weights = [g.constant(numpy.eye(size, dtype=dtype)[perm][None], name="W_identity"),
               g.constant(_reorder(_constant(g, w_hh, "w_hh"), mode)[None], name="R"),
               g.constant(numpy.concatenate([numpy.zeros(size, dtype), b_hh])[None], name="B")]
    initial = ["" if g.const_value(h) is not None and not g.const_value(h).any() else
               g.node("Unsqueeze", [h, g.ints([0])]) for h in initial]
    attrs = {**_attrs_of(mode, size // len(_ORDER[mode])),
             "direction": "reverse" if call.params.get("reverse") else "forward"}
    outs = g.node(_OP[mode], [xg, *weights, "", *initial], outputs=1 + states, **attrs)
    y = g.node("Squeeze", [outs[0], g.ints([1])])
    return y if mode != "LSTM" else g.node("Concat", [y, outs[2]], axis=0)


def _attrs_of(mode: str, hidden: int) -> dict:
    attrs = {"hidden_size": hidden}
    if mode == "GRU":
        attrs["linear_before_reset"] = 1
    if mode.startswith("RNN_"):
        attrs["activations"] = ["Tanh" if mode == "RNN_TANH" else "Relu"]
    return attrs


for _cls in _LAYER_MODES:
    register_function_converter(_cls, _layer_function)
