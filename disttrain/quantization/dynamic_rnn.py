"""Dynamically quantized LSTM and GRU: torch's gate orders (LSTM i, f, g, o; GRU r, z, n)
and layouts, int8 weight_ih/weight_hh per gate row, the input sequence and each step's hidden
state quantized to uint8 over their own range. Inference only, numpy. Imports disttrain.nn
and siblings only."""

from __future__ import annotations

import numpy

from disttrain.backend import asnumpy
from disttrain.nn import GRU, LSTM
from disttrain.nn.module import Module
from disttrain.quantization import kernels
from disttrain.quantization.dynamic import dynamic_linear, quantize_weight
from disttrain.tensor import Tensor


def _sigmoid(x):
    # NOTE: the tanh form never overflows exp (numpy warns, and tests turn warnings to errors)
    return 0.5 * (1.0 + numpy.tanh(0.5 * x))


class _DynamicRNN(Module):
    """The shared body: int8 weights per (layer, direction) and the time loop."""

    mode = ""

    def __init__(self, float_rnn: Module):
        super().__init__()
        for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
                     "bidirectional"):
            setattr(self, name, getattr(float_rnn, name))
        for name in float_rnn._flat_weights_names:
            value = getattr(float_rnn, name)
            if name.startswith("weight"):
                weight_q, scale = quantize_weight(value)
                self.register_buffer(name, weight_q)
                self.register_buffer(f"{name}_scale", scale)
            else:
                self.register_buffer(name, asnumpy(value.array).astype(numpy.float32))
        self.eval()

    @classmethod
    def from_float(cls, float_rnn: Module) -> _DynamicRNN:
        return cls(float_rnn)

    def _weights(self, kind: str, layer: int, suffix: str) -> tuple:
        name = f"{kind}_l{layer}{suffix}"
        bias = getattr(self, name.replace("weight", "bias"), None)
        return (*kernels.weight_matrix(getattr(self, name).array),
                getattr(self, f"{name}_scale").array, None if bias is None else bias.array)

    def forward(self, input: Tensor, hx=None):
        if not isinstance(input, Tensor):
            raise TypeError(f"{type(self).__name__}: expected a Tensor input, got "
                            f"{type(input).__name__} (PackedSequence is not supported by the "
                            "dynamically quantized RNNs; pad the batch)")
        x = asnumpy(input.array).astype(numpy.float32)
        batched = x.ndim == 3
        if x.ndim not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(f"{type(self).__name__}: expected input (T, B, {self.input_size})"
                             f" or unbatched (T, {self.input_size}), got {x.shape}")
        x = x.transpose(1, 0, 2) if batched and self.batch_first else x
        x = x if batched else x[:, None]
        states = self._initial_states(hx, x.shape[1], batched)
        out, finals = self._layers(x, states)
        out = out.transpose(1, 0, 2) if batched and self.batch_first else out
        finals = [f if batched else f[:, 0] for f in finals]
        out = Tensor(out if batched else out[:, 0])
        if self.mode == "LSTM":
            return out, (Tensor(finals[0]), Tensor(finals[1]))
        return out, Tensor(finals[0])

    def _initial_states(self, hx, batch: int, batched: bool) -> list:
        count = 2 if self.mode == "LSTM" else 1
        shape = (self.num_layers * (2 if self.bidirectional else 1), batch, self.hidden_size)
        if hx is None:
            return [numpy.zeros(shape, numpy.float32) for _ in range(count)]
        given = list(hx) if count == 2 else [hx]
        states = [asnumpy(s.array).astype(numpy.float32) for s in given]
        states = [s if batched else s[:, None] for s in states]
        for state in states:
            if state.shape != shape:
                raise ValueError(f"{type(self).__name__}: expected hidden state of shape "
                                 f"{shape}, got {state.shape}")
        return states

    def _layers(self, x, states: list) -> tuple:
        directions = 2 if self.bidirectional else 1
        finals = [[] for _ in states]
        for layer in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(("", "_reverse")[:directions]):
                index = layer * directions + d
                out, last = self._direction(x, [s[index] for s in states], layer, suffix, d)
                outputs.append(out)
                for final, value in zip(finals, last):
                    final.append(value)
            x = outputs[0] if directions == 1 else numpy.concatenate(outputs, axis=-1)
        return x, [numpy.stack(f) for f in finals]

    def _direction(self, x, state: list, layer: int, suffix: str, reverse: int) -> tuple:
        steps, batch = x.shape[:2]
        kn, sums, scale, bias = self._weights("weight_ih", layer, suffix)
        projected = dynamic_linear(x.reshape(steps * batch, -1), kn, sums, scale, bias)
        projected = projected.reshape(steps, batch, -1)
        hh = self._weights("weight_hh", layer, suffix)
        out = numpy.empty((steps, batch, self.hidden_size), numpy.float32)
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            state = self._cell(projected[t], state, hh)
            out[t] = state[0]
        return out, state


class DynamicQuantizedLSTM(_DynamicRNN):
    """nn.LSTM with int8 weights (buffers `weight_ih_l0` int8, `weight_ih_l0_scale` ...) and
    inputs/hidden states quantized per step; returns (output, (h_n, c_n)) as nn.LSTM."""

    mode = "LSTM"

    def _cell(self, gates_x, state: list, hh: tuple) -> list:
        h, c = state
        gates = gates_x + dynamic_linear(h, *hh)
        i, f, g, o = numpy.split(gates, 4, axis=1)
        c = _sigmoid(f) * c + _sigmoid(i) * numpy.tanh(g)
        return [_sigmoid(o) * numpy.tanh(c), c]


class DynamicQuantizedGRU(_DynamicRNN):
    """nn.GRU with int8 weights and inputs/hidden states quantized per step; returns
    (output, h_n) as nn.GRU."""

    mode = "GRU"

    def _cell(self, gates_x, state: list, hh: tuple) -> list:
        (h,) = state
        gates_h = dynamic_linear(h, *hh)
        x_r, x_z, x_n = numpy.split(gates_x, 3, axis=1)
        h_r, h_z, h_n = numpy.split(gates_h, 3, axis=1)
        r, z = _sigmoid(x_r + h_r), _sigmoid(x_z + h_z)
        n = numpy.tanh(x_n + r * h_n)
        return [(1.0 - z) * n + z * h]


for _float, _quantized in ((LSTM, DynamicQuantizedLSTM), (GRU, DynamicQuantizedGRU)):
    _quantized.__doc__ += f"\n\n    Built by quantize_dynamic from an nn.{_float.__name__}."
