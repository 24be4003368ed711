"""conv2d, max_pool2d and avg_pool2d as torch.nn.functional has them: argument checks and
output geometry here, the maths in the ops.conv primitives. Re-exported by disttrain.functional.
"""

from __future__ import annotations

from disttrain import ops
from disttrain.backend import get_array_module
from disttrain.dtypes import check_same_dtype
from disttrain.ops.conv import pad2d, window_slices
from disttrain.shapes import as_pair
from disttrain.tensor import Tensor


def _conv_pads(padding, kernel, dilation, stride) -> tuple[int, int, int, int]:
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        if stride != (1, 1):
            raise ValueError(f"conv2d: padding='same' is not supported for strided "
                             f"convolutions, got stride={stride}")
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return (totals[0] // 2, totals[0] - totals[0] // 2, totals[1] // 2,
                totals[1] - totals[1] // 2)
    ph, pw = as_pair(padding, "conv2d: padding")
    return (ph, ph, pw, pw)


def conv2d(input: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> Tensor:
    """2-D cross-correlation, as torch.nn.functional.conv2d.

    Shape: input (N, C, H, W) or (C, H, W), weight (O, C/groups, kh, kw) -> (N, O, OH, OW).
    """
    if input.ndim == 3:
        return conv2d(input.unsqueeze(0), weight, bias, stride, padding, dilation,
                      groups).squeeze(0)
    if input.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"conv2d: expected input (N, C, H, W) and weight (O, C/groups, kh, kw),"
                         f" got input {input.shape} and weight {weight.shape}")
    if input.shape[1] != weight.shape[1] * groups:
        raise ValueError(f"conv2d: input has {input.shape[1]} channels but weight "
                         f"{weight.shape} with groups={groups} expects "
                         f"{weight.shape[1] * groups} (input {input.shape})")
    if weight.shape[0] % groups:
        raise ValueError(f"conv2d: out_channels={weight.shape[0]} is not divisible by "
                         f"groups={groups}")
    check_same_dtype("conv2d", input, weight, "input", "weight")
    stride, dilation = as_pair(stride, "conv2d: stride"), as_pair(dilation, "conv2d: dilation")
    kernel = weight.shape[2:]
    pads = _conv_pads(padding, kernel, dilation, stride)
    out_hw = tuple((size + lo + hi - d * (k - 1) - 1) // s + 1 for size, lo, hi, d, k, s in zip(
        input.shape[2:], pads[::2], pads[1::2], dilation, kernel, stride))
    if min(out_hw) <= 0:
        raise ValueError(f"conv2d: output size {out_hw} is too small (input {input.shape}, "
                         f"kernel {kernel}, padding {padding}, dilation {dilation})")
    inputs = (input, weight) if bias is None else (input, weight, bias)
    return ops.Conv2d.apply(*inputs, stride=stride, pads=pads, dilation=dilation, groups=groups,
                            out_hw=out_hw)


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
