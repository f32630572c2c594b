"""Anomaly scores: a bundle's AE applied to a jet file, each jet's reconstruction error written beside its branches.

The score is the one the evaluation's anomaly figures of merit use: the jet's mean squared error over the
variables in the trial's reference space, after decoding as hpcsweep does (discrete variables rounded to their
table, positive ones clipped at 0). Jets outside the variable set's selection (`VarSet.selected`: a value not
finite, a cut failed, a negative value of a variable declared positive) score NaN, as a sweep does not read them. The output is the input's tree (or table) with one more branch, `anomaly_score`, flat or jagged as
the jets are; it is written chunk by chunk (memory flat in the file size) and atomically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from hpcsweep.compress.apply import Summary
from hpcsweep.compress.bundle import Bundle
from hpcsweep.compress.io import STEP, Writer, in_set_units, model_columns, open_input, unflattened, writer_for
from hpcsweep.errors import UserError
from hpcsweep.files import atomic

SCORE = "anomaly_score"


def score_file(
    source: Path, bundle: Bundle, output: Path, tree: str | None = None, step_size: str = STEP, progress: bool = True
) -> Summary:
    """Write `source`'s branches and each jet's anomaly score to `output` (.root or .parquet)."""
    import awkward as ak
    from tqdm import tqdm

    if not bundle.has_network:
        raise UserError(f"{bundle.path}: the bundle of a trial of model kind codec holds no autoencoder to score jets with")
    score = Scorer(bundle)
    varset = bundle.varset
    jets = open_input(source, bundle, tree, "score")
    summary, started = Summary(notes=jets.notes), time.perf_counter()
    writer: Writer | None = None
    with (
        atomic(output) as tmp,
        tqdm(total=jets.file.n_entries, desc=f"scoring {jets.file.path.name}", unit="entry", disable=not progress) as bar,
    ):
        for arrays, start, stop in jets.chunks(step_size):
            if writer is None:
                header = _with_score(jets.header(arrays, bundle, 0.0))
                writer = writer_for(output)(tmp, header)
                first = next(b for b in header["branches"] if "variable" in b)
                entries_optional, size = first["absent"], first["size"]  # in every chunk
            raw, counts, _ = model_columns(arrays, jets.model)
            physical, kept = in_set_units(raw, jets.model, varset)
            scores = np.full(len(raw), np.nan, dtype=np.float32)
            scores[kept] = score(physical[kept])
            column = unflattened(ak.Array(scores), counts, entries_optional, size) if counts is not None else ak.Array(scores)
            writer.write({name: arrays[name] for name in arrays.fields} | {SCORE: column})
            summary.entries += stop - start
            summary.jets += len(raw)
            summary.lossless_jets += int((~kept).sum())
            bar.update(stop - start)
        if writer is not None:
            writer.close()
    summary.seconds = time.perf_counter() - started
    summary.total_bytes = output.stat().st_size
    if summary.lossless_jets:
        summary.notes.append(f"{summary.lossless_jets:,} jets outside the variable set's cuts (or not finite) score NaN")
    return summary


def _with_score(header: dict[str, Any]) -> dict[str, Any]:
    """The input's header with the score branch after the others, jagged as the jets are and in their counter's group
    (a flat file's jets are given a counter, n<first model branch>, so that uproot groups the two)."""
    jets = next(b for b in header["branches"] if "variable" in b)
    jets["counter"] = jets["counter"] or f"n{jets['name']}"
    header["branches"].append(
        {"name": SCORE, "dtype": "float32", "jagged": jets["jagged"], "counter": jets["counter"], "optional": False, "size": jets["size"]}
    )
    return header


class Scorer:
    """The bundle's AE, its normaliser and reference space: physical jets -> per-jet reconstruction error."""

    def __init__(self, bundle: Bundle):
        from hpcsweep.trial import assemble_trained

        texts, arrays = bundle.texts, bundle.arrays
        self.model, self.normaliser, self.measure = assemble_trained(
            bundle.varset,
            texts["config"],
            {k.removeprefix("weights/"): v for k, v in arrays.items() if k.startswith("weights/")},
            texts["normaliser"]["model"],
            texts["normaliser"]["reference"],
            {k.removeprefix("discrete/"): v for k, v in arrays.items() if k.startswith("discrete/")},
        )

    def __call__(self, physical: np.ndarray) -> np.ndarray:
        import torch

        from hpcsweep.trial.evaluate import reconstruct

        x = physical.astype(np.float32)
        with torch.no_grad():
            decoded = reconstruct(self.model, torch.from_numpy(self.normaliser.transform(x))).numpy()
        return self.measure.reference_errors(x, self.measure.restore(self.normaliser.inverse_transform(decoded)))
