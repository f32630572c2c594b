"""A sweep's results for notebooks: `hpcsweep.load_sweep(name_or_folder)` returns a `SweepResults`.

Everything is numbers in pandas DataFrames with snake_case columns; the Markdown, CSV and LaTeX tables of
`hpcsweep aggregate` are the same numbers formatted. A trained model comes back with `SweepResults.model(trial_id)`
(or `hpcsweep.trial.load_trained(path)`), which needs torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from hpcsweep.errors import UserError
from hpcsweep.review.aggregator import Selection, select
from hpcsweep.review.tables import best_and_median, numeric_table, snake_case, trials_frame, varied_axes
from hpcsweep.store import scan, trial_path, trials_dir

if TYPE_CHECKING:
    from hpcsweep.data.normalize import Normaliser
    from hpcsweep.store import TrialRecord
    from hpcsweep.trial.evaluate import JetMeasure
    from hpcsweep.trial.models import Autoencoder


class SweepResults:
    """A finished or running sweep's results folder: its trials, its best/median tables and its trained models."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = Path(results_dir)

    @classmethod
    def open(cls, where: str | Path, results: str | Path = "results") -> SweepResults:
        """A results folder (a path), or a sweep's name under `results` (relative to the working directory).

        A folder without trial files is refused with where it was looked for: a notebook in another folder
        gets an error, not an empty table.
        """
        given = Path(where).expanduser()
        candidates = [given] if given.is_dir() or given.is_absolute() or len(given.parts) > 1 else [Path(results) / given, given]
        for folder in candidates:
            if trials_dir(folder).is_dir():
                return cls(folder)
        looked = " or ".join(str(c.resolve()) for c in candidates)
        raise UserError(
            f"no sweep results at {looked} (no trials/ folder); give the results folder's path, e.g. "
            f"load_sweep('/path/to/results/{given.name}'), or run 'hpcsweep sweep {given.name}' first"
        )

    def _selection(self) -> Selection:
        return select(self.results_dir, scan(self.results_dir)[0])

    def trials(self) -> pd.DataFrame:
        """One row per trial of the sweep's definition: `trial_id`, `state`, `latent`, `batch_size`, `lr`,
        `weight_decay`, the losses (`val_mse`, `reference_mse`, `pca_reference_mse`, ...), `rank` (the sweep's
        ranking figure, smaller is better) and each other varied axis (`data.normalisation` as `data_normalisation`);
        sorted by z, then rank."""
        selection = self._selection()
        frame = trials_frame(selection.summaries, selection.ranking)
        return frame.rename(columns={axis: snake_case(axis) for axis in varied_axes(selection.summaries)})

    def table(self) -> dict[str, pd.DataFrame]:
        """The best and the median trial per latent dimension (`{"best": ..., "median": ...}`), ranked as the sweep
        ranks them: numeric columns `latent`, `batch_size`, `lr`, `weight_decay`, each other varied axis,
        `val_loss`, `reference_mse`, the ranking's own figure if it is not a loss, `best_epoch`, `train_time_s`,
        `pca_reference_mse`, `pca_over_ae` and `trial_id`."""
        selection = self._selection()
        best, median = best_and_median(trials_frame(selection.summaries, selection.ranking))
        axes = varied_axes(selection.summaries)
        return {"best": numeric_table(best, axes, selection.ranking), "median": numeric_table(median, axes, selection.ranking)}

    def model(self, trial_id: str) -> tuple[TrialRecord, Autoencoder, Normaliser, JetMeasure]:
        """A trial's record and its trained model (best weights, eval mode), normaliser and measure (needs torch)."""
        from hpcsweep.trial import load_trained

        path = trial_path(self.results_dir, trial_id)
        if not path.is_file():
            raise UserError(f"{path}: no such trial in {self.results_dir}")
        return load_trained(path)
