"""Compress a jet file with a bundle's compressor, and give it back: chunk by chunk, memory flat in the file size.

The two pipelines, read in order: open the input (`io`), split each chunk into
the jets to code and the parts stored losslessly (`parts`), code the jets in
worker processes (`pool`), and write the records of the container (`container`);
back: read and check the records, decode, assemble the branches, and write the
tree with the writer of the output's kind (`io`). Decompressing gives the same
tree, branch names, types and jaggedness (ROOT or Parquet); every value outside
the model's variables comes back exactly, and theirs within the bound.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from hpcsweep.compress.bundle import Bundle
from hpcsweep.compress.container import RecordWriter, read_compressed
from hpcsweep.compress.io import STEP, open_input, writer_for
from hpcsweep.compress.parts import assemble, split
from hpcsweep.compress.pool import Coders
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
    total_bytes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def compress_file(
    source: Path, bundle: Bundle, bound: float, output: Path, tree: str | None = None, step_size: str = STEP, progress: bool = True
) -> Summary:
    """Compress `source` (ROOT TTree/RNTuple or Parquet, flat or jagged) into `output`, atomically."""
    from tqdm import tqdm

    bundle.check_bound(bound)  # a bound the bundle lacks is refused before anything is read
    varset = bundle.varset
    jets = open_input(source, bundle, tree, "compress")
    summary, started = Summary(notes=jets.notes), time.perf_counter()
    with (
        atomic(output) as tmp,
        open(tmp, "wb") as out,
        Coders(bundle, bound, jets.file.path.stat().st_size > PARALLEL_ABOVE) as coders,
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
                records.header(jets.header(arrays, bundle, bound))
            coded, sections, n_jets = split(arrays, jets.model, varset)
            coders.queue((coders.encode(coded), sections, stop - start, n_jets), write)
            summary.entries += stop - start
            summary.jets += n_jets
            summary.lossless_jets += n_jets - len(coded)
        coders.drain(write)
        records.end()
        summary.total_bytes = out.tell()
    summary.seconds = time.perf_counter() - started
    if summary.lossless_jets:
        summary.notes.append(
            f"{summary.lossless_jets:,} jets the model does not apply to (outside the cuts, not finite, or a negative value of a positive variable) stored losslessly"
        )
    return summary


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
    writer_class = writer_for(output)
    bundle.check_bound(header["bound"])
    names = bundle.compressor.names
    parallel = Path(source).stat().st_size > PARALLEL_ABOVE / 8
    with (
        atomic(output) as tmp,
        Coders(bundle, header["bound"], parallel) as coders,
        tqdm(desc=f"decompressing {Path(source).name}", unit="chunk", disable=not progress) as bar,
    ):
        writer = writer_class(tmp, header)

        def write(chunk: Pending) -> None:
            future, sections, entries, n_jets = chunk
            try:
                decoded = future.result()
            except ValueError as err:
                raise UserError(
                    f"{source}: cannot decode a chunk: {err} (was it compressed on a machine whose arithmetic differs?)"
                ) from None
            writer.write(assemble(decoded, sections, header, names, n_jets))
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
