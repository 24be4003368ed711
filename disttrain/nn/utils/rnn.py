"""torch.nn.utils.rnn: pad_sequence (a list of variable-length sequences into one padded
tensor), as a composite of cat and stack, so gradients flow back into every sequence."""

from __future__ import annotations

import numpy

from disttrain.tensor import Tensor
from disttrain.tensor_shape import cat, stack


def pad_sequence(sequences, batch_first: bool = False, padding_value: float = 0.0,
                 padding_side: str = "right") -> Tensor:
    """Stacks sequences of shapes (L_i, *) into (T, B, *) (or (B, T, *) with batch_first),
    T = max L_i, filling the missing steps with padding_value.

    Args:
        sequences: list of Tensors, each (L_i, *) with the same trailing shape and dtype.
        batch_first: put the batch first in the result.
        padding_value: value of the padded elements.
        padding_side: 'right' (default) or 'left': where the padding goes.

    Example:
        >>> pad_sequence([dt.ones(2, 3), dt.ones(1, 3)]).shape
        (2, 2, 3)
    """
    sequences = list(sequences)
    if not sequences:
        raise ValueError("pad_sequence: expected a non-empty list of tensors, got an empty one")
    if padding_side not in ("right", "left"):
        raise ValueError(f"pad_sequence: padding_side must be 'right' or 'left', got "
                         f"{padding_side!r}")
    trailing = tuple(sequences[0].shape[1:])
    for i, seq in enumerate(sequences):
        if seq.ndim < 1 or tuple(seq.shape[1:]) != trailing:
            raise ValueError(f"pad_sequence: every sequence must have shape (L, *{trailing}); "
                             f"sequence {i} has shape {tuple(seq.shape)}")
    longest = max(seq.shape[0] for seq in sequences)
    padded = [_pad_one(seq, longest, padding_value, padding_side) for seq in sequences]
    return stack(padded, 0 if batch_first else 1)


def _pad_one(seq: Tensor, length: int, value: float, side: str) -> Tensor:
    missing = length - seq.shape[0]
    if missing == 0:
        return seq
    fill = numpy.full((missing, *seq.shape[1:]), value, dtype=seq.dtype)
    pad = Tensor(fill).to(seq.device)
    return cat([seq, pad] if side == "right" else [pad, seq], 0)
