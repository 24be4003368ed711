"""Linear, ReLU/Sigmoid/Tanh/LeakyReLU/GELU, softmaxes, the Dropouts, Flatten, Embedding and the
containers (Sequential ...); the other activations are in nn/activation.py."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy

from disttrain.nn import functional as F
from disttrain.nn import init
from disttrain.nn.module import Module, Parameter
from disttrain.tensor import Tensor


def empty_parameter(shape, dtype=None) -> Parameter:
    """A zero-filled float Parameter, filled by an initialiser right after."""
    return Parameter(numpy.zeros(shape, dtype=numpy.dtype(dtype or "float32")))


def init_weight_and_bias(module: Module, weight: Parameter, bias: bool, dtype, device,
                          generator) -> None:
    """Registers `weight` and a bias (or None) on `module` with torch's default initialisation
    for Linear and Conv layers, then moves them to `device`."""
    module.weight = weight
    if bias:
        module.bias = empty_parameter((weight.shape[0],), dtype)
    else:
        module.register_parameter("bias", None)
    _reset_fan_in(module.weight, module.bias, generator)
    if device is not None:
        module.to(device)


def _reset_fan_in(weight: Parameter, bias: Parameter | None, generator) -> None:
    """torch's Linear/Conv default: kaiming_uniform_(a=sqrt(5)), bias U(+-1/sqrt(fan_in))."""
    init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
    if bias is not None:
        fan_in, _ = init.calculate_fan_in_and_fan_out(weight)
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        init.uniform_(bias, -bound, bound, generator)


class Identity(Module):
    def forward(self, input: Tensor) -> Tensor:
        return input


class Linear(Module):
    """Applies y = x @ W.T + b.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: if False, the layer has no additive bias.
        generator: numpy Generator for the initial weights (default: dt.manual_seed's).

    Shape:
        input (*, in_features) -> output (*, out_features)

    Example:
        >>> nn.Linear(20, 30)(dt.randn(128, 20)).shape
        (128, 30)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None,
                 dtype=None, *, generator=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        # NOTE: the (out, in) weight is stored column-major, i.e. as a row-major (in, out)
        # matrix: then x @ W.T and the weight gradient are plain BLAS NN/TN products, ~25%
        # faster than the NT product for the (batch x in) @ (in x out) shapes of an MLP.
        # Shape, names and state_dict (row-major copies) stay torch's.
        weight = Parameter(empty_parameter((in_features, out_features), dtype).array.T)
        init_weight_and_bias(self, weight, bias, dtype, device, generator)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Flatten(Module):
    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input: Tensor) -> Tensor:
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input: Tensor) -> Tensor:
        return input.unflatten(self.dim, self.unflattened_size)


class _DropoutNd(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False, *, generator=None):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: dropout probability has to be between 0 "
                             f"and 1, but got {p}")
        self.p, self.inplace, self.generator = p, inplace, generator

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zeroes each element with probability p in training and scales the rest by 1/(1-p)."""

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training, self.inplace, self.generator)


class Dropout1d(_DropoutNd):
    """Zeroes whole channels of (N, C, L) or (C, L) input with probability p in training and
    scales the rest by 1/(1-p) (F.dropout1d).

    Args:
        p: probability of a channel being zeroed.
        inplace: accepted for torch compatibility; the result is a new tensor.
        generator: numpy Generator for the mask (default: the one dt.manual_seed seeds).

    Example:
        >>> nn.Dropout1d(0.5).eval()(dt.ones(2, 3, 4)).shape
        (2, 3, 4)
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout1d(input, self.p, self.training, self.inplace, self.generator)


class Dropout2d(_DropoutNd):
    """Zeroes whole channels of (N, C, H, W) input with probability p in training and scales
    the rest by 1/(1-p) (F.dropout2d, with its warnings for other than 4-D input).

    Args:
        p: probability of a channel being zeroed.
        inplace: accepted for torch compatibility; the result is a new tensor.
        generator: numpy Generator for the mask (default: the one dt.manual_seed seeds).

    Example:
        >>> nn.Dropout2d(0.25)(dt.ones(2, 3, 4, 4)).shape
        (2, 3, 4, 4)
    """

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout2d(input, self.p, self.training, self.inplace, self.generator)


class _Activation(Module):
    fn = staticmethod(F.relu)

    def forward(self, input: Tensor) -> Tensor:
        return self.fn(input)


class ReLU(_Activation):
    """max(x, 0) element-wise.

    Args:
        inplace: accepted for torch compatibility and shown in the repr; the result is a new
            tensor (see functional.relu).

    Example:
        >>> nn.ReLU(inplace=True)(dt.tensor([-1.0, 2.0])).tolist()
        [0.0, 2.0]
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Sigmoid(_Activation):
    fn = staticmethod(F.sigmoid)


class Tanh(_Activation):
    fn = staticmethod(F.tanh)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope, self.inplace = negative_slope, inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope, self.inplace)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return F.gelu(input, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate='{self.approximate}'"


class Softmax(Module):
    """softmax along `dim`; dim=None picks torch's legacy implicit dim, with its warning.

    Example:
        >>> nn.Softmax(dim=1)(dt.zeros(1, 2)).tolist()
        [[0.5, 0.5]]
    """

    _fn = staticmethod(F.softmax)

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        # NOTE: stacklevel 5 (as torch's): the warning points at the line calling the module
        return self._fn(input, self.dim, _stacklevel=5)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """log(softmax(x)) along `dim`, computed stably; `dim` as Softmax."""

    _fn = staticmethod(F.log_softmax)


class Softmin(Softmax):
    """softmax(-x) along `dim`; `dim` as Softmax."""

    _fn = staticmethod(F.softmin)


class Embedding(Module):
    """A lookup table of num_embeddings vectors of size embedding_dim, initialised N(0, 1)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=None, *, generator=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = empty_parameter((num_embeddings, embedding_dim), dtype)
        init.normal_(self.weight, generator=generator)

    def forward(self, input: Tensor) -> Tensor:
        if input.dtype.kind not in "iu":
            raise TypeError(f"Embedding: expected integer indices, got dtype {input.dtype}")
        return F.embedding(input, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class Sequential(Module):
    """Calls its modules in order.  Sequential(m1, m2) or Sequential(OrderedDict(name=m))."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, module in modules[0].items():
                self.add_module(name, module)
        else:
            for i, module in enumerate(modules):
                self.add_module(str(i), module)

    def forward(self, input):
        for module in self._modules.values():
            input = module(input)
        return input

    def __getitem__(self, index):
        modules = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(modules[index]))
        return modules[index][1]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self


class ModuleList(Module):
    """A list of modules whose parameters are registered, in order."""

    def __init__(self, modules=None):
        super().__init__()
        for module in modules or []:
            self.append(module)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules) -> ModuleList:
        for module in modules:
            self.append(module)
        return self

    def __getitem__(self, index):
        modules = list(self._modules.values())
        return ModuleList(modules[index]) if isinstance(index, slice) else modules[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class ModuleDict(Module):
    def __init__(self, modules=None):
        super().__init__()
        for name, module in (dict(modules) if modules else {}).items():
            self.add_module(name, module)

    def __getitem__(self, name: str) -> Module:
        return self._modules[name]

    def __setitem__(self, name: str, module: Module) -> None:
        self.add_module(name, module)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules)

    def keys(self):
        return self._modules.keys()

    def items(self):
        return self._modules.items()

    def values(self):
        return self._modules.values()
