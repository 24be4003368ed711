"""Module fusion before quantization: Conv2d/Linear + BatchNorm (folded into the weights) +
ReLU become one module (ConvReLU2d, LinearReLU, or the folded layer), as torch's
fuse_modules. Imports disttrain.nn only."""

from __future__ import annotations

import copy

import numpy

from disttrain.nn import BatchNorm1d, BatchNorm2d, Conv2d, Identity, Linear, ReLU
from disttrain.nn.module import Module, Parameter


class _LayerReLU(Module):
    """A Linear or Conv2d followed by ReLU, quantized as one layer (the ReLU is the clamp at
    the output zero point)."""

    def __init__(self, layer: Module, relu: ReLU | None = None):
        super().__init__()
        self.layer = layer
        self.relu = relu if relu is not None else ReLU()

    def forward(self, x):
        return self.relu(self.layer(x))


class LinearReLU(_LayerReLU):
    """Linear then ReLU (torch.ao.nn.intrinsic.LinearReLU); children `layer`, `relu`."""


class ConvReLU2d(_LayerReLU):
    """Conv2d then ReLU (torch.ao.nn.intrinsic.ConvReLU2d); children `layer`, `relu`."""


def fold_batch_norm(layer: Module, bn: Module) -> Module:
    """A copy of `layer` (Linear or Conv2d) whose weight and bias include eval-mode `bn`:
    w * gamma / sqrt(var + eps) per output channel, (b - mean) * gamma / sqrt(var + eps) + beta.
    """
    if bn.running_mean is None:
        raise ValueError(f"fuse_modules: {type(bn).__name__} has no running statistics "
                         "(track_running_stats=False); it cannot be folded into the layer")
    mean, var = bn.running_mean.detach().numpy(), bn.running_var.detach().numpy()
    gamma = bn.weight.detach().numpy() if bn.weight is not None else numpy.ones_like(mean)
    beta = bn.bias.detach().numpy() if bn.bias is not None else numpy.zeros_like(mean)
    factor = gamma / numpy.sqrt(var + bn.eps)
    folded = copy.deepcopy(layer)
    weight = layer.weight.detach().numpy()
    folded.weight = Parameter(weight * factor.reshape((-1,) + (1,) * (weight.ndim - 1)))
    bias = layer.bias.detach().numpy() if layer.bias is not None else numpy.zeros_like(mean)
    folded.bias = Parameter(((bias - mean) * factor + beta).astype(weight.dtype))
    return folded


_PATTERNS = {  # (types in order) -> how to build the fused module from them
    (Conv2d, BatchNorm2d, ReLU): lambda c, b, r: ConvReLU2d(fold_batch_norm(c, b), r),
    (Conv2d, BatchNorm2d): fold_batch_norm,
    (Conv2d, ReLU): ConvReLU2d,
    (Linear, BatchNorm1d, ReLU): lambda c, b, r: LinearReLU(fold_batch_norm(c, b), r),
    (Linear, BatchNorm1d): fold_batch_norm,
    (Linear, ReLU): LinearReLU,
}


def fuse_modules(model: Module, modules_to_fuse: list, inplace: bool = False) -> Module:
    """Fuses each list of child names (Conv2d/Linear [, BatchNorm] [, ReLU]) into its first
    name; the others become nn.Identity, as torch.ao.quantization.fuse_modules. Eval only:
    BatchNorm is folded with its running statistics.

    Args:
        model: the float model (eval mode).
        modules_to_fuse: e.g. [["0", "1", "2"], ["4", "5"]] (dotted names for nested ones).
        inplace: change `model` instead of a copy.

    Example:
        >>> import disttrain.nn as nn
        >>> m = fuse_modules(nn.Sequential(nn.Linear(4, 3), nn.ReLU()).eval(), [["0", "1"]])
        >>> [type(c).__name__ for c in m]
        ['LinearReLU', 'Identity']
    """
    model = model if inplace else copy.deepcopy(model)
    if model.training:
        raise RuntimeError("fuse_modules: call model.eval() first (BatchNorm is folded with "
                           "its running statistics; fusion is for inference)")
    for names in modules_to_fuse:
        if isinstance(names, str):
            raise TypeError(f"fuse_modules: expected lists of names, got the string {names!r} "
                            f"(write [[{names!r}, ...]])")
        mods = [model.get_submodule(name) for name in names]
        types = tuple(type(m) for m in mods)
        if types not in _PATTERNS:
            supported = ", ".join("+".join(t.__name__ for t in p) for p in _PATTERNS)
            raise ValueError(f"fuse_modules: cannot fuse {list(names)} of types "
                             f"{[t.__name__ for t in types]}; supported: {supported}")
        _set_submodule(model, names[0], _PATTERNS[types](*mods))
        for name in names[1:]:
            _set_submodule(model, name, Identity())
    return model


def fusion_groups(model: Module) -> list:
    """The longest fusable runs of consecutive children of `model`, as name lists for
    fuse_modules (what prepare fuses automatically)."""
    children = list(model.named_children())
    groups, i = [], 0
    while i < len(children):
        for length in (3, 2):
            run = children[i:i + length]
            if len(run) == length and tuple(type(m) for _, m in run) in _PATTERNS:
                groups.append([name for name, _ in run])
                i += length - 1
                break
        i += 1
    return groups


def _set_submodule(model: Module, name: str, module: Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)
