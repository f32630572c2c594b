"""Evaluation of a trained autoencoder, in normalised space and in physical units.

What the thesis and seed 001 report, for any dataset: reconstruction MSE (the
tables' number), per-variable residuals after the inverse transform, input and
output histograms, the dijet-mass peak before and after compression, PCA and
float16 baselines, compression accounting in bytes per jet, and encode/decode
time per jet.
"""

from __future__ import annotations

import io
import json
import lzma
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from hpcsweep.data.normalize import Normaliser, make_reference
from hpcsweep.data.physics import MIN_PEAK_EVENTS, dijet_mass, peak_and_width
from hpcsweep.data.varset import VarSet
from hpcsweep.trial.models import Autoencoder, LatentPrior, fold_batchnorm

EVAL_BATCH = 4096  # cache-sized chunks: 2.7x faster per jet than one 100k batch on CPU
HISTOGRAM_BINS = 50
RESIDUAL_SAMPLE = 1000  # jets whose residuals are kept for the corner plot
TRUNCATION_BITS = (2, 4, 7, 10, 14)  # float32 mantissa bits kept by the truncation baselines
WITHIN = 0.01  # "within 1 %": |relative residual| <= 0.01, or |absolute residual| <= 0.01 in the variable's unit


def reconstruction_mse(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Mean squared reconstruction error over all jets and variables (normalised space)."""
    return float(((reconstruct(model, x) - x) ** 2).mean(dtype=torch.float64))


def validation_loss(model: torch.nn.Module, x: torch.Tensor) -> float:
    """What training minimises, measured on held-out jets: the reconstruction MSE, plus (for a model with a rate term)
    the weighted bits of its rounded latents under its prior. Without a rate term, the reconstruction MSE itself."""
    mse = reconstruction_mse(model, x)
    rate = getattr(model, "rate", 0.0)
    if not rate:
        return mse
    latent = torch.round(in_batches(model, x, "encode"))
    prior = model.get_submodule("prior")
    assert isinstance(prior, LatentPrior)  # a model with a rate term carries its prior
    with torch.inference_mode():
        bits = float(torch.cat([prior.bits(latent[i : i + EVAL_BATCH]) for i in range(0, len(latent), EVAL_BATCH)]).mean())
    return mse + rate * bits


def reconstruct(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's deterministic reconstruction, in evaluation mode and in batches."""
    return in_batches(model, x)


def in_batches(model: torch.nn.Module, x: torch.Tensor, part: str = "forward") -> torch.Tensor:
    """`model.forward`, `.encode` or `.decode` over `x` in chunks of EVAL_BATCH, in evaluation mode."""
    model.eval()
    work = getattr(model, part)
    with torch.inference_mode():
        return torch.cat([work(x[i : i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)]) if len(x) else x


def pca_reconstruction(x_train: np.ndarray, x: np.ndarray, latent: int) -> np.ndarray:
    """The best linear compression to `latent` dimensions (PCA fitted on the training split)."""
    mean = x_train.mean(axis=0, dtype=np.float64)
    _, _, components = np.linalg.svd(x_train - mean, full_matrices=False)
    basis = components[:latent]
    return ((x - mean) @ basis.T @ basis + mean).astype(np.float32)


@dataclass
class JetMeasure:
    """How decoded jets are read and measured against the originals: discrete values, signs, residual kinds,
    four-momentum, the sweep's reference space (where every trial's MSE is comparable) and residual tolerances."""

    names: list[str]
    allowed: dict[str, np.ndarray]  # discrete variable -> the values present in the training input
    non_negative: set[str]
    residual_kind: dict[str, str]  # variable -> 'relative' | 'absolute' | 'phi'
    four_momentum: dict[str, str]
    reference: Normaliser | None = None
    tolerance: dict[str, float] = field(default_factory=dict)  # variable -> |residual| bound of "within tolerance"

    @classmethod
    def of(
        cls, varset: VarSet, allowed: dict[str, np.ndarray], reference: Normaliser | None = None, tolerance: dict[str, float] | None = None
    ) -> JetMeasure:
        return cls(
            names=varset.names,
            allowed=allowed,
            non_negative={v.name for v in varset.variables if v.positive},
            residual_kind={v.name: v.residual for v in varset.variables},
            four_momentum=dict(varset.four_momentum),
            reference=reference,
            tolerance=tolerance or {},
        )

    @classmethod
    def from_training(
        cls, varset: VarSet, x_train_physical: np.ndarray, reference: str | None = None, tolerance: dict[str, float] | None = None
    ) -> JetMeasure:
        """Discrete variables may take the values seen in the training input (as the thesis did); the reference
        space (a mode such as 'auto') is fitted on the same training jets."""
        allowed = {v.name: np.unique(x_train_physical[:, i]) for i, v in enumerate(varset.variables) if v.discrete}
        fitted = make_reference(reference, varset, x_train_physical) if reference else None
        return cls.of(varset, allowed, fitted, tolerance)

    def reference_mse(self, original: np.ndarray, decoded: np.ndarray) -> float:
        """MSE of decoded against original physical values in the reference space (NaN without one)."""
        return float(np.mean(self.reference_errors(original, decoded))) if self.reference is not None else float("nan")

    def reference_errors(self, original: np.ndarray, decoded: np.ndarray) -> np.ndarray:
        """Per jet: the mean squared error over the variables in the reference space, the anomaly score (NaN without one)."""
        if self.reference is None:
            return np.full(len(original), np.nan)
        difference = self.reference.transform(decoded).astype(np.float64) - self.reference.transform(original)
        return np.mean(difference**2, axis=1)

    def restore(self, decoded: np.ndarray) -> np.ndarray:
        """Round discrete variables to the nearest training value, clip non-negative ones at 0."""
        out = decoded.copy()
        for i, name in enumerate(self.names):
            if name in self.non_negative:
                out[:, i] = np.maximum(out[:, i], 0)
            if name in self.allowed:
                out[:, i] = _nearest(self.allowed[name], out[:, i])
        return out


def _nearest(allowed: np.ndarray, values: np.ndarray) -> np.ndarray:
    right = np.clip(np.searchsorted(allowed, values), 1, len(allowed) - 1) if len(allowed) > 1 else np.zeros(len(values), int)
    left = np.maximum(right - 1, 0)
    pick_left = np.abs(values - allowed[left]) <= np.abs(allowed[right] - values)
    return np.where(pick_left, allowed[left], allowed[right])


def residuals(original: np.ndarray, decoded: np.ndarray, measure: JetMeasure) -> dict[str, dict[str, float | str]]:
    """Per variable: mean, std, median, 0.5/99.5 % quantiles, robust width (half the 16-84 % range, the 68 %
    half-width), the fraction of jets within 1 % (`WITHIN`) and, when set, within the variable's tolerance.

    Relative residuals (decoded - original) / original for positive scale variables
    (jets with original 0 are left out and counted), absolute ones elsewhere, and
    phi's difference wrapped into [-pi, pi).
    """
    return residual_stats(residual_table(original, decoded, measure), measure)


def residual_stats(table: np.ndarray, measure: JetMeasure) -> dict[str, dict[str, float | str]]:
    """`residuals` of a `residual_table` (NaN: a relative residual left out)."""
    stats: dict[str, dict[str, float | str]] = {}
    for i, name in enumerate(measure.names):
        residual = table[:, i][~np.isnan(table[:, i])]
        stats[name] = {"kind": measure.residual_kind[name], "n": len(residual)}
        if len(residual):
            q = np.percentile(residual, [0.5, 16, 50, 84, 99.5])
            size = np.abs(residual)
            stats[name] |= {
                "mean": float(residual.mean()),
                "std": float(residual.std()),
                "median": float(q[2]),
                "q005": float(q[0]),
                "q995": float(q[4]),
                "width": float((q[3] - q[1]) / 2),
                "within_1pct": float(np.mean(size <= WITHIN)),
            }
            if name in measure.tolerance:
                stats[name] |= {"tolerance": measure.tolerance[name], "within_tolerance": float(np.mean(size <= measure.tolerance[name]))}
    return stats


def residual_values(original: np.ndarray, decoded: np.ndarray, kind: str) -> tuple[np.ndarray, int]:
    original, decoded = original.astype(np.float64), decoded.astype(np.float64)
    if kind == "phi":
        return (decoded - original + np.pi) % (2 * np.pi) - np.pi, len(original)
    if kind == "relative":
        keep = original != 0
        return (decoded[keep] - original[keep]) / original[keep], int(keep.sum())
    return decoded - original, len(original)


def residual_table(original: np.ndarray, decoded: np.ndarray, measure: JetMeasure) -> np.ndarray:
    """Per-jet residuals (jets x variables) as `residuals` defines them; NaN where a relative one is undefined."""
    table = np.full(original.shape, np.nan)
    for i, name in enumerate(measure.names):
        kind = measure.residual_kind[name]
        keep = original[:, i] != 0 if kind == "relative" else np.ones(len(original), bool)
        table[keep, i] = residual_values(original[keep, i], decoded[keep, i], kind)[0]
    return table


def residual_arrays(table: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, np.ndarray]:
    """Residual histograms per variable (0.5-99.5 % range, with under- and overflow), the residual correlation matrix,
    and a sample of jets.

    The correlation is Pearson's on residuals clipped to their 0.5-99.5 % range, so
    that a few jets with tiny denominators do not decide it.
    """
    n = table.shape[1]
    edges, counts, clipped = np.empty((n, bins + 1)), np.zeros((n, bins + 2), dtype=np.int64), table.copy()
    for i in range(n):
        column = table[:, i][np.isfinite(table[:, i])]
        low, high = np.percentile(column, [0.5, 99.5]) if len(column) else (0.0, 0.0)
        if high <= low:
            low, high = low - 0.5, high + 0.5  # all residuals equal (e.g. 0 after rounding): a readable axis
        edges[i] = np.linspace(low, high, bins + 1)
        counts[i] = _with_flow(column, edges[i])
        clipped[:, i] = np.clip(table[:, i], low, high)
    with np.errstate(invalid="ignore", divide="ignore"):
        correlation = pd.DataFrame(clipped).corr().to_numpy()  # pairwise: NaN residuals are left out per pair
    return {
        "residual_edges": edges,
        "residual_counts": counts,
        "residual_correlation": correlation,
        "residual_sample": table[:RESIDUAL_SAMPLE].astype(np.float32),
    }


def _with_flow(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in the bins of `edges`, with the values below and above them as first and last entries: every jet counts."""
    return np.histogram(values, np.concatenate([[-np.inf], edges, [np.inf]]))[0]


def truncation_baselines(x_physical: np.ndarray, normaliser: Normaliser, measure: JetMeasure) -> list[dict[str, Any]]:
    """Rounding float32 mantissas to k bits (sign and exponent kept): bytes per jet, MSE and residual widths.

    The lossy alternative without any network, for the rate-distortion figure.
    """
    x = np.ascontiguousarray(x_physical, dtype=np.float32)
    x_norm = normaliser.transform(x)
    out = []
    for bits in TRUNCATION_BITS:
        drop = 23 - bits
        raw = x.view(np.uint32).astype(np.uint64)
        rounded = ((raw + (1 << (drop - 1))) & ~np.uint64((1 << drop) - 1)).astype(np.uint32).view(np.float32)
        stats = residuals(x, rounded, measure)
        out.append(
            {
                "mantissa_bits": bits,
                "bytes_per_jet": x.shape[1] * (9 + bits) / 8,
                "mse": float(np.mean((normaliser.transform(rounded) - x_norm) ** 2, dtype=np.float64)),
                "width": {name: stat.get("width", float("nan")) for name, stat in stats.items()},
            }
        )
    return out


def peer_baselines(x_physical: np.ndarray, measure: JetMeasure, bound: float = WITHIN) -> dict[str, dict[str, Any]]:
    """SZ3, ZFP, fpzip and mantissa rounding + zstd with every value within `bound` (hpcsweep.codec.peers):
    bytes per jet and residuals, beside the AE's; empty without the optional extra `compare`."""
    from hpcsweep.codec.peers import compress_with_peers

    kinds = [measure.residual_kind[name] for name in measure.names]
    discrete = [name in measure.allowed for name in measure.names]
    return {
        peer: {"bytes_per_jet": size, "bound": bound, "residuals": residuals(x_physical, decoded, measure)}
        for peer, (size, decoded) in compress_with_peers(x_physical, kinds, discrete, bound).items()
    }


def _rejection_interval(passing: int, n: int, z: float = 1.0) -> list[float | None]:
    """The 68 % Wilson score interval of a background efficiency passing/n, as rejections [low, high]; high is None
    when the efficiency's interval reaches 0 (no jet passes: the rejection has no upper bound)."""
    centre = (passing + z * z / 2) / (n + z * z)
    half = z * math.sqrt(passing * (n - passing) / n + z * z / 4) / (n + z * z)
    low, high = max(centre - half, 0.0), min(centre + half, 1.0)
    return [1 / high, 1 / low if low > 0 else None]


def anomaly(background: np.ndarray, signal: np.ndarray) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """How well a per-jet score (larger: less like the background) separates `signal` from `background` jets:
    ROC AUC (the chance that a signal jet scores above a background jet, ties counting half), and the
    background rejection 1/FPR at 50 % and 10 % signal efficiency (None when no background jet passes:
    more than the background's size), with the background jets that pass and a 68 % interval (a rejection resting on
    one jet is a rough number, and says so); with the ROC curve at 101 thresholds."""
    background, signal = np.sort(background[np.isfinite(background)]), signal[np.isfinite(signal)]
    if not len(background) or not len(signal):
        return {}, {}
    below = np.searchsorted(background, signal, side="left")
    at_or_below = np.searchsorted(background, signal, side="right")
    out: dict[str, Any] = {"auc": float(np.mean(below + 0.5 * (at_or_below - below)) / len(background)), "n_background": len(background)}
    for efficiency in (0.5, 0.1):
        at = round(100 * efficiency)
        passing = int(np.sum(background > np.quantile(signal, 1 - efficiency)))
        out[f"rejection_at_{at}"] = len(background) / passing if passing else None
        out[f"passing_at_{at}"] = passing
        out[f"rejection_at_{at}_68"] = _rejection_interval(passing, len(background))
    thresholds = np.quantile(np.concatenate([background, signal]), np.linspace(0, 1, 101))
    curve = {
        "roc_signal_efficiency": np.array([np.mean(signal > t) for t in thresholds], dtype=np.float32),
        "roc_background_efficiency": np.array([np.mean(background > t) for t in thresholds], dtype=np.float32),
    }
    return out, curve


def histograms(original: np.ndarray, decoded: np.ndarray, bins: int = HISTOGRAM_BINS) -> dict[str, np.ndarray]:
    """Input and output histograms per variable on the input's 0.5-99.5 % range, with under- and overflow (bins + 2)."""
    edges = np.empty((original.shape[1], bins + 1))
    counts_in = np.empty((original.shape[1], bins + 2), dtype=np.int64)
    counts_out = np.empty_like(counts_in)
    for i in range(original.shape[1]):
        low, high = np.percentile(original[:, i], [0.5, 99.5])
        if high <= low:
            low, high = low - 0.5, high + 0.5
        edges[i] = np.linspace(low, high, bins + 1)
        counts_in[i], counts_out[i] = _with_flow(original[:, i], edges[i]), _with_flow(decoded[:, i], edges[i])
    return {"hist_edges": edges, "hist_original": counts_in, "hist_decoded": counts_out}


def dijet_closure(
    original: np.ndarray, decoded: np.ndarray, event: np.ndarray, rank: np.ndarray, measure: JetMeasure
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Dijet-mass peak position and width before and after compression, and their change in percent."""
    names = measure.names

    def masses(x: np.ndarray) -> np.ndarray:
        columns = {name: x[:, names.index(name)] for name in measure.four_momentum.values()}
        return dijet_mass(columns, event, rank, measure.four_momentum)

    before, after = masses(original), masses(decoded)
    (peak0, width0), (peak1, width1) = peak_and_width(before), peak_and_width(after)
    summary = {
        "n_events": len(before),
        "peak_original": peak0,
        "peak_decoded": peak1,
        "peak_shift_pct": 100 * (peak1 - peak0) / peak0,
        "width_original": width0,
        "width_decoded": width1,
        "width_change_pct": 100 * (width1 - width0) / width0,
    }
    return summary, {"dijet_original": before.astype(np.float32), "dijet_decoded": after.astype(np.float32)}


def compression(x_physical: np.ndarray, latent: np.ndarray, model_bytes: int) -> dict[str, float]:
    """Bytes per jet of the raw float32 table and of the latent (float32, float16), each also after lzma.

    `model_bytes` (decoder + normaliser + discrete tables) is amortised over the jets
    of this dataset; the ratios compare raw float32 (plain and lzma'd) with lzma'd
    float16 latents plus the amortised model, the chain ATLAS would use, and the same
    for a dataset so large that the model costs nothing per jet.
    """
    n = max(len(x_physical), 1)

    def per_jet(array: np.ndarray, packed: bool) -> float:
        raw = np.ascontiguousarray(array).tobytes()
        return (len(lzma.compress(raw)) if packed else len(raw)) / n

    out = {
        "n_jets": len(x_physical),
        "raw_float32": per_jet(x_physical.astype(np.float32), False),
        "raw_float32_lzma": per_jet(x_physical.astype(np.float32), True),
        "latent_float32": per_jet(latent.astype(np.float32), False),
        "latent_float32_lzma": per_jet(latent.astype(np.float32), True),
        "latent_float16": per_jet(latent.astype(np.float16), False),
        "latent_float16_lzma": per_jet(latent.astype(np.float16), True),
        "model_bytes": model_bytes,
        "model_per_jet": model_bytes / n,
    }
    out["total_per_jet"] = out["latent_float16_lzma"] + out["model_per_jet"]
    out["ratio_vs_raw_float32"] = out["raw_float32"] / out["total_per_jet"]
    out["ratio_vs_raw_float32_lzma"] = out["raw_float32_lzma"] / out["total_per_jet"]
    # for a dataset so large that the model's bytes vanish per jet
    out["ratio_large_dataset"] = out["raw_float32"] / out["latent_float16_lzma"]
    out["ratio_large_dataset_vs_lzma"] = out["raw_float32_lzma"] / out["latent_float16_lzma"]
    return out


def model_bytes(model: Autoencoder, normaliser: Normaliser, measure: JetMeasure) -> int:
    """What must be stored beside the latents to decode them: decoder weights, normaliser, discrete tables."""
    buffer = io.BytesIO()
    torch.save(model.decoder.state_dict(), buffer)
    tables = sum(values.astype(np.float32).nbytes for values in measure.allowed.values())
    return buffer.getbuffer().nbytes + len(json.dumps(normaliser.to_dict()).encode()) + tables


def timing(model: Autoencoder, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median encode and decode time per jet over the whole set, batched, in microseconds (thesis Table 2.5).

    Timed as a deployment would run the net: BatchNorm folded into the next Linear layer (`fold_batchnorm`).
    """
    model = fold_batchnorm(model)
    latent = in_batches(model, x, "encode")
    encode = _median_seconds(model, x, "encode", repeats)
    decode = _median_seconds(model, latent, "decode", repeats)
    return {"encode_us_per_jet": 1e6 * encode / len(x), "decode_us_per_jet": 1e6 * decode / len(x), "threads": torch.get_num_threads()}


def _median_seconds(model: torch.nn.Module, x: torch.Tensor, part: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        in_batches(model, x, part)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def evaluate_dataset(
    model: torch.nn.Module,
    normaliser: Normaliser,
    measure: JetMeasure,
    x_physical: np.ndarray,
    event: np.ndarray | None = None,
    rank: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """MSE, residuals, histograms, residual correlations (and the dijet closure when events are given) of one dataset."""
    device = next(model.parameters()).device
    x_norm = torch.from_numpy(normaliser.transform(x_physical)).to(device)
    decoded_norm = reconstruct(model, x_norm)
    decoded = measure.restore(normaliser.inverse_transform(decoded_norm.cpu().numpy()))
    table = residual_table(x_physical, decoded, measure)  # once: for the statistics and the histograms/correlations
    summary: dict[str, Any] = {
        "n_jets": len(x_physical),
        "mse": float(((decoded_norm - x_norm) ** 2).mean(dtype=torch.float64)),
        "mse_after_restore": float(np.mean((normaliser.transform(decoded) - x_norm.cpu().numpy()) ** 2, dtype=np.float64)),
        "reference_mse": measure.reference_mse(x_physical, decoded),
        "residuals": residual_stats(table, measure),
    }
    arrays = histograms(x_physical, decoded) | residual_arrays(table)
    if event is not None and rank is not None and measure.four_momentum and np.count_nonzero(np.asarray(rank) == 1) >= MIN_PEAK_EVENTS:
        summary["dijet"], dijet_arrays = dijet_closure(x_physical, decoded, event, rank, measure)  # events with two jets only
        arrays.update(dijet_arrays)
    return summary, arrays, decoded
