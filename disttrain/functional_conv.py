"""conv1d, conv2d, conv_transpose2d, max_pool2d and avg_pool2d as torch.nn.functional has
them: argument checks and output geometry here, the maths in the ops.conv and
ops.conv_transpose primitives. Re-exported by disttrain.functional.
"""

from __future__ import annotations

from disttrain import ops
from disttrain.backend import get_array_module
from disttrain.dtypes import check_same_dtype
from disttrain.ops.conv import pad2d, window_slices
from disttrain.shapes import as_pair
from disttrain.tensor import Tensor


def _conv_pads(op, padding, kernel, dilation, stride) -> tuple[int, int, int, int]:
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"{op}: padding='same' is not supported for strided "
                             f"convolutions, got stride={stride}")
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return (totals[0] // 2, totals[0] - totals[0] // 2, totals[1] // 2,
                totals[1] - totals[1] // 2)
    if isinstance(padding, str):
        raise ValueError(f"{op}: padding must be 'valid', 'same' or ints, got {padding!r}")
    ph, pw = as_pair(padding, f"{op}: padding")
    return (ph, ph, pw, pw)


def _check_conv(op, input, weight, channels, groups, layout) -> None:
    """Ranks, channel counts and dtypes; `channels` is how many input channels weight takes,
    `layout` the (input, weight) shapes expected, for the message."""
    if input.ndim != weight.ndim or input.ndim != layout[0].count(",") + 1:
        raise ValueError(f"{op}: expected input {layout[0]} and weight {layout[1]}, got input "
                         f"{input.shape} and weight {weight.shape}")
    if groups <= 0:
        raise ValueError(f"{op}: groups must be a positive integer, got {groups}")
    if input.shape[1] != channels:
        raise ValueError(f"{op}: input has {input.shape[1]} channels but weight "
                         f"{weight.shape} with groups={groups} expects {channels} (input "
                         f"{input.shape})")
    check_same_dtype(op, input, weight, "input", "weight")


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-D cross-correlation, as torch.nn.functional.conv2d.

    Args:
        stride, dilation: an int or an (h, w) pair.
        padding: an int, an (h, w) pair, 'valid' or 'same' (stride 1 only).
        groups: splits the channels into independent groups.

    Shape: input (N, C, H, W) or (C, H, W), weight (O, C/groups, kh, kw) -> (N, O, OH, OW).

    Example:
        >>> F.conv2d(dt.ones(1, 2, 5, 5), dt.ones(3, 2, 3, 3), padding=1).shape
        (1, 3, 5, 5)
    """
    return _conv2d("conv2d", input, weight, bias, stride, padding, dilation, groups)


def _conv2d(op, input, weight, bias, stride, padding, dilation, groups) -> Tensor:
    if input.ndim == 3:
        return _conv2d(op, input.unsqueeze(0), weight, bias, stride, padding, dilation,
                       groups).squeeze(0)
    _check_conv(op, input, weight, weight.shape[1] * groups, groups,
                ("(N, C, H, W)", "(O, C/groups, kh, kw)"))
    if weight.shape[0] % groups:
        raise ValueError(f"{op}: out_channels={weight.shape[0]} is not divisible by "
                         f"groups={groups}")
    stride, dilation = as_pair(stride, f"{op}: stride"), as_pair(dilation, f"{op}: dilation")
    kernel = weight.shape[2:]
    pads = _conv_pads(op, padding, kernel, dilation, stride)
    out_hw = tuple((size + lo + hi - d * (k - 1) - 1) // s + 1 for size, lo, hi, d, k, s in zip(
        input.shape[2:], pads[::2], pads[1::2], dilation, kernel, stride))
    if min(out_hw) <= 0:
        raise ValueError(f"{op}: output size {out_hw} is too small (input {input.shape}, "
                         f"kernel {kernel}, padding {padding}, dilation {dilation})")
    inputs = (input, weight) if bias is None else (input, weight, bias)
    return ops.Conv2d.apply(*inputs, stride=stride, pads=pads, dilation=dilation, groups=groups,
                            out_hw=out_hw)


def _single(value, name: str) -> int:
    """An int or a 1-sequence of ints (conv1d's stride, padding, dilation) as an int."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: expected an int or a 1-tuple of ints, got {value!r}")
    return value


def conv1d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """1-D cross-correlation, as torch.nn.functional.conv1d (conv2d over a height of 1).

    Args:
        stride, dilation: an int or a 1-tuple.
        padding: an int, a 1-tuple, 'valid' or 'same' (stride 1 only).
        groups: splits the channels into independent groups.

    Shape: input (N, C, L) or (C, L), weight (O, C/groups, k) -> (N, O, L_out) with
    L_out = (L + 2 * padding - dilation * (k - 1) - 1) // stride + 1.

    Example:
        >>> F.conv1d(dt.ones(2, 4, 10), dt.ones(6, 4, 3), stride=2).shape
        (2, 6, 4)
    """
    if input.ndim == 2:
        return conv1d(input.unsqueeze(0), weight, bias, stride, padding, dilation,
                      groups).squeeze(0)
    _check_conv("conv1d", input, weight, weight.shape[1] * groups if weight.ndim == 3 else -1,
                groups, ("(N, C, L)", "(O, C/groups, k)"))
    stride = (1, _single(stride, "conv1d: stride"))
    dilation = (1, _single(dilation, "conv1d: dilation"))
    if not isinstance(padding, str):
        padding = (0, _single(padding, "conv1d: padding"))
    return _conv2d("conv1d", input.unsqueeze(2), weight.unsqueeze(2), bias, stride, padding,
                   dilation, groups).squeeze(2)


def conv_transpose2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1,
                     padding=0, output_padding=0, groups: int = 1, dilation=1) -> Tensor:
    """2-D transposed convolution (conv2d's gradient with respect to its input), as
    torch.nn.functional.conv_transpose2d.

    Args:
        stride, padding, dilation: ints or (h, w) pairs; padding is the conv2d padding this
            inverts (it crops the output).
        output_padding: extra rows/columns on the bottom/right, below max(stride, dilation).
        groups: splits the channels into independent groups.

    Shape: input (N, C_in, H, W) or (C_in, H, W), weight (C_in, C_out/groups, kh, kw) ->
    (N, C_out, OH, OW) with
    OH = (H - 1) * stride - 2 * padding + dilation * (kh - 1) + output_padding + 1.

    Example:
        >>> F.conv_transpose2d(dt.ones(1, 4, 5, 5), dt.ones(4, 2, 3, 3), stride=2).shape
        (1, 2, 11, 11)
    """
    op = "conv_transpose2d"
    if input.ndim == 3:
        return conv_transpose2d(input.unsqueeze(0), weight, bias, stride, padding,
                                output_padding, groups, dilation).squeeze(0)
    _check_conv(op, input, weight, weight.shape[0], groups,
                ("(N, C_in, H, W)", "(C_in, C_out/groups, kh, kw)"))
    if weight.shape[0] % groups:
        raise ValueError(f"{op}: in_channels={weight.shape[0]} is not divisible by "
                         f"groups={groups}")
    stride, dilation = as_pair(stride, f"{op}: stride"), as_pair(dilation, f"{op}: dilation")
    pad, extra = as_pair(padding, f"{op}: padding"), as_pair(output_padding,
                                                             f"{op}: output_padding")
    if any(e >= max(s, d) or e < 0 for e, s, d in zip(extra, stride, dilation)) or min(pad) < 0:
        raise ValueError(f"{op}: output_padding must be smaller than either stride or dilation "
                         f"and padding non-negative, got output_padding={extra}, stride="
                         f"{stride}, dilation={dilation}, padding={pad}")
    kernel = weight.shape[2:]
    out_hw = tuple((size - 1) * s - 2 * p + d * (k - 1) + e + 1 for size, s, p, d, k, e in zip(
        input.shape[2:], stride, pad, dilation, kernel, extra))
    if min(out_hw) <= 0:
        raise ValueError(f"{op}: output size {out_hw} is too small (input {input.shape}, "
                         f"kernel {kernel}, stride {stride}, padding {pad})")
    inputs = (input, weight) if bias is None else (input, weight, bias)
    return ops.ConvTranspose2d.apply(*inputs, stride=stride, pads=(pad[0], pad[0], pad[1],
                                     pad[1]), dilation=dilation, groups=groups, out_hw=out_hw)


def _pool_geometry(op, input, kernel_size, stride, padding, dilation, ceil_mode):
    if input.ndim not in (3, 4):
        raise ValueError(f"{op}: expected a 3-D or 4-D input (N, C, H, W), got {input.shape}")
    kernel = as_pair(kernel_size, f"{op}: kernel_size")
    stride = kernel if stride is None or stride == [] else as_pair(stride, f"{op}: stride")
    pad, dilation = as_pair(padding, f"{op}: padding"), as_pair(dilation, f"{op}: dilation")
    if any(p * 2 > k for p, k in zip(pad, kernel)):
        raise ValueError(f"{op}: pad should be at most half of effective kernel size, but got "
                         f"pad={pad}, kernel_size={kernel}")
    out_hw, pads = [], []
    for size, k, s, p, d in zip(input.shape[-2:], kernel, stride, pad, dilation):
        span = size + 2 * p - d * (k - 1) - 1
        out = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (out - 1) * s >= size + p:
            out -= 1
        if out <= 0:
            raise ValueError(f"{op}: output size is too small for input {input.shape} with "
                             f"kernel_size={kernel}, stride={stride}, padding={pad}")
        pads += [p, p + max(0, (out - 1) * s + d * (k - 1) + 1 - (size + 2 * p))]
        out_hw.append(out)
    return kernel, stride, dilation, tuple(pads), tuple(out_hw), pad


def max_pool2d(input: Tensor, kernel_size, stride=None, padding=0, dilation=1,
               ceil_mode: bool = False) -> Tensor:
    """Max over kh x kw windows, as torch.nn.functional.max_pool2d."""
    kernel, stride, dilation, pads, out_hw, _ = _pool_geometry(
        "max_pool2d", input, kernel_size, stride, padding, dilation, ceil_mode)
    return ops.MaxPool2d.apply(input, kernel=kernel, stride=stride, dilation=dilation,
                               pads=pads, out_hw=out_hw)


def avg_pool2d(input: Tensor, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """Mean over kh x kw windows, as torch.nn.functional.avg_pool2d."""
    kernel, stride, dilation, pads, out_hw, pad = _pool_geometry(
        "avg_pool2d", input, kernel_size, stride, padding, 1, ceil_mode)
    divisor = divisor_override or kernel[0] * kernel[1]
    if divisor_override is None and (ceil_mode or (any(pad) and not count_include_pad)):
        divisor = _avg_divisor(input, kernel, stride, pads, pad, out_hw, count_include_pad)
    return ops.AvgPool2d.apply(input, kernel=kernel, stride=stride, dilation=dilation,
                               pads=pads, out_hw=out_hw, divisor=divisor)


def _avg_divisor(input, kernel, stride, pads, pad, out_hw, count_include_pad):
    """How many positions each window averages: torch counts padding (unless told not to) but
    never the overhang that ceil_mode adds."""
    xp = get_array_module(input.array)
    h, w = input.shape[-2:]
    counted = xp.ones((h + 2 * pad[0], w + 2 * pad[1]) if count_include_pad else (h, w),
                      input.dtype)
    if not count_include_pad:
        counted = pad2d(counted, (pad[0], pad[0], pad[1], pad[1]))
    counted = pad2d(counted, (0, pads[1] - pads[0], 0, pads[3] - pads[2]))
    windows = window_slices(kernel, stride, (1, 1), out_hw)
    return sum(counted[window] for window in windows)
