"""nn.MultiheadAttention with torch's parameters (in_proj_weight, in_proj_bias, out_proj),
initialisation, masks and return values."""

from __future__ import annotations

import functools
import math
import operator

import numpy

from disttrain.backend import get_array_module
from disttrain.functional_attention import attention
from disttrain.nn import functional as F
from disttrain.nn import init
from disttrain.nn.layers import Linear, empty_parameter
from disttrain.nn.module import Module
from disttrain.tensor import Tensor, cat


def _float_mask(mask: Tensor, dtype, name: str) -> Tensor:
    """A bool mask (True = masked out, torch's MultiheadAttention convention) as an additive
    float mask (-inf / 0); a float mask as it is."""
    if mask.dtype == numpy.bool_:
        xp = get_array_module(mask.array)
        return Tensor._make(xp.where(mask.array, dtype.type(-numpy.inf), dtype.type(0)))
    if mask.dtype != dtype:
        raise ValueError(f"MultiheadAttention: {name} must be bool or {dtype}, got {mask.dtype}")
    return mask


class MultiheadAttention(Module):
    """Multi-head attention, as torch.nn.MultiheadAttention (its state_dict loads unchanged).

    Args:
        embed_dim: total dimension E of the model (split over the heads).
        num_heads: number of heads H; E must be divisible by H.
        dropout: dropout probability on the attention weights (training only).
        bias: add biases to the input and output projections.
        batch_first: inputs and outputs are (N, L, E) instead of (L, N, E).
        add_bias_kv: learn one extra key and value (bias_k, bias_v) appended to the sequence.
        add_zero_attn: append a zero key and value (after the projections) to the sequence.
        kdim, vdim: feature sizes of key and value (default embed_dim); when they differ from
            embed_dim the projections are q_proj_weight, k_proj_weight, v_proj_weight.
        generator: numpy Generator for the initial weights and the dropout masks.

    Shape:
        query (L, N, E), key and value (S, N, E) ((N, L, E) with batch_first; (L, E) unbatched)
        -> output like query, weights (N, L, S) or (N, H, L, S) without averaging.

    Example:
        >>> mha = nn.MultiheadAttention(16, 4, batch_first=True)
        >>> x = dt.randn(2, 5, 16)
        >>> out, weights = mha(x, x, x)
        >>> out.shape, weights.shape
        ((2, 5, 16), (2, 5, 5))
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False, kdim=None, vdim=None,
                 batch_first: bool = False, device=None, dtype=None, *, generator=None):
        super().__init__()
        if num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by "
                             f"num_heads ({num_heads})")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1], got {dropout}")
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.kdim, self.vdim = kdim or embed_dim, vdim or embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.head_dim, self.batch_first = embed_dim // num_heads, batch_first
        self.generator, self.add_zero_attn = generator, add_zero_attn
        self._make_parameters(bias, add_bias_kv, dtype)
        if device is not None:
            self.to(device)

    def _make_parameters(self, bias: bool, add_bias_kv: bool, dtype) -> None:
        """torch's parameters in torch's order, with torch's initialisation."""
        e, gen = self.embed_dim, self.generator
        names = ("q_proj_weight", "k_proj_weight", "v_proj_weight")
        if self._qkv_same_embed_dim:
            self.in_proj_weight = empty_parameter((3 * e, e), dtype)
            for name in names:
                self.register_parameter(name, None)
        else:
            self.register_parameter("in_proj_weight", None)
            for name, dim in zip(names, (e, self.kdim, self.vdim)):
                setattr(self, name, empty_parameter((e, dim), dtype))
        if bias:
            self.in_proj_bias = empty_parameter((3 * e,), dtype)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias, dtype=dtype, generator=gen)
        if add_bias_kv:
            self.bias_k, self.bias_v = (empty_parameter((1, 1, e), dtype) for _ in range(2))
        else:
            self.bias_k = self.bias_v = None
        for w in (self.in_proj_weight, self.q_proj_weight, self.k_proj_weight,
                  self.v_proj_weight):
            if w is not None:
                init.xavier_uniform_(w, generator=gen)
        if bias:
            init.zeros_(self.in_proj_bias), init.zeros_(self.out_proj.bias)
        if add_bias_kv:
            init.xavier_normal_(self.bias_k, generator=gen)
            init.xavier_normal_(self.bias_v, generator=gen)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Tensor | None = None, need_weights: bool = True,
                attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """Attention of `query` over `key`/`value`; returns (attn_output, attn_weights or None).

        key_padding_mask (N, S) and attn_mask ((L, S) or (N * H, L, S)) are bool (True = do not
        attend) or float (added to the scores). is_causal is a hint that attn_mask is causal:
        as in torch, it needs attn_mask, which is what is applied."""
        if is_causal and attn_mask is None:
            raise RuntimeError("MultiheadAttention: need attn_mask if specifying the is_causal "
                               "hint (e.g. nn.Transformer.generate_square_subsequent_mask(L))")
        batched = query.ndim == 3
        if not batched:  # NOTE: unbatched (L, E) is handled as a batch of one, batch-first
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            key_padding_mask = None if key_padding_mask is None else key_padding_mask.unsqueeze(0)
        batch_first = self.batch_first or not batched
        self._check_shapes(query, key, value, batch_first)
        q, k, v = self._project(query, key, value, batch_first)
        n, length, source = q.shape[0], q.shape[2], k.shape[2]
        mask = self._merge_masks(attn_mask, key_padding_mask, n, length, source, q.dtype)
        p = self.dropout if self.training else 0.0
        # NOTE: safe=not need_weights: torch gives zeros for a query with every key masked
        # out through SDPA (need_weights=False) and NaN through its weights path
        out, weights = attention(q, k, v, mask, p, 1.0 / math.sqrt(self.head_dim),
                                 self.generator, safe=not need_weights)
        # (N, H, L, hd) -> (N, L, E) or (L, N, E)
        out = out.permute(0, 2, 1, 3) if batch_first else out.permute(2, 0, 1, 3)
        out = self.out_proj(out.reshape(*out.shape[:2], self.embed_dim))
        if not batched:
            out = out.squeeze(0)
        if not need_weights:
            return out, None
        weights = weights.mean(1) if average_attn_weights else weights
        return out, weights if batched else weights.squeeze(0)

    def _check_shapes(self, query, key, value, batch_first):
        if query.ndim != 3 or key.ndim != 3 or value.ndim != 3:
            raise ValueError(f"MultiheadAttention: query, key and value must all be 3-D "
                             f"(batched) or 2-D (unbatched), got shapes {query.shape}, "
                             f"{key.shape}, {value.shape}")
        dims = (query.shape[-1], key.shape[-1], value.shape[-1])
        if dims != (self.embed_dim, self.kdim, self.vdim):
            raise ValueError(f"MultiheadAttention: the last dims of query, key and value must be "
                             f"embed_dim={self.embed_dim}, kdim={self.kdim}, vdim={self.vdim}, "
                             f"got shapes {query.shape}, {key.shape}, {value.shape}")
        b = 0 if batch_first else 1
        if key.shape[:-1] != value.shape[:-1] or query.shape[b] != key.shape[b]:
            raise ValueError(f"MultiheadAttention: key and value must have the same batch and "
                             f"length and the query's batch size, got query {query.shape}, key "
                             f"{key.shape}, value {value.shape} (batch_first={self.batch_first})")

    def _project(self, query, key, value, batch_first):
        """q, k, v as (N, H, L or S, head_dim), with bias_k/bias_v and the zero key appended."""
        e, b = self.embed_dim, self.in_proj_bias
        # NOTE: three GEMMs, also in self-attention: slicing one (.., 3E) product costs three
        # full-size scatters in backward, ~30% slower at E=128
        weights = [self.q_proj_weight, self.k_proj_weight, self.v_proj_weight] \
            if self.in_proj_weight is None else \
            [self.in_proj_weight[i * e:(i + 1) * e] for i in range(3)]
        biases = [None] * 3 if b is None else [b[i * e:(i + 1) * e] for i in range(3)]
        q, k, v = (F.linear(x, w, bias) for x, w, bias in zip((query, key, value), weights, biases))
        if self.bias_k is not None:  # one more key, at the end of the sequence
            seq, n = (1, k.shape[0]) if batch_first else (0, k.shape[1])
            shape = (n, 1, e) if batch_first else (1, n, e)
            k = cat([k, self.bias_k.expand(*shape)], seq)
            v = cat([v, self.bias_v.expand(*shape)], seq)
        order = (0, 2, 1, 3) if batch_first else (1, 2, 0, 3)
        heads = (self.num_heads, self.head_dim)
        q, k, v = (x.reshape(*x.shape[:2], *heads).permute(*order) for x in (q, k, v))
        if self.add_zero_attn:
            zeros = Tensor._make(get_array_module(k.array).zeros(
                (*k.shape[:2], 1, self.head_dim), k.dtype))
            k, v = cat([k, zeros], 2), cat([v, zeros], 2)
        return q, k, v

    def _merge_masks(self, attn_mask, key_padding_mask, n, length, source, dtype):
        """attn_mask and key_padding_mask as one mask broadcastable to (N, H, L, S), S counting
        the keys bias_k and add_zero_attn append (every query attends to those): bool (True =
        attend, for the softmax primitive) when both are bool, else float (added)."""
        extra = (self.bias_k is not None) + bool(self.add_zero_attn)
        source, masks = source - extra, {}
        if attn_mask is not None:
            expected = [(length, source), (n * self.num_heads, length, source)]
            if tuple(attn_mask.shape) not in expected:
                raise ValueError(f"MultiheadAttention: attn_mask must have shape {expected[0]} "
                                 f"or {expected[1]}, got {attn_mask.shape}")
            masks["attn_mask"] = attn_mask if attn_mask.ndim == 2 else \
                attn_mask.reshape(n, self.num_heads, length, source)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (n, source):
                raise ValueError(f"MultiheadAttention: key_padding_mask must have shape "
                                 f"{(n, source)} (N, S), got {key_padding_mask.shape}")
            masks["key_padding_mask"] = key_padding_mask.reshape(n, 1, 1, source)
        if not masks:
            return None
        xp = get_array_module(next(iter(masks.values())).array)
        if all(m.dtype == numpy.bool_ for m in masks.values()):
            # NOTE: bool masks stay bool: the softmax primitive applies them with one where,
            # where a float mask costs an add over the whole (N, H, L, S) scores
            masked = functools.reduce(xp.logical_or, [m.array for m in masks.values()])
            mask, fill = Tensor._make(~masked), True
        else:
            mask = functools.reduce(operator.add, [_float_mask(m, dtype, name)
                                                   for name, m in masks.items()])
            fill = 0
        if extra:
            pad = xp.full((*mask.shape[:-1], extra), fill, mask.dtype)
            mask = cat([mask, Tensor._make(pad)], mask.ndim - 1)
        return mask

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")
