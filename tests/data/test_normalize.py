"""Normalisers: exact inverses for every transform, fitted on training data only, serialisable."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hpcsweep.data import load_varset, make_normaliser
from hpcsweep.data.normalize import NORMALISATIONS, Normaliser
from hpcsweep.data.varset import varset_names
from hpcsweep.errors import UserError


def _sample_in_domain(varset, n: int = 2000, seed: int = 0) -> np.ndarray:
    """Values spanning each variable's transform domain over several decades."""
    rng = np.random.default_rng(seed)
    columns = []
    for variable in varset.variables:
        t = variable.transform
        if t.kind == "log10":  # sign*x + offset must be positive: spread log-uniformly above the edge
            edge = -t.offset / t.sign
            column = edge + t.sign * 10 ** rng.uniform(-2, 3.5, n)
        else:
            column = rng.normal(0, 50, n)
        columns.append(column)
    return np.stack(columns, axis=1).astype(np.float32)


@pytest.mark.parametrize("varset_name", varset_names())
@pytest.mark.parametrize("mode", NORMALISATIONS)
def test_every_normaliser_round_trips_within_float32_precision(varset_name, mode):
    varset = load_varset(varset_name)
    x = _sample_in_domain(varset)
    normaliser = make_normaliser(mode, varset).fit(x[:1500])
    y = normaliser.transform(x)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    back = normaliser.inverse_transform(y)
    # float32 rounding of y, propagated through the inverse: a few ulps of |x| plus of the inverse's slope
    slope = np.abs(normaliser.inverse_transform(y + 1e-3) - back) / 1e-3
    tolerance = 4 * np.finfo(np.float32).eps * (np.abs(x) + slope * np.maximum(np.abs(y), 1))
    assert np.all(np.abs(back - x) <= tolerance + 1e-30)


def test_scalers_are_fitted_on_the_training_split_only():
    varset = load_varset("fourvec")
    rng = np.random.default_rng(1)
    train = rng.normal(10, 2, (1000, 4)).astype(np.float32)
    shifted = (train + 5).astype(np.float32)
    normaliser = make_normaliser("standard", varset).fit(train)
    np.testing.assert_allclose(normaliser.transform(train).mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(normaliser.transform(shifted).mean(axis=0), 5 / train.std(axis=0), rtol=1e-4)
    minmax = make_normaliser("minmax", varset).fit(train)
    assert minmax.transform(train).min() == 0 and minmax.transform(train).max() == pytest.approx(1, abs=1e-6)


def test_saved_parameters_apply_to_new_data_exactly():
    varset = load_varset("generated")
    x = _sample_in_domain(varset, seed=2)
    fitted = make_normaliser("custom+standard", varset).fit(x[:1000])
    restored = Normaliser.from_dict(json.loads(json.dumps(fitted.to_dict())))
    np.testing.assert_array_equal(restored.transform(x[1000:]), fitted.transform(x[1000:]))
    y = fitted.transform(x[:5])
    np.testing.assert_array_equal(restored.inverse_transform(y), fitted.inverse_transform(y))


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("pt", 100.0, (2 - 1.3) / 1.2),  # (log10(pt) - 1.3) / 1.2
        ("m", 99.0, 2 / 1.8),  # log10(m + 1) / 1.8
        ("NegativeE", -99.0, 2 / 1.6),  # log10(-x + 1) / 1.6
        ("ActiveArea4vec_m", 0.18, 1 - 0.15),  # x / 0.18 - 0.15
        ("AverageLArQF", 900.0, (3 - 2) / 2.5),  # (log10(x + 100) - 2) / 2.5
        ("CentroidR", 10000.0, (4 - 3) / 0.8),  # (log10(x) - 3) / 0.8
        ("OotFracClusters5", 9.0, 1 / 0.3),  # log10(x + 1) / 0.3
        ("eta", 2.5, 0.5),
        ("HECFrac", 0.3, 0.3),
    ],
)
def test_atlas27_custom_transforms_follow_the_thesis_table(name, value, expected):
    varset = load_varset("atlas27")
    x = np.ones((1, len(varset.names)), dtype=np.float32) * 10
    x[0, varset.names.index("NegativeE")] = -1
    x[0, varset.names.index(name)] = value
    y = make_normaliser("custom", varset).transform(x)
    assert y[0, varset.names.index(name)] == pytest.approx(expected, rel=1e-6)


def test_a_value_outside_a_log_transform_is_a_clear_error():
    varset = load_varset("fourvec")
    x = np.array([[-5.0, 0.0, 0.0, 10.0]], dtype=np.float32)
    with pytest.raises(UserError, match="custom transform of 'pt' takes log10 of a non-positive value"):
        make_normaliser("custom", varset).fit(x)
