"""Compress a jet file with a bundle's compressor, and give it back: chunk by chunk, memory flat in the file size.

A compressed file is MAGIC (whose last byte is the layout's version), then a
sequence of records, each `type (1 byte) | length (8) | payload | sha256(payload)`:
a header (JSON: a random id of the file, the bundle's checksum, the bound, the
input's format, tree and branches with their types and jaggedness), one record
per chunk (the file's id, the chunk's index, the entries and jets before it and
its own, then its parts), and an end record (JSON: the file's id, the numbers of
chunks, entries and jets, and a sha256 of the chunk records' digests in order).
A reader checks the framing against the file's size before it reads a payload
(a length past the end, bytes after the end record, a missing end record), every
record's sha256, and that the chunks are this file's, in order, none missing or
twice, adding up to the end record: anything else is refused in one line, as a
file of an older layout is.

The model's variables are compressed within the bound; their jets outside the
variable set's cuts (which the model never saw) are stored losslessly, as are
every other branch (awkward buffers + zstd) and the jaggedness. Decompressing
writes the same tree, branch names, types and jaggedness (ROOT via uproot,
or Parquet); a jagged group's counter branch is written by uproot as int32.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from hpcsweep import files
from hpcsweep.compress.bundle import Bundle
from hpcsweep.errors import UserError

if TYPE_CHECKING:
    import awkward as ak
    import pyarrow.parquet as pq
    import uproot

    from hpcsweep.codec import Compressor
    from hpcsweep.data.read import InputFile
    from hpcsweep.data.varset import Variable, VarSet

PREFIX, VERSION = b"HPCSWEEP-JETS\x00", 2  # 2: chunks numbered under the file's id, end record with totals and digest
MAGIC = PREFIX + bytes([VERSION])
HEADER, CHUNK, END = b"H", b"C", b"E"
FRAME = struct.Struct("<cQ")  # a record's type and payload length
DIGEST = 32  # bytes of the sha256 after each payload
CHUNK_HEAD = struct.Struct("<16sQQQQQ")  # a chunk payload's file id, index, first entry, first jet, entries and jets
STEP = "16 MB"  # of input per chunk: ~160k flat jets of 24 variables, ~0.5 GB of coding arrays
LEVEL = 3  # zstd level of the lossless parts


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


@dataclass(frozen=True)
class Chunk:
    """A chunk record: where it stands in its file (index, entries and jets of the chunks before it), what it holds,
    and its parts (coded model variables, losslessly stored jets, counts, other branches)."""

    index: int
    first_entry: int
    first_jet: int
    entries: int
    jets: int
    sections: dict[str, bytes]


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
        _Coders(bundle, bound, file.path.stat().st_size > PARALLEL_ABOVE) as coders,
        tqdm(total=file.n_entries, desc=f"compressing {file.path.name}", unit="entry", disable=not progress) as bar,
    ):
        records = _RecordWriter(out)
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
            coders.queue((coders.submit(_encode, coded), sections, stop - start, n_jets), write)
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


def _payload(file_id: bytes, chunk: Chunk) -> bytes:
    head = CHUNK_HEAD.pack(file_id, chunk.index, chunk.first_entry, chunk.first_jet, chunk.entries, chunk.jets)
    return head + b"".join(struct.pack("<H", len(k)) + k.encode() + struct.pack("<Q", len(v)) + v for k, v in chunk.sections.items())


def _chunk(payload: bytes) -> tuple[bytes, Chunk]:
    """The id of the file a chunk payload was written into, and the chunk."""
    file_id, index, first_entry, first_jet, entries, jets = CHUNK_HEAD.unpack_from(payload)
    sections, at = {}, CHUNK_HEAD.size
    while at < len(payload):
        (size,) = struct.unpack_from("<H", payload, at)
        key = payload[at + 2 : at + 2 + size].decode()
        (length,) = struct.unpack_from("<Q", payload, at + 2 + size)
        start = at + 2 + size + 8
        sections[key] = payload[start : start + length]
        at = start + length
    return file_id, Chunk(index, first_entry, first_jet, entries, jets, sections)


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
        _Coders(bundle, header["bound"], parallel) as coders,
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
            coders.queue((coders.submit(_decode, chunk.sections["model"]), chunk.sections, chunk.entries, chunk.jets), write)
        coders.drain(write)
        writer.close()
    summary.total_bytes = output.stat().st_size
    summary.seconds = time.perf_counter() - started
    if "RNTuple" in header["format"] and output.suffix == ".root":
        summary.notes.append("the input was an RNTuple: written back as a TTree of the same fields")
    return summary


def read_compressed(source: Path) -> tuple[dict[str, Any], Iterator[Chunk]]:
    """The header of a compressed file, and its chunks as they are read, each checked (see `_Sequence`).

    Its version and framing, header and end record are checked first, so most damage is refused before anything is
    written; the chunks' digests only as they are read (a file is read once).
    """
    source = Path(source)
    if not source.is_file():
        raise UserError(f"{source}: no such compressed file")
    with open(source, "rb") as handle:
        _check_version(handle.read(len(MAGIC)), source)
        records = _framing(handle, source)
        header = json.loads(_verified(handle, records[0], source)[0])
        end = json.loads(_verified(handle, records[-1], source)[0])
    if end["file_id"] != header["file_id"]:
        raise UserError(f"{source}: damaged (the end record belongs to another file)")
    sequence = _Sequence(source, bytes.fromhex(header["file_id"]), len(records) - 2, end)
    return header, sequence.read(records[1:-1])


def _check_version(magic: bytes, source: Path) -> None:
    """Refuse a file of another layout by its version, in words, rather than as damage."""
    if len(magic) < len(MAGIC) or not magic.startswith(PREFIX):
        raise UserError(f"{source}: not a file made by hpcsweep compress")
    version = magic[-1]
    if version < VERSION:
        raise UserError(
            f"{source}: written by an older hpcsweep (file format {version}; this one reads format {VERSION}): "
            "decompress it with the version that wrote it"
        )
    if version > VERSION:
        raise UserError(f"{source}: written by a newer hpcsweep (file format {version}; this one reads format {VERSION}): update hpcsweep")


@dataclass(frozen=True)
class _Record:
    """Where a record's payload lies in its file."""

    kind: bytes
    at: int
    length: int


def _framing(handle: BinaryIO, source: Path) -> list[_Record]:
    """The records of a file from their types and lengths alone, each length checked against the file's size before
    anything is read from it: a header first, chunks, an end record last and nothing after it."""
    size = os.fstat(handle.fileno()).st_size
    records: list[_Record] = []
    at = len(MAGIC)
    while not records or records[-1].kind != END:
        handle.seek(at)
        frame = handle.read(FRAME.size)
        if len(frame) < FRAME.size:
            raise UserError(f"{source}: truncated (ends before its end record); compress the input again")
        kind, length = FRAME.unpack(frame)
        _check_kind(kind, at, not records, source)
        left = size - at - FRAME.size - DIGEST
        if length > left:
            raise UserError(
                f"{source}: truncated or damaged: a record length runs past the end of the file (the record at byte {at} "
                f"says {length:,} bytes, {max(left, 0):,} are left); compress the input again"
            )
        records.append(_Record(kind, at + FRAME.size, length))
        at += FRAME.size + length + DIGEST
    if at < size:
        raise UserError(f"{source}: damaged ({size - at:,} bytes after the end record)")
    return records


def _check_kind(kind: bytes, at: int, first: bool, source: Path) -> None:
    """Refuse a record type that is unknown or out of place (the header comes first, and once)."""
    if kind not in (HEADER, CHUNK, END):
        raise UserError(f"{source}: damaged (unknown record at byte {at})")
    if first and kind != HEADER:
        raise UserError(f"{source}: damaged (no header record)")
    if not first and kind == HEADER:
        raise UserError(f"{source}: damaged (a second header record at byte {at})")


def _verified(handle: BinaryIO, record: _Record, source: Path) -> tuple[bytes, bytes]:
    """A record's payload and its digest, refused unless the payload has that sha256."""
    handle.seek(record.at)
    payload, digest = handle.read(record.length), handle.read(DIGEST)
    if hashlib.sha256(payload).digest() != digest:
        raise UserError(f"{source}: damaged (checksum mismatch in the record at byte {record.at - FRAME.size})")
    return payload, digest


@dataclass
class _Tally:
    """Chunks, entries and jets so far, and a sha256 of the chunk records' digests in order: what an end record holds."""

    chunks: int = 0
    entries: int = 0
    jets: int = 0
    digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def add(self, chunk: Chunk, digest: bytes) -> None:
        self.chunks += 1
        self.entries += chunk.entries
        self.jets += chunk.jets
        self.digest.update(digest)

    def counts(self) -> dict[str, int]:
        return {"chunks": self.chunks, "entries": self.entries, "jets": self.jets}

    def end_record(self, file_id: bytes) -> dict[str, Any]:
        return {"file_id": file_id.hex(), **self.counts(), "digest": self.digest.hexdigest()}


class _RecordWriter:
    """Writes a compressed file's records: the header with a random id of the file, each chunk under that id with its
    index and the entries and jets before it, and the end record with the totals (see `_Tally`)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out, self.file_id, self.tally = out, os.urandom(16), _Tally()
        out.write(MAGIC)

    def header(self, header: dict[str, Any]) -> None:
        _write(self.out, HEADER, json.dumps({"file_id": self.file_id.hex(), **header}).encode())

    def chunk(self, entries: int, jets: int, sections: dict[str, bytes]) -> None:
        chunk = Chunk(self.tally.chunks, self.tally.entries, self.tally.jets, entries, jets, sections)
        self.tally.add(chunk, _write(self.out, CHUNK, _payload(self.file_id, chunk)))

    def end(self) -> None:
        _write(self.out, END, json.dumps(self.tally.end_record(self.file_id)).encode())


@dataclass
class _Sequence:
    """What a file's chunks must be, read in order: its own (a chunk of another file, same bundle or not, would decode
    as valid data), none missing, twice or swapped, each starting where the ones before it end, and adding up to what
    its end record (`end`) says."""

    source: Path
    file_id: bytes
    stored: int  # chunk records in the file: fewer than the end record counts means one is missing, not swapped
    end: dict[str, Any]
    tally: _Tally = field(default_factory=_Tally)

    def read(self, records: list[_Record]) -> Iterator[Chunk]:
        """The chunks of `records`, each checked before it is handed on; the end record's totals after the last."""
        with open(self.source, "rb") as handle:
            for record in records:
                payload, digest = _verified(handle, record, self.source)
                file_id, chunk = _chunk(payload)
                self.check(file_id, chunk)
                self.tally.add(chunk, digest)
                yield chunk
        self.finish()

    def check(self, file_id: bytes, chunk: Chunk) -> None:
        """Refuse a chunk that is not the next of this file, before it is decoded or written."""
        expected, total = self.tally.chunks, self.end["chunks"]
        if file_id != self.file_id:
            raise UserError(f"{self.source}: chunk {expected} of {total} belongs to another file")
        if chunk.index < expected:
            raise UserError(f"{self.source}: chunk {chunk.index} of {total} appears twice")
        if chunk.index > expected and self.stored < total:
            raise UserError(f"{self.source}: chunk {expected} of {total} is missing")
        if chunk.index > expected:
            raise UserError(f"{self.source}: chunks out of order (chunk {chunk.index} of {total} stands where chunk {expected} belongs)")
        if (chunk.first_entry, chunk.first_jet) != (self.tally.entries, self.tally.jets):
            raise UserError(
                f"{self.source}: chunk {expected} starts at entry {chunk.first_entry:,} and jet {chunk.first_jet:,}, "
                f"but the chunks before it hold {self.tally.entries:,} entries and {self.tally.jets:,} jets"
            )

    def finish(self) -> None:
        """Refuse an end record whose totals or digest are not those of the chunks read (a chunk dropped at the end)."""
        read, said = self.tally.counts(), {key: self.end[key] for key in ("chunks", "entries", "jets")}
        if read["chunks"] < said["chunks"]:
            raise UserError(f"{self.source}: chunk {read['chunks']} of {said['chunks']} is missing")
        if read != said:
            raise UserError(f"{self.source}: its end record counts {_counts(said)}, its chunks hold {_counts(read)}")
        if self.tally.digest.hexdigest() != self.end["digest"]:
            raise UserError(f"{self.source}: its chunks are not those its end record lists (their digest differs)")


def _counts(counts: dict[str, int]) -> str:
    return f"{counts['chunks']:,} chunks, {counts['entries']:,} entries and {counts['jets']:,} jets"


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


# --- coding in worker processes ------------------------------------------------------------------
PARALLEL_ABOVE = 32_000_000  # input bytes (compressed files: an eighth) from which chunks are coded in worker processes
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
Pending = tuple[Future, dict[str, bytes], int, int]  # a chunk being coded: its future, its other parts, entries and jets
_coder: tuple[Compressor, float] | None = None  # the compressor and bound of this process (a worker's, or this one's in process)


def _start_worker(path: str, checksum: str, bound: float) -> None:
    global _coder
    from hpcsweep.compress.bundle import load_bundle

    bundle = load_bundle(path)
    if bundle.checksum != checksum:
        raise RuntimeError(f"{path} changed while it was in use")
    _coder = (bundle.compressor, bound)


def _encode(x: np.ndarray) -> bytes:
    assert _coder is not None  # set as the worker starts, or as `_Coders` enters
    compressor, bound = _coder
    return compressor.encode(x, bound)


def _decode(data: bytes) -> np.ndarray:
    assert _coder is not None  # set as the worker starts, or as `_Coders` enters
    compressor, bound = _coder
    return compressor.decode(data, bound)


class _Coders:
    """A bundle's compressor run on chunks in worker processes (one per allocated core, each with one BLAS thread: the
    processes are the parallelism), results taken in file order; in this process for one core or a small file."""

    def __init__(self, bundle: Bundle, bound: float, parallel: bool) -> None:
        from hpcsweep.allocation import allocated_cores

        self.bundle, self.bound = bundle, bound
        self.workers = allocated_cores() if parallel else 1
        self.pending: deque[Pending] = deque()
        self.pool: ProcessPoolExecutor | None = None
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> _Coders:
        global _coder
        if self.workers == 1:
            _coder = (self.bundle.compressor, self.bound)
            return self
        self.saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
        os.environ.update(dict.fromkeys(THREAD_VARIABLES, "1"))  # read by the workers as they start (this process's BLAS is set up)
        self.pool = ProcessPoolExecutor(
            self.workers,
            mp_context=get_context("spawn"),
            initializer=_start_worker,
            initargs=(str(self.bundle.path), self.bundle.checksum, self.bound),
        )
        return self

    def submit(self, function: Callable[..., Any], *args: Any) -> Future:
        if self.pool is not None:
            return self.pool.submit(function, *args)
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except Exception as err:  # handed to whoever takes the result, as a worker's would be
            future.set_exception(err)
        return future

    def queue(self, item: Pending, done: Callable[[Pending], None]) -> None:
        """Keep `item` (a future first) pending; hand the oldest to `done` once more are pending than workers run."""
        self.pending.append(item)
        while len(self.pending) > self.workers:
            done(self.pending.popleft())

    def drain(self, done: Callable[[Pending], None]) -> None:
        while self.pending:
            done(self.pending.popleft())

    def __exit__(self, *error: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)
            for name, value in self.saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


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


def _write(out: BinaryIO, kind: bytes, payload: bytes) -> bytes:
    """Write a record; return its digest."""
    digest = hashlib.sha256(payload).digest()
    out.write(FRAME.pack(kind, len(payload)) + payload + digest)
    return digest


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
