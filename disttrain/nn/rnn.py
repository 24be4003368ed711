"""Recurrent layers with torch.nn's names, parameter layouts and gate order: RNN, LSTM, GRU and
their single-step cells RNNCell, LSTMCell, GRUCell.

Each (layer, direction) is two graph nodes: the input projection of the whole sequence (one
GEMM) and one fused recurrence primitive from disttrain.ops.rnn (one GEMM per step for all
gates, backward through time by hand, no recursion).
"""

from __future__ import annotations

import math
import warnings

import numpy

from disttrain.backend import get_array_module
from disttrain.nn import functional as F
from disttrain.nn import init
from disttrain.nn.module import Module, Parameter
from disttrain.nn.utils.rnn import PackedSequence, pad_packed_sequence
from disttrain.ops.rnn import GRULayer, LSTMLayer, RNNLayer
from disttrain.tensor import Tensor
from disttrain.tensor_shape import cat, stack

_GATES = {"RNN_TANH": 1, "RNN_RELU": 1, "LSTM": 4, "GRU": 3}


def uniform_parameter(shape, dtype, bound: float, generator) -> Parameter:
    """A new Parameter drawn from U(-bound, bound), torch's init for recurrent weights."""
    param = Parameter(numpy.zeros(shape, dtype=numpy.dtype(dtype or "float32")))
    init.uniform_(param, -bound, bound, generator)  # NOTE: torch's U(-1/sqrt(H), 1/sqrt(H))
    return param


def _run_layer(mode: str, xg: Tensor, state: tuple, w_hh, b_hh, reverse: bool,
               lengths) -> tuple:
    """(per-step outputs (T, B, H), final h, final c or None) of one layer and direction.
    NOTE: with lengths a finished sequence holds its state, so the last step still has it."""
    bias = () if b_hh is None else (b_hh,)
    last = 0 if reverse else xg.shape[0] - 1
    if mode == "LSTM":
        out = LSTMLayer.apply(xg, state[0], state[1], w_hh, *bias, reverse=reverse,
                              lengths=lengths)
        return out[:-1], out[last], out[-1]
    if mode == "GRU":
        out = GRULayer.apply(xg, state[0], w_hh, *bias, reverse=reverse, lengths=lengths)
    else:
        act = "tanh" if mode == "RNN_TANH" else "relu"
        out = RNNLayer.apply(xg, state[0], w_hh, *bias, nonlinearity=act, reverse=reverse,
                             lengths=lengths)
    return out, out[last], None


class RNNBase(Module):
    """The shared body of RNN, LSTM and GRU (torch.nn.RNNBase): parameters and the layer loop."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *, generator=None):
        super().__init__()
        _check_sizes(type(self).__name__, input_size, hidden_size, num_layers, dropout)
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional = float(dropout), bidirectional
        gate_size, bound = _GATES[mode] * hidden_size, 1.0 / math.sqrt(hidden_size)
        directions = 2 if bidirectional else 1
        self._flat_weights_names = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for suffix in ("", "_reverse")[:directions]:
                shapes = {"weight_ih": (gate_size, layer_input),
                          "weight_hh": (gate_size, hidden_size)}
                if bias:
                    shapes.update(bias_ih=(gate_size,), bias_hh=(gate_size,))
                for kind, shape in shapes.items():
                    name = f"{kind}_l{layer}{suffix}"
                    setattr(self, name, uniform_parameter(shape, dtype, bound, generator))
                    self._flat_weights_names.append(name)
        if device is not None:
            self.to(device)

    def flatten_parameters(self) -> None:
        """No-op, for ported scripts: torch packs the weights for cuDNN here; disttrain's
        recurrence reads the parameters as they are."""

    def _layer_weights(self, layer: int, suffix: str) -> tuple:
        get = lambda kind: getattr(self, f"{kind}_l{layer}{suffix}", None)  # noqa: E731
        return get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh")

    def forward(self, input: Tensor | PackedSequence, hx=None):
        packed, lengths = input if isinstance(input, PackedSequence) else None, None
        if packed is not None:
            if packed.data.ndim != 2 or packed.data.shape[1] != self.input_size:
                raise ValueError(f"{type(self).__name__}: expected PackedSequence data of shape "
                                 f"(N, {self.input_size}), got {tuple(packed.data.shape)}")
            input, lengths = pad_packed_sequence(packed)
            lengths = _on_device_of(input, lengths.detach().numpy())
        batched = input.ndim == 3
        x = input if packed is not None else _time_major(self, input, batched)
        states = _initial_states(self, x, hx, batched)
        x, h_n, c_n = self._layers(x, states, lengths)
        if packed is not None:
            output = _repack(x, packed)
        else:
            output = x.transpose(0, 1) if self.batch_first and batched else x
        if not batched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = None if c_n is None else c_n.squeeze(1)
        return (output, h_n) if self.mode != "LSTM" else (output, (h_n, c_n))

    def _layers(self, x: Tensor, states: tuple, lengths) -> tuple:
        """(last layer's output (T, B, D * H), h_n, c_n or None) over every layer and direction."""
        directions = 2 if self.bidirectional else 1
        finals_h, finals_c = [], []
        for layer in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(("", "_reverse")[:directions]):
                w_ih, w_hh, b_ih, b_hh = self._layer_weights(layer, suffix)
                state = tuple(s[layer * directions + d] for s in states)
                out, h_n, c_n = _run_layer(self.mode, _project(x, w_ih, b_ih), state, w_hh,
                                           b_hh, d == 1, lengths)
                outputs.append(out)
                finals_h.append(h_n)
                finals_c.append(c_n)
            x = outputs[0] if directions == 1 else cat(outputs, -1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        return x, stack(finals_h), stack(finals_c) if self.mode == "LSTM" else None

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            text += f", num_layers={self.num_layers}"
        if self.mode == "RNN_RELU":
            text += ", nonlinearity='relu'"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                text += f", {name}={getattr(self, name)}"
        return text


def _project(x: Tensor, weight, bias) -> Tensor:
    """x W_ih^T + b_ih for every step at once (T, B, G).
    NOTE: as ONE 2-D GEMM: numpy's 3-D matmul runs one small GEMM per step (and a slow loop for
    the strided view batch_first makes)."""
    steps, batch = x.shape[0], x.shape[1]
    flat = F.linear(x.reshape(steps * batch, x.shape[2]), weight, bias)
    return flat.reshape(steps, batch, flat.shape[1])


def _on_device_of(tensor: Tensor, array):
    """`array` on the array module (numpy or cupy) of `tensor`."""
    return get_array_module(tensor.array).asarray(array)


def _repack(x: Tensor, like: PackedSequence) -> PackedSequence:
    """The time-major (T, B, F) output packed in the input's order."""
    batch_sizes = like.batch_sizes.detach().numpy()
    order = numpy.arange(batch_sizes[0]) if like.sorted_indices is None \
        else like.sorted_indices.detach().numpy()
    steps = numpy.repeat(numpy.arange(len(batch_sizes)), batch_sizes)
    ranks = numpy.concatenate([numpy.arange(n) for n in batch_sizes])
    xp = get_array_module(x.array)
    return PackedSequence(x[xp.asarray(steps), xp.asarray(order[ranks])], like.batch_sizes,
                          like.sorted_indices, like.unsorted_indices)


def _check_sizes(op: str, input_size, hidden_size, num_layers, dropout) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"{op}: {name} must be a positive int, got {value!r}")
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) \
            or not 0 <= dropout <= 1:
        raise ValueError(f"{op}: dropout must be a number in [0, 1], got {dropout!r}")
    if dropout > 0 and num_layers == 1:
        warnings.warn(f"{op}: dropout option adds dropout after all but last recurrent layer, "
                      "so non-zero dropout expects num_layers greater than 1, but got "
                      f"dropout={dropout} and num_layers={num_layers}", UserWarning, stacklevel=3)


def _time_major(module: RNNBase, input: Tensor, batched: bool) -> Tensor:
    """The input as (T, B, input_size), checking its shape."""
    op = type(module).__name__
    if input.ndim not in (2, 3) or input.shape[-1] != module.input_size:
        raise ValueError(f"{op}: expected input of shape (T, B, {module.input_size}) "
                         f"(or (B, T, {module.input_size}) with batch_first, or unbatched "
                         f"(T, {module.input_size})), got {tuple(input.shape)}")
    if not batched:
        return input.unsqueeze(1)
    return input.transpose(0, 1) if module.batch_first else input


def _initial_states(module: RNNBase, x: Tensor, hx, batched: bool) -> tuple:
    """(h0,) or (h0, c0), each (num_layers * directions, B, H), zeros where hx is None."""
    op, count = type(module).__name__, 2 if module.mode == "LSTM" else 1
    expected = (module.num_layers * (2 if module.bidirectional else 1), x.shape[1],
                module.hidden_size)
    if hx is None:
        zeros = Tensor(numpy.zeros(expected, dtype=x.dtype)).to(x.device)
        return (zeros,) * count
    states = tuple(hx) if count == 2 else (hx,)
    if count == 2 and len(states) != 2:
        raise ValueError(f"{op}: hx must be a tuple (h_0, c_0), got {len(states)} tensors")
    states = tuple(s if batched else s.unsqueeze(1) for s in states)
    for name, state in zip(("h_0", "c_0"), states):
        if tuple(state.shape) != expected:
            raise ValueError(f"{op}: expected {name} of shape {expected}, got "
                             f"{tuple(state.shape)}")
    return states


class RNN(RNNBase):
    """Elman RNN, h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act tanh or relu.

    Args:
        input_size, hidden_size: features of x and of h.
        num_layers: stacked layers (default 1).
        nonlinearity: 'tanh' (default) or 'relu'.
        bias: if False, no b_ih / b_hh.
        batch_first: input and output are (B, T, F) instead of (T, B, F).
        dropout: dropout probability on each layer's output but the last, in training.
        bidirectional: also run each layer backwards in time; outputs are concatenated.
        generator: numpy Generator for the initial weights (default: dt.manual_seed's).

    Shape:
        input (T, B, input_size), h_0 (num_layers * directions, B, hidden_size) ->
        output (T, B, directions * hidden_size), h_n like h_0. Unbatched input drops B.

    Example:
        >>> out, h_n = nn.RNN(10, 20, 2)(dt.randn(5, 3, 10))
        >>> out.shape, h_n.shape
        ((5, 3, 20), (2, 3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None,
                 *, generator=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNN: unknown nonlinearity {nonlinearity!r}; expected 'tanh' or "
                             "'relu'")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device, dtype, generator=generator)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    """Long short-term memory, torch's gate order i, f, g, o in weight_ih_l{k} (4H, in).

    Args: as nn.RNN, without nonlinearity.

    Shape:
        input (T, B, input_size), (h_0, c_0) each (num_layers * directions, B, hidden_size) ->
        output (T, B, directions * hidden_size), (h_n, c_n) like (h_0, c_0).

    Example:
        >>> out, (h_n, c_n) = nn.LSTM(10, 20, batch_first=True)(dt.randn(3, 5, 10))
        >>> out.shape, c_n.shape
        ((3, 5, 20), (1, 3, 20))
    """

    def __init__(self, *args, **kwargs):
        super().__init__("LSTM", *args, **kwargs)


class GRU(RNNBase):
    """Gated recurrent unit, torch's gate order r, z, n with n = tanh(W_in x + b_in +
    r * (W_hn h + b_hn)).

    Args: as nn.RNN, without nonlinearity.

    Shape: as nn.RNN.

    Example:
        >>> out, h_n = nn.GRU(10, 20, bidirectional=True)(dt.randn(5, 3, 10))
        >>> out.shape, h_n.shape
        ((5, 3, 40), (2, 3, 20))
    """

    def __init__(self, *args, **kwargs):
        super().__init__("GRU", *args, **kwargs)
