"""The deprecated `size_average`/`reduce` arguments of every loss (functional and module) give
torch's reduction and torch's UserWarning, for every combination (torch is the oracle)."""

from __future__ import annotations

import itertools
import warnings

import numpy
import pytest

torch = pytest.importorskip("torch")

import disttrain as dt  # noqa: E402
import disttrain.nn  # noqa: E402, F401
from disttrain.functional_loss import legacy_reduction  # noqa: E402

_rng = numpy.random.default_rng(3)
X = _rng.standard_normal((4, 3)).astype(numpy.float32)
PROB = _rng.uniform(0.1, 0.9, (4, 3)).astype(numpy.float32)
LABELS = numpy.array([0, 2, 1, 2])
WEIGHT = numpy.array([0.5, 1.0, 2.0], numpy.float32)

# (name, inputs made by `lib`): the same positional inputs for both libraries.
LOSSES = {
    "nll_loss": (("NLLLoss", lambda m: (m.tensor(X).log_softmax(1), m.tensor(LABELS))),
                 {"weight": WEIGHT}),
    "cross_entropy": (("CrossEntropyLoss", lambda m: (m.tensor(X), m.tensor(LABELS))),
                      {"weight": WEIGHT}),
    "mse_loss": (("MSELoss", lambda m: (m.tensor(X), m.tensor(PROB))), {}),
    "l1_loss": (("L1Loss", lambda m: (m.tensor(X), m.tensor(PROB))), {}),
    "smooth_l1_loss": (("SmoothL1Loss", lambda m: (m.tensor(X), m.tensor(PROB))), {}),
    "binary_cross_entropy": (("BCELoss", lambda m: (m.tensor(PROB), m.tensor(PROB[::-1].copy()))),
                             {"weight": WEIGHT}),
    "binary_cross_entropy_with_logits": (
        ("BCEWithLogitsLoss", lambda m: (m.tensor(X), m.tensor(PROB))), {"weight": WEIGHT}),
    "kl_div": (("KLDivLoss", lambda m: (m.tensor(X).log_softmax(1), m.tensor(PROB))), {}),
}
COMBOS = [c for c in itertools.product((None, True, False), repeat=2) if c != (None, None)]


def _run(call):
    """(value as numpy, [(category, message)]) of `call()`, every warning recorded."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call()
    value = out.detach().numpy() if hasattr(out, "detach") else numpy.asarray(out)
    return value, [(w.category, str(w.message)) for w in caught]


def _lib(name):
    return dt if name == "dt" else torch


def _weight(lib, kwargs):
    return {k: lib.tensor(v) for k, v in kwargs.items()}


@pytest.mark.parametrize("size_average, reduce", COMBOS)
@pytest.mark.parametrize("name", list(LOSSES))
def test_functional_legacy_arguments_match_torch(name, size_average, reduce):
    (_, inputs), weight = LOSSES[name]
    results = []
    for lib in (dt, torch):
        fn = getattr(lib.nn.functional, name)
        results.append(_run(lambda lib=lib, fn=fn: fn(
            *inputs(lib), size_average=size_average, reduce=reduce, **_weight(lib, weight))))
    (ours, our_warnings), (theirs, their_warnings) = results
    assert ours.shape == theirs.shape
    numpy.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert our_warnings == their_warnings and len(our_warnings) == 1


@pytest.mark.parametrize("size_average, reduce", COMBOS)
@pytest.mark.parametrize("name", list(LOSSES))
def test_module_legacy_arguments_match_torch(name, size_average, reduce):
    (module, inputs), weight = LOSSES[name]
    results = []
    for lib in (dt, torch):
        def call(lib=lib):
            loss = getattr(lib.nn, module)(size_average=size_average, reduce=reduce,
                                           **_weight(lib, weight))
            return loss.reduction, loss(*inputs(lib))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            reduction, out = call()
        results.append((reduction, out.detach().numpy(), [str(w.message) for w in caught]))
    (reduction, ours, our_warnings), (their_reduction, theirs, their_warnings) = results
    assert reduction == their_reduction
    numpy.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    # NOTE: KLDivLoss warns again at forward when its legacy reduction is "mean", as torch does
    assert our_warnings == their_warnings and "size_average" in our_warnings[0]


@pytest.mark.parametrize("size_average, reduce", COMBOS)
def test_kl_div_batchmean_with_legacy_arguments_divides_as_torch(size_average, reduce):
    values = [_run(lambda lib=lib: lib.nn.functional.kl_div(
        *LOSSES["kl_div"][0][1](lib), size_average=size_average, reduce=reduce,
        reduction="batchmean"))[0] for lib in (dt, torch)]
    numpy.testing.assert_allclose(values[0], values[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size_average, reduce", list(itertools.product((None, True, False),
                                                                         repeat=2)))
def test_legacy_reduction_is_torchs_legacy_get_string(size_average, reduce):
    from torch.nn import _reduction

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = legacy_reduction(size_average, reduce)
        theirs = _reduction.legacy_get_string(size_average, reduce)
    assert ours == theirs
    assert [str(w.message) for w in caught[:1]] == [str(w.message) for w in caught[1:]]


def test_the_warning_points_at_the_callers_line():
    with pytest.warns(UserWarning, match=r"please use reduction='sum' instead") as record:
        dt.nn.functional.l1_loss(dt.tensor(X), dt.tensor(PROB), size_average=False)
    assert record[0].filename == __file__


def test_without_legacy_arguments_there_is_no_warning():
    for name, ((module, inputs), weight) in LOSSES.items():
        if name == "kl_div":
            continue  # NOTE: its default reduction="mean" warns on its own, as in torch
        getattr(dt.nn.functional, name)(*inputs(dt), **_weight(dt, weight))
        getattr(dt.nn, module)(**_weight(dt, weight))(*inputs(dt))
