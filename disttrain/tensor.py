"""Tensor, the array that records the operations applied to it, and the free functions that
build graphs (tensor, matmul, where, cat, stack). Imports backend, autograd and ops only."""

from __future__ import annotations

import numbers
import operator
import weakref
from collections import namedtuple

import numpy

from disttrain import autograd, backend
from disttrain import ops as F
from disttrain.autograd import (  # noqa: F401  (re-exported: disttrain.tensor.no_grad etc.)
    Function,
    _GradMode,
    _Handle,
    enable_grad,
    is_grad_enabled,
    no_grad,
    queue_callback,
    run_backward,
)
from disttrain.backend import get_array_module

float16, float32, float64 = numpy.dtype("float16"), numpy.dtype("float32"), numpy.dtype("float64")
int8, int16, int32, int64 = (numpy.dtype(t) for t in ("int8", "int16", "int32", "int64"))
uint8, bool_ = numpy.dtype("uint8"), numpy.dtype("bool")
_default_float = float32


ReturnTypes = namedtuple("ReturnTypes", ["values", "indices"])


def _as_array(data, dtype=None, device=None):
    """Any array-like (list, scalar, numpy/cupy array, Tensor) to a backend array."""
    if isinstance(data, Tensor):
        data = data.array
    if dtype is not None:
        dtype = numpy.dtype(dtype)
    xp = get_array_module(data) if hasattr(data, "__array_interface__") or hasattr(
        data, "__cuda_array_interface__") else numpy
    # NOTE: numpy arrays and numpy scalars keep their dtype (torch.tensor(np.float64(1)) is f64)
    if dtype is None and xp is numpy and not isinstance(data, (numpy.ndarray, numpy.generic)):
        array = numpy.asarray(data)
        if array.dtype.kind == "f" and not _holds_numpy_float64(data):
            array = array.astype(_default_float)  # python floats default to float32, as torch
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


_new_tensor = object.__new__
_numpy_scalar = numpy.generic


class Tensor:
    """An n-dimensional array that records the operations applied to it for autograd.

    Create with `dt.tensor(data)`. `.array` is the backing numpy/cupy array; `.grad` holds the
    accumulated gradient (a Tensor) after `backward()`.

    Example:
        >>> x = dt.tensor([1.0, 2.0], requires_grad=True)
        >>> (x * x).sum().backward()
        >>> x.grad.tolist()
        [2.0, 4.0]
    """

    __array_priority__ = 1000  # numpy defers `ndarray op Tensor` to Tensor's reflected op
    # NOTE: slots make the attribute traffic of every op (thousands per step) cheaper
    __slots__ = ("array", "grad", "_ctx", "_requires_grad", "_hooks", "_post_hooks",
                 "__weakref__")

    def __init__(self, data, dtype=None, requires_grad: bool = False, device=None):
        array = data if (isinstance(data, numpy.ndarray) and dtype is None and device is None) \
            else _as_array(data, dtype, device)
        self.array, self.grad, self._ctx, self._requires_grad = array, None, None, False
        self._hooks = self._post_hooks = ()
        self.requires_grad = requires_grad

    @staticmethod
    def _make(array, requires_grad: bool = False, ctx: Function | None = None) -> Tensor:
        # NOTE: numpy turns 0-d results (full reductions, x[i, j], 0-d arithmetic) into numpy
        # scalars, which are immutable and not ndarrays: every Tensor holds an array, as torch
        if isinstance(array, _numpy_scalar):
            array = numpy.asarray(array)
        t = _new_tensor(Tensor)
        t.array, t.grad, t._ctx, t._requires_grad = array, None, ctx, requires_grad
        t._hooks = t._post_hooks = ()
        return t

    # ---------------------------------------------------------------- properties
    @property
    def requires_grad(self) -> bool:
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        if self._ctx is not None and not value:
            raise RuntimeError("requires_grad: you can only change requires_grad flags of leaf "
                               "tensors; use .detach() to get a tensor that does not require grad")
        if value and self.array.dtype.kind not in "fc":
            raise RuntimeError(f"requires_grad: only floating point tensors can require "
                               f"gradients, got dtype {self.array.dtype}")
        self._requires_grad = bool(value)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self._ctx is None

    @property
    def grad_fn(self) -> Function | None:
        return self._ctx

    @property
    def data(self) -> Tensor:
        """A detached Tensor sharing storage (torch's `.data`); assigning replaces the array."""
        return Tensor._make(self.array)

    @data.setter
    def data(self, value) -> None:
        array = value.array if isinstance(value, Tensor) else value
        if isinstance(array, _numpy_scalar):
            array = numpy.asarray(array)
        if tuple(array.shape) != self.shape:
            raise ValueError(f"data: new shape {tuple(array.shape)} != tensor shape {self.shape}")
        self.array = array

    shape = property(lambda self: tuple(self.array.shape))
    dtype = property(lambda self: self.array.dtype)
    ndim = property(lambda self: self.array.ndim)
    device = property(lambda self: backend.device_of(self.array))
    T = property(lambda self: self.permute(*reversed(range(self.ndim))))
    mT = property(lambda self: self.transpose(-2, -1))

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def dim(self) -> int:
        return self.ndim

    def numel(self) -> int:
        return int(self.array.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item: only one-element tensors can be converted to Python "
                             f"scalars, got shape {self.shape}")
        return self.array.reshape(()).item()

    def numpy(self) -> numpy.ndarray:
        if self.requires_grad:
            raise RuntimeError("numpy: can't call numpy() on a Tensor that requires grad; "
                               "use tensor.detach().numpy() instead")
        if backend.is_cupy_array(self.array):
            raise TypeError("numpy: tensor is on a GPU; call .cpu() first")
        return self.array

    def tolist(self):
        return backend.asnumpy(self.array).tolist()

    def __bool__(self) -> bool:
        if self.array.size != 1:
            raise RuntimeError(f"Boolean value of Tensor with {self.array.size} elements is "
                               "ambiguous")
        return bool(self.array.reshape(()).item())

    __float__ = lambda self: float(self.item())  # noqa: E731
    __int__ = lambda self: int(self.item())  # noqa: E731
    __index__ = lambda self: int(self.item())  # noqa: E731
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        body = numpy.array2string(backend.asnumpy(self.array), separator=", ", prefix="tensor(")
        extra = "" if self.dtype in (float32, int64, bool_) else f", dtype={self.dtype}"
        extra += "" if self.device == "cpu" else f", device='{self.device}'"
        if self._ctx is not None:
            extra += f", grad_fn={self._ctx!r}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __array__(self, dtype=None, copy=None):
        array = backend.asnumpy(self.array)
        return array if dtype is None else array.astype(dtype)

    # ---------------------------------------------------------------- devices and dtypes
    def to(self, device=None, dtype=None) -> Tensor:
        """Returns a copy on `device` and/or with `dtype` (self if nothing changes)."""
        if device is not None and not isinstance(device, str):  # t.to(dt.float64)
            device, dtype = None, device
        array = self.array
        if dtype is not None and numpy.dtype(dtype) != array.dtype:
            return self._cast(numpy.dtype(dtype)).to(device)
        if device is None or backend.parse_device(device) == self.device or (
                device == "cuda" and self.device.startswith("cuda")):
            return self
        return F.ToDevice.apply(self, device=device)

    def _cast(self, dtype) -> Tensor:
        if dtype.kind not in "fc" or self.array.dtype.kind not in "fc":
            return Tensor._make(self.array.astype(dtype))  # NOTE: integer casts end the graph
        return F.Cast.apply(self, dtype=dtype)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device: int | None = None) -> Tensor:
        return self.to("cuda" if device is None else f"cuda:{device}")

    def type(self, dtype) -> Tensor:
        return self.to(dtype=dtype)

    def float(self) -> Tensor:
        return self.to(dtype=float32)

    def double(self) -> Tensor:
        return self.to(dtype=float64)

    def half(self) -> Tensor:
        return self.to(dtype=float16)

    def long(self) -> Tensor:
        return self.to(dtype=int64)

    def int(self) -> Tensor:
        return self.to(dtype=int32)

    def bool(self) -> Tensor:
        return self.to(dtype=bool_)

    def type_as(self, other: Tensor) -> Tensor:
        return self.to(dtype=other.dtype)

    # ---------------------------------------------------------------- autograd
    def detach(self) -> Tensor:
        return Tensor._make(self.array)

    def detach_(self) -> Tensor:
        self._ctx, self._requires_grad = None, False
        return self

    def clone(self) -> Tensor:
        return F.Clone.apply(self)

    def register_hook(self, hook):
        """Calls hook(grad) when this tensor's gradient is computed; a returned Tensor replaces
        the gradient. Returns a handle with .remove()."""
        if not self.requires_grad:
            raise RuntimeError("register_hook: cannot register a hook on a tensor that doesn't "
                               "require gradient")
        owner = self._ctx if self._ctx is not None else self  # non-leaf hooks live on the node
        owner_hooks = owner.hooks if owner is self._ctx else self._hooks
        if not owner_hooks:
            owner_hooks = []
            if owner is self._ctx:
                self._ctx.hooks = owner_hooks
            else:
                self._hooks = owner_hooks
        return _Handle(owner_hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Calls hook(tensor) after a leaf's .grad has been accumulated (torch 2.1 API)."""
        if self._ctx is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors have "
                               "accumulated gradients")
        if not self._post_hooks:
            self._post_hooks = []
        return _Handle(self._post_hooks, hook)

    def retain_grad(self) -> None:
        if self._ctx is not None:
            self._ctx.retained = weakref.ref(self)

    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulates d(self)/d(leaf) into every leaf's .grad (reverse mode)."""
        if not self.requires_grad:
            raise RuntimeError("backward: element 0 of tensors does not require grad and does "
                               "not have a grad_fn")
        if gradient is None:
            if self.array.size != 1:
                raise RuntimeError(f"backward: grad can be implicitly created only for scalar "
                                   f"outputs, got shape {self.shape}; pass gradient=")
            grad = get_array_module(self.array).ones_like(self.array)
        else:
            grad = gradient.array if isinstance(gradient, Tensor) else gradient
            if tuple(grad.shape) != self.shape:
                raise RuntimeError(f"backward: gradient shape {tuple(grad.shape)} does not "
                                   f"match tensor shape {self.shape}")
            # NOTE: copied, as torch clones it: a leaf's .grad may adopt the array it is given,
            # and the next accumulation (+=) must not write into the caller's gradient
            grad = get_array_module(grad).array(grad, copy=True)
        run_backward(self, grad, retain_graph)

    # ---------------------------------------------------------------- helpers for ops
    def _lift(self, other) -> Tensor:
        if isinstance(other, Tensor):
            return other
        xp = get_array_module(self.array)
        if isinstance(other, numbers.Number) and self.array.dtype.kind in "fc":
            return Tensor._make(xp.asarray(other, dtype=self.array.dtype))
        return Tensor._make(xp.asarray(other) if not isinstance(other, float)
                            else xp.asarray(other, dtype=_default_float))

    def _broadcasted(self, other, reverse: bool = False) -> tuple[Tensor, Tensor]:
        a, b = self, self._lift(other)
        if reverse:
            a, b = b, a
        if a.array.dtype != b.array.dtype:  # type promotion, as numpy/torch
            dtype = _result_type(a, b)
            a, b = a.to(dtype=dtype), b.to(dtype=dtype)
        if a.shape == b.shape:
            return a, b
        try:
            shape = numpy.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"broadcast: shapes {a.shape} and {b.shape} are not "
                             "broadcastable") from None
        return a.expand(*shape), b.expand(*shape)

    # ---------------------------------------------------------------- arithmetic
    def __add__(self, other):
        return F.Add.apply(*self._broadcasted(other))

    def __radd__(self, other):
        return F.Add.apply(*self._broadcasted(other, reverse=True))

    def __sub__(self, other):
        return F.Sub.apply(*self._broadcasted(other))

    def __rsub__(self, other):
        return F.Sub.apply(*self._broadcasted(other, reverse=True))

    def __mul__(self, other):
        return F.Mul.apply(*self._broadcasted(other))

    def __rmul__(self, other):
        return F.Mul.apply(*self._broadcasted(other, reverse=True))

    def __truediv__(self, other):
        return F.Div.apply(*self._float_pair(other))

    def __rtruediv__(self, other):
        return F.Div.apply(*self._float_pair(other, reverse=True))

    def _float_pair(self, other, reverse=False):
        a, b = self._broadcasted(other, reverse)
        if a.dtype.kind not in "fc":  # true division of integers gives floats, as torch
            a, b = a.to(dtype=_default_float), b.to(dtype=_default_float)
        return a, b

    def __neg__(self):
        return F.Neg.apply(self)

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            return (self.log() * exponent).exp()
        return F.Pow.apply(self, exponent=exponent)

    def __rpow__(self, base):
        return (self._lift(base).log() * self).exp() if not isinstance(base, numbers.Number) \
            else (self * float(numpy.log(base))).exp()

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(self._lift(other), self)

    def _compare(self, other, op):
        other = other.array if isinstance(other, Tensor) else other
        return Tensor._make(op(self.array, other))

    __eq__ = lambda self, o: self._compare(o, operator.eq)  # noqa: E731
    __ne__ = lambda self, o: self._compare(o, operator.ne)  # noqa: E731
    __lt__ = lambda self, o: self._compare(o, operator.lt)  # noqa: E731
    __le__ = lambda self, o: self._compare(o, operator.le)  # noqa: E731
    __gt__ = lambda self, o: self._compare(o, operator.gt)  # noqa: E731
    __ge__ = lambda self, o: self._compare(o, operator.ge)  # noqa: E731

    def __invert__(self):
        return Tensor._make(~self.array)

    def __and__(self, other):
        return self._compare(other, operator.and_)

    def __or__(self, other):
        return self._compare(other, operator.or_)

    # in-place arithmetic: allowed only where autograd need not see it (as torch's leaf rule)
    def _inplace(self, name: str, fn) -> Tensor:
        if _GradMode.enabled and self.requires_grad:
            raise RuntimeError(f"{name}: a leaf Variable that requires grad is being used in an "
                               "in-place operation; wrap it in dt.no_grad() or use .data")
        fn(self.array)
        return self

    def _other(self, other):
        return other.array if isinstance(other, Tensor) else other

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

    __iadd__, __isub__ = add_, sub_
    __imul__, __itruediv__ = mul_, div_

    def __setitem__(self, index, value):
        index = _index_arrays(index)
        self._inplace("__setitem__", lambda a: a.__setitem__(index, self._other(value)))

    # ---------------------------------------------------------------- shape
    def reshape(self, *shape) -> Tensor:
        shape = _shape_arg(shape)
        if -1 in shape or any(s < -1 for s in shape):
            shape = _resolve_shape(shape, self.array.size, "reshape", self.shape)
        elif int(numpy.prod(shape)) != self.array.size:
            raise ValueError(f"reshape: shape {tuple(shape)} is invalid for input of size "
                             f"{self.array.size} (shape {self.shape})")
        return self if tuple(shape) == self.shape else F.Reshape.apply(self, shape=tuple(shape))

    view = reshape

    def view_as(self, other: Tensor) -> Tensor:
        return self.reshape(other.shape)

    reshape_as = view_as

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        if self.ndim == 0:
            return self.reshape(1)
        start, end = _dim(start_dim, self.ndim, "flatten"), _dim(end_dim, self.ndim, "flatten")
        return self.reshape(self.shape[:start] + (-1,) + self.shape[end + 1:])

    def unflatten(self, dim: int, sizes) -> Tensor:
        dim = _dim(dim, self.ndim, "unflatten")
        return self.reshape(self.shape[:dim] + tuple(sizes) + self.shape[dim + 1:])

    def permute(self, *dims) -> Tensor:
        dims = _shape_arg(dims)
        order = tuple(_dim(d, self.ndim, "permute") for d in dims)
        if sorted(order) != list(range(self.ndim)):
            raise ValueError(f"permute: dims {tuple(dims)} are not a permutation of the "
                             f"{self.ndim} dimensions of shape {self.shape}")
        return F.Permute.apply(self, order=order)

    def transpose(self, dim0: int, dim1: int) -> Tensor:
        order = list(range(self.ndim))
        d0, d1 = _dim(dim0, self.ndim, "transpose"), _dim(dim1, self.ndim, "transpose")
        order[d0], order[d1] = order[d1], order[d0]
        return F.Permute.apply(self, order=tuple(order))

    def t(self) -> Tensor:
        return self.transpose(0, 1) if self.ndim == 2 else self

    def unsqueeze(self, dim: int) -> Tensor:
        dim = _dim(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim: int | None = None) -> Tensor:
        if dim is None:
            return self.reshape(tuple(s for s in self.shape if s != 1))
        dim = _dim(dim, self.ndim, "squeeze")
        if self.shape[dim] != 1:
            return self
        return self.reshape(self.shape[:dim] + self.shape[dim + 1:])

    def expand(self, *sizes) -> Tensor:
        sizes = _shape_arg(sizes)
        if len(sizes) < self.ndim:
            raise ValueError(f"expand: the number of sizes ({len(sizes)}) must be >= the number "
                             f"of dimensions of shape {self.shape}")
        x = self.reshape((1,) * (len(sizes) - self.ndim) + self.shape)
        shape = tuple(s if n == -1 else n for s, n in zip(x.shape, sizes))
        for s, n in zip(x.shape, shape):
            if s != n and s != 1:
                raise ValueError(f"expand: shape {self.shape} cannot be expanded to {sizes}")
        return x if shape == x.shape else F.Expand.apply(x, shape=shape)

    def expand_as(self, other: Tensor) -> Tensor:
        return self.expand(*other.shape)

    def contiguous(self) -> Tensor:
        return self

    def __getitem__(self, index) -> Tensor:
        return F.Index.apply(self, index=_index_arrays(index))

    def chunk(self, chunks: int, dim: int = 0) -> list[Tensor]:
        size = -(-self.shape[dim] // chunks)
        return self.split(size, dim)

    def split(self, split_size, dim: int = 0) -> list[Tensor]:
        dim, n = _dim(dim, self.ndim, "split"), self.shape[dim]
        sizes = [split_size] * (n // split_size) + ([n % split_size] if n % split_size else []) \
            if isinstance(split_size, int) else list(split_size)
        if sum(sizes) != n:
            raise ValueError(f"split: sizes {sizes} sum to {sum(sizes)}, expected {n}")
        starts = numpy.cumsum([0] + sizes[:-1])
        lead = (slice(None),) * dim
        return [self[lead + (slice(int(s), int(s) + k),)] for s, k in zip(starts, sizes)]

    # ---------------------------------------------------------------- reductions
    def sum(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
        axes = _axes(dim if axis is None else axis, self.ndim, "sum")
        keep = keepdim if keepdims is None else keepdims
        x = self if self.dtype.kind in "fc" or self.dtype == int64 else self.long()
        return F.Sum.apply(x, axis=axes, keepdims=keep)

    def mean(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None) -> Tensor:
        axes = _axes(dim if axis is None else axis, self.ndim, "mean")
        if self.dtype.kind not in "fc":
            raise TypeError(f"mean: input dtype should be floating point, got {self.dtype}")
        count = int(numpy.prod([self.shape[a] for a in axes]))
        return self.sum(axes, keepdim if keepdims is None else keepdims) * (1.0 / max(count, 1))

    def var(self, dim=None, unbiased: bool = True, keepdim: bool = False, *,
            correction: int | None = None) -> Tensor:
        axes = _axes(dim, self.ndim, "var")
        count = int(numpy.prod([self.shape[a] for a in axes]))
        ddof = correction if correction is not None else int(unbiased)
        centred = self - self.mean(axes, keepdim=True)
        return (centred * centred).sum(axes, keepdim) * (1.0 / max(count - ddof, 1))

    def std(self, dim=None, unbiased: bool = True, keepdim: bool = False, *,
            correction: int | None = None) -> Tensor:
        return self.var(dim, unbiased, keepdim, correction=correction).sqrt()

    def _extreme(self, dim, keepdim, kind: str):
        if dim is None:  # NOTE: ties share the gradient, as torch's full reduction does
            return F.Max.apply(self, axis=None, keepdims=False) if kind == "max" else \
                -F.Max.apply(-self, axis=None, keepdims=False)
        d = _dim(dim, self.ndim, kind)
        indices = (self.argmax if kind == "max" else self.argmin)(d, keepdim=True)
        values = self.gather(d, indices)  # NOTE: the gradient goes to the returned index only
        if not keepdim:
            values, indices = values.squeeze(d), indices.squeeze(d)
        return ReturnTypes(values, indices)

    def gather(self, dim: int, index: Tensor) -> Tensor:
        """out[i][j] = self[index[i][j]][j] for dim=0 (torch.gather); repeated indices add up
        their gradients."""
        if index.dtype.kind not in "iu" or index.ndim != self.ndim:
            raise ValueError(f"gather: index must be an integer tensor with {self.ndim} dims, "
                             f"got dtype {index.dtype} and shape {index.shape}")
        return F.Gather.apply(self, index=index.array, axis=_dim(dim, self.ndim, "gather"))

    def max(self, dim: int | None = None, keepdim: bool = False):
        return self._extreme(dim, keepdim, "max")

    def min(self, dim: int | None = None, keepdim: bool = False):
        return self._extreme(dim, keepdim, "min")

    def amax(self, dim=None, keepdim: bool = False) -> Tensor:
        return F.Max.apply(self, axis=_axes(dim, self.ndim, "amax"), keepdims=keepdim)

    def argmax(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return self._arg(dim, keepdim, "argmax")

    def argmin(self, dim: int | None = None, keepdim: bool = False) -> Tensor:
        return self._arg(dim, keepdim, "argmin")

    def _arg(self, dim, keepdim, name):
        xp = get_array_module(self.array)
        if dim is None:
            return Tensor._make(xp.asarray(getattr(self.array, name)(), dtype=int64))
        d = _dim(dim, self.ndim, name)
        out = getattr(self.array, name)(axis=d)
        return Tensor._make((xp.expand_dims(out, d) if keepdim else out).astype(int64))

    # ---------------------------------------------------------------- element-wise
    def exp(self):
        return F.Exp.apply(self)

    def log(self):
        return F.Log.apply(self)

    def sqrt(self):
        return F.Sqrt.apply(self)

    def rsqrt(self):
        return 1.0 / self.sqrt()

    def abs(self):
        return F.Abs.apply(self)

    def relu(self):
        return F.ReLU.apply(self)

    def sigmoid(self):
        return F.Sigmoid.apply(self)

    def tanh(self):
        return F.Tanh.apply(self)

    def square(self):
        return self * self

    def pow(self, exponent):
        return self ** exponent

    def clamp(self, min=None, max=None) -> Tensor:
        if min is None and max is None:
            raise ValueError("clamp: at least one of min and max must be given")
        return F.Clamp.apply(self, low=min, high=max)

    clip = clamp

    def softmax(self, dim: int) -> Tensor:
        return self.log_softmax(dim).exp()

    def log_softmax(self, dim: int) -> Tensor:
        return F.LogSoftmax.apply(self, axis=_dim(dim, self.ndim, "log_softmax"))

    def masked_fill(self, mask: Tensor, value) -> Tensor:
        return where(mask, self._lift(value).to(dtype=self.dtype), self)

    def sign(self) -> Tensor:
        return Tensor._make(get_array_module(self.array).sign(self.array))


def _result_type(a: Tensor, b: Tensor):
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


def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _resolve_shape(shape, size: int, op: str, old) -> tuple:
    known = int(numpy.prod([s for s in shape if s != -1]))
    if shape.count(-1) > 1 or any(s < -1 for s in shape) or known == 0 or size % known:
        raise ValueError(f"{op}: shape {tuple(shape)} is invalid for input of size {size} "
                         f"(shape {old})")
    return tuple(size // known if s == -1 else s for s in shape)


def _dim(dim: int, ndim: int, op: str) -> int:
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(f"{op}: dimension out of range (expected to be in range of "
                         f"[{-max(ndim, 1)}, {max(ndim, 1) - 1}], but got {dim})")
    return dim % max(ndim, 1)


def _axes(dim, ndim: int, op: str) -> tuple:
    if dim is None:
        return tuple(range(ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return tuple(sorted(_dim(d, ndim, op) for d in dims))


def _index_arrays(index):
    if isinstance(index, Tensor):
        return index.array
    if isinstance(index, tuple):
        return tuple(i.array if isinstance(i, Tensor) else i for i in index)
    return index


# ---------------------------------------------------------------- free functions
def tensor(data, dtype=None, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    """Copies `data` (nested lists, numbers, numpy/cupy arrays, Tensors) into a new Tensor.

    Python floats become float32 and ints int64, as in torch; arrays keep their dtype.

    Example:
        >>> dt.tensor([[1, 2], [3, 4]], dtype=dt.float64).shape
        (2, 2)
    """
    return Tensor(_as_array(data, dtype, device), requires_grad=requires_grad)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dimension, got shapes "
                         f"{a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        dtype = _result_type(a, b)
        a, b = a.to(dtype=dtype), b.to(dtype=dtype)
    inner_a, inner_b = a.shape[-1], b.shape[-2] if b.ndim > 1 else b.shape[0]
    if inner_a != inner_b:
        raise ValueError(f"matmul: a.shape[-1]={inner_a} does not match "
                         f"b.shape[{-2 if b.ndim > 1 else 0}]={inner_b} (shapes {a.shape} and "
                         f"{b.shape})")
    if b.ndim == 1:  # NOTE: checked before a.ndim == 1 so that 1-D @ 1-D gives a 0-d dot
        return matmul(a, b.unsqueeze(-1)).squeeze(-1)
    if a.ndim == 1:
        return matmul(a.unsqueeze(0), b).squeeze(-2)
    batch = numpy.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if a.shape[:-2] != batch:
        a = a.expand(*batch, *a.shape[-2:])
    if b.shape[:-2] != batch:
        b = b.expand(*batch, *b.shape[-2:])
    return F.MatMul.apply(a, b)


def where(condition, input, other) -> Tensor:
    cond = condition.array if isinstance(condition, Tensor) else condition
    a = input if isinstance(input, Tensor) else None
    b = other if isinstance(other, Tensor) else None
    if a is None and b is None:  # NOTE: python floats give float32 here too, as torch.where
        dtype = _result_type(Tensor._make(_as_array(input)), Tensor._make(_as_array(other)))
        return Tensor._make(get_array_module(cond).where(cond, input, other).astype(dtype))
    ref = a if a is not None else b
    a, b = ref._broadcasted(input, reverse=True) if a is None else (  # (input, other) order
        a._broadcasted(other if b is None else b))
    shape = numpy.broadcast_shapes(a.shape, cond.shape)
    a, b = a.expand(*shape), b.expand(*shape)
    xp = get_array_module(cond)
    return F.Where.apply(a, b, condition=xp.broadcast_to(cond, shape))


def cat(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    d = _dim(dim, tensors[0].ndim, "cat")
    for i, t in enumerate(tensors):
        if t.ndim != tensors[0].ndim or t.shape[:d] + t.shape[d + 1:] != \
                tensors[0].shape[:d] + tensors[0].shape[d + 1:]:
            raise ValueError(f"cat: sizes of tensors must match except in dimension {d}: "
                             f"tensor 0 has shape {tensors[0].shape}, tensor {i} has {t.shape}")
    return F.Cat.apply(*tensors, axis=d)


def stack(tensors, dim: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: expects each tensor to be equal size, but got "
                             f"{tensors[0].shape} at entry 0 and {t.shape} at entry {i}")
    d = _dim(dim, tensors[0].ndim + 1, "stack")
    return cat([t.unsqueeze(d) for t in tensors], d)


autograd._use_tensor_type(Tensor)
