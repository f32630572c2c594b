"""The trial: mirrored AE, training on real jets, divergence, determinism, and what it stores."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from hpcsweep.config import TrialConfig, TrialSpec
from hpcsweep.data import Normaliser, cache_jets, load_varset, open_cache
from hpcsweep.store import read_trial, trial_path
from hpcsweep.trial import run_trial, split_indices
from hpcsweep.trial.models import Autoencoder


def test_autoencoder_is_mirrored_around_the_latent_layer():
    model = Autoencoder(27, [200, 100, 50], 8, "tanh", batchnorm=False)
    widths = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [(27, 200), (200, 100), (100, 50), (50, 8), (8, 50), (50, 100), (100, 200), (200, 27)]
    assert sum(isinstance(m, nn.Tanh) for m in model.modules()) == 6
    bn = Autoencoder(24, [200, 200, 200], 12)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in bn.modules()) == 6
    assert bn.encode(torch.zeros(5, 24)).shape == (5, 12) and bn(torch.zeros(5, 24)).shape == (5, 24)


def test_split_is_fixed_by_its_seed_and_disjoint():
    train, val = split_indices(1000, 0.2, seed=3)
    again_train, _ = split_indices(1000, 0.2, seed=3)
    assert len(val) == 200 and not set(train) & set(val) and len(train) + len(val) == 1000
    np.testing.assert_array_equal(train, again_train)
    assert not np.array_equal(split_indices(1000, 0.2, seed=4)[1], val)


def _spec(qcd_file, tmp_path, **train) -> TrialSpec:
    config = TrialConfig.model_validate(
        {
            "data": {"events": 600, "generator_seed": 7},
            "model": {"hidden": [64, 64], "latent": 4},
            "train": {"epochs": 25, "batch_size": 256, "lr": 1e-2, **train},
        }
    )
    folder = cache_jets(qcd_file, load_varset("generated"), tmp_path / "cache")
    return TrialSpec(trial_id=config.identity(), sweep="unit", config=config, dataset=str(folder), results_dir=str(tmp_path))


def test_trial_beats_pca_and_stores_a_usable_model(qcd_file, tmp_path):
    spec = _spec(qcd_file, tmp_path)
    assert run_trial(spec, threads=1, log=lambda _: None) == "done"
    record = read_trial(trial_path(tmp_path, spec.trial_id))
    metrics = record.metrics
    assert metrics["best_val_mse"] < metrics["pca_val_mse"], "a non-linear AE beats PCA at z=4 on real jets"
    assert record.history["val_loss"].min() == metrics["best_val_mse"]
    assert 1 <= metrics["best_epoch"] <= 25 and len(record.history["train_loss"]) == 25
    assert record.config == spec.config.model_dump(mode="json")
    assert record.provenance["data_checksum"].startswith("sha256:") and record.provenance["torch"] == torch.__version__
    # the stored weights and normaliser reproduce the stored validation loss
    table = open_cache(spec.dataset)
    x = table.matrix()
    train_rows, val_rows = split_indices(len(x), 0.2, 0)
    normaliser = Normaliser.from_dict(record.normaliser)
    model = Autoencoder(24, [64, 64], 4)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in record.weights.items()})
    model.eval()
    x_val = torch.from_numpy(normaliser.transform(x[val_rows]))
    with torch.no_grad():
        mse = float(((model(x_val) - x_val) ** 2).mean())
    assert abs(mse - metrics["best_val_mse"]) < 1e-6 * max(1.0, metrics["best_val_mse"])


def test_same_config_and_seed_give_the_same_result(qcd_file, tmp_path):
    first, second = _spec(qcd_file, tmp_path / "a", epochs=5), _spec(qcd_file, tmp_path / "b", epochs=5)
    run_trial(first, threads=1, log=lambda _: None)
    run_trial(second, threads=1, log=lambda _: None)
    a = read_trial(trial_path(tmp_path / "a", first.trial_id))
    b = read_trial(trial_path(tmp_path / "b", second.trial_id))
    assert a.metrics["best_val_mse"] == b.metrics["best_val_mse"]
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name])


def test_a_diverging_trial_is_recorded_as_diverged(qcd_file, tmp_path):
    spec = _spec(qcd_file, tmp_path, lr=1e12, epochs=25)
    assert run_trial(spec, threads=1, log=lambda _: None) == "diverged"
    record = read_trial(trial_path(tmp_path, spec.trial_id))
    assert record.state == "diverged" and record.metrics["epochs_run"] < 25
    assert not np.isfinite(record.history["val_loss"][-1]) or not np.isfinite(record.history["train_loss"][-1])
