"""Thesis-style tables: best and median trial per latent dimension (Tables 2.3/2.4), comparisons by any
other axis the sweep varied (seed 001's normalisations and model kinds), baselines and compression."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from hpcsweep.config import dotted

#: Trial-table columns taken from each trial's stored config, metrics and provenance.
_FIELDS = {
    "latent": ("config", "model", "latent"),
    "batch_size": ("config", "train", "batch_size"),
    "lr": ("config", "train", "lr"),
    "weight_decay": ("config", "train", "weight_decay"),
    "epochs": ("config", "train", "epochs"),
    "seed": ("config", "train", "seed"),
    "varset": ("config", "data", "varset"),
    "val_mse": ("metrics", "best_val_mse"),
    "best_epoch": ("metrics", "best_epoch"),
    "train_time_s": ("metrics", "train_time_s"),
    "pca_val_mse": ("metrics", "pca_val_mse"),
    "data_checksum": ("provenance", "data_checksum"),
}
#: Config keys the best/median tables already show, or that only repeat a trial: never a comparison axis.
_TABLE_AXES = {"model.latent", "train.batch_size", "train.lr", "train.weight_decay", "train.seed"}


def _dig(summary: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = summary
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _flat_config(config: dict[str, Any]) -> dict[str, str]:
    """{'model': {'kind': 'ae'}} -> {'model.kind': '"ae"'}: values as stable text, so that lists compare too."""
    return {key: json.dumps(value, sort_keys=True) for key, value in dotted(config).items()}


def varied_axes(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Config keys (dotted) that differ between trials, besides latent, bs, lr, wd and seed."""
    values: dict[str, set[str]] = {}
    for summary in summaries.values():
        for key, value in _flat_config(summary.get("config", {})).items():
            values.setdefault(key, set()).add(value)
    return sorted(key for key, seen in values.items() if len(seen) > 1 and key not in _TABLE_AXES)


def trials_frame(summaries: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per trial file: id, state, failure, the fields above and each varied axis (missing ones as NaN)."""
    axes = varied_axes(summaries)
    rows = []
    for trial_id, summary in summaries.items():
        row: dict[str, Any] = {"trial_id": trial_id, "state": summary["state"], "failure": summary.get("failure", "")}
        row |= {column: _dig(summary, path) for column, path in _FIELDS.items()}
        flat = _flat_config(summary.get("config", {}))
        row |= {axis: json.loads(flat[axis]) if axis in flat else None for axis in axes}
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["trial_id", "state", "failure", *_FIELDS, *axes])
    for axis in axes:  # lists (hidden widths) as text, so that they group and print
        frame[axis] = frame[axis].map(lambda v: v if v is None or isinstance(v, str | int | float | bool) else json.dumps(v))
    return frame.sort_values(["latent", "val_mse", "trial_id"], na_position="last").reset_index(drop=True)


def best_and_median(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per latent dimension, the done trial with the lowest val loss and the median one.

    The median trial is a real trial: for an even count, the worse of the two middle ones.
    Ties in val loss are broken by trial id, so the choice is reproducible.
    """
    done = frame[frame["state"] == "done"].sort_values(["latent", "val_mse", "trial_id"])
    groups = [group for _, group in done.groupby("latent", sort=True)]
    best = pd.DataFrame([g.iloc[0] for g in groups], columns=done.columns)
    median = pd.DataFrame([g.iloc[len(g) // 2] for g in groups], columns=done.columns)
    return best.reset_index(drop=True), median.reset_index(drop=True)


def _sci(value: float) -> str:
    return "" if pd.isna(value) else f"{value:.3e}"


def thesis_table(picks: pd.DataFrame) -> pd.DataFrame:
    """The columns of thesis Tables 2.3/2.4 (with the epoch of the best validation loss), plus PCA at the same z."""
    return pd.DataFrame(
        {
            "Latent space dimensions": picks["latent"].astype(int),
            "Batch size": picks["batch_size"].astype(int),
            "Learning rate": picks["lr"].map(lambda v: f"{v:.0e}"),
            "Weight decay": picks["weight_decay"].map(lambda v: "0" if v == 0 else f"{v:.0e}"),
            "Validation loss": picks["val_mse"].map(_sci),
            "Epoch of best": picks["best_epoch"].astype(int),
            "Training time": picks["train_time_s"].map(lambda s: str(timedelta(seconds=round(s)))),
            "PCA val loss": picks["pca_val_mse"].map(_sci),
            "PCA / AE": (picks["pca_val_mse"] / picks["val_mse"]).map(lambda v: f"{v:.2f}"),
        }
    )


def comparison_table(frame: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Best and median val loss per value of `axis` (rows) and latent dimension (columns), done trials only."""
    done = frame[frame["state"] == "done"]
    rows = []
    for value, group in done.groupby(axis, sort=True):
        row: dict[str, Any] = {axis: value}
        for z, trials in group.groupby("latent", sort=True):
            losses = trials.sort_values(["val_mse", "trial_id"])["val_mse"]
            row[f"z={int(z)} best"] = _sci(losses.iloc[0])
            row[f"z={int(z)} median"] = _sci(losses.iloc[len(losses) // 2])
        rows.append(row)
    return pd.DataFrame(rows).fillna("")


def baselines_table(best: pd.DataFrame, evaluations: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per latent dimension: the best AE against PCA at the same z and float16 truncation (normalised MSE)."""
    rows = []
    for _, trial in best.iterrows():
        baselines = evaluations.get(trial["trial_id"], {}).get("validation", {}).get("baselines", {})
        pca, half = baselines.get("pca", {}).get("mse", float("nan")), baselines.get("float16", {}).get("mse", float("nan"))
        rows.append(
            {
                "Latent space dimensions": int(trial["latent"]),
                "AE val loss": _sci(trial["val_mse"]),
                "PCA val loss": _sci(pca),
                "float16 truncation": _sci(half),
                "PCA / AE": f"{pca / trial['val_mse']:.2f}",
            }
        )
    return pd.DataFrame(rows)


#: Compression columns: stored key -> header (bytes per jet unless a ratio).
_COMPRESSION = {
    "raw_float32": "raw float32 (B/jet)",
    "raw_float32_lzma": "raw float32 + lzma",
    "latent_float16": "latent float16",
    "latent_float16_lzma": "latent float16 + lzma",
    "model_per_jet": "decoder + normaliser per jet",
    "total_per_jet": "total",
    "ratio_vs_raw_float32": "ratio vs float32",
    "ratio_vs_raw_float32_lzma": "ratio vs float32 + lzma",
    "ratio_large_dataset": "ratio, large dataset",
    "ratio_large_dataset_vs_lzma": "ratio vs lzma, large dataset",
}


def compression_table(best: pd.DataFrame, evaluations: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Per latent dimension, the best AE's bytes per jet and total compression ratio, lossless lzma chained."""
    rows = []
    for _, trial in best.iterrows():
        stored = evaluations.get(trial["trial_id"], {}).get("validation", {}).get("compression", {})
        row: dict[str, Any] = {"Latent space dimensions": int(trial["latent"])}
        row |= {header: f"{stored[key]:.2f}" if key in stored else "" for key, header in _COMPRESSION.items()}
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(table: pd.DataFrame, folder: Path, stem: str, title: str) -> list[Path]:
    """The table as Markdown (with its title), CSV and LaTeX (a `table` float with caption and label)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.md", folder / f"{stem}.csv", folder / f"{stem}.tex"]
    paths[0].write_text(f"## {title}\n\n{markdown(table)}\n")
    table.to_csv(paths[1], index=False)
    paths[2].write_text(table.to_latex(index=False, caption=title, label=f"tab:{stem}", escape=True))
    return paths


def markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, disable_numparse=True) if len(table) else "(no rows)"
