"""What every benchmark section writes the same way: verdicts and sections of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path


def verdict(met: bool) -> str:
    """How a target reads: met, or not met in bold."""
    return "met" if met else "**not met**"


def replace_section(path: Path, title: str, lines: list[str]) -> None:
    """Put `lines` under `title` in the Markdown file at `path`, in place of what was there (up to the next section)."""
    old = path.read_text().splitlines() if path.exists() else []
    if title in old:
        start = old.index(title) + 1
        end = next((i for i in range(start, len(old)) if old[i].startswith("## ") or old[i].startswith("Total benchmark time")), len(old))
        new = old[:start] + ["", *lines] + old[end:]
    else:
        new = old + ["", title, "", *lines]
    path.write_text("\n".join(new) + "\n")


def replace_rows(path: Path, rows: list[str]) -> None:
    """Put each Markdown table row of `rows` in place of the one with the same first cell in the file at `path`: a
    figure measured again without the rest of its section (the status rows without the SLURM dispatch)."""
    lines = path.read_text().splitlines()
    for row in rows:
        label = row.split("|")[1]
        (index,) = [i for i, line in enumerate(lines) if line.startswith("|") and line.split("|")[1] == label]
        lines[index] = row
    path.write_text("\n".join(lines) + "\n")
