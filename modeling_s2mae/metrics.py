"""Evaluation metrics over a whole evaluation set (never averaged per batch), as `Trainer` `compute_metrics`."""

import logging
import math
from collections.abc import Sequence

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

    @property
    def classes_without_positives(self) -> list[str]:
        """Classes left out of the last macro mAP because the evaluation set holds no positive of them."""
        return [name for name, value in self.per_class.items() if value is None]


def accuracy_metrics(prediction: EvalPrediction) -> dict[str, float]:
    """`compute_metrics` for single-label runs: accuracy over the whole evaluation set."""
    return {"accuracy": float((np.argmax(_logits(prediction), axis=-1) == prediction.label_ids).mean())}


__all__ = ["MultiLabelMetrics", "accuracy_metrics", "average_precision", "multilabel_average_precision"]
