"""Physics quantities built from a jet table: the dijet invariant mass and its peak."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hpcsweep.errors import UserError

if TYPE_CHECKING:
    import vector

MIN_PEAK_EVENTS = 20  # fewer dijet masses locate no peak


def dijet_mass(columns: dict[str, np.ndarray], event: np.ndarray, rank: np.ndarray, four_momentum: dict[str, str]) -> np.ndarray:
    """Invariant mass of the two leading jets of every event that has both (four-vector sums by `vector`)."""
    import vector

    if not four_momentum:
        raise UserError("this variable set declares no four_momentum, so no dijet mass can be built")
    leading = np.flatnonzero(rank == 0)
    second = np.flatnonzero(rank == 1)
    events, i_lead, i_second = np.intersect1d(event[leading], event[second], assume_unique=True, return_indices=True)
    lead, sub = leading[i_lead], second[i_second]

    def jets(rows: np.ndarray) -> vector.VectorNumpy:
        return vector.array({coord: np.asarray(columns[name], dtype=np.float64)[rows] for coord, name in four_momentum.items()})

    # `vector` annotates its arrays as VectorNumpy, which declares no `+`; these are momentum arrays, which add.
    return np.asarray((jets(lead) + jets(sub)).mass)  # type: ignore[operator]


def peak_and_width(values: np.ndarray) -> tuple[float, float]:
    """Peak position and Gaussian-equivalent width of a resonance's mass distribution.

    The peak is the mode of a Gaussian kernel density estimate, binned finely
    for speed, whose bandwidth h is a quarter of the peak's width (found by
    iterating from Silverman's rule); the width is the FWHM of that density /
    2.355, with h removed in quadrature. A dijet-mass peak has a long low tail
    (FSR, out-of-cone losses), which pulls a Gaussian fit to the core or the mode
    of a coarse histogram; the KDE mode is also far less noisy than a binning-free
    mode (measured here on 2,000 Z' events: 2.2 GeV bootstrap spread against 7.2
    for the half-sample mode).
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < MIN_PEAK_EVENTS:
        raise UserError(f"only {len(values)} dijet masses: too few to locate a peak")
    q25, q75 = np.percentile(values, [25, 75])
    h = 0.9 * min(values.std(), (q75 - q25) / 1.34) * len(values) ** -0.2  # Silverman, to start
    low, high = np.percentile(values, [0.5, 99.5])
    for _ in range(3):  # then a bandwidth a quarter of the peak's own width
        peak, sigma = _kde_peak(values, h, low, high)
        h = max(sigma / 4, (high - low) / 2000)
    return peak, sigma


def _kde_peak(values: np.ndarray, h: float, low: float, high: float) -> tuple[float, float]:
    """Mode and FWHM/2.355 (kernel width removed in quadrature) of a binned Gaussian KDE."""
    step = h / 10
    counts, edges = np.histogram(values, bins=np.arange(low - 5 * h, high + 5 * h + step, step))
    kernel = np.exp(-0.5 * (np.arange(-50, 51) / 10.0) ** 2)
    density = np.convolve(counts, kernel, mode="same")
    top = int(np.argmax(density))
    above = density >= density[top] / 2
    left = top - int(np.argmin(above[top::-1]))
    right = top + int(np.argmin(above[top:]))
    fwhm_sigma = (right - left) * step / 2.355
    return float(0.5 * (edges[top] + edges[top + 1])), float(np.sqrt(max(fwhm_sigma**2 - h**2, 0.0)))
