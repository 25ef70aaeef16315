"""Evaluation metrics over a whole evaluation set (never averaged per batch), as `Trainer` `compute_metrics`."""

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from transformers import EvalPrediction

logger = logging.getLogger(__name__)


def _logits(prediction: EvalPrediction) -> np.ndarray:
    return prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions


def average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Average precision of one ranking: the mean, over the positives, of the precision at each positive's rank.

    Tied scores share one threshold: a positive's precision is taken over every item scored at least as high, so the
    result does not depend on how ties are ordered (the same value as scikit-learn's `average_precision_score`).

    Args:
        scores: (N,) higher means more likely positive (logits or probabilities: only the order matters).
        targets: (N,) 1 for positives, 0 for negatives.

    Returns:
        AP in [0, 1], or NaN when there is no positive.
    """
    scores = np.asarray(scores, dtype=np.float64).ravel()
    targets = np.asarray(targets).ravel() > 0.5
    if not targets.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, targets = scores[order], targets[order]
    true_positives = np.cumsum(targets)
    group_ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])  # last index of each run of equal scores
    group_of = np.cumsum(np.r_[False, scores[1:] != scores[:-1]])  # which run each position belongs to
    end = group_ends[group_of]
    precision = true_positives[end] / (end + 1)
    return float(precision[targets].mean())


def multilabel_average_precision(scores: np.ndarray, targets: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Micro and macro mean average precision of multi-label predictions over a whole evaluation set.

    Args:
        scores: (N, K) per-class scores (logits or probabilities).
        targets: (N, K) multi-hot ground truth.

    Returns:
        (micro mAP: AP of all N * K (sample, class) pairs ranked together; macro mAP: mean of the per-class APs over the
        classes with at least one positive; per-class AP (K,), NaN for classes without a positive).
    """
    scores, targets = np.asarray(scores), np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"scores and targets must both be (N, K), got {scores.shape} and {targets.shape}.")
    per_class = np.array([average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])])
    micro = average_precision(scores.ravel(), targets.ravel())
    macro = float(np.nanmean(per_class)) if not np.isnan(per_class).all() else float("nan")
    return micro, macro, per_class


class MultiLabelMetrics:
    """`compute_metrics` for multi-label runs: micro / macro mAP of the concatenated predictions of the whole
    evaluation set (never averaged per batch). Keeps the per-class APs of the last call in `per_class`."""

    def __init__(self, class_names: Sequence[str]):
        self.class_names = list(class_names)
        self.per_class: dict[str, float | None] = {}

    def __call__(self, prediction: EvalPrediction) -> dict[str, float]:
        micro, macro, per_class = multilabel_average_precision(_logits(prediction), prediction.label_ids)
        self.per_class = {
            name: (None if math.isnan(value) else value) for name, value in zip(self.class_names, per_class)
        }
        absent = self.classes_without_positives
        if absent:
            logger.info(
                "Macro mAP leaves out %d class(es) with no positive in the evaluation set: %s", len(absent), absent
            )
        return {"micro_map": micro, "macro_map": macro, "macro_map_num_classes": int(np.sum(~np.isnan(per_class)))}

    metric_names: tuple[str, ...] = ("micro_map", "macro_map", "macro_map_num_classes")
    """The metrics a call returns (Trainer prefixes them with "eval_")."""

    @property
    def classes_without_positives(self) -> list[str]:
        """Classes left out of the last macro mAP because the evaluation set holds no positive of them."""
        return [name for name, value in self.per_class.items() if value is None]


def accuracy_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for single-label runs: accuracy over the whole evaluation set."""
    return {"accuracy": float((np.argmax(_logits(prediction), axis=-1) == prediction.label_ids).mean())}


def confusion_matrix(
    predictions: np.ndarray, labels: np.ndarray, num_labels: int, ignore_index: int | None = 255
) -> np.ndarray:
    """Confusion matrix of per-pixel class ids; pixels labelled `ignore_index` are left out.

    Args:
        predictions: (...) predicted class ids in [0, num_labels).
        labels: (...) true class ids in [0, num_labels), or `ignore_index`; the same shape as `predictions`.

    Returns:
        (num_labels, num_labels) int64, rows the true class, columns the predicted one.

    Raises:
        ValueError: different shapes, or ids outside [0, num_labels) that are not `ignore_index`.
    """
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} must have the same shape.")
    keep = labels != ignore_index if ignore_index is not None else np.ones(labels.shape, dtype=bool)
    truth, predicted = labels[keep].astype(np.int64), predictions[keep].astype(np.int64)
    for name, values in (("labels", truth), ("predictions", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_labels):
            raise ValueError(
                f"{name} hold class ids outside [0, {num_labels}) (min {values.min()}, max {values.max()}) that are "
                f"not the ignore index {ignore_index}."
            )
    return np.bincount(truth * num_labels + predicted, minlength=num_labels**2).reshape(num_labels, num_labels)


def segmentation_scores(confusion: np.ndarray) -> dict[str, Any]:
    """Overall accuracy, per-class IoU and mIoU of a confusion matrix (rows true, columns predicted).

    IoU_k = TP_k / (TP_k + FP_k + FN_k); a class that is neither present nor predicted has no IoU (NaN) and is left out
    of the mean.

    Returns:
        {"overall_accuracy", "mean_iou", "per_class_iou" (K,) array with NaN for absent classes, "num_pixels"}.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    true_positives = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - true_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, true_positives / union, np.nan)
    total = confusion.sum()
    return {
        "overall_accuracy": float(true_positives.sum() / total) if total else float("nan"),
        "mean_iou": float(np.nanmean(iou)) if not np.isnan(iou).all() else float("nan"),
        "per_class_iou": iou,
        "num_pixels": int(total),
    }


def change_scores(confusion: np.ndarray, change_class: int = 1) -> dict[str, float]:
    """Precision, recall, F1 and IoU of the change class, and overall accuracy, of a 2 x 2 confusion matrix (the
    OSCD table of change-detection papers). Undefined ratios (no change predicted / present) are 0."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = confusion[change_class, change_class]
    fp = confusion[:, change_class].sum() - tp
    fn = confusion[change_class, :].sum() - tp
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    total = confusion.sum()
    return {
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "iou": float(iou),
        "overall_accuracy": float(np.trace(confusion) / total) if total else float("nan"),
    }


def argmax_logits(logits: Any, labels: Any = None) -> Any:
    """`Trainer(preprocess_logits_for_metrics=...)`: keep only the per-pixel argmax (B, H, W) of (B, K, H, W) logits,
    so that evaluation gathers class ids instead of K floats per pixel."""
    logits = logits[0] if isinstance(logits, (tuple, list)) else logits
    return logits.argmax(dim=1)


class SegmentationMetrics:
    """`compute_metrics` for per-pixel tasks: one confusion matrix over the whole evaluation set (never a mean of
    per-batch scores), unlabelled pixels (`ignore_index`) excluded.

    Use with `preprocess_logits_for_metrics=argmax_logits` (predictions are then class ids (N, H, W); (N, K, H, W)
    logits are accepted too). Works both ways Trainer calls it: once with everything gathered, or batch by batch
    with `batch_eval_metrics=True` (the matrix accumulates until `compute_result=True`).

    Args:
        class_names: Name of each class id.
        ignore_index: Label value of unlabelled pixels.
        change_class: For change detection, the id of the "change" class: its precision / recall / F1 / IoU are
            reported as `change_precision`, ... (`None`: segmentation scores only).

    After a call, `per_class_iou` maps class names to their IoU (None for a class neither present nor predicted) and
    `confusion` holds the matrix.
    """

    def __init__(self, class_names: Sequence[str], ignore_index: int = 255, change_class: int | None = None):
        self.class_names = list(class_names)
        self.ignore_index = ignore_index
        self.change_class = change_class
        self.confusion = np.zeros((len(self.class_names),) * 2, dtype=np.int64)
        self.per_class_iou: dict[str, float | None] = {}
        self._pending = False

    @property
    def metric_names(self) -> list[str]:
        """The metrics a final call can return (Trainer prefixes them with "eval_"); `iou_<class>` only when the class
        is present or predicted."""
        names = ["mean_iou", "overall_accuracy", *(f"iou_{name}" for name in self.class_names)]
        if self.change_class is not None:
            names += [f"change_{key}" for key in ("precision", "recall", "f1", "iou")]
        return names

    def _add(self, prediction: EvalPrediction) -> None:
        predicted = np.asarray(_logits(prediction))
        labels = np.asarray(prediction.label_ids)
        if predicted.ndim == labels.ndim + 1:
            predicted = predicted.argmax(axis=1)
        self.confusion += confusion_matrix(predicted, labels, len(self.class_names), self.ignore_index)

    def __call__(self, prediction: EvalPrediction, compute_result: bool = True) -> dict[str, float]:
        if not self._pending:
            self.confusion = np.zeros_like(self.confusion)
        self._add(prediction)
        self._pending = not compute_result
        if not compute_result:
            return {}
        scores = segmentation_scores(self.confusion)
        iou = scores["per_class_iou"]
        self.per_class_iou = {
            name: (None if math.isnan(value) else float(value)) for name, value in zip(self.class_names, iou)
        }
        metrics = {"mean_iou": scores["mean_iou"], "overall_accuracy": scores["overall_accuracy"]}
        metrics.update({f"iou_{name}": value for name, value in self.per_class_iou.items() if value is not None})
        if self.change_class is not None:
            change = change_scores(self.confusion, self.change_class)
            metrics.update({f"change_{key}": change[key] for key in ("precision", "recall", "f1", "iou")})
        return metrics


__all__ = [
    "MultiLabelMetrics",
    "SegmentationMetrics",
    "accuracy_metrics",
    "argmax_logits",
    "average_precision",
    "change_scores",
    "confusion_matrix",
    "multilabel_average_precision",
    "segmentation_scores",
]
