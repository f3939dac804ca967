"""Metrics: segmentation overlap, disc detection/naming, and herniation classification quality."""

from __future__ import annotations

import numpy as np


def dice(a: np.ndarray, b: np.ndarray) -> float:
    denom = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / denom) if denom else 1.0


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) over every threshold, ties handled together."""
    labels = np.asarray(labels, float)
    scores = np.asarray(scores, float)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[distinct]
    fps = (distinct + 1) - tps
    pos, neg = max(y.sum(), 1e-12), max(len(y) - y.sum(), 1e-12)
    return np.r_[0, fps / neg], np.r_[0, tps / pos]


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return None
    fpr, tpr = roc_curve(labels, scores)
    return float(np.trapezoid(tpr, fpr))


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    labels, probs = np.asarray(labels, float), np.asarray(probs, float)
    if len(labels) == 0:
        return 0.0
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    err = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            err += sel.mean() * abs(probs[sel].mean() - labels[sel].mean())
    return float(err)


def reliability(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """(mean predicted, observed rate, count) per non-empty bin."""
    labels, probs = np.asarray(labels, float), np.asarray(probs, float)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    return [(float(probs[idx == b].mean()), float(labels[idx == b].mean()), int((idx == b).sum()))
            for b in range(bins) if (idx == b).any()]


def classification_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict:
    labels = np.asarray(labels, int)
    probs = np.asarray(probs, float)
    pred = probs >= threshold
    pos, neg = labels == 1, labels == 0
    out = {
        "n": int(len(labels)), "positives": int(pos.sum()),
        "auc": auc(labels, probs),
        "sensitivity": float(pred[pos].mean()) if pos.any() else None,
        "specificity": float((~pred[neg]).mean()) if neg.any() else None,
        "ece": round(expected_calibration_error(labels, probs), 4),
        "threshold": threshold,
    }
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}


def match_discs(pred: np.ndarray, truth: np.ndarray, min_dice: float = 0.3) -> list[tuple[int, int]]:
    """Pairs (predicted value, true value): each true disc matched to its best-overlapping prediction."""
    pairs = []
    used = set()
    for t in [int(v) for v in np.unique(truth) if v]:
        tsel = truth == t
        best, best_d = None, min_dice
        for p in [int(v) for v in np.unique(pred[tsel]) if v]:
            if p in used:
                continue
            d = dice(pred == p, tsel)
            if d >= best_d:
                best, best_d = p, d
        if best is not None:
            used.add(best)
            pairs.append((best, t))
    return pairs
