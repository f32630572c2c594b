"""Compress a jet file with a bundle's compressor, and give it back: chunk by chunk, memory flat in the file size.

The two pipelines, read in order: open the input (`io`), split each chunk into
the jets to code and the parts stored losslessly (`parts`), code the jets in
worker processes (`pool`), and write the records of the container (`container`);
back: read and check the records, decode, assemble the branches, and write the
tree with the writer of the output's kind (`io`). Decompressing gives the same
tree, branch names, types and jaggedness (ROOT or Parquet); every value outside
the model's variables comes back exactly, and theirs within the bound. A file
is decoded by the compressor it names (`embed.identity`): the one it carries,
or that of any bundle holding it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hpcsweep.codec import Compressor
from hpcsweep.compress.bundle import Bundle
from hpcsweep.compress.container import RecordWriter, embedded, read_compressed
from hpcsweep.compress.embed import embedded_by_default, identity, pack, unpack
from hpcsweep.compress.io import STEP, open_input, writer_for
from hpcsweep.compress.parts import assemble, model_units, split
from hpcsweep.compress.pool import Coders, Source
from hpcsweep.errors import UserError
from hpcsweep.files import atomic

PARALLEL_ABOVE = 32_000_000  # input bytes (compressed files: an eighth) from which chunks are coded in worker processes
Pending = tuple[Future, dict[str, bytes], int, int]  # a chunk being coded: its future, its other parts, entries and jets


@dataclass
class Summary:
    """What a compress or decompress did, for the terminal and the benchmarks."""

    entries: int = 0
    jets: int = 0
    lossless_jets: int = 0
    model_bytes: int = 0  # the coded model variables
    codec_bytes: int = 0  # the compressor that decodes the file, as the file carries it
    embedded: bool = False  # whether it does
    total_bytes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def compress_file(
    source: Path,
    bundle: Bundle,
    bound: float,
    output: Path,
    tree: str | None = None,
    step_size: str = STEP,
    progress: bool = True,
    embed: bool | None = None,
) -> Summary:
    """Compress `source` (ROOT TTree/RNTuple or Parquet, flat or jagged) into `output`, atomically; with `embed` the
    file carries the compressor that decodes it (default: unless it would make more than EMBED_UP_TO of the file)."""
    from tqdm import tqdm

    bundle.check_bound(bound)  # a bound the bundle lacks is refused before anything is read
    varset = bundle.varset
    jets = open_input(source, bundle, tree, "compress")
    summary, started = Summary(notes=jets.notes), time.perf_counter()
    codec = Source(str(bundle.path), bundle.checksum, bound)
    units = np.array([variable.unit_scale for variable in jets.model.values()], dtype=np.float64)
    with (
        atomic(output) as tmp,
        open(tmp, "wb") as out,
        Coders(bundle.compressor, codec, jets.file.path.stat().st_size > PARALLEL_ABOVE, units) as coders,
        tqdm(total=jets.file.n_entries, desc=f"compressing {jets.file.path.name}", unit="entry", disable=not progress) as bar,
    ):
        records = RecordWriter(out)

        def write(chunk: Pending) -> None:
            future, sections, entries, n_jets = chunk
            sections["model"] = future.result()
            summary.model_bytes += len(sections["model"])
            records.chunk(entries, n_jets, sections)
            bar.update(entries)

        for index, (arrays, start, stop) in enumerate(jets.chunks(step_size)):
            if index == 0:
                records.header(jets.header(arrays, bundle, bound) | {"codec": identity(bundle.compressor, bound)})
            coded, sections, n_jets = split(arrays, jets.model, varset)
            coders.queue((coders.encode(coded), sections, stop - start, n_jets), write)
            summary.entries += stop - start
            summary.jets += n_jets
            summary.lossless_jets += n_jets - len(coded)
        coders.drain(write)
        payload = pack(bundle.compressor, bound)
        summary.codec_bytes = len(payload)
        summary.embedded = embedded_by_default(len(payload), out.tell()) if embed is None else embed
        if summary.embedded:
            records.codec(payload)
        records.end()
        summary.total_bytes = out.tell()
    summary.seconds = time.perf_counter() - started
    if summary.lossless_jets:
        summary.notes.append(
            f"{summary.lossless_jets:,} jets the model does not apply to (outside the cuts, not finite, a negative value of a positive variable; or a denormal, or an integer beyond 2**53) stored losslessly"
        )
    return summary


def decompress_file(source: Path, bundle: Bundle | None, output: Path, progress: bool = True) -> Summary:
    """Give back the tree of a compressed file into `output` (.root or .parquet), atomically: decoded by `bundle`'s
    compressor, which must be the one the file names, or without a bundle by the one the file carries."""
    from tqdm import tqdm

    header, chunks = read_compressed(source)
    compressor, codec = decoder(Path(source), header, bundle)
    summary, started = Summary(), time.perf_counter()
    writer_class = writer_for(output)
    names = compressor.names
    parallel = Path(source).stat().st_size > PARALLEL_ABOVE / 8
    with (
        atomic(output) as tmp,
        Coders(compressor, codec, parallel, model_units(header, names)) as coders,
        tqdm(total=chunks.counts["chunks"], desc=f"decompressing {Path(source).name}", unit="chunk", disable=not progress) as bar,
    ):
        writer = writer_class(tmp, header)

        def write(chunk: Pending) -> None:
            future, sections, entries, n_jets = chunk
            writer.write(chunk_branches(source, future.result, sections, header, names, n_jets))
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


def chunk_branches(
    source: Path,
    decoded: Callable[[], np.ndarray | None],
    sections: dict[str, bytes],
    header: dict[str, Any],
    names: list[str],
    n_jets: int,
    wanted: Collection[str] | None = None,
) -> dict[str, Any]:
    """A chunk's branches (`parts.assemble`), its model part given by `decoded()`; a chunk that does not decode, or
    whose parts disagree, is one line: its checksums held, so the file was written damaged."""
    try:
        return assemble(decoded(), sections, header, names, n_jets, wanted)
    except ValueError as err:
        raise UserError(f"{source}: damaged: a chunk does not decode ({err})") from None


def decoder(source: Path, header: dict[str, Any], bundle: Bundle | None) -> tuple[Compressor, Source]:
    """The compressor that decodes `source`, and where workers find it: `bundle`'s when it holds the one the file names
    (whatever else the bundle holds), else the one the file carries; anything else is refused in one line."""
    bound, named = header["bound"], header["codec"]
    if bundle is not None:
        bundle.check_bound(bound)
        if identity(bundle.compressor, bound) != named:
            raise UserError(
                f"{source}: was compressed with another compressor (trial {header['trial']}, {named[:19]}...) than the one "
                f"{bundle.path} holds (trial {bundle.trial_id})"
            )
        return bundle.compressor, Source(str(bundle.path), bundle.checksum, bound)
    payload = embedded(source)
    if payload is None:
        raise UserError(
            f"{source}: carries no compressor (it was left in the bundle): give a bundle of the trial it was compressed with, "
            f"--model BUNDLE.h5 (trial {header['trial']}, compressor {named[:19]}...)"
        )
    try:
        compressor = unpack(payload)
    except ValueError as err:
        raise UserError(f"{source}: damaged (its compressor record is {err})") from None
    if identity(compressor, bound) != named:
        raise UserError(f"{source}: damaged (the compressor it carries is not the one its header names)")
    return compressor, Source(str(source), named, bound, embedded=True)
