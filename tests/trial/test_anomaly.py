"""The AE as an anomaly detector: how well a per-jet reconstruction error tells signal jets from the validation
(background) jets. The review's anomaly table, ROC figure and `rank_by: auc` are tested in test_review.py."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsweep.trial.evaluate import anomaly


def test_auc_counts_pairs_and_ties_and_rejection_follows_the_efficiency():
    result, curve = anomaly(np.array([0.0, 1, 2, 3]), np.array([1.5, 2.5]))
    assert result["auc"] == pytest.approx((2 / 4 + 3 / 4) / 2), "the share of (signal, background) pairs ordered right"
    assert anomaly(np.array([0.0, 1, 2, 3]), np.array([1.0]))[0]["auc"] == pytest.approx(1.5 / 4), "a tie counts half"
    assert result["rejection_at_50"] == pytest.approx(4 / 1), "above the signal's median (2.0) lies 1 background jet of 4"
    separated, _ = anomaly(np.arange(100.0), np.arange(200.0, 300.0))
    assert separated["auc"] == 1 and separated["rejection_at_50"] is None and separated["n_background"] == 100
    rng = np.random.default_rng(0)
    same, _ = anomaly(rng.normal(size=20_000), rng.normal(size=20_000))
    assert abs(same["auc"] - 0.5) < 0.01 and 1.5 < same["rejection_at_50"] < 2.5
    assert curve["roc_signal_efficiency"][0] == 1 and curve["roc_background_efficiency"][-1] == 0
