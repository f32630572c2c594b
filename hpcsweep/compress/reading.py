"""Compressed jet files read as awkward arrays, chunk by chunk, as `uproot.iterate` reads a tree: the branch names,
types and jaggedness `decompress` would write, with nothing written.

A file is decoded by the compressor it carries, or by a bundle's (`model`) that holds the one it names. The
model's variables are coded together (each predicted from the ones before it), so a chunk's model branches are
decoded whole when any is asked for; a selection of other branches alone decodes none.
"""

from __future__ import annotations

import fnmatch
import functools
import glob
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpcsweep.codec import Compressor
from hpcsweep.compress.apply import chunk_branches, decoder
from hpcsweep.compress.bundle import load_bundle
from hpcsweep.compress.container import Chunks, read_compressed
from hpcsweep.compress.parts import model_units
from hpcsweep.errors import UserError

if TYPE_CHECKING:
    import awkward as ak

_GLOB = re.compile(r"[*?[]")  # what makes a path a glob
#: What `filter_name` takes: a branch name or a glob ("jet_*"), several of them, or None for every branch.
Filter = str | Sequence[str] | None


@dataclass
class CompressedFile:
    """A compressed jet file opened for reading: its tree's name, its branches (`keys`), and its entries as awkward
    arrays (`iterate` chunk by chunk, `arrays` whole)."""

    path: Path
    header: dict[str, Any]
    compressor: Compressor
    chunks: Chunks  # read and checked anew each time they are iterated

    @property
    def tree(self) -> str:
        return str(self.header["tree"])

    @property
    def num_entries(self) -> int:
        """Entries (events) in the file, as `uproot`'s TTree.num_entries."""
        return self.chunks.counts["entries"]

    def keys(self) -> list[str]:
        """The branches, in the input's order."""
        return [branch["name"] for branch in self.header["branches"]]

    def iterate(self, filter_name: Filter = None, step_size: int | None = None) -> Iterator[ak.Array]:
        """The entries of the branches `filter_name` selects, as records of those fields: the file's own chunks, or
        `step_size` entries at a time (the last fewer)."""
        if step_size is not None and (not isinstance(step_size, int) or step_size < 1):
            raise UserError(f"step_size={step_size!r}: a number of entries, at least 1 (or None: the file's own chunks)")
        chunks = self._chunks(self._selected(filter_name))
        return _rechunked(chunks, step_size) if step_size else chunks

    def arrays(self, filter_name: Filter = None) -> ak.Array:
        """Every entry of the branches `filter_name` selects, in one array (memory grows with the file)."""
        import awkward as ak

        return ak.concatenate(list(self.iterate(filter_name)))

    def _selected(self, filter_name: Filter) -> list[str]:
        names = self.keys()
        if filter_name is None:
            return names
        patterns = [filter_name] if isinstance(filter_name, str) else list(filter_name)
        unmatched = [pattern for pattern in patterns if not fnmatch.filter(names, pattern)]
        if unmatched:
            raise UserError(f"{self.path}: no branch matches {', '.join(map(repr, unmatched))}; its branches: {', '.join(names)}")
        return [name for name in names if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)]

    def _chunks(self, names: list[str]) -> Iterator[ak.Array]:
        import awkward as ak

        model = any("variable" in b for b in self.header["branches"] if b["name"] in names)
        units = model_units(self.header, self.compressor.names)
        for chunk in self.chunks:
            data = chunk.sections["model"]
            decoded = functools.partial(self.compressor.decode, data, self.header["bound"], units) if model else lambda: None
            branches = chunk_branches(self.path, decoded, chunk.sections, self.header, self.compressor.names, chunk.jets, set(names))
            yield ak.zip(branches, depth_limit=1)


def open_compressed(path: str | Path, model: str | Path | None = None) -> CompressedFile:
    """A compressed file opened for reading, decoded by the compressor it carries or by `model`'s (a bundle)."""
    path = Path(path)
    header, chunks = read_compressed(path)
    compressor, _ = decoder(path, header, load_bundle(model) if model else None)
    return CompressedFile(path, header, compressor, chunks)


def iterate_compressed(
    files: str | Path | Sequence[str | Path], filter_name: Filter = None, step_size: int | None = None, model: str | Path | None = None
) -> Iterator[ak.Array]:
    """The entries of several compressed files in turn (a glob such as "out/*.hpcz", a path, or a list of them), chunk
    by chunk as `CompressedFile.iterate` gives them; a chunk never spans two files (as in uproot.iterate)."""
    for path in _paths(files):
        yield from open_compressed(path, model).iterate(filter_name, step_size)


def _paths(files: str | Path | Sequence[str | Path]) -> list[Path]:
    """The files a glob, a path or a list of them name, each glob's in sorted order; a glob matching nothing is an error."""
    found: list[Path] = []
    for item in [files] if isinstance(files, str | Path) else files:
        matched = sorted(glob.glob(str(item))) if _GLOB.search(str(item)) else [str(item)]
        if not matched:
            raise UserError(f"{item}: no file matches")
        found += map(Path, matched)
    return found


def _rechunked(chunks: Iterator[ak.Array], step: int) -> Iterator[ak.Array]:
    """The same entries, `step` at a time."""
    import awkward as ak

    pending: list[ak.Array] = []
    held = 0
    for chunk in chunks:
        pending.append(chunk)
        held += len(chunk)
        while held >= step:
            joined = ak.concatenate(pending) if len(pending) > 1 else pending[0]
            yield joined[:step]
            pending, held = [joined[step:]], held - step
    if held:
        yield ak.concatenate(pending) if len(pending) > 1 else pending[0]
