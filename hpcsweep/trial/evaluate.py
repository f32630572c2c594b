"""Evaluation of a trained autoencoder against baselines on the same validation data."""

from __future__ import annotations

import numpy as np
import torch

EVAL_BATCH = 65536


def reconstruction_mse(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Mean squared reconstruction error over all jets and variables (normalised space)."""
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    with torch.no_grad():
        for start in range(0, len(x), EVAL_BATCH):
            batch = x[start : start + EVAL_BATCH]
            total += ((model(batch) - batch) ** 2).sum(dtype=torch.float64)
    return float(total) / x.numel()


def pca_mse(x_train: np.ndarray, x_val: np.ndarray, latent: int) -> float:
    """Validation MSE of the best linear compression to `latent` dimensions (PCA fitted on train)."""
    mean = x_train.mean(axis=0, dtype=np.float64)
    _, _, components = np.linalg.svd(x_train - mean, full_matrices=False)
    basis = components[:latent]
    centred = x_val - mean
    reconstructed = centred @ basis.T @ basis
    return float(np.mean((centred - reconstructed) ** 2))
