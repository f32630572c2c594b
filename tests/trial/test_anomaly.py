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


def test_a_rejection_carries_the_jets_it_rests_on_and_its_68_percent_interval():
    """Rejection 7,035 resting on 1 of 7,035 background jets is a rough number: its count and interval say so."""
    from hpcsweep.review.tables import rejection_text

    background = np.arange(7035.0)
    one_passes, _ = anomaly(background, np.linspace(7024, 7034, 1001))  # 10 % of the signal at or above 7033: only 7034 is above
    assert one_passes["passing_at_10"] == 1 and one_passes["rejection_at_10"] == pytest.approx(7035)
    low, high = one_passes["rejection_at_10_68"]
    assert low < 7035 < high and high / low > 3, "one jet: a wide interval"
    assert rejection_text(one_passes, 10) == "7.04e+03 (2.69e+03 to 1.84e+04; 1 of 7,035 pass)"
    many, _ = anomaly(background, np.linspace(3000, 9000, 1000))
    low, high = many["rejection_at_50"], many["rejection_at_50_68"]
    assert high[0] < low < high[1] and high[1] / high[0] < 1.1, "thousands of jets: a narrow one"
    none_pass, _ = anomaly(background, np.full(10, 1e9))
    assert none_pass["passing_at_10"] == 0 and none_pass["rejection_at_10_68"][1] is None
    assert rejection_text(none_pass, 10) == "> 7,035 (none of 7,035 pass)"
    assert rejection_text({"rejection_at_10": 12.0}, 10) == "12", "a file of an older hpcsweep: the bare number"
    assert rejection_text({}, 10) == "> ?"
