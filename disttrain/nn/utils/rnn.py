"""torch.nn.utils.rnn: pad_sequence, PackedSequence, pack_padded_sequence, pad_packed_sequence
and pack_sequence, as composites (cat, stack, index), so gradients flow back into every
sequence. nn.RNN / LSTM / GRU take a PackedSequence and run each sequence to its own length.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy

from disttrain.backend import get_array_module
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


class PackedSequence(NamedTuple):
    """Variable-length sequences packed time step by time step, longest first (torch's layout).

    data (N, *) holds step 0 of every sequence, then step 1 of those still running, ...;
    batch_sizes[t] counts the sequences still running at step t; sorted_indices (or None when
    the batch was already sorted) maps the packed order to the original batch positions and
    unsorted_indices back.
    """

    data: Tensor
    batch_sizes: Tensor
    sorted_indices: Tensor | None = None
    unsorted_indices: Tensor | None = None


def _as_ints(values, what: str) -> numpy.ndarray:
    array = values.detach().numpy() if isinstance(values, Tensor) else numpy.asarray(values)
    if array.ndim != 1 or array.dtype.kind not in "iu":
        raise ValueError(f"pack_padded_sequence: {what} must be a 1-D list or tensor of ints, "
                         f"got {array.dtype} of shape {array.shape}")
    return array.astype(numpy.int64)


def _packed_rows(batch_sizes: numpy.ndarray, order: numpy.ndarray) -> tuple:
    """(step, original batch index) of every row of data, in packing order."""
    steps = numpy.repeat(numpy.arange(len(batch_sizes)), batch_sizes)
    ranks = numpy.concatenate([numpy.arange(n) for n in batch_sizes])
    return steps, order[ranks]


def _order(packed: PackedSequence, batch: int) -> numpy.ndarray:
    if packed.sorted_indices is None:
        return numpy.arange(batch)
    return packed.sorted_indices.detach().numpy()


def pack_padded_sequence(input: Tensor, lengths, batch_first: bool = False,
                         enforce_sorted: bool = True) -> PackedSequence:
    """Packs a padded batch (T, B, *) (or (B, T, *)) whose sequence b has lengths[b] steps.

    Args:
        input: the padded batch.
        lengths: list or int tensor of B lengths, each in [1, T].
        batch_first: input is (B, T, *).
        enforce_sorted: require lengths in decreasing order (else they are sorted here).

    Example:
        >>> pack_padded_sequence(dt.randn(3, 2, 4), [3, 1]).batch_sizes.tolist()
        [2, 1, 1]
    """
    lengths = _as_ints(lengths, "lengths")
    steps_dim = 1 if batch_first else 0
    batch = input.shape[1 - steps_dim]
    if len(lengths) != batch or lengths.min() < 1 or lengths.max() > input.shape[steps_dim]:
        raise ValueError(f"pack_padded_sequence: expected {batch} lengths in [1, "
                         f"{input.shape[steps_dim]}] for input of shape {tuple(input.shape)}, "
                         f"got {lengths.tolist()}")
    order = numpy.argsort(-lengths, kind="stable")
    if enforce_sorted and (order != numpy.arange(batch)).any():
        raise ValueError(f"pack_padded_sequence: lengths must be sorted in decreasing order "
                         f"when enforce_sorted=True, got {lengths.tolist()}; pass "
                         "enforce_sorted=False to sort them here")
    batch_sizes = (lengths[None, :] > numpy.arange(lengths.max())[:, None]).sum(axis=1)
    steps, rows = _packed_rows(batch_sizes, order)
    xp = get_array_module(input.array)  # NOTE: index arrays live where the data does
    rows, steps = xp.asarray(rows), xp.asarray(steps)
    data = input[(rows, steps) if batch_first else (steps, rows)]
    if enforce_sorted:
        return PackedSequence(data, Tensor(batch_sizes))
    return PackedSequence(data, Tensor(batch_sizes), Tensor(order),
                          Tensor(numpy.argsort(order)))


def pad_packed_sequence(sequence: PackedSequence, batch_first: bool = False,
                        padding_value: float = 0.0, total_length: int | None = None) -> tuple:
    """Inverse of pack_padded_sequence: (padded (T, B, *) or (B, T, *), lengths int64 (B,)).

    Args:
        sequence: a PackedSequence.
        batch_first: return (B, T, *).
        padding_value: value past each sequence's end.
        total_length: pad to this many steps (at least the longest sequence).

    Example:
        >>> packed = pack_padded_sequence(dt.randn(3, 2, 4), [3, 1])
        >>> [t.tolist() if t.ndim == 1 else t.shape for t in pad_packed_sequence(packed)]
        [(3, 2, 4), [3, 1]]
    """
    batch_sizes = sequence.batch_sizes.detach().numpy().astype(numpy.int64)
    batch, steps = int(batch_sizes[0]), len(batch_sizes)
    total = steps if total_length is None else int(total_length)
    if total < steps:
        raise ValueError(f"pad_packed_sequence: total_length ({total_length}) must be at least "
                         f"the longest sequence ({steps})")
    data = sequence.data
    index = numpy.full((total, batch), data.shape[0], dtype=numpy.int64)
    step_of, row_of = _packed_rows(batch_sizes, _order(sequence, batch))
    index[step_of, row_of] = numpy.arange(data.shape[0])
    fill = Tensor(numpy.full((1, *data.shape[1:]), padding_value, dtype=data.dtype))
    index = get_array_module(data.array).asarray(index.T if batch_first else index)
    padded = cat([data, fill.to(data.device)], 0)[index]
    lengths = numpy.bincount(row_of, minlength=batch).astype(numpy.int64)
    return padded, Tensor(lengths)


def pack_sequence(sequences, enforce_sorted: bool = True) -> PackedSequence:
    """Packs a list of (L_i, *) sequences: pad_sequence, then pack_padded_sequence.

    Example:
        >>> pack_sequence([dt.ones(3, 2), dt.ones(1, 2)]).data.shape
        (4, 2)
    """
    sequences = list(sequences)
    lengths = [seq.shape[0] for seq in sequences]
    return pack_padded_sequence(pad_sequence(sequences), lengths, enforce_sorted=enforce_sorted)
