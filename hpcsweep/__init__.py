"""hpcsweep: run, survive and review hyperparameter sweeps of jet-compressing autoencoders.

The pipeline, one way: data -> trial -> store -> sweep -> review; `cli` sits on top.
`load_sweep(name_or_folder)` opens a sweep's results for notebooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpcsweep.review import SweepResults

__version__ = "0.1.0"


def load_sweep(where: str) -> SweepResults:
    """Results of a sweep (a name under results/ or a folder), with `.trials()` and `.table()`."""
    from hpcsweep.review import SweepResults

    return SweepResults.open(where)
