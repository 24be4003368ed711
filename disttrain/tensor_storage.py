"""Tensor's methods that make or refill storage, as a mixin of disttrain.tensor.Tensor: the
new_* factories (this tensor's dtype and device), random in-place fills (normal_, uniform_)
and shared memory (share_memory_, is_shared). Imports backend, random, shapes and
shared_memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy

from disttrain import backend
from disttrain import random as _random
from disttrain.backend import get_array_module
from disttrain.shapes import shape_arg
from disttrain.shared_memory import is_shared_array, refuse_pickling_shared, share_array

if TYPE_CHECKING:
    from disttrain.tensor import Tensor


class StorageMethods:
    """new_zeros/new_ones/new_full/new_empty/new_tensor, normal_/uniform_, share_memory_."""

    __slots__ = ()

    def new_full(self, size, fill_value, *, dtype=None, device=None,
                 requires_grad: bool = False) -> Tensor:
        """A tensor of `size` filled with `fill_value`, with this tensor's dtype and device
        unless `dtype` / `device` are given (torch.Tensor.new_full).

        Example:
            >>> dt.ones(2, dtype=dt.float64).new_full((2, 3), 7).dtype
            dtype('float64')
        """
        return self._new(shape_arg((size,)), fill_value, dtype, device, requires_grad)

    def _new(self, shape: tuple, fill_value, dtype, device, requires_grad: bool) -> Tensor:
        xp = get_array_module(self.array)
        array = xp.full(shape, fill_value,
                        dtype=self.dtype if dtype is None else numpy.dtype(dtype))
        if device is not None:
            array = backend.to_device(array, device)
        out = self._make(array)
        out.requires_grad = requires_grad
        return out

    def new_zeros(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        """A zero tensor of `size` with this tensor's dtype and device (or `dtype`/`device`)."""
        return self._new(shape_arg(size), 0, dtype, device, requires_grad)

    def new_ones(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        """A tensor of ones of `size` with this tensor's dtype and device."""
        return self._new(shape_arg(size), 1, dtype, device, requires_grad)

    def new_empty(self, *size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        """A tensor of `size` with this tensor's dtype and device (zero-filled here)."""
        return self._new(shape_arg(size), 0, dtype, device, requires_grad)

    def new_tensor(self, data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
        """A copy of `data` with this tensor's dtype and device unless given (as torch, the
        dtype is this tensor's even when `data` holds another kind of number)."""
        array = backend.asnumpy(data.array) if isinstance(data, StorageMethods) else data
        array = numpy.array(array, dtype=self.dtype if dtype is None else numpy.dtype(dtype))
        out = self._make(backend.to_device(array, self.device if device is None else device))
        out.requires_grad = requires_grad
        return out

    def normal_(self, mean: float = 0.0, std: float = 1.0, *, generator=None) -> Tensor:
        """Fills this tensor in place with N(mean, std^2) samples drawn from `generator`
        (default: the one dt.manual_seed seeds)."""
        if std < 0:
            raise ValueError(f"normal_: expects std >= 0.0, but found std {std}")
        draw = _random.resolve(generator).standard_normal(self.shape, _draw_dtype(self.dtype))
        return self._fill("normal_", draw * std + mean)

    def uniform_(self, from_: float = 0.0, to: float = 1.0, *, generator=None,
                 **kwargs) -> Tensor:
        """Fills this tensor in place with U(from, to) samples (torch's `from=` keyword is
        accepted, as is `from_`)."""
        low = kwargs.pop("from", from_)
        if kwargs:
            raise TypeError(f"uniform_: unexpected keyword arguments {sorted(kwargs)}")
        if low > to:
            raise ValueError(f"uniform_: expects from <= to, but got from={low} > to={to}")
        draw = _random.resolve(generator).random(self.shape, _draw_dtype(self.dtype))
        return self._fill("uniform_", draw * (to - low) + low)

    def _fill(self, name: str, host_array) -> Tensor:
        if self.dtype.kind not in "fc":
            raise TypeError(f"{name}: expects a floating point tensor, got dtype {self.dtype}")
        values = backend.to_device(host_array.astype(self.dtype, copy=False), self.device)
        return self._inplace(name, lambda a: a.__setitem__(..., values))

    def share_memory_(self) -> Tensor:
        """Moves this host tensor's storage to shared memory, so that processes forked
        afterwards see its in-place updates (optimizer steps, `copy_`, `load_state_dict`) and
        it sees theirs. GPU tensors are left as they are (as torch). A "spawn"/"forkserver"
        process or a Queue would get a copy, so multiprocessing's pickler refuses to send
        one (RuntimeError)."""
        if not backend.is_cupy_array(self.array) and not is_shared_array(self.array):
            refuse_pickling_shared(type(self))
            self.array = share_array(self.array)
        return self

    def is_shared(self) -> bool:
        """True for a host tensor in shared memory (share_memory_) and for GPU tensors."""
        return backend.is_cupy_array(self.array) or is_shared_array(self.array)


def _draw_dtype(dtype) -> numpy.dtype:
    """The float dtype numpy's Generator can draw directly for a tensor of `dtype`."""
    return dtype if dtype in (numpy.float32, numpy.float64) else numpy.dtype(numpy.float64)
