"""A stored trial evaluated again (`hpcsweep evaluate`): which jets, under which label, against which background.

Its own validation split (its earlier signal samples with it, read again from their files), another file read with
its variable set, or a signal: a file, or for a trial of generated data a generated Z' sample of a given mass, scored
against its validation jets as in a sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpcsweep.config import DataConfig
from hpcsweep.data import prepare, trained_data
from hpcsweep.data.read import open_cache
from hpcsweep.errors import UserError
from hpcsweep.store import read_summary, read_trial
from hpcsweep.trial.run import evaluate_stored


def reevaluate(
    path: Path, source: str | None = None, signal: str | None = None, events: int = 2000, label: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Evaluate the trial file `path` on `source` (a file), on `signal` (a file, or a Z' mass in GeV: `events` events
    generated), else on its own validation split; written into the file under `label` (default: validation,
    zprime<GEV> or the file's stem). Returns the label and the evaluation's summary."""
    if not path.is_file():
        raise UserError(f"{path}: no such trial file (they live in results/<sweep>/trials/)")
    config = read_summary(path)["config"]
    folder, label, signals = _jets(path, config, source, signal, events, label)
    background = open_cache(_own_data(path, config)) if signal else None  # a signal is scored against the validation jets
    try:
        return label, evaluate_stored(path, label, open_cache(folder), not (source or signal), signals=signals, background=background)
    except ValueError as err:
        raise UserError(str(err)) from None


def _jets(
    path: Path, config: dict[str, Any], source: str | None, signal: str | None, events: int, label: str | None
) -> tuple[Path, str, dict[str, str] | None]:
    """The cache of the jets to evaluate on, their label, and (for the validation split) the trial's earlier signal
    samples, which are evaluated again with it."""
    data = DataConfig.model_validate(config["data"])
    other = source or (signal if signal and not _is_number(signal) else None)
    if other:  # another file, read with the trial's variable set
        return _read_as(data, other), label or Path(other).stem, None
    if signal:
        if not data.generated:
            raise UserError(
                f"{path}: trial of file data ({data.source}): --signal {signal} would be a generated Z' sample, which a model "
                "of other jets was not trained to compare with; give a signal file instead: --signal FILE"
            )
        mass = float(signal)
        return (
            prepare(data.model_copy(update={"process": "zprime", "zprime_mass": mass, "events": events})),
            label or f"zprime{mass:g}",
            None,
        )
    folder = _own_data(path, config)
    signals = {  # the samples it was evaluated on before, read again from their files: anomaly figures of merit
        name: str(_read_as(data, result["source"]))
        for name, result in read_trial(path, weights=False).evaluation.items()
        if name != "validation" and Path(result.get("source") or "/nonexistent").is_file()
    }
    return folder, label or "validation", signals


def _read_as(data: DataConfig, source: str) -> Path:
    """The cache of `source` read as the trial's own data (its variable set, cuts and checks)."""
    return prepare(DataConfig.model_validate({**data.model_dump(), "source": source}, context={"base": Path.cwd()}))


def _own_data(path: Path, config: dict[str, Any]) -> Path:
    """The cache of the data a trial trained on (`data.trained_data`), its refusal naming the trial file."""
    what = "its validation split cannot be rebuilt; evaluate another file with --source FILE"
    try:
        return trained_data(config, read_summary(path).get("provenance", {}), what)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
