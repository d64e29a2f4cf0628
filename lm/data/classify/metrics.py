"""Binary-classifier metrics: precision, recall and F1 at a threshold, exact ROC-AUC.

ROC-AUC is the Mann-Whitney statistic: the probability that a random positive
scores above a random negative, ties counting one half. It is computed exactly
from average ranks (tied scores share the mean of their ranks), so a constant
scorer gets 0.5 and no curve is interpolated.
"""

from __future__ import annotations

import numpy as np


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be 1-D arrays of one length")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"labels must be 0 or 1; got values {sorted(set(labels.tolist()) - {0, 1})[:5]}")
    if np.isnan(scores).any():
        raise ValueError(f"scores hold {int(np.isnan(scores).sum())} NaN values")
    return labels.astype(bool), scores


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of `values` in ascending order; tied values share their mean rank."""
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Start index of each run of equal values, and the run each position belongs to.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    run_rank = (starts + 1 + ends) / 2.0  # mean of the ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC-AUC of `scores` for 0/1 `labels` (ties count one half); both classes must occur."""
    positive, scores = _check(labels, scores)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"ROC-AUC needs both classes; got {n_pos} positives and {n_neg} negatives")
    rank_sum = average_ranks(scores)[positive].sum()
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def threshold_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 and accuracy when `scores >= threshold` predicts the positive class.

    Precision is 0 when nothing is predicted positive, recall 0 when there are
    no positives, and F1 0 when both are 0 (the usual zero-division convention).
    """
    positive, scores = _check(labels, scores)
    predicted = scores >= threshold
    tp = int((predicted & positive).sum())
    fp = int((predicted & ~positive).sum())
    fn = int((~predicted & positive).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    accuracy = float((predicted == positive).mean()) if len(positive) else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "accuracy": accuracy}


def report(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float | int]:
    """Counts, ROC-AUC and the `threshold_metrics` of `scores`, as a JSON-able dict."""
    positive, scores = _check(labels, scores)
    return {
        "n": len(positive),
        "n_positive": int(positive.sum()),
        "roc_auc": roc_auc(positive.astype(int), scores),
        "threshold": float(threshold),
        **threshold_metrics(positive.astype(int), scores, threshold),
    }
