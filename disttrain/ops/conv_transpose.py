"""The transposed convolution primitive: conv2d's adjoint, over ops.conv's im2col/GEMM helpers
(its forward is conv2d's input gradient, its input gradient conv2d's forward)."""

from __future__ import annotations

from disttrain.autograd import Function
from disttrain.ops.conv import (
    bias_grad,
    conv_forward,
    conv_input_grad,
    conv_weight_grad,
    grouped_rows,
    pad_channels_last,
    weight_from_rows,
    weight_rows,
)


class ConvTranspose2d(Function):
    # NOTE: a primitive for speed, as Conv2d: the weight (C_in, C_out/G, kh, kw) is a conv2d
    # weight from C_out to C_in channels, x plays conv2d's output gradient and the result its
    # padded input's gradient, cropped by `pads` (the padding a conv2d back would add).
    def forward(self, x, weight, bias=None, *, stride, pads, dilation, groups, out_hw):
        n, _, h, w = x.shape
        top, bottom, left, right = pads
        pad_shape = (n, out_hw[0] + top + bottom, out_hw[1] + left + right,
                     weight.shape[1] * groups)
        y = conv_input_grad(x, weight, pad_shape, pads, stride, dilation, groups)
        if bias is not None:
            y = y + bias[:, None, None]
        self.save(grouped_rows(x, groups), weight, pads, stride, dilation, groups, (h, w))
        return y

    def backward(self, grad):
        x_g, weight, pads, stride, dilation, groups, in_hw = self.saved
        needs = self.needs_input_grad
        grad_cl = pad_channels_last(grad, pads)
        grad_x = grad_w = grad_b = None
        if needs[0]:
            rows = conv_forward(grad_cl, weight_rows(weight, groups), weight.shape[2:], stride,
                                dilation, in_hw)
            grad_x = rows.reshape(grad.shape[0], *in_hw, -1).transpose(0, 3, 1, 2)
        if needs[1]:
            rows = conv_weight_grad(grad_cl, x_g, weight.shape[2:], stride, dilation, in_hw)
            grad_w = weight_from_rows(rows, weight.shape)
        if len(needs) > 2 and needs[2]:
            grad_b = bias_grad(grad)
        return grad_x, grad_w, grad_b
