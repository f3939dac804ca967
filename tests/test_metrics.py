"""Metric functions against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from discscope import metrics
from discscope.train import fit_temperature


def test_auc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = rng.random(200) + 0.3 * y
    s[:20] = 0.5  # ties
    pos, neg = s[y == 1], s[y == 0]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert metrics.auc(y, s) == pytest.approx(pairwise)
    assert metrics.auc(np.ones(3), np.ones(3)) is None


def test_ece_and_sensitivity():
    y = np.array([1, 1, 0, 0])
    p = np.array([0.9, 0.4, 0.2, 0.6])
    m = metrics.classification_metrics(y, p, 0.5)
    assert m["sensitivity"] == 0.5 and m["specificity"] == 0.5
    perfect = metrics.expected_calibration_error(np.array([0, 1] * 50), np.array([0.0, 1.0] * 50))
    assert perfect == 0.0
    assert metrics.expected_calibration_error(np.array([0, 0]), np.array([0.95, 0.95])) == pytest.approx(0.95)


def test_dice_and_matching():
    a = np.zeros((5, 5), int)
    b = np.zeros((5, 5), int)
    a[1:3, 1:3] = 1
    b[1:3, 1:4] = 2
    assert metrics.dice(a == 1, b == 2) == pytest.approx(2 * 4 / (4 + 6))
    assert metrics.match_discs(a, b) == [(1, 2)]
    assert metrics.match_discs(a, np.zeros_like(b)) == []


def test_temperature_scaling_recovers_overconfidence():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-true_logits))).astype(float)
    t = fit_temperature(true_logits * 3, y)  # logits three times too confident
    assert t == pytest.approx(3, rel=0.15)
