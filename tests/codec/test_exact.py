"""The arithmetic that makes a prediction the same bits on every machine: exp and log of basic operations, accurate to
a few ulp, and integer layers whose BLAS sums are exact (the int64 reference gives the same integers)."""

from __future__ import annotations

import numpy as np
import pytest

from hpcsweep.codec import exact


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / np.spacing(np.abs(b))


def test_exp_and_log_agree_with_numpy_to_a_few_ulp_and_keep_its_special_values():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-700, 700, 200_000), rng.uniform(-1, 1, 200_000), np.arange(-200, 200) * 0.0198])
    assert _ulps(exact.exp(x), np.exp(x)).max() <= 2
    y = np.concatenate([np.exp(rng.uniform(-700, 700, 200_000)), rng.uniform(0.5, 2.0, 200_000), [5e-324, 1e-310, 1.7e308]])
    far = np.abs(np.log(y)) > 0.01  # near 1 the log is small: its error is absolute
    assert _ulps(exact.log(y[far]), np.log(y[far])).max() <= 3
    assert np.abs(exact.log(y[~far]) - np.log(y[~far])).max() <= 4e-16
    with np.errstate(all="ignore"):
        special = np.array([0.0, -0.0, 710.0, -746.0, np.inf, -np.inf, np.nan])
        np.testing.assert_array_equal(exact.exp(special), np.exp(special))
        special = np.array([0.0, 1.0, -1.0, np.inf, -np.inf, np.nan])
        np.testing.assert_array_equal(exact.log(special), np.log(special))
    t = np.linspace(-30, 30, 10_001)
    assert np.abs(exact.tanh(t) - np.tanh(t)).max() < 1e-15


def test_a_layer_at_its_largest_sums_sum_exactly_in_blas_as_in_int64():
    """Weights at the finest shift the bound allows and inputs at the clip: every sum is an integer below 2**53, so
    float64 BLAS (any order, any threads) gives what int64 gives, and the shift was lowered for large weights."""
    rng = np.random.default_rng(1)
    matrix, bias = rng.normal(0, 3, (130, 16)), rng.normal(0, 1, 16)
    layer = exact.Layer.of(matrix, bias)
    x = np.rint(rng.choice([-1.0, 1.0], (130, 5000)) * exact.LARGEST * rng.uniform(0.5, 1, (130, 5000)))
    x[:, 0] = np.sign(layer.matrix[:, 0]) * exact.LARGEST  # the largest sum the shift was chosen for
    fast = layer(x)
    with exact.reference():
        np.testing.assert_array_equal(fast, layer(x))
    assert np.abs(layer.matrix.T @ x).max() < exact.EXACT
    real = exact.from_fixed(x).T @ matrix + bias
    np.testing.assert_allclose(exact.from_fixed(fast).T, real, rtol=0, atol=130 * 2.0**-layer.shift * exact.LIMIT + 1e-5)
    assert exact.Layer.of(matrix * 1e6, bias).shift < layer.shift


@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "tanh"])
def test_activations_on_fixed_point_are_those_of_the_real_values(kind):
    h = exact.to_fixed(np.linspace(-50, 50, 20_001))
    real = {"relu": lambda v: np.maximum(v, 0), "leaky_relu": lambda v: np.where(v > 0, v, 0.01 * v), "tanh": np.tanh}[kind]
    np.testing.assert_allclose(exact.from_fixed(exact.activate(h, kind)), real(exact.from_fixed(h)), atol=2.0**-exact.FRACTION * 1.01)
