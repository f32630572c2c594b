"""Relative paths written in sweep files: looked up beside the sweep file first, then in the working directory."""

from __future__ import annotations

import glob
from pathlib import Path


def locate(value: str, base: Path | None) -> str:
    """An absolute path (or glob pattern) for `value`; as given when it matches nothing in either place.

    A path that exists (a pattern that matches) beside the sweep file wins; otherwise the
    working directory's. A path that matches nothing is returned as written, so that the
    reader's error names what the user wrote.
    """
    path = Path(value).expanduser()
    if path.is_absolute():
        return str(path)
    for folder in ([base] if base is not None else []) + [Path.cwd()]:
        candidate = folder / path
        if glob.glob(str(candidate)) if glob.has_magic(value) else candidate.exists():
            return str(candidate.resolve() if not glob.has_magic(value) else candidate.absolute())
    return value


def expand_sources(source: str | list[str]) -> list[Path]:
    """The files a data source names: paths and glob patterns, in order, each pattern's matches sorted."""
    files: list[Path] = []
    for item in [source] if isinstance(source, str) else source:
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        files += [Path(m) for m in matches if Path(m) not in files]
    return files
