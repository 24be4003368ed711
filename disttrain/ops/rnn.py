"""Fused recurrent layers: one primitive runs a whole (layer, direction) of an RNN, LSTM or GRU
over the sequence, with backward through time written by hand.

# NOTE: why whole-sequence primitives. A recurrence built from Tensor ops makes ~10 graph nodes
# per time step and its weight gradient one (4H, H) GEMM plus one (4H, H) accumulation per step.
# Here the caller does the input projection of every step in ONE GEMM before the loop (its
# result `xg` comes in), each step is one GEMM for all gates (h @ W_hh.T) plus fused element-wise
# maths, and backward gathers the per-step gate gradients so that dW_hh is ONE GEMM over the
# whole sequence. The loops are plain Python `for` loops: a 10,000-step sequence is one graph
# node, so backward through time never recurses.

Shapes: xg (T, B, G) with G = gates * H, h0 / c0 (B, H), w_hh (G, H), b_hh (G,). Gate order is
torch's: LSTM i, f, g, o; GRU r, z, n (n = tanh(x_n + r * (W_hn h + b_hn))).
"""

from __future__ import annotations

from disttrain.autograd import Function
from disttrain.backend import get_array_module


def _steps(length: int, reverse: bool) -> range:
    return range(length - 1, -1, -1) if reverse else range(length)


def _previous(seq, first, reverse: bool):
    """The state each step starts from: (T, B, H) from the per-step states and the initial one."""
    xp = get_array_module(seq)
    if reverse:
        return xp.concatenate([seq[1:], first[None]])
    return xp.concatenate([first[None], seq[:-1]])


def _sigmoid(x, out=None):
    xp = get_array_module(x)
    # NOTE: 0.5 * (1 + tanh(x / 2)) is sigmoid without exp overflow for very negative x
    out = xp.multiply(x, x.dtype.type(0.5), out=out)
    xp.tanh(out, out=out)
    out *= x.dtype.type(0.5)
    out += x.dtype.type(0.5)
    return out


def _masks(lengths, steps: int):
    """(T, B, 1) bool: step t is inside sequence b (packed sequences), or None for all."""
    if lengths is None:
        return None
    xp = get_array_module(lengths)
    return (xp.arange(steps)[:, None] < lengths[None, :])[..., None]


def _hold(mask, new, old) -> None:
    """Past the end of a sequence its state stays the last one (torch's packed semantics)."""
    if mask is not None:
        get_array_module(new).copyto(new, old, where=~mask)


def _hidden_weight_grads(dgh, hprev, needs: tuple, has_bias: bool) -> tuple:
    """(dW_hh, db_hh) as ONE GEMM and one sum over every step's hidden-gate gradients."""
    size = dgh.shape[-1]
    dw = dgh.reshape(-1, size).T @ hprev.reshape(-1, hprev.shape[-1]) if needs[0] else None
    db = dgh.sum(axis=(0, 1)) if has_bias and needs[1] else None
    return dw, db


class RNNLayer(Function):
    # NOTE: primitive for speed, see the module docstring. h_t = act(xg_t + h_{t-1} W_hh^T + b_hh)
    def forward(self, xg, h0, w_hh, b_hh=None, nonlinearity="tanh", reverse=False,
                lengths=None):
        xp = get_array_module(xg)
        out, masks = xp.empty_like(xg), _masks(lengths, xg.shape[0])
        h, w_t = h0, w_hh.T
        for t in _steps(xg.shape[0], reverse):
            pre = xp.add(xg[t], h @ w_t, out=out[t])
            if b_hh is not None:
                pre += b_hh
            _ = xp.tanh(pre, out=pre) if nonlinearity == "tanh" else xp.maximum(pre, 0, out=pre)
            _hold(None if masks is None else masks[t], pre, h)
            h = pre
        self.save(out, h0, w_hh, b_hh is not None, nonlinearity, reverse, masks)
        return out

    def backward(self, grad):
        out, h0, w_hh, has_bias, nonlinearity, reverse, masks = self.saved
        xp = get_array_module(grad)
        deriv = 1 - out * out if nonlinearity == "tanh" else (out > 0).astype(out.dtype)
        if masks is not None:
            deriv *= masks
        dpre = xp.empty_like(grad)
        dh = xp.zeros_like(h0)
        for t in _steps(grad.shape[0], not reverse):
            dh = grad[t] + dh
            xp.multiply(dh, deriv[t], out=dpre[t])
            dh_prev = dpre[t] @ w_hh
            _hold(None if masks is None else masks[t], dh_prev, dh)
            dh = dh_prev
        dw, db = _hidden_weight_grads(dpre, _previous(out, h0, reverse),
                                      self.needs_input_grad[2:] + (True,), has_bias)
        return dpre, dh, dw, db


class LSTMLayer(Function):
    # NOTE: primitive for speed, see the module docstring. The output is (T + 1, B, H): the
    # hidden state of every step, then c_n (a Function has one output array).
    def forward(self, xg, h0, c0, w_hh, b_hh=None, reverse=False, lengths=None):
        xp = get_array_module(xg)
        steps, batch, size = xg.shape
        hidden = size // 4
        out = xp.empty((steps + 1, batch, hidden), xg.dtype)
        acts, cs = xp.empty_like(xg), xp.empty((steps, batch, hidden), xg.dtype)
        h, c, w_t, masks = h0, c0, w_hh.T, _masks(lengths, steps)
        for t in _steps(steps, reverse):
            a = xp.add(xg[t], h @ w_t, out=acts[t])
            if b_hh is not None:
                a += b_hh
            _sigmoid(a[:, :2 * hidden], out=a[:, :2 * hidden])  # i, f
            g = xp.tanh(a[:, 2 * hidden:3 * hidden], out=a[:, 2 * hidden:3 * hidden])
            _sigmoid(a[:, 3 * hidden:], out=a[:, 3 * hidden:])  # o
            c_new = xp.multiply(a[:, hidden:2 * hidden], c, out=cs[t])
            c_new += a[:, :hidden] * g
            h_new = xp.multiply(a[:, 3 * hidden:], xp.tanh(c_new), out=out[t])
            mask = None if masks is None else masks[t]
            _hold(mask, c_new, c)
            _hold(mask, h_new, h)
            h, c = h_new, c_new
        out[steps] = c
        self.save(acts, cs, out, h0, c0, w_hh, b_hh is not None, reverse, masks)
        return out

    def backward(self, grad):
        acts, cs, out, h0, c0, w_hh, has_bias, reverse, masks = self.saved
        xp = get_array_module(grad)
        steps, hidden = cs.shape[0], cs.shape[2]
        tanh_c = xp.tanh(cs)
        cprev = _previous(cs, c0, reverse)
        deriv = acts * (1 - acts)
        g_all = acts[..., 2 * hidden:3 * hidden]
        deriv[..., 2 * hidden:3 * hidden] = 1 - g_all * g_all
        if masks is not None:
            deriv *= masks
        dgates = xp.empty_like(acts)
        dh, dc = xp.zeros_like(h0), grad[steps].copy()
        for t in _steps(steps, not reverse):
            a, d, mask = acts[t], dgates[t], None if masks is None else masks[t]
            dh = grad[t] + dh
            dh_in = dh if mask is None else dh * mask
            dc += dh_in * a[:, 3 * hidden:] * (1 - tanh_c[t] * tanh_c[t])
            xp.multiply(dc, a[:, 2 * hidden:3 * hidden], out=d[:, :hidden])
            xp.multiply(dc, cprev[t], out=d[:, hidden:2 * hidden])
            xp.multiply(dc, a[:, :hidden], out=d[:, 2 * hidden:3 * hidden])
            xp.multiply(dh_in, tanh_c[t], out=d[:, 3 * hidden:])
            d *= deriv[t]
            forget = a[:, hidden:2 * hidden]
            dc *= forget if mask is None else xp.where(mask, forget, 1)
            dh_prev = d @ w_hh
            _hold(mask, dh_prev, dh)
            dh = dh_prev
        dw, db = _hidden_weight_grads(dgates, _previous(out[:steps], h0, reverse),
                                      self.needs_input_grad[3:] + (True,), has_bias)
        return dgates, dh, dc, dw, db


class GRULayer(Function):
    # NOTE: primitive for speed, see the module docstring. r and z add W_h h + b_h to the input
    # gates; n = tanh(x_n + r * (W_hn h + b_hn)) as torch; h_t = (1 - z) * n + z * h_{t-1}.
    def forward(self, xg, h0, w_hh, b_hh=None, reverse=False, lengths=None):
        xp = get_array_module(xg)
        steps, batch, size = xg.shape
        hidden = size // 3
        out = xp.empty((steps, batch, hidden), xg.dtype)
        acts, nh_all = xp.empty_like(xg), xp.empty_like(out)
        h, w_t, masks = h0, w_hh.T, _masks(lengths, steps)
        for t in _steps(steps, reverse):
            gh = h @ w_t
            if b_hh is not None:
                gh += b_hh
            a = acts[t]
            _sigmoid(xp.add(xg[t, :, :2 * hidden], gh[:, :2 * hidden], out=a[:, :2 * hidden]),
                     out=a[:, :2 * hidden])
            nh_all[t] = gh[:, 2 * hidden:]
            n = xp.multiply(a[:, :hidden], nh_all[t], out=a[:, 2 * hidden:])
            n += xg[t, :, 2 * hidden:]
            xp.tanh(n, out=n)
            h_new = xp.add(n, a[:, hidden:2 * hidden] * (h - n), out=out[t])
            _hold(None if masks is None else masks[t], h_new, h)
            h = h_new
        self.save(acts, nh_all, out, h0, w_hh, b_hh is not None, reverse, masks)
        return out

    def backward(self, grad):
        acts, nh_all, out, h0, w_hh, has_bias, reverse, masks = self.saved
        xp = get_array_module(grad)
        steps, hidden = out.shape[0], out.shape[2]
        hprev = _previous(out, h0, reverse)
        dgx, dgh = xp.empty_like(acts), xp.empty_like(acts)
        dh = xp.zeros_like(h0)
        for t in _steps(steps, not reverse):
            a = acts[t]
            r, z, n = a[:, :hidden], a[:, hidden:2 * hidden], a[:, 2 * hidden:]
            dh = grad[t] + dh
            dn = dh * (1 - z) * (1 - n * n)
            xp.multiply(dn * nh_all[t], r * (1 - r), out=dgx[t, :, :hidden])
            xp.multiply(dh * (hprev[t] - n), z * (1 - z), out=dgx[t, :, hidden:2 * hidden])
            dgx[t, :, 2 * hidden:] = dn
            dgh[t, :, :2 * hidden] = dgx[t, :, :2 * hidden]
            xp.multiply(dn, r, out=dgh[t, :, 2 * hidden:])
            mask = None if masks is None else masks[t]
            if mask is not None:
                dgx[t] *= mask
                dgh[t] *= mask
            dh_prev = dh * z + dgh[t] @ w_hh
            _hold(mask, dh_prev, dh)
            dh = dh_prev
        dw, db = _hidden_weight_grads(dgh, hprev, self.needs_input_grad[2:] + (True,), has_bias)
        return dgx, dh, dw, db
