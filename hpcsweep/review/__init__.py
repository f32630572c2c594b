"""Review stage: tables and figures built from a sweep's trial files (no torch, no weights read)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hpcsweep.review.tables import best_and_median, thesis_table, trials_frame
from hpcsweep.store import rebuild_index, scan

__all__ = ["SweepResults", "aggregate"]


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
        summaries, _ = scan(self.results_dir)
        return trials_frame(summaries)

    def table(self) -> dict[str, pd.DataFrame]:
        """Best and median trial per latent dimension, in the thesis' table layout."""
        best, median = best_and_median(self.trials())
        return {"best": thesis_table(best), "median": thesis_table(median)}


def aggregate(results_dir: Path, plot: bool = True) -> dict[str, object]:
    """Write the tables (Markdown, CSV) and the loss-vs-latent figure; return frames and paths."""
    summaries, unreadable = rebuild_index(results_dir)
    frame = trials_frame(summaries)
    best, median = best_and_median(frame)
    tables = {"best": thesis_table(best), "median": thesis_table(median)}
    paths = {"trials.csv": results_dir / "trials.csv"}
    frame.to_csv(paths["trials.csv"], index=False)
    sections = []
    for kind, title in (
        ("best", "Best performing networks per latent dimension"),
        ("median", "Median performing networks per latent dimension"),
    ):
        csv = results_dir / f"{kind}_per_latent.csv"
        tables[kind].to_csv(csv, index=False)
        paths[csv.name] = csv
        sections.append(f"## {title}\n\n{tables[kind].to_markdown(index=False, disable_numparse=True)}\n")
    summary = results_dir / "summary.md"
    summary.write_text(f"# Sweep {results_dir.name}\n\n" + "\n".join(sections))
    paths[summary.name] = summary
    if plot and len(best):
        from hpcsweep.review.plots import loss_vs_latent

        paths["loss_vs_latent.png"] = loss_vs_latent(best, median, results_dir / "loss_vs_latent.png")
    return {"frame": frame, "tables": tables, "paths": paths, "unreadable": unreadable}
