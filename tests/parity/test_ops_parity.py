"""Every primitive op (through its public Tensor method or functional) against torch, one line
per case: forward value, shape and dtype, and input gradients (helpers.helper_test_op).

`fn(m, *inputs)` runs on both libraries (`m` is helpers.DT or helpers.TORCH); `torch_fn` is
given only where the APIs differ.
"""

from __future__ import annotations

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import helper_test_op  # noqa: E402

_rng = numpy.random.default_rng(1234)
MASK_34 = _rng.random((3, 4)) > 0.5
MASK_234 = numpy.array([[[True, False, True, True]] * 3, [[False, True, False, True]] * 3])
ROWS = numpy.array([0, 2, 0, 1, 2, 2])  # repeats: backward must accumulate
TARGET = numpy.array([1, 0, 3, 3, 2])
TARGET_IGNORED = numpy.array([1, -100, 3, 3, -100])
TARGET_NCD = numpy.array([[0, 2, 1], [3, 3, 0]])
CLASS_WEIGHT = numpy.array([0.2, 1.0, 2.5, 0.7])
X_54 = _rng.standard_normal((5, 4))
X_1145 = _rng.standard_normal((1, 1, 4, 5))
BINARY = (_rng.random((3, 4)) > 0.5).astype(numpy.float32)

TORCH_SAME_PAD_WARNING = pytest.mark.filterwarnings("ignore:Using padding='same' with even")


def case(name, fn, *shapes, torch_fn=None, domain="normal", marks=(), **kwargs):
    return pytest.param(fn, shapes, torch_fn, domain, kwargs, id=name, marks=marks)


CASES = [
    # ---- element-wise
    case("add", lambda m, a, b: a + b, (3, 4), (3, 4)),
    case("add_scalar", lambda m, x: x + 2.5, (3, 4)),
    case("radd_scalar", lambda m, x: 2.5 + x, (3, 4)),
    case("sub", lambda m, a, b: a - b, (3, 4), (3, 4)),
    case("rsub_scalar", lambda m, x: 1.5 - x, (3, 4)),
    case("mul", lambda m, a, b: a * b, (3, 4), (3, 4)),
    case("mul_self_reuse", lambda m, x: x * x + x, (3, 4)),
    case("mul_scalar", lambda m, x: x * -3.0, (3, 4)),
    case("div", lambda m, a, b: a / b, (3, 4), (3, 4), domain="positive"),
    case("rdiv_scalar", lambda m, x: 2.0 / x, (3, 4), domain="positive"),
    case("neg", lambda m, x: -x, (3, 4)),
    case("pow_int", lambda m, x: x**3, (3, 4)),
    case("pow_float", lambda m, x: x**2.5, (3, 4), domain="positive"),
    case("pow_negative", lambda m, x: x**-1.5, (3, 4), domain="positive"),
    case("pow_method", lambda m, x: x.pow(2), (3, 4)),
    case("rpow_scalar_base", lambda m, x: 2.0**x, (3, 4)),
    case("pow_tensor_exponent", lambda m, x, y: x**y, (3, 4), (3, 4), domain="positive"),
    case("exp", lambda m, x: x.exp(), (3, 4)),
    case("log", lambda m, x: x.log(), (3, 4), domain="positive"),
    case("sqrt", lambda m, x: x.sqrt(), (3, 4), domain="positive"),
    case("rsqrt", lambda m, x: x.rsqrt(), (3, 4), domain="positive"),
    case("abs", lambda m, x: x.abs(), (3, 4), domain="distinct"),
    case("abs_at_zero", lambda m, x: x.abs(), (4, 5), domain="ties"),
    case("relu", lambda m, x: x.relu(), (3, 4), domain="distinct"),
    case("leaky_relu_at_zero", lambda m, x: m.F.leaky_relu(x, 0.1), (4, 5), domain="ties"),
    case("relu_at_zero", lambda m, x: m.F.relu(x), (4, 5), domain="ties"),
    case("sigmoid", lambda m, x: x.sigmoid(), (3, 4)),
    case("sigmoid_large", lambda m, x: m.F.sigmoid(x * 50), (3, 4)),
    case("logsigmoid", lambda m, x: m.F.logsigmoid(x * 4), (3, 4)),
    case("logsigmoid_bce", lambda m, x: m.F.binary_cross_entropy_with_logits(
        x, m.const(BINARY), reduction="none"), (3, 4)),
    case("softplus", lambda m, x: m.F.softplus(x * 3), (3, 4)),
    case("tanh", lambda m, x: x.tanh(), (3, 4)),
    case("erf_gelu", lambda m, x: m.F.gelu(x), (3, 4)),
    case("erf_gelu_wide", lambda m, x: m.F.gelu(x * 4), (3, 4)),
    case("clamp", lambda m, x: x.clamp(-0.25, 0.35), (3, 4), domain="distinct"),
    case("clamp_min", lambda m, x: x.clamp(min=-0.25), (3, 4), domain="distinct"),
    case("clamp_max", lambda m, x: x.clamp(max=0.35), (3, 4), domain="distinct"),
    case("clamp_at_bounds", lambda m, x: x.clamp(-0.5, 0.5), (4, 5), domain="ties"),
    case("where", lambda m, a, b: m.where(m.const(MASK_34), a, b), (3, 4), (3, 4)),
    case("where_broadcast", lambda m, a, b: m.where(m.const(MASK_34), a, b), (3, 1), (1, 4)),
    case("where_scalar_input", lambda m, x: m.where(m.const(MASK_34), 0.5, x), (3, 4)),
    case("where_scalar_other", lambda m, x: m.where(m.const(MASK_34), x, -1.0), (3, 4)),
    case("masked_fill", lambda m, x: x.masked_fill(m.const(MASK_34), 0.5), (3, 4)),
    case("clone", lambda m, x: x.clone() * 2, (3, 4)),
    case("cast_float64", lambda m, x: x.double() * 2, (3, 4)),
    case("cast_to_dtype", lambda m, x: x.to(m.float64), (3, 4)),
    case("cast_roundtrip", lambda m, x: x.double().float(), (3, 4)),
    case("cast_long", lambda m, x: (x * 3).long(), (3, 4)),
    case("promote_0d_float64_keeps_float32", lambda m, a, b: a + b.double().sum(), (3, 4), (2,)),
    case("int_plus_float_scalar", lambda m, x: (x * 3).long() + 0.5, (3, 4)),
    case("int_true_div", lambda m, x: (x * 3).long() / 2, (3, 4)),
    case("promote_float32_float64", lambda m, a, b: a + b.double(), (3, 4), (3, 4)),
    case("to_device_roundtrip", lambda m, x: x.cpu() * 2, (3, 4)),
    # ---- movement
    case("reshape", lambda m, x: x.reshape(4, 3), (3, 4)),
    case("view_flat", lambda m, x: x.view(-1), (2, 3, 4)),
    case("flatten", lambda m, x: x.flatten(1), (2, 3, 4)),
    case("unsqueeze_squeeze", lambda m, x: x.unsqueeze(1).squeeze(), (3, 4)),
    case("permute", lambda m, x: x.permute(2, 0, 1), (2, 3, 4)),
    case("transpose", lambda m, x: x.transpose(0, 2), (2, 3, 4)),
    case("T", lambda m, x: x.T, (3, 4)),
    case("expand_broadcast_add", lambda m, a, b: a + b, (3, 1), (1, 4)),
    case("expand_broadcast_rank", lambda m, a, b: a * b, (2, 3, 4), (4,)),
    case("expand", lambda m, x: x.expand(2, 3, 4), (3, 1)),
    case("expand_0d", lambda m, x: x.expand(3, 4), ()),
    case("expand_minus_one", lambda m, x: x.expand(2, -1, 4), (3, 1)),
    case("index_slices", lambda m, x: x[1:3, ::2], (4, 5)),
    case("index_int_negative", lambda m, x: x[..., -1], (2, 3, 4)),
    case("index_none_int", lambda m, x: x[None, 0], (3, 4)),
    case("index_int_array_repeats", lambda m, x: x[m.const(ROWS)], (3, 4)),
    case("index_two_int_arrays", lambda m, x: x[m.const(ROWS), m.const(ROWS[::-1])], (3, 4)),
    case("index_slice_then_array", lambda m, x: x[:, m.const(ROWS[:4])], (3, 4)),
    case("index_bool_mask", lambda m, x: x[m.const(MASK_34)], (3, 4)),
    case("index_column_mask", lambda m, x: x[:, m.const(MASK_34[0])], (3, 4)),
    case("index_2d_int_array", lambda m, x: x[m.const([[0, 4], [4, 1]])], (5, 4)),
    case("index_negative_int_array", lambda m, x: x[m.const([-1, 0, -1])], (5, 4)),
    case("index_ellipsis_array", lambda m, x: x[..., m.const([3, 3, 0])], (2, 3, 4)),
    case("index_0d_int_tensor", lambda m, x: x[m.const(2)], (5, 4)),
    case("index_bool_mask_3d", lambda m, x: x[m.const(MASK_234)], (2, 3, 4)),
    case("split", lambda m, x: x.split(2, dim=1)[2], (3, 5)),
    case("chunk", lambda m, x: x.chunk(3, dim=0)[1], (5, 2)),
    case("cat", lambda m, a, b, c: m.cat([a, b, c], dim=1), (2, 3), (2, 1), (2, 4)),
    case("cat_dim0", lambda m, a, b: m.cat([a, b]), (2, 3), (4, 3)),
    case("stack", lambda m, a, b: m.stack([a, b], dim=1), (2, 3), (2, 3)),
    # ---- reductions
    case("sum_all", lambda m, x: x.sum(), (3, 4)),
    case("sum_dim", lambda m, x: x.sum(1), (2, 3, 4)),
    case("sum_dims_keepdim", lambda m, x: x.sum((0, 2), keepdim=True), (2, 3, 4)),
    case("sum_negative_dim", lambda m, x: x.sum(-1), (2, 3, 4)),
    case("sum_large", lambda m, x: x.sum(0), (10000, 3)),
    case("mean", lambda m, x: x.mean(), (3, 4)),
    case("mean_dim_keepdim", lambda m, x: x.mean(1, keepdim=True), (2, 3, 4)),
    case("var", lambda m, x: x.var(1), (3, 4)),
    case("var_biased", lambda m, x: x.var(0, unbiased=False), (3, 4)),
    case("std", lambda m, x: x.std(), (3, 4)),
    case("max_all", lambda m, x: x.max(), (3, 4), domain="distinct"),
    case("max_dim_values_indices", lambda m, x: tuple(x.max(1)), (2, 3, 4), domain="distinct"),
    case("max_dim_keepdim", lambda m, x: tuple(x.max(-1, keepdim=True)), (2, 3, 4),
         domain="distinct"),
    case("min_dim", lambda m, x: tuple(x.min(0)), (3, 4), domain="distinct"),
    case("min_all", lambda m, x: x.min(), (3, 4), domain="distinct"),
    case("amax", lambda m, x: x.amax(), (3, 4), domain="distinct"),
    case("amax_dims", lambda m, x: x.amax((0, 2)), (2, 3, 4), domain="distinct"),
    case("amax_keepdim", lambda m, x: x.amax(1, keepdim=True), (2, 3, 4), domain="distinct"),
    case("amax_ties", lambda m, x: x.amax(1), (4, 6), domain="ties"),
    case("max_all_ties", lambda m, x: x.max(), (4, 6), domain="ties"),
    case("max_dim_ties", lambda m, x: x.max(1).values, (4, 6), domain="ties"),
    case("min_dim_ties", lambda m, x: x.min(0).values, (6, 4), domain="ties"),
    case("argmax", lambda m, x: x.argmax(1), (3, 4), domain="distinct"),
    case("gather_repeats", lambda m, x: x.gather(0, m.const([[0, 2, 1], [0, 0, 1]])), (3, 3)),
    # ---- matmul and linear
    case("matmul_2d", lambda m, a, b: a @ b, (3, 4), (4, 5)),
    case("matmul_batched", lambda m, a, b: a @ b, (2, 3, 4), (2, 4, 5)),
    case("matmul_broadcast_batch", lambda m, a, b: a @ b, (2, 1, 3, 4), (3, 4, 2)),
    case("matmul_batch_vs_2d", lambda m, a, b: m.matmul(a, b), (2, 3, 4), (4, 5)),
    case("matmul_vector_matrix", lambda m, a, b: a @ b, (4,), (4, 5)),
    case("matmul_matrix_vector", lambda m, a, b: a @ b, (3, 4), (4,)),
    case("matmul_vector_vector", lambda m, a, b: a @ b, (4,), (4,)),
    case("matmul_large", lambda m, a, b: a @ b, (64, 256), (256, 32)),
    case("linear", lambda m, x, w, b: m.F.linear(x, w, b), (5, 4), (3, 4), (3,)),
    case("linear_no_bias", lambda m, x, w: m.F.linear(x, w), (5, 4), (3, 4)),
    case("linear_3d", lambda m, x, w, b: m.F.linear(x, w, b), (2, 5, 4), (3, 4), (3,)),
    case("linear_1d", lambda m, x, w, b: m.F.linear(x, w, b), (4,), (3, 4), (3,)),
    case("linear_constant_input", lambda m, w, b: m.F.linear(m.const(X_54), w, b), (3, 4),
         (3,)),
    case("linear_f_order_weight", lambda m, x, wt: m.F.linear(x, wt.T), (5, 4), (4, 3)),
    # ---- softmax and losses
    case("log_softmax", lambda m, x: x.log_softmax(1), (3, 5)),
    case("log_softmax_dim0_large", lambda m, x: m.F.log_softmax(x * 30, 0), (3, 5)),
    case("softmax", lambda m, x: m.F.softmax(x, -1), (2, 3, 5)),
    case("nll_mean", lambda m, x: m.F.nll_loss(x, m.const(TARGET)), (5, 4)),
    case("nll_sum", lambda m, x: m.F.nll_loss(x, m.const(TARGET), reduction="sum"), (5, 4)),
    case("nll_none", lambda m, x: m.F.nll_loss(x, m.const(TARGET), reduction="none"), (5, 4)),
    case("nll_weight_mean", lambda m, x: m.F.nll_loss(
        x, m.const(TARGET), weight=m.const(CLASS_WEIGHT)), (5, 4)),
    case("nll_weight_sum", lambda m, x: m.F.nll_loss(
        x, m.const(TARGET), weight=m.const(CLASS_WEIGHT), reduction="sum"), (5, 4)),
    case("nll_weight_none", lambda m, x: m.F.nll_loss(
        x, m.const(TARGET), weight=m.const(CLASS_WEIGHT), reduction="none"), (5, 4)),
    case("nll_ignore_mean", lambda m, x: m.F.nll_loss(x, m.const(TARGET_IGNORED)), (5, 4)),
    case("nll_ignore_sum", lambda m, x: m.F.nll_loss(
        x, m.const(TARGET_IGNORED), reduction="sum"), (5, 4)),
    case("nll_ignore_none", lambda m, x: m.F.nll_loss(
        x, m.const(TARGET_IGNORED), reduction="none"), (5, 4)),
    case("nll_weight_ignore_mean", lambda m, x: m.F.nll_loss(
        x, m.const(TARGET_IGNORED), weight=m.const(CLASS_WEIGHT)), (5, 4)),
    case("nll_custom_ignore_index", lambda m, x: m.F.nll_loss(
        x, m.const(TARGET), ignore_index=3), (5, 4)),
    case("nll_ncd", lambda m, x: m.F.nll_loss(x, m.const(TARGET_NCD)), (2, 4, 3)),
    case("nll_ncd_none", lambda m, x: m.F.nll_loss(x, m.const(TARGET_NCD), reduction="none"),
         (2, 4, 3)),
    # ---- convolution and pooling
    case("conv2d", lambda m, x, w, b: m.F.conv2d(x, w, b), (2, 3, 6, 6), (4, 3, 3, 3), (4,)),
    case("conv2d_no_bias", lambda m, x, w: m.F.conv2d(x, w), (2, 3, 6, 6), (4, 3, 3, 3)),
    case("conv2d_stride_padding", lambda m, x, w, b: m.F.conv2d(x, w, b, stride=2, padding=1),
         (2, 3, 7, 7), (4, 3, 3, 3), (4,)),
    case("conv2d_tuple_args", lambda m, x, w, b: m.F.conv2d(x, w, b, (2, 1), (1, 2)),
         (1, 3, 7, 6), (2, 3, 3, 2), (2,)),
    case("conv2d_dilation", lambda m, x, w: m.F.conv2d(x, w, dilation=2, padding=1),
         (2, 3, 7, 7), (4, 3, 3, 3)),
    case("conv2d_dilation_tuple", lambda m, x, w: m.F.conv2d(x, w, dilation=(1, 2)),
         (2, 3, 7, 7), (4, 3, 3, 3)),
    case("conv2d_groups", lambda m, x, w, b: m.F.conv2d(x, w, b, groups=2), (2, 4, 5, 5),
         (6, 2, 3, 3), (6,)),
    case("conv2d_depthwise", lambda m, x, w: m.F.conv2d(x, w, groups=4, padding=1),
         (1, 4, 5, 5), (4, 1, 3, 3)),
    case("conv2d_same_odd_kernel", lambda m, x, w: m.F.conv2d(x, w, padding="same"),
         (1, 2, 5, 6), (3, 2, 3, 5)),
    case("conv2d_same_even_kernel", lambda m, x, w: m.F.conv2d(x, w, padding="same"),
         (1, 2, 5, 6), (3, 2, 4, 3), marks=TORCH_SAME_PAD_WARNING),
    case("conv2d_same_dilation", lambda m, x, w: m.F.conv2d(x, w, padding="same", dilation=2),
         (1, 2, 7, 6), (3, 2, 3, 2)),
    case("conv2d_valid", lambda m, x, w: m.F.conv2d(x, w, padding="valid"), (1, 2, 5, 6),
         (3, 2, 2, 3)),
    case("conv2d_constant_input", lambda m, w, b: m.F.conv2d(m.const(X_1145), w, b, padding=1),
         (2, 1, 2, 3), (2,)),
    case("conv2d_unbatched", lambda m, x, w: m.F.conv2d(x, w), (2, 5, 5), (3, 2, 2, 2)),
    # NOTE: 144-term float32 dot products of O(1) terms: rounding error ~1e-5 absolute,
    # whatever the (possibly tiny) result, so atol is loosened for this case only.
    case("conv2d_large", lambda m, x, w, b: m.F.conv2d(x, w, b, padding=1), (4, 16, 12, 12),
         (32, 16, 3, 3), (32,), forward_tol=dict(atol=2e-5, rtol=1e-3)),
    case("max_pool2d", lambda m, x: m.F.max_pool2d(x, 2), (2, 3, 6, 6), domain="distinct"),
    case("max_pool2d_overlap", lambda m, x: m.F.max_pool2d(x, 3, stride=2), (2, 2, 7, 7),
         domain="distinct"),
    case("max_pool2d_padding", lambda m, x: m.F.max_pool2d(x, 3, 2, padding=1), (1, 2, 6, 6),
         domain="distinct"),
    case("max_pool2d_ceil", lambda m, x: m.F.max_pool2d(x, 3, 2, ceil_mode=True), (1, 2, 6, 6),
         domain="distinct"),
    case("max_pool2d_ceil_pad", lambda m, x: m.F.max_pool2d(x, 2, 2, 1, ceil_mode=True),
         (1, 2, 5, 5), domain="distinct"),
    case("max_pool2d_dilation", lambda m, x: m.F.max_pool2d(x, 2, 1, dilation=2), (1, 2, 5, 5),
         domain="distinct"),
    case("max_pool2d_ties", lambda m, x: m.F.max_pool2d(x, 3, 1), (1, 2, 6, 6), domain="ties"),
    case("max_pool2d_unbatched", lambda m, x: m.F.max_pool2d(x, 2), (2, 4, 4), domain="distinct"),
    case("avg_pool2d", lambda m, x: m.F.avg_pool2d(x, 2), (2, 3, 6, 6)),
    case("avg_pool2d_overlap", lambda m, x: m.F.avg_pool2d(x, 3, stride=2), (2, 2, 7, 7)),
    case("avg_pool2d_padding", lambda m, x: m.F.avg_pool2d(x, 3, 2, padding=1), (1, 2, 6, 6)),
    case("avg_pool2d_no_count_pad", lambda m, x: m.F.avg_pool2d(
        x, 3, 2, padding=1, count_include_pad=False), (1, 2, 6, 6)),
    case("avg_pool2d_ceil", lambda m, x: m.F.avg_pool2d(x, 3, 2, ceil_mode=True), (1, 2, 6, 6)),
    case("avg_pool2d_ceil_pad", lambda m, x: m.F.avg_pool2d(x, 2, 2, 1, ceil_mode=True),
         (1, 2, 5, 5)),
    case("avg_pool2d_ceil_pad_no_count", lambda m, x: m.F.avg_pool2d(
        x, 3, 2, 1, ceil_mode=True, count_include_pad=False), (1, 2, 6, 6)),
    case("avg_pool2d_divisor", lambda m, x: m.F.avg_pool2d(x, 2, divisor_override=3),
         (1, 2, 4, 4)),
    case("avg_pool2d_tuple", lambda m, x: m.F.avg_pool2d(x, (2, 3), (1, 2), (1, 0)),
         (1, 2, 5, 7)),
    # ---- composites
    case("gelu_tanh", lambda m, x: m.F.gelu(x, approximate="tanh"), (3, 4)),
    case("leaky_relu", lambda m, x: m.F.leaky_relu(x, 0.2), (3, 4), domain="distinct"),
    case("mse_loss", lambda m, a, b: m.F.mse_loss(a, b), (3, 4), (3, 4)),
    case("cross_entropy_smoothing", lambda m, x: m.F.cross_entropy(
        x, m.const(TARGET), label_smoothing=0.2), (5, 4)),
    case("batch_norm_train", lambda m, x, w, b: m.F.batch_norm(
        x, None, None, w, b, training=True), (4, 3, 2, 2), (3,), (3,)),
    case("layer_norm", lambda m, x, w, b: m.F.layer_norm(x, (4,), w, b), (2, 3, 4), (4,), (4,)),
]  # fmt: skip


@pytest.mark.parametrize("fn, shapes, torch_fn, domain, kwargs", CASES)
def test_op(fn, shapes, torch_fn, domain, kwargs, device):
    helper_test_op(shapes, fn, torch_fn, domain=domain, device=device, **kwargs)
