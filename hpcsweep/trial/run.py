"""One trial from start to file: train (or resume), evaluate, write; and stored trials loaded or evaluated again."""

from __future__ import annotations

import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpcsweep import __version__
from hpcsweep.allocation import allocated_cores, allocated_gpus
from hpcsweep.config import ModelConfig, TrialSpec
from hpcsweep.data.normalize import Normaliser, make_normaliser, make_reference
from hpcsweep.data.read import JetTable, open_cache
from hpcsweep.data.varset import VarSet, load_varset
from hpcsweep.errors import Log
from hpcsweep.provenance import package_versions
from hpcsweep.states import TrialState
from hpcsweep.store import TrialRecord, clear_progress, close_attempt, read_trial, write_ended, write_progress, write_trial
from hpcsweep.trial.evaluate import (
    WITHIN,
    JetMeasure,
    anomaly,
    bounded_compression,
    compression,
    evaluate_dataset,
    in_batches,
    model_bytes,
    pca_reconstruction,
    peer_baselines,
    residuals,
    timing,
    truncation_baselines,
)
from hpcsweep.trial.models import Autoencoder, build_model
from hpcsweep.trial.train import Report, select_device, train


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-seed train/validation split of n jets (sorted indices, validation = first share of a permutation)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def checkpoint_path(spec: TrialSpec) -> Path:
    return Path(spec.results_dir) / "checkpoints" / f"{spec.trial_id}.pt"


def run_trial(
    spec: TrialSpec,
    threads: int | None = None,
    log: Log = print,
    report: Report | None = None,
    still_ours: Callable[[], bool] | None = None,
) -> TrialState | None:
    """Train (or resume) and evaluate one trial, write its file, and return its state (see `train` for `report`);
    None when another worker took the trial over.

    `still_ours()` is asked before the file is written: False when another worker took the
    trial over (this one was thought dead), and then nothing is written. The attempt is
    logged as ended only once the file is in place, so a kill in between cannot make a
    finished trial run again.
    """
    config, results = spec.config, Path(spec.results_dir)
    torch.set_num_threads(threads or allocated_cores())
    device = select_device()
    varset = load_varset(config.data.varset)
    table = open_cache(spec.dataset)
    x = table.matrix(slice(0, config.data.max_jets))
    train_rows, val_rows = split_indices(len(x), config.data.val_fraction, config.data.split_seed)
    normaliser = make_normaliser(config.data.normalisation, varset).fit(x[train_rows])
    x_train, x_val = normaliser.transform(x[train_rows]), normaliser.transform(x[val_rows])
    log(f"trial {spec.trial_id}: {config.model.kind}, {len(x_train):,} train / {len(x_val):,} val jets, {x.shape[1]} variables, "
        f"z={config.model.latent}, {torch.get_num_threads()} threads on {device}")  # fmt: skip
    torch.manual_seed(config.train.seed)
    model = build_model(config.model, x.shape[1]).to(device)
    checkpoint = checkpoint_path(spec)
    result = train(
        model,
        torch.from_numpy(x_train).to(device),
        torch.from_numpy(x_val).to(device),
        config.train,
        checkpoint,
        spec.checkpoint_every,
        log,
        report,
        lambda *where: write_progress(results, spec.trial_id, *where),
        spec.compile,
    )
    measure = JetMeasure.from_training(varset, x[train_rows], spec.evaluation.reference, spec.evaluation.tolerances(varset.names))
    evaluation: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {f"discrete/{name}": values for name, values in measure.allowed.items()}
    if result.best_state and result.state != TrialState.PRUNED:  # a pruned trial is not worth the evaluation
        model.load_state_dict(result.best_state)
        evaluation, evaluated = evaluate_trial(
            model, normaliser, measure, x[train_rows], x[val_rows], spec.evaluation.timing_repeats, spec.signals, spec.evaluation.max_error
        )
        arrays.update(evaluated)
    metrics = {
        "best_val_mse": result.best_val_mse,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "resumed_from_epoch": result.resumed_from,
        "train_time_s": result.train_time_s,
        "n_train": len(x_train),
        "n_val": len(x_val),
        "n_variables": x.shape[1],
        **validation_metrics(evaluation.get("validation", {})),
        "anomaly": anomaly_metrics(evaluation),
    }
    if still_ours is not None and not still_ours():
        log(f"trial {spec.trial_id}: another worker took it over while it ran; its result is not written")
        return None
    write_ended(
        results,
        TrialRecord(
            trial_id=spec.trial_id,
            sweep=spec.sweep,
            state=result.state,
            config=config.model_dump(mode="json"),
            metrics=metrics,
            history={k: np.asarray(v) for k, v in result.history.items()},
            weights={k: v.cpu().numpy() for k, v in result.best_state.items()},
            normaliser=normaliser.to_dict(),
            varset=varset.mapping(),
            reference=_reference_record(measure),
            provenance=_provenance(spec, table.meta, device),
            evaluation=evaluation,
            arrays=arrays,
        ),
        result.state,
    )
    close_attempt(results, spec.trial_id, result.state)
    checkpoint.unlink(missing_ok=True)
    clear_progress(results, spec.trial_id)
    log(f"trial {spec.trial_id}: {result.state}, best val MSE {result.best_val_mse:.4g} at epoch {result.best_epoch} "
        f"(PCA {metrics['pca_val_mse']:.4g}), {result.train_time_s:.1f} s")  # fmt: skip
    return result.state


def evaluate_trial(
    model: Autoencoder,
    normaliser: Normaliser,
    measure: JetMeasure,
    x_train: np.ndarray,
    x_val: np.ndarray,
    timing_repeats: int,
    signals: dict[str, str],
    bound: float = WITHIN,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The validation split with baselines, compression (also as an error-bounded compressor at `bound`) and timing;
    then each signal sample (label -> cache)."""
    summary, hists, decoded_val = evaluate_dataset(model, normaliser, measure, x_val)
    arrays = {f"validation/{k}": v for k, v in hists.items()}
    latent_size = model.latent
    train_norm, val_norm = normaliser.transform(x_train), normaliser.transform(x_val)
    pca_norm = pca_reconstruction(train_norm, val_norm, latent_size)
    pca_physical = measure.restore(normaliser.inverse_transform(pca_norm))
    truncated = x_val.astype(np.float16).astype(np.float32)
    summary["baselines"] = {
        "pca": {
            "mse": float(np.mean((pca_norm - val_norm) ** 2, dtype=np.float64)),
            "reference_mse": measure.reference_mse(x_val, pca_physical),
            "residuals": residuals(x_val, pca_physical, measure),
        },
        "float16": {
            "mse": float(np.mean((normaliser.transform(truncated) - val_norm) ** 2, dtype=np.float64)),
            "reference_mse": measure.reference_mse(x_val, truncated),
            "residuals": residuals(x_val, truncated, measure),
            "bytes_per_jet": 2 * x_val.shape[1],
        },
        "truncation": truncation_baselines(x_val, normaliser, measure),
        "peers": peer_baselines(x_val, measure, bound),
    }
    summary["bounded"] = bounded_compression(model, normaliser, measure, x_train, x_val, bound)
    device = next(model.parameters()).device
    val_tensor = torch.from_numpy(val_norm).to(device)
    latent = in_batches(model, val_tensor, "encode")
    from_half = in_batches(model, latent.half().float(), "decode")
    summary["compression"] = compression(x_val, latent.cpu().numpy(), model_bytes(model, normaliser, measure))
    summary["compression"]["mse_float16_latent"] = float(((from_half - val_tensor) ** 2).mean(dtype=torch.float64))
    summary["timing"] = timing(model, val_tensor, timing_repeats)
    evaluation = {"validation": summary}
    background = measure.reference_errors(x_val, decoded_val)
    for label, folder in signals.items():
        signal = open_cache(folder)
        x_signal = signal.matrix()
        evaluation[label], signal_arrays, decoded = evaluate_dataset(model, normaliser, measure, x_signal, signal.event, signal.rank)
        evaluation[label]["source"] = signal.meta.get("source", "")
        evaluation[label]["anomaly"], curve = anomaly(background, measure.reference_errors(x_signal, decoded))
        arrays.update({f"{label}/{k}": v for k, v in (signal_arrays | curve).items()})
    return evaluation, arrays


def validation_metrics(validation: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a validation evaluation that tables rank and show: reference MSEs, residual widths, fractions within."""
    stats = validation.get("residuals", {})
    metrics = {
        "pca_val_mse": validation.get("baselines", {}).get("pca", {}).get("mse", float("nan")),
        "reference_mse": validation.get("reference_mse", float("nan")),
        "pca_reference_mse": validation.get("baselines", {}).get("pca", {}).get("reference_mse", float("nan")),
        "residual_width": {name: r["width"] for name, r in stats.items() if "width" in r},
        "within_1pct": {name: r["within_1pct"] for name, r in stats.items() if "within_1pct" in r},
        "bytes_per_jet": validation.get("bounded", {}).get("bytes_per_jet", float("nan")),
    }
    within = {name: r["within_tolerance"] for name, r in stats.items() if "within_tolerance" in r}
    return metrics | ({"within_tolerance": within, "tolerance": {n: stats[n]["tolerance"] for n in within}} if within else {})


def anomaly_metrics(evaluation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Signal label -> AUC and rejections of the reconstruction error against the validation (background) jets."""
    return {label: result["anomaly"] for label, result in evaluation.items() if result.get("anomaly")}


def _reference_record(measure: JetMeasure) -> dict[str, Any]:
    """What a trial keeps of its comparison space: the fitted reference normaliser and the tolerances."""
    return {"normaliser": measure.reference.to_dict() if measure.reference else None, "tolerance": measure.tolerance}


def load_trained(path: Path) -> tuple[TrialRecord, Autoencoder, Normaliser, JetMeasure]:
    """A stored trial's record and its model (best weights, eval mode), normaliser and measure.

    The variable set is the one stored with the trial (older files: looked up by its name).
    """
    record = read_trial(path)
    if not record.weights:
        raise ValueError(f"{path}: trial {record.state} without weights")
    varset = load_varset(record.varset or record.config["data"]["varset"])
    record.varset = varset.mapping()  # an older file gains the resolved set when it is written again
    discrete = {k.removeprefix("discrete/"): v for k, v in record.arrays.items() if k.startswith("discrete/")}
    model, normaliser, measure = assemble_trained(
        varset, record.config["model"], record.weights, record.normaliser, record.reference, discrete
    )
    return record, model, normaliser, measure


def assemble_trained(
    varset: VarSet,
    model_config: dict[str, Any],
    weights: dict[str, np.ndarray],
    normaliser: dict[str, Any],
    reference: dict[str, Any],
    discrete: dict[str, np.ndarray],
) -> tuple[Autoencoder, Normaliser, JetMeasure]:
    """A trained model (eval mode), its normaliser and measure from their stored parts (a trial file's, a bundle's)."""
    model = build_model(ModelConfig.model_validate(model_config), len(varset.names))
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    model.eval()
    stored = reference.get("normaliser")
    measure = JetMeasure.of(varset, discrete, Normaliser.from_dict(stored) if stored else None, reference.get("tolerance"))
    return model, Normaliser.from_dict(normaliser), measure


def evaluate_stored(
    path: Path, label: str, table: JetTable, split: bool, timing_repeats: int = 20, signals: dict[str, str] | None = None
) -> dict[str, Any]:
    """(Re)evaluate a stored trial and write the result into its file under `label`.

    With `split`, `table` is the trial's own dataset: its validation split is
    evaluated with baselines, compression and timing as at the end of training,
    and the trial's metrics follow (a file without a reference space gets the
    'auto' one, fitted on its training split). Otherwise every jet of `table` is
    evaluated (e.g. a signal sample never seen).
    """
    record, model, normaliser, measure = load_trained(path)
    x = table.matrix()
    if split:
        data = record.config["data"]
        x = x[: data["max_jets"]] if data["max_jets"] else x
        train_rows, val_rows = split_indices(len(x), data["val_fraction"], data["split_seed"])
        if measure.reference is None:
            measure.reference = make_reference("auto", load_varset(record.varset), x[train_rows])
            record.reference = _reference_record(measure)
        evaluated, arrays = evaluate_trial(model, normaliser, measure, x[train_rows], x[val_rows], timing_repeats, signals or {})
        summary = evaluated.pop("validation")
        record.metrics.update(validation_metrics(summary))
        record.evaluation.update(evaluated)
        record.metrics["anomaly"] = anomaly_metrics(evaluated)
        arrays = {(f"{label}/{k.split('/', 1)[1]}" if k.startswith("validation/") else k): v for k, v in arrays.items()}
    else:
        summary, hists, _ = evaluate_dataset(model, normaliser, measure, x, table.event, table.rank)
        arrays = {f"{label}/{k}": v for k, v in hists.items()}
    summary["source"] = table.meta.get("source", "")
    record.evaluation[label] = summary
    record.arrays.update(arrays)
    write_trial(path, record)
    return summary


def _provenance(spec: TrialSpec, data_meta: dict, device: torch.device) -> dict:
    return {
        **spec.provenance,
        "hpcsweep": __version__,
        "packages": package_versions(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "device": str(device),
        "gpus_allocated": allocated_gpus(),
        "threads": torch.get_num_threads(),
        "data_source": data_meta.get("source", ""),
        "data_checksum": data_meta.get("checksum", ""),
        "data_files": data_meta.get("files", []),
        "data_tree": data_meta.get("tree", ""),
        "data_jets": data_meta.get("n_jets"),
        "data_cuts": data_meta.get("cuts", []),
    }
