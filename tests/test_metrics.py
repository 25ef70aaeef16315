"""Whole-set evaluation metrics: average precision, micro / macro mAP, accuracy."""

import numpy as np
import pytest
from transformers import EvalPrediction

from modeling_s2mae.metrics import MultiLabelMetrics, accuracy_metrics, average_precision, multilabel_average_precision


def test_average_precision_hand_computed() -> None:
    # ranked: +, -, +, -  -> precision at the positives 1/1 and 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    # a positive tied with a negative: its precision is taken over both (1/2), whatever their order
    for scores in ([0.5, 0.5, 0.1], [0.5, 0.5, 0.1][::-1]):
        targets = [1, 0, 1] if scores[0] == 0.5 else [1, 0, 1][::-1]
        assert average_precision(np.array(scores), np.array(targets)) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert np.isnan(average_precision(np.array([0.3, 0.2]), np.array([0, 0])))


def test_multilabel_map_hand_computed_and_classes_without_positives() -> None:
    scores = np.array([[0.9, 0.2, 0.5], [0.8, 0.7, 0.1], [0.3, 0.6, 0.4], [0.1, 0.4, 0.3]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]])
    micro, macro, per_class = multilabel_average_precision(scores, targets)
    # class 0 ranks 0.9(+) 0.8(-) 0.3(+) 0.1(-): (1 + 2/3) / 2; class 1 ranks 0.7(+) 0.6(-) 0.4(+) 0.2(-): same
    assert per_class[:2] == pytest.approx([5 / 6, 5 / 6])
    assert np.isnan(per_class[2])  # no positive: left out of the macro mean
    assert macro == pytest.approx(5 / 6)
    # micro: the 12 scores ranked together; positives at 0.9 (rank 1), 0.7 (rank 3), 0.4 (ranks 6-7, tied with a
    # negative 0.4), 0.3 (ranks 8-9, tied with a negative 0.3)
    assert micro == pytest.approx((1 / 1 + 2 / 3 + 3 / 7 + 4 / 9) / 4)

    metrics = MultiLabelMetrics(["a", "b", "c"])
    values = metrics(EvalPrediction(predictions=scores, label_ids=targets))
    assert values == pytest.approx({"micro_map": micro, "macro_map": macro, "macro_map_num_classes": 2})
    assert metrics.classes_without_positives == ["c"]


def test_map_over_the_whole_set_differs_from_the_mean_over_batches() -> None:
    scores, targets = np.array([[0.9], [0.1], [0.8], [0.2]]), np.array([[1], [0], [0], [1]])
    per_batch = [multilabel_average_precision(scores[i : i + 2], targets[i : i + 2])[1] for i in (0, 2)]
    assert per_batch == pytest.approx([1.0, 0.5])  # mean 0.75
    whole = multilabel_average_precision(scores, targets)[1]
    assert whole == pytest.approx((1 + 2 / 3) / 2)  # 0.8333: ranked 0.9(+) 0.8(-) 0.2(+) 0.1(-)
    metrics = MultiLabelMetrics(["a"])
    assert metrics(EvalPrediction(predictions=scores, label_ids=targets))["macro_map"] == pytest.approx(whole)


# --- optimizer ---------------------------------------------------------------------------------------------------------


def test_accuracy_over_the_whole_set() -> None:
    logits = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy_metrics(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 1]))) == {
        "accuracy": pytest.approx(2 / 3)
    }
