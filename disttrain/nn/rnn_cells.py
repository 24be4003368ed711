"""Single-step recurrent cells with torch.nn's names and layouts: RNNCell, LSTMCell, GRUCell.

A step is the input GEMM (F.linear) and the same fused primitive nn.RNN / LSTM / GRU run over
a whole sequence, here over a sequence of length 1.
"""

from __future__ import annotations

import math

import numpy

from disttrain.nn import functional as F
from disttrain.nn.module import Module
from disttrain.nn.rnn import uniform_parameter
from disttrain.ops.rnn import GRULayer, LSTMLayer, RNNLayer
from disttrain.tensor import Tensor


class RNNCellBase(Module):
    """Parameters weight_ih (G, input_size), weight_hh (G, H), bias_ih, bias_hh (G,)."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool, num_chunks: int,
                 device=None, dtype=None, *, generator=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{type(self).__name__}: {name} must be a positive int, "
                                 f"got {value!r}")
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        gates, bound = num_chunks * hidden_size, 1.0 / math.sqrt(hidden_size)
        self.weight_ih = uniform_parameter((gates, input_size), dtype, bound, generator)
        self.weight_hh = uniform_parameter((gates, hidden_size), dtype, bound, generator)
        for name in ("bias_ih", "bias_hh"):
            if bias:
                setattr(self, name, uniform_parameter((gates,), dtype, bound, generator))
            else:
                self.register_parameter(name, None)
        if device is not None:
            self.to(device)

    def _project(self, input: Tensor, states: tuple) -> tuple:
        """(x W_ih^T + b_ih as (1, B, G), states as (B, H), whether the input had a batch)."""
        op = type(self).__name__
        if input.ndim not in (1, 2) or input.shape[-1] != self.input_size:
            raise ValueError(f"{op}: expected input of shape (B, {self.input_size}) or "
                             f"({self.input_size},), got {tuple(input.shape)}")
        batched = input.ndim == 2
        x = input if batched else input.unsqueeze(0)
        expected = (x.shape[0], self.hidden_size)
        fixed = []
        for state in states:
            if state is None:
                state = Tensor(numpy.zeros(expected, dtype=x.dtype)).to(x.device)
            elif not batched:
                state = state.unsqueeze(0)
            if tuple(state.shape) != expected:
                raise ValueError(f"{op}: expected hidden state of shape {expected}, got "
                                 f"{tuple(state.shape)}")
            fixed.append(state)
        return F.linear(x, self.weight_ih, self.bias_ih).unsqueeze(0), fixed, batched

    def _bias_hh(self) -> tuple:
        return () if self.bias_hh is None else (self.bias_hh,)

    def extra_repr(self) -> str:
        text = f"{self.input_size}, {self.hidden_size}"
        return text if self.bias else text + ", bias=False"


class RNNCell(RNNCellBase):
    """One Elman RNN step, h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh).

    Args:
        input_size, hidden_size: features of x and of h.
        bias: if False, no b_ih / b_hh.
        nonlinearity: 'tanh' (default) or 'relu'.

    Shape:
        input (B, input_size) or (input_size,), hx (B, hidden_size) -> h' (B, hidden_size).

    Example:
        >>> nn.RNNCell(10, 20)(dt.randn(3, 10)).shape
        (3, 20)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None, *, generator=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"RNNCell: unknown nonlinearity {nonlinearity!r}; expected 'tanh' "
                             "or 'relu'")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype, generator=generator)
        self.nonlinearity = nonlinearity

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        xg, (h,), batched = self._project(input, (hx,))
        out = RNNLayer.apply(xg, h, self.weight_hh, *self._bias_hh(),
                             nonlinearity=self.nonlinearity)[0]
        return out if batched else out.squeeze(0)


class LSTMCell(RNNCellBase):
    """One LSTM step (gate order i, f, g, o), returning (h', c').

    Args:
        input_size, hidden_size: features of x and of h.
        bias: if False, no b_ih / b_hh.

    Shape:
        input (B, input_size), hx (h, c) each (B, hidden_size) -> (h', c') each (B, hidden_size).

    Example:
        >>> h, c = nn.LSTMCell(10, 20)(dt.randn(3, 10))
        >>> h.shape, c.shape
        ((3, 20), (3, 20))
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, generator=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype, generator=generator)

    def forward(self, input: Tensor, hx: tuple | None = None) -> tuple:
        xg, (h, c), batched = self._project(input, (None, None) if hx is None else tuple(hx))
        out = LSTMLayer.apply(xg, h, c, self.weight_hh, *self._bias_hh())
        h, c = out[0], out[1]
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    """One GRU step (gate order r, z, n; n = tanh(W_in x + b_in + r * (W_hn h + b_hn))).

    Args:
        input_size, hidden_size: features of x and of h.
        bias: if False, no b_ih / b_hh.

    Shape:
        input (B, input_size), hx (B, hidden_size) -> h' (B, hidden_size).

    Example:
        >>> nn.GRUCell(10, 20)(dt.randn(3, 10)).shape
        (3, 20)
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None, *, generator=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype, generator=generator)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        xg, (h,), batched = self._project(input, (hx,))
        out = GRULayer.apply(xg, h, self.weight_hh, *self._bias_hh())[0]
        return out if batched else out.squeeze(0)
