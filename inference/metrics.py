"""Classification metrics for the model card and the tests (numpy only)."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic, ties counted one half."""
    positive = positive.astype(bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=np.float64)
    start = 0
    while start < len(scores):
        end = start
        while end + 1 < len(scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2.0 + 1.0
        start = end + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix  # rows: true class, columns: predicted class


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = 15
) -> float:
    """Top-label ECE with equal-width confidence bins."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    ece = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(ece)


def classification_report(
    probabilities: np.ndarray, predicted: np.ndarray, labels: np.ndarray, names: tuple[str, ...]
) -> dict:
    """Accuracy, balanced accuracy, macro one-vs-rest AUC, per-class figures, confusion matrix."""
    classes = len(names)
    matrix = confusion_matrix(labels, predicted, classes)
    total = matrix.sum()
    per_class = {}
    sensitivities, aucs = [], []
    for k, name in enumerate(names):
        tp = matrix[k, k]
        fn = matrix[k].sum() - tp
        fp = matrix[:, k].sum() - tp
        tn = total - tp - fn - fp
        sensitivity = float(tp / (tp + fn)) if tp + fn else float("nan")
        specificity = float(tn / (tn + fp)) if tn + fp else float("nan")
        auc = binary_auc(probabilities[:, k], labels == k)
        sensitivities.append(sensitivity)
        aucs.append(auc)
        per_class[name] = {
            "support": int(matrix[k].sum()),
            "sensitivity": round(sensitivity, 4),
            "specificity": round(specificity, 4),
            "auc": round(auc, 4),
        }
    report = {
        "n": int(total),
        "accuracy": round(float(np.trace(matrix) / total), 4),
        "balanced_accuracy": round(float(np.nanmean(sensitivities)), 4),
        "macro_auc": round(float(np.nanmean(aucs)), 4),
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }
    if classes == 2:
        report["auc"] = round(aucs[1], 4)
    return report
