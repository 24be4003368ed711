"""disttrain.onnx.export of each exportable layer and functional op: ONNX Runtime (CPU) equals
disttrain on random inputs, on the traced batch size and on another one (dynamic batch axis)."""

from __future__ import annotations

import numpy
import pytest
from onnx_runtime_check import Lambda, check_export, export_bytes, randn

import disttrain as dt  # noqa: E402
import disttrain.nn as nn  # noqa: E402
import disttrain.nn.functional as F  # noqa: E402

LAYERS = {
    "linear": (lambda: nn.Linear(5, 3), randn(5)),
    "linear_3d": (lambda: nn.Linear(5, 3), randn(4, 5)),
    "linear_no_bias_3d": (lambda: nn.Linear(5, 3, bias=False), randn(4, 5)),
    "conv2d": (lambda: nn.Conv2d(3, 4, 3), randn(3, 8, 8)),
    "conv2d_stride_pad": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), randn(3, 9, 9)),
    "conv2d_dilation": (lambda: nn.Conv2d(3, 4, 3, dilation=2, padding=2), randn(3, 9, 9)),
    "conv2d_groups": (lambda: nn.Conv2d(4, 6, 3, groups=2, bias=False), randn(4, 7, 7)),
    "conv2d_same": (lambda: nn.Conv2d(2, 3, (2, 4), padding="same"), randn(2, 6, 7)),
    "conv1d": (lambda: nn.Conv1d(3, 5, 3, stride=2, padding=1), randn(3, 11)),
    "conv_transpose2d": (lambda: nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1,
                                                    output_padding=1), randn(4, 5, 5)),
    "conv_transpose2d_groups": (lambda: nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2),
                                randn(4, 3, 4)),
    "max_pool": (lambda: nn.MaxPool2d(2), randn(3, 8, 8)),
    "max_pool_stride_pad": (lambda: nn.MaxPool2d(3, 2, 1), randn(3, 9, 9)),
    "max_pool_ceil": (lambda: nn.MaxPool2d(3, 2, ceil_mode=True), randn(2, 8, 8)),
    "max_pool_ceil_big_stride": (lambda: nn.MaxPool2d(2, 3, ceil_mode=True), randn(2, 8, 8)),
    "max_pool_dilation": (lambda: nn.MaxPool2d(2, 1, dilation=2), randn(2, 7, 7)),
    "avg_pool": (lambda: nn.AvgPool2d(2), randn(3, 8, 8)),
    "avg_pool_pad": (lambda: nn.AvgPool2d(3, 2, 1), randn(3, 9, 9)),
    "avg_pool_no_pad_count": (lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
                              randn(3, 9, 9)),
    "avg_pool_ceil": (lambda: nn.AvgPool2d(3, 2, ceil_mode=True), randn(2, 8, 8)),
    "avg_pool_divisor": (lambda: nn.AvgPool2d(2, divisor_override=3), randn(2, 6, 6)),
    "adaptive_avg_global": (lambda: nn.AdaptiveAvgPool2d(1), randn(3, 7, 5)),
    "adaptive_avg_uneven": (lambda: nn.AdaptiveAvgPool2d((2, 3)), randn(3, 7, 7)),
    "adaptive_avg_even": (lambda: nn.AdaptiveAvgPool2d(2), randn(3, 8, 8)),
    "adaptive_max": (lambda: nn.AdaptiveMaxPool2d(2), randn(3, 8, 8)),
    "layer_norm": (lambda: nn.LayerNorm(6), randn(4, 6)),
    "layer_norm_2d_shape": (lambda: nn.LayerNorm((4, 6)), randn(4, 6)),
    "layer_norm_no_affine": (lambda: nn.LayerNorm(6, elementwise_affine=False), randn(6)),
    "group_norm": (lambda: nn.GroupNorm(2, 4), randn(4, 5, 5)),
    "relu": (lambda: nn.ReLU(), randn(7)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), randn(7)),
    "gelu": (lambda: nn.GELU(), randn(7)),
    "gelu_tanh": (lambda: nn.GELU("tanh"), randn(7)),
    "sigmoid": (lambda: nn.Sigmoid(), randn(7)),
    "tanh": (lambda: nn.Tanh(), randn(7)),
    "silu": (lambda: nn.SiLU(), randn(7)),
    "elu": (lambda: nn.ELU(0.5), randn(7)),
    "softplus": (lambda: nn.Softplus(), randn(7)),
    "softplus_beta": (lambda: nn.Softplus(beta=2.0), randn(7)),
    "hardtanh": (lambda: nn.Hardtanh(-0.5, 0.5), randn(7)),
    "relu6": (lambda: nn.ReLU6(), lambda n: dt.randn(n, 7) * 5),
    "softmax": (lambda: nn.Softmax(dim=1), randn(7)),
    "log_softmax": (lambda: nn.LogSoftmax(dim=-1), randn(3, 7)),
    "dropout": (lambda: nn.Sequential(nn.Dropout(0.5), nn.Linear(4, 2)), randn(4)),
    "flatten": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), randn(3, 2, 2)),
    "identity": (lambda: nn.Identity(), randn(3)),
    "upsample_nearest": (lambda: nn.Upsample(scale_factor=2), randn(2, 3, 4)),
    "upsample_bilinear": (lambda: nn.Upsample(size=(5, 7), mode="bilinear"), randn(2, 3, 4)),
    "upsample_bilinear_align": (lambda: nn.UpsamplingBilinear2d(scale_factor=2),
                                randn(2, 3, 4)),
}


def _bn2d():
    bn = nn.BatchNorm2d(3)
    for _ in range(3):  # NOTE: running statistics that are not the initial 0 / 1
        bn(dt.randn(4, 3, 5, 5) * 2 + 1)
    return bn


LAYERS["batch_norm2d"] = (_bn2d, randn(3, 5, 5))
LAYERS["batch_norm1d"] = (lambda: nn.BatchNorm1d(4), randn(4))
LAYERS["conv_bn_relu"] = (lambda: nn.Sequential(nn.Conv2d(2, 3, 3), _bn2d(), nn.ReLU()),
                          randn(2, 7, 7))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_matches_onnxruntime(name):
    build, make_input = LAYERS[name]
    check_export(build(), make_input)


FUNCTIONAL = {
    "arithmetic_constants": (lambda m, x: (x * 2 + 1) / 3 - (1 - x) ** 2, randn(5)),
    "broadcast_row": (lambda m, x: x * m.w[0] + m.w[1:2], randn(3, 4)),
    "unary": (lambda m, x: x.exp() + x.abs().sqrt() + (x.abs() + 1).log() + x.sin() * x.cos(),
              randn(5)),
    "clamp_max_min": (lambda m, x: x.clamp(-0.5, 0.3) + x.clamp(min=0.1) + dt.maximum(x, -x)
                      + dt.minimum(x, x * 0.5), randn(5)),
    "reshape_view": (lambda m, x: x.reshape(x.shape[0], 2, 6).view(x.shape[0], -1), randn(3, 4)),
    "permute_transpose": (lambda m, x: x.permute(0, 2, 1).transpose(1, 2) + x, randn(3, 4)),
    "squeeze_unsqueeze": (lambda m, x: x.unsqueeze(1).squeeze(1).unsqueeze(-1) * 2, randn(4)),
    "cat": (lambda m, x: dt.cat([x, x * 2], dim=1), randn(3)),
    "stack": (lambda m, x: dt.stack([x, x + 1], dim=1), randn(3)),
    "slicing": (lambda m, x: x[:, 1:3, ::2] + x[:, -2:, 1::2] * x[:, 0:1, :-1:2], randn(4, 6)),
    "int_index": (lambda m, x: x[:, -1] + x[:, 0, 2:3], randn(3, 4)),
    "ellipsis_none": (lambda m, x: x[..., None, 1:], randn(3, 4)),
    "chunk": (lambda m, x: x.chunk(2, dim=1)[1] - x.chunk(2, dim=1)[0], randn(4)),
    "matmul": (lambda m, x: x @ m.w.T, randn(3, 4)),
    "bmm": (lambda m, x: dt.bmm(x, x.transpose(1, 2)), randn(3, 4)),
    "mean_sum": (lambda m, x: x.mean(-1) + x.sum(2) + x.mean((1, 2), keepdim=True).squeeze(-1)
                 + x.amax(-1), randn(3, 3)),
    "var": (lambda m, x: x.var(-1), randn(5)),
    "softmax_log_softmax": (lambda m, x: F.softmax(x, dim=-1) + F.log_softmax(x, dim=1),
                            randn(5)),
    "pad_constant": (lambda m, x: F.pad(x, (1, 2, 0, 1), value=0.5), randn(2, 3, 3)),
    "pad_crop": (lambda m, x: F.pad(x, (-1, 2)), randn(2, 5)),
    "pad_reflect": (lambda m, x: F.pad(x, (2, 1, 1, 2), mode="reflect"), randn(2, 4, 4)),
    "interpolate_nearest_size": (lambda m, x: F.interpolate(x, size=(7, 5)), randn(2, 3, 4)),
    "interpolate_bilinear_fraction": (lambda m, x: F.interpolate(x, scale_factor=1.7,
                                                                 mode="bilinear"), randn(2, 5, 6)),
    "interpolate_nearest_fraction": (lambda m, x: F.interpolate(x, scale_factor=(1.5, 0.7)),
                                     randn(2, 5, 6)),
    "interpolate_recompute": (lambda m, x: F.interpolate(x, scale_factor=1.7, mode="bilinear",
                                                         recompute_scale_factor=True),
                              randn(2, 5, 6)),
    "interpolate_area": (lambda m, x: F.interpolate(x, size=(3, 4), mode="area"),
                         randn(2, 7, 9)),
    "interpolate_linear_1d": (lambda m, x: F.interpolate(x, scale_factor=2, mode="linear"),
                              randn(2, 5)),
    "where_comparison": (lambda m, x: dt.where(x > 0, x, x * 0.1) + dt.where(x <= -0.5, 1.0, x),
                         randn(5)),
    "masked_fill_comparison": (lambda m, x: x.masked_fill((x < -0.5) | (x >= 1.0), 0.0)
                               .masked_fill(~(x != x), 0.5 * x), randn(5)),
    "logical_and_eq": (lambda m, x: dt.where((x > 0) & x.lt(m.w[0, :1]), x, -x), randn(4)),
    "argmax_argmin": (lambda m, x: (x.argmax(-1), x.argmin(1, keepdim=True)), randn(3, 4)),
    "where_constant": (lambda m, x: dt.where(m.mask, x, x * 0), randn(4)),
    "masked_fill_tril": (lambda m, x: x.tril(), randn(4, 4)),
    "normalize": (lambda m, x: F.normalize(x, dim=-1), randn(5)),
    "cast": (lambda m, x: x.to(dt.float64).to(dt.float32) * 2, randn(5)),
    "scaled_dot_product_attention": (
        lambda m, x: F.scaled_dot_product_attention(x, x, x, is_causal=True), randn(2, 5, 4)),
}


@pytest.mark.parametrize("name", sorted(FUNCTIONAL))
def test_functional_matches_onnxruntime(name):
    fn, make_input = FUNCTIONAL[name]
    model = Lambda(fn)
    model.w = nn.Parameter(dt.randn(4, 4))
    model.register_buffer("mask", dt.tensor(numpy.array([True, False, True, True])))
    check_export(model, make_input)


def test_embedding_gathers_int_ids():
    model = nn.Sequential(nn.Embedding(11, 4), nn.Flatten(), nn.Linear(12, 2))
    check_export(model, lambda n: dt.randint(0, 11, (n, 3)))


@pytest.mark.parametrize("opset", [13, 15, 18, 20])
def test_other_opsets(opset):
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Upsample(size=(5, 5)),
                          nn.MaxPool2d(2), nn.Flatten(), nn.LayerNorm(12), nn.Linear(12, 4),
                          nn.Softmax(1), Lambda(lambda m, x: x.amax(-1, keepdim=True) + x))
    proto = check_export(model, randn(2, 6, 6), opset_version=opset)
    assert proto.opset_import[0].version == opset


def test_parameters_are_initializers_named_by_state_dict():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 3))
    proto = check_export(model, randn(1, 4, 4))
    names = {i.name for i in proto.graph.initializer}
    assert {"0.weight", "0.bias", "2.weight", "2.bias"} <= names


def test_restores_training_mode():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5))
    model.train()
    model[1].eval()
    export_bytes(model, dt.randn(2, 3))
    assert model.training and model[0].training and not model[1].training
