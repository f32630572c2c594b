"""The results store: one HDF5 file per trial, written atomically.

A trial file holds its full resolved config, its state (done / diverged /
failed), final metrics, per-epoch history, best weights, normaliser
parameters and provenance (versions, git commit, host, input checksum). It is
written under a temporary name in the same folder and `os.replace`d into
place, so a reader sees either no file or a whole one, and concurrent trials
never share a file. Small things live in attributes, so summaries are read
without touching weights. No torch here: weights arrive as numpy arrays.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "BEST_EFFORT")
import h5py  # noqa: E402  (after the locking mode is set)

SCHEMA_VERSION = 1
FINISHED_STATES = ("done", "diverged")
STATES = FINISHED_STATES + ("failed",)


@dataclass
class TrialRecord:
    """Everything a trial leaves behind."""

    trial_id: str
    sweep: str
    state: str
    config: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    history: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    normaliser: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    evaluation: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # "group/name" -> array (histograms, discrete tables)


def trials_dir(results_dir: Path) -> Path:
    return Path(results_dir) / "trials"


def trial_path(results_dir: Path, trial_id: str) -> Path:
    return trials_dir(results_dir) / f"{trial_id}.h5"


def write_trial(path: Path, record: TrialRecord) -> None:
    """Write `record` to `path` atomically (temporary file in the same folder, then rename)."""
    if record.state not in STATES:
        raise ValueError(f"unknown trial state {record.state!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w") as handle:
            attrs = handle.attrs
            attrs["schema_version"] = SCHEMA_VERSION
            attrs["trial_id"] = record.trial_id
            attrs["sweep"] = record.sweep
            attrs["state"] = record.state
            attrs["error"] = record.error
            attrs["config"] = json.dumps(record.config, sort_keys=True)
            attrs["provenance"] = json.dumps(record.provenance, sort_keys=True)
            attrs["normaliser"] = json.dumps(record.normaliser)
            attrs["metrics"] = json.dumps(record.metrics)
            attrs["evaluation"] = json.dumps(record.evaluation)
            for group, arrays in (("history", record.history), ("weights", record.weights), ("arrays", record.arrays)):
                node = handle.create_group(group)
                for name, array in arrays.items():
                    node.create_dataset(name, data=np.asarray(array))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_summary(path: Path) -> dict[str, Any]:
    """Id, state, config, metrics and provenance of a trial file (attributes only: fast)."""
    with h5py.File(path, "r") as handle:
        attrs = handle.attrs
        return {
            "trial_id": str(attrs["trial_id"]),
            "sweep": str(attrs["sweep"]),
            "state": str(attrs["state"]),
            "error": str(attrs["error"]),
            "config": json.loads(attrs["config"]),
            "metrics": json.loads(attrs["metrics"]),
            "provenance": json.loads(attrs["provenance"]),
        }


def read_trial(path: Path) -> TrialRecord:
    """The whole record, weights and history included."""
    summary = read_summary(path)
    with h5py.File(path, "r") as handle:
        history = {k: v[()] for k, v in handle["history"].items()}
        weights = {k: v[()] for k, v in handle["weights"].items()}
        arrays: dict[str, np.ndarray] = {}
        handle["arrays"].visititems(lambda name, node: arrays.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None)
        normaliser = json.loads(handle.attrs["normaliser"])
        evaluation = json.loads(handle.attrs["evaluation"])
    return TrialRecord(
        trial_id=summary["trial_id"],
        sweep=summary["sweep"],
        state=summary["state"],
        config=summary["config"],
        metrics=summary["metrics"],
        history=history,
        weights=weights,
        normaliser=normaliser,
        provenance=summary["provenance"],
        error=summary["error"],
        evaluation=evaluation,
        arrays=arrays,
    )


def scan(results_dir: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Summaries of every trial file in a sweep's folder, and the files that could not be read."""
    summaries: dict[str, dict[str, Any]] = {}
    unreadable: list[str] = []
    folder = trials_dir(results_dir)
    if not folder.is_dir():
        return summaries, unreadable
    for path in sorted(folder.glob("*.h5")):
        try:
            summary = read_summary(path)
        except (OSError, KeyError, ValueError) as err:
            unreadable.append(f"{path.name}: {err}")
            continue
        summaries[summary["trial_id"]] = summary
    return summaries, unreadable
