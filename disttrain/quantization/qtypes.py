"""Quantized dtypes (dt.qint8, dt.quint8), affine quantization parameters, and QTensor: the
(integer array, scale, zero point) that flows between the layers of a converted model.
Imports numpy and disttrain.tensor only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy

from disttrain.tensor import Tensor


@dataclass(frozen=True)
class QDType:
    """A quantized dtype: its storage dtype and the integer range it uses.

    NOTE: qint8 stops at -127 (symmetric [-127, 127], as fbgemm's reduce-free weights do): with
    activations shifted to [-128, 127] every product then stays within 128 * 127 < 2**14,
    which the exact float32 GEMM in disttrain.quantization.kernels relies on.
    """

    name: str
    storage: numpy.dtype
    qmin: int
    qmax: int

    def __repr__(self) -> str:
        return f"disttrain.{self.name}"


qint8 = QDType("qint8", numpy.dtype("int8"), -127, 127)
quint8 = QDType("quint8", numpy.dtype("uint8"), 0, 255)
_EPS = numpy.float32(numpy.finfo(numpy.float32).eps)


def calculate_qparams(min_val, max_val, dtype: QDType, symmetric: bool) -> tuple:
    """(scale float32, zero_point int64) arrays mapping [min_val, max_val] (scalars or
    per-channel arrays) onto dtype's range; the range always holds 0, so 0.0 is exact.

    Example:
        >>> s, z = calculate_qparams(0.0, 2.55, quint8, symmetric=False)
        >>> round(float(s), 6), int(z)
        (0.01, 0)
    """
    lo = numpy.minimum(numpy.asarray(min_val, numpy.float64), 0.0)
    hi = numpy.maximum(numpy.asarray(max_val, numpy.float64), 0.0)
    if symmetric:
        scale = numpy.maximum(-lo, hi) / ((dtype.qmax - dtype.qmin) / 2)
        scale = numpy.maximum(scale, _EPS).astype(numpy.float32)
        zero = numpy.zeros(scale.shape, numpy.int64) + (dtype.qmin + dtype.qmax + 1) // 2
        return scale, zero
    scale = numpy.maximum((hi - lo) / (dtype.qmax - dtype.qmin), _EPS).astype(numpy.float32)
    zero = numpy.clip(dtype.qmin - numpy.rint(lo / scale), dtype.qmin, dtype.qmax)
    return scale, zero.astype(numpy.int64)


def quantize_array(x, scale, zero_point, dtype: QDType, axis: int | None = None):
    """round(x / scale) + zero_point, clipped to dtype's range, as dtype's storage array;
    per-channel along `axis` when scale is an array (round half to even, as ONNX)."""
    x = numpy.asarray(x, numpy.float32)
    scale, zero_point = numpy.asarray(scale, numpy.float32), numpy.asarray(zero_point)
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    q = numpy.rint(x / scale) + zero_point
    return numpy.clip(q, dtype.qmin, dtype.qmax).astype(dtype.storage)


def dequantize_array(q, scale, zero_point, axis: int | None = None):
    """(q - zero_point) * scale as float32 (per-channel along `axis` for array scales)."""
    scale = numpy.asarray(scale, numpy.float32)
    zero_point = numpy.asarray(zero_point, numpy.float32)
    if axis is not None:
        shape = [1] * q.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    return (q.astype(numpy.float32) - zero_point) * scale


class QTensor:
    """A per-tensor affine quantized tensor: real value = (int_repr - zero_point) * scale.

    Converted models pass QTensors between their layers; `dequantize()` gives a Tensor back.

    Example:
        >>> q = QTensor.quantize(Tensor(numpy.array([0.0, 1.0], numpy.float32)), 0.5, 0)
        >>> q.int_repr.tolist(), q.dequantize().tolist()
        ([0, 2], [0.0, 1.0])
    """

    def __init__(self, int_repr, scale: float, zero_point: int, dtype: QDType = quint8):
        self.int_repr, self.dtype = int_repr, dtype
        self.scale, self.zero_point = float(scale), int(zero_point)

    @classmethod
    def quantize(cls, x: Tensor, scale: float, zero_point: int,
                 dtype: QDType = quint8) -> QTensor:
        """Quantizes a float Tensor (or array) with the given per-tensor parameters."""
        array = x.array if isinstance(x, Tensor) else x
        return cls(quantize_array(array, scale, zero_point, dtype), scale, zero_point, dtype)

    @property
    def shape(self) -> tuple:
        return tuple(self.int_repr.shape)

    def dequantize(self) -> Tensor:
        return Tensor(dequantize_array(self.int_repr, self.scale, self.zero_point))

    def __repr__(self) -> str:
        return (f"QTensor(shape={self.shape}, dtype={self.dtype!r}, scale={self.scale:.6g}, "
                f"zero_point={self.zero_point})")
