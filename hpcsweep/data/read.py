"""Jet files -> per-jet float32 tables, read in chunks, cleaned, checked, and cached on disk.

Read: ROOT TTrees and RNTuples (through `uproot.iterate`) and Parquet files
(through pyarrow's record batches), with jagged per-event jet branches or flat
ones with one entry per jet; several files (a list or glob) make one dataset,
read one after another. One chunk at a time is in memory, so peak memory does
not grow with the data. Each jet keeps its event index and its rank in the
event (0 = leading, by the variable set's `rank_by`).

Every removed jet is counted by the step that removed it: non-finite values,
leading-jet selection, the variable set's cuts, and negative values of
variables declared positive (cut when they are a few, at most 1 % of the
jets; refused when more, since then the declaration is wrong). A variable
declared discrete that takes more than 1,000 values is refused, and so is a
variable that is NaN or inf in every jet, one with values too large for
float32 training (|value| >= 1e18, e.g. a 3.4e38 'missing' sentinel), and a
cache the cleaning leaves with fewer than 2 jets.

The cleaned table is cached as one `.npy` file per column, which training
memory-maps; its `meta.json` holds the checksum of the arrays as read (the
data's identity: equal for a regenerated or moved file with the same jets),
each file's own sha256, and the cut report.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hpcsweep.data.varset import VarSet
from hpcsweep.errors import UserError, closest
from hpcsweep.files import sweep_temporaries, temp_path
from hpcsweep.paths import expand_sources

if TYPE_CHECKING:
    import awkward as ak
    import uproot

CACHE_VERSION = 2  # 2: several files, Parquet and RNTuple, dense event numbers, content checksum, property checks
DEFAULT_STEP = "16 MB"  # ~100k jets per chunk: peak memory flat in the file size (docs/benchmarks.md)
PARQUET_TABLE = "(Parquet table)"  # a Parquet file's one table, where a ROOT file names its tree
POSITIVE_CUT_LIMIT = 0.01  # more negative values than this fraction of jets: the `positive` declaration is refused
DISCRETE_LIMIT = 1000  # a discrete variable with more distinct values is refused
#: A kept value this large (in magnitude) is refused: squares of float32 overflow above ~1.8e19 (the normaliser's
#: variance, the MSE), and nothing physical reaches 1e18 in any unit; such values are sentinels (FLT_MAX = 3.4e38).
LARGEST_VALUE = 1e18
MIN_JETS = 2  # a cache with fewer jets after cleaning is refused: nothing to train and validate on


@dataclass
class CutReport:
    """How many jets one cleaning step removed (counted after the previous steps), and by which variable."""

    name: str
    expression: str
    removed: int = 0
    by_variable: dict[str, int] = field(default_factory=dict)


@dataclass
class JetTable:
    """Per-jet columns (float32, physical units) with event index and jet rank."""

    names: list[str]
    columns: dict[str, np.ndarray]
    event: np.ndarray
    rank: np.ndarray
    cuts: list[CutReport] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.event)

    def matrix(self, rows: slice = slice(None)) -> np.ndarray:
        """An (n_jets, n_variables) float32 array of the requested rows."""
        return np.stack([np.asarray(self.columns[n][rows], dtype=np.float32) for n in self.names], axis=1)


def load_jets(
    source: str | Path | list[str],
    varset: VarSet,
    tree: str | None = None,
    leading_only: bool = False,
    step_size: int | str = DEFAULT_STEP,
) -> JetTable:
    """Read whole files into memory (for small data; use `cache_jets` for large)."""
    reader = _Reader(source, varset, tree, leading_only, step_size)
    chunks = list(reader.chunks())
    reader.check()
    names = varset.names
    if not chunks:
        return JetTable(names, {n: np.zeros(0, np.float32) for n in names}, np.zeros(0, np.int64), np.zeros(0, np.int32), reader.cuts)
    columns = {n: np.concatenate([c[n] for c in chunks]) for n in names}
    return JetTable(
        names,
        columns,
        np.concatenate([c["__event__"] for c in chunks]),
        np.concatenate([c["__rank__"] for c in chunks]),
        reader.cuts,
        reader.describe(checksums=False),  # an in-memory read for a look: no second pass over the files
    )


def cache_key(source: str | Path | list[str], varset: VarSet, tree: str | None, leading_only: bool) -> tuple[str, list[Path]]:
    """The cache folder's name for these files as they are on disk now (no file is read), and the files."""
    files = _existing_files(source)
    stats = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    key = hashlib.sha256(json.dumps([stats, varset.key(), tree, leading_only, CACHE_VERSION]).encode()).hexdigest()[:16]
    stem = files[0].stem + (f"+{len(files) - 1}" if len(files) > 1 else "")
    return f"{stem}-{varset.name}{'-leading' if leading_only else ''}-{key}", files


def cached(
    source: str | Path | list[str], varset: VarSet, cache_root: Path, tree: str | None = None, leading_only: bool = False
) -> Path | None:
    """The cache folder of these files if it was written (nothing is read), else None."""
    target = cache_root / cache_key(source, varset, tree, leading_only)[0]
    return target if (target / "meta.json").exists() else None


def cache_jets(
    source: str | Path | list[str],
    varset: VarSet,
    cache_root: Path,
    tree: str | None = None,
    leading_only: bool = False,
    step_size: int | str = DEFAULT_STEP,
    progress: bool = False,
) -> Path:
    """Write (once) the cleaned per-jet table of `source` as memory-mappable columns; return its folder.

    Nothing is left behind when the data are refused (a check fails) or the read is interrupted.
    """
    name, _ = cache_key(source, varset, tree, leading_only)
    target = cache_root / name
    if (target / "meta.json").exists():
        return target
    reader = _Reader(source, varset, tree, leading_only, step_size)
    cache_root.mkdir(parents=True, exist_ok=True)
    sweep_temporaries(cache_root)  # folders of reads that were killed
    tmp = temp_path(target)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        n_jets, content = _stream_columns(reader, tmp, progress)
        reader.check()
        reader.check_enough(n_jets)
        meta = reader.describe() | {"checksum": "sha256:" + content, "n_jets": n_jets}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(tmp, target)
        except OSError:  # another process cached it first: theirs is as good as ours
            if not (target / "meta.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def open_cache(folder: str | Path) -> JetTable:
    """The cached table with its columns memory-mapped (nothing is read until used)."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text())
    columns = {n: np.load(folder / f"{n}.npy", mmap_mode="r") for n in meta["names"]}
    cuts = [CutReport(**c) for c in meta["cuts"]]
    return JetTable(
        meta["names"],
        columns,
        np.load(folder / "__event__.npy", mmap_mode="r"),
        np.load(folder / "__rank__.npy", mmap_mode="r"),
        cuts,
        meta,
    )


def data_version(meta: dict) -> str:
    """The short content checksum that identifies a dataset in trial identities (16 hex digits)."""
    return meta["checksum"].removeprefix("sha256:")[:16]


def file_checksum(path: Path) -> str:
    """sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_format(path: Path) -> str:
    """'ROOT' or 'Parquet', from the file's first bytes; anything else is refused in one line."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head == b"root":
        return "ROOT"
    if head == b"PAR1":
        return "Parquet"
    raise UserError(
        f"{path}: neither a ROOT nor a Parquet file (it starts with {head!r}); hpcsweep reads ROOT TTrees and RNTuples and "
        "Parquet files: docs/data.md shows the one call that turns a CSV file or a pandas frame into either"
    )


def _existing_files(source: str | Path | list[str]) -> list[Path]:
    """The files of a source; a missing one names the jet files that do exist beside it."""
    items = [str(source)] if isinstance(source, str | Path) else [str(s) for s in source]
    files = expand_sources(items)
    for item in items:
        if glob.has_magic(item) and not glob.glob(item):
            raise UserError(f"no file matches {item!r}")
    for path in files:
        if not path.is_file():
            siblings = sorted(p.name for p in path.parent.glob("*") if p.suffix in (".root", ".parquet")) if path.parent.is_dir() else []
            raise UserError(
                f"{path}: no such data file" + (f"; ROOT and Parquet files in {path.parent}: {', '.join(siblings)}" if siblings else "")
            )
    if not files:
        raise UserError("no data file given")
    return files


def _stream_columns(reader: _Reader, folder: Path, progress: bool) -> tuple[int, str]:
    """Append each chunk's columns to raw files, then give each a .npy header (constant memory).

    Returns the number of jets and the sha256 of the columns as read (independent of chunking).
    """
    from tqdm import tqdm

    names = reader.varset.names + ["__event__", "__rank__"]
    dtypes: dict[str, np.dtype] = {}
    digests = {n: hashlib.sha256() for n in names}
    n_jets = 0
    with ExitStack() as files:
        raw = {n: files.enter_context(open(folder / f"{n}.raw", "wb")) for n in names}
        bar = files.enter_context(tqdm(total=reader.n_entries, unit="entry", desc=f"reading {reader.label}", disable=not progress))
        for chunk in reader.chunks(on_progress=bar.update):
            for name in names:
                array = np.ascontiguousarray(chunk[name])
                dtypes[name] = array.dtype
                raw[name].write(array.tobytes())
                digests[name].update(array.tobytes())
            n_jets += len(chunk["__event__"])
    for name in names:
        _raw_to_npy(folder / f"{name}.raw", folder / f"{name}.npy", dtypes.get(name, np.dtype(np.float32)), n_jets)
    content = hashlib.sha256(json.dumps([[n, str(dtypes.get(n)), digests[n].hexdigest()] for n in names] + [n_jets]).encode())
    return n_jets, content.hexdigest()


def _raw_to_npy(raw: Path, npy: Path, dtype: np.dtype, n: int) -> None:
    with open(npy, "wb") as out, open(raw, "rb") as data:
        np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n,)})
        shutil.copyfileobj(data, out, 1 << 22)
    raw.unlink()


class InputFile:
    """One input file: its tree (or RNTuple, or the Parquet table), entries, branch names, and its chunks.

    `format` is the file's ('ROOT' or 'Parquet'), `kind` its table's ('TTree', 'RNTuple' or 'Parquet'): the one place
    that tells them apart, for the reading here, `inspect` and the files `compress` writes back.
    """

    def __init__(self, path: Path, tree: str | None):
        self.path = path
        self.format = file_format(path)
        self.kind = "Parquet"
        if self.format == "Parquet":
            import pyarrow.parquet as pq

            try:
                self._parquet = pq.ParquetFile(path)
            except Exception as err:  # pyarrow raises several kinds for a damaged file
                raise UserError(f"{path}: not a readable Parquet file ({err})") from None
            self.tree = PARQUET_TABLE
            self.n_entries = self._parquet.metadata.num_rows
            self.available = list(self._parquet.schema_arrow.names)
        else:
            import uproot

            try:
                handle = uproot.open(path)
            except Exception as err:  # uproot raises many kinds for a damaged file
                raise UserError(f"{path}: not a readable ROOT file ({err})") from None
            self.tree = _pick_tree(handle, path, tree)
            table = handle[self.tree]
            self.kind = "RNTuple" if table.classname == "ROOT::RNTuple" else "TTree"
            self.n_entries = table.num_entries
            self.available = [b.name for b in table.itervalues(recursive=True)]

    def iterate(self, branches: list[str], step_size: int | str) -> Iterator[tuple[ak.Array, int, int]]:
        """(awkward record array, first entry, entry after the last) per chunk."""
        if self.format == "Parquet":
            yield from self._parquet_chunks(branches, step_size)
            return
        import uproot

        for arrays, report in uproot.iterate(
            {str(self.path): self.tree}, filter_name=branches, step_size=step_size, report=True, library="ak"
        ):
            yield arrays, report.tree_entry_start, report.tree_entry_stop

    def _parquet_chunks(self, branches: list[str], step_size: int | str) -> Iterator[tuple[ak.Array, int, int]]:
        """Record batches of about `step_size` bytes (row count estimated from the file's value counts)."""
        import awkward as ak
        import pyarrow as pa

        metadata = self._parquet.metadata
        values_per_row = 1.0
        if metadata.num_row_groups and metadata.num_rows:
            group = metadata.row_group(0)
            values_per_row = sum(group.column(i).num_values for i in range(group.num_columns)) / max(group.num_rows, 1)
        budget = _bytes(step_size)
        rows = max(1000, int(budget / (8 * max(values_per_row, 1.0))))
        start = 0
        for batch in self._parquet.iter_batches(batch_size=rows, columns=branches):
            arrays = ak.from_arrow(pa.Table.from_batches([batch]))
            yield arrays, start, start + len(batch)
            start += len(batch)


def _bytes(step_size: int | str) -> int:
    """'16 MB' -> bytes (an int is taken as a number of entries' worth of bytes)."""
    if isinstance(step_size, int):
        return step_size * 8
    number, unit = step_size.split()
    return int(float(number) * {"kB": 1e3, "MB": 1e6, "GB": 1e9}[unit])


class _Reader:
    """Resolves the files, trees and branches of a source for one variable set and yields cleaned chunks."""

    def __init__(self, source: str | Path | list[str], varset: VarSet, tree: str | None, leading_only: bool, step_size: int | str):
        self.varset, self.leading_only, self.step_size = varset, leading_only, step_size
        self.files = [InputFile(path, tree or varset.tree) for path in _existing_files(source)]
        self.label = self.files[0].path.name + (f" and {len(self.files) - 1} more files" if len(self.files) > 1 else "")
        self.n_entries = sum(f.n_entries for f in self.files)
        self.branches = [
            {v.name: find_branch(v.name, v.branches, varset.prefixes, f.available, f.path, f.tree) for v in varset.variables}
            for f in self.files
        ]
        self.event_branches = [next((b for b in varset.event_branches if b in f.available), None) for f in self.files]
        self.positive = [v.name for v in varset.variables if v.positive]
        self.discrete = {v.name: np.zeros(0) for v in varset.variables if v.discrete}
        self.cuts = [CutReport("finite values", "all variables finite")]
        if leading_only:
            self.cuts.append(CutReport("leading jet only", f"rank by {varset.rank_by or 'file order'} == 0"))
        self.cuts += [CutReport(c.name, f"{c.action} {c.expression}") for c in varset.cuts]
        if self.positive:
            self.cuts.append(CutReport("declared positive", "no negative value in " + ", ".join(self.positive)))
        self._checked = 0  # jets that reached the positivity check
        self._read = 0  # jets read, before any cut
        self._huge: dict[str, tuple[int, float]] = {}  # variable -> kept jets with |value| >= LARGEST_VALUE, the largest of them

    def describe(self, checksums: bool = True) -> dict:
        """What was read: files (format, tree, entries, and their sha256 unless `checksums` is off), variable set, cuts with counts."""
        return {
            "source": str(self.files[0].path.resolve()) if len(self.files) == 1 else self.label,
            "files": [
                {"path": str(f.path.resolve()), "format": f.format, "tree": f.tree, "entries": f.n_entries}
                | ({"sha256": file_checksum(f.path)} if checksums else {})
                for f in self.files
            ],
            "tree": self.files[0].tree,
            "varset": self.varset.name,
            "names": self.varset.names,
            "leading_only": self.leading_only,
            "n_entries": self.n_entries,
            "cuts": [asdict(c) for c in self.cuts],
            "cache_version": CACHE_VERSION,
        }

    def chunks(self, on_progress: Callable[[int], None] = lambda n: None) -> Iterator[dict[str, np.ndarray]]:
        """Yield dicts of per-jet numpy columns (plus __event__, __rank__) after cuts, file after file.

        Events are numbered across files. In a flat per-jet file with an event branch, the
        jets of the event at the end of a chunk are held back and joined to the next chunk,
        so that ranks within events are exact; those events are numbered 0, 1, 2, ... in
        order of appearance (jets of one event must be adjacent).
        """
        offset = 0  # events (entries or numbered events) of the files before this one
        for file, branches, event_branch in zip(self.files, self.branches, self.event_branches, strict=True):
            wanted = list(branches.values()) + ([event_branch] if event_branch else [])
            held: tuple[dict[str, np.ndarray], np.ndarray] | None = None
            numbered = offset
            for arrays, start, stop in file.iterate(wanted, self.step_size):
                columns, event, rank = self._flatten(arrays, branches, event_branch, offset + start)
                if rank is None:  # flat file with an event branch: rank once the event is complete
                    if held is not None:
                        columns = {k: np.concatenate([held[0][k], v]) for k, v in columns.items()}
                        event = np.concatenate([held[1], event])
                    complete = np.ones(len(event), dtype=bool)
                    if stop < file.n_entries and len(event):
                        complete = event != event[-1]
                    held = ({k: v[~complete] for k, v in columns.items()}, event[~complete])
                    columns, event = {k: v[complete] for k, v in columns.items()}, event[complete]
                    new_event = np.r_[True, event[1:] != event[:-1]] if len(event) else np.zeros(0, bool)
                    event = numbered + np.cumsum(new_event, dtype=np.int64) - 1
                    numbered = int(event[-1]) + 1 if len(event) else numbered
                    order_by = columns[self.varset.rank_by] if self.varset.rank_by else None
                    rank = _rank_within_events(event, order_by).astype(np.int32)
                yield self._clean(columns, event, rank)
                on_progress(stop - start)
            offset = numbered if event_branch else offset + file.n_entries

    def _flatten(
        self, arrays: ak.Array, branches: dict[str, str], event_branch: str | None, entry_start: int
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
        """Per-jet columns in physical units, event index, and rank (None: to be computed per event)."""
        import awkward as ak

        def values(branch: str) -> ak.Array:
            return without_options(arrays[branch])

        first = values(branches[self.varset.names[0]])
        rank_branch = branches.get(self.varset.rank_by) if self.varset.rank_by else None
        rank: np.ndarray | None
        if first.ndim > 1:  # jagged: one entry per event
            counts = ak.to_numpy(ak.num(first))
            event = np.repeat(entry_start + np.arange(len(counts), dtype=np.int64), counts)
            if rank_branch:
                order = ak.argsort(values(rank_branch), axis=1, ascending=False)
                rank = ak.to_numpy(ak.flatten(ak.argsort(order, axis=1)))
            else:
                rank = ak.to_numpy(ak.flatten(ak.local_index(first)))
            flat = {v.name: ak.to_numpy(ak.flatten(values(branches[v.name]))) for v in self.varset.variables}
        else:  # flat: one entry per jet
            flat = {v.name: ak.to_numpy(values(branches[v.name])) for v in self.varset.variables}
            if event_branch:
                event, rank = ak.to_numpy(values(event_branch)).astype(np.int64), None
            else:
                event = entry_start + np.arange(len(first), dtype=np.int64)
                rank = np.zeros(len(first), dtype=np.int64)
        columns = {v.name: _in_units(flat[v.name], v.unit_scale) for v in self.varset.variables}
        return columns, event, None if rank is None else rank.astype(np.int32)

    def _clean(self, columns: dict[str, np.ndarray], event: np.ndarray, rank: np.ndarray) -> dict[str, np.ndarray]:
        """The chunk's kept jets, each removed one counted by its step; the property checks take note of what is kept.

        Finite values are checked column by column: a pandas frame of the chunk copied it into one 2-D block and again
        into a NumPy array, and importing pandas took 42 MB; together some 15 % of the peak memory of caching a file.
        """
        finite = {name: np.isfinite(columns[name]) for name in self.varset.names}
        keep = np.logical_and.reduce(list(finite.values()))
        self._read += len(keep)
        _count(self.cuts[0], ~keep, {name: ~mask for name, mask in finite.items()})
        steps = iter(self.cuts[1:])
        if self.leading_only:
            next(steps).removed += int((keep & (rank != 0)).sum())
            keep &= rank == 0
        for cut in self.varset.cuts:
            passed = evaluate_cut(columns, cut.expression, self.varset.name)
            passed = passed if cut.action == "keep" else ~passed
            next(steps).removed += int((keep & ~passed).sum())
            keep &= passed
        if self.positive:
            self._checked += int(keep.sum())
            negative = {name: keep & (columns[name] < 0) for name in self.positive}
            dropped = np.logical_or.reduce(list(negative.values()))
            _count(next(steps), dropped, negative)
            keep &= ~dropped
        for name, seen in self.discrete.items():
            if len(seen) <= DISCRETE_LIMIT:
                self.discrete[name] = np.union1d(seen, np.unique(columns[name][keep]))
        out = {name: columns[name][keep] for name in self.varset.names}
        self._note_huge(out)
        out["__event__"] = event[keep]
        out["__rank__"] = rank[keep]
        return out

    def _note_huge(self, kept: dict[str, np.ndarray]) -> None:
        """Count the kept values of each variable at or above LARGEST_VALUE in magnitude, and keep the largest."""
        for name, values in kept.items():
            huge = values[np.abs(values) >= LARGEST_VALUE]
            if len(huge):
                count, largest = self._huge.get(name, (0, 0.0))
                self._huge[name] = (count + len(huge), max(largest, float(huge[np.argmax(np.abs(huge))]), key=abs))

    def check(self) -> None:
        """Refuse what the data contradict or cannot train: a variable that is never finite, values too large for float32,
        many negative values of a positive variable, a continuous 'discrete' one."""
        never_finite = [name for name in self.varset.names if self.cuts[0].by_variable.get(name) == self._read]
        if never_finite:
            name = never_finite[0]
            raise UserError(
                f"{self.label}: variable {name!r}{self._branch_of(name)} is NaN or inf in every one of the {self._read:,} jets; "
                "every jet would be cut: read another branch for it, or leave it out of the variable set"
            )
        if self._huge:
            name, (count, largest) = next(iter(self._huge.items()))
            limit = f"{LARGEST_VALUE:g}".replace("e+", "e")
            raise UserError(
                f"{self.label}: variable {name!r}{self._branch_of(name)} has |value| >= {limit} in {count:,} jets (largest {largest:.4g}): "
                f"too large for float32 training, and no physical value; if they mark missing values, cut those jets in the "
                f'variable set (cuts: [{{drop: "abs({name}) >= {limit}"}}])'
            )
        if self.positive:
            report = self.cuts[-1]
            for name, count in report.by_variable.items():
                if count > POSITIVE_CUT_LIMIT * max(self._checked, 1):
                    raise UserError(
                        f"{self.label}: variable {name!r} is declared positive in variable set {self.varset.name!r}, but {count:,} of "
                        f"{self._checked:,} jets ({100 * count / max(self._checked, 1):.1f} %) are negative; remove positive: true "
                        f"for it (its residual is then absolute), or cut those jets (drop: {name} < 0); "
                        f"up to {100 * POSITIVE_CUT_LIMIT:g} % are cut and counted"
                    )
        for name, seen in self.discrete.items():
            if len(seen) > DISCRETE_LIMIT:
                raise UserError(
                    f"{self.label}: variable {name!r} is declared discrete in variable set {self.varset.name!r}, but takes more than "
                    f"{DISCRETE_LIMIT:,} distinct values: it is continuous; remove discrete: true for it"
                )

    def check_enough(self, n_jets: int) -> None:
        """Refuse a table of fewer than MIN_JETS jets (a trial would fail with no training step), naming what removed them."""
        if n_jets >= MIN_JETS:
            return
        if not self._read:
            raise UserError(f"{self.label}: holds no jets ({self.n_entries:,} entries)")
        removed = "; ".join(
            f"{c.name}: {c.removed:,}" + (f" ({', '.join(f'{k} {n:,}' for k, n in c.by_variable.items())})" if c.by_variable else "")
            for c in self.cuts
            if c.removed
        )
        raise UserError(
            f"{self.label}: the cleaning leaves {n_jets} of the {self._read:,} jets (at least {MIN_JETS} are needed); removed by {removed}"
        )

    def _branch_of(self, name: str) -> str:
        """' (branch jet_x)' where a variable is read from branches of other names, for messages."""
        branches = sorted({branches[name] for branches in self.branches} - {name})
        return f" (branch {', '.join(branches)})" if branches else ""


def _count(report: CutReport, removed: np.ndarray, by_variable: dict[str, np.ndarray]) -> None:
    report.removed += int(removed.sum())
    for name, mask in by_variable.items():
        if mask.any():
            report.by_variable[name] = report.by_variable.get(name, 0) + int(mask.sum())


def _has_options(array: ak.Array) -> bool:
    """Whether an awkward array may hold missing values (Parquet columns from pandas do)."""
    return "?" in str(array.type) or "option" in str(array.type)


def without_options(array: ak.Array) -> ak.Array:
    """A branch without missing values: a jagged branch's missing entries hold no jets, missing values become NaN
    (jets the checks then count as not finite)."""
    import awkward as ak

    if not _has_options(array):
        return array
    if array.ndim > 1:
        array = ak.fill_none(array, [], axis=0)
    return ak.fill_none(array, np.nan, axis=None)


def _in_units(values: np.ndarray, scale: float) -> np.ndarray:
    """float32 (the table's type) in the variable set's units, rounded once from the exact product."""
    if scale == 1:
        return values.astype(np.float32, copy=False)
    return (values.astype(np.float64) * scale).astype(np.float32)


def evaluate_cut(columns: Mapping[str, np.ndarray], expression: str, varset_name: str) -> np.ndarray:
    """Which rows of `columns` (variable -> values) pass a cut's expression (`hpcsweep.data.cuts`: data, never code);
    a bad expression is a UserError naming the set."""
    from hpcsweep.data.cuts import CutError, cut_mask

    n = len(next(iter(columns.values()))) if columns else 0
    try:
        return cut_mask(expression, columns, n)
    except CutError as err:
        raise UserError(f"variable set {varset_name!r}: cut {expression!r}: {err}") from None


def _rank_within_events(event: np.ndarray, order_by: np.ndarray | None) -> np.ndarray:
    """Rank of each jet inside its event in a flat tree (0 = highest `order_by`, else file order)."""
    key = -order_by if order_by is not None else np.arange(len(event))
    order = np.lexsort((key, event))
    sorted_events = event[order]
    starts = np.flatnonzero(np.r_[True, sorted_events[1:] != sorted_events[:-1]])
    position = np.arange(len(event)) - np.repeat(starts, np.diff(np.r_[starts, len(event)]))
    rank = np.empty(len(event), dtype=np.int64)
    rank[order] = position
    return rank


TABLE_CLASSES = ("TTree", "ROOT::RNTuple")


def _pick_tree(handle: uproot.ReadOnlyDirectory, path: Path, wanted: str | None) -> str:
    trees = sorted({key.split(";")[0] for key, cls in handle.classnames(recursive=True).items() if cls in TABLE_CLASSES})
    if wanted:
        if wanted not in trees:
            raise UserError(f"{path}: no tree or RNTuple {wanted!r}; in the file: {', '.join(trees) or 'none'}")
        return wanted
    if len(trees) == 1:
        return trees[0]
    if trees:
        raise UserError(f"{path}: several trees ({', '.join(trees)}); choose one with data.tree")
    found = ", ".join(f"{key} ({cls})" for key, cls in handle.classnames().items())
    raise UserError(f"{path}: holds no TTree or RNTuple" + (f"; it holds {found}" if found else ""))


def find_branch(name: str, candidates: tuple[str, ...], prefixes: tuple[str, ...], available: list[str], path: Path, tree: str) -> str:
    """The branch a variable reads (its candidates under each prefix); missing: a UserError listing the nearest branches."""
    tried = [prefix + branch for branch in candidates for prefix in prefixes]
    for branch in tried:
        if branch in available:
            return branch
    hint = _nearest_branches(name, candidates, available)
    where = "the Parquet table" if tree == PARQUET_TABLE else repr(tree)
    raise UserError(
        f"{path}: {where} has no branch for variable {name!r} (tried {', '.join(tried)}); "
        f"nearest existing branches: {', '.join(hint) if hint else ', '.join(available[:10])} "
        "(a variable's 'branches' and the set's 'prefixes' say where it is read)"
    )


def _nearest_branches(name: str, candidates: tuple[str, ...], available: list[str]) -> list[str]:
    """The branches that hold the variable under another prefix (AK4_pt, Jet.pt for pt) first, then look-alike names."""
    ends = tuple(f"{sep}{c}".lower() for c in (name, *candidates) for sep in ("_", "."))
    same = [b for b in available if b.lower() in {c.lower() for c in (name, *candidates)} or b.lower().endswith(ends)]
    return [*same, *(b for b in closest(name, available) if b not in same)][:5]
