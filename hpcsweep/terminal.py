"""What the terminal shows: tables that fit its width, a labelled bar, and the driver's view of running trials.

Tables keep the headings of the files they come from when they fit; in a narrow terminal (80 columns, or a log
file, which rich sizes at 80 unless COLUMNS says otherwise) they take short headings, named once under the table,
and a table that still does not fit is printed as one block per row (heading, value), never splitting a number or a
word across lines. `--wide` prints them at full width whatever the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

#: Short headings for narrow terminals (the tables' files keep the full ones).
SHORT_HEADINGS = {
    "Latent space dimensions": "z",
    "Batch size": "bs",
    "Learning rate": "lr",
    "Weight decay": "wd",
    "Validation loss (own normalisation)": "val loss",
    "Reference MSE": "ref MSE",
    "Epoch of best": "epoch",
    "Training time": "time",
    "PCA reference MSE": "PCA MSE",
    "PCA / AE": "PCA/AE",
    "Residual width (68 % half-width)": "width",
    "Fraction within 1 %": "in 1 %",
    "Variable": "var",
    "Runs": "runs",
}


def print_table(
    title: str,
    header: Sequence[Any],
    rows: Sequence[Sequence[Any]],
    wide: bool = False,
    legend: bool = True,
    console: Console | None = None,
) -> None:
    """A table that fits the terminal: full headings if they fit, else short ones (named below it unless `legend` is
    False: a table printed just before named them), else folded cells."""
    headings = [str(column) for column in header]
    table = _table(title, headings, rows)
    measuring = console or Console()
    natural = measuring.measure(table, options=measuring.options.update_width(10_000)).maximum
    if wide:  # as wide as the table wants, whatever the terminal
        console = Console(file=console.file if console else None, width=max(natural, 80))
    console = console or Console()
    if natural > console.width:  # its natural width: every cell on one line
        short = [SHORT_HEADINGS.get(h, h) for h in headings]
        table = _table(title, short, rows, compact=True)
        if measuring.measure(table, options=measuring.options.update_width(10_000)).maximum > console.width:
            table = _vertical(title, headings, rows)  # folding would split numbers across lines: a block per row
        else:
            named = [f"{s}: {h}" for s, h in zip(short, headings, strict=True) if s.replace(" ", "") != h.replace(" ", "")]
            if named and legend:
                table.caption = escape("; ".join(named) + " (--wide: full headings)")
                table.caption_justify = "left"
    console.print(table)


def _vertical(title: str, headings: list[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A table too wide even with short headings, as one block per row: 'heading  value' lines (empty cells left
    out), a blank line between rows, so that no number or word is split whatever the width (a pipe, a log, 80 columns)."""
    table = Table(title=escape(title), title_justify="left", box=box.SIMPLE, show_header=False, padding=(0, 1, 0, 0), show_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for row in rows:
        filled = [(heading, str(cell)) for heading, cell in zip(headings, row, strict=True) if str(cell) not in ("", "nan", "None")]
        for heading, cell in filled:
            table.add_row(escape(heading), escape(cell), end_section=heading == filled[-1][0])
    return table


def _table(title: str, headings: list[str], rows: Sequence[Sequence[Any]], compact: bool = False) -> Table:
    """Compact: one space between columns and no frame, so that ten columns of numbers fit 80 characters."""
    table = Table(title=escape(title), title_justify="left", box=box.HEAVY_HEAD, padding=(0, 1))
    if compact:
        table = Table(title=escape(title), title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), show_edge=False, pad_edge=False)
    for heading in headings:
        table.add_column(escape(heading), overflow="fold")
    for row in rows:
        table.add_row(*(escape(str(cell)) for cell in row))  # an error message "['x']" is text, not markup
    return table


def labelled_bar(label: str, done: int, total: int, console: Console | None = None) -> None:
    """'<label> [bar] done/total (percent)' on one line."""
    from rich.progress_bar import ProgressBar

    grid = Table.grid(padding=(0, 1))
    grid.add_row(
        escape(label),
        ProgressBar(total=max(total, 1), completed=min(done, total), width=40),
        f"{done}/{total} ({100 * done / max(total, 1):.0f} %)",
    )
    (console or Console()).print(grid)


@dataclass(frozen=True)
class TrialProgress:
    """A running trial as its heartbeat says: epoch reached, of how many, and its best validation loss so far."""

    label: str
    epoch: int
    epochs: int
    best_val: float
    best_epoch: int


class TrialsView:
    """The driver's view while it follows jobs: trials finished of all, and one line per running trial with its
    epoch bar and best validation loss (from the trials' heartbeats), redrawn in place on a terminal."""

    def __init__(self, total: int, enabled: bool = True, console: Console | None = None) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

        columns = (TextColumn("{task.description}"), BarColumn(bar_width=12), MofNCompleteColumn(), TextColumn("{task.fields[note]}"))
        self.progress = Progress(*columns, console=console or Console(stderr=True), disable=not enabled)
        self.overall = self.progress.add_task("trials finished", total=total, note="")  # then: trial, epochs, best val loss
        self.rows: dict[str, TaskID] = {}

    def __enter__(self) -> TrialsView:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def update(self, finished: int, running: Sequence[TrialProgress] = ()) -> None:
        self.progress.update(self.overall, completed=finished)
        for trial in running:
            note = f"best {trial.best_val:.3g} (ep {trial.best_epoch})"
            if trial.label not in self.rows:
                self.rows[trial.label] = self.progress.add_task(f"  {trial.label}", total=trial.epochs, note=note)
            self.progress.update(self.rows[trial.label], completed=trial.epoch, total=trial.epochs, note=note)
        for label in set(self.rows) - {trial.label for trial in running}:
            self.progress.remove_task(self.rows.pop(label))
