"""Thesis-style tables: the best and the median trial per latent dimension (Tables 2.3/2.4)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

#: Trial-table columns taken from each trial's stored config and metrics.
_FIELDS = {
    "latent": ("config", "model", "latent"),
    "batch_size": ("config", "train", "batch_size"),
    "lr": ("config", "train", "lr"),
    "weight_decay": ("config", "train", "weight_decay"),
    "epochs": ("config", "train", "epochs"),
    "val_mse": ("metrics", "best_val_mse"),
    "best_epoch": ("metrics", "best_epoch"),
    "train_time_s": ("metrics", "train_time_s"),
    "pca_val_mse": ("metrics", "pca_val_mse"),
}


def trials_frame(summaries: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per trial file: id, state and the fields above (missing ones as NaN)."""
    rows = []
    for trial_id, summary in summaries.items():
        row: dict[str, Any] = {"trial_id": trial_id, "state": summary["state"]}
        for column, path in _FIELDS.items():
            value: Any = summary
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            row[column] = value
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["trial_id", "state", *_FIELDS])
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


def thesis_table(picks: pd.DataFrame) -> pd.DataFrame:
    """The columns of thesis Tables 2.3/2.4, plus the PCA baseline at the same z."""
    return pd.DataFrame(
        {
            "Latent space dimensions": picks["latent"].astype(int),
            "Batch size": picks["batch_size"].astype(int),
            "Learning rate": picks["lr"].map(lambda v: f"{v:.0e}"),
            "Weight decay": picks["weight_decay"].map(lambda v: "0" if v == 0 else f"{v:.0e}"),
            "Validation loss": picks["val_mse"].map(lambda v: f"{v:.3e}"),
            "Training time": picks["train_time_s"].map(lambda s: str(timedelta(seconds=round(s)))),
            "PCA val loss": picks["pca_val_mse"].map(lambda v: f"{v:.3e}"),
            "PCA / AE": (picks["pca_val_mse"] / picks["val_mse"]).map(lambda v: f"{v:.2f}"),
        }
    )
