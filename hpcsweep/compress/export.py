"""Export: a sweep's trial -> a bundle, with a compressor fitted on the trial's own training jets per bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hpcsweep.compress.bundle import bound_label, write_bundle
from hpcsweep.errors import UserError
from hpcsweep.files import atomic
from hpcsweep.states import TrialState

DEFAULT_BOUNDS = (0.01, 0.001)


def best_trial(results_dir: Path, latent: int) -> str:
    """The id of the best finished trial at latent dimension `latent`, by the sweep's own ranking."""
    from hpcsweep.review import select
    from hpcsweep.review.tables import trials_frame
    from hpcsweep.store import scan

    selection = select(results_dir, scan(results_dir)[0])
    frame = trials_frame(selection.summaries, selection.ranking)
    done = frame[(frame["state"] == TrialState.DONE) & frame["rank"].notna()]
    if not len(done):
        raise UserError(f"{results_dir}: no finished trial to export; run 'hpcsweep sweep {results_dir.name}' first")
    at = done[done["latent"] == latent]
    if not len(at):
        raise UserError(
            f"{results_dir}: no finished trial at --z {latent}; finished: z = {', '.join(map(str, sorted(set(done['latent']))))}"
        )
    return str(at["trial_id"].iloc[0])  # the frame is sorted by rank


def training_jets(config: dict) -> tuple[np.ndarray, dict]:
    """The training split a trial was trained on (physical units), and its dataset's description."""
    from hpcsweep.config import DataConfig
    from hpcsweep.data import prepare
    from hpcsweep.data.read import data_version, open_cache
    from hpcsweep.trial import split_indices

    data = DataConfig.model_validate(config["data"])
    table = open_cache(prepare(data))
    trained_on, now = config.get("data_version", ""), data_version(table.meta)
    if trained_on and trained_on != now:
        raise UserError(f"the trial's data changed since it was trained (version {trained_on}, now {now}): its training jets are gone")
    x = table.matrix(slice(0, data.max_jets))
    train_rows, _ = split_indices(len(x), data.val_fraction, data.split_seed)
    return x[train_rows], table.meta


def export_bundle(
    trial_file: Path, output: Path, bounds: tuple[float, ...] = DEFAULT_BOUNDS, steps: int = 600, progress: bool = True
) -> str:
    """Write the bundle of one trial (its model, tables and one compressor per bound) to `output`; return its checksum."""
    from tqdm import tqdm

    from hpcsweep.compress.fit import fit_codec
    from hpcsweep.data.varset import load_varset
    from hpcsweep.trial import load_trained

    try:
        record = load_trained(trial_file)[0]
    except ValueError as err:
        raise UserError(f"{trial_file}: {err}") from None
    x_train, meta = training_jets(record.config)
    varset = load_varset(record.varset)
    codecs = []
    for bound in bounds:
        with tqdm(total=len(varset.names), desc=f"fitting the compressor at {bound_label(bound)}", unit="var", disable=not progress) as bar:
            codecs.append(
                fit_codec(varset, x_train, bound, steps=steps, seed=record.config["train"]["seed"], progress=lambda _: bar.update())
            )
    texts = {
        "trial": {
            "trial_id": record.trial_id,
            "sweep": record.sweep,
            "latent": record.config["model"]["latent"],
            "metrics": record.metrics,
        },
        "varset": varset.mapping(),
        "config": record.config,
        "normaliser": {"model": record.normaliser, "reference": record.reference},
        "data": {"checksum": meta.get("checksum", ""), "source": meta.get("source", ""), "training_jets": len(x_train)},
    }
    discrete = {k.removeprefix("discrete/"): v for k, v in record.arrays.items() if k.startswith("discrete/")}
    return write_bundle(output, texts, record.weights, discrete, codecs)


def export_onnx(trial_file: Path, stem: Path) -> tuple[Path, Path]:
    """The trial's encoder and decoder as `<stem>.encoder.onnx` (input `x`: jets x variables in the trial's normalised
    space -> `latent`) and `<stem>.decoder.onnx` (`latent` -> `x`), with a dynamic batch axis `jets`.

    The normalisation stays a separate step (its parameters are the bundle's `normaliser`, docs/compression.md):
    the variable set's transforms and the fitted centre/scale are applied before the encoder and inverted after
    the decoder, and discrete variables rounded to their table, as hpcsweep does.
    """
    import importlib.util

    if importlib.util.find_spec("onnxscript") is None:
        raise UserError("--onnx needs the optional extra 'onnx': pip install 'hpcsweep[onnx]' (make installs it)")
    import torch

    from hpcsweep.trial import load_trained

    record, model, _, _ = load_trained(trial_file)
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
    return paths
