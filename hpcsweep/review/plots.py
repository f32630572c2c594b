"""Figures of a sweep, in HEP style (mplhep)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def loss_vs_latent(best: pd.DataFrame, median: pd.DataFrame, path: Path) -> Path:
    """Validation loss of the best and median AE, and of PCA, versus latent dimension (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    with plt.style.context(mplhep.style.ROOT):
        fig, ax = plt.subplots(figsize=(8, 6))
        ax.plot(best["latent"], best["val_mse"], "o-", label="AE, best trial")
        ax.plot(median["latent"], median["val_mse"], "s--", label="AE, median trial")
        ax.plot(best["latent"], best["pca_val_mse"], "^:", color="grey", label="PCA")
        ax.set_yscale("log")
        ax.set_xlabel("Latent space dimension $z$")
        ax.set_ylabel("Validation MSE (normalised inputs)")
        ax.set_xticks(sorted(best["latent"].astype(int).unique()))
        ax.legend()
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
    return path
