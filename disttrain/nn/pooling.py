"""Adaptive pooling and upsampling modules with torch.nn's names: AdaptiveAvgPool2d,
AdaptiveMaxPool2d, Upsample, UpsamplingNearest2d, UpsamplingBilinear2d."""

from __future__ import annotations

from disttrain.nn import functional as F
from disttrain.nn.module import Module
from disttrain.tensor import Tensor


class AdaptiveAvgPool2d(Module):
    """Mean over torch's adaptive bins to a fixed (OH, OW), whatever the input's (H, W).

    Args:
        output_size: an int, or (OH, OW) where None keeps that input size.

    Shape: (N, C, H, W) or (C, H, W) -> (N, C, OH, OW) or (C, OH, OW).

    Example:
        >>> nn.AdaptiveAvgPool2d((1, 1))(dt.randn(2, 8, 7, 7)).shape
        (2, 8, 1, 1)
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return F.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """Max over torch's adaptive bins; return_indices=True also returns the flat (h * W + w)
    index of each maximum.

    Example:
        >>> nn.AdaptiveMaxPool2d(3)(dt.randn(2, 8, 7, 7)).shape
        (2, 8, 3, 3)
    """

    def __init__(self, output_size, return_indices: bool = False):
        super().__init__()
        self.output_size, self.return_indices = output_size, return_indices

    def forward(self, input: Tensor):
        return F.adaptive_max_pool2d(input, self.output_size, self.return_indices)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class Upsample(Module):
    """F.interpolate as a module, as torch.nn.Upsample.

    Args:
        size / scale_factor: the output size, or its ratio to the input (one of the two);
        mode: "nearest" (default), "linear", "bilinear" or "area"; align_corners and
        recompute_scale_factor: as F.interpolate.

    Example:
        >>> nn.Upsample(scale_factor=2, mode="bilinear")(dt.randn(1, 3, 4, 4)).shape
        (1, 3, 8, 8)
    """

    def __init__(self, size=None, scale_factor=None, mode: str = "nearest",
                 align_corners: bool | None = None, recompute_scale_factor: bool | None = None):
        super().__init__()
        self.name = type(self).__name__
        self.size = size
        if isinstance(scale_factor, tuple):
            self.scale_factor = tuple(float(factor) for factor in scale_factor)
        else:
            self.scale_factor = float(scale_factor) if scale_factor else None
        self.mode, self.align_corners = mode, align_corners
        self.recompute_scale_factor = recompute_scale_factor

    def forward(self, input: Tensor) -> Tensor:
        return F.interpolate(input, self.size, self.scale_factor, self.mode, self.align_corners,
                             recompute_scale_factor=self.recompute_scale_factor)

    def extra_repr(self) -> str:
        info = (f"scale_factor={self.scale_factor!r}" if self.scale_factor is not None
                else f"size={self.size!r}")
        return f"{info}, mode={self.mode!r}"


class UpsamplingNearest2d(Upsample):
    """Upsample(mode="nearest") for 4-D inputs, as torch.nn.UpsamplingNearest2d."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="nearest")


class UpsamplingBilinear2d(Upsample):
    """Upsample(mode="bilinear", align_corners=True), as torch.nn.UpsamplingBilinear2d."""

    def __init__(self, size=None, scale_factor=None):
        super().__init__(size, scale_factor, mode="bilinear", align_corners=True)
