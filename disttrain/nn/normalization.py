"""BatchNorm1d, BatchNorm2d, LayerNorm and GroupNorm, as in torch.nn."""

from __future__ import annotations

import numpy

from disttrain.nn import functional as F
from disttrain.nn.module import Module, Parameter
from disttrain.tensor import Tensor


class _BatchNorm(Module):
    _input_dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None, dtype=None):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        dtype = numpy.dtype(dtype or "float32")
        if affine:
            self.weight = Parameter(numpy.ones(num_features, dtype))
            self.bias = Parameter(numpy.zeros(num_features, dtype))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", numpy.zeros(num_features, dtype))
            self.register_buffer("running_var", numpy.ones(num_features, dtype))
            self.register_buffer("num_batches_tracked", numpy.array(0, numpy.int64))
        if device is not None:
            self.to(device)

    def forward(self, input: Tensor) -> Tensor:
        name = type(self).__name__
        if input.ndim not in self._input_dims:
            raise ValueError(f"{name}: expected {' or '.join(map(str, self._input_dims))}D input,"
                             f" got {input.ndim}D input of shape {input.shape}")
        if input.shape[1] != self.num_features:
            raise ValueError(f"{name}: expected {self.num_features} channels in dim 1, got "
                             f"input of shape {input.shape}")
        momentum = self.momentum or 0.0
        if self.training and self.track_running_stats:
            self.num_batches_tracked.array += 1
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked.item())
        use_batch_stats = self.training or not self.track_running_stats
        stats = (self.running_mean, self.running_var) if self.track_running_stats and (
            self.training or not use_batch_stats) else (None, None)
        return F.batch_norm(input, *stats, self.weight, self.bias, use_batch_stats, momentum,
                            self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L) inputs (Ioffe & Szegedy, 2015)."""

    _input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W) inputs, per channel."""

    _input_dims = (4,)


class LayerNorm(Module):
    """Normalises over the trailing `normalized_shape` dims (Ba et al., 2016)."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
        self.normalized_shape, self.eps = tuple(shape), eps
        self.elementwise_affine = elementwise_affine
        dtype = numpy.dtype(dtype or "float32")
        self.weight = Parameter(numpy.ones(self.normalized_shape, dtype)) \
            if elementwise_affine else None
        self.bias = Parameter(numpy.zeros(self.normalized_shape, dtype)) \
            if elementwise_affine and bias else None
        if self.weight is None:
            self.register_parameter("weight", None)
        if self.bias is None:
            self.register_parameter("bias", None)
        if device is not None:
            self.to(device)

    def forward(self, input: Tensor) -> Tensor:
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


class GroupNorm(Module):
    """Normalises (N, C, *) input over groups of C // num_groups channels and the spatial dims,
    then applies a per-channel affine (Wu & He, 2018).

    - Paper: https://arxiv.org/abs/1803.08494

    Args:
        num_groups: number of groups the channels are split into; must divide num_channels.
        num_channels: C, the channels expected in dim 1.
        eps: added to the variance.
        affine: learn a per-channel weight (init 1) and bias (init 0).
        bias: with affine, whether to learn the bias (torch's keyword-only argument).

    Example:
        >>> nn.GroupNorm(2, 4)(dt.randn(3, 4, 5)).shape
        (3, 4, 5)
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True, device=None, dtype=None, *, bias: bool = True):
        super().__init__()
        if num_groups <= 0 or num_channels % num_groups != 0:
            raise ValueError(f"GroupNorm: num_channels ({num_channels}) must be divisible by "
                             f"num_groups ({num_groups})")
        self.num_groups, self.num_channels = num_groups, num_channels
        self.eps, self.affine = eps, affine
        dtype = numpy.dtype(dtype or "float32")
        self.weight = Parameter(numpy.ones(num_channels, dtype)) if affine else None
        self.bias = Parameter(numpy.zeros(num_channels, dtype)) if affine and bias else None
        for name in ("weight", "bias"):
            if getattr(self, name) is None:
                self.register_parameter(name, None)
        if device is not None:
            self.to(device)

    def forward(self, input: Tensor) -> Tensor:
        return F.group_norm(input, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_groups}, {self.num_channels}, eps={self.eps}, "
                f"affine={self.affine}, bias={self.bias is not None}")
