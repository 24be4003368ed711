"""Tensor's arithmetic, comparisons, in-place updates and element-wise maths, as a mixin of
disttrain.tensor.Tensor (which it does not import: results are made with `self._make`).
Imports backend, dtypes and ops."""

from __future__ import annotations

import numbers
import operator
from typing import TYPE_CHECKING

import numpy

from disttrain import ops
from disttrain.autograd import GradMode
from disttrain.backend import get_array_module
from disttrain.dtypes import default_float, result_type
from disttrain.shapes import normalize_dim

if TYPE_CHECKING:
    from disttrain.tensor import Tensor


class MathMethods:
    """Operators and element-wise methods of Tensor (broadcasting through explicit Expand)."""

    __slots__ = ()

    def _lift(self, other) -> Tensor:
        if isinstance(other, MathMethods):
            return other
        xp = get_array_module(self.array)
        if isinstance(other, numbers.Number) and self.array.dtype.kind in "fc":
            return self._make(xp.asarray(other, dtype=self.array.dtype))
        return self._make(xp.asarray(other) if not isinstance(other, float)
                          else xp.asarray(other, dtype=default_float))

    def _broadcasted(self, other, reverse: bool = False) -> tuple[Tensor, Tensor]:
        a, b = self, self._lift(other)
        if reverse:
            a, b = b, a
        if a.array.dtype != b.array.dtype:  # type promotion, as numpy/torch
            dtype = result_type(a, b)
            a, b = a.to(dtype=dtype), b.to(dtype=dtype)
        if a.shape == b.shape:
            return a, b
        try:
            shape = numpy.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"broadcast: shapes {a.shape} and {b.shape} are not "
                             "broadcastable") from None
        return a.expand(*shape), b.expand(*shape)

    def __add__(self, other):
        return ops.Add.apply(*self._broadcasted(other))

    def __radd__(self, other):
        return ops.Add.apply(*self._broadcasted(other, reverse=True))

    def __sub__(self, other):
        return ops.Sub.apply(*self._broadcasted(other))

    def __rsub__(self, other):
        return ops.Sub.apply(*self._broadcasted(other, reverse=True))

    def __mul__(self, other):
        return ops.Mul.apply(*self._broadcasted(other))

    def __rmul__(self, other):
        return ops.Mul.apply(*self._broadcasted(other, reverse=True))

    def __truediv__(self, other):
        return ops.Div.apply(*self._float_pair(other))

    def __rtruediv__(self, other):
        return ops.Div.apply(*self._float_pair(other, reverse=True))

    def _float_pair(self, other, reverse=False):
        a, b = self._broadcasted(other, reverse)
        if a.dtype.kind not in "fc":  # true division of integers gives floats, as torch
            a, b = a.to(dtype=default_float), b.to(dtype=default_float)
        return a, b

    def __neg__(self):
        return ops.Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, MathMethods):  # NOTE: a ** b directly: negative bases stay
            return ops.PowTensor.apply(*self._broadcasted(exponent))  # exact, as torch
        return ops.Pow.apply(self, exponent=exponent)

    def __rpow__(self, base):
        if isinstance(base, numbers.Number) and base > 0 and self.dtype.kind in "fc":
            return (self * float(numpy.log(base))).exp()
        return ops.PowTensor.apply(*self._broadcasted(base, reverse=True))

    def _compare(self, other, op):
        other = other.array if isinstance(other, MathMethods) else other
        return self._make(op(self.array, other))

    __eq__ = lambda self, o: self._compare(o, operator.eq)  # noqa: E731
    __ne__ = lambda self, o: self._compare(o, operator.ne)  # noqa: E731
    __lt__ = lambda self, o: self._compare(o, operator.lt)  # noqa: E731
    __le__ = lambda self, o: self._compare(o, operator.le)  # noqa: E731
    __gt__ = lambda self, o: self._compare(o, operator.gt)  # noqa: E731
    __ge__ = lambda self, o: self._compare(o, operator.ge)  # noqa: E731

    eq, ne, lt, le, gt, ge = __eq__, __ne__, __lt__, __le__, __gt__, __ge__
    greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne

    def equal(self, other) -> bool:
        """True when `other` has this shape and equal values (torch.equal)."""
        return self.shape == other.shape and bool((self.array == other.array).all())

    def __invert__(self):
        return self._make(~self.array)

    def __and__(self, other):
        return self._compare(other, operator.and_)

    def __or__(self, other):
        return self._compare(other, operator.or_)

    # method forms of the operators, with torch's keyword arguments
    def add(self, other, *, alpha=1) -> Tensor:
        """self + alpha * other (torch.add)."""
        return self + (other if alpha == 1 else other * alpha)

    def sub(self, other, *, alpha=1) -> Tensor:
        """self - alpha * other (torch.sub)."""
        return self - (other if alpha == 1 else other * alpha)

    def mul(self, other) -> Tensor:
        return self * other

    def div(self, other, *, rounding_mode: str | None = None) -> Tensor:
        """self / other; rounding_mode "trunc" (toward 0) or "floor" (Python's //) keeps
        integer dtypes and gives a result without a gradient (torch's is zero)."""
        if rounding_mode is None:
            return self / other
        if rounding_mode not in ("trunc", "floor"):
            raise ValueError(f"div: expected rounding_mode to be one of None, 'trunc' or "
                             f"'floor', got {rounding_mode!r}")
        a, b = (t.array for t in self._broadcasted(other))
        xp = get_array_module(a)
        if rounding_mode == "floor":
            return self._make(xp.floor_divide(a, b))
        if a.dtype.kind in "fc":
            return self._make(xp.trunc(a / b))
        return self._make(xp.sign(a) * xp.sign(b) * (xp.abs(a) // xp.abs(b)))

    subtract, multiply, divide, true_divide = sub, mul, div, __truediv__

    def maximum(self, other: Tensor) -> Tensor:
        """The element-wise maximum (broadcasting); equal elements share the gradient in
        halves, as torch."""
        return ops.Maximum.apply(*self._broadcasted(self._tensor_arg(other, "maximum")))

    def minimum(self, other: Tensor) -> Tensor:
        """The element-wise minimum (broadcasting); ties share the gradient, as torch."""
        return ops.Minimum.apply(*self._broadcasted(self._tensor_arg(other, "minimum")))

    def _tensor_arg(self, other, op: str):
        if not isinstance(other, MathMethods):
            raise TypeError(f"{op}: other must be a Tensor, got {other.__class__.__name__} "
                            f"({other!r}); use clamp for a number")
        return other

    def lerp(self, end: Tensor, weight) -> Tensor:
        """self + weight * (end - self) (torch.lerp; `weight` a number or a Tensor)."""
        return self + weight * (end - self)

    def addcmul(self, tensor1, tensor2, *, value=1) -> Tensor:
        """self + value * tensor1 * tensor2."""
        return self + value * tensor1 * tensor2

    def addcdiv(self, tensor1, tensor2, *, value=1) -> Tensor:
        """self + value * tensor1 / tensor2."""
        return self + value * tensor1 / tensor2

    def mm(self, mat2: Tensor) -> Tensor:
        """The matrix product of two 2-D tensors (n, m) @ (m, p), no broadcasting (torch.mm).

        Example:
            >>> dt.ones(2, 3).mm(dt.ones(3, 4)).shape
            (2, 4)
        """
        if self.ndim != 2 or mat2.ndim != 2:
            raise ValueError(f"mm: both arguments must be 2-D, got shapes {self.shape} and "
                             f"{mat2.shape}")
        if self.dtype != mat2.dtype:
            raise ValueError(f"mm: expected both arguments to have the same dtype, got "
                             f"{self.dtype} and {mat2.dtype}")
        return self @ mat2

    # in-place arithmetic: allowed only where autograd need not see it (as torch's leaf rule)

    def _inplace(self, name: str, fn) -> Tensor:
        if GradMode.enabled and self.requires_grad:
            raise RuntimeError(f"{name}: a leaf Variable that requires grad is being used in an "
                               "in-place operation; wrap it in dt.no_grad() or use .data")
        fn(self.array)
        return self

    def _other(self, other):
        return other.array if isinstance(other, MathMethods) else other

    def add_(self, other, alpha=1):
        o = self._other(other)
        return self._inplace("add_", lambda a: a.__iadd__(o if alpha == 1 else o * alpha))

    def sub_(self, other, alpha=1):
        o = self._other(other)
        return self._inplace("sub_", lambda a: a.__isub__(o if alpha == 1 else o * alpha))

    def mul_(self, other):
        return self._inplace("mul_", lambda a: a.__imul__(self._other(other)))

    def div_(self, other):
        return self._inplace("div_", lambda a: a.__itruediv__(self._other(other)))

    def zero_(self):
        return self._inplace("zero_", lambda a: a.fill(0))

    def fill_(self, value):
        return self._inplace("fill_", lambda a: a.fill(value))

    def copy_(self, src):
        return self._inplace("copy_", lambda a: a.__setitem__(..., self._other(src)))

    def clamp_(self, min=None, max=None):
        xp = get_array_module(self.array)
        return self._inplace("clamp_", lambda a: xp.clip(a, min, max, out=a))

    def addcmul_(self, tensor1, tensor2, *, value=1):
        """self += value * tensor1 * tensor2, in place (optimizers' update)."""
        t1, t2 = self._other(tensor1), self._other(tensor2)
        return self._inplace("addcmul_", lambda a: a.__iadd__(t1 * t2 * value))

    def addcdiv_(self, tensor1, tensor2, *, value=1):
        """self += value * tensor1 / tensor2, in place."""
        t1, t2 = self._other(tensor1), self._other(tensor2)
        return self._inplace("addcdiv_", lambda a: a.__iadd__(t1 / t2 * value))

    def lerp_(self, end, weight):
        """self += weight * (end - self), in place."""
        e, w = self._other(end), self._other(weight)
        return self._inplace("lerp_", lambda a: a.__iadd__(w * (e - a)))

    def sqrt_(self):
        xp = get_array_module(self.array)
        return self._inplace("sqrt_", lambda a: xp.sqrt(a, out=a))

    __iadd__, __isub__ = add_, sub_
    __imul__, __itruediv__ = mul_, div_

    def exp(self):
        return ops.Exp.apply(self)

    def log(self):
        return ops.Log.apply(self)

    def sqrt(self):
        return ops.Sqrt.apply(self)

    def rsqrt(self):
        return 1.0 / self.sqrt()

    def abs(self):
        return ops.Abs.apply(self)

    def relu(self):
        return ops.ReLU.apply(self)

    def sigmoid(self):
        return ops.Sigmoid.apply(self)

    def tanh(self):
        return ops.Tanh.apply(self)

    def sin(self):
        return ops.Sin.apply(self)

    def cos(self):
        return ops.Cos.apply(self)

    def bmm(self, mat2: Tensor) -> Tensor:
        """Batched matrix product (b, n, m) @ (b, m, p) -> (b, n, p), as torch.bmm (no
        broadcasting).

        Example:
            >>> dt.ones(2, 3, 4).bmm(dt.ones(2, 4, 5)).shape
            (2, 3, 5)
        """
        if self.ndim != 3 or mat2.ndim != 3:
            raise ValueError(f"bmm: both arguments must be 3-D (b, n, m) and (b, m, p), got "
                             f"shapes {self.shape} and {mat2.shape}")
        if self.shape[0] != mat2.shape[0] or self.shape[2] != mat2.shape[1]:
            raise ValueError(f"bmm: shapes {self.shape} and {mat2.shape} do not match: expected "
                             f"mat2 of shape ({self.shape[0]}, {self.shape[2]}, p)")
        if self.dtype != mat2.dtype:
            raise ValueError(f"bmm: expected both arguments to have the same dtype, got "
                             f"{self.dtype} and {mat2.dtype}")
        return self @ mat2

    def baddbmm(self, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1) -> Tensor:
        """beta * self + alpha * bmm(batch1, batch2), as torch.baddbmm.

        Args:
            batch1, batch2: (b, n, m) and (b, m, p); self broadcasts to (b, n, p).
            beta, alpha: the factors; with beta == 0 self is ignored (NaNs included).

        Example:
            >>> dt.zeros(5).baddbmm(dt.ones(2, 3, 4), dt.ones(2, 4, 5), alpha=0.5).shape
            (2, 3, 5)
        """
        product = batch1.bmm(batch2)
        if self.dtype != product.dtype:
            raise ValueError(f"baddbmm: input dtype {self.dtype} does not match the batches' "
                             f"{product.dtype}")
        try:
            shape = numpy.broadcast_shapes(self.shape, product.shape)
        except ValueError:
            shape = None
        if shape != product.shape:
            raise ValueError(f"baddbmm: input of shape {self.shape} does not broadcast to the "
                             f"product's shape {product.shape}")
        product = product if alpha == 1 else product * alpha
        if beta == 0:
            return product
        return product + (self if beta == 1 else self * beta)

    def square(self):
        return self * self

    def pow(self, exponent):
        return self ** exponent

    def clamp(self, min=None, max=None) -> Tensor:
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return ops.Clamp.apply(self, low=min, high=max)

    clip = clamp

    def softmax(self, dim: int) -> Tensor:
        axis = normalize_dim(dim, self.ndim, "softmax")
        if self.ndim == 0:  # NOTE: numpy makes 0-d results scalars, which Softmax's out= rejects
            return self.log_softmax(dim).exp()
        return ops.Softmax.apply(self, axis=axis)

    def log_softmax(self, dim: int) -> Tensor:
        return ops.LogSoftmax.apply(self, axis=normalize_dim(dim, self.ndim, "log_softmax"))

    def sign(self) -> Tensor:
        return self._make(get_array_module(self.array).sign(self.array))

    def neg(self) -> Tensor:
        return -self

    negative = neg

    def clamp_min(self, min) -> Tensor:
        return self.clamp(min=min)

    def clamp_max(self, max) -> Tensor:
        return self.clamp(max=max)

    def _rounded(self, fn) -> Tensor:  # NOTE: piecewise constant: no gradient flows, as torch's 0
        return self._make(fn(self.array))

    floor = lambda self: self._rounded(get_array_module(self.array).floor)  # noqa: E731
    ceil = lambda self: self._rounded(get_array_module(self.array).ceil)  # noqa: E731
    trunc = lambda self: self._rounded(get_array_module(self.array).trunc)  # noqa: E731
    round = lambda self: self._rounded(get_array_module(self.array).round)  # noqa: E731

    def reciprocal(self) -> Tensor:
        return 1.0 / self


def _inplace_variant(name: str):
    def method(self, *args, **kwargs):
        out = getattr(self.detach(), name)(*args, **kwargs)
        if not numpy.can_cast(out.array.dtype, self.array.dtype, casting="same_kind"):
            raise RuntimeError(f"{name}_: result type {out.array.dtype} can't be cast to the "
                               f"desired output type {self.array.dtype}")
        return self._inplace(f"{name}_", lambda a: a.__setitem__(..., out.array))

    method.__name__ = method.__qualname__ = f"{name}_"
    method.__doc__ = f"`{name}` in place (outside autograd, like the other in-place methods)."
    return method


# NOTE: torch scripts use these in-place forms on buffers, masks and under no_grad
for _name in ("masked_fill", "exp", "log", "abs", "neg", "pow", "relu", "sigmoid", "tanh",
              "clamp_min", "clamp_max", "floor", "ceil", "round", "trunc", "sign", "sin", "cos",
              "reciprocal", "rsqrt", "square"):
    setattr(MathMethods, f"{_name}_", _inplace_variant(_name))
