"""Figures of a sweep in HEP style (mplhep), each written as PNG (for the report) and PDF (for papers).

Sweep-level figures read only the summaries and the chosen trials' evaluations;
the per-trial ones read a trial's stored histograms, residual sample and dijet
masses. Nothing here loads a network.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hpcsweep.data.varset import VarSet
from hpcsweep.files import atomic
from hpcsweep.states import TrialState
from hpcsweep.sweep.rank import Ranking

#: How common jet variables are written on axes.
_SYMBOLS = {"pt": "$p_{T}$", "eta": "$\\eta$", "phi": "$\\phi$", "m": "$m$", "mass": "$m$", "E": "$E$", "e": "$E$"}


def _symbol(name: str) -> str:
    """A variable's name as an axis label: pt -> p_T, eta -> eta, ... (others as they are)."""
    return _SYMBOLS.get(name, _SYMBOLS.get(name.rstrip("_"), name))


DPI = 90
#: Margins of multi-panel figures in inches (a fraction of the figure would shrink to nothing on a one-row figure).
_MARGINS_IN = {"left": 0.9, "right": 0.25, "bottom": 0.75, "top": 0.95}
#: mplhep's ROOT style is made for one plot per page; figures of many panels need smaller type and ticks.
_COMPACT = {"font.size": 15, "xtick.major.size": 6, "xtick.minor.size": 3, "ytick.major.size": 6, "ytick.minor.size": 3}


@contextmanager
def _figure(path: Path, empty: bool = False, tight: bool = True, **subplots: Any) -> Iterator[tuple[Any, Any]]:
    """A figure in mplhep's ROOT style (`empty`: no axes yet), saved as <path>.png and <path>.pdf and closed.

    Figures of many panels set their margins themselves (`tight=False`): a tight bounding box
    draws each figure twice more, which doubles the time of a 24-panel figure.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    with plt.style.context([mplhep.style.ROOT, _COMPACT]):
        fig, axes = (plt.figure(figsize=subplots["figsize"]), None) if empty else plt.subplots(**subplots)
        try:
            yield fig, axes
            path.parent.mkdir(parents=True, exist_ok=True)
            for suffix, options in ((".png", {"dpi": DPI}), (".pdf", {})):
                _save(fig, path.with_suffix(suffix), bbox_inches="tight" if tight else None, **options)
        finally:
            plt.close(fig)


def _save(fig: Any, path: Path, **options: Any) -> None:
    """Save under a temporary name, then rename: a full disk leaves the previous figure, not half of one."""
    with atomic(path) as tmp:
        fig.savefig(tmp, format=path.suffix[1:], **options)


def _margins(fig: Any, title: bool = True) -> dict[str, float]:
    """`_MARGINS_IN` as the fractions `subplots_adjust` and `add_gridspec` take, for this figure's size
    (less room at the top without a figure title)."""
    width, height = fig.get_size_inches()
    m = _MARGINS_IN
    top = m["top"] if title else 0.45
    return {"left": m["left"] / width, "right": 1 - m["right"] / width, "bottom": m["bottom"] / height, "top": 1 - top / height}


def _suptitle(fig: Any, title: str) -> None:
    """A figure title in the top margin, above the first row's panel titles."""
    fig.suptitle(title, fontsize="medium", y=1 - 0.2 / fig.get_size_inches()[1], va="top")


def _integer_axis(ax: Any, values: list[int]) -> None:
    """Ticks at the integers given (latent sizes), with room on either side even for a single one."""
    ticks = sorted(set(values))
    if ticks:
        ax.set_xticks(ticks)
        ax.set_xlim(ticks[0] - 1, ticks[-1] + 1)


def _panels(n: int, columns: int = 4, size: float = 3.6, **extra: Any) -> dict[str, Any]:
    rows = max(1, -(-n // columns))
    spacing = {"hspace": 0.6, "wspace": 0.5} if n > columns else {"wspace": 0.35}
    return {
        "nrows": rows,
        "ncols": columns,
        "figsize": (size * columns, 0.85 * size * rows),
        "squeeze": False,
        "gridspec_kw": spacing,
        **extra,
    }


def _hide_unused(axes: Any, used: int) -> None:
    """Hide the panels of a grid beyond the first `used`."""
    for ax in list(axes.flat)[used:]:
        ax.set_visible(False)


def _residual_label(kind: str, unit: str) -> str:
    """Short axis label of a residual: (out - in) / in in percent, or out - in in the variable's unit."""
    return "(out - in) / in [%]" if kind == "relative" else "out - in" + (f" [{unit}]" if unit else "")


def _percent(kind: str) -> float:
    """Relative residuals are stored as fractions and shown in percent."""
    return 100.0 if kind == "relative" else 1.0


def loss_vs_latent(best: pd.DataFrame, median: pd.DataFrame, path: Path, ranking: Ranking | None = None) -> Path:
    """The sweep's yardstick (default: the reference-space MSE) of the best and median AE, and of PCA, versus z."""
    ranking = ranking or Ranking()
    pca = {"reference_mse": "pca_reference_mse", "val_loss": "pca_val_mse"}.get(ranking.rank_by)
    with _figure(path, figsize=(8, 6)) as (_, ax):
        ax.plot(best["latent"], best["rank"], "o-", label="AE, best trial")
        ax.plot(median["latent"], median["rank"], "s--", label="AE, median trial")
        if pca:
            ax.plot(best["latent"], best[pca], "^:", color="grey", label="PCA")
        ax.set_yscale("log")
        ax.set_xlabel("Latent space dimension $z$")
        ax.set_ylabel(f"{ranking.label} (validation)")
        _integer_axis(ax, best["latent"].astype(int).tolist())
        ax.legend()
    return path


def grid_summary(frame: pd.DataFrame, best: pd.DataFrame, path: Path, ranking: Ranking | None = None) -> Path:
    """Per latent dimension: the yardstick versus lr, one series per (bs, wd), the best trial starred (thesis Fig. 2.13)."""
    ranking = ranking or Ranking()
    done = frame[(frame["state"] == TrialState.DONE) & frame["rank"].notna()]
    latents = sorted(done["latent"].astype(int).unique())
    with _figure(path, **_panels(len(latents), columns=min(3, len(latents)), size=6.0)) as (fig, axes):
        for ax, z in zip(axes.flat, latents, strict=False):
            trials = done[done["latent"] == z]
            for (bs, wd), series in trials.groupby(["batch_size", "weight_decay"], sort=True):
                series = series.groupby("lr")["rank"].min()  # other axes: the best trial at each lr
                ax.plot(series.index, series.values, "o-", ms=5, label=f"bs {int(bs)}, wd {wd:g}")
            star = best[best["latent"] == z]
            ax.plot(star["lr"], star["rank"], "*", ms=18, color="gold", markeredgecolor="k", label="best", zorder=5)
            losses = trials["rank"].dropna()
            wide = len(losses) and losses.max() > 10 * losses.min()  # log only where the values span decades
            ax.set(xscale="log", yscale="log" if wide else "linear", xlabel="Learning rate", ylabel=ranking.label, title=f"$z$ = {z}")
            if not wide:
                ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
            ax.legend(fontsize="x-small")
        _hide_unused(axes, len(latents))
    return path


def residuals_vs_latent(best: pd.DataFrame, evaluations: dict[str, dict[str, Any]], varset: VarSet, path: Path) -> Path:
    """Per variable: median (marker) and 68 % half-width (bar) of the best AE's residual versus z (Fig. 2.18).

    Robust statistics: the mean and standard deviation of a relative residual explode on a few
    near-zero values (near-massless jets), and say nothing of the bulk.
    """
    with _figure(path, tight=False, **_panels(len(varset.variables))) as (fig, axes):
        fig.subplots_adjust(**_margins(fig, title=False))
        for ax, variable in zip(axes.flat, varset.variables, strict=False):
            z, centre, width = [], [], []
            for _, trial in best.iterrows():
                stats = evaluations.get(trial["trial_id"], {}).get("validation", {}).get("residuals", {}).get(variable.name, {})
                if "width" in stats:
                    scale = _percent(stats["kind"])
                    z.append(int(trial["latent"]))
                    centre.append(scale * stats.get("median", stats["mean"]))
                    width.append(scale * stats["width"])
            ax.errorbar(z, centre, yerr=width, fmt="o", capsize=4)
            ax.axhline(0, color="grey", lw=0.8)
            _integer_axis(ax, z)
            ax.set_title(_symbol(variable.name), fontsize="small")
            ax.set_xlabel("$z$", fontsize="small")
            ax.set_ylabel("median $\\pm$ 68 % half-width" + (" [%]" if variable.residual == "relative" else f" [{variable.unit}]" if variable.unit else ""),
                          fontsize="x-small")  # fmt: skip
            ax.tick_params(labelsize="x-small")
        _hide_unused(axes, len(varset.variables))
    return path


def training_curves(histories: dict[str, dict[str, np.ndarray]], path: Path, title: str = "") -> Path:
    """Training (dashed) and validation (solid) loss per epoch of chosen trials (thesis Fig. 2.14)."""
    with _figure(path, figsize=(9, 6)) as (_, ax):
        for label, history in histories.items():
            if "val_loss" not in history:
                continue
            epochs = np.arange(1, len(history["val_loss"]) + 1)
            (line,) = ax.plot(epochs, history["val_loss"], label=f"{label} validation")
            ax.plot(epochs, history["train_loss"], "--", color=line.get_color(), alpha=0.7, label=f"{label} training")
        ax.set(yscale="log", xlabel="Epoch", ylabel="MSE (normalised inputs)")
        if title:
            ax.set_title(title, fontsize="medium")
        ax.legend(fontsize="x-small", ncol=2)
    return path


def timing_vs_latent(best: pd.DataFrame, evaluations: dict[str, dict[str, Any]], path: Path) -> Path:
    """Encode and decode time per jet of the best AE versus z (thesis Fig. 2.19)."""
    rows = [(int(t["latent"]), evaluations.get(t["trial_id"], {}).get("validation", {}).get("timing", {})) for _, t in best.iterrows()]
    rows = [(z, timing) for z, timing in rows if timing]
    with _figure(path, figsize=(8, 6)) as (_, ax):
        ax.plot([z for z, _ in rows], [t["encode_us_per_jet"] for _, t in rows], "o-", label="encode")
        ax.plot([z for z, _ in rows], [t["decode_us_per_jet"] for _, t in rows], "s--", label="decode")
        threads = {t.get("threads") for _, t in rows}
        ax.set(xlabel="Latent space dimension $z$", ylabel="Time per jet [$\\mu$s]", ylim=(0, None))
        _integer_axis(ax, [z for z, _ in rows])
        ax.set_title(f"batched, {', '.join(str(n) for n in sorted(threads, key=str))} CPU thread(s)", fontsize="medium")
        ax.legend()
    return path


def rate_distortion(best: pd.DataFrame, evaluations: dict[str, dict[str, Any]], varset: VarSet, path: Path) -> Path:
    """Bytes per jet versus residual width of pt and m: AE and PCA per z (float16 latents), the AE as an error-bounded
    compressor, float truncation, and the error-bounded compressors (SZ3, ZFP, fpzip, mantissa + zstd) when the
    evaluation holds them."""
    momentum = [varset.four_momentum.get("pt"), varset.four_momentum.get("mass")]
    shown = [name for name in momentum if name] or varset.names[:2]
    with _figure(path, **_panels(len(shown), columns=len(shown), size=6.0)) as (_, axes):
        for ax, name in zip(axes.flat, shown, strict=False):
            scale = _percent(next(v.residual for v in varset.variables if v.name == name))
            ae, pca, cut, bounded = [], [], [], []
            for _, trial in best.iterrows():
                validation = evaluations.get(trial["trial_id"], {}).get("validation", {})
                if "residuals" not in validation or "compression" not in validation:
                    continue
                latent_bytes = validation["compression"]["latent_float16"]
                ae.append((latent_bytes, scale * validation["residuals"][name]["width"], int(trial["latent"])))
                pca.append((latent_bytes, scale * validation["baselines"]["pca"]["residuals"][name]["width"]))
                if "bounded" in validation:
                    result = validation["bounded"]
                    bounded.append((result["bytes_per_jet"], scale * result["residuals"][name]["width"], result["bound"]))
                cut = [
                    (b["bytes_per_jet"], scale * b["width"][name], b["mantissa_bits"])
                    for b in validation["baselines"].get("truncation", [])
                ]
                half = validation["baselines"]["float16"]
            if ae:
                ax.plot([p[0] for p in ae], [p[1] for p in ae], "o-", label="AE (best per $z$)")
                for x, y, z in ae:
                    ax.annotate(f"z={z}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize="x-small")
                ax.plot([p[0] for p in pca], [p[1] for p in pca], "^:", color="grey", label="PCA, same $z$")
                if bounded:
                    ax.plot([p[0] for p in bounded], [p[1] for p in bounded], "o--", mfc="none",
                            label=f"AE + coded residuals, every value within {100 * bounded[0][2]:g} %")  # fmt: skip
                if cut:
                    ax.plot([p[0] for p in cut], [p[1] for p in cut], "s--", label="float32, mantissa rounded")
                ax.plot([half["bytes_per_jet"]], [scale * half["residuals"][name]["width"]], "D", label="float16")
                for (peer, result), marker in zip(validation["baselines"].get("peers", {}).items(), "Pvhp", strict=False):
                    width = scale * result["residuals"][name]["width"]
                    ax.plot([result["bytes_per_jet"]], [width], marker, label=f"{peer}, every value within {100 * result['bound']:g} %")
            ax.set(yscale="log", xlabel="Bytes per jet")
            ax.set_ylabel(f"{name} residual width, half 16-84 %" + (" [%]" if scale == 100 else ""), fontsize="small")
            ax.legend(fontsize="x-small")
    return path


def roc_curves(curves: dict[int, dict[str, np.ndarray]], path: Path) -> Path:
    """Background rejection (1/efficiency) versus signal efficiency of the reconstruction error, one panel per
    signal, one curve per latent dimension (the best trial's)."""
    labels = sorted({k.split("/")[0] for arrays in curves.values() for k in arrays if k.endswith("/roc_signal_efficiency")})
    with _figure(path, **_panels(len(labels), columns=min(len(labels), 3), size=5.0)) as (_, axes):
        for ax, label in zip(axes.flat, labels, strict=False):
            for latent, arrays in sorted(curves.items()):
                if f"{label}/roc_signal_efficiency" not in arrays:
                    continue
                signal, background = arrays[f"{label}/roc_signal_efficiency"], arrays[f"{label}/roc_background_efficiency"]
                keep = background > 0
                ax.plot(signal[keep], 1 / background[keep], label=f"z={int(latent)}")
            ax.plot([0, 1], [1, 1], ":", color="grey", label="no separation")
            ax.set(yscale="log", xlabel="Signal efficiency", ylabel="Background rejection (1/efficiency)", title=label, xlim=(0, 1))
            ax.legend(fontsize="x-small")
        _hide_unused(axes, len(labels))
    return path


def inputs_vs_decoded(arrays: dict[str, np.ndarray], varset: VarSet, path: Path, title: str) -> Path:
    """Input and decoded distributions of every variable, with a decoded/input ratio panel (Figs. 2.15/2.16)."""
    from matplotlib.ticker import NullFormatter

    edges, before, after = arrays["hist_edges"], arrays["hist_original"], arrays["hist_decoded"]
    n, columns = len(varset.variables), 4
    rows = -(-n // columns)
    with _figure(path, empty=True, tight=False, figsize=(4.2 * columns, 4.2 * rows + 0.6)) as (fig, _):
        outer = fig.add_gridspec(rows, columns, hspace=0.45, wspace=0.3, **_margins(fig))
        for i, variable in enumerate(varset.variables):
            top, bottom = outer[i // columns, i % columns].subgridspec(2, 1, height_ratios=[3, 1], hspace=0).subplots(sharex=True)
            top.stairs(before[i], edges[i], label="input", color="k")
            top.stairs(after[i], edges[i], label="decoded", color="tab:red")
            top.set_yscale("log")
            top.yaxis.set_minor_formatter(NullFormatter())
            top.tick_params(labelsize="x-small")
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(before[i] > 0, after[i] / before[i], np.nan)
            bottom.stairs(ratio, edges[i], color="tab:red", baseline=None)
            bottom.axhline(1, color="grey", lw=0.8)
            bottom.set_ylim(0.5, 1.5)
            bottom.set_yticks([0.75, 1.0, 1.25])
            bottom.set_xlabel(_symbol(variable.name) + (f" [{variable.unit}]" if variable.unit else ""), fontsize="small")
            bottom.tick_params(labelsize="x-small")
            if i % columns == 0:
                top.set_ylabel("Jets", fontsize="small")
                bottom.set_ylabel("out/in", fontsize="x-small")
            if i == 0:
                top.legend(fontsize="x-small")
        _suptitle(fig, title)
    return path


def residual_histograms(arrays: dict[str, np.ndarray], varset: VarSet, path: Path, title: str) -> Path:
    """Residual distribution of every variable (0.5-99.5 % range), relative ones in percent."""
    with _figure(path, tight=False, **_panels(len(varset.variables))) as (fig, axes):
        fig.subplots_adjust(**_margins(fig))
        for ax, (i, variable) in zip(axes.flat, enumerate(varset.variables), strict=False):
            ax.stairs(
                arrays["residual_counts"][i],
                _percent(variable.residual) * arrays["residual_edges"][i],
                color="tab:blue",
                fill=True,
                alpha=0.6,
            )
            ax.set_title(_symbol(variable.name), fontsize="small")
            ax.set_xlabel(_residual_label(variable.residual, variable.unit), fontsize="x-small")
            if i % axes.shape[1] == 0:
                ax.set_ylabel("Jets", fontsize="x-small")
            ax.tick_params(labelsize="x-small")
        _hide_unused(axes, len(varset.variables))
        _suptitle(fig, title)
    return path


def residual_corner(arrays: dict[str, np.ndarray], varset: VarSet, path: Path, title: str) -> Path:
    """Corner plot of residual pairs over a sample of jets; each cell's background is the correlation
    coefficient on the whole validation set (thesis Figs. 2.7/2.17). Drawn in one axes: fast at 27 variables."""
    correlation, sample = arrays["residual_correlation"], arrays["residual_sample"].astype(float)
    n = len(varset.variables)
    low, high = arrays["residual_edges"][:, 0], arrays["residual_edges"][:, -1]
    unit = np.clip((sample - low) / np.where(high > low, high - low, 1), 0, 1)  # each variable's range -> [0, 1]
    with _figure(path, figsize=(0.55 * n + 3, 0.55 * n + 2)) as (fig, ax):
        shown = np.where(np.tril(np.ones((n, n), bool), -1), correlation, np.nan)
        image = ax.imshow(shown, extent=(0, n, n, 0), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
        xs, ys = [], []
        for row in range(n):
            for column in range(row):
                keep = np.isfinite(unit[:, column]) & np.isfinite(unit[:, row])
                xs.append(column + 0.05 + 0.9 * unit[keep, column])
                ys.append(row + 0.95 - 0.9 * unit[keep, row])
        if xs:
            ax.scatter(np.concatenate(xs), np.concatenate(ys), s=0.3, c="k", alpha=0.4, linewidths=0, rasterized=True)
        for i in range(n):
            counts = arrays["residual_counts"][i].astype(float)
            heights = 0.9 * counts / counts.max() if counts.max() > 0 else counts
            ax.stairs(i + 0.95 - heights, i + np.linspace(0.05, 0.95, len(counts) + 1), baseline=i + 0.95, color="tab:blue")
        names = [v.name for v in varset.variables]
        ax.set_xticks(np.arange(n) + 0.5, names, rotation=90, fontsize="x-small")
        ax.set_yticks(np.arange(n) + 0.5, names, fontsize="x-small")
        ax.set(xlim=(0, n), ylim=(n, 0))
        ax.tick_params(which="minor", length=0)
        fig.colorbar(image, ax=ax, shrink=0.6, label="Correlation of residuals")
        ax.set_title(title, fontsize="medium")
    return path


def dijet_mass(arrays: dict[str, dict[str, np.ndarray]], closures: dict[str, dict[str, float]], path: Path, title: str) -> Path:
    """Dijet mass of the two leading jets before and after compression, per signal sample (Figs. 2.20/2.21)."""
    labels = sorted(arrays)
    with _figure(path, **_panels(len(labels), columns=max(1, len(labels)), size=7.0)) as (fig, axes):
        for ax, label in zip(axes.flat, labels, strict=False):
            before, after, closure = arrays[label]["dijet_original"], arrays[label]["dijet_decoded"], closures[label]
            low, high = np.percentile(before, [1, 99])
            edges = np.linspace(low, high, 60)
            ax.hist(before, edges, histtype="step", color="k", lw=1.5,
                    label=f"input: peak {closure['peak_original']:.1f} GeV, width {closure['width_original']:.1f} GeV")  # fmt: skip
            ax.hist(after, edges, histtype="step", color="tab:red", lw=1.5,
                    label=f"decoded: peak {closure['peak_decoded']:.1f} GeV ({closure['peak_shift_pct']:+.2f} %),\n"
                          f"width {closure['width_decoded']:.1f} GeV ({closure['width_change_pct']:+.1f} %)")  # fmt: skip
            ax.set(xlabel="$m_{jj}$ [GeV]", ylabel="Events")
            ax.set_title(f"{label}; {title}", fontsize="small")
            ax.set_ylim(0, 1.45 * ax.get_ylim()[1])
            ax.legend(fontsize="x-small", loc="upper left")
    return path


def rerun_curves(curves: dict[str, dict[str, dict[str, np.ndarray]]], path: Path) -> Path:
    """Validation loss per epoch of each rerun (seed) of each config, one panel per config."""
    with _figure(path, **_panels(len(curves), columns=min(3, len(curves)), size=5.0)) as (_, axes):
        for ax, (config, runs) in zip(axes.flat, curves.items(), strict=False):
            for seed, history in runs.items():
                ax.plot(np.arange(1, len(history["val_loss"]) + 1), history["val_loss"], label=seed)
            ax.set(yscale="log", xlabel="Epoch", ylabel="Validation MSE")
            ax.set_title(config, fontsize="small")
            ax.legend(fontsize="x-small")
        _hide_unused(axes, len(curves))
    return path
