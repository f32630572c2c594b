"""A sweep's results for notebooks: `hpcsweep.load_sweep(name_or_folder)` returns a `SweepResults`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hpcsweep.review.aggregator import select
from hpcsweep.review.tables import best_and_median, thesis_table, trials_frame, varied_axes
from hpcsweep.store import scan


class SweepResults:
    """A finished or running sweep's results folder, for notebooks and the CLI."""

    def __init__(self, results_dir: Path):
        self.results_dir = Path(results_dir)

    @classmethod
    def open(cls, where: str | Path) -> SweepResults:
        """A results folder, or a sweep name under ./results."""
        path = Path(where)
        return cls(path if path.is_dir() else Path("results") / str(where))

    def trials(self) -> pd.DataFrame:
        """One row per trial of the sweep's definition, with its `rank` (smaller is better)."""
        selection = select(self.results_dir, scan(self.results_dir)[0])
        return trials_frame(selection.summaries, selection.ranking)

    def table(self) -> dict[str, pd.DataFrame]:
        """Best and median trial per latent dimension, in the thesis' table layout (ranked by the sweep's yardstick)."""
        selection = select(self.results_dir, scan(self.results_dir)[0])
        best, median = best_and_median(trials_frame(selection.summaries, selection.ranking))
        axes = varied_axes(selection.summaries)
        return {"best": thesis_table(best, axes, selection.ranking), "median": thesis_table(median, axes, selection.ranking)}
