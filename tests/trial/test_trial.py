"""The trial: the split, training on real jets, determinism, and a stored model that reproduces its loss."""

from __future__ import annotations

import numpy as np
import torch

from hpcsweep.data import Normaliser, open_cache
from hpcsweep.store import read_trial, trial_path
from hpcsweep.trial import run_trial, split_indices
from hpcsweep.trial.models import Autoencoder
from tests.helpers import trial_spec


def test_split_is_fixed_by_its_seed_and_disjoint():
    train, val = split_indices(1000, 0.2, seed=3)
    again_train, _ = split_indices(1000, 0.2, seed=3)
    assert len(val) == 200 and not set(train) & set(val) and len(train) + len(val) == 1000
    np.testing.assert_array_equal(train, again_train)
    assert not np.array_equal(split_indices(1000, 0.2, seed=4)[1], val)


def test_trial_beats_pca_and_stores_a_usable_model(qcd_file, tmp_path):
    spec = trial_spec(qcd_file, tmp_path)
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
    first, second = trial_spec(qcd_file, tmp_path / "a", train={"epochs": 5}), trial_spec(qcd_file, tmp_path / "b", train={"epochs": 5})
    run_trial(first, threads=1, log=lambda _: None)
    run_trial(second, threads=1, log=lambda _: None)
    a = read_trial(trial_path(tmp_path / "a", first.trial_id))
    b = read_trial(trial_path(tmp_path / "b", second.trial_id))
    assert a.metrics["best_val_mse"] == b.metrics["best_val_mse"]
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name])
