"""What the commands share: finding a sweep's file and results folder from what the user typed, and printing tables."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hpcsweep.errors import UserError


def resolve_sweep_file(name: str) -> Path:
    """A sweep file path, or sweeps/<name>.yaml."""
    path = Path(name)
    if path.is_file():
        return path
    candidate = Path("sweeps") / f"{name}.yaml"
    if candidate.is_file():
        return candidate
    found = sorted(p.stem for p in Path("sweeps").glob("*.yaml")) if Path("sweeps").is_dir() else []
    raise UserError(f"{name}: no such sweep file" + (f"; sweeps/ has: {', '.join(found)}" if found else ""))


def sweep_definition(name: str, results_root: Path) -> Path:
    """The sweep file for `name`, falling back to the resolved definition kept in its results folder."""
    try:
        return resolve_sweep_file(name)
    except UserError:
        kept = results_root / name / "definition.json"
        if kept.is_file():
            return kept
        raise


def results_dir(sweep: str, results_root: str) -> Path:
    """The results folder of a sweep given by name, folder or sweep file."""
    given = Path(sweep)
    if given.is_dir():
        return given
    if given.is_file():
        from hpcsweep.config import load_sweep

        return Path(results_root) / load_sweep(given).name
    return Path(results_root) / sweep


def swept_dir(sweep: str, results_root: str) -> Path:
    """`results_dir`, refused when it holds no trials yet (aggregate, export-tracking)."""
    from hpcsweep.store import trials_dir

    folder = results_dir(sweep, results_root)
    if not trials_dir(folder).is_dir():
        raise UserError(f"{folder}: no trials yet; run 'hpcsweep sweep {sweep}' first")
    return folder


def print_rows(title: str, header: list[str], rows: list[list[Any]], wide: bool = False, legend: bool = True) -> None:
    """A table that fits the terminal (`terminal.print_table`, imported when first printed: rich is not light)."""
    from hpcsweep.terminal import print_table

    print_table(title, header, rows, wide, legend)


def print_warnings(warnings: Iterable[str]) -> None:
    """What a stage warns of, on stderr."""
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)


def print_notes(notes: list[str]) -> None:
    """What a stage noticed about a file it read (compress, decompress, score)."""
    for note in notes:
        print(f"note: {note}")
