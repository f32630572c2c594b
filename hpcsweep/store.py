"""The results store: one HDF5 file per trial, written atomically, and the logs of work in flight.

A trial file holds its full resolved config, its state (done / diverged /
failed), final metrics, per-epoch history, best weights, normaliser
parameters and provenance (versions, git commit, host, input checksum). It is
written under a temporary name in the same folder and `os.replace`d into
place, so a reader sees either no file or a whole one, and concurrent trials
never share a file. Small things live in attributes, so summaries are read
without touching weights. No torch here: weights arrive as numpy arrays.

Work in flight is told by two append-only logs beside the trial files:
`attempts/<id>.jsonl` (each attempt's start and end: job id, host, pid,
outcome; written only by the job running that trial) and `jobs.jsonl` (which
trials each submitted job or array task carries; written by the sweep driver).
An attempt that started and never ended belongs to a running job, or to one
that vanished (killed, node failure): the sweep asks the scheduler which.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "BEST_EFFORT")
import h5py  # noqa: E402  (after the locking mode is set)

SCHEMA_VERSION = 2  # 2: the small fields in one "summary" attribute; 1 (one attribute each) is still read
FINISHED_STATES = ("done", "diverged", "pruned")
STATES = FINISHED_STATES + ("failed",)
SUMMARY_KEYS = ("trial_id", "sweep", "state", "error", "failure", "config", "metrics", "provenance", "evaluations")


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
    failure: str = ""  # for state 'failed': error, out of memory, timeout exhausted
    varset: dict[str, Any] = field(default_factory=dict)  # the resolved variable set the trial read (a mapping)
    reference: dict[str, Any] = field(default_factory=dict)  # the fitted reference space and tolerances it was compared in

    @property
    def evaluations(self) -> dict[str, dict[str, Any]]:
        """Evaluations besides the validation split (signals, other files), in brief: what a table shows without
        opening the file's arrays (jets, source, MSEs, mean fraction within 1 %, dijet closure)."""
        return {label: _brief(summary) for label, summary in sorted(self.evaluation.items()) if label != "validation"}


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    within = [r["within_1pct"] for r in summary.get("residuals", {}).values() if "within_1pct" in r]
    dijet = summary.get("dijet", {})
    return {
        "n_jets": summary.get("n_jets"),
        "source": summary.get("source", ""),
        "mse": summary.get("mse"),
        "reference_mse": summary.get("reference_mse"),
        "within_1pct": sum(within) / len(within) if within else None,
        **{key: dijet[key] for key in ("peak_shift_pct", "width_change_pct") if key in dijet},
    }


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
            attrs["summary"] = json.dumps({key: getattr(record, key) for key in SUMMARY_KEYS}, sort_keys=True)  # one read for a scan
            for key in ("normaliser", "evaluation", "varset", "reference"):
                attrs[key] = json.dumps(getattr(record, key))
            for group, arrays in (("history", record.history), ("weights", record.weights), ("arrays", record.arrays)):
                node = handle.create_group(group)
                for name, array in arrays.items():
                    node.create_dataset(name, data=np.asarray(array))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_summary(path: Path) -> dict[str, Any]:
    """Id, sweep, state, error, failure, config, metrics and provenance of a trial file (one attribute: fast)."""
    with h5py.File(path, "r") as handle:
        attrs = handle.attrs
        if "summary" in attrs:
            return json.loads(attrs["summary"])
        summary = {key: str(attrs.get(key, "")) for key in ("trial_id", "sweep", "state", "error", "failure")}
        return summary | {key: json.loads(attrs[key]) for key in ("config", "metrics", "provenance")}


def read_trial(path: Path, weights: bool = True) -> TrialRecord:
    """The whole record, history included; without `weights` the review reads everything but the network."""
    summary = read_summary(path)
    with h5py.File(path, "r") as handle:
        history = {k: v[()] for k, v in handle["history"].items()}
        stored = {k: v[()] for k, v in handle["weights"].items()} if weights else {}
        arrays: dict[str, np.ndarray] = {}
        handle["arrays"].visititems(lambda name, node: arrays.__setitem__(name, node[()]) if isinstance(node, h5py.Dataset) else None)
        extra = {key: json.loads(handle.attrs[key]) for key in ("normaliser", "evaluation", "varset", "reference") if key in handle.attrs}
    summary.pop("evaluations", None)  # derived from the evaluation
    return TrialRecord(**summary, history=history, weights=stored, arrays=arrays, **extra)


def copy_trial(path: Path, results_dir: Path) -> Path:
    """Copy a trial file into another sweep's folder (atomically; an existing copy is kept)."""
    target = trial_path(results_dir, path.stem)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
    return target


def index_path(results_dir: Path) -> Path:
    return Path(results_dir) / "index.json"


def scan(results_dir: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Summaries of every trial file in a sweep's folder, and the files that could not be read.

    Files unchanged since the sweep index was built (same size and mtime) are
    taken from it; only the others are opened.
    """
    summaries, unreadable, _ = _scan(results_dir)
    return summaries, unreadable


def rebuild_index(results_dir: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Scan and write the sweep index (the aggregator's job: one writer, written atomically)."""
    summaries, unreadable, entries = _scan(results_dir)
    write_atomically(index_path(results_dir), json.dumps(entries))
    return summaries, unreadable


def write_atomically(path: Path, text: str) -> None:
    """A temporary file in the same folder, then renamed: a reader sees the old text or the new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _scan(results_dir: Path) -> tuple[dict[str, dict[str, Any]], list[str], dict[str, Any]]:
    summaries: dict[str, dict[str, Any]] = {}
    unreadable: list[str] = []
    entries: dict[str, Any] = {}
    folder = trials_dir(results_dir)
    if not folder.is_dir():
        return summaries, unreadable, entries
    try:
        index = json.loads(index_path(results_dir).read_text())
    except (OSError, ValueError):
        index = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if not entry.name.endswith(".h5"):
            continue
        stat = entry.stat()
        known = index.get(entry.name)
        if known and known["stamp"] == [stat.st_size, stat.st_mtime_ns]:
            summary = known["summary"]
        else:
            try:
                summary = read_summary(Path(entry.path))
            except (OSError, KeyError, ValueError) as err:
                unreadable.append(f"{entry.name}: {err}")
                continue
        summaries[summary["trial_id"]] = summary
        entries[entry.name] = {"stamp": [stat.st_size, stat.st_mtime_ns], "summary": summary}
    return summaries, unreadable, entries


def _append_line(path: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line in a single write (whole lines, even with concurrent appenders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(entry) + "\n")


def _read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    lines = []
    for line in path.read_text().splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill mid-write: skip it
            continue
    return lines


def attempts_path(results_dir: Path, trial_id: str) -> Path:
    return Path(results_dir) / "attempts" / f"{trial_id}.jsonl"


def this_job() -> str:
    """The scheduler's name for the running job: SLURM array task or job, submitit local job, else the pid."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    if env.get("SLURM_JOB_ID"):
        return env["SLURM_JOB_ID"]
    return f"local:{socket.gethostname()}:{os.getpid()}"


def open_attempt(results_dir: Path, trial_id: str, config: dict[str, Any]) -> None:
    """Log that this process starts (or resumes) a trial, with the trial's config."""
    entry = {"event": "start", "job": this_job(), "host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "config": config}
    if os.environ.get("SLURM_JOB_PARTITION"):
        entry["partition"] = os.environ["SLURM_JOB_PARTITION"]
    _append_line(attempts_path(results_dir, trial_id), entry)


def close_attempt(results_dir: Path, trial_id: str, outcome: str) -> list[dict[str, Any]]:
    """Log how this process's attempt ended; return every attempt so far (for the trial file)."""
    _append_line(
        attempts_path(results_dir, trial_id),
        {"event": "end", "job": this_job(), "pid": os.getpid(), "outcome": outcome, "time": time.time()},
    )
    return read_attempts(results_dir, trial_id)


def read_attempts(results_dir: Path, trial_id: str) -> list[dict[str, Any]]:
    """Attempts in order: job, host, pid, start (and partition under SLURM), and end and outcome once it ended.

    An attempt followed by another that never ended was killed (SIGKILL, cancelled,
    node failure): its outcome is 'vanished'.
    """
    attempts: list[dict[str, Any]] = []
    for event in _read_lines(attempts_path(results_dir, trial_id)):
        if event["event"] == "start":
            attempts.append({key: value for key, value in event.items() if key not in ("event", "time")} | {"start": event["time"]})
        else:
            for attempt in reversed(attempts):
                if attempt["job"] == event["job"] and attempt["pid"] == event["pid"] and "end" not in attempt:
                    attempt.update(end=event["time"], outcome=event["outcome"])
                    break
    for attempt in attempts[:-1]:
        attempt.setdefault("outcome", "vanished")
    return attempts


def jobs_path(results_dir: Path) -> Path:
    return Path(results_dir) / "jobs.jsonl"


def record_submission(results_dir: Path, executor: str, tasks: dict[str, list[str]]) -> None:
    """Log which trials each submitted job (or array task: '<array>_<index>') carries."""
    _append_line(jobs_path(results_dir), {"executor": executor, "tasks": tasks, "time": time.time()})


def read_submissions(results_dir: Path) -> list[dict[str, Any]]:
    return _read_lines(jobs_path(results_dir))
