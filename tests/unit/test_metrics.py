"""disttrain.metrics' functions against scikit-learn (the test oracle, dev extra) on seeded
random data: every function and option, ties, absent classes, weights, zero_division, the
warnings (category and text) and the errors for bad input."""

from __future__ import annotations

import warnings

import numpy
import pytest

import disttrain as dt
import disttrain.metrics as M

sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the oracle of these tests: "
                         "pip install -e '.[dev]'")

RNG = numpy.random.default_rng(1234)
N = 97
BIN_TRUE = RNG.integers(0, 2, N)
BIN_PRED = RNG.integers(0, 2, N)
# NOTE: class 3 is true but never predicted; class 4 is predicted but never true; labels=
# [0..5] adds class 5, present in neither
MC_TRUE = RNG.choice([0, 1, 2, 3], N)
MC_PRED = RNG.choice([0, 1, 2, 4], N)
STR_TRUE = numpy.array(["cat", "dog", "emu"])[RNG.integers(0, 3, N)]
STR_PRED = numpy.array(["cat", "dog", "emu"])[RNG.integers(0, 3, N)]
WEIGHTS = RNG.random(N)
INT_WEIGHTS = RNG.integers(0, 4, N)
TIED_SCORES = numpy.round(RNG.random(N), 1)  # NOTE: 11 distinct values: many ties
PROBS = numpy.round(RNG.random((N, 4)), 1) + 0.01
PROBS /= PROBS.sum(axis=1, keepdims=True)
TIED_PROBS = numpy.full((N, 4), 0.25)  # every class tied
TIED_PROBS[::3] = [0.4, 0.4, 0.1, 0.1]


def run(function, *args, **kwargs):
    """(result or raised exception type, [(warning category name, message)])."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = function(*args, **kwargs)
        except ValueError:
            result = ValueError  # NOTE: sklearn raises subclasses of it too
    return result, [(w.category.__name__, str(w.message)) for w in caught]


def assert_same(result, expected):
    if isinstance(expected, tuple):
        assert isinstance(result, tuple) and len(result) == len(expected)
        for r, e in zip(result, expected):
            assert_same(r, e)
    elif expected is None or isinstance(expected, type):
        assert result is expected
    elif isinstance(expected, numpy.ndarray):
        assert isinstance(result, numpy.ndarray), type(result)
        assert result.shape == expected.shape and result.dtype.kind == expected.dtype.kind
        numpy.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)
    else:
        assert isinstance(result, float) and isinstance(expected, float), (result, expected)
        numpy.testing.assert_allclose(result, expected, rtol=1e-12, atol=1e-12)


def check(name, *args, **kwargs):
    """disttrain.metrics.name and sklearn.metrics.name agree: result, warnings, errors."""
    ours, our_warnings = run(getattr(M, name), *args, **kwargs)
    theirs, their_warnings = run(getattr(sk, name), *args, **kwargs)
    assert_same(ours, theirs)
    assert our_warnings == their_warnings
    return ours


# ---------------------------------------------------------------- label metrics
LABEL_DATA = {
    "binary": (BIN_TRUE, BIN_PRED), "multiclass": (MC_TRUE, MC_PRED),
    "strings": (STR_TRUE, STR_PRED), "all-one-class": (numpy.zeros(9, int), numpy.zeros(9, int)),
}  # fmt: skip
WEIGHT_OPTIONS = {"none": None, "float": WEIGHTS, "int": INT_WEIGHTS}


@pytest.mark.parametrize("data", LABEL_DATA)
@pytest.mark.parametrize("weights", WEIGHT_OPTIONS)
@pytest.mark.parametrize("normalize", [True, False])
def test_accuracy_score(data, weights, normalize):
    y_true, y_pred = LABEL_DATA[data]
    sample_weight = None if weights == "none" else WEIGHT_OPTIONS[weights][:len(y_true)]
    check("accuracy_score", y_true, y_pred, normalize=normalize, sample_weight=sample_weight)


@pytest.mark.parametrize("data", LABEL_DATA)
@pytest.mark.parametrize("weights", WEIGHT_OPTIONS)
@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
def test_confusion_matrix(data, weights, normalize):
    y_true, y_pred = LABEL_DATA[data]
    sample_weight = None if weights == "none" else WEIGHT_OPTIONS[weights][:len(y_true)]
    check("confusion_matrix", y_true, y_pred, sample_weight=sample_weight, normalize=normalize)


@pytest.mark.parametrize("labels", [[4, 0, 2], [0, 1, 2, 3, 4, 5], [3, 4, 9]])
def test_confusion_matrix_labels_order_subset_and_absent(labels):
    check("confusion_matrix", MC_TRUE, MC_PRED, labels=labels)
    check("confusion_matrix", MC_TRUE, MC_PRED, labels=labels, sample_weight=WEIGHTS)


PRF = ["precision_score", "recall_score", "f1_score"]
AVERAGES = [None, "micro", "macro", "weighted"]
ZERO_DIVISION = ["warn", 0, 1, 0.0, 1.0, numpy.nan]


@pytest.mark.parametrize("name", PRF)
@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("zero_division", ZERO_DIVISION)
@pytest.mark.parametrize("labels", [None, [0, 1, 2, 3, 4, 5], [4, 2]])
def test_prf_multiclass_with_absent_classes(name, average, zero_division, labels):
    check(name, MC_TRUE, MC_PRED, average=average, labels=labels, zero_division=zero_division)
    check(name, MC_TRUE, MC_PRED, average=average, labels=labels, zero_division=zero_division,
          sample_weight=WEIGHTS)


@pytest.mark.parametrize("name", PRF)
@pytest.mark.parametrize("average", ["binary", *AVERAGES])
@pytest.mark.parametrize("zero_division", ["warn", 1, numpy.nan])
@pytest.mark.parametrize("y_pred", ["random", "all-negative"])
@pytest.mark.parametrize("pos_label", [1, 0])
def test_prf_binary(name, average, zero_division, y_pred, pos_label):
    y_pred = BIN_PRED if y_pred == "random" else numpy.zeros(N, int)
    check(name, BIN_TRUE, y_pred, average=average, zero_division=zero_division,
          pos_label=pos_label)
    check(name, BIN_TRUE, y_pred, average=average, zero_division=zero_division,
          pos_label=pos_label, sample_weight=INT_WEIGHTS)


@pytest.mark.parametrize("name", PRF)
@pytest.mark.parametrize("average", ["binary", "macro", None])
def test_prf_string_labels_and_one_class(name, average):
    check(name, numpy.array(["a", "b", "b", "a"]), numpy.array(["b", "b", "a", "a"]),
          average=average, pos_label="b")
    check(name, numpy.zeros(5, int), numpy.zeros(5, int), average=average)
    check(name, numpy.ones(5, int), numpy.ones(5, int), average=average)


@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0, numpy.inf])
@pytest.mark.parametrize("average", AVERAGES)
@pytest.mark.parametrize("labels", [None, [0, 1, 2, 3, 4, 5]])
def test_precision_recall_fscore_support_and_fbeta(beta, average, labels):
    check("precision_recall_fscore_support", MC_TRUE, MC_PRED, beta=beta, average=average,
          labels=labels, sample_weight=WEIGHTS)
    check("fbeta_score", MC_TRUE, MC_PRED, beta=beta, average=average, labels=labels)


@pytest.mark.parametrize("warn_for", [("precision",), ("recall", "f-score"), ()])
def test_precision_recall_fscore_support_warn_for(warn_for):
    check("precision_recall_fscore_support", MC_TRUE, MC_PRED, labels=[0, 1, 2, 3, 4, 5],
          warn_for=warn_for)


def test_pos_label_ignored_warning():
    check("f1_score", MC_TRUE, MC_PRED, average="macro", pos_label=2)


# ---------------------------------------------------------------- curves and scores
BINARY_TARGETS = {
    "01": BIN_TRUE, "-11": 2 * BIN_TRUE - 1, "bool": BIN_TRUE.astype(bool),
    "float": BIN_TRUE.astype(numpy.float64),
}  # fmt: skip
SCORES = {"tied": TIED_SCORES, "distinct": RNG.normal(size=N), "constant": numpy.ones(N)}


@pytest.mark.parametrize("name", ["roc_curve", "precision_recall_curve"])
@pytest.mark.parametrize("target", BINARY_TARGETS)
@pytest.mark.parametrize("scores", SCORES)
@pytest.mark.parametrize("weights", WEIGHT_OPTIONS)  # NOTE: int weights include zeros
@pytest.mark.parametrize("drop_intermediate", [True, False])
def test_curves(name, target, scores, weights, drop_intermediate):
    check(name, BINARY_TARGETS[target], SCORES[scores], drop_intermediate=drop_intermediate,
          sample_weight=WEIGHT_OPTIONS[weights])


@pytest.mark.parametrize("name", ["roc_curve", "precision_recall_curve"])
@pytest.mark.parametrize("y_true", [numpy.zeros(6, int), numpy.ones(6, int)])
def test_curves_with_one_class_warn(name, y_true):
    check(name, y_true, numpy.linspace(0, 1, 6))


@pytest.mark.parametrize("name", ["roc_curve", "precision_recall_curve",
                                  "average_precision_score"])
def test_curves_pos_label(name):
    check(name, numpy.array(["no", "yes"])[BIN_TRUE], TIED_SCORES, pos_label="yes")
    check(name, BIN_TRUE, TIED_SCORES, pos_label=0)
    if name != "average_precision_score":  # NOTE: a multiclass y_true is its error case
        check(name, MC_TRUE, TIED_SCORES, pos_label=2)


@pytest.mark.parametrize("target", BINARY_TARGETS)
@pytest.mark.parametrize("scores", SCORES)
@pytest.mark.parametrize("weights", WEIGHT_OPTIONS)
@pytest.mark.parametrize("max_fpr", [None, 0.3, 1.0])
def test_roc_auc_score_binary(target, scores, weights, max_fpr):
    check("roc_auc_score", BINARY_TARGETS[target], SCORES[scores], max_fpr=max_fpr,
          sample_weight=WEIGHT_OPTIONS[weights])


@pytest.mark.parametrize("average", ["macro", "weighted", "micro", None])
@pytest.mark.parametrize("probs", ["random", "tied"])
@pytest.mark.parametrize("weights", WEIGHT_OPTIONS)
def test_roc_auc_score_multiclass_ovr(average, probs, weights):
    probs = PROBS if probs == "random" else TIED_PROBS
    check("roc_auc_score", MC_TRUE, probs, multi_class="ovr", average=average,
          sample_weight=WEIGHT_OPTIONS[weights])


@pytest.mark.parametrize("average", ["macro", "weighted", None])
def test_roc_auc_score_labels_with_a_class_absent_from_y_true(average):
    y_true = numpy.where(MC_TRUE == 3, 2, MC_TRUE)  # class 3 absent: its AUC is undefined
    check("roc_auc_score", y_true, PROBS, multi_class="ovr", average=average,
          labels=[0, 1, 2, 3])
    check("roc_auc_score", y_true * 10, PROBS, multi_class="ovr", average=average,
          labels=[0, 10, 20, 30])


@pytest.mark.parametrize("average", ["macro", "weighted", "micro", None])
@pytest.mark.parametrize("weights", WEIGHT_OPTIONS)
def test_average_precision_score(average, weights):
    sample_weight = WEIGHT_OPTIONS[weights]
    check("average_precision_score", BIN_TRUE, TIED_SCORES, average=average,
          sample_weight=sample_weight)
    check("average_precision_score", MC_TRUE, PROBS, average=average,
          sample_weight=sample_weight)
    check("average_precision_score", MC_TRUE, TIED_PROBS, average=average)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("probs", ["random", "tied"])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("weights", WEIGHT_OPTIONS)
def test_top_k_accuracy_score_multiclass(k, probs, normalize, weights):
    probs = PROBS if probs == "random" else TIED_PROBS
    check("top_k_accuracy_score", MC_TRUE, probs, k=k, normalize=normalize,
          sample_weight=WEIGHT_OPTIONS[weights])
    check("top_k_accuracy_score", MC_TRUE[:10] % 2, probs[:10], k=k, labels=[0, 1, 2, 3])


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("scores", ["probabilities", "logits"])
def test_top_k_accuracy_score_binary(k, scores):
    scores = TIED_SCORES if scores == "probabilities" else SCORES["distinct"]
    check("top_k_accuracy_score", BIN_TRUE, scores, k=k)
    check("top_k_accuracy_score", BIN_TRUE * 5, scores, k=k, labels=[0, 5])


def test_auc():
    x, y = numpy.sort(RNG.random(20)), RNG.random(20)
    check("auc", x, y)
    check("auc", x[::-1], y)


# ---------------------------------------------------------------- input kinds
@pytest.mark.parametrize("kind", ["list", "tensor", "column"])
def test_tensors_lists_and_column_vectors_as_inputs(kind):
    def convert(a):
        return {"list": a.tolist(), "tensor": dt.tensor(a), "column": a.reshape(-1, 1)}[kind]

    expected = sk.f1_score(MC_TRUE, MC_PRED, average="macro", zero_division=0)
    assert M.f1_score(convert(MC_TRUE), convert(MC_PRED), average="macro",
                      zero_division=0) == pytest.approx(expected, abs=1e-15)
    assert M.roc_auc_score(convert(BIN_TRUE), convert(TIED_SCORES)) == pytest.approx(
        sk.roc_auc_score(BIN_TRUE, TIED_SCORES), abs=1e-15)
    probs = PROBS.tolist() if kind == "list" else dt.tensor(PROBS)
    assert M.top_k_accuracy_score(convert(MC_TRUE), probs) == pytest.approx(
        sk.top_k_accuracy_score(MC_TRUE, PROBS), abs=1e-15)
    numpy.testing.assert_array_equal(M.confusion_matrix(convert(MC_TRUE), convert(MC_PRED)),
                                     sk.confusion_matrix(MC_TRUE, MC_PRED))


def test_float32_tensor_scores():
    scores = dt.tensor(TIED_SCORES.astype(numpy.float32))
    fpr, tpr, thresholds = M.roc_curve(dt.tensor(BIN_TRUE), scores)
    expected = sk.roc_curve(BIN_TRUE, TIED_SCORES.astype(numpy.float32))
    for ours, theirs in zip((fpr, tpr, thresholds), expected):
        numpy.testing.assert_allclose(ours, theirs, rtol=1e-7)
