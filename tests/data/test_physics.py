"""Dijet mass from the two leading jets, and the peak estimator used on it."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsweep.data.physics import dijet_mass, peak_and_width
from hpcsweep.errors import UserError

FOUR = {"pt": "pt", "eta": "eta", "phi": "phi", "mass": "m"}


def test_dijet_mass_uses_the_two_leading_jets_of_each_event():
    # event 0: back-to-back massless 100 GeV jets (m = 200) plus a soft third jet; event 1: one jet only
    columns = {
        "pt": np.array([100.0, 30.0, 100.0, 50.0]),
        "eta": np.zeros(4),
        "phi": np.array([0.0, 1.0, np.pi, 0.0]),
        "m": np.zeros(4),
    }
    event, rank = np.array([0, 0, 0, 1]), np.array([0, 2, 1, 0])
    mass = dijet_mass(columns, event, rank, FOUR)
    np.testing.assert_allclose(mass, [200.0])


def test_peak_of_a_gaussian_is_its_mean_and_width_its_sigma():
    values = np.random.default_rng(0).normal(500.0, 20.0, 20000)
    peak, width = peak_and_width(values)
    assert peak == pytest.approx(500, abs=4) and width == pytest.approx(20, rel=0.1)


def test_peak_is_not_pulled_into_a_low_tail():
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(300.0, 10.0, 5000), rng.uniform(0.0, 300.0, 3000)])
    peak, _ = peak_and_width(values)
    assert abs(peak - 300) < 5 and values.mean() < 260, "the tail pulls the mean by 55 GeV, not the peak"


def test_too_few_values_is_a_clear_error():
    with pytest.raises(UserError, match="too few to locate a peak"):
        peak_and_width(np.ones(5))
