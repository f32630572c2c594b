"""A dataset of many files compressed (or given back) as one: resumable, with a manifest, here or as a SLURM job array.

`compress_dataset` compresses each input into `<folder>/<input's stem>.hpcz` and
writes `<folder>/manifest.json`: per file its input (path, bytes, sha256), its
output (name, bytes, sha256), entries, jets, bound, the identity of the
compressor that decodes it (the header's `codec`) and seconds.
`decompress_dataset` gives back every file of a manifest into another folder
(`<folder>/<input's name>`), first checking each compressed file against the
manifest's sha256, and writes `<folder>/decompressed.json` the same way.

Who writes what, so that nothing races and a kill loses nothing:

- a file is written by one worker at a time: the worker claims it first
  (`<folder>/.claims`, `hpcsweep.claims`); another worker (a second driver's,
  or a requeued array task's) finding a live claim leaves it, and the claim of a
  dead worker (a killed process, a SLURM task gone) is taken over;
- the worker writes the output whole into `<folder>/.staging/` (atomically, as
  `compress_file` writes), then the file's record,
  `<folder>/.<action>-records/<output name>.json` (atomically), then renames the
  output into place: an output in place always has its record. A failure writes
  a record saying why, and the next file starts. One record per file, written
  by its claim's holder: array tasks never share a file;
- the driver alone writes the manifest: the merge of the records, atomically,
  after each file here and as array tasks' records appear. A driver killed
  mid-way leaves records that the next run merges first.

A file is done, and skipped by a rerun, when its record says done for this
input (its sha256 now), this compressor and bound, its output exists with the
record's sha256, and the output reads as a compressed file naming that
compressor; anything else (no record, a failure, a deleted or damaged output, an
input changed since, another bundle or bound) is redone, its old record
removed first.

The default executor runs the files one after another in this process (a big
file is coded in worker processes anyway); any other registered executor
(`hpcsweep.sweep.backends`: debug, slurm) gets them packed as a sweep's trials
are (`dispatch.pack` files one after another per SLURM array task), with the
sweep's SLURM settings (site, partition, time).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcsweep.claims import Claim, sweep_claims
from hpcsweep.errors import Log, UserError
from hpcsweep.files import sweep_temporaries, write_atomically

if TYPE_CHECKING:
    from hpcsweep.compress.apply import Summary
    from hpcsweep.compress.bundle import Bundle
    from hpcsweep.config import DispatchConfig

MANIFEST = "manifest.json"  # in the folder of a compressed dataset
DECOMPRESSED = "decompressed.json"  # in the folder a manifest's files were given back into
KIND = "hpcsweep dataset"
VERSION = 1
MERGE_EVERY_S = 5.0  # the manifest is merged anew from the records at most this often while files finish, and at the end
FILE_STALE_S = 300.0  # a file's claim without a heartbeat for this long is taken over (it beats every 30 s)
SUFFIX = ".hpcz"
_GLOB = re.compile(r"[*?\[]")
_FIELDS = ("input", "input_bytes", "input_sha256", "output", "output_bytes", "output_sha256", "entries", "jets", "bound", "codec")


@dataclass
class DatasetSummary:
    """What a run over a dataset did: files by outcome (their inputs), and bytes over every file the manifest lists."""

    manifest: Path
    done: list[str] = field(default_factory=list)  # written by this run
    skipped: list[str] = field(default_factory=list)  # done before, verified
    failed: dict[str, str] = field(default_factory=dict)  # input -> why
    unfinished: list[str] = field(default_factory=list)  # no result: a job killed, or left to another live worker
    files: int = 0
    jets: int = 0
    bytes_in: int = 0
    bytes_out: int = 0

    @property
    def ratio(self) -> float:
        """Input bytes over output bytes, over every file the manifest lists."""
        return self.bytes_in / max(self.bytes_out, 1)

    def line(self, verb: str) -> str:
        return (f"{verb} {len(self.done)}, skipped {len(self.skipped)} (done before), failed {len(self.failed)}"
                + (f", unfinished {len(self.unfinished)}" if self.unfinished else "")
                + f"; {self.manifest} lists {self.files} files, {self.jets:,} jets: {self.bytes_in / 1e6:.2f} MB -> "
                f"{self.bytes_out / 1e6:.2f} MB ({self.ratio:.2f}x)")  # fmt: skip


@dataclass(frozen=True)
class FileTask:
    """One file of a dataset as a worker gets it (picklable: it travels to array tasks)."""

    action: str  # compress | decompress
    source: str  # what is read
    output: str  # what is written
    source_sha256: str  # compress: the input's, as hashed by the driver; decompress: what the manifest says it must be
    expect: dict[str, Any]  # what a done record of this file must say
    model: str | None = None
    bound: float | None = None
    tree: str | None = None
    embed: bool | None = None

    @property
    def folder(self) -> Path:
        return Path(self.output).parent

    @property
    def record(self) -> Path:
        return _records_dir(self.folder, self.action) / f"{Path(self.output).name}.json"


def _records_dir(folder: Path, action: str) -> Path:
    return Path(folder) / f".{action}-records"


def expand_inputs(patterns: Sequence[str]) -> list[Path]:
    """Files and globs -> the files, in order (each glob's matches sorted), each once; a glob matching no file, a
    missing file, a folder or a URL is a one-line UserError."""
    files: list[Path] = []
    for pattern in patterns:
        if "://" in pattern:
            raise UserError(f"{pattern}: several inputs must be local files (a URL is compressed alone: -o OUT{SUFFIX})")
        if _GLOB.search(pattern) and not Path(pattern).exists():
            matched = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
            if not matched:
                raise UserError(f"{pattern}: matches no file")
            files += matched
        elif not Path(pattern).is_file():
            raise UserError(f"{pattern}: {'a folder, not a file' if Path(pattern).is_dir() else 'no such file'}")
        else:
            files.append(Path(pattern))
    return list({path.resolve(): path for path in files}.values())


def output_folder(path: Path) -> Path:
    """The folder several outputs go into; a file there is refused in one line."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path} is a file; several files are written into a folder: give one with -o (e.g. {path.with_suffix('')}/)")
    if path.suffix == SUFFIX and not path.is_dir():
        raise UserError(
            f"{path}: several files are written into a folder, not into one {SUFFIX} file; give one with -o (e.g. {path.with_suffix('')}/)"
        )
    return path


def sha256_of(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_manifest(path: Path) -> dict[str, Any]:
    """A manifest written by `compress_dataset`; anything else is a one-line UserError."""
    path = Path(path)
    what = f"{path}: not a manifest of 'hpcsweep compress' (the {MANIFEST} it writes into its output folder)"
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(what) from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND or not isinstance(manifest.get("files"), list):
        raise UserError(what)
    if manifest.get("action") != "compress":
        raise UserError(f"{path}: lists files given back by 'hpcsweep decompress'; give the {MANIFEST} of the compressed files")
    if manifest.get("version") != VERSION:
        raise UserError(f"{path}: a manifest of another hpcsweep (version {manifest.get('version')}, this one reads {VERSION})")
    for entry in manifest["files"]:
        if not isinstance(entry, dict) or any(key not in entry for key in _FIELDS):
            raise UserError(
                f"{what}: an entry lacks {', '.join(k for k in _FIELDS if k not in entry) if isinstance(entry, dict) else 'everything'}"
            )
    return manifest


def compress_dataset(
    inputs: Sequence[Path],
    model: Path,
    bound: float,
    folder: Path,
    tree: str | None = None,
    embed: bool | None = None,
    dispatch: DispatchConfig | None = None,
    log: Log = print,
) -> DatasetSummary:
    """Compress every input into `folder` (see the module's doc) with the bundle `model` at `bound`; files done
    before are verified and skipped. `dispatch` (None: one after another here) names the executor and its settings."""
    from hpcsweep.compress.bundle import load_bundle
    from hpcsweep.compress.embed import identity

    folder = output_folder(folder)
    bundle = load_bundle(model)
    bundle.check_bound(bound)
    codec = identity(bundle.compressor, bound)
    names = _unique_names(inputs, lambda path: f"{path.stem}{SUFFIX}", "compressed")
    tasks = []
    for source, name in zip(inputs, names, strict=True):
        digest = sha256_of(source)
        tasks.append(FileTask("compress", str(source.resolve()), str(folder.resolve() / name), digest,
                              {"input_sha256": digest, "codec": codec, "bound": bound}, str(Path(model).resolve()), bound, tree, embed))  # fmt: skip
    header = {"model": str(Path(model).resolve()), "bundle": bundle.checksum, "trial": bundle.trial_id, "bound": bound, "codec": codec}
    return _run(tasks, folder, MANIFEST, header, dispatch, log, {str(Path(model).resolve()): bundle})


def decompress_dataset(
    manifest_path: Path, folder: Path, model: Path | None = None, dispatch: DispatchConfig | None = None, log: Log = print
) -> DatasetSummary:
    """Give back every file a manifest lists into `folder` (each compressed file checked against the manifest's sha256
    first); files given back before are verified and skipped. `model`: for files that do not carry their compressor."""
    from hpcsweep.compress.bundle import load_bundle
    from hpcsweep.compress.io import WRITERS

    manifest = read_manifest(manifest_path)
    folder = output_folder(folder)
    if model is None and (named := _named_bundle(manifest)) is not None:
        model = named
        log(f"decoding with the bundle the manifest names, {model} (--model gives another)")
    bundles = {str(Path(model).resolve()): load_bundle(model)} if model else {}
    entries = manifest["files"]
    if not entries:
        raise UserError(f"{manifest_path}: lists no compressed file")

    def name(source: Path) -> str:
        return source.name if source.suffix in WRITERS else f"{source.stem}.root"

    names = _unique_names([Path(entry["input"]) for entry in entries], name, "given back")
    tasks = [
        FileTask("decompress", str(Path(manifest_path).resolve().parent / entry["output"]), str(folder.resolve() / out),
                 entry["output_sha256"], {"input_sha256": entry["output_sha256"]}, str(Path(model).resolve()) if model else None)
        for entry, out in zip(entries, names, strict=True)
    ]  # fmt: skip
    header = {"manifest": str(Path(manifest_path).resolve()), "model": str(Path(model).resolve()) if model else None}
    return _run(tasks, folder, DECOMPRESSED, header, dispatch, log, bundles)


def _named_bundle(manifest: dict[str, Any]) -> Path | None:
    """The bundle the manifest's files were compressed with, if it is still where it was and still holds their
    compressor (files that do not carry it need it); else None."""
    from hpcsweep.compress.bundle import load_bundle
    from hpcsweep.compress.embed import identity

    path = manifest.get("model")
    if not isinstance(path, str) or not Path(path).is_file():
        return None
    try:
        bundle = load_bundle(path)
        held = {identity(bundle.compressor, bound) for bound in bundle.bounds}
    except (UserError, OSError, ValueError, KeyError):
        return None
    return Path(path) if {entry["codec"] for entry in manifest["files"]} <= held else None


def _unique_names(sources: Sequence[Path], name: Callable[[Path], str], written: str) -> list[str]:
    """Each source's output name; two sources of one name are refused in one line, before anything is written."""
    names = [name(Path(source)) for source in sources]
    seen: dict[str, Path] = {}
    for source, out in zip(sources, names, strict=True):
        if out in seen:
            raise UserError(f"{seen[out]} and {source} would both be {written} as {out}: rename one, or run them into two folders")
        seen[out] = Path(source)
    return names


# --- the driver -------------------------------------------------------------------------------------------------------
def _run(
    tasks: list[FileTask], folder: Path, manifest: str, header: dict[str, Any], dispatch: DispatchConfig | None, log: Log,
    bundles: dict[str, Bundle],
) -> DatasetSummary:  # fmt: skip
    """Verify what is done, run the rest (here, or through the dispatch's executor), keep the manifest merged."""
    action = tasks[0].action
    folder.mkdir(parents=True, exist_ok=True)
    _tidy(folder, action)
    summary, todo = DatasetSummary(folder / manifest), []
    number = {task.source: i + 1 for i, task in enumerate(tasks)}
    listed = _listed(folder / manifest)
    for task in tasks:
        record = _read_record(task.record) or listed.get(Path(task.output).name)
        if _verified(task, record):
            if not task.record.is_file():  # the manifest's entry, its record lost: kept as the record
                write_atomically(task.record, json.dumps(record, indent=1) + "\n")
            summary.skipped.append(task.source)
            log(f"[{number[task.source]}/{len(tasks)}] {task.source}: done before ({Path(task.output).name}, verified), skipped")
        else:
            task.record.unlink(missing_ok=True)  # a failure, or what no longer holds: redone
            todo.append(task)
    _merge(folder, manifest, action, header)  # a killed run's records are in it before anything runs
    merged_at = [time.monotonic()]

    def report(task: FileTask, outcome: str) -> None:
        record = _read_record(task.record)
        prefix = f"[{number[task.source]}/{len(tasks)}] {task.source}"
        if outcome == "done" and record:
            summary.done.append(task.source)
            log(f"{prefix} -> {Path(task.output).name}: {record['jets']:,} jets, {record['input_bytes'] / 1e6:.2f} -> "
                f"{record['output_bytes'] / 1e6:.2f} MB ({record['input_bytes'] / max(record['output_bytes'], 1):.2f}x), "
                f"{record['seconds']:.1f} s")  # fmt: skip
        elif outcome == "failed" and record:
            summary.failed[task.source] = record["error"]
            log(f"{prefix}: failed: {record['error']}")
        elif outcome == "skipped":
            summary.skipped.append(task.source)
            log(f"{prefix}: done meanwhile by another worker ({Path(task.output).name}, verified), skipped")
        else:
            summary.unfinished.append(task.source)
            log(f"{prefix}: no result (its job ended without one)")
        if time.monotonic() - merged_at[0] > MERGE_EVERY_S:  # the records are what counts: a manifest a few seconds old loses nothing
            _merge(folder, manifest, action, header)
            merged_at[0] = time.monotonic()

    elsewhere: list[FileTask] = []  # files a live worker this run did not start holds (a killed driver's array tasks)
    if todo and (dispatch is None or dispatch.executor == "local"):
        for task in todo:
            outcome = _run_file(task, bundles)
            if outcome == "left":
                elsewhere.append(task)
            else:
                report(task, outcome)
    elif todo:
        assert dispatch is not None
        elsewhere = _dispatch(todo, folder, dispatch, log, report)
    _adopt(elsewhere, folder, log, report)
    merged = _merge(folder, manifest, action, header)
    summary.files, summary.jets = len(merged["files"]), merged["totals"]["jets"]
    summary.bytes_in, summary.bytes_out = merged["totals"]["input_bytes"], merged["totals"]["output_bytes"]
    return summary


def _tidy(folder: Path, action: str) -> None:
    """Remove what writers and workers that are gone left: temporaries, and their claims (a kill between a file's
    output and its claim's release leaves the claim of a dead process)."""
    from hpcsweep.sweep.backends import JobTeller

    for place in (folder, folder / ".staging", _records_dir(folder, action)):
        sweep_temporaries(place)
    if (folder / ".claims").is_dir():
        sweep_claims(folder / ".claims", FILE_STALE_S, JobTeller().alive)


def _dispatch(
    todo: list[FileTask], folder: Path, dispatch: DispatchConfig, log: Log, report: Callable[[FileTask, str], None]
) -> list[FileTask]:
    """The files packed into jobs of the dispatch's executor (as a sweep's trials), followed until each has a record or
    no job lives; returns those left without one. Interrupted, jobs that outlive the driver (SLURM) go on: a rerun
    merges what they write."""
    from hpcsweep.sweep.backends import backend
    from hpcsweep.sweep.driver import private_folder

    runner = backend(dispatch.executor)
    runner.check(dispatch)
    batches = runner.batches(todo, dispatch)
    log(f"{len(todo)} files as {len(batches)} {runner.name} {runner.job_word}")
    from hpcsweep.compress.jobs import FileBatch  # submitit, imported only to submit

    jobs = runner.submit(FileBatch(run_files), [(batch,) for batch in batches], dispatch, private_folder(folder / ".jobs", log))
    left = list(todo)
    try:
        runner.follow(jobs)
        while True:
            alive = runner.any_alive(jobs)
            for task in [t for t in left if t.record.exists()]:
                left.remove(task)
                record = _read_record(task.record)
                report(task, record.get("state", "") if record else "")
            if not left or not alive:
                break
            time.sleep(runner.poll_s)
    except KeyboardInterrupt:
        runner.stop(jobs)
        log("interrupted: finished files are kept; run the same command again to continue")
        raise
    return left


def _adopt(tasks: list[FileTask], folder: Path, log: Log, report: Callable[[FileTask, str], None], poll_s: float = 2.0) -> None:
    """Follow to their end the files that workers this run did not start hold (an earlier, killed driver's array
    tasks, another driver's process): the run is over when they are. The others have no result."""
    from hpcsweep.sweep.backends import JobTeller

    claims = folder / ".claims"

    def claimed(task: FileTask) -> bool:
        name = Path(task.output).name
        return any(path.name[: -len(".claim")].rpartition(".")[0] == name for path in claims.glob(f"{glob.escape(name)}.*.claim"))

    following = [task for task in tasks if claimed(task)]
    for task in tasks:
        if task not in following:
            report(task, "")
    if tasks and len(following) < len(tasks):
        log(
            f"{len(tasks) - len(following)} files have no result; the jobs' logs are in {folder / '.jobs'}; running the command again redoes them"
        )
    if following:
        log(f"{len(following)} files are being written by workers this run did not start; following them to their end")
    while following:
        sweep_claims(claims, FILE_STALE_S, JobTeller().alive)  # the claims of workers that are gone go
        for task in list(following):
            record = _read_record(task.record)
            if record is not None or not claimed(task):
                following.remove(task)
                report(task, str(record.get("state", "")) if record else "")
        if following:
            time.sleep(poll_s)


def _merge(folder: Path, manifest: str, action: str, header: dict[str, Any]) -> dict[str, Any]:
    """The manifest: every done record whose output is in the folder, and the failures, written atomically."""
    records = [r for r in (_read_record(p) for p in sorted(_records_dir(folder, action).glob("*.json"))) if r]
    whole = [r for r in records if all(key in r for key in _FIELDS)]  # a record edited by hand to lack one is not listed
    files = sorted((r for r in whole if r.get("state") == "done" and (folder / str(r["output"])).is_file()), key=lambda r: str(r["input"]))
    failed = [{key: r.get(key) for key in ("input", "output", "error")} for r in records if r.get("state") == "failed"]
    totals = {key: sum(r[key] for r in files) for key in ("entries", "jets", "input_bytes", "output_bytes")}
    merged = {"kind": KIND, "version": VERSION, "action": action, **header, "totals": totals, "files": files, "failed": failed}
    write_atomically(folder / manifest, json.dumps(merged, indent=1) + "\n")
    return merged


def _listed(path: Path) -> dict[str, dict[str, Any]]:
    """The entries of a manifest already in the folder by output name (none when it is missing or unreadable)."""
    manifest = _read_record(path)
    files = manifest.get("files") if manifest else None
    return {entry["output"]: entry for entry in files if isinstance(entry, dict) and "output" in entry} if isinstance(files, list) else {}


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _verified(task: FileTask, record: dict[str, Any] | None) -> bool:
    """Whether the file is done (see the module's doc): its record, its output's sha256, and the output reads."""
    if not record or record.get("state") != "done" or any(record.get(key) != value for key, value in task.expect.items()):
        return False
    output = Path(task.output)
    if not output.is_file() or output.stat().st_size != record.get("output_bytes") or sha256_of(output) != record.get("output_sha256"):
        return False
    if task.action == "compress":
        from hpcsweep.compress.container import read_compressed

        try:
            header, _ = read_compressed(output)
        except (UserError, OSError, ValueError, KeyError):
            return False
        return bool(header.get("codec") == task.expect["codec"])
    return True


# --- the worker: here, or in an array task ----------------------------------------------------------------------------
def run_files(tasks: list[FileTask]) -> list[str]:
    """A job's files, one after another: each 'done', 'failed', 'skipped' (done meanwhile) or 'left' (to a live worker)."""
    bundles: dict[str, Bundle] = {}
    return [_run_file(task, bundles) for task in tasks]


def _run_file(task: FileTask, bundles: dict[str, Bundle]) -> str:
    """Claim one file, and unless it is done or another live worker holds it, write it and its record."""
    from hpcsweep.allocation import this_job
    from hpcsweep.sweep.backends import JobTeller

    claim = Claim(task.folder / ".claims", Path(task.output).name, FILE_STALE_S, JobTeller().alive)
    if claim.acquire() is not None:
        return "left"
    try:
        if _verified(task, _read_record(task.record)):
            return "skipped"
        staged, started = _staging(task), time.perf_counter()
        try:
            record = _compress(task, staged, bundles) if task.action == "compress" else _decompress(task, staged, bundles)
        except Exception as error:  # recorded; the next file starts, and a rerun redoes this one
            reason = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"
            record = {"state": "failed", "input": task.source, "output": Path(task.output).name, "error": reason.splitlines()[0]}
        record |= {"seconds": round(time.perf_counter() - started, 3), "job": this_job()}
        if not claim.held():  # taken over meanwhile (thought dead): the new holder writes the file and its record
            return "left"
        write_atomically(task.record, json.dumps(record, indent=1) + "\n")
        if record["state"] == "done":
            os.replace(staged, task.output)  # the output appears only once its record is there
            with contextlib.suppress(OSError):
                staged.parent.rmdir()
        return str(record["state"])
    finally:
        claim.release()


def _staging(task: FileTask) -> Path:
    """Where a worker writes a file before its record: renamed to the output after it, so that an output in place
    always has its record (a kill between the two leaves a record whose output is missing or older: redone)."""
    return task.folder / ".staging" / Path(task.output).name


def _bundle(model: str | None, bundles: dict[str, Bundle]) -> Bundle | None:
    from hpcsweep.compress.bundle import load_bundle

    if model is None:
        return None
    if model not in bundles:
        bundles[model] = load_bundle(model)
    return bundles[model]


def _compress(task: FileTask, output: Path, bundles: dict[str, Bundle]) -> dict[str, Any]:
    from hpcsweep.compress.apply import compress_file
    from hpcsweep.compress.container import read_compressed

    bundle, source = _bundle(task.model, bundles), Path(task.source)
    assert bundle is not None and task.bound is not None  # a compress task always names both
    summary = compress_file(source, bundle, task.bound, output, tree=task.tree, progress=False, embed=task.embed)
    header, _ = read_compressed(output)
    return _done(task, source, output, summary, header) | {"embedded": summary.embedded, "trial": bundle.trial_id}


def _decompress(task: FileTask, output: Path, bundles: dict[str, Bundle]) -> dict[str, Any]:
    from hpcsweep.compress.apply import decompress_file
    from hpcsweep.compress.container import read_compressed

    source = Path(task.source)
    if not source.is_file():
        raise UserError(f"{source}: no such compressed file (the manifest lists it)")
    if sha256_of(source) != task.source_sha256:
        raise UserError(f"{source}: damaged or replaced (its sha256 is not the one the manifest holds); compress its input again")
    summary = decompress_file(source, _bundle(task.model, bundles), output, progress=False)
    header, _ = read_compressed(source)
    return _done(task, source, output, summary, header)


def _done(task: FileTask, source: Path, output: Path, summary: Summary, header: dict[str, Any]) -> dict[str, Any]:
    """The record of a file done, either way: its input and output (bytes, sha256), entries, jets, the bound and the
    compressor of the compressed file (`header`)."""
    return {
        "state": "done",
        "input": task.source,
        "input_bytes": source.stat().st_size,
        "input_sha256": task.source_sha256,
        "output": Path(task.output).name,
        "output_bytes": summary.total_bytes,
        "output_sha256": sha256_of(output),
        "entries": summary.entries,
        "jets": summary.jets,
        "bound": header["bound"],
        "codec": header["codec"],
        "notes": summary.notes,
    }
