"""nn.MultiheadAttention with torch's parameters (in_proj_weight, in_proj_bias, out_proj),
initialisation, masks and return values."""

from __future__ import annotations

import math

import numpy

from disttrain.backend import get_array_module
from disttrain.functional_attention import attention
from disttrain.nn import functional as F
from disttrain.nn import init
from disttrain.nn.layers import Linear, empty_parameter
from disttrain.nn.module import Module
from disttrain.tensor import Tensor


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
        add_bias_kv, add_zero_attn, kdim, vdim: accepted with their defaults only (others raise).
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
        self._check_options(embed_dim, num_heads, dropout, add_bias_kv, add_zero_attn, kdim, vdim)
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.kdim = self.vdim = embed_dim
        self._qkv_same_embed_dim = True
        self.head_dim, self.batch_first, self.generator = embed_dim // num_heads, batch_first, \
            generator
        self.in_proj_weight = empty_parameter((3 * embed_dim, embed_dim), dtype)
        if bias:
            self.in_proj_bias = empty_parameter((3 * embed_dim,), dtype)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, dtype=dtype, generator=generator)
        self.bias_k = self.bias_v = None
        self.add_zero_attn = False
        init.xavier_uniform_(self.in_proj_weight, generator=generator)
        if bias:
            init.zeros_(self.in_proj_bias), init.zeros_(self.out_proj.bias)
        if device is not None:
            self.to(device)

    @staticmethod
    def _check_options(embed_dim, num_heads, dropout, add_bias_kv, add_zero_attn, kdim, vdim):
        if num_heads <= 0 or embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by "
                             f"num_heads ({num_heads})")
        if not 0.0 <= dropout <= 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1], got {dropout}")
        for name, value, default in (("add_bias_kv", add_bias_kv, False),
                                     ("add_zero_attn", add_zero_attn, False),
                                     ("kdim", kdim, (None, embed_dim)),
                                     ("vdim", vdim, (None, embed_dim))):
            if value not in (default if isinstance(default, tuple) else (default,)):
                raise NotImplementedError(f"MultiheadAttention: {name}={value} is not supported "
                                          f"(only {default}); use separate Linear layers")

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
        b = 0 if batch_first else 1
        if query.shape[-1] != self.embed_dim or key.shape[-1] != self.embed_dim or \
                value.shape[-1] != self.embed_dim:
            raise ValueError(f"MultiheadAttention: the last dim of query, key and value must be "
                             f"embed_dim={self.embed_dim}, got shapes {query.shape}, "
                             f"{key.shape}, {value.shape}")
        if key.shape != value.shape or query.shape[b] != key.shape[b]:
            raise ValueError(f"MultiheadAttention: key and value must have the same shape and "
                             f"the query's batch size, got query {query.shape}, key "
                             f"{key.shape}, value {value.shape} (batch_first={self.batch_first})")

    def _project(self, query, key, value, batch_first):
        """q, k, v as (N, H, L or S, head_dim); one GEMM for all three in self-attention."""
        w, b, e = self.in_proj_weight, self.in_proj_bias, self.embed_dim
        if query is key and key is value:
            qkv = F.linear(query, w, b)
            q, k, v = (qkv[..., i * e:(i + 1) * e] for i in range(3))
        else:
            rows = [slice(i * e, (i + 1) * e) for i in range(3)]
            q, k, v = (F.linear(x, w[r], None if b is None else b[r])
                       for r, x in zip(rows, (query, key, value)))
        order = (0, 2, 1, 3) if batch_first else (1, 2, 0, 3)
        heads = (self.num_heads, self.head_dim)
        return tuple(x.reshape(*x.shape[:2], *heads).permute(*order) for x in (q, k, v))

    def _merge_masks(self, attn_mask, key_padding_mask, n, length, source, dtype):
        """attn_mask and key_padding_mask as one float mask broadcastable to (N, H, L, S)."""
        mask = None
        if attn_mask is not None:
            expected = [(length, source), (n * self.num_heads, length, source)]
            if tuple(attn_mask.shape) not in expected:
                raise ValueError(f"MultiheadAttention: attn_mask must have shape {expected[0]} "
                                 f"or {expected[1]}, got {attn_mask.shape}")
            mask = _float_mask(attn_mask, dtype, "attn_mask")
            if mask.ndim == 3:
                mask = mask.reshape(n, self.num_heads, length, source)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (n, source):
                raise ValueError(f"MultiheadAttention: key_padding_mask must have shape "
                                 f"{(n, source)} (N, S), got {key_padding_mask.shape}")
            padding = _float_mask(key_padding_mask, dtype, "key_padding_mask")
            padding = padding.reshape(n, 1, 1, source)
            mask = padding if mask is None else mask + padding
        return mask

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, "
                f"dropout={self.dropout}, batch_first={self.batch_first}")
