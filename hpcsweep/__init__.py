"""hpcsweep: run, survive and review hyperparameter sweeps of jet-compressing autoencoders.

The pipeline, one way: data -> trial -> store -> sweep -> review, and compress (a trial's model and compressor
applied to files); `cli` sits on top. docs/pipeline.md draws the house.
`load_sweep(name_or_folder)` opens a sweep's results for notebooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpcsweep.review import SweepResults

__version__ = "0.1.0"


def load_sweep(where: str | Path, results: str | Path = "results") -> SweepResults:
    """A sweep's results for a notebook: `where` is a results folder, or a sweep's name under `results`.

    `.trials()` (one row per trial), `.table()` (best and median per z, numbers) and `.model(trial_id)` (a trained
    model); a name or folder without trial files raises `hpcsweep.errors.UserError` saying where it looked.
    See docs/notebook.md.
    """
    from hpcsweep.review import SweepResults

    return SweepResults.open(where, results)
