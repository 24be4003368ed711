"""disttrain.metrics' errors for bad input: each names the function and argument, the expected
and the actual value; scikit-learn (the oracle) rejects the same input."""

from __future__ import annotations

import numpy
import pytest

import disttrain.metrics as M

sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn is the oracle of these tests: "
                         "pip install -e '.[dev]'")

Y3 = numpy.array([0, 1, 2, 2, 1, 0])
Y2 = numpy.array([0, 1, 1, 0, 1, 0])
PROBS3 = numpy.full((6, 3), 1 / 3)
SCORES = numpy.linspace(0, 1, 6)

CASES = [
    ("accuracy_score", (Y3, Y3[:4]), {},
     r"accuracy_score: inconsistent numbers of samples: expected equal lengths, got y_true 6, "
     r"y_pred 4"),
    ("f1_score", (Y3, Y3), {"sample_weight": numpy.ones(5)},
     r"f1_score: inconsistent numbers of samples: expected equal lengths, got y_true 6, "
     r"sample_weight 5"),
    ("f1_score", (Y3, Y3), {},
     r"f1_score: average='binary' needs binary targets, got multiclass ones \(labels "
     r"\[0, 1, 2\]\): choose average from"),
    ("precision_score", (Y3, Y3), {"average": "mean"},
     r"precision_score: average must be one of \(None, 'micro', 'macro', 'weighted', "
     r"'binary'\), got 'mean'"),
    ("recall_score", (Y2, Y2), {"zero_division": 0.5},
     r"recall_score: zero_division must be one of \('warn', 0, 1, 'nan \(float\)'\), got 0.5"),
    ("precision_score", (Y2, Y2), {"pos_label": 2},
     r"precision_score: pos_label=2 is not a valid label: expected one of \[0, 1\]"),
    ("accuracy_score", (Y2, SCORES), {},
     r"accuracy_score: y_pred must be class labels .* got continuous values, e.g. 0.2"),
    ("accuracy_score", (Y2, numpy.stack([Y2, Y2], 1)), {},
     r"accuracy_score: y_pred must be 1-D class labels of shape \(n_samples,\), got shape "
     r"\(6, 2\)"),
    ("accuracy_score", (numpy.array(["a", "b"]), numpy.array([0, 1])), {},
     r"accuracy_score: mix of label input types \(string and number\)"),
    ("accuracy_score", ([], []), {},
     r"accuracy_score: y_true is empty: expected at least 1 sample, got 0"),
    ("confusion_matrix", (Y3, Y3), {"labels": [7, 8]},
     r"confusion_matrix: at least one of labels must be in y_true, got labels \[7, 8\] and "
     r"y_true holding \[0, 1, 2\]"),
    ("confusion_matrix", (Y3, Y3), {"labels": []},
     r"confusion_matrix: labels must contain at least one label, got \[\]"),
    ("confusion_matrix", (Y3, Y3), {"normalize": "rows"},
     r"confusion_matrix: normalize must be one of \(None, 'true', 'pred', 'all'\), got 'rows'"),
    ("roc_auc_score", (Y3, PROBS3), {},
     r"roc_auc_score: y_true has 3 classes and y_score shape \(6, 3\) \(multiclass\), but "
     r"multi_class='raise': pass multi_class='ovr'"),
    ("roc_auc_score", (Y3, PROBS3 * 2), {"multi_class": "ovr"},
     r"roc_auc_score: multiclass y_score must be probabilities summing to 1 over classes, got "
     r"row sums from 2 to 2 \(apply softmax"),
    ("roc_auc_score", (Y3, PROBS3), {"multi_class": "ovr", "average": "samples"},
     r"roc_auc_score: average must be one of \(None, 'micro', 'macro', 'weighted'\), got "
     r"'samples'"),
    ("roc_auc_score", (Y3, SCORES), {"multi_class": "ovr"},
     r"roc_auc_score: y_true is multiclass, so y_score must be probabilities of shape "
     r"\(n_samples, n_classes\), got shape \(6,\)"),
    ("roc_auc_score", (Y3, PROBS3[:, :2] * 1.5), {"multi_class": "ovr"},
     r"roc_auc_score: y_true holds 3 classes but y_score scores 2: expected equal"),
    ("roc_auc_score", (Y3, numpy.full((6, 4), 0.25)), {"multi_class": "ovr",
                                                       "labels": [0, 1, 2, 2]},
     r"roc_auc_score: labels must be unique and sorted, got \[0, 1, 2, 2\]"),
    ("roc_auc_score", (Y3, PROBS3), {"multi_class": "ovr", "labels": [0, 1, 5]},
     r"roc_auc_score: y_true contains labels \[2\] that are not in labels \[0, 1, 5\]"),
    ("roc_auc_score", (Y3, PROBS3), {"multi_class": "ovr", "max_fpr": 0.5},
     r"roc_auc_score: max_fpr is for binary targets only: expected None with multiclass "
     r"y_true, got max_fpr=0.5"),
    ("roc_auc_score", (Y2, numpy.stack([1 - SCORES, SCORES], 1)), {},
     r"roc_auc_score: y_true is binary, so y_score must be the scores of the positive class, "
     r"shape \(n_samples,\), got shape \(6, 2\) \(pass y_score\[:, 1\]\)"),
    ("roc_auc_score", (Y2, SCORES[:5]), {},
     r"roc_auc_score: inconsistent numbers of samples: expected equal lengths, got y_true 6, "
     r"y_score 5"),
    ("roc_auc_score", (Y2, numpy.where(Y2, numpy.nan, SCORES)), {},
     r"roc_auc_score: y_score must be finite, got NaN or infinity"),
    ("roc_curve", (Y3, SCORES), {},
     r"roc_curve: y_true must be binary, got 3 classes \[0, 1, 2\]: pass pos_label"),
    ("roc_curve", (Y2 + 1, SCORES), {},
     r"roc_curve: y_true takes values in \[1, 2\] and pos_label is not specified"),
    ("precision_recall_curve", (Y2, numpy.stack([SCORES, SCORES], 1)), {},
     r"precision_recall_curve: y_score must be 1-D scores of the positive class, shape "
     r"\(n_samples,\), got shape \(6, 2\)"),
    ("average_precision_score", (Y3, PROBS3), {"pos_label": 2},
     r"average_precision_score: pos_label is fixed to 1 for multiclass y_true: do not set it, "
     r"got pos_label=2"),
    ("average_precision_score", (Y3, PROBS3[:, :2]), {},
     r"average_precision_score: y_true holds 3 classes, so y_score must have shape "
     r"\(n_samples, n_classes\) = \(6, 3\), got \(6, 2\)"),
    ("top_k_accuracy_score", (Y3, SCORES), {},
     r"top_k_accuracy_score: y_true is multiclass, so y_score must have shape \(n_samples, "
     r"n_classes\), got \(6,\)"),
    ("top_k_accuracy_score", (Y2, PROBS3), {},
     r"top_k_accuracy_score: y_true is binary but y_score has shape \(6, 3\)"),
    ("top_k_accuracy_score", (Y3, numpy.full((6, 4), 0.25)), {},
     r"top_k_accuracy_score: y_true holds 3 classes but y_score scores 4: expected equal "
     r"\(pass labels="),
    ("top_k_accuracy_score", (Y3, PROBS3), {"labels": [0, 2, 1]},
     r"top_k_accuracy_score: labels must be unique and sorted, got \[0, 2, 1\]"),
    ("top_k_accuracy_score", (Y3, PROBS3), {"labels": [0, 1, 2, 3]},
     r"top_k_accuracy_score: got 4 labels but y_score scores 3 classes: expected equal"),
    ("auc", ([0.0, 1.0, 0.5], [0.0, 1.0, 1.0]), {},
     r"auc: x must be monotonic \(increasing or decreasing\)"),
    ("auc", ([0.0], [1.0]), {},
     r"auc: at least 2 points are needed to compute the area under a curve, got x of shape"),
]  # fmt: skip


@pytest.mark.parametrize("name, args, kwargs, message", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_rejected_with_a_message(name, args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(M, name)(*args, **kwargs)
    with pytest.raises((ValueError, TypeError)):  # NOTE: the oracle rejects it too
        getattr(sk, name)(*args, **kwargs)


def test_multi_class_ovo_is_not_supported():
    with pytest.raises(ValueError, match=r"roc_auc_score: multi_class must be one of "
                                         r"\('ovr',\), got 'ovo'"):
        M.roc_auc_score(Y3, PROBS3, multi_class="ovo")


def test_object_arrays_are_rejected():
    with pytest.raises(TypeError, match=r"accuracy_score: y_true must hold numbers or "
                                        r"strings of one kind, got an object array"):
        M.accuracy_score([1, "a", None], [1, 1, 1])


def test_zero_total_weight():
    with pytest.raises(ValueError, match=r"accuracy_score: sample_weight sums to 0: the "
                                         r"weighted mean is undefined"):
        M.accuracy_score(Y2, Y2, sample_weight=numpy.zeros(6))
