"""Numerical gradient check (float64, central differences) of the element-wise and probability
losses (l1, smooth_l1, huber, mse with weights, binary_cross_entropy, kl_div) and of pad,
interpolate and adaptive pooling, one line per case as in test_grad_ops. Every input is a leaf
that requires grad (targets too, where the loss is differentiable in them)."""

from __future__ import annotations

import numpy
import pytest
from gradcheck import check_backward, check_directional, make_inputs

import disttrain as dt
import disttrain.nn.functional as F

_rng = numpy.random.default_rng(11)
WEIGHT_34 = _rng.uniform(0.5, 2.0, (3, 4))
WEIGHT_4 = _rng.uniform(0.5, 2.0, 4)
EDGES_34 = numpy.array([[0.0, 1.0, 0.5, 0.25]] * 3)
SPARSE = numpy.array([[0.0, 0.5, 0.5, 0.0], [0.25, 0.25, 0.0, 0.5], [1.0, 0, 0, 0]])


def _c(like: dt.Tensor, value) -> dt.Tensor:
    """A constant Tensor (no grad) on the device of `like`."""
    return dt.tensor(numpy.asarray(value)).to(like.device)


def case(name, fn, *shapes, domain="normal", marks=()):
    return pytest.param(fn, shapes, domain, id=name, marks=marks)


LOSSES = [
    case("l1", lambda a, b: F.l1_loss(a, b), (3, 4), (3, 4), domain="distinct"),
    case("l1_none_weight", lambda a, b: F.l1_loss(a, b, reduction="none",
                                                  weight=_c(a, WEIGHT_34)),
         (3, 4), (3, 4), domain="distinct"),
    case("l1_broadcast", lambda a, b: F.l1_loss(a, b.reshape(3, 1)), (3, 4), (3,),
         domain="distinct", marks=pytest.mark.filterwarnings("ignore:Using a target size")),
    case("mse_weight", lambda a, b: F.mse_loss(a, b, weight=_c(a, WEIGHT_34)), (3, 4), (3, 4)),
    case("smooth_l1", lambda a, b: F.smooth_l1_loss(a, b, beta=0.5), (3, 4), (3, 4),
         domain="distinct"),
    case("smooth_l1_sum", lambda a, b: F.smooth_l1_loss(a * 3, b, reduction="sum"),
         (3, 4), (3, 4), domain="distinct"),
    case("smooth_l1_beta_zero", lambda a, b: F.smooth_l1_loss(a, b, beta=0.0), (3, 4), (3, 4),
         domain="distinct"),
    case("huber", lambda a, b: F.huber_loss(a * 3, b, delta=0.7), (3, 4), (3, 4),
         domain="distinct"),
    case("huber_weight_none", lambda a, b: F.huber_loss(a * 3, b, "none",
                                                        weight=_c(a, WEIGHT_34)),
         (3, 4), (3, 4), domain="distinct"),
    case("bce", lambda x, t: F.binary_cross_entropy(x.sigmoid(), t.sigmoid()), (3, 4), (3, 4)),
    case("bce_weight_sum", lambda x: F.binary_cross_entropy(
        x.sigmoid(), _c(x, EDGES_34), _c(x, WEIGHT_4), reduction="sum"), (3, 4)),
    case("kl_batchmean", lambda x, t: F.kl_div(x.log_softmax(1), t.softmax(1),
                                               reduction="batchmean"), (3, 4), (3, 4)),
    case("kl_none_positive", lambda x, t: F.kl_div(x, t, reduction="none"), (3, 4), (3, 4),
         domain="positive"),
    case("kl_sparse_target", lambda x: F.kl_div(x, _c(x, SPARSE), reduction="sum"), (3, 4)),
    case("kl_log_target", lambda x, t: F.kl_div(x, t, reduction="sum", log_target=True),
         (3, 4), (3, 4)),
]  # fmt: skip

RESAMPLE = [
    case("pad_constant", lambda x: F.pad(x, (1, 2, 0, 1), value=0.5), (2, 3, 4)),
    case("pad_constant_crop", lambda x: F.pad(x, (-1, 2, 1, -2)), (2, 4, 5)),
    case("pad_reflect", lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"), (1, 2, 3, 4)),
    case("pad_reflect_1d", lambda x: F.pad(x, (3, 2), mode="reflect"), (2, 5)),
    case("pad_replicate", lambda x: F.pad(x, (3, 0, 2, 2), mode="replicate"), (2, 3, 4)),
    case("pad_replicate_3d", lambda x: F.pad(x, (1, 1, 0, 2, 1, 0), mode="replicate"),
         (1, 2, 2, 3, 2)),
    case("pad_circular", lambda x: F.pad(x, (2, 3, -1, 1), mode="circular"), (1, 2, 3, 4)),
    case("nearest_up", lambda x: F.interpolate(x, scale_factor=2), (1, 2, 3, 4)),
    case("nearest_size", lambda x: F.interpolate(x, size=(5, 3)), (2, 1, 3, 4)),
    case("nearest_1d_down", lambda x: F.interpolate(x, size=3), (2, 2, 7)),
    case("nearest_scale", lambda x: F.interpolate(x, scale_factor=1.7), (1, 2, 5)),
    case("bilinear", lambda x: F.interpolate(x, size=(5, 7), mode="bilinear"), (1, 2, 3, 4)),
    case("bilinear_down", lambda x: F.interpolate(x, scale_factor=0.6, mode="bilinear"),
         (1, 2, 5, 6)),
    case("bilinear_align", lambda x: F.interpolate(x, size=(4, 6), mode="bilinear",
                                                   align_corners=True), (2, 1, 3, 4)),
    case("linear", lambda x: F.interpolate(x, scale_factor=2.5, mode="linear"), (2, 2, 3)),
    case("adaptive_avg_general", lambda x: F.adaptive_avg_pool2d(x, (3, 2)), (2, 2, 5, 7)),
    case("adaptive_avg_up", lambda x: F.adaptive_avg_pool2d(x, (7, None)), (1, 2, 5, 3)),
    case("adaptive_avg_global", lambda x: F.adaptive_avg_pool2d(x, 1), (2, 3, 4, 5)),
    case("adaptive_avg_divisible", lambda x: F.adaptive_avg_pool2d(x, (2, 3)), (2, 1, 4, 6)),
    case("adaptive_max_general", lambda x: F.adaptive_max_pool2d(x, (3, 2)), (2, 2, 5, 7),
         domain="distinct"),
    case("adaptive_max_divisible", lambda x: F.adaptive_max_pool2d(x, 2), (1, 2, 4, 6),
         domain="distinct"),
    case("adaptive_max_indices", lambda x: F.adaptive_max_pool2d(x, (4, 3), True)[0],
         (3, 5, 7), domain="distinct"),
]  # fmt: skip


@pytest.mark.parametrize("fn, shapes, domain", LOSSES + RESAMPLE)
def test_backward(fn, shapes, domain, xp):
    check_backward(fn, make_inputs(shapes, domain, xp))


@pytest.mark.parametrize("fn, shapes, domain", LOSSES + RESAMPLE)
def test_backward_directional(fn, shapes, domain, xp):
    check_directional(fn, make_inputs(shapes, domain, xp))
