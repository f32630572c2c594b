"""Trial stage: one autoencoder trained and evaluated on one dataset, written to the store.

This package imports torch; the orchestration side (sweep, review, CLI) only
imports it inside the worker that runs a trial.
"""

from __future__ import annotations

import platform

import numpy as np
import torch

from hpcsweep import __version__
from hpcsweep.config import TrialSpec
from hpcsweep.data.normalize import make_normaliser
from hpcsweep.data.read import open_cache
from hpcsweep.data.varset import load_varset
from hpcsweep.resources import allocated_cores
from hpcsweep.store import TrialRecord, trial_path, write_trial
from hpcsweep.trial.evaluate import pca_mse
from hpcsweep.trial.models import build_model
from hpcsweep.trial.train import select_device, train

__all__ = ["run_trial", "split_indices"]


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-seed train/validation split of n jets (sorted indices, validation = first share of a permutation)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def run_trial(spec: TrialSpec, threads: int | None = None, log=print) -> str:
    """Train and evaluate one trial, write its file, and return its state."""
    config = spec.config
    torch.set_num_threads(threads or allocated_cores())
    device = select_device()
    table = open_cache(spec.dataset)
    x = table.matrix(slice(0, config.data.max_jets))
    train_rows, val_rows = split_indices(len(x), config.data.val_fraction, config.data.split_seed)
    normaliser = make_normaliser(config.data.normalisation, load_varset(config.data.varset)).fit(x[train_rows])
    x_train, x_val = normaliser.transform(x[train_rows]), normaliser.transform(x[val_rows])
    log(f"trial {spec.trial_id}: {len(x_train):,} train / {len(x_val):,} val jets, {x.shape[1]} variables, "
        f"z={config.model.latent}, {torch.get_num_threads()} threads on {device}")  # fmt: skip
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, x.shape[1]).to(device)
    result = train(model, torch.from_numpy(x_train).to(device), torch.from_numpy(x_val).to(device), config.train, log)
    metrics = {
        "best_val_mse": result.best_val_mse,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "train_time_s": result.train_time_s,
        "pca_val_mse": pca_mse(x_train, x_val, config.model.latent),
        "n_train": len(x_train),
        "n_val": len(x_val),
        "n_variables": x.shape[1],
    }
    write_trial(
        trial_path(spec.results_dir, spec.trial_id),
        TrialRecord(
            trial_id=spec.trial_id,
            sweep=spec.sweep,
            state=result.state,
            config=config.model_dump(mode="json"),
            metrics=metrics,
            history={k: np.asarray(v) for k, v in result.history.items()},
            weights={k: v.cpu().numpy() for k, v in result.best_state.items()},
            normaliser=normaliser.to_dict(),
            provenance=_provenance(spec, table.meta, device),
        ),
    )
    log(f"trial {spec.trial_id}: {result.state}, best val MSE {result.best_val_mse:.4g} at epoch {result.best_epoch} "
        f"(PCA {metrics['pca_val_mse']:.4g}), {result.train_time_s:.1f} s")  # fmt: skip
    return result.state


def _provenance(spec: TrialSpec, data_meta: dict, device: torch.device) -> dict:
    return {
        **spec.provenance,
        "hpcsweep": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "data_source": data_meta.get("source", ""),
        "data_checksum": data_meta.get("checksum", ""),
        "data_cuts": data_meta.get("cuts", []),
    }
