"""Every nn layer and loss against torch.nn, one line per case: state_dict names, shapes and
dtypes, forward, input and parameter gradients, buffers after training steps
(helpers.helper_test_layer; disttrain's initial state is copied into torch); then default
initialisation, and Dropout's training-mode statistics (random, so not parity).
"""

from __future__ import annotations

import math

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import helper_test_layer, helper_test_op, state_layout  # noqa: E402

import disttrain as dt  # noqa: E402
import disttrain.nn as nn  # noqa: E402

_rng = numpy.random.default_rng(4321)
TARGET = numpy.array([1, 0, 3, 3, 2])
TARGET_IGNORED = numpy.array([1, -100, 3, 3, -100])
TARGET_NCD = numpy.array([[0, 2, 1], [3, 3, 0]])
TARGET_NCDD = _rng.integers(0, 4, (2, 3, 2))
CLASS_WEIGHT = numpy.array([0.2, 1.0, 2.5, 0.7])
PROBS = _rng.dirichlet(numpy.ones(4), size=5)
PROBS_NCD = _rng.dirichlet(numpy.ones(4), size=(2, 3)).transpose(0, 2, 1)
BINARY = (_rng.random((3, 4)) > 0.5).astype(numpy.float32)
SOFT_BINARY = _rng.random((3, 4))
BCE_WEIGHT = _rng.uniform(0.5, 2.0, (3, 4))
POS_WEIGHT = numpy.array([0.5, 1.0, 2.0, 3.0])

TORCH_SAME_PAD_WARNING = pytest.mark.filterwarnings("ignore:Using padding='same' with even")


def layer(name, make, *shapes, marks=(), **kwargs):
    return pytest.param(make, shapes, kwargs, id=name, marks=marks)


LAYERS = [
    layer("linear", lambda nn: nn.Linear(4, 3), (5, 4)),
    layer("linear_no_bias", lambda nn: nn.Linear(4, 3, bias=False), (5, 4)),
    layer("linear_3d_input", lambda nn: nn.Linear(4, 3), (2, 5, 4)),
    layer("conv", lambda nn: nn.Conv2d(3, 4, 3), (2, 3, 6, 6)),
    layer("conv_stride", lambda nn: nn.Conv2d(3, 4, 3, stride=2), (2, 3, 7, 7)),
    layer("conv_stride_tuple", lambda nn: nn.Conv2d(3, 4, (3, 2), stride=(2, 1)), (2, 3, 7, 7)),
    layer("conv_padding_int", lambda nn: nn.Conv2d(3, 4, 3, padding=2), (2, 3, 5, 5)),
    layer("conv_padding_tuple", lambda nn: nn.Conv2d(3, 4, 3, padding=(1, 0)), (2, 3, 5, 5)),
    layer("conv_padding_same", lambda nn: nn.Conv2d(3, 4, 3, padding="same"), (2, 3, 5, 6)),
    layer("conv_padding_same_even", lambda nn: nn.Conv2d(3, 4, (2, 4), padding="same"),
          (2, 3, 5, 6), marks=TORCH_SAME_PAD_WARNING),
    layer("conv_padding_valid", lambda nn: nn.Conv2d(3, 4, 3, padding="valid"), (2, 3, 5, 6)),
    layer("conv_dilation", lambda nn: nn.Conv2d(3, 4, 3, dilation=2, padding=1), (2, 3, 7, 7)),
    layer("conv_groups", lambda nn: nn.Conv2d(4, 6, 3, groups=2), (2, 4, 5, 5)),
    layer("conv_depthwise", lambda nn: nn.Conv2d(4, 8, 3, groups=4, bias=False), (2, 4, 5, 5)),
    layer("conv_no_bias", lambda nn: nn.Conv2d(3, 4, 3, bias=False), (2, 3, 6, 6)),
    layer("conv_1x1", lambda nn: nn.Conv2d(5, 2, 1), (2, 5, 3, 3)),
    layer("maxpool", lambda nn: nn.MaxPool2d(2), (2, 3, 6, 6), domain="distinct"),
    layer("maxpool_stride", lambda nn: nn.MaxPool2d(3, stride=2), (2, 3, 7, 7),
          domain="distinct"),
    layer("maxpool_padding", lambda nn: nn.MaxPool2d(3, 2, padding=1), (2, 3, 6, 6),
          domain="distinct"),
    layer("maxpool_dilation", lambda nn: nn.MaxPool2d(2, 1, dilation=2), (2, 3, 5, 5),
          domain="distinct"),
    layer("maxpool_ceil", lambda nn: nn.MaxPool2d(3, 2, ceil_mode=True), (2, 3, 6, 6),
          domain="distinct"),
    layer("maxpool_tuple_all", lambda nn: nn.MaxPool2d(
        (3, 2), (2, 1), (1, 1), (1, 2), ceil_mode=True), (1, 2, 7, 7), domain="distinct"),
    layer("avgpool", lambda nn: nn.AvgPool2d(2), (2, 3, 6, 6)),
    layer("avgpool_stride_padding", lambda nn: nn.AvgPool2d(3, 2, padding=1), (2, 3, 6, 6)),
    layer("avgpool_no_count_pad", lambda nn: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
          (2, 3, 6, 6)),
    layer("avgpool_ceil", lambda nn: nn.AvgPool2d(3, 2, ceil_mode=True), (2, 3, 6, 6)),
    layer("avgpool_ceil_pad_no_count", lambda nn: nn.AvgPool2d(
        3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 3, 6, 6)),
    layer("avgpool_divisor", lambda nn: nn.AvgPool2d(2, divisor_override=3), (2, 3, 4, 4)),
    layer("avgpool_divisor_pad", lambda nn: nn.AvgPool2d(3, 2, 1, divisor_override=5),
          (2, 3, 5, 5)),
    layer("flatten", lambda nn: nn.Flatten(), (2, 3, 4, 5)),
    layer("flatten_dims", lambda nn: nn.Flatten(0, 1), (2, 3, 4)),
    layer("unflatten", lambda nn: nn.Unflatten(1, (3, 4)), (2, 12)),
    layer("identity", lambda nn: nn.Identity(), (2, 3)),
    layer("dropout_eval", lambda nn: nn.Dropout(0.5), (4, 5), training=False),
    layer("relu", lambda nn: nn.ReLU(), (3, 4), domain="distinct"),
    layer("sigmoid", lambda nn: nn.Sigmoid(), (3, 4)),
    layer("tanh", lambda nn: nn.Tanh(), (3, 4)),
    layer("gelu", lambda nn: nn.GELU(), (3, 4)),
    layer("gelu_tanh", lambda nn: nn.GELU(approximate="tanh"), (3, 4)),
    layer("leaky_relu", lambda nn: nn.LeakyReLU(), (3, 4), domain="distinct"),
    layer("leaky_relu_at_zero", lambda nn: nn.LeakyReLU(0.1), (4, 5), domain="ties"),
    layer("leaky_relu_slope", lambda nn: nn.LeakyReLU(0.2), (3, 4), domain="distinct"),
    layer("softmax", lambda nn: nn.Softmax(dim=1), (3, 4)),
    layer("softmax_last", lambda nn: nn.Softmax(dim=-1), (2, 3, 4)),
    layer("log_softmax", lambda nn: nn.LogSoftmax(dim=1), (3, 4)),
    layer("log_softmax_dim0", lambda nn: nn.LogSoftmax(dim=0), (3, 4)),
    layer("batchnorm1d_2d", lambda nn: nn.BatchNorm1d(3), (6, 3), steps=3, then_eval=True),
    layer("batchnorm1d_3d", lambda nn: nn.BatchNorm1d(3), (4, 3, 5), steps=3, then_eval=True),
    layer("batchnorm2d", lambda nn: nn.BatchNorm2d(3), (4, 3, 2, 3), steps=3, then_eval=True),
    layer("batchnorm2d_momentum_none", lambda nn: nn.BatchNorm2d(3, momentum=None),
          (4, 3, 2, 3), steps=3, then_eval=True),
    layer("batchnorm2d_momentum_eps", lambda nn: nn.BatchNorm2d(3, eps=1e-3, momentum=0.5),
          (4, 3, 2, 3), steps=3, then_eval=True),
    layer("batchnorm1d_no_affine", lambda nn: nn.BatchNorm1d(3, affine=False), (6, 3),
          steps=3, then_eval=True),
    layer("batchnorm2d_no_running_stats", lambda nn: nn.BatchNorm2d(
        3, track_running_stats=False), (4, 3, 2, 3), steps=2, then_eval=True),
    layer("batchnorm2d_eval_fresh", lambda nn: nn.BatchNorm2d(3), (4, 3, 2, 3), training=False),
    layer("layernorm", lambda nn: nn.LayerNorm(4), (2, 3, 4)),
    layer("layernorm_2_dims", lambda nn: nn.LayerNorm((3, 4)), (2, 3, 4)),
    layer("layernorm_no_affine", lambda nn: nn.LayerNorm(4, elementwise_affine=False),
          (2, 3, 4)),
    layer("layernorm_no_bias", lambda nn: nn.LayerNorm(4, bias=False), (2, 3, 4)),
    layer("layernorm_eps", lambda nn: nn.LayerNorm(4, eps=1e-2), (5, 4)),
    layer("embedding", lambda nn: nn.Embedding(7, 3), (2, 5), int_high=7),
    layer("sequential_mlp", lambda nn: nn.Sequential(
        nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3), nn.LogSoftmax(dim=1)), (5, 4)),
    layer("sequential_cnn", lambda nn: nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16, 3)), (3, 2, 4, 4), steps=2, then_eval=True),
]  # fmt: skip


@pytest.mark.parametrize("make, shapes, kwargs", LAYERS)
def test_layer(make, shapes, kwargs, device):
    helper_test_layer(make, shapes, device=device, **kwargs)


def loss(name, fn, *shapes, domain="normal"):
    return pytest.param(fn, shapes, domain, id=name)


LOSSES = [
    loss("mse", lambda m, x, y: m.nn.MSELoss()(x, y), (3, 4), (3, 4)),
    loss("mse_sum", lambda m, x, y: m.nn.MSELoss(reduction="sum")(x, y), (3, 4), (3, 4)),
    loss("mse_none", lambda m, x, y: m.nn.MSELoss(reduction="none")(x, y), (3, 4), (3, 4)),
    loss("ce", lambda m, x: m.nn.CrossEntropyLoss()(x, m.const(TARGET)), (5, 4)),
    loss("ce_sum", lambda m, x: m.nn.CrossEntropyLoss(reduction="sum")(x, m.const(TARGET)),
         (5, 4)),
    loss("ce_none", lambda m, x: m.nn.CrossEntropyLoss(reduction="none")(x, m.const(TARGET)),
         (5, 4)),
    loss("ce_weight", lambda m, x: m.nn.CrossEntropyLoss(weight=m.const(CLASS_WEIGHT))(
        x, m.const(TARGET)), (5, 4)),
    loss("ce_weight_sum", lambda m, x: m.nn.CrossEntropyLoss(
        weight=m.const(CLASS_WEIGHT), reduction="sum")(x, m.const(TARGET)), (5, 4)),
    loss("ce_weight_none", lambda m, x: m.nn.CrossEntropyLoss(
        weight=m.const(CLASS_WEIGHT), reduction="none")(x, m.const(TARGET)), (5, 4)),
    loss("ce_ignore", lambda m, x: m.nn.CrossEntropyLoss()(x, m.const(TARGET_IGNORED)), (5, 4)),
    loss("ce_ignore_custom", lambda m, x: m.nn.CrossEntropyLoss(ignore_index=3)(
        x, m.const(TARGET)), (5, 4)),
    loss("ce_ignore_none", lambda m, x: m.nn.CrossEntropyLoss(reduction="none")(
        x, m.const(TARGET_IGNORED)), (5, 4)),
    loss("ce_weight_ignore", lambda m, x: m.nn.CrossEntropyLoss(
        weight=m.const(CLASS_WEIGHT))(x, m.const(TARGET_IGNORED)), (5, 4)),
    loss("ce_smoothing", lambda m, x: m.nn.CrossEntropyLoss(label_smoothing=0.1)(
        x, m.const(TARGET)), (5, 4)),
    loss("ce_smoothing_sum", lambda m, x: m.nn.CrossEntropyLoss(
        label_smoothing=0.1, reduction="sum")(x, m.const(TARGET)), (5, 4)),
    loss("ce_smoothing_none", lambda m, x: m.nn.CrossEntropyLoss(
        label_smoothing=0.1, reduction="none")(x, m.const(TARGET_IGNORED)), (5, 4)),
    loss("ce_smoothing_weight", lambda m, x: m.nn.CrossEntropyLoss(
        weight=m.const(CLASS_WEIGHT), label_smoothing=0.3)(x, m.const(TARGET)), (5, 4)),
    loss("ce_smoothing_weight_ignore", lambda m, x: m.nn.CrossEntropyLoss(
        weight=m.const(CLASS_WEIGHT), label_smoothing=0.3)(x, m.const(TARGET_IGNORED)), (5, 4)),
    loss("ce_smoothing_weight_ignore_sum", lambda m, x: m.nn.CrossEntropyLoss(
        weight=m.const(CLASS_WEIGHT), label_smoothing=0.3, reduction="sum")(
        x, m.const(TARGET_IGNORED)), (5, 4)),
    loss("ce_probs", lambda m, x: m.nn.CrossEntropyLoss()(x, m.const(PROBS)), (5, 4)),
    loss("ce_probs_none", lambda m, x: m.nn.CrossEntropyLoss(reduction="none")(
        x, m.const(PROBS)), (5, 4)),
    loss("ce_probs_sum", lambda m, x: m.nn.CrossEntropyLoss(reduction="sum")(
        x, m.const(PROBS)), (5, 4)),
    loss("ce_probs_weight", lambda m, x: m.nn.CrossEntropyLoss(weight=m.const(CLASS_WEIGHT))(
        x, m.const(PROBS)), (5, 4)),
    loss("ce_probs_smoothing", lambda m, x: m.nn.CrossEntropyLoss(label_smoothing=0.2)(
        x, m.const(PROBS)), (5, 4)),
    loss("ce_probs_smoothing_weight", lambda m, x: m.nn.CrossEntropyLoss(
        weight=m.const(CLASS_WEIGHT), label_smoothing=0.2)(x, m.const(PROBS)), (5, 4)),
    loss("ce_probs_grad_target", lambda m, x, t: m.nn.CrossEntropyLoss()(x, t.softmax(1)),
         (5, 4), (5, 4)),
    loss("ce_ncd", lambda m, x: m.nn.CrossEntropyLoss()(x, m.const(TARGET_NCD)), (2, 4, 3)),
    loss("ce_ncd_none", lambda m, x: m.nn.CrossEntropyLoss(reduction="none")(
        x, m.const(TARGET_NCD)), (2, 4, 3)),
    loss("ce_ncd_weight_smoothing", lambda m, x: m.nn.CrossEntropyLoss(
        weight=m.const(CLASS_WEIGHT), label_smoothing=0.1)(x, m.const(TARGET_NCD)), (2, 4, 3)),
    loss("ce_ncdd", lambda m, x: m.nn.CrossEntropyLoss()(x, m.const(TARGET_NCDD)), (2, 4, 3, 2)),
    loss("ce_ncd_probs", lambda m, x: m.nn.CrossEntropyLoss()(x, m.const(PROBS_NCD)),
         (2, 4, 3)),
    loss("ce_ncd_probs_weight_none", lambda m, x: m.nn.CrossEntropyLoss(
        weight=m.const(CLASS_WEIGHT), reduction="none")(x, m.const(PROBS_NCD)), (2, 4, 3)),
    loss("ce_unbatched", lambda m, x: m.nn.CrossEntropyLoss()(x, m.const(numpy.array(2))),
         (4,)),
    loss("nll", lambda m, x: m.nn.NLLLoss()(x.log_softmax(1), m.const(TARGET)), (5, 4)),
    loss("nll_weight_ignore", lambda m, x: m.nn.NLLLoss(weight=m.const(CLASS_WEIGHT))(
        x.log_softmax(1), m.const(TARGET_IGNORED)), (5, 4)),
    loss("nll_sum", lambda m, x: m.nn.NLLLoss(reduction="sum")(x, m.const(TARGET)), (5, 4)),
    loss("nll_none_ignore_custom", lambda m, x: m.nn.NLLLoss(reduction="none", ignore_index=0)(
        x, m.const(TARGET)), (5, 4)),
    loss("nll_ncd", lambda m, x: m.nn.NLLLoss()(x, m.const(TARGET_NCD)), (2, 4, 3)),
    loss("bce_logits", lambda m, x: m.nn.BCEWithLogitsLoss()(x, m.const(BINARY)), (3, 4)),
    loss("bce_logits_soft_targets", lambda m, x: m.nn.BCEWithLogitsLoss()(
        x * 10, m.const(SOFT_BINARY)), (3, 4)),
    loss("bce_logits_sum", lambda m, x: m.nn.BCEWithLogitsLoss(reduction="sum")(
        x, m.const(BINARY)), (3, 4)),
    loss("bce_logits_none", lambda m, x: m.nn.BCEWithLogitsLoss(reduction="none")(
        x, m.const(BINARY)), (3, 4)),
    loss("bce_logits_weight", lambda m, x: m.nn.BCEWithLogitsLoss(weight=m.const(BCE_WEIGHT))(
        x, m.const(BINARY)), (3, 4)),
    loss("bce_logits_weight_broadcast", lambda m, x: m.nn.BCEWithLogitsLoss(
        weight=m.const(POS_WEIGHT))(x, m.const(BINARY)), (3, 4)),
    loss("bce_logits_pos_weight", lambda m, x: m.nn.BCEWithLogitsLoss(
        pos_weight=m.const(POS_WEIGHT))(x, m.const(SOFT_BINARY)), (3, 4)),
    loss("bce_logits_weight_pos_weight_none", lambda m, x: m.nn.BCEWithLogitsLoss(
        weight=m.const(BCE_WEIGHT), pos_weight=m.const(POS_WEIGHT), reduction="none")(
        x * 5, m.const(BINARY)), (3, 4)),
    loss("bce_logits_grad_target", lambda m, x, t: m.nn.BCEWithLogitsLoss()(x, t.sigmoid()),
         (3, 4), (3, 4)),
]  # fmt: skip


@pytest.mark.parametrize("fn, shapes, domain", LOSSES)
def test_loss(fn, shapes, domain, device):
    helper_test_op(shapes, fn, domain=domain, device=device)


@pytest.mark.parametrize("make", [
    lambda nn, w: nn.CrossEntropyLoss(weight=w),
    lambda nn, w: nn.NLLLoss(weight=w),
    lambda nn, w: nn.NLLLoss(),
    lambda nn, w: nn.BCEWithLogitsLoss(pos_weight=w),
    lambda nn, w: nn.BCEWithLogitsLoss(weight=w, pos_weight=w),
])  # fmt: skip
def test_loss_state_dict_layout(make):
    ours = make(nn, dt.tensor(CLASS_WEIGHT.astype(numpy.float32)))
    theirs = make(torch.nn, torch.tensor(CLASS_WEIGHT.astype(numpy.float32)))
    assert state_layout(ours) == state_layout(theirs)


# ---------------------------------------------------------------- default initialisation
def _std_ratio(ours: numpy.ndarray, theirs: torch.Tensor) -> float:
    return float(ours.std() / theirs.detach().numpy().std())


@pytest.mark.parametrize("make, fan_in", [
    (lambda nn: nn.Linear(500, 300), 500),
    (lambda nn: nn.Conv2d(16, 64, 5), 16 * 25),
    (lambda nn: nn.Conv2d(32, 64, 3, groups=4), 8 * 9),
])  # fmt: skip
def test_fan_in_init_matches_torch(make, fan_in):
    torch.manual_seed(0)  # NOTE: torch's draw too, or its std ratio depends on earlier tests
    ours, theirs = make(nn), make(torch.nn)
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)) and the bias rule agree here
    weight, bias = ours.weight.detach().numpy(), ours.bias.detach().numpy()
    assert numpy.abs(weight).max() <= bound and numpy.abs(bias).max() <= bound
    assert numpy.abs(weight).max() > 0.99 * bound  # fills the range, not a narrower one
    assert abs(_std_ratio(weight, theirs.weight) - 1) < 0.02
    assert abs(weight.std() * math.sqrt(3) / bound - 1) < 0.02  # U(-b, b) has std b/sqrt(3)
    assert abs(weight.mean()) < 0.02 * bound
    assert weight.dtype == bias.dtype == numpy.float32


def test_embedding_init_matches_torch():
    ours, theirs = nn.Embedding(1000, 64), torch.nn.Embedding(1000, 64)
    weight = ours.weight.detach().numpy()
    assert abs(_std_ratio(weight, theirs.weight) - 1) < 0.02
    assert abs(weight.mean()) < 0.02 and weight.dtype == numpy.float32


@pytest.mark.parametrize("make", [
    lambda nn: nn.BatchNorm1d(5),
    lambda nn: nn.BatchNorm2d(5, momentum=None),
    lambda nn: nn.BatchNorm2d(5, affine=False),
    lambda nn: nn.BatchNorm2d(5, track_running_stats=False),
    lambda nn: nn.LayerNorm((2, 5)),
    lambda nn: nn.LayerNorm(5, bias=False),
])  # fmt: skip
def test_norm_init_state_matches_torch(make):
    ours, theirs = make(nn).state_dict(), make(torch.nn).state_dict()
    assert list(ours) == list(theirs)
    for key in ours:
        expected = theirs[key].numpy()
        assert ours[key].dtype == expected.dtype and ours[key].shape == expected.shape, key
        numpy.testing.assert_array_equal(ours[key], expected, err_msg=key)


def test_init_follows_manual_seed():
    dt.manual_seed(7)
    a = nn.Linear(8, 4).weight.detach().numpy()
    dt.manual_seed(7)
    b = nn.Linear(8, 4).weight.detach().numpy()
    c = nn.Linear(8, 4).weight.detach().numpy()
    numpy.testing.assert_array_equal(a, b)
    assert not numpy.array_equal(b, c)


# ---------------------------------------------------------------- Dropout in training mode
@pytest.mark.parametrize("p", [0.1, 0.3, 0.5, 0.9])
def test_dropout_train_statistics(p):
    x = dt.ones(400, 500, requires_grad=True)
    y = nn.Dropout(p)(x)
    out = y.detach().numpy()
    kept = out != 0
    assert abs(1 - kept.mean() - p) < 0.01  # binomial std is at most 0.0008 here
    numpy.testing.assert_allclose(out[kept], numpy.float32(1 / (1 - p)), rtol=1e-6)
    assert abs(out.mean() - 1) < 0.05  # inverted dropout keeps the expectation
    y.sum().backward()
    numpy.testing.assert_array_equal(x.grad.numpy(), out)  # d y / d x = mask / (1 - p)
    assert y.dtype == x.dtype == x.grad.dtype


def test_dropout_train_fresh_mask_each_call_and_generator_repeats():
    x = dt.ones(100, 100)
    layer = nn.Dropout(0.5).train()
    assert not numpy.array_equal(layer(x).numpy(), layer(x).numpy())
    first = nn.Dropout(0.5, generator=numpy.random.default_rng(3))(x).numpy()
    second = nn.Dropout(0.5, generator=numpy.random.default_rng(3))(x).numpy()
    numpy.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("p, expected", [(0.0, 1.0), (1.0, 0.0)])
def test_dropout_train_extremes(p, expected):
    x = dt.ones(3, 4, requires_grad=True)
    y = nn.Dropout(p)(x)
    numpy.testing.assert_array_equal(y.detach().numpy(), numpy.full((3, 4), expected))
    y.sum().backward()
    numpy.testing.assert_array_equal(x.grad.numpy(), numpy.full((3, 4), expected))


def test_dropout_eval_is_identity():
    x = dt.randn(3, 4)
    layer = nn.Dropout(0.9).eval()
    numpy.testing.assert_array_equal(layer(x).numpy(), x.numpy())
