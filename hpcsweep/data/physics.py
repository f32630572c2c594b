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


def peak_and_width(values: np.ndarray) -> tuple[float, float]:
    """Peak position (half-sample mode) and Gaussian-equivalent width (FWHM / 2.355).

    A dijet-mass peak has a long low tail (FSR, out-of-cone losses): the mode of a
    binned, smoothed histogram or a Gaussian fit to the core are pulled into that
    tail. The half-sample mode (Bickel & Fruehwirth 2006) needs no binning; the
    FWHM is read from a histogram whose bins are 1/25 of the 16-84 % range.
    """
    values = np.sort(np.asarray(values, dtype=np.float64)[np.isfinite(values)])
    if len(values) < 20:
        raise UserError(f"only {len(values)} dijet masses: too few to locate a peak")
    peak = _half_sample_mode(values)
    low, high = np.percentile(values, [16, 84])
    step = (high - low) / 25
    counts, edges = np.histogram(values, bins=np.arange(peak - 100 * step, peak + 100.5 * step, step))
    smooth = np.convolve(counts, np.ones(3) / 3, mode="same")
    top = int(np.argmax(smooth[97:104])) + 97  # the bins around the peak
    half = smooth[top] / 2
    left, right = top, top
    while left > 0 and smooth[left] > half:
        left -= 1
    while right < len(smooth) - 1 and smooth[right] > half:
        right += 1
    return float(peak), float((right - left) * step / 2.355)


def _half_sample_mode(ordered: np.ndarray) -> float:
    """Repeatedly keep the densest half of the sorted sample until three values are left."""
    while len(ordered) > 3:
        half = (len(ordered) + 1) // 2
        spans = ordered[half - 1 :] - ordered[: len(ordered) - half + 1]
        start = int(np.argmin(spans))
        ordered = ordered[start : start + half]
    if len(ordered) == 3:
        nearer = ordered[:2] if ordered[1] - ordered[0] < ordered[2] - ordered[1] else ordered[1:]
        return float(ordered[1] if ordered[1] - ordered[0] == ordered[2] - ordered[1] else nearer.mean())
    return float(ordered.mean())
