"""One trial from start to file: train (or resume), evaluate, write; and stored trials loaded or evaluated again."""

from __future__ import annotations

import math
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hpcsweep import __version__
from hpcsweep.allocation import allocated_cores, allocated_gpus
from hpcsweep.codec import Compressor
from hpcsweep.codec.coder import OlderCompressor
from hpcsweep.config import CodecConfig, ModelConfig, TrialSpec
from hpcsweep.data.normalize import Normaliser, make_normaliser, make_reference
from hpcsweep.data.profile import compare, profile_of
from hpcsweep.data.read import JetTable, open_cache
from hpcsweep.data.varset import VarSet, load_varset
from hpcsweep.errors import Log
from hpcsweep.provenance import package_versions
from hpcsweep.states import TrialState
from hpcsweep.store import TrialRecord, checkpoints_dir, clear_progress, close_attempt, read_trial, write_ended, write_progress, write_trial
from hpcsweep.trial.compressor import compressor_metrics, evaluate_compressor, fit_trial_compressor
from hpcsweep.trial.evaluate import (
    WITHIN,
    JetMeasure,
    anomaly,
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
from hpcsweep.trial.train import Report, TrainResult, select_device, train


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-seed train/validation split of n jets (sorted indices, validation = first share of a permutation)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(n * val_fraction)))
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def checkpoint_path(spec: TrialSpec) -> Path:
    return checkpoints_dir(Path(spec.results_dir)) / f"{spec.trial_id}.pt"


def run_trial(
    spec: TrialSpec,
    threads: int | None = None,
    log: Log = print,
    report: Report | None = None,
    still_ours: Callable[[], bool] | None = None,
) -> TrialState | None:
    """Train (or resume) and evaluate one trial, fit and measure its compressor, write its file, and return its state
    (see `train` for `report`); None when another worker took the trial over. A trial of model kind `codec` trains
    no network: its compressor is all it makes.

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
    x_train, x_val = x[train_rows], x[val_rows]
    network = config.model.kind if config.model.autoencoder else "the compressor alone"
    log(f"trial {spec.trial_id}: {network}, {len(x_train):,} train / {len(x_val):,} val jets, {x.shape[1]} variables, "
        f"z={config.model.latent}, {torch.get_num_threads()} threads on {device}")  # fmt: skip
    measure = JetMeasure.from_training(varset, x_train, spec.evaluation.reference, spec.evaluation.tolerances(varset.names))
    checkpoint = checkpoint_path(spec)
    model, normaliser, result = None, None, TrainResult(TrialState.DONE, math.nan, 0, 0, 0.0)
    if config.model.autoencoder:
        normaliser = make_normaliser(config.data.normalisation, varset).fit(x_train)
        torch.manual_seed(config.train.seed)
        model = build_model(config.model, x.shape[1], config.train.rate_lambda).to(device)
        result = train(
            model,
            torch.from_numpy(normaliser.transform(x_train)).to(device),
            torch.from_numpy(normaliser.transform(x_val)).to(device),
            config.train,
            checkpoint,
            spec.checkpoint_every,
            log,
            report,
            lambda *where: write_progress(results, spec.trial_id, *where),
            spec.compile,
        )
    evaluation: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {f"discrete/{name}": values for name, values in measure.allowed.items()}
    compressor: Compressor | None = None
    if result.state == TrialState.DONE:  # a pruned trial is not worth the evaluation, a diverged one has no model
        if model is not None:
            model.load_state_dict(result.best_state)
            model.eval()
        compressor = fit_trial_compressor(config.codec, varset, x_train, model, normaliser, config.train.seed, log)
        evaluation, evaluated = evaluate_trial(
            model, normaliser, measure, x_train, x_val, spec.evaluation.timing_repeats, spec.signals, spec.evaluation.max_error, compressor
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
    compressor_meta, compressor_arrays = compressor.state() if compressor is not None else ({}, {})
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
            normaliser=normaliser.to_dict() if normaliser is not None else {},
            varset=varset.mapping(),
            reference=_reference_record(measure),
            provenance=_provenance(spec, table.meta, device) | {"training_profile": profile_of(x_train, varset.names)},
            evaluation=evaluation,
            arrays=arrays,
            compressor=compressor_meta,
            codec=compressor_arrays,
        ),
        result.state,
    )
    close_attempt(results, spec.trial_id, result.state)
    checkpoint.unlink(missing_ok=True)
    clear_progress(results, spec.trial_id)
    log(f"trial {spec.trial_id}: {result.state}, {_outcome(metrics)}, {result.train_time_s:.1f} s")
    return result.state


def _outcome(metrics: dict[str, Any]) -> str:
    """The trial's numbers in one line: its network's loss (and PCA's), and its compressor's bytes per jet."""
    parts = []
    if math.isfinite(metrics["best_val_mse"]):
        parts.append(f"best val loss {metrics['best_val_mse']:.4g} at epoch {metrics['best_epoch']} (PCA {metrics['pca_val_mse']:.4g})")
    if math.isfinite(metrics["bytes_per_jet"]):
        parts.append(f"{metrics['bytes_per_jet']:.2f} bytes/jet compressed")
    return ", ".join(parts) or "no result"


def evaluate_trial(
    model: Autoencoder | None,
    normaliser: Normaliser | None,
    measure: JetMeasure,
    x_train: np.ndarray,
    x_val: np.ndarray,
    timing_repeats: int,
    signals: dict[str, str],
    bound: float = WITHIN,
    compressor: Compressor | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The validation split with baselines, compression and timing (an autoencoder's), the compressor really coding
    and decoding it at `bound`, and the peers at the same bound; then each signal sample (label -> cache)."""
    summary: dict[str, Any] = {"n_jets": len(x_val)}
    arrays: dict[str, np.ndarray] = {}
    decoded_val = None
    if model is not None:
        assert normaliser is not None, "an autoencoder comes with its normaliser"
        summary, arrays, decoded_val = autoencoder_evaluation(model, normaliser, measure, x_train, x_val, timing_repeats)
    summary.setdefault("baselines", {})["peers"] = peer_baselines(x_val, measure, bound)
    if compressor is not None:
        summary["compressor"] = evaluate_compressor(compressor, x_val, bound, measure)
    evaluation = {"validation": summary}
    if model is None or decoded_val is None:
        return evaluation, arrays
    assert normaliser is not None
    background = measure.reference_errors(x_val, decoded_val)
    for label, folder in signals.items():
        signal = open_cache(folder)
        x_signal = signal.matrix()
        evaluation[label], signal_arrays, decoded = evaluate_dataset(model, normaliser, measure, x_signal, signal.event, signal.rank)
        evaluation[label]["source"] = signal.meta.get("source", "")
        evaluation[label]["anomaly"], curve = anomaly(background, measure.reference_errors(x_signal, decoded))
        arrays.update({f"{label}/{k}": v for k, v in (signal_arrays | curve).items()})
    return evaluation, arrays


def autoencoder_evaluation(
    model: Autoencoder, normaliser: Normaliser, measure: JetMeasure, x_train: np.ndarray, x_val: np.ndarray, timing_repeats: int
) -> tuple[dict[str, Any], dict[str, np.ndarray], np.ndarray]:
    """An autoencoder on the validation split: MSE and residuals, PCA, float16 and truncation baselines, latent sizes, timing;
    the arrays to store (histograms, correlations) and the decoded jets."""
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
    }
    device = next(model.parameters()).device
    val_tensor = torch.from_numpy(val_norm).to(device)
    latent = in_batches(model, val_tensor, "encode")
    from_half = in_batches(model, latent.half().float(), "decode")
    summary["compression"] = compression(x_val, latent.cpu().numpy(), model_bytes(model, normaliser, measure))
    summary["compression"]["mse_float16_latent"] = float(((from_half - val_tensor) ** 2).mean(dtype=torch.float64))
    summary["timing"] = timing(model, val_tensor, timing_repeats)
    return summary, arrays, decoded_val


def validation_metrics(validation: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a validation evaluation that tables rank and show: reference MSEs, residual widths, fractions within."""
    stats = validation.get("residuals", {})
    metrics = {
        "pca_val_mse": validation.get("baselines", {}).get("pca", {}).get("mse", float("nan")),
        "reference_mse": validation.get("reference_mse", float("nan")),
        "pca_reference_mse": validation.get("baselines", {}).get("pca", {}).get("reference_mse", float("nan")),
        "residual_width": {name: r["width"] for name, r in stats.items() if "width" in r},
        "within_1pct": {name: r["within_1pct"] for name, r in stats.items() if "within_1pct" in r},
        **compressor_metrics(validation),
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
        raise ValueError(
            f"{path}: trial {record.state} without weights" + (" (model kind codec: no network)" if _codec_only(record) else "")
        )
    varset = _stored_varset(record)
    model, normaliser, measure = assemble_trained(
        varset, record.config, record.weights, record.normaliser, record.reference, _discrete(record)
    )
    return record, model, normaliser, measure


def stored_compressor(record: TrialRecord) -> Compressor | None:
    """The compressor a trial fitted (None for a file written before trials fitted one or fitted one whose predictions
    were floating point, or without a result)."""
    try:
        return Compressor.from_state(record.compressor, record.codec) if record.compressor else None
    except OlderCompressor:
        return None


def assemble_trained(
    varset: VarSet,
    config: dict[str, Any],
    weights: dict[str, np.ndarray],
    normaliser: dict[str, Any],
    reference: dict[str, Any],
    discrete: dict[str, np.ndarray],
) -> tuple[Autoencoder, Normaliser, JetMeasure]:
    """A trained model (eval mode), its normaliser and measure from their stored parts (a trial file's, a bundle's);
    `config` is the trial's (its model, and the weight of a rate term)."""
    rate = config.get("train", {}).get("rate_lambda", 0.0)
    model = build_model(ModelConfig.model_validate(config["model"]), len(varset.names), rate)
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in weights.items()})
    model.eval()
    return model, Normaliser.from_dict(normaliser), _measure(varset, reference, discrete)


def _measure(varset: VarSet, reference: dict[str, Any], discrete: dict[str, np.ndarray]) -> JetMeasure:
    stored = reference.get("normaliser")
    return JetMeasure.of(varset, discrete, Normaliser.from_dict(stored) if stored else None, reference.get("tolerance"))


def _stored_varset(record: TrialRecord) -> VarSet:
    varset = load_varset(record.varset or record.config["data"]["varset"])
    record.varset = varset.mapping()  # an older file gains the resolved set when it is written again
    return varset


def _discrete(record: TrialRecord) -> dict[str, np.ndarray]:
    return {k.removeprefix("discrete/"): v for k, v in record.arrays.items() if k.startswith("discrete/")}


def _codec_only(record: TrialRecord) -> bool:
    return record.config.get("model", {}).get("kind") == "codec"


def evaluate_stored(
    path: Path,
    label: str,
    table: JetTable,
    split: bool,
    timing_repeats: int = 20,
    signals: dict[str, str] | None = None,
    background: JetTable | None = None,
) -> dict[str, Any]:
    """(Re)evaluate a stored trial and write the result into its file under `label`.

    With `split`, `table` is the trial's own dataset: its validation split is
    evaluated with baselines, its compressor (the stored one; fitted now for a
    file written before trials fitted one) and timing as at the end of training,
    and the trial's metrics follow (a file without a reference space gets the
    'auto' one, fitted on its training split). Otherwise every jet of `table` is
    evaluated (e.g. a signal sample never seen) by the trial's network; given the
    trial's own dataset as `background`, `table` is a signal: its AUC and
    rejections against the validation split are computed and stored, as a sweep's.
    The trial's anomaly metrics always follow its evaluations.
    """
    record = read_trial(path)
    varset = _stored_varset(record)
    model, normaliser, measure = None, None, _measure(varset, record.reference, _discrete(record))
    if record.weights:
        model, normaliser, measure = assemble_trained(
            varset, record.config, record.weights, record.normaliser, record.reference, _discrete(record)
        )
    elif not (split and _codec_only(record)):
        raise ValueError(
            f"{path}: trial {record.state} without weights" + (" (model kind codec: no network)" if _codec_only(record) else "")
        )
    x, notes = table.matrix(), []
    if split:
        x, train_rows, val_rows = _split_of(record, x)
        if measure.reference is None:
            measure.reference = make_reference("auto", varset, x[train_rows])
            record.reference = _reference_record(measure)
        compressor = stored_compressor(record)
        if compressor is None:
            codec = CodecConfig.model_validate(record.config.get("codec", {}))
            compressor = fit_trial_compressor(
                codec, varset, x[train_rows], model, normaliser, record.config["train"]["seed"], lambda _: None
            )
            record.compressor, record.codec = compressor.state()
        bound = record.evaluation.get("validation", {}).get("compressor", {}).get("bound", compressor.bounds[0])
        evaluated, arrays = evaluate_trial(
            model, normaliser, measure, x[train_rows], x[val_rows], timing_repeats, signals or {}, bound, compressor
        )
        summary = evaluated.pop("validation")
        record.metrics.update(validation_metrics(summary))
        record.evaluation.update(evaluated)
        arrays = {(f"{label}/{k.split('/', 1)[1]}" if k.startswith("validation/") else k): v for k, v in arrays.items()}
        record.provenance.setdefault("training_profile", profile_of(x[train_rows], varset.names))
    else:
        assert model is not None and normaliser is not None  # refused above without weights
        what = f"{table.meta.get('source') or label}: compared with the training jets of trial {record.trial_id}"
        notes = compare(record.provenance.get("training_profile", {}), x, varset, what)
        summary, hists, decoded = evaluate_dataset(model, normaliser, measure, x, table.event, table.rank)
        arrays = {f"{label}/{k}": v for k, v in hists.items()}
        if background is not None:
            own, _, val_rows = _split_of(record, background.matrix())
            _, _, decoded_val = evaluate_dataset(model, normaliser, measure, own[val_rows])
            scores = measure.reference_errors(own[val_rows], decoded_val), measure.reference_errors(x, decoded)
            summary["anomaly"], curve = anomaly(*scores)
            arrays |= {f"{label}/{k}": v for k, v in curve.items()}
    summary["source"] = table.meta.get("source", "")
    if notes:
        summary["compatibility"] = notes
    record.evaluation[label] = summary
    record.metrics["anomaly"] = anomaly_metrics(record.evaluation)
    record.arrays.update(arrays)
    write_trial(path, record)
    return summary


def evaluate_signals(path: Path, dataset: str, signals: dict[str, str]) -> None:
    """Evaluate a stored trial on more signal samples (label -> cache folder) against its validation jets (from its
    dataset's cache), as a sweep does at the end of training: for a signal added to a finished sweep."""
    background = open_cache(dataset)
    for label, folder in signals.items():
        evaluate_stored(path, label, open_cache(folder), split=False, background=background)


def _split_of(record: TrialRecord, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A trial's own jets as it used them (at most `max_jets`), with its training and validation rows."""
    data = record.config["data"]
    x = x[: data["max_jets"]] if data["max_jets"] else x
    train_rows, val_rows = split_indices(len(x), data["val_fraction"], data["split_seed"])
    return x, train_rows, val_rows


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
