"""Evaluation metrics: scikit-learn's functions (names, arguments, results, warnings) and
stateful metrics for evaluation loops, reduced over ranks through a communicator passed in.
Core package: never imports mpi4py or disttrain.distributed."""

from __future__ import annotations

from disttrain.metrics.classification import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    fbeta_score,
    precision_recall_fscore_support,
    precision_score,
    recall_score,
)
from disttrain.metrics.curves import auc, precision_recall_curve, roc_curve
from disttrain.metrics.inputs import UndefinedMetricWarning
from disttrain.metrics.ranking import average_precision_score, roc_auc_score, top_k_accuracy_score
from disttrain.metrics.stateful import (
    AUROC,
    Accuracy,
    ConfusionMatrix,
    F1Score,
    MeanMetric,
    Metric,
    Precision,
    Recall,
)

__all__ = [
    "accuracy_score", "auc", "average_precision_score", "confusion_matrix", "f1_score",
    "fbeta_score", "precision_recall_curve", "precision_recall_fscore_support",
    "precision_score", "recall_score", "roc_auc_score", "roc_curve", "top_k_accuracy_score",
    "UndefinedMetricWarning", "Metric", "Accuracy", "Precision", "Recall", "F1Score",
    "ConfusionMatrix", "AUROC", "MeanMetric",
]  # fmt: skip
