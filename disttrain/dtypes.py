"""dtype constants (torch's names for numpy dtypes), the default float dtype, type promotion
and array-likes to arrays. Imports backend only."""

from __future__ import annotations

import numpy

from disttrain import backend
from disttrain.backend import get_array_module

float16, float32, float64 = numpy.dtype("float16"), numpy.dtype("float32"), numpy.dtype("float64")
int8, int16, int32, int64 = (numpy.dtype(t) for t in ("int8", "int16", "int32", "int64"))
uint8, bool_ = numpy.dtype("uint8"), numpy.dtype("bool")
default_float = float32  # python floats and float factories default to this, as torch


def result_type(a, b) -> numpy.dtype:
    """The dtype of a binary op on `a` and `b` (Tensors or arrays), torch's promotion rules."""
    # NOTE: a python scalar lifted to a 0-d array must not upcast a float32 tensor
    if a.ndim == 0 and b.ndim > 0 and a.dtype.kind == b.dtype.kind:
        return b.dtype
    if b.ndim == 0 and a.ndim > 0 and a.dtype.kind == b.dtype.kind:
        return a.dtype
    if a.dtype.kind in "fc" and b.dtype.kind not in "fc":
        return a.dtype
    if b.dtype.kind in "fc" and a.dtype.kind not in "fc":
        return b.dtype
    return numpy.result_type(a.dtype, b.dtype)


def check_same_dtype(op: str, a, b, a_name: str, b_name: str) -> None:
    """Raises TypeError naming `op` and both arguments when `a` and `b` (Tensors or arrays)
    have different dtypes, pointing to the conversion."""
    if a.dtype != b.dtype:
        raise TypeError(f"{op}: {a_name} dtype {a.dtype} and {b_name} dtype {b.dtype} should be "
                        f"the same; convert one with .to({b.dtype}) or .to({a.dtype})")


def as_array(data, dtype=None, device=None):
    """Any array-like (list, scalar, numpy/cupy array) to a backend array.

    Python floats become float32 and ints int64, as in torch; arrays keep their dtype.
    """
    if dtype is not None:
        dtype = numpy.dtype(dtype)
    xp = get_array_module(data) if hasattr(data, "__array_interface__") or hasattr(
        data, "__cuda_array_interface__") else numpy
    # NOTE: numpy arrays and numpy scalars keep their dtype (torch.tensor(np.float64(1)) is f64)
    if dtype is None and xp is numpy and not isinstance(data, (numpy.ndarray, numpy.generic)):
        array = numpy.asarray(data)
        if array.dtype.kind == "f" and not _holds_numpy_float64(data):
            array = array.astype(default_float)  # python floats default to float32, as torch
        elif array.dtype.kind in "iu" and array.dtype != int64:
            array = array.astype(int64)
        elif array.dtype.kind not in "biuf":
            raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__} "
                            f"(numpy dtype {array.dtype}); expected numbers or arrays")
    else:
        array = xp.array(data, dtype=dtype, copy=True)
    if device is not None:
        array = backend.to_device(array, device)
    return array


def _holds_numpy_float64(data) -> bool:
    """Whether a nested list holds a numpy float64 scalar (which keeps float64, as in torch)."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, numpy.floating) and item.dtype == float64:
            return True
    return False


_TYPE_NAMES = {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long",
               "int32": "Int", "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}


def torch_type_name(dtype, cuda: bool = False) -> str:
    """torch's legacy type string for `dtype`: 'torch.FloatTensor', 'torch.cuda.LongTensor'."""
    name = _TYPE_NAMES.get(numpy.dtype(dtype).name, numpy.dtype(dtype).name.capitalize())
    return f"torch.{'cuda.' if cuda else ''}{name}Tensor"

