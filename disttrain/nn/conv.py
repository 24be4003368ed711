"""Conv1d, Conv2d, ConvTranspose2d, MaxPool2d and AvgPool2d modules (the maths is in
functional_conv and ops)."""

from __future__ import annotations

import math

from disttrain.nn import functional as F
from disttrain.nn import init
from disttrain.nn.layers import empty_parameter
from disttrain.nn.module import Module
from disttrain.shapes import as_pair
from disttrain.tensor import Tensor


def _tuple(value, n: int, name: str) -> tuple:
    if n == 2:
        return as_pair(value, name)
    value = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if len(value) != 1 or not all(isinstance(v, int) for v in value):
        raise ValueError(f"{name}: expected an int or a 1-tuple of ints, got {value!r}")
    return value


class _ConvNd(Module):
    """What Conv1d, Conv2d and ConvTranspose2d share: argument checks, attributes, weight and
    bias with torch's layout and initialisation, and torch's repr."""

    n_dims, transposed = 2, False

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation,
                 groups, bias, padding_mode, device, dtype, generator, output_padding=0):
        super().__init__()
        name, n = type(self).__name__, self.n_dims
        if groups <= 0 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: in_channels={in_channels} and out_channels="
                             f"{out_channels} must both be divisible by groups={groups} (a "
                             "positive integer)")
        if padding_mode != "zeros":
            raise ValueError(f"{name}: padding_mode={padding_mode!r} is not supported; only "
                             "'zeros' (pad the input yourself for other modes)")
        if isinstance(padding, str) and (self.transposed or padding not in ("valid", "same")):
            raise ValueError(f"{name}: padding must be " + ("ints" if self.transposed else
                             "'valid', 'same' or ints") + f", got {padding!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _tuple(kernel_size, n, f"{name}: kernel_size")
        self.stride = _tuple(stride, n, f"{name}: stride")
        self.dilation = _tuple(dilation, n, f"{name}: dilation")
        if padding == "same" and any(s != 1 for s in self.stride):
            raise ValueError(f"{name}: padding='same' is not supported for strided "
                             f"convolutions, got stride={self.stride}")
        self.padding = padding if isinstance(padding, str) else _tuple(padding, n,
                                                                         f"{name}: padding")
        self.output_padding = _tuple(output_padding, n, f"{name}: output_padding")
        self.padding_mode = padding_mode
        shape = ((in_channels, out_channels // groups) if self.transposed
                 else (out_channels, in_channels // groups))
        self.weight = empty_parameter((*shape, *self.kernel_size), dtype)
        if bias:
            self.bias = empty_parameter((out_channels,), dtype)
        else:
            self.register_parameter("bias", None)
        self._reset_parameters(generator)
        if device is not None:
            self.to(device)

    def _reset_parameters(self, generator) -> None:
        # NOTE: torch's _ConvNd.reset_parameters: kaiming_uniform_(a=sqrt(5)) and a bias in
        # U(+-1/sqrt(fan_in)), fan_in from the weight (C_out/groups * k for a transposed conv)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=generator)
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound, generator)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        zeros, ones = (0,) * self.n_dims, (1,) * self.n_dims
        if self.padding != zeros:
            s += f", padding={self.padding}"
        if self.dilation != ones:
            s += f", dilation={self.dilation}"
        if self.output_padding != zeros:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class Conv1d(_ConvNd):
    """1-D convolution (cross-correlation) over (N, C, L) inputs, as torch.nn.Conv1d.

    Args:
        in_channels, out_channels: channels of the input and of the output.
        kernel_size, stride, dilation: an int or a 1-tuple.
        padding: an int, a 1-tuple, 'valid' or 'same' (stride 1).
        groups: splits the channels into independent groups.
        bias: if False, no additive bias.
        padding_mode: only 'zeros'.

    Shape:
        input (N, C_in, L) or (C_in, L) -> output (N, C_out, L_out) with
        L_out = (L + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1.

    Example:
        >>> nn.Conv1d(4, 8, 3, padding="same")(dt.randn(2, 4, 10)).shape
        (2, 8, 10)
    """

    n_dims = 1

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, generator=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype, generator)

    def forward(self, input: Tensor) -> Tensor:
        return F.conv1d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class Conv2d(_ConvNd):
    """2-D convolution (cross-correlation) over (N, C, H, W) inputs, as torch.nn.Conv2d.

    Args:
        in_channels, out_channels: channels of the input and of the output.
        kernel_size, stride, dilation: an int or an (h, w) pair.
        padding: an int, an (h, w) pair, 'valid' or 'same' (stride 1).
        groups: splits the channels into independent groups.
        bias: if False, no additive bias.
        padding_mode: only 'zeros'.

    Shape:
        input (N, C, H, W) -> output (N, C_out, OH, OW) with
        OH = (H + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1.

    Example:
        >>> nn.Conv2d(1, 32, 3)(dt.randn(8, 1, 28, 28)).shape
        (8, 32, 26, 26)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, padding_mode: str = "zeros",
                 device=None, dtype=None, *, generator=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype, generator)

    def forward(self, input: Tensor) -> Tensor:
        return F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation,
                        self.groups)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution (the gradient of a Conv2d with respect to its input), as
    torch.nn.ConvTranspose2d. The weight is (in_channels, out_channels/groups, kh, kw).

    Args:
        in_channels, out_channels: channels of the input and of the output.
        kernel_size, stride, dilation: an int or an (h, w) pair.
        padding: an int or an (h, w) pair: the Conv2d padding this inverts (crops the output).
        output_padding: extra rows/columns at the bottom/right (below max(stride, dilation)),
            to pick one of the input sizes a strided Conv2d maps to the same output size.
        groups: splits the channels into independent groups.
        bias: if False, no additive bias.
        padding_mode: only 'zeros'.

    Shape:
        input (N, C_in, H, W) -> output (N, C_out, OH, OW) with OH = (H - 1) * stride -
        2 * padding + dilation * (kernel - 1) + output_padding + 1; forward(input,
        output_size=(OH, OW)) picks the output_padding instead.

    Example:
        >>> nn.ConvTranspose2d(16, 8, 3, stride=2)(dt.randn(1, 16, 5, 5)).shape
        (1, 8, 11, 11)
    """

    transposed = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1,
                 padding_mode: str = "zeros", device=None, dtype=None, *, generator=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype, generator, output_padding)

    def forward(self, input: Tensor, output_size=None) -> Tensor:
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  self._output_padding(input, output_size), self.groups,
                                  self.dilation)

    def _output_padding(self, input: Tensor, output_size) -> tuple:
        """output_padding, or the one that gives `output_size` (torch's rule and message)."""
        if output_size is None:
            return self.output_padding
        wanted = [int(s) for s in output_size][-2:]
        smallest = [(size - 1) * s - 2 * p + d * (k - 1) + 1 for size, s, p, d, k in zip(
            input.shape[-2:], self.stride, self.padding, self.dilation, self.kernel_size)]
        largest = [lo + s - 1 for lo, s in zip(smallest, self.stride)]
        if len(output_size) not in (2, input.ndim) or any(
                not lo <= w <= hi for w, lo, hi in zip(wanted, smallest, largest)):
            raise ValueError(f"ConvTranspose2d: requested an output size of {list(output_size)}"
                             f", but valid sizes range from {smallest} to {largest} (for an "
                             f"input of {tuple(input.shape[-2:])})")
        return tuple(w - lo for w, lo in zip(wanted, smallest))


class MaxPool2d(Module):
    """Max over kernel_size windows, as torch.nn.MaxPool2d (no return_indices)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False):
        super().__init__()
        if return_indices:
            raise ValueError("MaxPool2d: return_indices=True is not supported")
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode

    def forward(self, input: Tensor) -> Tensor:
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode)

    def extra_repr(self) -> str:
        return (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")


class AvgPool2d(Module):
    """Mean over kernel_size windows, as torch.nn.AvgPool2d."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: int | None = None):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride or kernel_size, padding
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
