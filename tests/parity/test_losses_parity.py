"""The element-wise and probability losses against torch, one line per case (forward value,
shape, dtype and the gradients of input and, where it is a leaf, target): l1, smooth_l1, huber,
mse with weights, binary_cross_entropy, kl_div; their modules; torch's warnings and errors."""

from __future__ import annotations

import warnings

import numpy
import pytest

torch = pytest.importorskip("torch")

from helpers import helper_test_layer, helper_test_op  # noqa: E402

import disttrain as dt  # noqa: E402

_rng = numpy.random.default_rng(7)
PROBS_34 = _rng.uniform(0.05, 0.95, (3, 4))
EDGES_34 = numpy.array([[0.0, 1.0, 0.5, 0.25]] * 3)  # targets at the ends of [0, 1]
WEIGHT_34 = _rng.uniform(0.5, 2.0, (3, 4))
WEIGHT_4 = _rng.uniform(0.5, 2.0, 4)
SPARSE_PROBS = numpy.array([[0.0, 0.5, 0.5, 0.0], [0.25, 0.25, 0.0, 0.5], [1.0, 0, 0, 0]])
BROADCAST = pytest.mark.filterwarnings("ignore:Using a target size")
KL_MEAN = pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")


def case(name, fn, *shapes, domain="normal", marks=(), **kwargs):
    return pytest.param(fn, shapes, domain, kwargs, id=name, marks=marks)


CASES = [
    case("l1", lambda m, a, b: m.F.l1_loss(a, b), (3, 4), (3, 4)),
    case("l1_sum", lambda m, a, b: m.F.l1_loss(a, b, reduction="sum"), (3, 4), (3, 4)),
    case("l1_none", lambda m, a, b: m.F.l1_loss(a, b, reduction="none"), (2, 3, 4), (2, 3, 4)),
    case("l1_ties", lambda m, a, b: m.F.l1_loss(a, b, reduction="none"), (4, 5), (4, 5),
         domain="ties"),
    case("l1_weight", lambda m, a, b: m.F.l1_loss(a, b, weight=m.const(WEIGHT_34)),
         (3, 4), (3, 4)),
    case("l1_broadcast", lambda m, a, b: m.F.l1_loss(a, b), (3, 4), (4,), marks=BROADCAST),
    case("mse_weight", lambda m, a, b: m.F.mse_loss(a, b, weight=m.const(WEIGHT_34)),
         (3, 4), (3, 4)),
    case("mse_weight_none", lambda m, a, b: m.F.mse_loss(
        a, b, reduction="none", weight=m.const(WEIGHT_34)), (3, 4), (3, 4)),
    case("mse_broadcast", lambda m, a, b: m.F.mse_loss(a, b), (5, 1), (5,), marks=BROADCAST),
    case("smooth_l1", lambda m, a, b: m.F.smooth_l1_loss(a * 2, b), (3, 4), (3, 4)),
    case("smooth_l1_beta", lambda m, a, b: m.F.smooth_l1_loss(a, b, beta=0.5,
                                                               reduction="none"),
         (3, 4), (3, 4)),
    case("smooth_l1_ties", lambda m, a, b: m.F.smooth_l1_loss(a, b, beta=0.5,
                                                               reduction="none"),
         (4, 5), (4, 5), domain="ties"),
    case("smooth_l1_beta_zero", lambda m, a, b: m.F.smooth_l1_loss(a, b, beta=0.0,
                                                                    reduction="sum"),
         (3, 4), (3, 4), domain="ties"),
    case("smooth_l1_broadcast", lambda m, a, b: m.F.smooth_l1_loss(a, b), (3, 1), (1, 4),
         marks=BROADCAST),
    case("huber", lambda m, a, b: m.F.huber_loss(a * 2, b), (3, 4), (3, 4)),
    case("huber_delta", lambda m, a, b: m.F.huber_loss(a * 2, b, reduction="none",
                                                        delta=0.5), (3, 4), (3, 4)),
    case("huber_ties", lambda m, a, b: m.F.huber_loss(a, b, "sum", 0.5), (4, 5), (4, 5),
         domain="ties"),
    case("huber_weight", lambda m, a, b: m.F.huber_loss(a * 2, b, weight=m.const(WEIGHT_34)),
         (3, 4), (3, 4)),
    case("bce", lambda m, x, t: m.F.binary_cross_entropy(x.sigmoid(), t.sigmoid()),
         (3, 4), (3, 4)),
    case("bce_sum_weight", lambda m, x: m.F.binary_cross_entropy(
        x.sigmoid(), m.const(PROBS_34), m.const(WEIGHT_4), reduction="sum"), (3, 4)),
    case("bce_none_full_weight", lambda m, x: m.F.binary_cross_entropy(
        x.sigmoid(), m.const(EDGES_34), weight=m.const(WEIGHT_34), reduction="none"), (3, 4)),
    case("bce_saturated", lambda m, x: m.F.binary_cross_entropy(
        (x * 40).sigmoid(), m.const(EDGES_34)), (3, 4)),
    case("bce_module", lambda m, x: m.nn.BCELoss(weight=m.const(WEIGHT_4))(
        x.sigmoid(), m.const(EDGES_34)), (3, 4)),
    case("kl_batchmean", lambda m, x, t: m.F.kl_div(
        x.log_softmax(1), t.softmax(1), reduction="batchmean"), (3, 4), (3, 4)),
    case("kl_sum_sparse_target", lambda m, x: m.F.kl_div(
        x.log_softmax(1), m.const(SPARSE_PROBS), reduction="sum"), (3, 4)),
    case("kl_none", lambda m, x, t: m.F.kl_div(x, t.softmax(-1), reduction="none"),
         (2, 3, 4), (2, 3, 4)),
    case("kl_mean", lambda m, x, t: m.F.kl_div(x, t.softmax(1)), (3, 4), (3, 4),
         marks=KL_MEAN),
    case("kl_log_target", lambda m, x, t: m.F.kl_div(
        x.log_softmax(1), t.log_softmax(1), reduction="batchmean", log_target=True),
         (3, 4), (3, 4)),
    case("kl_broadcast_target", lambda m, x, t: m.F.kl_div(x, t.softmax(0), reduction="sum"),
         (3, 4), (4,)),
    case("kl_0d_batchmean", lambda m, x, t: m.F.kl_div(x[0, 0], t.sigmoid()[0, 0],
                                                        reduction="batchmean"),
         (2, 2), (2, 2)),
]  # fmt: skip


@pytest.mark.parametrize("fn, shapes, domain, kwargs", CASES)
def test_loss(fn, shapes, domain, kwargs, device):
    helper_test_op(shapes, fn, domain=domain, device=device, **kwargs)


def module(name, make, domain="normal"):
    return pytest.param(make, domain, id=name)


MODULES = [
    module("L1Loss", lambda nn: nn.L1Loss()),
    module("L1Loss_sum", lambda nn: nn.L1Loss(reduction="sum")),
    module("SmoothL1Loss", lambda nn: nn.SmoothL1Loss(beta=0.5)),
    module("SmoothL1Loss_none", lambda nn: nn.SmoothL1Loss(reduction="none")),
    module("HuberLoss", lambda nn: nn.HuberLoss(delta=0.5)),
    module("HuberLoss_sum", lambda nn: nn.HuberLoss("sum")),
    module("MSELoss", lambda nn: nn.MSELoss()),
    module("KLDivLoss_batchmean", lambda nn: nn.KLDivLoss(reduction="batchmean"), "positive"),
    module("KLDivLoss_log", lambda nn: nn.KLDivLoss(reduction="sum", log_target=True)),
]


@pytest.mark.parametrize("make, domain", MODULES)
def test_loss_module(make, domain, device):
    helper_test_layer(make, [(3, 4), (3, 4)], domain=domain, device=device)


def test_bce_module_matches_torch_on_probabilities():
    x = _rng.uniform(0.01, 0.99, (3, 4)).astype(numpy.float32)
    ours = dt.nn.BCELoss(reduction="none")(dt.tensor(x), dt.tensor(EDGES_34.astype("f4")))
    theirs = torch.nn.BCELoss(reduction="none")(torch.tensor(x),
                                                torch.tensor(EDGES_34.astype("f4")))
    numpy.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-6)


def test_bce_at_zero_and_one_clamps_the_log_and_its_gradient_as_torch():
    x, t = numpy.array([0.0, 1.0, 0.0, 1.0, 1e-30], "f4"), numpy.array([1, 0, 0, 1, 0.5], "f4")
    ours, theirs = dt.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours_t, theirs_t = dt.tensor(t, requires_grad=True), torch.tensor(t, requires_grad=True)
    loss = dt.nn.functional.binary_cross_entropy(ours, ours_t, reduction="none")
    torch_loss = torch.nn.functional.binary_cross_entropy(theirs, theirs_t, reduction="none")
    numpy.testing.assert_array_equal(loss.detach().numpy(), torch_loss.detach().numpy())
    loss.sum().backward(), torch_loss.sum().backward()
    numpy.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=1e-6)
    numpy.testing.assert_allclose(ours_t.grad.numpy(), theirs_t.grad.numpy(), rtol=1e-5)


def _warnings_of(call) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("name", ["l1_loss", "mse_loss", "smooth_l1_loss", "huber_loss"])
def test_broadcast_warns_with_torchs_message(name):
    x, t = numpy.ones((3, 1), "f4"), numpy.zeros(3, "f4")
    ours = _warnings_of(lambda: getattr(dt.nn.functional, name)(dt.tensor(x), dt.tensor(t)))
    theirs = _warnings_of(lambda: getattr(torch.nn.functional, name)(torch.tensor(x),
                                                                     torch.tensor(t)))
    assert ours == theirs and len(ours) == 1


def test_kl_div_mean_warns_with_torchs_message():
    x = numpy.zeros((2, 3), "f4")
    ours = _warnings_of(lambda: dt.nn.functional.kl_div(dt.tensor(x), dt.tensor(x)))
    theirs = _warnings_of(lambda: torch.nn.functional.kl_div(torch.tensor(x), torch.tensor(x)))
    assert ours == theirs and len(ours) == 1
    assert _warnings_of(lambda: dt.nn.functional.kl_div(dt.tensor(x), dt.tensor(x),
                                                        reduction="batchmean")) == []


ERRORS = [
    ("bce_input_range", lambda F, t: F.binary_cross_entropy(t([1.5, 0.5]), t([1.0, 0.0])),
     RuntimeError, r"binary_cross_entropy: all elements of input should be between 0 and 1"),
    ("bce_target_range", lambda F, t: F.binary_cross_entropy(t([0.5, 0.5]), t([2.0, 0.0])),
     RuntimeError, r"all elements of target should be between 0 and 1"),
    ("bce_nan_input", lambda F, t: F.binary_cross_entropy(t([float("nan")]), t([1.0])),
     RuntimeError, r"all elements of input should be between 0 and 1, found nan"),
    ("bce_shape", lambda F, t: F.binary_cross_entropy(t([[0.5, 0.5]]), t([1.0, 0.0])),
     ValueError, r"binary_cross_entropy: Using a target size \(2,\) that is different to the "
                 r"input size \(1, 2\)"),
    ("bce_weight", lambda F, t: F.binary_cross_entropy(t([0.5, 0.5]), t([1.0, 0.0]),
                                                       t([1.0, 2.0, 3.0])),
     ValueError, r"binary_cross_entropy: weight shape \(3,\) does not broadcast to the target"),
    ("smooth_l1_beta", lambda F, t: F.smooth_l1_loss(t([1.0]), t([0.0]), beta=-1),
     RuntimeError, r"smooth_l1_loss does not support negative values for beta, got beta=-1"),
    ("huber_delta", lambda F, t: F.huber_loss(t([1.0]), t([0.0]), delta=0),
     RuntimeError, r"huber_loss does not support non-positive values for delta"),
    ("l1_shapes", lambda F, t: F.l1_loss(t([[1.0, 2.0, 3.0]]), t([1.0, 2.0])),
     ValueError, r"l1_loss: input shape \(1, 3\) and target shape \(2,\) do not broadcast"),
    ("l1_weight", lambda F, t: F.l1_loss(t([1.0, 2.0]), t([1.0, 2.0]), weight=t([1.0])),
     ValueError, r"l1_loss: weight shape \(1,\) must equal the input shape \(2,\)"),
    ("kl_reduction", lambda F, t: F.kl_div(t([1.0]), t([1.0]), reduction="avg"),
     ValueError, r"kl_div: reduction must be one of .*'batchmean'.*got 'avg'"),
    ("l1_batchmean", lambda F, t: F.l1_loss(t([1.0]), t([1.0]), reduction="batchmean"),
     ValueError, r"l1_loss: reduction must be one of \('mean', 'sum', 'none'\), got"),
]


@pytest.mark.parametrize("call, error, message", [pytest.param(*e[1:], id=e[0]) for e in ERRORS])
def test_errors_name_the_op_and_torch_raises_too(call, error, message):
    with pytest.raises(error, match=message):
        call(dt.nn.functional, dt.tensor)
    with pytest.raises((RuntimeError, ValueError)), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NOTE: torch warns about the target size first
        call(torch.nn.functional, torch.tensor)  # NOTE: torch refuses the same call


def test_module_reduction_is_checked_at_construction():
    with pytest.raises(ValueError, match=r"L1Loss: reduction must be one of .* got 'avg'"):
        dt.nn.L1Loss(reduction="avg")
    assert dt.nn.KLDivLoss(reduction="batchmean").reduction == "batchmean"
    assert repr(dt.nn.HuberLoss()) == repr(torch.nn.HuberLoss()) == "HuberLoss()"
