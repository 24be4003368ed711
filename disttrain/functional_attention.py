"""Scaled dot-product attention, as torch.nn.functional.scaled_dot_product_attention, and the
attention core nn.MultiheadAttention shares with it. Composites of matmul / softmax / where
(no backward of their own): softmax(q k^T * scale + mask) v is two GEMMs and one fused
log-softmax primitive already, so a fused primitive would save only the mask's add.
"""

from __future__ import annotations

import math

import numpy

from disttrain import ops
from disttrain.backend import get_array_module
from disttrain.functional import dropout
from disttrain.tensor import Tensor


def _check_qkv(query: Tensor, key: Tensor, value: Tensor) -> None:
    if query.ndim < 2 or key.ndim < 2 or value.ndim < 2:
        raise ValueError(f"scaled_dot_product_attention: query, key and value need at least 2 "
                         f"dims (..., L, E), got shapes {query.shape}, {key.shape}, {value.shape}")
    if key.shape[-1] != query.shape[-1]:
        raise ValueError(f"scaled_dot_product_attention: key.shape[-1]={key.shape[-1]} must "
                         f"equal query.shape[-1]={query.shape[-1]}")
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: key.shape[-2]={key.shape[-2]} (S) must "
                         f"equal value.shape[-2]={value.shape[-2]}")


def _repeat_heads(query: Tensor, x: Tensor, name: str) -> Tensor:
    """x (..., Hkv, S, E) with each head repeated Hq / Hkv times (torch's repeat_interleave)."""
    if query.ndim < 3 or x.ndim < 3 or query.shape[-3] % x.shape[-3]:
        raise ValueError(f"scaled_dot_product_attention: with enable_gqa the query's heads "
                         f"(dim -3) must be a multiple of the {name}'s, got shapes "
                         f"{query.shape} and {x.shape}")
    groups = query.shape[-3] // x.shape[-3]
    if groups == 1:
        return x
    shape = x.shape
    x = x.unsqueeze(-3).expand(*shape[:-2], groups, *shape[-2:])
    return x.reshape(*shape[:-3], shape[-3] * groups, *shape[-2:])


def _causal_mask(query: Tensor, L: int, S: int) -> Tensor:
    """The (L, S) bool mask of torch's is_causal: True on and below the diagonal."""
    xp = get_array_module(query.array)
    return Tensor._make(xp.asarray(numpy.tri(L, S, dtype=bool)))


def attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None,
              dropout_p: float, scale: float, generator=None,
              safe: bool = True) -> tuple[Tensor, Tensor]:
    """(softmax(query @ key^T * scale + mask) @ value, the attention weights after dropout).

    `attn_mask` is None, a bool mask (True = take part) or a float mask that is added; either
    broadcasts to (..., L, S). With `safe`, a query whose keys are all masked out gets zero
    weights (torch's SDPA); otherwise NaN (torch's MultiheadAttention with need_weights)."""
    scores = (query * scale) @ key.transpose(-2, -1)
    dead = keep = None
    xp = get_array_module(scores.array)
    if attn_mask is not None:
        attn_mask, dead = _live_mask(attn_mask) if safe else (attn_mask, None)
        if attn_mask.dtype == numpy.bool_:
            # NOTE: the bool mask goes into the softmax primitive (a where, not an added -inf:
            # a masked score gets no gradient and no NaN)
            keep = xp.broadcast_to(attn_mask.array, scores.shape)
        else:
            scores = scores + attn_mask
    weights = ops.Softmax.apply(scores, keep=keep)
    if dead is not None:
        weights = weights.masked_fill(dead, 0.0)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p, training=True, generator=generator)
    return weights @ value, weights


def _live_mask(mask: Tensor) -> tuple[Tensor, object]:
    """(the mask with its fully masked rows unmasked, those rows as a bool array or None).

    NOTE: a row with no key left would be softmax of all -inf (NaN, and a numpy warning);
    unmasked, it is an ordinary row whose weights are then zeroed (as torch's safe softmax)."""
    xp = get_array_module(mask.array)
    boolean = mask.dtype == numpy.bool_
    dead = ~mask.array.any(-1, keepdims=True) if boolean else \
        xp.isneginf(mask.array).all(-1, keepdims=True)
    if not dead.any():
        return mask, None
    if boolean:
        return Tensor._make(mask.array | dead), dead
    return mask.masked_fill(xp.broadcast_to(dead, mask.shape), 0.0), dead


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False, *, generator=None) -> Tensor:
    """softmax(query @ key^T * scale + mask) @ value, as torch's.

    Args:
        query: (..., L, E). key: (..., S, E). value: (..., S, Ev).
        attn_mask: bool (True = the position takes part) or float (added to the scores),
            broadcastable to (..., L, S).
        dropout_p: dropout probability on the attention weights (applied whenever > 0).
        is_causal: attend only to positions j <= i (an (L, S) lower-triangular mask); then
            attn_mask must be None.
        scale: the scores' factor (default 1 / sqrt(E)).
        enable_gqa: grouped-query attention: key and value have Hq / G heads (dim -3), each
            shared by G consecutive query heads.
        generator: numpy Generator for the dropout mask (default: the one dt.manual_seed seeds).

    Shape:
        output (..., L, Ev)

    Example:
        >>> q = dt.randn(2, 4, 5, 8)
        >>> F.scaled_dot_product_attention(q, q, q, is_causal=True).shape
        (2, 4, 5, 8)
    """
    if enable_gqa:
        key, value = _repeat_heads(query, key, "key"), _repeat_heads(query, value, "value")
    _check_qkv(query, key, value)
    if not 0.0 <= dropout_p <= 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout_p must be in [0, 1], got "
                         f"{dropout_p}")
    if is_causal:
        if attn_mask is not None:
            raise ValueError("scaled_dot_product_attention: attn_mask must be None when "
                             f"is_causal=True, got a mask of shape {attn_mask.shape}")
        attn_mask = _causal_mask(query, query.shape[-2], key.shape[-2])
    elif attn_mask is not None and attn_mask.dtype != numpy.bool_ and \
            attn_mask.dtype != query.dtype:
        raise ValueError(f"scaled_dot_product_attention: a float attn_mask must have the "
                         f"query's dtype {query.dtype}, got {attn_mask.dtype}")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    return attention(query, key, value, attn_mask, dropout_p, scale, generator)[0]
