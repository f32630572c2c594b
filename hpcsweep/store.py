"""The results store: one HDF5 file per trial, written atomically, and the logs of work in flight.

A trial file holds its full resolved config, its state (done / diverged /
failed), final metrics, per-epoch history, best weights, normaliser
parameters, its fitted compressor (description and arrays) and provenance
(versions, git commit, host, input checksum). It is
written under a temporary name in the same folder and `os.replace`d into
place, so a reader sees either no file or a whole one, and concurrent trials
never share a file. Its first bytes (HDF5's user block) seal it with the
sha256 of the bytes after them, checked when it is first scanned; a sha256 of
its attributes and arrays is checked whenever its weights are read (and at the
scan of a file without a seal). A file damaged after it was written (valid
HDF5, wrong numbers) is treated as unreadable and its trial run again. Small things live in attributes, so
summaries are read without touching weights. No torch here: weights arrive as
numpy arrays.

Work in flight is told by two append-only logs beside the trial files:
`attempts/<id>.jsonl` (each attempt's start and end: job id, host, pid,
outcome; written only by the job running that trial, and only after its
trial file is in place, so a kill between the two cannot make a trial look
unfinished) and `jobs.jsonl` (which trials each submitted job or array task
carries; written by the sweep driver). An attempt that started and never
ended belongs to a running job, or to one that vanished (killed, node
failure): the sweep asks the scheduler which. `--retry-failed` logs a reset,
after which the attempts count afresh against the retry budget.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "BEST_EFFORT")
import h5py  # noqa: E402  (after the locking mode is set)

from hpcsweep.allocation import in_processes, job_partition, this_job  # noqa: E402
from hpcsweep.files import atomic, write_atomically  # noqa: E402
from hpcsweep.states import TrialState  # noqa: E402

SCHEMA_VERSION = 4  # 4: sealed; 3: a checksum; 2: the small fields in one "summary" attribute; 1 (one attribute each) is still read
JSON_ATTRIBUTES = ("summary", "normaliser", "evaluation", "varset", "reference", "compressor")
GROUPS = ("history", "weights", "arrays", "codec")  # weights and codec (the compressor's arrays) are read only when asked for
#: Trial files a worker process checks at a time when a scan checks many (about 0.3 s of work, more than starting one).
CHECKED_PER_TASK = 40
#: Bytes at the start of a trial file that HDF5 leaves to its user (its user block, skipped when the file is read): the
#: seal, `_SEAL` and the sha256 of every byte after the block. A scan checks a file by hashing its bytes, 1 ms for a
#: thesis-sized file, where checking its `checksum` reads each dataset through HDF5, 19 ms for one of 244 objects.
USER_BLOCK = 512
_SEAL = b"hpcsweep trial file\nsha256:"
MISMATCH = "checksum mismatch: the file was changed or damaged after it was written"
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
    compressor: dict[str, Any] = field(default_factory=dict)  # its fitted compressor's description (hpcsweep.codec.Compressor.state)
    codec: dict[str, np.ndarray] = field(default_factory=dict)  # ... and its arrays

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


#: The folders of a results folder, named here only: trial files, checkpoints, attempts logs, the jobs' own logs, claims
#: and heartbeats.
TRIALS, CHECKPOINTS, ATTEMPTS, LOGS, CLAIMS, PROGRESS = "trials", "checkpoints", "attempts", "logs", "claims", "progress"


def trials_dir(results_dir: Path) -> Path:
    return Path(results_dir) / TRIALS


def checkpoints_dir(results_dir: Path) -> Path:
    """Where running trials keep their checkpoints (removed once the trial file is written)."""
    return Path(results_dir) / CHECKPOINTS


def logs_dir(results_dir: Path) -> Path:
    """Where the jobs' own files go: submitit's pickled calls, stdout and stderr."""
    return Path(results_dir) / LOGS


def trial_path(results_dir: Path, trial_id: str) -> Path:
    return trials_dir(results_dir) / f"{trial_id}.h5"


def write_trial(path: Path, record: TrialRecord) -> None:
    """Write `record` to `path` atomically (temporary file in the same folder, then rename).

    A failed write (a full disk) leaves the previous file as it was and no temporary behind.
    """
    if record.state not in [state for state in TrialState if state.is_stored()]:
        raise ValueError(f"a trial file cannot hold state {record.state!r}")
    texts = {"summary": json.dumps({key: getattr(record, key) for key in SUMMARY_KEYS}, sort_keys=True)}  # one read for a scan
    texts |= {key: json.dumps(getattr(record, key)) for key in JSON_ATTRIBUTES[1:]}
    arrays = {f"{group}/{name}": np.asarray(array) for group in GROUPS for name, array in getattr(record, group).items()}
    image = io.BytesIO()  # to memory first: a full disk is then an OSError of a plain write, never a crash in HDF5's close
    with h5py.File(image, "w", userblock_size=USER_BLOCK) as handle:
        handle.attrs["schema_version"] = SCHEMA_VERSION
        handle.attrs.update(texts)
        handle.attrs["checksum"] = checksum(texts, arrays)
        for group in GROUPS:
            handle.create_group(group)
        for name, array in arrays.items():
            handle.create_dataset(name, data=array)
    data = image.getbuffer()
    seal = _SEAL + _digest(data).encode()
    data[: len(seal)] = seal
    with atomic(path) as tmp:
        tmp.write_bytes(data)


def _digest(data: bytes | memoryview) -> str:
    """The sha256 (hex) of a trial file's bytes after its user block: what its seal holds."""
    return hashlib.sha256(memoryview(data)[USER_BLOCK:]).hexdigest()


def checksum(texts: dict[str, str], arrays: dict[str, np.ndarray]) -> str:
    """sha256 of the JSON attributes and of every array's name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for key in sorted(texts):
        digest.update(f"{key}\0{texts[key]}\0".encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


#: How trial files are opened for reading: made once (h5py.File makes its property lists anew for every file), and with
#: the strong close degree, so that closing the file closes what was opened in it (h5py.File walks them in Python).
_READING = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
_READING.set_fclose_degree(h5py.h5f.CLOSE_STRONG)


@contextmanager
def _opened(path: Path) -> Iterator[h5py.File]:
    """A trial file open for reading, as `h5py.File(path, "r")` opens it (the same errors), at half its cost: opening
    and closing took 0.17 ms a file, a third of checking a small one; now 0.09 ms."""
    file_id = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY, fapl=_READING)
    try:
        yield h5py.File(file_id)
    finally:
        file_id.close()


def read_summary(path: Path) -> dict[str, Any]:
    """Id, sweep, state, error, failure, config, metrics and provenance of a trial file (one attribute: fast)."""
    with _opened(path) as handle:
        attrs = handle.attrs
        if "summary" in attrs:
            return json.loads(attrs["summary"])
        summary = {key: str(attrs.get(key, "")) for key in ("trial_id", "sweep", "state", "error", "failure")}
        return summary | {key: json.loads(attrs[key]) for key in ("config", "metrics", "provenance")}


def read_trial(path: Path, weights: bool = True) -> TrialRecord:
    """The whole record, history included; without `weights` the review reads everything but the network.

    With `weights` the checksum is verified (a damaged file raises ValueError).
    """
    summary = read_summary(path)
    texts, arrays = _contents(path, GROUPS if weights else ("history", "arrays"))
    groups: dict[str, Any] = {group: {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{group}/")} for group in GROUPS}
    extra = {key: json.loads(texts[key]) for key in JSON_ATTRIBUTES[1:] if key in texts}
    summary.pop("evaluations", None)  # derived from the evaluation
    return TrialRecord(**summary, **groups, **extra)


def verify_trial(path: Path) -> dict[str, Any]:
    """The summary of a trial file whose seal holds (schema 4), or whose checksum does (schema 3; older files have
    none); else ValueError."""
    data = Path(path).read_bytes()
    if data.startswith(_SEAL):
        if data[len(_SEAL) : len(_SEAL) + 64].decode("ascii", "replace") != _digest(data):
            raise ValueError(MISMATCH)
        return read_summary(path)
    texts, _ = _contents(path, GROUPS)
    return json.loads(texts["summary"]) if "summary" in texts else read_summary(path)


def _contents(path: Path, groups: tuple[str, ...]) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """The JSON attributes and the arrays ('group/name') of `groups`; checked against the checksum when all are read."""
    with _opened(path) as handle:
        present = _attribute_names(handle)
        texts = {key: _attribute_text(handle, key) for key in JSON_ATTRIBUTES if key in present}
        stored = _attribute_text(handle, "checksum") if "checksum" in present else ""
        arrays = _datasets(handle, groups)
    if groups == GROUPS and stored and checksum(texts, arrays) != stored:
        raise ValueError(MISMATCH)
    return texts, arrays


#: The memory type that reads a variable-length string attribute (as `write_trial` stores text) into bytes.
_TEXT = h5py.h5t.py_create(h5py.string_dtype())


def _attribute_names(handle: h5py.File) -> set[str]:
    """The names of the file's attributes, in one call (h5py's `name in attrs` opens an AttributeManager each time)."""
    names: list[bytes] = []
    h5py.h5a.iterate(handle.id, names.append)
    return {name.decode("utf-8", "surrogateescape") for name in names}


def _attribute_text(handle: h5py.File, name: str) -> str:
    """An attribute as text, as `str(handle.attrs[name])` gives it.

    A scalar variable-length string (every text `write_trial` stores) is read through h5py's low-level calls:
    `attrs[name]` builds its dtype and conversion type anew each time, 0.1 ms an attribute, half of checking a small
    trial file. Any other kind (a file written otherwise) is read the usual way.
    """
    attribute = h5py.h5a.open(handle.id, name.encode())
    kind = attribute.get_type()
    if attribute.shape == () and isinstance(kind, h5py.h5t.TypeStringID) and kind.is_variable_str():
        value = np.empty((), dtype=object)
        attribute.read(value, mtype=_TEXT)
        text: bytes = value.item()
        return text.decode("utf-8", "surrogateescape")
    return str(handle.attrs[name])


def _datasets(handle: h5py.File, groups: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Every dataset under `groups` ('group/name' -> its array, as `dataset[()]` reads it), from one visit of the file.

    Numeric arrays are read through h5py's low-level calls: its Dataset objects cost 0.1 ms each, a third of
    checking a trial file of some 50 datasets. Anything else (scalars, empty arrays, strings) is read the usual way.
    """
    names: list[bytes] = []
    h5py.h5o.visit(handle.id, names.append)
    arrays = {}
    for name in names:
        group, _, inside = name.decode().partition("/")
        if group not in groups or not inside:
            continue
        node = h5py.h5o.open(handle.id, name)
        if not isinstance(node, h5py.h5d.DatasetID):
            continue
        if node.dtype.kind in "biuf" and node.shape and all(node.shape):
            array = np.empty(node.shape, node.dtype)
            node.read(h5py.h5s.ALL, h5py.h5s.ALL, array)
        else:
            array = h5py.Dataset(node)[()]
        arrays[name.decode()] = array
    return arrays


def copy_trial(path: Path, results_dir: Path) -> Path:
    """Copy a trial file into another sweep's folder (atomically; an existing copy is kept)."""
    target = trial_path(results_dir, path.stem)
    if not target.exists():
        with atomic(target) as tmp:
            shutil.copyfile(path, tmp)
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


def rebuild_index(results_dir: Path, verify: bool = False) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Scan and write the sweep index (the aggregator's job: one writer, written atomically).

    Files new to the index are checked in worker processes, one per allocated core, when there are many: a sweep's
    first review reads every file whole (1000 thesis-sized files: 1 GB, 7 s on one core, mostly HDF5's time per
    dataset). With `verify` every file is checked again, whatever the index says: damage that kept a file's size and
    mtime (bit rot) shows only so (a sweep's driver does it as it starts; `status --verify`, `aggregate --verify`).
    """
    if not trials_dir(results_dir).is_dir():
        return {}, []
    summaries, unreadable, entries = _scan(results_dir, in_workers=True, verify=verify)
    write_atomically(index_path(results_dir), json.dumps(entries))
    return summaries, unreadable


def _scan(results_dir: Path, in_workers: bool = False, verify: bool = False) -> tuple[dict[str, dict[str, Any]], list[str], dict[str, Any]]:
    """Summaries, unreadable files and index entries. Files new to the index (all with `verify`) are checked here, or
    `in_workers` (CHECKED_PER_TASK at a time, when there are more): not for `scan`, which a sweep's driver calls every
    poll while its trials keep the cores busy."""
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
    stamps = {}
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.name.endswith(".h5"):
            stat = entry.stat()
            stamps[entry.path] = [stat.st_size, stat.st_mtime_ns]
    new = [path for path, stamp in stamps.items() if verify or index.get(Path(path).name, {}).get("stamp") != stamp]
    checked = dict(zip(new, in_processes(_checked, new, CHECKED_PER_TASK) if in_workers else map(_checked, new), strict=True))
    for path, stamp in stamps.items():
        name = Path(path).name
        summary = checked[path] if path in checked else index[name]["summary"]
        if isinstance(summary, str):
            unreadable.append(f"{name}: {summary}")
            continue
        summaries[summary["trial_id"]] = summary
        entries[name] = {"stamp": stamp, "summary": summary}
    return summaries, unreadable, entries


def _checked(path: str) -> dict[str, Any] | str:
    """The summary of a trial file whose checksum holds and that is the trial its name says, else why it cannot be read."""
    try:
        summary = verify_trial(Path(path))
    except (OSError, KeyError, ValueError) as err:
        return str(err)
    return foreign(summary, Path(path).stem) or summary


def foreign(summary: dict[str, Any], trial_id: str) -> str:
    """'' when a trial file's summary is trial `trial_id`'s; else why not (another trial's file copied over it): such a
    file is damage, its trial runs again. The id, not a hash of the stored config: an identity that changes between
    hpcsweep versions must not condemn every older file."""
    if summary.get("trial_id") != trial_id:
        return f"holds trial {summary.get('trial_id')!r}, not {trial_id!r} (another trial's file copied over it?)"
    return ""


def set_aside(path: Path, why: str) -> Path:
    """Move a damaged trial file out of the trials (to `damaged/`, named by its id and the time), keeping it for a look."""
    target = Path(path).parent.parent / "damaged" / f"{Path(path).stem}.{time.strftime('%Y%m%d-%H%M%S')}.h5"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    (target.with_suffix(".why.txt")).write_text(why + "\n")
    return target


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
    return attempts_dir(results_dir) / f"{trial_id}.jsonl"


def attempts_dir(results_dir: Path) -> Path:
    return Path(results_dir) / ATTEMPTS


def open_attempt(results_dir: Path, trial_id: str, config: dict[str, Any]) -> None:
    """Log that this process starts (or resumes) a trial, with the trial's config."""
    entry = {"event": "start", "job": this_job(), "host": socket.gethostname(), "pid": os.getpid(), "time": time.time(), "config": config}
    if job_partition():
        entry["partition"] = job_partition()
    _append_line(attempts_path(results_dir, trial_id), entry)


def close_attempt(results_dir: Path, trial_id: str, outcome: str) -> None:
    """Log how this process's attempt ended (after its trial file, if any, is in place)."""
    _append_line(attempts_path(results_dir, trial_id), _end_event(outcome))


def ended_attempts(results_dir: Path, trial_id: str, outcome: str) -> list[dict[str, Any]]:
    """Every attempt so far, this process's ended with `outcome`, as the trial file keeps them (nothing is logged)."""
    return _attempts(_read_lines(attempts_path(results_dir, trial_id)) + [_end_event(outcome)])


def write_ended(results_dir: Path, record: TrialRecord, outcome: str) -> None:
    """Write a trial's file with its attempts in its provenance, this process's ended with `outcome`.

    The caller logs the attempt's end (`close_attempt`) only after this: a kill in between leaves a finished file
    and an open attempt, which is read as finished, never as a trial to train again.
    """
    record.provenance = {**record.provenance, "attempts": ended_attempts(results_dir, record.trial_id, outcome)}
    write_trial(trial_path(results_dir, record.trial_id), record)


def reset_attempts(results_dir: Path, trial_id: str) -> None:
    """Start the retry budget afresh: the attempts so far no longer count (--retry-failed)."""
    _append_line(attempts_path(results_dir, trial_id), {"event": "reset", "time": time.time()})


def _end_event(outcome: str) -> dict[str, Any]:
    return {"event": "end", "job": this_job(), "pid": os.getpid(), "outcome": outcome, "time": time.time()}


def read_attempts(results_dir: Path, trial_id: str) -> list[dict[str, Any]]:
    """Attempts in order: job, host, pid, start (and partition under SLURM), and end and outcome once it ended.

    An attempt followed by another that never ended was killed (SIGKILL, cancelled,
    node failure): its outcome is 'vanished'. Attempts before a reset have `counted` False.
    """
    return _attempts(_read_lines(attempts_path(results_dir, trial_id)))


def _attempts(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    attempts: list[dict[str, Any]] = []
    for event in events:
        if event["event"] == "reset":
            for attempt in attempts:
                attempt["counted"] = False
        elif event["event"] == "start":
            attempts.append({key: value for key, value in event.items() if key not in ("event", "time")} | {"start": event["time"]})
        else:
            for attempt in reversed(attempts):
                if attempt["job"] == event["job"] and attempt["pid"] == event["pid"]:
                    if "end" not in attempt or attempt["outcome"].startswith("checkpointed"):  # a requeue refused: failed after all
                        attempt.update(end=event["time"], outcome=event["outcome"])
                    break
    for attempt in attempts[:-1]:
        attempt.setdefault("outcome", "vanished")
    return attempts


def claims_dir(results_dir: Path) -> Path:
    """Where the claims of a results folder live: its driver's lease and each running trial's claim."""
    return Path(results_dir) / CLAIMS


def jobs_path(results_dir: Path) -> Path:
    return Path(results_dir) / "jobs.jsonl"


def record_submission(results_dir: Path, executor: str, tasks: dict[str, list[str]]) -> None:
    """Log which trials each submitted job (or array task: '<array>_<index>') carries."""
    _append_line(jobs_path(results_dir), {"executor": executor, "tasks": tasks, "time": time.time()})


def read_submissions(results_dir: Path) -> list[dict[str, Any]]:
    return _read_lines(jobs_path(results_dir))


def progress_path(results_dir: Path, trial_id: str) -> Path:
    """A running trial's heartbeat: the epoch it reached and its best validation loss so far (removed when it ends)."""
    return _progress_dir(results_dir) / f"{trial_id}.json"


def _progress_dir(results_dir: Path) -> Path:
    return Path(results_dir) / PROGRESS


def write_progress(results_dir: Path, trial_id: str, epoch: int, epochs: int, best_val: float, best_epoch: int) -> None:
    """Written by the job after every epoch (atomically), read by the driver that follows the sweep, on any host.

    Best effort: a heartbeat that cannot be written (a full disk) is skipped; the trial goes on.
    """
    entry = {"epoch": epoch, "epochs": epochs, "best_val": best_val, "best_epoch": best_epoch, "time": time.time()}
    try:
        write_atomically(progress_path(results_dir, trial_id), json.dumps(entry))
    except OSError:
        return


def read_progress(results_dir: Path, trial_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The heartbeats of those trials that have one now (one listing of the folder: the driver asks every poll)."""
    try:
        beating = {entry.name[: -len(".json")] for entry in os.scandir(_progress_dir(results_dir)) if entry.name.endswith(".json")}
    except OSError:  # no trial has beaten yet
        return {}
    found = {}
    for trial_id in beating.intersection(trial_ids):
        try:
            found[trial_id] = json.loads(progress_path(results_dir, trial_id).read_text())
        except (OSError, ValueError):  # it ended (and removed it) meanwhile
            continue
    return found


def clear_progress(results_dir: Path, trial_id: str) -> None:
    progress_path(results_dir, trial_id).unlink(missing_ok=True)
