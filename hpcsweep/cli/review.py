"""The review's commands: aggregate (tables and figures, printed), report (one HTML page), export-tracking."""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import TYPE_CHECKING

from hpcsweep.cli.common import print_rows, print_warnings, results_dir, swept_dir
from hpcsweep.cli.options import RESULTS_HELP, add_command, add_results_option, add_verify_option, add_wide_option
from hpcsweep.errors import UserError

if TYPE_CHECKING:
    from hpcsweep.review import Review
    from hpcsweep.review.aggregator import Detail


def add_aggregate(commands: argparse._SubParsersAction) -> None:
    aggregate = add_command(
        commands, "aggregate", "write a sweep's tables (Markdown, CSV, LaTeX) and figures (PNG; PDF with --pdf)", cmd_aggregate
    )
    aggregate.add_argument("sweep", help=RESULTS_HELP)
    add_results_option(aggregate)
    detail = aggregate.add_mutually_exclusive_group()
    detail.add_argument("--detail", action="store_true", help="the per-trial figures of the best trial per z, not only of the best trial")
    detail.add_argument("--no-detail", action="store_true", help="no per-trial figures")
    aggregate.add_argument(
        "--pdf", action="store_true", help="also write each figure as PDF, for papers (default: the sweep file's review.pdf, else PNG only)"
    )
    add_verify_option(aggregate)
    add_wide_option(aggregate)


def add_report(commands: argparse._SubParsersAction) -> None:
    report = add_command(commands, "report", "write results/<sweep>/report/index.html: every table and figure on one page", cmd_report)
    report.add_argument("sweep", help=RESULTS_HELP)
    add_results_option(report)


def add_export_tracking(commands: argparse._SubParsersAction) -> None:
    tracking = add_command(commands, "export-tracking", "write a sweep's trials as TensorBoard or MLflow runs", cmd_export_tracking)
    tracking.add_argument("sweep", help=RESULTS_HELP)
    tracking.add_argument("--to", required=True, choices=("tensorboard", "mlflow"), help="a TensorBoard log dir, or a local MLflow "
                                                                                       "store (SQLite, no server)")  # fmt: skip
    tracking.add_argument("-o", "--output", metavar="DIR", help="the folder to write (default: results/<sweep>/tensorboard or "
                                                                "results/<sweep>/mlruns); replaced whole by each export")  # fmt: skip
    add_results_option(tracking)


def cmd_aggregate(args: argparse.Namespace) -> int:
    """Best and median trial per latent dimension, comparisons by every other axis the sweep varied, baselines,
    compression, seed stability; the figures of the thesis' chapter 2.3. Reads summaries and the best trials'
    evaluations, never weights."""
    detail: Detail = "all" if args.detail else "none" if args.no_detail else "best"
    show_tables(swept_dir(args.sweep, args.results), detail=detail, wide=args.wide, pdf=args.pdf or None, verify=args.verify)
    return 0


def show_tables(
    results_dir: Path,
    latents: list[int] | None = None,
    detail: Detail = "all",
    wide: bool = False,
    pdf: bool | None = None,
    verify: bool = False,
) -> None:
    """Aggregate (saying so while it draws), print the best/median (residuals, stability) tables and the warnings.
    `pdf`: also PDFs of the figures (None: as the sweep's review.pdf says)."""
    review = _aggregate(results_dir, detail, pdf, verify)
    _print_tables(review, latents, wide)
    for line in review.headlines:
        print(line)
    if review.undrawn:
        print(f"per-trial figures drawn for the best trial; those of the best trial at z = {', '.join(map(str, review.undrawn))}: "
              f"'hpcsweep aggregate {results_dir} --detail'")  # fmt: skip
    print_warnings(review.warnings)
    print(f"written: {len(review.paths)} files under {results_dir}: summary.md, tables/, figures/")


def _aggregate(results_dir: Path, detail: Detail, pdf: bool | None, verify: bool) -> Review:
    """`aggregate`, with a line on stderr saying which figure it draws (a review of many trials takes a while)."""
    from rich.console import Console

    from hpcsweep.review import aggregate

    with Console(stderr=True).status(f"aggregating {results_dir}: tables") as status:
        drawn = itertools.count(1)
        return aggregate(
            results_dir,
            detail=detail,
            pdf=pdf,
            drawing=lambda title: status.update(f"drawing figure {next(drawn)}: {title}"),
            verify=verify,
        )


def _print_tables(review: Review, latents: list[int] | None, wide: bool) -> None:
    """The tables a terminal shows (only the rows of `latents`), each heading's short form named once."""
    shown = ["best_per_latent", "median_per_latent", "stability"]
    residuals = review.tables.get("residuals_per_latent")
    if residuals is not None and residuals[1]["Variable"].nunique() <= 8:  # a few variables: their residuals fit a terminal
        shown.insert(2, "residuals_per_latent")
    if review.rank_by == "bytes":  # a sweep for a compressor ends with the frontier and the compressors against the peers
        shown += ["rate_frontier", "compressors"]
    named: set[str] = set()
    for stem in shown:
        if stem not in review.tables:
            continue
        title, table = review.tables[stem]
        if latents is not None and "Latent space dimensions" in table:
            table = table[table["Latent space dimensions"].isin(latents)]
        print_rows(title, list(table.columns), table.values.tolist(), wide, legend=not set(table.columns) <= named)
        named |= set(table.columns)


def cmd_report(args: argparse.Namespace) -> int:
    """Aggregate the sweep, then write one self-contained HTML page (figures embedded) with its tables, figures,
    definition, state counts and links to each trial file."""
    from hpcsweep.review import report_sweep

    folder = results_dir(args.sweep, args.results)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such sweep results; run 'hpcsweep sweep {args.sweep}' first")
    review, path = report_sweep(folder)
    print_warnings(review.warnings)
    print(f"report: {path} ({len(review.tables)} tables, {len(review.figures)} figures); open it in a browser, no server needed")
    return 0


def cmd_export_tracking(args: argparse.Namespace) -> int:
    """One run per trial file (failed ones with their state): per-epoch train_loss, val_loss and lr, the final metrics, the
    config as hyperparameters (TensorBoard's HParams tab, MLflow params). Running it again replaces the last export;
    needs the extra 'tracking'."""
    from hpcsweep.review.tracking import export_tracking

    exported = export_tracking(swept_dir(args.sweep, args.results), args.to, Path(args.output) if args.output else None)
    print_warnings(f"left out {problem}" for problem in exported.unreadable)
    states = ", ".join(f"{count} {state}" for state, count in sorted(exported.states.items()))
    print(f"{sum(exported.states.values())} runs ({states}) -> {exported.folder}; open with: {exported.open_with}")
    return 0
