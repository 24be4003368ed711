"""Tensor, the array that records the operations applied to it, and the free functions that
build graphs (tensor, matmul, where; cat and stack live in tensor_shape). Imports backend,
autograd, dtypes, shapes, ops and the Tensor method mixins only.

Tensor's methods are grouped by kind in mixins: tensor_math (operators, in-place, element-wise),
tensor_shape (movement and indexing), tensor_reduce (reductions); this module holds the class
itself (storage, dtype/device moves, autograd) and re-exports the dtype constants and grad-mode
functions under their historical `disttrain.tensor` names.
"""

from __future__ import annotations

import weakref

import numpy

from disttrain import autograd, backend, ops
from disttrain.autograd import (  # noqa: F401  (re-exported: disttrain.tensor.no_grad etc.)
    Function,
    RemovableHandle,
    enable_grad,
    is_grad_enabled,
    no_grad,
    queue_callback,
    run_backward,
)
from disttrain.backend import get_array_module
from disttrain.dtypes import (  # noqa: F401  (re-exported: disttrain.tensor.float32 etc.)
    as_array,
    bool_,
    default_float,
    float16,
    float32,
    float64,
    int8,
    int16,
    int32,
    int64,
    result_type,
    torch_type_name,
    uint8,
)
from disttrain.tensor_math import MathMethods
from disttrain.tensor_reduce import ReductionMethods, ReturnTypes  # noqa: F401
from disttrain.tensor_shape import ShapeMethods, cat, stack  # noqa: F401
from disttrain.tensor_storage import StorageMethods
from disttrain.tensor_str import tensor_body

_new_tensor = object.__new__
_numpy_scalar = numpy.generic


class Tensor(MathMethods, ShapeMethods, ReductionMethods, StorageMethods):
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
        if isinstance(data, Tensor):
            data = data.array
        array = data if (isinstance(data, numpy.ndarray) and dtype is None and device is None) \
            else as_array(data, dtype, device)
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
    device = property(lambda self: backend.device_of(self.array))  # a dt.device (a str too)
    is_cuda = property(lambda self: backend.is_cupy_array(self.array))
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
        body = tensor_body(backend.asnumpy(self.array))
        extra = "" if self.dtype in (float32, int64, bool_) else f", dtype={self.dtype}"
        extra += "" if self.device == "cpu" else f", device='{self.device}'"
        if self._ctx is not None:
            extra += f", grad_fn={self._ctx!r}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def __format__(self, format_spec: str) -> str:
        # NOTE: as torch: a 0-d tensor formats as its Python number (f"{loss:.4f}"); others
        # only with an empty spec (str), anything else is object.__format__'s TypeError
        if self.ndim == 0:
            return self.item().__format__(format_spec)
        return object.__format__(self, format_spec)

    def __array__(self, dtype=None, copy=None):
        array = backend.asnumpy(self.array)
        return array if dtype is None else array.astype(dtype)

    # ---------------------------------------------------------------- devices and dtypes
    def to(self, device=None, dtype=None, non_blocking: bool = False, copy: bool = False
           ) -> Tensor:
        """This tensor on `device` and/or with `dtype`; self when nothing changes (unless
        `copy`). As torch: `t.to(device)`, `t.to(dtype)`, `t.to(device, dtype)`, `t.to(other)`
        (other's device and dtype); `non_blocking` is accepted (copies here are synchronous).

        Example:
            >>> dt.ones(2).to(dt.device("cpu"), dt.float64).dtype
            dtype('float64')
        """
        if isinstance(device, Tensor):
            device, dtype = device.device, device.dtype
        elif device is not None and not isinstance(device, (str, int)):  # t.to(dt.float64)
            device, dtype = None, device
        if dtype is not None and numpy.dtype(dtype) != self.array.dtype:
            return self._cast(numpy.dtype(dtype)).to(device)
        if device is not None:
            target, here = backend.parse_device(device), backend.device_of(self.array)
            if target != here and not (target.index is None and target.type == here.type):
                return ops.ToDevice.apply(self, device=target)
        return self.clone() if copy else self

    def _cast(self, dtype) -> Tensor:
        if dtype.kind not in "fc" or self.array.dtype.kind not in "fc":
            return Tensor._make(self.array.astype(dtype))  # NOTE: integer casts end the graph
        return ops.Cast.apply(self, dtype=dtype)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device=None, non_blocking: bool = False) -> Tensor:
        """A copy on the GPU `device` (an int index, "cuda:N" or a dt.device; default: the
        current one)."""
        return self.to("cuda" if device is None else device)

    def type(self, dtype=None):
        """With `dtype`: this tensor cast to it. Without: torch's type string (e.g.
        'torch.FloatTensor', 'torch.cuda.LongTensor'), which scripts compare against."""
        if dtype is not None:
            return self.to(dtype=dtype)
        return torch_type_name(self.array.dtype, self.device.type == "cuda")

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
        return ops.Clone.apply(self)

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
        return RemovableHandle(owner_hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """Calls hook(tensor) after a leaf's .grad has been accumulated (torch 2.1 API)."""
        if self._ctx is not None:
            raise RuntimeError("register_post_accumulate_grad_hook: only leaf tensors have "
                               "accumulated gradients")
        if not self._post_hooks:
            self._post_hooks = []
        return RemovableHandle(self._post_hooks, hook)

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

    # ---------------------------------------------------------------- calls matmul / where
    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(self._lift(other), self)

    matmul = __matmul__

    def masked_fill(self, mask: Tensor, value) -> Tensor:
        """`value` where the bool `mask` (broadcastable to this shape) is True, else self."""
        array = mask.array if isinstance(mask, Tensor) else mask
        if array.dtype != numpy.bool_:
            raise ValueError(f"masked_fill: mask must be a bool tensor, got dtype {array.dtype}")
        if array.shape != self.shape and not _broadcasts_to(array.shape, self.shape):
            raise ValueError(f"masked_fill: mask of shape {array.shape} does not broadcast to "
                             f"the input's shape {self.shape}")
        return where(array, self._lift(value).to(dtype=self.dtype), self)


# ---------------------------------------------------------------- free functions
def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    try:
        return numpy.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


def tensor(data, dtype=None, requires_grad: bool = False, device: str = "cpu") -> Tensor:
    """Copies `data` (nested lists, numbers, numpy/cupy arrays, Tensors) into a new Tensor.

    Python floats become float32 and ints int64, as in torch; arrays keep their dtype.

    Example:
        >>> dt.tensor([[1, 2], [3, 4]], dtype=dt.float64).shape
        (2, 2)
    """
    return Tensor(as_array(data.array if isinstance(data, Tensor) else data, dtype, device),
                  requires_grad=requires_grad)


def matmul(a: Tensor, b: Tensor) -> Tensor:
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both arguments need at least 1 dimension, got shapes "
                         f"{a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        dtype = result_type(a, b)
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
    return ops.MatMul.apply(a, b)


def where(condition, input, other) -> Tensor:
    cond = condition.array if isinstance(condition, Tensor) else condition
    a = input if isinstance(input, Tensor) else None
    b = other if isinstance(other, Tensor) else None
    if a is None and b is None:  # NOTE: python floats give float32 here too, as torch.where
        dtype = result_type(as_array(input), as_array(other))
        return Tensor._make(get_array_module(cond).where(cond, input, other).astype(dtype))
    ref = a if a is not None else b
    a, b = ref._broadcasted(input, reverse=True) if a is None else (  # (input, other) order
        a._broadcasted(other if b is None else b))
    shape = numpy.broadcast_shapes(a.shape, cond.shape)
    a, b = a.expand(*shape), b.expand(*shape)
    xp = get_array_module(cond)
    return ops.Where.apply(a, b, condition=xp.broadcast_to(cond, shape))


autograd.register_tensor_type(Tensor)
