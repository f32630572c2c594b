"""Export: a sweep's trial -> a bundle, with the compressor the trial fitted and measured (or, asked for, one fitted anew)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hpcsweep.compress.bundle import bound_label, write_bundle
from hpcsweep.errors import UserError
from hpcsweep.files import atomic
from hpcsweep.states import TrialState

if TYPE_CHECKING:
    from hpcsweep.codec import Compressor
    from hpcsweep.store import TrialRecord


def best_trial(results_dir: Path, latent: int | None = None, rank_by: str | None = None) -> str:
    """The id of the best finished trial at latent dimension `latent`, by the sweep's own ranking (at 0, the
    compressor alone, by its bytes: it has no loss to rank by); or, with `rank_by`, the best of the whole sweep by
    that measure (any z, any kind)."""
    from hpcsweep.review import select
    from hpcsweep.review.tables import ranked, trials_frame
    from hpcsweep.store import scan
    from hpcsweep.sweep.rank import Ranking

    selection = select(results_dir, scan(results_dir)[0])
    ranking = Ranking(rank_by) if rank_by else Ranking("bytes") if latent == 0 else selection.ranking
    frame = trials_frame(selection.summaries, ranking)
    done = ranked(frame)
    if not len(done):
        raise UserError(f"{results_dir}: no finished trial to export" + (f" with a {ranking.noun}" if rank_by else "") +
                        f"; run 'hpcsweep sweep {results_dir.name}' first")  # fmt: skip
    if latent is None:
        return str(done.sort_values(["rank", "trial_id"])["trial_id"].iloc[0])
    at = done[done["latent"] == latent]
    if not len(at):
        raise UserError(
            f"{results_dir}: no finished trial at --z {latent}; finished: z = {', '.join(map(str, sorted(set(done['latent']))))}"
        )
    return str(at["trial_id"].iloc[0])  # the frame is sorted by rank


def trial_to_export(results_dir: Path, latent: int | None, trial_id: str | None, rank_by: str | None) -> tuple[str, Path]:
    """Trial `trial_id`, else the best trial at `latent` or by `rank_by` (`best_trial`), and its file; refused when
    the folder has no such file."""
    from hpcsweep.store import trial_path

    trial_id = trial_id or best_trial(results_dir, latent, rank_by)
    path = trial_path(results_dir, trial_id)
    if not path.is_file():
        raise UserError(f"{path}: no such trial in {results_dir}")
    return trial_id, path


def training_jets(config: dict, provenance: dict) -> tuple[np.ndarray, dict]:
    """The training split a trial was trained on (physical units), and its dataset's description (read from the
    files its `provenance` recorded, wherever this runs)."""
    from hpcsweep.config import DataConfig
    from hpcsweep.data import trained_data
    from hpcsweep.data.read import open_cache
    from hpcsweep.trial import split_indices

    data = DataConfig.model_validate(config["data"])
    table = open_cache(trained_data(config, provenance, "its training jets are gone"))
    x = table.matrix(slice(0, data.max_jets))
    train_rows, _ = split_indices(len(x), data.val_fraction, data.split_seed)
    return x[train_rows], table.meta


def export_bundle(
    trial_file: Path, output: Path, bounds: tuple[float, ...] | None = None, refit: bool = False, steps: int | None = None
) -> tuple[str, Compressor]:
    """Write the bundle of one trial (its model, tables and compressor) to `output`; return its checksum and compressor.

    The compressor is the one the trial fitted and measured, at `bounds` (default: all it holds). With `refit`
    one of the same kind is fitted anew on the trial's training jets, at `bounds` (default: the trial's), with
    `steps` per predictor (default: the trial's).
    """
    from hpcsweep.data.varset import load_varset
    from hpcsweep.store import read_trial
    from hpcsweep.trial import stored_compressor

    try:
        record = read_trial(trial_file)
    except (OSError, ValueError) as err:
        raise UserError(f"{trial_file}: {err}") from None
    if record.state != TrialState.DONE:
        raise UserError(f"{trial_file}: trial {record.trial_id} is {record.state}; only a finished trial has a model and a compressor")
    compressor = stored_compressor(record)
    meta: dict = {}
    if refit or compressor is None:
        if not refit:
            raise UserError(f"{trial_file}: trial {record.trial_id} holds no compressor (written by an older hpcsweep); "
                            "export it with --refit, which fits one on its training jets")  # fmt: skip
        compressor, meta = _refit(record, bounds, steps)
    else:
        compressor = _at(compressor, bounds, trial_file)
    varset = load_varset(record.varset or record.config["data"]["varset"])
    texts = {
        "trial": {
            "trial_id": record.trial_id,
            "sweep": record.sweep,
            "latent": record.config["model"]["latent"],
            "kind": record.config["model"]["kind"],
            "metrics": record.metrics,
            "refitted": bool(meta),
        },
        "varset": varset.mapping(),
        "config": record.config,
        "normaliser": {"model": record.normaliser, "reference": record.reference},
        "data": meta
        or {
            "checksum": record.provenance.get("data_checksum", ""),
            "source": record.provenance.get("data_source", ""),
            "training_jets": record.metrics.get("n_train"),
        },  # fmt: skip
    }
    texts["data"]["profile"] = record.provenance.get("training_profile", {})  # what `compress` and `score` compare files with
    discrete = {k.removeprefix("discrete/"): v for k, v in record.arrays.items() if k.startswith("discrete/")}
    return write_bundle(output, texts, record.weights, discrete, compressor), compressor


def _at(compressor: Compressor, bounds: tuple[float, ...] | None, trial_file: Path) -> Compressor:
    """The trial's compressor with the coders of `bounds` only (all without); a bound it lacks is refused."""
    if not bounds:
        return compressor
    missing = [b for b in bounds if not any(math.isclose(b, fitted, rel_tol=1e-9) for fitted in compressor.bounds)]
    if missing:
        raise UserError(
            f"{trial_file}: the trial's compressor was fitted at --max-error {', '.join(bound_label(b) for b in compressor.bounds)}, "
            f"not {bound_label(missing[0])}; add --refit to fit one at it (or set codec.bounds in the sweep)"
        )
    return compressor.only(list(bounds))


def _refit(record: TrialRecord, bounds: tuple[float, ...] | None, steps: int | None) -> tuple[Compressor, dict]:
    """A compressor of the trial's kind fitted anew on its training jets (its network, if any, as trained)."""
    from hpcsweep.config import CodecConfig
    from hpcsweep.data.varset import load_varset
    from hpcsweep.trial import assemble_trained
    from hpcsweep.trial.compressor import fit_trial_compressor

    codec = CodecConfig.model_validate(record.config.get("codec", {}))
    codec = codec.model_copy(update={"bounds": sorted(set(bounds or codec.bounds), reverse=True), "steps": steps or codec.steps})
    x_train, data = training_jets(record.config, record.provenance)
    varset = load_varset(record.varset or record.config["data"]["varset"])
    model, normaliser = None, None
    if record.weights:
        model, normaliser, _ = assemble_trained(varset, record.config, record.weights, record.normaliser, record.reference, {})
    compressor = fit_trial_compressor(codec, varset, x_train, model, normaliser, record.config["train"]["seed"])
    return compressor, {"checksum": data.get("checksum", ""), "source": data.get("source", ""), "training_jets": len(x_train)}


def export_onnx(trial_file: Path, stem: Path) -> tuple[Path, ...]:
    """The trial's encoder and decoder as `<stem>.encoder.onnx` (input `x`: jets x variables in the trial's normalised
    space -> `latent`) and `<stem>.decoder.onnx` (`latent` -> `x`), with a dynamic batch axis `jets`; and its anomaly
    score as `<stem>.score.onnx`, which takes a file's own columns by name (`hpcsweep.compress.onnx`).

    For the two halves the normalisation stays a separate step (its parameters are the bundle's `normaliser`,
    docs/anomaly.md): the variable set's transforms and the fitted centre/scale are applied before the encoder and
    inverted after the decoder, and discrete variables rounded to their table, as hpcsweep does.
    """
    import importlib.util

    if importlib.util.find_spec("onnxscript") is None:
        raise UserError("--onnx needs the optional extra 'onnx': pip install 'hpcsweep[onnx]' (or: make dev)")
    import torch

    from hpcsweep.compress.onnx import export_score
    from hpcsweep.data.varset import load_varset
    from hpcsweep.trial import load_trained

    record, model, normaliser, measure = load_trained(trial_file)
    n_inputs, latent = len(record.varset["variables"]), record.config["model"]["latent"]

    class Encoder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return model.encode(x)

    class Decoder(torch.nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return model.decode(z)

    paths = (stem.with_name(f"{stem.name}.encoder.onnx"), stem.with_name(f"{stem.name}.decoder.onnx"))
    halves = ((Encoder(), n_inputs, "x", "latent"), (Decoder(), latent, "latent", "x"))
    for path, (half, width, name_in, name_out) in zip(paths, halves, strict=True):
        program = torch.onnx.export(
            half.eval(),
            (torch.zeros(2, width),),
            input_names=[name_in],
            output_names=[name_out],
            dynamic_shapes=({0: torch.export.Dim("jets")},),
            dynamo=True,
            verbose=False,
        )
        assert program is not None  # the dynamo exporter always returns its program
        with atomic(path) as tmp:
            program.save(str(tmp))
    if measure.reference is None:  # a trial of an older hpcsweep without a reference space: no score to export
        return paths
    varset = load_varset(record.varset or record.config["data"]["varset"])
    return (*paths, export_score(varset, model, normaliser, measure, stem.with_name(f"{stem.name}.score.onnx")))
