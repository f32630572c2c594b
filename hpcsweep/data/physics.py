"""Physics quantities built from a jet table: the dijet invariant mass and its peak."""

from __future__ import annotations

import numpy as np

from hpcsweep.errors import UserError


def dijet_mass(columns: dict[str, np.ndarray], event: np.ndarray, rank: np.ndarray, four_momentum: dict[str, str]) -> np.ndarray:
    """Invariant mass of the two leading jets of every event that has both (four-vector sums by `vector`)."""
    import vector

    if not four_momentum:
        raise UserError("this variable set declares no four_momentum, so no dijet mass can be built")
    leading = np.flatnonzero(rank == 0)
    second = np.flatnonzero(rank == 1)
    events, i_lead, i_second = np.intersect1d(event[leading], event[second], assume_unique=True, return_indices=True)
    lead, sub = leading[i_lead], second[i_second]

    def jets(rows: np.ndarray):
        return vector.array({coord: np.asarray(columns[name], dtype=np.float64)[rows] for coord, name in four_momentum.items()})

    return np.asarray((jets(lead) + jets(sub)).mass)


def peak_and_width(values: np.ndarray, bins: int = 80) -> tuple[float, float]:
    """Peak position (mode of a smoothed histogram) and Gaussian-equivalent width (FWHM / 2.355)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 20:
        raise UserError(f"only {len(values)} dijet masses: too few to locate a peak")
    low, high = np.percentile(values, [1, 99])
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    smooth = np.convolve(counts, np.ones(3) / 3, mode="same")
    top = int(np.argmax(smooth))
    centres = 0.5 * (edges[1:] + edges[:-1])
    half = smooth[top] / 2
    left = top
    while left > 0 and smooth[left] > half:
        left -= 1
    right = top
    while right < bins - 1 and smooth[right] > half:
        right += 1
    return float(centres[top]), float((centres[right] - centres[left]) / 2.355)
