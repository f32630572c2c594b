"""Compress a jet file with a bundle's compressor, and give it back: chunk by chunk, memory flat in the file size.

The file's records, framing and checksums: `container`; coding in worker
processes: `pool`. The model's variables are compressed within the bound; their
jets outside the variable set's cuts (which the model never saw) are stored losslessly, as are
every other branch (awkward buffers + zstd) and the jaggedness. Decompressing
writes the same tree, branch names, types and jaggedness (ROOT via uproot,
or Parquet); a jagged group's counter branch is written by uproot as int32.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hpcsweep import files
from hpcsweep.compress.bundle import Bundle
from hpcsweep.compress.container import RecordWriter, read_compressed
from hpcsweep.compress.pool import Coders
from hpcsweep.errors import UserError

if TYPE_CHECKING:
    import awkward as ak
    import pyarrow.parquet as pq
    import uproot

    from hpcsweep.data.read import InputFile
    from hpcsweep.data.varset import Variable, VarSet

STEP = "16 MB"  # of input per chunk: ~160k flat jets of 24 variables, ~0.5 GB of coding arrays
LEVEL = 3  # zstd level of the lossless parts
PARALLEL_ABOVE = 32_000_000  # input bytes (compressed files: an eighth) from which chunks are coded in worker processes
Pending = tuple[Future, dict[str, bytes], int, int]  # a chunk being coded: its future, its other parts, entries and jets


@dataclass
class Summary:
    """What a compress or decompress did, for the terminal and the benchmarks."""

    entries: int = 0
    jets: int = 0
    lossless_jets: int = 0
    model_bytes: int = 0  # the coded model variables
    total_bytes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


# --- compress -------------------------------------------------------------------------------------
def compress_file(
    source: Path, bundle: Bundle, bound: float, output: Path, tree: str | None = None, step_size: str = STEP, progress: bool = True
) -> Summary:
    """Compress `source` (ROOT TTree/RNTuple or Parquet, flat or jagged) into `output`, atomically."""
    from tqdm import tqdm

    bundle.check_bound(bound)  # a bound the bundle lacks is refused before anything is read
    varset = bundle.varset
    file, model, notes = open_input(source, bundle, tree, "compress")
    summary, started = Summary(notes=notes), time.perf_counter()
    with (
        atomic(output) as out,
        Coders(bundle, bound, file.path.stat().st_size > PARALLEL_ABOVE) as coders,
        tqdm(total=file.n_entries, desc=f"compressing {file.path.name}", unit="entry", disable=not progress) as bar,
    ):
        records = RecordWriter(out)
        header: dict[str, Any] | None = None
        kind, branches, counters = layout(file)

        def write(chunk: tuple[Any, dict[str, bytes], int, int]) -> None:
            future, sections, entries, n_jets = chunk
            sections["model"] = future.result()
            summary.model_bytes += len(sections["model"])
            records.chunk(entries, n_jets, sections)
            bar.update(entries)

        for arrays, start, stop in file.iterate(branches, step_size):
            if header is None:
                header = header_of(file, kind, counters, arrays, model, bundle, bound)
                records.header(header)
            coded, sections, n_jets = _split_chunk(arrays, model, varset, summary)
            coders.queue((coders.encode(coded), sections, stop - start, n_jets), write)
            summary.entries += stop - start
        coders.drain(write)
        records.end()
        summary.total_bytes = out.tell()
    summary.seconds = time.perf_counter() - started
    if summary.lossless_jets:
        summary.notes.append(
            f"{summary.lossless_jets:,} jets the model does not apply to (outside the cuts, not finite, or a negative value of a positive variable) stored losslessly"
        )
    return summary


def open_input(source: Path, bundle: Bundle, tree: str | None, verb: str) -> tuple[InputFile, dict[str, Variable], list[str]]:
    """The input, its branch for each of the bundle's variables (a missing one named with the nearest) and notes on how
    its jets differ from the training jets. Refused before any work: an input without entries, or one whose first
    chunk is not the kind of jets the model learned (other units: `Bundle.check_jets`)."""
    from hpcsweep.data.read import InputFile, find_branch

    varset = bundle.varset
    file = InputFile(Path(source), tree or varset.tree)
    if not file.n_entries:
        raise UserError(f"{file.path}: holds no entries to {verb}")
    model = {find_branch(v.name, v.branches, varset.prefixes, file.available, file.path, file.tree): v for v in varset.variables}
    first, _, _ = next(iter(file.iterate(list(model), STEP)))
    physical, kept = in_set_units(model_columns(first, model)[0], model, varset)
    return file, model, bundle.check_jets(physical[kept], file.path)


def in_set_units(raw: np.ndarray, model: dict[str, Variable], varset: VarSet) -> tuple[np.ndarray, np.ndarray]:
    """A chunk's model columns in the variable set's units, and which of its jets the model applies to
    (`VarSet.selected`)."""
    physical = raw * np.array([v.unit_scale for v in model.values()])
    return physical, varset.selected(dict(zip(varset.names, physical.T, strict=True)))


def layout(file: InputFile) -> tuple[str, list[str], dict[str, str]]:
    """The input's kind ('ROOT TTree', 'ROOT RNTuple', 'Parquet'), the branches to carry, and jagged branch -> counter.

    A TTree's counters are left out of the branches: uproot writes them back for their jagged groups.
    """
    if file.format == "Parquet":
        return "Parquet", file.available, {}
    import uproot

    tree = uproot.open(file.path)[file.tree]
    if not isinstance(tree, uproot.TTree):
        return "ROOT RNTuple", list(tree.keys(recursive=False)), {}
    counters = {b.name: b.count_branch.name for b in tree.itervalues() if b.count_branch is not None}
    return "ROOT TTree", [name for name in tree.keys(recursive=False) if name not in set(counters.values())], counters


def header_of(
    file: InputFile, kind: str, counters: dict[str, str], arrays: ak.Array, model: dict[str, Variable], bundle: Bundle, bound: float
) -> dict[str, Any]:
    branches = []
    for name in arrays.fields:
        array = arrays[name]
        jagged = array.ndim > 1
        dtype = _leaf_dtype(array)
        entry = {
            "name": name,
            "dtype": dtype,
            "jagged": jagged,
            "counter": counters.get(name) if jagged else None,
            "optional": _optional(array),
        }
        if name in model:
            entry["variable"] = model[name].name
            entry["unit_scale"] = model[name].unit_scale
        branches.append(entry)
    return {
        "bundle": bundle.checksum,
        "trial": bundle.trial_id,
        "bound": bound,
        "format": kind,
        "tree": file.tree,
        "source": file.path.name,
        "branches": branches,
    }


def _optional(array: ak.Array) -> bool:
    """Whether values may be missing (Parquet columns written by pandas are)."""
    return "?" in str(array.type.content)


def _leaf_dtype(array: ak.Array) -> str:
    import awkward as ak

    flat = ak.flatten(array, axis=None) if array.ndim > 1 else array
    try:
        return str(ak.to_numpy(flat[:0]).dtype)
    except Exception:  # strings, records: carried as awkward buffers whatever they are
        return "object"


def model_columns(arrays: ak.Array, model: dict[str, Variable]) -> tuple[np.ndarray, np.ndarray | None, dict[str, np.ndarray]]:
    """A chunk's model branches as (jets x variables) float64 file values, the jets per entry (None: flat), and
    where optional branches miss a value (coded as NaN)."""
    import awkward as ak

    names = list(model)
    missing: dict[str, np.ndarray] = {}
    first = arrays[names[0]]
    counts = ak.to_numpy(ak.num(first)) if first.ndim > 1 else None
    columns = []
    for name in names:
        array = arrays[name]
        if counts is not None and not np.array_equal(ak.to_numpy(ak.num(array)), counts):
            raise UserError(f"branches {names[0]!r} and {name!r} hold different numbers of jets per entry: they are not one jet collection")
        flat = ak.flatten(array) if counts is not None else array
        columns.append(ak.to_numpy(ak.fill_none(flat, np.nan) if _optional(array) else flat).astype(np.float64))
        if _optional(array):
            missing[name] = ak.to_numpy(ak.is_none(flat))
    return (np.stack(columns, axis=1) if columns else np.zeros((0, 0))), counts, missing


def _split_chunk(
    arrays: ak.Array, model: dict[str, Variable], varset: VarSet, summary: Summary
) -> tuple[np.ndarray, dict[str, bytes], int]:
    """The jets of a chunk to code (physical units, inside the cuts), the chunk's other parts packed, and its jets."""
    raw, counts, missing = model_columns(arrays, model)
    physical, kept = in_set_units(raw, model, varset)
    sections = {"kept": _zstd(np.packbits(kept).tobytes()), "lossless": _zstd(raw[~kept].tobytes())}
    if counts is not None:
        sections["counts"] = _zstd(counts.astype("<i8").tobytes())
    sections |= {f"missing/{name}": _zstd(np.packbits(mask).tobytes()) for name, mask in missing.items() if mask.any()}
    others = [name for name in arrays.fields if name not in model]
    if others:
        sections["other"] = _zstd(_to_buffers(arrays[others]))
    summary.jets += len(raw)
    summary.lossless_jets += int((~kept).sum())
    return physical[kept], sections, len(raw)


# --- decompress -----------------------------------------------------------------------------------
def decompress_file(source: Path, bundle: Bundle, output: Path, progress: bool = True) -> Summary:
    """Give back the tree of a compressed file into `output` (.root or .parquet), atomically."""
    from tqdm import tqdm

    header, chunks = read_compressed(source)
    if header["bundle"] != bundle.checksum:
        raise UserError(
            f"{source}: was compressed with another bundle (trial {header['trial']}, {header['bundle'][:19]}...), "
            f"not {bundle.path} (trial {bundle.trial_id}, {bundle.checksum[:19]}...)"
        )
    summary, started = Summary(), time.perf_counter()
    writer = writer_for(output, header)
    bundle.check_bound(header["bound"])
    names = bundle.compressor.names
    parallel = Path(source).stat().st_size > PARALLEL_ABOVE / 8
    with (
        atomic(output, binary=False) as tmp,
        Coders(bundle, header["bound"], parallel) as coders,
        tqdm(desc=f"decompressing {Path(source).name}", unit="chunk", disable=not progress) as bar,
    ):

        def write(chunk: tuple[Any, dict[str, bytes], int, int]) -> None:
            future, sections, entries, n_jets = chunk
            try:
                decoded = future.result()
            except ValueError as err:
                raise UserError(
                    f"{source}: cannot decode a chunk: {err} (was it compressed on a machine whose arithmetic differs?)"
                ) from None
            writer.write(tmp, _assemble(decoded, sections, header, names, n_jets))
            summary.entries += entries
            summary.jets += n_jets
            bar.update()

        for chunk in chunks:  # each checked as it is read: a refusal mid-file leaves no output (the temporary goes)
            coders.queue((coders.decode(chunk.sections["model"]), chunk.sections, chunk.entries, chunk.jets), write)
        coders.drain(write)
        writer.close()
    summary.total_bytes = output.stat().st_size
    summary.seconds = time.perf_counter() - started
    if "RNTuple" in header["format"] and output.suffix == ".root":
        summary.notes.append("the input was an RNTuple: written back as a TTree of the same fields")
    return summary


def _assemble(decoded: np.ndarray, sections: dict[str, bytes], header: dict[str, Any], names: list[str], n_jets: int) -> dict[str, Any]:
    """The chunk's branches (name -> awkward array), from the decoded model variables and the stored parts."""
    import awkward as ak

    order = {name: i for i, name in enumerate(names)}  # the codec's columns follow the variable set
    model = sorted((b for b in header["branches"] if "variable" in b), key=lambda b: order[b["variable"]])
    kept = np.unpackbits(np.frombuffer(_unzstd(sections["kept"]), dtype=np.uint8), count=n_jets).astype(bool)
    values = np.empty((n_jets, len(model)))
    values[kept] = decoded / np.array([b["unit_scale"] for b in model])
    values[~kept] = np.frombuffer(_unzstd(sections["lossless"]), dtype=np.float64).reshape(-1, len(model))
    counts = np.frombuffer(_unzstd(sections["counts"]), dtype="<i8") if "counts" in sections else None
    others = _from_buffers(_unzstd(sections["other"])) if "other" in sections else None
    out = {}
    for branch in header["branches"]:
        if "variable" not in branch:
            assert others is not None  # the branches outside the model are the chunk's "other" part
            out[branch["name"]] = others[branch["name"]]
            continue
        column = ak.Array(_cast(values[:, order[branch["variable"]]], branch["dtype"]))
        if branch["optional"]:
            stored = sections.get(f"missing/{branch['name']}")
            missing = (
                np.unpackbits(np.frombuffer(_unzstd(stored), np.uint8), count=n_jets).astype(bool) if stored else np.zeros(n_jets, bool)
            )
            column = ak.mask(column, ~missing)
        out[branch["name"]] = ak.unflatten(column, counts) if counts is not None else column
    return out


def _cast(values: np.ndarray, dtype: str) -> np.ndarray:
    kind = np.dtype(dtype)
    return np.round(values).astype(kind) if kind.kind in "iub" else values.astype(kind)


class _RootWriter:
    """Writes chunks into one TTree, jagged branches grouped by their counter as in the input."""

    def __init__(self, header: dict[str, Any]) -> None:
        self.header = header
        self.tree = header["tree"] if header["format"] != "Parquet" else "jets"
        self.file: uproot.WritableDirectory | None = None
        groups: dict[str, list[str]] = {}
        for branch in header["branches"]:
            if branch["jagged"]:
                groups.setdefault(branch["counter"] or f"n{branch['name']}", []).append(branch["name"])
        self.groups = {f"__group{i}": members for i, members in enumerate(groups.values())}
        self.counters = {f"__group{i}": counter for i, counter in enumerate(groups)}

    def write(self, path: Path, arrays: dict[str, Any]) -> None:
        import awkward as ak
        import uproot

        chunk: dict[str, Any] = {}
        placed = set()
        for branch in self.header["branches"]:
            name = branch["name"]
            group = next((g for g, members in self.groups.items() if name in members), None)
            if group is None:
                chunk[name] = arrays[name]
            elif group not in placed:
                placed.add(group)
                chunk[group] = ak.zip({m: arrays[m] for m in self.groups[group]})
        if self.file is None:
            self.file = uproot.recreate(path)
            self.file.mktree(
                self.tree,
                {k: v.type for k, v in chunk.items()},
                counter_name=lambda group: self.counters[group],
                field_name=lambda outer, inner: inner,
            )
        self.file[self.tree].extend(chunk)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class _ParquetWriter:
    def __init__(self, header: dict[str, Any]) -> None:
        self.writer: pq.ParquetWriter | None = None

    def write(self, path: Path, arrays: dict[str, Any]) -> None:
        import awkward as ak
        import pyarrow.parquet as pq

        table = ak.to_arrow_table(ak.zip(arrays, depth_limit=1), extensionarray=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(path, table.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def writer_for(output: Path, header: dict[str, Any]) -> _RootWriter | _ParquetWriter:
    if output.suffix == ".root":
        return _RootWriter(header)
    if output.suffix == ".parquet":
        return _ParquetWriter(header)
    raise UserError(f"{output}: write .root or .parquet (by the name's suffix)")


# --- records and helpers --------------------------------------------------------------------------
@contextmanager
def atomic(path: Path, binary: bool = True) -> Iterator[Any]:
    """An open binary file (or, `binary` False, the temporary's path) that becomes `path` when the block ends without error."""
    with files.atomic(path) as tmp:
        if not binary:
            yield tmp
            return
        with open(tmp, "wb") as handle:
            yield handle


def _to_buffers(array: ak.Array) -> bytes:
    import awkward as ak

    form, length, container = ak.to_buffers(ak.to_packed(array))
    blobs = {key: np.asarray(value).tobytes() for key, value in container.items()}
    head = json.dumps({"form": form.to_json(), "length": length, "keys": [[k, len(v)] for k, v in blobs.items()]}).encode()
    return struct.pack("<Q", len(head)) + head + b"".join(blobs.values())


def _from_buffers(data: bytes) -> ak.Array:
    import awkward as ak

    (size,) = struct.unpack_from("<Q", data)
    head = json.loads(data[8 : 8 + size])
    container, at = {}, 8 + size
    for key, length in head["keys"]:
        container[key] = np.frombuffer(data, dtype=np.uint8, count=length, offset=at)
        at += length
    return ak.from_buffers(ak.forms.from_json(head["form"]), head["length"], container)


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=LEVEL).compress(data)


def _unzstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdDecompressor().decompress(data)
