"""Export a sweep's trials to the trackers physicists already watch: a TensorBoard log dir or a local MLflow store.

Every trial file of the folder becomes one run: its per-epoch curves (`epoch/train_loss`, `epoch/val_loss`,
`epoch/lr`, the epoch as step), its final metrics (flattened to dotted keys, finite numbers only, as `final/<key>`),
its resolved config as hyperparameters (dotted keys) and its state. TensorBoard groups its charts by the name before
the '/', in name order: the curves come before the final metrics. Failed trials are exported too, with their state and
no metrics, so that a tracker shows what failed; trials without a file (pending, running) have nothing to show.

An export is written into a fresh temporary folder beside its destination and swapped into place, so running it
again replaces the runs of the last export instead of adding to them, and a failed export leaves the last one as it
was. Only a folder that an earlier export of the same kind made is ever replaced (it holds `MARKER`).

The libraries (extra `tracking`) are imported inside the functions: the review stays importable without them.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpcsweep.errors import UserError
from hpcsweep.files import temp_path
from hpcsweep.states import TrialState
from hpcsweep.store import TrialRecord, read_trial, scan, trial_path

#: Where each target goes by default, inside the sweep's results folder.
DEFAULT_FOLDERS = {"tensorboard": "tensorboard", "mlflow": "mlruns"}
#: The modules each target writes with; a missing one is reported with the extra that installs it.
MODULES = {"tensorboard": ("tensorboard.summary.writer.event_file_writer", "tensorboard.plugins.hparams.summary_v2"), "mlflow": ("mlflow",)}
INSTALL = "pip install 'hpcsweep[tracking]'"
#: The SQLite file of an MLflow export (MLflow's file store is in maintenance mode and refused by default).
MLFLOW_DB = "mlflow.db"
#: The file that marks a folder as an export of hpcsweep (its content: the target), so that it may be replaced.
MARKER = ".hpcsweep-export"
#: The groups of the scalars' names: the per-epoch curves and the final metrics ('epoch/val_loss', 'final/best_val_mse').
CURVES, FINAL = "epoch", "final"

#: A trial's state as each tracker says it (both also get the state itself, as a tag or a hyperparameter).
TENSORBOARD_STATUS = {
    TrialState.DONE: "STATUS_SUCCESS",
    TrialState.PRUNED: "STATUS_SUCCESS",
    TrialState.DIVERGED: "STATUS_FAILURE",
    TrialState.FAILED: "STATUS_FAILURE",
}
MLFLOW_STATUS = {TrialState.DONE: "FINISHED", TrialState.PRUNED: "KILLED", TrialState.DIVERGED: "FAILED", TrialState.FAILED: "FAILED"}

ParamValue = bool | int | float | str


@dataclass(frozen=True)
class TrackedTrial:
    """What a tracker is told about one trial: read once from its file, written by either target."""

    trial_id: str
    sweep: str
    state: str
    failure: str
    data_version: str
    params: dict[str, ParamValue]  # the resolved config, dotted keys
    curves: dict[str, list[tuple[int, float]]]  # history name -> (epoch from 1, value), finite values only
    metrics: dict[str, float]  # final metrics, dotted keys, finite values only
    start: float  # seconds since the epoch: the last attempt's start and end
    end: float

    @property
    def run_name(self) -> str:
        """z and lr first: TensorBoard names a curve by its run, and they are what a reader looks for."""
        return f"z{self.params['model.latent']}-lr{self.params['train.lr']:g}-{self.trial_id}"


@dataclass(frozen=True)
class Exported:
    """What an export wrote, for the command to report."""

    target: str
    folder: Path
    states: dict[str, int]  # runs written, by trial state
    unreadable: list[str]  # trial files left out: '<file>: <why>'

    @property
    def open_with(self) -> str:
        """The command that shows the export."""
        if self.target == "mlflow":
            return f"mlflow ui --backend-store-uri {_sqlite_uri(self.folder)}"
        return f"tensorboard --logdir {self.folder}"


def export_tracking(results_dir: Path, target: str, folder: Path | None = None) -> Exported:
    """Write every trial file of `results_dir` as a run of `target` ('tensorboard' or 'mlflow') into `folder`
    (default: `results_dir/tensorboard` or `results_dir/mlruns`), replacing an earlier export there."""
    _check_installed(target)
    trials, unreadable = _read_trials(results_dir)
    if not trials:
        raise UserError(f"{results_dir}: no readable trial files to export")
    folder = Path(folder) if folder is not None else results_dir / DEFAULT_FOLDERS[target]
    with _swapped_in(folder, target) as fresh:
        if target == "mlflow":
            _write_mlflow(trials, fresh, experiment=results_dir.name, artifacts=folder / "artifacts")
        else:
            _write_tensorboard(trials, fresh)
    return Exported(target, folder, dict(Counter(trial.state for trial in trials)), unreadable)


def _check_installed(target: str) -> None:
    """One line naming the extra, instead of a traceback, when the target's library is missing."""
    for module in MODULES[target]:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise UserError(f"--to {target} needs {err.name or module}, which is not installed; install it with: {INSTALL}") from None


def _sqlite_uri(folder: Path) -> str:
    """MLflow's address of the export's database (relative if `folder` is)."""
    return f"sqlite:///{folder / MLFLOW_DB}"


def _read_trials(results_dir: Path) -> tuple[list[TrackedTrial], list[str]]:
    """Every readable trial file of the folder (summaries from the store's scan, histories without weights)."""
    summaries, unreadable = scan(results_dir)
    return [_tracked(trial_path(results_dir, trial_id)) for trial_id in sorted(summaries)], unreadable


def _tracked(path: Path) -> TrackedTrial:
    """A trial file in the trackers' terms: flat keys, finite numbers, the times of its last attempt."""
    record = read_trial(path, weights=False)
    start, end = _times(record, path)
    return TrackedTrial(
        trial_id=record.trial_id,
        sweep=record.sweep,
        state=record.state,
        failure=record.failure,
        data_version=str(record.config.get("data_version", "")),
        params={key: _param(value) for key, value in _flatten(record.config).items()},
        curves={name: _finite_points(values) for name, values in sorted(record.history.items())},
        metrics={key: float(value) for key, value in _flatten(record.metrics).items() if _finite(value)},
        start=start,
        end=end,
    )


def _times(record: TrialRecord, path: Path) -> tuple[float, float]:
    """When the trial ran: its last attempt's start and end (the file's time for a file that keeps no attempts)."""
    last = (record.provenance.get("attempts") or [{}])[-1]
    end = float(last.get("end", path.stat().st_mtime))
    return float(last.get("start", end)), end


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one mapping with dotted keys ('model.latent'); trackers take flat names."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _param(value: Any) -> ParamValue:
    """A hyperparameter as a tracker takes it: scalars as they are, anything else (lists, null) as JSON text."""
    return value if isinstance(value, bool | int | float | str) else json.dumps(value)


def _finite(value: Any) -> bool:
    """A number a metric can hold (flags and text are not metrics; NaN and infinities plot as nothing)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _finite_points(values: Any) -> list[tuple[int, float]]:
    """(epoch, value) for each finite value, epochs counted from 1 as the trial's best_epoch is."""
    return [(epoch, float(value)) for epoch, value in enumerate(values, start=1) if math.isfinite(value)]


@contextmanager
def _swapped_in(folder: Path, target: str) -> Iterator[Path]:
    """A fresh folder to write into, which replaces `folder` when the block ends without error.

    Its name is new on every call (MLflow keeps its database connections by path), and follows `files.temp_path`,
    so that a temporary left by a killed export is recognised as one.
    """
    _check_replaceable(folder, target)
    fresh = temp_path(folder.with_name(f"{folder.name}.{uuid.uuid4().hex[:12]}"))
    fresh.mkdir(parents=True)
    try:
        yield fresh
        (fresh / MARKER).write_text(f"{target}\n")
        _swap(fresh, folder)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def _check_replaceable(folder: Path, target: str) -> None:
    """Refuse to replace anything but an empty folder or an earlier export of the same kind: `-o` may point anywhere."""
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return
    marker = folder / MARKER
    if not (marker.is_file() and marker.read_text().strip() == target):
        raise UserError(f"{folder} exists and is not a {target} export of hpcsweep (an export replaces its folder whole); give another -o")


def _swap(fresh: Path, folder: Path) -> None:
    """Put `fresh` where `folder` is: two renames (the old export is out of sight for that instant), then the old
    export is removed."""
    old = temp_path(folder.with_name(f"{folder.name}.{uuid.uuid4().hex[:12]}"))
    if folder.exists():
        os.replace(folder, old)
    os.replace(fresh, folder)
    shutil.rmtree(old, ignore_errors=True)


def _write_tensorboard(trials: list[TrackedTrial], folder: Path) -> None:
    """One run (sub-folder) per trial. No experiment summary is written: TensorBoard's HParams tab then builds its
    table from the runs, with every hyperparameter (those that differ first) and every scalar as a metric."""
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    for trial in trials:
        writer = EventFileWriter(str(folder / trial.run_name))
        try:
            for event in _tensorboard_events(trial):
                writer.add_event(event)
        finally:
            writer.close()


def _tensorboard_events(trial: TrackedTrial) -> Iterator[Any]:
    """The trial's hyperparameters (HParams session start), its curves per epoch, its final metrics and its end."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb

    hparams = trial.params | {"state": trial.state}
    yield Event(wall_time=trial.start, step=0, summary=hparams_pb(hparams, trial_id=trial.trial_id, start_time_secs=trial.start))
    for name, points in trial.curves.items():
        for epoch, value in points:
            yield Event(wall_time=trial.end, step=epoch, summary=_scalar(f"{CURVES}/{name}", value))
    for name, value in trial.metrics.items():
        yield Event(wall_time=trial.end, step=0, summary=_scalar(f"{FINAL}/{name}", value))
    yield Event(wall_time=trial.end, step=0, summary=_session_end(trial))


def _scalar(tag: str, value: float) -> Any:
    from tensorboard.compat.proto.summary_pb2 import Summary

    return Summary(value=[Summary.Value(tag=tag, simple_value=value)])


def _session_end(trial: TrackedTrial) -> Any:
    """The HParams plugin's session end: the status its table filters by (the v2 API writes none without TensorFlow)."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(status=api_pb2.Status.Value(TENSORBOARD_STATUS[TrialState(trial.state)]), end_time_secs=trial.end)
    content = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=info))
    return Summary(value=[Summary.Value(tag=metadata.SESSION_END_INFO_TAG, metadata=content, tensor=metadata.NULL_TENSOR)])


def _write_mlflow(trials: list[TrackedTrial], folder: Path, experiment: str, artifacts: Path) -> None:
    """One experiment named after the sweep, one run per trial (named by its id), in a SQLite store: no server.

    `artifacts` is recorded as the experiment's artifact location (nothing is stored there), so that MLflow does not
    make an `mlruns/` folder wherever the command ran.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # a local file conversion sends nothing anywhere
    from mlflow.tracking import MlflowClient

    with _building_database():
        client = MlflowClient(tracking_uri=_sqlite_uri(folder.resolve()))
        experiment_id = client.create_experiment(experiment, artifact_location=artifacts.resolve().as_uri())
        for trial in trials:
            run = client.create_run(experiment_id, start_time=_ms(trial.start), tags=_mlflow_tags(trial), run_name=trial.trial_id)
            client.log_batch(run.info.run_id, metrics=_mlflow_metrics(trial), params=_mlflow_params(trial))
            client.set_terminated(run.info.run_id, status=MLFLOW_STATUS[TrialState(trial.state)], end_time=_ms(trial.end))


@contextmanager
def _building_database() -> Iterator[None]:
    """While a fresh MLflow database is built: SQLite without a disk sync per statement, and MLflow's notes on making
    its tables kept quiet.

    MLflow makes its schema in some 300 statements, each synced to disk by default: seconds on a busy disk. The
    database is swapped into place only once it is whole, so those syncs protect nothing here.
    """
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def unsynced(connection: Any, _record: Any) -> None:
        if isinstance(connection, sqlite3.Connection):
            connection.execute("PRAGMA synchronous = OFF")

    notes = logging.getLogger("mlflow.store.db.utils")
    level = notes.level
    notes.setLevel(logging.WARNING)
    event.listen(Engine, "connect", unsynced)
    try:
        yield
    finally:
        event.remove(Engine, "connect", unsynced)
        notes.setLevel(level)


def _mlflow_tags(trial: TrackedTrial) -> dict[str, str]:
    tags = {"state": trial.state, "trial_id": trial.trial_id, "sweep": trial.sweep, "data_version": trial.data_version}
    return tags | ({"failure": trial.failure} if trial.failure else {})


def _mlflow_params(trial: TrackedTrial) -> list[Any]:
    from mlflow.entities import Param

    return [Param(_mlflow_key(key), str(value)) for key, value in trial.params.items()]


def _mlflow_metrics(trial: TrackedTrial) -> list[Any]:
    """The curves with the epoch as step, and the final metrics at step 0."""
    from mlflow.entities import Metric

    stamp = _ms(trial.end)
    curves = [
        Metric(_mlflow_key(f"{CURVES}/{name}"), value, stamp, epoch) for name, points in trial.curves.items() for epoch, value in points
    ]
    return curves + [Metric(_mlflow_key(f"{FINAL}/{name}"), value, stamp, 0) for name, value in trial.metrics.items()]


def _mlflow_key(key: str) -> str:
    """MLflow takes letters, digits, '_-. /:' in names; a variable set may name a variable otherwise."""
    return "".join(c if c.isalnum() or c in "_-. /:" else "_" for c in key)


def _ms(seconds: float) -> int:
    return int(seconds * 1000)
