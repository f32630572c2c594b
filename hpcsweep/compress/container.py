"""The compressed file's container: its records, their framing and checksums, and the checks a reader makes.

A compressed file is MAGIC (whose last byte is the layout's version), then a
sequence of records, each `type (1 byte) | length (8) | payload | sha256(payload)`:
a header (JSON: a random id of the file, the identity of the compressor that
decodes it and the bundle's checksum, the bound, the input's format, tree and
branches with their types and jaggedness), one record per chunk (the file's id,
the chunk's index, the entries and jets before it and its own, then its parts),
the compressor itself when the file carries it (`embed`), and an end record
(JSON: the file's id, the numbers of chunks, entries and jets, and a sha256 of
the chunk records' digests in order).
A reader checks the framing against the file's size before it reads a payload
(a length past the end, bytes after the end record, a missing end record), every
record's sha256, and that the chunks are this file's, in order, none missing or
twice, adding up to the end record: anything else is refused in one line, as a
file of an older layout is.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from hpcsweep.errors import UserError

PREFIX = b"HPCSWEEP-JETS\x00"
VERSION = 5  # 5: predictions in integers; 4: numbers of the lossless parts in pcodec; 3: the compressor's identity and itself
OLDEST = 5  # the first layout docs/format.md specifies: every later hpcsweep reads it (tests/compress/test_golden.py)
MAGIC = PREFIX + bytes([VERSION])
HEADER, CHUNK, CODEC, END = b"H", b"C", b"M", b"E"
FRAME = struct.Struct("<cQ")  # a record's type and payload length
DIGEST = 32  # bytes of the sha256 after each payload
CHUNK_HEAD = struct.Struct("<16sQQQQQ")  # a chunk payload's file id, index, first entry, first jet, entries and jets


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


class RecordWriter:
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

    def codec(self, payload: bytes) -> None:
        """The compressor that decodes the file (`embed.pack`), after its chunks."""
        _write(self.out, CODEC, payload)

    def end(self) -> None:
        _write(self.out, END, json.dumps(self.tally.end_record(self.file_id)).encode())


def read_compressed(source: Path) -> tuple[dict[str, Any], Chunks]:
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
    return header, Chunks(source, bytes.fromhex(header["file_id"]), [record for record in records if record.kind == CHUNK], end)


@dataclass(frozen=True)
class Chunks:
    """A compressed file's chunks, read and checked in order each time they are iterated; `counts`: the numbers of
    chunks, entries and jets its end record says (checked against the chunks as they are read)."""

    source: Path
    file_id: bytes
    records: list[_Record]
    end: dict[str, Any]

    def __iter__(self) -> Iterator[Chunk]:
        return _Sequence(self.source, self.file_id, len(self.records), self.end).read(self.records)

    @property
    def counts(self) -> dict[str, int]:
        return {key: int(self.end[key]) for key in ("chunks", "entries", "jets")}


def embedded(source: Path) -> bytes | None:
    """The payload of a compressed file's codec record (checked against its sha256), or None for a file without one."""
    with open(source, "rb") as handle:
        _check_version(handle.read(len(MAGIC)), Path(source))
        codec = [record for record in _framing(handle, Path(source)) if record.kind == CODEC]
        return _verified(handle, codec[0], Path(source))[0] if codec else None


# --- writing ---------------------------------------------------------------------------------------
def _write(out: BinaryIO, kind: bytes, payload: bytes) -> bytes:
    """Write a record; return its digest."""
    digest = hashlib.sha256(payload).digest()
    out.write(FRAME.pack(kind, len(payload)) + payload + digest)
    return digest


def _payload(file_id: bytes, chunk: Chunk) -> bytes:
    head = CHUNK_HEAD.pack(file_id, chunk.index, chunk.first_entry, chunk.first_jet, chunk.entries, chunk.jets)
    return head + b"".join(struct.pack("<H", len(k)) + k.encode() + struct.pack("<Q", len(v)) + v for k, v in chunk.sections.items())


# --- reading ---------------------------------------------------------------------------------------
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


def _check_version(magic: bytes, source: Path) -> None:
    """Refuse a file of another layout by its version, in words, rather than as damage."""
    if len(magic) < len(MAGIC) or not magic.startswith(PREFIX):
        raise UserError(f"{source}: not a file made by hpcsweep compress")
    version = magic[-1]
    if version < OLDEST:
        raise UserError(
            f"{source}: written by an older hpcsweep, before its format was fixed (file format {version}; this one reads "
            f"formats {OLDEST} to {VERSION}): decompress it with the version that wrote it"
        )
    if version > VERSION:
        raise UserError(
            f"{source}: written by a newer hpcsweep (file format {version}; this one reads formats {OLDEST} to {VERSION}): update hpcsweep"
        )


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
        if kind == CODEC and any(record.kind == CODEC for record in records):
            raise UserError(f"{source}: damaged (a second compressor record at byte {at})")
        records.append(_Record(kind, at + FRAME.size, length))
        at += FRAME.size + length + DIGEST
    if at < size:
        raise UserError(f"{source}: damaged ({size - at:,} bytes after the end record)")
    return records


def _check_kind(kind: bytes, at: int, first: bool, source: Path) -> None:
    """Refuse a record type that is unknown or out of place (the header comes first, and once)."""
    if kind not in (HEADER, CHUNK, CODEC, END):
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
