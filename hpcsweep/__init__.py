"""hpcsweep: run, survive and review hyperparameter sweeps of jet-compressing autoencoders.

The pipeline, one way: data -> trial -> store -> sweep -> review, and compress (a trial's model and compressor
applied to files); `cli` sits on top. docs/pipeline.md draws the house.
`load_sweep(name_or_folder)` opens a sweep's results for notebooks; `open` and `iterate` read compressed jet files
as awkward arrays without decompressing them to disk.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import awkward as ak

    from hpcsweep.compress import CompressedFile
    from hpcsweep.compress.reading import Filter
    from hpcsweep.review import SweepResults

__version__ = "0.1.0"
__all__ = ["iterate", "load_sweep"]  # not `open`: a star import would hide Python's own


def load_sweep(where: str | Path, results: str | Path = "results") -> SweepResults:
    """A sweep's results for a notebook: `where` is a results folder, or a sweep's name under `results`.

    `.trials()` (one row per trial), `.table()` (best and median per z, numbers) and `.model(trial_id)` (a trained
    model); a name or folder without trial files raises `hpcsweep.errors.UserError` saying where it looked.
    See docs/notebook.md.
    """
    from hpcsweep.review import SweepResults

    return SweepResults.open(where, results)


def open(path: str | Path, model: str | Path | None = None) -> CompressedFile:  # noqa: A001  (hpcsweep.open, as uproot.open)
    """A file made by `hpcsweep compress`, opened for reading: `.keys()`, `.tree`, `.iterate(filter_name=...,
    step_size=...)` and `.arrays(...)` give its branches as awkward arrays, as decompress would write them. `model`: a
    bundle holding its compressor, needed only when the file does not carry one. See docs/notebook.md."""
    from hpcsweep.compress import open_compressed

    return open_compressed(path, model)


def iterate(
    files: str | Path | Sequence[str | Path], filter_name: Filter = None, step_size: int | None = None, model: str | Path | None = None
) -> Iterator[ak.Array]:
    """The entries of compressed files ("out/*.hpcz", a path or a list) as awkward arrays, chunk by chunk (`step_size`
    entries, or the files' own chunks), as `uproot.iterate` reads trees; `filter_name`: branch names or globs."""
    from hpcsweep.compress import iterate_compressed

    return iterate_compressed(files, filter_name, step_size, model)
