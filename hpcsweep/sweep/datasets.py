"""Which jets a sweep's data configs read now, known by content: the data versions of its trials.

A trial's identity includes the checksum of its jets as read (after cuts), so
a data file replaced by another makes new trials, and the old ones stay in the
folder as another data version. The sweep itself prepares its data (generate,
read, cache) and so always knows; `status`, `--dry-run` and the review read a
file whose cache is missing (that is how a replaced file is noticed) but never
generate a sample: for a generated sample not on disk they take the version
the folder last recorded (`data.json`), the generator being deterministic.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hpcsweep.config import DATASET_KEYS, DataConfig, EvaluationConfig
from hpcsweep.errors import Log, UserError
from hpcsweep.store import write_atomically


def dataset_key(data: DataConfig) -> str:
    return json.dumps({key: getattr(data, key) for key in DATASET_KEYS}, sort_keys=True)


class Datasets:
    """Data versions (and cache folders) of a sweep's datasets, each prepared or looked up once.

    `prepare`: generate and read whatever is missing (the sweep). Otherwise nothing is
    generated, and a version that cannot be known without generating is '' (its trials
    count as pending).
    """

    def __init__(self, results_dir: Path, prepare: bool, progress: bool = True, log: Log = print) -> None:
        self.results_dir = Path(results_dir)
        self.must_prepare = prepare
        self.progress = progress
        self.log = log
        self._known: dict[str, tuple[str, Path | None]] = {}
        self.problems: list[str] = []  # data that could not be read when not preparing (their versions: as recorded)
        self._trained: set[str] = set()  # keys of training data (signal samples are prepared here too, not recorded)
        self._compared: set[tuple[str, str]] = set()  # (training data, signal folder) pairs checked alike

    def version(self, data: DataConfig) -> str:
        """The data version of trials that train on `data` ('' when it cannot be known without generating)."""
        self._trained.add(dataset_key(data))
        return self._lookup(data)[0]

    def folder(self, data: DataConfig) -> Path:
        """The cache folder of `data`, prepared if needed (a file's problems are `UserError`s)."""
        from hpcsweep.data import prepare

        _, folder = self._lookup(data)
        if folder is None:
            folder = prepare(data, progress=self.progress)
            self._known[dataset_key(data)] = (_version(folder), folder)
        return folder

    def signal_folders(self, data: DataConfig, evaluation: EvaluationConfig) -> dict[str, str]:
        """Label -> the cache folder of each signal a trial of `data` is evaluated on. Each is compared once with the
        training jets: a file in other units (MeV where training had GeV) is refused before any trial runs, instead
        of scoring an AUC of 1.000 for every trial; milder differences are said."""
        from hpcsweep.data.profile import compare, profile_of
        from hpcsweep.data.read import open_cache
        from hpcsweep.data.varset import load_varset

        folders = {label: self.folder(signal) for label, signal in evaluation.signal_data(data).items()}
        for label, folder in folders.items():
            pair = (dataset_key(data), str(folder))
            if pair not in self._compared:
                self._compared.add(pair)
                training, varset = open_cache(self.folder(data)).matrix(), load_varset(data.varset)
                what = f"evaluation.signals: {label} ({folder.name})"
                for note in compare(profile_of(training, varset.names), open_cache(folder).matrix(), varset, what):
                    self.log(f"signal {label}: {note}")
        return {label: str(folder) for label, folder in folders.items()}

    def _lookup(self, data: DataConfig) -> tuple[str, Path | None]:
        key = dataset_key(data)
        if key not in self._known:
            from hpcsweep.data import prepare, prepared

            folder = prepare(data, progress=self.progress) if self.must_prepare else prepared(data)  # prepare: at once if cached
            if self.must_prepare:  # the sweep says what it trains on, prepared now or before
                self.log(describe_dataset(folder))
            elif folder is None and not data.generated:
                try:
                    folder = prepare(data, progress=self.progress)
                except UserError as err:
                    self.problems.append(str(err))
            self._known[key] = (_version(folder), folder) if folder else (self.recorded().get(key, ""), None)
        return self._known[key]

    def recorded(self) -> dict[str, str]:
        """Dataset key -> the version this folder last trained on (from data.json)."""
        return {key: entry["version"] for key, entry in _read(self.results_dir).get("current", {}).items()}

    def record(self) -> None:
        """Add the versions of training data known now to the folder's data.json (written atomically, only when it changes)."""
        known = {key: folder for key, (_, folder) in self._known.items() if folder is not None and key in self._trained}
        if not known or not self.results_dir.is_dir():
            return
        before = _read(self.results_dir)
        state = json.loads(json.dumps(before))
        versions = {entry["version"]: entry for entry in state.get("versions", [])}
        for key, folder in known.items():
            meta = json.loads((folder / "meta.json").read_text())
            version = _version(folder)
            versions.setdefault(version, {"version": version, "first_seen": time.time()} | _provenance(meta))
            state.setdefault("current", {})[key] = {"version": version}
        state["versions"] = sorted(versions.values(), key=lambda e: e["first_seen"])
        if state != before:
            write_atomically(self.results_dir / "data.json", json.dumps(state, indent=1))


def data_versions(results_dir: Path) -> list[dict[str, Any]]:
    """The data versions a sweep's folder has trained on, oldest first: version, source, files, jets, cuts, first seen."""
    return _read(Path(results_dir)).get("versions", [])


def describe_dataset(folder: Path) -> str:
    """One line: how many jets of which files, their version, and what the cleaning removed."""
    meta = json.loads((folder / "meta.json").read_text())
    removed = ", ".join(f"{c['name']}: {c['removed']:,}" for c in meta["cuts"] if c["removed"])
    return (
        f"data: {meta['n_jets']:,} jets x {len(meta['names'])} variables ({meta['varset']}) from {Path(meta['source']).name}"
        f" (version {_version(folder)}); removed by cleaning: {removed or 'none'}"
    )


def _version(folder: Path) -> str:
    from hpcsweep.data.read import data_version

    return data_version(json.loads((folder / "meta.json").read_text()))


def _provenance(meta: dict[str, Any]) -> dict[str, Any]:
    return {key: meta.get(key) for key in ("source", "files", "tree", "varset", "n_jets", "n_entries", "cuts", "checksum")}


def _read(results_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((results_dir / "data.json").read_text())
    except (OSError, ValueError):
        return {}
