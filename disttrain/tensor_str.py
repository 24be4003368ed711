"""How a Tensor prints: PyTorch's format (torch/_tensor_str.py), so a ported script's output
reads the same. Floats get 4 decimals ("1.5000"), all-integer floats a bare point ("2."), and
scientific notation ("1.0000e+05") when the magnitudes span more than 1e3, exceed 1e8 or go
below 1e-4; every element is right-aligned to one width, as many to a line as fit in 80
columns; tensors of more than 1,000 elements show their first and last 3 along each dimension.
"""

from __future__ import annotations

import math

import numpy

PRECISION = 4
THRESHOLD = 1000  # elements; more are summarized
EDGEITEMS = 3
LINEWIDTH = 80


def _shown(array: numpy.ndarray) -> numpy.ndarray:
    """The elements a summarized print shows (all of them up to THRESHOLD elements)."""
    if array.size <= THRESHOLD:
        return array.reshape(-1)
    parts = [array]
    for axis in range(array.ndim):
        parts = [numpy.concatenate([numpy.take(p, range(EDGEITEMS), axis),
                                    numpy.take(p, range(-EDGEITEMS, 0), axis)], axis)
                 if p.shape[axis] > 2 * EDGEITEMS else p for p in parts]
    return parts[0].reshape(-1)


class _FloatFormatter:
    """torch's _Formatter for floating tensors: the mode and the width from the shown values."""

    def __init__(self, values: numpy.ndarray):
        values = values.astype(numpy.float64)
        # NOTE: as torch, only the nonzero finite values choose the mode and the width
        finite = values[numpy.isfinite(values) & (values != 0)]
        self.int_mode, self.sci_mode, self.width = True, False, 1
        if finite.size == 0:
            return
        magnitude = numpy.abs(finite)
        low, high = float(magnitude.min()), float(magnitude.max())
        self.int_mode = bool(numpy.all(finite == numpy.ceil(finite)))
        self.sci_mode = high / low > 1000.0 or high > 1.0e8 or (
            not self.int_mode and low < 1.0e-4)
        self.width = max(len(self._plain(float(v))) for v in finite)

    def _plain(self, value: float) -> str:
        if self.sci_mode:
            return f"{value:.{PRECISION}e}"
        if self.int_mode:
            text = f"{value:.0f}"
            return text if math.isinf(value) or math.isnan(value) else text + "."
        return f"{value:.{PRECISION}f}"

    def __call__(self, value) -> str:
        return self._plain(float(value)).rjust(self.width)


class _PlainFormatter:
    """Integers and bools: str(value), right-aligned to the widest shown."""

    def __init__(self, values: numpy.ndarray):
        self.width = max((len(str(v)) for v in values.tolist()), default=1)

    def __call__(self, value) -> str:
        return str(value).rjust(self.width)


def _vector(values: numpy.ndarray, indent: int, fmt, summarize: bool) -> str:
    per_line = max(1, (LINEWIDTH - indent) // (fmt.width + 2))  # NOTE: ", " per element
    items = values.tolist()
    if summarize and len(items) > 2 * EDGEITEMS:
        data = [fmt(v) for v in items[:EDGEITEMS]] + [" ..."] + [
            fmt(v) for v in items[-EDGEITEMS:]]
    else:
        data = [fmt(v) for v in items]
    lines = [", ".join(data[i:i + per_line]) for i in range(0, len(data), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(array: numpy.ndarray, indent: int, fmt, summarize: bool) -> str:
    if array.ndim == 0:
        return fmt(array.item())
    if array.ndim == 1:
        return _vector(array, indent, fmt, summarize)
    rows = range(array.shape[0])
    if summarize and array.shape[0] > 2 * EDGEITEMS:
        rows = [*range(EDGEITEMS), None, *range(array.shape[0] - EDGEITEMS, array.shape[0])]
    parts = ["..." if i is None else _nested(array[i], indent + 1, fmt, summarize)
             for i in rows]
    return "[" + ("," + "\n" * (array.ndim - 1) + " " * (indent + 1)).join(parts) + "]"


def tensor_body(array: numpy.ndarray, indent: int = len("tensor(")) -> str:
    """The text between "tensor(" and the extras (dtype, grad_fn, ...), for a host array.

    Example:
        >>> tensor_body(numpy.array([1.0, 2.5], numpy.float32))
        '[1.0000, 2.5000]'
    """
    if array.size == 0:
        return "[]" if array.ndim == 1 else f"[], size={tuple(array.shape)}"
    shown = _shown(array)
    fmt = _FloatFormatter(shown) if array.dtype.kind == "f" else _PlainFormatter(shown)
    return _nested(array, indent, fmt, array.size > THRESHOLD)
