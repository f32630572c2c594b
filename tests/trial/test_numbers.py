"""The numbers users read, pinned against independent numpy computations.

Residual widths (the resolution column), the PCA baseline (the "PCA / AE" column), the weights a
trial keeps (its best validation epoch's) and the trial identity (which decides what is rerun).
Small seeded data and one tiny real trial on CPU: the whole file runs in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import BaseModel, ValidationError

from hpcsweep.config import GENERATOR_KEYS, TrialConfig, TrialSpec
from hpcsweep.data import Normaliser, cache_jets, load_varset, open_cache, varset_names
from hpcsweep.store import read_trial, trial_path
from hpcsweep.trial import load_trained, run_trial, split_indices
from hpcsweep.trial.evaluate import JetMeasure, pca_reconstruction, residuals

QUANTILES = (0.16, 0.84)  # the 68 % band whose half-width is the reported resolution
FLOAT32 = 1e-5  # relative agreement of a float32 result with its float64 recomputation


def _half_width(values: np.ndarray) -> float:
    low, high = np.quantile(values, QUANTILES)
    return float((high - low) / 2)


def _pca_mse(x_train: np.ndarray, x: np.ndarray, k: int) -> float:
    """MSE of `x` projected on the first k principal axes of `x_train` (numpy SVD, float64)."""
    mean = x_train.mean(axis=0)
    _, _, vt = np.linalg.svd(x_train - mean, full_matrices=False)
    projected = (x - mean) @ vt[:k].T @ vt[:k] + mean
    return float(np.mean((projected - x) ** 2))


# --- residual widths ---------------------------------------------------------------------------------


def test_residual_width_is_the_16_84_percent_half_width_not_the_std():
    """Pins `width` (the per-variable resolution of every table) as half the 16-84 % range of the residuals, for
    relative, absolute and phi residuals. Cauchy residuals make the std many times the width, so an std cannot pass."""
    rng = np.random.default_rng(11)
    n = 4000
    varset = load_varset("fourvec")
    measure = JetMeasure.of(varset, {})
    original = np.column_stack(
        [rng.uniform(20, 500, n), rng.uniform(-2.5, 2.5, n), rng.uniform(-np.pi, np.pi, n), rng.uniform(50, 1500, n)]
    )
    noise = 0.01 * rng.standard_cauchy(size=original.shape)
    decoded = original.copy()
    decoded[:, [0, 3]] *= 1 + noise[:, [0, 3]]  # pt, E: relative
    decoded[:, [1, 2]] += noise[:, [1, 2]]  # eta: absolute; phi: wrapped difference
    expected = {
        "relative": lambda i: (decoded[:, i] - original[:, i]) / original[:, i],
        "absolute": lambda i: decoded[:, i] - original[:, i],
        "phi": lambda i: np.angle(np.exp(1j * (decoded[:, i] - original[:, i]))),
    }
    stats = residuals(original, decoded, measure)
    assert [stats[name]["kind"] for name in varset.names] == ["relative", "absolute", "phi", "relative"]
    for i, name in enumerate(varset.names):
        residual = expected[stats[name]["kind"]](i)
        width = _half_width(residual)
        assert np.std(residual) > 2 * width, "precondition: heavy tails separate the std from the 68 % half-width"
        assert stats[name]["width"] == pytest.approx(width), name


# --- PCA baseline ------------------------------------------------------------------------------------


def test_pca_with_as_many_components_as_the_rank_reconstructs_exactly():
    """Pins the PCA baseline's component count: on data of exact rank k (around a non-zero mean) PCA with `latent` = k
    reconstructs unseen points of the same subspace up to float32 rounding, and with k - 1 it cannot."""
    rng = np.random.default_rng(5)
    k, d = 3, 7
    basis, mean = rng.normal(size=(k, d)), rng.normal(size=d) * 10
    x_train = (rng.normal(size=(300, k)) @ basis + mean).astype(np.float32)
    x_val = (rng.normal(size=(200, k)) @ basis + mean).astype(np.float32)
    rounding = np.finfo(np.float32).eps * np.var(x_val)

    def mse(latent: int) -> float:
        return float(np.mean((pca_reconstruction(x_train, x_val, latent) - x_val) ** 2, dtype=np.float64))

    assert mse(k) < rounding
    assert mse(k - 1) > rounding, "one component short leaves a whole direction of variance out"


def test_pca_mse_matches_numpy_svd_for_every_latent_size():
    """Pins the PCA baseline's MSE (the "PCA" column) against numpy SVD's own rank-k reconstruction and against
    Eckart-Young (the discarded squared singular values), for every latent size of a full-rank sample."""
    rng = np.random.default_rng(8)
    n, d = 400, 6
    x = (rng.normal(size=(n, d)) * np.geomspace(5, 0.2, d) @ np.linalg.qr(rng.normal(size=(d, d)))[0] + 3).astype(np.float32)
    x64 = x.astype(np.float64)
    singular = np.linalg.svd(x64 - x64.mean(axis=0), compute_uv=False)
    for k in range(1, d):
        got = float(np.mean((pca_reconstruction(x, x, k) - x64) ** 2))
        assert got == pytest.approx(_pca_mse(x64, x64, k), rel=FLOAT32), k
        assert got == pytest.approx(np.sum(singular[k:] ** 2) / x.size, rel=FLOAT32), k


# --- one tiny real trial -----------------------------------------------------------------------------

EPOCHS, GOOD_EPOCHS = 8, 6  # a gentle rate for GOOD_EPOCHS, then one that wrecks the fit: the best epoch is not the last


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrialSpec, Path]:
    """A 4-variable AE (z=2) trained for a few epochs on 600 generated four-momenta, evaluated and written."""
    folder = tmp_path_factory.mktemp("numbers")
    rng = np.random.default_rng(0)
    n = 600
    pt, eta, phi = rng.lognormal(4, 0.5, n), rng.uniform(-2.5, 2.5, n), rng.uniform(-np.pi, np.pi, n)
    columns = {"eventNumber": np.arange(n) // 2, "pt": pt, "eta": eta, "phi": phi, "E": pt * np.cosh(eta)}
    pd.DataFrame({k: v.astype(np.float32) if k != "eventNumber" else v for k, v in columns.items()}).to_parquet(folder / "jets.parquet")
    config = TrialConfig.model_validate(
        {
            "data": {"source": str(folder / "jets.parquet"), "varset": "fourvec"},
            "model": {"hidden": [16], "latent": 2},
            "train": {"epochs": EPOCHS, "batch_size": 64, "schedule": "piecewise", "piecewise": [(GOOD_EPOCHS, 1e-2), (None, 1.0)]},
        }
    )
    dataset = cache_jets(folder / "jets.parquet", load_varset("fourvec"), folder / "cache")
    spec = TrialSpec(
        trial_id=config.identity(),
        sweep="numbers",
        config=config,
        dataset=str(dataset),
        results_dir=str(folder / "results"),
        evaluation={"timing_repeats": 1},
    )
    assert run_trial(spec, threads=1, log=lambda _: None) == "done"
    return spec, trial_path(spec.results_dir, spec.trial_id)


def _splits(spec: TrialSpec) -> tuple[np.ndarray, np.ndarray]:
    """The trial's physical training and validation jets, split as the trial split them."""
    x = open_cache(spec.dataset).matrix()
    train_rows, val_rows = split_indices(len(x), spec.config.data.val_fraction, spec.config.data.split_seed)
    return x[train_rows], x[val_rows]


def test_a_trial_keeps_and_evaluates_its_best_epochs_weights(trial):
    """Pins that the stored weights, and the evaluation made with them, are the best validation epoch's, not the last
    epoch's: the validation MSE recomputed from the stored weights is the history's minimum, at a non-final epoch."""
    spec, path = trial
    record, model, normaliser, _ = load_trained(path)
    val_loss = np.asarray(record.history["val_loss"])
    best = int(np.argmin(val_loss))
    assert len(val_loss) == EPOCHS and best + 1 < EPOCHS and val_loss[-1] > val_loss[best], "precondition: the last epoch is worse"
    assert record.metrics["best_epoch"] == best + 1 and record.metrics["best_val_mse"] == val_loss[best]
    x_val = torch.from_numpy(normaliser.transform(_splits(spec)[1]))
    with torch.no_grad():
        stored = float(((model(x_val) - x_val) ** 2).mean(dtype=torch.float64))
    assert stored == pytest.approx(val_loss[best], rel=FLOAT32) and stored != pytest.approx(val_loss[-1], rel=FLOAT32)
    assert record.evaluation["validation"]["mse"] == pytest.approx(val_loss[best], rel=FLOAT32), "evaluated with the best weights"


def test_a_trials_pca_baseline_uses_the_latent_size(trial):
    """Pins the stored "PCA" number of a real trial: PCA fitted on its normalised training split with as many
    components as the AE's latent size, measured on its validation split (independent numpy SVD)."""
    spec, path = trial
    record = read_trial(path)
    normaliser = Normaliser.from_dict(record.normaliser)
    x_train, x_val = (normaliser.transform(x).astype(np.float64) for x in _splits(spec))
    latent = spec.config.model.latent
    expected = _pca_mse(x_train, x_val, latent)
    assert _pca_mse(x_train, x_val, latent - 1) != pytest.approx(expected, rel=FLOAT32), "precondition: every component counts"
    assert record.metrics["pca_val_mse"] == pytest.approx(expected, rel=FLOAT32)
    assert record.evaluation["validation"]["baselines"]["pca"]["mse"] == pytest.approx(expected, rel=FLOAT32)


def test_a_trials_residual_widths_are_the_68_percent_half_widths(trial):
    """Pins the residual widths a trial's metrics report (what rank_by: residual_width and the tables read) as the
    16-84 % half-width of its validation residuals, recomputed from the stored model's decoded jets."""
    spec, path = trial
    record, model, normaliser, measure = load_trained(path)
    _, x_val = _splits(spec)
    with torch.no_grad():
        decoded_norm = model(torch.from_numpy(normaliser.transform(x_val))).numpy()
    decoded = measure.restore(normaliser.inverse_transform(decoded_norm)).astype(np.float64)
    original = x_val.astype(np.float64)
    for i, name in enumerate(measure.names):
        kind = measure.residual_kind[name]
        difference = decoded[:, i] - original[:, i]
        residual = difference / original[:, i] if kind == "relative" else np.angle(np.exp(1j * difference)) if kind == "phi" else difference
        assert record.metrics["residual_width"][name] == pytest.approx(_half_width(residual), rel=FLOAT32), name


# --- trial identity ----------------------------------------------------------------------------------


def _literals(annotation: Any) -> list[Any]:
    """Every value a (possibly nested, optional or annotated) Literal type allows."""
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [value for arg in get_args(annotation) for value in _literals(arg)]


def _alternatives(value: Any, annotation: Any = None) -> list[Any]:
    """Candidate other values for a config leaf, by its type (validation decides which are accepted)."""
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        return [value + 1]
    if isinstance(value, float):
        return [value / 2, value + 0.5]
    if isinstance(value, str):
        return [*_literals(annotation), "x", *varset_names()]
    if isinstance(value, list | tuple) and value:
        return [type(value)([*value[:-1], other]) for other in _alternatives(value[-1])]
    if value is None:
        return [1, 0.5, "x"]
    raise AssertionError(f"no alternatives for {value!r}: extend _alternatives")


def _leaves(dumped: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths of every field of every section (sections are the nested mappings of a model_dump)."""
    out: list[tuple[str, ...]] = []
    for key, value in dumped.items():
        out += _leaves(value, (*prefix, key)) if isinstance(value, dict) and not prefix else [(*prefix, key)]
    return out


def _annotation(path: tuple[str, ...]) -> Any:
    model: type[BaseModel] = TrialConfig
    for part in path[:-1]:
        model = model.model_fields[part].annotation
    return model.model_fields[path[-1]].annotation


def _changed(base: TrialConfig, path: tuple[str, ...]) -> TrialConfig | None:
    """`base` with the leaf at `path` set to another valid value, or None when no candidate changes the config."""
    for candidate in _alternatives(_get(base.model_dump(), path), _annotation(path)):
        raw = base.model_dump()
        _get(raw, path[:-1])[path[-1]] = candidate
        try:
            changed = TrialConfig.model_validate(raw)
        except ValidationError:
            continue
        if changed.model_dump() != base.model_dump():
            return changed
    return None


def _get(tree: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


FILE = "/data/jets.parquet"
GENERATOR = {("data", key) for key in GENERATOR_KEYS}
BASES = {
    # base config, leaves that cannot be set in it, leaves documented as not part of its identity
    "generated": (TrialConfig(), set(), set()),
    # a file source has no generator settings: they are None whatever is given
    "file": (TrialConfig(data={"source": FILE}), GENERATOR, set()),
    # once the jets are known by content (data_version), where they lie no longer counts
    "file, versioned": (TrialConfig(data={"source": FILE}, data_version="0123abcd"), GENERATOR, {("data", "source")}),
}


@pytest.mark.parametrize("base, unsettable, not_identity", BASES.values(), ids=list(BASES))
def test_every_trial_key_is_part_of_the_identity(base, unsettable, not_identity):
    """Pins the trial identity (finished trials are never rerun): changing any field of any section, walked from
    model_dump, changes it, except data.source once data_version is set. A key left out of the hash would make
    different trials share one id, and one of them would never run."""
    leaves = _leaves(TrialConfig().model_dump())
    assert {path[0] for path in leaves} == set(TrialConfig.model_fields), "every section is walked"
    changed = {path: _changed(base, path) for path in leaves}
    assert {path for path, config in changed.items() if config is None} == unsettable
    same = {path for path, config in changed.items() if config is not None and config.identity() == base.identity()}
    assert same == not_identity
