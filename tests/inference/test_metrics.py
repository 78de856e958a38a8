"""The numpy metrics behind the model card."""

from __future__ import annotations

import numpy as np
import pytest

from inference.metrics import (
    binary_auc,
    classification_report,
    confusion_matrix,
    expected_calibration_error,
)


def test_auc_known_values():
    labels = np.array([0, 0, 1, 1])
    assert binary_auc(np.array([0.1, 0.4, 0.35, 0.8]), labels) == pytest.approx(0.75)
    assert binary_auc(np.array([0.1, 0.2, 0.3, 0.4]), labels) == 1.0
    assert binary_auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5  # ties count one half


def test_confusion_and_balanced_accuracy():
    labels = np.array([0, 0, 0, 0, 1, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0])
    matrix = confusion_matrix(labels, predicted, 3)
    assert matrix.tolist() == [[3, 1, 0], [0, 1, 0], [1, 0, 0]]
    probabilities = np.eye(3)[predicted]
    report = classification_report(probabilities, predicted, labels, ("a", "b", "c"))
    assert report["accuracy"] == pytest.approx(4 / 6, abs=1e-4)
    assert report["balanced_accuracy"] == pytest.approx((0.75 + 1 + 0) / 3, abs=1e-4)
    assert report["per_class"]["a"]["specificity"] == pytest.approx(0.5)


def test_ece():
    labels = np.array([0, 1, 0, 1])
    perfect = np.eye(2)[labels]
    assert expected_calibration_error(perfect, labels) == 0.0
    overconfident = np.array([[0.9, 0.1]] * 4)  # 90 % confident, 50 % right
    assert expected_calibration_error(overconfident, labels) == pytest.approx(0.4)
