"""ROOT files -> per-jet float32 tables, read in chunks, cleaned, and cached on disk.

Any TTree with jagged per-event jet branches (or a flat tree with one entry
per jet) is read with `uproot.iterate`, one chunk at a time, so peak memory
does not grow with the file. Each jet keeps its event index and its rank in
the event (0 = leading, by the variable set's `rank_by`). The cleaned table is
cached as one `.npy` file per column, which training memory-maps.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hpcsweep.data.varset import VarSet
from hpcsweep.errors import UserError, closest

CACHE_VERSION = 1
DEFAULT_STEP = "16 MB"  # ~100k jets per chunk: peak memory flat in the file size (docs/benchmarks.md)


@dataclass
class CutReport:
    """How many jets one cleaning step removed (counted after the previous steps)."""

    name: str
    expression: str
    removed: int = 0


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
    path: str | Path,
    varset: VarSet,
    tree: str | None = None,
    leading_only: bool = False,
    step_size: int | str = DEFAULT_STEP,
) -> JetTable:
    """Read a whole file into memory (for small files; use `cache_jets` for large ones)."""
    reader = _Reader(Path(path), varset, tree, leading_only, step_size)
    chunks = list(reader.chunks())
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
    )


def cache_jets(
    path: str | Path,
    varset: VarSet,
    cache_root: Path,
    tree: str | None = None,
    leading_only: bool = False,
    step_size: int | str = DEFAULT_STEP,
    progress: bool = False,
) -> Path:
    """Write (once) the cleaned per-jet table of `path` as memory-mappable columns; return its folder."""
    path = Path(path)
    reader = _Reader(path, varset, tree, leading_only, step_size)
    stat = path.stat()
    key = hashlib.sha256(
        json.dumps(
            [str(path.resolve()), stat.st_size, stat.st_mtime_ns, varset.source_text, reader.tree_name, leading_only, CACHE_VERSION]
        ).encode()
    ).hexdigest()[:16]
    target = cache_root / f"{path.stem}-{varset.name}{'-leading' if leading_only else ''}-{key}"
    if (target / "meta.json").exists():
        return target
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = cache_root / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        n_jets = _stream_columns(reader, tmp, progress)
        meta = {
            "source": str(path.resolve()),
            "checksum": "sha256:" + file_checksum(path),
            "tree": reader.tree_name,
            "varset": varset.name,
            "names": varset.names,
            "leading_only": leading_only,
            "n_jets": n_jets,
            "n_entries": reader.n_entries,
            "cuts": [asdict(c) for c in reader.cuts],
            "cache_version": CACHE_VERSION,
        }
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


def file_checksum(path: Path) -> str:
    """sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _stream_columns(reader: _Reader, folder: Path, progress: bool) -> int:
    """Append each chunk's columns to raw files, then give each a .npy header (constant memory)."""
    from tqdm import tqdm

    names = reader.varset.names + ["__event__", "__rank__"]
    dtypes: dict[str, np.dtype] = {}
    n_jets = 0
    with ExitStack() as files:
        raw = {n: files.enter_context(open(folder / f"{n}.raw", "wb")) for n in names}
        bar = files.enter_context(tqdm(total=reader.n_entries, unit="entry", desc=f"reading {reader.path.name}", disable=not progress))
        for chunk in reader.chunks(on_progress=bar.update):
            for name in names:
                array = np.ascontiguousarray(chunk[name])
                dtypes[name] = array.dtype
                raw[name].write(array.tobytes())
            n_jets += len(chunk["__event__"])
    for name in names:
        _raw_to_npy(folder / f"{name}.raw", folder / f"{name}.npy", dtypes.get(name, np.dtype(np.float32)), n_jets)
    return n_jets


def _raw_to_npy(raw: Path, npy: Path, dtype: np.dtype, n: int) -> None:
    with open(npy, "wb") as out, open(raw, "rb") as data:
        np.lib.format.write_array_header_1_0(out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (n,)})
        shutil.copyfileobj(data, out, 1 << 22)
    raw.unlink()


class _Reader:
    """Resolves the tree and branches of one file for one variable set and yields cleaned chunks."""

    def __init__(self, path: Path, varset: VarSet, tree: str | None, leading_only: bool, step_size: int | str):
        import uproot

        if not path.is_file():
            siblings = sorted(p.name for p in path.parent.glob("*.root")) if path.parent.is_dir() else []
            raise UserError(f"{path}: no such data file" + (f"; ROOT files in {path.parent}: {', '.join(siblings)}" if siblings else ""))
        self.path, self.varset, self.leading_only, self.step_size = path, varset, leading_only, step_size
        try:
            handle = uproot.open(path)
        except Exception as err:  # uproot raises many kinds for a non-ROOT file
            raise UserError(f"{path}: not a readable ROOT file ({err})") from None
        self.tree_name = _pick_tree(handle, path, tree or varset.tree)
        ttree = handle[self.tree_name]
        self.n_entries = ttree.num_entries
        available = [b.name for b in ttree.itervalues(recursive=True)]
        self.branches = {
            v.name: _find_branch(v.name, v.branches, varset.prefixes, available, path, self.tree_name) for v in varset.variables
        }
        self.event_branch = next((b for b in varset.event_branches if b in available), None)
        self.cuts = [CutReport("finite values", "all variables finite")]
        if leading_only:
            self.cuts.append(CutReport("leading jet only", f"rank by {varset.rank_by or 'file order'} == 0"))
        self.cuts += [CutReport(c.name, f"{c.action} {c.expression}") for c in varset.cuts]

    def chunks(self, on_progress=lambda n: None) -> Iterator[dict[str, np.ndarray]]:
        """Yield dicts of per-jet numpy columns (plus __event__, __rank__) after cuts.

        In a flat per-jet tree the jets of the event at the end of a chunk are held
        back and joined to the next chunk, so that ranks within events are exact.
        """
        import uproot

        wanted = list(self.branches.values()) + ([self.event_branch] if self.event_branch else [])
        held: tuple[dict[str, np.ndarray], np.ndarray] | None = None
        for arrays, report in uproot.iterate(
            {str(self.path): self.tree_name}, filter_name=wanted, step_size=self.step_size, report=True, library="ak"
        ):
            columns, event, rank = self._flatten(arrays, report.tree_entry_start)
            if rank is None:  # flat tree with an event branch: rank once the event is complete
                if held is not None:
                    columns = {k: np.concatenate([held[0][k], v]) for k, v in columns.items()}
                    event = np.concatenate([held[1], event])
                complete = np.ones(len(event), dtype=bool)
                if report.tree_entry_stop < self.n_entries and len(event):
                    complete = event != event[-1]
                held = ({k: v[~complete] for k, v in columns.items()}, event[~complete])
                columns, event = {k: v[complete] for k, v in columns.items()}, event[complete]
                order_by = columns[self.varset.rank_by] if self.varset.rank_by else None
                rank = _rank_within_events(event, order_by).astype(np.int32)
            yield self._clean(columns, event, rank)
            on_progress(report.tree_entry_stop - report.tree_entry_start)

    def _flatten(self, arrays, entry_start: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray | None]:
        """Per-jet columns in physical units, event index, and rank (None: to be computed per event)."""
        import awkward as ak

        first = arrays[self.branches[self.varset.names[0]]]
        rank_branch = self.branches.get(self.varset.rank_by) if self.varset.rank_by else None
        rank: np.ndarray | None
        if first.ndim > 1:  # jagged: one entry per event
            counts = ak.to_numpy(ak.num(first))
            event = np.repeat(entry_start + np.arange(len(counts), dtype=np.int64), counts)
            if rank_branch:
                order = ak.argsort(arrays[rank_branch], axis=1, ascending=False)
                rank = ak.to_numpy(ak.flatten(ak.argsort(order, axis=1)))
            else:
                rank = ak.to_numpy(ak.flatten(ak.local_index(first)))
            flat = {v.name: ak.to_numpy(ak.flatten(arrays[self.branches[v.name]])) for v in self.varset.variables}
        else:  # flat: one entry per jet
            flat = {v.name: ak.to_numpy(arrays[self.branches[v.name]]) for v in self.varset.variables}
            if self.event_branch:
                event, rank = ak.to_numpy(arrays[self.event_branch]).astype(np.int64), None
            else:
                event = entry_start + np.arange(len(first), dtype=np.int64)
                rank = np.zeros(len(first), dtype=np.int64)
        columns = {v.name: _in_units(flat[v.name], v.unit_scale) for v in self.varset.variables}
        return columns, event, None if rank is None else rank.astype(np.int32)

    def _clean(self, columns: dict[str, np.ndarray], event: np.ndarray, rank: np.ndarray) -> dict[str, np.ndarray]:
        import pandas as pd

        frame = pd.DataFrame(columns, copy=False)
        keep = np.isfinite(frame.to_numpy()).all(axis=1)
        self.cuts[0].removed += int((~keep).sum())
        steps = self.cuts[1:]
        if self.leading_only:
            self.cuts[1].removed += int((keep & (rank != 0)).sum())
            keep &= rank == 0
            steps = self.cuts[2:]
        for report, cut in zip(steps, self.varset.cuts, strict=True):
            passed = _evaluate(frame, cut.expression, self.varset.name)
            passed = passed if cut.action == "keep" else ~passed
            report.removed += int((keep & ~passed).sum())
            keep &= passed
        out = {name: columns[name][keep] for name in self.varset.names}
        out["__event__"] = event[keep]
        out["__rank__"] = rank[keep]
        return out


def _in_units(values: np.ndarray, scale: float) -> np.ndarray:
    """float32 (the table's type) in the variable set's units, rounded once from the exact product."""
    if scale == 1:
        return values.astype(np.float32, copy=False)
    return (values.astype(np.float64) * scale).astype(np.float32)


def _evaluate(frame, expression: str, varset_name: str) -> np.ndarray:
    try:
        result = frame.eval(expression, engine="python")
    except Exception as err:
        raise UserError(
            f"variable set {varset_name!r}: cannot evaluate cut {expression!r} ({err}); variables: {', '.join(frame.columns)}"
        ) from None
    return np.asarray(result, dtype=bool)


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


def _pick_tree(handle, path: Path, wanted: str | None) -> str:
    trees = sorted({key.split(";")[0] for key, cls in handle.classnames(recursive=True).items() if cls == "TTree"})
    if wanted:
        if wanted not in trees:
            raise UserError(f"{path}: no tree {wanted!r}; trees in the file: {', '.join(trees) or 'none'}")
        return wanted
    if len(trees) == 1:
        return trees[0]
    raise UserError(f"{path}: " + (f"several trees ({', '.join(trees)}); choose one with data.tree" if trees else "holds no TTree"))


def _find_branch(name: str, candidates: tuple[str, ...], prefixes: tuple[str, ...], available: list[str], path: Path, tree: str) -> str:
    tried = [prefix + branch for branch in candidates for prefix in prefixes]
    for branch in tried:
        if branch in available:
            return branch
    hint = closest(tried[0], available) or closest(name, available)
    raise UserError(
        f"{path}: tree {tree!r} has no branch for variable {name!r} (tried {', '.join(tried)}); "
        f"nearest existing branches: {', '.join(hint) if hint else ', '.join(available[:10])}"
    )
